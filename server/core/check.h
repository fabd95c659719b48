#ifndef EPCS_CHECK_H
#define EPCS_CHECK_H

#include <msgpack.h>
#include <stdint.h>

#include "buf.h"
#include "facts.h"
#include "plugin_loader.h"
#include "ruleset.h"

/*
 * Deciding one check, with no transport around it: the check routes, impact analysis, the
 * replay of a logged decision and the fuzzer all call epcs_check_run. It knows no HTTP: a check
 * that gets no verdict comes back as a failure kind, and the caller says what that means on its
 * wire (the check routes map each kind to its status in one table).
 */

/** Why a check got no verdict. 0 is no failure. */
enum epcs_check_failure {
    EPCS_CHECK_DECIDED = 0,
    /** The envelope is no check map, or a member has the wrong type, or is unknown. */
    EPCS_CHECK_BAD_REQUEST,
    /** `election` names no election of the ruleset. */
    EPCS_CHECK_UNKNOWN_ELECTION,
    /** `area` names no loaded area. */
    EPCS_CHECK_UNKNOWN_AREA,
    /** A fact (or the date) is not what the vocabulary allows. */
    EPCS_CHECK_INVALID_FACT,
    /** The area's rules broke while deciding: the request was not at fault. */
    EPCS_CHECK_RULE_FAILED,
    EPCS_CHECK_FAILURE_COUNT
};

/**
 * The machine name of `failure` ("bad_request", "unknown_election", "unknown_area",
 * "invalid_fact", "rule_failed"): the `error` code of every answer that reports it. NULL for
 * EPCS_CHECK_DECIDED or a value out of range.
 */
const char *epcs_check_failure_name(enum epcs_check_failure failure);

/** Why one check got no verdict, told in the check's own terms. */
struct epcs_check_error {
    enum epcs_check_failure kind;
    /** The dotted path of the offending member, or "" when the check as a whole is at fault. */
    char field[128];
    char message[512];
    /** For EPCS_CHECK_RULE_FAILED: the area whose rules broke, and where. NULL otherwise. */
    const char *area;
    struct epcs_rule_error rule;
};

struct epcs_decision;

/**
 * What deciding a check needs besides its engine. Everything is borrowed and used by one thread
 * at a time: a worker's own, or one made for a thread that is no worker (epcs_check_ctx_create).
 */
struct epcs_check_ctx {
    const struct epcs_plugin_set *plugins;
    /**
     * Hands out the next decision id, called once a verdict is decided; NULL takes none (no
     * decision log). `id_source` is its argument.
     */
    uint64_t (*take_decision_id)(void *id_source);
    void *id_source;
    /** For the caller's decoding around a check (a logged check, the answers it compares);
     * epcs_check_run itself allocates nothing here. */
    msgpack_zone *zone;
    /** The facts of the check being decided. */
    struct epcs_facts *facts;
    /** The answers of several areas gather here, with their packer, before they are counted. */
    struct epcs_buf *scratch;
    msgpack_packer *scratch_packer;
};

/**
 * A context of its own for a thread that is no worker (impact, replay on the thread pool):
 * `plugins` borrowed, a zone, facts and scratch buffer owned, no decision ids. NULL when memory
 * runs out. Free it with epcs_check_ctx_destroy.
 */
struct epcs_check_ctx *epcs_check_ctx_create(const struct epcs_plugin_set *plugins);
/** Frees a context made by epcs_check_ctx_create; accepts NULL. */
void epcs_check_ctx_destroy(struct epcs_check_ctx *ctx);

/**
 * Decides one decoded check with `engine` and packs its answer (a verdict, or {verdict,
 * results} when the area is omitted) to `pk`, which must not write to ctx->scratch.
 * Returns EPCS_CHECK_DECIDED (0), or the failure with `err` filled and nothing packed. Fills
 * `decision` for the decision log, taking its id from ctx->take_decision_id only once the
 * verdict is decided when decision->take_id asks for one (the answer's last entry is then
 * `decision`).
 */
enum epcs_check_failure epcs_check_run(const struct epcs_check_ctx *ctx, struct epcs_engine *engine,
                                       const msgpack_object *check, msgpack_packer *pk,
                                       struct epcs_decision *decision,
                                       struct epcs_check_error *err);

/**
 * Packs `err` as {error, message, field?, area?, file?, line?}: `error` is the failure's name,
 * and a rule's failure names its area, file and line (no field: the request was not at fault).
 * `extra` more entries are counted in the map for the caller to pack after it.
 */
void epcs_check_error_pack(msgpack_packer *pk, const struct epcs_check_error *err, size_t extra);

#endif
