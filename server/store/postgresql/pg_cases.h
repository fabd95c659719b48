#ifndef EPCS_PG_CASES_H
#define EPCS_PG_CASES_H

#include <libpq-fe.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "case_rows.h"
#include "cases.h"
#include "pg_store.h"

/*
 * What the case store's PostgreSQL backend (postgresql/cases.c, the writes) shares with its
 * reads (postgresql/case_reads.c): statements' parameters, results read as the shared packers'
 * cursors, and the reads themselves, which the writes run too inside their transaction to pack
 * their answers.
 */

/** The tables, as the shared column lists name them. */
#define EPCS_PG_CASE_REPORTS "epcs_case_reports"
#define EPCS_PG_CASE_REQUESTS "epcs_case_requests"
#define EPCS_PG_CASE_REPORTERS "epcs_case_reporters"

/** A statement's parameters, added in the order the statement numbers them. */
struct epcs_pg_params {
    const char *values[EPCS_PG_PARAMS_MAX];
    int lengths[EPCS_PG_PARAMS_MAX];
    char numbers[EPCS_PG_PARAMS_MAX][24];
    int count;
};

/** A text parameter (NULL: SQL NULL). */
void epcs_pg_param_text(struct epcs_pg_params *params, const char *text);
/** `len` bytes of text or bytea, sent as they are (NULL: SQL NULL). */
void epcs_pg_param_bytes(struct epcs_pg_params *params, const void *bytes, size_t len);
/** A number, as text for a ::bigint or ::integer cast. */
void epcs_pg_param_int(struct epcs_pg_params *params, int64_t value);
/** A number, or SQL NULL when `present` is 0. */
void epcs_pg_param_optional_int(struct epcs_pg_params *params, int64_t value, int present);

/** Runs `sql` with `params` (NULL: none), the result in binary (epcs_pg_run_binary). */
PGresult *epcs_pg_cases_run(PGconn *conn, const char *what, const char *sql,
                            const struct epcs_pg_params *params, char *err, size_t err_size);

/** An integer column of a binary result (int2, int4, int8 or a boolean; 0 for NULL). */
int64_t epcs_pg_column_integer(const PGresult *result, int row, int column);

/** A binary result as a cursor for the shared packers (case_rows.h), before its first row. */
struct epcs_pg_rows {
    struct epcs_case_row base;
    PGresult *result;
    int row;
};

struct epcs_pg_rows epcs_pg_rows_of(PGresult *result);

/*
 * The reads, on `conn`: inside the caller's transaction when one is open (a write packing its
 * answer), else each in a snapshot of its own. Each returns as its epcs_cases_* function says,
 * with -1 for any failure (the caller tells an unreachable database from it).
 */
int epcs_pg_cases_get_report(PGconn *conn, uint64_t id, const char *reporter, int joined,
                             msgpack_packer *pk, char *err, size_t err_size);
int epcs_pg_cases_get_request(PGconn *conn, uint64_t id, const char *partner, msgpack_packer *pk,
                              char *err, size_t err_size);
int epcs_pg_cases_get_policy(PGconn *conn, const char *partner, msgpack_packer *pk, char *err,
                             size_t err_size);
int epcs_pg_cases_list_reports(PGconn *conn, const struct epcs_report_query *query,
                               msgpack_packer *pk, char *err, size_t err_size);
int epcs_pg_cases_export_reports(PGconn *conn, const struct epcs_report_query *query,
                                 struct epcs_buf *out, uint64_t *next, char *err, size_t err_size);
int epcs_pg_cases_list_requests(PGconn *conn, const struct epcs_request_query *query,
                                msgpack_packer *pk, char *err, size_t err_size);
int epcs_pg_cases_export_requests(PGconn *conn, const struct epcs_request_query *query,
                                  struct epcs_buf *out, uint64_t *next, char *err, size_t err_size);

#endif
