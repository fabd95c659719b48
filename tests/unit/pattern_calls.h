#ifndef EPCS_PATTERN_CALLS_H
#define EPCS_PATTERN_CALLS_H

/*
 * Calls of the string library's pattern functions made the same way in two states, one with
 * Lua's own string library and one with epcs's find, match, gmatch and gsub, and their outcomes
 * as text to compare: tests/unit/test_patterns.c on chosen and generated cases,
 * tests/fuzz/fuzz_patterns.c on libFuzzer's inputs.
 */

#include <lua.h>
#include <stddef.h>

#include "buf.h"
#include "lua_patterns.h"

enum epcs_pattern_arg_kind {
    EPCS_PATTERN_ARG_END,
    EPCS_PATTERN_ARG_NIL,
    EPCS_PATTERN_ARG_STR,
    EPCS_PATTERN_ARG_INT,
    EPCS_PATTERN_ARG_BOOL,
    /** The global named `str`: one of the helpers both states define. */
    EPCS_PATTERN_ARG_GLOBAL,
};

/** One argument; `str` is borrowed (not copied) until the call is made. */
struct epcs_pattern_arg {
    enum epcs_pattern_arg_kind kind;
    const char *str;
    size_t len;
    lua_Integer value;
};

#define EPCS_PATTERN_MAX_ARGS 5

/** string.<fn>(args...), the arguments ending at the first EPCS_PATTERN_ARG_END. */
struct epcs_pattern_call {
    const char *fn;
    struct epcs_pattern_arg args[EPCS_PATTERN_MAX_ARGS];
};

/**
 * A new state with the standard libraries and the helpers gsub's function and table
 * replacements use (show, keep_a, bad_value, boom, count, tab, upper); with `ours`, the string
 * library's pattern functions are epcs's, charging `budget` (not owned; NULL charges nothing).
 * Exits the process when the state cannot be made. The caller closes it with lua_close.
 */
lua_State *epcs_pattern_state(int ours, const struct epcs_pattern_budget *budget);

/**
 * Makes `call` in `L` and writes its outcome to `out` (reset first): "ok(values)" or
 * "err(message)", and for gmatch the iterator's results, up to 64 of them. Leaves the stack as
 * it was.
 */
void epcs_pattern_outcome(lua_State *L, const struct epcs_pattern_call *call, struct epcs_buf *out);

/** Prints `call` on stderr, its arguments written as outcomes write values. */
void epcs_pattern_print(lua_State *L, const struct epcs_pattern_call *call);

#endif
