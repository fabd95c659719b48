/*
 * Reports and requests over HTTP: POST/GET /v1/reports, GET /v1/reports/{id},
 * GET /v1/partners/me/requests, GET /v1/requests/{id}, POST /v1/requests/{id}/response, and
 * the sweep that marks requests overdue and escalates them. Staff read every report and
 * request; a partner reads the reports it filed and the requests addressed to it.
 *
 * Writes are legal records committed with an fsync, and reads and exports may visit 100,000
 * rows: both run on the store's threads (offload.h), reads on connections of the store's own
 * pool, and the answer is sent from the loop when they are done. The event loop never waits
 * on the store's database or the disk; one that cannot be reached is a 503 store_unavailable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <time.h>

#include "cases.h"
#include "dates.h"
#include "decision.h"
#include "log.h"
#include "offload.h"
#include "partner.h"
#include "query.h"
#include "http.h"

#define FALSE_INFORMATION "false_information"
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000
/* An export is meant to be whole; this bounds one answer's memory, `epcs-next` pages on. */
#define CSV_MAX_LIMIT 100000
#define MAX_URL 2048
#define MAX_REASON 2000
/* Requests one sweep handles before it lets the next tick continue. */
#define SWEEP_BATCH 1000

static char *copy_object_string(const msgpack_object *str)
{
    char *copy = malloc(str->via.str.size + 1);
    if (copy != NULL) {
        memcpy(copy, str->via.str.ptr, str->via.str.size);
        copy[str->via.str.size] = '\0';
    }
    return copy;
}

/* Whose reports and requests the caller may read: NULL for staff (and without keys) reads
   everyone's, a partner reads only its own. */
static const char *own_partner(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    const struct epcs_key *key = worker->key;
    return key == NULL || key->role >= EPCS_ROLE_STAFF ? NULL : worker->partner;
}

/* Reads a whole-number id from the path; answers 400 with `message` and returns -1 if it is
   not one. */
static int read_path_id(h2o_req_t *req, const char *text, size_t len, const char *message,
                        uint64_t *id)
{
    if (epcs_parse_unsigned_span(text, len, id) == 0)
        return 0;
    epcs_respond_error(req, 400, "bad_request", "id", "%s", message);
    return -1;
}

/* ---- query strings ------------------------------------------------------------------------ */

static int one_of(const char *value, const char *const *allowed)
{
    for (; *allowed != NULL; allowed++) {
        if (strcmp(value, *allowed) == 0)
            return 1;
    }
    return 0;
}

static int read_limit(h2o_req_t *req, const char *value, size_t max, size_t *limit)
{
    uint64_t number;
    if (epcs_parse_unsigned(value, &number) != 0 || number == 0 || number > max)
        return epcs_respond_error(req, 400, "bad_request", "limit",
                                  "limit must be a whole number from 1 to %zu", max),
               -1;
    *limit = (size_t)number;
    return 0;
}

static int read_after(h2o_req_t *req, const char *value, uint64_t *after)
{
    if (epcs_parse_unsigned(value, after) != 0)
        return epcs_respond_error(req, 400, "bad_request", "after",
                                  "after must be an id (the previous page's next)"),
               -1;
    return 0;
}

/* A listing's page size, read once the query's format is known: an export may be longer than a
   page. NULL `text` gives the default. */
static int read_page_limit(h2o_req_t *req, const char *text, int csv, size_t *limit)
{
    if (text == NULL) {
        *limit = csv ? CSV_MAX_LIMIT : LIST_DEFAULT_LIMIT;
        return 0;
    }
    return read_limit(req, text, csv ? CSV_MAX_LIMIT : LIST_MAX_LIMIT, limit);
}

static int read_format(h2o_req_t *req, const char *value, int *csv)
{
    if (strcmp(value, "csv") != 0)
        return epcs_respond_error(req, 400, "bad_request", "format",
                                  "format must be csv (or ask with Accept)"),
               -1;
    *csv = 1;
    return 0;
}

/* ---- writes on the thread pool ----------------------------------------------------------- */

enum job_kind { JOB_FILE, JOB_ANSWER, JOB_REVIEW, JOB_POLICY };

/* One write, with everything it needs copied out of the request, which may go away meanwhile. */
struct case_job {
    struct epcs_offload base;
    enum job_kind kind;
    struct epcs_cases *cases;
    union {
        struct epcs_case_report report;
        struct epcs_case_answer answer;
        struct epcs_case_review review;
        struct epcs_case_policy policy;
    } in;
    /* Owned copies the inputs point into. */
    char *strings[8];
    struct epcs_buf facts, verdict, data, check;
    struct epcs_decision decision;
    /* Results. */
    int rc;
    struct epcs_case_filed filed;
    char detail[512];
    struct epcs_buf out;
    /* Stored, but the answer asked for as JSON has no JSON form (bin in msgpack facts). */
    int unencodable;
    /* What the request's Idempotency-Key header said, copied. */
    char idempotency_key[EPCS_IDEMPOTENCY_KEY_MAX + 1];
    struct epcs_case_idempotency idempotency;
};

static struct case_job *job_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct case_job, base, base);
}

static void job_free(struct case_job *job)
{
    for (size_t i = 0; i < sizeof(job->strings) / sizeof(job->strings[0]); i++)
        free(job->strings[i]);
    epcs_buf_free(&job->facts);
    epcs_buf_free(&job->verdict);
    epcs_buf_free(&job->data);
    epcs_buf_free(&job->check);
    epcs_buf_free(&job->out);
    free(job);
}

static struct case_job *job_create(h2o_req_t *req, enum job_kind kind)
{
    struct case_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return NULL;
    job->kind = kind;
    job->cases = epcs_worker_of(req)->server->cases;
    job->rc = EPCS_CASES_FAILED;
    return job;
}

/* The report or request the write is about. */
static uint64_t job_subject(const struct case_job *job)
{
    switch (job->kind) {
    case JOB_FILE:
        return job->filed.id;
    case JOB_ANSWER:
        return job->in.answer.request;
    case JOB_REVIEW:
        return job->in.review.report;
    case JOB_POLICY:
        break;
    }
    return 0;
}

static void cb_job_work(struct epcs_offload *base)
{
    struct case_job *job = job_of(base);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    char *detail = job->detail;
    size_t size = sizeof(job->detail);
    switch (job->kind) {
    case JOB_FILE:
        job->rc = epcs_cases_file(job->cases, &job->in.report, &pk, &job->filed, detail, size);
        base->hold_ticket = job->filed.ticket;
        break;
    case JOB_ANSWER:
        job->rc =
            epcs_cases_answer(job->cases, &job->in.answer, &pk, &base->hold_ticket, detail, size);
        break;
    case JOB_REVIEW:
        job->rc =
            epcs_cases_review(job->cases, &job->in.review, &pk, &base->hold_ticket, detail, size);
        break;
    case JOB_POLICY:
        job->rc = epcs_cases_set_policy(job->cases, &job->in.policy, &pk, &base->hold_ticket,
                                        detail, size);
        break;
    }
    job->unencodable = job->rc == EPCS_CASES_OK && epcs_offload_encode(base, &job->out) != 0;
}

/* The answers a refusal of the store gets that only some writes meet: 0 when answered. */
static int respond_refusal(h2o_req_t *req, const struct case_job *job, unsigned long long id)
{
    switch (job->rc) {
    case EPCS_CASES_NOT_FOUND:
        if (job->kind == JOB_REVIEW)
            return epcs_respond_error(req, 404, "unknown_report", "id", "no report %llu", id);
        return epcs_respond_error(req, 404, "unknown_request", "id",
                                  "no request %llu in your queue", id);
    case EPCS_CASES_CLOSED:
        return epcs_respond_error(req, 409, "request_closed", "id",
                                  "request %llu is %s already; it takes no further answer", id,
                                  job->detail);
    case EPCS_CASES_NO_OBJECTION:
        return epcs_respond_error(req, 422, "invalid_fact", "status",
                                  "request %llu admits no objection: its action sets no "
                                  "objection period",
                                  id);
    case EPCS_CASES_TOO_LATE:
        return epcs_respond_error(req, 422, "objection_too_late", "status",
                                  "the objection period of request %llu ended at %s", id,
                                  job->detail);
    case EPCS_CASES_KEY_REUSED:
        return epcs_respond_error(req, 422, "idempotency_key_reused", "Idempotency-Key",
                                  "Idempotency-Key '%s' was sent before with another request; a "
                                  "retry sends the same body to the same path, a new request "
                                  "a new key",
                                  job->idempotency_key);
    case EPCS_CASES_NOT_HELD:
        return epcs_respond_error(
            req, 409, "report_not_held", "id", "report %llu holds no requests %s: it is %s", id,
            job->in.review.dismiss ? "to dismiss" : "for confirmation", job->detail);
    default:
        return -1;
    }
}

static void respond_job(struct epcs_offload *base, h2o_req_t *req)
{
    struct case_job *job = job_of(base);
    unsigned long long id = (unsigned long long)job_subject(job);
    if (job->unencodable) {
        epcs_respond_error(req, 500, "internal", NULL,
                           "the write is stored, but its answer has no JSON form: read it as "
                           "msgpack");
        return;
    }
    if (job->rc == EPCS_CASES_OK) {
        /* A retry's answer is the first one, said to be such. */
        if (job->kind == JOB_FILE && job->filed.replayed)
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("idempotent-replayed"),
                                  0, NULL, H2O_STRLIT("true"));
        epcs_offload_send(base, req, job->kind == JOB_FILE && !job->filed.joined ? 201 : 200,
                          &job->out);
        return;
    }
    if (respond_refusal(req, job, id) == 0)
        return;
    if (job->rc == EPCS_CASES_LOG_REFUSED) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        epcs_respond_error(req, 503, "decision_log_unavailable", NULL,
                           "the decision log cannot take this step now, so nothing was stored; "
                           "retry");
        return;
    }
    if (job->rc == EPCS_CASES_UNAVAILABLE) {
        epcs_log(EPCS_LOG_WARN, "cases", "%s: %s", base->ops->what, job->detail);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        epcs_respond_error(req, 503, "store_unavailable", NULL,
                           "the case store cannot be reached now; retry (under the same "
                           "Idempotency-Key a retry never stores twice)");
        return;
    }
    epcs_log(EPCS_LOG_ERROR, "cases", "%s failed: %s", base->ops->what, job->detail);
    epcs_respond_error(req, 500, "internal", NULL, "the case store could not write this");
}

static void cb_job_destroy(struct epcs_offload *base, int answered)
{
    struct case_job *job = job_of(base);
    if (!answered && job->rc == EPCS_CASES_OK)
        epcs_log(EPCS_LOG_INFO, "cases", "%s (%llu) stored; its client left before the answer",
                 base->ops->what, (unsigned long long)job_subject(job));
    job_free(job);
}

static const struct epcs_offload_ops job_ops[] = {
    [JOB_FILE] = {.what = "filing a report",
                  .work = cb_job_work,
                  .respond = respond_job,
                  .destroy = cb_job_destroy},
    [JOB_ANSWER] = {.what = "answering a request",
                    .work = cb_job_work,
                    .respond = respond_job,
                    .destroy = cb_job_destroy},
    [JOB_REVIEW] = {.what = "reviewing held requests",
                    .work = cb_job_work,
                    .respond = respond_job,
                    .destroy = cb_job_destroy},
    [JOB_POLICY] = {.what = "setting a partner's policy",
                    .work = cb_job_work,
                    .respond = respond_job,
                    .destroy = cb_job_destroy},
};

/* Hands the job to the thread pool; the answer follows from respond_job. Returns 0. */
static int job_start(h2o_req_t *req, struct case_job *job)
{
    return epcs_offload_start(req, &job->base, &job_ops[job->kind]);
}

/* ---- reads on the thread pool ------------------------------------------------------------ */

enum read_kind { READ_REPORTS, READ_REPORT, READ_REQUESTS, READ_REQUEST, READ_POLICY };

/*
 * One read: a listing or export, or one report or request. Queries run on a connection of the
 * store's pool, never the loop's: an export of 100,000 rows takes the better part of a second.
 */
struct read_job {
    struct epcs_offload base;
    enum read_kind kind;
    struct epcs_cases *cases;
    /* The query string the filters point into, and the caller's partner id when the reads
       are limited to it. */
    struct epcs_query params;
    char own[EPCS_KEY_PARTNER_MAX];
    /* The caller's partner id, whose queue is read when no `partner` filter names another;
       the partner whose policy is read. */
    char caller[EPCS_KEY_PARTNER_MAX];
    struct epcs_report_query reports;
    struct epcs_request_query requests;
    uint64_t id;
    int csv;
    /* Results: 0, 1 for no such report or request, -1 with `err`. */
    int rc;
    char err[256];
    struct epcs_buf out;
    uint64_t next;
};

static struct read_job *read_of(struct epcs_offload *base)
{
    return H2O_STRUCT_FROM_MEMBER(struct read_job, base, base);
}

static struct read_job *read_create(h2o_req_t *req, enum read_kind kind)
{
    struct read_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        epcs_respond_error(req, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    job->kind = kind;
    job->cases = epcs_worker_of(req)->server->cases;
    job->rc = -1;
    const char *own = own_partner(req);
    snprintf(job->own, sizeof(job->own), "%s", own != NULL ? own : "");
    return job;
}

/* The caller's partner id when its reads are limited to its own, else NULL. */
static const char *read_own(const struct read_job *job)
{
    return job->own[0] != '\0' ? job->own : NULL;
}

static int run_read(struct read_job *job, struct epcs_cases_reader *db, msgpack_packer *pk)
{
    struct epcs_cases *cases = job->cases;
    switch (job->kind) {
    case READ_REPORTS:
        return job->csv ? epcs_cases_export_csv(cases, db, &job->reports, &job->out, &job->next,
                                                job->err, sizeof(job->err))
                        : epcs_cases_list_reports(cases, db, &job->reports, pk, job->err,
                                                  sizeof(job->err));
    case READ_REPORT:
        return epcs_cases_get_report(cases, db, job->id, read_own(job), pk, job->err,
                                     sizeof(job->err));
    case READ_REQUESTS:
        return job->csv ? epcs_cases_export_requests_csv(cases, db, &job->requests, &job->out,
                                                         &job->next, job->err, sizeof(job->err))
                        : epcs_cases_list_requests(cases, db, &job->requests, pk, job->err,
                                                   sizeof(job->err));
    case READ_REQUEST:
        return epcs_cases_get_request(cases, db, job->id, read_own(job), pk, job->err,
                                      sizeof(job->err));
    case READ_POLICY:
        return epcs_cases_get_policy(cases, db, job->caller, pk, job->err, sizeof(job->err));
    }
    return -1;
}

static void cb_read_work(struct epcs_offload *base)
{
    struct read_job *job = read_of(base);
    struct epcs_cases_reader *db =
        epcs_cases_reader_acquire(job->cases, job->err, sizeof(job->err));
    if (db == NULL)
        return;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->out, epcs_buf_msgpack_write);
    job->rc = run_read(job, db, &pk);
    epcs_cases_reader_release(job->cases, db);
    if (job->rc == 0 && !job->csv && epcs_offload_encode(base, &job->out) != 0) {
        job->rc = -1;
        snprintf(job->err, sizeof(job->err), "the answer has no JSON form");
    }
}

/* The CSV export, with the id to pass as `after` in `epcs-next` when more rows remain. */
static void send_csv(h2o_req_t *req, struct epcs_buf *text, uint64_t next)
{
    if (next != 0) {
        char *value = h2o_mem_alloc_pool(&req->pool, 24);
        int len = snprintf(value, 24, "%llu", (unsigned long long)next);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("epcs-next"), 0, NULL,
                              value, (size_t)len);
    }
    epcs_response_send_buf(req, 200, "text/csv; charset=utf-8; header=present", text);
}

static void respond_read(struct epcs_offload *base, h2o_req_t *req)
{
    struct read_job *job = read_of(base);
    if (job->rc == EPCS_CASES_READ_UNAVAILABLE) {
        epcs_log(EPCS_LOG_WARN, "cases", "%s: %s", base->ops->what, job->err);
        epcs_respond_error(req, 503, "store_unavailable", NULL,
                           "the case store cannot be reached now; try again");
    } else if (job->rc < 0) {
        epcs_log(EPCS_LOG_ERROR, "cases", "%s: %s", base->ops->what, job->err);
        epcs_respond_error(req, 500, "internal", NULL, "the case store cannot be read");
    } else if (job->rc > 0 && job->kind == READ_REPORT) {
        /* Another partner's report answers as one that does not exist: its id tells nothing. */
        epcs_respond_error(req, 404, "unknown_report", "id",
                           read_own(job) != NULL ? "no report %llu filed or joined by you"
                                                 : "no report %llu",
                           (unsigned long long)job->id);
    } else if (job->rc > 0) {
        /* The same answer as POST .../response gives for a request in another partner's queue. */
        epcs_respond_error(req, 404, "unknown_request", "id", "no request %llu in your queue",
                           (unsigned long long)job->id);
    } else if (job->csv) {
        send_csv(req, &job->out, job->next);
    } else {
        epcs_offload_send(base, req, 200, &job->out);
    }
}

static void cb_read_destroy(struct epcs_offload *base, int answered)
{
    (void)answered;
    struct read_job *job = read_of(base);
    epcs_buf_free(&job->out);
    free(job);
}

static const struct epcs_offload_ops read_ops[] = {
    [READ_REPORTS] = {.what = "listing reports",
                      .work = cb_read_work,
                      .respond = respond_read,
                      .destroy = cb_read_destroy},
    [READ_REPORT] = {.what = "reading a report",
                     .work = cb_read_work,
                     .respond = respond_read,
                     .destroy = cb_read_destroy},
    [READ_REQUESTS] = {.what = "listing requests",
                       .work = cb_read_work,
                       .respond = respond_read,
                       .destroy = cb_read_destroy},
    [READ_REQUEST] = {.what = "reading a request",
                      .work = cb_read_work,
                      .respond = respond_read,
                      .destroy = cb_read_destroy},
    [READ_POLICY] = {.what = "reading a partner's policy",
                     .work = cb_read_work,
                     .respond = respond_read,
                     .destroy = cb_read_destroy},
};

static int read_start(h2o_req_t *req, struct read_job *job)
{
    return epcs_offload_start(req, &job->base, &read_ops[job->kind]);
}

/* ---- POST /v1/reports --------------------------------------------------------------------- */

/* An http:// or https:// address (the scheme in any case), without spaces or control
   characters, at most MAX_URL bytes. 0, or answers 422 and returns -1. */
static int check_url(h2o_req_t *req, const msgpack_object *url)
{
    const char *text = url->via.str.ptr;
    size_t len = url->via.str.size;
    size_t scheme = len >= 8 && strncasecmp(text, "https://", 8) == 0  ? 8
                    : len >= 7 && strncasecmp(text, "http://", 7) == 0 ? 7
                                                                       : 0;
    int clean = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= ' ' || c == 0x7f)
            clean = 0;
    }
    if (scheme != 0 && len > scheme && text[scheme] != '/' && len <= MAX_URL && clean)
        return 0;
    return epcs_respond_error(req, 422, "invalid_fact", "url",
                              "url must be the posting's http:// or https:// address, without "
                              "spaces, at most %d bytes",
                              MAX_URL),
           -1;
}

/* `len` bytes of text as a partner id in `out`: 0, or -1 when they are not one. */
static int copy_partner_id(const char *text, size_t len, char out[EPCS_KEY_PARTNER_MAX])
{
    if (len == 0 || len >= EPCS_KEY_PARTNER_MAX || memchr(text, '\0', len) != NULL)
        return -1;
    memcpy(out, text, len);
    out[len] = '\0';
    return epcs_partner_id_valid(out) ? 0 : -1;
}

/* Whether an API key belongs to `partner`; always true without keys (--no-auth), where there
   is nothing to look it up in. */
static int partner_known(h2o_req_t *req, const char *partner)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    return worker->server->config.no_auth ||
           epcs_keyring_has_partner(epcs_worker_keyring(worker), partner, strlen(partner));
}

/* A report as received, borrowed from the decoded body. */
struct report_body {
    const msgpack_object *url, *platform, *election, *category, *date, *facts;
};

static int read_report_body(h2o_req_t *req, const msgpack_object *body, struct report_body *report)
{
    memset(report, 0, sizeof(*report));
    if (body->type != MSGPACK_OBJECT_MAP)
        return epcs_respond_error(req, 400, "bad_request", NULL,
                                  "the report must be a map with url, platform, election, "
                                  "category and facts"),
               -1;
    static const char *const names[] = {"url", "platform", "election", "category", "date", "facts"};
    const msgpack_object **slots[] = {&report->url,      &report->platform, &report->election,
                                      &report->category, &report->date,     &report->facts};
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *key = &body->via.map.ptr[i].key;
        const msgpack_object *value = &body->via.map.ptr[i].val;
        size_t slot = 0;
        while (slot < 6 && !epcs_str_eq(key, names[slot]))
            slot++;
        if (slot == 6)
            return epcs_respond_error(req, 400, "bad_request", NULL,
                                      "unknown field '%.*s': url, platform, election, category, "
                                      "date, facts",
                                      epcs_quoted_len(key), key->via.str.ptr),
                   -1;
        *slots[slot] = value;
        /* date is checked with the facts, as /v1/check checks it. */
        if (slot == 4)
            continue;
        if (slot == 5 ? value->type != MSGPACK_OBJECT_MAP : value->type != MSGPACK_OBJECT_STR)
            return epcs_respond_error(req, 400, "bad_request", names[slot], "%s must be %s",
                                      names[slot], slot == 5 ? "a map" : "a string"),
                   -1;
    }
    for (size_t slot = 0; slot < 4; slot++) {
        if (*slots[slot] == NULL)
            return epcs_respond_error(req, 400, "bad_request", names[slot], "%s is required",
                                      names[slot]),
                   -1;
    }
    if (check_url(req, report->url) != 0)
        return -1;
    char platform[EPCS_KEY_PARTNER_MAX];
    if (copy_partner_id(report->platform->via.str.ptr, report->platform->via.str.size, platform) !=
        0)
        return epcs_respond_error(req, 422, "invalid_fact", "platform",
                                  "platform must be the platform's partner id (1-63 of a-z 0-9 _ "
                                  "- .), as its API key names it"),
               -1;
    /* A deletion request to an id no key belongs to would never be read: it would go overdue,
       be sent again and end as a referral of a platform that was never asked. */
    if (!partner_known(req, platform))
        return epcs_respond_error(req, 404, "unknown_partner", "platform",
                                  "platform '%s' is no partner of epcs: no API key belongs to "
                                  "it, so no one would read its deletion requests",
                                  platform),
               -1;
    return 0;
}

/* Facts of a report are the area's activity facts, named without their "activity." prefix. */
static int check_report_facts(h2o_req_t *req, const struct epcs_plugin *area,
                              const msgpack_object *facts)
{
    for (uint32_t i = 0; facts != NULL && i < facts->via.map.size; i++) {
        const msgpack_object *key = &facts->via.map.ptr[i].key;
        if (epcs_str_eq(key, "kind") || epcs_str_eq(key, "category"))
            return epcs_respond_error(req, 400, "bad_request",
                                      epcs_str_eq(key, "kind") ? "facts.kind" : "facts.category",
                                      "facts.%s is not a fact to give: %s",
                                      epcs_str_eq(key, "kind") ? "kind" : "category",
                                      epcs_str_eq(key, "kind")
                                          ? "a report is about a posting"
                                          : "category goes at the top of the report"),
                   -1;
        int known = 0;
        for (const struct epcs_fact_spec *spec = area->facts; spec->path != NULL && !known;
             spec++) {
            known = strncmp(spec->path, "activity.", 9) == 0 &&
                    strlen(spec->path + 9) == key->via.str.size &&
                    memcmp(spec->path + 9, key->via.str.ptr, key->via.str.size) == 0;
        }
        if (!known) {
            char field[96];
            snprintf(field, sizeof(field), "facts.%.*s", epcs_quoted_len(key), key->via.str.ptr);
            return epcs_respond_error(req, 422, "invalid_fact", field,
                                      "unknown fact '%s'; GET /v1/areas lists those of %s", field,
                                      FALSE_INFORMATION),
                   -1;
        }
    }
    return 0;
}

static msgpack_object str_object(const char *text)
{
    msgpack_object object = {.type = MSGPACK_OBJECT_STR};
    object.via.str.ptr = text;
    object.via.str.size = (uint32_t)strlen(text);
    return object;
}

/*
 * The check a report stands for: the false_information area asked about a posting with the
 * report's category and facts. Built in the worker's zone; it is what the decision log keeps,
 * so the report's decision replays like any other.
 */
static int build_check(struct epcs_worker *worker, const struct report_body *report,
                       msgpack_object *check)
{
    uint32_t fact_count = report->facts != NULL ? report->facts->via.map.size : 0;
    msgpack_object_kv *activity =
        msgpack_zone_malloc(&worker->zone, sizeof(*activity) * (fact_count + 2));
    msgpack_object_kv *top = msgpack_zone_malloc(&worker->zone, sizeof(*top) * 4);
    if (activity == NULL || top == NULL)
        return -1;
    activity[0] = (msgpack_object_kv){.key = str_object("kind"), .val = str_object("posting")};
    activity[1] = (msgpack_object_kv){.key = str_object("category"), .val = *report->category};
    for (uint32_t i = 0; i < fact_count; i++)
        activity[2 + i] = report->facts->via.map.ptr[i];
    uint32_t size = 0;
    top[size++] = (msgpack_object_kv){.key = str_object("election"), .val = *report->election};
    top[size++] =
        (msgpack_object_kv){.key = str_object("area"), .val = str_object(FALSE_INFORMATION)};
    if (report->date != NULL)
        top[size++] = (msgpack_object_kv){.key = str_object("date"), .val = *report->date};
    msgpack_object activity_map = {.type = MSGPACK_OBJECT_MAP};
    activity_map.via.map.size = fact_count + 2;
    activity_map.via.map.ptr = activity;
    top[size++] = (msgpack_object_kv){.key = str_object("activity"), .val = activity_map};
    check->type = MSGPACK_OBJECT_MAP;
    check->via.map.size = size;
    check->via.map.ptr = top;
    return 0;
}

/* Replaces each `from` in `text` by `to`, in place (`to` is never longer). */
static void rename_in(char *text, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to);
    char *at = text;
    while ((at = strstr(at, from)) != NULL) {
        memmove(at + to_len, at + from_len, strlen(at + from_len) + 1);
        memcpy(at, to, to_len);
        at += to_len;
    }
}

/* A check error, told in the report's own terms: facts.x rather than activity.x. */
static int respond_report_error(h2o_req_t *req, struct epcs_check_error *err)
{
    /* A rule's failure names the rule file, not the report's fields: told as /v1/check tells
     * it. Every occurrence of "activity.category" is renamed before the other "activity." ones. */
    if (err->area == NULL) {
        rename_in(err->field, "activity.category", "category");
        rename_in(err->field, "activity.", "facts.");
        rename_in(err->message, "activity.category", "category");
        rename_in(err->message, "activity.", "facts.");
    }
    return epcs_respond_check_error(req, err);
}

/*
 * The request's Idempotency-Key (1 to 255 visible ASCII characters), and the SHA-256 of its
 * path and body, into `job`: a retry is the same key with the same request. No header: not
 * idempotent. 0, or answers 400 and returns -1.
 */
static int read_idempotency(h2o_req_t *req, struct case_job *job)
{
    ssize_t at = h2o_find_header_by_str(&req->headers, H2O_STRLIT("idempotency-key"), -1);
    if (at < 0)
        return 0;
    h2o_iovec_t value = req->headers.entries[at].value;
    int valid = value.len >= 1 && value.len <= EPCS_IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; valid && i < value.len; i++)
        valid = value.base[i] > 0x20 && value.base[i] < 0x7f;
    if (!valid)
        return epcs_respond_error(req, 400, "bad_request", "Idempotency-Key",
                                  "Idempotency-Key must be 1 to %d visible ASCII characters",
                                  EPCS_IDEMPOTENCY_KEY_MAX),
               -1;
    memcpy(job->idempotency_key, value.base, value.len);
    job->idempotency_key[value.len] = '\0';
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int hashed = sha != NULL && EVP_DigestInit_ex(sha, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(sha, req->path_normalized.base, req->path_normalized.len) == 1 &&
                 EVP_DigestUpdate(sha, "\n", 1) == 1 &&
                 EVP_DigestUpdate(sha, req->entity.base != NULL ? req->entity.base : "",
                                  req->entity.len) == 1 &&
                 EVP_DigestFinal_ex(sha, job->idempotency.request_sha256, NULL) == 1;
    EVP_MD_CTX_free(sha);
    if (!hashed)
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory"), -1;
    job->idempotency.key = job->idempotency_key;
    return 0;
}

static int keep_string(struct case_job *job, size_t slot, const msgpack_object *str,
                       const char **out)
{
    job->strings[slot] = copy_object_string(str);
    *out = job->strings[slot];
    return *out != NULL ? 0 : -1;
}

/* Copies the report and its decision into the job, which outlives the request's memory and
   the ruleset's. 0, or -1 when memory runs out. */
static int keep_report(h2o_req_t *req, struct case_job *job, const struct report_body *report,
                       const struct epcs_decision *decision)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_case_report *in = &job->in.report;
    char date[11];
    if (report->date != NULL)
        snprintf(date, sizeof(date), "%.*s", (int)report->date->via.str.size,
                 report->date->via.str.ptr);
    else
        epcs_date_format(decision->date, date);
    msgpack_object date_object = str_object(date);
    msgpack_object filed_by = str_object(worker->partner);
    msgpack_object ruleset = str_object(decision->ruleset);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &job->facts, epcs_buf_msgpack_write);
    if (report->facts != NULL)
        msgpack_pack_object(&pk, *report->facts);
    else
        msgpack_pack_map(&pk, 0);
    msgpack_packer_init(&pk, &job->check, epcs_buf_msgpack_write);
    msgpack_pack_object(&pk, *decision->check);
    const char *kept_ruleset;
    if (keep_string(job, 0, &filed_by, &in->filed_by) != 0 ||
        keep_string(job, 1, report->url, &in->url) != 0 ||
        keep_string(job, 2, report->platform, &in->platform) != 0 ||
        keep_string(job, 3, report->election, &in->election) != 0 ||
        keep_string(job, 4, report->category, &in->category) != 0 ||
        keep_string(job, 5, &date_object, &in->date) != 0 ||
        keep_string(job, 6, &ruleset, &kept_ruleset) != 0 || job->facts.data == NULL ||
        job->check.data == NULL)
        return -1;
    in->facts = job->facts.data;
    in->facts_len = job->facts.len;
    in->verdict = job->verdict.data;
    in->verdict_len = job->verdict.len;
    in->partner_view = own_partner(req) != NULL;
    in->by_staff = own_partner(req) == NULL;
    in->now_us = epcs_now_us();
    job->decision = *decision;
    job->decision.election = in->election;
    job->decision.area = FALSE_INFORMATION;
    job->decision.ruleset = kept_ruleset;
    job->decision.check = NULL;
    job->decision.check_msgpack = job->check.data;
    job->decision.check_len = job->check.len;
    job->decision.verdict_msgpack = NULL;
    job->decision.verdict_len = 0;
    in->decision = worker->server->decisions != NULL ? &job->decision : NULL;
    return 0;
}

/* Reads the report and its facts and finds the engine that decides it. 0, or answers and
   returns -1. */
static int read_report_request(h2o_req_t *req, struct report_body *report,
                               struct epcs_engine **engine)
{
    struct epcs_server *server = epcs_worker_of(req)->server;
    msgpack_object body;
    if (epcs_read_body(req, server->config.max_body, &body, NULL) != 0)
        return -1;
    if (read_report_body(req, &body, report) != 0)
        return -1;
    int area_index =
        epcs_plugins_find(server->plugins, FALSE_INFORMATION, sizeof(FALSE_INFORMATION) - 1);
    if (area_index < 0)
        return epcs_respond_error(req, 503, "not_ready", NULL,
                                  "the %s area is not loaded, so no report can be decided",
                                  FALSE_INFORMATION),
               -1;
    if (check_report_facts(req, server->plugins->items[area_index].desc, report->facts) != 0)
        return -1;
    *engine = epcs_engine_or_503(req);
    return *engine != NULL ? 0 : -1;
}

/* The rules asked for something epcs cannot send: fail closed, naming the rule file. */
static int respond_unusable_actions(h2o_req_t *req, const char *why)
{
    epcs_log(EPCS_LOG_ERROR, FALSE_INFORMATION, "the verdict's actions are unusable: %s", why);
    msgpack_packer *pk = epcs_response_begin(epcs_worker_of(req));
    msgpack_pack_map(pk, 4);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, "rule_failed");
    epcs_pack_cstr(pk, "message");
    char message[400];
    snprintf(message, sizeof(message), "%s.lua returned unusable actions: %s", FALSE_INFORMATION,
             why);
    epcs_pack_cstr(pk, message);
    epcs_pack_cstr(pk, "area");
    epcs_pack_cstr(pk, FALSE_INFORMATION);
    epcs_pack_cstr(pk, "file");
    epcs_pack_cstr(pk, FALSE_INFORMATION ".lua");
    return epcs_response_send(req, 500, epcs_response_format(req));
}

/* Runs the report's check into `decision` (which points at `check`) and `verdict`, whose
   actions must be ones epcs can send. 0, or answers, frees `verdict` and returns -1. */
static int decide_report(h2o_req_t *req, struct epcs_engine *engine,
                         const struct report_body *report, msgpack_object *check,
                         struct epcs_decision *decision, struct epcs_buf *verdict)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    if (build_check(worker, report, check) != 0)
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory"), -1;
    /* The case store gives the decision its id when it files the report, and logs it with the
       report's steps: a filing that fails leaves no decision behind. */
    *decision = (struct epcs_decision){.id = 0, .check = check};
    struct epcs_check_error err;
    msgpack_packer verdict_pk;
    msgpack_packer_init(&verdict_pk, verdict, epcs_buf_msgpack_write);
    struct epcs_check_ctx ctx = epcs_worker_check_ctx(worker);
    if (epcs_check_run(&ctx, engine, check, &verdict_pk, decision, &err) != EPCS_CHECK_DECIDED) {
        epcs_buf_free(verdict);
        return respond_report_error(req, &err), -1;
    }
    char platform[EPCS_KEY_PARTNER_MAX], why[300];
    snprintf(platform, sizeof(platform), "%.*s", (int)report->platform->via.str.size,
             report->platform->via.str.ptr);
    if (epcs_cases_check_actions(verdict->data, verdict->len, platform, why, sizeof(why)) < 0) {
        epcs_buf_free(verdict);
        return respond_unusable_actions(req, why), -1;
    }
    return 0;
}

static int file_report(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    int64_t started = epcs_now_us();
    struct report_body report;
    struct epcs_engine *engine;
    if (read_report_request(req, &report, &engine) != 0)
        return 0;
    msgpack_object check;
    struct epcs_decision decision;
    struct epcs_buf verdict = {0};
    if (decide_report(req, engine, &report, &check, &decision, &verdict) != 0)
        return 0;
    decision.latency_us = (uint64_t)(epcs_now_us() - started);
    decision.at_us = epcs_now_us();
    epcs_metrics_count_verdict(worker, decision.area_index, decision.verdict);
    epcs_decision_debug(&decision, worker->partner);
    struct case_job *job = job_create(req, JOB_FILE);
    if (job == NULL) {
        epcs_buf_free(&verdict);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    job->verdict = verdict;
    if (read_idempotency(req, job) != 0) {
        job_free(job);
        return 0;
    }
    if (keep_report(req, job, &report, &decision) != 0) {
        job_free(job);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    job->in.report.idempotency = job->idempotency;
    return job_start(req, job);
}

/* ---- GET /v1/reports ---------------------------------------------------------------------- */

/* Reads GET /v1/reports' filters into `job` (they point into its copy of the query). 0, or
   answers 400 or 403 and returns -1. */
static int read_report_query(h2o_req_t *req, struct read_job *job)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_query *params = &job->params;
    if (epcs_query_read(req, params, EPCS_QUERY_MAX_PARAMS) != 0)
        return -1;
    static const char *const statuses[] = {"open",        "held",      "closed", "no_action",
                                           "needs_facts", "dismissed", NULL};
    struct epcs_report_query *query = &job->reports;
    /* A partner lists the reports it filed or joined. */
    query->reporter = read_own(job);
    job->csv = epcs_accepts(req, "text/csv");
    const char *limit = NULL;
    for (size_t i = 0; i < params->count; i++) {
        const char *name = params->names[i], *value = params->values[i];
        if (strcmp(name, "status") == 0) {
            if (!one_of(value, statuses))
                return epcs_respond_error(req, 400, "bad_request", "status",
                                          "status must be open, held, closed, no_action, "
                                          "needs_facts or dismissed"),
                       -1;
            query->status = value;
        } else if (strcmp(name, "platform") == 0) {
            query->platform = value;
        } else if (strcmp(name, "election") == 0) {
            query->election = value;
        } else if (strcmp(name, "category") == 0) {
            query->category = value;
        } else if (strcmp(name, "filed_by") == 0 || strcmp(name, "reporter") == 0) {
            if (read_own(job) != NULL && strcmp(value, read_own(job)) != 0)
                return epcs_respond_error(req, 403, "forbidden", name,
                                          "key %s of partner %s sees the reports it filed or "
                                          "joined only",
                                          worker->key->id, worker->partner),
                       -1;
            *(strcmp(name, "reporter") == 0 ? &query->reporter : &query->filed_by) = value;
        } else if (strcmp(name, "from") == 0 || strcmp(name, "to") == 0) {
            int64_t us;
            if (epcs_parse_instant(value, &us) != 0)
                return epcs_respond_error(req, 400, "bad_request", name,
                                          "%s must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
                                          name),
                       -1;
            *(strcmp(name, "from") == 0 ? &query->from_us : &query->to_us) = us;
        } else if (strcmp(name, "after") == 0) {
            if (read_after(req, value, &query->after) != 0)
                return -1;
        } else if (strcmp(name, "limit") == 0) {
            limit = value;
        } else if (strcmp(name, "format") == 0) {
            if (read_format(req, value, &job->csv) != 0)
                return -1;
        } else {
            return epcs_respond_error(req, 400, "bad_request", name,
                                      "unknown filter '%s': status, platform, election, "
                                      "category, filed_by, reporter, from, to, after, limit, "
                                      "format",
                                      name),
                   -1;
        }
    }
    if (read_page_limit(req, limit, job->csv, &query->limit) != 0)
        return -1;
    if (query->from_us && query->to_us && query->to_us <= query->from_us)
        return epcs_respond_error(req, 400, "bad_request", "to", "to must come after from"), -1;
    return 0;
}

static int list_reports(h2o_req_t *req)
{
    struct read_job *job = read_create(req, READ_REPORTS);
    if (job == NULL)
        return 0;
    if (read_report_query(req, job) != 0) {
        cb_read_destroy(&job->base, 1);
        return 0;
    }
    return read_start(req, job);
}

static int show_report(h2o_req_t *req, const char *rest, size_t len)
{
    uint64_t id;
    if (read_path_id(req, rest, len, "a report id is a whole number, as POST /v1/reports gave it",
                     &id) != 0)
        return 0;
    struct read_job *job = read_create(req, READ_REPORT);
    if (job == NULL)
        return 0;
    job->id = id;
    return read_start(req, job);
}

static int handle_file_report(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    return file_report(req);
}

static int handle_list_reports(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    return list_reports(req);
}

static int handle_show_report(h2o_req_t *req, h2o_iovec_t id)
{
    return show_report(req, id.base, id.len);
}

/* ---- GET /v1/partners/me/requests --------------------------------------------------------- */

/* Reads the queue's filters into `job`, as read_report_query does. */
static int read_request_query(h2o_req_t *req, struct read_job *job)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_query *params = &job->params;
    if (epcs_query_read(req, params, EPCS_QUERY_MAX_PARAMS) != 0)
        return -1;
    static const char *const statuses[] = {
        "open",      "overdue", "done", "objected", "data_submitted",
        "escalated", "pending", "all",  NULL};
    struct epcs_request_query *query = &job->requests;
    /* Without a partner filter, the caller's own queue (staff have one too). */
    snprintf(job->caller, sizeof(job->caller), "%s", worker->partner);
    query->partner = job->caller;
    query->status = "pending";
    job->csv = epcs_accepts(req, "text/csv");
    const char *limit = NULL;
    for (size_t i = 0; i < params->count; i++) {
        const char *name = params->names[i], *value = params->values[i];
        if (strcmp(name, "status") == 0) {
            if (!one_of(value, statuses))
                return epcs_respond_error(req, 400, "bad_request", "status",
                                          "status must be open, overdue, done, objected, "
                                          "data_submitted, escalated, pending or all"),
                       -1;
            query->status = value;
        } else if (strcmp(name, "after") == 0) {
            if (read_after(req, value, &query->after) != 0)
                return -1;
        } else if (strcmp(name, "limit") == 0) {
            limit = value;
        } else if (strcmp(name, "format") == 0) {
            if (read_format(req, value, &job->csv) != 0)
                return -1;
        } else if (strcmp(name, "partner") == 0) {
            /* Staff may look at any partner's queue; a partner only at its own. */
            if (own_partner(req) != NULL && strcmp(value, own_partner(req)) != 0)
                return epcs_respond_error(req, 403, "forbidden", "partner",
                                          "key %s of partner %s sees its own queue only",
                                          worker->key->id, worker->partner),
                       -1;
            query->partner = value;
        } else {
            return epcs_respond_error(req, 400, "bad_request", name,
                                      "unknown filter '%s': status, after, limit, partner, "
                                      "format",
                                      name),
                   -1;
        }
    }
    return read_page_limit(req, limit, job->csv, &query->limit);
}

static int handle_partner_requests(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct read_job *job = read_create(req, READ_REQUESTS);
    if (job == NULL)
        return 0;
    if (read_request_query(req, job) != 0) {
        cb_read_destroy(&job->base, 1);
        return 0;
    }
    return read_start(req, job);
}

/* ---- POST /v1/requests/{id}/response ------------------------------------------------------ */

/* A reason of 1 to MAX_REASON bytes of text: 0, or answers 422 and returns -1. */
static int check_reason(h2o_req_t *req, const msgpack_object *reason)
{
    if (reason->via.str.size > 0 && reason->via.str.size <= MAX_REASON &&
        memchr(reason->via.str.ptr, '\0', reason->via.str.size) == NULL)
        return 0;
    return epcs_respond_error(req, 422, "invalid_fact", "reason",
                              "reason must be text of 1 to %d bytes", MAX_REASON),
           -1;
}

/* The fields of a partner's answer, pointing into its request body; `stored` is the status
   the case store keeps for it. */
struct answer_body {
    const msgpack_object *status, *reason, *data;
    const char *stored;
};

/* Reads the answer's fields and their types. 0, or answers 400 and returns -1. */
static int read_answer_fields(h2o_req_t *req, const msgpack_object *body,
                              struct answer_body *answer)
{
    *answer = (struct answer_body){0};
    if (body->type != MSGPACK_OBJECT_MAP)
        return epcs_respond_error(req, 400, "bad_request", NULL,
                                  "the answer must be a map {status, reason?, data?}"),
               -1;
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *key = &body->via.map.ptr[i].key;
        const msgpack_object *value = &body->via.map.ptr[i].val;
        if (epcs_str_eq(key, "status")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return epcs_respond_error(req, 400, "bad_request", "status",
                                          "status must be a string"),
                       -1;
            answer->status = value;
        } else if (epcs_str_eq(key, "reason")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return epcs_respond_error(req, 400, "bad_request", "reason",
                                          "reason must be a string"),
                       -1;
            answer->reason = value;
        } else if (epcs_str_eq(key, "data")) {
            if (value->type != MSGPACK_OBJECT_MAP && value->type != MSGPACK_OBJECT_STR)
                return epcs_respond_error(req, 400, "bad_request", "data",
                                          "data must be a map or a string"),
                       -1;
            answer->data = value;
        } else {
            return epcs_respond_error(req, 400, "bad_request", NULL,
                                      "unknown field '%.*s': status, reason, data",
                                      epcs_quoted_len(key), key->via.str.ptr),
                   -1;
        }
    }
    return 0;
}

/* Decides the stored status and what it needs: an objection its reason, data_submitted its
   data. 0, or answers 400 or 422 and returns -1. */
static int check_answer(h2o_req_t *req, struct answer_body *answer)
{
    const msgpack_object *status = answer->status;
    if (status == NULL)
        return epcs_respond_error(req, 400, "bad_request", "status",
                                  "status is required: done, objection or data_submitted"),
               -1;
    if (epcs_str_eq(status, "done"))
        answer->stored = "done";
    else if (epcs_str_eq(status, "objection"))
        answer->stored = "objected";
    else if (epcs_str_eq(status, "data_submitted"))
        answer->stored = "data_submitted";
    else
        return epcs_respond_error(req, 422, "invalid_fact", "status",
                                  "status: unknown value '%.*s' (done, objection or "
                                  "data_submitted)",
                                  epcs_quoted_len(status), status->via.str.ptr),
               -1;
    if (answer->reason == NULL && strcmp(answer->stored, "objected") == 0)
        return epcs_respond_error(req, 400, "bad_request", "reason", "an objection needs a reason"),
               -1;
    if (answer->data == NULL && strcmp(answer->stored, "data_submitted") == 0)
        return epcs_respond_error(req, 400, "bad_request", "data", "data_submitted needs the data"),
               -1;
    if (answer->reason != NULL && check_reason(req, answer->reason) != 0)
        return -1;
    const msgpack_object *data = answer->data;
    if (data != NULL && data->type == MSGPACK_OBJECT_STR && data->via.str.size == 0)
        return epcs_respond_error(req, 422, "invalid_fact", "data", "data must not be empty"), -1;
    return 0;
}

/* Copies the answer into the job, which outlives the request's memory. 0, or -1 when memory
   runs out. */
static int keep_answer(h2o_req_t *req, struct case_job *job, const struct answer_body *answer,
                       uint64_t id)
{
    struct epcs_case_answer *in = &job->in.answer;
    msgpack_object partner = str_object(epcs_worker_of(req)->partner);
    if (keep_string(job, 1, &partner, &in->partner) != 0)
        return -1;
    in->request = id;
    in->status = answer->stored;
    if (answer->reason != NULL) {
        job->strings[0] = copy_object_string(answer->reason);
        in->reason = job->strings[0];
        in->reason_len = answer->reason->via.str.size;
    }
    if (answer->data != NULL) {
        msgpack_packer data_pk;
        msgpack_packer_init(&data_pk, &job->data, epcs_buf_msgpack_write);
        msgpack_pack_object(&data_pk, *answer->data);
        in->data = job->data.data;
        in->data_len = job->data.len;
    }
    if ((answer->reason != NULL && in->reason == NULL) ||
        (answer->data != NULL && in->data == NULL))
        return -1;
    return 0;
}

static int answer_request(h2o_req_t *req, uint64_t id)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    msgpack_object body;
    if (epcs_read_body(req, worker->server->config.max_body, &body, NULL) != 0)
        return 0;
    struct answer_body answer;
    if (read_answer_fields(req, &body, &answer) != 0 || check_answer(req, &answer) != 0)
        return 0;
    struct case_job *job = job_create(req, JOB_ANSWER);
    if (job == NULL)
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    if (read_idempotency(req, job) != 0) {
        job_free(job);
        return 0;
    }
    if (keep_answer(req, job, &answer, id) != 0) {
        job_free(job);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    job->in.answer.now_us = epcs_now_us();
    job->in.answer.idempotency = job->idempotency;
    return job_start(req, job);
}

static int show_request(h2o_req_t *req, uint64_t id)
{
    struct read_job *job = read_create(req, READ_REQUEST);
    if (job == NULL)
        return 0;
    job->id = id;
    return read_start(req, job);
}

static int handle_show_request(h2o_req_t *req, h2o_iovec_t param)
{
    uint64_t id;
    if (read_path_id(req, param.base, param.len,
                     "a request id is a whole number, as the queue lists it", &id) != 0)
        return 0;
    return show_request(req, id);
}

static int handle_answer_request(h2o_req_t *req, h2o_iovec_t param)
{
    uint64_t id;
    if (read_path_id(req, param.base, param.len,
                     "a request id is a whole number, as the queue lists it", &id) != 0)
        return 0;
    return answer_request(req, id);
}

/* ---- POST /v1/reports/{id}/confirm, /dismiss ------------------------------------------- */

/* The optional `reason` of a staff decision, read from the body (which may be empty for a
   confirmation). 0 with `reason` set or NULL, or answers 400 or 422 and returns -1. */
static int read_review_body(h2o_req_t *req, int dismiss, const msgpack_object **reason)
{
    *reason = NULL;
    if (!dismiss && req->entity.len == 0)
        return 0;
    msgpack_object body;
    if (epcs_read_body(req, epcs_worker_of(req)->server->config.max_body, &body, NULL) != 0)
        return -1;
    if (body.type != MSGPACK_OBJECT_MAP)
        return epcs_respond_error(req, 400, "bad_request", NULL,
                                  "the review must be a map {reason}"),
               -1;
    for (uint32_t i = 0; i < body.via.map.size; i++) {
        const msgpack_object *key = &body.via.map.ptr[i].key;
        const msgpack_object *value = &body.via.map.ptr[i].val;
        if (!epcs_str_eq(key, "reason"))
            return epcs_respond_error(req, 400, "bad_request", NULL, "unknown field '%.*s': reason",
                                      epcs_quoted_len(key), key->via.str.ptr),
                   -1;
        if (value->type != MSGPACK_OBJECT_STR)
            return epcs_respond_error(req, 400, "bad_request", "reason", "reason must be a string"),
                   -1;
        *reason = value;
    }
    if (*reason == NULL && dismiss)
        return epcs_respond_error(req, 400, "bad_request", "reason", "a dismissal needs a reason"),
               -1;
    if (*reason != NULL && check_reason(req, *reason) != 0)
        return -1;
    return 0;
}

static int review_report(h2o_req_t *req, h2o_iovec_t report, int dismiss)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    uint64_t id;
    const msgpack_object *reason;
    if (read_path_id(req, report.base, report.len,
                     "a report id is a whole number, as POST /v1/reports gave it", &id) != 0 ||
        read_review_body(req, dismiss, &reason) != 0)
        return 0;
    struct case_job *job = job_create(req, JOB_REVIEW);
    msgpack_object staff = str_object(worker->partner);
    struct epcs_case_review *in = job != NULL ? &job->in.review : NULL;
    if (job == NULL || keep_string(job, 0, &staff, &in->staff) != 0 ||
        (reason != NULL && keep_string(job, 1, reason, &in->reason) != 0)) {
        if (job != NULL)
            job_free(job);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    in->report = id;
    in->dismiss = dismiss;
    in->reason_len = reason != NULL ? reason->via.str.size : 0;
    in->now_us = epcs_now_us();
    return job_start(req, job);
}

/* ---- GET, PUT /v1/admin/partners/{id} ------------------------------------------------------ */

/* The body of PUT: {reports: "send" | "hold"}. 0 with `send` set, or answers and returns -1. */
static int read_policy_body(h2o_req_t *req, int *send)
{
    msgpack_object body;
    if (epcs_read_body(req, epcs_worker_of(req)->server->config.max_body, &body, NULL) != 0)
        return -1;
    if (body.type != MSGPACK_OBJECT_MAP)
        return epcs_respond_error(req, 400, "bad_request", NULL,
                                  "the policy must be a map {reports}"),
               -1;
    const msgpack_object *reports = NULL;
    for (uint32_t i = 0; i < body.via.map.size; i++) {
        const msgpack_object *key = &body.via.map.ptr[i].key;
        if (!epcs_str_eq(key, "reports"))
            return epcs_respond_error(req, 400, "bad_request", NULL,
                                      "unknown field '%.*s': reports", epcs_quoted_len(key),
                                      key->via.str.ptr),
                   -1;
        reports = &body.via.map.ptr[i].val;
    }
    if (reports == NULL)
        return epcs_respond_error(req, 400, "bad_request", "reports",
                                  "reports is required: send or hold"),
               -1;
    if (reports->type != MSGPACK_OBJECT_STR ||
        (!epcs_str_eq(reports, "send") && !epcs_str_eq(reports, "hold")))
        return epcs_respond_error(req, 422, "invalid_fact", "reports",
                                  "reports must be send or hold"),
               -1;
    *send = epcs_str_eq(reports, "send");
    return 0;
}

static int partner_policy(h2o_req_t *req, h2o_iovec_t path_id, int put)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    char partner[EPCS_KEY_PARTNER_MAX];
    if (copy_partner_id(path_id.base, path_id.len, partner) != 0)
        return epcs_respond_error(req, 400, "bad_request", "id",
                                  "a partner id is 1-63 of a-z 0-9 _ - .");
    if (!partner_known(req, partner))
        return epcs_respond_error(req, 404, "unknown_partner", "id",
                                  "no API key belongs to partner '%s'", partner);
    if (!put) {
        struct read_job *read = read_create(req, READ_POLICY);
        if (read == NULL)
            return 0;
        snprintf(read->caller, sizeof(read->caller), "%s", partner);
        return read_start(req, read);
    }
    int send;
    if (read_policy_body(req, &send) != 0)
        return 0;
    struct case_job *job = job_create(req, JOB_POLICY);
    msgpack_object id = str_object(partner), by = str_object(worker->partner);
    struct epcs_case_policy *in = job != NULL ? &job->in.policy : NULL;
    if (job == NULL || keep_string(job, 0, &id, &in->partner) != 0 ||
        keep_string(job, 1, &by, &in->by) != 0) {
        if (job != NULL)
            job_free(job);
        return epcs_respond_error(req, 500, "internal", NULL, "out of memory");
    }
    in->send = send;
    in->now_us = epcs_now_us();
    return job_start(req, job);
}

static int handle_confirm_report(h2o_req_t *req, h2o_iovec_t id)
{
    return review_report(req, id, 0);
}

static int handle_dismiss_report(h2o_req_t *req, h2o_iovec_t id)
{
    return review_report(req, id, 1);
}

static int handle_show_policy(h2o_req_t *req, h2o_iovec_t id)
{
    return partner_policy(req, id, 0);
}

static int handle_set_policy(h2o_req_t *req, h2o_iovec_t id)
{
    return partner_policy(req, id, 1);
}

/*
 * Partners file and read their own reports (the handlers narrow what a partner sees); staff
 * review them. Under each prefix, the paths no row names are 404 for the prefix's role.
 */
static const struct epcs_route_row case_rows[] = {
    {"GET", "/v1/reports", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "reports", handle_list_reports},
    {"POST", "/v1/reports", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "reports", handle_file_report},
    {"GET", "/v1/reports/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "reports", handle_show_report},
    {NULL, "/v1/reports/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "reports", NULL},
    {"GET", "/v1/partners/me/requests", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "partner_requests",
     handle_partner_requests},
    {"GET", "/v1/requests/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "requests",
     handle_show_request},
    {"POST", "/v1/requests/{id}/response", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "requests",
     handle_answer_request},
    {NULL, "/v1/requests/", EPCS_MATCH_PREFIX, EPCS_ROLE_PARTNER, "requests", NULL},
    {"POST", "/v1/reports/{id}/confirm", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "report_review",
     handle_confirm_report},
    {"POST", "/v1/reports/{id}/dismiss", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "report_review",
     handle_dismiss_report},
    {"GET", "/v1/admin/partners/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "admin_partners",
     handle_show_policy},
    {"PUT", "/v1/admin/partners/{id}", EPCS_MATCH_EXACT, EPCS_ROLE_STAFF, "admin_partners",
     handle_set_policy},
    {NULL, "/v1/admin/partners/", EPCS_MATCH_PREFIX, EPCS_ROLE_STAFF, "admin_partners", NULL},
};

const struct epcs_route_group epcs_case_routes = {case_rows,
                                                  sizeof(case_rows) / sizeof(case_rows[0])};

/* ---- the sweep ---------------------------------------------------------------------------- */

struct sweep {
    struct epcs_store_job store;
    struct epcs_worker *worker;
    int handled;
    char err[256];
};

static void cb_sweep_work(struct epcs_store_job *job)
{
    struct sweep *sweep = H2O_STRUCT_FROM_MEMBER(struct sweep, store, job);
    sweep->handled = epcs_cases_sweep(sweep->worker->server->cases, epcs_now_us(), SWEEP_BATCH,
                                      sweep->err, sizeof(sweep->err));
}

/* Whether the last sweep failed: a failure that lasts (a full decision log) is logged when it
 * starts and when it ends, not at every tick. Only worker 0's loop touches it. */
static int sweep_failing;

static void cb_sweep_done(struct epcs_store_job *job)
{
    struct sweep *sweep = H2O_STRUCT_FROM_MEMBER(struct sweep, store, job);
    struct epcs_worker *worker = sweep->worker;
    worker->case_sweep_busy = 0;
    if (sweep->handled < 0) {
        if (!sweep_failing)
            epcs_log(EPCS_LOG_ERROR, "cases",
                     "sweep failed, requests falling due wait for the next one: %s", sweep->err);
        sweep_failing = 1;
    } else {
        if (sweep_failing)
            epcs_log(EPCS_LOG_INFO, "cases", "sweep works again");
        sweep_failing = 0;
        if (sweep->handled > 0)
            epcs_log(EPCS_LOG_INFO, "cases", "sweep: %d request(s) fell due", sweep->handled);
    }
    free(sweep);
}

static void cb_sweep_tick(uv_timer_t *timer)
{
    struct epcs_worker *worker = timer->data;
    /* One sweep at a time; a slow one simply skips the ticks it overlaps. */
    if (worker->case_sweep_busy)
        return;
    struct sweep *sweep = calloc(1, sizeof(*sweep));
    if (sweep == NULL)
        return;
    sweep->worker = worker;
    sweep->store =
        (struct epcs_store_job){.work = cb_sweep_work, .done = cb_sweep_done, .worker = worker};
    worker->case_sweep_busy = 1;
    epcs_store_queue(worker->server->store_threads, &sweep->store);
}

void epcs_cases_worker_init(struct epcs_worker *worker)
{
    struct epcs_server *server = worker->server;
    uv_timer_init(&worker->loop, &worker->case_sweep);
    worker->case_sweep.data = worker;
    /* One worker sweeps for all; at once on start, so what fell due while epcsd was down is
     * handled first. */
    if (worker->index == 0 && server->cases != NULL)
        uv_timer_start(&worker->case_sweep, cb_sweep_tick, 0,
                       (uint64_t)server->config.case_sweep_ms);
}
