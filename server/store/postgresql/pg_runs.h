#ifndef EPCS_PG_RUNS_H
#define EPCS_PG_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "pg_store.h"
#include "replica_rows.h"

/*
 * One row of epcs_runs per start of an epcsd on the database: its number is unique across the
 * cluster (an identity column), so ids made of it (`run << 32 | sequence`, the decision log's)
 * never collide between replicas; its heartbeat and the ruleset it serves are what
 * GET /v1/admin/cluster lists.
 */

/** Creates epcs_runs when missing (its own schema step). 0, or -1 with `err`. */
int epcs_pg_runs_schema(struct epcs_pg *pg, char *err, size_t err_size);

/** A pool on `uri` for the registry, epcs_runs brought up to date. NULL with `err`. */
struct epcs_pg *epcs_pg_runs_open(const char *uri, char *err, size_t err_size);

/**
 * Claims a run number for this process: a new row naming the host, the pid and `audit`
 * ("sync", "async" or "off"). 0 with `*run` set, or -1 with `err`.
 */
int epcs_pg_claim_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                      size_t err_size);

/**
 * Claims the run a replica beats (epcs_pg_beat) and is listed by among the replicas: one per
 * process. A run from epcs_pg_claim_run only names ids.
 */
int epcs_pg_join_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                     size_t err_size);

/** The most replicas a beat reads (the oldest listed first). */
#define EPCS_PG_REPLICAS_LISTED_MAX "1000"

/**
 * Marks run `run` (from epcs_pg_join_run) alive now with `status`, and reads every run that
 * beats and was heard from, or stopped, within EPCS_REPLICA_LISTED_S, by run number, into
 * `*rows` (malloc'd, the caller frees) and `*count`, with the database's clock at the read in
 * `*now_us` (the replicas' clocks need not agree). 0, or -1 with `err` (no such run included).
 */
int epcs_pg_beat(struct epcs_pg *pg, uint64_t run, const struct epcs_replica_status *status,
                 struct epcs_replica_row **rows, size_t *count, int64_t *now_us, char *err,
                 size_t err_size);

/** Marks run `run` stopped (stopped_at), so it no longer counts as live. 0, or -1 with `err`. */
int epcs_pg_end_run(struct epcs_pg *pg, uint64_t run, char *err, size_t err_size);

#endif
