#ifndef EPCS_DECISION_LOG_H
#define EPCS_DECISION_LOG_H

#include <msgpack.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "decision.h"

/*
 * The decision log: every verdict epcsd gives, in SQLite (WAL) at <data>/decisions.db. Workers
 * hand decisions over in memory; one writer thread inserts whatever has queued up in a single
 * transaction (group commit), so the event loops never wait on the disk. Decisions may end up
 * as evidence: in sync mode a verdict is sent only once the transaction holding it committed.
 */

enum epcs_audit_mode {
    EPCS_AUDIT_OFF,
    /** Answer at once; the decision reaches the disk within one commit. */
    EPCS_AUDIT_ASYNC,
    /** Answer after the commit (fsync'd) that holds the decision. */
    EPCS_AUDIT_SYNC,
};

struct epcs_decision_log;
struct record;

/**
 * Opens (creating) <data_dir>/decisions.db, records this run and starts the writer. At most
 * `queue_limit` decisions wait in memory. NULL with `err` filled when SQLite refuses.
 */
struct epcs_decision_log *epcs_decision_log_open(const char *data_dir, enum epcs_audit_mode mode,
                                                 size_t queue_limit, char *err, size_t err_size);
/** Commits what is queued, stops the writer and closes the database. Accepts NULL. */
void epcs_decision_log_close(struct epcs_decision_log *log);

enum epcs_audit_mode epcs_decision_log_mode(const struct epcs_decision_log *log);

/**
 * A fresh decision id: this run's number in the high 32 bits, a counter in the low ones, so
 * ids never repeat across restarts, even for decisions a crash kept from the disk.
 */
uint64_t epcs_decision_log_next_id(struct epcs_decision_log *log);

/**
 * Copies `count` decisions (each with its id set) made for `partner` into the queue, all or
 * none. Returns 0 with `ticket` set to the last one's place in line, or -1 when the queue is
 * full or the writer has failed: the caller answers 503 rather than lose evidence.
 */
int epcs_decision_log_append(struct epcs_decision_log *log, const struct epcs_decision *decisions,
                             size_t count, const char *partner, uint64_t *ticket);

/**
 * Decisions a worker gathers during one turn of its loop and hands over at once
 * (async mode): one lock per turn instead of one per check. Zero-initialise it.
 */
struct epcs_decision_stage {
    struct record *head;
    struct record **tail;
    size_t count;
};

/**
 * As epcs_decision_log_append, but into `stage` until epcs_decision_log_flush. Returns 0, or
 * -1 when the log (counting what is staged) is full or has failed.
 */
int epcs_decision_log_stage(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                            const struct epcs_decision *decisions, size_t count,
                            const char *partner);
/** Hands everything staged to the writer. */
void epcs_decision_log_flush(struct epcs_decision_log *log, struct epcs_decision_stage *stage);

/** The highest ticket whose transaction has committed. */
uint64_t epcs_decision_log_committed(const struct epcs_decision_log *log);

/**
 * Called on the writer thread after each commit (and when the writer fails), e.g. to wake the
 * workers holding sync answers. Set before any append.
 */
void epcs_decision_log_on_commit(struct epcs_decision_log *log, void (*fn)(void *ctx), void *ctx);

/** Figures for /metrics and /readyz. */
struct epcs_decision_log_stats {
    size_t queued;
    size_t queue_limit;
    uint64_t written;
    uint64_t commits;
    uint64_t refused;
    /** Nonzero once a write failed: the log accepts nothing more (readyz reports it). */
    int failed;
};
void epcs_decision_log_stats(struct epcs_decision_log *log, struct epcs_decision_log_stats *stats);

/** A read-only connection for queries, one per worker thread. NULL with `err` filled. */
sqlite3 *epcs_decision_log_reader(const char *data_dir, char *err, size_t err_size);

/** GET /v1/decisions filters; NULL or 0 means any. */
struct epcs_decision_query {
    int64_t from_us;
    int64_t to_us;
    const char *partner;
    const char *area;
    const char *verdict;
    const char *election;
    /** Only ids above this one (the `next` of the previous page). */
    uint64_t after;
    size_t limit;
};

/**
 * Packs {decisions: [...], next: id|nil} matching `query`, oldest first. Returns 0, or -1 with
 * `err` filled.
 */
int epcs_decision_log_query(sqlite3 *reader, const struct epcs_decision_query *query,
                            msgpack_packer *pk, char *err, size_t err_size);

/**
 * Packs decision `id` as one map. Returns 0, 1 when there is no such decision, -1 with `err`.
 * When `request` is not NULL, the check as received (msgpack) is appended to it too.
 */
int epcs_decision_log_get(sqlite3 *reader, uint64_t id, msgpack_packer *pk,
                          struct epcs_buf *request, char *ruleset, size_t ruleset_size, char *date,
                          char *err, size_t err_size);

/**
 * Calls `fn` with the logged check (msgpack) and decision date of each of the `limit` latest
 * decisions, newest first; `request` is valid during the call only. Returns 0, or -1 with `err`
 * filled (also when `fn` returns nonzero).
 */
int epcs_decision_log_recent(sqlite3 *reader, size_t limit,
                             int (*fn)(void *ctx, const void *request, size_t len,
                                       const char *date),
                             void *ctx, char *err, size_t err_size);

#endif
