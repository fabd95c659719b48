#ifndef EPCS_TEST_PG_SCRATCH_H
#define EPCS_TEST_PG_SCRATCH_H

#include <stddef.h>

/*
 * The store tests' PostgreSQL: the scratch cluster ctest starts (tests/scripts/pg_scratch.sh,
 * fixture `postgresql` in tests/CMakeLists.txt) and names in EPCS_TEST_PG. Each test run gets
 * a schema of its own in it, so runs never see each other's rows.
 */

/**
 * Makes schema `name` afresh (dropping what an earlier run left) and writes into `uri` a
 * connection string whose tables live in it. 0, or -1 with the reason on stderr (EPCS_TEST_PG
 * unset included: the tests of both backends are not optional).
 */
int epcs_test_pg_schema(const char *name, char *uri, size_t size);

/** Runs `sql` (one text parameter `$1`, or none when NULL) at `uri`. 0, or -1 on stderr. */
int epcs_test_pg_exec(const char *uri, const char *sql, const char *param);

#endif
