#include "pg_runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SCHEMA_VERSION 1

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS epcs_runs ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " started_at timestamptz NOT NULL DEFAULT now(), host text NOT NULL, pid integer NOT NULL,"
    " audit text NOT NULL, heartbeat_at timestamptz NOT NULL DEFAULT now(),"
    " ruleset text, epoch bigint, ready boolean NOT NULL DEFAULT false,"
    " stopped_at timestamptz);";

int epcs_pg_runs_schema(struct epcs_pg *pg, char *err, size_t err_size)
{
    return epcs_pg_schema(pg, "runs", SCHEMA_VERSION, schema, err, err_size);
}

int epcs_pg_claim_run(struct epcs_pg *pg, const char *audit, uint64_t *run, char *err,
                      size_t err_size)
{
    char host[256] = "", pid[16];
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "unknown");
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    PGconn *conn = epcs_pg_take(pg, err, err_size);
    if (conn == NULL)
        return -1;
    const char *values[] = {host, pid, audit};
    PGresult *result = epcs_pg_run(conn, "claiming a run number",
                                   "INSERT INTO epcs_runs (host, pid, audit) VALUES ($1, $2, $3)"
                                   " RETURNING id",
                                   3, values, NULL, err, err_size);
    int rc = -1;
    if (result != NULL && PQntuples(result) == 1) {
        *run = strtoull(PQgetvalue(result, 0, 0), NULL, 10);
        rc = 0;
    }
    PQclear(result);
    epcs_pg_give(pg, conn);
    return rc;
}
