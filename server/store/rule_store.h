#ifndef EPCS_RULE_STORE_H
#define EPCS_RULE_STORE_H

#include "buf.h"
#include "ruleset.h"

/*
 * Every ruleset epcsd activates is kept under <data>/rulesets: each file once, by its SHA-256,
 * in blobs/, and one manifest per version id (<id>.json: label, directory, when it was first
 * stored, file names and hashes). Any past version can then be shown, compared and restored,
 * and a logged decision traced to the exact text of the rules that made it. activations.jsonl
 * is the append-only history of which version was activated when, from which, by whom and why.
 */

/** Stores `ruleset` (kept as first stored when it was before). 0, or -1 (logged). */
int epcs_rule_store_save(const char *data_dir, const struct epcs_ruleset *ruleset);

/**
 * Appends an activation to the history: `from` (NULL: none before) to `to`, `by` whom (a key,
 * a signal, the directory watch, the start) and `why`. fsync'd. Returns 0, or -1 (logged).
 */
int epcs_rule_store_record_activation(const char *data_dir, const char *from, const char *to,
                                      const char *by, const char *why);

/** The version the history last activated, into `id`. Returns 0, or 1 when there is none. */
int epcs_rule_store_last_active(const char *data_dir, char id[24]);

/** True when `id` has the shape of a version id ("rs-" and 16 hex digits). */
int epcs_rule_store_valid_id(const char *id, size_t len);

/**
 * Appends the manifest of version `id` (JSON text) to `out`. Returns 0, 1 when no such version
 * is stored, -1 on a read error.
 */
int epcs_rule_store_manifest(const char *data_dir, const char *id, struct epcs_buf *out);

/** Appends the content of the stored file with this SHA-256 to `out`. 0, 1 unknown, -1. */
int epcs_rule_store_blob(const char *data_dir, const char *sha256, struct epcs_buf *out);

/**
 * Appends the stored versions, first stored first, and the activation history, oldest first,
 * as JSON: {"versions": [{"ruleset", "label", "stored_at"}], "activations": [{"at", "from",
 * "to", "by", "why"}]}. Returns 0 or -1.
 */
int epcs_rule_store_list(const char *data_dir, struct epcs_buf *out);

/**
 * Writes the files of stored version `id` into `dir` (created if missing), ready for --rules.
 * Returns 0, or -1 with a message on stderr.
 */
int epcs_rule_store_restore(const char *data_dir, const char *id, const char *dir);

#endif
