#ifndef EPCS_CASE_STEPS_H
#define EPCS_CASE_STEPS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "case_rules.h"
#include "cases.h"

/*
 * The steps of a case, written once for every backend: filing (a new case or a join), an
 * answer and the chain it closes, staff's review of held requests, a partner's policy and an
 * overdue request's consequences. Each runs inside a transaction its backend has begun, and
 * reaches the tables only through the backend's primitives (struct epcs_case_tx_ops); the
 * backend commits on EPCS_CASES_OK and rolls back otherwise.
 *
 * A primitive returns EPCS_CASES_OK, EPCS_CASES_NOT_FOUND where said, EPCS_CASES_LOG_REFUSED
 * (take_log_id), or EPCS_CASES_FAILED with the transaction's `err` filled.
 */

/** A transaction of a case store backend; the backend's state follows. */
struct epcs_case_tx {
    const struct epcs_case_tx_ops *ops;
    /** Where a step or a primitive says why it failed or refused (a refusal's detail). */
    char *err;
    size_t err_size;
};

/** A report's row as the steps need it. */
struct epcs_case_report_row {
    char status[24];
    char verdict[16];
    char filed_by[EPCS_KEY_PARTNER_MAX];
    char election[64];
};

/** Which unanswered attempts of a chain epcs_case_tx_ops.chain_members lists. */
enum epcs_case_chain_part {
    /** Open or overdue: what one answer answers. */
    EPCS_CASE_CHAIN_UNANSWERED,
    /** Overdue only: what an escalation marks escalated. */
    EPCS_CASE_CHAIN_OVERDUE,
};

struct epcs_case_tx_ops {
    /* -- the decision log -- */
    /** A decision-log id for an entry of this transaction (0 with the log off), or LOG_REFUSED
     * when the log cannot take one. */
    int (*take_log_id)(struct epcs_case_tx *tx, uint64_t *id);
    /** The event of `step` as log entry `id`, written with the transaction. */
    int (*log_event)(struct epcs_case_tx *tx, uint64_t id, const struct epcs_case_step *step);
    /** The report's decision as log entry `id`, its verdict `answer` (with that id). */
    int (*log_decision)(struct epcs_case_tx *tx, uint64_t id, const struct epcs_case_report *report,
                        const struct epcs_buf *answer);
    /** The step's history row, citing log entry `log_id` (0: none). */
    int (*insert_history)(struct epcs_case_tx *tx, const struct epcs_case_step *step,
                          uint64_t log_id);

    /* -- reports -- */
    /** A new report in status `status`, its id into `id`. */
    int (*insert_report)(struct epcs_case_tx *tx, const struct epcs_case_report *report,
                         const struct epcs_case_verdict *view, const char *posting,
                         uint64_t decision, const struct epcs_buf *answer, const char *status,
                         uint64_t *id);
    /** Report `id` for a change to it or its requests (locked until the end of the
     * transaction where other writers may meet it). NOT_FOUND when there is none. */
    int (*load_report)(struct epcs_case_tx *tx, uint64_t id, struct epcs_case_report_row *row);
    int (*count_requests)(struct epcs_case_tx *tx, uint64_t report,
                          struct epcs_case_request_counts *counts);
    int (*set_report_status)(struct epcs_case_tx *tx, uint64_t report, const char *status,
                             int64_t now);
    /**
     * The report already made for the posting, election and category of `report` (id 0:
     * none); with `decides`, one that lacked facts (needs_facts) does not count. Two filings
     * of one posting never both find none: the second waits for the first's transaction.
     */
    int (*find_case)(struct epcs_case_tx *tx, const char *posting,
                     const struct epcs_case_report *report, int decides, uint64_t *id);
    /** Whether `partner` reported `report` already. */
    int (*is_reporter)(struct epcs_case_tx *tx, uint64_t report, const char *partner, int *is);
    int (*add_reporter)(struct epcs_case_tx *tx, uint64_t report,
                        const struct epcs_case_report *filing);

    /* -- partner policies -- */
    /** Keeps every other change of `partner`'s policy out until the end of the transaction,
     * so that the policy read next is the one this change replaces. */
    int (*lock_policy)(struct epcs_case_tx *tx, const char *partner);
    /** Whether `partner`'s reports send their requests at once (staff set it to "send"). */
    int (*policy_sends)(struct epcs_case_tx *tx, const char *partner, int *sends);
    int (*put_policy)(struct epcs_case_tx *tx, const struct epcs_case_policy *policy);

    /* -- requests -- */
    /** A new request (its chain its own id when `new_request->chain` is 0), its id into `id`;
     * `action` is its action map as msgpack. */
    int (*insert_request)(struct epcs_case_tx *tx, const struct epcs_case_new_request *new_request,
                          const struct epcs_buf *action, const struct epcs_case_timing *timing,
                          uint64_t *id);
    /** Request `id` for a change to it (locked after its report, where other writers may meet
     * them), its action into `row->action`. NOT_FOUND when there is none. */
    int (*load_request)(struct epcs_case_tx *tx, uint64_t id, struct epcs_case_request_row *row);
    /** Ids of `chain`'s requests in `part` other than `except`, in order, at most `max`. */
    int (*chain_members)(struct epcs_case_tx *tx, uint64_t chain, uint64_t except,
                         enum epcs_case_chain_part part, uint64_t *ids, size_t max, size_t *count);
    /** Ids of `report`'s held requests, in order, at most `max`. */
    int (*held_requests)(struct epcs_case_tx *tx, uint64_t report, uint64_t *ids, size_t max,
                         size_t *count);
    int (*set_request_status)(struct epcs_case_tx *tx, uint64_t id, const char *status,
                              int64_t now);
    /** The answer on its request. */
    int (*store_answer)(struct epcs_case_tx *tx, const struct epcs_case_answer *answer);
    /** Request `sibling` answered by `answer`, given to another attempt of its chain. */
    int (*answer_via)(struct epcs_case_tx *tx, uint64_t sibling,
                      const struct epcs_case_answer *answer);
    /** A held request sent at `now`, with `timing`. */
    int (*send_request)(struct epcs_case_tx *tx, uint64_t id, int64_t now,
                        const struct epcs_case_timing *timing);

    /* -- Idempotency-Key -- */
    /**
     * The key looked up: OK with `found` 0 (a first call: a concurrent one with the key waits
     * for this transaction), or 1 and `kept` filled (a retry of the same request); KEY_REUSED
     * for another request under the key.
     */
    int (*idempotency_lookup)(struct epcs_case_tx *tx, const char *partner, const char *scope,
                              const struct epcs_case_idempotency *idempotency, int *found,
                              struct epcs_case_kept_answer *kept);
    /** The write's answer kept with its key. */
    int (*idempotency_keep)(struct epcs_case_tx *tx, const char *partner, const char *scope,
                            const struct epcs_case_idempotency *idempotency,
                            const struct epcs_case_kept_answer *kept, int64_t now_us);

    /* -- answers, as the readers pack them, seeing the transaction -- */
    /** As epcs_cases_get_report, with `joined` as epcs_case_pack_report takes it: 0 (1: none). */
    int (*pack_report)(struct epcs_case_tx *tx, uint64_t id, const char *reporter, int joined,
                       msgpack_packer *pk);
    /** As epcs_cases_get_request for staff. */
    int (*pack_request)(struct epcs_case_tx *tx, uint64_t id, msgpack_packer *pk);
    /** As epcs_cases_get_policy. */
    int (*pack_policy)(struct epcs_case_tx *tx, const char *partner, msgpack_packer *pk);
};

/** The writes of the store, each one transaction. */
enum epcs_case_write_kind {
    EPCS_CASE_FILE,
    EPCS_CASE_ANSWER,
    EPCS_CASE_REVIEW,
    EPCS_CASE_POLICY,
};

/**
 * One write, as epcs_cases_file, _answer, _review and _set_policy make it: what it is, what of
 * its input is read before its transaction begins, and what it did. Set `kind`, the one input
 * of that kind and, for a filing, `filed`; the rest is epcs_case_write_prepare's.
 */
struct epcs_case_write {
    enum epcs_case_write_kind kind;
    union {
        const struct epcs_case_report *report;
        const struct epcs_case_answer *answer;
        const struct epcs_case_review *review;
        const struct epcs_case_policy *policy;
    } in;
    /** A filing's outcome, the caller's. */
    struct epcs_case_filed *filed;
    /* A filing's posting and verdict, read before the transaction. */
    char posting[EPCS_CASES_POSTING_MAX];
    msgpack_zone zone;
    int zone_ready;
    struct epcs_case_verdict view;
    struct epcs_case_action actions[EPCS_CASE_MAX_ACTIONS];
    size_t count;
};

/**
 * Reads what `write` needs before any transaction: a filing's posting, verdict and actions, so
 * that a filing that does not read is refused without touching the database. 0, or -1 with
 * `err` (the write is then EPCS_CASES_FAILED). epcs_case_write_dispose it in any case.
 */
int epcs_case_write_prepare(struct epcs_case_write *write, char *err, size_t err_size);

/**
 * Runs `write` in the transaction `tx` has open and packs its answer into `out`: a filing (a
 * new case or a join) or an answer under an Idempotency-Key is the kept answer of a retry, or
 * is kept with its key; a review packs the report, a policy the partner's policy. Returns as
 * the write's epcs_cases_* function says; the backend commits on EPCS_CASES_OK.
 */
int epcs_case_write_run(struct epcs_case_tx *tx, struct epcs_case_write *write,
                        struct epcs_buf *out);

/** Frees what epcs_case_write_prepare read. */
void epcs_case_write_dispose(struct epcs_case_write *write);

/**
 * Request `id`, found open and due at `now`, marked overdue with what follows from its action:
 * nothing, the next attempt, or the escalation. A request found no longer open (another
 * replica's sweep took it first) is left as it is, `*handled` 0.
 */
int epcs_case_overdue(struct epcs_case_tx *tx, uint64_t id, int64_t now, int *handled);

#endif
