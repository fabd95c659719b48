/* Pattern function calls made alike in Lua's string library and in epcs's (pattern_calls.h). */
#include "pattern_calls.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Functions both states define, for gsub's function and table replacements. */
static const char helpers[] =
    "show = function(...)\n"
    "  local t = table.pack(...)\n"
    "  for i = 1, t.n do t[i] = type(t[i]) .. ':' .. tostring(t[i]) end\n"
    "  return '<' .. table.concat(t, ',') .. '>'\n"
    "end\n"
    "keep_a = function(c) if c == 'a' then return false end return c .. c end\n"
    "bad_value = function() return {} end\n"
    "boom = function() error('boom') end\n"
    "count = function(...) return select('#', ...) end\n"
    "tab = {a = 'A', b = false, x = 1, ['(a)'] = 'P', [''] = 'E'}\n"
    "upper = setmetatable({}, {__index = function(t, k) return type(k) == 'string' and "
    "k:upper() or k end})\n";

lua_State *epcs_pattern_state(int ours, const struct epcs_pattern_budget *budget)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "pattern calls: no memory for a Lua state\n");
        exit(1);
    }
    luaL_openlibs(L);
    if (ours) {
        lua_getglobal(L, "string");
        epcs_patterns_open(L, -1, budget);
        lua_pop(L, 1);
    }
    if (luaL_dostring(L, helpers) != LUA_OK) {
        fprintf(stderr, "helpers: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    return L;
}

static void push_arg(lua_State *L, const struct epcs_pattern_arg *a)
{
    switch (a->kind) {
    case EPCS_PATTERN_ARG_NIL:
        lua_pushnil(L);
        break;
    case EPCS_PATTERN_ARG_STR:
        lua_pushlstring(L, a->str, a->len);
        break;
    case EPCS_PATTERN_ARG_INT:
        lua_pushinteger(L, a->value);
        break;
    case EPCS_PATTERN_ARG_BOOL:
        lua_pushboolean(L, (int)a->value);
        break;
    case EPCS_PATTERN_ARG_GLOBAL:
        lua_getglobal(L, a->str);
        break;
    case EPCS_PATTERN_ARG_END:
        break;
    }
}

/* Appends a printable form of the value at `index` to `out`. */
static void render_value(lua_State *L, int index, struct epcs_buf *out)
{
    char text[64];
    size_t len;
    switch (lua_type(L, index)) {
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, index, &len);
        epcs_buf_append_str(out, "s\"");
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c >= 32 && c < 127 && c != '\\' && c != '"')
                snprintf(text, sizeof(text), "%c", c);
            else
                snprintf(text, sizeof(text), "\\x%02x", c);
            epcs_buf_append_str(out, text);
        }
        epcs_buf_append_str(out, "\"");
        break;
    }
    case LUA_TNUMBER:
        snprintf(text, sizeof(text), "n%lld", (long long)lua_tointeger(L, index));
        epcs_buf_append_str(out, text);
        break;
    default:
        epcs_buf_append_str(out, luaL_typename(L, index));
    }
}

/* Calls the function below `nargs` values; appends "ok(v,...)" or "err(message)" to `out`.
 * Returns 0 on success, -1 on error; *ended tells whether the first result is nil. */
static int render_pcall(lua_State *L, int nargs, struct epcs_buf *out, int *ended)
{
    int base = lua_gettop(L) - nargs - 1;
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
        epcs_buf_append_str(out, "err(");
        epcs_buf_append_str(out, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
        epcs_buf_append_str(out, ")");
        lua_settop(L, base);
        return -1;
    }
    epcs_buf_append_str(out, "ok(");
    for (int i = base + 1; i <= lua_gettop(L); i++) {
        if (i > base + 1)
            epcs_buf_append_str(out, ",");
        render_value(L, i, out);
    }
    epcs_buf_append_str(out, ")");
    if (ended != NULL)
        *ended = lua_gettop(L) == base || lua_isnil(L, base + 1);
    lua_settop(L, base);
    return 0;
}

static void push_call(lua_State *L, const struct epcs_pattern_call *c, int *nargs)
{
    lua_getglobal(L, "string");
    lua_getfield(L, -1, c->fn);
    lua_remove(L, -2);
    for (*nargs = 0; *nargs < EPCS_PATTERN_MAX_ARGS && c->args[*nargs].kind != EPCS_PATTERN_ARG_END;
         (*nargs)++)
        push_arg(L, &c->args[*nargs]);
}

void epcs_pattern_outcome(lua_State *L, const struct epcs_pattern_call *c, struct epcs_buf *out)
{
    int nargs;
    epcs_buf_reset(out);
    lua_checkstack(L, 16);
    push_call(L, c, &nargs);
    if (render_pcall(L, nargs, out, NULL) != 0 || strcmp(c->fn, "gmatch") != 0)
        return;
    /* The same call succeeded just now, so it needs no protection to give the iterator. */
    push_call(L, c, &nargs);
    lua_call(L, nargs, 1);
    int iterator = lua_gettop(L), ended = 0;
    for (int i = 0; i < 64 && !ended; i++) {
        lua_pushvalue(L, iterator);
        epcs_buf_append_str(out, " ");
        if (render_pcall(L, 0, out, &ended) != 0)
            break;
    }
    lua_settop(L, iterator - 1);
}

void epcs_pattern_print(lua_State *L, const struct epcs_pattern_call *c)
{
    struct epcs_buf text = {0};
    for (int i = 0; i < EPCS_PATTERN_MAX_ARGS && c->args[i].kind != EPCS_PATTERN_ARG_END; i++) {
        push_arg(L, &c->args[i]);
        if (i > 0)
            epcs_buf_append_str(&text, ", ");
        render_value(L, -1, &text);
        lua_pop(L, 1);
    }
    fprintf(stderr, "string.%s(%.*s)\n", c->fn, (int)text.len, text.data);
    epcs_buf_free(&text);
}
