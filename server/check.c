/* POST /v1/check: decode, validate, evaluate one or every matching area, answer. */
#include <string.h>
#include <sys/time.h>

#include "dates.h"
#include "decision.h"
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

static int bad_request(h2o_req_t *req, const char *field, const char *message)
{
    return epcs_respond_error(req, 400, "bad_request", field, "%s", message);
}

/* Returns 0, or answers 400 and returns -1. */
static int read_envelope(h2o_req_t *req, const msgpack_object *body, struct check_request *check)
{
    memset(check, 0, sizeof(*check));
    if (body->type != MSGPACK_OBJECT_MAP)
        return bad_request(req, "", "the body must be a map with election, activity, ..."), -1;
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *key = &body->via.map.ptr[i].key;
        const msgpack_object *value = &body->via.map.ptr[i].val;
        if (epcs_str_eq(key, "election")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return bad_request(req, "election", "election must be a string id"), -1;
            check->election = value;
        } else if (epcs_str_eq(key, "date")) {
            check->date = value;
        } else if (epcs_str_eq(key, "area")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return bad_request(req, "area", "area must be a string"), -1;
            check->area = value;
        } else if (epcs_str_eq(key, "actor")) {
            if (value->type != MSGPACK_OBJECT_MAP)
                return bad_request(req, "actor", "actor must be a map"), -1;
            check->actor = value;
        } else if (epcs_str_eq(key, "activity")) {
            if (value->type != MSGPACK_OBJECT_MAP)
                return bad_request(req, "activity", "activity must be a map"), -1;
            check->activity = value;
        } else {
            epcs_respond_error(req, 400, "bad_request", "", "unknown field '%.*s'",
                               (int)(key->via.str.size > 64 ? 64 : key->via.str.size),
                               key->via.str.ptr);
            return -1;
        }
    }
    if (check->election == NULL)
        return bad_request(req, "election", "election is required (an id from /v1/elections)"), -1;
    return 0;
}

static int rule_failed(h2o_req_t *req, const char *area, const struct epcs_rule_error *error)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    epcs_log(EPCS_LOG_ERROR, area, "rule failed: %s", error->message);
    msgpack_packer *pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 5);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, "rule_failed");
    epcs_pack_cstr(pk, "message");
    epcs_pack_cstr(pk, error->message);
    epcs_pack_cstr(pk, "area");
    epcs_pack_cstr(pk, area);
    epcs_pack_cstr(pk, "file");
    epcs_pack_cstr(pk, error->file);
    epcs_pack_cstr(pk, "line");
    msgpack_pack_int(pk, error->line);
    return epcs_response_send(req, 500, epcs_response_format(req));
}

/* Answers 422 or 500 for an area that did not decide; returns 0 when it did. */
static int answer_undecided(h2o_req_t *req, enum epcs_area_outcome outcome, const char *area,
                            const struct epcs_facts *facts, const struct epcs_eval *eval)
{
    if (outcome == EPCS_AREA_REJECTED)
        epcs_respond_error(req, 422, "invalid_fact", facts->field, "%s", facts->message);
    else if (outcome == EPCS_AREA_FAILED)
        rule_failed(req, area, &eval->error);
    return outcome != EPCS_AREA_DECIDED;
}

static uint64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

int epcs_handle_check(h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    struct epcs_server *server = worker->server;
    uint64_t started = now_us();

    if (req->entity.base == NULL || req->entity.len == 0)
        return bad_request(req, "", "the request body is empty");
    if (req->entity.len > server->config.max_body)
        return epcs_respond_error(req, 413, "too_large", NULL,
                                  "the body has %zu bytes; the limit is %zu", req->entity.len,
                                  server->config.max_body);
    int media = epcs_request_media(req);
    if (media < 0) {
        ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        h2o_iovec_t type = at >= 0 ? req->headers.entries[at].value : h2o_iovec_init("", 0);
        return epcs_respond_error(req, 415, "unsupported_media_type", NULL,
                                  "Content-Type must be application/msgpack or application/json"
                                  ", got '%.*s'",
                                  (int)(type.len > 64 ? 64 : type.len), type.base);
    }
    int is_msgpack = media == 1;
    msgpack_object body;
    struct epcs_decode_error decode_error;
    int decoded = is_msgpack ? epcs_msgpack_decode(req->entity.base, req->entity.len, &worker->zone,
                                                   &body, &decode_error)
                             : epcs_json_decode(req->entity.base, req->entity.len, &worker->zone,
                                                &body, &decode_error);
    if (decoded != 0)
        return bad_request(req, decode_error.field, decode_error.message);
    struct check_request check;
    if (read_envelope(req, &body, &check) != 0)
        return 0;

    struct epcs_engine *engine = epcs_worker_engine(worker);
    if (engine == NULL)
        return epcs_respond_error(req, 503, "not_ready", NULL, "no rule engine is available");
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    const struct epcs_election *election =
        epcs_ruleset_election(ruleset, check.election->via.str.ptr, check.election->via.str.size);
    if (election == NULL)
        return epcs_respond_error(
            req, 404, "unknown_election", "election",
            "no election '%.*s'; GET /v1/elections lists them",
            (int)(check.election->via.str.size > 64 ? 64 : check.election->via.str.size),
            check.election->via.str.ptr);
    int32_t date;
    if (check.date == NULL) {
        date = epcs_date_in_seoul(time(NULL));
    } else if (check.date->type != MSGPACK_OBJECT_STR ||
               epcs_date_parse(check.date->via.str.ptr, check.date->via.str.size, &date) != 0) {
        return epcs_respond_error(req, 422, "invalid_fact", "date",
                                  "date must be a date YYYY-MM-DD between %d and %d",
                                  EPCS_DATE_MIN_YEAR, EPCS_DATE_MAX_YEAR);
    }

    const struct epcs_plugin_set *plugins = server->plugins;
    int area_index = -1;
    if (check.area != NULL) {
        area_index = epcs_plugins_find(plugins, check.area->via.str.ptr, check.area->via.str.size);
        if (area_index < 0)
            return epcs_respond_error(
                req, 404, "unknown_area", "area", "no area '%.*s'; GET /v1/areas lists them",
                (int)(check.area->via.str.size > 64 ? 64 : check.area->via.str.size),
                check.area->via.str.ptr);
    }
    struct epcs_facts *facts = h2o_mem_alloc_pool(&req->pool, sizeof(*facts));
    if (epcs_facts_read(facts, plugins->vocab, check.actor, check.activity) != 0)
        return epcs_respond_error(req, 422, "invalid_fact", facts->field, "%s", facts->message);
    const struct epcs_fact *kind = epcs_facts_find(facts, "activity.kind");

    struct epcs_eval eval = {.engine = engine, .facts = facts, .date = date, .election = election};
    struct epcs_decision decision = {.election = election->id,
                                     .date = date,
                                     .ruleset = ruleset->id,
                                     .request = req->entity.base,
                                     .request_len = req->entity.len,
                                     .request_is_msgpack = is_msgpack};

    if (area_index >= 0) {
        const struct epcs_loaded_plugin *plugin = &plugins->items[area_index];
        eval.area_index = (size_t)area_index;
        eval.packer = epcs_response_begin(worker);
        if (answer_undecided(req, epcs_evaluate_area(plugins, facts, &eval), plugin->desc->name,
                             facts, &eval))
            return 0;
        decision.area = plugin->desc->name;
        decision.verdict = eval.verdict;
        decision.verdict_msgpack = worker->body.data;
        decision.verdict_len = worker->body.len;
        decision.latency_us = now_us() - started;
        epcs_decision_record(&decision);
        return epcs_response_send(req, 200, epcs_response_format(req));
    }

    /* No area: every plugin that recognises the activity answers; the strictest verdict wins. */
    msgpack_packer *pk;
    if (kind == NULL) {
        pk = epcs_response_begin(worker);
        msgpack_pack_map(pk, 5);
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
        return epcs_response_send(req, 200, epcs_response_format(req));
    }
    epcs_buf_reset(&worker->scratch);
    enum epcs_verdict_kind strictest = EPCS_VERDICT_ALLOWED;
    size_t answered = 0;
    for (size_t i = 0; i < plugins->count; i++) {
        const struct epcs_loaded_plugin *plugin = &plugins->items[i];
        if (!epcs_plugin_covers(plugin->desc, kind->value->via.str.ptr, kind->value->via.str.size))
            continue;
        eval.area_index = i;
        eval.packer = &worker->scratch_packer;
        if (answer_undecided(req, epcs_evaluate_area(plugins, facts, &eval), plugin->desc->name,
                             facts, &eval))
            return 0;
        if (eval.verdict > strictest)
            strictest = eval.verdict;
        answered++;
    }
    pk = epcs_response_begin(worker);
    msgpack_pack_map(pk, 3);
    epcs_pack_cstr(pk, "verdict");
    epcs_pack_cstr(pk, epcs_verdict_name(strictest));
    epcs_pack_cstr(pk, "results");
    msgpack_pack_array(pk, answered);
    epcs_buf_append(&worker->body, worker->scratch.data, worker->scratch.len);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
    decision.verdict = strictest;
    decision.verdict_msgpack = worker->body.data;
    decision.verdict_len = worker->body.len;
    decision.latency_us = now_us() - started;
    epcs_decision_record(&decision);
    return epcs_response_send(req, 200, epcs_response_format(req));
}
