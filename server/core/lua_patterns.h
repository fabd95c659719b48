#ifndef EPCS_LUA_PATTERNS_H
#define EPCS_LUA_PATTERNS_H

#include <lua.h>

/*
 * epcs's own string.find, string.match, string.gmatch and string.gsub: the syntax, semantics
 * and error messages of Lua 5.4's (reference manual, section 6.4.1), written for epcs so that
 * matching charges its work to the rule's budget. Lua's own matcher runs in C where the VM's
 * count hook does not reach: a backtracking pattern such as ".-.-.-b" on a few hundred
 * characters ran for seconds to minutes under any instruction budget.
 */

/**
 * How the pattern functions pay for their work. `charge(L, steps)` is called with the matching
 * steps done since the last call (every few hundred steps, and when a function returns); it
 * raises a Lua error when the budget is spent, and returns otherwise. A step is one attempt to
 * match one pattern item at one position, or a few bytes compared.
 */
struct epcs_pattern_budget {
    void (*charge)(lua_State *L, long steps);
};

/**
 * Sets find, match, gmatch and gsub of the table at `table` (the string library) to epcs's.
 * `budget` (not owned, must outlive the state) charges their work; NULL charges nothing.
 */
void epcs_patterns_open(lua_State *L, int table, const struct epcs_pattern_budget *budget);

#endif
