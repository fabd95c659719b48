#ifndef EPCS_DECISION_LOG_H
#define EPCS_DECISION_LOG_H

#include <msgpack.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "decision.h"

/*
 * The decision log: every verdict epcsd gives, and every step of a case, as pages of entries:
 * with SQLite in <data>/decisions.pages indexed by SQLite (WAL) in <data>/decisions.db, with
 * PostgreSQL as rows of tables every replica shares. Workers hand decisions over in memory; one
 * writer thread stores whatever has queued up, in id order, in a single transaction (group
 * commit), so the event loops never wait on the disk or the database. Decisions may end up as
 * evidence: no verdict is sent before its decision is safe from a crash of the process (async
 * mode: written to the worker's journal, <data>/decisions.journal.*, whatever the backend) or
 * from a power cut (sync mode: in a committed, durable transaction). A write that fails (a full
 * disk, a database gone away) stalls the log: it refuses new decisions and retries by itself
 * until the write succeeds.
 */

enum epcs_audit_mode {
    EPCS_AUDIT_OFF,
    /** Answer once the decision is in the worker's journal (write(2), one per loop turn). */
    EPCS_AUDIT_ASYNC,
    /** Answer after the commit (fsync'd) that holds the decision. */
    EPCS_AUDIT_SYNC,
};

/** A log handle (store.h: it begins with its backend's ops). */
struct epcs_decision_log;
/** A reader on the log, the backend's own (for SQLite, a read-only connection). */
struct epcs_decision_reader;
struct epcs_decision_chunk;
struct epcs_journal;

/**
 * What one worker hands over (zero-initialise it, then epcs_decision_log_attach). In async
 * mode the decisions of one turn of its loop are gathered here, written to the stage's journal
 * with one write(2) and handed over at once: one lock and one write per turn instead of one
 * per check. The stage belongs to its worker's thread; the log reads only `in_flight`.
 */
struct epcs_decision_stage {
    /** The chunk this turn's decisions are encoded into, handed over whole by the flush. */
    struct epcs_decision_chunk *open;
    /** The lowest decision id taken and not yet handed over; 0 when none. */
    _Atomic uint64_t in_flight;
    /** Async mode: the journal segment this stage appends to, and the next one, which the
     * writer makes ready so that the worker never waits for a file to be created. */
    struct epcs_journal *journal;
    _Atomic(struct epcs_journal *) spare;
    /**
     * Async mode: the number of the journal record the decisions staged now go into. An answer
     * reporting them waits until `journaled` reaches that number (epcs_decision_log_flush);
     * if the flush that wrote it failed, the answer is a 503 instead.
     */
    uint64_t record;
    /** The number of the last record written to the journal whole. */
    uint64_t journaled;
};

/**
 * Opens the log: with `store_uri` NULL, (creating) <data_dir>/decisions.db and decisions.pages
 * (store.h's epcs_decision_log_sqlite); otherwise the tables at that PostgreSQL URI
 * (epcs_decision_log_postgresql), creating them, with <data_dir> still holding the workers'
 * journals (async mode) and a lock that keeps a second epcsd off them. It records this run
 * (on PostgreSQL a run number unique across replicas, so ids never collide), queues the
 * entries of journals left by an earlier run that the store lacks (a crash kept them from it)
 * and starts the writer. At most `queue_limit` decisions wait in memory. NULL with `err` filled
 * when the store cannot be opened or its files do not agree. Every function below calls
 * through the handle's ops.
 */
struct epcs_decision_log *epcs_decision_log_open(const char *store_uri, const char *data_dir,
                                                 enum epcs_audit_mode mode, size_t queue_limit,
                                                 char *err, size_t err_size);
/** Commits what is queued, stops the writer and closes the database. Accepts NULL. */
void epcs_decision_log_close(struct epcs_decision_log *log);

enum epcs_audit_mode epcs_decision_log_mode(const struct epcs_decision_log *log);

/**
 * Registers a worker's stage: the writer stores decisions in id order, so it waits for ids a
 * stage has taken but not yet handed over. In async mode also creates the stage's journal.
 * Returns 0, or -1 with `err` filled (memory, or the journal cannot be created).
 */
int epcs_decision_log_attach(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                             char *err, size_t err_size);
/**
 * Hands over what is staged (as epcs_decision_log_flush), unregisters the stage and frees its
 * memory; its journal segments are deleted once the writer has committed what they hold.
 */
void epcs_decision_log_detach(struct epcs_decision_log *log, struct epcs_decision_stage *stage);

/**
 * A fresh decision id: this run's number in the high 32 bits, a counter in the low ones, so
 * ids never repeat across restarts, even for decisions a crash kept from the disk. The id is
 * marked as on its way in `stage` (if not NULL) until the stage hands over (append or flush):
 * entries with higher ids wait for it, so take an id only for a decision that is made.
 */
uint64_t epcs_decision_log_next_id(struct epcs_decision_log *log,
                                   struct epcs_decision_stage *stage);

/**
 * Copies `count` decisions (each with its id set) made for `partner` into the queue, all or
 * none, and clears `stage`'s mark (NULL: none). Returns 0 with `ticket` set to the last one's
 * place in line, or -1 when the queue is full or the log is stalled or has failed: the caller
 * answers 503 rather than lose evidence. Nothing is journaled: the answer waits for `ticket`.
 */
int epcs_decision_log_append(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                             const struct epcs_decision *decisions, size_t count,
                             const char *partner, uint64_t *ticket);

/**
 * As epcs_decision_log_append, but into `stage` until epcs_decision_log_flush: the answer
 * reporting them must wait for journal record `stage->record` (see the stage). Returns 0, or
 * -1 when the log (counting what is staged) is full or is stalled or has failed.
 */
int epcs_decision_log_stage(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                            const struct epcs_decision *decisions, size_t count,
                            const char *partner);
/**
 * Ends the stage's turn: writes what is staged to the stage's journal as record
 * `stage->record` (async mode, one write(2)), hands it to the writer and clears the stage's
 * mark. Returns 0 (also when nothing was staged: cheap when idle), or -1 when the journal
 * write failed: the staged decisions are dropped, never to be answered (answer 503), and the
 * log is stalled until the disk takes writes again.
 */
int epcs_decision_log_flush(struct epcs_decision_log *log, struct epcs_decision_stage *stage);

/**
 * One step of a case (report filed, request sent, answered, overdue, escalated, ...), logged
 * in the decisions' id space and order and listed by GET /v1/decisions with `event` set.
 * `subject` is the report or request id; `detail` is a msgpack map or NULL. Returns 0 with
 * *id set (and *ticket, its place in line, when not NULL), or -1 when the log is full or has
 * failed (answer 503 decision_log_unavailable). With the log off (log == NULL) returns 0 and
 * *id = 0. Safe from any thread.
 */
int epcs_decision_log_event(struct epcs_decision_log *log, const char *partner, const char *event,
                            const char *election, uint64_t subject, const char *detail,
                            size_t detail_len, uint64_t *id, uint64_t *ticket);

/**
 * Blocks the calling thread (never an event loop) until `ticket` is committed. Returns 0, or
 * -1 when the log failed first or has been stalled for EPCS_DECISION_LOG_STALL_WAIT_MS while
 * waiting (the entry stays queued and is written once the log can write again). Returns 0 at
 * once for a NULL log or ticket 0.
 */
int epcs_decision_log_wait(struct epcs_decision_log *log, uint64_t ticket);

/** The highest ticket whose transaction has committed. */
uint64_t epcs_decision_log_committed(const struct epcs_decision_log *log);

/** How long an answer waits for a stalled log before it is given up with a 503. */
#define EPCS_DECISION_LOG_STALL_WAIT_MS 2000
/** How often a stalled log tries again. */
#define EPCS_DECISION_LOG_RETRY_MS 250

/**
 * Called on the writer thread after each commit and after each failed attempt (every
 * EPCS_DECISION_LOG_RETRY_MS while stalled), e.g. to wake the workers holding sync answers.
 * Set before any append.
 */
void epcs_decision_log_on_commit(struct epcs_decision_log *log, void (*fn)(void *ctx), void *ctx);

/** Figures for /metrics and /readyz. */
struct epcs_decision_log_stats {
    size_t queued;
    size_t queue_limit;
    uint64_t written;
    uint64_t commits;
    /** Journal records written (async mode: one write(2) per loop turn with decisions). */
    uint64_t journal_writes;
    uint64_t refused;
    /** Nonzero while writes fail (a full disk): new decisions are refused, retries go on. */
    int stalled;
    /** Nonzero after a failure no retry mends (memory): the log accepts nothing more. */
    int failed;
    /** What cannot be written and why ("decisions.pages: No space left on device"), or
     * "" when the log is neither stalled nor failed. */
    char reason[256];
};
void epcs_decision_log_stats(struct epcs_decision_log *log, struct epcs_decision_log_stats *stats);

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
 * Packs {decisions: [...], next: id|nil} matching `query`, read on `reader` (one of `log`'s),
 * oldest first; case events come along unless the query names an area or a verdict. A query
 * filtering by partner, area, verdict or election skips the pages that `log` has learnt hold
 * none of its values (through the ops, `log` may be NULL: none skipped). Returns 0, or -1 with
 * `err` filled.
 */
int epcs_decision_log_query(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                            const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                            size_t err_size);

/**
 * Packs decision (or case event) `id`, read on `reader` (one of `log`'s), as one map. Returns
 * 0, 1 when there is no such entry, -1 with `err`. For a decision, its ruleset and date are
 * copied to `ruleset` and `date` when not NULL, and the check as received (msgpack) is
 * appended to `request` when not NULL; asked for a check, an event (which has none) gives 2.
 */
int epcs_decision_log_get(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                          uint64_t id, msgpack_packer *pk, struct epcs_buf *request, char *ruleset,
                          size_t ruleset_size, char *date, char *err, size_t err_size);

/**
 * Calls `fn` with the logged check (msgpack) and decision date of each of the `limit` latest
 * decisions, read on `reader` (one of `log`'s), newest first; `request` is valid during the
 * call only. Returns 0, or -1 with `err` filled (also when `fn` returns nonzero).
 */
int epcs_decision_log_recent(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                             size_t limit,
                             int (*fn)(void *ctx, const void *request, size_t len,
                                       const char *date),
                             void *ctx, char *err, size_t err_size);

/** A case event whose id its caller took with epcs_decision_log_next_id; strings borrowed. */
struct epcs_decision_event {
    uint64_t id;
    int64_t at_us;
    const char *partner;
    const char *event;
    /** NULL: none. */
    const char *election;
    uint64_t subject;
    /** A msgpack map, or NULL. */
    const char *detail;
    size_t detail_len;
};

/**
 * Hands over entries its caller has committed elsewhere first (the case store's outbox), with
 * the ids it took for them with epcs_decision_log_next_id(log, stage): `decisions` (the i-th
 * made for `partners[i]`) and `events`, all in one chunk, and clears `stage`'s mark. The queue
 * limit does not apply (the caller checks it before its commit): refusing what is already
 * stored would only keep the mark, and with it every later id, waiting. Returns 0 with
 * `ticket` set to the last entry's place in line (0 when there were none), or -1 when the log
 * has failed or memory runs out: nothing is handed over and the mark stays (a failed log
 * writes nothing more anyway; the caller hands the entries over again or releases the mark
 * with epcs_decision_log_flush).
 */
int epcs_decision_log_forward(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                              const struct epcs_decision *decisions, const char *const *partners,
                              size_t decision_count, const struct epcs_decision_event *events,
                              size_t event_count, uint64_t *ticket);

/**
 * What a read of a decision log in PostgreSQL (query, get, recent) returns instead of -1 when
 * the database cannot be reached or stopped answering (--store-timeout): temporary, worth a
 * retry.
 */
#define EPCS_DECISION_LOG_UNREACHABLE (-2)

/**
 * A reader from the log's own pool (opened when none is idle), the calling thread's until
 * epcs_decision_log_reader_release: reads on the store's threads take one each, and no event
 * loop keeps one. NULL with `err` filled. On PostgreSQL a reader is had while the database is
 * away too: its reads return EPCS_DECISION_LOG_UNREACHABLE.
 */
struct epcs_decision_reader *epcs_decision_log_reader_acquire(struct epcs_decision_log *log,
                                                              char *err, size_t err_size);
/** Gives `reader` (from epcs_decision_log_reader_acquire; NULL accepted) back to the pool. */
void epcs_decision_log_reader_release(struct epcs_decision_log *log,
                                      struct epcs_decision_reader *reader);

#endif
