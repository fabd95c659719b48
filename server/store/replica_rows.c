/*
 * The registry's last read, shared by its backends, and the calls that only read it (no
 * backend's ops: nothing of theirs waits on the database).
 */
#include "replica_rows.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "dates.h"

void epcs_replica_rows_init(struct epcs_replicas *replicas, const struct epcs_replicas_ops *ops,
                            uint64_t self)
{
    replicas->ops = ops;
    replicas->run = self;
    pthread_mutex_init(&replicas->lock, NULL);
    replicas->rows = NULL;
    replicas->count = 0;
    replicas->live = 1;
    replicas->read_us = 0;
    replicas->read_mono_ns = 0;
}

void epcs_replica_rows_free(struct epcs_replicas *replicas)
{
    free(replicas->rows);
    replicas->rows = NULL;
    pthread_mutex_destroy(&replicas->lock);
}

static int is_live(const struct epcs_replica_row *row, int64_t age_us)
{
    return row->stopped_us == 0 && age_us <= (int64_t)EPCS_REPLICA_LIVE_MS * 1000;
}

void epcs_replica_rows_replace(struct epcs_replicas *replicas, struct epcs_replica_row *rows,
                               size_t count, int64_t now_us)
{
    unsigned live = 0;
    for (size_t i = 0; i < count; i++)
        live += (unsigned)is_live(&rows[i], now_us - rows[i].heartbeat_us);
    pthread_mutex_lock(&replicas->lock);
    free(replicas->rows);
    replicas->rows = rows;
    replicas->count = count;
    /* This replica counts even when the database lost its row: it is running. */
    replicas->live = live > 0 ? live : 1;
    replicas->read_us = now_us;
    replicas->read_mono_ns = epcs_clock_ns(CLOCK_MONOTONIC);
    pthread_mutex_unlock(&replicas->lock);
}

uint64_t epcs_replicas_run(const struct epcs_replicas *replicas)
{
    return replicas->run;
}

unsigned epcs_replicas_live(struct epcs_replicas *replicas)
{
    pthread_mutex_lock(&replicas->lock);
    unsigned live = replicas->live;
    pthread_mutex_unlock(&replicas->lock);
    return live;
}

static void pack_ms(msgpack_packer *pk, int64_t us)
{
    msgpack_pack_int64(pk, us / 1000);
}

static void pack_row(msgpack_packer *pk, const struct epcs_replica_row *row, uint64_t self,
                     int64_t age_us)
{
    msgpack_pack_map(pk, 12);
    epcs_pack_cstr(pk, "run");
    msgpack_pack_uint64(pk, row->run);
    epcs_pack_cstr(pk, "host");
    epcs_pack_cstr(pk, row->host);
    epcs_pack_cstr(pk, "pid");
    msgpack_pack_long(pk, row->pid);
    epcs_pack_cstr(pk, "audit");
    epcs_pack_cstr(pk, row->audit);
    epcs_pack_cstr(pk, "started_at");
    epcs_pack_instant_us(pk, row->started_us);
    epcs_pack_cstr(pk, "heartbeat_at");
    epcs_pack_instant_us(pk, row->heartbeat_us);
    epcs_pack_cstr(pk, "heartbeat_age_ms");
    pack_ms(pk, age_us);
    /* silent: neither stopped nor heard from for EPCS_REPLICA_LIVE_MS (killed, cut off). */
    epcs_pack_cstr(pk, "state");
    epcs_pack_cstr(pk, row->stopped_us != 0 ? "stopped" : is_live(row, age_us) ? "live" : "silent");
    epcs_pack_cstr(pk, "ruleset");
    if (row->status.ruleset[0] != '\0')
        epcs_pack_cstr(pk, row->status.ruleset);
    else
        msgpack_pack_nil(pk);
    epcs_pack_cstr(pk, "epoch");
    msgpack_pack_uint64(pk, row->status.epoch);
    epcs_pack_cstr(pk, "ready");
    if (row->status.ready)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    epcs_pack_cstr(pk, "self");
    if (row->run == self)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void epcs_replicas_pack(struct epcs_replicas *replicas, msgpack_packer *pk)
{
    pthread_mutex_lock(&replicas->lock);
    /* Ages as of now: the read's ages plus the time since it, so a replica cut off from the
     * database sees every mark, its own included, grow old. */
    int64_t since_us = replicas->read_us != 0
                           ? (epcs_clock_ns(CLOCK_MONOTONIC) - replicas->read_mono_ns) / 1000
                           : 0;
    int64_t now_us = replicas->read_us + since_us;
    unsigned live = 0;
    for (size_t i = 0; i < replicas->count; i++)
        live += (unsigned)is_live(&replicas->rows[i], now_us - replicas->rows[i].heartbeat_us);
    msgpack_pack_map(pk, 4);
    epcs_pack_cstr(pk, "replicas");
    msgpack_pack_array(pk, replicas->count);
    for (size_t i = 0; i < replicas->count; i++)
        pack_row(pk, &replicas->rows[i], replicas->run, now_us - replicas->rows[i].heartbeat_us);
    /* As the states say, so the count and the list agree (epcs_replicas_live is the count at
     * the read, what the rate limits split by). */
    epcs_pack_cstr(pk, "live");
    msgpack_pack_unsigned_int(pk, replicas->count > 0 ? live : replicas->live);
    epcs_pack_cstr(pk, "read_at");
    if (replicas->read_us != 0)
        epcs_pack_instant_us(pk, replicas->read_us);
    else
        msgpack_pack_nil(pk);
    epcs_pack_cstr(pk, "read_age_ms");
    if (replicas->read_us != 0)
        pack_ms(pk, since_us);
    else
        msgpack_pack_nil(pk);
    pthread_mutex_unlock(&replicas->lock);
}
