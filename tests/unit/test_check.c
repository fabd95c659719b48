/*
 * The core's check and impact analysis, in process: the built plugins and the bundled rules,
 * no server, no HTTP. Each failure comes back as its kind with the field and message a client
 * sees; a decision id is taken only for a decided check; impact reports exactly the checks
 * whose answer an amendment changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "check.h"
#include "codec.h"
#include "decision.h"
#include "impact.h"
#include "log.h"

static const struct epcs_lua_limits limits = {.memory_bytes = 8u << 20, .instructions = 1000000};

struct fixture {
    struct epcs_plugin_set *plugins;
    struct epcs_ruleset *bundled;
    struct epcs_engine *engine;
    struct epcs_check_ctx *ctx;
    /* What the answer under test decodes to, and the JSON text of it. */
    msgpack_zone zone;
    struct epcs_buf out, json;
    /* Decision ids handed out through the context's callback. */
    uint64_t ids_taken;
};

static uint64_t take_id(void *id_source)
{
    struct fixture *f = id_source;
    return 1000 + ++f->ids_taken;
}

static struct epcs_ruleset *load_rules(const struct fixture *f, const char *dir)
{
    struct epcs_rule_error err;
    struct epcs_ruleset *ruleset = epcs_ruleset_load(dir, f->plugins, &limits, &err);
    if (ruleset == NULL)
        fail_msg("%s does not load: %s", dir, err.message);
    return ruleset;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    epcs_log_set_level(EPCS_LOG_WARN);
    f->plugins = epcs_plugins_load(EPCS_PLUGIN_DIR, &epcs_host_api_v1);
    assert_non_null(f->plugins);
    f->bundled = load_rules(f, EPCS_RULES_DIR);
    struct epcs_rule_error err;
    f->engine = epcs_engine_create(f->bundled, &err);
    assert_non_null(f->engine);
    f->ctx = epcs_check_ctx_create(f->plugins);
    assert_non_null(f->ctx);
    assert_true(msgpack_zone_init(&f->zone, 4096));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    epcs_check_ctx_destroy(f->ctx);
    epcs_engine_destroy(f->engine);
    epcs_ruleset_release(f->bundled);
    epcs_plugins_destroy(f->plugins);
    msgpack_zone_destroy(&f->zone);
    epcs_buf_free(&f->out);
    epcs_buf_free(&f->json);
    free(f);
    return 0;
}

static msgpack_object decode_json(struct fixture *f, const char *text)
{
    msgpack_object obj;
    struct epcs_decode_error err;
    if (epcs_json_decode(text, strlen(text), &f->zone, &obj, &err) != 0)
        fail_msg("test input does not decode: %s", err.message);
    return obj;
}

/* Runs `check_json` through epcs_check_run; on a verdict, f->json holds the answer as JSON. */
static enum epcs_check_failure run(struct fixture *f, const char *check_json,
                                   struct epcs_decision *decision, struct epcs_check_error *err)
{
    msgpack_object check = decode_json(f, check_json);
    msgpack_packer pk;
    epcs_buf_reset(&f->out);
    epcs_buf_reset(&f->json);
    msgpack_packer_init(&pk, &f->out, epcs_buf_msgpack_write);
    memset(err, 0, sizeof(*err));
    enum epcs_check_failure failure = epcs_check_run(f->ctx, f->engine, &check, &pk, decision, err);
    if (failure != EPCS_CHECK_DECIDED) {
        assert_int_equal(f->out.len, 0);
        return failure;
    }
    msgpack_object answer;
    size_t offset = 0;
    assert_int_equal(msgpack_unpack(f->out.data, f->out.len, &offset, &f->zone, &answer),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(offset, f->out.len);
    assert_int_equal(epcs_json_encode(&answer, &f->json), 0);
    epcs_buf_append(&f->json, "", 1);
    return failure;
}

static void test_every_failure_has_its_name(void **state)
{
    (void)state;
    assert_null(epcs_check_failure_name(EPCS_CHECK_DECIDED));
    assert_string_equal(epcs_check_failure_name(EPCS_CHECK_BAD_REQUEST), "bad_request");
    assert_string_equal(epcs_check_failure_name(EPCS_CHECK_UNKNOWN_ELECTION), "unknown_election");
    assert_string_equal(epcs_check_failure_name(EPCS_CHECK_UNKNOWN_AREA), "unknown_area");
    assert_string_equal(epcs_check_failure_name(EPCS_CHECK_INVALID_FACT), "invalid_fact");
    assert_string_equal(epcs_check_failure_name(EPCS_CHECK_RULE_FAILED), "rule_failed");
    assert_null(epcs_check_failure_name(EPCS_CHECK_FAILURE_COUNT));
}

#define DEEPFAKE_AT(date)                                                                          \
    "{\"election\": \"na22\", \"date\": \"" date "\", \"area\": \"deepfake\", \"activity\": "      \
    "{\"kind\": \"post\", \"deepfake\": true, \"purpose\": \"campaign\", \"labeled\": true}}"

static void test_a_decided_check_takes_one_id_and_ends_with_it(void **state)
{
    struct fixture *f = *state;
    f->ctx->take_decision_id = take_id;
    f->ctx->id_source = f;
    f->ids_taken = 0;
    struct epcs_decision decision = {.take_id = 1};
    struct epcs_check_error err;
    assert_int_equal(run(f, DEEPFAKE_AT("2024-02-15"), &decision, &err), EPCS_CHECK_DECIDED);
    assert_int_equal(f->ids_taken, 1);
    assert_int_equal(decision.id, 1001);
    assert_string_equal(decision.election, "na22");
    assert_string_equal(decision.area, "deepfake");
    assert_int_equal(decision.verdict, EPCS_VERDICT_PROHIBITED);
    assert_string_equal(decision.ruleset, f->bundled->id);
    assert_non_null(strstr((char *)f->json.data, "\"verdict\":\"prohibited\""));
    assert_non_null(strstr((char *)f->json.data, "\"article\":\"82-8(1)\",\"rule\":"
                                                 "\"deepfake/82-8/2024-01-29\""));
    assert_non_null(strstr((char *)f->json.data, "\"election\":{\"id\":\"na22\",\"day\":"
                                                 "\"2024-04-10\"}"));
    assert_non_null(
        strstr((char *)f->json.data, "\"window\":{\"from\":\"2024-01-11\",\"to\":\"2024-04-10\"}"));
    /* The ruleset that decided, then the id as the answer's last entry. */
    char tail[96];
    snprintf(tail, sizeof(tail), ",\"ruleset\":\"%s\",\"decision\":1001}", f->bundled->id);
    size_t len = strlen((char *)f->json.data);
    assert_true(len > strlen(tail));
    assert_string_equal((char *)f->json.data + len - strlen(tail), tail);

    /* A check that fails takes none: an id taken then would hold back every later entry. */
    assert_int_equal(run(f, "{\"election\": \"nowhere\"}", &decision, &err),
                     EPCS_CHECK_UNKNOWN_ELECTION);
    assert_int_equal(f->ids_taken, 1);
    f->ctx->take_decision_id = NULL;
    f->ctx->id_source = NULL;
}

struct failure_case {
    const char *check;
    enum epcs_check_failure kind;
    const char *field;
    const char *message;
};

static void test_each_failure_names_its_field(void **state)
{
    struct fixture *f = *state;
    static const struct failure_case cases[] = {
        {"[1]", EPCS_CHECK_BAD_REQUEST, "", "the check must be a map with election, activity, ..."},
        {"{\"election\": \"na22\", \"colour\": 1}", EPCS_CHECK_BAD_REQUEST, "",
         "unknown field 'colour'"},
        {"{\"election\": 7}", EPCS_CHECK_BAD_REQUEST, "election", "election must be a string id"},
        {"{\"activity\": {}}", EPCS_CHECK_BAD_REQUEST, "election",
         "election is required (an id from /v1/elections)"},
        {"{\"election\": \"nowhere\"}", EPCS_CHECK_UNKNOWN_ELECTION, "election",
         "no election 'nowhere'; GET /v1/elections lists them"},
        {"{\"election\": \"na22\", \"area\": \"weather\"}", EPCS_CHECK_UNKNOWN_AREA, "area",
         "no area 'weather'; GET /v1/areas lists them"},
        {"{\"election\": \"na22\", \"date\": \"2024-13-01\"}", EPCS_CHECK_INVALID_FACT, "date",
         "date must be a date YYYY-MM-DD between 1900 and 2199"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct epcs_decision decision = {.take_id = 1};
        struct epcs_check_error err;
        assert_int_equal(run(f, cases[i].check, &decision, &err), cases[i].kind);
        assert_int_equal(err.kind, cases[i].kind);
        assert_string_equal(err.field, cases[i].field);
        assert_string_equal(err.message, cases[i].message);
        assert_null(err.area);
    }
}

/* A copy of the bundled rules with `old` replaced by `new` in `file`; the caller removes it. */
static char *amended_rules(const char *file, const char *old, const char *new)
{
    char *dir = strdup("/tmp/epcs-test-check-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char command[512];
    snprintf(command, sizeof(command), "cp %s/*.lua %s/", EPCS_RULES_DIR, dir);
    assert_int_equal(system(command), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    static char text[1 << 17];
    size_t len = fread(text, 1, sizeof(text) - 1, in);
    fclose(in);
    text[len] = '\0';
    char *at = strstr(text, old);
    if (at == NULL)
        fail_msg("%s no longer holds %s", file, old);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fwrite(text, 1, (size_t)(at - text), out);
    fputs(new, out);
    fputs(at + strlen(old), out);
    fclose(out);
    return dir;
}

static void remove_rules(char *dir)
{
    char command[512];
    snprintf(command, sizeof(command), "rm -rf %s", dir);
    assert_int_equal(system(command), 0);
    free(dir);
}

static void test_a_rule_that_breaks_is_the_rules_failure(void **state)
{
    struct fixture *f = *state;
    char *dir =
        amended_rules("deepfake.lua", "    local from, to = campaign_window:span(q.election)",
                      "    if q.date == epcs.date(\"2024-02-16\") then error(\"broken\") "
                      "end\n    local from, to = campaign_window:span(q.election)");
    struct epcs_ruleset *broken = load_rules(f, dir);
    struct epcs_rule_error rule_err;
    struct epcs_engine *engine = epcs_engine_create(broken, &rule_err);
    assert_non_null(engine);
    struct epcs_engine *bundled = f->engine;
    f->engine = engine;
    struct epcs_decision decision = {.take_id = 1};
    struct epcs_check_error err;
    assert_int_equal(run(f, DEEPFAKE_AT("2024-02-16"), &decision, &err), EPCS_CHECK_RULE_FAILED);
    assert_string_equal(err.area, "deepfake");
    assert_string_equal(err.rule.file, "deepfake.lua");
    assert_int_equal(err.rule.line, 55);
    assert_string_equal(err.field, "");
    assert_non_null(strstr(err.message, "broken"));
    /* The next check on the same engine is decided again. */
    assert_int_equal(run(f, DEEPFAKE_AT("2024-02-15"), &decision, &err), EPCS_CHECK_DECIDED);
    f->engine = bundled;
    epcs_engine_destroy(engine);
    epcs_ruleset_release(broken);
    remove_rules(dir);
}

/* The value under `key` of the msgpack map `map`, or NULL. */
static const msgpack_object *member(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++)
        if (epcs_str_eq(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

static void test_impact_reports_the_checks_an_amendment_changes(void **state)
{
    struct fixture *f = *state;
    char *dir =
        amended_rules("deepfake.lua", "epcs.window {from = D(90),", "epcs.window {from = D(30),");
    struct epcs_ruleset *candidate = load_rules(f, dir);
    msgpack_object checks = decode_json(f, "[" DEEPFAKE_AT("2024-04-01") ", " DEEPFAKE_AT(
                                               "2024-02-15") ", "
                                                             "{\"election\": \"nowhere\"}]");
    struct epcs_buf report = {0};
    char err[256] = "";
    assert_int_equal(
        epcs_impact_run(f->plugins, f->bundled, candidate, &checks, &report, err, sizeof(err)), 0);
    msgpack_object map;
    size_t offset = 0;
    assert_int_equal(msgpack_unpack(report.data, report.len, &offset, &f->zone, &map),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(offset, report.len);
    assert_int_equal(member(&map, "checks")->via.u64, 3);
    assert_int_equal(member(&map, "changed")->via.u64, 1);
    const msgpack_object *by_area = member(&map, "changed_by_area");
    assert_int_equal(by_area->via.map.size, 1);
    assert_int_equal(member(by_area, "deepfake")->via.u64, 1);
    const msgpack_object *changes = member(&map, "changes");
    assert_int_equal(changes->via.array.size, 1);
    const msgpack_object *change = &changes->via.array.ptr[0];
    assert_int_equal(member(change, "index")->via.u64, 1);
    assert_true(epcs_str_eq(member(member(change, "before"), "verdict"), "prohibited"));
    assert_true(epcs_str_eq(member(member(change, "after"), "verdict"), "allowed"));
    assert_true(epcs_str_eq(member(member(change, "after"), "article"), "82-8(2)"));
    assert_true(epcs_str_eq(member(&map, "active"), f->bundled->id));
    assert_true(epcs_str_eq(member(&map, "candidate"), candidate->id));
    epcs_buf_free(&report);
    epcs_ruleset_release(candidate);
    remove_rules(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_failure_has_its_name),
        cmocka_unit_test(test_a_decided_check_takes_one_id_and_ends_with_it),
        cmocka_unit_test(test_each_failure_names_its_field),
        cmocka_unit_test(test_a_rule_that_breaks_is_the_rules_failure),
        cmocka_unit_test(test_impact_reports_the_checks_an_amendment_changes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
