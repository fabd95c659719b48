/* Read-only tables and the refusal of upvalue assignments: see lua_purity.h. */
#include "lua_purity.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if LUA_VERSION_NUM != 504
#error "the bytecode scan reads Lua 5.4's binary chunks"
#endif

/* A frozen table's metatable holds, under this key, the table with its entries. */
static const char frozen_key = 'F';

/* ---- frozen tables ----------------------------------------------------------------------- */

int epcs_purity_frozen(lua_State *L, int index)
{
    if (lua_type(L, index) != LUA_TTABLE || !lua_getmetatable(L, index))
        return 0;
    int frozen = lua_rawgetp(L, -1, &frozen_key) == LUA_TTABLE;
    lua_pop(L, 2);
    return frozen;
}

void epcs_purity_push_entries(lua_State *L, int index)
{
    index = lua_absindex(L, index);
    if (lua_type(L, index) == LUA_TTABLE && lua_getmetatable(L, index)) {
        if (lua_rawgetp(L, -1, &frozen_key) == LUA_TTABLE) {
            lua_remove(L, -2);
            return;
        }
        lua_pop(L, 2);
    }
    lua_pushvalue(L, index);
}

/* __newindex of a frozen table (upvalue 1: whether it is an environment). */
static int cb_refuse_write(lua_State *L)
{
    const char *key = luaL_tolstring(L, 2, NULL);
    if (lua_toboolean(L, lua_upvalueindex(1)))
        return luaL_error(L, "rules may not assign global '%s'", key);
    return luaL_error(L,
                      "rules may not set '%s' in a table made while the rule files loaded: such "
                      "tables are shared by every check and read-only",
                      key);
}

static int cb_frozen_len(lua_State *L)
{
    epcs_purity_push_entries(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

/* next, reading a frozen table's entries. */
static int cb_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    epcs_purity_push_entries(L, 1);
    lua_replace(L, 1);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int cb_frozen_pairs(lua_State *L)
{
    lua_pushcfunction(L, cb_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

void epcs_purity_freeze(lua_State *L, int index, int globals)
{
    index = lua_absindex(L, index);
    if (epcs_purity_frozen(L, index))
        return;
    luaL_checkstack(L, 8, "freezing a table");
    lua_createtable(L, (int)lua_rawlen(L, index), 4);
    int entries = lua_gettop(L);
    if (lua_getmetatable(L, index))
        lua_setmetatable(L, entries);
    /* Move every entry; clearing fields already visited is allowed while traversing. */
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, entries);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, index);
    }
    lua_createtable(L, 0, 6);
    lua_pushvalue(L, entries);
    lua_rawsetp(L, -2, &frozen_key);
    lua_pushvalue(L, entries);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, globals);
    lua_pushcclosure(L, cb_refuse_write, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, cb_frozen_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, cb_frozen_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, index);
    lua_settop(L, entries - 1);
}

/* ---- the base functions that see through frozen tables ---------------------------------- */

static int cb_rawget(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    epcs_purity_push_entries(L, 1);
    lua_replace(L, 1);
    lua_settop(L, 2);
    lua_rawget(L, 1);
    return 1;
}

static int cb_rawlen(lua_State *L)
{
    int type = lua_type(L, 1);
    luaL_argexpected(L, type == LUA_TTABLE || type == LUA_TSTRING, 1, "table or string");
    epcs_purity_push_entries(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

/* getmetatable as for the table before it was frozen. */
static int cb_getmetatable(lua_State *L)
{
    luaL_checkany(L, 1);
    epcs_purity_push_entries(L, 1);
    lua_replace(L, 1);
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    luaL_getmetafield(L, 1, "__metatable");
    return 1;
}

void epcs_purity_open(lua_State *L, int index)
{
    static const luaL_Reg functions[] = {
        {"next", cb_next},     {"rawget", cb_rawget},
        {"rawlen", cb_rawlen}, {"getmetatable", cb_getmetatable},
        {NULL, NULL},
    };
    index = lua_absindex(L, index);
    for (const luaL_Reg *f = functions; f->name != NULL; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, index, f->name);
    }
}

/* ---- freezing what a rule file made ------------------------------------------------------ */

/* True for functions defined in a rule file, whose upvalues hold the file's state. */
static int rule_function(lua_State *L, int index)
{
    lua_Debug ar;
    lua_pushvalue(L, index);
    return lua_getinfo(L, ">S", &ar) && ar.source != NULL && ar.source[0] == '@';
}

/* Appends the value at `index` to the work list when freezing may have to look into it. */
static void enqueue(lua_State *L, int index, int work, lua_Integer *pending)
{
    int type = lua_type(L, index);
    if (type != LUA_TTABLE && type != LUA_TFUNCTION)
        return;
    lua_pushvalue(L, index);
    lua_rawseti(L, work, ++*pending);
}

/* Queues what table `item` holds, after proving its metatable (if any) out of rules' reach. */
static int enqueue_table(lua_State *L, int item, int work, lua_Integer *pending)
{
    if (lua_getmetatable(L, item)) {
        int protected_meta = lua_getfield(L, -1, "__metatable") != LUA_TNIL;
        lua_pop(L, 2);
        if (!protected_meta) {
            lua_pushliteral(L, "a table made while the file loaded has a metatable rules could "
                               "change");
            return -1;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, item) != 0) {
        enqueue(L, -2, work, pending);
        enqueue(L, -1, work, pending);
        lua_pop(L, 1);
    }
    return 0;
}

static void enqueue_upvalues(lua_State *L, int item, int work, lua_Integer *pending)
{
    for (int n = 1; lua_getupvalue(L, item, n) != NULL; n++) {
        enqueue(L, -1, work, pending);
        lua_pop(L, 1);
    }
}

int epcs_purity_freeze_reachable(lua_State *L, int index)
{
    index = lua_absindex(L, index);
    luaL_checkstack(L, 12, "freezing a rule file's tables");
    lua_newtable(L);
    int work = lua_gettop(L);
    lua_newtable(L);
    int seen = work + 1;
    lua_Integer pending = 0;
    enqueue(L, index, work, &pending);
    while (pending > 0) {
        lua_rawgeti(L, work, pending);
        lua_pushnil(L);
        lua_rawseti(L, work, pending--);
        int item = lua_gettop(L);
        lua_pushvalue(L, item);
        int visited = lua_rawget(L, seen) != LUA_TNIL;
        lua_pop(L, 1);
        if (!visited) {
            lua_pushvalue(L, item);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
            if (lua_type(L, item) == LUA_TTABLE && !epcs_purity_frozen(L, item)) {
                if (enqueue_table(L, item, work, &pending) != 0)
                    return -1;
                epcs_purity_freeze(L, item, 0);
            } else if (lua_type(L, item) == LUA_TFUNCTION && rule_function(L, item)) {
                enqueue_upvalues(L, item, work, &pending);
            }
        }
        lua_settop(L, item - 1);
    }
    lua_settop(L, work - 1);
    return 0;
}

int epcs_purity_freeze_environment(lua_State *L, int index)
{
    index = lua_absindex(L, index);
    epcs_purity_freeze(L, index, 1);
    epcs_purity_push_entries(L, index);
    int entries = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, entries) != 0) {
        if (epcs_purity_freeze_reachable(L, -2) != 0 || epcs_purity_freeze_reachable(L, -1) != 0)
            return -1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* ---- the bytecode scan ------------------------------------------------------------------- */

/*
 * Lua 5.4's binary chunk (what lua_dump writes): a header, then each function as its source,
 * line range, parameter counts, code, constants, upvalue descriptions, nested functions and
 * debug information (line deltas, absolute lines, local names, upvalue names). Sizes are
 * written most significant 7 bits first, the last byte marked with 0x80.
 */
#define OP_SETUPVAL 10
#define ABSOLUTE_LINE (-128)
#define MAX_NESTING 250

struct reader {
    const unsigned char *at, *end;
    int failed;
};

static size_t read_size(struct reader *r)
{
    size_t value = 0;
    unsigned char byte = 0x80;
    do {
        if (r->at >= r->end || value > SIZE_MAX >> 7) {
            r->failed = 1;
            return 0;
        }
        byte = *r->at++;
        value = (value << 7) | (byte & 0x7f);
    } while (!(byte & 0x80));
    return value;
}

static const unsigned char *skip(struct reader *r, size_t bytes)
{
    const unsigned char *start = r->at;
    if (r->failed || (size_t)(r->end - r->at) < bytes) {
        r->failed = 1;
        return NULL;
    }
    r->at += bytes;
    return start;
}

/* A string: its bytes (NULL for none), their count in *len. */
static const unsigned char *read_string(struct reader *r, size_t *len)
{
    size_t size = read_size(r);
    *len = size > 0 ? size - 1 : 0;
    return size > 0 ? skip(r, size - 1) : NULL;
}

static void skip_constants(struct reader *r)
{
    size_t count = read_size(r), len;
    for (size_t i = 0; i < count && !r->failed; i++) {
        const unsigned char *tag = skip(r, 1);
        if (tag == NULL)
            return;
        switch (*tag) {
        case 0x00: /* nil */
        case 0x01: /* false */
        case 0x11: /* true */
            break;
        case 0x03: /* integer */
        case 0x13: /* float */
            skip(r, 8);
            break;
        case 0x04: /* short string */
        case 0x14: /* long string */
            read_string(r, &len);
            break;
        default:
            r->failed = 1;
        }
    }
}

/* What the scan of one function needs from its dump. */
struct function_dump {
    size_t linedefined;
    const unsigned char *code, *lineinfo, *abslineinfo, *upvalue_names;
    size_t code_count, lineinfo_count, upvalue_count;
};

/* The source line of instruction `pc`: deltas from the first line, reset by absolute ones. */
static int line_of(const struct function_dump *f, size_t pc, const unsigned char *end)
{
    struct reader absolute = {.at = f->abslineinfo, .end = end};
    long line = (long)f->linedefined;
    for (size_t i = 0; i <= pc && i < f->lineinfo_count; i++) {
        signed char delta = (signed char)f->lineinfo[i];
        if (delta == ABSOLUTE_LINE) {
            read_size(&absolute);
            line = (long)read_size(&absolute);
        } else {
            line += delta;
        }
    }
    return absolute.failed ? 0 : (int)line;
}

/* Name of upvalue `n` from the upvalue names at the end of the function's dump. */
static void upvalue_name(const struct function_dump *f, size_t n, const unsigned char *end,
                         char *out, size_t size)
{
    struct reader names = {.at = f->upvalue_names, .end = end};
    size_t len = 0;
    const unsigned char *name = NULL;
    for (size_t i = 0; i <= n && i < f->upvalue_count && !names.failed; i++)
        name = read_string(&names, &len);
    if (name == NULL || names.failed)
        snprintf(out, size, "?");
    else
        snprintf(out, size, "%.*s", (int)len, (const char *)name);
}

static int scan_function(struct reader *r, int depth, int *line, char *why, size_t why_size);

/* The nested functions and the debug information after the code and constants. */
static int read_rest(struct reader *r, struct function_dump *f, int depth, int *line, char *why,
                     size_t why_size)
{
    size_t len, count = read_size(r);
    skip(r, count * 3); /* upvalue descriptions: in stack, index, kind */
    count = read_size(r);
    for (size_t i = 0; i < count && !r->failed; i++) {
        if (scan_function(r, depth + 1, line, why, why_size) != 0)
            return -1;
    }
    f->lineinfo_count = read_size(r);
    f->lineinfo = skip(r, f->lineinfo_count);
    count = read_size(r);
    f->abslineinfo = r->at;
    for (size_t i = 0; i < count * 2 && !r->failed; i++)
        read_size(r);
    count = read_size(r);
    for (size_t i = 0; i < count && !r->failed; i++) {
        read_string(r, &len);
        read_size(r);
        read_size(r);
    }
    f->upvalue_count = read_size(r);
    f->upvalue_names = r->at;
    for (size_t i = 0; i < f->upvalue_count && !r->failed; i++)
        read_string(r, &len);
    return 0;
}

static int scan_function(struct reader *r, int depth, int *line, char *why, size_t why_size)
{
    struct function_dump f = {0};
    size_t len;
    if (depth > MAX_NESTING) {
        r->failed = 1;
        return 0;
    }
    read_string(r, &len); /* source */
    f.linedefined = read_size(r);
    read_size(r); /* last line */
    skip(r, 3);   /* parameters, vararg flag, stack size */
    f.code_count = read_size(r);
    f.code = skip(r, f.code_count * 4);
    skip_constants(r);
    if (read_rest(r, &f, depth, line, why, why_size) != 0)
        return -1;
    for (size_t pc = 0; pc < f.code_count && !r->failed; pc++) {
        uint32_t instruction;
        memcpy(&instruction, f.code + 4 * pc, 4);
        if ((instruction & 0x7f) != OP_SETUPVAL)
            continue;
        char name[64];
        upvalue_name(&f, (instruction >> 16) & 0xff, r->end, name, sizeof(name));
        *line = line_of(&f, pc, r->end);
        snprintf(why, why_size,
                 "assigns to '%s', a local outside the function: it would keep state from one "
                 "check to the next (make it a local of the function that changes it)",
                 name);
        return -1;
    }
    return 0;
}

struct dump_buffer {
    unsigned char *bytes;
    size_t len, cap;
    int failed;
};

static int cb_write(lua_State *L, const void *p, size_t size, void *ud)
{
    struct dump_buffer *out = ud;
    if (out->len + size > out->cap) {
        size_t cap = out->cap ? out->cap : 4096;
        while (cap < out->len + size)
            cap *= 2;
        unsigned char *grown = realloc(out->bytes, cap);
        if (grown == NULL)
            return out->failed = 1;
        out->bytes = grown;
        out->cap = cap;
    }
    memcpy(out->bytes + out->len, p, size);
    out->len += size;
    return 0;
}

/* The header of a binary chunk of this Lua: signature, version 5.4, format 0, the check bytes,
 * and 4-byte instructions with 8-byte integers and floats (their check values follow). */
static const unsigned char chunk_header[] = {0x1b, 'L',  'u',  'a',  0x54, 0x00, 0x19, 0x93,
                                             '\r', '\n', 0x1a, '\n', 4,    8,    8};
#define CHECK_VALUES_SIZE 16

int epcs_purity_scan(lua_State *L, int *line, char *why, size_t why_size)
{
    struct dump_buffer dump = {0};
    *line = 0;
    snprintf(why, why_size, "cannot inspect the compiled file");
    if (lua_dump(L, cb_write, &dump, 0) != 0 || dump.failed ||
        dump.len < sizeof(chunk_header) + CHECK_VALUES_SIZE + 1 ||
        memcmp(dump.bytes, chunk_header, sizeof(chunk_header)) != 0) {
        free(dump.bytes);
        return -1;
    }
    struct reader r = {.at = dump.bytes + sizeof(chunk_header) + CHECK_VALUES_SIZE + 1,
                       .end = dump.bytes + dump.len};
    int rc = scan_function(&r, 0, line, why, why_size);
    if (rc == 0 && r.failed) {
        *line = 0;
        snprintf(why, why_size, "cannot inspect the compiled file");
        rc = -1;
    }
    free(dump.bytes);
    return rc;
}
