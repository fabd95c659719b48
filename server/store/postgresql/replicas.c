/*
 * The registry on PostgreSQL (epcs_replicas_postgresql, store.h): this replica's run of
 * epcs_runs (pg_runs.h), beaten and read with everyone's in one round trip.
 */
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "pg_runs.h"
#include "pg_store.h"
#include "replica_rows.h"

struct pg_replicas {
    struct epcs_replicas base;
    struct epcs_pg *pg;
};

static struct epcs_replicas *pg_open(const char *where, const char *audit, char *err,
                                     size_t err_size)
{
    struct pg_replicas *replicas = calloc(1, sizeof(*replicas));
    if (replicas == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    uint64_t run;
    if ((replicas->pg = epcs_pg_runs_open(where, err, err_size)) == NULL ||
        epcs_pg_join_run(replicas->pg, audit, &run, err, err_size) != 0) {
        epcs_pg_close(replicas->pg);
        free(replicas);
        return NULL;
    }
    epcs_replica_rows_init(&replicas->base, &epcs_replicas_postgresql, run);
    return &replicas->base;
}

static void pg_close(struct epcs_replicas *base)
{
    struct pg_replicas *replicas = (struct pg_replicas *)base;
    char err[512];
    if (epcs_pg_end_run(replicas->pg, base->run, err, sizeof(err)) != 0)
        epcs_log(EPCS_LOG_WARN, "store",
                 "cannot mark run %llu stopped (it stops counting as live within %d ms): %s",
                 (unsigned long long)base->run, EPCS_REPLICA_LIVE_MS, err);
    epcs_pg_close(replicas->pg);
    epcs_replica_rows_free(base);
    free(replicas);
}

static int pg_beat(struct epcs_replicas *base, const struct epcs_replica_status *status, char *err,
                   size_t err_size)
{
    struct pg_replicas *replicas = (struct pg_replicas *)base;
    struct epcs_replica_row *rows;
    size_t count;
    int64_t now_us;
    if (epcs_pg_beat(replicas->pg, base->run, status, &rows, &count, &now_us, err, err_size) != 0)
        return -1;
    epcs_replica_rows_replace(base, rows, count, now_us);
    return 0;
}

const struct epcs_replicas_ops epcs_replicas_postgresql = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .beat = pg_beat,
};
