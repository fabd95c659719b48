/* The rule files' own tests: what commission staff run before deploying an amendment. */
#include "rule_tests.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dates.h"
#include "log.h"

static int empty_container(const msgpack_object *obj)
{
    return (obj->type == MSGPACK_OBJECT_ARRAY && obj->via.array.size == 0) ||
           (obj->type == MSGPACK_OBJECT_MAP && obj->via.map.size == 0);
}

/* Like msgpack_object_equal, but maps compare by key (Lua tables have no order) and an empty
 * table equals an empty list. */
static int same(const msgpack_object *a, const msgpack_object *b)
{
    if (empty_container(a) && empty_container(b))
        return 1;
    if (a->type == MSGPACK_OBJECT_MAP && b->type == MSGPACK_OBJECT_MAP) {
        if (a->via.map.size != b->via.map.size)
            return 0;
        for (uint32_t i = 0; i < a->via.map.size; i++) {
            const msgpack_object *key = &a->via.map.ptr[i].key;
            const msgpack_object *other = epcs_map_find(b, key->via.str.ptr, key->via.str.size);
            if (other == NULL || !same(&a->via.map.ptr[i].val, other))
                return 0;
        }
        return 1;
    }
    if (a->type == MSGPACK_OBJECT_ARRAY && b->type == MSGPACK_OBJECT_ARRAY) {
        if (a->via.array.size != b->via.array.size)
            return 0;
        for (uint32_t i = 0; i < a->via.array.size; i++) {
            if (!same(&a->via.array.ptr[i], &b->via.array.ptr[i]))
                return 0;
        }
        return 1;
    }
    return msgpack_object_equal(*a, *b);
}

static void render(const msgpack_object *obj, char *out, size_t size)
{
    struct epcs_buf json = {0};
    if (obj == NULL)
        snprintf(out, size, "(absent)");
    else if (epcs_json_encode(obj, &json) == 0)
        snprintf(out, size, "%.*s", (int)json.len, json.data);
    else
        snprintf(out, size, "(unprintable)");
    epcs_buf_free(&json);
}

/* Compares expected field `i` with the verdict; writes the difference to `why`. */
static int field_matches(const msgpack_object *expect, uint32_t i, const msgpack_object *verdict,
                         char *why, size_t why_size)
{
    const msgpack_object *key = &expect->via.map.ptr[i].key;
    const msgpack_object *want = &expect->via.map.ptr[i].val;
    const msgpack_object *got = epcs_map_find(verdict, key->via.str.ptr, key->via.str.size);
    if (got != NULL && same(want, got))
        return 1;
    char want_text[256], got_text[256];
    render(want, want_text, sizeof(want_text));
    render(got, got_text, sizeof(got_text));
    snprintf(why, why_size, "%.*s is %s, expected %s", (int)key->via.str.size, key->via.str.ptr,
             got_text, want_text);
    return 0;
}

/* Compares every expected key with the verdict; writes the first difference to `why`. */
static int matches(const msgpack_object *expect, const msgpack_object *verdict, char *why,
                   size_t why_size)
{
    if (expect->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, why_size, "expect must be a table of verdict fields");
        return 0;
    }
    /* Lua tables have no order: the verdict goes first so reports read the same every run. */
    uint32_t count = expect->via.map.size, verdict_at = count;
    for (uint32_t i = 0; i < count; i++) {
        if (epcs_str_eq(&expect->via.map.ptr[i].key, "verdict"))
            verdict_at = i;
    }
    if (verdict_at < count && !field_matches(expect, verdict_at, verdict, why, why_size))
        return 0;
    for (uint32_t i = 0; i < count; i++) {
        if (i != verdict_at && !field_matches(expect, i, verdict, why, why_size))
            return 0;
    }
    return 1;
}

/* A string field of a test case as a C string in `out`, or `fallback` when it is no string. */
static const char *case_text(const msgpack_object *item, const char *key, char *out, size_t size,
                             const char *fallback)
{
    const msgpack_object *value = epcs_map_get(item, key);
    if (value == NULL || value->type != MSGPACK_OBJECT_STR)
        return fallback;
    snprintf(out, size, "%.*s", (int)value->via.str.size, value->via.str.ptr);
    return out;
}

/* Runs one case (a map from epcs_engine_pack_test_cases); 1 when it passed, 0 with `why`. */
static int run_case(struct epcs_engine *engine, size_t area_index, const msgpack_object *item,
                    msgpack_zone *zone, char *why, size_t why_size)
{
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    const msgpack_object *actor = epcs_map_get(item, "actor");
    const msgpack_object *activity = epcs_map_get(item, "activity");
    const msgpack_object *expect = epcs_map_get(item, "expect");
    char election_id[64], date_text[32];
    const char *election_text = case_text(item, "election", election_id, sizeof(election_id), NULL);
    const char *date = case_text(item, "date", date_text, sizeof(date_text), "");
    const struct epcs_election *election =
        election_text ? epcs_ruleset_election(ruleset, election_text, strlen(election_text)) : NULL;
    int32_t day = 0;
    char failure[400];
    /* A case the rule API made to fail: a statement the rule file owes is missing. */
    if (case_text(item, "fail", failure, sizeof(failure), NULL) != NULL)
        return snprintf(why, why_size, "%s", failure), 0;
    if (epcs_map_get(item, "invalid") != NULL || expect == NULL)
        return snprintf(why, why_size, "actor, activity and expect must be plain tables"), 0;
    if (election == NULL)
        return snprintf(why, why_size, "no election '%s'",
                        election_text ? election_text : "(none)"),
               0;
    if (epcs_date_parse(date, strlen(date), &day) != 0)
        return snprintf(why, why_size, "date must be YYYY-MM-DD"), 0;
    if ((actor && actor->type != MSGPACK_OBJECT_MAP) ||
        (activity && activity->type != MSGPACK_OBJECT_MAP))
        return snprintf(why, why_size, "actor and activity must be tables of facts"), 0;

    struct epcs_facts facts;
    if (epcs_facts_read(&facts, ruleset->plugins->vocab, actor, activity) != 0)
        return snprintf(why, why_size, "facts refused (422 %s): %s", facts.field, facts.message), 0;
    facts.date = day;
    struct epcs_buf verdict_buf = {0};
    msgpack_packer packer;
    msgpack_packer_init(&packer, &verdict_buf, epcs_buf_msgpack_write);
    struct epcs_eval eval = {.engine = engine,
                             .area_index = area_index,
                             .facts = &facts,
                             .date = day,
                             .election = election,
                             .packer = &packer};
    enum epcs_area_outcome outcome = epcs_evaluate_area(ruleset->plugins, &facts, &eval);
    int passed = 0;
    msgpack_object verdict;
    struct epcs_decode_error err;
    if (outcome == EPCS_AREA_REJECTED)
        snprintf(why, why_size, "facts refused (422 %s): %s", facts.field, facts.message);
    else if (outcome == EPCS_AREA_FAILED)
        snprintf(why, why_size, "rule failed: %s", eval.error.message);
    else if (epcs_msgpack_decode(verdict_buf.data, verdict_buf.len, zone, &verdict, &err) != 0)
        snprintf(why, why_size, "verdict could not be decoded: %s", err.message);
    else
        passed = matches(expect, &verdict, why, why_size);
    epcs_buf_free(&verdict_buf);
    return passed;
}

/* The decoded test cases of one area (borrowing from `cases` and `zone`), or NULL with the
 * reason written to `out`. */
static const msgpack_object *list_cases(struct epcs_engine *engine, size_t area, const char *file,
                                        struct epcs_buf *cases, msgpack_zone *zone,
                                        msgpack_object *list, FILE *out)
{
    struct epcs_rule_error err;
    struct epcs_decode_error decode_error;
    if (epcs_engine_pack_test_cases(engine, area, cases, &err) != 0) {
        if (out != NULL)
            fprintf(out, "%s: cannot list tests: %s\n", file, err.message);
        return NULL;
    }
    if (epcs_msgpack_decode(cases->data, cases->len, zone, list, &decode_error) != 0 ||
        list->type != MSGPACK_OBJECT_ARRAY) {
        if (out != NULL)
            fprintf(out, "%s: cannot list tests: %s\n", file, decode_error.message);
        return NULL;
    }
    return list;
}

/* Runs one area's cases; counts into `summary` and writes failures and a summary line. */
static void run_area(struct epcs_engine *engine, size_t area, struct epcs_buf *cases,
                     msgpack_zone *zone, FILE *out, struct epcs_rule_test_summary *summary)
{
    const char *file = epcs_engine_ruleset(engine)->files[area + 1].name;
    size_t passed = 0, failed = 0, generated = 0;
    msgpack_object list;
    msgpack_zone case_zone;
    msgpack_zone_init(&case_zone, 4096);
    if (list_cases(engine, area, file, cases, zone, &list, out) == NULL) {
        summary->failed++;
        msgpack_zone_destroy(&case_zone);
        return;
    }
    for (uint32_t i = 0; i < list.via.array.size; i++) {
        const msgpack_object *item = &list.via.array.ptr[i];
        const msgpack_object *is_generated = epcs_map_get(item, "generated");
        char why[600], name[256];
        generated += is_generated != NULL && is_generated->type == MSGPACK_OBJECT_BOOLEAN &&
                     is_generated->via.boolean;
        if (run_case(engine, area, item, &case_zone, why, sizeof(why))) {
            passed++;
        } else {
            failed++;
            if (out != NULL)
                fprintf(out, "%s: FAIL %s: %s\n", file,
                        case_text(item, "name", name, sizeof(name), "(unnamed)"), why);
        }
        msgpack_zone_clear(&case_zone);
    }
    msgpack_zone_destroy(&case_zone);
    if (list.via.array.size == 0) {
        failed++;
        if (out != NULL)
            fprintf(out, "%s: FAIL: no tests; every area carries a tests table\n", file);
    }
    if (out != NULL)
        fprintf(
            out,
            "%s: %zu tests (%zu from the tests table, %zu generated: boundary probes, coverage): "
            "%zu passed, %zu failed\n",
            file, passed + failed, passed + failed - generated, generated, passed, failed);
    summary->passed += passed;
    summary->failed += failed;
    summary->generated += generated;
}

int epcs_rule_tests_run(struct epcs_ruleset *ruleset, FILE *out,
                        struct epcs_rule_test_summary *summary)
{
    struct epcs_rule_error err;
    memset(summary, 0, sizeof(*summary));
    struct epcs_engine *engine = epcs_engine_create(ruleset, &err);
    if (engine == NULL) {
        if (out != NULL)
            fprintf(out, "%s\n", err.message);
        summary->failed++;
        return -1;
    }
    msgpack_zone zone;
    struct epcs_buf cases = {0};
    msgpack_zone_init(&zone, 4096);
    for (size_t area = 0; area < ruleset->plugins->count; area++) {
        run_area(engine, area, &cases, &zone, out, summary);
        msgpack_zone_clear(&zone);
    }
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&cases);
    epcs_engine_destroy(engine);
    return summary->failed == 0 ? 0 : -1;
}

int epcs_rule_tests_verify(struct epcs_ruleset *ruleset, char *first_failure, size_t size)
{
    char *report = NULL;
    size_t report_len = 0;
    FILE *out = open_memstream(&report, &report_len);
    struct epcs_rule_test_summary summary;
    int rc = epcs_rule_tests_run(ruleset, out, &summary);
    if (out != NULL)
        fclose(out);
    for (char *line = report, *end; line != NULL && *line != '\0'; line = end + 1) {
        end = strchr(line, '\n');
        if (end == NULL)
            end = line + strlen(line) - 1;
        else
            *end = '\0';
        if (rc != 0)
            epcs_log(EPCS_LOG_ERROR, "rules", "%s", line);
        if (rc != 0 && first_failure != NULL && strstr(line, ": FAIL") != NULL) {
            snprintf(first_failure, size, "%s", line);
            first_failure = NULL;
        }
    }
    if (rc == 0)
        epcs_log(EPCS_LOG_INFO, "rules",
                 "%s passed its %zu rule tests (%zu generated: boundary probes, coverage)",
                 ruleset->id, summary.passed, summary.generated);
    free(report);
    return rc;
}
