/*
 * libFuzzer harness for epcs's pattern functions (server/core/lua_patterns.c), against Lua's own:
 * each input is one call of string.find, match, gmatch or gsub, made in a plain state with the
 * standard string library and in one whose pattern functions are epcs's, and both outcomes (every
 * result, or the error message) must be the same, as tests/unit/test_patterns.c asks of its
 * cases. Rules are untrusted text: a subject and a pattern are whatever a rule file makes them.
 *
 * epcs's side is charged to a budget and goes first; a call that spends it is not made on
 * Lua's side, whose matcher has no bound at all (the reason epcs has its own). A call within
 * the budget must cost Lua's matcher about as much, so a slow input on Lua's side (a libFuzzer
 * timeout) means that epcs's matcher undercharges it.
 *
 * An input: byte 0 chooses the function and its options, byte 1 gsub's replacement (and count),
 * byte 2 the subject's length; the subject follows, then the pattern (up to the end).
 */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern_calls.h"

/* Steps epcs's side may take for one input: a few milliseconds of matching. */
#define STEP_LIMIT 200000L

static lua_State *reference, *ours;
static long charged;
static int spent;

static void charge(lua_State *L, long steps)
{
    charged += steps;
    if (charged > STEP_LIMIT) {
        spent = 1;
        luaL_error(L, "fuzz budget of %d steps spent", (int)STEP_LIMIT);
    }
}

static const struct epcs_pattern_budget budget = {.charge = charge};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    reference = epcs_pattern_state(0, NULL);
    ours = epcs_pattern_state(1, &budget);
    return 0;
}

static struct epcs_pattern_arg text(const uint8_t *bytes, size_t len)
{
    return (struct epcs_pattern_arg){
        .kind = EPCS_PATTERN_ARG_STR, .str = (const char *)bytes, .len = len};
}

static struct epcs_pattern_arg integer(lua_Integer value)
{
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_INT, .value = value};
}

/* gsub's replacement: a template string, or a helper function or table of both states. */
static struct epcs_pattern_arg replacement(unsigned choice)
{
    static const char *const templates[] = {"X", "%0", "%1", "<%1|%2>", "%%", "%", "%x", "%9"};
    static const char *const helpers[] = {"show",  "keep_a", "tab",      "upper",
                                          "count", "boom",   "bad_value"};
    size_t templates_count = sizeof(templates) / sizeof(templates[0]);
    size_t helpers_count = sizeof(helpers) / sizeof(helpers[0]);
    if (choice < templates_count)
        return text((const uint8_t *)templates[choice], strlen(templates[choice]));
    const char *name = helpers[(choice - templates_count) % helpers_count];
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_GLOBAL, .str = name};
}

/* The call an input stands for; `subject` and `pattern` are borrowed from the input. */
static struct epcs_pattern_call decode(const uint8_t *data, size_t size)
{
    static const char *const functions[] = {"find", "match", "gmatch", "gsub"};
    static const lua_Integer inits[] = {1, 2, -1, -3, 0, 40, LUA_MININTEGER, LUA_MAXINTEGER};
    unsigned op = data[0], extra = data[1];
    size_t rest = size - 3, subject_len = data[2] % (rest + 1);
    struct epcs_pattern_call call = {.fn = functions[op & 3]};
    call.args[0] = text(data + 3, subject_len);
    call.args[1] = text(data + 3 + subject_len, rest - subject_len);
    int with_init = (op >> 2) & 1, with_more = (op >> 3) & 1;
    lua_Integer init = inits[(op >> 4) & 7];
    if (strcmp(call.fn, "gsub") == 0) {
        call.args[2] = replacement(extra & 15);
        if (with_more)
            call.args[3] = integer((lua_Integer)(extra >> 4) - 1);
    } else if (with_init || with_more) {
        call.args[2] = integer(init);
        /* find's fourth argument: a plain search. */
        if (with_more && strcmp(call.fn, "find") == 0)
            call.args[3] = (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_BOOL, .value = 1};
    }
    return call;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct epcs_buf want, got;
    if (size < 3)
        return 0;
    struct epcs_pattern_call call = decode(data, size);
    charged = 0;
    spent = 0;
    epcs_pattern_outcome(ours, &call, &got);
    if (spent)
        return 0;
    epcs_pattern_outcome(reference, &call, &want);
    if (want.len == got.len && memcmp(want.data, got.data, want.len) == 0)
        return 0;
    epcs_pattern_print(reference, &call);
    fprintf(stderr, "  lua:  %.*s\n  epcs: %.*s\nfuzz_patterns: epcs's %s differs from Lua's\n",
            (int)want.len, want.data, (int)got.len, got.data, call.fn);
    abort();
}
