/* One check decided: its envelope read and validated, one or every matching area evaluated. */
#include "check.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "dates.h"
#include "decision.h"
#include "log.h"

static const char *const failure_names[EPCS_CHECK_FAILURE_COUNT] = {
    [EPCS_CHECK_BAD_REQUEST] = "bad_request",   [EPCS_CHECK_UNKNOWN_ELECTION] = "unknown_election",
    [EPCS_CHECK_UNKNOWN_AREA] = "unknown_area", [EPCS_CHECK_INVALID_FACT] = "invalid_fact",
    [EPCS_CHECK_RULE_FAILED] = "rule_failed",
};

const char *epcs_check_failure_name(enum epcs_check_failure failure)
{
    if ((int)failure <= EPCS_CHECK_DECIDED || failure >= EPCS_CHECK_FAILURE_COUNT)
        return NULL;
    return failure_names[failure];
}

/* The envelope of a check, borrowed from the decoded body. */
struct check_request {
    const msgpack_object *election;
    const msgpack_object *date;
    const msgpack_object *area;
    const msgpack_object *actor;
    const msgpack_object *activity;
};

static enum epcs_check_failure fail(struct epcs_check_error *err, enum epcs_check_failure kind,
                                    const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum epcs_check_failure fail(struct epcs_check_error *err, enum epcs_check_failure kind,
                                    const char *field, const char *fmt, ...)
{
    va_list args;
    err->kind = kind;
    err->area = NULL;
    snprintf(err->field, sizeof(err->field), "%s", field != NULL ? field : "");
    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);
    /* Messages quote client input cut at a byte count; a batch slot must stay valid UTF-8. */
    size_t len = strlen(err->message);
    while (len > 0 && !epcs_utf8_valid(err->message, len))
        err->message[--len] = '\0';
    return kind;
}

static enum epcs_check_failure
read_envelope(const msgpack_object *body, struct check_request *check, struct epcs_check_error *err)
{
    memset(check, 0, sizeof(*check));
    if (body->type != MSGPACK_OBJECT_MAP)
        return fail(err, EPCS_CHECK_BAD_REQUEST, NULL,
                    "the check must be a map with election, activity, ...");
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *key = &body->via.map.ptr[i].key;
        const msgpack_object *value = &body->via.map.ptr[i].val;
        if (epcs_str_eq(key, "election")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return fail(err, EPCS_CHECK_BAD_REQUEST, "election",
                            "election must be a string id");
            check->election = value;
        } else if (epcs_str_eq(key, "date")) {
            check->date = value;
        } else if (epcs_str_eq(key, "area")) {
            if (value->type != MSGPACK_OBJECT_STR)
                return fail(err, EPCS_CHECK_BAD_REQUEST, "area", "area must be a string");
            check->area = value;
        } else if (epcs_str_eq(key, "actor")) {
            if (value->type != MSGPACK_OBJECT_MAP)
                return fail(err, EPCS_CHECK_BAD_REQUEST, "actor", "actor must be a map");
            check->actor = value;
        } else if (epcs_str_eq(key, "activity")) {
            if (value->type != MSGPACK_OBJECT_MAP)
                return fail(err, EPCS_CHECK_BAD_REQUEST, "activity", "activity must be a map");
            check->activity = value;
        } else {
            return fail(err, EPCS_CHECK_BAD_REQUEST, NULL, "unknown field '%.*s'",
                        epcs_quoted_len(key), key->via.str.ptr);
        }
    }
    if (check->election == NULL)
        return fail(err, EPCS_CHECK_BAD_REQUEST, "election",
                    "election is required (an id from /v1/elections)");
    return EPCS_CHECK_DECIDED;
}

/* Turns an area that did not decide into the error it owes the client. */
static enum epcs_check_failure undecided(enum epcs_area_outcome outcome, const char *area,
                                         const struct epcs_facts *facts,
                                         const struct epcs_eval *eval, struct epcs_check_error *err)
{
    if (outcome == EPCS_AREA_REJECTED)
        return fail(err, EPCS_CHECK_INVALID_FACT, facts->field, "%s", facts->message);
    epcs_log(EPCS_LOG_ERROR, area, "rule failed: %s", eval->error.message);
    fail(err, EPCS_CHECK_RULE_FAILED, NULL, "%s", eval->error.message);
    err->area = area;
    err->rule = eval->error;
    return EPCS_CHECK_RULE_FAILED;
}

/* Whether the answer's map ends with `decision`: the caller gave an id, or one is taken. */
static int has_decision_id(const struct epcs_check_ctx *ctx, const struct epcs_decision *decision)
{
    return decision->id != 0 || (decision->take_id && ctx->take_decision_id != NULL);
}

/*
 * Appends `decision: <id>`, the entry the answer's map header counted, taking the id now that
 * the verdict is decided: an id taken for a check that then fails would hold back every entry
 * after it until its worker's turn ends (the writer stores in id order).
 */
static void pack_decision_id(const struct epcs_check_ctx *ctx, msgpack_packer *pk,
                             struct epcs_decision *decision, int counted)
{
    if (decision->id == 0 && decision->take_id && ctx->take_decision_id != NULL)
        decision->id = ctx->take_decision_id(ctx->id_source);
    if (decision->id == 0 || !counted)
        return;
    epcs_pack_cstr(pk, "decision");
    msgpack_pack_uint64(pk, decision->id);
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
    struct owned_check_ctx *owned =
        (struct owned_check_ctx *)((char *)ctx - offsetof(struct owned_check_ctx, ctx));
    msgpack_zone_destroy(&owned->zone);
    epcs_buf_free(&owned->scratch);
    free(owned);
}

/* The election, the day and the area a check's envelope names, found in the ruleset. */
struct check_target {
    const struct epcs_election *election;
    int32_t date;
    /** -1: no area named, every area that recognises the activity answers. */
    int area_index;
};

static enum epcs_check_failure find_target(const struct epcs_plugin_set *plugins,
                                           const struct epcs_ruleset *ruleset,
                                           const struct check_request *check,
                                           struct check_target *target,
                                           struct epcs_check_error *err)
{
    target->election =
        epcs_ruleset_election(ruleset, check->election->via.str.ptr, check->election->via.str.size);
    if (target->election == NULL)
        return fail(err, EPCS_CHECK_UNKNOWN_ELECTION, "election",
                    "no election '%.*s'; GET /v1/elections lists them",
                    epcs_quoted_len(check->election), check->election->via.str.ptr);
    if (check->date == NULL) {
        target->date = epcs_date_in_seoul(time(NULL));
    } else if (check->date->type != MSGPACK_OBJECT_STR ||
               epcs_date_parse(check->date->via.str.ptr, check->date->via.str.size,
                               &target->date) != 0) {
        return fail(err, EPCS_CHECK_INVALID_FACT, "date",
                    "date must be a date YYYY-MM-DD between %d and %d", EPCS_DATE_MIN_YEAR,
                    EPCS_DATE_MAX_YEAR);
    }
    target->area_index = -1;
    if (check->area != NULL) {
        target->area_index =
            epcs_plugins_find(plugins, check->area->via.str.ptr, check->area->via.str.size);
        if (target->area_index < 0)
            return fail(err, EPCS_CHECK_UNKNOWN_AREA, "area",
                        "no area '%.*s'; GET /v1/areas lists them", epcs_quoted_len(check->area),
                        check->area->via.str.ptr);
    }
    return EPCS_CHECK_DECIDED;
}

/* The named area decides alone: its answer is the verdict. */
static enum epcs_check_failure decide_area(const struct epcs_check_ctx *ctx, struct epcs_eval *eval,
                                           size_t area_index, msgpack_packer *pk,
                                           struct epcs_decision *decision,
                                           struct epcs_check_error *err)
{
    const struct epcs_plugin_set *plugins = ctx->plugins;
    const char *area = plugins->items[area_index].desc->name;
    eval->area_index = area_index;
    eval->packer = pk;
    eval->decision_follows = has_decision_id(ctx, decision);
    enum epcs_area_outcome outcome = epcs_evaluate_area(plugins, ctx->facts, eval);
    if (outcome != EPCS_AREA_DECIDED)
        return undecided(outcome, area, ctx->facts, eval, err);
    pack_decision_id(ctx, pk, decision, eval->decision_follows);
    decision->area = area;
    decision->area_index = (int)area_index;
    decision->verdict = eval->verdict;
    return EPCS_CHECK_DECIDED;
}

/* Without area or activity.kind no area can be chosen: the answer asks for the kind. */
static void pack_kind_missing(const struct epcs_check_ctx *ctx, const struct epcs_ruleset *ruleset,
                              msgpack_packer *pk, struct epcs_decision *decision)
{
    int with_id = has_decision_id(ctx, decision);
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
}

/* No area named: every plugin that recognises the activity answers; the strictest verdict
 * wins, and the answers are its `results`. */
static enum epcs_check_failure decide_every_area(const struct epcs_check_ctx *ctx,
                                                 struct epcs_eval *eval, msgpack_packer *pk,
                                                 struct epcs_decision *decision,
                                                 struct epcs_check_error *err)
{
    const struct epcs_plugin_set *plugins = ctx->plugins;
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(eval->engine);
    const struct epcs_fact *kind = epcs_facts_find(ctx->facts, "activity.kind");
    decision->area = NULL;
    decision->area_index = -1;
    if (kind == NULL) {
        pack_kind_missing(ctx, ruleset, pk, decision);
        return EPCS_CHECK_DECIDED;
    }
    epcs_buf_reset(ctx->scratch);
    enum epcs_verdict_kind strictest = EPCS_VERDICT_ALLOWED;
    size_t answered = 0;
    for (size_t i = 0; i < plugins->count; i++) {
        const struct epcs_loaded_plugin *plugin = &plugins->items[i];
        if (!epcs_plugin_covers(plugin->desc, kind->value->via.str.ptr, kind->value->via.str.size))
            continue;
        eval->area_index = i;
        eval->packer = ctx->scratch_packer;
        enum epcs_area_outcome outcome = epcs_evaluate_area(plugins, ctx->facts, eval);
        if (outcome != EPCS_AREA_DECIDED)
            return undecided(outcome, plugin->desc->name, ctx->facts, eval, err);
        if (eval->verdict > strictest)
            strictest = eval->verdict;
        answered++;
    }
    int with_id = has_decision_id(ctx, decision);
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
    return EPCS_CHECK_DECIDED;
}

enum epcs_check_failure epcs_check_run(const struct epcs_check_ctx *ctx, struct epcs_engine *engine,
                                       const msgpack_object *body, msgpack_packer *pk,
                                       struct epcs_decision *decision, struct epcs_check_error *err)
{
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    struct check_request check;
    struct check_target target;
    enum epcs_check_failure failure = read_envelope(body, &check, err);
    if (failure == EPCS_CHECK_DECIDED)
        failure = find_target(ctx->plugins, ruleset, &check, &target, err);
    if (failure != EPCS_CHECK_DECIDED)
        return failure;
    struct epcs_facts *facts = ctx->facts;
    if (epcs_facts_read(facts, ctx->plugins->vocab, check.actor, check.activity) != 0)
        return fail(err, EPCS_CHECK_INVALID_FACT, facts->field, "%s", facts->message);
    facts->date = target.date;
    decision->election = target.election->id;
    decision->date = target.date;
    decision->ruleset = ruleset->id;
    struct epcs_eval eval = {
        .engine = engine, .facts = facts, .date = target.date, .election = target.election};
    if (target.area_index >= 0)
        return decide_area(ctx, &eval, (size_t)target.area_index, pk, decision, err);
    return decide_every_area(ctx, &eval, pk, decision, err);
}

void epcs_check_error_pack(msgpack_packer *pk, const struct epcs_check_error *err, size_t extra)
{
    int has_field = err->field[0] != '\0';
    int is_rule = err->area != NULL;
    msgpack_pack_map(pk, 2 + (size_t)has_field + (is_rule ? 3 : 0) + extra);
    epcs_pack_cstr(pk, "error");
    epcs_pack_cstr(pk, epcs_check_failure_name(err->kind));
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
}
