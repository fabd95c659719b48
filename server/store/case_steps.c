/* The steps of a case over a backend's primitives (case_steps.h). */
#include "case_steps.h"

#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "log.h"

/* ---- steps and requests ------------------------------------------------------------------- */

/* The step's history row and, with the log on, its event, in the transaction under way: both
   are stored or neither. */
static int record_step(struct epcs_case_tx *tx, const struct epcs_case_step *step)
{
    uint64_t log_id;
    int rc = tx->ops->take_log_id(tx, &log_id);
    if (rc == EPCS_CASES_OK && log_id != 0)
        rc = tx->ops->log_event(tx, log_id, step);
    return rc == EPCS_CASES_OK ? tx->ops->insert_history(tx, step, log_id) : rc;
}

static int out_of_memory(struct epcs_case_tx *tx)
{
    snprintf(tx->err, tx->err_size, "out of memory");
    return EPCS_CASES_FAILED;
}

static int create_request(struct epcs_case_tx *tx, const struct epcs_case_new_request *new_request,
                          uint64_t *id)
{
    const struct epcs_case_action *action = new_request->action;
    struct epcs_buf spec = {0};
    msgpack_packer spec_pk;
    msgpack_packer_init(&spec_pk, &spec, epcs_buf_msgpack_write);
    msgpack_pack_object(&spec_pk, *action->map);
    int sent = !new_request->held;
    /* A held request gets its due time and objection period when staff send it. */
    struct epcs_case_timing timing = {.has_due = 0};
    if (sent)
        timing = epcs_case_timing_of(action, new_request->now_us);
    int rc = spec.failed ? out_of_memory(tx)
                         : tx->ops->insert_request(tx, new_request, &spec, &timing, id);
    epcs_buf_free(&spec);
    if (rc != EPCS_CASES_OK)
        return rc;
    struct epcs_case_detail detail;
    epcs_case_sent_detail(&detail, new_request->report, action, new_request->attempt,
                          timing.has_due ? &timing.due_us : NULL, new_request->follows);
    struct epcs_case_step step = {.report = new_request->report,
                                  .request = *id,
                                  .event = sent ? "request_sent" : "request_held",
                                  .status = sent ? "open" : "held",
                                  .actor = EPCS_CASE_ACTOR,
                                  .partner = action->to,
                                  .election = new_request->election,
                                  .detail = &detail,
                                  .at_us = new_request->now_us};
    rc = record_step(tx, &step);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* A step of `request`, a request of `row`'s chain (or `row`'s own), about its addressee, taken
   by `actor` at `now`; `detail` is borrowed. */
static struct epcs_case_step request_step(const struct epcs_case_request_row *row, uint64_t request,
                                          const char *event, const char *status, const char *actor,
                                          const struct epcs_case_detail *detail, int64_t now)
{
    return (struct epcs_case_step){.report = row->report,
                                   .request = request,
                                   .event = event,
                                   .status = status,
                                   .actor = actor,
                                   .partner = row->partner,
                                   .election = row->election,
                                   .detail = detail,
                                   .at_us = now};
}

/* Report `report`'s row; one that went missing inside a step is a failure, not a refusal. */
static int load_report_row(struct epcs_case_tx *tx, uint64_t report,
                           struct epcs_case_report_row *row)
{
    int rc = tx->ops->load_report(tx, report, row);
    if (rc == EPCS_CASES_NOT_FOUND) {
        snprintf(tx->err, tx->err_size, "report %llu vanished", (unsigned long long)report);
        return EPCS_CASES_FAILED;
    }
    return rc;
}

/* Brings the report's status in line with its requests after a change to them. */
static int refresh_report(struct epcs_case_tx *tx, uint64_t report, int64_t now)
{
    struct epcs_case_report_row row;
    struct epcs_case_request_counts counts;
    int rc = load_report_row(tx, report, &row);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->count_requests(tx, report, &counts);
    if (rc != EPCS_CASES_OK)
        return rc;
    const char *status = epcs_case_report_status(row.verdict, &counts);
    rc = tx->ops->set_report_status(tx, report, status, now);
    if (rc != EPCS_CASES_OK || strcmp(status, row.status) == 0 || strcmp(status, "closed") != 0)
        return rc;
    struct epcs_case_step step = {.report = report,
                                  .event = "report_closed",
                                  .status = status,
                                  .actor = EPCS_CASE_ACTOR,
                                  .partner = row.filed_by,
                                  .election = row.election,
                                  .at_us = now};
    return record_step(tx, &step);
}

/* ---- filing ------------------------------------------------------------------------------- */

/* Takes the report's decision id (before its steps', so the decision comes first in the log)
   and makes the answer the report keeps: the verdict with that id. */
static int decide(struct epcs_case_tx *tx, const struct epcs_case_report *report,
                  uint64_t *decision, struct epcs_buf *answer)
{
    *decision = 0;
    int rc = report->decision != NULL ? tx->ops->take_log_id(tx, decision) : EPCS_CASES_OK;
    if (rc != EPCS_CASES_OK)
        return rc;
    if (*decision == 0)
        return epcs_buf_append(answer, report->verdict, report->verdict_len) == 0
                   ? EPCS_CASES_OK
                   : out_of_memory(tx);
    if (epcs_case_with_decision(report->verdict, report->verdict_len, *decision, answer) != 0)
        return snprintf(tx->err, tx->err_size, "the verdict is not a map"), EPCS_CASES_FAILED;
    return tx->ops->log_decision(tx, *decision, report, answer);
}

/* A new case: the report, its filer as its first reporter, and a request per action. */
static int file_new(struct epcs_case_tx *tx, const struct epcs_case_report *report,
                    const struct epcs_case_verdict *view, const struct epcs_case_action *actions,
                    size_t count, const char *posting, int held, uint64_t *id)
{
    struct epcs_case_request_counts counts = {.all = (long long)count,
                                              .pending = held ? 0 : (long long)count,
                                              .held = held ? (long long)count : 0};
    const char *status = epcs_case_report_status(view->verdict, &counts);
    int64_t now = report->now_us;
    uint64_t decision;
    struct epcs_buf answer = {0};
    int rc = decide(tx, report, &decision, &answer);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->insert_report(tx, report, view, posting, decision, &answer, status, id);
    epcs_buf_free(&answer);
    if (rc != EPCS_CASES_OK)
        return rc;
    rc = tx->ops->add_reporter(tx, *id, report);
    struct epcs_case_detail detail;
    epcs_case_detail_begin(&detail, 6 + (decision != 0));
    epcs_case_detail_str(&detail, "url", report->url);
    epcs_case_detail_str(&detail, "platform", report->platform);
    epcs_case_detail_str(&detail, "category", report->category);
    epcs_case_detail_str(&detail, "date", report->date);
    epcs_case_detail_str(&detail, "verdict", view->verdict);
    epcs_case_detail_str(&detail, "article", view->article);
    if (decision != 0)
        epcs_case_detail_id(&detail, "decision", decision);
    struct epcs_case_step step = {.report = *id,
                                  .event = "report_filed",
                                  .status = status,
                                  .actor = report->filed_by,
                                  .partner = report->filed_by,
                                  .election = report->election,
                                  .detail = &detail,
                                  .at_us = now};
    if (rc == EPCS_CASES_OK)
        rc = record_step(tx, &step);
    epcs_buf_free(&detail.buf);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++) {
        struct epcs_case_new_request new_request = {.report = *id,
                                                    .election = report->election,
                                                    .action = &actions[i],
                                                    .attempt = 1,
                                                    .held = held,
                                                    .now_us = now};
        uint64_t request;
        rc = create_request(tx, &new_request, &request);
    }
    return rc;
}

static int decide_held(struct epcs_case_tx *tx, uint64_t report, const char *staff,
                       const struct epcs_case_detail *why, int64_t now, int dismissed);

/*
 * A report of a posting that has its case already: the filer becomes one of its reporters
 * (a step of the case), or, when it is one already, nothing changes. No request is made; when
 * the filer's reports send at once and the case's requests are held, they are sent now.
 */
static int join(struct epcs_case_tx *tx, const struct epcs_case_report *report, uint64_t id,
                int sends)
{
    int is = 0;
    int rc = tx->ops->is_reporter(tx, id, report->filed_by, &is);
    if (rc != EPCS_CASES_OK || is)
        return rc;
    struct epcs_case_report_row row;
    rc = load_report_row(tx, id, &row);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->add_reporter(tx, id, report);
    struct epcs_case_detail detail;
    epcs_case_detail_begin(&detail, 2);
    epcs_case_detail_str(&detail, "url", report->url);
    epcs_pack_cstr(&detail.pk, "facts");
    epcs_case_pack_raw(&detail.pk, report->facts, report->facts_len);
    struct epcs_case_step joined = {.report = id,
                                    .event = "report_joined",
                                    .status = row.status,
                                    .actor = report->filed_by,
                                    .partner = report->filed_by,
                                    .election = report->election,
                                    .detail = &detail,
                                    .at_us = report->now_us};
    if (rc == EPCS_CASES_OK)
        rc = record_step(tx, &joined);
    epcs_buf_free(&detail.buf);
    if (rc != EPCS_CASES_OK || !sends || strcmp(row.status, "held") != 0)
        return rc == EPCS_CASES_OK ? refresh_report(tx, id, report->now_us) : rc;
    epcs_case_detail_begin(&detail, 1);
    epcs_case_detail_str(&detail, "via", "report_joined");
    rc = decide_held(tx, id, report->filed_by, &detail, report->now_us, 0);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* The filing in the transaction under way: a new case or a join. */
static int filing(struct epcs_case_tx *tx, const struct epcs_case_report *report,
                  const struct epcs_case_verdict *view, const struct epcs_case_action *actions,
                  size_t count, const char *posting, struct epcs_case_filed *filed)
{
    int sends = report->by_staff;
    int rc = sends ? EPCS_CASES_OK : tx->ops->policy_sends(tx, report->filed_by, &sends);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->find_case(tx, posting, report, strcmp(view->verdict, "needs_facts") != 0,
                                &filed->id);
    if (rc != EPCS_CASES_OK)
        return rc;
    filed->joined = filed->id != 0;
    if (filed->joined)
        return join(tx, report, filed->id, sends);
    return file_new(tx, report, view, actions, count, posting, !sends, &filed->id);
}

/* What the packing of a write's answer returned, as the write's outcome. */
static int packed(struct epcs_case_tx *tx, int rc, const struct epcs_buf *answer, const char *what,
                  uint64_t id)
{
    if (rc == 0 && !answer->failed)
        return EPCS_CASES_OK;
    if (rc == 1)
        snprintf(tx->err, tx->err_size, "%s %llu vanished", what, (unsigned long long)id);
    else if (answer->failed)
        snprintf(tx->err, tx->err_size, "out of memory");
    return EPCS_CASES_FAILED;
}

/* ---- answers ------------------------------------------------------------------------------ */

static int record_answer(struct epcs_case_tx *tx, const struct epcs_case_answer *answer,
                         const struct epcs_case_request_row *row, int late)
{
    struct epcs_case_detail detail;
    epcs_case_detail_begin(&detail, 3 + (answer->reason != NULL));
    epcs_case_detail_id(&detail, "report", row->report);
    epcs_case_detail_str(&detail, "status", answer->status);
    if (answer->reason != NULL)
        epcs_case_detail_text(&detail, "reason", answer->reason, answer->reason_len);
    epcs_pack_cstr(&detail.pk, "late");
    if (late)
        msgpack_pack_true(&detail.pk);
    else
        msgpack_pack_false(&detail.pk);
    /* The addressee answers: the row's partner is the answer's. */
    struct epcs_case_step step =
        request_step(row, answer->request, "request_answered", answer->status, answer->partner,
                     &detail, answer->now_us);
    int rc = record_step(tx, &step);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* The other attempts of the chain ask the same thing: one answer answers them all, each with a
   step of its own. */
static int answer_siblings(struct epcs_case_tx *tx, const struct epcs_case_answer *answer,
                           const struct epcs_case_request_row *row)
{
    uint64_t siblings[EPCS_CASE_MAX_CHAIN];
    size_t count = 0;
    int rc = tx->ops->chain_members(tx, row->chain, answer->request, EPCS_CASE_CHAIN_UNANSWERED,
                                    siblings, EPCS_CASE_MAX_CHAIN, &count);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++) {
        rc = tx->ops->answer_via(tx, siblings[i], answer);
        struct epcs_case_detail detail;
        epcs_case_detail_begin(&detail, 3);
        epcs_case_detail_id(&detail, "report", row->report);
        epcs_case_detail_str(&detail, "status", answer->status);
        epcs_case_detail_id(&detail, "via", answer->request);
        struct epcs_case_step step =
            request_step(row, siblings[i], "request_answered", answer->status, answer->partner,
                         &detail, answer->now_us);
        if (rc == EPCS_CASES_OK)
            rc = record_step(tx, &step);
        epcs_buf_free(&detail.buf);
    }
    return rc;
}

static int answering(struct epcs_case_tx *tx, const struct epcs_case_answer *answer)
{
    struct epcs_case_request_row row = {.action = {0}};
    int rc = tx->ops->load_request(tx, answer->request, &row);
    int late = 0;
    if (rc == EPCS_CASES_OK)
        rc = epcs_case_check_answerable(answer, &row, &late, tx->err, tx->err_size);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->store_answer(tx, answer);
    if (rc == EPCS_CASES_OK)
        rc = record_answer(tx, answer, &row, late);
    if (rc == EPCS_CASES_OK)
        rc = answer_siblings(tx, answer, &row);
    if (rc == EPCS_CASES_OK)
        rc = refresh_report(tx, row.report, answer->now_us);
    epcs_buf_free(&row.action);
    return rc;
}

/* ---- staff review of held requests -------------------------------------------------------- */

/* A report-level step taken by staff (report_confirmed, report_dismissed). */
static int staff_step(struct epcs_case_tx *tx, uint64_t report, const char *event,
                      const char *status, const char *staff, const struct epcs_case_detail *detail,
                      int64_t now)
{
    struct epcs_case_report_row row;
    int rc = load_report_row(tx, report, &row);
    struct epcs_case_step step = {.report = report,
                                  .event = event,
                                  .status = status,
                                  .actor = staff,
                                  .partner = row.filed_by,
                                  .election = row.election,
                                  .detail = detail,
                                  .at_us = now};
    return rc == EPCS_CASES_OK ? record_step(tx, &step) : rc;
}

/* Request `id`'s row; one that went missing inside a step is a failure, not a refusal. */
static int load_request_row(struct epcs_case_tx *tx, uint64_t id, struct epcs_case_request_row *row)
{
    int rc = tx->ops->load_request(tx, id, row);
    if (rc == EPCS_CASES_NOT_FOUND) {
        snprintf(tx->err, tx->err_size, "request %llu vanished", (unsigned long long)id);
        return EPCS_CASES_FAILED;
    }
    return rc;
}

/* Sends a held request now, as staff confirmed it: its due time and objection period start. */
static int send_held(struct epcs_case_tx *tx, uint64_t id, const char *staff, int64_t now)
{
    struct epcs_case_request_row row = {.action = {0}};
    int rc = load_request_row(tx, id, &row);
    msgpack_zone zone;
    msgpack_object map;
    if (rc != EPCS_CASES_OK ||
        epcs_case_unpack_action(&zone, row.action.data, row.action.len, &map) != 0) {
        epcs_buf_free(&row.action);
        return rc != EPCS_CASES_OK ? rc : out_of_memory(tx);
    }
    struct epcs_case_action action;
    char why[200];
    if (epcs_case_parse_action(&map, row.platform, 0, &action, why, sizeof(why)) != 0) {
        snprintf(tx->err, tx->err_size, "request %llu: its stored action does not read (%s)",
                 (unsigned long long)id, why);
        rc = EPCS_CASES_FAILED;
    }
    struct epcs_case_timing timing = epcs_case_timing_of(&action, now);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->send_request(tx, id, now, &timing);
    if (rc == EPCS_CASES_OK) {
        struct epcs_case_detail detail;
        epcs_case_sent_detail(&detail, row.report, &action, row.attempt,
                              timing.has_due ? &timing.due_us : NULL, 0);
        struct epcs_case_step step =
            request_step(&row, id, "request_sent", "open", staff, &detail, now);
        rc = record_step(tx, &step);
        epcs_buf_free(&detail.buf);
    }
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&row.action);
    return rc;
}

/* Marks one held request dismissed, with its own step. */
static int dismiss_held(struct epcs_case_tx *tx, uint64_t id, const char *staff, int64_t now)
{
    struct epcs_case_request_row row = {.action = {0}};
    int rc = load_request_row(tx, id, &row);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->set_request_status(tx, id, "dismissed", now);
    struct epcs_case_detail detail;
    epcs_case_detail_begin(&detail, 1);
    epcs_case_detail_id(&detail, "report", row.report);
    struct epcs_case_step step =
        request_step(&row, id, "request_dismissed", "dismissed", staff, &detail, now);
    if (rc == EPCS_CASES_OK)
        rc = record_step(tx, &step);
    epcs_buf_free(&detail.buf);
    epcs_buf_free(&row.action);
    return rc;
}

/* Staff's decision on the report's held requests, `why` borrowed: each sent (confirmed) or
   dismissed with a step of its own after the report's. */
static int decide_held(struct epcs_case_tx *tx, uint64_t report, const char *staff,
                       const struct epcs_case_detail *why, int64_t now, int dismissed)
{
    uint64_t ids[EPCS_CASE_MAX_ACTIONS];
    size_t count = 0;
    int rc = tx->ops->held_requests(tx, report, ids, EPCS_CASE_MAX_ACTIONS, &count);
    if (rc == EPCS_CASES_OK)
        rc = staff_step(tx, report, dismissed ? "report_dismissed" : "report_confirmed",
                        dismissed ? "dismissed" : "open", staff, why, now);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++)
        rc = (dismissed ? dismiss_held : send_held)(tx, ids[i], staff, now);
    return rc == EPCS_CASES_OK ? refresh_report(tx, report, now) : rc;
}

static int review_write(struct epcs_case_tx *tx, const struct epcs_case_review *review,
                        struct epcs_buf *out)
{
    struct epcs_case_report_row row;
    int rc = tx->ops->load_report(tx, review->report, &row);
    if (rc != EPCS_CASES_OK)
        return rc;
    if (strcmp(row.status, "held") != 0) {
        snprintf(tx->err, tx->err_size, "%s", row.status);
        return EPCS_CASES_NOT_HELD;
    }
    struct epcs_case_detail why;
    epcs_case_detail_begin(&why, review->reason != NULL);
    if (review->reason != NULL)
        epcs_case_detail_text(&why, "reason", review->reason, review->reason_len);
    rc = decide_held(tx, review->report, review->staff, &why, review->now_us, review->dismiss);
    epcs_buf_free(&why.buf);
    if (rc != EPCS_CASES_OK)
        return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    return packed(tx, tx->ops->pack_report(tx, review->report, NULL, -1, &pk), out, "report",
                  review->report);
}

/* ---- partner policies --------------------------------------------------------------------- */

static int policy_write(struct epcs_case_tx *tx, const struct epcs_case_policy *policy,
                        struct epcs_buf *out)
{
    int sends;
    int rc = tx->ops->lock_policy(tx, policy->partner);
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->policy_sends(tx, policy->partner, &sends);
    if (rc == EPCS_CASES_OK && sends != policy->send) {
        rc = tx->ops->put_policy(tx, policy);
        /* Not a step of any case: the event alone, about the partner, with who set it. */
        struct epcs_case_detail detail;
        epcs_case_detail_begin(&detail, 4);
        epcs_case_detail_str(&detail, "partner", policy->partner);
        epcs_case_detail_str(&detail, "reports", policy->send ? "send" : "hold");
        epcs_case_detail_str(&detail, "previous", sends ? "send" : "hold");
        epcs_case_detail_str(&detail, "by", policy->by);
        struct epcs_case_step step = {.event = "partner_policy_set",
                                      .partner = policy->partner,
                                      .detail = &detail,
                                      .at_us = policy->now_us};
        uint64_t log_id = 0;
        if (rc == EPCS_CASES_OK)
            rc = tx->ops->take_log_id(tx, &log_id);
        if (rc == EPCS_CASES_OK && log_id != 0)
            rc = tx->ops->log_event(tx, log_id, &step);
        epcs_buf_free(&detail.buf);
    }
    if (rc != EPCS_CASES_OK)
        return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    return tx->ops->pack_policy(tx, policy->partner, &pk) == 0 && !out->failed ? EPCS_CASES_OK
                                                                               : EPCS_CASES_FAILED;
}

/* ---- overdue requests --------------------------------------------------------------------- */

/* The request is overdue; its step tells what the stored action says follows (`consequence`,
   or NULL). */
static int mark_overdue(struct epcs_case_tx *tx, const struct epcs_case_request_row *row,
                        uint64_t id, const msgpack_object *consequence, int64_t now)
{
    int rc = tx->ops->set_request_status(tx, id, "overdue", now);
    if (rc != EPCS_CASES_OK)
        return rc;
    struct epcs_case_detail detail;
    epcs_case_detail_begin(&detail, 2 + (consequence != NULL));
    epcs_case_detail_id(&detail, "report", row->report);
    epcs_case_detail_time(&detail, "due", row->due_us);
    if (consequence != NULL) {
        epcs_pack_cstr(&detail.pk, "overdue");
        msgpack_pack_object(&detail.pk, *consequence);
    }
    struct epcs_case_step step =
        request_step(row, id, "request_overdue", "overdue", EPCS_CASE_ACTOR, &detail, now);
    rc = record_step(tx, &step);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* An unanswered attempt of the chain is escalated: its step names the referral that follows
   it. */
static int mark_escalated(struct epcs_case_tx *tx, const struct epcs_case_request_row *row,
                          uint64_t ignored, uint64_t referral,
                          const struct epcs_case_action *escalation, int64_t now)
{
    int rc = tx->ops->set_request_status(tx, ignored, "escalated", now);
    if (rc != EPCS_CASES_OK)
        return rc;
    struct epcs_case_detail detail;
    epcs_case_detail_begin(&detail, 4);
    epcs_case_detail_id(&detail, "report", row->report);
    epcs_case_detail_id(&detail, "referral", referral);
    epcs_case_detail_str(&detail, "to", escalation->to);
    epcs_case_detail_str(&detail, "article", escalation->article);
    struct epcs_case_step step =
        request_step(row, ignored, "request_escalated", "escalated", EPCS_CASE_ACTOR, &detail, now);
    rc = record_step(tx, &step);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* The attempts are used up: the escalation's request starts a chain of its own, and every
   overdue attempt of the old chain is marked escalated to it. */
static int escalate_chain(struct epcs_case_tx *tx, const struct epcs_case_request_row *row,
                          uint64_t id, const struct epcs_case_action *action, int64_t now)
{
    struct epcs_case_action escalation;
    char why[200];
    if (epcs_case_parse_action(action->escalation, row->platform, 1, &escalation, why,
                               sizeof(why)) != 0) {
        snprintf(tx->err, tx->err_size, "request %llu: its escalation does not read (%s)",
                 (unsigned long long)id, why);
        return EPCS_CASES_FAILED;
    }
    struct epcs_case_new_request next = {.report = row->report,
                                         .election = row->election,
                                         .follows = id,
                                         .now_us = now,
                                         .action = &escalation,
                                         .attempt = 1};
    uint64_t made;
    int rc = create_request(tx, &next, &made);
    uint64_t ignored[EPCS_CASE_MAX_CHAIN];
    size_t count = 0;
    if (rc == EPCS_CASES_OK)
        rc = tx->ops->chain_members(tx, row->chain, 0, EPCS_CASE_CHAIN_OVERDUE, ignored,
                                    EPCS_CASE_MAX_CHAIN, &count);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++)
        rc = mark_escalated(tx, row, ignored[i], made, &escalation, now);
    return rc;
}

/* What the stored action (`map`) says follows an unanswered request: nothing, another attempt
   in the same chain, or once the attempts are used up its escalation. */
static int follow_overdue(struct epcs_case_tx *tx, const struct epcs_case_request_row *row,
                          uint64_t id, const msgpack_object *map, int64_t now)
{
    struct epcs_case_action action;
    char why[200];
    if (epcs_case_parse_action(map, row->platform, 0, &action, why, sizeof(why)) != 0) {
        /* Checked when filed; a stored action that no longer reads is flagged, not acted on. */
        epcs_log(EPCS_LOG_ERROR, "cases", "request %llu: its stored action does not read (%s)",
                 (unsigned long long)id, why);
        return EPCS_CASES_OK;
    }
    if (action.escalation == NULL)
        return EPCS_CASES_OK;
    if (row->attempt >= action.escalate_after)
        return escalate_chain(tx, row, id, &action, now);
    struct epcs_case_new_request next = {.report = row->report,
                                         .election = row->election,
                                         .follows = id,
                                         .now_us = now,
                                         .action = &action,
                                         .chain = row->chain,
                                         .attempt = row->attempt + 1};
    uint64_t made;
    return create_request(tx, &next, &made);
}

int epcs_case_overdue(struct epcs_case_tx *tx, uint64_t id, int64_t now, int *handled)
{
    struct epcs_case_request_row row = {.action = {0}};
    *handled = 0;
    int rc = load_request_row(tx, id, &row);
    /* Taken under its lock: one found answered or overdue meanwhile has had its step. */
    if (rc != EPCS_CASES_OK || strcmp(row.status, "open") != 0) {
        epcs_buf_free(&row.action);
        return rc;
    }
    msgpack_zone zone;
    msgpack_object map;
    if (epcs_case_unpack_action(&zone, row.action.data, row.action.len, &map) != 0) {
        epcs_buf_free(&row.action);
        return out_of_memory(tx);
    }
    *handled = 1;
    rc = mark_overdue(tx, &row, id, epcs_map_get(&map, "overdue"), now);
    if (rc == EPCS_CASES_OK)
        rc = follow_overdue(tx, &row, id, &map, now);
    if (rc == EPCS_CASES_OK)
        rc = refresh_report(tx, row.report, now);
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&row.action);
    return rc;
}

/* ---- writes ------------------------------------------------------------------------------- */

int epcs_case_write_prepare(struct epcs_case_write *write, char *err, size_t err_size)
{
    write->zone_ready = 0;
    if (write->kind != EPCS_CASE_FILE)
        return 0;
    *write->filed = (struct epcs_case_filed){.id = 0};
    if (epcs_cases_posting(write->in.report->url, write->posting, sizeof(write->posting)) != 0)
        return snprintf(err, err_size, "the url is not an http(s) address"), -1;
    if (!msgpack_zone_init(&write->zone, 4096))
        return snprintf(err, err_size, "out of memory"), -1;
    write->zone_ready = 1;
    return epcs_case_read_filing(&write->zone, write->in.report, &write->view, write->actions,
                                 &write->count, err, err_size);
}

void epcs_case_write_dispose(struct epcs_case_write *write)
{
    if (write->zone_ready)
        msgpack_zone_destroy(&write->zone);
    write->zone_ready = 0;
}

/* A filing or an answer, without its Idempotency-Key: the write and its answer in `out`. */
static int write_and_pack(struct epcs_case_tx *tx, struct epcs_case_write *write,
                          struct epcs_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    if (write->kind == EPCS_CASE_ANSWER) {
        const struct epcs_case_answer *answer = write->in.answer;
        int rc = answering(tx, answer);
        return rc != EPCS_CASES_OK ? rc
                                   : packed(tx, tx->ops->pack_request(tx, answer->request, &pk),
                                            out, "request", answer->request);
    }
    const struct epcs_case_report *report = write->in.report;
    struct epcs_case_filed *filed = write->filed;
    int rc = filing(tx, report, &write->view, write->actions, write->count, write->posting, filed);
    /* Packed before the commit: the answer and the filing it tells of are stored together or
     * not at all, and no later step of another writer's shows in it. */
    if (rc == EPCS_CASES_OK)
        rc = packed(tx,
                    tx->ops->pack_report(tx, filed->id,
                                         report->partner_view ? report->filed_by : NULL,
                                         filed->joined, &pk),
                    out, "report", filed->id);
    return rc;
}

/* A write a client may retry under an Idempotency-Key: a retry gets the kept answer, a first
   call's answer is kept with the key in its transaction. */
static int retriable_write(struct epcs_case_tx *tx, struct epcs_case_write *write,
                           struct epcs_buf *out)
{
    int filing_kind = write->kind == EPCS_CASE_FILE;
    const char *partner = filing_kind ? write->in.report->filed_by : write->in.answer->partner;
    const char *scope = filing_kind ? EPCS_CASE_SCOPE_FILE : EPCS_CASE_SCOPE_ANSWER;
    const struct epcs_case_idempotency *idempotency =
        filing_kind ? &write->in.report->idempotency : &write->in.answer->idempotency;
    int64_t now = filing_kind ? write->in.report->now_us : write->in.answer->now_us;
    if (idempotency->key == NULL)
        return write_and_pack(tx, write, out);
    struct epcs_case_kept_answer retry = {.subject = 0};
    int found = 0;
    int rc = tx->ops->idempotency_lookup(tx, partner, scope, idempotency, &found, &retry);
    if (rc == EPCS_CASES_OK && found) {
        if (filing_kind)
            *write->filed = (struct epcs_case_filed){
                .id = retry.subject, .joined = retry.joined, .replayed = 1};
        rc = epcs_buf_append_buf(out, &retry.answer) == 0 ? EPCS_CASES_OK : out_of_memory(tx);
    }
    epcs_buf_free(&retry.answer);
    if (rc != EPCS_CASES_OK || found || (rc = write_and_pack(tx, write, out)) != EPCS_CASES_OK)
        return rc;
    /* The answer just packed, lent to the row that keeps it. */
    const struct epcs_case_kept_answer kept = {.subject = filing_kind ? write->filed->id
                                                                      : write->in.answer->request,
                                               .joined = filing_kind && write->filed->joined,
                                               .answer = *out};
    return tx->ops->idempotency_keep(tx, partner, scope, idempotency, &kept, now);
}

int epcs_case_write_run(struct epcs_case_tx *tx, struct epcs_case_write *write,
                        struct epcs_buf *out)
{
    switch (write->kind) {
    case EPCS_CASE_FILE:
    case EPCS_CASE_ANSWER:
        return retriable_write(tx, write, out);
    case EPCS_CASE_REVIEW:
        return review_write(tx, write->in.review, out);
    case EPCS_CASE_POLICY:
        return policy_write(tx, write->in.policy, out);
    }
    return snprintf(tx->err, tx->err_size, "no such write"), EPCS_CASES_FAILED;
}
