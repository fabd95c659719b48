/* POST /v1/check and /v1/check/batch: decode, validate, evaluate one or every matching area. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "dates.h"
#include "decision.h"
#include "decision_log.h"
#include "log.h"
#include "server.h"

/* The envelope of a check, borrowed from the decoded body. */
struct check_request {
    const msgpack_object *election;
    const msgpack_object *date;
    const msgpack_object *area;
    const msgpack_object *actor;
    const msgpack_object *activity;
};

static int fail(struct epcs_check_error *err, int status, const char *code, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct epcs_check_error *err, int status, const char *code, const char *field,
                const char *fmt, ...)
{
    va_list args;
    err->status = status;
    err->code = code;
    err->area = NULL;
    snprintf(err->field, sizeof(err->field), "%s", field != NULL ? field : "");
    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);
    /* Messages quote client input cut at a byte count; a batch slot must stay valid UTF-8. */
    size_t len = strlen(err->message);
    while (len > 0 && !epcs_utf8_valid(err->message, len))
        err->message[--len] = '\0';
    return -1;
}

/* Client text quoted in messages is cut at 64 bytes. */
static int quoted_len(const msgpack_object *str)
{
    return (int)(str->via.str.size > 64 ? 64 : str->via.str.size);
}

static int read_envelope(const msgpack_object *body, struct check_request *check,
                         struct epcs_check_error *err)
{
    memset(check, 0, sizeof(*check));
    if (body->type != MSGPACK_OBJECT_MAP)
        return fail(err, 400, "bad_request", NULL,
                    "the check must be a map with election, activity, ...");
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *key = &body->via.map.ptr[i].key;
        const msgpack_object *value = &body->via.map.ptr[i].val;
        if (epcs_str_eq(key, "election")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return fail(err, 400, "bad_request", "election", "election must be a string id");
            check->election = value;
        } else if (epcs_str_eq(key, "date")) {
            check->date = value;
        } else if (epcs_str_eq(key, "area")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return fail(err, 400, "bad_request", "area", "area must be a string");
            check->area = value;
        } else if (epcs_str_eq(key, "actor")) {
            if (value->type != MSGPACK_OBJECT_MAP)
                return fail(err, 400, "bad_request", "actor", "actor must be a map");
            check->actor = value;
        } else if (epcs_str_eq(key, "activity")) {
            if (value->type != MSGPACK_OBJECT_MAP)
                return fail(err, 400, "bad_request", "activity", "activity must be a map");
            check->activity = value;
        } else {
            return fail(err, 400, "bad_request", NULL, "unknown field '%.*s'", quoted_len(key),
                        key->via.str.ptr);
        }
    }
    if (check->election == NULL)
        return fail(err, 400, "bad_request", "election",
                    "election is required (an id from /v1/elections)");
    return 0;
}

/* Turns an area that did not decide into the error it owes the client. */
static int undecided(enum epcs_area_outcome outcome, const char *area,
                     const struct epcs_facts *facts, const struct epcs_eval *eval,
                     struct epcs_check_error *err)
{
    if (outcome == EPCS_AREA_REJECTED)
        return fail(err, 422, "invalid_fact", facts->field, "%s", facts->message);
    epcs_log(EPCS_LOG_ERROR, area, "rule failed: %s", eval->error.message);
    fail(err, 500, "rule_failed", NULL, "%s", eval->error.message);
    err->area = area;
    err->rule = eval->error;
    return -1;
}

static uint64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* Whether the answer's map ends with `decision`: the caller gave an id, or one is taken. */
static int has_decision_id(const struct epcs_check_ctx *ctx, const struct epcs_decision *decision)
{
    return decision->id != 0 || (decision->take_id && ctx->log != NULL);
}

/*
 * Appends `decision: <id>`, the entry the answer's map header counted, taking the id now that
 * the verdict is decided: an id taken for a check that then fails would hold back every entry
 * after it until its worker's turn ends (the writer stores in id order).
 */
static void pack_decision_id(const struct epcs_check_ctx *ctx, msgpack_packer *pk,
                             struct epcs_decision *decision, int counted)
{
    if (decision->id == 0 && decision->take_id && ctx->log != NULL)
        decision->id = epcs_decision_log_next_id(ctx->log, ctx->stage);
    if (decision->id == 0 || !counted)
        return;
    epcs_pack_cstr(pk, "decision");
    msgpack_pack_uint64(pk, decision->id);
}

struct epcs_check_ctx epcs_worker_check_ctx(struct epcs_worker *worker)
{
    return (struct epcs_check_ctx){.plugins = worker->server->plugins,
                                   .log = worker->server->decisions,
                                   .stage = &worker->staged,
                                   .zone = &worker->zone,
                                   .facts = &worker->facts,
                                   .scratch = &worker->scratch,
                                   .scratch_packer = &worker->scratch_packer};
}

/* A context with its parts in one allocation. */
struct owned_check_ctx {
    struct epcs_check_ctx ctx;
    msgpack_zone zone;
    struct epcs_facts facts;
    struct epcs_buf scratch;
    msgpack_packer scratch_packer;
};

struct epcs_check_ctx *epcs_check_ctx_create(const struct epcs_plugin_set *plugins)
{
    struct owned_check_ctx *owned = calloc(1, sizeof(*owned));
    if (owned == NULL)
        return NULL;
    if (!msgpack_zone_init(&owned->zone, 4096)) {
        free(owned);
        return NULL;
    }
    msgpack_packer_init(&owned->scratch_packer, &owned->scratch, epcs_buf_msgpack_write);
    owned->ctx = (struct epcs_check_ctx){.plugins = plugins,
                                         .zone = &owned->zone,
                                         .facts = &owned->facts,
                                         .scratch = &owned->scratch,
                                         .scratch_packer = &owned->scratch_packer};
    return &owned->ctx;
}

void epcs_check_ctx_destroy(struct epcs_check_ctx *ctx)
{
    if (ctx == NULL)
        return;
    struct owned_check_ctx *owned = H2O_STRUCT_FROM_MEMBER(struct owned_check_ctx, ctx, ctx);
    msgpack_zone_destroy(&owned->zone);
    epcs_buf_free(&owned->scratch);
    free(owned);
}

int epcs_check_run(const struct epcs_check_ctx *ctx, struct epcs_engine *engine,
                   const msgpack_object *body, msgpack_packer *pk, struct epcs_decision *decision,
                   struct epcs_check_error *err)
{
    const struct epcs_plugin_set *plugins = ctx->plugins;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    struct check_request check;
    if (read_envelope(body, &check, err) != 0)
        return -1;
    const struct epcs_election *election =
        epcs_ruleset_election(ruleset, check.election->via.str.ptr, check.election->via.str.size);
    if (election == NULL)
        return fail(err, 404, "unknown_election", "election",
                    "no election '%.*s'; GET /v1/elections lists them", quoted_len(check.election),
                    check.election->via.str.ptr);
    int32_t date;
    if (check.date == NULL) {
        date = epcs_date_in_seoul(time(NULL));
    } else if (check.date->type != MSGPACK_OBJECT_STR ||
               epcs_date_parse(check.date->via.str.ptr, check.date->via.str.size, &date) != 0) {
        return fail(err, 422, "invalid_fact", "date",
                    "date must be a date YYYY-MM-DD between %d and %d", EPCS_DATE_MIN_YEAR,
                    EPCS_DATE_MAX_YEAR);
    }
    int area_index = -1;
    if (check.area != NULL) {
        area_index = epcs_plugins_find(plugins, check.area->via.str.ptr, check.area->via.str.size);
        if (area_index < 0)
            return fail(err, 404, "unknown_area", "area",
                        "no area '%.*s'; GET /v1/areas lists them", quoted_len(check.area),
                        check.area->via.str.ptr);
    }
    struct epcs_facts *facts = ctx->facts;
    if (epcs_facts_read(facts, plugins->vocab, check.actor, check.activity) != 0)
        return fail(err, 422, "invalid_fact", facts->field, "%s", facts->message);
    facts->date = date;

    struct epcs_eval eval = {.engine = engine, .facts = facts, .date = date, .election = election};
    decision->election = election->id;
    decision->date = date;
    decision->ruleset = ruleset->id;
    int with_id = has_decision_id(ctx, decision);
    if (area_index >= 0) {
        const char *area = plugins->items[area_index].desc->name;
        eval.area_index = (size_t)area_index;
        eval.packer = pk;
        eval.decision_follows = with_id;
        enum epcs_area_outcome outcome = epcs_evaluate_area(plugins, facts, &eval);
        if (outcome != EPCS_AREA_DECIDED)
            return undecided(outcome, area, facts, &eval, err);
        pack_decision_id(ctx, pk, decision, eval.decision_follows);
        decision->area = area;
        decision->area_index = area_index;
        decision->verdict = eval.verdict;
        return 0;
    }

    /* No area: every plugin that recognises the activity answers; the strictest verdict wins. */
    const struct epcs_fact *kind = epcs_facts_find(facts, "activity.kind");
    decision->area = NULL;
    decision->area_index = -1;
    if (kind == NULL) {
        msgpack_pack_map(pk, 5 + (size_t)with_id);
        epcs_pack_cstr(pk, "verdict");
        epcs_pack_cstr(pk, "needs_facts");
        epcs_pack_cstr(pk, "missing");
        msgpack_pack_array(pk, 1);
        epcs_pack_cstr(pk, "activity.kind");
        epcs_pack_cstr(pk, "reason");
        epcs_pack_cstr(pk, "Without area or activity.kind no area can be chosen.");
        epcs_pack_cstr(pk, "results");
        msgpack_pack_array(pk, 0);
        epcs_pack_cstr(pk, "ruleset");
        epcs_pack_cstr(pk, ruleset->id);
        pack_decision_id(ctx, pk, decision, with_id);
        decision->verdict = EPCS_VERDICT_NEEDS_FACTS;
        return 0;
    }
    epcs_buf_reset(ctx->scratch);
    enum epcs_verdict_kind strictest = EPCS_VERDICT_ALLOWED;
    size_t answered = 0;
    for (size_t i = 0; i < plugins->count; i++) {
        const struct epcs_loaded_plugin *plugin = &plugins->items[i];
        if (!epcs_plugin_covers(plugin->desc, kind->value->via.str.ptr, kind->value->via.str.size))
            continue;
        eval.area_index = i;
        eval.packer = ctx->scratch_packer;
        enum epcs_area_outcome outcome = epcs_evaluate_area(plugins, facts, &eval);
        if (outcome != EPCS_AREA_DECIDED)
            return undecided(outcome, plugin->desc->name, facts, &eval, err);
        if (eval.verdict > strictest)
            strictest = eval.verdict;
        answered++;
    }
    msgpack_pack_map(pk, 3 + (size_t)with_id);
    epcs_pack_cstr(pk, "verdict");
    epcs_pack_cstr(pk, epcs_verdict_name(strictest));
    epcs_pack_cstr(pk, "results");
    msgpack_pack_array(pk, answered);
    epcs_buf_append(pk->data, ctx->scratch->data, ctx->scratch->len);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    pack_decision_id(ctx, pk, decision, with_id);
    decision->verdict = strictest;
    return 0;
}

static void pack_error(msgpack_packer *pk, const struct epcs_check_error *err, int with_status)
{
    int has_field = err->field[0] != '\0';
    int is_rule = err->area != NULL;
    msgpack_pack_map(pk, 2 + (size_t)has_field + (is_rule ? 3 : 0) + (size_t)with_status);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, err->code);
    epcs_pack_cstr(pk, "message");
    epcs_pack_cstr(pk, err->message);
    if (has_field) {
        epcs_pack_cstr(pk, "field");
        epcs_pack_cstr(pk, err->field);
    }
    if (is_rule) {
        epcs_pack_cstr(pk, "area");
        epcs_pack_cstr(pk, err->area);
        epcs_pack_cstr(pk, "file");
        epcs_pack_cstr(pk, err->rule.file);
        epcs_pack_cstr(pk, "line");
        msgpack_pack_int(pk, err->rule.line);
    }
    if (with_status) {
        epcs_pack_cstr(pk, "status");
        msgpack_pack_int(pk, err->status);
    }
}

int epcs_respond_check_error(h2o_req_t *req, const struct epcs_check_error *err)
{
    if (err->area == NULL)
        return epcs_respond_error(req, err->status, err->code, err->field, "%s", err->message);
    pack_error(epcs_response_begin(epcs_worker_of(req)), err, 0);
    return epcs_response_send(req, err->status, epcs_response_format(req));
}

int epcs_body_media(h2o_req_t *req, size_t limit)
{
    if (req->entity.base == NULL || req->entity.len == 0)
        return epcs_respond_error(req, 400, "bad_request", NULL, "the request body is empty"), -1;
    if (req->entity.len > limit)
        return epcs_respond_error(req, 413, "too_large", NULL,
                                  "the body has %zu bytes; the limit is %zu", req->entity.len,
                                  limit),
               -1;
    int media = epcs_request_media(req);
    if (media < 0) {
        ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        h2o_iovec_t type = at >= 0 ? req->headers.entries[at].value : h2o_iovec_init("", 0);
        return epcs_respond_error(req, 415, "unsupported_media_type", NULL,
                                  "Content-Type must be application/msgpack or application/json"
                                  ", got '%.*s'",
                                  (int)(type.len > 64 ? 64 : type.len), type.base),
               -1;
    }
    return media;
}

int epcs_read_body(h2o_req_t *req, size_t limit, msgpack_object *body, int *is_msgpack)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    int media = epcs_body_media(req, limit);
    if (media < 0)
        return -1;
    if (is_msgpack != NULL)
        *is_msgpack = media == 1;
    struct epcs_decode_error decode_error;
    int decoded = media == 1 ? epcs_msgpack_decode(req->entity.base, req->entity.len, &worker->zone,
                                                   body, &decode_error)
                             : epcs_json_decode(req->entity.base, req->entity.len, &worker->zone,
                                                body, &decode_error);
    if (decoded != 0)
        return epcs_respond_error(req, 400, "bad_request", decode_error.field, "%s",
                                  decode_error.message),
               -1;
    return 0;
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

int epcs_handle_check(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    uint64_t started = now_us();
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
    if (epcs_check_run(&ctx, engine, &body, pk, &decision, &err) != 0)
        return epcs_respond_check_error(req, &err);
    decision.verdict_msgpack = worker->body.data;
    decision.verdict_len = worker->body.len;
    /* One clock reading serves the latency and the decision's time: the clock is read often
     * enough per check to show in profiles. */
    uint64_t verdict_at = now_us();
    decision.latency_us = verdict_at - started;
    decision.at_us = (int64_t)verdict_at;
    if (record_decisions(req, &decision, 1) != 0)
        return 0;
    return epcs_response_send(req, 200, epcs_response_format(req));
}

int epcs_handle_check_batch(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    const struct epcs_config *config = &worker->server->config;
    uint64_t started = now_us();
    msgpack_object body;
    int is_msgpack;
    if (epcs_read_body(req, config->max_batch_body, &body, &is_msgpack) != 0)
        return 0;
    const msgpack_object *checks = NULL;
    for (uint32_t i = 0; body.type == MSGPACK_OBJECT_MAP && i < body.via.map.size; i++) {
        const msgpack_object *key = &body.via.map.ptr[i].key;
        if (!epcs_str_eq(key, "checks"))
            return epcs_respond_error(req, 400, "bad_request", NULL, "unknown field '%.*s'",
                                      quoted_len(key), key->via.str.ptr);
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
        uint64_t item_started = now_us();
        if (epcs_check_run(&ctx, engine, item, &worker->batch_packer, decision, &err) != 0) {
            worker->batch.len = mark;
            pack_error(&worker->batch_packer, &err, 1);
            continue;
        }
        offsets[decided] = mark;
        decision->verdict_len = worker->batch.len - mark;
        uint64_t verdict_at = now_us();
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
             (unsigned long long)(now_us() - started));
    return epcs_response_send(req, 200, epcs_response_format(req));
}
