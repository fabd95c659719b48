#include "facts.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dates.h"

/* Actors are the same for every area (SPEC section 5), so the host owns their vocabulary. */
static const char *const actor_kinds[] = {
    "voter",
    "party_member",
    "candidate",
    "prospective_candidate",
    "na_member",
    "local_council_member",
    "local_government_head",
    "public_official",
    "journalist",
    "gov_invested_org_executive",
    "local_public_corp_executive",
    "reserve_force_commander",
    "residents_committee_member",
    "tong_ri_ban_head",
    "publisher",
    "author",
    "business",
    "media_company",
    "platform",
    "other",
    NULL,
};

const char *const *epcs_actor_kinds(void)
{
    return actor_kinds;
}

static const char *type_name(enum epcs_fact_type type)
{
    switch (type) {
    case EPCS_FACT_BOOL:
        return "a boolean";
    case EPCS_FACT_ENUM:
        return "one of its listed values";
    case EPCS_FACT_DATE:
        return "a date (YYYY-MM-DD)";
    case EPCS_FACT_STRING:
        return "a string";
    }
    return "?";
}

static int add_values(struct epcs_vocab_entry *entry, const char *const *values)
{
    for (; values != NULL && *values != NULL; values++) {
        int known = 0;
        for (size_t i = 0; i < entry->value_count; i++)
            known |= strcmp(entry->values[i], *values) == 0;
        if (known)
            continue;
        const char **grown = realloc(entry->values, sizeof(*grown) * (entry->value_count + 2));
        if (grown == NULL)
            return -1;
        grown[entry->value_count++] = *values;
        grown[entry->value_count] = NULL;
        entry->values = grown;
    }
    return 0;
}

static struct epcs_vocab_entry *add_entry(struct epcs_vocab *vocab, const char *path,
                                          enum epcs_fact_type type, const char *const *values,
                                          char *why, size_t why_size)
{
    struct epcs_vocab_entry *entry = (struct epcs_vocab_entry *)epcs_vocab_find(vocab, path);
    if (entry == NULL) {
        if (vocab->count == EPCS_MAX_FACTS) {
            snprintf(why, why_size, "more than %d distinct facts", EPCS_MAX_FACTS);
            return NULL;
        }
        struct epcs_vocab_entry *grown =
            realloc(vocab->entries, sizeof(*grown) * (vocab->count + 1));
        if (grown == NULL)
            goto oom;
        vocab->entries = grown;
        entry = &grown[vocab->count];
        memset(entry, 0, sizeof(*entry));
        entry->path = strdup(path);
        if (entry->path == NULL)
            goto oom;
        entry->path_len = strlen(path);
        entry->type = type;
        vocab->count++;
    }
    if (type == EPCS_FACT_ENUM && add_values(entry, values) != 0)
        goto oom;
    return entry;
oom:
    snprintf(why, why_size, "out of memory");
    return NULL;
}

struct epcs_vocab *epcs_vocab_create(void)
{
    struct epcs_vocab *vocab = calloc(1, sizeof(*vocab));
    char why[64];
    if (vocab == NULL)
        return NULL;
    if (add_entry(vocab, "actor.kind", EPCS_FACT_ENUM, actor_kinds, why, sizeof(why)) == NULL) {
        epcs_vocab_destroy(vocab);
        return NULL;
    }
    return vocab;
}

/* Refuses a plugin whose facts the request vocabulary cannot hold, before anything is added, so
 * a refused plugin leaves no trace. */
static int check_plugin_facts(const struct epcs_vocab *vocab, const struct epcs_plugin *plugin,
                              char *why, size_t why_size)
{
    size_t new_paths = 0;
    for (const struct epcs_fact_spec *spec = plugin->facts; spec && spec->path; spec++) {
        if (strncmp(spec->path, "actor.", 6) != 0 && strncmp(spec->path, "activity.", 9) != 0) {
            snprintf(why, why_size, "fact '%s' is neither under actor. nor activity.", spec->path);
            return -1;
        }
        if (spec->type < EPCS_FACT_BOOL || spec->type > EPCS_FACT_STRING) {
            snprintf(why, why_size, "fact '%s' has unknown type %d", spec->path, (int)spec->type);
            return -1;
        }
        if (spec->type == EPCS_FACT_ENUM && (spec->values == NULL || spec->values[0] == NULL)) {
            snprintf(why, why_size, "enum fact '%s' lists no values", spec->path);
            return -1;
        }
        const struct epcs_vocab_entry *known = epcs_vocab_find(vocab, spec->path);
        if (known == NULL) {
            new_paths++;
        } else if (known->type != spec->type) {
            snprintf(why, why_size, "fact '%s' is %s here but %s in an earlier plugin", spec->path,
                     type_name(spec->type), type_name(known->type));
            return -1;
        }
    }
    if (vocab->count + new_paths + 1 > EPCS_MAX_FACTS) {
        snprintf(why, why_size, "more than %d distinct facts", EPCS_MAX_FACTS);
        return -1;
    }
    return 0;
}

int epcs_vocab_add_plugin(struct epcs_vocab *vocab, const struct epcs_plugin *plugin, char *why,
                          size_t why_size)
{
    if (check_plugin_facts(vocab, plugin, why, why_size) != 0)
        return -1;
    if (add_entry(vocab, "activity.kind", EPCS_FACT_ENUM, plugin->activity_kinds, why, why_size) ==
        NULL)
        return -1;
    for (const struct epcs_fact_spec *spec = plugin->facts; spec && spec->path; spec++) {
        if (add_entry(vocab, spec->path, spec->type, spec->values, why, why_size) == NULL)
            return -1;
    }
    return 0;
}

/* Every fact of every check comes through here: the length and the last letter rule out
 * most entries before a full comparison (paths share their section's prefix). */
static const struct epcs_vocab_entry *find_path(const struct epcs_vocab *vocab, const char *path,
                                                size_t len)
{
    for (size_t i = 0; i < vocab->count; i++) {
        const struct epcs_vocab_entry *entry = &vocab->entries[i];
        if (entry->path_len == len && len > 0 && entry->path[len - 1] == path[len - 1] &&
            memcmp(entry->path, path, len) == 0)
            return entry;
    }
    return NULL;
}

const struct epcs_vocab_entry *epcs_vocab_find(const struct epcs_vocab *vocab, const char *path)
{
    return find_path(vocab, path, strlen(path));
}

void epcs_vocab_destroy(struct epcs_vocab *vocab)
{
    if (vocab == NULL)
        return;
    for (size_t i = 0; i < vocab->count; i++) {
        free(vocab->entries[i].path);
        free(vocab->entries[i].values);
    }
    free(vocab->entries);
    free(vocab);
}

int epcs_facts_reject(struct epcs_facts *facts, const char *path, const char *fmt, ...)
{
    va_list args;
    facts->rejected = 1;
    snprintf(facts->field, sizeof(facts->field), "%s", path);
    va_start(args, fmt);
    vsnprintf(facts->message, sizeof(facts->message), fmt, args);
    va_end(args);
    return -1;
}

static int check_value(struct epcs_facts *facts, struct epcs_fact *fact)
{
    const struct epcs_vocab_entry *entry = fact->entry;
    const msgpack_object *value = fact->value;
    switch (entry->type) {
    case EPCS_FACT_BOOL:
        if (value->type != MSGPACK_OBJECT_BOOLEAN)
            return epcs_facts_reject(facts, entry->path, "%s must be a boolean", entry->path);
        return 0;
    case EPCS_FACT_STRING:
        if (value->type != MSGPACK_OBJECT_STR)
            return epcs_facts_reject(facts, entry->path, "%s must be a string", entry->path);
        return 0;
    case EPCS_FACT_DATE:
        if (value->type != MSGPACK_OBJECT_STR ||
            epcs_date_parse(value->via.str.ptr, value->via.str.size, &fact->day) != 0)
            return epcs_facts_reject(facts, entry->path,
                                     "%s must be a date YYYY-MM-DD between %d and %d", entry->path,
                                     EPCS_DATE_MIN_YEAR, EPCS_DATE_MAX_YEAR);
        return 0;
    case EPCS_FACT_ENUM:
        if (value->type != MSGPACK_OBJECT_STR)
            return epcs_facts_reject(facts, entry->path, "%s must be a string", entry->path);
        for (size_t i = 0; i < entry->value_count; i++) {
            if (epcs_str_eq(value, entry->values[i]))
                return 0;
        }
        return epcs_facts_reject(facts, entry->path, "%s: unknown value '%.*s'", entry->path,
                                 epcs_quoted_len(value), value->via.str.ptr);
    }
    return epcs_facts_reject(facts, entry->path, "%s has an unsupported type", entry->path);
}

static int read_map(struct epcs_facts *facts, const struct epcs_vocab *vocab, const char *prefix,
                    const msgpack_object *map)
{
    char path[128];
    size_t prefix_len = strlen(prefix);
    memcpy(path, prefix, prefix_len);
    path[prefix_len] = '.';
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr[i].key;
        /* The decoder guarantees string keys; a key too long for any path is unknown anyway. */
        size_t len = prefix_len + 1 + key->via.str.size;
        const struct epcs_vocab_entry *entry = NULL;
        if (len < sizeof(path)) {
            memcpy(path + prefix_len + 1, key->via.str.ptr, key->via.str.size);
            path[len] = '\0';
            entry = find_path(vocab, path, len);
        } else {
            snprintf(path + prefix_len + 1, sizeof(path) - prefix_len - 1, "%.*s",
                     (int)key->via.str.size, key->via.str.ptr);
        }
        if (entry == NULL)
            return epcs_facts_reject(facts, len < sizeof(path) ? path : prefix, "unknown fact '%s'",
                                     path);
        if (facts->count == EPCS_MAX_FACTS)
            return epcs_facts_reject(facts, prefix, "too many facts");
        struct epcs_fact *fact = &facts->items[facts->count];
        fact->entry = entry;
        fact->value = &map->via.map.ptr[i].val;
        fact->day = 0;
        if (check_value(facts, fact) != 0)
            return -1;
        facts->count++;
    }
    return 0;
}

int epcs_facts_read(struct epcs_facts *facts, const struct epcs_vocab *vocab,
                    const msgpack_object *actor, const msgpack_object *activity)
{
    facts->count = 0;
    facts->rejected = 0;
    if (actor != NULL && read_map(facts, vocab, "actor", actor) != 0)
        return -1;
    if (activity != NULL && read_map(facts, vocab, "activity", activity) != 0)
        return -1;
    return 0;
}

const struct epcs_fact *epcs_facts_find(const struct epcs_facts *facts, const char *path)
{
    for (size_t i = 0; i < facts->count; i++) {
        if (strcmp(facts->items[i].entry->path, path) == 0)
            return &facts->items[i];
    }
    return NULL;
}

/* Fills every member of the host's own struct epcs_fact_value but struct_size. Returns 1, or 0
 * when the request holds no fact at `path`. */
static int fact_value(const struct epcs_facts *facts, const char *path, struct epcs_fact_value *out)
{
    if (strcmp(path, "date") == 0) {
        memset(out, 0, sizeof(*out));
        out->type = EPCS_FACT_DATE;
        out->day = facts->date;
        return 1;
    }
    const struct epcs_fact *fact = epcs_facts_find(facts, path);
    if (fact == NULL)
        return 0;
    memset(out, 0, sizeof(*out));
    out->type = fact->entry->type;
    switch (fact->entry->type) {
    case EPCS_FACT_BOOL:
        out->boolean = fact->value->via.boolean;
        break;
    case EPCS_FACT_DATE:
        out->day = fact->day;
        /* the wire text stays readable too */
        __attribute__((fallthrough));
    case EPCS_FACT_ENUM:
    case EPCS_FACT_STRING:
        out->string = fact->value->via.str.ptr;
        out->length = fact->value->via.str.size;
        break;
    }
    return 1;
}

int epcs_facts_get(const struct epcs_facts *facts, const char *path, struct epcs_fact_value *out)
{
    struct epcs_fact_value value;
    if (!fact_value(facts, path, &value))
        return 0;
    /* The plugin's struct may be older (shorter) or newer (longer) than the host's: only the
     * bytes both know are written, from the first member after struct_size. */
    size_t start = offsetof(struct epcs_fact_value, type);
    size_t end = out->struct_size < sizeof(value) ? out->struct_size : sizeof(value);
    if (end > start)
        memcpy((char *)out + start, (const char *)&value + start, end - start);
    return 1;
}

int epcs_facts_get_v1(const struct epcs_facts *facts, const char *path,
                      struct epcs_fact_value_v1 *out)
{
    struct epcs_fact_value value;
    if (!fact_value(facts, path, &value))
        return 0;
    *out = (struct epcs_fact_value_v1){.type = value.type,
                                       .boolean = value.boolean,
                                       .string = value.string,
                                       .length = value.length,
                                       .day = value.day};
    return 1;
}
