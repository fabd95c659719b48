/* POST /v1/check and /v1/check/batch: the body read, each check decided, the decisions put on
 * record before the answer goes out. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dates.h"
#include "decision.h"
#include "decision_log.h"
#include "log.h"
#include "http.h"

static uint64_t worker_take_decision_id(void *id_source)
{
    struct epcs_worker *worker = id_source;
    return epcs_decision_log_next_id(worker->server->decisions, &worker->staged);
}

struct epcs_check_ctx epcs_worker_check_ctx(struct epcs_worker *worker)
{
    return (struct epcs_check_ctx){
        .plugins = worker->server->plugins,
        .take_decision_id = worker->server->decisions != NULL ? worker_take_decision_id : NULL,
        .id_source = worker,
        .zone = &worker->zone,
        .facts = &worker->facts,
        .scratch = &worker->scratch,
        .scratch_packer = &worker->scratch_packer};
}

/*
 * Puts answered decisions on record before their answer goes out: counts them, hands them to
 * the decision log and holds the answer until they are safe: in the worker's journal at the
 * end of the turn (async), or committed (sync). Returns 0, or answers 503 and returns -1 when
 * the log cannot take them: an answer that is not on record is not given.
 */
static int record_decisions(h2o_req_t *req, const struct epcs_decision *decisions, size_t count)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_decision_log *log = worker->server->decisions;
    for (size_t i = 0; i < count; i++) {
        epcs_metrics_count_verdict(worker, decisions[i].area_index, decisions[i].verdict);
        epcs_decision_debug(&decisions[i], worker->partner);
    }
    uint64_t ticket = 0;
    if (log == NULL || count == 0)
        return 0;
    int sync = epcs_decision_log_mode(log) == EPCS_AUDIT_SYNC;
    int refused =
        sync ? epcs_decision_log_append(log, &worker->staged, decisions, count, worker->partner,
                                        &ticket)
             : epcs_decision_log_stage(log, &worker->staged, decisions, count, worker->partner);
    if (refused != 0) {
        struct epcs_decision_log_stats stats;
        epcs_decision_log_stats(log, &stats);
        char why[300];
        if (stats.failed || stats.stalled)
            snprintf(why, sizeof(why), "it cannot write: %s", stats.reason);
        else
            snprintf(why, sizeof(why), "its queue is full");
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        epcs_respond_error(req, 503, "decision_log_unavailable", NULL,
                           "the decision log cannot take %s now (%s), so no answer is given; "
                           "retry",
                           count == 1 ? "this decision" : "these decisions", why);
        return -1;
    }
    worker->hold_ticket = sync ? ticket : worker->staged.record;
    return 0;
}

static int handle_check(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    uint64_t started = (uint64_t)epcs_now_us();
    msgpack_object body;
    int is_msgpack;
    if (epcs_read_body(req, worker->server->config.max_body, &body, &is_msgpack) != 0)
        return 0;
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;
    struct epcs_decision decision = {.take_id = 1, .check = &body};
    if (is_msgpack) {
        decision.check_msgpack = req->entity.base;
        decision.check_len = req->entity.len;
    }
    struct epcs_check_error err;
    struct epcs_check_ctx ctx = epcs_worker_check_ctx(worker);
    msgpack_packer *pk = epcs_response_begin(worker);
    if (epcs_check_run(&ctx, engine, &body, pk, &decision, &err) != EPCS_CHECK_DECIDED)
        return epcs_respond_check_error(req, &err);
    decision.verdict_msgpack = worker->body.data;
    decision.verdict_len = worker->body.len;
    /* One clock reading serves the latency and the decision's time: the clock is read often
     * enough per check to show in profiles. */
    uint64_t verdict_at = (uint64_t)epcs_now_us();
    decision.latency_us = verdict_at - started;
    decision.at_us = (int64_t)verdict_at;
    if (record_decisions(req, &decision, 1) != 0)
        return 0;
    return epcs_response_send(req, 200, epcs_response_format(req));
}

static int handle_check_batch(h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    struct epcs_worker *worker = epcs_worker_of(req);
    const struct epcs_config *config = &worker->server->config;
    uint64_t started = (uint64_t)epcs_now_us();
    msgpack_object body;
    int is_msgpack;
    if (epcs_read_body(req, config->max_batch_body, &body, &is_msgpack) != 0)
        return 0;
    const msgpack_object *checks = NULL;
    for (uint32_t i = 0; body.type == MSGPACK_OBJECT_MAP && i < body.via.map.size; i++) {
        const msgpack_object *key = &body.via.map.ptr[i].key;
        if (!epcs_str_eq(key, "checks"))
            return epcs_respond_error(req, 400, "bad_request", NULL, "unknown field '%.*s'",
                                      epcs_quoted_len(key), key->via.str.ptr);
        checks = &body.via.map.ptr[i].val;
    }
    if (checks == NULL || checks->type != MSGPACK_OBJECT_ARRAY)
        return epcs_respond_error(req, 400, "bad_request", "checks",
                                  "the body must be {\"checks\": [check, ...]}");
    uint32_t count = checks->via.array.size;
    if (count > config->max_batch)
        return epcs_respond_error(req, 413, "too_large", "checks",
                                  "the batch has %u checks; the limit is %zu", count,
                                  config->max_batch);
    /* The router charged one request; a batch costs one per check. */
    if (count > 1 && epcs_rate_charge(req, (double)(count - 1)) != 0)
        return 0;
    struct epcs_engine *engine = epcs_engine_or_503(req);
    if (engine == NULL)
        return 0;

    /* Each slot gets its verdict or its own error; one bad check never fails the batch. */
    struct epcs_decision *decisions =
        h2o_mem_alloc_pool(&req->pool, sizeof(*decisions) * (count ? count : 1));
    size_t *offsets = h2o_mem_alloc_pool(&req->pool, sizeof(*offsets) * (count ? count : 1));
    size_t decided = 0;
    struct epcs_check_ctx ctx = epcs_worker_check_ctx(worker);
    epcs_buf_reset(&worker->batch);
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *item = &checks->via.array.ptr[i];
        struct epcs_decision *decision = &decisions[decided];
        *decision = (struct epcs_decision){.take_id = 1, .check = item};
        struct epcs_check_error err;
        size_t mark = worker->batch.len;
        uint64_t item_started = (uint64_t)epcs_now_us();
        if (epcs_check_run(&ctx, engine, item, &worker->batch_packer, decision, &err) !=
            EPCS_CHECK_DECIDED) {
            worker->batch.len = mark;
            epcs_check_error_pack(&worker->batch_packer, &err, 1);
            epcs_pack_cstr(&worker->batch_packer, "status");
            msgpack_pack_int(&worker->batch_packer, epcs_check_failure_status(err.kind));
            continue;
        }
        offsets[decided] = mark;
        decision->verdict_len = worker->batch.len - mark;
        uint64_t verdict_at = (uint64_t)epcs_now_us();
        decision->latency_us = verdict_at - item_started;
        decision->at_us = (int64_t)verdict_at;
        decided++;
    }
    /* The buffer may have moved while it grew: point at the verdicts only now. */
    for (size_t i = 0; i < decided; i++)
        decisions[i].verdict_msgpack = worker->batch.data + offsets[i];
    if (record_decisions(req, decisions, decided) != 0)
        return 0;
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 1);
    epcs_pack_cstr(pk, "results");
    msgpack_pack_array(pk, count);
    epcs_buf_append(&worker->body, worker->batch.data, worker->batch.len);
    epcs_log(EPCS_LOG_DEBUG, "check", "batch of %u in %llu us", count,
             (unsigned long long)((uint64_t)epcs_now_us() - started));
    return epcs_response_send(req, 200, epcs_response_format(req));
}

static const struct epcs_route_row check_rows[] = {
    {"POST", "/v1/check", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "check", handle_check},
    {"POST", "/v1/check/batch", EPCS_MATCH_EXACT, EPCS_ROLE_PARTNER, "check_batch",
     handle_check_batch},
};

const struct epcs_route_group epcs_check_routes = {check_rows,
                                                   sizeof(check_rows) / sizeof(check_rows[0])};
