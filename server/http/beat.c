/*
 * The replica's beat: a thread of its own that tells the registry (replicas.h) every
 * EPCS_REPLICA_BEAT_MS which ruleset this replica serves and whether it is ready, and so keeps
 * what GET /v1/admin/cluster lists and how many replicas share each key's rate fresh without
 * an event loop ever waiting on the database.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#include "http.h"
#include "log.h"

struct epcs_beat {
    struct epcs_server *server;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    /* Whether the last beat failed, so that a database that stays away is said once. */
    int failing;
};

static void status_now(struct epcs_server *server, struct epcs_replica_status *status)
{
    pthread_mutex_lock(&server->ruleset_lock);
    snprintf(status->ruleset, sizeof(status->ruleset), "%s",
             atomic_load(&server->active_ruleset)->id);
    pthread_mutex_unlock(&server->ruleset_lock);
    status->epoch = atomic_load(&server->rules_epoch);
    struct epcs_readiness readiness;
    /* Every worker builds its engine from the ruleset published: there is one to build. */
    epcs_server_readiness(server, 1, &readiness);
    status->ready = readiness.ready;
}

static void beat_once(struct epcs_beat *beat)
{
    struct epcs_replica_status status;
    status_now(beat->server, &status);
    char err[512];
    struct epcs_replicas *replicas = beat->server->replicas;
    if (epcs_replicas_beat(replicas, &status, err, sizeof(err)) != 0) {
        if (!beat->failing)
            epcs_log(EPCS_LOG_WARN, "cluster",
                     "run %llu cannot mark itself alive; GET /v1/admin/cluster shows the last "
                     "read until it can: %s",
                     (unsigned long long)epcs_replicas_run(replicas), err);
        beat->failing = 1;
        return;
    }
    if (beat->failing)
        epcs_log(EPCS_LOG_INFO, "cluster", "run %llu marks itself alive again",
                 (unsigned long long)epcs_replicas_run(replicas));
    beat->failing = 0;
}

static void *beat_main(void *arg)
{
    struct epcs_beat *beat = arg;
    prctl(PR_SET_NAME, "epcs-beat");
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&beat->lock);
    while (!beat->stopping) {
        pthread_mutex_unlock(&beat->lock);
        beat_once(beat);
        next.tv_sec += EPCS_REPLICA_BEAT_MS / 1000;
        next.tv_nsec += (EPCS_REPLICA_BEAT_MS % 1000) * 1000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        pthread_mutex_lock(&beat->lock);
        while (!beat->stopping &&
               pthread_cond_timedwait(&beat->wake, &beat->lock, &next) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&beat->lock);
    return NULL;
}

int epcs_beat_start(struct epcs_server *server)
{
    struct epcs_beat *beat = calloc(1, sizeof(*beat));
    if (beat == NULL) {
        epcs_log(EPCS_LOG_ERROR, "cluster", "out of memory starting the replica's beat");
        return -1;
    }
    beat->server = server;
    pthread_mutex_init(&beat->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&beat->wake, &attr);
    pthread_condattr_destroy(&attr);
    /* The first beat before "ready": the cluster lists a replica from the moment it serves. */
    beat_once(beat);
    if (pthread_create(&beat->thread, NULL, beat_main, beat) != 0) {
        epcs_log(EPCS_LOG_ERROR, "cluster", "cannot start the replica's beat");
        pthread_cond_destroy(&beat->wake);
        pthread_mutex_destroy(&beat->lock);
        free(beat);
        return -1;
    }
    server->beat = beat;
    return 0;
}

void epcs_beat_stop(struct epcs_server *server)
{
    struct epcs_beat *beat = server->beat;
    if (beat == NULL)
        return;
    pthread_mutex_lock(&beat->lock);
    beat->stopping = 1;
    pthread_cond_signal(&beat->wake);
    pthread_mutex_unlock(&beat->lock);
    pthread_join(beat->thread, NULL);
    pthread_cond_destroy(&beat->wake);
    pthread_mutex_destroy(&beat->lock);
    free(beat);
    server->beat = NULL;
}
