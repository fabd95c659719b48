#ifndef EPCS_IMPACT_H
#define EPCS_IMPACT_H

#include <stdio.h>

#include "server.h"

/*
 * Impact analysis: what commission staff run before activating an amendment. Every check of a
 * list is decided under the active and the candidate ruleset; each one whose answer would change
 * (verdict, area, article or exception) is reported with both answers, and the changes are
 * counted per area.
 */

/**
 * Decides `checks` (a decoded array of check maps) under both rulesets and writes the report as
 * JSON to `out`. `server` supplies the plugins. Returns 0, or -1 (message on stderr).
 */
int epcs_impact_run(struct epcs_server *server, struct epcs_ruleset *active,
                    struct epcs_ruleset *candidate, const msgpack_object *checks, FILE *out);

/**
 * Writes to `out` the parts of an answer that matter for "did it change": the verdict and, per
 * area, the article and exception. Reasons and version ids change with any edit and are left
 * out.
 */
void epcs_answer_signature(const msgpack_object *answer, struct epcs_buf *out);

#endif
