/* Waking the workers from other threads (the decision log's writer, a reload): a worker's
 * async handles may be signalled only while it is wakeable, never once they close. */
#include <pthread.h>
#include <stdlib.h>

#include "http.h"

/* Guards `wakeable`: a worker's async handles (commits, rulesets) must not be signalled once
 * they are being closed. */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Runs on the decision log's writer thread after each commit or try (sync mode only), also
 * while the log closes after the workers are gone: server->workers is read under the lock
 * that epcs_workers_forget takes to free it.
 */
void epcs_workers_wake_committed(void *ctx)
{
    struct epcs_server *server = ctx;
    pthread_mutex_lock(&wake_lock);
    for (int i = 0; server->workers != NULL && i < server->worker_count; i++) {
        if (server->workers[i].wakeable)
            uv_async_send(&server->workers[i].decisions_committed);
    }
    pthread_mutex_unlock(&wake_lock);
}

/* Frees the workers (disposed already) so that the writer's callback no longer sees them. */
void epcs_workers_forget(struct epcs_server *server)
{
    pthread_mutex_lock(&wake_lock);
    struct epcs_worker *workers = server->workers;
    server->workers = NULL;
    server->worker_count = 0;
    pthread_mutex_unlock(&wake_lock);
    free(workers);
}

void epcs_worker_set_wakeable(struct epcs_worker *worker, int wakeable)
{
    pthread_mutex_lock(&wake_lock);
    worker->wakeable = wakeable;
    pthread_mutex_unlock(&wake_lock);
}

void epcs_workers_wake_rulesets(struct epcs_server *server)
{
    pthread_mutex_lock(&wake_lock);
    for (int i = 0; i < server->worker_count; i++) {
        if (server->workers[i].wakeable)
            uv_async_send(&server->workers[i].ruleset_changed);
    }
    pthread_mutex_unlock(&wake_lock);
}
