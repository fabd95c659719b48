#ifndef EPCS_DECISION_LOG_CORE_H
#define EPCS_DECISION_LOG_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "decision_log.h"
#include "decision_pages.h"
#include "store.h"

/*
 * What every decision log backend shares: the chunks workers stage their decisions into, the
 * journals of async mode and their recovery at start, the writer thread with its grouping in id
 * order, the known answers, the stall when writes fail and the retries. A backend says only
 * where a group's pages and answers go and how it is asked what it holds: a sink. Its handle is
 * the core's (epcs_log_core_create); the core's ops below fill every member of its ops table but
 * open, close, the readers and the queries.
 */

/** A page the writer stores: `count` entries with ids first_id..last_id, in page form. */
struct epcs_log_page {
    uint64_t first_id, last_id;
    int64_t first_us, last_us;
    size_t count;
    const char *body;
    size_t len;
    /** The page's summary (decision_pages.h); all zero unless the sink asks for summaries. */
    uint64_t summary[EPCS_SUMMARY_WORDS];
};

/**
 * Where pages go. Every call is on the writer thread (or in open, before it starts), with the
 * backend's own state as `backend`; errors are 0/-1 with `err` saying what failed and why, as
 * the stall reason shows it ("decisions.pages: No space left on device").
 */
struct epcs_log_sink {
    /** Starts a group's transaction. */
    int (*begin)(void *backend, char *err, size_t err_size);
    /** Stores an answer in the group's transaction: 0 with *id set, or -1. */
    int (*insert_answer)(void *backend, const char *answer, size_t len, int64_t *id, char *err,
                         size_t err_size);
    /** Stores a page in the group's transaction. */
    int (*put_page)(void *backend, const struct epcs_log_page *page, char *err, size_t err_size);
    /** Commits the group; `durable`: it must survive a power cut before this returns. */
    int (*commit)(void *backend, int durable, char *err, size_t err_size);
    /** Undoes whatever of the group a failed call left (the core forgets its answers). */
    void (*rollback)(void *backend);
    /** Whether entry `id` is stored (journal recovery at start): 1, 0, or -1 with `err`. */
    int (*stored)(void *backend, uint64_t id, char *err, size_t err_size);
    /**
     * Whether the disk that holds the journals takes writes again after a journal write
     * failed: 0 when it does. NULL: the core writes and removes a probe file in the data
     * directory.
     */
    int (*probe)(void *backend);
    /** Nonzero: the writer computes each page's summary for put_page. */
    int summarise;
    /**
     * A group that failed is tried again after EPCS_DECISION_LOG_RETRY_MS, doubling at each
     * failure up to this (a database that went away is not hammered); at most the retry time.
     */
    int retry_max_ms;
};

struct epcs_log_core;

/**
 * A log handle whose backend state is `backend` (owned by the backend), its journals in
 * `data_dir`. Nothing runs yet: the backend opens its storage, then calls epcs_log_core_start.
 * NULL with `err` filled (memory).
 */
struct epcs_log_core *epcs_log_core_create(const struct epcs_decision_log_ops *ops,
                                           const struct epcs_log_sink *sink, void *backend,
                                           const char *data_dir, enum epcs_audit_mode mode,
                                           size_t queue_limit, char *err, size_t err_size);

/** The backend state given to epcs_log_core_create, from a handle the core made. */
void *epcs_log_backend(const struct epcs_decision_log *handle);

/** The handle callers hold. */
struct epcs_decision_log *epcs_log_core_handle(struct epcs_log_core *core);

/**
 * Ids from now on carry `run` in their high 32 bits; the entries of journals an earlier run
 * left that the sink lacks are queued (sink->stored), and the writer starts. 0, or -1 with
 * `err` filled.
 */
int epcs_log_core_start(struct epcs_log_core *core, uint64_t run, char *err, size_t err_size);

/**
 * Commits what is queued and stops the writer (when started), keeping the journal segments
 * that still hold entries not written. The backend closes its storage after this, then calls
 * epcs_log_core_destroy.
 */
void epcs_log_core_stop(struct epcs_log_core *core);

/** Frees the core. Accepts NULL. */
void epcs_log_core_destroy(struct epcs_log_core *core);

/* The ops members every backend takes from the core. */
enum epcs_audit_mode epcs_log_core_mode(const struct epcs_decision_log *log);
int epcs_log_core_attach(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                         char *err, size_t err_size);
void epcs_log_core_detach(struct epcs_decision_log *log, struct epcs_decision_stage *stage);
uint64_t epcs_log_core_next_id(struct epcs_decision_log *log, struct epcs_decision_stage *stage);
int epcs_log_core_append(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                         const struct epcs_decision *decisions, size_t count, const char *partner,
                         uint64_t *ticket);
int epcs_log_core_stage(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                        const struct epcs_decision *decisions, size_t count, const char *partner);
int epcs_log_core_flush(struct epcs_decision_log *log, struct epcs_decision_stage *stage);
int epcs_log_core_event(struct epcs_decision_log *log, const char *partner, const char *event,
                        const char *election, uint64_t subject, const char *detail,
                        size_t detail_len, uint64_t *id, uint64_t *ticket);
int epcs_log_core_forward(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                          const struct epcs_decision *decisions, const char *const *partners,
                          size_t decision_count, const struct epcs_decision_event *events,
                          size_t event_count, uint64_t *ticket);
int epcs_log_core_wait(struct epcs_decision_log *log, uint64_t ticket);
uint64_t epcs_log_core_committed(const struct epcs_decision_log *log);
void epcs_log_core_on_commit(struct epcs_decision_log *log, void (*fn)(void *ctx), void *ctx);
void epcs_log_core_stats(struct epcs_decision_log *log, struct epcs_decision_log_stats *stats);

/** The members of an ops table the core fills (designated initializers). */
#define EPCS_LOG_CORE_OPS                                                                          \
    .mode = epcs_log_core_mode, .attach = epcs_log_core_attach, .detach = epcs_log_core_detach,    \
    .next_id = epcs_log_core_next_id, .append = epcs_log_core_append,                              \
    .stage = epcs_log_core_stage, .flush = epcs_log_core_flush, .event = epcs_log_core_event,      \
    .forward = epcs_log_core_forward, .wait = epcs_log_core_wait,                                  \
    .committed = epcs_log_core_committed, .on_commit = epcs_log_core_on_commit,                    \
    .stats = epcs_log_core_stats

#endif
