#include "pg_runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEMA_VERSION 1

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS epcs_runs ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " started_at timestamptz NOT NULL DEFAULT now(), host text NOT NULL, pid integer NOT NULL,"
    " audit text NOT NULL, heartbeat_at timestamptz NOT NULL DEFAULT now(),"
    " ruleset text, epoch bigint, ready boolean NOT NULL DEFAULT false,"
    " stopped_at timestamptz, beats boolean NOT NULL DEFAULT false);";

int epcs_pg_runs_schema(struct epcs_pg *pg, char *err, size_t err_size)
{
    return epcs_pg_schema(pg, "runs", SCHEMA_VERSION, schema, err, err_size);
}

static int claim(struct epcs_pg *pg, const char *audit, int beats, uint64_t *run, char *err,
                 size_t err_size)
{
    char host[256] = "", pid[16];
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "unknown");
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    PGconn *conn = epcs_pg_take(pg, err, err_size);
    if (conn == NULL)
        return -1;
    const char *values[] = {host, pid, audit, beats ? "true" : "false"};
    PGresult *result = epcs_pg_run(conn, "claiming a run number",
                                   "INSERT INTO epcs_runs (host, pid, audit, beats)"
                                   " VALUES ($1, $2, $3, $4) RETURNING id",
                                   4, values, NULL, err, err_size);
    int rc = -1;
    if (result != NULL && PQntuples(result) == 1) {
        *run = strtoull(PQgetvalue(result, 0, 0), NULL, 10);
        rc = 0;
    }
    PQclear(result);
    epcs_pg_give(pg, conn);
    return rc;
}

int epcs_pg_claim_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                      size_t err_size)
{
    return claim(pg, audit, 0, run, err, err_size);
}

int epcs_pg_join_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                     size_t err_size)
{
    return claim(pg, audit, 1, run, err, err_size);
}

/* One statement about run `run` that must touch its row. 0, or -1 with `err`. */
static int update_run(struct epcs_pg *pg, uint64_t run, const char *what, const char *sql,
                      char *err, size_t err_size)
{
    char number[24];
    snprintf(number, sizeof(number), "%llu", (unsigned long long)run);
    PGconn *conn = epcs_pg_take(pg, err, err_size);
    if (conn == NULL)
        return -1;
    const char *values[] = {number};
    PGresult *result = epcs_pg_run(conn, what, sql, 1, values, NULL, err, err_size);
    int rc = -1;
    if (result != NULL && strcmp(PQcmdTuples(result), "1") == 0)
        rc = 0;
    else if (result != NULL)
        snprintf(err, err_size, "%s: no run %s in epcs_runs", what, number);
    PQclear(result);
    epcs_pg_give(pg, conn);
    return rc;
}

int epcs_pg_heartbeat(struct epcs_pg *pg, uint64_t run, char *err, size_t err_size)
{
    return update_run(pg, run, "marking this replica alive",
                      "UPDATE epcs_runs SET heartbeat_at = now() WHERE id = $1", err, err_size);
}

int epcs_pg_end_run(struct epcs_pg *pg, uint64_t run, char *err, size_t err_size)
{
    return update_run(pg, run, "marking this replica stopped",
                      "UPDATE epcs_runs SET stopped_at = now() WHERE id = $1", err, err_size);
}

int epcs_pg_live_runs(struct epcs_pg *pg, unsigned within_ms, unsigned *live, char *err,
                      size_t err_size)
{
    char ms[16];
    snprintf(ms, sizeof(ms), "%u", within_ms);
    PGconn *conn = epcs_pg_take(pg, err, err_size);
    if (conn == NULL)
        return -1;
    const char *values[] = {ms};
    PGresult *result =
        epcs_pg_run(conn, "counting the live replicas",
                    /* Replicas that beat: a run claimed only for its ids (the decision
                     * log's) does not, so that a process is counted once. */
                    "SELECT count(*) FROM epcs_runs WHERE stopped_at IS NULL AND beats"
                    " AND heartbeat_at > now() - $1::integer * interval '1 millisecond'",
                    1, values, NULL, err, err_size);
    int rc = -1;
    if (result != NULL && PQntuples(result) == 1) {
        *live = (unsigned)strtoul(PQgetvalue(result, 0, 0), NULL, 10);
        rc = 0;
    }
    PQclear(result);
    epcs_pg_give(pg, conn);
    return rc;
}
