#ifndef EPCS_LUA_PURITY_H
#define EPCS_LUA_PURITY_H

#include <lua.h>
#include <stddef.h>

/*
 * What keeps rules pure for the sandbox (lua_engine.c): read-only ("frozen") tables, and the
 * refusal of functions that assign to upvalues. A verdict must depend on the query alone: the
 * verdict cache and decision replay rely on it. So nothing an evaluation can reach may change
 * for the next one: the libraries, the rule API, each file's globals and every table made while
 * a file loaded are frozen, and no function may keep state in a local of an enclosing function.
 *
 * A frozen table keeps its identity but holds nothing itself: its entries move to a hidden
 * table its metatable reads through (__index, __len, __pairs), and __newindex refuses every
 * assignment. The sandbox's next, rawget, rawlen and getmetatable read through it too, so rules
 * see the table as it was. Functions here that allocate raise Lua errors: call them inside a
 * protected call.
 */

/**
 * Makes the table at `index` read-only in place. A table already frozen stays as it is.
 * `globals` chooses the refusal: "rules may not assign global 'x'" instead of naming a table.
 */
void epcs_purity_freeze(lua_State *L, int index, int globals);

/** True when the value at `index` is a frozen table. */
int epcs_purity_frozen(lua_State *L, int index);

/**
 * Pushes the table holding the entries of the table at `index`: the hidden one of a frozen
 * table, the table itself otherwise.
 */
void epcs_purity_push_entries(lua_State *L, int index);

/**
 * Freezes every table reachable from the value at `index` that is not frozen yet: through
 * table keys and values, and the upvalues of rule-file functions (chunk names "@file"); the
 * rule API's and C functions are not looked into. Metatables are not frozen (they are read raw
 * by Lua), so every table reached must have none, or one with a __metatable field, which
 * getmetatable returns instead and which setmetatable refuses to replace. Returns 0, or -1 with
 * an error message pushed.
 */
int epcs_purity_freeze_reachable(lua_State *L, int index);

/**
 * Freezes the environment table at `index` (assignments to it are refused as assignments to
 * globals) and everything reachable from its entries. Returns 0, or -1 with a message pushed.
 */
int epcs_purity_freeze_environment(lua_State *L, int index);

/**
 * Sets next, rawget, rawlen and getmetatable of the table at `index` (the base environment) to
 * versions that read frozen tables through, so rules see a frozen table as it was.
 */
void epcs_purity_open(lua_State *L, int index);

/**
 * Refuses a compiled chunk (the Lua function at the top of the stack, left there) in which any
 * function assigns to an upvalue: such a local outlives the call that changes it, so the next
 * evaluation would see what the last one left. Returns 0, or -1 with `line` and `why` filled
 * (`why` names the variable); -1 with line 0 when the chunk cannot be inspected.
 */
int epcs_purity_scan(lua_State *L, int *line, char *why, size_t why_size);

#endif
