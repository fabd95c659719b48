#ifndef EPCS_PLUGIN_H
#define EPCS_PLUGIN_H

/*
 * The epcs plugin ABI: one shared object per restriction area.
 *
 * A plugin exports exactly one symbol, EPCS_PLUGIN_ENTRY_SYMBOL, a function returning a pointer
 * to a const struct epcs_plugin that lives as long as the shared object. The descriptor begins
 * with abi_version and struct_size so that epcsd can refuse a plugin built against another ABI
 * before it reads anything else. The struct only ever grows at its end: a host reads a member
 * only when struct_size says the plugin has it.
 *
 * A plugin never links against epcsd. Everything the host offers (logging, reading facts,
 * running the area's Lua rules) reaches it through the struct epcs_host_api table handed to
 * init(). The legal logic itself lives in the area's Lua rule file; the plugin declares the
 * area (its facts, activity kinds and rule file), checks what the rules cannot express as
 * types, and calls the rules.
 *
 * Growth: every struct one side fills for the other says how much of it the reader has. The
 * descriptor and the host API table begin with abi_version and struct_size, set by the side
 * that fills them; the reader uses a member only when struct_size covers it. A struct the
 * host writes into the plugin's memory (struct epcs_fact_value) begins with a struct_size the
 * plugin sets, and the host writes only the members that lie within it. Each grows only at its
 * end, so a plugin built against an older header keeps working in a newer epcsd, which serves
 * it as its header describes: EPCS_PLUGIN_ABI_VERSION changes only for a change that cannot be
 * served so. A plugin built against a newer header must refuse to start in an older epcsd, whose
 * host table is shorter than its header's (EPCS_PLUGIN_DELEGATE_TO_RULES's init does, saying
 * so), or check struct_size before each newer member. struct epcs_fact_spec is the exception:
 * plugins hand it as an array, whose stride is part of ABI 1, so it never grows; a new property of
 * a fact comes as a new descriptor member.
 *
 * Threads: epcsd calls validate, evaluate and calendar from every worker thread at once, with
 * the same plugin state. State written after init must be guarded by the plugin.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EPCS_PLUGIN_ABI_VERSION 1
#define EPCS_PLUGIN_ENTRY epcs_plugin_entry
#define EPCS_PLUGIN_ENTRY_SYMBOL "epcs_plugin_entry"

#define EPCS_LOG_DEBUG 0
#define EPCS_LOG_INFO 1
#define EPCS_LOG_WARN 2
#define EPCS_LOG_ERROR 3

/** Types a fact may have on the wire. Dates are "YYYY-MM-DD" strings on the wire. */
enum epcs_fact_type {
    EPCS_FACT_BOOL = 1,
    EPCS_FACT_ENUM = 2,
    EPCS_FACT_DATE = 3,
    EPCS_FACT_STRING = 4,
};

/**
 * One fact the area reads, by its path in the request ("activity.labeled", "actor.kind").
 * The host rejects a present fact of the wrong type or with a value outside `values` with
 * 422 invalid_fact naming the path. Absent facts are left to the rules (needs_facts).
 */
struct epcs_fact_spec {
    const char *path;
    enum epcs_fact_type type;
    /** NULL-terminated list of the accepted values of an EPCS_FACT_ENUM fact; NULL otherwise. */
    const char *const *values;
};

/**
 * A fact as read through epcs_host_api.read_fact, normally through epcs_fact_read; strings are
 * borrowed from the request. The plugin owns the struct and sets struct_size; the host writes
 * only the members within it and never struct_size itself.
 */
struct epcs_fact_value {
    /** sizeof(struct epcs_fact_value) as the plugin saw it. */
    uint32_t struct_size;
    enum epcs_fact_type type;
    int boolean;
    const char *string;
    size_t length;
    /** For EPCS_FACT_DATE: the day number (days since 1970-01-01). */
    int32_t day;
};

/**
 * ABI 1's fact value, which had no size: what epcs_host_api.fact_v1 fills, whole. Frozen, so
 * that epcsd serves plugins built before struct epcs_fact_value carried its size.
 */
struct epcs_fact_value_v1 {
    enum epcs_fact_type type;
    int boolean;
    const char *string;
    size_t length;
    int32_t day;
};

/** The facts of one request (opaque; read with epcs_fact_read). */
struct epcs_facts;
/** One evaluation of an area for one request (opaque; completed by epcs_host_api.run_rules). */
struct epcs_eval;
/** One calendar listing for one election (opaque; filled by epcs_host_api.run_calendar). */
struct epcs_calendar;

/**
 * Services epcsd offers to plugins, owned by epcsd. Valid from init() until destroy() returns.
 * Members are appended only: check struct_size before using one added after ABI 1's first table
 * (read_fact is one; EPCS_PLUGIN_DELEGATE_TO_RULES's init checks for the whole table).
 */
struct epcs_host_api {
    uint32_t abi_version;
    uint32_t struct_size;

    /** Logs one line prefixed with the component name (use the area name). */
    void (*log)(int level, const char *component, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /**
     * ABI 1's read_fact, kept in its place for plugins built before the fact value carried its
     * size: fills a whole struct epcs_fact_value_v1. New plugins use read_fact.
     */
    int (*fact_v1)(const struct epcs_facts *facts, const char *path,
                   struct epcs_fact_value_v1 *out);

    /**
     * Records that the request's facts are unacceptable for this area, as 422 invalid_fact for
     * `path` with a message. Returns -1 so a validate callback can `return host->reject(...)`.
     */
    int (*reject)(struct epcs_facts *facts, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /**
     * Runs the area's Lua rules for this evaluation: picks the rule version in force on the
     * decisive date, calls it, checks its verdict and records it in `eval`. Returns 0, or -1
     * when the rules failed (the host then answers 500 naming the rule file and line).
     */
    int (*run_rules)(struct epcs_eval *eval);

    /**
     * Lists the area's windows and deadlines for the calendar's election by calling the rule
     * file's calendar function. Returns 0, or -1 when the rules failed.
     */
    int (*run_calendar)(struct epcs_calendar *calendar);

    /**
     * Reads the fact at `path`. Returns 1 when present, having written the members of `out`
     * that lie within out->struct_size (those it does not describe are zero), or 0 when absent,
     * leaving `out` as it was. Present facts have already been checked against the plugin's
     * fact specs. The path "date" reads the day of the act (EPCS_FACT_DATE, `day` only), so
     * validate can relate facts to it. Added after ABI 1's first table (see struct_size).
     */
    int (*read_fact)(const struct epcs_facts *facts, const char *path, struct epcs_fact_value *out);
};

/**
 * Reads the fact at `path` into the caller's `out` through api->read_fact, after setting its
 * struct_size and zeroing the rest: how a plugin reads a fact. Returns 1 when present, 0 when
 * absent.
 */
static inline int epcs_fact_read(const struct epcs_host_api *api, const struct epcs_facts *facts,
                                 const char *path, struct epcs_fact_value *out)
{
    *out = (struct epcs_fact_value){.struct_size = sizeof(*out)};
    return api->read_fact(facts, path, out);
}

/** Whether the request holds the enum or string fact at `path` and it is exactly `value`: how a
 * validate callback compares facts. */
static inline int epcs_fact_equals(const struct epcs_host_api *api, const struct epcs_facts *facts,
                                   const char *path, const char *value)
{
    struct epcs_fact_value fact;
    size_t length = strlen(value);
    return epcs_fact_read(api, facts, path, &fact) && fact.length == length &&
           memcmp(fact.string, value, length) == 0;
}

/**
 * The descriptor a plugin's entry function returns. Fields up to `destroy` form ABI version 1.
 */
struct epcs_plugin {
    /** EPCS_PLUGIN_ABI_VERSION the plugin was built against. */
    uint32_t abi_version;
    /** sizeof(struct epcs_plugin) as the plugin saw it. */
    uint32_t struct_size;

    /** Area name used in the API ("deepfake"): lowercase letters, digits and '_'. Unique. */
    const char *name;
    /** The article the area enforces, as cited when nothing narrower applies ("82-8"). */
    const char *article;
    /** One English sentence describing the restriction. */
    const char *description;
    /** The area's rule file, relative to the rules directory ("deepfake.lua"). */
    const char *rule_file;
    /** NULL-terminated activity kinds the area recognises ("post", ...). */
    const char *const *activity_kinds;
    /** The facts the area reads, terminated by an entry with a NULL path. */
    const struct epcs_fact_spec *facts;

    /**
     * Called once after loading, before any other callback. Stores the plugin's state in
     * *state. Returns 0, or -1 to refuse loading (the plugin should log why).
     */
    int (*init)(const struct epcs_host_api *host, void **state);
    /**
     * Optional. Checks the facts beyond their types (relations between facts). Returns 0, or
     * the result of host->reject() to answer 422.
     */
    int (*validate)(void *state, struct epcs_facts *facts);
    /** Evaluates the request, normally by calling host->run_rules(eval). Returns 0 or -1. */
    int (*evaluate)(void *state, struct epcs_eval *eval);
    /** Lists calendar items, normally by calling host->run_calendar(calendar). 0 or -1. */
    int (*calendar)(void *state, struct epcs_calendar *calendar);
    /** Optional. Releases the state made by init. */
    void (*destroy)(void *state);
};

/** The type of the exported entry function. */
typedef const struct epcs_plugin *(*epcs_plugin_entry_fn)(void);

/** Declares the entry function with default visibility, whatever the build's default is. */
#define EPCS_PLUGIN_EXPORT __attribute__((visibility("default")))

/**
 * Most areas keep all their legal logic in the rule file. This defines, as statics, what such
 * a plugin needs: `host` (the host API, kept by init after checking its size) and the callbacks
 * epcs_rules_init, epcs_rules_evaluate and epcs_rules_calendar for the descriptor.
 */
#define EPCS_PLUGIN_DELEGATE_TO_RULES                                                              \
    static const struct epcs_host_api *host;                                                       \
    static int epcs_rules_init(const struct epcs_host_api *api, void **state)                      \
    {                                                                                              \
        if (api->struct_size < sizeof(struct epcs_host_api)) {                                     \
            api->log(EPCS_LOG_ERROR, "plugin",                                                     \
                     "epcsd's host API is %u bytes, this plugin's header needs %zu: a newer "      \
                     "epcsd is needed",                                                            \
                     api->struct_size, sizeof(struct epcs_host_api));                              \
            return -1;                                                                             \
        }                                                                                          \
        host = api;                                                                                \
        *state = NULL;                                                                             \
        return 0;                                                                                  \
    }                                                                                              \
    static int epcs_rules_evaluate(void *state, struct epcs_eval *eval)                            \
    {                                                                                              \
        (void)state;                                                                               \
        return host->run_rules(eval);                                                              \
    }                                                                                              \
    static int epcs_rules_calendar(void *state, struct epcs_calendar *calendar)                    \
    {                                                                                              \
        (void)state;                                                                               \
        return host->run_calendar(calendar);                                                       \
    }

#endif
