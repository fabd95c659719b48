/* Responses: media types both ways, the answer sent (or held until the decisions it reports
 * are safe), its status counted and its access line written at the end of the loop's turn. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "dates.h"
#include "http.h"
#include "log.h"

/* ---- responses ---------------------------------------------------------------------------- */

static int media_is(const char *value, size_t len, const char *type)
{
    size_t type_len = strlen(type);
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    if (len < type_len || strncasecmp(value, type, type_len) != 0)
        return 0;
    value += type_len;
    len -= type_len;
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    return len == 0 || *value == ';';
}

/* 1 msgpack, 0 JSON, -1 neither. */
static int classify_media(const char *value, size_t len)
{
    if (media_is(value, len, "application/msgpack") ||
        media_is(value, len, "application/x-msgpack"))
        return 1;
    if (media_is(value, len, "application/json"))
        return 0;
    return -1;
}

int epcs_request_media(h2o_req_t *req)
{
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (at < 0)
        return -1;
    const h2o_iovec_t *value = &req->headers.entries[at].value;
    return classify_media(value->base, value->len);
}

int epcs_accepts(h2o_req_t *req, const char *type)
{
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (at < 0)
        return 0;
    const h2o_iovec_t *value = &req->headers.entries[at].value;
    const char *item = value->base, *end = value->base + value->len;
    while (item < end) {
        const char *comma = memchr(item, ',', (size_t)(end - item));
        const char *stop = comma != NULL ? comma : end;
        if (media_is(item, (size_t)(stop - item), type))
            return 1;
        item = stop + 1;
    }
    return 0;
}

enum epcs_format epcs_response_format(h2o_req_t *req)
{
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (at >= 0) {
        const h2o_iovec_t *value = &req->headers.entries[at].value;
        const char *item = value->base, *end = value->base + value->len;
        while (item < end) {
            const char *comma = memchr(item, ',', (size_t)(end - item));
            const char *stop = comma != NULL ? comma : end;
            int kind = classify_media(item, (size_t)(stop - item));
            if (kind >= 0)
                return kind == 1 ? EPCS_FORMAT_MSGPACK : EPCS_FORMAT_JSON;
            item = stop + 1;
        }
    }
    return epcs_request_media(req) == 1 ? EPCS_FORMAT_MSGPACK : EPCS_FORMAT_JSON;
}

msgpack_packer *epcs_response_begin(struct epcs_worker *worker)
{
    epcs_buf_reset(&worker->body);
    return &worker->packer;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "OK";
    }
}

static int status_slot(int status)
{
    static const int codes[] = {EPCS_STATUS_CODES};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i] == status)
            return (int)i;
    }
    return EPCS_STATUS_SLOTS - 1;
}

/* Upper bounds of the latency histogram, in microseconds (Prometheus `le` in seconds). */
static const uint64_t latency_bounds_us[EPCS_LATENCY_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 1000000, 10000000};

static void count_response(struct epcs_worker *worker, unsigned route, int status,
                           uint64_t latency_us)
{
    struct epcs_worker_metrics *metrics = &worker->metrics;
    size_t bucket = 0;
    while (bucket < EPCS_LATENCY_BUCKETS && latency_us > latency_bounds_us[bucket])
        bucket++;
    atomic_fetch_add_explicit(&metrics->responses[route][status_slot(status)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics->latency[route][bucket], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics->latency_sum_us[route], latency_us, memory_order_relaxed);
}

static uint64_t between_us(const struct timeval *start, const struct timeval *end)
{
    int64_t us = (int64_t)(end->tv_sec - start->tv_sec) * 1000000 + (end->tv_usec - start->tv_usec);
    return us > 0 ? (uint64_t)us : 0;
}

/*
 * Access lines gather per worker and go out together: a write per request would cost more than
 * the check itself, and at low concurrency a loop turn is one request. They are written at the
 * end of a turn that gathered ACCESS_LOG_TURN_BYTES, else ACCESS_LOG_DELAY_MS after the first
 * unwritten line; a crash loses at most that much of the access log (decisions are not in it).
 */
#define ACCESS_LOG_FLUSH_BYTES (64 * 1024)
#define ACCESS_LOG_TURN_BYTES (16 * 1024)
#define ACCESS_LOG_DELAY_MS 50

void epcs_worker_flush_access_log(struct epcs_worker *worker)
{
    epcs_log_write_lines(worker->access_log.data, worker->access_log.len);
    epcs_buf_reset(&worker->access_log);
}

static void release_held(struct epcs_worker *worker);

/*
 * Once per loop turn: what this turn gathered goes out together. In async audit mode the
 * turn's decisions go to the worker's journal first (one write), then the answers held for
 * them are sent (or refused, when the write failed). It runs after the loop's I/O callbacks
 * (uv_check), where the answers were made, so they leave on the next iteration as they would
 * unheld; and before the loop waits (uv_prepare), for anything answered since.
 */
static void end_turn(struct epcs_worker *worker)
{
    struct epcs_decision_log *log = worker->server->decisions;
    epcs_guard_turn(worker->guard);
    if (log != NULL) {
        epcs_decision_log_flush(log, &worker->staged);
        if (epcs_decision_log_mode(log) == EPCS_AUDIT_ASYNC &&
            !h2o_linklist_is_empty(&worker->held))
            release_held(worker);
    }
    if (worker->access_log.len >= ACCESS_LOG_TURN_BYTES)
        epcs_worker_flush_access_log(worker);
}

void epcs_worker_cb_end_of_turn(uv_prepare_t *prepare)
{
    end_turn(prepare->data);
}

void epcs_worker_cb_after_io(uv_check_t *check)
{
    end_turn(check->data);
}

static void cb_access_log_due(uv_timer_t *timer)
{
    struct epcs_worker *worker = timer->data;
    if (worker->access_log.len > 0)
        epcs_worker_flush_access_log(worker);
}

static void append_access_line(struct epcs_worker *worker, h2o_req_t *req,
                               const struct timeval *now, int status, uint64_t latency_us,
                               const char *partner, size_t bytes)
{
    char line[EPCS_LOG_LINE_MAX];
    size_t len = epcs_log_access_line(line, sizeof(line), now, req->method.base, req->method.len,
                                      req->path.base, req->path.len, status, latency_us, partner,
                                      req->version >= 0x200 ? "HTTP/2" : "HTTP/1.1", bytes);
    if (worker->access_log.len == 0)
        uv_timer_start(&worker->access_log_due, cb_access_log_due, ACCESS_LOG_DELAY_MS, 0);
    if (epcs_buf_append(&worker->access_log, line, len) != 0 ||
        worker->access_log.len >= ACCESS_LOG_FLUSH_BYTES)
        epcs_worker_flush_access_log(worker);
}

/* Sends the final response and accounts for it: metrics and the access log line. */
static void finish_response(h2o_req_t *req, unsigned route, const char *partner, int status,
                            const char *content_type, char *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    struct epcs_worker *worker = epcs_worker_of(req);
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    struct timeval now;
    gettimeofday(&now, NULL);
    uint64_t latency_us = between_us(&req->timestamps.request_begin_at, &now);
    count_response(worker, route, status, latency_us);
    if (worker->server->config.access_log)
        append_access_line(worker, req, &now, status, latency_us, partner, len);
    h2o_start_response(req, &generator);
    h2o_iovec_t chunk = h2o_iovec_init(body, len);
    h2o_send(req, &chunk, 1, H2O_SEND_STATE_FINAL);
}

/*
 * An answer waiting until the decisions it reports are safe: written to the worker's journal
 * (async mode: `ticket` is the stage's record) or committed (sync mode: the log's ticket).
 */
struct held_response {
    h2o_linklist_t link;
    h2o_req_t *req;
    struct epcs_worker *worker;
    uint64_t ticket;
    /* uv_now when it was held: a stalled log gives it up after a while (sync mode). */
    uint64_t held_at;
    unsigned route;
    const char *partner;
    int status;
    const char *content_type;
    char *body;
    size_t len;
};

/* The client went away first: its request's pool is going, and the answer with it. */
static void cb_held_disposed(void *ptr)
{
    struct held_response *held = ptr;
    if (h2o_linklist_is_linked(&held->link)) {
        h2o_linklist_unlink(&held->link);
        atomic_fetch_sub_explicit(&held->worker->metrics.held_answers, 1, memory_order_relaxed);
    }
}

/* How far answers may go: the last journal record written (async) or ticket committed. */
static uint64_t decisions_safe(struct epcs_worker *worker)
{
    struct epcs_decision_log *log = worker->server->decisions;
    return epcs_decision_log_mode(log) == EPCS_AUDIT_ASYNC ? worker->staged.journaled
                                                           : epcs_decision_log_committed(log);
}

/* Answers a held request 503 instead: its decisions could not be put on record. */
static void refuse_held(struct held_response *held, const struct epcs_decision_log_stats *stats)
{
    struct epcs_worker *worker = held->worker;
    /* epcs_respond_error answers the worker's current request; the held one is that now. */
    unsigned route = worker->route;
    const char *partner = worker->partner;
    uint64_t ticket = worker->hold_ticket;
    worker->route = held->route;
    worker->partner = held->partner;
    worker->hold_ticket = 0;
    h2o_req_t *req = held->req;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    epcs_respond_error(req, 503, "decision_log_unavailable", NULL,
                       "the decision log could not write the decisions of this answer (%s), "
                       "so it is not given; retry",
                       stats->reason[0] != '\0' ? stats->reason : "it cannot write now");
    worker->route = route;
    worker->partner = partner;
    worker->hold_ticket = ticket;
}

/*
 * Sends held answers, oldest first, while their decisions are safe. The others: in async mode
 * they were in a journal write that failed (503); in sync mode they wait for the commit unless
 * the log has failed, or has been stalled while they waited EPCS_DECISION_LOG_STALL_WAIT_MS
 * (503). Held answers are in order of ticket and time, so the first that waits stops it.
 */
static void release_held(struct epcs_worker *worker)
{
    struct epcs_decision_log *log = worker->server->decisions;
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    int async = epcs_decision_log_mode(log) == EPCS_AUDIT_ASYNC;
    uint64_t safe = decisions_safe(worker), now = uv_now(&worker->loop);
    /* Answering one may close its connection and with it others held: read the list anew. */
    while (!h2o_linklist_is_empty(&worker->held)) {
        struct held_response *held =
            H2O_STRUCT_FROM_MEMBER(struct held_response, link, worker->held.next);
        int ok = held->ticket <= safe;
        int given_up =
            async ? held->ticket < worker->staged.record
                  : stats.failed ||
                        (stats.stalled && now - held->held_at >= EPCS_DECISION_LOG_STALL_WAIT_MS);
        if (!ok && !given_up)
            break;
        h2o_linklist_unlink(&held->link);
        atomic_fetch_sub_explicit(&worker->metrics.held_answers, 1, memory_order_relaxed);
        if (ok)
            finish_response(held->req, held->route, held->partner, held->status, held->content_type,
                            held->body, held->len);
        else
            refuse_held(held, &stats);
    }
}

void epcs_worker_cb_decisions_committed(uv_async_t *async)
{
    release_held(async->data);
}

/* Sends `copy`, which lives as long as the request, now or once its decisions are on disk. */
static int send_body(h2o_req_t *req, int status, const char *content_type, char *copy, size_t len)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    uint64_t ticket = worker->hold_ticket;
    worker->hold_ticket = 0;
    if (ticket == 0 || decisions_safe(worker) >= ticket) {
        finish_response(req, worker->route, worker->partner, status, content_type, copy, len);
        return 0;
    }
    struct held_response *held = h2o_mem_alloc_shared(&req->pool, sizeof(*held), cb_held_disposed);
    size_t partner_len = strlen(worker->partner) + 1;
    char *partner = h2o_mem_alloc_pool(&req->pool, partner_len);
    *held = (struct held_response){.req = req,
                                   .worker = worker,
                                   .ticket = ticket,
                                   .held_at = uv_now(&worker->loop),
                                   .route = worker->route,
                                   .partner = memcpy(partner, worker->partner, partner_len),
                                   .status = status,
                                   .content_type = content_type,
                                   .body = copy,
                                   .len = len};
    h2o_linklist_insert(&worker->held, &held->link);
    atomic_fetch_add_explicit(&worker->metrics.held_answers, 1, memory_order_relaxed);
    /* A commit may have landed between the check above and the insert (sync mode); a journal
     * record is written only at the end of the turn. */
    if (epcs_decision_log_mode(worker->server->decisions) == EPCS_AUDIT_SYNC)
        release_held(worker);
    return 0;
}

int epcs_response_send_bytes(h2o_req_t *req, int status, const char *content_type, const char *data,
                             size_t len)
{
    char *copy = h2o_mem_alloc_pool(&req->pool, len ? len : 1);
    memcpy(copy, data, len);
    return send_body(req, status, content_type, copy, len);
}

static void cb_owned_disposed(void *ptr)
{
    free(*(char **)ptr);
}

int epcs_response_send_buf(h2o_req_t *req, int status, const char *content_type,
                           struct epcs_buf *body)
{
    /* A copy of a long export would fault in its pages on the loop: the request takes the
       buffer instead and frees it with its pool. */
    static char empty[1];
    char **owned = h2o_mem_alloc_shared(&req->pool, sizeof(*owned), cb_owned_disposed);
    *owned = body->data;
    size_t len = body->len;
    *body = (struct epcs_buf){0};
    return send_body(req, status, content_type, *owned != NULL ? *owned : empty, len);
}

int epcs_response_send(h2o_req_t *req, int status, enum epcs_format format)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    if (worker->body.failed) {
        /* An append ran out of memory: the document lacks a piece, so none of it is sent. */
        static const char failure[] = "{\"error\":\"internal\",\"message\":\"the server ran out "
                                      "of memory building the answer; retry\"}\n";
        epcs_log(EPCS_LOG_ERROR, "http", "out of memory building a %d response", status);
        return epcs_response_send_bytes(req, 500, "application/json", failure, sizeof(failure) - 1);
    }
    if (format == EPCS_FORMAT_MSGPACK)
        return epcs_response_send_bytes(req, status, "application/msgpack", worker->body.data,
                                        worker->body.len);
    msgpack_object object;
    size_t offset = 0;
    epcs_buf_reset(&worker->json);
    if (msgpack_unpack(worker->body.data, worker->body.len, &offset, &worker->zone, &object) !=
            MSGPACK_UNPACK_SUCCESS ||
        epcs_json_encode(&object, &worker->json) != 0 || epcs_buf_append(&worker->json, "\n", 1)) {
        static const char failure[] =
            "{\"error\":\"internal\",\"message\":\"response could not be encoded as JSON\"}\n";
        epcs_log(EPCS_LOG_ERROR, "http", "cannot encode a %d response as JSON", status);
        return epcs_response_send_bytes(req, 500, "application/json", failure, sizeof(failure) - 1);
    }
    return epcs_response_send_bytes(req, status, "application/json", worker->json.data,
                                    worker->json.len);
}

int epcs_respond_error(h2o_req_t *req, int status, const char *code, const char *field,
                       const char *fmt, ...)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    /* Messages quote client input, which may be cut mid-character; keep the reply valid UTF-8. */
    size_t len = strlen(message);
    while (len > 0 && !epcs_utf8_valid(message, len))
        message[--len] = '\0';
    /* An empty path means the body as a whole: no field to name. */
    if (field != NULL && field[0] == '\0')
        field = NULL;
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, field != NULL ? 3 : 2);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, code);
    epcs_pack_cstr(pk, "message");
    epcs_pack_cstr(pk, message);
    if (field != NULL) {
        epcs_pack_cstr(pk, "field");
        epcs_pack_cstr(pk, field);
    }
    return epcs_response_send(req, status, epcs_response_format(req));
}

/*
 * What a check that got no verdict means in HTTP: the request's fault (400, 404, 422) or the
 * rules' (500). The `error` code is the failure's own name (epcs_check_failure_name).
 */
static const int check_failure_status[EPCS_CHECK_FAILURE_COUNT] = {
    [EPCS_CHECK_BAD_REQUEST] = 400,  [EPCS_CHECK_UNKNOWN_ELECTION] = 404,
    [EPCS_CHECK_UNKNOWN_AREA] = 404, [EPCS_CHECK_INVALID_FACT] = 422,
    [EPCS_CHECK_RULE_FAILED] = 500,
};

int epcs_check_failure_status(enum epcs_check_failure failure)
{
    if ((int)failure <= EPCS_CHECK_DECIDED || failure >= EPCS_CHECK_FAILURE_COUNT)
        return 500;
    return check_failure_status[failure];
}

int epcs_respond_check_error(h2o_req_t *req, const struct epcs_check_error *err)
{
    epcs_check_error_pack(epcs_response_begin(epcs_worker_of(req)), err, 0);
    return epcs_response_send(req, epcs_check_failure_status(err->kind), epcs_response_format(req));
}
