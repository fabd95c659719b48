#include "pg_scratch.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int epcs_test_pg_exec(const char *uri, const char *sql, const char *param)
{
    PGconn *conn = PQconnectdb(uri);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "cannot reach the test PostgreSQL at %s: %s", uri, PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }
    const char *values[] = {param};
    /* Without a parameter, several statements may go in one string. */
    PGresult *result =
        param != NULL ? PQexecParams(conn, sql, 1, NULL, values, NULL, NULL, 0) : PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(result);
    int rc = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(result));
    PQclear(result);
    PQfinish(conn);
    return rc;
}

int epcs_test_pg_schema(const char *name, char *uri, size_t size)
{
    const char *base = getenv("EPCS_TEST_PG");
    if (base == NULL || base[0] == '\0') {
        fprintf(stderr, "EPCS_TEST_PG is not set: run the store tests through ctest, which "
                        "starts a scratch PostgreSQL (tests/scripts/pg_scratch.sh)\n");
        return -1;
    }
    char sql[300];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", name, name);
    if (epcs_test_pg_exec(base, sql, NULL) != 0)
        return -1;
    int len = snprintf(uri, size, "%s%soptions=-csearch_path%%3D%s", base,
                       strchr(base, '?') != NULL ? "&" : "?", name);
    return len > 0 && (size_t)len < size ? 0 : -1;
}
