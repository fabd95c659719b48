#ifndef EPCS_RULE_TESTS_H
#define EPCS_RULE_TESTS_H

#include <stdio.h>

#include "ruleset.h"

/** Counts over every area of one run. */
struct epcs_rule_test_summary {
    size_t passed;
    size_t failed;
    size_t generated;
};

/**
 * Runs every area's test table and the boundary cases generated from its probes through the
 * same fact checks, plugin validation and verdict checks as a real request. Writes one line
 * per failure and one summary line per area to `out` (NULL: silent). Returns 0 when every case
 * passed, -1 otherwise (including when the rules could not run).
 */
int epcs_rule_tests_run(struct epcs_ruleset *ruleset, FILE *out,
                        struct epcs_rule_test_summary *summary);

/**
 * Runs the tests as epcs_rule_tests_run does and logs each failure line at error level; the
 * first one is also copied to `first_failure` (may be NULL). Returns 0 when every case passed:
 * only then may the ruleset serve requests.
 */
int epcs_rule_tests_verify(struct epcs_ruleset *ruleset, char *first_failure, size_t size);

#endif
