/*
 * epcs's pattern functions against Lua's own: the same calls go to a plain state with the
 * standard string library and to one whose find, match, gmatch and gsub are epcs's, and every
 * result and every error message must be the same. Hand-picked edge cases first, then
 * thousands of generated ones; then the budget.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <time.h>

#include "pattern_calls.h"
#include "testing.h"

static int compared, mismatches;

static void compare(lua_State *ref, lua_State *ours, const struct epcs_pattern_call *c)
{
    static struct epcs_buf want, got;
    epcs_pattern_outcome(ref, c, &want);
    epcs_pattern_outcome(ours, c, &got);
    compared++;
    if (want.len == got.len && memcmp(want.data, got.data, want.len) == 0)
        return;
    if (mismatches++ < 20) {
        epcs_pattern_print(ref, c);
        fprintf(stderr, "  lua:  %.*s\n  epcs: %.*s\n", (int)want.len, want.data, (int)got.len,
                got.data);
    }
}

static struct epcs_pattern_arg str(const char *s)
{
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_STR, .str = s, .len = strlen(s)};
}

static struct epcs_pattern_arg bytes(const char *s, size_t len)
{
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_STR, .str = s, .len = len};
}

static struct epcs_pattern_arg integer(lua_Integer value)
{
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_INT, .value = value};
}

static struct epcs_pattern_arg boolean(int value)
{
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_BOOL, .value = value};
}

static struct epcs_pattern_arg global(const char *name)
{
    return (struct epcs_pattern_arg){.kind = EPCS_PATTERN_ARG_GLOBAL, .str = name};
}

static const struct epcs_pattern_arg nil = {.kind = EPCS_PATTERN_ARG_NIL};

/* Every function on one subject and pattern, with a few inits and replacements. */
static void compare_all(lua_State *ref, lua_State *ours, struct epcs_pattern_arg s,
                        struct epcs_pattern_arg p)
{
    static const lua_Integer inits[] = {1, 2, -1, -3, 0, 5, 40, -40};
    struct epcs_pattern_call c = {.fn = "find", .args = {s, p}};
    compare(ref, ours, &c);
    c.fn = "match";
    compare(ref, ours, &c);
    c.fn = "gmatch";
    compare(ref, ours, &c);
    for (size_t i = 0; i < sizeof(inits) / sizeof(inits[0]); i++) {
        struct epcs_pattern_call with_init = {.fn = "find", .args = {s, p, integer(inits[i])}};
        compare(ref, ours, &with_init);
        with_init.fn = "match";
        compare(ref, ours, &with_init);
        with_init.fn = "gmatch";
        compare(ref, ours, &with_init);
    }
    struct epcs_pattern_call plain = {.fn = "find", .args = {s, p, integer(1), boolean(1)}};
    compare(ref, ours, &plain);
    static const char *const templates[] = {"X", "%0", "%1", "<%1|%2>", "%%", "%", "%x", "%9"};
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        struct epcs_pattern_call gsub = {.fn = "gsub", .args = {s, p, str(templates[i])}};
        compare(ref, ours, &gsub);
    }
    static const char *const replacers[] = {"show", "keep_a", "tab", "upper", "count"};
    for (size_t i = 0; i < sizeof(replacers) / sizeof(replacers[0]); i++) {
        struct epcs_pattern_call gsub = {.fn = "gsub", .args = {s, p, global(replacers[i])}};
        compare(ref, ours, &gsub);
    }
    struct epcs_pattern_call limited = {.fn = "gsub", .args = {s, p, str("<%0>"), integer(1)}};
    compare(ref, ours, &limited);
}

static void test_hand_picked(lua_State *ref, lua_State *ours)
{
    static const char *const subjects[] = {
        "",
        "a",
        "hello world from Lua",
        "  key = value  ",
        "THE (quick) [brown] fox",
        "f(a(b)c)d(e",
        "2024-01-11..2024-04-10",
        "a.b-c+d*e?f^g$h%i",
        "abcabcabc",
        "aaa",
        "x=1, y=22, z=333",
        "\xea\xb0\x80\xeb\x82\x98 UTF-8",
    };
    static const char *const patterns[] = {
        "",        "a",           "^a",          "a$",          "^$",
        ".",       "..",          "%a+",         "%A+",         "%d+",
        "%D",      "%s*",         "%S+",         "%w+",         "%W",
        "%x+",     "%X",          "%p",          "%P+",         "%c",
        "%C+",     "%g+",         "%G",          "%l+",         "%L",
        "%u+",     "%U",          "%.",          "%%",          "%-",
        "[abc]",   "[^abc]+",     "[a-c]+",      "[%a-]+",      "[]]",
        "[^]]+",   "[a-]",        "[-a]",        "[%]]",        "[%w_]+",
        "[^%s]+",  "a*",          "a+",          "a-",          "a?",
        "a-b",     ".-",          ".-b",         "(a)",         "(a*)",
        "()",      "()a()",       "(%w+)=(%w+)", "(a)(b)(c)",   "%b()",
        "%b[]",    "%bxy",        "%f[%w]%w+",   "%f[%W]",      "%f[%a]",
        "(a).-%1", "(.)%1",       "^(%s*)",      "(%d+)-(%d+)", "%d%d%d%d%-%d%d%-%d%d",
        "x$y",     "^^a",         "$",           "%",           "[a",
        "[",       "[^",          "(",           ")",           "%b",
        "%ba",     "%f",          "%fa",         "%1",          "(a)%2",
        "%0",      "(()",         "(a)%1*",      "[%a%d%s]+",   "[a-z%u]+",
        "%z",      "%Z",          "[%",          "a**",         "a+?",
        "(.-)%s",  "%s*(.-)%s*$",
    };
    size_t count = 0;
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
        for (size_t j = 0; j < sizeof(patterns) / sizeof(patterns[0]); j++) {
            compare_all(ref, ours, str(subjects[i]), str(patterns[j]));
            count++;
        }
    }
    /* Embedded NULs in subjects and patterns, and bytes beyond ASCII. */
    compare_all(ref, ours, bytes("a\0b\0c", 5), bytes("\0", 1));
    compare_all(ref, ours, bytes("a\0b\0c", 5), bytes("%z", 2));
    compare_all(ref, ours, bytes("a\0b\0c", 5), bytes("[\0b]+", 5));
    compare_all(ref, ours, bytes("a\0b\0c", 5), bytes("b\0?c", 4));
    compare_all(ref, ours, str("\xff\xfe\x80"), str("[\x80-\xff]+"));
    compare_all(ref, ours, str("\xff\xfe\x80"), str("%A+"));

    /* Deep recursion and too many captures give the same errors. */
    char many_optional[600], many_a[300], many_open[80];
    for (int i = 0; i < 250; i++)
        memcpy(many_optional + 2 * i, "a?", 2);
    many_optional[500] = '\0';
    memset(many_a, 'a', 250);
    many_a[250] = '\0';
    memset(many_open, '(', 40);
    many_open[40] = '\0';
    compare_all(ref, ours, str(many_a), str(many_optional));
    compare_all(ref, ours, str(many_a), str(many_open));
    compare_all(ref, ours, str(many_a), str("(((((((((((((((((((((((((((((((((a)))))))))))))))"));

    /* Argument errors, numbers as strings, the extremes of init and n. */
    struct epcs_pattern_call odd[] = {
        {.fn = "find", .args = {global("tab"), str("a")}},
        {.fn = "find", .args = {str("a"), global("tab")}},
        {.fn = "find", .args = {str("a"), str("a"), str("x")}},
        {.fn = "find", .args = {integer(12345), integer(3)}},
        {.fn = "find", .args = {str("abc"), str("b"), integer(LUA_MININTEGER)}},
        {.fn = "find", .args = {str("abc"), str("b"), integer(LUA_MAXINTEGER)}},
        {.fn = "find", .args = {str("abc"), str(""), integer(4)}},
        {.fn = "find", .args = {str("abc"), str(""), integer(5)}},
        {.fn = "find", .args = {str("a.c"), str("."), integer(1), boolean(1)}},
        {.fn = "find", .args = {str("a.c"), str("."), nil, global("tab")}},
        {.fn = "match", .args = {str("abc"), str("()"), integer(4)}},
        {.fn = "match", .args = {str("abc"), str("()"), integer(5)}},
        {.fn = "gmatch", .args = {str("abc"), str("()"), integer(LUA_MAXINTEGER)}},
        {.fn = "gmatch", .args = {str("abc"), nil}},
        {.fn = "gsub", .args = {str("abc"), str("b")}},
        {.fn = "gsub", .args = {str("abc"), str("b"), boolean(1)}},
        {.fn = "gsub", .args = {str("abc"), str("b"), integer(7)}},
        {.fn = "gsub", .args = {str("abc"), str("%w"), str("x"), integer(0)}},
        {.fn = "gsub", .args = {str("abc"), str("%w"), str("x"), integer(-1)}},
        {.fn = "gsub", .args = {str("abc"), str("%w"), str("x"), str("2")}},
        {.fn = "gsub", .args = {str("abc"), str("%w"), str("x"), str("two")}},
        {.fn = "gsub", .args = {str("abc"), str("%w"), global("bad_value")}},
        {.fn = "gsub", .args = {str("abc"), str("%w"), global("boom")}},
        {.fn = "gsub", .args = {str("abc"), str(""), str("-")}},
        {.fn = "gsub", .args = {str("abc"), str("^"), str("-")}},
        {.fn = "gsub", .args = {str("abc"), str("x*"), str("-")}},
        {.fn = "gsub", .args = {str("hello world"), str("(o)"), str("[%1%1]")}},
        {.fn = "gsub", .args = {str("hello"), str("()l"), str("%1")}},
        {.fn = "gsub", .args = {str("hello"), str("(l)(l)"), str("%2%1%0")}},
        {.fn = "gsub", .args = {str("abc"), str("(b"), str("%1")}},
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        compare(ref, ours, &odd[i]);
    EXPECT(count > 1000);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static unsigned next_random(unsigned bound)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % bound);
}

/* Random subjects and patterns from the pieces patterns are made of, malformed ones included.
 * Quantifiers are few, so that no case backtracks for long in either implementation. */
static void test_generated(lua_State *ref, lua_State *ours, int rounds)
{
    static const char alphabet[] = "aab()[]%-.x1 ,=\xff";
    static const char *const pieces[] = {
        "a",      "b",      "x",     ".",     "%a",     "%d",  "%s",    "%w",   "%x",   "%p",
        "%c",     "%g",     "%l",    "%u",    "%A",     "%D",  "%S",    "%W",   "%.",   "%%",
        "%(",     "[ab]",   "[^ab]", "[a-c]", "[%a%d]", "[]]", "[^]a]", "[a-]", "[%]]", "%b()",
        "%f[%w]", "%f[%W]", "(",     ")",     "()",     "%1",  "%2",    "$",    "^",    "?",
        "[",      "%",      "%z",    "%b",    "%f",     "%fx", ",",     "=",    "1",    " ",
    };
    static const char *const quantifiers[] = {"*", "+", "-"};
    char subject[32], pattern[96];
    for (int round = 0; round < rounds; round++) {
        size_t ls = next_random(13);
        for (size_t i = 0; i < ls; i++)
            subject[i] = alphabet[next_random(sizeof(alphabet) - 1)];
        size_t lp = 0, count = 1 + next_random(7);
        int quantified = 0;
        for (size_t i = 0; i < count; i++) {
            const char *piece = pieces[next_random(sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(pattern + lp, piece, strlen(piece));
            lp += strlen(piece);
            if (quantified < 3 && next_random(3) == 0) {
                pattern[lp++] = quantifiers[next_random(3)][0];
                quantified++;
            }
        }
        compare_all(ref, ours, bytes(subject, ls), bytes(pattern, lp));
    }
}

/* ---- the budget -------------------------------------------------------------------------- */

static long charged, charge_limit;

static void count_steps(lua_State *L, long steps)
{
    charged += steps;
    if (charged > charge_limit)
        luaL_error(L, "budget spent after %d steps", (int)charged);
}

static const struct epcs_pattern_budget counting = {.charge = count_steps};

static double cpu_seconds(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

/* The backtracking pattern of the security finding: Lua's own matcher needs half a minute
 * for it; charged, it ends at the budget. */
static void test_budget_stops_backtracking(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    epcs_patterns_open(L, -1, &counting);
    lua_pop(L, 1);
    static const char *const bombs[] = {
        "return string.find(('a'):rep(600), '.-.-.-b')",
        "return string.match(('a'):rep(600), '.-.-.-b')",
        "return string.gsub(('a'):rep(4000), '.-.-b', 'x')",
        "for w in string.gmatch(('a'):rep(600), '.-.-.-b') do end",
        "return string.find(('a'):rep(100000), ('a'):rep(50000) .. 'b', 1, true)",
        "return string.find(('ab'):rep(3000), '(.*)%1%1%1x')",
    };
    for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
        charged = 0;
        charge_limit = 1000000;
        double started = cpu_seconds();
        int status = luaL_dostring(L, bombs[i]);
        double spent = cpu_seconds() - started;
        EXPECT(status != LUA_OK);
        EXPECT_CONTAINS(lua_tostring(L, -1), "budget spent after");
        /* CPU time, generous: these stop in milliseconds, unbudgeted they take minutes. */
        EXPECT(spent < 2.0);
        if (spent >= 2.0)
            fprintf(stderr, "%s: %.2f s of CPU\n", bombs[i], spent);
        lua_pop(L, 1);
    }
    /* A simple pattern costs a step or two per character it is tried at; a plain search a
     * step per 32 bytes. */
    charged = 0;
    charge_limit = 1000000;
    EXPECT_INT(luaL_dostring(L, "assert(('x'):rep(10000):find('%d') == nil)"), LUA_OK);
    EXPECT(charged >= 10000 && charged < 40000);
    charged = 0;
    EXPECT_INT(luaL_dostring(L, "assert(('x'):rep(10000):find('y') == nil)"), LUA_OK);
    EXPECT(charged >= 10000 / 32 && charged < 1000);
    lua_close(L);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 4000;
    lua_State *ref = epcs_pattern_state(0, NULL), *ours = epcs_pattern_state(1, NULL);
    test_hand_picked(ref, ours);
    test_generated(ref, ours, rounds);
    printf("%d calls compared, %d differ\n", compared, mismatches);
    EXPECT(compared > 50000);
    EXPECT_INT(mismatches, 0);
    lua_close(ref);
    lua_close(ours);
    test_budget_stops_backtracking();
    return epcs_test_report();
}
