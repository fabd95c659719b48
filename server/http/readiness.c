/*
 * Whether this replica is ready to serve, as /readyz answers it and as it tells the other
 * replicas with each beat (replicas.h): the same test for both, so the proxy's view and
 * GET /v1/admin/cluster's never disagree.
 */
#include <stdio.h>
#include <string.h>

#include "http.h"

/*
 * The decision log's state: its mode when it takes decisions, else "failed", "stalled" or
 * "full" with `reason` saying what keeps it from taking them.
 */
static const char *log_readiness(struct epcs_decision_log *log, size_t *queued, char *reason,
                                 size_t reason_size)
{
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    *queued = stats.queued;
    if (stats.failed) {
        snprintf(reason, reason_size, "the decision log failed (%s): restart epcsd", stats.reason);
        return "failed";
    }
    if (stats.stalled) {
        /* PostgreSQL's retries back off, a disk's come at a steady pace. */
        if (strncmp(stats.reason, "PostgreSQL", 10) == 0)
            snprintf(reason, reason_size,
                     "the decision log cannot write: %s; it tries again, backing off to every "
                     "2 s",
                     stats.reason);
        else
            snprintf(reason, reason_size,
                     "the decision log cannot write %s; it tries again every %d ms", stats.reason,
                     EPCS_DECISION_LOG_RETRY_MS);
        return "stalled";
    }
    if (stats.queued >= stats.queue_limit) {
        snprintf(reason, reason_size,
                 "the decision log's queue is full: %zu decisions wait for the disk", stats.queued);
        return "full";
    }
    return epcs_decision_log_mode(log) == EPCS_AUDIT_SYNC ? "sync" : "async";
}

void epcs_server_readiness(struct epcs_server *server, int has_engine,
                           struct epcs_readiness *readiness)
{
    readiness->log_state = "off";
    readiness->queued = 0;
    readiness->reason[0] = '\0';
    if (server->decisions != NULL)
        readiness->log_state = log_readiness(server->decisions, &readiness->queued,
                                             readiness->reason, sizeof(readiness->reason));
    if (!has_engine)
        snprintf(readiness->reason, sizeof(readiness->reason),
                 "no rule engine could be built (see the server log)");
    /* Out of the proxy's rotation rather than answer by rules the cluster has left. */
    readiness->behind =
        epcs_server_rules_behind(server, readiness->reason, sizeof(readiness->reason));
    readiness->store_down = atomic_load(&server->store_down);
    if (readiness->store_down && readiness->reason[0] == '\0')
        snprintf(readiness->reason, sizeof(readiness->reason),
                 "the store's database cannot be reached (tried every %d ms at most)",
                 EPCS_RULE_FOLLOW_POLL_MS);
    readiness->ready = readiness->reason[0] == '\0';
}
