/* The store's threads and the way their jobs return to the loops (store_threads.h). */
#include "store_threads.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

/*
 * A nice value alone is not enough on Linux 6.6 and later (EEVDF): a running thread keeps its
 * core to the end of its time slice (a few milliseconds) before a thread that wakes gets it,
 * whatever their nice values, so with every core busy on store work a check often waited for a
 * slice to end. Since 6.12 a thread may ask for a shorter slice: the store's threads ask for
 * the shortest, and a woken loop waits for a core at most about that long (on the 2-core test
 * machine, with four loads at once, the checks' p99 fell by a fifth). Older kernels ignore it.
 */
#define STORE_NICE 10
#define STORE_SLICE_NS 100000

/* The kernel's struct sched_attr (its first version), which glibc does not declare. */
struct store_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

struct epcs_store_threads {
    pthread_mutex_t lock;
    pthread_cond_t queued;
    struct epcs_store_job *head, *tail;
    int stopping;
    int count;
    pthread_t threads[];
};

static void lower_this_thread(void)
{
    /* Named, so that their CPU time can be told from a loop's (top -H, the tests). */
    prctl(PR_SET_NAME, "epcs-store");
    struct store_sched_attr attr = {.size = sizeof(attr),
                                    .sched_policy = SCHED_OTHER,
                                    .sched_nice = STORE_NICE,
                                    .sched_runtime = STORE_SLICE_NS};
    if (syscall(SYS_sched_setattr, 0, &attr, 0) == 0)
        return;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), STORE_NICE) != 0)
        epcs_log(EPCS_LOG_DEBUG, "store", "a store thread keeps its priority: %s", strerror(errno));
}

static void hand_back(struct epcs_store_job *job)
{
    struct epcs_store_returns *returns = &job->worker->store_returns;
    job->next = NULL;
    pthread_mutex_lock(&returns->lock);
    if (returns->tail != NULL)
        returns->tail->next = job;
    else
        returns->head = job;
    returns->tail = job;
    pthread_mutex_unlock(&returns->lock);
    uv_async_send(&returns->wake);
}

static void *store_main(void *arg)
{
    struct epcs_store_threads *threads = arg;
    lower_this_thread();
    pthread_mutex_lock(&threads->lock);
    for (;;) {
        while (threads->head == NULL && !threads->stopping)
            pthread_cond_wait(&threads->queued, &threads->lock);
        struct epcs_store_job *job = threads->head;
        /* Stopping: what is queued is still done, as a write that was asked must commit. */
        if (job == NULL)
            break;
        threads->head = job->next;
        if (threads->head == NULL)
            threads->tail = NULL;
        pthread_mutex_unlock(&threads->lock);
        job->work(job);
        hand_back(job);
        pthread_mutex_lock(&threads->lock);
    }
    pthread_mutex_unlock(&threads->lock);
    return NULL;
}

struct epcs_store_threads *epcs_store_threads_start(int count)
{
    struct epcs_store_threads *threads =
        calloc(1, sizeof(*threads) + (size_t)count * sizeof(pthread_t));
    if (threads == NULL) {
        epcs_log(EPCS_LOG_ERROR, "store", "out of memory starting the store's threads");
        return NULL;
    }
    pthread_mutex_init(&threads->lock, NULL);
    pthread_cond_init(&threads->queued, NULL);
    for (; threads->count < count; threads->count++) {
        if (pthread_create(&threads->threads[threads->count], NULL, store_main, threads) != 0)
            break;
    }
    if (threads->count == 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot start the store's threads");
        epcs_store_threads_stop(threads);
        return NULL;
    }
    if (threads->count < count)
        epcs_log(EPCS_LOG_WARN, "store", "%d of %d store threads started", threads->count, count);
    return threads;
}

void epcs_store_threads_stop(struct epcs_store_threads *threads)
{
    if (threads == NULL)
        return;
    pthread_mutex_lock(&threads->lock);
    threads->stopping = 1;
    pthread_cond_broadcast(&threads->queued);
    pthread_mutex_unlock(&threads->lock);
    for (int i = 0; i < threads->count; i++)
        pthread_join(threads->threads[i], NULL);
    pthread_cond_destroy(&threads->queued);
    pthread_mutex_destroy(&threads->lock);
    free(threads);
}

void epcs_store_queue(struct epcs_store_threads *threads, struct epcs_store_job *job)
{
    atomic_fetch_add(&job->worker->store_returns.outstanding, 1);
    job->next = NULL;
    pthread_mutex_lock(&threads->lock);
    if (threads->tail != NULL)
        threads->tail->next = job;
    else
        threads->head = job;
    threads->tail = job;
    pthread_cond_signal(&threads->queued);
    pthread_mutex_unlock(&threads->lock);
}

/* On the loop: every job done since the last wake, in the order they finished. */
static void cb_returned(uv_async_t *async)
{
    struct epcs_worker *worker = async->data;
    struct epcs_store_returns *returns = &worker->store_returns;
    pthread_mutex_lock(&returns->lock);
    struct epcs_store_job *job = returns->head;
    returns->head = returns->tail = NULL;
    pthread_mutex_unlock(&returns->lock);
    while (job != NULL) {
        struct epcs_store_job *next = job->next;
        job->done(job);
        atomic_fetch_sub(&returns->outstanding, 1);
        job = next;
    }
}

int epcs_store_returns_init(struct epcs_worker *worker, uv_loop_t *loop)
{
    struct epcs_store_returns *returns = &worker->store_returns;
    pthread_mutex_init(&returns->lock, NULL);
    returns->head = returns->tail = NULL;
    atomic_init(&returns->outstanding, 0);
    returns->wake.data = worker;
    if (uv_async_init(loop, &returns->wake, cb_returned) != 0) {
        pthread_mutex_destroy(&returns->lock);
        return -1;
    }
    returns->ready = 1;
    return 0;
}

void epcs_store_returns_drain(struct epcs_worker *worker, uv_loop_t *loop)
{
    while (atomic_load(&worker->store_returns.outstanding) > 0)
        uv_run(loop, UV_RUN_ONCE);
}

void epcs_store_returns_dispose(struct epcs_worker *worker)
{
    if (worker->store_returns.ready)
        pthread_mutex_destroy(&worker->store_returns.lock);
    worker->store_returns.ready = 0;
}
