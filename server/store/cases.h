#ifndef EPCS_CASES_H
#define EPCS_CASES_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "decision.h"

/*
 * The case store: reports of false information, slander and deepfakes, the requests epcs
 * sends about them (deletion requests to platforms, referrals to prosecutors and police) and
 * the history of both. These are legal records: a write returns only once it is durable, in
 * SQLite at <data>/cases.db (WAL, synchronous=FULL) or in the PostgreSQL database of
 * --store, which every replica of a cluster shares.
 *
 * What a request asks, of whom, by when and what follows when it is ignored all come from the
 * verdict's `actions`, i.e. from the rule file; the store keeps each action map beside the
 * request it made and reads it again when the request falls due.
 *
 * A request is `open` when sent. Its addressee answers it `done`, `objected` or
 * `data_submitted`; a sweep marks an open request past its due time `overdue` (it may still
 * be answered, late). An overdue request whose action has an `escalation` is sent again until
 * `escalation.after` attempts have been ignored; then the escalation's request (a referral)
 * is made and the ignored attempts become `escalated`. Answering one attempt answers the
 * others of the same chain that are still open or overdue.
 *
 * Every step is one row of the history and one event for the decision log, and a filing also
 * the report's decision, each with the decision-log id the store takes for it, written with
 * the step: a rolled-back step thus logs nothing, and a stored one everything. On SQLite the
 * log is another database, so the entries go into an outbox table in the step's transaction
 * (their ids marked on their way in the store's own stage), are handed to the decision log
 * right after the commit and deleted once the log has committed them; at open, what a stop
 * left there is handed over (or, when the log holds it already, only deleted) before anything
 * else. On PostgreSQL they are rows of the log's own tables, inserted in the step's
 * transaction (pg_log.h), so nothing waits for the log's writer.
 *
 * A decision log that cannot take the step's entries refuses the step before anything of it is
 * stored: on SQLite one that is full or has failed; on PostgreSQL only one that has failed,
 * since the entries never enter its queue (and while the log stalls because the database is
 * away, the step cannot reach it either: EPCS_CASES_UNAVAILABLE).
 *
 * On PostgreSQL several replicas write at once: ids come from the database; filings of one
 * posting, writes under one Idempotency-Key and changes of one partner's policy wait for each
 * other; answers, reviews and the sweep lock the report, then the requests they change; and
 * the sweep of every replica takes only requests no other holds (SKIP LOCKED), so no step is
 * taken twice.
 *
 * Writers may call in from any thread; readers use a reader of their own, one per thread at a
 * time (one the store's pool lends, or one opened through the ops on the store's place).
 *
 * The store is an interface (store.h's struct epcs_cases_ops) with two backends,
 * epcs_cases_sqlite (sqlite/cases.c) and epcs_cases_postgresql (postgresql/cases.c), whose
 * steps are written once (case_steps.c); every function below taking a store calls through
 * the handle's ops.
 */

/** A store handle (store.h: it begins with its backend's ops). */
struct epcs_cases;
/** A reader on the store, the backend's own (for SQLite, a read-only connection). */
struct epcs_cases_reader;
struct epcs_decision_log;

/** What a write did. */
enum epcs_cases_rc {
    EPCS_CASES_FAILED = -1,
    EPCS_CASES_OK = 0,
    /** No such request addressed to the caller (another partner's looks the same). */
    EPCS_CASES_NOT_FOUND = 1,
    /** The request is answered or escalated already. */
    EPCS_CASES_CLOSED = 2,
    /** An objection to a request whose action names no objection period. */
    EPCS_CASES_NO_OBJECTION = 3,
    /** An objection after the action's objection period. */
    EPCS_CASES_TOO_LATE = 4,
    /** The decision log refused an event (full or failed); nothing was stored. */
    EPCS_CASES_LOG_REFUSED = 5,
    /** The report holds no requests for staff to confirm or dismiss. */
    EPCS_CASES_NOT_HELD = 6,
    /** The Idempotency-Key was used before with another request: nothing was stored. */
    EPCS_CASES_KEY_REUSED = 7,
    /**
     * The store's database (PostgreSQL) cannot be reached or stopped answering (--store-timeout):
     * temporary, worth a retry (503). The step was rolled back; only a COMMIT whose answer was
     * lost may have stored it, which a retry under the same Idempotency-Key finds.
     */
    EPCS_CASES_UNAVAILABLE = 8,
};

/**
 * What a read (epcs_cases_get_report and the other functions taking a reader) returns instead
 * of -1 when the store's database cannot be reached or stopped answering: temporary, worth a
 * retry; -1 stays a store that cannot be read.
 */
#define EPCS_CASES_READ_UNAVAILABLE (-2)

/** The longest Idempotency-Key a client may send. */
#define EPCS_IDEMPOTENCY_KEY_MAX 255

/**
 * A write a client may retry: its Idempotency-Key and the SHA-256 of what it asked (the
 * route's path and body), so that a retry is told from another request under the same key.
 * Keys belong to the partner that sends them.
 */
struct epcs_case_idempotency {
    /** NULL: the write is not idempotent (each call is a new one). */
    const char *key;
    unsigned char request_sha256[32];
};

/**
 * Opens the case store: with `store_uri` NULL (creating) <data_dir>/cases.db
 * (epcs_cases_sqlite); otherwise the tables at that PostgreSQL URI (epcs_cases_postgresql),
 * creating them. `log` (may be NULL: no events) receives one event per step and must outlive
 * the store; with a URI it must be the decision log opened on that URI. NULL with `err` filled
 * when the database refuses, cannot be reached, or has another schema version.
 */
struct epcs_cases *epcs_cases_open(const char *store_uri, const char *data_dir,
                                   struct epcs_decision_log *log, char *err, size_t err_size);
/** Closes the database. Accepts NULL. No call may be running. */
void epcs_cases_close(struct epcs_cases *cases);

/** The most bytes a posting (with its NUL) takes: a URL may be 2048 bytes long. */
#define EPCS_CASES_POSTING_MAX 2100

/**
 * The posting `url` (an http:// or https:// address) names, as the store compares reports:
 * scheme and host in lower case, a default port (80, 443) and the final dot of the host left
 * out, no fragment, percent-escapes normalised as RFC 3986 6.2.2 says (escaped unreserved
 * characters decoded, hex digits upper case), an empty path as "/". Query and path keep their
 * case and order: what they mean is the platform's. Returns 0 with `out` filled, or -1 when
 * `url` is no such address or does not fit.
 */
int epcs_cases_posting(const char *url, char *out, size_t size);

/**
 * Checks the `actions` of a verdict (a msgpack map as the check path packs it) before a report
 * is filed with it: each must be a map with `kind` (deletion_request or referral), `to`
 * ("platform" for the report's platform, or a partner id), `article`, and optionally
 * `due_hours` (> 0), `objection_days` (>= 0) and `escalation` (the same, plus `after`, the
 * ignored attempts that trigger it). Returns the number of actions, or -1 with `why` filled.
 */
int epcs_cases_check_actions(const char *verdict, size_t verdict_len, const char *platform,
                             char *why, size_t why_size);

/** A report as filed: strings are NUL-terminated, msgpack borrowed for the call. */
struct epcs_case_report {
    /** The partner whose key filed it. */
    const char *filed_by;
    const char *url;
    /** The platform's partner id: deletion requests go to it. */
    const char *platform;
    const char *election;
    const char *category;
    /** The day of the posting, YYYY-MM-DD. */
    const char *date;
    /** The facts as received (msgpack map). */
    const char *facts;
    size_t facts_len;
    /** The verdict (msgpack map with verdict, article, ruleset, actions, ...) without a
     * `decision`: the store adds the id it gives the decision. */
    const char *verdict;
    size_t verdict_len;
    /** The decision that made it, for the decision log, its id unset and its verdict the one
     * above (NULL: none is logged). Borrowed for the call; its check as msgpack bytes. */
    const struct epcs_decision *decision;
    int64_t now_us;
    /** Nonzero when a partner's key (not staff's) filed it: the answer is then the report as
     * that partner reads it later (epcs_cases_get_report with `filer`). */
    int partner_view;
    /** Nonzero when staff filed it (or epcsd runs without keys): its requests are sent at
     * once. A partner's are sent at once only if staff set its policy to "send"
     * (epcs_cases_set_policy), else held until staff confirm them (epcs_cases_review). */
    int by_staff;
    /** A retry of a filing with the same key and request gets the first answer again. */
    struct epcs_case_idempotency idempotency;
};

/** What epcs_cases_file did. */
struct epcs_case_filed {
    /** The report: the new one, or the one of the same posting it joined. */
    uint64_t id;
    /** Nonzero when the filing joined an existing report (made no report and no request). */
    int joined;
    /** What the answer waits for under --audit sync; 0: nothing (always on PostgreSQL, whose
     * step commits its entries of the log itself). */
    uint64_t ticket;
    /** Nonzero when this was a retry: nothing was filed, and the first answer is packed. */
    int replayed;
};

/**
 * Files a report in one durable transaction and packs the report to `pk` as that transaction
 * left it (as epcs_cases_get_report, with `joined`).
 *
 * A report of a posting (epcs_cases_posting) that already has a report for the same election
 * and category joins it: the filer becomes one of its reporters (a report_joined step), unless
 * it is one already (then nothing changes), and no request is made; when the filer's reports
 * send at once and the report's requests are held, they are sent (as epcs_cases_review
 * confirms). A report that lacked facts (needs_facts) is joined only by a filing that lacks
 * facts too. Otherwise a new report is stored with one request per action of its verdict,
 * held or sent as `by_staff` says, its decision and every step's event.
 *
 * With an Idempotency-Key, the answer is kept with the key in the same transaction: a retry
 * with the same key and request gets that answer again (`replayed`, nothing filed, the
 * report as it was then), one with the same key and another request gets KEY_REUSED.
 *
 * Returns EPCS_CASES_OK with `filed` set, EPCS_CASES_KEY_REUSED or EPCS_CASES_LOG_REFUSED
 * (nothing stored), EPCS_CASES_UNAVAILABLE (see it), or EPCS_CASES_FAILED with `err` filled
 * (nothing stored). Every write below may return EPCS_CASES_UNAVAILABLE too.
 */
int epcs_cases_file(struct epcs_cases *cases, const struct epcs_case_report *report,
                    msgpack_packer *pk, struct epcs_case_filed *filed, char *err, size_t err_size);

/** A partner's answer to one request. */
struct epcs_case_answer {
    const char *partner;
    uint64_t request;
    /** done, objected or data_submitted */
    const char *status;
    /** Optional (NULL); required by the caller for objections. */
    const char *reason;
    size_t reason_len;
    /** Optional msgpack value (NULL). */
    const char *data;
    size_t data_len;
    int64_t now_us;
    /** A retry of an answer with the same key and request gets the first answer again. */
    struct epcs_case_idempotency idempotency;
};

/**
 * Records an answer, closes the other open or overdue attempts of the request's chain, and
 * packs the answered request to `pk` (a retry under the same Idempotency-Key: the first answer,
 * recording nothing). Returns EPCS_CASES_OK (with `ticket` as epcs_cases_file sets it),
 * KEY_REUSED, NOT_FOUND, CLOSED (the status in `detail`), NO_OBJECTION,
 * TOO_LATE (the end of the objection period in `detail`), LOG_REFUSED, or FAILED (`detail`
 * says why).
 */
int epcs_cases_answer(struct epcs_cases *cases, const struct epcs_case_answer *answer,
                      msgpack_packer *pk, uint64_t *ticket, char *detail, size_t detail_size);

/** Staff's decision on a report whose requests are held. */
struct epcs_case_review {
    /** The staff partner id that decides. */
    const char *staff;
    uint64_t report;
    /** Nonzero: dismiss the held requests; 0: send them. */
    int dismiss;
    /** Why (NULL: none given; the caller requires one to dismiss), `reason_len` bytes. */
    const char *reason;
    size_t reason_len;
    int64_t now_us;
};

/**
 * Confirms (sends, their due times and objection periods from now on) or dismisses the held
 * requests of a report, as steps of the staff member's, and packs the report to `pk` (staff's
 * view). Returns EPCS_CASES_OK (with `ticket` as epcs_case_filed has it), NOT_FOUND (no such
 * report), NOT_HELD (its status in `detail`), LOG_REFUSED, or FAILED (`detail` says why).
 */
int epcs_cases_review(struct epcs_cases *cases, const struct epcs_case_review *review,
                      msgpack_packer *pk, uint64_t *ticket, char *detail, size_t detail_size);

/** What staff set for a partner's reports. */
struct epcs_case_policy {
    const char *partner;
    /** Nonzero: its reports' requests are sent at once; 0: held for staff. */
    int send;
    /** The staff partner id that sets it. */
    const char *by;
    int64_t now_us;
};

/**
 * Packs {partner, reports: "send" | "hold", default, set_at, set_by} for `partner` (default
 * true and "hold" when staff never set it). Returns 0, or -1 with `err`.
 */
int epcs_cases_get_policy(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                          const char *partner, msgpack_packer *pk, char *err, size_t err_size);

/**
 * Sets a partner's policy and packs it as epcs_cases_get_policy does. A change is one
 * partner_policy_set event in the decision log (about the partner, with `by` and the previous
 * value), written with it; setting what is in force already changes and logs nothing.
 * Returns EPCS_CASES_OK (with `ticket`), LOG_REFUSED or FAILED.
 */
int epcs_cases_set_policy(struct epcs_cases *cases, const struct epcs_case_policy *policy,
                          msgpack_packer *pk, uint64_t *ticket, char *err, size_t err_size);

/**
 * Handles every open request due at `now_us` or earlier, each in its own transaction: marks
 * it overdue, then sends the next attempt or makes the escalation its action asks for
 * (held requests are not due: they have no due time until staff confirm them). Stops after
 * `limit` requests. Returns the number handled, or -1 with `err` filled (what was handled
 * before stays handled; the rest waits for the next sweep).
 */
int epcs_cases_sweep(struct epcs_cases *cases, int64_t now_us, size_t limit, char *err,
                     size_t err_size);

/**
 * A reader from the store's own pool (opened when none is free), the calling thread's until
 * epcs_cases_reader_release: reads on the thread pool take one per job. The read functions
 * below take it with the store it came from; each returns EPCS_CASES_READ_UNAVAILABLE where it
 * says -1 when the store's database cannot be reached now. NULL with `err` filled (on
 * PostgreSQL only when memory runs out: its connection is taken by the first read).
 */
struct epcs_cases_reader *epcs_cases_reader_acquire(struct epcs_cases *cases, char *err,
                                                    size_t err_size);
/** Gives `reader` (from epcs_cases_reader_acquire; NULL accepted) back to the pool. */
void epcs_cases_reader_release(struct epcs_cases *cases, struct epcs_cases_reader *reader);

/**
 * Packs report `id`: its fields, the verdict as answered (`answer`), its reporters, requests
 * and history. With `filer` (a partner id; NULL for staff), only a report that partner filed
 * or joined, and of it only that partner among the reporters, the requests addressed to it
 * and their steps besides the report's own (but the other reporters' joins): a request to
 * another partner, with its answer, is that partner's and the staff's to read, and so is what
 * another reporter said. Returns 0, 1 when there is no such report (for `filer`), -1 with
 * `err`.
 */
int epcs_cases_get_report(struct epcs_cases *cases, struct epcs_cases_reader *reader, uint64_t id,
                          const char *filer, msgpack_packer *pk, char *err, size_t err_size);

/** GET /v1/reports filters; NULL or 0 means any. */
struct epcs_report_query {
    const char *status;
    const char *platform;
    const char *election;
    const char *category;
    /** Only reports filed first by this partner id (NULL: anyone's). */
    const char *filed_by;
    /** Only reports this partner id filed or joined (NULL: anyone's). */
    const char *reporter;
    /** Filed at or after / before (microseconds since the epoch, UTC). */
    int64_t from_us;
    int64_t to_us;
    /** Only ids above this one (the `next` of the previous page). */
    uint64_t after;
    size_t limit;
};

/** Packs {reports: [summary, ...], next: id|nil}, oldest first. 0, or -1 with `err`. */
int epcs_cases_list_reports(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                            const struct epcs_report_query *query, msgpack_packer *pk, char *err,
                            size_t err_size);

/**
 * Appends the matching reports as CSV (RFC 4180: a header row, CRLF line ends, fields with a
 * comma, quote or line break quoted; a cell starting with = + - @, tab or CR gets a leading '
 * so that spreadsheets do not run it). `next` is set to the last id when more remain, else 0.
 * Returns 0, or -1 with `err`.
 */
int epcs_cases_export_csv(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                          const struct epcs_report_query *query, struct epcs_buf *out,
                          uint64_t *next, char *err, size_t err_size);

/** A partner's queue: `status` one of open, overdue, done, objected, data_submitted,
 * escalated, pending (open or overdue) or all. Held and dismissed requests were never sent:
 * no queue holds them. */
struct epcs_request_query {
    const char *partner;
    const char *status;
    uint64_t after;
    size_t limit;
};

/**
 * Packs request `id`, as a queue lists it; with `partner`, only if addressed to that partner.
 * Returns 0, 1 when there is no such request (for `partner`), -1 with `err`.
 */
int epcs_cases_get_request(struct epcs_cases *cases, struct epcs_cases_reader *reader, uint64_t id,
                           const char *partner, msgpack_packer *pk, char *err, size_t err_size);

/** Packs {requests: [request, ...], next: id|nil}, oldest first. 0, or -1 with `err`. */
int epcs_cases_list_requests(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                             const struct epcs_request_query *query, msgpack_packer *pk, char *err,
                             size_t err_size);

/**
 * Appends the matching requests as CSV, as epcs_cases_export_csv does reports: the request's
 * fields but `action` and the answer's `data`, the answer as `answered_at`, `reason`, `via`.
 */
int epcs_cases_export_requests_csv(struct epcs_cases *cases, struct epcs_cases_reader *reader,
                                   const struct epcs_request_query *query, struct epcs_buf *out,
                                   uint64_t *next, char *err, size_t err_size);

#endif
