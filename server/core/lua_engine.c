#include "lua_engine.h"

#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dates.h"
#include "log.h"
#include "lua_patterns.h"
#include "lua_purity.h"

/* The count hook fires every HOOK_STEP instructions: often enough to stop a loop within
 * microseconds, rarely enough to cost nothing measurable on a normal evaluation. */
#define HOOK_STEP 1000
/* Bytes a call allocates that cost one instruction of its budget: what Lua does in C on a
 * rule's behalf (concatenating, string.upper, building tables) mostly copies what it allocates,
 * and the count hook sees none of it. */
#define ALLOC_BYTES_PER_INSTRUCTION 256

enum abort_reason { NOT_ABORTED, ABORT_MEMORY, ABORT_BUDGET, ABORT_CPU };

struct epcs_lua {
    lua_State *L;
    struct epcs_lua_limits limits;
    size_t used;
    long budget_left;
    /* Bytes allocated this call that have not been charged yet (less than the rate above). */
    size_t alloc_uncharged;
    int in_call;
    enum abort_reason aborted;
    /* The CPU time backstop (see the watchdog below). `calls` is odd while a call runs, on
     * `thread` (its kernel id); `kicked` is set by the watchdog's signal, which makes the next
     * instruction call the hook; the watch began at the first kick, the thread's CPU time then
     * `watch_cpu_ns`. */
    atomic_ulong calls;
    atomic_long thread;
    volatile sig_atomic_t kicked;
    int watching;
    int64_t watch_cpu_ns;
    /* The watchdog's list of every state, and `calls` as it saw it last. */
    struct epcs_lua *next_watched;
    unsigned long calls_seen;
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

/* The CPU time a call may use: what its budget buys at EPCS_LUA_CPU_NS_PER_INSTRUCTION. */
static int64_t cpu_limit_ns(const struct epcs_lua *lua)
{
    return (int64_t)lua->limits.instructions * EPCS_LUA_CPU_NS_PER_INSTRUCTION;
}

/* Marks the call aborted for `reason` and remembers where, for the error. */
static void abort_call(struct epcs_lua *lua, lua_State *L, enum abort_reason reason)
{
    if (lua->aborted == NOT_ABORTED)
        lua->aborted = reason;
    if (!lua->located && L != NULL)
        locate(lua, L, 0);
}

/* Ends the running call, its budget spent (in instructions or in CPU time). Never returns. */
static void budget_spent(struct epcs_lua *lua, lua_State *L, enum abort_reason reason)
{
    abort_call(lua, L, reason);
    /* The message is made by fill_error; not luaL_error: inside a hook its location prefix
     * would name the caller's caller. */
    lua_pushliteral(L, "instruction budget exceeded");
    lua_error(L);
}

/* Counts the CPU time of a long call once the watchdog has seen it running, and ends it when
 * that time reaches what its budget buys. Read only on the watchdog's kicks, the thread's CPU
 * clock (a system call) costs a short call nothing. */
static void check_cpu(struct epcs_lua *lua, lua_State *L)
{
    int64_t now = epcs_clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (!lua->watching) {
        lua->watching = 1;
        lua->watch_cpu_ns = now;
    } else if (now - lua->watch_cpu_ns >= cpu_limit_ns(lua)) {
        budget_spent(lua, L, ABORT_CPU);
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
        if (lua->in_call)
            abort_call(lua, lua->L, ABORT_MEMORY);
        return NULL;
    }
    if (nsize > old && lua->in_call) {
        /* A failed allocation becomes a memory error, which fill_error reports as the budget's:
         * the only way to stop C code that allocates in a loop the hook cannot see. */
        lua->alloc_uncharged += nsize - old;
        lua->budget_left -= (long)(lua->alloc_uncharged / ALLOC_BYTES_PER_INSTRUCTION);
        lua->alloc_uncharged %= ALLOC_BYTES_PER_INSTRUCTION;
        if (lua->budget_left <= 0 || lua->aborted != NOT_ABORTED) {
            abort_call(lua, lua->L, ABORT_BUDGET);
            return NULL;
        }
    }
    void *grown = realloc(ptr, nsize);
    if (grown != NULL)
        lua->used = lua->used - old + nsize;
    return grown;
}

static void cb_hook(lua_State *L, lua_Debug *ar)
{
    struct epcs_lua *lua = sandbox_of(L);
    if (lua->kicked) {
        /* Called one instruction after the kick: the instructions the count had reached since
         * the last hook go uncharged, at most HOOK_STEP every WATCHDOG_PERIOD_NS. */
        lua->kicked = 0;
        lua_sethook(L, cb_hook, LUA_MASKCOUNT, HOOK_STEP);
        check_cpu(lua, L);
        return;
    }
    lua->budget_left -= HOOK_STEP;
    if (lua->budget_left <= 0)
        budget_spent(lua, L, ABORT_BUDGET);
}

/*
 * The backstop behind the instruction count. Some work of the VM itself grows with the size of
 * its operands while it counts as one instruction: comparing two long strings, copying a
 * million varargs, converting a long string to a number (milliseconds each, for every
 * arithmetic on it or library function given it as a number). So the count hook can come
 * seconds apart, and a call must also end once its thread has used the CPU time its budget
 * buys. A watchdog thread looks at every state each WATCHDOG_PERIOD_NS; a call it finds running
 * in two looks in a row is sent KICK_SIGNAL, whose handler (on the call's own thread) makes the
 * next instruction call the hook, which reads the thread's CPU clock. Short calls pay two
 * stores; no clock is read, no timer armed, no system call made.
 */
#define WATCHDOG_PERIOD_NS 10000000
/* No library epcsd links uses the real-time signals. */
#define KICK_SIGNAL (SIGRTMIN + 4)

static pthread_mutex_t watched_lock = PTHREAD_MUTEX_INITIALIZER;
static struct epcs_lua *watched;
static pthread_once_t watchdog_once = PTHREAD_ONCE_INIT;
/* The state whose call runs on this thread, NULL between calls: what the signal handler may
 * touch. */
static _Thread_local struct epcs_lua *volatile calling;
/* This thread's id, for tgkill: a thread that has exited meanwhile makes it fail with ESRCH,
 * and one of ours that took the id over finds no call of its own or a call to look at, where
 * pthread_kill on an exited thread would be undefined. */
static _Thread_local long thread_id;

static void cb_kick(int signo)
{
    (void)signo;
    struct epcs_lua *lua = calling;
    if (lua != NULL) {
        lua->kicked = 1;
        /* lua_sethook is made to be called from a signal handler: Lua's own interpreter stops a
         * script on SIGINT this way. */
        lua_sethook(lua->L, cb_hook, LUA_MASKCOUNT, 1);
    }
}

static void *run_watchdog(void *unused)
{
    (void)unused;
    const struct timespec period = {.tv_nsec = WATCHDOG_PERIOD_NS};
    for (;;) {
        nanosleep(&period, NULL);
        pthread_mutex_lock(&watched_lock);
        for (struct epcs_lua *lua = watched; lua != NULL; lua = lua->next_watched) {
            unsigned long calls = atomic_load(&lua->calls);
            if (calls % 2 == 1 && calls == lua->calls_seen)
                syscall(SYS_tgkill, (long)getpid(), atomic_load(&lua->thread), KICK_SIGNAL);
            lua->calls_seen = calls;
        }
        pthread_mutex_unlock(&watched_lock);
    }
    return NULL;
}

static void start_watchdog(void)
{
    struct sigaction kick = {.sa_handler = cb_kick, .sa_flags = SA_RESTART};
    sigemptyset(&kick.sa_mask);
    pthread_attr_t attr;
    pthread_t watchdog;
    if (sigaction(KICK_SIGNAL, &kick, NULL) != 0 || pthread_attr_init(&attr) != 0)
        goto failed;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Started from a worker, it must not inherit the mask that leaves the stop signals to the
     * main thread: it takes no signal at all. */
    sigset_t all, before;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &before);
    int rc = pthread_create(&watchdog, &attr, run_watchdog, NULL);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return;
failed:
    epcs_log(EPCS_LOG_ERROR, "lua",
             "cannot start the rules' CPU watchdog: rules are bounded by their instruction "
             "budget only");
}

static void watch(struct epcs_lua *lua)
{
    pthread_once(&watchdog_once, start_watchdog);
    pthread_mutex_lock(&watched_lock);
    lua->next_watched = watched;
    watched = lua;
    pthread_mutex_unlock(&watched_lock);
}

static void unwatch(struct epcs_lua *lua)
{
    pthread_mutex_lock(&watched_lock);
    struct epcs_lua **link = &watched;
    while (*link != NULL && *link != lua)
        link = &(*link)->next_watched;
    if (*link != NULL)
        *link = lua->next_watched;
    pthread_mutex_unlock(&watched_lock);
}

/* Work done in C on the rules' behalf (pattern matching, the library functions wrapped below)
 * is paid from the same budget as the VM's instructions, which the count hook cannot see while
 * C code runs. */
static void cb_charge(lua_State *L, long steps)
{
    struct epcs_lua *lua = sandbox_of(L);
    if (!lua->in_call)
        return;
    lua->budget_left -= steps;
    if (lua->budget_left <= 0)
        budget_spent(lua, L, ABORT_BUDGET);
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
 * worker beyond the reach of the instruction budget; without __mode, whose weak tables would
 * answer by when the collector ran; never on a frozen table. Not while a rule file loads
 * either: a table made then outlives the load, and a metatable would let reading it run the
 * rule's code whenever the host or the rule API reads it (a "strict" table raising on a
 * missing field). */
static int cb_setmetatable(lua_State *L)
{
    int meta_type = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, meta_type == LUA_TNIL || meta_type == LUA_TTABLE, 2, "nil or table");
    if (sandbox_of(L)->loading && called_by_rule_file(L))
        return luaL_error(L, "setmetatable works only while evaluating: a table made while a "
                             "rule file loads outlives the load and must stay plain");
    if (epcs_purity_frozen(L, 1))
        return luaL_error(L, "setmetatable: the table was made while the rule files loaded and "
                             "is read-only");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    static const char *const refused[] = {"__gc", "__mode"};
    for (size_t i = 0; meta_type == LUA_TTABLE && i < 2; i++) {
        lua_pushstring(L, refused[i]);
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "rules may not set %s metamethods", refused[i]);
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

/* ---- library functions whose work grows with their arguments ---------------------------- */

/*
 * The standard library does in C what a rule asks in one call: string.byte pushes a value per
 * byte, table.move copies as many slots as asked whether or not the table has them, table.sort
 * compares n log n times, utf8.len decodes the whole string. The count hook sees one
 * instruction for each. The functions below are wrapped: the wrapper charges the work from the
 * arguments first (by the element, or for byte scans by BYTES_PER_UNIT bytes), then runs the
 * library's own function, which checks the arguments and raises its usual errors. What the
 * library allocates is charged by the allocator.
 */
#define BYTES_PER_UNIT 16

/* Integer argument `arg`, or `fallback` when it is absent or no integer (the library function
 * then raises its own error). */
static lua_Integer integer_arg(lua_State *L, int arg, lua_Integer fallback)
{
    int ok = 0;
    lua_Integer value = lua_isnoneornil(L, arg) ? fallback : lua_tointegerx(L, arg, &ok);
    return lua_isnoneornil(L, arg) || ok ? value : fallback;
}

/* The length of string argument `arg`, 0 when it is none. */
static lua_Integer string_arg_len(lua_State *L, int arg)
{
    size_t len = 0;
    if (lua_type(L, arg) == LUA_TSTRING || lua_type(L, arg) == LUA_TNUMBER)
        lua_tolstring(L, arg, &len);
    return (lua_Integer)len;
}

/* #t as the table functions see it; the __len metamethod, when there is one, runs here (and is
 * counted like any rule code). */
static lua_Integer table_len(lua_State *L, int arg)
{
    if (lua_type(L, arg) != LUA_TTABLE && !luaL_getmetafield(L, arg, "__len"))
        return 0;
    if (lua_type(L, arg) != LUA_TTABLE)
        lua_pop(L, 1);
    return luaL_len(L, arg);
}

/* How many of positions i..j of a sequence of `len` there are, by string.byte's rules (i from
 * the start, or counted back from the end when negative; j likewise, clamped to the end). */
static lua_Integer span(lua_Integer i, lua_Integer j, lua_Integer len)
{
    if (i < 0)
        i = i < -len ? 1 : len + i + 1;
    else if (i == 0)
        i = 1;
    if (j > len)
        j = len;
    else if (j < 0)
        j = j < -len ? 0 : len + j + 1;
    return j >= i ? j - i + 1 : 0;
}

static lua_Integer cost_byte_span(lua_State *L)
{
    lua_Integer len = string_arg_len(L, 1), i = integer_arg(L, 2, 1);
    return span(i, integer_arg(L, 3, i), len);
}

static lua_Integer cost_scan(lua_State *L)
{
    return string_arg_len(L, 1) / BYTES_PER_UNIT;
}

static lua_Integer cost_format(lua_State *L)
{
    return string_arg_len(L, 1);
}

static lua_Integer cost_arguments(lua_State *L)
{
    return lua_gettop(L);
}

static lua_Integer cost_tonumber(lua_State *L)
{
    return lua_type(L, 1) == LUA_TSTRING ? string_arg_len(L, 1) / BYTES_PER_UNIT : 0;
}

/* Two distinct strings of the same length are compared byte by byte. */
static lua_Integer cost_rawequal(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING || lua_type(L, 2) != LUA_TSTRING)
        return 0;
    return lua_rawlen(L, 1) == lua_rawlen(L, 2) ? string_arg_len(L, 1) / BYTES_PER_UNIT : 0;
}

static lua_Integer cost_move(lua_State *L)
{
    lua_Integer from = integer_arg(L, 2, 1), to = integer_arg(L, 3, 0);
    return to >= from ? (lua_Integer)((lua_Unsigned)to - (lua_Unsigned)from) + 1 : 0;
}

static lua_Integer cost_concat(lua_State *L)
{
    lua_Integer i = integer_arg(L, 3, 1);
    lua_Integer j = lua_isnoneornil(L, 4) ? table_len(L, 1) : integer_arg(L, 4, i);
    return j >= i ? (lua_Integer)((lua_Unsigned)j - (lua_Unsigned)i) + 1 : 0;
}

/* table.unpack(t, i, j): j is worked out here and passed on, so __len runs once. */
static lua_Integer cost_unpack(lua_State *L)
{
    lua_Integer i = integer_arg(L, 2, 1);
    if (lua_isnoneornil(L, 3)) {
        lua_Integer len = table_len(L, 1);
        lua_settop(L, 2);
        lua_pushinteger(L, len);
    }
    lua_Integer j = integer_arg(L, 3, i);
    return j >= i ? (lua_Integer)((lua_Unsigned)j - (lua_Unsigned)i) + 1 : 0;
}

/* table.insert(t, pos, v) moves the elements from pos on up by one. */
static lua_Integer cost_insert(lua_State *L)
{
    if (lua_gettop(L) != 3)
        return 0;
    lua_Integer len = table_len(L, 1), pos = integer_arg(L, 2, len + 1);
    return len >= pos ? (lua_Integer)((lua_Unsigned)len - (lua_Unsigned)pos) + 1 : 0;
}

/* table.remove(t, pos) moves the elements after pos down by one. */
static lua_Integer cost_remove(lua_State *L)
{
    if (lua_isnoneornil(L, 2))
        return 0;
    lua_Integer len = table_len(L, 1), pos = integer_arg(L, 2, len);
    return len > pos ? (lua_Integer)((lua_Unsigned)len - (lua_Unsigned)pos) : 0;
}

struct charged_function {
    const char *library; /* NULL for the base library */
    const char *name;
    lua_Integer (*cost)(lua_State *L);
};

static const struct charged_function charged_functions[] = {
    {NULL, "rawequal", cost_rawequal},
    {NULL, "tonumber", cost_tonumber},
    {LUA_STRLIBNAME, "byte", cost_byte_span},
    {LUA_STRLIBNAME, "char", cost_arguments},
    {LUA_STRLIBNAME, "pack", cost_format},
    {LUA_STRLIBNAME, "packsize", cost_format},
    {LUA_STRLIBNAME, "unpack", cost_format},
    {LUA_TABLIBNAME, "concat", cost_concat},
    {LUA_TABLIBNAME, "insert", cost_insert},
    {LUA_TABLIBNAME, "move", cost_move},
    {LUA_TABLIBNAME, "pack", cost_arguments},
    {LUA_TABLIBNAME, "remove", cost_remove},
    {LUA_TABLIBNAME, "unpack", cost_unpack},
    {LUA_MATHLIBNAME, "max", cost_arguments},
    {LUA_MATHLIBNAME, "min", cost_arguments},
    {LUA_UTF8LIBNAME, "char", cost_arguments},
    {LUA_UTF8LIBNAME, "codepoint", cost_byte_span},
    {LUA_UTF8LIBNAME, "len", cost_scan},
    {LUA_UTF8LIBNAME, "offset", cost_scan},
};

static void charge(lua_State *L, lua_Integer units)
{
    cb_charge(L, units > LONG_MAX ? LONG_MAX : (long)units);
}

/* Upvalues: the library's function and the charged_function entry. */
static int cb_charged(lua_State *L)
{
    const struct charged_function *f = lua_touserdata(L, lua_upvalueindex(2));
    charge(L, f->cost(L));
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* string.rep: s:rep(n) with an empty s (and separator) loops n times making nothing, so
 * string.rep("", 2^50) ran for days; the answer is known at once. Any other repetition is
 * bounded by the memory cap and paid by what it allocates. */
static int cb_rep(lua_State *L)
{
    int ok = 0;
    lua_tointegerx(L, 2, &ok);
    int sep_ok = lua_isnoneornil(L, 3) || lua_isstring(L, 3);
    if (ok && lua_isstring(L, 1) && sep_ok && string_arg_len(L, 1) == 0 &&
        string_arg_len(L, 3) == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* The order table.sort asks for, one comparison charged at a time (two long strings cost by
 * their length); upvalue 1 is the rule's comparator, or nil for `<`. */
static int cb_sort_compare(lua_State *L)
{
    lua_Integer units = 1;
    if (lua_type(L, 1) == LUA_TSTRING && lua_type(L, 2) == LUA_TSTRING)
        units += (lua_Integer)(lua_rawlen(L, 1) / 256);
    charge(L, units);
    if (lua_isnil(L, lua_upvalueindex(1))) {
        lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* table.sort with every comparison charged: the library sorts with cb_sort_compare. */
static int cb_sort(lua_State *L)
{
    if (lua_isnoneornil(L, 2) || lua_type(L, 2) == LUA_TFUNCTION) {
        lua_settop(L, 2);
        lua_pushcclosure(L, cb_sort_compare, 1);
    }
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* Replaces library function `name` of the table at the top with `wrapper`, whose upvalue 1 is
 * the library's function (and upvalue 2 `extra`, when not NULL). */
static void wrap(lua_State *L, const char *name, lua_CFunction wrapper, const void *extra)
{
    lua_getfield(L, -1, name);
    if (extra != NULL)
        lua_pushlightuserdata(L, (void *)extra);
    lua_pushcclosure(L, wrapper, extra != NULL ? 2 : 1);
    lua_setfield(L, -2, name);
}

static void open_charged_functions(lua_State *L)
{
    size_t count = sizeof(charged_functions) / sizeof(charged_functions[0]);
    for (const struct charged_function *f = charged_functions; f < charged_functions + count; f++) {
        if (f->library != NULL)
            lua_getglobal(L, f->library);
        else
            lua_pushglobaltable(L);
        wrap(L, f->name, cb_charged, f);
        lua_pop(L, 1);
    }
    lua_getglobal(L, LUA_STRLIBNAME);
    wrap(L, "rep", cb_rep, NULL);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);
    wrap(L, "sort", cb_sort, NULL);
    lua_pop(L, 1);
}

static int open_sandbox(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {NULL, NULL},
    };
    /* Loading code, printing, the collector and error catching stay out: rules must neither
     * reach the host nor swallow the budget and memory errors that stop them. rawset would
     * write past a frozen table's refusal. */
    static const char *const removed[] = {"dofile", "loadfile", "load", "collectgarbage", "print",
                                          "pcall",  "xpcall",   "warn", "rawset",         NULL};
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
    /* A verdict that changes from one call to the next for the same question is no verdict. */
    lua_getglobal(L, LUA_MATHLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "random");
    lua_pushnil(L);
    lua_setfield(L, -2, "randomseed");
    lua_pop(L, 1);
    open_charged_functions(L);
    lua_pushglobaltable(L);
    epcs_purity_open(L, -1);
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
    watch(lua);
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

int epcs_lua_frozen(lua_State *L, int index)
{
    return epcs_purity_frozen(L, index);
}

int epcs_lua_plain(lua_State *L, int index)
{
    index = lua_absindex(L, index);
    if (lua_type(L, index) != LUA_TTABLE)
        return -1;
    if (epcs_purity_frozen(L, index)) {
        epcs_purity_push_entries(L, index);
        lua_replace(L, index);
    }
    if (!lua_getmetatable(L, index))
        return 0;
    lua_pop(L, 1);
    return -1;
}

static void fill_error(struct epcs_lua *lua, int status, struct epcs_rule_error *err)
{
    lua_State *L = lua->L;
    const char *message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "unknown error";
    char detail[384];
    if (lua->aborted == ABORT_BUDGET)
        snprintf(detail, sizeof(detail), "instruction budget of %ld exceeded (endless loop?)",
                 lua->limits.instructions);
    else if (lua->aborted == ABORT_CPU)
        snprintf(detail, sizeof(detail),
                 "instruction budget of %ld exceeded: its %lld ms of CPU time are spent "
                 "(endless loop?)",
                 lua->limits.instructions, (long long)(cpu_limit_ns(lua) / 1000000));
    else if (lua->aborted == ABORT_MEMORY || status == LUA_ERRMEM)
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
    lua->alloc_uncharged = 0;
    lua->aborted = NOT_ABORTED;
    lua->watching = 0;
    lua->located = 0;
    lua->in_call = 1;
    if (thread_id == 0)
        thread_id = syscall(SYS_gettid);
    atomic_store_explicit(&lua->thread, thread_id, memory_order_relaxed);
    calling = lua;
    atomic_fetch_add_explicit(&lua->calls, 1, memory_order_release);
}

static void end_call(struct epcs_lua *lua)
{
    lua->in_call = 0;
    atomic_fetch_add_explicit(&lua->calls, 1, memory_order_release);
    calling = NULL;
    atomic_signal_fence(memory_order_seq_cst);
    /* A kick that came as the call ended, or ended it, left the hook at every instruction. */
    if (lua->kicked) {
        lua->kicked = 0;
        lua_sethook(lua->L, cb_hook, LUA_MASKCOUNT, HOOK_STEP);
    }
}

static void end_failed_call(struct epcs_lua *lua, int base)
{
    end_call(lua);
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
    end_call(lua);
    lua_remove(L, func);
    return 0;
}

/* A rule file's own global environment: the base environment's entries (the libraries, the
 * base functions and `epcs`, all read-only), and _G naming the file's environment itself. */
static void push_file_environment(lua_State *L)
{
    lua_createtable(L, 0, 48);
    lua_pushglobaltable(L);
    epcs_purity_push_entries(L, -1);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -6);
    }
    lua_pop(L, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, LUA_GNAME);
}

/* Runs a rule file's compiled chunk (below its arguments) in an environment of its own, then
 * freezes what it made: the environment and everything its results reach. */
static int cb_run_rule_file(lua_State *L)
{
    struct epcs_lua *lua = sandbox_of(L);
    int nargs = lua_gettop(L) - 1;
    push_file_environment(L);
    lua_pushvalue(L, -1);
    lua_setupvalue(L, 1, 1);
    lua_insert(L, 1);
    lua->loading = 1;
    lua_call(L, nargs, LUA_MULTRET);
    lua->loading = 0;
    if (epcs_purity_freeze_environment(L, 1) != 0)
        return lua_error(L);
    for (int i = 2; i <= lua_gettop(L); i++) {
        if (epcs_purity_freeze_reachable(L, i) != 0)
            return lua_error(L);
    }
    lua_remove(L, 1);
    return lua_gettop(L);
}

/* Refuses the compiled chunk on top when a function of it assigns to an upvalue. */
static int scan_chunk(struct epcs_lua *lua, const char *name, struct epcs_rule_error *err)
{
    char why[384];
    int line = 0;
    if (epcs_purity_scan(lua->L, &line, why, sizeof(why)) == 0)
        return 0;
    snprintf(err->file, sizeof(err->file), "%s", name);
    err->line = line;
    if (line > 0)
        snprintf(err->message, sizeof(err->message), "%s:%d: %s", name, line, why);
    else
        snprintf(err->message, sizeof(err->message), "%s: %s", name, why);
    return -1;
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
    end_call(lua);
    if (rule_file && scan_chunk(lua, name, err) != 0) {
        lua_settop(L, base);
        return -1;
    }
    lua_insert(L, base + 1);
    if (rule_file) {
        lua_pushcfunction(L, cb_run_rule_file);
        lua_insert(L, base + 1);
        nargs++;
    }
    int rc = epcs_lua_call(lua, nargs, nresults, err);
    lua->loading = 0;
    if (rc == 0)
        return 0;
    /* "return epcs.area{...}" is a tail call: its errors have no frame in the file left. */
    if (err->file[0] == '\0' && rule_file)
        snprintf(err->file, sizeof(err->file), "%s", name);
    return -1;
}

/* Freezes the base environment, every table in it and the values above the light userdata
 * argument (the number of them); the string metatable reads the frozen library directly. */
static int cb_freeze_globals(lua_State *L)
{
    int extra = (int)(intptr_t)lua_touserdata(L, 1);
    for (int i = 2; i <= 1 + extra; i++) {
        if (epcs_purity_freeze_reachable(L, i) != 0)
            return lua_error(L);
    }
    lua_pushglobaltable(L);
    if (epcs_purity_freeze_environment(L, -1) != 0)
        return lua_error(L);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_getglobal(L, LUA_STRLIBNAME);
    epcs_purity_push_entries(L, -1);
    lua_setfield(L, -3, "__index");
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    return 0;
}

int epcs_lua_freeze_globals(struct epcs_lua *lua, int nvalues, struct epcs_rule_error *err)
{
    lua_State *L = lua->L;
    lua_pushcfunction(L, cb_freeze_globals);
    lua_pushlightuserdata(L, (void *)(intptr_t)nvalues);
    lua_rotate(L, -2 - nvalues, 2);
    return epcs_lua_call(lua, nvalues + 1, 0, err);
}

void epcs_lua_destroy(struct epcs_lua *lua)
{
    if (lua == NULL)
        return;
    unwatch(lua);
    if (lua->L != NULL)
        lua_close(lua->L);
    free(lua);
}
