#ifndef EPCS_KEYS_H
#define EPCS_KEYS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "partner.h"

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

/** A token bucket: `rate` tokens a second, holding at most twice that. */
struct epcs_rate_bucket {
    pthread_mutex_t lock;
    double tokens;
    uint64_t refilled_ns;
};

/** One API key as the keys file holds it: never the token, only its SHA-256. */
struct epcs_key {
    char id[EPCS_KEY_ID_LEN + 1];
    char partner[EPCS_KEY_PARTNER_MAX];
    enum epcs_role role;
    unsigned char token_sha256[32];
    /** Requests (checks, for a batch) a second; 0 takes the server's --rate-limit. */
    double rate;
    char created[24];
    struct epcs_rate_bucket bucket;
};

/**
 * The keys of one reading of the keys file, sorted by id. Immutable but for the rate buckets;
 * reference-counted so a worker can finish a request on a keyring that was just replaced.
 */
struct epcs_keyring {
    _Atomic int refs;
    struct epcs_key *keys;
    size_t count;
    /** What the file looked like when read, to notice edits (including `epcsd keys`). */
    dev_t device;
    ino_t inode;
    off_t size;
    struct timespec modified;
    int file_exists;
};

const char *epcs_role_name(enum epcs_role role);
/** EPCS_ROLE_NONE when `name` is not partner, staff or admin. */
enum epcs_role epcs_role_parse(const char *name);

/**
 * Reads the keys file at `path`. A missing file is an empty keyring (file_exists 0). Returns
 * NULL with `err` filled (naming the line) when the file cannot be read or a line is malformed.
 */
struct epcs_keyring *epcs_keyring_load(const char *path, char *err, size_t err_size);
void epcs_keyring_retain(struct epcs_keyring *keyring);
/** Drops a reference; the last frees. Accepts NULL. */
void epcs_keyring_release(struct epcs_keyring *keyring);
/** True when the file at `path` is no longer what `keyring` was read from. */
int epcs_keyring_stale(const struct epcs_keyring *keyring, const char *path);
/** Moves rate-limit state of keys present in both, so a reload does not refill anyone's bucket. */
void epcs_keyring_inherit_buckets(struct epcs_keyring *fresh, struct epcs_keyring *old);

/** True when a key of `keyring` belongs to partner `partner` (`len` bytes, no NUL needed). */
int epcs_keyring_has_partner(const struct epcs_keyring *keyring, const char *partner, size_t len);

/** The key `token` (a bearer token) belongs to, or NULL. Constant time in the secret. */
struct epcs_key *epcs_keyring_verify(struct epcs_keyring *keyring, const char *token, size_t len);

/**
 * Takes `cost` tokens from the key's bucket at `rate` a second (burst: twice that), for a
 * request that took `paid` tokens already. A request costing more than the burst is taken
 * once the bucket is full, leaving it in debt. Returns 0, or the whole seconds to wait before
 * the cost can be taken (the `paid` tokens are then given back: the request is refused whole).
 */
unsigned epcs_rate_take(struct epcs_rate_bucket *bucket, double rate, double cost, double paid);

/**
 * Adds a key to the file at `path` (created 0600 when missing; rewritten atomically under a
 * lock beside it). Writes the token, shown only this once, to `token` (EPCS_KEY_TOKEN_LEN + 1
 * bytes) and the new key to `key`. Returns 0, or -1 with `err` filled.
 */
int epcs_keys_file_add(const char *path, const char *partner, enum epcs_role role, double rate,
                       char *token, struct epcs_key *key, char *err, size_t err_size);
/** Removes key `id` from the file. Returns 0, 1 when there is no such key, -1 with `err`. */
int epcs_keys_file_revoke(const char *path, const char *id, char *err, size_t err_size);

/** `epcsd keys create|revoke|list ...`: returns the process exit status. */
int epcs_keys_command(int argc, char **argv);

#endif
