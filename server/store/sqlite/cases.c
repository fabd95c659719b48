/*
 * The case store's SQLite backend (epcs_cases_sqlite, store.h): reports, the requests they
 * caused and their history in <data>/cases.db, the steps written once in case_steps.c over the
 * primitives below, and the decision log's entries of each step in an outbox table handed to
 * the log after the commit (the log is another database).
 */
#include "cases.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "case_rows.h"
#include "case_steps.h"
#include "codec.h"
#include "decision_log.h"
#include "log.h"
#include "sqlite_store.h"
#include "store.h"

/* Readers and the writer may meet on the database; a write waits rather than fail. */
#define BUSY_TIMEOUT_MS 5000

#define SCHEMA_VERSION 2
/*
 * Ids are AUTOINCREMENT so none is ever reused: a request id quoted in a letter to a platform
 * names that request forever. `chain` is the id of a request's first attempt; `follows` the
 * request whose being ignored made this one (a second attempt or an escalation). A report's
 * `posting` is its URL normalised (epcs_cases_posting): with the election and the category it
 * names the case, which later reports of the same posting join (`reporters`). A request's
 * `sent_us` is when it went to its partner: NULL while it is held for staff.
 */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS reports ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  filed_us INTEGER NOT NULL,"
    "  filed_by TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  posting TEXT NOT NULL,"
    "  platform TEXT NOT NULL,"
    "  election TEXT NOT NULL,"
    "  category TEXT NOT NULL,"
    "  date TEXT NOT NULL,"
    "  facts BLOB NOT NULL,"
    "  verdict TEXT NOT NULL,"
    "  article TEXT NOT NULL,"
    "  ruleset TEXT NOT NULL,"
    "  decision INTEGER,"
    "  answer BLOB NOT NULL,"
    "  status TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reports_by_time ON reports(filed_us);"
    "CREATE INDEX IF NOT EXISTS reports_by_status ON reports(status, id);"
    "CREATE INDEX IF NOT EXISTS reports_by_posting ON reports(posting, election, category, id);"
    /* Each partner that reported a case, once: when it first did, and the URL and facts it
       gave. */
    "CREATE TABLE IF NOT EXISTS reporters ("
    "  report INTEGER NOT NULL REFERENCES reports(id),"
    "  partner TEXT NOT NULL,"
    "  at_us INTEGER NOT NULL,"
    "  url TEXT NOT NULL,"
    "  facts BLOB NOT NULL,"
    "  PRIMARY KEY (report, partner));"
    "CREATE INDEX IF NOT EXISTS reporters_by_partner ON reporters(partner, report);"
    /* Whether the requests a partner's reports cause are sent at once or held for staff;
       a partner without a row is held. */
    "CREATE TABLE IF NOT EXISTS partner_policies ("
    "  partner TEXT PRIMARY KEY,"
    "  reports TEXT NOT NULL,"
    "  set_us INTEGER NOT NULL,"
    "  set_by TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS requests ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  report INTEGER NOT NULL REFERENCES reports(id),"
    "  chain INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  follows INTEGER REFERENCES requests(id),"
    "  kind TEXT NOT NULL,"
    "  partner TEXT NOT NULL,"
    "  article TEXT NOT NULL,"
    "  action BLOB NOT NULL,"
    "  created_us INTEGER NOT NULL,"
    "  sent_us INTEGER,"
    "  due_us INTEGER,"
    "  objection_until_us INTEGER,"
    "  status TEXT NOT NULL,"
    "  updated_us INTEGER NOT NULL,"
    "  answered_us INTEGER,"
    "  answered_via INTEGER REFERENCES requests(id),"
    "  reason TEXT,"
    "  data BLOB);"
    "CREATE INDEX IF NOT EXISTS requests_by_partner ON requests(partner, status, id);"
    "CREATE INDEX IF NOT EXISTS requests_by_due ON requests(status, due_us);"
    "CREATE INDEX IF NOT EXISTS requests_by_report ON requests(report, id);"
    "CREATE INDEX IF NOT EXISTS requests_by_chain ON requests(chain, id);"
    "CREATE TABLE IF NOT EXISTS history ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  report INTEGER NOT NULL REFERENCES reports(id),"
    "  request INTEGER REFERENCES requests(id),"
    "  at_us INTEGER NOT NULL,"
    "  event TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  detail BLOB,"
    "  log_id INTEGER);"
    "CREATE INDEX IF NOT EXISTS history_by_report ON history(report, id);"
    /* What the decision log is to get, written in the same transaction as the step and kept
       until the log has committed it: its id is the entry's decision-log id. Decisions
       (kind 0) carry the check and the answer, events (kind 1) their subject and detail. */
    "CREATE TABLE IF NOT EXISTS outbox ("
    "  id INTEGER PRIMARY KEY,"
    "  kind INTEGER NOT NULL,"
    "  at_us INTEGER NOT NULL,"
    "  partner TEXT NOT NULL,"
    "  election TEXT,"
    "  event TEXT,"
    "  subject INTEGER,"
    "  detail BLOB,"
    "  date INTEGER,"
    "  area TEXT,"
    "  verdict INTEGER,"
    "  ruleset TEXT,"
    "  request BLOB,"
    "  answer BLOB,"
    "  latency_us INTEGER);"
    /* A write's first answer, under the key its client may retry it with. */
    "CREATE TABLE IF NOT EXISTS idempotency ("
    "  partner TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,"
    "  request_sha256 BLOB NOT NULL, subject INTEGER NOT NULL, joined INTEGER NOT NULL,"
    "  answer BLOB NOT NULL, at_us INTEGER NOT NULL,"
    "  PRIMARY KEY (partner, scope, key));";

/* Handovers to the decision log not yet known to be committed; when more pile up, the newest
   two are merged (their rows then go a little later). */
#define HANDED_MAX 64

/* Format 1 to 2, besides the tables the schema makes (outbox, reporters, partner_policies):
   every report gets its posting (set by upgrade(), in C) and its filer as its one reporter,
   every request was sent when it was made. */
#define UPGRADE_FROM_1                                                                             \
    "ALTER TABLE reports ADD COLUMN posting TEXT NOT NULL DEFAULT '';"                             \
    "ALTER TABLE requests ADD COLUMN sent_us INTEGER;"                                             \
    "UPDATE requests SET sent_us = created_us;"                                                    \
    "CREATE TABLE reporters (report INTEGER NOT NULL REFERENCES reports(id),"                      \
    "  partner TEXT NOT NULL, at_us INTEGER NOT NULL, url TEXT NOT NULL, facts BLOB NOT NULL,"     \
    "  PRIMARY KEY (report, partner));"                                                            \
    "INSERT INTO reporters SELECT id, filed_by, filed_us, url, facts FROM reports;"

struct sqlite_cases {
    /* The handle callers hold: this backend's ops. */
    struct epcs_cases base;
    /* One writer connection: every write (and the packing that follows it) holds the lock. */
    pthread_mutex_t lock;
    sqlite3 *db;
    struct epcs_decision_log *log;
    /* The store's lane in the decision log: an id a step takes is marked on its way here, so
       the log writes no later id before the step's outbox rows are handed over. */
    struct epcs_decision_stage stage;
    int attached;
    /* Every outbox row up to this id has been handed over (under `lock`). */
    uint64_t handed_id;
    /* The ticket of the step under way's handover (0: it handed nothing over); UINT64_MAX when
       the log failed before taking it, so an answer held for it is refused (under `lock`). */
    uint64_t step_ticket;
    /* Handovers in order: rows up to `id` may be deleted once the log has committed
       `ticket`; `deleting` of them go with the transaction under way. */
    struct {
        uint64_t id, ticket;
    } handed[HANDED_MAX];
    size_t handed_count, deleting;
    /* Read connections for the thread pool: reads never wait for a write's lock. */
    struct epcs_sqlite_pool readers;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return NULL;
    }
    return stmt;
}

/* Steps a statement that returns no rows, then finalizes it. */
static int run(sqlite3 *db, sqlite3_stmt *stmt, char *err, size_t err_size)
{
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void bind_text(sqlite3_stmt *stmt, int at, const char *text)
{
    if (text != NULL)
        sqlite3_bind_text(stmt, at, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, at);
}

static void bind_optional_int(sqlite3_stmt *stmt, int at, int64_t value, int present)
{
    if (present)
        sqlite3_bind_int64(stmt, at, value);
    else
        sqlite3_bind_null(stmt, at);
}

/* `len` bytes as a blob, or NULL when `bytes` is. */
static void bind_bytes(sqlite3_stmt *stmt, int at, const void *bytes, size_t len)
{
    if (bytes != NULL)
        sqlite3_bind_blob(stmt, at, bytes, (int)len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, at);
}

/* ---- a statement's rows as the shared packers read them (case_rows.h) -------------------- */

struct stmt_rows {
    struct epcs_case_row base;
    sqlite3 *db;
    sqlite3_stmt *stmt;
};

static sqlite3_stmt *stmt_of(const struct epcs_case_row *row)
{
    return ((const struct stmt_rows *)row)->stmt;
}

static int rows_next(struct epcs_case_row *row, char *err, size_t err_size)
{
    struct stmt_rows *rows = (struct stmt_rows *)row;
    int step = sqlite3_step(rows->stmt);
    if (step == SQLITE_ROW || step == SQLITE_DONE)
        return step == SQLITE_ROW;
    snprintf(err, err_size, "%s", sqlite3_errmsg(rows->db));
    return -1;
}

static int rows_is_null(const struct epcs_case_row *row, int column)
{
    return sqlite3_column_type(stmt_of(row), column) == SQLITE_NULL;
}

static int64_t rows_integer(const struct epcs_case_row *row, int column)
{
    return sqlite3_column_int64(stmt_of(row), column);
}

static const char *rows_bytes(const struct epcs_case_row *row, int column, size_t *len)
{
    sqlite3_stmt *stmt = stmt_of(row);
    /* Text comes NUL-terminated, so that it may serve as a C string too. */
    const char *bytes = sqlite3_column_type(stmt, column) == SQLITE_BLOB
                            ? (const char *)sqlite3_column_blob(stmt, column)
                            : (const char *)sqlite3_column_text(stmt, column);
    *len = (size_t)sqlite3_column_bytes(stmt, column);
    return bytes;
}

static const struct epcs_case_row_ops stmt_row_ops = {
    .next = rows_next, .is_null = rows_is_null, .integer = rows_integer, .bytes = rows_bytes};

static struct stmt_rows rows_of(sqlite3 *db, sqlite3_stmt *stmt)
{
    return (struct stmt_rows){.base = {.ops = &stmt_row_ops}, .db = db, .stmt = stmt};
}

/* ---- reads -------------------------------------------------------------------------------- */

#define REQUEST_SELECT EPCS_CASE_REQUEST_SELECT("requests", "reports")
#define REPORT_SELECT EPCS_CASE_REPORT_SELECT("reports", "requests", "reporters")

static int get_request(sqlite3 *db, uint64_t id, const char *partner, msgpack_packer *pk, char *err,
                       size_t err_size)
{
    /* A held or dismissed request was never sent: its addressee does not see it. */
    sqlite3_stmt *stmt = prepare(db,
                                 REQUEST_SELECT " WHERE q.id = ?1 AND (?2 IS NULL OR (q.partner = "
                                                "?2 AND q.status NOT IN ('held', 'dismissed')))",
                                 err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    bind_text(stmt, 2, partner);
    struct stmt_rows rows = rows_of(db, stmt);
    int moved = rows_next(&rows.base, err, err_size);
    if (moved == 1)
        epcs_case_pack_request(pk, &rows.base);
    sqlite3_finalize(stmt);
    return moved == 1 ? 0 : moved == 0 ? 1 : -1;
}

/* Packs the rows of `sql`, bound to a report (?1) and a partner or NULL (?2), as an array. */
static int pack_part(sqlite3 *db, const char *sql, uint64_t report, const char *partner,
                     epcs_case_pack_fn pack_row, msgpack_packer *pk, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(db, sql, err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    bind_text(stmt, 2, partner);
    struct stmt_rows rows = rows_of(db, stmt);
    int rc = epcs_case_pack_array(&rows.base, pack_row, pk, err, err_size);
    sqlite3_finalize(stmt);
    return rc;
}

/* Who else reported a posting, and what they said of it, is theirs and the staff's to read. */
static int pack_reporters(void *db, uint64_t report, const char *partner, msgpack_packer *pk,
                          char *err, size_t err_size)
{
    return pack_part(db,
                     "SELECT " EPCS_CASE_REPORTER_COLUMNS " FROM reporters WHERE report = ?1 AND "
                     "(?2 IS NULL OR partner = ?2) ORDER BY at_us, rowid",
                     report, partner, epcs_case_pack_reporter, pk, err, err_size);
}

static int pack_requests_of(void *db, uint64_t report, const char *partner, msgpack_packer *pk,
                            char *err, size_t err_size)
{
    return pack_part(db,
                     REQUEST_SELECT " WHERE q.report = ?1 AND (?2 IS NULL OR q.partner = ?2) "
                                    "ORDER BY q.id",
                     report, partner, epcs_case_pack_request, pk, err, err_size);
}

static int pack_history(void *db, uint64_t report, const char *partner, msgpack_packer *pk,
                        char *err, size_t err_size)
{
    return pack_part(db,
                     "SELECT " EPCS_CASE_HISTORY_COLUMNS " FROM history WHERE report = ?1 AND "
                     "(?2 IS NULL OR (request IS NULL AND (event != 'report_joined' OR actor = "
                     "?2)) OR request IN (SELECT id FROM requests WHERE report = ?1 AND partner = "
                     "?2)) ORDER BY id",
                     report, partner, epcs_case_pack_history, pk, err, err_size);
}

static const struct epcs_case_report_parts report_parts = {
    .reporters = pack_reporters, .requests = pack_requests_of, .history = pack_history};

/* Report `id` as epcs_cases_get_report packs it, with `joined` as epcs_case_pack_report takes
   it. */
static int pack_report(sqlite3 *db, uint64_t id, const char *reporter, int joined,
                       msgpack_packer *pk, char *err, size_t err_size)
{
    /* One read transaction, so the report, its requests and its history agree; inside a
     * write's, that one. */
    int own = sqlite3_get_autocommit(db);
    if (own && epcs_sqlite_exec(db, "BEGIN", err, err_size) != 0)
        return -1;
    sqlite3_stmt *stmt = prepare(db,
                                 REPORT_SELECT " WHERE r.id = ?1 AND (?2 IS NULL OR EXISTS (SELECT "
                                               "1 FROM reporters WHERE report = ?1 AND partner "
                                               "= ?2))",
                                 err, err_size);
    int rc = -1;
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
        bind_text(stmt, 2, reporter);
        struct stmt_rows rows = rows_of(db, stmt);
        int moved = rows_next(&rows.base, err, err_size);
        if (moved == 1)
            rc = epcs_case_pack_report(&rows.base, reporter, joined, &report_parts, db, pk, err,
                                       err_size);
        else if (moved == 0)
            rc = 1;
        sqlite3_finalize(stmt);
    }
    char ignored[64];
    if (own)
        epcs_sqlite_exec(db, "COMMIT", ignored, sizeof(ignored));
    return rc;
}

/* The rows of `stmt` (finalized here; NULL: its prepare failed) as a page of a listing. */
static int page_of(sqlite3 *db, sqlite3_stmt *stmt, const char *name, size_t limit,
                   epcs_case_pack_fn pack_row, msgpack_packer *pk, char *err, size_t err_size)
{
    if (stmt == NULL)
        return -1;
    struct stmt_rows rows = rows_of(db, stmt);
    int rc = epcs_case_pack_page(&rows.base, name, limit, pack_row, pk, err, err_size);
    sqlite3_finalize(stmt);
    return rc;
}

/* The rows of `stmt` (finalized here; NULL: its prepare failed) as CSV. */
static int export_of(sqlite3 *db, sqlite3_stmt *stmt, size_t limit, const char *header,
                     epcs_case_write_fn write_row, struct epcs_buf *out, uint64_t *next, char *err,
                     size_t err_size)
{
    if (stmt == NULL)
        return -1;
    struct stmt_rows rows = rows_of(db, stmt);
    int rc = epcs_case_export(&rows.base, limit, header, write_row, out, next, err, err_size);
    sqlite3_finalize(stmt);
    return rc;
}

static sqlite3_stmt *report_query(sqlite3 *db, const struct epcs_report_query *query, char *err,
                                  size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        db,
        REPORT_SELECT " WHERE r.id > ?1 AND (?2 IS NULL OR r.status = ?2) AND "
                      "(?3 IS NULL OR r.platform = ?3) AND (?4 IS NULL OR r.election = ?4) AND "
                      "(?5 IS NULL OR r.category = ?5) AND (?6 IS NULL OR r.filed_us >= ?6) AND "
                      "(?7 IS NULL OR r.filed_us < ?7) AND (?9 IS NULL OR r.filed_by = ?9) AND "
                      "(?10 IS NULL OR EXISTS (SELECT 1 FROM reporters WHERE report = "
                      "r.id AND partner = ?10)) ORDER BY r.id LIMIT ?8",
        err, err_size);
    if (stmt == NULL)
        return NULL;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)query->after);
    bind_text(stmt, 2, query->status);
    bind_text(stmt, 3, query->platform);
    bind_text(stmt, 4, query->election);
    bind_text(stmt, 5, query->category);
    bind_optional_int(stmt, 6, query->from_us, query->from_us != 0);
    bind_optional_int(stmt, 7, query->to_us, query->to_us != 0);
    /* One row more than asked tells whether there is a next page. */
    sqlite3_bind_int64(stmt, 8, (sqlite3_int64)query->limit + 1);
    bind_text(stmt, 9, query->filed_by);
    bind_text(stmt, 10, query->reporter);
    return stmt;
}

static int list_reports(sqlite3 *db, const struct epcs_report_query *query, msgpack_packer *pk,
                        char *err, size_t err_size)
{
    return page_of(db, report_query(db, query, err, err_size), "reports", query->limit,
                   epcs_case_pack_summary, pk, err, err_size);
}

static int export_reports(sqlite3 *db, const struct epcs_report_query *query, struct epcs_buf *out,
                          uint64_t *next, char *err, size_t err_size)
{
    return export_of(db, report_query(db, query, err, err_size), query->limit,
                     EPCS_CASE_REPORTS_CSV_HEADER, epcs_case_write_report, out, next, err,
                     err_size);
}

static sqlite3_stmt *request_query(sqlite3 *db, const struct epcs_request_query *query, char *err,
                                   size_t err_size)
{
    int all = strcmp(query->status, "all") == 0, pending = strcmp(query->status, "pending") == 0;
    sqlite3_stmt *stmt =
        prepare(db,
                REQUEST_SELECT " WHERE q.partner = ?1 AND q.id > ?2 AND (?3 IS NULL OR "
                               "q.status = ?3) AND (?4 = 0 OR q.status IN ('open', 'overdue')) "
                               "AND q.status NOT IN ('held', 'dismissed') ORDER BY q.id LIMIT ?5",
                err, err_size);
    if (stmt == NULL)
        return NULL;
    bind_text(stmt, 1, query->partner);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)query->after);
    bind_text(stmt, 3, all || pending ? NULL : query->status);
    sqlite3_bind_int(stmt, 4, pending);
    /* One row more than asked tells whether there is a next page. */
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)query->limit + 1);
    return stmt;
}

static int list_requests(sqlite3 *db, const struct epcs_request_query *query, msgpack_packer *pk,
                         char *err, size_t err_size)
{
    return page_of(db, request_query(db, query, err, err_size), "requests", query->limit,
                   epcs_case_pack_request, pk, err, err_size);
}

static int export_requests(sqlite3 *db, const struct epcs_request_query *query,
                           struct epcs_buf *out, uint64_t *next, char *err, size_t err_size)
{
    return export_of(db, request_query(db, query, err, err_size), query->limit,
                     EPCS_CASE_REQUESTS_CSV_HEADER, epcs_case_write_request, out, next, err,
                     err_size);
}

static int get_policy(sqlite3 *db, const char *partner, msgpack_packer *pk, char *err,
                      size_t err_size)
{
    sqlite3_stmt *stmt =
        prepare(db, "SELECT " EPCS_CASE_POLICY_COLUMNS " FROM partner_policies WHERE partner = ?",
                err, err_size);
    if (stmt == NULL)
        return -1;
    bind_text(stmt, 1, partner);
    struct stmt_rows rows = rows_of(db, stmt);
    int moved = rows_next(&rows.base, err, err_size);
    if (moved >= 0)
        epcs_case_pack_policy(pk, partner, moved == 1 ? &rows.base : NULL);
    sqlite3_finalize(stmt);
    return moved >= 0 ? 0 : -1;
}

/* ---- the outbox: steps to the decision log ---------------------------------------------- */

/* Outbox rows read back for a handover: their bytes in one arena, the entries pointing into
   it once it has stopped growing. */
struct outbox_batch {
    struct epcs_buf arena;
    /* Per row: its id, kind and the arena offsets of its columns (SIZE_MAX: NULL). */
    struct outbox_row {
        uint64_t id;
        int kind;
        size_t at[8], len[8];
        int64_t at_us, date, verdict, latency_us;
        uint64_t subject;
    } * rows;
    size_t count, cap;
    struct epcs_decision *decisions;
    const char **partners;
    struct epcs_decision_event *events;
    size_t decision_count, event_count;
};

/* Text and blob columns of an outbox row, in the order OUTBOX_COLUMNS names them from 3 on. */
enum { OB_PARTNER, OB_ELECTION, OB_EVENT, OB_DETAIL, OB_AREA, OB_RULESET, OB_REQUEST, OB_ANSWER };
#define OUTBOX_COLUMNS                                                                             \
    "SELECT id, kind, at_us, partner, election, event, detail, area, ruleset, request, answer, "   \
    "subject, date, verdict, latency_us FROM outbox"

static void batch_free(struct outbox_batch *batch)
{
    epcs_buf_free(&batch->arena);
    free(batch->rows);
    free(batch->decisions);
    free(batch->partners);
    free(batch->events);
}

/* Copies the current row of `stmt` into the batch. 0, or -1 when memory runs out. */
static int batch_add(struct outbox_batch *batch, sqlite3_stmt *stmt)
{
    if (batch->count == batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 32;
        struct outbox_row *grown = realloc(batch->rows, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        batch->rows = grown;
        batch->cap = cap;
    }
    struct outbox_row *row = &batch->rows[batch->count];
    row->id = (uint64_t)sqlite3_column_int64(stmt, 0);
    row->kind = sqlite3_column_int(stmt, 1);
    row->at_us = sqlite3_column_int64(stmt, 2);
    for (int i = 0; i < 8; i++) {
        row->at[i] = SIZE_MAX;
        row->len[i] = 0;
        if (sqlite3_column_type(stmt, 3 + i) == SQLITE_NULL)
            continue;
        const void *bytes = sqlite3_column_blob(stmt, 3 + i);
        row->len[i] = (size_t)sqlite3_column_bytes(stmt, 3 + i);
        row->at[i] = batch->arena.len;
        /* Texts end with a NUL in the arena, so they serve as C strings. */
        if ((row->len[i] > 0 && epcs_buf_append(&batch->arena, bytes, row->len[i]) != 0) ||
            epcs_buf_append(&batch->arena, "", 1) != 0)
            return -1;
    }
    row->subject = (uint64_t)sqlite3_column_int64(stmt, 11);
    row->date = sqlite3_column_int64(stmt, 12);
    row->verdict = sqlite3_column_int64(stmt, 13);
    row->latency_us = sqlite3_column_int64(stmt, 14);
    batch->count++;
    return 0;
}

static const char *batch_text(const struct outbox_batch *batch, const struct outbox_row *row,
                              int column)
{
    return row->at[column] != SIZE_MAX ? batch->arena.data + row->at[column] : NULL;
}

/* Turns the rows into the decision log's entries. 0, or -1 when memory runs out. */
static int batch_entries(struct outbox_batch *batch)
{
    size_t n = batch->count ? batch->count : 1;
    batch->decisions = calloc(n, sizeof(*batch->decisions));
    batch->partners = calloc(n, sizeof(*batch->partners));
    batch->events = calloc(n, sizeof(*batch->events));
    if (batch->decisions == NULL || batch->partners == NULL || batch->events == NULL)
        return -1;
    for (size_t i = 0; i < batch->count; i++) {
        const struct outbox_row *row = &batch->rows[i];
        if (row->kind == 0) {
            size_t at = batch->decision_count++;
            batch->partners[at] = batch_text(batch, row, OB_PARTNER);
            batch->decisions[at] =
                (struct epcs_decision){.id = row->id,
                                       .election = batch_text(batch, row, OB_ELECTION),
                                       .date = (int32_t)row->date,
                                       .area = batch_text(batch, row, OB_AREA),
                                       .area_index = -1,
                                       .verdict = (enum epcs_verdict_kind)row->verdict,
                                       .ruleset = batch_text(batch, row, OB_RULESET),
                                       .check_msgpack = batch_text(batch, row, OB_REQUEST),
                                       .check_len = row->len[OB_REQUEST],
                                       .verdict_msgpack = batch_text(batch, row, OB_ANSWER),
                                       .verdict_len = row->len[OB_ANSWER],
                                       .latency_us = (uint64_t)row->latency_us,
                                       .at_us = row->at_us};
        } else {
            batch->events[batch->event_count++] =
                (struct epcs_decision_event){.id = row->id,
                                             .at_us = row->at_us,
                                             .partner = batch_text(batch, row, OB_PARTNER),
                                             .event = batch_text(batch, row, OB_EVENT),
                                             .election = batch_text(batch, row, OB_ELECTION),
                                             .subject = row->subject,
                                             .detail = batch_text(batch, row, OB_DETAIL),
                                             .detail_len = row->len[OB_DETAIL]};
        }
    }
    return 0;
}

/* Reads the outbox rows above `after`, in id order. 0, or -1 with `err`. */
static int batch_load(sqlite3 *db, uint64_t after, struct outbox_batch *batch, char *err,
                      size_t err_size)
{
    sqlite3_stmt *stmt = prepare(db, OUTBOX_COLUMNS " WHERE id > ? ORDER BY id", err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)after);
    int step, rc = 0;
    while (rc == 0 && (step = sqlite3_step(stmt)) == SQLITE_ROW)
        rc = batch_add(batch, stmt);
    if (rc == 0 && step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        rc = -1;
    } else if (rc != 0) {
        snprintf(err, err_size, "out of memory");
    }
    sqlite3_finalize(stmt);
    return rc == 0 ? batch_entries(batch) : rc;
}

/* Remembers a handover for the deletion of its rows once it is committed. */
static void remember_handover(struct sqlite_cases *cases, uint64_t id, uint64_t ticket)
{
    if (cases->handed_count == HANDED_MAX)
        cases->handed_count--;
    cases->handed[cases->handed_count].id = id;
    cases->handed[cases->handed_count].ticket = ticket;
    cases->handed_count++;
}

/*
 * Hands every outbox row not handed over yet to the decision log, after a commit (and after a
 * rollback, whose ids are then let go). When the handover fails the rows stay: with a failed
 * log until the next start (every later step is refused meanwhile), when memory ran out until
 * the next step, the mark keeping later ids back. Called with the lock held.
 */
static void forward(struct sqlite_cases *cases)
{
    struct outbox_batch batch = {.count = 0};
    char err[256];
    if (batch_load(cases->db, cases->handed_id, &batch, err, sizeof(err)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "cases", "cannot read the outbox, retried after the next step: %s",
                 err);
    } else if (batch.count == 0) {
        /* Ids the rolled-back step took are no longer on their way. */
        epcs_decision_log_flush(cases->log, &cases->stage);
    } else {
        uint64_t ticket;
        uint64_t last = batch.rows[batch.count - 1].id;
        if (epcs_decision_log_forward(cases->log, &cases->stage, batch.decisions, batch.partners,
                                      batch.decision_count, batch.events, batch.event_count,
                                      &ticket) == 0) {
            cases->handed_id = last;
            cases->step_ticket = ticket;
            remember_handover(cases, last, ticket);
        } else {
            struct epcs_decision_log_stats stats;
            epcs_decision_log_stats(cases->log, &stats);
            epcs_log(EPCS_LOG_ERROR, "cases",
                     "%zu step entries stay in the outbox: the decision log %s", batch.count,
                     stats.failed ? "has failed; they go at the next start"
                                  : "is out of memory; they go after the next step");
            /* An answer held for this step waits for nothing it could get: with a failed log
               it is refused (an unreachable ticket), short of memory it goes out now. */
            cases->step_ticket = stats.failed ? UINT64_MAX : 0;
            if (stats.failed)
                epcs_decision_log_flush(cases->log, &cases->stage);
        }
    }
    batch_free(&batch);
}

/* Deletes, in the transaction under way, the rows of the handovers the log has committed. */
static int delete_forwarded(struct sqlite_cases *cases, char *err, size_t err_size)
{
    cases->deleting = 0;
    uint64_t committed = epcs_decision_log_committed(cases->log);
    size_t count = 0;
    while (count < cases->handed_count && cases->handed[count].ticket <= committed)
        count++;
    if (count == 0)
        return 0;
    sqlite3_stmt *stmt = prepare(cases->db, "DELETE FROM outbox WHERE id <= ?", err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)cases->handed[count - 1].id);
    if (run(cases->db, stmt, err, err_size) != 0)
        return -1;
    cases->deleting = count;
    return 0;
}

/* After a commit: the deleted handovers are forgotten. */
static void forget_deleted(struct sqlite_cases *cases)
{
    memmove(cases->handed, cases->handed + cases->deleting,
            (cases->handed_count - cases->deleting) * sizeof(cases->handed[0]));
    cases->handed_count -= cases->deleting;
    cases->deleting = 0;
}

/* Whether the decision log holds entry `id` (0 no, 1 yes, -1 with `err`). */
static int log_holds(struct epcs_decision_log *log, struct epcs_decision_reader *reader,
                     uint64_t id, char *err, size_t err_size)
{
    struct epcs_buf scratch = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &scratch, epcs_buf_msgpack_write);
    int rc = epcs_decision_log_get(log, reader, id, &pk, NULL, NULL, 0, NULL, err, err_size);
    epcs_buf_free(&scratch);
    return rc < 0 ? -1 : rc == 0;
}

/*
 * Of the outbox rows a stop left (ids[0..count), in order), how many the decision log holds
 * already: a prefix, since the store hands rows over in id order and the log writes in id
 * order, so a held row means every row before it is held too. A binary search.
 */
static int held_prefix(struct epcs_decision_log *log, const uint64_t *ids, size_t count,
                       size_t *held, char *err, size_t err_size)
{
    struct epcs_decision_reader *reader = epcs_decision_log_reader_acquire(log, err, err_size);
    if (reader == NULL)
        return -1;
    size_t low = 0, high = count;
    int rc = 0;
    while (rc == 0 && low < high) {
        size_t middle = low + (high - low) / 2;
        int holds = log_holds(log, reader, ids[middle], err, err_size);
        if (holds < 0)
            rc = -1;
        else if (holds)
            low = middle + 1;
        else
            high = middle;
    }
    epcs_decision_log_reader_release(log, reader);
    *held = low;
    return rc;
}

static int delete_outbox_through(struct sqlite_cases *cases, uint64_t id, char *err,
                                 size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db, "DELETE FROM outbox WHERE id <= ?", err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    return run(cases->db, stmt, err, err_size);
}

/*
 * At start, before anything is served: what a stop left in the outbox goes to the decision
 * log, and is deleted once there. Rows the log holds already (the stop came between its
 * commit and their deletion) are only deleted, so no entry is logged twice; the others keep
 * the ids they were given, which are below every id of this run, so the log stays in order.
 */
static int recover_outbox(struct sqlite_cases *cases, char *err, size_t err_size)
{
    struct outbox_batch batch = {.count = 0};
    if (batch_load(cases->db, 0, &batch, err, err_size) != 0)
        return batch_free(&batch), -1;
    size_t count = batch.count;
    uint64_t last = count > 0 ? batch.rows[count - 1].id : 0;
    if (count > 0 && cases->log == NULL)
        epcs_log(EPCS_LOG_WARN, "cases",
                 "%zu step entries wait in the outbox for a run with the decision log on", count);
    if (count == 0 || cases->log == NULL)
        return batch_free(&batch), 0;
    uint64_t *ids = malloc(count * sizeof(*ids));
    size_t held = 0;
    int rc = ids != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < count; i++)
        ids[i] = batch.rows[i].id;
    if (rc == 0)
        rc = held_prefix(cases->log, ids, count, &held, err, err_size);
    if (rc == 0 && held > 0)
        rc = delete_outbox_through(cases, ids[held - 1], err, err_size);
    if (rc == 0 && held > 0)
        cases->handed_id = ids[held - 1];
    free(ids);
    batch_free(&batch);
    if (rc == 0 && held < count) {
        forward(cases);
        if (cases->handed_id != last || cases->step_ticket == UINT64_MAX ||
            epcs_decision_log_wait(cases->log, cases->step_ticket) != 0)
            return snprintf(err, err_size,
                            "the decision log does not take the %zu step "
                            "entries a stop left in the outbox",
                            count - held),
                   -1;
        rc = delete_outbox_through(cases, cases->handed_id, err, err_size);
        cases->handed_count = 0;
    }
    if (rc == 0)
        epcs_log(EPCS_LOG_INFO, "cases",
                 "outbox: %zu step entries a stop left went to the decision log, %zu were "
                 "there already",
                 count - held, held);
    return rc;
}

/* ---- the primitives of the shared steps (case_steps.h) ------------------------------------ */

/* A step's transaction: the writer connection, under the store's lock. */
struct sqlite_tx {
    struct epcs_case_tx base;
    struct sqlite_cases *cases;
};

static struct sqlite_cases *cases_of(struct epcs_case_tx *tx)
{
    return ((struct sqlite_tx *)tx)->cases;
}

static sqlite3 *db_of(struct epcs_case_tx *tx)
{
    return cases_of(tx)->db;
}

static sqlite3_stmt *tx_prepare(struct epcs_case_tx *tx, const char *sql)
{
    return prepare(db_of(tx), sql, tx->err, tx->err_size);
}

/* Steps a statement that returns no rows, then finalizes it (NULL: its prepare failed). */
static int tx_run(struct epcs_case_tx *tx, sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    return run(db_of(tx), stmt, tx->err, tx->err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* Steps a statement to its one row: OK, NOT_FOUND without one, FAILED (finalized then). */
static int tx_row(struct epcs_case_tx *tx, sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        return EPCS_CASES_OK;
    if (step != SQLITE_DONE)
        snprintf(tx->err, tx->err_size, "%s", sqlite3_errmsg(db_of(tx)));
    sqlite3_finalize(stmt);
    return step == SQLITE_DONE ? EPCS_CASES_NOT_FOUND : EPCS_CASES_FAILED;
}

/* Whether the decision log can take another entry now: a full or failed log means the step is
   refused (503) before anything is stored, since the entry could not be handed over. */
static int log_can_take(struct sqlite_cases *cases, char *err, size_t err_size)
{
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(cases->log, &stats);
    if (!stats.failed && stats.queued < stats.queue_limit)
        return 1;
    snprintf(err, err_size, "the decision log cannot take a step now (%s)",
             stats.failed ? "a write failed" : "its queue is full");
    return 0;
}

static int tx_take_log_id(struct epcs_case_tx *tx, uint64_t *id)
{
    struct sqlite_cases *cases = cases_of(tx);
    *id = 0;
    if (cases->log == NULL)
        return EPCS_CASES_OK;
    if (!log_can_take(cases, tx->err, tx->err_size))
        return EPCS_CASES_LOG_REFUSED;
    *id = epcs_decision_log_next_id(cases->log, &cases->stage);
    return EPCS_CASES_OK;
}

static int tx_log_event(struct epcs_case_tx *tx, uint64_t id, const struct epcs_case_step *step)
{
    size_t detail_len;
    const char *detail = epcs_case_step_detail(step, &detail_len);
    sqlite3_stmt *stmt = tx_prepare(tx, "INSERT INTO outbox(id, kind, at_us, partner, election, "
                                        "event, subject, detail) VALUES(?,1,?,?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(stmt, 2, step->at_us);
    bind_text(stmt, 3, step->partner);
    bind_text(stmt, 4, step->election);
    bind_text(stmt, 5, step->event);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)(step->request != 0 ? step->request : step->report));
    bind_bytes(stmt, 7, detail, detail_len);
    return tx_run(tx, stmt);
}

/* The report's decision in the outbox, as /v1/check would have logged it. */
static int tx_log_decision(struct epcs_case_tx *tx, uint64_t id,
                           const struct epcs_case_report *report, const struct epcs_buf *answer)
{
    const struct epcs_decision *decision = report->decision;
    sqlite3_stmt *stmt = tx_prepare(
        tx, "INSERT INTO outbox(id, kind, at_us, partner, election, date, area, verdict, ruleset, "
            "request, answer, latency_us) VALUES(?,0,?,?,?,?,?,?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(stmt, 2, decision->at_us != 0 ? decision->at_us : report->now_us);
    bind_text(stmt, 3, report->filed_by);
    bind_text(stmt, 4, decision->election);
    sqlite3_bind_int64(stmt, 5, decision->date);
    bind_text(stmt, 6, decision->area);
    sqlite3_bind_int(stmt, 7, (int)decision->verdict);
    bind_text(stmt, 8, decision->ruleset);
    sqlite3_bind_blob(stmt, 9, decision->check_msgpack, (int)decision->check_len, SQLITE_TRANSIENT);
    sqlite3_bind_blob(stmt, 10, answer->data, (int)answer->len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 11, (sqlite3_int64)decision->latency_us);
    return tx_run(tx, stmt);
}

static int tx_insert_history(struct epcs_case_tx *tx, const struct epcs_case_step *step,
                             uint64_t log_id)
{
    size_t detail_len;
    const char *detail = epcs_case_step_detail(step, &detail_len);
    sqlite3_stmt *stmt = tx_prepare(tx, "INSERT INTO history(report, request, at_us, event, "
                                        "status, actor, detail, log_id) VALUES(?,?,?,?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)step->report);
    bind_optional_int(stmt, 2, (int64_t)step->request, step->request != 0);
    sqlite3_bind_int64(stmt, 3, step->at_us);
    bind_text(stmt, 4, step->event);
    bind_text(stmt, 5, step->status);
    bind_text(stmt, 6, step->actor);
    bind_bytes(stmt, 7, detail, detail_len);
    bind_optional_int(stmt, 8, (int64_t)log_id, log_id != 0);
    return tx_run(tx, stmt);
}

static int tx_insert_report(struct epcs_case_tx *tx, const struct epcs_case_report *report,
                            const struct epcs_case_verdict *view, const char *posting,
                            uint64_t decision, const struct epcs_buf *answer, const char *status,
                            uint64_t *id)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "INSERT INTO reports(filed_us, filed_by, url, posting, platform, election, "
                       "category, date, facts, verdict, article, ruleset, decision, answer, "
                       "status, updated_us) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, report->now_us);
    bind_text(stmt, 2, report->filed_by);
    bind_text(stmt, 3, report->url);
    bind_text(stmt, 4, posting);
    bind_text(stmt, 5, report->platform);
    bind_text(stmt, 6, report->election);
    bind_text(stmt, 7, report->category);
    bind_text(stmt, 8, report->date);
    sqlite3_bind_blob(stmt, 9, report->facts, (int)report->facts_len, SQLITE_TRANSIENT);
    bind_text(stmt, 10, view->verdict);
    bind_text(stmt, 11, view->article);
    bind_text(stmt, 12, view->ruleset);
    bind_optional_int(stmt, 13, (int64_t)decision, decision != 0);
    sqlite3_bind_blob(stmt, 14, answer->data, (int)answer->len, SQLITE_TRANSIENT);
    bind_text(stmt, 15, status);
    sqlite3_bind_int64(stmt, 16, report->now_us);
    int rc = tx_run(tx, stmt);
    if (rc == EPCS_CASES_OK)
        *id = (uint64_t)sqlite3_last_insert_rowid(db_of(tx));
    return rc;
}

/* A text column of the current row into `out`. */
static void copy_column(sqlite3_stmt *stmt, int column, char *out, size_t size)
{
    const unsigned char *text = sqlite3_column_text(stmt, column);
    snprintf(out, size, "%s", text != NULL ? (const char *)text : "");
}

/* One writer at a time (the store's lock): the row needs no lock of its own. */
static int tx_load_report(struct epcs_case_tx *tx, uint64_t id, struct epcs_case_report_row *row)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "SELECT status, verdict, filed_by, election FROM reports WHERE id = ?");
    if (stmt != NULL)
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    int rc = tx_row(tx, stmt);
    if (rc != EPCS_CASES_OK)
        return rc;
    copy_column(stmt, 0, row->status, sizeof(row->status));
    copy_column(stmt, 1, row->verdict, sizeof(row->verdict));
    copy_column(stmt, 2, row->filed_by, sizeof(row->filed_by));
    copy_column(stmt, 3, row->election, sizeof(row->election));
    sqlite3_finalize(stmt);
    return EPCS_CASES_OK;
}

static int tx_count_requests(struct epcs_case_tx *tx, uint64_t report,
                             struct epcs_case_request_counts *counts)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "SELECT count(*), coalesce(sum(status IN ('open', 'overdue')), 0), "
                       "coalesce(sum(status = 'held'), 0), coalesce(sum(status = 'dismissed'), 0) "
                       "FROM requests WHERE report = ?");
    if (stmt != NULL)
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    int rc = tx_row(tx, stmt);
    if (rc != EPCS_CASES_OK)
        return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_FAILED : rc;
    *counts = (struct epcs_case_request_counts){
        sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2),
        sqlite3_column_int64(stmt, 3)};
    sqlite3_finalize(stmt);
    return EPCS_CASES_OK;
}

static int tx_set_report_status(struct epcs_case_tx *tx, uint64_t report, const char *status,
                                int64_t now)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "UPDATE reports SET status = ?, updated_us = ? WHERE id = ?");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, status);
    sqlite3_bind_int64(stmt, 2, now);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)report);
    return tx_run(tx, stmt);
}

/* A report that lacked facts decides nothing, so a filing that decides opens a case of its own
   rather than join it; one that lacks facts too joins it. */
static int tx_find_case(struct epcs_case_tx *tx, const char *posting,
                        const struct epcs_case_report *report, int decides, uint64_t *id)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "SELECT id FROM reports WHERE posting = ?1 AND election = "
                                        "?2 AND category = ?3 AND (?4 = 0 OR status != "
                                        "'needs_facts') ORDER BY status = 'needs_facts', id "
                                        "LIMIT 1");
    if (stmt != NULL) {
        bind_text(stmt, 1, posting);
        bind_text(stmt, 2, report->election);
        bind_text(stmt, 3, report->category);
        sqlite3_bind_int(stmt, 4, decides);
    }
    int rc = tx_row(tx, stmt);
    *id = 0;
    if (rc == EPCS_CASES_OK) {
        *id = (uint64_t)sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
    }
    return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_OK : rc;
}

static int tx_is_reporter(struct epcs_case_tx *tx, uint64_t report, const char *partner, int *is)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "SELECT 1 FROM reporters WHERE report = ? AND partner = ?");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
        bind_text(stmt, 2, partner);
    }
    int rc = tx_row(tx, stmt);
    *is = rc == EPCS_CASES_OK;
    if (rc == EPCS_CASES_OK)
        sqlite3_finalize(stmt);
    return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_OK : rc;
}

static int tx_add_reporter(struct epcs_case_tx *tx, uint64_t report,
                           const struct epcs_case_report *filing)
{
    sqlite3_stmt *stmt = tx_prepare(
        tx, "INSERT INTO reporters(report, partner, at_us, url, facts) VALUES(?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    bind_text(stmt, 2, filing->filed_by);
    sqlite3_bind_int64(stmt, 3, filing->now_us);
    bind_text(stmt, 4, filing->url);
    sqlite3_bind_blob(stmt, 5, filing->facts, (int)filing->facts_len, SQLITE_TRANSIENT);
    return tx_run(tx, stmt);
}

/* One writer at a time (the store's lock): no other change can come between. */
static int tx_lock_policy(struct epcs_case_tx *tx, const char *partner)
{
    (void)tx;
    (void)partner;
    return EPCS_CASES_OK;
}

static int tx_policy_sends(struct epcs_case_tx *tx, const char *partner, int *sends)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "SELECT reports FROM partner_policies WHERE partner = ?");
    if (stmt != NULL)
        bind_text(stmt, 1, partner);
    int rc = tx_row(tx, stmt);
    *sends = 0;
    if (rc == EPCS_CASES_OK) {
        *sends = strcmp((const char *)sqlite3_column_text(stmt, 0), "send") == 0;
        sqlite3_finalize(stmt);
    }
    return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_OK : rc;
}

static int tx_put_policy(struct epcs_case_tx *tx, const struct epcs_case_policy *policy)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "INSERT OR REPLACE INTO partner_policies(partner, reports, "
                                        "set_us, set_by) VALUES(?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, policy->partner);
    bind_text(stmt, 2, policy->send ? "send" : "hold");
    sqlite3_bind_int64(stmt, 3, policy->now_us);
    bind_text(stmt, 4, policy->by);
    return tx_run(tx, stmt);
}

static int tx_insert_request(struct epcs_case_tx *tx,
                             const struct epcs_case_new_request *new_request,
                             const struct epcs_buf *action, const struct epcs_case_timing *timing,
                             uint64_t *id)
{
    const struct epcs_case_action *made = new_request->action;
    int64_t now = new_request->now_us;
    int sent = !new_request->held;
    sqlite3_stmt *stmt =
        tx_prepare(tx, "INSERT INTO requests(report, chain, attempt, follows, kind, partner, "
                       "article, action, created_us, sent_us, due_us, objection_until_us, "
                       "status, updated_us) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)new_request->report);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)new_request->chain);
    sqlite3_bind_int(stmt, 3, new_request->attempt);
    bind_optional_int(stmt, 4, (int64_t)new_request->follows, new_request->follows != 0);
    bind_text(stmt, 5, made->kind);
    bind_text(stmt, 6, made->to);
    bind_text(stmt, 7, made->article);
    sqlite3_bind_blob(stmt, 8, action->data, (int)action->len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 9, now);
    bind_optional_int(stmt, 10, now, sent);
    bind_optional_int(stmt, 11, timing->due_us, timing->has_due);
    bind_optional_int(stmt, 12, timing->objection_until_us, timing->has_objection);
    bind_text(stmt, 13, sent ? "open" : "held");
    sqlite3_bind_int64(stmt, 14, now);
    if (tx_run(tx, stmt) != EPCS_CASES_OK)
        return EPCS_CASES_FAILED;
    *id = (uint64_t)sqlite3_last_insert_rowid(db_of(tx));
    if (new_request->chain != 0)
        return EPCS_CASES_OK;
    stmt = tx_prepare(tx, "UPDATE requests SET chain = id WHERE id = ?");
    if (stmt != NULL)
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)*id);
    return tx_run(tx, stmt);
}

static int tx_load_request(struct epcs_case_tx *tx, uint64_t id, struct epcs_case_request_row *row)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "SELECT q.report, q.chain, q.attempt, q.partner, "
                                        "q.status, r.election, r.platform, q.due_us, "
                                        "q.objection_until_us, q.action FROM requests q "
                                        "JOIN reports r ON r.id = q.report WHERE q.id = ?");
    if (stmt != NULL)
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    int rc = tx_row(tx, stmt);
    if (rc != EPCS_CASES_OK)
        return rc;
    epcs_buf_free(&row->action);
    memset(row, 0, sizeof(*row));
    row->report = (uint64_t)sqlite3_column_int64(stmt, 0);
    row->chain = (uint64_t)sqlite3_column_int64(stmt, 1);
    row->attempt = sqlite3_column_int(stmt, 2);
    copy_column(stmt, 3, row->partner, sizeof(row->partner));
    copy_column(stmt, 4, row->status, sizeof(row->status));
    copy_column(stmt, 5, row->election, sizeof(row->election));
    copy_column(stmt, 6, row->platform, sizeof(row->platform));
    row->has_due = sqlite3_column_type(stmt, 7) != SQLITE_NULL;
    row->due_us = sqlite3_column_int64(stmt, 7);
    row->has_objection = sqlite3_column_type(stmt, 8) != SQLITE_NULL;
    row->objection_until_us = sqlite3_column_int64(stmt, 8);
    epcs_buf_append(&row->action, sqlite3_column_blob(stmt, 9),
                    (size_t)sqlite3_column_bytes(stmt, 9));
    sqlite3_finalize(stmt);
    return row->action.failed
               ? (snprintf(tx->err, tx->err_size, "out of memory"), EPCS_CASES_FAILED)
               : EPCS_CASES_OK;
}

/* The ids of the rows of `stmt` (finalized here), at most `max`. */
static int collect_ids(struct epcs_case_tx *tx, sqlite3_stmt *stmt, uint64_t *ids, size_t max,
                       size_t *count)
{
    *count = 0;
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW && *count < max)
        ids[(*count)++] = (uint64_t)sqlite3_column_int64(stmt, 0);
    int failed = step != SQLITE_ROW && step != SQLITE_DONE;
    if (failed)
        snprintf(tx->err, tx->err_size, "%s", sqlite3_errmsg(db_of(tx)));
    sqlite3_finalize(stmt);
    return failed ? EPCS_CASES_FAILED : EPCS_CASES_OK;
}

static int tx_chain_members(struct epcs_case_tx *tx, uint64_t chain, uint64_t except,
                            enum epcs_case_chain_part part, uint64_t *ids, size_t max,
                            size_t *count)
{
    sqlite3_stmt *stmt = tx_prepare(
        tx, part == EPCS_CASE_CHAIN_OVERDUE
                ? "SELECT id FROM requests WHERE chain = ? AND id != ? AND status = 'overdue' "
                  "ORDER BY id"
                : "SELECT id FROM requests WHERE chain = ? AND id != ? AND status IN ('open', "
                  "'overdue') ORDER BY id");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)chain);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)except);
    }
    return collect_ids(tx, stmt, ids, max, count);
}

static int tx_held_requests(struct epcs_case_tx *tx, uint64_t report, uint64_t *ids, size_t max,
                            size_t *count)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "SELECT id FROM requests WHERE report = ? AND status = 'held' ORDER BY id");
    if (stmt != NULL)
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    return collect_ids(tx, stmt, ids, max, count);
}

static int tx_set_request_status(struct epcs_case_tx *tx, uint64_t id, const char *status,
                                 int64_t now)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "UPDATE requests SET status = ?, updated_us = ? WHERE id = ?");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, status);
    sqlite3_bind_int64(stmt, 2, now);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)id);
    return tx_run(tx, stmt);
}

static int tx_store_answer(struct epcs_case_tx *tx, const struct epcs_case_answer *answer)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "UPDATE requests SET status = ?, answered_us = ?, reason = "
                                        "?, data = ?, updated_us = ? WHERE id = ?");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, answer->status);
    sqlite3_bind_int64(stmt, 2, answer->now_us);
    if (answer->reason != NULL)
        sqlite3_bind_text(stmt, 3, answer->reason, (int)answer->reason_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, 3);
    bind_bytes(stmt, 4, answer->data, answer->data_len);
    sqlite3_bind_int64(stmt, 5, answer->now_us);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)answer->request);
    return tx_run(tx, stmt);
}

static int tx_answer_via(struct epcs_case_tx *tx, uint64_t sibling,
                         const struct epcs_case_answer *answer)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "UPDATE requests SET status = ?, answered_us = ?, "
                                        "answered_via = ?, updated_us = ? WHERE id = ?");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, answer->status);
    sqlite3_bind_int64(stmt, 2, answer->now_us);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)answer->request);
    sqlite3_bind_int64(stmt, 4, answer->now_us);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)sibling);
    return tx_run(tx, stmt);
}

static int tx_send_request(struct epcs_case_tx *tx, uint64_t id, int64_t now,
                           const struct epcs_case_timing *timing)
{
    sqlite3_stmt *stmt =
        tx_prepare(tx, "UPDATE requests SET status = 'open', sent_us = ?, due_us = "
                       "?, objection_until_us = ?, updated_us = ? WHERE id = ?");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, now);
    bind_optional_int(stmt, 2, timing->due_us, timing->has_due);
    bind_optional_int(stmt, 3, timing->objection_until_us, timing->has_objection);
    sqlite3_bind_int64(stmt, 4, now);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)id);
    return tx_run(tx, stmt);
}

/* One writer at a time: a concurrent call with the key waits for the store's lock. */
static int tx_idempotency_lookup(struct epcs_case_tx *tx, const char *partner, const char *scope,
                                 const struct epcs_case_idempotency *idempotency, int *found,
                                 struct epcs_case_kept_answer *kept)
{
    *found = 0;
    sqlite3_stmt *stmt = tx_prepare(tx, "SELECT request_sha256, subject, joined, answer FROM "
                                        "idempotency WHERE partner = ? AND scope = ? AND key = ?");
    if (stmt != NULL) {
        bind_text(stmt, 1, partner);
        bind_text(stmt, 2, scope);
        bind_text(stmt, 3, idempotency->key);
    }
    int rc = tx_row(tx, stmt);
    if (rc != EPCS_CASES_OK)
        return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_OK : rc;
    const void *hash = sqlite3_column_blob(stmt, 0);
    if (sqlite3_column_bytes(stmt, 0) != 32 || memcmp(hash, idempotency->request_sha256, 32) != 0) {
        rc = EPCS_CASES_KEY_REUSED;
    } else {
        *found = 1;
        kept->subject = (uint64_t)sqlite3_column_int64(stmt, 1);
        kept->joined = sqlite3_column_int(stmt, 2);
        const void *answer = sqlite3_column_blob(stmt, 3);
        if (epcs_buf_append(&kept->answer, answer != NULL ? answer : "",
                            (size_t)sqlite3_column_bytes(stmt, 3)) != 0)
            rc = EPCS_CASES_FAILED;
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int tx_idempotency_keep(struct epcs_case_tx *tx, const char *partner, const char *scope,
                               const struct epcs_case_idempotency *idempotency,
                               const struct epcs_case_kept_answer *kept, int64_t now_us)
{
    sqlite3_stmt *stmt = tx_prepare(tx, "INSERT INTO idempotency(partner, scope, key, "
                                        "request_sha256, subject, joined, answer, at_us) "
                                        "VALUES(?,?,?,?,?,?,?,?)");
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, partner);
    bind_text(stmt, 2, scope);
    bind_text(stmt, 3, idempotency->key);
    sqlite3_bind_blob(stmt, 4, idempotency->request_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)kept->subject);
    sqlite3_bind_int(stmt, 6, kept->joined);
    sqlite3_bind_blob(stmt, 7, kept->answer.data != NULL ? kept->answer.data : "",
                      (int)kept->answer.len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 8, now_us);
    return tx_run(tx, stmt);
}

static int tx_pack_report(struct epcs_case_tx *tx, uint64_t id, const char *reporter, int joined,
                          msgpack_packer *pk)
{
    return pack_report(db_of(tx), id, reporter, joined, pk, tx->err, tx->err_size);
}

static int tx_pack_request(struct epcs_case_tx *tx, uint64_t id, msgpack_packer *pk)
{
    return get_request(db_of(tx), id, NULL, pk, tx->err, tx->err_size);
}

static int tx_pack_policy(struct epcs_case_tx *tx, const char *partner, msgpack_packer *pk)
{
    return get_policy(db_of(tx), partner, pk, tx->err, tx->err_size);
}

static const struct epcs_case_tx_ops sqlite_tx_ops = {
    .take_log_id = tx_take_log_id,
    .log_event = tx_log_event,
    .log_decision = tx_log_decision,
    .insert_history = tx_insert_history,
    .insert_report = tx_insert_report,
    .load_report = tx_load_report,
    .count_requests = tx_count_requests,
    .set_report_status = tx_set_report_status,
    .find_case = tx_find_case,
    .is_reporter = tx_is_reporter,
    .add_reporter = tx_add_reporter,
    .lock_policy = tx_lock_policy,
    .policy_sends = tx_policy_sends,
    .put_policy = tx_put_policy,
    .insert_request = tx_insert_request,
    .load_request = tx_load_request,
    .chain_members = tx_chain_members,
    .held_requests = tx_held_requests,
    .set_request_status = tx_set_request_status,
    .store_answer = tx_store_answer,
    .answer_via = tx_answer_via,
    .send_request = tx_send_request,
    .idempotency_lookup = tx_idempotency_lookup,
    .idempotency_keep = tx_idempotency_keep,
    .pack_report = tx_pack_report,
    .pack_request = tx_pack_request,
    .pack_policy = tx_pack_policy,
};

static struct sqlite_tx tx_of(struct sqlite_cases *cases, char *err, size_t err_size)
{
    return (struct sqlite_tx){.base = {.ops = &sqlite_tx_ops, .err = err, .err_size = err_size},
                              .cases = cases};
}

/* ---- writes ------------------------------------------------------------------------------- */

static int begin(struct sqlite_cases *cases, char *err, size_t err_size)
{
    /* IMMEDIATE: the write lock now, not at the first write, so no step ever meets BUSY
     * halfway through. */
    if (epcs_sqlite_exec(cases->db, "BEGIN IMMEDIATE", err, err_size) != 0)
        return -1;
    cases->step_ticket = 0;
    /* Outbox rows the decision log has committed go with this step's transaction: no fsync
       of their own. */
    if (cases->log == NULL || delete_forwarded(cases, err, err_size) == 0)
        return 0;
    char ignored[64];
    epcs_sqlite_exec(cases->db, "ROLLBACK", ignored, sizeof(ignored));
    return -1;
}

/* Commits on EPCS_CASES_OK, rolls back otherwise, then hands the outbox over; returns the
   outcome. */
static int finish(struct sqlite_cases *cases, int rc, char *err, size_t err_size)
{
    char ignored[64];
    if (rc == EPCS_CASES_OK && epcs_sqlite_exec(cases->db, "COMMIT", err, err_size) == 0) {
        forget_deleted(cases);
    } else {
        epcs_sqlite_exec(cases->db, "ROLLBACK", ignored, sizeof(ignored));
        cases->deleting = 0;
        rc = rc == EPCS_CASES_OK ? EPCS_CASES_FAILED : rc;
    }
    if (cases->log != NULL)
        forward(cases);
    return rc;
}

/* The ticket an answer waits for under --audit sync: that of the handover holding the step's
   entries, or 0 when nothing is to be waited for. */
static uint64_t hold_ticket(const struct sqlite_cases *cases)
{
    return epcs_decision_log_mode(cases->log) == EPCS_AUDIT_SYNC ? cases->step_ticket : 0;
}

/*
 * A write in a transaction of its own under the store's lock (case_steps.h): its answer to
 * `pk`, and into `ticket` what that answer waits for under --audit sync.
 */
static int sqlite_write(struct epcs_cases *handle, struct epcs_case_write *write,
                        msgpack_packer *pk, uint64_t *ticket, char *err, size_t err_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    struct sqlite_tx tx = tx_of(cases, err, err_size);
    struct epcs_buf out = {0};
    *ticket = 0;
    int rc = epcs_case_write_prepare(write, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    if (rc == EPCS_CASES_OK) {
        pthread_mutex_lock(&cases->lock);
        rc = begin(cases, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
        /* Refusals (not found, closed, too late) change nothing, so the rollback is right. */
        if (rc == EPCS_CASES_OK)
            rc = finish(cases, epcs_case_write_run(&tx.base, write, &out), err, err_size);
        if (rc == EPCS_CASES_OK) {
            *ticket = hold_ticket(cases);
            epcs_case_pack_raw(pk, out.data, out.len);
        }
        pthread_mutex_unlock(&cases->lock);
    }
    epcs_case_write_dispose(write);
    epcs_buf_free(&out);
    return rc;
}

static int sqlite_cases_file(struct epcs_cases *handle, const struct epcs_case_report *report,
                             msgpack_packer *pk, struct epcs_case_filed *filed, char *err,
                             size_t err_size)
{
    struct epcs_case_write write = {.kind = EPCS_CASE_FILE, .in.report = report, .filed = filed};
    return sqlite_write(handle, &write, pk, &filed->ticket, err, err_size);
}

static int sqlite_cases_answer(struct epcs_cases *handle, const struct epcs_case_answer *answer,
                               msgpack_packer *pk, uint64_t *ticket, char *detail,
                               size_t detail_size)
{
    struct epcs_case_write write = {.kind = EPCS_CASE_ANSWER, .in.answer = answer};
    return sqlite_write(handle, &write, pk, ticket, detail, detail_size);
}

static int sqlite_cases_review(struct epcs_cases *handle, const struct epcs_case_review *review,
                               msgpack_packer *pk, uint64_t *ticket, char *detail,
                               size_t detail_size)
{
    struct epcs_case_write write = {.kind = EPCS_CASE_REVIEW, .in.review = review};
    return sqlite_write(handle, &write, pk, ticket, detail, detail_size);
}

static int sqlite_cases_set_policy(struct epcs_cases *handle, const struct epcs_case_policy *policy,
                                   msgpack_packer *pk, uint64_t *ticket, char *err, size_t err_size)
{
    struct epcs_case_write write = {.kind = EPCS_CASE_POLICY, .in.policy = policy};
    return sqlite_write(handle, &write, pk, ticket, err, err_size);
}

/* The open request due first at `now`, or 0 (`rc` FAILED with `err` when it cannot be read). */
static uint64_t next_due(struct sqlite_cases *cases, int64_t now, int *rc, char *err,
                         size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "SELECT id FROM requests WHERE status = 'open' AND due_us "
                                 "<= ? ORDER BY due_us, id LIMIT 1",
                                 err, err_size);
    *rc = stmt != NULL ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, now);
    int step = sqlite3_step(stmt);
    uint64_t id = step == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(stmt, 0) : 0;
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
        *rc = EPCS_CASES_FAILED;
    }
    sqlite3_finalize(stmt);
    return id;
}

static int sqlite_cases_sweep(struct epcs_cases *handle, int64_t now_us, size_t limit, char *err,
                              size_t err_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    struct sqlite_tx tx = tx_of(cases, err, err_size);
    size_t handled = 0;
    while (handled < limit) {
        /* One transaction per request, the lock released between them, so partners' answers
         * never wait for a long sweep. */
        pthread_mutex_lock(&cases->lock);
        if (begin(cases, err, err_size) != 0) {
            pthread_mutex_unlock(&cases->lock);
            return -1;
        }
        int rc, taken = 0;
        uint64_t id = next_due(cases, now_us, &rc, err, err_size);
        if (rc == EPCS_CASES_OK && id != 0)
            rc = epcs_case_overdue(&tx.base, id, now_us, &taken);
        rc = finish(cases, rc, err, err_size);
        pthread_mutex_unlock(&cases->lock);
        if (rc != EPCS_CASES_OK)
            return -1;
        if (id == 0)
            break;
        handled++;
    }
    return (int)handled;
}

/* ---- opening ------------------------------------------------------------------------------ */

/*
 * Brings a store of an earlier format to this one, in one transaction, before the schema
 * check: reports and requests are legal records, so an upgrade must never ask the operator to
 * move them aside. Format 1 had no outbox (the schema adds it).
 */
/* The postings of reports stored before they had one. 0, or -1 with `err`. */
static int set_postings(sqlite3 *db, char *err, size_t err_size)
{
    sqlite3_stmt *read = prepare(db, "SELECT id, url FROM reports", err, err_size);
    sqlite3_stmt *write =
        read != NULL ? prepare(db, "UPDATE reports SET posting = ? WHERE id = ?", err, err_size)
                     : NULL;
    int step = SQLITE_DONE, rc = read != NULL && write != NULL ? 0 : -1;
    while (rc == 0 && (step = sqlite3_step(read)) == SQLITE_ROW) {
        char posting[EPCS_CASES_POSTING_MAX];
        const char *url = (const char *)sqlite3_column_text(read, 1);
        /* A URL stored before is kept as it was when it does not normalise. */
        if (epcs_cases_posting(url, posting, sizeof(posting)) != 0)
            snprintf(posting, sizeof(posting), "%s", url);
        sqlite3_reset(write);
        sqlite3_bind_text(write, 1, posting, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(write, 2, sqlite3_column_int64(read, 0));
        if (sqlite3_step(write) != SQLITE_DONE)
            rc = -1;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = -1;
    if (rc != 0 && read != NULL)
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(read);
    sqlite3_finalize(write);
    return rc;
}

static int upgrade(sqlite3 *db, const char *path, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(db, "PRAGMA user_version", err, err_size);
    if (stmt == NULL)
        return -1;
    int version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    if (version != 1)
        return 0;
    char why[256];
    if (epcs_sqlite_exec(db, "BEGIN IMMEDIATE; " UPGRADE_FROM_1, why, sizeof(why)) == 0 &&
        set_postings(db, why, sizeof(why)) == 0 &&
        epcs_sqlite_exec(db, "PRAGMA user_version = 2; COMMIT;", why, sizeof(why)) == 0) {
        epcs_log(EPCS_LOG_INFO, "cases", "%s: upgraded from case store format 1 to 2", path);
        return 0;
    }
    char ignored[64];
    epcs_sqlite_exec(db, "ROLLBACK", ignored, sizeof(ignored));
    snprintf(err, err_size, "%s: cannot upgrade from case store format 1: %s", path, why);
    return -1;
}

static void db_path(const char *data_dir, char *path, size_t size)
{
    snprintf(path, size, "%s/cases.db", data_dir);
}

static void sqlite_cases_close(struct epcs_cases *handle);

static struct epcs_cases *sqlite_cases_open(const char *data_dir, struct epcs_decision_log *log,
                                            char *err, size_t err_size)
{
    struct sqlite_cases *cases = calloc(1, sizeof(*cases));
    if (cases == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    cases->base.ops = &epcs_cases_sqlite;
    pthread_mutex_init(&cases->lock, NULL);
    cases->log = log;
    char path[4200], why[256];
    db_path(data_dir, path, sizeof(path));
    epcs_sqlite_pool_init(&cases->readers, path, BUSY_TIMEOUT_MS);
    /* Our own lock serialises every use of this connection. */
    if (sqlite3_open_v2(path, &cases->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(cases->db));
        goto fail;
    }
    sqlite3_busy_timeout(cases->db, BUSY_TIMEOUT_MS);
    /* A report answered 201 and a request a platform was told about must survive a power
     * cut: every commit is fsync'd. */
    if (epcs_sqlite_exec(
            cases->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            why, sizeof(why)) != 0) {
        snprintf(err, err_size, "%s: %s", path, why);
        goto fail;
    }
    if (upgrade(cases->db, path, err, err_size) != 0 ||
        epcs_sqlite_schema(cases->db, path, "case store", "these are legal records", "'reports'",
                           SCHEMA_VERSION, schema, err, err_size) != 0)
        goto fail;
    if (log != NULL && epcs_decision_log_attach(log, &cases->stage, err, err_size) != 0)
        goto fail;
    cases->attached = log != NULL;
    if (recover_outbox(cases, err, err_size) != 0)
        goto fail;
    return &cases->base;
fail:
    sqlite_cases_close(&cases->base);
    return NULL;
}

/* A clean stop leaves an empty outbox: what was handed over is waited for, then deleted. */
static void drain_outbox(struct sqlite_cases *cases)
{
    char err[256];
    if (cases->handed_count == 0 ||
        epcs_decision_log_wait(cases->log, cases->handed[cases->handed_count - 1].ticket) != 0)
        return;
    if (epcs_sqlite_exec(cases->db, "BEGIN IMMEDIATE", err, sizeof(err)) != 0 ||
        delete_forwarded(cases, err, sizeof(err)) != 0 ||
        finish(cases, EPCS_CASES_OK, err, sizeof(err)) != EPCS_CASES_OK)
        epcs_log(EPCS_LOG_WARN, "cases",
                 "the outbox keeps entries the decision log has (%s); "
                 "the next start deletes them",
                 err);
}

static void sqlite_cases_close(struct epcs_cases *handle)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    if (cases == NULL)
        return;
    if (cases->attached) {
        drain_outbox(cases);
        epcs_decision_log_detach(cases->log, &cases->stage);
    }
    sqlite3_close(cases->db);
    epcs_sqlite_pool_dispose(&cases->readers);
    pthread_mutex_destroy(&cases->lock);
    free(cases);
}

/* A reader handle is the read-only connection itself: no allocation stands between a pool and
 * its reads. */
static sqlite3 *reader_db(struct epcs_cases_reader *reader)
{
    return (sqlite3 *)(void *)reader;
}

static struct epcs_cases_reader *reader_of(sqlite3 *db)
{
    return (struct epcs_cases_reader *)(void *)db;
}

static struct epcs_cases_reader *sqlite_cases_reader_open(const char *data_dir, char *err,
                                                          size_t err_size)
{
    char path[4200];
    db_path(data_dir, path, sizeof(path));
    return reader_of(epcs_sqlite_reader(path, BUSY_TIMEOUT_MS, err, err_size));
}

static void sqlite_cases_reader_close(struct epcs_cases_reader *reader)
{
    sqlite3_close(reader_db(reader));
}

static struct epcs_cases_reader *sqlite_cases_reader_acquire(struct epcs_cases *handle, char *err,
                                                             size_t err_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    return reader_of(epcs_sqlite_pool_acquire(&cases->readers, err, err_size));
}

static void sqlite_cases_reader_release(struct epcs_cases *handle, struct epcs_cases_reader *reader)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    epcs_sqlite_pool_release(&cases->readers, reader_db(reader));
}

static int sqlite_cases_get_policy(struct epcs_cases_reader *reader, const char *partner,
                                   msgpack_packer *pk, char *err, size_t err_size)
{
    return get_policy(reader_db(reader), partner, pk, err, err_size);
}

static int sqlite_cases_get_report(struct epcs_cases_reader *reader, uint64_t id, const char *filer,
                                   msgpack_packer *pk, char *err, size_t err_size)
{
    return pack_report(reader_db(reader), id, filer, -1, pk, err, err_size);
}

static int sqlite_cases_list_reports(struct epcs_cases_reader *reader,
                                     const struct epcs_report_query *query, msgpack_packer *pk,
                                     char *err, size_t err_size)
{
    return list_reports(reader_db(reader), query, pk, err, err_size);
}

static int sqlite_cases_export_reports(struct epcs_cases_reader *reader,
                                       const struct epcs_report_query *query, struct epcs_buf *out,
                                       uint64_t *next, char *err, size_t err_size)
{
    return export_reports(reader_db(reader), query, out, next, err, err_size);
}

static int sqlite_cases_get_request(struct epcs_cases_reader *reader, uint64_t id,
                                    const char *partner, msgpack_packer *pk, char *err,
                                    size_t err_size)
{
    return get_request(reader_db(reader), id, partner, pk, err, err_size);
}

static int sqlite_cases_list_requests(struct epcs_cases_reader *reader,
                                      const struct epcs_request_query *query, msgpack_packer *pk,
                                      char *err, size_t err_size)
{
    return list_requests(reader_db(reader), query, pk, err, err_size);
}

static int sqlite_cases_export_requests(struct epcs_cases_reader *reader,
                                        const struct epcs_request_query *query,
                                        struct epcs_buf *out, uint64_t *next, char *err,
                                        size_t err_size)
{
    return export_requests(reader_db(reader), query, out, next, err, err_size);
}

const struct epcs_cases_ops epcs_cases_sqlite = {
    .name = "sqlite",
    .open = sqlite_cases_open,
    .close = sqlite_cases_close,
    .file = sqlite_cases_file,
    .answer = sqlite_cases_answer,
    .review = sqlite_cases_review,
    .set_policy = sqlite_cases_set_policy,
    .sweep = sqlite_cases_sweep,
    .reader_open = sqlite_cases_reader_open,
    .reader_close = sqlite_cases_reader_close,
    .reader_acquire = sqlite_cases_reader_acquire,
    .reader_release = sqlite_cases_reader_release,
    .get_policy = sqlite_cases_get_policy,
    .get_report = sqlite_cases_get_report,
    .list_reports = sqlite_cases_list_reports,
    .export_reports = sqlite_cases_export_reports,
    .get_request = sqlite_cases_get_request,
    .list_requests = sqlite_cases_list_requests,
    .export_requests = sqlite_cases_export_requests,
};
