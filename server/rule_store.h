#ifndef EPCS_RULE_STORE_H
#define EPCS_RULE_STORE_H

#include "buf.h"
#include "ruleset.h"

/*
 * Every ruleset epcsd activates is kept under <data>/rulesets: each file once, by its SHA-256,
 * in blobs/, and one manifest per version id (<id>.json: label, directory, activation time,
 * file names and hashes). Any past version can then be shown, compared and restored, and a
 * logged decision traced to the exact text of the rules that made it.
 */

/** Stores `ruleset` as activated now. Returns 0, or -1 (logged) when the disk refuses. */
int epcs_rule_store_save(const char *data_dir, const struct epcs_ruleset *ruleset);

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
 * Appends a JSON array of the stored versions, oldest activation first:
 * [{"ruleset", "label", "activated_at"}]. Returns 0 or -1.
 */
int epcs_rule_store_list(const char *data_dir, struct epcs_buf *out);

/**
 * Writes the files of stored version `id` into `dir` (created if missing), ready for --rules.
 * Returns 0, or -1 with a message on stderr.
 */
int epcs_rule_store_restore(const char *data_dir, const char *id, const char *dir);

#endif
