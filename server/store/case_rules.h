#ifndef EPCS_CASE_RULES_H
#define EPCS_CASE_RULES_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cases.h"
#include "partner.h"

/*
 * What every case store backend decides alike without SQL: the actions a verdict may ask for
 * and when the requests they make fall due, a report's status from its requests, the details
 * of each step's history row and event, and whether a request takes an answer. The backends
 * (sqlite/cases.c, postgresql/cases.c) store what these decide; case_steps.h strings them
 * into the steps of a case.
 */

/** Who takes the steps nobody asked for: requests made from a verdict, overdue, escalation. */
#define EPCS_CASE_ACTOR "epcs"
/** More actions than this in one verdict is a rule gone wrong, not a case. */
#define EPCS_CASE_MAX_ACTIONS 16
/** Attempts of one chain are bounded by escalation.after (at most 100) plus the escalation. */
#define EPCS_CASE_MAX_CHAIN 128

/** One action of a verdict (or an escalation of one), read and checked. */
struct epcs_case_action {
    /** The map read, borrowed from its zone. */
    const msgpack_object *map;
    char kind[32];
    char to[EPCS_KEY_PARTNER_MAX];
    char article[64];
    /** Durations from the moment the request is sent; 0: no due time, -1: no objection. */
    int64_t due_span_us;
    int64_t objection_span_us;
    const msgpack_object *escalation;
    int escalate_after;
};

/**
 * Reads and checks the action `map` (an escalation when `depth` > 0), "platform" standing for
 * `platform`. 0, or -1 with `why` naming the field.
 */
int epcs_case_parse_action(const msgpack_object *map, const char *platform, int depth,
                           struct epcs_case_action *action, char *why, size_t why_size);

/** The parts of a verdict the store reads, borrowed from the zone it was read into. */
struct epcs_case_verdict {
    msgpack_object root;
    char verdict[16];
    char article[64];
    char ruleset[32];
    const msgpack_object *actions;
};

/** The number of actions of a verdict read by epcs_case_read_filing. */
size_t epcs_case_action_count(const struct epcs_case_verdict *view);

/**
 * Reads the verdict of `report` into `zone` and its actions into `actions` (room for
 * EPCS_CASE_MAX_ACTIONS), `count` of them. 0, or -1 with `err` naming what does not read.
 */
int epcs_case_read_filing(msgpack_zone *zone, const struct epcs_case_report *report,
                          struct epcs_case_verdict *view, struct epcs_case_action *actions,
                          size_t *count, char *err, size_t err_size);

/**
 * Readies `zone` (msgpack_zone_destroy it when done) and unpacks a request's stored action
 * (`len` bytes) into it: `map` stays nil when the bytes do not read, which a parse of it then
 * names. 0, or -1 when memory runs out (nothing to destroy).
 */
int epcs_case_unpack_action(msgpack_zone *zone, const char *bytes, size_t len, msgpack_object *map);

/** When a request sent at some moment under an action falls due and may be objected to. */
struct epcs_case_timing {
    int has_due, has_objection;
    int64_t due_us, objection_until_us;
};

/** The timing of a request sent at `now` under `action`. */
struct epcs_case_timing epcs_case_timing_of(const struct epcs_case_action *action, int64_t now);

/** How many of a report's requests are in each state that decides the report's. */
struct epcs_case_request_counts {
    long long all, pending, held, dismissed;
};

/** A report's status from its verdict and its requests. */
const char *epcs_case_report_status(const char *verdict,
                                    const struct epcs_case_request_counts *counts);

/**
 * `verdict` (a map without `decision`) with "decision": `id` at its end, as /v1/check answers,
 * appended to `out`. 0, or -1 when it is not a map.
 */
int epcs_case_with_decision(const char *verdict, size_t len, uint64_t id, struct epcs_buf *out);

/** Splices already-encoded msgpack into the packer's output. */
void epcs_case_pack_raw(msgpack_packer *pk, const void *bytes, size_t len);

/* ---- details of steps ------------------------------------------------------------------- */

/** A detail map under construction; epcs_buf_free(&detail.buf) when done. */
struct epcs_case_detail {
    struct epcs_buf buf;
    msgpack_packer pk;
};

/** Starts a map of `fields` entries. */
void epcs_case_detail_begin(struct epcs_case_detail *detail, size_t fields);
void epcs_case_detail_str(struct epcs_case_detail *detail, const char *key, const char *value);
void epcs_case_detail_id(struct epcs_case_detail *detail, const char *key, uint64_t value);
void epcs_case_detail_time(struct epcs_case_detail *detail, const char *key, int64_t us);
/** A `len`-byte text under `key`. */
void epcs_case_detail_text(struct epcs_case_detail *detail, const char *key, const char *text,
                           size_t len);

/** One step of a case: a history row and its event in the decision log. */
struct epcs_case_step {
    uint64_t report;
    /** 0 for a step of the report itself. */
    uint64_t request;
    const char *event;
    /** The status of the request (or report) after the step. */
    const char *status;
    /** Who took the step: a partner id, or EPCS_CASE_ACTOR. */
    const char *actor;
    /** Whom it concerns, the event's partner in the decision log. */
    const char *partner;
    const char *election;
    /** NULL: none. */
    const struct epcs_case_detail *detail;
    int64_t at_us;
};

/** The step's detail as bytes (NULL, 0: none). */
const char *epcs_case_step_detail(const struct epcs_case_step *step, size_t *len);

/* ---- requests -------------------------------------------------------------------------- */

/** A request about to be sent, or held for staff. */
struct epcs_case_new_request {
    uint64_t report;
    const char *election;
    const struct epcs_case_action *action;
    /** 0: the request starts a chain of its own. */
    uint64_t chain;
    int attempt;
    /** The ignored request that caused this one, or 0. */
    uint64_t follows;
    /** Held until staff confirm it: no due time or objection period yet, in nobody's queue. */
    int held;
    int64_t now_us;
};

/** The detail of request_sent and request_held: `due` NULL when there is none. */
void epcs_case_sent_detail(struct epcs_case_detail *detail, uint64_t report,
                           const struct epcs_case_action *action, int attempt, const int64_t *due,
                           uint64_t follows);

/** A stored request as the writes need it. */
struct epcs_case_request_row {
    uint64_t report;
    uint64_t chain;
    int attempt;
    char partner[EPCS_KEY_PARTNER_MAX];
    char status[24];
    char election[64];
    char platform[EPCS_KEY_PARTNER_MAX];
    int has_due, has_objection;
    int64_t due_us, objection_until_us;
    /** The action map as stored (msgpack), owned: epcs_buf_free when done. */
    struct epcs_buf action;
};

/**
 * Whether the partner may answer the request now: EPCS_CASES_OK with `late` set when it is
 * overdue, or the code that refuses it with its detail (a status, a time) in `detail`.
 */
int epcs_case_check_answerable(const struct epcs_case_answer *answer,
                               const struct epcs_case_request_row *row, int *late, char *detail,
                               size_t detail_size);

/* ---- Idempotency-Key ------------------------------------------------------------------- */

/** A write's first answer, as a retry gets it. */
struct epcs_case_kept_answer {
    /** The report or request the write was about. */
    uint64_t subject;
    int joined;
    struct epcs_buf answer;
};

/** What the case store keeps a partner's key under, per kind of write. */
#define EPCS_CASE_SCOPE_FILE "file"
#define EPCS_CASE_SCOPE_ANSWER "answer"

#endif
