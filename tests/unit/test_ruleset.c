#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "dates.h"
#include "ruleset.h"
#include "testing.h"

static const struct epcs_lua_limits limits = {.memory_bytes = 8u << 20,
                                              /* what epcsd gives by default: 250 ms of CPU */
                                              .instructions = 1000000};
static struct epcs_plugin_set *plugins;
/* Index of the deepfake plugin: other areas may load beside it. */
static size_t deepfake;

/* The outcome of one evaluation, re-encoded as JSON for exact comparison. */
struct outcome {
    int status;
    enum epcs_verdict_kind verdict;
    char json[2048];
    struct epcs_rule_error error;
};

static struct outcome evaluate(struct epcs_engine *engine, const char *election_id,
                               const char *date, const char *activity_json)
{
    struct outcome out;
    memset(&out, 0, sizeof(out));
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object activity;
    struct epcs_decode_error decode_error;
    EXPECT_INT(
        epcs_json_decode(activity_json, strlen(activity_json), &zone, &activity, &decode_error), 0);
    struct epcs_facts facts;
    EXPECT_INT(epcs_facts_read(&facts, plugins->vocab, NULL, &activity), 0);
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    struct epcs_buf buf = {0};
    msgpack_packer packer;
    msgpack_packer_init(&packer, &buf, epcs_buf_msgpack_write);
    struct epcs_eval eval = {
        .engine = engine,
        .area_index = deepfake,
        .facts = &facts,
        .election = epcs_ruleset_election(ruleset, election_id, strlen(election_id)),
        .packer = &packer,
    };
    EXPECT_INT(epcs_date_parse(date, strlen(date), &eval.date), 0);
    out.status = plugins->items[deepfake].desc->evaluate(plugins->items[deepfake].state, &eval);
    out.verdict = eval.verdict;
    out.error = eval.error;
    if (out.status == 0) {
        msgpack_object verdict;
        struct epcs_buf json = {0};
        EXPECT_INT(epcs_msgpack_decode(buf.data, buf.len, &zone, &verdict, &decode_error), 0);
        EXPECT_INT(epcs_json_encode(&verdict, &json), 0);
        snprintf(out.json, sizeof(out.json), "%.*s", (int)json.len, json.data);
        epcs_buf_free(&json);
    }
    epcs_buf_free(&buf);
    msgpack_zone_destroy(&zone);
    return out;
}

static void test_bundled_ruleset(void)
{
    struct epcs_rule_error err;
    struct epcs_ruleset *ruleset = epcs_ruleset_load(EPCS_RULES_DIR, plugins, &limits, &err);
    if (ruleset == NULL)
        fprintf(stderr, "bundled rules: %s\n", err.message);
    EXPECT(ruleset != NULL);
    if (ruleset == NULL)
        return;
    EXPECT_INT(strlen(ruleset->id), 19);
    EXPECT(strncmp(ruleset->id, "rs-", 3) == 0);
    struct epcs_ruleset *again = epcs_ruleset_load(EPCS_RULES_DIR, plugins, &limits, &err);
    EXPECT_STR(again->id, ruleset->id);
    epcs_ruleset_release(again);

    EXPECT_INT(ruleset->election_count, 9);
    EXPECT_INT(ruleset->file_count, plugins->count + 1);
    EXPECT_STR(ruleset->files[0].name, "elections.lua");
    EXPECT_STR(ruleset->files[1 + deepfake].name, "deepfake.lua");
    EXPECT_INT(strlen(ruleset->files[1 + deepfake].sha256), 64);
    const struct epcs_election *na22 = epcs_ruleset_election(ruleset, "na22", 4);
    char day[11];
    epcs_date_format(na22->day, day);
    EXPECT_STR(day, "2024-04-10");
    EXPECT_STR(na22->kind, "general");
    EXPECT_STR(na22->office, "national_assembly");
    EXPECT(!na22->has_cause_confirmed);
    const struct epcs_election *pres21 = epcs_ruleset_election(ruleset, "pres21", 6);
    EXPECT(pres21->has_cause_confirmed);
    epcs_date_format(pres21->cause_confirmed, day);
    EXPECT_STR(day, "2025-04-04");
    EXPECT(epcs_ruleset_election(ruleset, "na2", 3) == NULL);

    EXPECT_INT(ruleset->areas[deepfake].version_count, 1);
    EXPECT_STR(ruleset->areas[deepfake].versions[0].id, "deepfake/82-8/2024-01-29");
    epcs_date_format(ruleset->areas[deepfake].versions[0].effective_from, day);
    EXPECT_STR(day, "2024-01-29");
    epcs_date_format(ruleset->areas[deepfake].versions[0].promulgated, day);
    EXPECT_STR(day, "2023-12-28");

    struct epcs_engine *engine = epcs_engine_create(ruleset, &err);
    EXPECT(engine != NULL);
    struct outcome out = evaluate(engine, "na22", "2024-01-29",
                                  "{\"kind\":\"post\",\"deepfake\":true,\"purpose\":\"campaign\"}");
    EXPECT_INT(out.status, 0);
    EXPECT_INT(out.verdict, EPCS_VERDICT_PROHIBITED);
    EXPECT_CONTAINS(out.json, "{\"verdict\":\"prohibited\",\"area\":\"deepfake\",\"article\":"
                              "\"82-8(1)\",\"rule\":\"deepfake/82-8/2024-01-29\"");
    EXPECT_CONTAINS(out.json, "\"window\":{\"from\":\"2024-01-11\",\"to\":\"2024-04-10\"}");
    EXPECT_CONTAINS(out.json, "\"election\":{\"id\":\"na22\",\"day\":\"2024-04-10\"}");

    /* pres21 is a vacancy election: the window opens on the cause's confirmation, not D-90. */
    out = evaluate(engine, "pres21", "2025-04-03",
                   "{\"kind\":\"post\",\"deepfake\":true,\"purpose\":\"campaign\","
                   "\"labeled\":true}");
    EXPECT_INT(out.verdict, EPCS_VERDICT_ALLOWED);
    EXPECT_CONTAINS(out.json, "\"article\":\"82-8(2)\"");
    EXPECT_CONTAINS(out.json, "\"window\":{\"from\":\"2025-04-04\",\"to\":\"2025-06-03\"}");
    out = evaluate(engine, "pres21", "2025-04-04",
                   "{\"kind\":\"post\",\"deepfake\":true,\"purpose\":\"campaign\","
                   "\"labeled\":true}");
    EXPECT_INT(out.verdict, EPCS_VERDICT_PROHIBITED);

    out = evaluate(engine, "local9", "2026-01-05", "{\"kind\":\"post\",\"deepfake\":true}");
    EXPECT_INT(out.verdict, EPCS_VERDICT_NEEDS_FACTS);
    EXPECT_CONTAINS(out.json, "\"missing\":[\"activity.purpose\"]");

    struct epcs_buf buf = {0};
    msgpack_packer packer;
    msgpack_packer_init(&packer, &buf, epcs_buf_msgpack_write);
    struct epcs_calendar calendar = {
        .engine = engine, .area_index = deepfake, .election = na22, .packer = &packer};
    EXPECT_INT(plugins->items[deepfake].desc->calendar(plugins->items[deepfake].state, &calendar),
               0);
    EXPECT_INT(calendar.item_count, 1);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object item;
    struct epcs_decode_error decode_error;
    struct epcs_buf json = {0};
    EXPECT_INT(epcs_msgpack_decode(buf.data, buf.len, &zone, &item, &decode_error), 0);
    EXPECT_INT(epcs_json_encode(&item, &json), 0);
    epcs_buf_append(&json, "", 1);
    EXPECT_CONTAINS(json.data, "\"area\":\"deepfake\",\"kind\":\"window\",\"article\":\"82-8\","
                               "\"rule\":\"deepfake/82-8/2024-01-29\"");
    EXPECT_CONTAINS(json.data, "\"from\":\"2024-01-11\",\"to\":\"2024-04-10\"");
    epcs_buf_free(&json);
    epcs_buf_free(&buf);
    msgpack_zone_destroy(&zone);

    epcs_engine_destroy(engine);
    epcs_ruleset_release(ruleset);
}

static char rules_dir[] = "/tmp/epcs-test-rules-XXXXXX";

/* Each rule file's text is held in a buffer of its own size, not in one of the largest size a
 * rule file may have. */
static void test_rule_file_buffers_fit(void)
{
    struct epcs_rule_error err;
    struct epcs_ruleset *ruleset = epcs_ruleset_load(EPCS_RULES_DIR, plugins, &limits, &err);
    EXPECT(ruleset != NULL);
    for (size_t i = 0; ruleset != NULL && i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        EXPECT(file->length > 0);
        EXPECT(malloc_usable_size(file->source) <= file->length + 64);
        EXPECT_INT(file->source[file->length], '\0');
    }
    epcs_ruleset_release(ruleset);
}

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", rules_dir, name);
    FILE *file = fopen(path, "w");
    fputs(text, file);
    fclose(file);
}

static void copy_elections(void)
{
    char command[512];
    snprintf(command, sizeof(command), "cp %s/elections.lua %s/", EPCS_RULES_DIR, rules_dir);
    EXPECT_INT(system(command), 0);
}

/* A deepfake.lua whose single version evaluates with `body` (Lua statements). */
static void write_area(const char *body)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "local w, c = epcs.window{from = epcs.D(90), to = epcs.D(0)}, "
             "epcs.coverage{{everyone = '82-8(1)'}}\n"
             "return epcs.area{name = 'deepfake', article = '82-8', coverage = c, versions = {\n"
             "  {id = 'test/1', effective_from = '2024-01-29', window = w,\n"
             "   evaluate = function(q)\n"
             "%s\n"
             "   end},\n"
             "}}\n",
             body);
    write_file("deepfake.lua", text);
}

static struct epcs_ruleset *load_broken(struct epcs_rule_error *err)
{
    memset(err, 0, sizeof(*err));
    return epcs_ruleset_load(rules_dir, plugins, &limits, err);
}

static void test_broken_files_refused(void)
{
    struct epcs_rule_error err;
    EXPECT(mkdtemp(rules_dir) != NULL);
    copy_elections();

    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "deepfake.lua");
    EXPECT_CONTAINS(err.message, "deepfake.lua: cannot read: No such file or directory");

    write_file("deepfake.lua", "return epcs.area{name = 'deepfake',\n  article = }\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "deepfake.lua");
    EXPECT_INT(err.line, 2);
    EXPECT_CONTAINS(err.message, "unexpected symbol");

    write_file("deepfake.lua", "return epcs.area{name = 'other', article = '1',\n"
                               "  coverage = epcs.coverage{{everyone = '1'}}, versions = {\n"
                               "  {id = 'x', effective_from = '2024-01-01',\n"
                               "   window = epcs.window{from = epcs.D(9), to = epcs.D(0)},\n"
                               "   evaluate = function() end}}}\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_CONTAINS(err.message, "deepfake.lua must define area 'deepfake'");

    write_file("deepfake.lua", "\nreturn epcs.area{name = 'deepfake', article = '82-8',\n"
                               "  versions = {{id = 'x', effective_from = '2024-13-01',\n"
                               "   evaluate = function() end}}}\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "deepfake.lua");
    EXPECT_CONTAINS(err.message,
                    "version 'x' effective_from must be a date 'YYYY-MM-DD', got '2024-13-01'");

    /* A rule file is a legal text, not a data dump: beyond 1 MiB it is refused unread. */
    char *huge = malloc(1024 * 1024 + 2);
    memset(huge, '-', 1024 * 1024 + 1);
    huge[1024 * 1024 + 1] = '\0';
    write_file("deepfake.lua", huge);
    free(huge);
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "deepfake.lua");
    EXPECT_CONTAINS(err.message, "/deepfake.lua is larger than 1048576 bytes");

    write_file("deepfake.lua", "while true do end\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_CONTAINS(err.message, "deepfake.lua:1: instruction budget of 1000000 exceeded");

    write_file("elections.lua", "return epcs.elections{{id = 'x', kind = 'general',\n"
                                "  office = 'president', name = 'X\\255', name_ko = 'X',\n"
                                "  day = '2024-02-01'}}\n");
    write_area("return epcs.allowed{article = '82-8', reason = 'r'}");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "elections.lua");
    EXPECT_CONTAINS(err.message, "election 1 lacks id, name, name_ko, kind, office or day as "
                                 "UTF-8 text (no NUL bytes) and a day number");
    write_file("elections.lua", "return epcs.elections{{id = 'x', kind = 'general',\n"
                                "  office = 'president', name = 'X', name_ko = 'X',\n"
                                "  day = '2024-02-30'}}\n");
    write_area("return epcs.allowed{article = '82-8', reason = 'r'}");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "elections.lua");
    EXPECT_CONTAINS(err.message, "election 'x' day must be a date 'YYYY-MM-DD', got '2024-02-30'");
    copy_elections();
}

/* Rules that load but fail while evaluating: the evaluation fails closed and names the place;
 * the engine answers the next request normally. */
static void test_failing_evaluations(void)
{
    static const struct {
        const char *body;
        const char *message;
        int line;
    } cases[] = {
        {"      while true do end", "deepfake.lua:5: instruction budget of 1000000 exceeded", 5},
        {"      local t, s = {}, string.rep('x', 100000)\n      for i = 1, 1e9 do t[i] = s .. i "
         "end",
         "deepfake.lua:6: memory limit of 8388608 bytes exceeded", 6},
        {"      return q.nothing.field", "deepfake.lua:5: attempt to index a nil value", 5},
        {"      return {verdict = 'maybe', article = '82-8', reason = 'r'}",
         "deepfake.lua: rule test/1 returned verdict 'maybe'", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', reson = 'typo'}",
         "deepfake.lua:5: rule test/1 returned an unknown verdict field 'reson'", 5},
        {"      return epcs.allowed{reason = 'no article'}",
         "deepfake.lua:5: rule test/1 returned a verdict without string article and reason", 5},
        {"      return epcs.needs_facts{article = '82-8', reason = 'r'}",
         "deepfake.lua:5: rule test/1 returned needs_facts without the missing facts", 5},
        {"      return 42", "version 'test/1' returned number instead of a verdict", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', obligations = {1}}",
         "returned obligations or missing that are not lists of strings", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = 'delete it'}",
         "returned actions whose actions is a string, not a list; actions are a list of maps "
         "of strings, numbers, booleans and maps of those, 2 deep",
         0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = {kind = 'x'}}",
         "returned actions whose actions is a table with keys that are not list positions", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = {{}, 'x'}}",
         "returned actions whose actions[2] is a string, not a map", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r',\n"
         "        actions = {{kind = 'k', overdue = {fine = string.len}}}}",
         "returned actions whose actions[1].overdue.fine is a function", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r',\n"
         "        actions = {{escalation = {next = {kind = 'too deep'}}}}}",
         "returned actions whose actions[1].escalation.next is a map nested deeper", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = {{due_hours = 0/0}}}",
         "returned actions whose actions[1].due_hours is a number that is not finite", 0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = {{to = {'a', 'b'}}}}",
         "returned actions whose actions[1].to is a map with a key that is not a non-empty UTF-8 "
         "string",
         0},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = {{to = '\\255'}}}",
         "returned actions whose actions[1].to is a string that is not UTF-8", 0},
        /* The host reads verdicts raw and never runs their metamethods: a table whose
         * metatable makes it read otherwise than it is is refused. */
        {"      return setmetatable(epcs.allowed{article = '82-8', reason = 'r'},\n"
         "        {__index = function(t, k) error('no field ' .. k) end})",
         "deepfake.lua:5: rule test/1 returned a verdict table with a metatable; verdicts are "
         "plain tables",
         5},
        {"      return epcs.allowed{article = '82-8', reason = 'r',\n"
         "        obligations = setmetatable({'x'}, {__len = function() while true do end end})}",
         "deepfake.lua:5: rule test/1 returned obligations with a metatable; verdicts are plain "
         "tables",
         5},
        {"      return epcs.allowed{article = '82-8', reason = 'r',\n"
         "        window = setmetatable({}, {__index = function(t, k) return 19800 end})}",
         "deepfake.lua:5: rule test/1 returned a window with a metatable", 5},
        {"      return epcs.allowed{article = '82-8', reason = 'r',\n"
         "        actions = {{kind = 'k', overdue = setmetatable({}, {})}}}",
         "returned actions whose actions[1].overdue is a table with a metatable", 5},
        /* Every string goes out as UTF-8 without NUL bytes, or not at all. */
        {"      return epcs.allowed{article = '82-8\\0', reason = 'r'}",
         "deepfake.lua:5: rule test/1 returned an article holding a NUL byte", 5},
        {"      return epcs.allowed{article = '82-8', reason = 'r', exception = '\\xc3'}",
         "deepfake.lua:5: rule test/1 returned an exception that is not valid UTF-8", 5},
        {"      return epcs.prohibited{article = '82-8', reason = 'r', penalty = "
         "'\\xf4\\x90\\x80\\x80'}",
         "deepfake.lua:5: rule test/1 returned a penalty that is not valid UTF-8", 5},
        {"      return epcs.needs_facts{article = '82-8', reason = 'r', missing = {'a\\0'}}",
         "deepfake.lua:5: rule test/1 returned missing whose item 1 is not UTF-8 text without NUL "
         "bytes",
         5},
        {"      return epcs.allowed{article = '82-8', reason = 'r', actions = {{to = 'p\\0'}}}",
         "returned actions whose actions[1].to is a string holding a NUL byte", 5},
        {"      local v = epcs.decide('nothing', q)\n      return v",
         "deepfake.lua:5: epcs.decide: no area 'nothing' is loaded (its plugin is missing)", 5},
    };
    struct epcs_rule_error err;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_area(cases[i].body);
        struct epcs_ruleset *ruleset = load_broken(&err);
        EXPECT(ruleset != NULL);
        if (ruleset == NULL) {
            fprintf(stderr, "case %zu did not load: %s\n", i, err.message);
            continue;
        }
        struct epcs_engine *engine = epcs_engine_create(ruleset, &err);
        struct outcome out = evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"post\"}");
        EXPECT_INT(out.status, -1);
        EXPECT_STR(out.error.file, "deepfake.lua");
        EXPECT_CONTAINS(out.error.message, cases[i].message);
        if (cases[i].line != 0)
            EXPECT_INT(out.error.line, cases[i].line);
        write_area("return epcs.allowed{article = '82-8', reason = 'fine'}");
        epcs_engine_destroy(engine);
        epcs_ruleset_release(ruleset);
    }
    /* After a failure the same engine keeps answering. */
    write_area("      if q.activity.kind == 'edit' then while true do end end\n"
               "      return epcs.allowed{article = '82-8', reason = 'fine'}");
    struct epcs_ruleset *ruleset = load_broken(&err);
    struct epcs_engine *engine = epcs_engine_create(ruleset, &err);
    EXPECT_INT(evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"edit\"}").status, -1);
    struct outcome out = evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"post\"}");
    EXPECT_INT(out.status, 0);
    EXPECT_CONTAINS(out.json, "\"verdict\":\"allowed\"");
    EXPECT_CONTAINS(out.json, "\"window\":{\"from\":\"2024-01-11\",\"to\":\"2024-04-10\"}");
    epcs_engine_destroy(engine);
    epcs_ruleset_release(ruleset);

    char command[512];
    snprintf(command, sizeof(command), "rm -rf '%s'", rules_dir);
    EXPECT_INT(system(command), 0);
}

/* Actions reach partners as data, in the same bytes from every worker: keys sorted, integers
 * kept integers, floats floats. epcs.decide hands over another area's verdict to build on. */
static void test_actions_and_decide(void)
{
    struct epcs_rule_error err;
    EXPECT(mkdtemp(rules_dir) != NULL);
    copy_elections();
    write_area("      if q.activity.kind == 'edit' then\n"
               "        local v = epcs.decide('deepfake', {date = q.date, election = q.election,\n"
               "                              actor = q.actor, activity = {kind = 'post'}})\n"
               "        v.reason = 'decided: ' .. v.reason\n"
               "        return v\n"
               "      end\n"
               "      return epcs.prohibited{article = '82-8', reason = 'r', actions = {\n"
               "        {to = 'platform', kind = 'deletion_request', due_hours = 24,\n"
               "         objection_days = 2.5, urgent = true, zeta = 'z', a = 'first',\n"
               "         overdue = {penalty = 'p', article = '261(6)4', fine = 3000000},\n"
               "         escalation = {}},\n"
               "        {kind = 'referral', to = 'prosecutors'}}}");
    struct epcs_ruleset *ruleset = load_broken(&err);
    EXPECT(ruleset != NULL);
    if (ruleset == NULL) {
        fprintf(stderr, "actions rules did not load: %s\n", err.message);
        return;
    }
    static const char expected[] =
        "\"actions\":[{\"a\":\"first\",\"due_hours\":24,\"escalation\":{},"
        "\"kind\":\"deletion_request\",\"objection_days\":2.5,"
        "\"overdue\":{\"article\":\"261(6)4\",\"fine\":3000000,\"penalty\":\"p\"},"
        "\"to\":\"platform\",\"urgent\":true,\"zeta\":\"z\"},"
        "{\"kind\":\"referral\",\"to\":\"prosecutors\"}],"
        "\"election\":";
    /* Each engine has its own Lua state and so its own string hash seed and table order. */
    for (int round = 0; round < 4; round++) {
        struct epcs_engine *engine = epcs_engine_create(ruleset, &err);
        EXPECT(engine != NULL);
        if (engine == NULL)
            break;
        struct outcome out = evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"post\"}");
        EXPECT_INT(out.status, 0);
        EXPECT_CONTAINS(out.json, expected);
        out = evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"edit\"}");
        EXPECT_INT(out.status, 0);
        EXPECT_CONTAINS(out.json, "\"reason\":\"decided: r\"");
        EXPECT_CONTAINS(out.json, "\"rule\":\"test/1\"");
        EXPECT_CONTAINS(out.json, expected);
        epcs_engine_destroy(engine);
    }
    epcs_ruleset_release(ruleset);

    /* Other areas are reachable only once every file has loaded. */
    write_file("deepfake.lua", "local early = epcs.decide('deepfake', {})\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "deepfake.lua");
    EXPECT_CONTAINS(err.message, "deepfake.lua:1: epcs.decide('deepfake') runs while evaluating, "
                                 "not while rule files load");
    /* Nor can a rule file hand the host's list over itself. */
    write_file("deepfake.lua", "epcs._link_areas({})\n"
                               "return epcs.area{name = 'deepfake', article = '82-8',\n"
                               "  coverage = epcs.coverage{{everyone = '82-8(1)'}}, versions = {\n"
                               "  {id = 'x', effective_from = '2024-01-01',\n"
                               "   window = epcs.window{from = epcs.D(9), to = epcs.D(0)},\n"
                               "   evaluate = function() end}}}\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_CONTAINS(err.message, "the areas are linked once, by the host");

    char command[512];
    snprintf(command, sizeof(command), "rm -rf '%s'", rules_dir);
    EXPECT_INT(system(command), 0);
}

/* Rule files cannot change what other files see, nor what the next evaluation sees. */
static void test_rules_stay_pure(void)
{
    struct epcs_rule_error err;
    EXPECT(mkdtemp(rules_dir) != NULL);
    copy_elections();
    /* A window's methods are the rule API's, shared by every area: read-only. */
    write_file("deepfake.lua", "local w = epcs.window{from = epcs.D(90), to = epcs.D(0)}\n"
                               "getmetatable(w).span = function() return 0, 0 end\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_STR(err.file, "deepfake.lua");
    EXPECT_INT(err.line, 2);
    EXPECT_CONTAINS(err.message, "deepfake.lua:2: rules may not set 'span' in a table made while "
                                 "the rule files loaded");
    write_file("deepfake.lua", "epcs.allowed = function(spec) return spec end\n");
    EXPECT(load_broken(&err) == NULL);
    EXPECT_CONTAINS(err.message, "deepfake.lua:1: rules may not set 'allowed'");
    /* Each file has its own globals: elections.lua's are not deepfake.lua's. */
    char command[512];
    snprintf(command, sizeof(command),
             "printf 'shared = 7\\n' | cat - %s/elections.lua > %s/e && "
             "mv %s/e %s/elections.lua",
             EPCS_RULES_DIR, rules_dir, rules_dir, rules_dir);
    EXPECT_INT(system(command), 0);
    /* A constant verdict, asked for through epcs.decide and changed by the asker, and asked
     * for directly for two elections: each answer is its own. */
    write_area("      if q.activity.kind == 'edit' then\n"
               "        local v = epcs.decide('deepfake', {date = q.date, election = q.election,\n"
               "                              actor = q.actor, activity = {kind = 'post'}})\n"
               "        v.reason = 'changed: ' .. v.reason\n"
               "        return v\n"
               "      end\n"
               "      return CONSTANT\n");
    char text[2048];
    FILE *file = fopen(strcat(strcpy(text, rules_dir), "/deepfake.lua"), "r");
    size_t len = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[len] = '\0';
    char prefixed[2200];
    snprintf(prefixed, sizeof(prefixed),
             "assert(shared == nil)\nCONSTANT = epcs.allowed{article = '82-8', reason = 'c'}\n%s",
             text);
    write_file("deepfake.lua", prefixed);
    struct epcs_ruleset *ruleset = load_broken(&err);
    EXPECT(ruleset != NULL);
    if (ruleset == NULL) {
        fprintf(stderr, "pure rules did not load: %s\n", err.message);
        return;
    }
    struct epcs_engine *engine = epcs_engine_create(ruleset, &err);
    for (int round = 0; round < 2; round++) {
        struct outcome out = evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"edit\"}");
        EXPECT_CONTAINS(out.json, "\"reason\":\"changed: c\"");
        out = evaluate(engine, "na22", "2024-02-01", "{\"kind\":\"post\"}");
        EXPECT_CONTAINS(out.json, "\"reason\":\"c\",\"window\":{\"from\":\"2024-01-11\"");
        out = evaluate(engine, "local9", "2026-03-01", "{\"kind\":\"post\"}");
        EXPECT_CONTAINS(out.json, "\"reason\":\"c\",\"window\":{\"from\":\"2026-03-05\"");
    }
    epcs_engine_destroy(engine);
    epcs_ruleset_release(ruleset);
    snprintf(command, sizeof(command), "rm -rf '%s'", rules_dir);
    EXPECT_INT(system(command), 0);
}

int main(void)
{
    /* Only the deepfake plugin: the broken rule directories below hold no other area's file. */
    char dir[] = "/tmp/epcs-test-deepfake-plugin-XXXXXX";
    char link_path[64];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(link_path, sizeof(link_path), "%s/deepfake.so", dir);
    EXPECT_INT(symlink(EPCS_PLUGIN_DIR "/deepfake.so", link_path), 0);
    plugins = epcs_plugins_load(dir, &epcs_host_api_v1);
    unlink(link_path);
    rmdir(dir);
    EXPECT(plugins != NULL && plugins->count == 1);
    if (plugins == NULL || plugins->count != 1)
        return epcs_test_report();
    deepfake = (size_t)epcs_plugins_find(plugins, "deepfake", 8);
    test_bundled_ruleset();
    test_rule_file_buffers_fit();
    test_broken_files_refused();
    test_failing_evaluations();
    memcpy(rules_dir + strlen(rules_dir) - 6, "XXXXXX", 6);
    test_actions_and_decide();
    memcpy(rules_dir + strlen(rules_dir) - 6, "XXXXXX", 6);
    test_rules_stay_pure();
    epcs_plugins_destroy(plugins);
    return epcs_test_report();
}
