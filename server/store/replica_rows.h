#ifndef EPCS_REPLICA_ROWS_H
#define EPCS_REPLICA_ROWS_H

#include <msgpack.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "replicas.h"
#include "store.h"

/*
 * What every registry backend keeps of its last read (replicas.h), behind a lock: the beat
 * replaces it on the store's thread while routes pack it on event loops.
 */

/** One replica's row as read. Times are microseconds since the epoch by the store's clock. */
struct epcs_replica_row {
    uint64_t run;
    char host[64];
    long pid;
    char audit[8];
    int64_t started_us, heartbeat_us;
    /** 0 while it runs. */
    int64_t stopped_us;
    struct epcs_replica_status status;
};

/** Initialises `replicas`' shared part for backend `ops` and run `self`. */
void epcs_replica_rows_init(struct epcs_replicas *replicas, const struct epcs_replicas_ops *ops,
                            uint64_t self);

/** Frees what epcs_replica_rows_init and the reads kept. */
void epcs_replica_rows_free(struct epcs_replicas *replicas);

/**
 * Makes `rows` (malloc'd, taken over) the last read, made when the store's clock said `now_us`;
 * the live count is taken from them now.
 */
void epcs_replica_rows_replace(struct epcs_replicas *replicas, struct epcs_replica_row *rows,
                               size_t count, int64_t now_us);

#endif
