#ifndef EPCS_DECISION_H
#define EPCS_DECISION_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "ruleset.h"

/**
 * One decision as the check path hands it to the decision log. Everything is borrowed until
 * the log has copied it (epcs_decision_log_append).
 */
struct epcs_decision {
    /**
     * The decision log's id, packed into the answer as `decision`; 0: not logged. Either given
     * by the caller before epcs_check_run, or taken by it once the verdict is decided (see
     * take_id), so that a check that fails takes none.
     */
    uint64_t id;
    /** Set by the caller: with the decision log on, epcs_check_run takes `id` when decided. */
    int take_id;
    const char *election;
    int32_t date;
    /** NULL and -1 when the area was omitted and every matching area answered. */
    const char *area;
    int area_index;
    enum epcs_verdict_kind verdict;
    const char *ruleset;
    /** The check as received (for an item of a batch, that item). */
    const msgpack_object *check;
    /** The check's bytes when it arrived as exactly one msgpack object (else NULL): logged as
     * they came, which spares packing `check` again. */
    const char *check_msgpack;
    size_t check_len;
    /** The verdict as sent, msgpack-encoded. */
    const char *verdict_msgpack;
    size_t verdict_len;
    /** Microseconds from the request's arrival to the verdict. */
    uint64_t latency_us;
    /** When the verdict was ready, microseconds since the epoch; 0: when it is logged. */
    int64_t at_us;
};

/** Writes one debug log line for `decision` (--log-level debug). */
void epcs_decision_debug(const struct epcs_decision *decision, const char *partner);

#endif
