#ifndef EPCS_IMPACT_H
#define EPCS_IMPACT_H

#include "buf.h"
#include "check.h"
#include "ruleset.h"

/*
 * Impact analysis: what commission staff run before activating an amendment. Every check of a
 * list is decided under the active and the candidate ruleset; each one whose answer would change
 * (verdict, area, article or exception) is reported with both answers, and the changes are
 * counted per area.
 */

/**
 * Decides `checks` (a decoded array of check maps) under both rulesets, with two engines built
 * on the calling thread for the call (any thread: a pool thread for POST
 * /v1/admin/rules/impact), and appends the report to `out` as one msgpack map {active,
 * candidate, checks, changed, changed_by_area, changes: [{index, check, before, after}]}.
 * `plugins` must be the rulesets'. Returns 0, or -1 with `err` filled (what `out` holds then
 * is no report).
 */
int epcs_impact_run(const struct epcs_plugin_set *plugins, struct epcs_ruleset *active,
                    struct epcs_ruleset *candidate, const msgpack_object *checks,
                    struct epcs_buf *out, char *err, size_t err_size);

/**
 * Writes to `out` the parts of an answer that matter for "did it change": the verdict and, per
 * area, the article and exception. Reasons and version ids change with any edit and are left
 * out.
 */
void epcs_answer_signature(const msgpack_object *answer, struct epcs_buf *out);

#endif
