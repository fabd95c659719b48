#ifndef EPCS_LUA_ENGINE_H
#define EPCS_LUA_ENGINE_H

#include <lua.h>
#include <stddef.h>

/*
 * The Lua sandbox rules run in: Lua 5.4 with only base, string, table, math and utf8, no way to
 * load code or touch the host, a memory cap per state and an instruction budget per call. A
 * rule that errors, loops or allocates without bound ends its call with an error naming the
 * rule file and line; the state stays usable for the next call.
 */

struct epcs_lua_limits {
    /** Bytes one state may hold. */
    size_t memory_bytes;
    /**
     * VM instructions one call (a load or an evaluation) may execute. Work done in C on its
     * behalf is charged too: pattern matching by the step, the library functions whose work
     * grows with their arguments by the element or byte, and every ALLOC_BYTES_PER_INSTRUCTION
     * (256) bytes allocated as one instruction. A call also ends once its thread has used
     * EPCS_LUA_CPU_NS_PER_INSTRUCTION of CPU time per instruction of the budget.
     */
    long instructions;
};

/**
 * CPU time a call may use per instruction of its budget (250 ms for a million). A sanitized
 * build does epcs's part of the work (the hooks, the allocator, the matcher) several times
 * slower, so its calls get four times the time and end where an optimised build's do.
 */
#ifdef EPCS_SANITIZED
#define EPCS_LUA_CPU_NS_PER_INSTRUCTION 1000
#else
#define EPCS_LUA_CPU_NS_PER_INSTRUCTION 250
#endif

#define EPCS_LUA_DEFAULT_MEMORY (32u * 1024u * 1024u)
#define EPCS_LUA_DEFAULT_INSTRUCTIONS 1000000L

/** Where and why a rule failed. `file` is the rule file name ("" when unknown), `line` 0 then. */
struct epcs_rule_error {
    char file[128];
    int line;
    char message[512];
};

struct epcs_lua;

/**
 * Creates a sandboxed state. Returns NULL when memory runs out. The state holds a global
 * table `epcs` with the host's date functions; the rule API prelude is loaded by the caller.
 */
struct epcs_lua *epcs_lua_create(const struct epcs_lua_limits *limits);
/** The state, for pushing arguments and reading results. */
lua_State *epcs_lua_state(struct epcs_lua *lua);
/**
 * Compiles text (never binary) `source` as chunk `name` and runs it under the budget with the
 * `nargs` values on top of the stack as its arguments (`...`), leaving its first `nresults`
 * results in their place. A name starting with '=' is the host's own code (the rule API),
 * which runs in the base environment. Any other is a rule file: it is refused when a function
 * of it assigns to an upvalue, it runs in a global environment of its own (reading through to
 * the base environment), may not call setmetatable while it runs, and once it has run, its
 * environment and every table its results reach are frozen (read-only). Returns 0, or -1 with
 * `err` filled and the arguments popped.
 */
int epcs_lua_run_chunk(struct epcs_lua *lua, const char *name, const char *source, size_t len,
                       int nargs, int nresults, struct epcs_rule_error *err);
/**
 * Calls the function below `nargs` arguments on the stack under the budget and the memory
 * cap. On success leaves `nresults` results; on failure pops function and arguments and
 * returns -1 with `err` filled.
 */
int epcs_lua_call(struct epcs_lua *lua, int nargs, int nresults, struct epcs_rule_error *err);
/** Bytes the state holds now. */
size_t epcs_lua_memory(struct epcs_lua *lua);
/** Remembers `owner` (not owned) for the state's C functions: see epcs_lua_owner. */
void epcs_lua_set_owner(struct epcs_lua *lua, void *owner);
/** The owner set with epcs_lua_set_owner for the sandbox `L` belongs to, or NULL. */
void *epcs_lua_owner(lua_State *L);
/** True while a rule file's main chunk runs (epcs_lua_run_chunk). */
int epcs_lua_loading(lua_State *L);
/**
 * The line the innermost rule-file function on the call stack of `L` is at, seen from a C
 * function the rules called (its own frame is skipped); 0 when no rule file is on the stack.
 */
int epcs_lua_rule_line(lua_State *L);
/** True when the value at `index` is a frozen (read-only) table: made while a file loaded. */
int epcs_lua_frozen(lua_State *L, int index);
/**
 * Makes the value at `index` readable with raw access alone: a frozen table is replaced, in
 * place, by the table holding its entries. Returns 0 when the value is then a table without a
 * metatable, -1 otherwise (not a table, or a table whose metatable would make raw reads
 * disagree with what rules read).
 */
int epcs_lua_plain(lua_State *L, int index);
/**
 * Makes the base environment read-only: the global table, the libraries and `epcs`, and every
 * table reachable from the `nvalues` values on top of the stack (the host's own tables that
 * rules reach otherwise), which are popped. Call it once the rule API is in place and before
 * rule files load: each file reads the base through an environment of its own. Returns 0, or
 * -1 with `err` filled (memory).
 */
int epcs_lua_freeze_globals(struct epcs_lua *lua, int nvalues, struct epcs_rule_error *err);
/** Accepts NULL. */
void epcs_lua_destroy(struct epcs_lua *lua);

#endif
