/*
 * Lua 5.4 patterns (reference manual, section 6.4.1) for the sandbox: a backtracking matcher
 * that counts its steps and charges them to the rule's budget. The grammar and the limits are
 * Lua's, so that rules behave exactly as under the standard library (tests/unit/test_patterns.c
 * compares the two on thousands of cases): at most 32 captures, and a recursion depth of 200
 * nested items before "pattern too complex".
 */
#include "lua_patterns.h"

#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#define MAX_CAPTURES 32
#define MAX_DEPTH 200
/* Steps gathered before they are charged: few enough to stop within microseconds. */
#define CHARGE_EVERY 256
/* Bytes compared (by a back-reference or a plain find) that count as one step. */
#define BYTES_PER_STEP 32
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define SPECIALS "^$*+?.([%-"

struct matcher {
    lua_State *L;
    const char *src_init, *src_end, *p_end;
    int depth_left;
    int level;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[MAX_CAPTURES];
    const struct epcs_pattern_budget *budget;
    long steps;
};

static void charge_now(struct matcher *m)
{
    long steps = m->steps;
    m->steps = 0;
    if (m->budget != NULL && steps > 0)
        m->budget->charge(m->L, steps);
}

static void step(struct matcher *m, long steps)
{
    m->steps += steps;
    if (m->steps >= CHARGE_EVERY)
        charge_now(m);
}

static void matcher_init(struct matcher *m, lua_State *L, const char *s, size_t ls, const char *p,
                         size_t lp, const struct epcs_pattern_budget *budget)
{
    m->L = L;
    m->src_init = s;
    m->src_end = s + ls;
    m->p_end = p + lp;
    m->budget = budget;
    m->steps = 0;
}

/* Every match attempt starts with no captures and the whole depth. */
static void matcher_reset(struct matcher *m)
{
    m->level = 0;
    m->depth_left = MAX_DEPTH;
}

static const struct epcs_pattern_budget *budget_of(lua_State *L, int upvalue)
{
    return lua_touserdata(L, lua_upvalueindex(upvalue));
}

/* ---- single items ------------------------------------------------------------------------ */

/* Whether character `c` is in class `%cl`; a letter that names no class stands for itself. */
static int in_class(int c, int cl)
{
    int found;
    switch (tolower(cl)) {
    case 'a':
        found = isalpha(c);
        break;
    case 'c':
        found = iscntrl(c);
        break;
    case 'd':
        found = isdigit(c);
        break;
    case 'g':
        found = isgraph(c);
        break;
    case 'l':
        found = islower(c);
        break;
    case 'p':
        found = ispunct(c);
        break;
    case 's':
        found = isspace(c);
        break;
    case 'u':
        found = isupper(c);
        break;
    case 'w':
        found = isalnum(c);
        break;
    case 'x':
        found = isxdigit(c);
        break;
    case 'z': /* deprecated since 5.2, still in 5.4: the NUL byte */
        found = c == 0;
        break;
    default:
        return cl == c;
    }
    return isupper(cl) ? !found : found;
}

/* Whether `c` is in the set [set, close): `set` at its '[', `close` at its ']'. */
static int in_set(int c, const char *set, const char *close)
{
    int inside = 1;
    const char *p = set + 1;
    if (*p == '^') {
        inside = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == '%') {
            p++;
            if (in_class(c, (unsigned char)*p))
                return inside;
        } else if (p[1] == '-' && p + 2 < close) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return inside;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return inside;
        }
    }
    return !inside;
}

/* The end of the single-character item at `p` (a character, '.', %x or a set). */
static const char *item_end(struct matcher *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= m->p_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[')
        return p;
    if (*p == '^')
        p++;
    /* The first character of a set belongs to it, even ']'. */
    do {
        if (p >= m->p_end)
            luaL_error(m->L, "malformed pattern (missing ']')");
        c = *p++;
        if (c == '%' && p < m->p_end)
            p++;
    } while (*p != ']');
    return p + 1;
}

/* Whether the item [p, end) matches the character at s. */
static int item_matches(struct matcher *m, const char *s, const char *p, const char *end)
{
    if (s >= m->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case '%':
        return in_class(c, (unsigned char)p[1]);
    case '[':
        return in_set(c, p, end - 1);
    default:
        return (unsigned char)*p == c;
    }
}

/* ---- the matcher ------------------------------------------------------------------------- */

static const char *match(struct matcher *m, const char *s, const char *p);

/* %bxy at s (p at x): the shortest balanced run from x to its y. */
static const char *match_balance(struct matcher *m, const char *s, const char *p)
{
    if (p >= m->p_end - 1)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != *p)
        return NULL;
    char open = p[0], close = p[1];
    int depth = 1;
    while (++s < m->src_end) {
        step(m, 1);
        if (*s == close) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

/* The index of capture %d (a digit character), which must be closed. */
static int closed_capture(struct matcher *m, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->capture[l].len == CAP_UNFINISHED)
        return luaL_error(m->L, "invalid capture index %%%d", l + 1);
    return l;
}

/* %1-%9 at s: the text of that capture again. */
static const char *match_capture(struct matcher *m, const char *s, int digit)
{
    int l = closed_capture(m, digit);
    size_t len = (size_t)m->capture[l].len;
    step(m, 1 + (long)(len / BYTES_PER_STEP));
    if ((size_t)(m->src_end - s) >= len && memcmp(m->capture[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

/* item* and item+ (after its first match): as many as match, then backing off. */
static const char *max_expand(struct matcher *m, const char *s, const char *p, const char *end)
{
    ptrdiff_t count = 0;
    while (item_matches(m, s + count, p, end)) {
        step(m, 1);
        count++;
    }
    for (; count >= 0; count--) {
        const char *found = match(m, s + count, end + 1);
        if (found != NULL)
            return found;
    }
    return NULL;
}

/* item-: as few as the rest of the pattern allows. */
static const char *min_expand(struct matcher *m, const char *s, const char *p, const char *end)
{
    for (;;) {
        const char *found = match(m, s, end + 1);
        if (found != NULL)
            return found;
        if (!item_matches(m, s, p, end))
            return NULL;
        step(m, 1);
        s++;
    }
}

static const char *open_capture(struct matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->capture[m->level].init = s;
    m->capture[m->level].len = what;
    m->level++;
    const char *found = match(m, s, p);
    if (found == NULL)
        m->level--;
    return found;
}

static const char *close_capture(struct matcher *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->capture[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->capture[l].len = s - m->capture[l].init;
    const char *found = match(m, s, p);
    if (found == NULL)
        m->capture[l].len = CAP_UNFINISHED;
    return found;
}

/* %f[set] at s: the boundary where the previous character is not in the set and this one is. */
static const char *match_frontier(struct matcher *m, const char *s, const char *p,
                                  const char **rest)
{
    if (*p != '[')
        luaL_error(m->L, "missing '[' after '%%f' in pattern");
    const char *end = item_end(m, p);
    int previous = s == m->src_init ? '\0' : (unsigned char)s[-1];
    int current = s < m->src_end ? (unsigned char)*s : '\0';
    *rest = end;
    if (!in_set(previous, p, end - 1) && in_set(current, p, end - 1))
        return s;
    return NULL;
}

/* A single item with its quantifier at p; the rest of the pattern follows. Returns the end of
 * the match, or NULL; *next is set (and s returned) when matching goes on at *next. */
static const char *match_item(struct matcher *m, const char *s, const char *p, const char **next)
{
    const char *end = item_end(m, p);
    *next = NULL;
    if (!item_matches(m, s, p, end)) {
        if (*end == '*' || *end == '?' || *end == '-') {
            *next = end + 1;
            return s;
        }
        return NULL;
    }
    switch (*end) {
    case '?': {
        const char *found = match(m, s + 1, end + 1);
        if (found != NULL)
            return found;
        *next = end + 1;
        return s;
    }
    case '+':
        return max_expand(m, s + 1, p, end);
    case '*':
        return max_expand(m, s, p, end);
    case '-':
        return min_expand(m, s, p, end);
    default:
        *next = end;
        return s + 1;
    }
}

/* Pattern items that begin with '%' and are no single-character class. */
static const char *match_escape(struct matcher *m, const char *s, const char *p, const char **next)
{
    *next = NULL;
    switch (p[1]) {
    case 'b':
        s = match_balance(m, s, p + 2);
        if (s != NULL)
            *next = p + 4;
        return s;
    case 'f':
        s = match_frontier(m, s, p + 2, next);
        if (s == NULL)
            *next = NULL;
        return s;
    default: /* a digit: a back-reference */
        s = match_capture(m, s, (unsigned char)p[1]);
        if (s != NULL)
            *next = p + 2;
        return s;
    }
}

/* Matches the pattern from p against the subject from s: the end of the match, or NULL. */
static const char *match(struct matcher *m, const char *s, const char *p)
{
    if (m->depth_left-- == 0)
        luaL_error(m->L, "pattern too complex");
    /* Items that match one way go on in this loop; those that may back off recurse. */
    while (s != NULL && p < m->p_end) {
        const char *next = NULL;
        step(m, 1);
        if (*p == '(') {
            s = p[1] == ')' ? open_capture(m, s, p + 2, CAP_POSITION)
                            : open_capture(m, s, p + 1, CAP_UNFINISHED);
        } else if (*p == ')') {
            s = close_capture(m, s, p + 1);
        } else if (*p == '$' && p + 1 == m->p_end) {
            s = s == m->src_end ? s : NULL;
        } else if (*p == '%' && (p[1] == 'b' || p[1] == 'f' || isdigit((unsigned char)p[1]))) {
            s = match_escape(m, s, p, &next);
        } else {
            s = match_item(m, s, p, &next);
        }
        if (next == NULL)
            break;
        p = next;
    }
    m->depth_left++;
    return s;
}

/* ---- captures as values ------------------------------------------------------------------ */

/* Capture i of the match [s, e) (the whole match when there are none and i is 0): its length
 * with its text in *text, or CAP_POSITION with the position pushed. */
static ptrdiff_t capture_text(struct matcher *m, int i, const char *s, const char *e,
                              const char **text)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        *text = s;
        return e - s;
    }
    ptrdiff_t len = m->capture[i].len;
    *text = m->capture[i].init;
    if (len == CAP_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    else if (len == CAP_POSITION)
        lua_pushinteger(m->L, (m->capture[i].init - m->src_init) + 1);
    return len;
}

static void push_capture(struct matcher *m, int i, const char *s, const char *e)
{
    const char *text;
    ptrdiff_t len = capture_text(m, i, s, e, &text);
    if (len != CAP_POSITION)
        lua_pushlstring(m->L, text, (size_t)len);
}

/* Pushes every capture of the match [s, e) (the whole match when there are none, s not NULL).
 * Returns how many. */
static int push_captures(struct matcher *m, const char *s, const char *e)
{
    int count = m->level == 0 && s != NULL ? 1 : m->level;
    luaL_checkstack(m->L, count, "too many captures");
    for (int i = 0; i < count; i++)
        push_capture(m, i, s, e);
    return count;
}

/* ---- find and match ---------------------------------------------------------------------- */

/* A position argument as a 1-based index into a subject of `len` bytes (Lua's rule for
 * init: negative counts from the end, anything before the start is the start). */
static size_t start_index(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\0' && strchr(SPECIALS, p[i]) != NULL)
            return 1;
    }
    return 0;
}

/* The first occurrence of [needle, needle+nlen) in [hay, hay+hlen), or NULL. */
static const char *find_plain(struct matcher *m, const char *hay, size_t hlen, const char *needle,
                              size_t nlen)
{
    if (nlen == 0)
        return hay;
    while (nlen <= hlen) {
        const char *at = memchr(hay, needle[0], hlen - nlen + 1);
        size_t scanned = at != NULL ? (size_t)(at - hay) + nlen : hlen;
        step(m, 1 + (long)(scanned / BYTES_PER_STEP));
        if (at == NULL)
            return NULL;
        if (memcmp(at + 1, needle + 1, nlen - 1) == 0)
            return at;
        hlen -= (size_t)(at + 1 - hay);
        hay = at + 1;
    }
    return NULL;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    struct matcher m;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    matcher_init(&m, L, s, ls, p, lp, budget_of(L, 1));
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *at = find_plain(&m, s + init, ls - init, p, lp);
        charge_now(&m);
        if (at == NULL) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (at - s) + 1);
        lua_pushinteger(L, (lua_Integer)((size_t)(at - s) + lp));
        return 2;
    }
    int anchor = *p == '^';
    if (anchor)
        p++;
    const char *from = s + init;
    do {
        matcher_reset(&m);
        const char *end = match(&m, from, p);
        if (end != NULL) {
            charge_now(&m);
            if (!find)
                return push_captures(&m, from, end);
            lua_pushinteger(L, (from - s) + 1);
            lua_pushinteger(L, end - s);
            return push_captures(&m, NULL, NULL) + 2;
        }
    } while (from++ < m.src_end && !anchor);
    charge_now(&m);
    luaL_pushfail(L);
    return 1;
}

static int cb_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int cb_match(lua_State *L)
{
    return find_or_match(L, 0);
}

/* ---- gmatch ------------------------------------------------------------------------------ */

struct gmatch_state {
    struct matcher m;
    const char *from;
    const char *pattern;
    const char *last_end;
};

/* The iterator: its upvalues are the subject and the pattern (kept alive) and the state. */
static int cb_gmatch_next(lua_State *L)
{
    struct gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    g->m.L = L;
    for (const char *from = g->from; from <= g->m.src_end; from++) {
        matcher_reset(&g->m);
        const char *end = match(&g->m, from, g->pattern);
        /* An empty match right where the last one ended would repeat it. */
        if (end != NULL && end != g->last_end) {
            g->from = g->last_end = end;
            charge_now(&g->m);
            return push_captures(&g->m, from, end);
        }
    }
    g->from = g->m.src_end + 1;
    charge_now(&g->m);
    return 0;
}

static int cb_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    lua_settop(L, 2);
    struct gmatch_state *g = lua_newuserdatauv(L, sizeof(*g), 0);
    if (init > ls)
        init = ls + 1;
    matcher_init(&g->m, L, s, ls, p, lp, budget_of(L, 1));
    g->from = s + init;
    g->pattern = p;
    g->last_end = NULL;
    lua_pushcclosure(L, cb_gmatch_next, 3);
    return 1;
}

/* ---- gsub -------------------------------------------------------------------------------- */

/* Appends replacement string `repl` for the match [s, e): %0-%9 are captures, %% is '%'. */
static void add_template(struct matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    size_t len;
    const char *repl = lua_tolstring(m->L, 3, &len);
    const char *percent;
    while ((percent = memchr(repl, '%', len)) != NULL) {
        luaL_addlstring(b, repl, (size_t)(percent - repl));
        char c = percent[1];
        if (c == '%') {
            luaL_addchar(b, '%');
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)c)) {
            const char *text;
            ptrdiff_t cap = capture_text(m, c - '1', s, e, &text);
            if (cap == CAP_POSITION)
                luaL_addvalue(b);
            else
                luaL_addlstring(b, text, (size_t)cap);
        } else {
            luaL_error(m->L, "invalid use of '%c' in replacement string", '%');
        }
        len -= (size_t)(percent + 2 - repl);
        repl = percent + 2;
    }
    luaL_addlstring(b, repl, len);
}

/* Appends the replacement of the match [s, e) by the string, table or function at 3. Returns
 * whether the text changed (false or nil from a table or function keep the match). */
static int add_replacement(struct matcher *m, luaL_Buffer *b, const char *s, const char *e,
                           int type)
{
    lua_State *L = m->L;
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        lua_call(L, push_captures(m, s, e), 1);
    } else if (type == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_template(m, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int cb_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int type = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1), count = 0;
    luaL_argexpected(L,
                     type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                         type == LUA_TTABLE,
                     3, "string/function/table");
    int anchor = *p == '^', changed = 0;
    const char *last_end = NULL;
    luaL_Buffer b;
    struct matcher m;
    luaL_buffinit(L, &b);
    if (anchor) {
        p++;
        lp--;
    }
    matcher_init(&m, L, src, ls, p, lp, budget_of(L, 1));
    while (count < max) {
        matcher_reset(&m);
        const char *end = match(&m, src, p);
        if (end != NULL && end != last_end) {
            count++;
            changed |= add_replacement(&m, &b, src, end, type);
            src = last_end = end;
        } else if (src < m.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    charge_now(&m);
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(m.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, count);
    return 2;
}

void epcs_patterns_open(lua_State *L, int table, const struct epcs_pattern_budget *budget)
{
    static const luaL_Reg functions[] = {
        {"find", cb_find}, {"match", cb_match}, {"gmatch", cb_gmatch},
        {"gsub", cb_gsub}, {NULL, NULL},
    };
    table = lua_absindex(L, table);
    for (const luaL_Reg *f = functions; f->name != NULL; f++) {
        lua_pushlightuserdata(L, (void *)budget);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, table, f->name);
    }
}
