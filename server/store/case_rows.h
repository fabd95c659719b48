#ifndef EPCS_CASE_ROWS_H
#define EPCS_CASE_ROWS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/*
 * The case store's rows as the routes answer them, whichever backend read them: a backend runs
 * its SQL and hands the result over as a cursor (struct epcs_case_row); what a report, a
 * request, a history step, a reporter or a policy looks like in msgpack and in CSV is written
 * once, here. A backend selects the columns in the orders the EPCS_CASE_*_SELECT lists give.
 */

/** A cursor over the rows of a query, the backend's, read through its ops. */
struct epcs_case_row;

struct epcs_case_row_ops {
    /** Moves to the next row: 1, 0 after the last, -1 with the backend's message in `err`. */
    int (*next)(struct epcs_case_row *row, char *err, size_t err_size);
    /** Nonzero when column `column` of the current row is NULL. */
    int (*is_null)(const struct epcs_case_row *row, int column);
    /** An integer column (0 for NULL). */
    int64_t (*integer)(const struct epcs_case_row *row, int column);
    /** A text or blob column's bytes (NULL and 0 for NULL), valid until the next move. */
    const char *(*bytes)(const struct epcs_case_row *row, int column, size_t *len);
};

/** What every cursor begins with; the backend's state follows. */
struct epcs_case_row {
    const struct epcs_case_row_ops *ops;
};

/**
 * A request's columns, as epcs_case_pack_request and epcs_case_write_request read them, from the
 * tables named `requests` (aliased q) and `reports` (r).
 */
#define EPCS_CASE_REQUEST_SELECT(requests, reports)                                                \
    "SELECT q.id, q.report, q.kind, q.partner, q.article, q.attempt, q.status, q.created_us, "     \
    "q.due_us, q.objection_until_us, q.follows, q.action, q.answered_us, q.reason, q.data, "       \
    "q.answered_via, r.url, r.platform, r.election, r.category, q.sent_us FROM " requests          \
    " q JOIN " reports " r ON r.id = q.report"

/**
 * A report's columns, as epcs_case_pack_summary, epcs_case_pack_report and
 * epcs_case_write_report read them, from the table `reports` (aliased r).
 */
#define EPCS_CASE_REPORT_SELECT(reports, requests, reporters)                                      \
    "SELECT r.id, r.filed_us, r.filed_by, r.status, r.url, r.platform, r.election, r.category, "   \
    "r.date, r.verdict, r.article, r.ruleset, r.decision, r.updated_us, "                          \
    "(SELECT count(*) FROM " requests " q WHERE q.report = r.id), r.facts, r.answer, r.posting, "  \
    "(SELECT count(*) FROM " reporters " p WHERE p.report = r.id) FROM " reports " r"

/** A history step's columns, as epcs_case_pack_history reads them. */
#define EPCS_CASE_HISTORY_COLUMNS "at_us, event, request, status, actor, detail, log_id"
/** A reporter's columns, as epcs_case_pack_reporter reads them. */
#define EPCS_CASE_REPORTER_COLUMNS "partner, at_us, url"
/** A partner policy's columns, as epcs_case_pack_policy reads them. */
#define EPCS_CASE_POLICY_COLUMNS "reports, set_us, set_by"

/** The CSV exports' header rows. */
#define EPCS_CASE_REPORTS_CSV_HEADER                                                               \
    "id,filed_at,filed_by,status,url,platform,election,category,date,verdict,article,ruleset,"     \
    "decision,request_count,updated_at\r\n"
#define EPCS_CASE_REQUESTS_CSV_HEADER                                                              \
    "id,report,kind,to,article,attempt,status,created,due,objection_until,follows,url,platform,"   \
    "election,category,answered_at,reason,via\r\n"

/** Packs the current row as one entry of a listing or a part of a report. */
typedef void (*epcs_case_pack_fn)(msgpack_packer *pk, const struct epcs_case_row *row);
/** Writes the current row as one CSV line. */
typedef void (*epcs_case_write_fn)(struct epcs_buf *out, const struct epcs_case_row *row);

/** A request, as a queue lists it (EPCS_CASE_REQUEST_SELECT). */
void epcs_case_pack_request(msgpack_packer *pk, const struct epcs_case_row *row);
/** A report's summary, as the listing gives it (EPCS_CASE_REPORT_SELECT). */
void epcs_case_pack_summary(msgpack_packer *pk, const struct epcs_case_row *row);
/** A step of a report's history (EPCS_CASE_HISTORY_COLUMNS). */
void epcs_case_pack_history(msgpack_packer *pk, const struct epcs_case_row *row);
/** A reporter of a report (EPCS_CASE_REPORTER_COLUMNS). */
void epcs_case_pack_reporter(msgpack_packer *pk, const struct epcs_case_row *row);
/**
 * A partner's policy (EPCS_CASE_POLICY_COLUMNS at the current row), or its default when `row`
 * is NULL: staff never set one.
 */
void epcs_case_pack_policy(msgpack_packer *pk, const char *partner,
                           const struct epcs_case_row *row);
/** A report as a CSV line (EPCS_CASE_REPORT_SELECT). */
void epcs_case_write_report(struct epcs_buf *out, const struct epcs_case_row *row);
/** A request as a CSV line (EPCS_CASE_REQUEST_SELECT) without its action and answer data. */
void epcs_case_write_request(struct epcs_buf *out, const struct epcs_case_row *row);

/** Packs every row left as an array, or nothing when a move fails. 0, or -1 with `err`. */
int epcs_case_pack_array(struct epcs_case_row *rows, epcs_case_pack_fn pack_row, msgpack_packer *pk,
                         char *err, size_t err_size);

/**
 * Packs {<name>: [up to `limit` rows], next: the last row's id (column 0) when one more row
 * follows, else nil}: the query asks for `limit` + 1 rows. 0, or -1 with `err`.
 */
int epcs_case_pack_page(struct epcs_case_row *rows, const char *name, size_t limit,
                        epcs_case_pack_fn pack_row, msgpack_packer *pk, char *err, size_t err_size);

/**
 * Appends `header` and a line per row up to `limit`; `next` is the last id written (column 0)
 * when more remain, else 0. 0, or -1 with `err`.
 */
int epcs_case_export(struct epcs_case_row *rows, size_t limit, const char *header,
                     epcs_case_write_fn write_row, struct epcs_buf *out, uint64_t *next, char *err,
                     size_t err_size);

/** The queries of a report's parts, the backend's: each packs its rows as an array. */
struct epcs_case_report_parts {
    /** The reporters, first first; with `partner`, that one only. */
    int (*reporters)(void *ctx, uint64_t report, const char *partner, msgpack_packer *pk, char *err,
                     size_t err_size);
    /** The requests in id order; with `partner`, those addressed to it. */
    int (*requests)(void *ctx, uint64_t report, const char *partner, msgpack_packer *pk, char *err,
                    size_t err_size);
    /** The history in order; with `partner`, the report's own steps and those of the requests
     * addressed to it. */
    int (*history)(void *ctx, uint64_t report, const char *partner, msgpack_packer *pk, char *err,
                   size_t err_size);
};

/**
 * Packs the report at the current row (EPCS_CASE_REPORT_SELECT) whole, its parts read through
 * `parts` with `ctx`, as `partner` (NULL: staff) reads it; with `joined` 0 or 1 a `joined`
 * entry too (the answer to a filing). Nothing is packed when a part fails. 0, or -1 with `err`.
 */
int epcs_case_pack_report(const struct epcs_case_row *row, const char *partner, int joined,
                          const struct epcs_case_report_parts *parts, void *ctx, msgpack_packer *pk,
                          char *err, size_t err_size);

#endif
