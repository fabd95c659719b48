#ifndef EPCS_API_KEY_H
#define EPCS_API_KEY_H

#include <stddef.h>

#include "partner.h"

/*
 * An API key as it is stored: who it belongs to, what it may do, its rate and the SHA-256 of
 * its token (never the token). The key stores (store/) keep these records and the keys in
 * memory (auth/) check tokens against them, so the record and what makes one live here, below
 * both.
 */

/** What a key may do; each role may do everything the one before it may. */
enum epcs_role {
    EPCS_ROLE_NONE = 0,
    /** check, elections, calendar, areas, rules read */
    EPCS_ROLE_PARTNER,
    /** + rule reload, impact, decisions, metrics */
    EPCS_ROLE_STAFF,
    /** + keys */
    EPCS_ROLE_ADMIN,
};

#define EPCS_KEY_ID_LEN 16
/* "epcs_" + id + "_" + 64 hex digits of secret */
#define EPCS_KEY_TOKEN_LEN (5 + EPCS_KEY_ID_LEN + 1 + 64)

/** One stored key. */
struct epcs_key_record {
    char id[EPCS_KEY_ID_LEN + 1];
    char partner[EPCS_KEY_PARTNER_MAX];
    enum epcs_role role;
    unsigned char token_sha256[32];
    /** Requests (checks, for a batch) a second; 0 takes the server's --rate-limit. */
    double rate;
    char created[24];
};

/** The fields of a record as text, in the order epcs_key_record_parse takes them. */
enum epcs_key_field {
    EPCS_KEY_FIELD_ID,
    EPCS_KEY_FIELD_PARTNER,
    EPCS_KEY_FIELD_ROLE,
    EPCS_KEY_FIELD_SHA256,
    EPCS_KEY_FIELD_RATE,
    EPCS_KEY_FIELD_CREATED,
    EPCS_KEY_FIELDS
};

const char *epcs_role_name(enum epcs_role role);
/** EPCS_ROLE_NONE when `name` is not partner, staff or admin. */
enum epcs_role epcs_role_parse(const char *name);

/** True when `id` has the shape of a key id: EPCS_KEY_ID_LEN lowercase hex digits. */
int epcs_key_id_valid(const char *id);

/**
 * A record from its fields as text (a line of the keys file, a row of a table). Returns 0, or
 * -1 with `err` saying which field is wrong and why.
 */
int epcs_key_record_parse(const char *const fields[EPCS_KEY_FIELDS], struct epcs_key_record *record,
                          char *err, size_t err_size);

/** The token hash of `record` as 64 lowercase hex digits. */
void epcs_key_record_hash_hex(const struct epcs_key_record *record, char out[65]);

/** Orders records by id (qsort, bsearch). */
int epcs_key_record_compare(const void *a, const void *b);

/**
 * A new key for `partner` with `role` and `rate`: a random id and secret, created now. Writes
 * the token (shown only this once) to `token` and the record to `record`. A store whose ids
 * collide (one in 2^64) asks again. Returns 0, or -1 with `err` saying what is wrong with the
 * partner, the role or the rate (or that no random bytes could be had).
 */
int epcs_key_mint(const char *partner, enum epcs_role role, double rate,
                  struct epcs_key_record *record, char token[EPCS_KEY_TOKEN_LEN + 1], char *err,
                  size_t err_size);

#endif
