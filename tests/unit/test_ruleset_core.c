/*
 * The ruleset and its engine in process, through server/core/ruleset.h only: the built plugins
 * and the bundled rules, no server. A ruleset's id names its files' contents, elections are
 * found by id, an election's calendar lists each area's windows and deadlines, each area
 * decides the way a check would see it, a broken rule file is refused naming file and line,
 * and the verdict cache answers a repeated question without running the rules again.
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

#include "codec.h"
#include "dates.h"
#include "log.h"
#include "ruleset.h"

static const struct epcs_lua_limits limits = {.memory_bytes = 8u << 20, .instructions = 1000000};

struct fixture {
    struct epcs_plugin_set *plugins;
    struct epcs_ruleset *bundled;
    struct epcs_engine *engine;
    msgpack_zone zone;
    /* What the evaluation or listing under test packed, and its JSON text (NUL-terminated). */
    struct epcs_buf out, json;
};

/* Plugin evaluations the counting wrapper saw (see test_a_repeated_question_skips_the_rules). */
static int (*wrapped_evaluate)(void *state, struct epcs_eval *eval);
static int evaluations;

static int counting_evaluate(void *state, struct epcs_eval *eval)
{
    evaluations++;
    return wrapped_evaluate(state, eval);
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
    assert_true(msgpack_zone_init(&f->zone, 4096));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    epcs_engine_destroy(f->engine);
    epcs_ruleset_release(f->bundled);
    epcs_plugins_destroy(f->plugins);
    msgpack_zone_destroy(&f->zone);
    epcs_buf_free(&f->out);
    epcs_buf_free(&f->json);
    free(f);
    return 0;
}

static size_t area(const struct fixture *f, const char *name)
{
    int index = epcs_plugins_find(f->plugins, name, strlen(name));
    if (index < 0)
        fail_msg("no plugin %s in %s", name, EPCS_PLUGIN_DIR);
    return (size_t)index;
}

/* f->out's msgpack values, each as JSON, into f->json: one value a line. */
static void out_as_json(struct fixture *f)
{
    epcs_buf_reset(&f->json);
    size_t offset = 0;
    while (offset < f->out.len) {
        msgpack_object value;
        msgpack_unpack_return rc =
            msgpack_unpack(f->out.data, f->out.len, &offset, &f->zone, &value);
        /* Every value but the last leaves bytes behind it. */
        assert_int_equal(rc,
                         offset < f->out.len ? MSGPACK_UNPACK_EXTRA_BYTES : MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(epcs_json_encode(&value, &f->json), 0);
        epcs_buf_append(&f->json, "\n", 1);
    }
    epcs_buf_append(&f->json, "", 1);
}

static void assert_json_holds(const struct fixture *f, const char *part)
{
    if (strstr((const char *)f->json.data, part) == NULL)
        fail_msg("%s\ndoes not hold\n%s", (const char *)f->json.data, part);
}

static msgpack_object decode_json(struct fixture *f, const char *text)
{
    msgpack_object obj;
    struct epcs_decode_error err;
    if (epcs_json_decode(text, strlen(text), &f->zone, &obj, &err) != 0)
        fail_msg("test input does not decode: %s", err.message);
    return obj;
}

/* One question to one area. */
struct question {
    const char *area;
    const char *election;
    const char *date;
    const char *actor;
    const char *activity;
};

/* Asks `q` through epcs_evaluate_area with `engine`; a decided verdict is in f->json. */
static enum epcs_area_outcome ask(struct fixture *f, struct epcs_engine *engine,
                                  const struct question *q, struct epcs_facts *facts,
                                  struct epcs_eval *eval)
{
    msgpack_object actor = decode_json(f, q->actor != NULL ? q->actor : "{}");
    msgpack_object activity = decode_json(f, q->activity);
    memset(facts, 0, sizeof(*facts));
    assert_int_equal(epcs_facts_read(facts, f->plugins->vocab, &actor, &activity), 0);
    assert_int_equal(epcs_date_parse(q->date, strlen(q->date), &facts->date), 0);
    epcs_buf_reset(&f->out);
    msgpack_packer packer;
    msgpack_packer_init(&packer, &f->out, epcs_buf_msgpack_write);
    *eval = (struct epcs_eval){
        .engine = engine,
        .area_index = area(f, q->area),
        .facts = facts,
        .date = facts->date,
        .election =
            epcs_ruleset_election(epcs_engine_ruleset(engine), q->election, strlen(q->election)),
        .packer = &packer,
    };
    assert_non_null(eval->election);
    enum epcs_area_outcome outcome = epcs_evaluate_area(f->plugins, facts, eval);
    if (outcome == EPCS_AREA_DECIDED)
        out_as_json(f);
    else
        assert_int_equal(f->out.len, 0);
    return outcome;
}

static enum epcs_verdict_kind decide(struct fixture *f, const struct question *q)
{
    struct epcs_facts facts;
    struct epcs_eval eval;
    enum epcs_area_outcome outcome = ask(f, f->engine, q, &facts, &eval);
    if (outcome != EPCS_AREA_DECIDED)
        fail_msg("%s on %s was not decided: %s", q->area, q->date, eval.error.message);
    assert_false(eval.failed);
    return eval.verdict;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* A fresh directory holding a copy of the bundled rules; remove_rules removes it. */
static char *copied_rules(void)
{
    char *dir = strdup("/tmp/epcs-test-ruleset-core-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char command[512];
    snprintf(command, sizeof(command), "cp %s/*.lua %s/", EPCS_RULES_DIR, dir);
    assert_int_equal(system(command), 0);
    return dir;
}

static void remove_rules(char *dir)
{
    char command[512];
    snprintf(command, sizeof(command), "rm -rf %s", dir);
    assert_int_equal(system(command), 0);
    free(dir);
}

/* Writes `text` as `file` of `dir` (mode "w" replaces it, "a" appends to it). */
static void write_rule_file(const char *dir, const char *file, const char *mode, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *out = fopen(path, mode);
    assert_non_null(out);
    fputs(text, out);
    assert_int_equal(fclose(out), 0);
}

static void test_the_id_names_the_files_not_the_directory(void **state)
{
    struct fixture *f = *state;
    const char *id = f->bundled->id;
    assert_int_equal(strlen(id), 19);
    assert_memory_equal(id, "rs-", 3);
    assert_int_equal(strspn(id + 3, "0123456789abcdef"), 16);
    assert_int_equal(f->bundled->file_count, f->plugins->count + 1);
    assert_string_equal(f->bundled->files[0].name, "elections.lua");
    assert_string_equal(f->bundled->files[1 + area(f, "resignation")].name, "resignation.lua");

    char *dir = copied_rules();
    struct epcs_ruleset *copy = load_rules(f, dir);
    assert_string_equal(copy->id, id);
    assert_string_equal(copy->dir, dir);
    epcs_ruleset_release(copy);

    /* One comment more in one file is another ruleset: a decision names the text it came from. */
    write_rule_file(dir, "deepfake.lua", "a", "-- reviewed\n");
    struct epcs_ruleset *amended = load_rules(f, dir);
    assert_string_not_equal(amended->id, id);
    for (size_t i = 0; i < amended->file_count; i++) {
        int changed = strcmp(amended->files[i].name, "deepfake.lua") == 0;
        assert_int_equal(strcmp(amended->files[i].sha256, f->bundled->files[i].sha256) != 0,
                         changed);
    }
    epcs_ruleset_release(amended);
    remove_rules(dir);
}

static void test_an_election_is_found_by_its_id(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->bundled->election_count, 9);
    const struct epcs_election *na22 = epcs_ruleset_election(f->bundled, "na22", 4);
    assert_non_null(na22);
    assert_string_equal(na22->id, "na22");
    assert_string_equal(na22->kind, "general");
    assert_string_equal(na22->office, "national_assembly");
    assert_int_equal(na22->day, epcs_days_from_civil(2024, 4, 10));
    assert_false(na22->has_cause_confirmed);
    /* The id is [id, id+len): a longer buffer's first bytes name it. */
    assert_ptr_equal(epcs_ruleset_election(f->bundled, "na22/calendar", 4), na22);

    const struct epcs_election *pres21 = epcs_ruleset_election(f->bundled, "pres21", 6);
    assert_non_null(pres21);
    assert_string_equal(pres21->kind, "vacancy");
    assert_string_equal(pres21->office, "president");
    assert_int_equal(pres21->day, epcs_days_from_civil(2025, 6, 3));
    assert_true(pres21->has_cause_confirmed);
    assert_int_equal(pres21->cause_confirmed, epcs_days_from_civil(2025, 4, 4));

    assert_null(epcs_ruleset_election(f->bundled, "na2", 3));
    assert_null(epcs_ruleset_election(f->bundled, "NA22", 4));
    assert_null(epcs_ruleset_election(f->bundled, "na22 ", 5));
    assert_null(epcs_ruleset_election(f->bundled, "", 0));
}

/* Lists every area's calendar items for `election` into f->json, one item a line. */
static size_t calendar_of(struct fixture *f, const char *election)
{
    epcs_buf_reset(&f->out);
    msgpack_packer packer;
    msgpack_packer_init(&packer, &f->out, epcs_buf_msgpack_write);
    size_t items = 0;
    for (size_t i = 0; i < f->plugins->count; i++) {
        struct epcs_calendar listing = {
            .engine = f->engine,
            .area_index = i,
            .election = epcs_ruleset_election(f->bundled, election, strlen(election)),
            .packer = &packer,
        };
        assert_int_equal(epcs_engine_run_calendar(&listing), 0);
        assert_false(listing.failed);
        items += listing.item_count;
    }
    out_as_json(f);
    return items;
}

/* One line of f->json begins with `head` and ends with `tail`. */
static void assert_line(const struct fixture *f, const char *head, const char *tail)
{
    const char *line = (const char *)f->json.data;
    for (; *line != '\0'; line = strchr(line, '\n') + 1) {
        size_t len = strcspn(line, "\n");
        if (strncmp(line, head, strlen(head)) == 0 && len >= strlen(tail) &&
            strncmp(line + len - strlen(tail), tail, strlen(tail)) == 0)
            return;
    }
    fail_msg("no item %s...%s", head, tail);
}

static void test_the_calendar_of_an_election(void **state)
{
    struct fixture *f = *state;
    /* Seven areas: advertising (2), deepfake, false_information (2), legislative_report,
     * publication_ceremony and resignation (4). */
    assert_int_equal(calendar_of(f, "na22"), 11);
    size_t lines = 0;
    for (const char *at = (const char *)f->json.data; (at = strchr(at, '\n')) != NULL; at++)
        lines++;
    assert_int_equal(lines, 11);
    /* Art. 82-8: deepfakes in campaigning are barred from D-90 to election day (2024-04-10). */
    assert_line(f,
                "{\"area\":\"deepfake\",\"kind\":\"window\",\"article\":\"82-8\","
                "\"rule\":\"deepfake/82-8/2024-01-29\",\"title\":\"Deepfake videos for "
                "campaigning prohibited (D-90 to election day)\"",
                "\"from\":\"2024-01-11\",\"to\":\"2024-04-10\"}");
    /* Art. 53(1): resign by D-90 to run for a constituency; 53(2): D-30 for a proportional
     * seat; 53(5): D-120 for a head running where they govern. */
    assert_line(f,
                "{\"area\":\"resignation\",\"kind\":\"deadline\",\"article\":\"53\","
                "\"rule\":\"resignation/53-60/2004-03-12\",\"title\":\"Resignation deadline to "
                "run for a constituency seat (D-90)\"",
                "\"day\":\"2024-01-11\"}");
    assert_line(f, "{\"area\":\"resignation\",\"kind\":\"deadline\",\"article\":\"53(2)\"",
                "\"day\":\"2024-03-11\"}");
    assert_line(f, "{\"area\":\"resignation\",\"kind\":\"deadline\",\"article\":\"53(5)\"",
                "\"day\":\"2023-12-12\"}");
}

/* A vacancy election's window opens on the cause's confirmation, not at D-90. */
static void test_a_vacancy_calendar_starts_at_its_cause(void **state)
{
    struct fixture *f = *state;
    calendar_of(f, "pres21");
    assert_line(f, "{\"area\":\"deepfake\",\"kind\":\"window\",\"article\":\"82-8\"",
                "\"from\":\"2025-04-04\",\"to\":\"2025-06-03\"}");
}

/* ---- evaluation --------------------------------------------------------------------------- */

#define RUN_FOR_OFFICE(seat, received)                                                             \
    "{\"kind\": \"run_for_office\", \"seat\": \"" seat "\", \"received_date\": \"" received "\"}"

static void test_resigning_by_the_deadline_is_allowed(void **state)
{
    struct fixture *f = *state;
    struct question q = {"resignation", "na22", "2024-01-11", "{\"kind\": \"public_official\"}",
                         RUN_FOR_OFFICE("constituency", "2024-01-11")};
    assert_int_equal(decide(f, &q), EPCS_VERDICT_ALLOWED);
    assert_json_holds(f, "{\"verdict\":\"allowed\",\"area\":\"resignation\",\"article\":\"53\","
                         "\"rule\":\"resignation/53-60/2004-03-12\",\"reason\":\"As a public "
                         "official, the resignation received on 2024-01-11 meets the deadline of "
                         "2024-01-11 (Art. 53).\"");
    assert_json_holds(f, "\"deadline\":\"2024-01-11\"");
    assert_json_holds(f, "\"election\":{\"id\":\"na22\",\"day\":\"2024-04-10\"}");
}

static void test_resigning_after_the_deadline_is_prohibited(void **state)
{
    struct fixture *f = *state;
    struct question q = {"resignation", "na22", "2024-01-12", "{\"kind\": \"public_official\"}",
                         RUN_FOR_OFFICE("constituency", "2024-01-12")};
    assert_int_equal(decide(f, &q), EPCS_VERDICT_PROHIBITED);
    assert_json_holds(f, "{\"verdict\":\"prohibited\",\"area\":\"resignation\",\"article\":"
                         "\"53\",\"rule\":\"resignation/53-60/2004-03-12\"");
    /* Missing the deadline voids the registration (Art. 52(1)5). */
    assert_json_holds(f, "received on 2024-01-12 it is late: the candidate registration would be "
                         "void (Art. 52(1)5).");
    assert_json_holds(f, "\"deadline\":\"2024-01-11\"");

    /* A proportional seat gives until D-30 (Art. 53(2)1): the same day is in time. */
    q.activity = RUN_FOR_OFFICE("proportional", "2024-01-12");
    assert_int_equal(decide(f, &q), EPCS_VERDICT_ALLOWED);
    assert_json_holds(f, "\"article\":\"53(2)\"");
    assert_json_holds(f, "\"deadline\":\"2024-03-11\"");
}

static void test_a_deepfake_in_the_window_is_prohibited(void **state)
{
    struct fixture *f = *state;
    struct question q = {"deepfake", "na22", "2024-02-15", NULL,
                         "{\"kind\": \"post\", \"deepfake\": true, \"purpose\": \"campaign\", "
                         "\"labeled\": true}"};
    assert_int_equal(decide(f, &q), EPCS_VERDICT_PROHIBITED);
    assert_json_holds(f, "{\"verdict\":\"prohibited\",\"area\":\"deepfake\",\"article\":"
                         "\"82-8(1)\",\"rule\":\"deepfake/82-8/2024-01-29\"");
    assert_json_holds(f, "\"window\":{\"from\":\"2024-01-11\",\"to\":\"2024-04-10\"}");
}

static void test_a_question_without_its_deciding_fact_needs_facts(void **state)
{
    struct fixture *f = *state;
    struct question q = {"deepfake", "na22", "2024-02-15", NULL,
                         "{\"kind\": \"post\", \"deepfake\": true}"};
    assert_int_equal(decide(f, &q), EPCS_VERDICT_NEEDS_FACTS);
    assert_json_holds(f, "{\"verdict\":\"needs_facts\",\"area\":\"deepfake\"");
    assert_json_holds(f, "\"missing\":[\"activity.purpose\"]");
}

static void test_an_area_refuses_what_it_does_not_cover(void **state)
{
    struct fixture *f = *state;
    struct question q = {"deepfake", "na22", "2024-02-15", "{\"kind\": \"public_official\"}",
                         RUN_FOR_OFFICE("constituency", "2024-01-11")};
    struct epcs_facts facts;
    struct epcs_eval eval;
    assert_int_equal(ask(f, f->engine, &q, &facts, &eval), EPCS_AREA_REJECTED);
    assert_true(facts.rejected);
    assert_string_equal(facts.field, "activity.kind");
    assert_string_equal(facts.message, "area deepfake does not cover activity kind "
                                       "'run_for_office'");
}

/* ---- refusals at load --------------------------------------------------------------------- */

static void assert_refused(const struct fixture *f, const char *dir, const char *file, int line,
                           const char *message)
{
    struct epcs_rule_error err;
    memset(&err, 0, sizeof(err));
    struct epcs_ruleset *ruleset = epcs_ruleset_load(dir, f->plugins, &limits, &err);
    if (ruleset != NULL)
        fail_msg("%s/%s loaded", dir, file);
    assert_string_equal(err.file, file);
    assert_int_equal(err.line, line);
    if (strstr(err.message, message) == NULL)
        fail_msg("'%s' does not hold '%s'", err.message, message);
}

static void test_a_broken_rule_file_is_refused_with_file_and_line(void **state)
{
    struct fixture *f = *state;
    char *dir = copied_rules();
    write_rule_file(dir, "resignation.lua", "w",
                    "local D = epcs.D\n\nreturn epcs.area {name = 'resignation',\n"
                    "    article = }\n");
    assert_refused(f, dir, "resignation.lua", 4, "resignation.lua:4: unexpected symbol");

    /* A file that compiles but fails as it runs names the line that failed. */
    write_rule_file(dir, "resignation.lua", "w", "local x = 1\nerror('draft not finished')\n");
    assert_refused(f, dir, "resignation.lua", 2, "resignation.lua:2: draft not finished");

    /* elections.lua is the first file read: its refusal is its own. */
    write_rule_file(dir, "elections.lua", "w", "return epcs.elections {\n  {id = }\n}\n");
    assert_refused(f, dir, "elections.lua", 2, "elections.lua:2: unexpected symbol");
    remove_rules(dir);
}

/* ---- the verdict cache -------------------------------------------------------------------- */

/* Wraps `name`'s evaluate so that `evaluations` counts the times the rules run. */
static struct epcs_plugin *count_evaluations(struct fixture *f, const char *name,
                                             const struct epcs_plugin **original)
{
    struct epcs_loaded_plugin *plugin = &f->plugins->items[area(f, name)];
    struct epcs_plugin *counting = malloc(sizeof(*counting));
    assert_non_null(counting);
    *original = plugin->desc;
    *counting = *plugin->desc;
    wrapped_evaluate = plugin->desc->evaluate;
    counting->evaluate = counting_evaluate;
    plugin->desc = counting;
    evaluations = 0;
    return counting;
}

static void restore_evaluations(struct fixture *f, const char *name, struct epcs_plugin *counting,
                                const struct epcs_plugin *original)
{
    f->plugins->items[area(f, name)].desc = original;
    free(counting);
}

/* Decides `q` with `engine`, returning the verdict's JSON (the caller frees it). */
static char *decide_with(struct fixture *f, struct epcs_engine *engine, const struct question *q)
{
    struct epcs_facts facts;
    struct epcs_eval eval;
    assert_int_equal(ask(f, engine, q, &facts, &eval), EPCS_AREA_DECIDED);
    return strdup((const char *)f->json.data);
}

static void test_a_repeated_question_skips_the_rules(void **state)
{
    struct fixture *f = *state;
    const struct epcs_plugin *original;
    struct epcs_plugin *counting = count_evaluations(f, "resignation", &original);
    struct epcs_rule_error err;
    struct epcs_engine *engine = epcs_engine_create(f->bundled, &err);
    assert_non_null(engine);
    struct question q = {"resignation", "na22", "2024-01-12", "{\"kind\": \"public_official\"}",
                         RUN_FOR_OFFICE("constituency", "2024-01-12")};
    char *first = decide_with(f, engine, &q);
    char *again = decide_with(f, engine, &q);
    assert_int_equal(evaluations, 1);
    assert_string_equal(again, first);
    /* Another date, fact or election is another question. */
    struct question later = q;
    later.date = "2024-01-13";
    free(decide_with(f, engine, &later));
    later = q;
    later.activity = RUN_FOR_OFFICE("proportional", "2024-01-12");
    free(decide_with(f, engine, &later));
    later = q;
    later.election = "na23";
    free(decide_with(f, engine, &later));
    assert_int_equal(evaluations, 4);
    free(decide_with(f, engine, &q));
    assert_int_equal(evaluations, 4);
    epcs_engine_destroy(engine);
    free(first);
    free(again);
    restore_evaluations(f, "resignation", counting, original);
}

static void test_the_cache_holds_what_it_was_sized_for(void **state)
{
    struct fixture *f = *state;
    const struct epcs_plugin *original;
    struct epcs_plugin *counting = count_evaluations(f, "resignation", &original);
    struct question a = {"resignation", "na22", "2024-01-12", "{\"kind\": \"public_official\"}",
                         RUN_FOR_OFFICE("constituency", "2024-01-12")};
    struct question b = a;
    b.date = "2024-01-13";
    struct epcs_rule_error err;
    /* One slot: a second question pushes the first out. */
    epcs_verdict_cache_configure(1);
    struct epcs_engine *engine = epcs_engine_create(f->bundled, &err);
    const struct question *order[] = {&a, &a, &b, &a};
    for (size_t i = 0; i < 4; i++)
        free(decide_with(f, engine, order[i]));
    assert_int_equal(evaluations, 3);
    epcs_engine_destroy(engine);
    /* None: every question runs the rules. */
    epcs_verdict_cache_configure(0);
    engine = epcs_engine_create(f->bundled, &err);
    evaluations = 0;
    for (size_t i = 0; i < 4; i++)
        free(decide_with(f, engine, order[i]));
    assert_int_equal(evaluations, 4);
    epcs_engine_destroy(engine);
    epcs_verdict_cache_configure(EPCS_VERDICT_CACHE_DEFAULT);
    restore_evaluations(f, "resignation", counting, original);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_id_names_the_files_not_the_directory),
        cmocka_unit_test(test_an_election_is_found_by_its_id),
        cmocka_unit_test(test_the_calendar_of_an_election),
        cmocka_unit_test(test_a_vacancy_calendar_starts_at_its_cause),
        cmocka_unit_test(test_resigning_by_the_deadline_is_allowed),
        cmocka_unit_test(test_resigning_after_the_deadline_is_prohibited),
        cmocka_unit_test(test_a_deepfake_in_the_window_is_prohibited),
        cmocka_unit_test(test_a_question_without_its_deciding_fact_needs_facts),
        cmocka_unit_test(test_an_area_refuses_what_it_does_not_cover),
        cmocka_unit_test(test_a_broken_rule_file_is_refused_with_file_and_line),
        cmocka_unit_test(test_a_repeated_question_skips_the_rules),
        cmocka_unit_test(test_the_cache_holds_what_it_was_sized_for),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
