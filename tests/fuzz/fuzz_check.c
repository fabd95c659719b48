/*
 * libFuzzer harness for the check path: every input that decodes, as msgpack and as JSON, is
 * decided by epcs_check_run with the built plugins and the bundled rules, as POST /v1/check
 * decides it but without HTTP. Each check is decided twice (the second time usually from the
 * verdict cache) and both answers must be the same; a verdict must be a well-formed document
 * with a JSON form, and an error must be one the README documents for a check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decision.h"
#include "log.h"
#include "http.h"

#ifndef EPCS_PLUGIN_DIR
#define EPCS_PLUGIN_DIR "plugins"
#endif
#ifndef EPCS_RULES_DIR
#define EPCS_RULES_DIR "lua_rules"
#endif

/* Built once: loading plugins and compiling the rules takes far longer than one check. */
static struct epcs_server server;
static struct epcs_check_ctx *ctx;
static struct epcs_engine *engine;

struct answer {
    int rc;
    struct epcs_check_error err;
    struct epcs_buf out;
};
static struct answer answers[2];

static const char *setting(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : fallback;
}

static void require(int condition, const char *what, const struct answer *answer)
{
    if (condition)
        return;
    fprintf(stderr, "fuzz_check: %s\n", what);
    if (answer != NULL && answer->rc != 0)
        fprintf(stderr, "error %s field '%s': %s\n", epcs_check_failure_name(answer->err.kind),
                answer->err.field, answer->err.message);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *plugins_dir = setting("EPCS_PLUGIN_DIR", EPCS_PLUGIN_DIR);
    const char *rules_dir = setting("EPCS_RULES_DIR", EPCS_RULES_DIR);
    epcs_log_set_level(EPCS_LOG_WARN);
    server.config.lua.memory_bytes = EPCS_LUA_DEFAULT_MEMORY;
    server.config.lua.instructions = EPCS_LUA_DEFAULT_INSTRUCTIONS;
    server.plugins = epcs_plugins_load(plugins_dir, &epcs_host_api_v1);
    if (server.plugins == NULL || server.plugins->count == 0) {
        fprintf(stderr, "fuzz_check: no plugins in %s (set EPCS_PLUGIN_DIR)\n", plugins_dir);
        exit(1);
    }
    struct epcs_rule_error err;
    struct epcs_ruleset *ruleset =
        epcs_ruleset_load(rules_dir, server.plugins, &server.config.lua, &err);
    if (ruleset == NULL) {
        fprintf(stderr, "fuzz_check: %s does not load (set EPCS_RULES_DIR): %s\n", rules_dir,
                err.message);
        exit(1);
    }
    atomic_init(&server.active_ruleset, ruleset);
    engine = epcs_engine_create(ruleset, &err);
    if (engine == NULL) {
        fprintf(stderr, "fuzz_check: no engine for %s: %s\n", rules_dir, err.message);
        exit(1);
    }
    ctx = epcs_check_ctx_create(server.plugins);
    if (ctx == NULL)
        exit(1);
    return 0;
}

static void decide(const msgpack_object *check, struct answer *answer)
{
    msgpack_packer pk;
    epcs_buf_reset(&answer->out);
    msgpack_packer_init(&pk, &answer->out, epcs_buf_msgpack_write);
    /* A nonzero id, as with the decision log on, so the answer carries it as `decision`. */
    struct epcs_decision decision = {.id = 1, .check = check};
    memset(&answer->err, 0, sizeof(answer->err));
    answer->rc = (int)epcs_check_run(ctx, engine, check, &pk, &decision, &answer->err);
    if (answer->rc == 0) {
        require(decision.election != NULL && decision.ruleset != NULL,
                "a verdict without its decision filled", answer);
        require(answer->out.len > 0, "a verdict with nothing packed", answer);
    } else {
        require(answer->out.len == 0, "an error with a partial answer packed", answer);
    }
}

/* The errors the README lists for a check: the request's faults, never the rules'. */
static void require_documented_error(const struct answer *answer)
{
    const struct epcs_check_error *err = &answer->err;
    require(epcs_check_failure_name(err->kind) != NULL && err->message[0] != '\0',
            "an error without kind or message", answer);
    int known = err->kind == EPCS_CHECK_BAD_REQUEST || err->kind == EPCS_CHECK_UNKNOWN_ELECTION ||
                err->kind == EPCS_CHECK_UNKNOWN_AREA || err->kind == EPCS_CHECK_INVALID_FACT;
    /* Facts that passed validation must never make the rules fail: that is a rule bug. */
    if (err->kind == EPCS_CHECK_RULE_FAILED && err->area != NULL)
        fprintf(stderr, "fuzz_check: rule_failed in %s at %s:%d\n", err->area, err->rule.file,
                err->rule.line);
    require(known, "an undocumented or failed answer", answer);
}

/* What the server sends: one msgpack map, decodable by our own rules, with a JSON form. */
static void require_sendable(const struct answer *answer)
{
    msgpack_object verdict;
    struct epcs_decode_error err;
    if (epcs_msgpack_decode(answer->out.data, answer->out.len, ctx->zone, &verdict, &err) != 0) {
        fprintf(stderr, "fuzz_check: verdict refused by the decoder: %s (field '%s')\n",
                err.message, err.field);
        require(0, "a verdict that is not a well-formed document", answer);
    }
    require(verdict.type == MSGPACK_OBJECT_MAP, "a verdict that is not a map", answer);
    int has_verdict = 0;
    for (uint32_t i = 0; i < verdict.via.map.size; i++)
        has_verdict |= epcs_str_eq(&verdict.via.map.ptr[i].key, "verdict");
    require(has_verdict, "a verdict without `verdict`", answer);
    struct epcs_buf json = {0};
    int encoded = epcs_json_encode(&verdict, &json);
    epcs_buf_free(&json);
    require(encoded == 0, "a verdict a JSON client cannot get", answer);
}

static void check_both_ways(const msgpack_object *check)
{
    decide(check, &answers[0]);
    decide(check, &answers[1]);
    const struct answer *first = &answers[0], *second = &answers[1];
    require(first->rc == second->rc, "the same check decided twice gave a verdict once", first);
    if (first->rc != 0) {
        require_documented_error(first);
        require(first->err.kind == second->err.kind &&
                    strcmp(first->err.field, second->err.field) == 0 &&
                    strcmp(first->err.message, second->err.message) == 0,
                "the same check refused twice in two ways", second);
        return;
    }
    require(first->out.len == second->out.len &&
                memcmp(first->out.data, second->out.data, first->out.len) == 0,
            "the same check decided twice gave two answers (verdict cache?)", first);
    require_sendable(first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msgpack_zone_clear(ctx->zone);
    msgpack_object check;
    struct epcs_decode_error err;
    if (epcs_msgpack_decode((const char *)data, size, ctx->zone, &check, &err) == 0)
        check_both_ways(&check);
    if (epcs_json_decode((const char *)data, size, ctx->zone, &check, &err) == 0)
        check_both_ways(&check);
    return 0;
}
