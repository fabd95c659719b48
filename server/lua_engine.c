#include "lua_engine.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "log.h"
#include "lua_patterns.h"

/* The count hook fires every HOOK_STEP instructions: often enough to stop a loop within
 * microseconds, rarely enough to cost nothing measurable on a normal evaluation. */
#define HOOK_STEP 1000

enum abort_reason { NOT_ABORTED, ABORT_MEMORY, ABORT_BUDGET };

struct epcs_lua {
    lua_State *L;
    struct epcs_lua_limits limits;
    size_t used;
    long budget_left;
    int in_call;
    enum abort_reason aborted;
    /* Where the current failure happened, found while the failing frame still existed. */
    int located;
    char file[128];
    int line;
    /* Set while a rule file's main chunk runs: what it makes outlives the load. */
    int loading;
    void *owner;
};

static struct epcs_lua *sandbox_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* Walks up from `level` to the innermost frame of a rule file (chunk names "@file"); the rule
 * API prelude and C functions are skipped so errors point at the rule author's line. */
static void locate(struct epcs_lua *lua, lua_State *L, int level)
{
    lua_Debug ar;
    for (; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar))
            continue;
        if (ar.source != NULL && ar.source[0] == '@' && ar.currentline > 0) {
            snprintf(lua->file, sizeof(lua->file), "%s", ar.source + 1);
            lua->line = ar.currentline;
            lua->located = 1;
            return;
        }
    }
}

static void *cb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct epcs_lua *lua = ud;
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        lua->used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > lua->limits.memory_bytes - lua->used) {
        if (lua->in_call && lua->aborted == NOT_ABORTED) {
            lua->aborted = ABORT_MEMORY;
            if (lua->L != NULL && !lua->located)
                locate(lua, lua->L, 0);
        }
        return NULL;
    }
    void *grown = realloc(ptr, nsize);
    if (grown != NULL)
        lua->used = lua->used - old + nsize;
    return grown;
}

/* Ends the running call: its budget is spent. Never returns. */
static void budget_spent(struct epcs_lua *lua, lua_State *L)
{
    lua->aborted = ABORT_BUDGET;
    if (!lua->located)
        locate(lua, L, 0);
    /* Not luaL_error: inside a hook its location prefix names the caller's caller. */
    lua_pushfstring(L, "instruction budget of %I exceeded (endless loop?)",
                    (lua_Integer)lua->limits.instructions);
    lua_error(L);
}

static void cb_hook(lua_State *L, lua_Debug *ar)
{
    struct epcs_lua *lua = sandbox_of(L);
    lua->budget_left -= HOOK_STEP;
    if (lua->budget_left <= 0)
        budget_spent(lua, L);
}

/* Work done in C on the rules' behalf (pattern matching) is paid from the same budget as the
 * VM's instructions, which the count hook cannot see while C code runs. */
static void cb_charge(lua_State *L, long steps)
{
    struct epcs_lua *lua = sandbox_of(L);
    lua->budget_left -= steps;
    if (lua->budget_left <= 0 && lua->in_call)
        budget_spent(lua, L);
}

static const struct epcs_pattern_budget pattern_budget = {.charge = cb_charge};

static int cb_msghandler(lua_State *L)
{
    struct epcs_lua *lua = sandbox_of(L);
    if (!lua->located)
        locate(lua, L, 1);
    if (lua_type(L, 1) != LUA_TSTRING)
        lua_pushfstring(L, "rule raised a %s instead of an error message", luaL_typename(L, 1));
    return 1;
}

/* True when the function that called the running C function is a rule file's own code (the
 * rule API's functions, the host's and C functions are not). */
static int called_by_rule_file(lua_State *L)
{
    lua_Debug ar;
    return lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) && ar.source != NULL &&
           ar.source[0] == '@';
}

/* setmetatable without __gc: finalizers run with hooks off, so one that loops would hang the
 * worker beyond the reach of the instruction budget. Not while a rule file loads either: a
 * table made then outlives the load, and a metatable would let reading it run the rule's code
 * whenever the host or the rule API reads it (a "strict" table raising on a missing field). */
static int cb_setmetatable(lua_State *L)
{
    int meta_type = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, meta_type == LUA_TNIL || meta_type == LUA_TTABLE, 2, "nil or table");
    if (sandbox_of(L)->loading && called_by_rule_file(L))
        return luaL_error(L, "setmetatable works only while evaluating: a table made while a "
                             "rule file loads outlives the load and must stay plain");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    if (meta_type == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "rules may not set __gc metamethods");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* epcs.date("YYYY-MM-DD") -> day number */
static int cb_date(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int32_t day;
    if (epcs_date_parse(text, len, &day) != 0)
        return luaL_error(L, "'%s' is not a date YYYY-MM-DD", text);
    lua_pushinteger(L, day);
    return 1;
}

/* epcs.parse_date("YYYY-MM-DD") -> day number, or nil when it is no date */
static int cb_parse_date(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int32_t day;
    if (epcs_date_parse(text, len, &day) != 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, day);
    return 1;
}

/* epcs.fmt(day number) -> "YYYY-MM-DD" */
static int cb_fmt(lua_State *L)
{
    lua_Integer day = luaL_checkinteger(L, 1);
    char text[11];
    if (day < epcs_days_from_civil(EPCS_DATE_MIN_YEAR, 1, 1) ||
        day > epcs_days_from_civil(EPCS_DATE_MAX_YEAR, 12, 31))
        return luaL_error(L, "day number %d is outside the supported years", (int)day);
    epcs_date_format((int32_t)day, text);
    lua_pushstring(L, text);
    return 1;
}

static int open_sandbox(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {NULL, NULL},
    };
    /* Loading code, printing, the collector and error catching stay out: rules must neither
     * reach the host nor swallow the budget and memory errors that stop them. */
    static const char *const removed[] = {
        "dofile", "loadfile", "load", "collectgarbage", "print", "pcall", "xpcall", "warn", NULL};
    for (const luaL_Reg *lib = libs; lib->func != NULL; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    for (const char *const *name = removed; *name != NULL; name++) {
        lua_pushnil(L);
        lua_setglobal(L, *name);
    }
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    epcs_patterns_open(L, -1, &pattern_budget);
    lua_pop(L, 1);
    lua_pushcfunction(L, cb_setmetatable);
    lua_setglobal(L, "setmetatable");

    lua_newtable(L);
    lua_pushcfunction(L, cb_date);
    lua_setfield(L, -2, "date");
    lua_pushcfunction(L, cb_parse_date);
    lua_setfield(L, -2, "parse_date");
    lua_pushcfunction(L, cb_fmt);
    lua_setfield(L, -2, "fmt");
    lua_setglobal(L, "epcs");
    return 0;
}

/* The last line of defence: every host access to a rule state runs inside a protected call,
 * so this never fires; when it does, the log says which state took the process down. */
static int cb_panic(lua_State *L)
{
    const char *message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    epcs_log(EPCS_LOG_ERROR, "lua",
             "Lua state %p raised an error outside any protected call, "
             "aborting: %s",
             (void *)L, message);
    return 0;
}

struct epcs_lua *epcs_lua_create(const struct epcs_lua_limits *limits)
{
    struct epcs_lua *lua = calloc(1, sizeof(*lua));
    if (lua == NULL)
        return NULL;
    lua->limits = *limits;
    lua->L = lua_newstate(cb_alloc, lua);
    if (lua->L == NULL) {
        free(lua);
        return NULL;
    }
    lua_atpanic(lua->L, cb_panic);
    lua_pushcfunction(lua->L, open_sandbox);
    if (lua_pcall(lua->L, 0, 0, 0) != LUA_OK) {
        epcs_lua_destroy(lua);
        return NULL;
    }
    lua_sethook(lua->L, cb_hook, LUA_MASKCOUNT, HOOK_STEP);
    return lua;
}

lua_State *epcs_lua_state(struct epcs_lua *lua)
{
    return lua->L;
}

size_t epcs_lua_memory(struct epcs_lua *lua)
{
    return lua->used;
}

void epcs_lua_set_owner(struct epcs_lua *lua, void *owner)
{
    lua->owner = owner;
}

void *epcs_lua_owner(lua_State *L)
{
    return sandbox_of(L)->owner;
}

int epcs_lua_loading(lua_State *L)
{
    return sandbox_of(L)->loading;
}

int epcs_lua_rule_line(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.source != NULL && ar.source[0] == '@' &&
            ar.currentline > 0)
            return ar.currentline;
    }
    return 0;
}

int epcs_lua_plain(lua_State *L, int index)
{
    if (lua_type(L, index) != LUA_TTABLE || !lua_getmetatable(L, index))
        return lua_type(L, index) == LUA_TTABLE ? 0 : -1;
    lua_pop(L, 1);
    return -1;
}

static void fill_error(struct epcs_lua *lua, int status, struct epcs_rule_error *err)
{
    lua_State *L = lua->L;
    const char *message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "unknown error";
    char detail[384];
    if (lua->aborted == ABORT_MEMORY || status == LUA_ERRMEM)
        snprintf(detail, sizeof(detail), "memory limit of %zu bytes exceeded",
                 lua->limits.memory_bytes);
    else
        snprintf(detail, sizeof(detail), "%s", message);
    snprintf(err->file, sizeof(err->file), "%s", lua->located ? lua->file : "");
    err->line = lua->located ? lua->line : 0;
    size_t file_len = strlen(err->file);
    /* Lua prefixes most messages with "file:line: " already; add it where it did not. */
    int prefixed = strncmp(detail, err->file, file_len) == 0 && detail[file_len] == ':';
    int written = lua->located && !prefixed ? snprintf(err->message, sizeof(err->message),
                                                       "%s:%d: ", err->file, err->line)
                                            : 0;
    if (written < 0)
        written = 0;
    size_t used = (size_t)written < sizeof(err->message) ? (size_t)written : 0;
    strncpy(err->message + used, detail, sizeof(err->message) - used - 1);
    err->message[sizeof(err->message) - 1] = '\0';
}

static void begin_call(struct epcs_lua *lua)
{
    lua->budget_left = lua->limits.instructions;
    lua->aborted = NOT_ABORTED;
    lua->located = 0;
    lua->in_call = 1;
}

static void end_failed_call(struct epcs_lua *lua, int base)
{
    lua->in_call = 0;
    lua_settop(lua->L, base);
    /* A memory bomb leaves its garbage behind; give it back before the next request. */
    if (lua->aborted == ABORT_MEMORY)
        lua_gc(lua->L, LUA_GCCOLLECT);
}

int epcs_lua_call(struct epcs_lua *lua, int nargs, int nresults, struct epcs_rule_error *err)
{
    lua_State *L = lua->L;
    int func = lua_gettop(L) - nargs;
    int base = func - 1;
    lua_pushcfunction(L, cb_msghandler);
    lua_insert(L, func);
    begin_call(lua);
    int status = lua_pcall(L, nargs, nresults, func);
    if (status != LUA_OK) {
        fill_error(lua, status, err);
        end_failed_call(lua, base);
        return -1;
    }
    lua->in_call = 0;
    lua_remove(L, func);
    return 0;
}

int epcs_lua_run_chunk(struct epcs_lua *lua, const char *name, const char *source, size_t len,
                       int nargs, int nresults, struct epcs_rule_error *err)
{
    char chunkname[160];
    lua_State *L = lua->L;
    int base = lua_gettop(L) - nargs;
    int rule_file = name[0] != '=';
    /* '@' makes Lua report the bare file name in messages and tracebacks. */
    snprintf(chunkname, sizeof(chunkname), "%s%s", rule_file ? "@" : "", name);
    begin_call(lua);
    int status = luaL_loadbufferx(L, source, len, chunkname, "t");
    if (status != LUA_OK) {
        /* Syntax errors carry "file:line:" in the message; take the place from there. */
        const char *message = lua_tostring(L, -1);
        snprintf(err->file, sizeof(err->file), "%s", name);
        err->line = 0;
        if (message != NULL) {
            const char *colon = strchr(message, ':');
            if (colon != NULL)
                err->line = atoi(colon + 1);
        }
        snprintf(err->message, sizeof(err->message), "%s",
                 status == LUA_ERRMEM ? "memory limit exceeded while compiling"
                 : message != NULL    ? message
                                      : "cannot compile");
        end_failed_call(lua, base);
        return -1;
    }
    lua->in_call = 0;
    lua_insert(L, base + 1);
    lua->loading = rule_file;
    int rc = epcs_lua_call(lua, nargs, nresults, err);
    lua->loading = 0;
    if (rc == 0)
        return 0;
    /* "return epcs.area{...}" is a tail call: its errors have no frame in the file left. */
    if (err->file[0] == '\0' && rule_file)
        snprintf(err->file, sizeof(err->file), "%s", name);
    return -1;
}

static int cb_frozen_newindex(lua_State *L)
{
    return luaL_error(L, "rules may not assign global '%s'", lua_tostring(L, 2));
}

void epcs_lua_freeze_globals(struct epcs_lua *lua)
{
    lua_State *L = lua->L;
    lua_pushglobaltable(L);
    lua_newtable(L);
    lua_pushcfunction(L, cb_frozen_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "globals are read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

void epcs_lua_destroy(struct epcs_lua *lua)
{
    if (lua == NULL)
        return;
    if (lua->L != NULL)
        lua_close(lua->L);
    free(lua);
}
