#include "ruleset.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "codec.h"
#include "dates.h"
#include "log.h"
#include "rule_api_lua.h" /* generated from rule_api.lua: epcs_rule_api_source */

#define ELECTIONS_FILE "elections.lua"
/* Rule files are short legal texts; anything bigger is a mistake, not a rule. */
#define MAX_RULE_FILE_SIZE (1024 * 1024)

/*
 * Verdicts are pure functions of (area, election, date, facts) under one ruleset: the sandbox
 * gives rules no clock, no I/O and no randomness, and leaves them no state to keep between
 * evaluations (see lua_purity.h). Partners ask the same questions again and
 * again (every post of an election day), so each engine remembers its latest answers in a
 * direct-mapped table and skips the rules for a repeated question.
 */
struct verdict_cache_entry {
    uint64_t hash;
    /* One allocation: the key, then the verdict's map entries (msgpack, without the header). */
    char *bytes;
    uint32_t key_len;
    uint32_t value_len;
    uint32_t fields;
    enum epcs_verdict_kind kind;
};

static size_t verdict_cache_slots = EPCS_VERDICT_CACHE_DEFAULT;

/* Verdicts made while evaluating whose lines an evaluation remembers (see mark_verdict). */
#define VERDICT_RING 16

struct verdict_mark {
    const void *table;
    int line;
};

struct epcs_engine {
    struct epcs_ruleset *ruleset;
    struct epcs_lua *lua;
    int evaluate_ref;
    int calendar_ref;
    int link_ref;
    int test_cases_ref;
    int elections_ref;
    int *area_refs;
    struct verdict_cache_entry *cache;
    size_t cache_slots;
    struct epcs_buf cache_key;
    struct epcs_buf cache_miss;
    /* What a protected read packs, copied out only once it is whole. */
    struct epcs_buf packed;
    /* The evaluation in progress, for the rule API's C functions; NULL between them. */
    struct epcs_eval *current;
    struct verdict_mark *marks;
    size_t mark_count, mark_capacity;
    struct verdict_mark ring[VERDICT_RING];
    size_t ring_used;
    int marking;
};

const char *epcs_verdict_name(enum epcs_verdict_kind kind)
{
    switch (kind) {
    case EPCS_VERDICT_ALLOWED:
        return "allowed";
    case EPCS_VERDICT_NEEDS_FACTS:
        return "needs_facts";
    case EPCS_VERDICT_PROHIBITED:
        return "prohibited";
    }
    return "?";
}

static void set_error(struct epcs_rule_error *err, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(struct epcs_rule_error *err, const char *file, int line, const char *fmt, ...)
{
    va_list args;
    snprintf(err->file, sizeof(err->file), "%s", file);
    err->line = line;
    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);
}

/* Reads what `stream` holds, up to `limit` + 1 bytes, into a NUL-terminated buffer the size of
 * what was read: the file's size (`hint`) is where reading starts, but a file being edited may
 * grow or shrink meanwhile. NULL when memory runs out or reading fails. */
static char *read_stream(FILE *stream, size_t hint, size_t limit, size_t *length)
{
    size_t capacity = (hint < limit ? hint : limit) + 1, used = 0;
    char *text = malloc(capacity + 1);
    while (text != NULL) {
        used += fread(text + used, 1, capacity - used, stream);
        if (used < capacity || capacity > limit)
            break;
        size_t grown = capacity * 2 > limit + 1 ? limit + 1 : capacity * 2;
        char *bigger = realloc(text, grown + 1);
        if (bigger == NULL)
            free(text);
        text = bigger;
        capacity = grown;
    }
    if (text == NULL || ferror(stream)) {
        free(text);
        return NULL;
    }
    char *fitted = realloc(text, used + 1);
    text = fitted != NULL ? fitted : text;
    text[used] = '\0';
    *length = used;
    return text;
}

static int read_rule_file(const char *dir, const char *name, struct epcs_rule_file *file,
                          struct epcs_rule_error *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *stream = fopen(path, "rb");
    if (stream == NULL) {
        set_error(err, name, 0, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    size_t hint = fstat(fileno(stream), &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
    file->name = strdup(name);
    file->source = read_stream(stream, hint, MAX_RULE_FILE_SIZE, &file->length);
    fclose(stream);
    if (file->name == NULL || file->source == NULL) {
        set_error(err, name, 0, "%s: cannot read: %s", path,
                  file->name == NULL ? "out of memory" : "read error or out of memory");
        return -1;
    }
    if (file->length > MAX_RULE_FILE_SIZE) {
        set_error(err, name, 0, "%s is larger than %d bytes", path, MAX_RULE_FILE_SIZE);
        return -1;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (!EVP_Digest(file->source, file->length, digest, &digest_len, EVP_sha256(), NULL)) {
        set_error(err, name, 0, "cannot hash %s", path);
        return -1;
    }
    for (unsigned int i = 0; i < digest_len && i < 32; i++)
        snprintf(file->sha256 + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/* An optional LABEL file names the ruleset for people; the version id stays the content hash. */
static char *read_label(const char *dir)
{
    char path[4096], line[256];
    snprintf(path, sizeof(path), "%s/LABEL", dir);
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return NULL;
    char *label = NULL;
    if (fgets(line, sizeof(line), file) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0' && epcs_utf8_valid(line, strlen(line)))
            label = strdup(line);
    }
    fclose(file);
    return label;
}

/* The version id covers every file by name and content, so any edit gives a new id and the same
 * files give the same id on every machine. */
static int compute_id(struct epcs_ruleset *ruleset)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        ok = EVP_DigestUpdate(ctx, file->name, strlen(file->name) + 1) &&
             EVP_DigestUpdate(ctx, file->sha256, 64);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &digest_len);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    memcpy(ruleset->id, "rs-", 3);
    for (int i = 0; i < 8; i++)
        snprintf(ruleset->id + 3 + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/*
 * Reading what rules produced. Whatever the host reads from a rule state (the elections, the
 * versions, verdicts, calendar items, test cases) it reads inside a protected call under the
 * budget and the memory cap (protected_read), with raw access only, so reading never runs a
 * rule's metamethods, and it refuses tables with metatables, whose raw contents need not be
 * what the rules see. A failure while reading then ends that call, never the process.
 */

/* Runs `fn` with `job` as its only argument (a light userdata) in a protected call. */
static int protected_read(struct epcs_engine *engine, lua_CFunction fn, void *job,
                          struct epcs_rule_error *err)
{
    lua_State *L = epcs_lua_state(engine->lua);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, job);
    return epcs_lua_call(engine->lua, 1, 0, err);
}

/* Pushes t[key] of the table at `table`, read raw, and returns its type. */
static int raw_field(lua_State *L, int table, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, table);
}

/* Whether [str, str+len) may go out in an answer or a log: UTF-8 without NUL bytes. */
static int sendable(const char *str, size_t len)
{
    return memchr(str, '\0', len) == NULL && epcs_utf8_valid(str, len);
}

/* A copy of string field `key` of the table at `index` when it is sendable text; NULL when it
 * is absent or anything else (*bad is set then, unless it was absent). */
static char *dup_field(lua_State *L, int index, const char *key, int *bad)
{
    char *copy = NULL;
    size_t len;
    int type = raw_field(L, index, key);
    const char *text = type == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (text != NULL && sendable(text, len))
        copy = strdup(text);
    else if (type != LUA_TNIL)
        *bad = 1;
    lua_pop(L, 1);
    return copy;
}

static int int_field(lua_State *L, int index, const char *key, int32_t *out)
{
    int present = raw_field(L, index, key) == LUA_TNUMBER && lua_isinteger(L, -1);
    if (present)
        *out = (int32_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return present;
}

static int extract_elections(struct epcs_ruleset *ruleset, lua_State *L, int table,
                             struct epcs_rule_error *err)
{
    if (epcs_lua_plain(L, table) != 0) {
        set_error(err, ELECTIONS_FILE, 0, "%s must return epcs.elections{...}", ELECTIONS_FILE);
        return -1;
    }
    size_t count = lua_rawlen(L, table);
    ruleset->elections = calloc(count ? count : 1, sizeof(*ruleset->elections));
    if (ruleset->elections == NULL) {
        set_error(err, ELECTIONS_FILE, 0, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        struct epcs_election *election = &ruleset->elections[i];
        lua_rawgeti(L, table, (lua_Integer)i + 1);
        int entry = lua_gettop(L), bad = epcs_lua_plain(L, entry) != 0, has_day = 0;
        ruleset->election_count++;
        if (!bad) {
            election->id = dup_field(L, entry, "id", &bad);
            election->name = dup_field(L, entry, "name", &bad);
            election->name_ko = dup_field(L, entry, "name_ko", &bad);
            election->kind = dup_field(L, entry, "kind", &bad);
            election->office = dup_field(L, entry, "office", &bad);
            has_day = int_field(L, entry, "day", &election->day);
            election->has_cause_confirmed =
                int_field(L, entry, "cause_confirmed", &election->cause_confirmed);
        }
        lua_pop(L, 1);
        if (bad || election->id == NULL || election->name == NULL || election->name_ko == NULL ||
            election->kind == NULL || election->office == NULL || !has_day) {
            set_error(err, ELECTIONS_FILE, 0,
                      "election %zu lacks id, name, name_ko, kind, office or day as UTF-8 text "
                      "(no NUL bytes) and a day number",
                      i + 1);
            return -1;
        }
    }
    return 0;
}

static int extract_versions(struct epcs_area_rules *area, lua_State *L, int table, const char *file,
                            struct epcs_rule_error *err)
{
    int versions = lua_gettop(L) + 1;
    if (epcs_lua_plain(L, table) != 0 || raw_field(L, table, "versions") != LUA_TTABLE ||
        epcs_lua_plain(L, versions) != 0) {
        set_error(err, file, 0, "%s must return epcs.area{...}", file);
        return -1;
    }
    size_t count = lua_rawlen(L, versions);
    area->versions = calloc(count ? count : 1, sizeof(*area->versions));
    if (area->versions == NULL) {
        set_error(err, file, 0, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        struct epcs_rule_version *version = &area->versions[i];
        lua_rawgeti(L, versions, (lua_Integer)i + 1);
        int entry = lua_gettop(L), bad = epcs_lua_plain(L, entry) != 0, has_day = 0;
        area->version_count++;
        if (!bad) {
            version->id = dup_field(L, entry, "id", &bad);
            has_day = int_field(L, entry, "effective_day", &version->effective_from);
            version->has_promulgated =
                int_field(L, entry, "promulgated_day", &version->promulgated);
        }
        lua_pop(L, 1);
        if (bad || version->id == NULL || !has_day) {
            set_error(err, file, 0,
                      "version %zu lacks an id (UTF-8 text, no NUL bytes) or effective_from",
                      i + 1);
            return -1;
        }
    }
    lua_pop(L, 1);
    return 0;
}

struct extraction {
    struct epcs_engine *engine;
    struct epcs_ruleset *ruleset;
    struct epcs_rule_error *err;
    int rc;
};

/* The elections and every area's versions, read once from the probe engine of a ruleset. */
static int cb_extract(lua_State *L)
{
    struct extraction *x = lua_touserdata(L, 1);
    const struct epcs_plugin_set *plugins = x->ruleset->plugins;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->engine->elections_ref);
    x->rc = extract_elections(x->ruleset, L, lua_gettop(L), x->err);
    lua_pop(L, 1);
    for (size_t i = 0; x->rc == 0 && i < plugins->count; i++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, x->engine->area_refs[i]);
        x->rc = extract_versions(&x->ruleset->areas[i], L, lua_gettop(L),
                                 x->ruleset->files[i + 1].name, x->err);
        lua_pop(L, 1);
    }
    return 0;
}

struct epcs_ruleset *epcs_ruleset_load(const char *dir, const struct epcs_plugin_set *plugins,
                                       const struct epcs_lua_limits *limits,
                                       struct epcs_rule_error *err)
{
    struct epcs_ruleset *ruleset = calloc(1, sizeof(*ruleset));
    if (ruleset == NULL) {
        set_error(err, "", 0, "out of memory");
        return NULL;
    }
    atomic_init(&ruleset->refs, 1);
    ruleset->plugins = plugins;
    ruleset->limits = *limits;
    ruleset->loaded_at = time(NULL);
    ruleset->dir = strdup(dir);
    ruleset->files = calloc(plugins->count + 1, sizeof(*ruleset->files));
    ruleset->areas = calloc(plugins->count ? plugins->count : 1, sizeof(*ruleset->areas));
    if (ruleset->dir == NULL || ruleset->files == NULL || ruleset->areas == NULL) {
        set_error(err, "", 0, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i <= plugins->count; i++) {
        const char *name = i == 0 ? ELECTIONS_FILE : plugins->items[i - 1].desc->rule_file;
        ruleset->file_count++;
        if (read_rule_file(dir, name, &ruleset->files[i], err) != 0)
            goto fail;
    }
    ruleset->label = read_label(dir);
    if (compute_id(ruleset) != 0) {
        set_error(err, "", 0, "cannot compute the ruleset hash");
        goto fail;
    }

    /* A probe compile proves every file loads and gives the host what it serves without Lua. */
    struct epcs_engine *probe = epcs_engine_create(ruleset, err);
    if (probe == NULL)
        goto fail;
    struct extraction extraction = {.engine = probe, .ruleset = ruleset, .err = err};
    int failed = protected_read(probe, cb_extract, &extraction, err) != 0 || extraction.rc != 0;
    epcs_engine_destroy(probe);
    if (failed)
        goto fail;
    return ruleset;
fail:
    epcs_ruleset_release(ruleset);
    return NULL;
}

void epcs_ruleset_retain(struct epcs_ruleset *ruleset)
{
    atomic_fetch_add(&ruleset->refs, 1);
}

void epcs_ruleset_release(struct epcs_ruleset *ruleset)
{
    if (ruleset == NULL || atomic_fetch_sub(&ruleset->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ruleset->file_count; i++) {
        free(ruleset->files[i].name);
        free(ruleset->files[i].source);
    }
    for (size_t i = 0; i < ruleset->election_count; i++) {
        struct epcs_election *election = &ruleset->elections[i];
        free(election->id);
        free(election->name);
        free(election->name_ko);
        free(election->kind);
        free(election->office);
    }
    for (size_t i = 0; ruleset->areas != NULL && i < ruleset->plugins->count; i++) {
        for (size_t v = 0; v < ruleset->areas[i].version_count; v++)
            free(ruleset->areas[i].versions[v].id);
        free(ruleset->areas[i].versions);
    }
    free(ruleset->areas);
    free(ruleset->elections);
    free(ruleset->files);
    free(ruleset->dir);
    free(ruleset->label);
    free(ruleset);
}

const struct epcs_election *epcs_ruleset_election(const struct epcs_ruleset *ruleset,
                                                  const char *id, size_t len)
{
    for (size_t i = 0; i < ruleset->election_count; i++) {
        const char *candidate = ruleset->elections[i].id;
        if (strlen(candidate) == len && memcmp(candidate, id, len) == 0)
            return &ruleset->elections[i];
    }
    return NULL;
}

/*
 * Verdict marks: the line of the rule file that made each verdict, so that a verdict refused
 * after the rules returned it can still be blamed on a line. Kept only for the host's
 * diagnostics, never visible to rules: verdicts made while the files load (constants) for the
 * engine's life, those made while evaluating in a small ring. Finding a line costs a walk of
 * the call stack, so evaluations mark nothing: one whose verdict is refused runs again with
 * `marking` set, which makes the same verdict (rules are pure), this time marked.
 */
static void mark_verdict(struct epcs_engine *engine, lua_State *L, const void *table)
{
    int loading = epcs_lua_loading(L);
    if (!loading && !engine->marking)
        return;
    struct verdict_mark mark = {.table = table, .line = epcs_lua_rule_line(L)};
    if (!loading) {
        engine->ring[engine->ring_used++ % VERDICT_RING] = mark;
        return;
    }
    if (engine->mark_count == engine->mark_capacity) {
        size_t capacity = engine->mark_capacity ? engine->mark_capacity * 2 : 16;
        struct verdict_mark *grown = realloc(engine->marks, capacity * sizeof(*grown));
        if (grown == NULL)
            return; /* a line less in a message, nothing more */
        engine->marks = grown;
        engine->mark_capacity = capacity;
    }
    engine->marks[engine->mark_count++] = mark;
}

/* The line that made verdict `table`, newest first; 0 when unknown. */
static int verdict_line(const struct epcs_engine *engine, const void *table)
{
    size_t ring = engine->ring_used < VERDICT_RING ? engine->ring_used : VERDICT_RING;
    for (size_t i = 0; i < ring; i++) {
        const struct verdict_mark *mark = &engine->ring[(engine->ring_used - 1 - i) % VERDICT_RING];
        if (mark->table == table)
            return mark->line;
    }
    for (size_t i = engine->mark_count; i-- > 0;) {
        if (engine->marks[i].table == table)
            return engine->marks[i].line;
    }
    return 0;
}

/* A fresh table with the entries of the table at `index` (read through a frozen one). */
static void push_copy(lua_State *L, int index)
{
    index = lua_absindex(L, index);
    lua_createtable(L, 0, 12);
    epcs_lua_plain(L, index);
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* epcs.allowed{...}, epcs.prohibited{...}, epcs.needs_facts{...}: the spec with `verdict` set
 * (upvalue 1 names the kind). A spec made while the file loaded (a constant) is read-only and
 * shared by every evaluation, so it is copied; one made while evaluating is the evaluation's
 * own and gets `verdict` in place. C, not Lua, for two reasons: it runs no metamethod of the
 * spec, and it sees the rule's line even through `return epcs.allowed{...}`, a tail call that
 * leaves a Lua constructor no frame of the rule file to look at. */
static int cb_verdict(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "epcs.%s{} takes a table", lua_tostring(L, lua_upvalueindex(1)));
    lua_settop(L, 1);
    if (epcs_lua_frozen(L, 1)) {
        push_copy(L, 1);
        lua_replace(L, 1);
    }
    lua_pushliteral(L, "verdict");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_rawset(L, 1);
    mark_verdict(epcs_lua_owner(L), L, lua_topointer(L, 1));
    return 1;
}

/* host.own_verdict(verdict, from, to, deadline) for epcs.decide: a copy of another area's
 * verdict that the asking rule may change, with the version's window (from, to) or deadline
 * that the host adds to verdicts lacking both; marked with the asking rule's line. */
static int cb_own_verdict(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (epcs_lua_plain(L, 1) != 0) {
        lua_pushliteral(L, "epcs.decide: the area's rules returned a verdict table with a "
                           "metatable; verdicts are plain tables");
        return lua_error(L);
    }
    lua_settop(L, 4);
    push_copy(L, 1);
    if (lua_isinteger(L, 2) && lua_isinteger(L, 3)) {
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, "from");
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "to");
        lua_setfield(L, 5, "window");
    } else if (lua_isinteger(L, 4)) {
        lua_pushvalue(L, 4);
        lua_setfield(L, 5, "deadline");
    }
    mark_verdict(epcs_lua_owner(L), L, lua_topointer(L, 5));
    return 1;
}

/* host.validate(name) for epcs.decide: the plugin of area `name` checks the facts of the
 * evaluation in progress, as it would had the request asked it. A refusal ends the evaluation,
 * which the host then answers as the request's 422 (eval->rejected). */
static int cb_validate(lua_State *L)
{
    struct epcs_engine *engine = epcs_lua_owner(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    struct epcs_eval *eval = engine->current;
    if (eval == NULL)
        return luaL_error(L, "epcs.decide('%s') runs while evaluating a check", name);
    const struct epcs_plugin_set *plugins = engine->ruleset->plugins;
    int index = epcs_plugins_find(plugins, name, len);
    const struct epcs_loaded_plugin *plugin = index >= 0 ? &plugins->items[index] : NULL;
    if (plugin == NULL || plugin->desc->validate == NULL ||
        plugin->desc->validate(plugin->state, eval->facts) == 0)
        return 0;
    if (!eval->facts->rejected)
        epcs_facts_reject(eval->facts, "activity", "area %s refused the facts", name);
    eval->rejected = 1;
    lua_pushfstring(L, "area %s refused the facts: %s", name, eval->facts->message);
    return lua_error(L);
}

/* The C part of the rule API, in place before the prelude (server/rule_api.lua) runs; the
 * prelude gets the host's private helpers as its argument, out of the rules' reach. */
static int open_rule_api(struct epcs_engine *engine, struct epcs_rule_error *err)
{
    static const char *const kinds[] = {"allowed", "prohibited", "needs_facts"};
    lua_State *L = epcs_lua_state(engine->lua);
    lua_getglobal(L, "epcs");
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        lua_pushstring(L, kinds[i]);
        lua_pushcclosure(L, cb_verdict, 1);
        lua_setfield(L, -2, kinds[i]);
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, cb_own_verdict);
    lua_setfield(L, -2, "own_verdict");
    lua_newtable(L);
    for (const char *const *kind = epcs_actor_kinds(); *kind != NULL; kind++) {
        lua_pushstring(L, *kind);
        lua_rawseti(L, -2, (lua_Integer)(kind - epcs_actor_kinds()) + 1);
    }
    lua_setfield(L, -2, "actor_kinds");
    lua_pushcfunction(L, cb_validate);
    lua_setfield(L, -2, "validate");
    if (epcs_lua_run_chunk(engine->lua, "=epcs rule API", epcs_rule_api_source,
                           sizeof(epcs_rule_api_source) - 1, 1, 1, err) != 0 ||
        epcs_lua_freeze_globals(engine->lua, 1, err) != 0)
        return -1;
    /* Taken now, before any rule file runs. */
    lua_getglobal(L, "epcs");
    lua_getfield(L, -1, "_evaluate");
    engine->evaluate_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "_calendar");
    engine->calendar_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "_link_areas");
    engine->link_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "_test_cases");
    engine->test_cases_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return 0;
}

/* Runs a file that must return a table and keeps a registry reference to it. */
static int load_table(struct epcs_engine *engine, const struct epcs_rule_file *file, int *ref,
                      struct epcs_rule_error *err)
{
    lua_State *L = epcs_lua_state(engine->lua);
    if (epcs_lua_run_chunk(engine->lua, file->name, file->source, file->length, 0, 1, err) != 0)
        return -1;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        set_error(err, file->name, 0, "%s must return a table (epcs.area{} or epcs.elections{})",
                  file->name);
        return -1;
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

struct name_check {
    struct epcs_engine *engine;
    size_t area_index;
    int matches;
};

static int cb_check_name(lua_State *L)
{
    struct name_check *c = lua_touserdata(L, 1);
    const char *area = c->engine->ruleset->plugins->items[c->area_index].desc->name;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->engine->area_refs[c->area_index]);
    size_t len = 0;
    const char *name = epcs_lua_plain(L, 2) == 0 && raw_field(L, 2, "name") == LUA_TSTRING
                           ? lua_tolstring(L, -1, &len)
                           : NULL;
    c->matches = name != NULL && len == strlen(area) && memcmp(name, area, len) == 0;
    return 0;
}

/* Loads area `i`'s rule file and proves it defines the plugin's area. */
static int load_area(struct epcs_engine *engine, size_t i, struct epcs_rule_error *err)
{
    const struct epcs_rule_file *file = &engine->ruleset->files[i + 1];
    const char *area = engine->ruleset->plugins->items[i].desc->name;
    struct name_check check = {.engine = engine, .area_index = i};
    if (load_table(engine, file, &engine->area_refs[i], err) != 0 ||
        protected_read(engine, cb_check_name, &check, err) != 0)
        return -1;
    if (!check.matches) {
        set_error(err, file->name, 0, "%s must define area '%s' (epcs.area{name = \"%s\"})",
                  file->name, area, area);
        return -1;
    }
    return 0;
}

/* Hands every area to the rule API by its plugin's name, once all have loaded: only now can
 * epcs.decide reach them. */
static int link_areas(struct epcs_engine *engine, struct epcs_rule_error *err)
{
    const struct epcs_plugin_set *plugins = engine->ruleset->plugins;
    lua_State *L = epcs_lua_state(engine->lua);
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine->link_ref);
    lua_createtable(L, 0, (int)plugins->count);
    for (size_t i = 0; i < plugins->count; i++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, engine->area_refs[i]);
        lua_setfield(L, -2, plugins->items[i].desc->name);
    }
    return epcs_lua_call(engine->lua, 1, 0, err);
}

struct epcs_engine *epcs_engine_create(struct epcs_ruleset *ruleset, struct epcs_rule_error *err)
{
    const struct epcs_plugin_set *plugins = ruleset->plugins;
    struct epcs_engine *engine = calloc(1, sizeof(*engine));
    if (engine == NULL) {
        set_error(err, "", 0, "out of memory");
        return NULL;
    }
    epcs_ruleset_retain(ruleset);
    engine->ruleset = ruleset;
    engine->area_refs = calloc(plugins->count ? plugins->count : 1, sizeof(int));
    engine->lua = epcs_lua_create(&ruleset->limits);
    if (engine->area_refs == NULL || engine->lua == NULL) {
        set_error(err, "", 0, "out of memory creating a Lua state");
        goto fail;
    }
    epcs_lua_set_owner(engine->lua, engine);
    if (open_rule_api(engine, err) != 0 ||
        load_table(engine, &ruleset->files[0], &engine->elections_ref, err) != 0)
        goto fail;
    for (size_t i = 0; i < plugins->count; i++) {
        if (load_area(engine, i, err) != 0)
            goto fail;
    }
    if (link_areas(engine, err) != 0)
        goto fail;
    return engine;
fail:
    epcs_engine_destroy(engine);
    return NULL;
}

struct epcs_ruleset *epcs_engine_ruleset(const struct epcs_engine *engine)
{
    return engine->ruleset;
}

size_t epcs_engine_memory(struct epcs_engine *engine)
{
    return epcs_lua_memory(engine->lua);
}

void epcs_engine_destroy(struct epcs_engine *engine)
{
    if (engine == NULL)
        return;
    epcs_lua_destroy(engine->lua);
    free(engine->area_refs);
    for (size_t i = 0; engine->cache != NULL && i < engine->cache_slots; i++)
        free(engine->cache[i].bytes);
    free(engine->cache);
    epcs_buf_free(&engine->cache_key);
    epcs_buf_free(&engine->cache_miss);
    epcs_buf_free(&engine->packed);
    free(engine->marks);
    epcs_ruleset_release(engine->ruleset);
    free(engine);
}

void epcs_verdict_cache_configure(size_t slots)
{
    size_t rounded = 1;
    while (rounded < slots)
        rounded <<= 1;
    verdict_cache_slots = slots == 0 ? 0 : rounded;
}

/* The question as bytes: area, election, date and every fact with its value, in order. */
static void cache_key(struct epcs_buf *key, const struct epcs_eval *eval)
{
    const struct epcs_facts *facts = eval->facts;
    epcs_buf_reset(key);
    uint32_t area = (uint32_t)eval->area_index;
    epcs_buf_append(key, &area, sizeof(area));
    epcs_buf_append(key, &eval->election, sizeof(eval->election));
    epcs_buf_append(key, &eval->date, sizeof(eval->date));
    for (size_t i = 0; i < facts->count; i++) {
        const struct epcs_fact *fact = &facts->items[i];
        epcs_buf_append(key, &fact->entry, sizeof(fact->entry));
        switch (fact->entry->type) {
        case EPCS_FACT_BOOL: {
            char value = fact->value->via.boolean ? 1 : 0;
            epcs_buf_append(key, &value, 1);
            break;
        }
        case EPCS_FACT_DATE:
            epcs_buf_append(key, &fact->day, sizeof(fact->day));
            break;
        case EPCS_FACT_ENUM:
        case EPCS_FACT_STRING: {
            uint32_t len = fact->value->via.str.size;
            epcs_buf_append(key, &len, sizeof(len));
            epcs_buf_append(key, fact->value->via.str.ptr, len);
            break;
        }
        }
    }
}

/* Writes a remembered verdict: its entries under a header counting the decision id too,
 * which the caller appends. */
static void emit_verdict(struct epcs_eval *eval, const char *entries, size_t len, uint32_t fields,
                         enum epcs_verdict_kind kind)
{
    msgpack_packer *pk = eval->packer;
    msgpack_pack_map(pk, fields + (eval->decision_follows != 0));
    pk->callback(pk->data, entries, len);
    eval->verdict = kind;
}

static void push_election(lua_State *L, const struct epcs_election *election)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, election->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, election->day);
    lua_setfield(L, -2, "day");
    lua_pushstring(L, election->kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, election->office);
    lua_setfield(L, -2, "office");
    if (election->has_cause_confirmed) {
        lua_pushinteger(L, election->cause_confirmed);
        lua_setfield(L, -2, "cause_confirmed");
    }
}

/* q = {date, election, actor = {...}, activity = {...}}; dates become day numbers. */
static void push_query(lua_State *L, const struct epcs_eval *eval)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, eval->date);
    lua_setfield(L, -2, "date");
    push_election(L, eval->election);
    lua_setfield(L, -2, "election");
    lua_newtable(L);
    int actor = lua_gettop(L);
    lua_newtable(L);
    int activity = lua_gettop(L);
    for (size_t i = 0; i < eval->facts->count; i++) {
        const struct epcs_fact *fact = &eval->facts->items[i];
        const char *path = fact->entry->path;
        int target = path[1] == 'c' && path[2] == 't' && path[3] == 'o' ? actor : activity;
        const char *name = strchr(path, '.') + 1;
        switch (fact->entry->type) {
        case EPCS_FACT_BOOL:
            lua_pushboolean(L, fact->value->via.boolean);
            break;
        case EPCS_FACT_DATE:
            lua_pushinteger(L, fact->day);
            break;
        case EPCS_FACT_ENUM:
        case EPCS_FACT_STRING:
            lua_pushlstring(L, fact->value->via.str.ptr, fact->value->via.str.size);
            break;
        }
        lua_setfield(L, target, name);
    }
    lua_setfield(L, -3, "activity");
    lua_setfield(L, -2, "actor");
}

/*
 * Verdict `actions` say what the commission sends whom (a deletion request to the platform, a
 * referral to prosecutors); partners' case stores act on them as data. So they are a list of
 * maps whose values are strings, numbers, booleans or maps of those, ACTION_MAX_DEPTH maps deep
 * at most: anything else has no faithful msgpack and JSON form, or is a mistake in the rule.
 */
#define ACTION_MAX_DEPTH 2
/* Packing sorts keys by repeated scans; a map this wide is already a mistake. */
#define ACTION_MAX_FIELDS 32
/* Stack slots the check and the packing use at most: the list entry and a key and value per
 * level of maps, with room to spare. Reserved once by the check, before anything is packed. */
#define ACTION_STACK_SLOTS 16

struct action_check {
    char path[96];
    char *why;
    size_t why_size;
};

static int action_refused(struct action_check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int action_refused(struct action_check *c, const char *fmt, ...)
{
    char what[64];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof(what), fmt, args);
    va_end(args);
    snprintf(c->why, c->why_size,
             "returned actions whose %s is %s; actions are a list of maps of strings, numbers, "
             "booleans and maps of those, %d deep",
             c->path, what, ACTION_MAX_DEPTH);
    return -1;
}

static int check_action_map(lua_State *L, int map, int depth, struct action_check *c);

static int check_action_value(lua_State *L, int index, int depth, struct action_check *c)
{
    size_t len;
    const char *str;
    switch (lua_type(L, index)) {
    case LUA_TBOOLEAN:
        return 0;
    case LUA_TNUMBER:
        /* NaN and infinities have no JSON form. */
        if (!lua_isinteger(L, index) && !isfinite(lua_tonumber(L, index)))
            return action_refused(c, "a number that is not finite");
        return 0;
    case LUA_TSTRING:
        str = lua_tolstring(L, index, &len);
        if (memchr(str, '\0', len) != NULL)
            return action_refused(c, "a string holding a NUL byte");
        return epcs_utf8_valid(str, len) ? 0 : action_refused(c, "a string that is not UTF-8");
    case LUA_TTABLE:
        if (depth >= ACTION_MAX_DEPTH)
            return action_refused(c, "a map nested deeper");
        if (epcs_lua_plain(L, index) != 0)
            return action_refused(c, "a table with a metatable");
        return check_action_map(L, index, depth + 1, c);
    default:
        return action_refused(c, "a %s", lua_typename(L, lua_type(L, index)));
    }
}

static int check_action_map(lua_State *L, int map, int depth, struct action_check *c)
{
    size_t base = strlen(c->path), fields = 0;
    lua_pushnil(L);
    while (lua_next(L, map) != 0) {
        size_t len = 0;
        /* lua_tolstring would turn a number key into a string and break the traversal. */
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &len) : NULL;
        int rc;
        if (key == NULL || len == 0 || memchr(key, '\0', len) != NULL || !epcs_utf8_valid(key, len))
            rc = action_refused(c, "a map with a key that is not a non-empty UTF-8 string");
        else if (++fields > ACTION_MAX_FIELDS)
            rc = action_refused(c, "a map of more than %d keys", ACTION_MAX_FIELDS);
        else {
            snprintf(c->path + base, sizeof(c->path) - base, ".%.*s", (int)len, key);
            rc = check_action_value(L, lua_gettop(L), depth, c);
            c->path[base] = '\0';
        }
        lua_pop(L, 1);
        if (rc != 0) {
            lua_pop(L, 1);
            return -1;
        }
    }
    return 0;
}

/* Checks field `actions` and leaves the list on the stack for packing (*index, 0 when absent). */
static int actions_field(lua_State *L, int table, int *index, char *why, size_t why_size)
{
    struct action_check c = {.path = "actions", .why = why, .why_size = why_size};
    lua_pushliteral(L, "actions");
    int type = lua_rawget(L, table);
    *index = 0;
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    int list = lua_gettop(L);
    if (type != LUA_TTABLE)
        return lua_pop(L, 1), action_refused(&c, "a %s, not a list", lua_typename(L, type));
    if (epcs_lua_plain(L, list) != 0)
        return lua_pop(L, 1), action_refused(&c, "a table with a metatable");
    if (!lua_checkstack(L, ACTION_STACK_SLOTS)) {
        lua_pop(L, 1);
        return snprintf(why, why_size, "returned actions beyond the Lua stack"), -1;
    }
    lua_Integer count = (lua_Integer)lua_rawlen(L, list);
    lua_pushnil(L);
    while (lua_next(L, list) != 0) {
        lua_Integer i = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
        int rc;
        if (i < 1 || i > count) {
            rc = action_refused(&c, "a table with keys that are not list positions");
        } else if (lua_type(L, -1) != LUA_TTABLE) {
            snprintf(c.path, sizeof(c.path), "actions[%lld]", (long long)i);
            rc = action_refused(&c, "a %s, not a map", lua_typename(L, lua_type(L, -1)));
        } else {
            snprintf(c.path, sizeof(c.path), "actions[%lld]", (long long)i);
            rc = epcs_lua_plain(L, -1) != 0 ? action_refused(&c, "a table with a metatable")
                                            : check_action_map(L, lua_gettop(L), 1, &c);
        }
        lua_pop(L, 1);
        if (rc != 0) {
            lua_settop(L, list - 1);
            return -1;
        }
    }
    *index = list;
    return 0;
}

/* What a rule returned, checked before anything is packed, so a bad verdict fails closed. */
struct rule_verdict {
    enum epcs_verdict_kind kind;
    const char *article, *reason, *reason_ko, *exception, *penalty, *rule;
    size_t article_len, reason_len, reason_ko_len, exception_len, penalty_len, rule_len;
    int has_window;
    lua_Integer from, to, deadline;
    int obligations, missing, actions; /* stack indexes of the lists, 0 when absent */
};

static int valid_day(lua_Integer day)
{
    return day >= epcs_days_from_civil(EPCS_DATE_MIN_YEAR, 1, 1) &&
           day <= epcs_days_from_civil(EPCS_DATE_MAX_YEAR, 12, 31);
}

/* Refuses with `why` when the table at `index` has a metatable; `what` names it. */
static int plain_part(lua_State *L, int index, const char *what, char *why, size_t why_size)
{
    if (epcs_lua_plain(L, index) == 0)
        return 0;
    snprintf(why, why_size, "returned %s with a metatable; verdicts are plain tables", what);
    return -1;
}

/* String field `key`, read raw: NULL when absent; anything but a string sets *bad. A string
 * that may not go out (not UTF-8, or holding a NUL byte) is refused with `why`, which begins
 * with `owner` ("returned"). The string stays alive: the table holding it is still on the
 * stack. */
static int text_field(lua_State *L, int table, const char *key, const char **value, size_t *len,
                      int *bad, const char *owner, char *why, size_t why_size)
{
    int type = raw_field(L, table, key);
    *value = NULL;
    if (type == LUA_TSTRING)
        *value = lua_tolstring(L, -1, len);
    else if (type != LUA_TNIL)
        *bad = 1;
    lua_pop(L, 1);
    if (*value == NULL || sendable(*value, *len))
        return 0;
    snprintf(why, why_size, "%s %s %s %s", owner, strchr("aeiou", key[0]) != NULL ? "an" : "a", key,
             memchr(*value, '\0', *len) != NULL ? "holding a NUL byte" : "that is not valid UTF-8");
    return -1;
}

/* List field `key` (obligations, missing): a plain list of sendable strings, left on the stack
 * for packing (*index, 0 when absent). Anything but strings sets *bad. */
static int list_field(lua_State *L, int table, const char *key, int *index, int *bad, char *why,
                      size_t why_size)
{
    int type = raw_field(L, table, key);
    *index = 0;
    if (type == LUA_TNIL || type != LUA_TTABLE) {
        *bad |= type != LUA_TNIL;
        lua_pop(L, 1);
        return 0;
    }
    int list = lua_gettop(L);
    if (plain_part(L, list, key, why, why_size) != 0)
        return -1;
    lua_Integer count = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= count && !*bad; i++) {
        size_t len = 0;
        const char *item =
            lua_rawgeti(L, list, i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (item == NULL) {
            *bad = 1;
        } else if (!sendable(item, len)) {
            snprintf(why, why_size,
                     "returned %s whose item %lld is not UTF-8 text without NUL "
                     "bytes",
                     key, (long long)i);
            return -1;
        }
        lua_pop(L, 1);
    }
    *index = list;
    return 0;
}

static const char *const verdict_fields[] = {
    "verdict",   "article",     "reason",  "reason_ko", "window",  "deadline",
    "exception", "obligations", "missing", "penalty",   "actions", NULL,
};

/* Refuses keys that are no verdict field: a typo (`reson`) must not pass unnoticed. */
static int known_fields(lua_State *L, int table, char *why, size_t why_size)
{
    lua_pushnil(L);
    while (lua_next(L, table) != 0) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t key_len;
            const char *key = lua_tolstring(L, -2, &key_len);
            for (const char *const *f = verdict_fields; *f != NULL && !known; f++)
                known = key[0] == (*f)[0] && strlen(*f) == key_len && memcmp(key, *f, key_len) == 0;
        }
        if (!known) {
            size_t len = 0;
            const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &len) : NULL;
            snprintf(why, why_size, "returned an unknown verdict field '%s'",
                     key != NULL && sendable(key, len) ? key : "?");
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int read_kind(lua_State *L, int table, struct rule_verdict *v, char *why, size_t why_size)
{
    size_t len;
    const char *kind = NULL;
    if (raw_field(L, table, "verdict") == LUA_TSTRING)
        kind = lua_tolstring(L, -1, &len);
    if (kind != NULL && strcmp(kind, "allowed") == 0)
        v->kind = EPCS_VERDICT_ALLOWED;
    else if (kind != NULL && strcmp(kind, "prohibited") == 0)
        v->kind = EPCS_VERDICT_PROHIBITED;
    else if (kind != NULL && strcmp(kind, "needs_facts") == 0)
        v->kind = EPCS_VERDICT_NEEDS_FACTS;
    else
        return snprintf(why, why_size, "returned verdict '%s'",
                        kind != NULL && sendable(kind, len) ? kind : "(none)"),
               -1;
    lua_pop(L, 1);
    return 0;
}

/* The window or deadline: the verdict's own, else the version's (`defaults`, the from, to and
 * deadline the rule API returned after the verdict). */
static int read_period(lua_State *L, int table, int defaults, struct rule_verdict *v, char *why,
                       size_t why_size)
{
    int window = lua_gettop(L) + 1;
    int type = raw_field(L, table, "window");
    if (type == LUA_TTABLE) {
        if (plain_part(L, window, "a window", why, why_size) != 0)
            return -1;
        if (raw_field(L, window, "from") != LUA_TNUMBER || !lua_isinteger(L, -1) ||
            raw_field(L, window, "to") != LUA_TNUMBER || !lua_isinteger(L, -1))
            return snprintf(why, why_size, "returned a window without day numbers"), -1;
        v->has_window = 1;
        v->from = lua_tointeger(L, -2);
        v->to = lua_tointeger(L, -1);
    } else if (type != LUA_TNIL) {
        return snprintf(why, why_size, "returned a window without day numbers"), -1;
    } else if (raw_field(L, table, "deadline") != LUA_TNIL) {
        if (!lua_isinteger(L, -1))
            return snprintf(why, why_size, "returned neither a window nor a deadline"), -1;
        v->deadline = lua_tointeger(L, -1);
    } else if (lua_isinteger(L, defaults) && lua_isinteger(L, defaults + 1)) {
        v->has_window = 1;
        v->from = lua_tointeger(L, defaults);
        v->to = lua_tointeger(L, defaults + 1);
    } else if (lua_isinteger(L, defaults + 2)) {
        v->deadline = lua_tointeger(L, defaults + 2);
    } else {
        return snprintf(why, why_size, "returned neither a window nor a deadline"), -1;
    }
    lua_settop(L, window - 1);
    if (v->has_window ? !valid_day(v->from) || !valid_day(v->to) : !valid_day(v->deadline))
        return snprintf(why, why_size, "returned a %s outside the supported years",
                        v->has_window ? "window" : "deadline"),
               -1;
    return 0;
}

/* Reads the verdict at `table` into `v`, refusing anything that could not go out as it is. */
static int read_verdict(lua_State *L, int table, int defaults, struct rule_verdict *v, char *why,
                        size_t why_size)
{
    int bad = 0;
    memset(v, 0, sizeof(*v));
    if (plain_part(L, table, "a verdict table", why, why_size) != 0 ||
        known_fields(L, table, why, why_size) != 0 || read_kind(L, table, v, why, why_size) != 0)
        return -1;
    static const char *const texts[] = {"article", "reason", "reason_ko", "exception", "penalty"};
    const char **values[] = {&v->article, &v->reason, &v->reason_ko, &v->exception, &v->penalty};
    size_t *lens[] = {&v->article_len, &v->reason_len, &v->reason_ko_len, &v->exception_len,
                      &v->penalty_len};
    for (size_t f = 0; f < sizeof(texts) / sizeof(texts[0]); f++) {
        if (text_field(L, table, texts[f], values[f], lens[f], &bad, "returned", why, why_size) !=
            0)
            return -1;
    }
    if (bad || v->article == NULL || v->reason == NULL || v->article_len == 0)
        return snprintf(why, why_size, "returned a verdict without string article and reason"), -1;
    if (read_period(L, table, defaults, v, why, why_size) != 0 ||
        list_field(L, table, "obligations", &v->obligations, &bad, why, why_size) != 0 ||
        list_field(L, table, "missing", &v->missing, &bad, why, why_size) != 0)
        return -1;
    if (bad)
        return snprintf(why, why_size,
                        "returned obligations or missing that are not lists of strings"),
               -1;
    if (actions_field(L, table, &v->actions, why, why_size) != 0)
        return -1;
    if (v->kind == EPCS_VERDICT_NEEDS_FACTS && (v->missing == 0 || lua_rawlen(L, v->missing) == 0))
        return snprintf(why, why_size, "returned needs_facts without the missing facts"), -1;
    return 0;
}

static void pack_list(msgpack_packer *pk, lua_State *L, int index)
{
    lua_Integer count = (lua_Integer)lua_rawlen(L, index);
    msgpack_pack_array(pk, (size_t)count);
    for (lua_Integer i = 1; i <= count; i++) {
        size_t len;
        lua_rawgeti(L, index, i);
        const char *item = lua_tolstring(L, -1, &len);
        epcs_pack_str(pk, item, len);
        lua_pop(L, 1);
    }
}

/* True when key a sorts before key b (bytewise, then shorter first). */
static int key_before(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int cmp = memcmp(a, b, a_len < b_len ? a_len : b_len);
    return cmp < 0 || (cmp == 0 && a_len < b_len);
}

static void pack_action_map(msgpack_packer *pk, lua_State *L, int map);

static void pack_action_value(msgpack_packer *pk, lua_State *L, int index)
{
    size_t len;
    const char *str;
    switch (lua_type(L, index)) {
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, index))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, index))
            msgpack_pack_int64(pk, lua_tointeger(L, index));
        else
            msgpack_pack_double(pk, lua_tonumber(L, index));
        break;
    case LUA_TSTRING:
        str = lua_tolstring(L, index, &len);
        epcs_pack_str(pk, str, len);
        break;
    default: /* a table, as actions_field checked */
        pack_action_map(pk, L, index);
    }
}

/* Packs the checked map at `map` with its keys in byte order. Each worker's Lua state hashes
 * strings with its own seed, so table order differs between workers, yet the same verdict must
 * give the same bytes: the decision log stores each distinct answer once, and replays compare
 * them. Selecting the next key by a fresh scan needs no memory and no stack but lua_next's. */
static void pack_action_map(msgpack_packer *pk, lua_State *L, int map)
{
    size_t count = 0, len;
    lua_pushnil(L);
    while (lua_next(L, map) != 0) {
        lua_pop(L, 1);
        count++;
    }
    msgpack_pack_map(pk, count);
    const char *last = NULL;
    size_t last_len = 0;
    for (size_t n = 0; n < count; n++) {
        const char *next = NULL;
        size_t next_len = 0;
        lua_pushnil(L);
        while (lua_next(L, map) != 0) {
            const char *key = lua_tolstring(L, -2, &len);
            if ((last == NULL || key_before(last, last_len, key, len)) &&
                (next == NULL || key_before(key, len, next, next_len)))
                next = key, next_len = len;
            lua_pop(L, 1);
        }
        /* `next` stays valid: it is a key of the table, which is on the stack. */
        epcs_pack_str(pk, next, next_len);
        lua_pushnil(L);
        while (lua_next(L, map) != 0) {
            const char *key = lua_tolstring(L, -2, &len);
            if (len == next_len && memcmp(key, next, len) == 0) {
                pack_action_value(pk, L, lua_gettop(L));
                lua_pop(L, 2);
                break;
            }
            lua_pop(L, 1);
        }
        last = next;
        last_len = next_len;
    }
}

static void pack_actions(msgpack_packer *pk, lua_State *L, int list)
{
    lua_Integer count = (lua_Integer)lua_rawlen(L, list);
    msgpack_pack_array(pk, (size_t)count);
    for (lua_Integer i = 1; i <= count; i++) {
        lua_rawgeti(L, list, i);
        pack_action_map(pk, L, lua_gettop(L));
        lua_pop(L, 1);
    }
}

static void pack_verdict(msgpack_packer *pk, const struct epcs_eval *eval, lua_State *L,
                         const struct rule_verdict *v)
{
    const struct epcs_ruleset *ruleset = eval->engine->ruleset;
    const char *area = ruleset->plugins->items[eval->area_index].desc->name;
    size_t fields = 8 + (v->reason_ko != NULL) + (v->exception != NULL) + (v->penalty != NULL) +
                    (v->obligations != 0) + (v->missing != 0) + (v->actions != 0) +
                    (eval->decision_follows != 0);
    msgpack_pack_map(pk, fields);
    epcs_pack_cstr(pk, "verdict");
    epcs_pack_cstr(pk, epcs_verdict_name(v->kind));
    epcs_pack_cstr(pk, "area");
    epcs_pack_cstr(pk, area);
    epcs_pack_cstr(pk, "article");
    epcs_pack_str(pk, v->article, v->article_len);
    epcs_pack_cstr(pk, "rule");
    epcs_pack_str(pk, v->rule, v->rule_len);
    epcs_pack_cstr(pk, "reason");
    epcs_pack_str(pk, v->reason, v->reason_len);
    if (v->reason_ko != NULL) {
        epcs_pack_cstr(pk, "reason_ko");
        epcs_pack_str(pk, v->reason_ko, v->reason_ko_len);
    }
    if (v->has_window) {
        epcs_pack_cstr(pk, "window");
        msgpack_pack_map(pk, 2);
        epcs_pack_cstr(pk, "from");
        epcs_pack_day(pk, (int32_t)v->from);
        epcs_pack_cstr(pk, "to");
        epcs_pack_day(pk, (int32_t)v->to);
    } else {
        epcs_pack_cstr(pk, "deadline");
        epcs_pack_day(pk, (int32_t)v->deadline);
    }
    if (v->exception != NULL) {
        epcs_pack_cstr(pk, "exception");
        epcs_pack_str(pk, v->exception, v->exception_len);
    }
    if (v->obligations != 0) {
        epcs_pack_cstr(pk, "obligations");
        pack_list(pk, L, v->obligations);
    }
    if (v->missing != 0) {
        epcs_pack_cstr(pk, "missing");
        pack_list(pk, L, v->missing);
    }
    if (v->penalty != NULL) {
        epcs_pack_cstr(pk, "penalty");
        epcs_pack_str(pk, v->penalty, v->penalty_len);
    }
    if (v->actions != 0) {
        epcs_pack_cstr(pk, "actions");
        pack_actions(pk, L, v->actions);
    }
    epcs_pack_cstr(pk, "election");
    msgpack_pack_map(pk, 2);
    epcs_pack_cstr(pk, "id");
    epcs_pack_cstr(pk, eval->election->id);
    epcs_pack_cstr(pk, "day");
    epcs_pack_day(pk, (int32_t)eval->election->day);
    epcs_pack_cstr(pk, "ruleset");
    epcs_pack_cstr(pk, ruleset->id);
}

/* One evaluation as the protected call sees it: the verdict lands in engine->packed. */
struct verdict_job {
    struct epcs_eval *eval;
    /* Set when the rules returned something the host refused: why, and by which rule. */
    int refused;
    const void *table;
    char rule[128];
    char why[320];
};

/* Asks the rule API for the verdict (_evaluate returns it, the rule version's id and the
 * version's window or deadline), checks it and packs it into the engine's buffer. */
static int cb_run_rules(lua_State *L)
{
    struct verdict_job *job = lua_touserdata(L, 1);
    struct epcs_eval *eval = job->eval;
    struct epcs_engine *engine = eval->engine;
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine->evaluate_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine->area_refs[eval->area_index]);
    push_query(L, eval);
    lua_call(L, 2, 5);
    struct rule_verdict v;
    size_t rule_len = 0;
    const char *rule = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &rule_len) : NULL;
    job->table = lua_topointer(L, 2);
    if (lua_type(L, 2) != LUA_TTABLE || rule == NULL || !sendable(rule, rule_len))
        snprintf(job->why, sizeof(job->why), "returned no verdict table");
    else if (read_verdict(L, 2, 4, &v, job->why, sizeof(job->why)) == 0)
        job->refused = 0;
    if (job->refused) {
        snprintf(job->rule, sizeof(job->rule), "%s",
                 rule != NULL && sendable(rule, rule_len) ? rule : "?");
        return 0;
    }
    v.rule = rule;
    v.rule_len = rule_len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &engine->packed, epcs_buf_msgpack_write);
    pack_verdict(&pk, eval, L, &v);
    eval->verdict = v.kind;
    return 0;
}

/* One run of the rules for `eval`; 0, or -1 with eval->error filled when they failed. */
static int run_rules_once(struct epcs_eval *eval, struct verdict_job *job)
{
    struct epcs_engine *engine = eval->engine;
    *job = (struct verdict_job){.eval = eval, .refused = 1};
    epcs_buf_reset(&engine->packed);
    engine->ring_used = 0;
    engine->current = eval;
    int rc = protected_read(engine, cb_run_rules, job, &eval->error);
    engine->current = NULL;
    return rc;
}

/* The line that made the refused verdict of `job`: a constant's is known; for a verdict made
 * while evaluating, the evaluation runs again with marking on (see mark_verdict). */
static int refused_line(struct epcs_eval *eval, const struct verdict_job *job)
{
    struct epcs_engine *engine = eval->engine;
    int line = verdict_line(engine, job->table);
    if (line > 0)
        return line;
    struct verdict_job again;
    engine->marking = 1;
    int rc = run_rules_once(eval, &again);
    engine->marking = 0;
    if (rc != 0 || !again.refused || strcmp(again.why, job->why) != 0)
        return 0;
    return verdict_line(engine, again.table);
}

int epcs_engine_run_rules(struct epcs_eval *eval)
{
    struct epcs_engine *engine = eval->engine;
    const char *file = engine->ruleset->files[eval->area_index + 1].name;
    struct verdict_job job;
    if (run_rules_once(eval, &job) != 0) {
        eval->failed = 1;
        if (eval->error.file[0] == '\0')
            snprintf(eval->error.file, sizeof(eval->error.file), "%s", file);
        return -1;
    }
    if (job.refused) {
        int line = refused_line(eval, &job);
        char place[160];
        snprintf(place, sizeof(place), line > 0 ? "%s:%d" : "%s", file, line);
        set_error(&eval->error, file, line, "%s: rule %s %s", place, job.rule, job.why);
        eval->failed = 1;
        return -1;
    }
    /* Only a whole verdict goes out: a failure above wrote nothing to the caller's packer. */
    eval->packer->callback(eval->packer->data, engine->packed.data, engine->packed.len);
    return 0;
}

/* One calendar listing in the protected call: the items land in engine->packed. */
struct calendar_job {
    struct epcs_calendar *calendar;
    int refused;
    char why[320];
};

/* Checks calendar item `item` and packs it; 0, or -1 with `why` filled. */
static int pack_calendar_item(msgpack_packer *pk, lua_State *L, int item, int number,
                              const char *area, char *why, size_t why_size)
{
    static const char *const text_fields[] = {"article", "rule", "title", "title_ko"};
    const char *text[4];
    size_t len[4];
    int32_t from = 0, to = 0, day = 0;
    int bad = epcs_lua_plain(L, item) != 0;
    char owner[64];
    snprintf(owner, sizeof(owner), "returned calendar item %d with", number);
    for (size_t f = 0; f < 4 && !bad; f++) {
        if (text_field(L, item, text_fields[f], &text[f], &len[f], &bad, owner, why, why_size) != 0)
            return -1;
    }
    int is_window = !bad && int_field(L, item, "from", &from) && int_field(L, item, "to", &to);
    if (bad || text[0] == NULL || text[1] == NULL || text[2] == NULL ||
        (is_window ? !valid_day(from) || !valid_day(to)
                   : !int_field(L, item, "day", &day) || !valid_day(day))) {
        snprintf(why, why_size,
                 "returned calendar item %d without article, rule, title and from/to or day",
                 number);
        return -1;
    }
    msgpack_pack_map(pk, 5 + (is_window ? 2 : 1) + (text[3] != NULL));
    epcs_pack_cstr(pk, "area");
    epcs_pack_cstr(pk, area);
    epcs_pack_cstr(pk, "kind");
    epcs_pack_cstr(pk, is_window ? "window" : "deadline");
    for (size_t f = 0; f < 4; f++) {
        if (text[f] != NULL) {
            epcs_pack_cstr(pk, text_fields[f]);
            epcs_pack_str(pk, text[f], len[f]);
        }
    }
    if (is_window) {
        epcs_pack_cstr(pk, "from");
        epcs_pack_day(pk, (int32_t)from);
        epcs_pack_cstr(pk, "to");
        epcs_pack_day(pk, (int32_t)to);
    } else {
        epcs_pack_cstr(pk, "day");
        epcs_pack_day(pk, (int32_t)day);
    }
    return 0;
}

static int cb_run_calendar(lua_State *L)
{
    struct calendar_job *job = lua_touserdata(L, 1);
    struct epcs_calendar *calendar = job->calendar;
    struct epcs_engine *engine = calendar->engine;
    const char *area = engine->ruleset->plugins->items[calendar->area_index].desc->name;
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine->calendar_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine->area_refs[calendar->area_index]);
    push_election(L, calendar->election);
    lua_call(L, 2, 1);
    if (lua_type(L, 2) != LUA_TTABLE || epcs_lua_plain(L, 2) != 0) {
        snprintf(job->why, sizeof(job->why), "returned a calendar that is not a plain list");
        job->refused = 1;
        return 0;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &engine->packed, epcs_buf_msgpack_write);
    lua_Integer count = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= count; i++) {
        lua_rawgeti(L, 2, i);
        if (pack_calendar_item(&pk, L, 3, (int)i, area, job->why, sizeof(job->why)) != 0) {
            job->refused = 1;
            return 0;
        }
        lua_settop(L, 2);
        calendar->item_count++;
    }
    return 0;
}

int epcs_engine_run_calendar(struct epcs_calendar *calendar)
{
    struct epcs_engine *engine = calendar->engine;
    const char *file = engine->ruleset->files[calendar->area_index + 1].name;
    struct calendar_job job = {.calendar = calendar};
    epcs_buf_reset(&engine->packed);
    calendar->item_count = 0;
    int rc = protected_read(engine, cb_run_calendar, &job, &calendar->error);
    if (rc == 0 && job.refused)
        set_error(&calendar->error, file, 0, "%s: %s", file, job.why);
    if (rc != 0 || job.refused) {
        calendar->failed = 1;
        calendar->item_count = 0;
        if (calendar->error.file[0] == '\0')
            snprintf(calendar->error.file, sizeof(calendar->error.file), "%s", file);
        return -1;
    }
    calendar->packer->callback(calendar->packer->data, engine->packed.data, engine->packed.len);
    return 0;
}

enum epcs_area_outcome epcs_evaluate_area(const struct epcs_plugin_set *plugins,
                                          struct epcs_facts *facts, struct epcs_eval *eval)
{
    const struct epcs_loaded_plugin *plugin = &plugins->items[eval->area_index];
    const struct epcs_fact *kind = epcs_facts_find(facts, "activity.kind");
    if (kind != NULL &&
        !epcs_plugin_covers(plugin->desc, kind->value->via.str.ptr, kind->value->via.str.size)) {
        epcs_facts_reject(facts, "activity.kind", "area %s does not cover activity kind '%.*s'",
                          plugin->desc->name, (int)kind->value->via.str.size,
                          kind->value->via.str.ptr);
        return EPCS_AREA_REJECTED;
    }
    if (plugin->desc->validate != NULL && plugin->desc->validate(plugin->state, facts) != 0) {
        if (!facts->rejected)
            epcs_facts_reject(facts, "activity", "area %s refused the facts", plugin->desc->name);
        return EPCS_AREA_REJECTED;
    }
    struct epcs_engine *engine = eval->engine;
    struct verdict_cache_entry *slot = NULL;
    uint64_t hash = 0;
    if (verdict_cache_slots > 0 && engine->cache == NULL) {
        engine->cache = calloc(verdict_cache_slots, sizeof(*engine->cache));
        engine->cache_slots = engine->cache != NULL ? verdict_cache_slots : 0;
    }
    if (engine->cache_slots > 0) {
        cache_key(&engine->cache_key, eval);
        hash = epcs_hash_bytes(engine->cache_key.data, engine->cache_key.len);
        slot = &engine->cache[hash & (engine->cache_slots - 1)];
        if (slot->bytes != NULL && slot->hash == hash && slot->key_len == engine->cache_key.len &&
            memcmp(slot->bytes, engine->cache_key.data, slot->key_len) == 0) {
            emit_verdict(eval, slot->bytes + slot->key_len, slot->value_len, slot->fields,
                         slot->kind);
            return EPCS_AREA_DECIDED;
        }
    }
    /* A miss is decided into the engine's own buffer without the decision id, remembered,
     * then written out as a hit would be. */
    msgpack_packer *out = eval->packer, miss_packer;
    int decision_follows = eval->decision_follows;
    if (slot != NULL) {
        epcs_buf_reset(&engine->cache_miss);
        msgpack_packer_init(&miss_packer, &engine->cache_miss, epcs_buf_msgpack_write);
        eval->packer = &miss_packer;
        eval->decision_follows = 0;
    }
    eval->rejected = 0;
    int failed = plugin->desc->evaluate(plugin->state, eval) != 0 || eval->failed;
    eval->packer = out;
    eval->decision_follows = decision_follows;
    if (failed && eval->rejected)
        return EPCS_AREA_REJECTED;
    if (failed) {
        if (!eval->failed)
            set_error(&eval->error, engine->ruleset->files[eval->area_index + 1].name, 0,
                      "area %s failed without naming a rule", plugin->desc->name);
        eval->failed = 1;
        return EPCS_AREA_FAILED;
    }
    if (slot == NULL)
        return EPCS_AREA_DECIDED;
    uint32_t fields;
    size_t header_len;
    const char *verdict = engine->cache_miss.data;
    size_t verdict_len = engine->cache_miss.len;
    if (epcs_msgpack_map_header(verdict, verdict_len, &fields, &header_len) != 0) {
        /* Not a map we can extend: pass it on as is, unremembered, and without the id. */
        out->callback(out->data, verdict, verdict_len);
        eval->decision_follows = 0;
        return EPCS_AREA_DECIDED;
    }
    size_t key_len = engine->cache_key.len, value_len = verdict_len - header_len;
    char *bytes = malloc(key_len + value_len);
    if (bytes != NULL) {
        free(slot->bytes);
        memcpy(bytes, engine->cache_key.data, key_len);
        memcpy(bytes + key_len, verdict + header_len, value_len);
        *slot = (struct verdict_cache_entry){.hash = hash,
                                             .bytes = bytes,
                                             .key_len = (uint32_t)key_len,
                                             .value_len = (uint32_t)value_len,
                                             .fields = fields,
                                             .kind = eval->verdict};
    }
    emit_verdict(eval, verdict + header_len, value_len, fields, eval->verdict);
    return EPCS_AREA_DECIDED;
}

/* Deep enough for any test table; a deeper one is a mistake in the table. */
#define TEST_TABLE_MAX_DEPTH 8

/* Packs the Lua value at `index` read raw: sequences become arrays, other tables maps with
 * string keys. Returns 0, or -1 for what a request could not hold (functions, tables with
 * metatables, text that is not UTF-8, deep nesting). */
static int pack_lua(msgpack_packer *pk, lua_State *L, int index, int depth)
{
    size_t len;
    index = lua_absindex(L, index);
    switch (lua_type(L, index)) {
    case LUA_TNIL:
        return msgpack_pack_nil(pk);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, index) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case LUA_TNUMBER:
        if (lua_isinteger(L, index))
            return msgpack_pack_int64(pk, lua_tointeger(L, index));
        return msgpack_pack_double(pk, lua_tonumber(L, index));
    case LUA_TSTRING: {
        const char *str = lua_tolstring(L, index, &len);
        if (!epcs_utf8_valid(str, len))
            return -1;
        epcs_pack_str(pk, str, len);
        return 0;
    }
    case LUA_TTABLE:
        break;
    default:
        return -1;
    }
    if (depth > TEST_TABLE_MAX_DEPTH || epcs_lua_plain(L, index) != 0 || !lua_checkstack(L, 4))
        return -1;
    size_t length = lua_rawlen(L, index), count = 0;
    if (length > 0) {
        msgpack_pack_array(pk, length);
        for (lua_Integer i = 1; i <= (lua_Integer)length; i++) {
            lua_rawgeti(L, index, i);
            if (pack_lua(pk, L, -1, depth + 1) != 0)
                return -1;
            lua_pop(L, 1);
        }
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pop(L, 1);
        count++;
    }
    msgpack_pack_map(pk, count);
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || pack_lua(pk, L, -2, depth + 1) != 0 ||
            pack_lua(pk, L, -1, depth + 1) != 0)
            return -1;
        lua_pop(L, 1);
    }
    return 0;
}

struct test_case_job {
    struct epcs_engine *engine;
    size_t area_index;
    struct epcs_buf *out;
};

/* Packs case `item` as {name, generated, election, date, actor, activity, expect, fail}, the
 * fields it has; a case whose facts or expectation cannot be packed gets `invalid` instead of
 * them. `fail` is the rule API's: a case that fails with that message. */
static void pack_test_case(msgpack_packer *pk, struct epcs_buf *out, lua_State *L, int item)
{
    static const char *const fields[] = {"name",     "election", "date", "actor",
                                         "activity", "expect",   "fail"};
    enum { FIELD_COUNT = sizeof(fields) / sizeof(fields[0]) };
    size_t start = out->len;
    int plain = lua_type(L, item) == LUA_TTABLE && epcs_lua_plain(L, item) == 0;
    int generated = 0;
    size_t present = 0;
    if (plain) {
        generated = raw_field(L, item, "generated") != LUA_TNIL && lua_toboolean(L, -1);
        lua_settop(L, item);
    }
    for (size_t f = 0; plain && f < FIELD_COUNT; f++) {
        present += raw_field(L, item, fields[f]) != LUA_TNIL;
        lua_pop(L, 1);
    }
    msgpack_pack_map(pk, present + 1);
    epcs_pack_cstr(pk, "generated");
    if (generated)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    for (size_t f = 0; plain && f < FIELD_COUNT; f++) {
        if (raw_field(L, item, fields[f]) != LUA_TNIL) {
            epcs_pack_cstr(pk, fields[f]);
            if (pack_lua(pk, L, -1, 0) != 0)
                plain = 0;
        }
        lua_settop(L, item);
    }
    if (plain)
        return;
    out->len = start;
    msgpack_pack_map(pk, 1);
    epcs_pack_cstr(pk, "invalid");
    msgpack_pack_true(pk);
}

static int cb_pack_test_cases(lua_State *L)
{
    struct test_case_job *job = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->engine->test_cases_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->engine->area_refs[job->area_index]);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->engine->elections_ref);
    lua_call(L, 2, 1);
    if (lua_type(L, 2) != LUA_TTABLE || epcs_lua_plain(L, 2) != 0)
        return luaL_error(L, "the rule API returned no list of test cases");
    msgpack_packer pk;
    msgpack_packer_init(&pk, job->out, epcs_buf_msgpack_write);
    size_t count = lua_rawlen(L, 2);
    msgpack_pack_array(&pk, count);
    for (size_t i = 1; i <= count; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i);
        pack_test_case(&pk, job->out, L, 3);
        lua_settop(L, 2);
    }
    return 0;
}

int epcs_engine_pack_test_cases(struct epcs_engine *engine, size_t area_index, struct epcs_buf *out,
                                struct epcs_rule_error *err)
{
    struct test_case_job job = {.engine = engine, .area_index = area_index, .out = out};
    epcs_buf_reset(out);
    return protected_read(engine, cb_pack_test_cases, &job, err);
}

const struct epcs_host_api epcs_host_api_v1 = {
    .abi_version = EPCS_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(struct epcs_host_api),
    .log = epcs_log,
    .fact_v1 = epcs_facts_get_v1,
    .reject = epcs_facts_reject,
    .run_rules = epcs_engine_run_rules,
    .run_calendar = epcs_engine_run_calendar,
    .read_fact = epcs_facts_get,
};
