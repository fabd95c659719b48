#ifndef EPCS_KEY_STORE_H
#define EPCS_KEY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "api_key.h"

/*
 * Where the API keys are kept. The file backend is the keys file (default <data>/keys, one
 * line a key, replaced atomically under a lock beside it), which `epcsd keys` and a running
 * epcsd share; the PostgreSQL backend is a table every replica of a cluster reads, each change
 * announced (pg_notify) to the replicas that follow it.
 *
 * The PostgreSQL backend also carries what the replicas' rate limits share: how many tokens
 * every replica together has taken under each key (epcs_key_store_exchange_usage); which
 * replicas are alive is the registry's (replicas.h). The file backend serves one epcsd and
 * shares nothing: epcs_key_store_shares_usage is false for it.
 *
 * The store is an interface (store.h). Every call blocks on a file or the database: call from
 * the main thread, a thread of the store's own or the thread pool, never from an event loop.
 */

/** A key store handle (store.h: it begins with its backend's ops). */
struct epcs_key_store;

/**
 * Opens the keys file at `keys_path` when `store_uri` is NULL (a missing file is no key; it is
 * created at the first key), else the keys in PostgreSQL at that connection string (the tables
 * are created or checked now). Returns a handle for epcs_key_store_close, or NULL with `err`.
 */
struct epcs_key_store *epcs_key_store_open(const char *store_uri, const char *keys_path, char *err,
                                           size_t err_size);

/** Closes a handle (following and usage sharing stopped first). Accepts NULL. */
void epcs_key_store_close(struct epcs_key_store *store);

/** The keys file's path, or the connection string without its password, for messages. */
const char *epcs_key_store_where(const struct epcs_key_store *store);

/**
 * Every key (revoked ones are gone), sorted by id, into `*records` (malloc'd, the caller
 * frees; NULL when there is none) and `*count`. The handle remembers what it read, for
 * epcs_key_store_stale. 0, or -1 with `err` (a malformed line names the file and the line).
 */
int epcs_key_store_load(struct epcs_key_store *store, struct epcs_key_record **records,
                        size_t *count, char *err, size_t err_size);

/**
 * What a change of the keys in PostgreSQL returns instead of -1 when the database cannot be
 * reached or stopped answering (--store-timeout): temporary, worth a retry. A key being made
 * when the database went away may have been stored all the same (its token is lost: revoke it).
 */
#define EPCS_KEY_STORE_UNREACHABLE (-2)

/**
 * Adds a new key (epcs_key_mint's checks and messages), durable before it returns; the token,
 * shown only this once, goes to `token`, the record to `record`. 0, or -1 with `err`
 * (EPCS_KEY_STORE_UNREACHABLE).
 */
int epcs_key_store_create(struct epcs_key_store *store, const char *partner, enum epcs_role role,
                          double rate, char token[EPCS_KEY_TOKEN_LEN + 1],
                          struct epcs_key_record *record, char *err, size_t err_size);

/**
 * Revokes key `id`, durable before it returns. 0, 1 when there is no such key, -1 with `err`
 * (EPCS_KEY_STORE_UNREACHABLE).
 */
int epcs_key_store_revoke(struct epcs_key_store *store, const char *id, char *err, size_t err_size);

/**
 * True when the keys may differ from what this handle's last load read. Never waits on the
 * network: the file backend looks at the file; the PostgreSQL backend answers what its
 * follower last heard (false without one).
 */
int epcs_key_store_stale(struct epcs_key_store *store);

/**
 * Calls `changed(ctx)`, on a thread of the store's own, when the keys changed since the last
 * load: heard at once from the database's announcement, or found by a read of the keys'
 * version every EPCS_KEY_FOLLOW_POLL_MS and after every reconnection (a lost announcement must
 * not keep a revoked key alive). The callback loads the keys itself. One follower per handle;
 * the file backend has none (its staleness is a stat away) and never calls. 0, or -1.
 */
int epcs_key_store_follow(struct epcs_key_store *store, void (*changed)(void *ctx), void *ctx);

/** Stops following (waits for a callback under way). Accepts a store that never followed. */
void epcs_key_store_unfollow(struct epcs_key_store *store);

#define EPCS_KEY_FOLLOW_POLL_MS 1000

/** True when the backend shares rate usage between processes (PostgreSQL), false for files. */
int epcs_key_store_shares_usage(const struct epcs_key_store *store);

/**
 * Adds `used[i]` tokens (taken here since the last exchange, possibly 0) to the cluster's
 * count for key `ids[i]`, and writes the cluster's count after it into `totals[i]`: what every
 * replica together ever took under that key since the database started (the table is not
 * crash-safe: a count may start again from 0). One round trip for all `count` keys (at most
 * EPCS_KEY_EXCHANGE_MAX). 0, or -1 with `err` (nothing added: the caller drops its usage).
 */
int epcs_key_store_exchange_usage(struct epcs_key_store *store, const char *const *ids,
                                  const double *used, size_t count, double *totals, char *err,
                                  size_t err_size);

#define EPCS_KEY_EXCHANGE_MAX 4096

#endif
