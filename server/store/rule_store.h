#ifndef EPCS_RULE_STORE_H
#define EPCS_RULE_STORE_H

#include <stdint.h>

#include "buf.h"
#include "ruleset.h"

/*
 * Every ruleset epcsd activates is kept in the rule store: each file once, by its SHA-256, and
 * one manifest per version id (label, directory, when it was first stored, file names and
 * hashes). Any past version can then be shown, compared and restored, and a logged decision
 * traced to the exact text of the rules that made it. The store also keeps the append-only
 * history of which version was activated when, from which, by whom and why.
 *
 * The store is an interface (store.h). Its file backend keeps files under <data>/rulesets:
 * blobs/<sha256>, <id>.json and activations.jsonl; its PostgreSQL backend keeps the same in
 * tables every replica shares. Every call may be made from any thread at once (the reload
 * saves while the thread pool reads).
 */

/** A rule store handle (store.h: it begins with its backend's ops). */
struct epcs_rule_store;

/**
 * Opens the rule store: the file backend under `data_dir` when `store_uri` is NULL (nothing is
 * created until a save), else the PostgreSQL backend at that connection string (its tables
 * are created or checked now). Returns a handle the caller closes with epcs_rule_store_close,
 * or NULL with `err` filled.
 */
struct epcs_rule_store *epcs_rule_store_open(const char *store_uri, const char *data_dir, char *err,
                                             size_t err_size);

/** Closes a handle from epcs_rule_store_open. Accepts NULL. */
void epcs_rule_store_close(struct epcs_rule_store *store);

/** Stores `ruleset` (kept as first stored when it was before). 0, or -1 (logged). */
int epcs_rule_store_save(struct epcs_rule_store *store, const struct epcs_ruleset *ruleset);

/**
 * What a call of a rule store in PostgreSQL returns instead of -1 when the database cannot be
 * reached or stopped answering (--store-timeout): temporary, worth a retry; -1 stays a damaged
 * or refused store.
 */
#define EPCS_RULE_STORE_UNREACHABLE (-2)

/** What epcs_rule_store_activate is given as `expected_epoch` to activate whatever the epoch. */
#define EPCS_RULE_EPOCH_ANY UINT64_MAX

/** One activation: from which version (NULL: none before) to which, by whom, why. */
struct epcs_rule_activation {
    const char *from;
    const char *to;
    /** A key, a signal, the directory watch, the start. */
    const char *by;
    const char *why;
    /**
     * The epoch the activation was decided on (what epcs_rule_store_active said when staff
     * looked), or EPCS_RULE_EPOCH_ANY: a reload of the rules directory wins whatever came
     * between.
     */
    uint64_t expected_epoch;
};

/**
 * Appends `activation` to the history and makes its version the active one, with the next
 * epoch (the number of activations recorded), all at once and durable before it returns; with
 * PostgreSQL every replica following the store (epcs_rule_store_follow) hears of it. Returns 0
 * with `*epoch` the new epoch; 1 when the epoch was no longer `expected_epoch` (nothing
 * recorded, `*epoch` the current one: the caller decided on a stale view); -1 (logged).
 */
int epcs_rule_store_activate(struct epcs_rule_store *store,
                             const struct epcs_rule_activation *activation, uint64_t *epoch);

/** epcs_rule_store_activate whatever the epoch, for callers that need no epoch. 0 or -1. */
int epcs_rule_store_record_activation(struct epcs_rule_store *store, const char *from,
                                      const char *to, const char *by, const char *why);

/**
 * The version the history last activated into `id`, and the epoch into `epoch` (may be NULL).
 * Returns 0, 1 when nothing was ever activated, -1 when the store cannot be read (logged).
 */
int epcs_rule_store_active(struct epcs_rule_store *store, char id[24], uint64_t *epoch);

/** epcs_rule_store_active without the epoch; 1 also when the store cannot be read. */
int epcs_rule_store_last_active(struct epcs_rule_store *store, char id[24]);

/**
 * Calls `changed(ctx)`, on a thread of the store's own, whenever another process may have
 * activated a version: at once when the database announces an activation, after every
 * reconnection, at every failed attempt to reconnect, and every EPCS_RULE_FOLLOW_POLL_MS in any
 * case (a lost announcement must not leave a replica behind). The callback reads
 * epcs_rule_store_active itself, and learns from its failing that the database is away. One
 * follower per handle; the file backend has no other process to follow and never calls it. 0, or
 * -1.
 */
int epcs_rule_store_follow(struct epcs_rule_store *store, void (*changed)(void *ctx), void *ctx);

/** Stops following (waits for a callback under way). Accepts a store that never followed. */
void epcs_rule_store_unfollow(struct epcs_rule_store *store);

#define EPCS_RULE_FOLLOW_POLL_MS 2000

/** True when `id` has the shape of a version id ("rs-" and 16 hex digits). Pure: no store. */
int epcs_rule_store_valid_id(const char *id, size_t len);

/**
 * Appends the manifest of version `id` (JSON text) to `out`. Returns 0, 1 when no such version
 * is stored, -1 on a read error.
 */
int epcs_rule_store_manifest(struct epcs_rule_store *store, const char *id, struct epcs_buf *out);

/** Appends the content of the stored file with this SHA-256 to `out`. 0, 1 unknown, -1. */
int epcs_rule_store_blob(struct epcs_rule_store *store, const char *sha256, struct epcs_buf *out);

/**
 * Appends the stored versions, first stored first, and the activation history, oldest first,
 * as JSON: {"versions": [{"ruleset", "label", "stored_at"}], "activations": [{"at", "from",
 * "to", "by", "why"}]}. Returns 0 or -1.
 */
int epcs_rule_store_list(struct epcs_rule_store *store, struct epcs_buf *out);

/**
 * Writes the files of stored version `id` into `dir` (created if missing), ready for --rules.
 * Returns 0, or -1 with a message on stderr.
 */
int epcs_rule_store_restore(struct epcs_rule_store *store, const char *id, const char *dir);

#endif
