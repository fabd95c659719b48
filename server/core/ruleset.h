#ifndef EPCS_RULESET_H
#define EPCS_RULESET_H

#include <msgpack.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "facts.h"
#include "lua_engine.h"
#include "plugin_loader.h"

/*
 * A ruleset is one immutable snapshot of the rule files: their text, hashes, the elections and
 * rule versions they define, and a version id. It is shared by every worker and reference
 * counted, so a newer ruleset can replace it while requests still finish on the old one.
 *
 * An engine is one worker's compiled instance of a ruleset: a sandboxed Lua state holding the
 * rule API, the elections and one area table per plugin. Engines are never shared.
 */

enum epcs_verdict_kind {
    EPCS_VERDICT_ALLOWED = 0,
    EPCS_VERDICT_NEEDS_FACTS = 1,
    EPCS_VERDICT_PROHIBITED = 2,
};

/** The wire name of a verdict kind. */
const char *epcs_verdict_name(enum epcs_verdict_kind kind);

struct epcs_election {
    char *id;
    char *name;
    char *name_ko;
    /** general, by_election or vacancy */
    char *kind;
    /** president, national_assembly, local_office, local_government_head or local_council */
    char *office;
    int32_t day;
    int has_cause_confirmed;
    int32_t cause_confirmed;
};

struct epcs_rule_version {
    char *id;
    int32_t effective_from;
    int has_promulgated;
    int32_t promulgated;
};

struct epcs_rule_file {
    char *name;
    char *source;
    size_t length;
    char sha256[65];
};

/** What a ruleset knows about one area, in plugin order. */
struct epcs_area_rules {
    struct epcs_rule_version *versions;
    size_t version_count;
};

struct epcs_ruleset {
    atomic_int refs;
    /** "rs-" and the first 16 hex digits of the hash over every file's name and hash. */
    char id[24];
    char *dir;
    /** First line of the directory's LABEL file, for people ("2024 amendment draft"); or NULL. */
    char *label;
    time_t loaded_at;
    const struct epcs_plugin_set *plugins;
    struct epcs_lua_limits limits;
    /** files[0] is elections.lua, files[1 + i] the rule file of plugin i. */
    struct epcs_rule_file *files;
    size_t file_count;
    struct epcs_election *elections;
    size_t election_count;
    struct epcs_area_rules *areas;
};

/**
 * Reads elections.lua and every plugin's rule file from `dir`, compiles them once in a probe
 * state and extracts the elections and rule versions. Returns a ruleset with one reference, or
 * NULL with `err` naming the file, line and cause. `plugins` must outlive the ruleset.
 */
struct epcs_ruleset *epcs_ruleset_load(const char *dir, const struct epcs_plugin_set *plugins,
                                       const struct epcs_lua_limits *limits,
                                       struct epcs_rule_error *err);
void epcs_ruleset_retain(struct epcs_ruleset *ruleset);
/** Drops one reference; the last one frees the ruleset. Accepts NULL. */
void epcs_ruleset_release(struct epcs_ruleset *ruleset);
/** The election with id [id, id+len), or NULL. */
const struct epcs_election *epcs_ruleset_election(const struct epcs_ruleset *ruleset,
                                                  const char *id, size_t len);

struct epcs_engine;

/** Verdicts each engine remembers by default (see epcs_verdict_cache_configure). */
#define EPCS_VERDICT_CACHE_DEFAULT 4096

/**
 * Sets how many verdicts each engine created from now on remembers (rounded up to a power of
 * two; 0 turns the cache off). Call before the workers start.
 */
void epcs_verdict_cache_configure(size_t slots);

/** Compiles `ruleset` into a new sandboxed state; takes a reference. NULL with `err` filled. */
struct epcs_engine *epcs_engine_create(struct epcs_ruleset *ruleset, struct epcs_rule_error *err);
/** The ruleset the engine was built from. */
struct epcs_ruleset *epcs_engine_ruleset(const struct epcs_engine *engine);
/** Bytes its Lua state holds. */
size_t epcs_engine_memory(struct epcs_engine *engine);
/** Accepts NULL; releases the engine's ruleset reference. */
void epcs_engine_destroy(struct epcs_engine *engine);

/**
 * One evaluation of one area (the opaque struct epcs_eval of the plugin ABI). The caller fills
 * the inputs; host->run_rules writes the verdict map to `packer` and sets the outputs.
 */
struct epcs_eval {
    struct epcs_engine *engine;
    size_t area_index;
    /** The request's facts; epcs.decide has another area's plugin validate them. */
    struct epcs_facts *facts;
    int32_t date;
    const struct epcs_election *election;
    msgpack_packer *packer;
    /**
     * When nonzero, the verdict map's header counts one entry more than is packed: the
     * caller appends `decision` (the decision log's id) once the verdict is decided, so that
     * no id is taken for a check that fails. Cleared on return if the verdict could not be
     * packed that way (the caller then appends nothing).
     */
    int decision_follows;

    enum epcs_verdict_kind verdict;
    /** Set when the rules failed; nothing was written to `packer` then. */
    int failed;
    /**
     * Set with `failed` when the rules asked another area (epcs.decide) whose plugin refused
     * the facts: facts->field and facts->message say why, and the answer is 422, not 500.
     */
    int rejected;
    struct epcs_rule_error error;
};

/** One calendar listing (the opaque struct epcs_calendar of the plugin ABI). */
struct epcs_calendar {
    struct epcs_engine *engine;
    size_t area_index;
    const struct epcs_election *election;
    /** Each item is packed here as one map; item_count says how many. */
    msgpack_packer *packer;
    size_t item_count;
    int failed;
    struct epcs_rule_error error;
};

enum epcs_area_outcome {
    EPCS_AREA_DECIDED = 0,
    /** The facts do not fit the area (facts->field and facts->message say why): 422. */
    EPCS_AREA_REJECTED = 1,
    /** The rules failed (eval->error names file and line): 500. */
    EPCS_AREA_FAILED = 2,
};

/**
 * Asks one area about checked facts, the way every caller must: the activity kind must be one
 * the area covers, the plugin's validate must accept the facts, then its evaluate runs the
 * rules and packs the verdict to eval->packer. eval->area_index names the plugin. An area the
 * rules ask in turn (epcs.decide) must accept the facts too: its refusal is this area's.
 */
enum epcs_area_outcome epcs_evaluate_area(const struct epcs_plugin_set *plugins,
                                          struct epcs_facts *facts, struct epcs_eval *eval);

/**
 * Packs into `out` (reset first) the test cases of one area as a msgpack array: its own tests
 * table and the boundary cases generated from its versions' probes. Each case is a map of the
 * fields it has of name, election, date, actor, activity and expect, with `generated` (a
 * boolean); a case holding what no request could (a function, a table with a metatable, text
 * that is not UTF-8) is the map {invalid = true}. Returns 0, or -1 with `err` filled when the
 * rule API failed.
 */
int epcs_engine_pack_test_cases(struct epcs_engine *engine, size_t area_index, struct epcs_buf *out,
                                struct epcs_rule_error *err);

/**
 * Host API run_rules: see include/epcs/plugin.h. Everything it reads from the rule state runs
 * in one protected call, and the verdict is packed to eval->packer only once it is whole.
 */
int epcs_engine_run_rules(struct epcs_eval *eval);
/** Host API run_calendar: see include/epcs/plugin.h. */
int epcs_engine_run_calendar(struct epcs_calendar *calendar);

/** The host API table handed to every plugin. */
extern const struct epcs_host_api epcs_host_api_v1;

#endif
