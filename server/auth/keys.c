/* API keys in memory: bearer-token checks and per-key rate limits. */
#include "keys.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dates.h"

static void init_bucket(struct epcs_key *key)
{
    pthread_mutex_init(&key->bucket.lock, NULL);
    /* NaN marks a bucket that has never been used: it starts full at the first request. */
    key->bucket.tokens = NAN;
    key->bucket.refilled_ns = 0;
    key->bucket.used = 0;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(((const struct epcs_key *)a)->id, ((const struct epcs_key *)b)->id);
}

struct epcs_keyring *epcs_keyring_create(const struct epcs_key_record *records, size_t count,
                                         char *err, size_t err_size)
{
    struct epcs_keyring *keyring = calloc(1, sizeof(*keyring));
    if (keyring == NULL ||
        (count > 0 && (keyring->keys = calloc(count, sizeof(*keyring->keys))) == NULL)) {
        snprintf(err, err_size, "out of memory for %zu keys", count);
        free(keyring);
        return NULL;
    }
    atomic_init(&keyring->refs, 1);
    for (size_t i = 0; i < count; i++) {
        struct epcs_key *key = &keyring->keys[i];
        const struct epcs_key_record *record = &records[i];
        memcpy(key->id, record->id, sizeof(key->id));
        memcpy(key->partner, record->partner, sizeof(key->partner));
        key->role = record->role;
        memcpy(key->token_sha256, record->token_sha256, sizeof(key->token_sha256));
        key->rate = record->rate;
        memcpy(key->created, record->created, sizeof(key->created));
    }
    keyring->count = count;
    if (count > 0)
        qsort(keyring->keys, count, sizeof(*keyring->keys), compare_keys);
    for (size_t i = 1; i < count; i++) {
        if (strcmp(keyring->keys[i - 1].id, keyring->keys[i].id) == 0) {
            snprintf(err, err_size, "key id %s appears twice", keyring->keys[i].id);
            free(keyring->keys);
            free(keyring);
            return NULL;
        }
    }
    for (size_t i = 0; i < count; i++)
        init_bucket(&keyring->keys[i]);
    return keyring;
}

void epcs_keyring_retain(struct epcs_keyring *keyring)
{
    atomic_fetch_add(&keyring->refs, 1);
}

void epcs_keyring_release(struct epcs_keyring *keyring)
{
    if (keyring == NULL || atomic_fetch_sub(&keyring->refs, 1) != 1)
        return;
    for (size_t i = 0; i < keyring->count; i++)
        pthread_mutex_destroy(&keyring->keys[i].bucket.lock);
    free(keyring->keys);
    free(keyring);
}

static struct epcs_key *find_key(struct epcs_keyring *keyring, const char *id)
{
    if (keyring->count == 0)
        return NULL;
    struct epcs_key probe;
    memcpy(probe.id, id, EPCS_KEY_ID_LEN);
    probe.id[EPCS_KEY_ID_LEN] = '\0';
    return bsearch(&probe, keyring->keys, keyring->count, sizeof(probe), compare_keys);
}

void epcs_keyring_inherit_buckets(struct epcs_keyring *fresh, struct epcs_keyring *old)
{
    if (old == NULL)
        return;
    for (size_t i = 0; i < fresh->count; i++) {
        struct epcs_key *before = find_key(old, fresh->keys[i].id);
        if (before == NULL)
            continue;
        pthread_mutex_lock(&before->bucket.lock);
        fresh->keys[i].bucket.tokens = before->bucket.tokens;
        fresh->keys[i].bucket.refilled_ns = before->bucket.refilled_ns;
        /* Not yet told to the other replicas: the fresh bucket tells it. */
        fresh->keys[i].bucket.used = before->bucket.used;
        before->bucket.used = 0;
        pthread_mutex_unlock(&before->bucket.lock);
    }
}

int epcs_keyring_has_partner(const struct epcs_keyring *keyring, const char *partner, size_t len)
{
    /* Keys are sorted by id, not partner; a deployment holds tens of keys, not thousands. */
    for (size_t i = 0; i < keyring->count; i++) {
        const char *id = keyring->keys[i].partner;
        if (strlen(id) == len && memcmp(id, partner, len) == 0)
            return 1;
    }
    return 0;
}

struct epcs_key *epcs_keyring_verify(struct epcs_keyring *keyring, const char *token, size_t len)
{
    if (len != EPCS_KEY_TOKEN_LEN || memcmp(token, "epcs_", 5) != 0 ||
        token[5 + EPCS_KEY_ID_LEN] != '_')
        return NULL;
    char id[EPCS_KEY_ID_LEN + 1];
    memcpy(id, token + 5, EPCS_KEY_ID_LEN);
    id[EPCS_KEY_ID_LEN] = '\0';
    struct epcs_key *key = find_key(keyring, id);
    if (key == NULL)
        return NULL;
    unsigned char digest[32];
    SHA256((const unsigned char *)token, len, digest);
    return CRYPTO_memcmp(digest, key->token_sha256, sizeof(digest)) == 0 ? key : NULL;
}

/* Under the bucket's lock: the tokens `rate` added since the last refill, up to the burst. */
static void refill(struct epcs_rate_bucket *bucket, double rate)
{
    double burst = rate * 2;
    uint64_t now = (uint64_t)epcs_clock_ns(CLOCK_MONOTONIC);
    if (isnan(bucket->tokens)) {
        bucket->tokens = burst;
    } else {
        bucket->tokens += (double)(now - bucket->refilled_ns) / 1e9 * rate;
        if (bucket->tokens > burst)
            bucket->tokens = burst;
    }
    bucket->refilled_ns = now;
}

unsigned epcs_rate_take(struct epcs_rate_bucket *bucket, double rate, double cost, double paid)
{
    double burst = rate * 2;
    unsigned wait = 0;
    pthread_mutex_lock(&bucket->lock);
    refill(bucket, rate);
    /* A cost above the burst (a big batch) is taken from a full bucket, which goes into debt:
     * the key's next requests wait until it is paid, so the rate holds on average. What the
     * request paid already counts toward that full bucket. */
    double due = cost + paid > burst ? burst - paid : cost;
    if (bucket->tokens >= due) {
        bucket->tokens -= cost;
        bucket->used += cost;
    } else {
        double seconds = ceil((due - bucket->tokens) / rate);
        wait = seconds < 1 ? 1 : (unsigned)seconds;
        /* The request is refused whole: what it paid goes back. */
        bucket->tokens += paid;
        bucket->used -= paid;
    }
    pthread_mutex_unlock(&bucket->lock);
    return wait;
}

double epcs_rate_drain_used(struct epcs_rate_bucket *bucket)
{
    pthread_mutex_lock(&bucket->lock);
    double used = bucket->used;
    bucket->used = 0;
    pthread_mutex_unlock(&bucket->lock);
    return used;
}

void epcs_rate_settle(struct epcs_rate_bucket *bucket, double rate, double others)
{
    pthread_mutex_lock(&bucket->lock);
    refill(bucket, rate);
    bucket->tokens -= others;
    pthread_mutex_unlock(&bucket->lock);
}
