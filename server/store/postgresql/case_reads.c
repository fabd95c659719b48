/*
 * The case store's reads on PostgreSQL (pg_cases.h): reports, requests, their listings and
 * exports and partners' policies, the rows packed by the packers every backend shares.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "case_rows.h"
#include "pg_cases.h"

/* ---- parameters and results --------------------------------------------------------------- */

static int room_for_one(const struct epcs_pg_params *params)
{
    return params->count < EPCS_PG_PARAMS_MAX;
}

void epcs_pg_param_text(struct epcs_pg_params *params, const char *text)
{
    if (!room_for_one(params))
        return;
    params->values[params->count] = text;
    params->lengths[params->count++] = -1;
}

void epcs_pg_param_bytes(struct epcs_pg_params *params, const void *bytes, size_t len)
{
    if (!room_for_one(params))
        return;
    /* An empty value must still point somewhere: only NULL is SQL NULL. */
    params->values[params->count] = bytes != NULL ? (len > 0 ? bytes : "") : NULL;
    params->lengths[params->count++] = bytes != NULL ? (int)len : -1;
}

void epcs_pg_param_int(struct epcs_pg_params *params, int64_t value)
{
    if (!room_for_one(params))
        return;
    snprintf(params->numbers[params->count], sizeof(params->numbers[0]), "%" PRId64, value);
    epcs_pg_param_text(params, params->numbers[params->count]);
}

void epcs_pg_param_optional_int(struct epcs_pg_params *params, int64_t value, int present)
{
    if (present)
        epcs_pg_param_int(params, value);
    else
        epcs_pg_param_text(params, NULL);
}

PGresult *epcs_pg_cases_run(PGconn *conn, const char *what, const char *sql,
                            const struct epcs_pg_params *params, char *err, size_t err_size)
{
    static const struct epcs_pg_params none = {.count = 0};
    if (params == NULL)
        params = &none;
    return epcs_pg_run_binary(conn, what, sql, params->count, params->values, params->lengths, err,
                              err_size);
}

int64_t epcs_pg_column_integer(const PGresult *result, int row, int column)
{
    const unsigned char *bytes = (const unsigned char *)PQgetvalue(result, row, column);
    int len = PQgetisnull(result, row, column) ? 0 : PQgetlength(result, row, column);
    if (len != 1 && len != 2 && len != 4 && len != 8)
        return 0;
    /* Big-endian, signed in its own width. */
    uint64_t value = (bytes[0] & 0x80) != 0 && len > 1 ? UINT64_MAX : 0;
    for (int i = 0; i < len; i++)
        value = value << 8 | bytes[i];
    return (int64_t)value;
}

static const PGresult *result_of(const struct epcs_case_row *row, int *at)
{
    const struct epcs_pg_rows *rows = (const struct epcs_pg_rows *)row;
    *at = rows->row;
    return rows->result;
}

static int rows_next(struct epcs_case_row *row, char *err, size_t err_size)
{
    (void)err;
    (void)err_size;
    struct epcs_pg_rows *rows = (struct epcs_pg_rows *)row;
    if (rows->row + 1 >= PQntuples(rows->result))
        return 0;
    rows->row++;
    return 1;
}

static int rows_is_null(const struct epcs_case_row *row, int column)
{
    int at;
    const PGresult *result = result_of(row, &at);
    return PQgetisnull(result, at, column);
}

static int64_t rows_integer(const struct epcs_case_row *row, int column)
{
    int at;
    const PGresult *result = result_of(row, &at);
    return epcs_pg_column_integer(result, at, column);
}

static const char *rows_bytes(const struct epcs_case_row *row, int column, size_t *len)
{
    int at;
    const PGresult *result = result_of(row, &at);
    if (PQgetisnull(result, at, column)) {
        *len = 0;
        return NULL;
    }
    /* libpq ends every value with a NUL, binary ones too: text serves as a C string. */
    *len = (size_t)PQgetlength(result, at, column);
    return PQgetvalue(result, at, column);
}

static const struct epcs_case_row_ops pg_row_ops = {
    .next = rows_next, .is_null = rows_is_null, .integer = rows_integer, .bytes = rows_bytes};

struct epcs_pg_rows epcs_pg_rows_of(PGresult *result)
{
    return (struct epcs_pg_rows){.base = {.ops = &pg_row_ops}, .result = result, .row = -1};
}

/* ---- reports and requests ----------------------------------------------------------------- */

#define REQUEST_SELECT EPCS_CASE_REQUEST_SELECT(EPCS_PG_CASE_REQUESTS, EPCS_PG_CASE_REPORTS)
#define REPORT_SELECT                                                                              \
    EPCS_CASE_REPORT_SELECT(EPCS_PG_CASE_REPORTS, EPCS_PG_CASE_REQUESTS, EPCS_PG_CASE_REPORTERS)

/* The first row of `result` (cleared here) packed by `pack_row`: 0, 1 without one. */
static int pack_first(PGresult *result, epcs_case_pack_fn pack_row, msgpack_packer *pk)
{
    struct epcs_pg_rows rows = epcs_pg_rows_of(result);
    int found = rows_next(&rows.base, NULL, 0);
    if (found)
        pack_row(pk, &rows.base);
    PQclear(result);
    return found ? 0 : 1;
}

int epcs_pg_cases_get_request(PGconn *conn, uint64_t id, const char *partner, msgpack_packer *pk,
                              char *err, size_t err_size)
{
    struct epcs_pg_params params = {.count = 0};
    epcs_pg_param_int(&params, (int64_t)id);
    epcs_pg_param_text(&params, partner);
    /* A held or dismissed request was never sent: its addressee does not see it. */
    PGresult *result = epcs_pg_cases_run(
        conn, "reading a request",
        REQUEST_SELECT " WHERE q.id = $1::bigint AND ($2::text IS NULL OR (q.partner = $2 AND "
                       "q.status NOT IN ('held', 'dismissed')))",
        &params, err, err_size);
    return result != NULL ? pack_first(result, epcs_case_pack_request, pk) : -1;
}

/* Packs the rows of `sql`, given a report ($1) and a partner or NULL ($2), as an array. */
static int pack_part(PGconn *conn, const char *what, const char *sql, uint64_t report,
                     const char *partner, epcs_case_pack_fn pack_row, msgpack_packer *pk, char *err,
                     size_t err_size)
{
    struct epcs_pg_params params = {.count = 0};
    epcs_pg_param_int(&params, (int64_t)report);
    epcs_pg_param_text(&params, partner);
    PGresult *result = epcs_pg_cases_run(conn, what, sql, &params, err, err_size);
    if (result == NULL)
        return -1;
    struct epcs_pg_rows rows = epcs_pg_rows_of(result);
    int rc = epcs_case_pack_array(&rows.base, pack_row, pk, err, err_size);
    PQclear(result);
    return rc;
}

/* Who else reported a posting, and what they said of it, is theirs and the staff's to read. */
static int pack_reporters(void *conn, uint64_t report, const char *partner, msgpack_packer *pk,
                          char *err, size_t err_size)
{
    return pack_part(conn, "reading a report's reporters",
                     "SELECT " EPCS_CASE_REPORTER_COLUMNS " FROM " EPCS_PG_CASE_REPORTERS
                     " WHERE report = $1::bigint AND ($2::text IS NULL OR partner = $2)"
                     " ORDER BY at_us, seq",
                     report, partner, epcs_case_pack_reporter, pk, err, err_size);
}

static int pack_requests_of(void *conn, uint64_t report, const char *partner, msgpack_packer *pk,
                            char *err, size_t err_size)
{
    return pack_part(conn, "reading a report's requests",
                     REQUEST_SELECT " WHERE q.report = $1::bigint AND ($2::text IS NULL OR "
                                    "q.partner = $2) ORDER BY q.id",
                     report, partner, epcs_case_pack_request, pk, err, err_size);
}

static int pack_history(void *conn, uint64_t report, const char *partner, msgpack_packer *pk,
                        char *err, size_t err_size)
{
    return pack_part(conn, "reading a report's history",
                     "SELECT " EPCS_CASE_HISTORY_COLUMNS " FROM epcs_case_history"
                     " WHERE report = $1::bigint AND ($2::text IS NULL OR (request IS NULL AND"
                     " (event <> 'report_joined' OR actor = $2)) OR request IN (SELECT id "
                     "FROM " EPCS_PG_CASE_REQUESTS
                     " WHERE report = $1 AND partner = $2)) ORDER BY id",
                     report, partner, epcs_case_pack_history, pk, err, err_size);
}

static const struct epcs_case_report_parts report_parts = {
    .reporters = pack_reporters, .requests = pack_requests_of, .history = pack_history};

static int pack_report_in(PGconn *conn, uint64_t id, const char *reporter, int joined,
                          msgpack_packer *pk, char *err, size_t err_size)
{
    struct epcs_pg_params params = {.count = 0};
    epcs_pg_param_int(&params, (int64_t)id);
    epcs_pg_param_text(&params, reporter);
    PGresult *result = epcs_pg_cases_run(
        conn, "reading a report",
        REPORT_SELECT " WHERE r.id = $1::bigint AND ($2::text IS NULL OR EXISTS (SELECT 1 "
                      "FROM " EPCS_PG_CASE_REPORTERS " f WHERE f.report = $1 AND f.partner = $2))",
        &params, err, err_size);
    if (result == NULL)
        return -1;
    struct epcs_pg_rows rows = epcs_pg_rows_of(result);
    int rc = rows_next(&rows.base, err, err_size) == 1
                 ? epcs_case_pack_report(&rows.base, reporter, joined, &report_parts, conn, pk, err,
                                         err_size)
                 : 1;
    PQclear(result);
    return rc;
}

int epcs_pg_cases_get_report(PGconn *conn, uint64_t id, const char *reporter, int joined,
                             msgpack_packer *pk, char *err, size_t err_size)
{
    /* One snapshot, so the report, its requests and its history agree; inside a write's
     * transaction, that one. */
    int own = PQtransactionStatus(conn) == PQTRANS_IDLE;
    if (own &&
        epcs_pg_command(conn, "reading a report", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                        err, err_size) != 0)
        return -1;
    int rc = pack_report_in(conn, id, reporter, joined, pk, err, err_size);
    char ignored[128];
    if (own && epcs_pg_command(conn, "reading a report", "COMMIT", ignored, sizeof(ignored)) != 0)
        rc = rc == 0 ? -1 : rc;
    return rc;
}

/* The rows of `result` (cleared here; NULL: its query failed) as a page of a listing. */
static int page_of(PGresult *result, const char *name, size_t limit, epcs_case_pack_fn pack_row,
                   msgpack_packer *pk, char *err, size_t err_size)
{
    if (result == NULL)
        return -1;
    struct epcs_pg_rows rows = epcs_pg_rows_of(result);
    int rc = epcs_case_pack_page(&rows.base, name, limit, pack_row, pk, err, err_size);
    PQclear(result);
    return rc;
}

/* The rows of `result` (cleared here; NULL: its query failed) as CSV. */
static int export_of(PGresult *result, size_t limit, const char *header,
                     epcs_case_write_fn write_row, struct epcs_buf *out, uint64_t *next, char *err,
                     size_t err_size)
{
    if (result == NULL)
        return -1;
    struct epcs_pg_rows rows = epcs_pg_rows_of(result);
    int rc = epcs_case_export(&rows.base, limit, header, write_row, out, next, err, err_size);
    PQclear(result);
    return rc;
}

/* The filters of a report query as $1 to $10 of its statement. */
static void report_params(const struct epcs_report_query *query, struct epcs_pg_params *params)
{
    epcs_pg_param_int(params, (int64_t)query->after);
    epcs_pg_param_text(params, query->status);
    epcs_pg_param_text(params, query->platform);
    epcs_pg_param_text(params, query->election);
    epcs_pg_param_text(params, query->category);
    epcs_pg_param_optional_int(params, query->from_us, query->from_us != 0);
    epcs_pg_param_optional_int(params, query->to_us, query->to_us != 0);
    /* One row more than asked tells whether there is a next page. */
    epcs_pg_param_int(params, (int64_t)query->limit + 1);
    epcs_pg_param_text(params, query->filed_by);
    epcs_pg_param_text(params, query->reporter);
}

static PGresult *report_query(PGconn *conn, const struct epcs_report_query *query, char *err,
                              size_t err_size)
{
    struct epcs_pg_params params = {.count = 0};
    report_params(query, &params);
    return epcs_pg_cases_run(conn, "listing reports",
                             REPORT_SELECT
                             " WHERE r.id > $1::bigint AND ($2::text IS NULL OR r.status = $2) AND"
                             " ($3::text IS NULL OR r.platform = $3) AND ($4::text IS NULL OR"
                             " r.election = $4) AND ($5::text IS NULL OR r.category = $5) AND"
                             " ($6::bigint IS NULL OR r.filed_us >= $6) AND ($7::bigint IS NULL OR"
                             " r.filed_us < $7) AND ($9::text IS NULL OR r.filed_by = $9) AND"
                             " ($10::text IS NULL OR EXISTS (SELECT 1 FROM " EPCS_PG_CASE_REPORTERS
                             " f WHERE f.report = r.id AND f.partner = $10)) ORDER BY r.id"
                             " LIMIT $8::bigint",
                             &params, err, err_size);
}

int epcs_pg_cases_list_reports(PGconn *conn, const struct epcs_report_query *query,
                               msgpack_packer *pk, char *err, size_t err_size)
{
    return page_of(report_query(conn, query, err, err_size), "reports", query->limit,
                   epcs_case_pack_summary, pk, err, err_size);
}

int epcs_pg_cases_export_reports(PGconn *conn, const struct epcs_report_query *query,
                                 struct epcs_buf *out, uint64_t *next, char *err, size_t err_size)
{
    return export_of(report_query(conn, query, err, err_size), query->limit,
                     EPCS_CASE_REPORTS_CSV_HEADER, epcs_case_write_report, out, next, err,
                     err_size);
}

static PGresult *request_query(PGconn *conn, const struct epcs_request_query *query, char *err,
                               size_t err_size)
{
    int all = strcmp(query->status, "all") == 0, pending = strcmp(query->status, "pending") == 0;
    struct epcs_pg_params params = {.count = 0};
    epcs_pg_param_text(&params, query->partner);
    epcs_pg_param_int(&params, (int64_t)query->after);
    epcs_pg_param_text(&params, all || pending ? NULL : query->status);
    epcs_pg_param_int(&params, pending);
    /* One row more than asked tells whether there is a next page. */
    epcs_pg_param_int(&params, (int64_t)query->limit + 1);
    return epcs_pg_cases_run(
        conn, "listing requests",
        REQUEST_SELECT " WHERE q.partner = $1 AND q.id > $2::bigint AND ($3::text IS NULL OR"
                       " q.status = $3) AND ($4::integer = 0 OR q.status IN ('open', 'overdue'))"
                       " AND q.status NOT IN ('held', 'dismissed') ORDER BY q.id"
                       " LIMIT $5::bigint",
        &params, err, err_size);
}

int epcs_pg_cases_list_requests(PGconn *conn, const struct epcs_request_query *query,
                                msgpack_packer *pk, char *err, size_t err_size)
{
    return page_of(request_query(conn, query, err, err_size), "requests", query->limit,
                   epcs_case_pack_request, pk, err, err_size);
}

int epcs_pg_cases_export_requests(PGconn *conn, const struct epcs_request_query *query,
                                  struct epcs_buf *out, uint64_t *next, char *err, size_t err_size)
{
    return export_of(request_query(conn, query, err, err_size), query->limit,
                     EPCS_CASE_REQUESTS_CSV_HEADER, epcs_case_write_request, out, next, err,
                     err_size);
}

int epcs_pg_cases_get_policy(PGconn *conn, const char *partner, msgpack_packer *pk, char *err,
                             size_t err_size)
{
    struct epcs_pg_params params = {.count = 0};
    epcs_pg_param_text(&params, partner);
    PGresult *result = epcs_pg_cases_run(conn, "reading a partner's policy",
                                         "SELECT " EPCS_CASE_POLICY_COLUMNS
                                         " FROM epcs_case_policies WHERE partner = $1",
                                         &params, err, err_size);
    if (result == NULL)
        return -1;
    struct epcs_pg_rows rows = epcs_pg_rows_of(result);
    epcs_case_pack_policy(pk, partner, rows_next(&rows.base, err, err_size) ? &rows.base : NULL);
    PQclear(result);
    return 0;
}
