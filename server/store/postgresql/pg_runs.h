#ifndef EPCS_PG_RUNS_H
#define EPCS_PG_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "pg_store.h"

/*
 * One row of epcs_runs per start of an epcsd on the database: its number is unique across the
 * cluster (an identity column), so ids made of it (`run << 32 | sequence`, the decision log's)
 * never collide between replicas; its heartbeat and the ruleset it serves are what
 * GET /v1/admin/cluster lists.
 */

/** Creates epcs_runs when missing (its own schema step). 0, or -1 with `err`. */
int epcs_pg_runs_schema(struct epcs_pg *pg, char *err, size_t err_size);

/**
 * Claims a run number for this process: a new row naming the host, the pid and `audit`
 * ("sync", "async" or "off"). 0 with `*run` set, or -1 with `err`.
 */
int epcs_pg_claim_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                      size_t err_size);

/**
 * Claims the run a replica heartbeats (epcs_pg_heartbeat) and is counted by among the live
 * (epcs_pg_live_runs): one per process. A run from epcs_pg_claim_run only names ids.
 */
int epcs_pg_join_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                     size_t err_size);

/** Marks run `run` alive now (its heartbeat_at). 0, or -1 with `err` (no such run included). */
int epcs_pg_heartbeat(struct epcs_pg *pg, uint64_t run, char *err, size_t err_size);

/**
 * Counts, into `*live`, the runs not stopped whose heartbeat is at most `within_ms` old by the
 * database's clock (the replicas' clocks need not agree). 0, or -1 with `err`.
 */
int epcs_pg_live_runs(struct epcs_pg *pg, unsigned within_ms, unsigned *live, char *err,
                      size_t err_size);

/** Marks run `run` stopped (stopped_at), so it no longer counts as live. 0, or -1 with `err`. */
int epcs_pg_end_run(struct epcs_pg *pg, uint64_t run, char *err, size_t err_size);

#endif
