/* The rule files' own tests: what commission staff run before deploying an amendment. */
#include "rule_tests.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dates.h"
#include "log.h"

/* Deep enough for any test table; a deeper one is a mistake in the table. */
#define MAX_TABLE_DEPTH 8

/* Packs the Lua value at `index`: sequences become arrays, other tables maps with string keys.
 * Returns 0, or -1 for a value a request could not hold (functions, deep nesting). */
static int pack_lua(msgpack_packer *pk, lua_State *L, int index, int depth)
{
    index = lua_absindex(L, index);
    switch (lua_type(L, index)) {
    case LUA_TNIL:
        return msgpack_pack_nil(pk);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, index) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case LUA_TNUMBER:
        if (lua_isinteger(L, index))
            return msgpack_pack_int64(pk, lua_tointeger(L, index));
        return msgpack_pack_double(pk, lua_tonumber(L, index));
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, index, &len);
        msgpack_pack_str(pk, len);
        return msgpack_pack_str_body(pk, str, len);
    }
    case LUA_TTABLE:
        break;
    default:
        return -1;
    }
    if (depth > MAX_TABLE_DEPTH || !lua_checkstack(L, 4))
        return -1;
    lua_Integer length = luaL_len(L, index);
    if (length > 0) {
        msgpack_pack_array(pk, (size_t)length);
        for (lua_Integer i = 1; i <= length; i++) {
            lua_rawgeti(L, index, i);
            int rc = pack_lua(pk, L, -1, depth + 1);
            lua_pop(L, 1);
            if (rc != 0)
                return -1;
        }
        return 0;
    }
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pop(L, 1);
        count++;
    }
    msgpack_pack_map(pk, count);
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || pack_lua(pk, L, -2, depth + 1) != 0 ||
            pack_lua(pk, L, -1, depth + 1) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Packs field `key` of the table at `index` and decodes it into `zone`. NULL when absent. */
static const msgpack_object *field_object(lua_State *L, int index, const char *key,
                                          msgpack_zone *zone, struct epcs_buf *buf, int *bad)
{
    msgpack_packer packer;
    msgpack_object *object;
    struct epcs_decode_error err;
    lua_getfield(L, index, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    epcs_buf_reset(buf);
    msgpack_packer_init(&packer, buf, epcs_buf_msgpack_write);
    object = msgpack_zone_malloc(zone, sizeof(*object));
    /* Decoded strings point into the bytes, so they live in the zone, not the reused buffer. */
    char *bytes = NULL;
    if (object == NULL || pack_lua(&packer, L, -1, 0) != 0 ||
        (bytes = msgpack_zone_malloc(zone, buf->len)) == NULL ||
        epcs_msgpack_decode(memcpy(bytes, buf->data, buf->len), buf->len, zone, object, &err) !=
            0) {
        *bad = 1;
        object = NULL;
    }
    lua_pop(L, 1);
    return object;
}

static int empty_container(const msgpack_object *obj)
{
    return (obj->type == MSGPACK_OBJECT_ARRAY && obj->via.array.size == 0) ||
           (obj->type == MSGPACK_OBJECT_MAP && obj->via.map.size == 0);
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key, size_t len)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->via.str.size == len && memcmp(k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
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
            const msgpack_object *other = map_get(b, key->via.str.ptr, key->via.str.size);
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
    const msgpack_object *got = map_get(verdict, key->via.str.ptr, key->via.str.size);
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

/* Runs the case on top of the stack; returns 1 when it passed, 0 with `why` filled. */
static int run_case(struct epcs_engine *engine, size_t area_index, lua_State *L, msgpack_zone *zone,
                    struct epcs_buf *scratch, char *why, size_t why_size)
{
    const struct epcs_ruleset *ruleset = epcs_engine_ruleset(engine);
    int item = lua_gettop(L), bad = 0;
    const msgpack_object *actor = field_object(L, item, "actor", zone, scratch, &bad);
    const msgpack_object *activity = field_object(L, item, "activity", zone, scratch, &bad);
    const msgpack_object *expect = field_object(L, item, "expect", zone, scratch, &bad);
    lua_getfield(L, item, "election");
    lua_getfield(L, item, "date");
    size_t election_len = 0, date_len = 0;
    const char *election_id = lua_tolstring(L, -2, &election_len);
    const char *date_text = lua_tolstring(L, -1, &date_len);
    const struct epcs_election *election =
        election_id ? epcs_ruleset_election(ruleset, election_id, election_len) : NULL;
    int32_t date = 0;
    int date_ok = date_text && epcs_date_parse(date_text, date_len, &date) == 0;
    char election_copy[64];
    snprintf(election_copy, sizeof(election_copy), "%s", election_id ? election_id : "(none)");
    lua_pop(L, 2);
    if (bad || expect == NULL)
        return snprintf(why, why_size, "actor, activity and expect must be plain tables"), 0;
    if (election == NULL)
        return snprintf(why, why_size, "no election '%s'", election_copy), 0;
    if (!date_ok)
        return snprintf(why, why_size, "date must be YYYY-MM-DD"), 0;
    if ((actor && actor->type != MSGPACK_OBJECT_MAP) ||
        (activity && activity->type != MSGPACK_OBJECT_MAP))
        return snprintf(why, why_size, "actor and activity must be tables of facts"), 0;

    struct epcs_facts facts;
    if (epcs_facts_read(&facts, ruleset->plugins->vocab, actor, activity) != 0)
        return snprintf(why, why_size, "facts refused (422 %s): %s", facts.field, facts.message), 0;
    facts.date = date;
    struct epcs_buf verdict_buf = {0};
    msgpack_packer packer;
    msgpack_packer_init(&packer, &verdict_buf, epcs_buf_msgpack_write);
    struct epcs_eval eval = {.engine = engine,
                             .area_index = area_index,
                             .facts = &facts,
                             .date = date,
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
    struct epcs_buf scratch = {0};
    msgpack_zone_init(&zone, 4096);
    for (size_t area = 0; area < ruleset->plugins->count; area++) {
        const char *file = ruleset->files[area + 1].name;
        size_t passed = 0, failed = 0, generated = 0;
        lua_State *L = epcs_engine_push_test_cases(engine, area, &err);
        if (L == NULL) {
            if (out != NULL)
                fprintf(out, "%s: cannot list tests: %s\n", file, err.message);
            summary->failed++;
            continue;
        }
        int list = lua_gettop(L);
        lua_Integer count = luaL_len(L, list);
        for (lua_Integer i = 1; i <= count; i++) {
            char why[600];
            lua_rawgeti(L, list, i);
            lua_getfield(L, -1, "generated");
            generated += lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (run_case(engine, area, L, &zone, &scratch, why, sizeof(why))) {
                passed++;
            } else {
                failed++;
                lua_getfield(L, -1, "name");
                if (out != NULL)
                    fprintf(out, "%s: FAIL %s: %s\n", file,
                            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(unnamed)", why);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            msgpack_zone_clear(&zone);
        }
        lua_settop(L, list - 1);
        if (count == 0) {
            failed++;
            if (out != NULL)
                fprintf(out, "%s: FAIL: no tests; every area carries a tests table\n", file);
        }
        if (out != NULL)
            fprintf(out,
                    "%s: %zu tests (%zu from the tests table, %zu boundary probes): "
                    "%zu passed, %zu failed\n",
                    file, passed + failed, passed + failed - generated, generated, passed, failed);
        summary->passed += passed;
        summary->failed += failed;
        summary->generated += generated;
    }
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&scratch);
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
        epcs_log(EPCS_LOG_INFO, "rules", "%s passed its %zu rule tests (%zu boundary probes)",
                 ruleset->id, summary.passed, summary.generated);
    free(report);
    return rc;
}
