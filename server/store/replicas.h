#ifndef EPCS_REPLICAS_H
#define EPCS_REPLICAS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The replicas of a cluster as each sees the others: every epcsd on one PostgreSQL database
 * holds a row of its own (a run of epcs_runs), marks it alive every EPCS_REPLICA_BEAT_MS with
 * the ruleset it serves and whether it is ready, and reads everyone's rows in the same round
 * trip. What GET /v1/admin/cluster lists and how many replicas the rate limits split a key's
 * rate among while the database is away both come from that last read, so neither waits on
 * the database.
 *
 * The embedded store (--store sqlite) serves one epcsd: its registry is this process alone, in
 * memory.
 *
 * The registry is an interface (store.h). epcs_replicas_beat blocks on the database: call it
 * from a thread of the caller's own, never from an event loop; the other calls never wait on it.
 */

/** A registry handle (store.h: it begins with its backend's ops). */
struct epcs_replicas;

/** How often a replica marks itself alive. */
#define EPCS_REPLICA_BEAT_MS 1000
/** A replica whose mark is older than this is not counted as live. */
#define EPCS_REPLICA_LIVE_MS 5000
/** A replica stopped or silent for longer than this is no longer listed. */
#define EPCS_REPLICA_LISTED_S 600

/** What a replica says of itself with each beat. */
struct epcs_replica_status {
    /** The ruleset it serves ("" before it serves one). */
    char ruleset[24];
    /** The activation epoch of that ruleset (rule_store.h). */
    uint64_t epoch;
    /** Whether its /readyz says ready. */
    int ready;
};

/**
 * Joins the replicas of the PostgreSQL database at `store_uri` (a new run, naming this host,
 * its process id and `audit`: "sync", "async" or "off"), or, when it is NULL, makes the
 * registry of this process alone. NULL with `err` filled.
 */
struct epcs_replicas *epcs_replicas_open(const char *store_uri, const char *audit, char *err,
                                         size_t err_size);

/** Marks this replica stopped (no longer live) and frees the handle. Accepts NULL. */
void epcs_replicas_close(struct epcs_replicas *replicas);

/** This replica's run number (unique in the cluster; 1 for a process alone). */
uint64_t epcs_replicas_run(const struct epcs_replicas *replicas);

/**
 * Marks this replica alive with `status` and reads every listed replica's row. 0, or -1 with
 * `err` (the database cannot be reached: the last read stays, its age growing).
 */
int epcs_replicas_beat(struct epcs_replicas *replicas, const struct epcs_replica_status *status,
                       char *err, size_t err_size);

/** The replicas live at the last read, this one included (at least 1). */
unsigned epcs_replicas_live(struct epcs_replicas *replicas);

/**
 * Packs what the last read found, as GET /v1/admin/cluster answers it: {replicas: [{run, host,
 * pid, audit, started_at, heartbeat_at, heartbeat_age_ms, state: live | silent | stopped,
 * ruleset, epoch, ready, self}, ...] (by run), live, read_at, read_age_ms}, ages and states as
 * of now (a mark ages while no read comes), `live` the rows live by them.
 */
void epcs_replicas_pack(struct epcs_replicas *replicas, msgpack_packer *pk);

#endif
