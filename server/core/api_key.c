/* API key records: their fields as text, and new keys. */
#include "api_key.h"

#include <math.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dates.h"

const char *epcs_role_name(enum epcs_role role)
{
    switch (role) {
    case EPCS_ROLE_PARTNER:
        return "partner";
    case EPCS_ROLE_STAFF:
        return "staff";
    case EPCS_ROLE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

enum epcs_role epcs_role_parse(const char *name)
{
    if (strcmp(name, "partner") == 0)
        return EPCS_ROLE_PARTNER;
    if (strcmp(name, "staff") == 0)
        return EPCS_ROLE_STAFF;
    if (strcmp(name, "admin") == 0)
        return EPCS_ROLE_ADMIN;
    return EPCS_ROLE_NONE;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int parse_hex(const char *text, unsigned char *out, size_t bytes)
{
    if (strlen(text) != bytes * 2)
        return -1;
    for (size_t i = 0; i < bytes; i++) {
        int high = hex_value(text[2 * i]), low = hex_value(text[2 * i + 1]);
        if (high < 0 || low < 0)
            return -1;
        out[i] = (unsigned char)(high << 4 | low);
    }
    return 0;
}

static void format_hex(const unsigned char *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

int epcs_key_id_valid(const char *id)
{
    unsigned char bytes[EPCS_KEY_ID_LEN / 2];
    return parse_hex(id, bytes, sizeof(bytes)) == 0;
}

int epcs_key_record_parse(const char *const fields[EPCS_KEY_FIELDS], struct epcs_key_record *record,
                          char *err, size_t err_size)
{
    memset(record, 0, sizeof(*record));
    if (!epcs_key_id_valid(fields[EPCS_KEY_FIELD_ID])) {
        snprintf(err, err_size, "the id must be %d lowercase hex digits", EPCS_KEY_ID_LEN);
        return -1;
    }
    memcpy(record->id, fields[EPCS_KEY_FIELD_ID], EPCS_KEY_ID_LEN + 1);
    const char *partner = fields[EPCS_KEY_FIELD_PARTNER];
    if (!epcs_partner_id_valid(partner)) {
        snprintf(err, err_size, "partner '%.64s' must be 1-63 of a-z 0-9 _ - .", partner);
        return -1;
    }
    snprintf(record->partner, sizeof(record->partner), "%s", partner);
    const char *role = fields[EPCS_KEY_FIELD_ROLE];
    if ((record->role = epcs_role_parse(role)) == EPCS_ROLE_NONE) {
        snprintf(err, err_size, "role '%.32s' must be partner, staff or admin", role);
        return -1;
    }
    if (parse_hex(fields[EPCS_KEY_FIELD_SHA256], record->token_sha256,
                  sizeof(record->token_sha256)) != 0) {
        snprintf(err, err_size, "the token hash must be 64 lowercase hex digits");
        return -1;
    }
    const char *rate = fields[EPCS_KEY_FIELD_RATE];
    char *end;
    record->rate = strtod(rate, &end);
    if (*rate == '\0' || *end != '\0' || !isfinite(record->rate) || record->rate < 0) {
        snprintf(err, err_size,
                 "rate '%.32s' must be a number of requests a second, 0 for the "
                 "server default",
                 rate);
        return -1;
    }
    snprintf(record->created, sizeof(record->created), "%s", fields[EPCS_KEY_FIELD_CREATED]);
    return 0;
}

void epcs_key_record_hash_hex(const struct epcs_key_record *record, char out[65])
{
    format_hex(record->token_sha256, sizeof(record->token_sha256), out);
}

int epcs_key_record_compare(const void *a, const void *b)
{
    return strcmp(((const struct epcs_key_record *)a)->id, ((const struct epcs_key_record *)b)->id);
}

int epcs_key_mint(const char *partner, enum epcs_role role, double rate,
                  struct epcs_key_record *record, char token[EPCS_KEY_TOKEN_LEN + 1], char *err,
                  size_t err_size)
{
    if (!epcs_partner_id_valid(partner)) {
        snprintf(err, err_size, "partner '%.64s' must be 1-63 of a-z 0-9 _ - .", partner);
        return -1;
    }
    if (role == EPCS_ROLE_NONE) {
        snprintf(err, err_size, "role must be partner, staff or admin");
        return -1;
    }
    if (!isfinite(rate) || rate < 0) {
        snprintf(err, err_size, "rate must be a number of requests a second, 0 for the default");
        return -1;
    }
    unsigned char id_bytes[EPCS_KEY_ID_LEN / 2], secret[32];
    if (RAND_bytes(id_bytes, sizeof(id_bytes)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1) {
        snprintf(err, err_size, "no random bytes for a key");
        return -1;
    }
    memset(record, 0, sizeof(*record));
    format_hex(id_bytes, sizeof(id_bytes), record->id);
    char secret_hex[65];
    format_hex(secret, sizeof(secret), secret_hex);
    snprintf(token, EPCS_KEY_TOKEN_LEN + 1, "epcs_%s_%s", record->id, secret_hex);
    SHA256((const unsigned char *)token, EPCS_KEY_TOKEN_LEN, record->token_sha256);
    snprintf(record->partner, sizeof(record->partner), "%s", partner);
    record->role = role;
    record->rate = rate;
    epcs_instant_format_s(time(NULL), record->created);
    return 0;
}
