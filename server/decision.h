#ifndef EPCS_DECISION_H
#define EPCS_DECISION_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "ruleset.h"

/**
 * One decision as the check path hands it to the decision log. Everything is borrowed for the
 * duration of the sink call only: a sink that keeps anything copies it.
 */
struct epcs_decision {
    const char *election;
    int32_t date;
    /** NULL when the area was omitted and several areas answered. */
    const char *area;
    enum epcs_verdict_kind verdict;
    const char *ruleset;
    /**
     * The request body as received, and whether it is msgpack (else JSON). For an item of a
     * batch the body holds every check: `check` is the item itself.
     */
    const char *request;
    size_t request_len;
    int request_is_msgpack;
    const msgpack_object *check;
    /** The verdict as sent, msgpack-encoded. */
    const char *verdict_msgpack;
    size_t verdict_len;
    /** Microseconds from the request's arrival to the verdict. */
    uint64_t latency_us;
};

/** Receives every decision, on the worker thread that made it; must not block. */
typedef void (*epcs_decision_sink_fn)(void *ctx, const struct epcs_decision *decision);

/** Installs the sink (NULL: decisions are not recorded). Call before the workers start. */
void epcs_decisions_set_sink(epcs_decision_sink_fn sink, void *ctx);
/** Hands a decision to the sink. */
void epcs_decision_record(const struct epcs_decision *decision);
/** A sink writing one debug log line per decision. */
void epcs_decision_log_sink(void *ctx, const struct epcs_decision *decision);

#endif
