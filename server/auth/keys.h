#ifndef EPCS_KEYS_H
#define EPCS_KEYS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "api_key.h"

/**
 * A token bucket: `rate` tokens a second, holding at most twice that. With replicas sharing a
 * key's limit, the bucket also counts what it gave out since the last exchange (`used`), and
 * is charged what the other replicas gave out (epcs_rate_settle).
 */
struct epcs_rate_bucket {
    pthread_mutex_t lock;
    double tokens;
    uint64_t refilled_ns;
    double used;
};

/** One API key in memory: its stored record's fields and its rate bucket. */
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
 * The keys of one load of the key store, sorted by id. Immutable but for the rate buckets;
 * reference-counted so a worker can finish a request on a keyring that was just replaced.
 */
struct epcs_keyring {
    _Atomic int refs;
    struct epcs_key *keys;
    size_t count;
};

/**
 * A keyring of `count` records (any order; copied), each bucket unused. Returns NULL with
 * `err` filled when two records share an id or memory runs out.
 */
struct epcs_keyring *epcs_keyring_create(const struct epcs_key_record *records, size_t count,
                                         char *err, size_t err_size);
void epcs_keyring_retain(struct epcs_keyring *keyring);
/** Drops a reference; the last frees. Accepts NULL. */
void epcs_keyring_release(struct epcs_keyring *keyring);
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

/** The tokens the bucket gave out (less those given back) since the last call, reset to 0. */
double epcs_rate_drain_used(struct epcs_rate_bucket *bucket);

/**
 * Charges the bucket `others` tokens that other replicas gave out under the same key, after
 * refilling it at `rate` up to now: it may go into debt, which its next requests wait out.
 */
void epcs_rate_settle(struct epcs_rate_bucket *bucket, double rate, double others);

#endif
