/*
 * Rate limits across replicas. Every replica keeps a token bucket per key and takes from it
 * alone (no round trip on the check path); this thread tells the key store every
 * EPCS_RATE_SHARE_MS what this replica's buckets gave out, learns in the same round trip what
 * all replicas together gave out, and charges each bucket what the others took since the last
 * round. Each bucket thus follows the cluster's use of its key, at most one round late: two
 * replicas under one key admit the key's rate together, not twice it.
 *
 * While the store cannot be reached, each replica takes rate/N alone, N the number of live
 * replicas it last saw (the registry's last read, replicas.h), and what it gives out
 * meanwhile is not told afterwards: the split already paid for it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"

struct epcs_rate_share {
    struct epcs_server *server;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    /* The keyring the arrays below follow (held), and per key of it: the cluster's total at
     * the last round, and whether it is known (not after a failed round or a new key). */
    struct epcs_keyring *keyring;
    double *last_total;
    char *known;
    /* One round's arguments, as large as the keyring. */
    const char **ids;
    double *used, *totals;
    size_t *index;
    int degraded;
};

static void free_arrays(struct epcs_rate_share *share)
{
    free(share->last_total);
    free(share->known);
    free(share->ids);
    free(share->used);
    free(share->totals);
    free(share->index);
}

/* Follows the server's current keyring, keeping what is known of keys in both. 0, or -1. */
static int follow_keyring(struct epcs_rate_share *share)
{
    struct epcs_server *server = share->server;
    pthread_mutex_lock(&server->keyring_lock);
    struct epcs_keyring *keyring = atomic_load(&server->keyring);
    if (keyring == share->keyring) {
        pthread_mutex_unlock(&server->keyring_lock);
        return 0;
    }
    epcs_keyring_retain(keyring);
    pthread_mutex_unlock(&server->keyring_lock);
    size_t count = keyring->count > 0 ? keyring->count : 1;
    double *last_total = calloc(count, sizeof(double)), *used = calloc(count, sizeof(double)),
           *totals = calloc(count, sizeof(double));
    char *known = calloc(count, 1);
    const char **ids = calloc(count, sizeof(*ids));
    size_t *index = calloc(count, sizeof(*index));
    if (last_total == NULL || used == NULL || totals == NULL || known == NULL || ids == NULL ||
        index == NULL) {
        free(last_total), free(used), free(totals), free(known), free(ids), free(index);
        epcs_keyring_release(keyring);
        return -1;
    }
    /* Both keyrings are sorted by id: one walk matches them. */
    struct epcs_keyring *old = share->keyring;
    for (size_t i = 0, j = 0; old != NULL && i < keyring->count; i++) {
        while (j < old->count && strcmp(old->keys[j].id, keyring->keys[i].id) < 0)
            j++;
        if (j < old->count && strcmp(old->keys[j].id, keyring->keys[i].id) == 0) {
            last_total[i] = share->last_total[j];
            known[i] = share->known[j];
        }
    }
    free_arrays(share);
    epcs_keyring_release(old);
    share->keyring = keyring;
    share->last_total = last_total;
    share->known = known;
    share->ids = ids;
    share->used = used;
    share->totals = totals;
    share->index = index;
    return 0;
}

static double key_rate(const struct epcs_server *server, const struct epcs_key *key)
{
    return key->rate > 0 ? key->rate : server->config.rate_limit;
}

static void set_degraded(struct epcs_rate_share *share, const char *err)
{
    struct epcs_server *server = share->server;
    unsigned live = epcs_replicas_live(server->replicas);
    if (!share->degraded)
        epcs_log(EPCS_LOG_WARN, "keys",
                 "cannot share rate usage with the other replicas: each key's rate is divided "
                 "by %u (the live replicas last seen) here until it can: %s",
                 live, err);
    share->degraded = 1;
    atomic_store(&server->rate_divisor, live);
    memset(share->known, 0, share->keyring->count);
}

static void exchange_round(struct epcs_rate_share *share)
{
    struct epcs_server *server = share->server;
    if (follow_keyring(share) != 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "out of memory sharing rate usage");
        return;
    }
    struct epcs_keyring *keyring = share->keyring;
    size_t count = 0;
    for (size_t i = 0; i < keyring->count; i++) {
        struct epcs_key *key = &keyring->keys[i];
        if (key_rate(server, key) <= 0)
            continue;
        share->index[count] = i;
        share->ids[count] = key->id;
        share->used[count] = epcs_rate_drain_used(&key->bucket);
        count++;
    }
    char err[512];
    if (epcs_key_store_exchange_usage(server->key_store, share->ids, share->used, count,
                                      share->totals, err, sizeof(err)) != 0) {
        set_degraded(share, err);
        return;
    }
    if (share->degraded) {
        epcs_log(EPCS_LOG_INFO, "keys", "sharing rate usage with the other replicas again");
        share->degraded = 0;
        atomic_store(&server->rate_divisor, 1);
    }
    for (size_t n = 0; n < count; n++) {
        size_t i = share->index[n];
        /* Below what was known (a count the database lost in a crash, a revoked key's row
         * gone): nothing to charge, counted afresh from here. */
        double others = share->totals[n] - share->last_total[i] - share->used[n];
        if (share->known[i] && others > 0)
            epcs_rate_settle(&keyring->keys[i].bucket, key_rate(server, &keyring->keys[i]), others);
        share->last_total[i] = share->totals[n];
        share->known[i] = 1;
    }
}

static void *share_main(void *arg)
{
    struct epcs_rate_share *share = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&share->lock);
    while (!share->stopping) {
        pthread_mutex_unlock(&share->lock);
        exchange_round(share);
        /* Rounds keep their period however long one took, unless it took longer. */
        next.tv_nsec += EPCS_RATE_SHARE_MS * 1000000L;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
            next = now;
        pthread_mutex_lock(&share->lock);
        while (!share->stopping &&
               pthread_cond_timedwait(&share->wake, &share->lock, &next) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&share->lock);
    return NULL;
}

int epcs_rate_share_start(struct epcs_server *server)
{
    if (!epcs_key_store_shares_usage(server->key_store))
        return 0;
    struct epcs_rate_share *share = calloc(1, sizeof(*share));
    if (share == NULL) {
        epcs_log(EPCS_LOG_ERROR, "keys", "out of memory starting to share rate usage");
        return -1;
    }
    share->server = server;
    pthread_mutex_init(&share->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&share->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&share->thread, NULL, share_main, share) != 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot start the thread that shares rate usage");
        pthread_cond_destroy(&share->wake);
        pthread_mutex_destroy(&share->lock);
        free(share);
        return -1;
    }
    server->rate_share = share;
    epcs_log(EPCS_LOG_INFO, "keys",
             "run %llu: rate limits shared with the other replicas through %s every %d ms",
             (unsigned long long)epcs_replicas_run(server->replicas),
             epcs_key_store_where(server->key_store), EPCS_RATE_SHARE_MS);
    return 0;
}

void epcs_rate_share_stop(struct epcs_server *server)
{
    struct epcs_rate_share *share = server->rate_share;
    if (share == NULL)
        return;
    pthread_mutex_lock(&share->lock);
    share->stopping = 1;
    pthread_cond_signal(&share->wake);
    pthread_mutex_unlock(&share->lock);
    pthread_join(share->thread, NULL);
    pthread_cond_destroy(&share->wake);
    pthread_mutex_destroy(&share->lock);
    free_arrays(share);
    epcs_keyring_release(share->keyring);
    free(share);
    server->rate_share = NULL;
}
