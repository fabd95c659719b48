#ifndef EPCS_FACTS_H
#define EPCS_FACTS_H

#include <msgpack.h>
#include <stdint.h>
#include <string.h>

#include "epcs/plugin.h"

/** Most facts one request may carry; the vocabulary is checked against it at start-up. */
#define EPCS_MAX_FACTS 64

/** One fact path every request may use, with the union of what the plugins accept for it. */
struct epcs_vocab_entry {
    char *path;
    size_t path_len;
    enum epcs_fact_type type;
    /** NULL-terminated union of accepted values for enums; NULL for other types. */
    const char **values;
    size_t value_count;
};

/** Every fact any loaded plugin reads, plus actor.kind and activity.kind. Built once. */
struct epcs_vocab {
    struct epcs_vocab_entry *entries;
    size_t count;
};

/** One fact of a request, checked against the vocabulary. Borrowed from the decoded body. */
struct epcs_fact {
    const struct epcs_vocab_entry *entry;
    const msgpack_object *value;
    int32_t day; /* for dates, parsed once */
};

/** The checked facts of one request. See epcs_host_api.fact. */
struct epcs_facts {
    struct epcs_fact items[EPCS_MAX_FACTS];
    size_t count;
    /** The day of the act (the request's date), readable by plugins as the fact "date". */
    int32_t date;
    /** Filled by epcs_facts_reject: the request gets 422 invalid_fact. */
    int rejected;
    char field[128];
    char message[256];
};

/** Creates an empty vocabulary holding actor.kind (the enum of SPEC section 5). NULL on OOM. */
struct epcs_vocab *epcs_vocab_create(void);

/** The actor kinds every check may name (SPEC section 5), NULL-terminated; static storage. The
 * rule API hands them to the rule files, whose coverage statements must name each one. */
const char *const *epcs_actor_kinds(void);
/**
 * Adds a plugin's facts and activity kinds. Returns 0, or -1 with a reason in `why` when a
 * fact conflicts in type with an earlier plugin or the vocabulary would grow too large.
 */
int epcs_vocab_add_plugin(struct epcs_vocab *vocab, const struct epcs_plugin *plugin, char *why,
                          size_t why_size);
/** The entry for `path`, or NULL. */
const struct epcs_vocab_entry *epcs_vocab_find(const struct epcs_vocab *vocab, const char *path);
void epcs_vocab_destroy(struct epcs_vocab *vocab);

/**
 * Reads the actor and activity maps of a request (either may be NULL) into `facts`, checking
 * every key against the vocabulary and every value against its type. Returns 0, or -1 with
 * facts->rejected set (unknown fact, wrong type, value outside the enum, malformed date).
 */
int epcs_facts_read(struct epcs_facts *facts, const struct epcs_vocab *vocab,
                    const msgpack_object *actor, const msgpack_object *activity);

/** The fact at `path` or NULL. */
const struct epcs_fact *epcs_facts_find(const struct epcs_facts *facts, const char *path);

/**
 * Host API: see epcs_host_api.read_fact. Writes only the members of the caller's `out` within
 * out->struct_size. Returns 1 when the fact is present, 0 when absent (`out` untouched).
 */
int epcs_facts_get(const struct epcs_facts *facts, const char *path, struct epcs_fact_value *out);
/** Host API for plugins built against ABI 1's header: see epcs_host_api.fact_v1. Fills the
 * whole caller-owned `out` and returns 1 when the fact is present, 0 when absent. */
int epcs_facts_get_v1(const struct epcs_facts *facts, const char *path,
                      struct epcs_fact_value_v1 *out);
/** Host API: see epcs_host_api.reject. */
int epcs_facts_reject(struct epcs_facts *facts, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** True when a msgpack string equals the NUL-terminated `str`. Inline, so that the length of
 * a literal is known when compiling: the check path compares keys against literals often. */
static inline int epcs_str_eq(const msgpack_object *obj, const char *str)
{
    size_t len = strlen(str);
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == len &&
           memcmp(obj->via.str.ptr, str, len) == 0;
}

#endif
