#ifndef EPCS_RULE_VERSIONS_H
#define EPCS_RULE_VERSIONS_H

#include <jansson.h>
#include <stddef.h>

#include "ruleset.h"

/* What the rule store's backends share (rule_versions.c); callers use rule_store.h. */

/** True when `hash` is 64 lower-case hex digits, the only blob names a store answers. */
int epcs_rule_store_valid_sha256(const char *hash);

/**
 * The manifest of `ruleset` as first stored now (JSON text: ruleset, label, directory,
 * stored_at, files with name, sha256 and bytes). The caller frees it; NULL when out of memory.
 */
char *epcs_rule_store_manifest_text(const struct epcs_ruleset *ruleset);

/**
 * The listing's entry for a stored manifest ({ruleset, label, stored_at}), or NULL when the
 * text is not a manifest (a damaged one is left out of the list, not listed half).
 */
json_t *epcs_rule_store_version_summary(const char *manifest_text, size_t len);

#endif
