#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "conn_guard.h"
#include "dates.h"
#include "log.h"
#include "rule_store.h"
#include "rule_tests.h"
#include "server.h"
#include "watch.h"

/* Long enough for an editor's save (write, rename, chmod) to finish. */
#define EPCS_WATCH_QUIET_MS 300

#define LISTEN_BACKLOG 1024
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define DRAIN_POLL_MS 20

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

static void flush_access_log(struct epcs_worker *worker)
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
        flush_access_log(worker);
}

static void cb_end_of_turn(uv_prepare_t *prepare)
{
    end_turn(prepare->data);
}

static void cb_after_io(uv_check_t *check)
{
    end_turn(check->data);
}

static void cb_access_log_due(uv_timer_t *timer)
{
    struct epcs_worker *worker = timer->data;
    if (worker->access_log.len > 0)
        flush_access_log(worker);
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
        flush_access_log(worker);
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

static void cb_decisions_committed(uv_async_t *async)
{
    release_held(async->data);
}

/* Guards `wakeable`: a worker's async handles (commits, rulesets) must not be signalled once
 * they are being closed. */
static pthread_mutex_t commit_wake_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Runs on the decision log's writer thread after each commit or try (sync mode only), also
 * while the log closes after the workers are gone: server->workers is read under the lock
 * that forget_workers takes to free it.
 */
static void cb_log_committed(void *ctx)
{
    struct epcs_server *server = ctx;
    pthread_mutex_lock(&commit_wake_lock);
    for (int i = 0; server->workers != NULL && i < server->worker_count; i++) {
        if (server->workers[i].wakeable)
            uv_async_send(&server->workers[i].decisions_committed);
    }
    pthread_mutex_unlock(&commit_wake_lock);
}

/* Frees the workers (disposed already) so that the writer's callback no longer sees them. */
static void forget_workers(struct epcs_server *server)
{
    pthread_mutex_lock(&commit_wake_lock);
    struct epcs_worker *workers = server->workers;
    server->workers = NULL;
    server->worker_count = 0;
    pthread_mutex_unlock(&commit_wake_lock);
    free(workers);
}

static void set_wakeable(struct epcs_worker *worker, int wakeable)
{
    pthread_mutex_lock(&commit_wake_lock);
    worker->wakeable = wakeable;
    pthread_mutex_unlock(&commit_wake_lock);
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

/* ---- routing ------------------------------------------------------------------------------ */

/*
 * The route table, in the order of its metrics labels. Under --no-auth there are no keys to
 * manage, so the keys' paths answer that instead.
 */
static int register_routes(struct epcs_server *server)
{
    const struct epcs_route_group *groups[] = {
        &epcs_check_routes,    &epcs_health_routes,
        &epcs_meta_routes,     server->config.no_auth ? &epcs_no_key_routes : &epcs_key_routes,
        &epcs_decision_routes, &epcs_case_routes,
    };
    char err[256];
    server->router = epcs_router_create();
    if (server->router == NULL) {
        epcs_log(EPCS_LOG_ERROR, "epcsd", "out of memory for the routes");
        return -1;
    }
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (epcs_router_add(server->router, groups[i], err, sizeof(err)) != 0) {
            epcs_log(EPCS_LOG_ERROR, "epcsd", "%s", err);
            return -1;
        }
    }
    return 0;
}

/*
 * The worker's view of the keys, refreshed where no request holds a key of it: as a request
 * starts, and when the connection guard looks at a request's headers. Handlers keep the
 * keyring their request was authorised with (epcs_worker_keyring), so a reload cannot free the
 * key `worker->key` and `worker->partner` point into.
 */
static struct epcs_keyring *refresh_keyring(struct epcs_worker *worker)
{
    struct epcs_server *server = worker->server;
    struct epcs_keyring *active = atomic_load_explicit(&server->keyring, memory_order_acquire);
    if (worker->keyring == active)
        return active;
    pthread_mutex_lock(&server->keyring_lock);
    active = atomic_load(&server->keyring);
    epcs_keyring_retain(active);
    pthread_mutex_unlock(&server->keyring_lock);
    epcs_keyring_release(worker->keyring);
    worker->keyring = active;
    return active;
}

struct epcs_keyring *epcs_worker_keyring(struct epcs_worker *worker)
{
    return worker->keyring;
}

static int unauthorized(h2o_req_t *req, const char *message)
{
    static const char challenge[] = "Bearer realm=\"epcs\"";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge,
                   sizeof(challenge) - 1);
    return epcs_respond_error(req, 401, "unauthorized", "authorization", "%s", message);
}

static int too_many_requests(h2o_req_t *req, unsigned wait_seconds, double rate)
{
    char *retry_after = h2o_mem_alloc_pool(&req->pool, 16);
    int len = snprintf(retry_after, 16, "%u", wait_seconds);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry_after,
                   (size_t)len);
    struct epcs_worker *worker = epcs_worker_of(req);
    return epcs_respond_error(req, 429, "rate_limited", NULL,
                              "key %s of partner %s is limited to %g requests a second (a batch "
                              "counts its checks); retry after %u s",
                              worker->key->id, worker->key->partner, rate, wait_seconds);
}

static double key_rate(const struct epcs_worker *worker)
{
    return worker->key->rate > 0 ? worker->key->rate : worker->server->config.rate_limit;
}

int epcs_rate_charge(h2o_req_t *req, double cost)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    double rate;
    if (worker->key == NULL || cost <= 0 || (rate = key_rate(worker)) <= 0)
        return 0;
    /* The router took one for the request already. */
    unsigned wait = epcs_rate_take(&worker->key->bucket, rate, cost, 1);
    if (wait == 0)
        return 0;
    too_many_requests(req, wait, rate);
    return -1;
}

/* The token of an Authorization header value "Bearer <token>". 0, or -1 when it is not one. */
static int bearer_token(const char *value, size_t len, const char **token, size_t *token_len)
{
    if (value == NULL || len < 7 || strncasecmp(value, "Bearer ", 7) != 0)
        return -1;
    *token = value + 7;
    *token_len = len - 7;
    while (*token_len > 0 && **token == ' ') {
        (*token)++;
        (*token_len)--;
    }
    return 0;
}

/* The connection guard's question: may a request with this Authorization have its body
 * buffered? Only one with a key epcsd knows (any role), or any without keys (--no-auth). */
static int cb_admit_body(void *ctx, const char *value, size_t len)
{
    struct epcs_worker *worker = ctx;
    const char *token;
    size_t token_len;
    if (worker->server->config.no_auth)
        return 1;
    return bearer_token(value, len, &token, &token_len) == 0 &&
           epcs_keyring_verify(refresh_keyring(worker), token, token_len) != NULL;
}

/*
 * Who is asking, and may they: 0 to go on, or -1 after answering 401, 403 or 429. Sets the
 * worker's key and partner for the handler, the decision log and the access log.
 */
static int authorize(h2o_req_t *req, struct epcs_worker *worker, enum epcs_role needed)
{
    worker->key = NULL;
    if (worker->server->config.no_auth) {
        worker->partner = "local";
        return 0;
    }
    worker->partner = "-";
    if (needed == EPCS_ROLE_NONE)
        return 0;
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (at < 0)
        return unauthorized(req, "this route needs an API key: Authorization: Bearer <token>"), -1;
    const h2o_iovec_t *value = &req->headers.entries[at].value;
    const char *token;
    size_t token_len;
    if (bearer_token(value->base, value->len, &token, &token_len) != 0)
        return unauthorized(req, "the Authorization header must be Bearer <token>"), -1;
    struct epcs_key *key = epcs_keyring_verify(refresh_keyring(worker), token, token_len);
    if (key == NULL)
        return unauthorized(req, "the API key is not valid: unknown, revoked or mistyped"), -1;
    worker->key = key;
    worker->partner = key->partner;
    if (key->role < needed)
        return epcs_respond_error(req, 403, "forbidden", NULL,
                                  "key %s of partner %s has the role %s; %.*s needs %s", key->id,
                                  key->partner, epcs_role_name(key->role),
                                  (int)req->path_normalized.len, req->path_normalized.base,
                                  epcs_role_name(needed)),
               -1;
    double rate = key_rate(worker);
    unsigned wait = rate > 0 ? epcs_rate_take(&key->bucket, rate, 1, 0) : 0;
    if (wait != 0)
        return too_many_requests(req, wait, rate), -1;
    return 0;
}

#ifdef EPCS_BENCH_CEILING
/*
 * bench/run's ceiling: what h2o and HTTP/2 cost alone, a fixed answer of a verdict's size with
 * no decoding, rules, log or accounting. Compiled in only with -DEPCS_BENCH_CEILING=ON.
 */
static int answer_ceiling(h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    static char body[600];
    memset(body, 'x', sizeof(body));
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = sizeof(body);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/msgpack"));
    h2o_start_response(req, &generator);
    h2o_iovec_t chunk = h2o_iovec_init(body, sizeof(body));
    h2o_send(req, &chunk, 1, H2O_SEND_STATE_FINAL);
    return 0;
}
#endif

static int cb_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
#ifdef EPCS_BENCH_CEILING
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len,
                  H2O_STRLIT("/bench/ceiling")))
        return answer_ceiling(req);
#endif
    msgpack_zone_clear(&worker->zone);
    worker->hold_ticket = 0;
    struct epcs_route_result route;
    epcs_router_match(worker->server->router, req->method, req->path_normalized, &route);
    worker->route = route.slot;
    if (authorize(req, worker, route.role) != 0)
        return 0;
    return epcs_router_answer(req, &route);
}

/* ---- rulesets ----------------------------------------------------------------------------- */

struct epcs_engine *epcs_worker_engine(struct epcs_worker *worker)
{
    struct epcs_server *server = worker->server;
    struct epcs_ruleset *active =
        atomic_load_explicit(&server->active_ruleset, memory_order_acquire);
    if (worker->engine != NULL && epcs_engine_ruleset(worker->engine) == active)
        return worker->engine;
    pthread_mutex_lock(&server->ruleset_lock);
    active = atomic_load(&server->active_ruleset);
    epcs_ruleset_retain(active);
    pthread_mutex_unlock(&server->ruleset_lock);
    struct epcs_rule_error err;
    struct epcs_engine *engine = epcs_engine_create(active, &err);
    if (engine == NULL) {
        /* The ruleset compiled once already, so this is memory pressure: keep serving. */
        epcs_log(EPCS_LOG_ERROR, "rules", "worker %d cannot switch to %s: %s", worker->index,
                 active->id, err.message);
    } else {
        epcs_engine_destroy(worker->engine);
        worker->engine = engine;
        epcs_log(EPCS_LOG_DEBUG, "rules", "worker %d now runs %s", worker->index, active->id);
    }
    epcs_ruleset_release(active);
    return worker->engine;
}

struct epcs_engine *epcs_engine_or_503(h2o_req_t *req)
{
    struct epcs_engine *engine = epcs_worker_engine(epcs_worker_of(req));
    if (engine == NULL)
        epcs_respond_error(req, 503, "not_ready", NULL, "no rule engine is available");
    return engine;
}

static void publish_ruleset(struct epcs_server *server, struct epcs_ruleset *ruleset)
{
    pthread_mutex_lock(&server->ruleset_lock);
    struct epcs_ruleset *old = atomic_load(&server->active_ruleset);
    atomic_store_explicit(&server->active_ruleset, ruleset, memory_order_release);
    pthread_mutex_unlock(&server->ruleset_lock);
    epcs_ruleset_release(old);
    /* Busy workers switch at their next request anyway; this reaches the idle ones. A worker
     * that has stopped (its loop closed while another still drains) is left alone: its async
     * handle is gone. */
    pthread_mutex_lock(&commit_wake_lock);
    for (int i = 0; i < server->worker_count; i++) {
        if (server->workers[i].wakeable)
            uv_async_send(&server->workers[i].ruleset_changed);
    }
    pthread_mutex_unlock(&commit_wake_lock);
}

static void cb_ruleset_changed(uv_async_t *async)
{
    epcs_worker_engine(async->data);
}

/* SIGHUP and the directory watch may ask at once; one reload at a time keeps the log honest. */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* What /v1/rules and /readyz say about the rules directory: its latest refusal stays visible
 * until a reload of it works. */
static void set_refusal(struct epcs_server *server, const struct epcs_rule_error *err)
{
    pthread_mutex_lock(&server->rules_state_lock);
    server->rules_refused = err != NULL;
    if (err != NULL) {
        server->rules_refusal = *err;
        server->rules_refused_at = time(NULL);
    } else {
        server->rules_fallback = 0;
    }
    pthread_mutex_unlock(&server->rules_state_lock);
}

void epcs_server_rules_state(struct epcs_server *server, struct epcs_rules_state *state)
{
    pthread_mutex_lock(&server->rules_state_lock);
    state->refused = server->rules_refused;
    state->fallback = server->rules_fallback;
    state->error = server->rules_refusal;
    state->refused_at = server->rules_refused_at;
    pthread_mutex_unlock(&server->rules_state_lock);
}

static void refuse(struct epcs_server *server, struct epcs_reload_outcome *outcome,
                   const struct epcs_rule_error *err)
{
    atomic_fetch_add(&server->reloads_refused, 1);
    set_refusal(server, err);
    outcome->status = "refused";
    outcome->error = *err;
    epcs_log(EPCS_LOG_ERROR, "rules", "reload refused, the running ruleset stays: %s",
             err->message);
}

static void reload_rules_locked(struct epcs_server *server, const char *by, const char *why,
                                struct epcs_reload_outcome *outcome)
{
    struct timespec started, finished;
    clock_gettime(CLOCK_MONOTONIC, &started);
    struct epcs_rule_error err = {.line = 0};
    memset(outcome, 0, sizeof(*outcome));
    snprintf(outcome->previous, sizeof(outcome->previous), "%s",
             atomic_load(&server->active_ruleset)->id);
    struct epcs_ruleset *ruleset =
        epcs_ruleset_load(server->config.rules_dir, server->plugins, &server->config.lua, &err);
    if (ruleset == NULL) {
        refuse(server, outcome, &err);
        return;
    }
    snprintf(outcome->ruleset, sizeof(outcome->ruleset), "%s", ruleset->id);
    char failure[400] = "";
    if (epcs_rule_tests_verify(ruleset, failure, sizeof(failure)) != 0) {
        snprintf(err.message, sizeof(err.message), "the rule tests of %s fail: %s", ruleset->id,
                 failure);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    if (epcs_rule_store_save(server->rule_store, ruleset) != 0) {
        snprintf(err.message, sizeof(err.message), "%s cannot be stored under %s", ruleset->id,
                 server->config.data_dir);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    if (strcmp(ruleset->id, outcome->previous) == 0) {
        atomic_fetch_add(&server->reloads_unchanged, 1);
        set_refusal(server, NULL);
        outcome->status = "unchanged";
        epcs_log(EPCS_LOG_INFO, "rules", "%s unchanged (%s)", server->config.rules_dir,
                 ruleset->id);
        epcs_ruleset_release(ruleset);
        return;
    }
    /* No switch the history does not tell. */
    if (epcs_rule_store_record_activation(server->rule_store, outcome->previous, ruleset->id, by,
                                          why) != 0) {
        snprintf(err.message, sizeof(err.message),
                 "the activation of %s cannot be recorded under %s", ruleset->id,
                 server->config.data_dir);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    set_refusal(server, NULL);
    publish_ruleset(server, ruleset);
    clock_gettime(CLOCK_MONOTONIC, &finished);
    atomic_fetch_add(&server->reloads_activated, 1);
    outcome->status = "activated";
    outcome->milliseconds = (double)(finished.tv_sec - started.tv_sec) * 1e3 +
                            (double)(finished.tv_nsec - started.tv_nsec) / 1e6;
    epcs_log(EPCS_LOG_INFO, "rules", "reloaded %s as %s in %.1f ms (compile, tests, store)",
             server->config.rules_dir, outcome->ruleset, outcome->milliseconds);
}

void epcs_server_reload(struct epcs_server *server, const char *by, const char *why,
                        struct epcs_reload_outcome *outcome)
{
    pthread_mutex_lock(&reload_lock);
    reload_rules_locked(server, by, why, outcome);
    pthread_mutex_unlock(&reload_lock);
}

static pthread_mutex_t keys_reload_lock = PTHREAD_MUTEX_INITIALIZER;

int epcs_server_reload_keys(struct epcs_server *server, int force)
{
    if (server->config.no_auth)
        return 0;
    pthread_mutex_lock(&keys_reload_lock);
    struct epcs_keyring *current = atomic_load(&server->keyring);
    int rc = 0;
    if (force || epcs_keyring_stale(current, server->keys_path)) {
        char err[512];
        struct epcs_keyring *fresh = epcs_keyring_load(server->keys_path, err, sizeof(err));
        if (fresh == NULL) {
            epcs_log(EPCS_LOG_ERROR, "keys", "keys file not reloaded, the previous keys stay: %s",
                     err);
            rc = -1;
        } else {
            epcs_keyring_inherit_buckets(fresh, current);
            pthread_mutex_lock(&server->keyring_lock);
            atomic_store_explicit(&server->keyring, fresh, memory_order_release);
            pthread_mutex_unlock(&server->keyring_lock);
            epcs_keyring_release(current);
            epcs_log(EPCS_LOG_INFO, "keys", "%zu API key(s) from %s", fresh->count,
                     server->keys_path);
        }
    }
    pthread_mutex_unlock(&keys_reload_lock);
    return rc;
}

static void cb_rules_changed(void *ctx)
{
    struct epcs_server *server = ctx;
    struct epcs_reload_outcome outcome;
    epcs_server_reload(server, "directory watch", "the files of the rules directory changed",
                       &outcome);
}

/* ---- listeners ---------------------------------------------------------------------------- */

static int address_is_loopback(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127;
    if (addr->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)addr)->sin6_addr);
    return 0;
}

/* A stream socket for `ai` with `port`, the address to bind it to in `addr`; -1 on failure. */
static int address_socket(const struct addrinfo *ai, uint16_t port, struct sockaddr_storage *addr)
{
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    if (addr->ss_family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)addr)->sin6_port = htons(port);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd >= 0 && ai->ai_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int open_listener(const struct addrinfo *ai, uint16_t port)
{
    struct sockaddr_storage addr;
    int fd = address_socket(ai, port, &addr);
    if (fd < 0)
        return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/*
 * The workers' listeners share their address with SO_REUSEPORT, which lets any process of the
 * same user join in and take part of the traffic unseen (an old ruleset, or a --no-auth
 * epcsd). A plain bind first tells whether someone listens there already.
 */
static int address_taken(const struct addrinfo *ai, uint16_t port)
{
    struct sockaddr_storage addr;
    int fd = address_socket(ai, port, &addr);
    if (fd < 0)
        return 0;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    int taken = bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

/* One socket per worker per address, all bound to the same port with SO_REUSEPORT so the
 * kernel spreads connections over the workers. Port 0 is resolved by the first bind. */
static int open_listeners(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    size_t total = config->listen_count * (size_t)server->worker_count;
    server->listen_fds = malloc(sizeof(int) * total);
    if (server->listen_fds == NULL)
        return -1;
    for (size_t a = 0; a < config->listen_count; a++) {
        char host[256], port_text[16];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
        struct addrinfo *ai = NULL;
        uint16_t port;
        int rc;
        /* The command line checked every address already. */
        if (epcs_listen_split(config->listen[a], host, sizeof(host), &port) != 0)
            return -1;
        snprintf(port_text, sizeof(port_text), "%u", port);
        if ((rc = getaddrinfo(host, port_text, &hints, &ai)) != 0) {
            epcs_log(EPCS_LOG_ERROR, "listen", "--listen %s: %s", config->listen[a],
                     gai_strerror(rc));
            return -1;
        }
        for (const struct addrinfo *each = ai; config->no_auth && each != NULL;
             each = each->ai_next) {
            if (!address_is_loopback(each->ai_addr)) {
                epcs_log(EPCS_LOG_ERROR, "listen",
                         "--listen %s is not a loopback address: --no-auth (no API keys) is "
                         "for development on this machine only; create keys with epcsd keys",
                         config->listen[a]);
                freeaddrinfo(ai);
                return -1;
            }
        }
        if (port != 0 && address_taken(ai, port)) {
            epcs_log(EPCS_LOG_ERROR, "listen",
                     "--listen %s: the address is in use (another epcsd, or another program, "
                     "listens there); epcsd does not share its address",
                     config->listen[a]);
            freeaddrinfo(ai);
            return -1;
        }
        for (int w = 0; w < server->worker_count; w++) {
            int fd = open_listener(ai, port);
            if (fd < 0) {
                epcs_log(EPCS_LOG_ERROR, "listen", "--listen %s: %s", config->listen[a],
                         strerror(errno));
                freeaddrinfo(ai);
                return -1;
            }
            server->listen_fds[server->listen_fd_count++] = fd;
            if (port == 0) {
                struct sockaddr_storage bound;
                socklen_t bound_len = sizeof(bound);
                getsockname(fd, (struct sockaddr *)&bound, &bound_len);
                port =
                    ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                     : ((struct sockaddr_in6 *)&bound)->sin6_port);
            }
        }
        freeaddrinfo(ai);
        epcs_log(EPCS_LOG_INFO, "listen", "listening on %s://%s%s%s:%u (%s)",
                 server->ssl_ctx ? "https" : "http", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", port,
                 server->ssl_ctx ? "TLS 1.2+, ALPN h2 and http/1.1"
                                 : "h2c prior knowledge and HTTP/1.1");
    }
    return 0;
}

static SSL_CTX *create_tls(const struct epcs_config *config)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* TLS 1.2 offers only forward-secret AEAD suites (the "intermediate" profile); TLS 1.3 has
     * no others. A recorded session must not be decryptable with the key stolen later. */
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1) {
        epcs_log(EPCS_LOG_ERROR, "tls", "cannot set the TLS 1.2 cipher suites: %s",
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, config->tls_cert) != 1) {
        epcs_log(EPCS_LOG_ERROR, "tls", "--tls-cert %s: %s", config->tls_cert,
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, config->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        epcs_log(EPCS_LOG_ERROR, "tls", "--tls-key %s: %s", config->tls_key,
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

/* ---- workers ------------------------------------------------------------------------------ */

static void cb_accept(uv_stream_t *listener, int status)
{
    struct epcs_worker *worker = listener->data;
    if (status != 0)
        return;
    epcs_guard_accept(worker->guard, listener, &worker->accept_ctx);
}

static int drained(struct epcs_worker *worker)
{
    h2o_context_t *ctx = &worker->ctx;
    if (!h2o_linklist_is_empty(&ctx->http1._conns) || !h2o_linklist_is_empty(&ctx->http2._conns))
        return 0;
    /* h2o's graceful shutdown resends GOAWAY after a second and then waits --shutdown-timeout
     * to close stragglers; with no connection left there is nothing for either to do, and
     * waiting it out held every stop whose last request ended after that second. */
    if (h2o_timeout_is_linked(&ctx->http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&ctx->http2._graceful_shutdown_timeout);
    return 1;
}

static void cb_drain(uv_timer_t *timer)
{
    struct epcs_worker *worker = timer->data;
    /* Keep-alive HTTP/1.1 connections fall idle as their last answers go out. */
    epcs_guard_close_idle(worker->guard);
    if (drained(worker)) {
        uv_stop(&worker->loop);
    } else if (uv_now(&worker->loop) >= worker->drain_deadline) {
        epcs_log(EPCS_LOG_WARN, "shutdown",
                 "worker %d: connections still open after %d s, "
                 "closing them",
                 worker->index, worker->server->config.shutdown_seconds);
        uv_stop(&worker->loop);
    }
}

static void cb_stop(uv_async_t *async)
{
    struct epcs_worker *worker = async->data;
    for (size_t i = 0; i < worker->listener_count; i++)
        uv_close((uv_handle_t *)&worker->listeners[i], NULL);
    h2o_context_request_shutdown(&worker->ctx);
    worker->drain_deadline =
        uv_now(&worker->loop) + (uint64_t)worker->server->config.shutdown_seconds * 1000;
    uv_timer_start(&worker->drain_timer, cb_drain, 0, DRAIN_POLL_MS);
}

static void cb_close_handle(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void *worker_main(void *arg)
{
    struct epcs_worker *worker = arg;
    struct epcs_server *server = worker->server;
    char name[16];
    snprintf(name, sizeof(name), "epcs-worker-%d", worker->index);
    prctl(PR_SET_NAME, name);
    h2o_context_init(&worker->ctx, &worker->loop, &server->globalconf);
    worker->accept_ctx.ctx = &worker->ctx;
    worker->accept_ctx.hosts = server->globalconf.hosts;
    worker->accept_ctx.ssl_ctx = server->ssl_ctx;
    for (size_t i = 0; i < worker->listener_count; i++) {
        uv_tcp_t *listener = &worker->listeners[i];
        int fd = server->listen_fds[i * (size_t)server->worker_count + (size_t)worker->index];
        int rc;
        uv_tcp_init(&worker->loop, listener);
        listener->data = worker;
        /* libuv owns the descriptor from here and closes it with the handle. */
        server->listen_fds[i * (size_t)server->worker_count + (size_t)worker->index] = -1;
        if ((rc = uv_tcp_open(listener, fd)) != 0 ||
            (rc = uv_listen((uv_stream_t *)listener, LISTEN_BACKLOG, cb_accept)) != 0)
            epcs_log(EPCS_LOG_ERROR, "listen", "worker %d: %s", worker->index, uv_strerror(rc));
    }
    uv_run(&worker->loop, UV_RUN_DEFAULT);
    worker->loop_stopped = 1;

    set_wakeable(worker, 0);
    /* Decisions of requests answered by nobody now (the loop stopped) still go on record, as
     * those of a client that went away do. */
    if (worker->server->decisions != NULL)
        epcs_decision_log_flush(worker->server->decisions, &worker->staged);
    flush_access_log(worker);
    int clean = drained(worker);
    if (clean)
        h2o_context_dispose(&worker->ctx);
    uv_walk(&worker->loop, cb_close_handle, NULL);
    uv_run(&worker->loop, UV_RUN_DEFAULT);
    if (clean)
        uv_loop_close(&worker->loop);
    return NULL;
}

static int init_worker(struct epcs_server *server, struct epcs_worker *worker, int index)
{
    struct epcs_rule_error err;
    worker->server = server;
    worker->index = index;
    worker->listener_count = server->config.listen_count;
    worker->listeners = calloc(worker->listener_count, sizeof(*worker->listeners));
    if (worker->listeners == NULL || !msgpack_zone_init(&worker->zone, 4096))
        return -1;
    worker->zone_ready = 1;
    char why[512];
    if (server->decisions != NULL &&
        epcs_decision_log_attach(server->decisions, &worker->staged, why, sizeof(why)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "worker %d: %s", index, why);
        return -1;
    }
    msgpack_packer_init(&worker->packer, &worker->body, epcs_buf_msgpack_write);
    msgpack_packer_init(&worker->scratch_packer, &worker->scratch, epcs_buf_msgpack_write);
    msgpack_packer_init(&worker->batch_packer, &worker->batch, epcs_buf_msgpack_write);
    worker->engine = epcs_engine_create(atomic_load(&server->active_ruleset), &err);
    if (worker->engine == NULL) {
        epcs_log(EPCS_LOG_ERROR, "rules", "worker %d: %s", index, err.message);
        return -1;
    }
    if (uv_loop_init(&worker->loop) != 0)
        return -1;
    worker->loop_ready = 1;
    size_t share = (server->config.max_connections + (size_t)server->worker_count - 1) /
                   (size_t)server->worker_count;
    size_t largest_body = server->config.max_body > server->config.max_batch_body
                              ? server->config.max_body
                              : server->config.max_batch_body;
    /* Two of the largest bodies at once: a batch may be uploading while the next one starts. */
    struct epcs_guard_limits limits = {.max_connections = share,
                                       .max_connection_body = 2 * largest_body};
    worker->guard = epcs_guard_create(&worker->loop, &worker->ctx, &limits, cb_admit_body, worker);
    if (worker->guard == NULL)
        return -1;
    uv_async_init(&worker->loop, &worker->stop_signal, cb_stop);
    worker->stop_signal.data = worker;
    uv_async_init(&worker->loop, &worker->ruleset_changed, cb_ruleset_changed);
    worker->ruleset_changed.data = worker;
    uv_timer_init(&worker->loop, &worker->drain_timer);
    worker->drain_timer.data = worker;
    uv_async_init(&worker->loop, &worker->decisions_committed, cb_decisions_committed);
    worker->decisions_committed.data = worker;
    uv_prepare_init(&worker->loop, &worker->access_log_flush);
    worker->access_log_flush.data = worker;
    uv_timer_init(&worker->loop, &worker->access_log_due);
    worker->access_log_due.data = worker;
    uv_prepare_start(&worker->access_log_flush, cb_end_of_turn);
    uv_check_init(&worker->loop, &worker->after_io);
    worker->after_io.data = worker;
    uv_check_start(&worker->after_io, cb_after_io);
    epcs_cases_worker_init(worker);
    h2o_linklist_init_anchor(&worker->held);
    set_wakeable(worker, 1);
    worker->partner = "-";
    /* One row per area and one for checks every matching area answered. */
    worker->metrics.verdicts =
        calloc(server->plugins->count + 1, sizeof(*worker->metrics.verdicts));
    if (worker->metrics.verdicts == NULL)
        return -1;
    return 0;
}

static void dispose_worker(struct epcs_worker *worker)
{
    /* A worker after one that failed to set up was never set up itself. */
    if (worker->server != NULL && worker->server->decisions != NULL)
        epcs_decision_log_detach(worker->server->decisions, &worker->staged);
    epcs_guard_destroy(worker->guard);
    epcs_engine_destroy(worker->engine);
    epcs_keyring_release(worker->keyring);
    free(worker->metrics.verdicts);
    if (worker->zone_ready)
        msgpack_zone_destroy(&worker->zone);
    epcs_buf_free(&worker->body);
    epcs_buf_free(&worker->scratch);
    epcs_buf_free(&worker->json);
    epcs_buf_free(&worker->batch);
    /* Lines of a worker that never ran its loop to the end (start-up failure) still count. */
    epcs_log_write_lines(worker->access_log.data, worker->access_log.len);
    epcs_buf_free(&worker->access_log);
    free(worker->listeners);
}

static int wait_for_stop_signal(struct epcs_server *server, const sigset_t *signals)
{
    /* Once a second the keys file is looked at, so `epcsd keys revoke` takes effect by itself. */
    const struct timespec key_poll = {.tv_sec = 1};
    for (;;) {
        int sig = sigtimedwait(signals, NULL, &key_poll);
        if (sig < 0) {
            epcs_server_reload_keys(server, 0);
            continue;
        }
        if (sig == SIGHUP) {
            struct epcs_reload_outcome outcome;
            epcs_server_reload_keys(server, 0);
            epcs_server_reload(server, "signal", "SIGHUP", &outcome);
            continue;
        }
        epcs_log(EPCS_LOG_INFO, "shutdown", "%s: finishing in-flight requests (up to %d s)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", server->config.shutdown_seconds);
        return sig;
    }
}

int epcs_server_run(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    h2o_config_init(&server->globalconf);
    server->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("epcsd"));
    /* h2o's own limit sits above ours so clients get our 413 with a JSON body; beyond it an
     * HTTP/2 stream is refused outright, which is all such a body deserves. */
    size_t largest =
        config->max_body > config->max_batch_body ? config->max_body : config->max_batch_body;
    server->globalconf.max_request_entity_size = largest * 2;
    server->globalconf.http2.graceful_shutdown_timeout = (uint64_t)config->shutdown_seconds * 1000;
    server->globalconf.http2.max_concurrent_requests_per_connection = (size_t)config->max_streams;
    h2o_hostconf_t *hostconf =
        h2o_config_register_host(&server->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = cb_on_req;

    int status = 1;
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    /* Workers inherit the mask, so only the main thread's sigwait sees these signals. */
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file size limit (ulimit -f) makes a write fail with EFBIG, which stalls the decision
     * log until it is raised, instead of killing epcsd mid-write. */
    signal(SIGXFSZ, SIG_IGN);

    server->worker_count = config->threads;
    server->workers = calloc((size_t)server->worker_count, sizeof(*server->workers));
    if (server->workers == NULL || register_routes(server) != 0)
        goto done;
    if (config->tls_cert != NULL && (server->ssl_ctx = create_tls(config)) == NULL)
        goto done;
    if (open_listeners(server) != 0)
        goto done;
    if (!config->no_auth) {
        char err[512];
        if (config->keys_file != NULL)
            snprintf(server->keys_path, sizeof(server->keys_path), "%s", config->keys_file);
        else
            snprintf(server->keys_path, sizeof(server->keys_path), "%s/keys", config->data_dir);
        struct epcs_keyring *keyring = epcs_keyring_load(server->keys_path, err, sizeof(err));
        if (keyring == NULL) {
            epcs_log(EPCS_LOG_ERROR, "keys", "%s", err);
            goto done;
        }
        atomic_store(&server->keyring, keyring);
        epcs_log(keyring->count > 0 ? EPCS_LOG_INFO : EPCS_LOG_WARN, "keys",
                 "%zu API key(s) from %s%s", keyring->count, server->keys_path,
                 keyring->count > 0 ? ""
                                    : ": every request but /healthz and /readyz gets 401 "
                                      "until `epcsd keys create` adds one");
    }
    if (config->audit != EPCS_AUDIT_OFF) {
        char err[512];
        server->decisions = epcs_decision_log_open(config->data_dir, config->audit,
                                                   config->audit_queue, err, sizeof(err));
        if (server->decisions == NULL) {
            epcs_log(EPCS_LOG_ERROR, "decisions", "cannot open the decision log: %s", err);
            goto done;
        }
        if (config->audit == EPCS_AUDIT_SYNC)
            epcs_decision_log_on_commit(server->decisions, cb_log_committed, server);
        epcs_log(EPCS_LOG_INFO, "decisions", "decision log %s/decisions.db (%s)", config->data_dir,
                 config->audit == EPCS_AUDIT_SYNC ? "sync" : "async");
    }
    {
        char err[512];
        server->cases = epcs_cases_open(config->data_dir, server->decisions, err, sizeof(err));
        if (server->cases == NULL) {
            epcs_log(EPCS_LOG_ERROR, "cases", "cannot open the case store: %s", err);
            goto done;
        }
    }
    /* Copied while no worker runs: once one does, a reload it serves may free the ruleset. */
    char ruleset_id[sizeof(atomic_load(&server->active_ruleset)->id)];
    snprintf(ruleset_id, sizeof(ruleset_id), "%s", atomic_load(&server->active_ruleset)->id);
    int started = 0;
    for (int i = 0; i < server->worker_count; i++) {
        if (init_worker(server, &server->workers[i], i) != 0) {
            epcs_log(EPCS_LOG_ERROR, "epcsd", "cannot set up worker %d", i);
            goto stop_workers;
        }
    }
    for (; started < server->worker_count; started++) {
        if (pthread_create(&server->workers[started].thread, NULL, worker_main,
                           &server->workers[started]) != 0) {
            epcs_log(EPCS_LOG_ERROR, "epcsd", "cannot start worker thread %d", started);
            goto stop_workers;
        }
    }
    /* Armed before "ready": an edit saved the moment an operator sees that line is seen. */
    struct epcs_watch *watch =
        config->watch_rules
            ? epcs_watch_start(config->rules_dir, EPCS_WATCH_QUIET_MS, cb_rules_changed, server)
            : NULL;
    epcs_log(EPCS_LOG_INFO, "epcsd", "ready: %d worker thread(s), ruleset %s, %zu area(s)",
             server->worker_count, ruleset_id, server->plugins->count);
    wait_for_stop_signal(server, &signals);
    epcs_watch_stop(watch);
    status = 0;
stop_workers:
    for (int i = 0; i < started; i++)
        uv_async_send(&server->workers[i].stop_signal);
    for (int i = 0; i < started; i++)
        pthread_join(server->workers[i].thread, NULL);
    for (int i = 0; i < server->worker_count; i++) {
        struct epcs_worker *worker = &server->workers[i];
        if (i >= started && worker->loop_ready) {
            set_wakeable(worker, 0);
            uv_walk(&worker->loop, cb_close_handle, NULL);
            uv_run(&worker->loop, UV_RUN_DEFAULT);
            uv_loop_close(&worker->loop);
        }
        dispose_worker(worker);
    }
    if (status == 0)
        epcs_log(EPCS_LOG_INFO, "shutdown", "stopped cleanly");
done:
    for (size_t i = 0; i < server->listen_fd_count; i++) {
        if (server->listen_fds[i] >= 0)
            close(server->listen_fds[i]);
    }
    free(server->listen_fds);
    forget_workers(server);
    if (server->ssl_ctx != NULL)
        SSL_CTX_free(server->ssl_ctx);
    /* After the workers, whose loops ran every write they had queued to the end; before the
     * decision log, which takes the store's events. */
    epcs_cases_close(server->cases);
    server->cases = NULL;
    /* After the workers: answers held for a commit have all been released by now. */
    epcs_decision_log_close(server->decisions);
    server->decisions = NULL;
    epcs_keyring_release(atomic_load(&server->keyring));
    epcs_router_destroy(server->router);
    server->router = NULL;
    h2o_config_dispose(&server->globalconf);
    return status;
}
