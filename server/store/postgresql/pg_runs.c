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

struct epcs_pg *epcs_pg_runs_open(const char *uri, char *err, size_t err_size)
{
    return epcs_pg_open(uri, "runs", SCHEMA_VERSION, schema, err, err_size);
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

int epcs_pg_end_run(struct epcs_pg *pg, uint64_t run, char *err, size_t err_size)
{
    return update_run(pg, run, "marking this replica stopped",
                      "UPDATE epcs_runs SET stopped_at = now() WHERE id = $1", err, err_size);
}

/*
 * This run's mark, and every listed run read, times as microseconds since the epoch. The
 * update is not visible to the rest of its own statement: this run's new mark comes from
 * RETURNING.
 */
static const char beat_sql[] =
    "WITH beat AS (UPDATE epcs_runs SET heartbeat_at = now(), ruleset = $2,"
    "  epoch = $3::bigint, ready = $4::boolean WHERE id = $1::bigint"
    "  RETURNING id, heartbeat_at, ruleset, epoch, ready),"
    " r AS (SELECT r.*, b.id IS NOT NULL AS mine,"
    "  COALESCE(b.heartbeat_at, r.heartbeat_at) AS mark,"
    "  CASE WHEN b.id IS NULL THEN r.ruleset ELSE b.ruleset END AS serves,"
    "  CASE WHEN b.id IS NULL THEN r.epoch ELSE b.epoch END AS at_epoch,"
    "  CASE WHEN b.id IS NULL THEN r.ready ELSE b.ready END AS is_ready"
    "  FROM epcs_runs r LEFT JOIN beat b ON b.id = r.id)"
    " SELECT id, host, pid, audit, (extract(epoch FROM started_at) * 1000000)::bigint,"
    "  (extract(epoch FROM mark) * 1000000)::bigint,"
    "  COALESCE((extract(epoch FROM stopped_at) * 1000000)::bigint, 0),"
    "  COALESCE(serves, ''), COALESCE(at_epoch, 0), is_ready,"
    "  (extract(epoch FROM now()) * 1000000)::bigint, (SELECT count(*) FROM beat)"
    " FROM r WHERE beats AND (mine OR COALESCE(stopped_at, mark)"
    "  > now() - $5::integer * interval '1 second')"
    " ORDER BY id LIMIT " EPCS_PG_REPLICAS_LISTED_MAX;

/* The text of column `column` of `row` into `out`, cut to its size. */
static void copy_value(const PGresult *result, int row, int column, char *out, size_t size)
{
    snprintf(out, size, "%s", PQgetvalue(result, row, column));
}

int epcs_pg_beat(struct epcs_pg *pg, uint64_t run, const struct epcs_replica_status *status,
                 struct epcs_replica_row **rows, size_t *count, int64_t *now_us, char *err,
                 size_t err_size)
{
    char number[24], epoch[24], listed[16];
    snprintf(number, sizeof(number), "%llu", (unsigned long long)run);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)status->epoch);
    snprintf(listed, sizeof(listed), "%d", EPCS_REPLICA_LISTED_S);
    PGconn *conn = epcs_pg_take(pg, err, err_size);
    if (conn == NULL)
        return -1;
    const char *values[] = {number, status->ruleset[0] != '\0' ? status->ruleset : NULL, epoch,
                            status->ready ? "true" : "false", listed};
    PGresult *result =
        epcs_pg_run(conn, "marking this replica alive", beat_sql, 5, values, NULL, err, err_size);
    epcs_pg_give(pg, conn);
    if (result == NULL)
        return -1;
    int n = PQntuples(result);
    if (n == 0 || strcmp(PQgetvalue(result, 0, 11), "1") != 0) {
        snprintf(err, err_size, "marking this replica alive: no run %s in epcs_runs", number);
        PQclear(result);
        return -1;
    }
    struct epcs_replica_row *read = calloc((size_t)n, sizeof(*read));
    if (read == NULL) {
        snprintf(err, err_size, "out of memory reading the replicas");
        PQclear(result);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct epcs_replica_row *row = &read[i];
        row->run = strtoull(PQgetvalue(result, i, 0), NULL, 10);
        copy_value(result, i, 1, row->host, sizeof(row->host));
        row->pid = strtol(PQgetvalue(result, i, 2), NULL, 10);
        copy_value(result, i, 3, row->audit, sizeof(row->audit));
        row->started_us = strtoll(PQgetvalue(result, i, 4), NULL, 10);
        row->heartbeat_us = strtoll(PQgetvalue(result, i, 5), NULL, 10);
        row->stopped_us = strtoll(PQgetvalue(result, i, 6), NULL, 10);
        copy_value(result, i, 7, row->status.ruleset, sizeof(row->status.ruleset));
        row->status.epoch = strtoull(PQgetvalue(result, i, 8), NULL, 10);
        row->status.ready = PQgetvalue(result, i, 9)[0] == 't';
    }
    *now_us = strtoll(PQgetvalue(result, 0, 10), NULL, 10);
    PQclear(result);
    *rows = read;
    *count = (size_t)n;
    return 0;
}
