#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lua_engine.h"
#include "testing.h"

static const struct epcs_lua_limits limits = {.memory_bytes = 4u << 20, .instructions = 200000};

/* Runs `source` as rule file "rule.lua"; returns 0 or -1 with err filled. Leaves no results. */
static int run(struct epcs_lua *lua, const char *source, struct epcs_rule_error *err)
{
    memset(err, 0, sizeof(*err));
    return epcs_lua_run_chunk(lua, "rule.lua", source, strlen(source), 0, 0, err);
}

/* Evaluates `expr` and returns its type name, e.g. "nil". */
static const char *type_of(struct epcs_lua *lua, const char *expr)
{
    static char result[sizeof(((struct epcs_rule_error *)0)->message)];
    char source[256];
    struct epcs_rule_error err;
    snprintf(source, sizeof(source), "return type(%s)", expr);
    if (epcs_lua_run_chunk(lua, "probe.lua", source, strlen(source), 0, 1, &err) != 0)
        return strcpy(result, err.message);
    snprintf(result, sizeof(result), "%s", lua_tostring(epcs_lua_state(lua), -1));
    lua_pop(epcs_lua_state(lua), 1);
    return result;
}

static void test_only_safe_libraries(struct epcs_lua *lua)
{
    static const char *const absent[] = {
        "io",     "os",       "package",   "debug",          "require",
        "dofile", "loadfile", "load",      "collectgarbage", "print",
        "pcall",  "xpcall",   "coroutine", "string.dump"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
        const char *type = type_of(lua, absent[i]);
        if (strcmp(type, "nil") != 0)
            fprintf(stderr, "%s is reachable\n", absent[i]);
        EXPECT_STR(type, "nil");
    }
    EXPECT_STR(type_of(lua, "string.format"), "function");
    EXPECT_STR(type_of(lua, "table.concat"), "function");
    EXPECT_STR(type_of(lua, "math.floor"), "function");
    EXPECT_STR(type_of(lua, "utf8.char"), "function");
    EXPECT_STR(type_of(lua, "epcs.date"), "function");
}

struct chunk {
    char bytes[4096];
    size_t len;
};

static int write_chunk(lua_State *L, const void *p, size_t sz, void *ud)
{
    struct chunk *chunk = ud;
    if (sz > sizeof(chunk->bytes) - chunk->len)
        return 1;
    memcpy(chunk->bytes + chunk->len, p, sz);
    chunk->len += sz;
    return 0;
}

static void test_binary_chunks_refused(struct epcs_lua *lua)
{
    /* Compile a function in an ordinary state and offer its bytecode to the sandbox. */
    lua_State *plain = luaL_newstate();
    static struct chunk chunk;
    EXPECT_INT(luaL_loadstring(plain, "return 1"), LUA_OK);
    EXPECT_INT(lua_dump(plain, write_chunk, &chunk, 1), 0);
    EXPECT(chunk.len > 4 && memcmp(chunk.bytes, LUA_SIGNATURE, 4) == 0);
    struct epcs_rule_error err;
    EXPECT_INT(epcs_lua_run_chunk(lua, "rule.luac", chunk.bytes, chunk.len, 0, 0, &err), -1);
    EXPECT_CONTAINS(err.message, "attempt to load a binary chunk");
    lua_close(plain);
}

static void test_infinite_loop_stopped(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(run(lua, "local n = 0\nwhile true do\n  n = n + 1\nend\n", &err), -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT(err.line >= 2 && err.line <= 4);
    EXPECT_CONTAINS(err.message, "rule.lua:");
    EXPECT_CONTAINS(err.message, "instruction budget of 200000 exceeded");
}

static void test_memory_bomb_stopped(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    size_t before = epcs_lua_memory(lua);
    /* The string is made once: what is tried is memory, not string.rep's CPU time. */
    EXPECT_INT(
        run(lua,
            "local t, s = {}, string.rep('x', 100000)\nfor i = 1, 1e9 do\n  t[i] = s .. i\nend\n",
            &err),
        -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT_INT(err.line, 3);
    EXPECT_CONTAINS(err.message, "memory limit of 4194304 bytes exceeded");
    /* The garbage is collected after the failure, not kept until the next request. */
    EXPECT(epcs_lua_memory(lua) < before + 64 * 1024);

    EXPECT_INT(run(lua, "local s = string.rep('x', 64 * 1024 * 1024)\n", &err), -1);
    EXPECT_CONTAINS(err.message, "memory limit");
    EXPECT_INT(err.line, 1);
}

static void test_errors_name_file_and_line(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(run(lua, "local x\n\nlocal y = x.field\n", &err), -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT_INT(err.line, 3);
    EXPECT_CONTAINS(err.message, "rule.lua:3: attempt to index a nil value");

    EXPECT_INT(run(lua, "error('custom failure')\n", &err), -1);
    EXPECT_STR(err.message, "rule.lua:1: custom failure");

    /* Raised inside a host function: the location is the rule's calling line. */
    EXPECT_INT(run(lua, "\nlocal d = epcs.date('2024-02-30')\n", &err), -1);
    EXPECT_INT(err.line, 2);
    EXPECT_CONTAINS(err.message, "'2024-02-30' is not a date YYYY-MM-DD");

    EXPECT_INT(run(lua, "error({})\n", &err), -1);
    EXPECT_CONTAINS(err.message, "rule raised a table instead of an error message");

    EXPECT_INT(run(lua, "local x = = 1\n", &err), -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT_INT(err.line, 1);
    EXPECT_CONTAINS(err.message, "unexpected symbol");
}

/* Runs `source`, which returns a function, then calls that function: what a rule file's
 * functions do while evaluating, after the file has loaded. */
static int call(struct epcs_lua *lua, const char *source, struct epcs_rule_error *err)
{
    memset(err, 0, sizeof(*err));
    if (epcs_lua_run_chunk(lua, "rule.lua", source, strlen(source), 0, 1, err) != 0)
        return -1;
    return epcs_lua_call(lua, 0, 0, err);
}

static void test_no_finalizers(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(call(lua,
                    "return function()\n"
                    "  setmetatable({}, {__gc = function() while true do end end})\n"
                    "end\n",
                    &err),
               -1);
    EXPECT_STR(err.message, "rule.lua:2: rules may not set __gc metamethods");
    EXPECT_INT(call(lua,
                    "return function()\n"
                    "  local t = setmetatable({}, {__index = function() return 7 end})\n"
                    "  assert(t.anything == 7)\n"
                    "end\n",
                    &err),
               0);
}

/* A table made while a file loads outlives the load: a metatable on it would run the rule's
 * code whenever the host or the rule API read it, long after, so setmetatable waits until the
 * rules evaluate. */
static void test_no_metatables_while_loading(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(run(lua,
                   "local strict = {__index = function(t, k) error('no field ' .. k) end}\n"
                   "return setmetatable({}, strict)\n",
                   &err),
               -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT_INT(err.line, 2);
    EXPECT_STR(err.message, "rule.lua:2: setmetatable works only while evaluating: a table made "
                            "while a rule file loads outlives the load and must stay plain");
}

static double cpu_seconds(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

/* Lua's own matcher runs in C, out of the count hook's reach: this find took half a minute
 * under any budget, this gsub minutes. epcs's matcher pays from the same budget. */
static void test_patterns_pay_from_the_budget(struct epcs_lua *lua)
{
    static const struct {
        const char *source;
        int line;
    } bombs[] = {
        {"return function()\n  return string.find(('a'):rep(600), '.-.-.-b')\nend\n", 2},
        {"return function()\n  local s = ('a'):rep(4000)\n  return s:gsub('.-.-b', 'x')\nend\n", 3},
        {"return function()\n  for w in ('a'):rep(600):gmatch('.-.-.-b') do end\nend\n", 2},
        {"return function()\n  return ('ab'):rep(3000):match('(.*)%1%1%1x')\nend\n", 2},
    };
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        struct epcs_rule_error err;
        double started = cpu_seconds();
        EXPECT_INT(call(lua, bombs[i].source, &err), -1);
        double spent = cpu_seconds() - started;
        EXPECT_STR(err.file, "rule.lua");
        EXPECT_INT(err.line, bombs[i].line);
        EXPECT_CONTAINS(err.message, "instruction budget of 200000 exceeded");
        /* CPU time with a wide margin: the budget ends these within milliseconds. */
        EXPECT(spent < 1.0);
    }
    struct epcs_rule_error err;
    EXPECT_INT(call(lua,
                    "return function()\n"
                    "  assert(('key = value'):match('^(%w+)%s*=%s*(%w+)$') == 'key')\n"
                    "  assert(('a,b,,c'):gsub(',', ';') == 'a;b;;c')\n"
                    "end\n",
                    &err),
               0);
}

/* Library functions whose work grows with their arguments while the count hook sees one
 * instruction: each of these loops ran for seconds to days. Now each ends its call as a spent
 * budget, at the loop's line, within a fraction of a second of CPU. */
static void test_library_work_is_charged(struct epcs_lua *lua)
{
    static const char *const bombs[] = {
        /* table.move copies as many slots as asked, present or not */
        "  local t = {}\n  table.move(t, 1, 2^40, 2)",
        "  local t = {}\n  table.move(t, 1, 2^40, 1, {})",
        /* n log n comparisons in one call */
        "  local t = table.pack(('x'):rep(60000):byte(1, -1))\n  table.sort(t)",
        /* a value pushed per byte or element, per call */
        "  local s = ('x'):rep(50000)\n  for i = 1, 1e5 do local _ = s:byte(1, -1) end",
        "  local t = table.pack(('x'):rep(50000):byte(1, -1))\n"
        "  for i = 1, 1e5 do local _ = table.unpack(t) end",
        "  local t = setmetatable({}, {__len = function() return 900000 end})\n"
        "  for i = 1, 1e5 do local _ = table.unpack(t) end",
        "  local s = ('x'):rep(50000)\n  for i = 1, 1e5 do local _ = utf8.codepoint(s, 1, -1) end",
        /* an element visited or moved per element, per call */
        "  local t = table.pack(('x'):rep(20000):byte(1, -1))\n"
        "  for i = 1, 1e5 do local _ = table.concat(t) end",
        "  local t = table.pack(('x'):rep(50000):byte(1, -1))\n"
        "  for i = 1, 1e5 do table.insert(t, 1, 0) end",
        "  local t = table.pack(('x'):rep(50000):byte(1, -1))\n"
        "  for i = 1, 1e5 do table.remove(t, 1) end",
        "  local t = table.pack(('x'):rep(50000):byte(1, -1))\n"
        "  for i = 1, 1e5 do local _ = math.max(table.unpack(t, 1, 10), 0) end",
        "  local t = table.pack(('x'):rep(50000):byte(1, -1))\n"
        "  local function f(...) for i = 1, 1e5 do local _ = string.char(...) end end\n"
        "  f(table.unpack(t))",
        /* a scan of the whole string, per call */
        "  local s = ('x'):rep(2^20)\n  for i = 1, 1e6 do local _ = utf8.len(s) end",
        "  local s = ('x'):rep(2^20)\n  for i = 1, 1e6 do local _ = utf8.offset(s, 2^20) end",
        "  local s = ('1'):rep(2^20)\n  for i = 1, 1e6 do local _ = tonumber(s) end",
        "  local a, b = ('x'):rep(2^20) .. 'a', ('x'):rep(2^20) .. 'b'\n"
        "  for i = 1, 1e6 do local _ = rawequal(a, b) end",
        "  local f = ('b'):rep(2^20)\n  for i = 1, 1e6 do local _ = string.packsize(f) end",
        /* a copy of the whole string, per call: paid by what is allocated */
        "  local s = ('x'):rep(2^20)\n  for i = 1, 1e5 do local _ = s:upper() end",
        "  local s = ('x'):rep(2^20)\n  for i = 1, 1e5 do local _ = s .. 'y' end",
    };
    char source[512];
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        struct epcs_rule_error err;
        snprintf(source, sizeof(source), "return function()\n%s\nend\n", bombs[i]);
        double started = cpu_seconds();
        EXPECT_INT(call(lua, source, &err), -1);
        double spent = cpu_seconds() - started;
        EXPECT_STR(err.file, "rule.lua");
        EXPECT_INT(err.line, 3);
        EXPECT_CONTAINS(err.message, "instruction budget of 200000 exceeded (endless loop?)");
        /* CPU time, with a wide margin: each ends within milliseconds. */
        EXPECT(spent < 1.0);
        if (spent >= 1.0 || err.line != 3)
            fprintf(stderr, "case %zu: %.2f s, %s\n", i, spent, err.message);
    }
    /* string.rep of nothing used to loop its count, copying nothing. */
    struct epcs_rule_error err;
    double started = cpu_seconds();
    EXPECT_INT(call(lua,
                    "return function()\n"
                    "  assert(string.rep('', 2^50) == '' and string.rep('', 2^50, '') == '')\n"
                    "  assert(('ab'):rep(3, ',') == 'ab,ab,ab' and ('x'):rep(0) == '')\n"
                    "  assert(string.rep('', 3, 'x') == 'xx')\n"
                    "end\n",
                    &err),
               0);
    EXPECT(cpu_seconds() - started < 0.5);
}

/* Some work of the VM itself grows with its operands while it counts as one instruction: it
 * is stopped by the CPU time the budget buys (200000 instructions: 50 ms, 200 ms sanitized). */
static void test_cpu_time_backstop(struct epcs_lua *lua)
{
    long limit_ms = 200000L * EPCS_LUA_CPU_NS_PER_INSTRUCTION / 1000000;
    char expected[160];
    snprintf(expected, sizeof(expected),
             "rule.lua:3: instruction budget of 200000 exceeded: its %ld ms of CPU time are spent "
             "(endless loop?)",
             limit_ms);
    static const char *const bombs[] = {
        /* comparing two long strings that differ only at the end */
        "  local a, b = ('x'):rep(2^20) .. 'a', ('x'):rep(2^20) .. 'b'\n"
        "  for i = 1, 1e6 do local e = a == b end",
        /* copying 50000 varargs for every call */
        "  local t = table.pack(('x'):rep(50000):byte(1, -1))\n"
        "  local function f(...) for i = 1, 1e6 do local n = select('#', ...) end end "
        "f(table.unpack(t))",
        /* converting a million digits to a number */
        "  local s = ('1'):rep(2^20)\n  for i = 1, 1e6 do local n = s + 0 end",
        /* four million digits, milliseconds an instruction, after a fast start */
        "  local s, n = ('1'):rep(2^22), 0\n"
        "  for i = 1, 1e4 do n = n + i end for i = 1, 1e6 do n = s + 0 end",
    };
    char source[512];
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        struct epcs_rule_error err;
        snprintf(source, sizeof(source), "return function()\n%s\nend\n", bombs[i]);
        double started = cpu_seconds();
        EXPECT_INT(call(lua, source, &err), -1);
        double spent = cpu_seconds() - started;
        EXPECT_INT(err.line, 3);
        EXPECT_CONTAINS(err.message, expected);
        /* The limit from the watchdog's first look (10 to 20 ms in), one instruction more and
         * the strings made: 200 ms over it at most (the count hook alone took seconds). */
        double bound = (double)limit_ms / 1000 + 0.2;
        EXPECT(spent < bound);
        if (spent >= bound)
            fprintf(stderr, "backstop case %zu: %.2f s\n", i, spent);
    }
}

static void test_state_usable_after_failures(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(run(lua, "assert(epcs.fmt(epcs.date('2024-04-10') - 90) == '2024-01-11')\n", &err),
               0);
}

/* Runs `source` as rule file `name`, calls the function it returns, and leaves the call's one
 * result on the stack; returns 0 or -1 with err filled. */
static int call_file(struct epcs_lua *lua, const char *name, const char *source,
                     struct epcs_rule_error *err)
{
    memset(err, 0, sizeof(*err));
    if (epcs_lua_run_chunk(lua, name, source, strlen(source), 0, 1, err) != 0)
        return -1;
    return epcs_lua_call(lua, 0, 1, err);
}

static void expect_refused_load(struct epcs_lua *lua, const char *source, int line,
                                const char *message)
{
    struct epcs_rule_error err;
    EXPECT_INT(run(lua, source, &err), -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT_INT(err.line, line);
    EXPECT_CONTAINS(err.message, message);
}

static void expect_refused_call(struct epcs_lua *lua, const char *source, int line,
                                const char *message)
{
    struct epcs_rule_error err;
    EXPECT_INT(call(lua, source, &err), -1);
    EXPECT_STR(err.file, "rule.lua");
    EXPECT_INT(err.line, line);
    EXPECT_CONTAINS(err.message, message);
}

/* Each file has globals of its own, and none can be assigned once the file has loaded. */
static void test_own_globals(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(
        call_file(lua, "a.lua", "helper = 41\nreturn function() return helper + 1 end\n", &err), 0);
    EXPECT_INT(lua_tointeger(epcs_lua_state(lua), -1), 42);
    lua_pop(epcs_lua_state(lua), 1);
    EXPECT_STR(type_of(lua, "helper"), "nil");
    expect_refused_call(lua, "return function() counter = 1 end\n", 1,
                        "rule.lua:1: rules may not assign global 'counter'");
    expect_refused_call(lua, "return function()\n  _G.counter = 1\nend\n", 2,
                        "rules may not assign global 'counter'");
    EXPECT_STR(type_of(lua, "_G.string"), "table");
}

/* The libraries and the rule API are the same for every file, and read-only. */
static void test_libraries_read_only(struct epcs_lua *lua)
{
    static const char *const writes[] = {
        "string.format = function() return 'hijacked' end",
        "epcs.date = nil",
        "table.insert = nil",
        "math.pi = 3",
        "utf8.char = print",
        "string.newfield = 1",
    };
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
        expect_refused_load(lua, writes[i], 1, "in a table made while the rule files loaded");
    expect_refused_load(lua, "getmetatable('').__index = {}", 1, "attempt to index");
    expect_refused_call(lua, "return function() setmetatable(string, {}) end", 1,
                        "setmetatable: the table was made while the rule files loaded and is "
                        "read-only");
    static const char *const absent[] = {"rawset", "math.random", "math.randomseed"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        EXPECT_STR(type_of(lua, absent[i]), "nil");
    struct epcs_rule_error err;
    EXPECT_INT(run(lua,
                   "assert(rawget(string, 'format') == string.format)\n"
                   "assert(rawlen(string) == 0 and rawequal(string, string))\n"
                   "local n = 0\n"
                   "for k, v in pairs(math) do n = n + 1 end\n"
                   "assert(n > 20 and next(math) ~= nil)\n"
                   "assert(('x'):rep(3) == 'xxx' and getmetatable('') == false)\n",
                   &err),
               0);
}

/* What a file made while it loaded is read-only afterwards; reading it works as before. */
static void test_loaded_tables_frozen(struct epcs_lua *lua)
{
    struct epcs_rule_error err;
    EXPECT_INT(call(lua,
                    "local t = {10, 20, 30, x = 'y', nested = {1, 2}}\n"
                    "return function()\n"
                    "  local n, sum = 0, 0\n"
                    "  for k, v in pairs(t) do n = n + 1 end\n"
                    "  for i, v in ipairs(t) do sum = sum + v end\n"
                    "  assert(n == 5 and sum == 60 and #t == 3 and t.x == 'y')\n"
                    "  assert(rawget(t, 1) == 10 and rawlen(t) == 3 and #t.nested == 2)\n"
                    "  assert(table.concat(t, ',') == '10,20,30' and select(2, table.unpack(t)) == "
                    "20)\n"
                    "  assert(getmetatable(t) == nil and next(t) ~= nil)\n"
                    "end\n",
                    &err),
               0);
    expect_refused_call(lua, "local seen = {}\nreturn function()\n  seen[#seen + 1] = 1\nend\n", 3,
                        "rules may not set '1' in a table made while the rule files loaded");
    expect_refused_call(lua, "local t = {nested = {}}\nreturn function()\n  t.nested.x = 1\nend\n",
                        3, "rules may not set 'x'");
    expect_refused_call(lua, "local t = {}\nreturn function()\n  table.insert(t, 1)\nend\n", 3,
                        "in a table made while the rule files loaded");
    expect_refused_call(lua, "local t = {}\nreturn function()\n  setmetatable(t, {})\nend\n", 3,
                        "setmetatable: the table was made while the rule files loaded and is "
                        "read-only");
    expect_refused_call(lua, "return function()\n  setmetatable({}, {__mode = 'k'})\nend\n", 2,
                        "rules may not set __mode metamethods");
    /* Made while evaluating, a table is the evaluation's own. */
    EXPECT_INT(call(lua,
                    "return function()\n"
                    "  local t = {}\n"
                    "  t.x = 1\n"
                    "  table.insert(t, 2)\n"
                    "  return setmetatable(t, {__index = function() return 3 end}).y\n"
                    "end\n",
                    &err),
               0);
}

/* A local outside a function that the function assigns would carry state from one call to
 * the next: such files are refused when they load, naming the assignment's line. */
static void test_upvalue_assignments_refused(struct epcs_lua *lua)
{
    expect_refused_load(lua, "local n = 0\nreturn function()\n  n = n + 1\n  return n\nend\n", 3,
                        "rule.lua:3: assigns to 'n', a local outside the function: it would keep "
                        "state from one check to the next (make it a local of the function that "
                        "changes it)");
    expect_refused_load(lua,
                        "return function()\n  local found = false\n"
                        "  local function mark() found = true end\n  mark()\nend\n",
                        3, "assigns to 'found'");
    expect_refused_load(lua, "\n_ENV = {}\n", 2, "assigns to '_ENV'");
    struct epcs_rule_error err;
    EXPECT_INT(call(lua, "local n = 41\nreturn function() local m = n + 1 return m end\n", &err),
               0);
    EXPECT_INT(call(lua,
                    "local function f(x)\n  local y = x\n  y = y + 1\n  return y\nend\n"
                    "return function() assert(f(1) == 2) end\n",
                    &err),
               0);
}

/* Every host access runs in a protected call, so the panic handler should never run; if it
 * does, the process still ends (Lua aborts), but the log says which state did it. */
static void test_panic_is_logged(void)
{
    int pipe_fds[2];
    EXPECT_INT(pipe(pipe_fds), 0);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        dup2(pipe_fds[1], STDERR_FILENO);
        struct epcs_lua *lua = epcs_lua_create(&limits);
        lua_State *L = epcs_lua_state(lua);
        lua_pushliteral(L, "an error nothing catches");
        lua_error(L);
        _exit(0);
    }
    close(pipe_fds[1]);
    char log[4096] = "";
    size_t used = 0;
    ssize_t got;
    while (used < sizeof(log) - 1 &&
           (got = read(pipe_fds[0], log + used, sizeof(log) - 1 - used)) > 0)
        used += (size_t)got;
    log[used] = '\0';
    close(pipe_fds[0]);
    int status = 0;
    EXPECT_INT(waitpid(child, &status, 0), child);
    EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    EXPECT_CONTAINS(log, "raised an error outside any protected call, aborting: an error nothing "
                         "catches");
}

static void test_purity(void)
{
    struct epcs_lua *lua = epcs_lua_create(&limits);
    struct epcs_rule_error err;
    EXPECT_INT(epcs_lua_freeze_globals(lua, 0, &err), 0);
    test_own_globals(lua);
    test_libraries_read_only(lua);
    test_loaded_tables_frozen(lua);
    test_upvalue_assignments_refused(lua);
    epcs_lua_destroy(lua);
}

int main(void)
{
    struct epcs_lua *lua = epcs_lua_create(&limits);
    EXPECT(lua != NULL);
    test_only_safe_libraries(lua);
    test_binary_chunks_refused(lua);
    test_infinite_loop_stopped(lua);
    test_memory_bomb_stopped(lua);
    test_errors_name_file_and_line(lua);
    test_no_finalizers(lua);
    test_no_metatables_while_loading(lua);
    test_patterns_pay_from_the_budget(lua);
    test_state_usable_after_failures(lua);
    epcs_lua_destroy(lua);
    test_purity();
    test_panic_is_logged();
    /* Room for the million-byte strings and large tables the budget tests make. */
    static const struct epcs_lua_limits roomy = {.memory_bytes = 16u << 20, .instructions = 200000};
    lua = epcs_lua_create(&roomy);
    test_library_work_is_charged(lua);
    test_cpu_time_backstop(lua);
    epcs_lua_destroy(lua);
    epcs_lua_destroy(NULL);
    return epcs_test_report();
}
