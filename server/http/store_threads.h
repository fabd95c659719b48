#ifndef EPCS_STORE_THREADS_H
#define EPCS_STORE_THREADS_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

/*
 * The store's threads: what would block an event loop (the stores' reads and writes, which
 * wait on disks and on PostgreSQL, and the long work around them: exports, impact runs,
 * reloads) runs on threads of epcsd's own, named epcs-store, never on a loop and never on
 * libuv's shared pool. A job is queued from a worker's loop and its `done` runs back on that
 * loop once `work` returned.
 *
 * The threads run at a lower priority than the loops: a loop answers a check in microseconds
 * and must not wait for a core behind an export that takes the better part of a second.
 */

struct epcs_server;
struct epcs_worker;
struct epcs_store_threads;

/** A job: embedded in the caller's, which it gets back with H2O_STRUCT_FROM_MEMBER. */
struct epcs_store_job {
    /** On a store thread: may block; must not touch the loop, h2o or the request. */
    void (*work)(struct epcs_store_job *job);
    /** On the loop that queued it, after `work`; frees the job. */
    void (*done)(struct epcs_store_job *job);
    struct epcs_worker *worker;
    struct epcs_store_job *next;
};

/** What a worker holds for its jobs' way back: set up with the loop, before its thread runs. */
struct epcs_store_returns {
    uv_async_t wake;
    pthread_mutex_t lock;
    /* Done jobs in the order they finished, waiting for the loop. */
    struct epcs_store_job *head, *tail;
    /* Queued and not yet done: the loop does not close before they are. */
    atomic_size_t outstanding;
    int ready;
};

/** Starts `count` threads. NULL (logged) when none could start. */
struct epcs_store_threads *epcs_store_threads_start(int count);

/** Finishes the jobs queued, stops the threads and frees them. Accepts NULL. */
void epcs_store_threads_stop(struct epcs_store_threads *threads);

/** Sets up `worker`'s way back on `loop`. 0, or -1. */
int epcs_store_returns_init(struct epcs_worker *worker, uv_loop_t *loop);

/**
 * On the loop, once it has stopped serving: runs its loop until every job it queued is done
 * (their `done` called), so that closing the loop loses none.
 */
void epcs_store_returns_drain(struct epcs_worker *worker, uv_loop_t *loop);

/** Frees what epcs_store_returns_init made (its handle closed with the loop's); accepts a
 * worker that never had it. */
void epcs_store_returns_dispose(struct epcs_worker *worker);

/** From `job->worker`'s loop: queues `job`. Never fails. */
void epcs_store_queue(struct epcs_store_threads *threads, struct epcs_store_job *job);

#endif
