/*
 * The decision log's PostgreSQL backend (epcs_decision_log_postgresql, store.h): the sink and
 * readers of the shared log (decision_log_core.h) on tables every replica shares.
 *
 * The writer stores each page as a row of epcs_decision_pages, keyed by its first id, with its
 * summary (decision_pages.h) in four bigint columns so that a filtered listing skips, in the
 * database, the pages that hold none of its values. A group is one transaction; when the
 * database goes away the group is kept and tried again with backoff, and since the core sends
 * exactly the same pages again, a page whose first COMMIT took effect after all is found under
 * its key and inserts nothing (ON CONFLICT DO NOTHING). Answers, stored once each and pointed at
 * by the decisions, take their ids from an identity column, so they are unique across replicas;
 * a resend stores its answers again under new ids, which only the first copy's pages point at.
 *
 * Entries that other stores commit in their own transactions (pg_log.h) are rows of
 * epcs_decision_entries; readers merge them with the pages by id.
 *
 * The data directory keeps only the workers' journals (async mode) and a lock on it: two epcsd
 * must not read each other's journals as those of an earlier run.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "decision_log.h"
#include "decision_log_core.h"
#include "decision_pages.h"
#include "pg_log.h"
#include "pg_runs.h"
#include "pg_store.h"
#include "store.h"

#define SCHEMA_VERSION 1

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS epcs_decision_answers ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, answer bytea NOT NULL);"
    "CREATE TABLE IF NOT EXISTS epcs_decision_pages ("
    " first_id bigint PRIMARY KEY, last_id bigint NOT NULL,"
    " first_us bigint NOT NULL, last_us bigint NOT NULL, count integer NOT NULL,"
    " s0 bigint NOT NULL, s1 bigint NOT NULL, s2 bigint NOT NULL, s3 bigint NOT NULL,"
    " body bytea NOT NULL);"
    "CREATE INDEX IF NOT EXISTS epcs_decision_pages_by_time ON epcs_decision_pages (last_us);"
    "CREATE TABLE IF NOT EXISTS epcs_decision_entries ("
    " id bigint PRIMARY KEY, at_us bigint NOT NULL, kind smallint NOT NULL,"
    " partner text NOT NULL, election text, area text, verdict text, entry bytea NOT NULL);";

/* A database that went away is tried again after 250 ms, then less and less often. */
#define RETRY_MAX_MS 2000
/* Pages a listing fetches at a time: most listings end within the first few. */
#define PAGES_PER_FETCH 8
#define PAGES_PER_FETCH_SQL "8"
/* Answers a reader keeps: a page's decisions share a few. */
#define ANSWER_SLOTS 64

struct pg_log {
    struct epcs_log_core *core;
    struct epcs_pg *pg;
    /* <data>/decisions.lock, held while the log is open. */
    int lock_fd;
    /* The writer's connection while it has one (writer thread only after open). */
    PGconn *conn;
    /* Journal recovery at start: the range of the last page found. */
    uint64_t known_first, known_last;
};

/* ---- statements --------------------------------------------------------------------------- */

/* A 64-bit value as the text of a bigint parameter. */
struct number {
    char text[24];
};

static const char *number_of(struct number *number, int64_t value)
{
    snprintf(number->text, sizeof(number->text), "%" PRId64, value);
    return number->text;
}

/*
 * Runs `sql` with `count` parameters (`lengths` as for epcs_pg_run) and results in binary, so
 * that bytea comes as its bytes, within the pool's deadline like every statement. The result,
 * or NULL with `err` naming `what` on one line (libpq's further lines, DETAIL and HINT, do not
 * fit a stall reason).
 */
static PGresult *run_binary(PGconn *conn, const char *what, const char *sql, int count,
                            const char *const *values, const int *lengths, char *err,
                            size_t err_size)
{
    PGresult *result = epcs_pg_run_binary(conn, what, sql, count, values, lengths, err, err_size);
    if (result == NULL)
        err[strcspn(err, "\n")] = '\0';
    return result;
}

/* A bigint column of a binary result. */
static int64_t column_i64(const PGresult *result, int row, int column)
{
    const unsigned char *bytes = (const unsigned char *)PQgetvalue(result, row, column);
    uint64_t value = 0;
    for (int i = 0; i < 8 && PQgetlength(result, row, column) == 8; i++)
        value = value << 8 | bytes[i];
    return (int64_t)value;
}

/* ---- the sink: pages to epcs_decision_pages ----------------------------------------------- */

/*
 * A failed call's message as the stall reason shows it, on one line of what /readyz and the log
 * can hold: "PostgreSQL: what: why", or "PostgreSQL unreachable: why" without the connection
 * string (a multi-host one is long, and libpq names the host that failed anyway). Returns -1.
 */
static int sink_failed(char *err, size_t err_size)
{
    char why[600];
    const char *reach = "cannot reach PostgreSQL at ";
    const char *text = err, *prefix = "PostgreSQL: ";
    if (strncmp(err, reach, strlen(reach)) == 0 && strstr(err + strlen(reach), ": ") != NULL) {
        text = strstr(err + strlen(reach), ": ") + 2;
        prefix = "PostgreSQL unreachable: ";
    }
    /* libpq's further lines guess at causes. */
    snprintf(why, sizeof(why), "%.*s", (int)strcspn(text, "\n"), text);
    snprintf(err, err_size, "%s%s", prefix, why);
    return -1;
}

/* Gives the writer's connection back (a broken one is closed by the pool). */
static void drop_connection(struct pg_log *log)
{
    epcs_pg_give(log->pg, log->conn);
    log->conn = NULL;
}

static int sink_begin(void *backend, char *err, size_t err_size)
{
    struct pg_log *log = backend;
    /* The pool's message names the whole connection string: room for it before it goes. */
    char why[1200];
    if (log->conn == NULL && (log->conn = epcs_pg_take(log->pg, why, sizeof(why))) == NULL) {
        sink_failed(why, sizeof(why));
        snprintf(err, err_size, "%s", why);
        return -1;
    }
    if (epcs_pg_command(log->conn, "beginning a group of decisions", "BEGIN", err, err_size) != 0)
        return sink_failed(err, err_size);
    return 0;
}

static int sink_insert_answer(void *backend, const char *answer, size_t len, int64_t *id, char *err,
                              size_t err_size)
{
    struct pg_log *log = backend;
    const char *values[] = {answer};
    const int lengths[] = {(int)len};
    PGresult *result =
        run_binary(log->conn, "storing an answer",
                   "INSERT INTO epcs_decision_answers (answer) VALUES ($1) RETURNING id", 1, values,
                   lengths, err, err_size);
    if (result == NULL)
        return sink_failed(err, err_size);
    *id = column_i64(result, 0, 0);
    PQclear(result);
    return 0;
}

/* A page found under its key after an insert did nothing must be the same page: the first
 * copy of a resend whose COMMIT took effect. */
static int check_stored_page(struct pg_log *log, const struct epcs_log_page *page, char *err,
                             size_t err_size)
{
    struct number first;
    const char *values[] = {number_of(&first, (int64_t)page->first_id)};
    PGresult *result = run_binary(log->conn, "reading a stored page",
                                  "SELECT last_id, count::bigint FROM epcs_decision_pages"
                                  " WHERE first_id = $1",
                                  1, values, NULL, err, err_size);
    if (result == NULL)
        return sink_failed(err, err_size);
    int same = PQntuples(result) == 1 && (uint64_t)column_i64(result, 0, 0) == page->last_id &&
               (size_t)column_i64(result, 0, 1) == page->count;
    PQclear(result);
    if (!same)
        snprintf(err, err_size,
                 "the page of decisions from id %" PRIu64 " is stored already with other "
                 "entries",
                 page->first_id);
    return same ? 0 : sink_failed(err, err_size);
}

static int sink_put_page(void *backend, const struct epcs_log_page *page, char *err,
                         size_t err_size)
{
    struct pg_log *log = backend;
    struct number n[9];
    const char *values[] = {number_of(&n[0], (int64_t)page->first_id),
                            number_of(&n[1], (int64_t)page->last_id),
                            number_of(&n[2], page->first_us),
                            number_of(&n[3], page->last_us),
                            number_of(&n[4], (int64_t)page->count),
                            number_of(&n[5], (int64_t)page->summary[0]),
                            number_of(&n[6], (int64_t)page->summary[1]),
                            number_of(&n[7], (int64_t)page->summary[2]),
                            number_of(&n[8], (int64_t)page->summary[3]),
                            page->body};
    const int lengths[] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, (int)page->len};
    PGresult *result = run_binary(
        log->conn, "storing a page of decisions",
        "INSERT INTO epcs_decision_pages (first_id, last_id, first_us, last_us, count, s0, s1, s2,"
        " s3, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (first_id) DO NOTHING",
        10, values, lengths, err, err_size);
    if (result == NULL)
        return sink_failed(err, err_size);
    int inserted = strcmp(PQcmdTuples(result), "1") == 0;
    PQclear(result);
    return inserted ? 0 : check_stored_page(log, page, err, err_size);
}

/* Every commit is durable: the database's own synchronous_commit (on by default) decides, and
 * a sync answer or a replica lost with its journals needs it. */
static int sink_commit(void *backend, int durable, char *err, size_t err_size)
{
    (void)durable;
    struct pg_log *log = backend;
    return epcs_pg_command(log->conn, "committing a group of decisions", "COMMIT", err, err_size);
}

static void sink_rollback(void *backend)
{
    struct pg_log *log = backend;
    /* The pool rolls back what is open and closes a broken connection; the next group takes
     * a connection afresh. */
    drop_connection(log);
}

/*
 * Whether the pages hold entry `id` (journal recovery). Each page holds every writer entry of
 * its range; the range found last answers the ids of a journal's record after the first.
 */
static int sink_stored(void *backend, uint64_t id, char *err, size_t err_size)
{
    struct pg_log *log = backend;
    if (log->known_last != 0 && id >= log->known_first && id <= log->known_last)
        return 1;
    PGconn *conn = epcs_pg_take(log->pg, err, err_size);
    if (conn == NULL)
        return sink_failed(err, err_size);
    struct number number;
    const char *values[] = {number_of(&number, (int64_t)id)};
    PGresult *result = run_binary(conn, "looking for journaled decisions",
                                  "SELECT first_id, last_id FROM epcs_decision_pages"
                                  " WHERE first_id <= $1 ORDER BY first_id DESC LIMIT 1",
                                  1, values, NULL, err, err_size);
    epcs_pg_give(log->pg, conn);
    if (result == NULL)
        return sink_failed(err, err_size);
    int found = 0;
    if (PQntuples(result) == 1) {
        log->known_first = (uint64_t)column_i64(result, 0, 0);
        log->known_last = (uint64_t)column_i64(result, 0, 1);
        found = id <= log->known_last;
    }
    PQclear(result);
    return found;
}

static const struct epcs_log_sink pg_sink = {
    .begin = sink_begin,
    .insert_answer = sink_insert_answer,
    .put_page = sink_put_page,
    .commit = sink_commit,
    .rollback = sink_rollback,
    .stored = sink_stored,
    .summarise = 1,
    .retry_max_ms = RETRY_MAX_MS,
};

/* ---- opening and closing ------------------------------------------------------------------ */

/* Locks <data>/decisions.lock for this log; 0, or -1 with `err`. */
static int lock_data_dir(struct pg_log *log, const char *data_dir, char *err, size_t err_size)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/decisions.lock", data_dir);
    log->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (log->lock_fd < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(log->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, err_size, "%s: %s", path,
                 errno == EWOULDBLOCK ? "another epcsd is using this data directory"
                                      : strerror(errno));
        return -1;
    }
    return 0;
}

static void pg_log_close(struct epcs_decision_log *handle);

static struct epcs_decision_log *pg_log_open(const char *where, const char *data_dir,
                                             enum epcs_audit_mode mode, size_t queue_limit,
                                             char *err, size_t err_size)
{
    struct pg_log *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    log->lock_fd = -1;
    log->core = epcs_log_core_create(&epcs_decision_log_postgresql, &pg_sink, log, data_dir, mode,
                                     queue_limit, err, err_size);
    if (log->core == NULL) {
        free(log);
        return NULL;
    }
    struct epcs_decision_log *handle = epcs_log_core_handle(log->core);
    uint64_t run = 0;
    if (lock_data_dir(log, data_dir, err, err_size) != 0 ||
        (log->pg = epcs_pg_open(where, "decision log", SCHEMA_VERSION, schema, err, err_size)) ==
            NULL ||
        epcs_pg_runs_schema(log->pg, err, err_size) != 0 ||
        epcs_pg_claim_run(log->pg, mode == EPCS_AUDIT_SYNC ? "sync" : "async", &run, err,
                          err_size) != 0)
        goto fail;
    /* Ids keep the run in 32 bits, and bigint columns hold them signed. */
    if (run == 0 || run >= ((uint64_t)1 << 31)) {
        snprintf(err, err_size, "PostgreSQL at %s: run number %" PRIu64 " is out of range",
                 epcs_pg_where(log->pg), run);
        goto fail;
    }
    if (epcs_log_core_start(log->core, run, err, err_size) != 0)
        goto fail;
    return handle;
fail:
    pg_log_close(handle);
    return NULL;
}

static void pg_log_close(struct epcs_decision_log *handle)
{
    struct pg_log *log = epcs_log_backend(handle);
    epcs_log_core_stop(log->core);
    drop_connection(log);
    epcs_pg_close(log->pg);
    if (log->lock_fd >= 0)
        close(log->lock_fd);
    epcs_log_core_destroy(log->core);
    free(log);
}

/* ---- readers ------------------------------------------------------------------------------ */

struct known_answer {
    int64_t id;
    char *bytes;
    size_t len;
};

/* A reader: a connection (the log pool's, or its own), and the answers it has read. */
struct pg_reader {
    PGconn *conn;
    /* NULL: the connection is the reader's own (reader_open). */
    struct epcs_pg *pool;
    struct known_answer answers[ANSWER_SLOTS];
};

static struct epcs_decision_reader *handle_of(struct pg_reader *reader)
{
    return (struct epcs_decision_reader *)(void *)reader;
}

static struct pg_reader *reader_of(struct epcs_decision_reader *handle)
{
    return (struct pg_reader *)(void *)handle;
}

static void reader_free(struct pg_reader *reader)
{
    for (size_t i = 0; i < ANSWER_SLOTS; i++)
        free(reader->answers[i].bytes);
    free(reader);
}

static struct epcs_decision_reader *pg_log_reader_open(const char *where, char *err,
                                                       size_t err_size)
{
    struct pg_reader *reader = calloc(1, sizeof(*reader));
    if (reader == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if ((reader->conn = epcs_pg_connect(where, err, err_size)) == NULL) {
        reader_free(reader);
        return NULL;
    }
    return handle_of(reader);
}

static void pg_log_reader_close(struct epcs_decision_reader *handle)
{
    struct pg_reader *reader = reader_of(handle);
    if (reader == NULL)
        return;
    PQfinish(reader->conn);
    reader_free(reader);
}

static struct epcs_decision_reader *pg_log_reader_acquire(struct epcs_decision_log *handle,
                                                          char *err, size_t err_size)
{
    struct pg_log *log = epcs_log_backend(handle);
    struct pg_reader *reader = calloc(1, sizeof(*reader));
    if (reader == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    reader->pool = log->pg;
    /* Without a connection (the database away) the reader's reads say so, each one: the
     * route answers 503 rather than 500. */
    reader->conn = epcs_pg_take(log->pg, err, err_size);
    return handle_of(reader);
}

static void pg_log_reader_release(struct epcs_decision_log *handle,
                                  struct epcs_decision_reader *source)
{
    (void)handle;
    struct pg_reader *reader = reader_of(source);
    if (reader == NULL)
        return;
    epcs_pg_give(reader->pool, reader->conn);
    reader_free(reader);
}

/* epcs_answer_lookup: the reader's known answers, or the table. */
static int lookup_answer(void *ctx, int64_t id, const char **bytes, size_t *len, char *err,
                         size_t err_size)
{
    struct pg_reader *reader = ctx;
    struct known_answer *known = &reader->answers[(uint64_t)id % ANSWER_SLOTS];
    if (known->bytes == NULL || known->id != id) {
        struct number number;
        const char *values[] = {number_of(&number, id)};
        PGresult *result = run_binary(reader->conn, "reading an answer",
                                      "SELECT answer FROM epcs_decision_answers WHERE id = $1", 1,
                                      values, NULL, err, err_size);
        if (result == NULL)
            return -1;
        if (PQntuples(result) != 1) {
            PQclear(result);
            return 1;
        }
        size_t length = (size_t)PQgetlength(result, 0, 0);
        char *copy = malloc(length ? length : 1);
        if (copy == NULL) {
            PQclear(result);
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        memcpy(copy, PQgetvalue(result, 0, 0), length);
        PQclear(result);
        free(known->bytes);
        *known = (struct known_answer){.id = id, .bytes = copy, .len = length};
    }
    *bytes = known->bytes;
    *len = known->len;
    return 0;
}

/* ---- listing: the pages and the entries of other stores, merged by id --------------------- */

/* The pages a listing reads, fetched a few at a time, and the one being decoded. */
struct page_cursor {
    PGconn *conn;
    const struct epcs_decision_query *query;
    /* The summary a page must have (NULL: any). */
    const uint64_t *wanted;
    PGresult *batch;
    int row;
    /* The first id of the next batch; 0 once the pages are done. */
    uint64_t from;
    struct epcs_page_decoder decoder;
    /* The decoder holds an entry not yet taken. */
    int has;
    msgpack_object entry;
};

/* The entries of other stores a listing may list (they are few: all fetched at once). */
struct row_cursor {
    PGresult *rows;
    int row;
    struct epcs_page_decoder decoder;
    int has;
    msgpack_object entry;
};

/* The first page that can hold an entry the query wants: the one holding `after`, or the
 * first that ends at or after `from` (1 when there is none: ids start above it). */
static int first_page(PGconn *conn, const struct epcs_decision_query *query, uint64_t *first,
                      char *err, size_t err_size)
{
    struct number after, from;
    const char *values[] = {number_of(&after, (int64_t)query->after),
                            number_of(&from, query->from_us)};
    PGresult *result =
        run_binary(conn, "finding the first page",
                   "SELECT greatest(coalesce((SELECT max(first_id) FROM epcs_decision_pages"
                   " WHERE first_id <= $1::bigint), 1), coalesce((SELECT min(first_id)"
                   " FROM epcs_decision_pages WHERE last_us >= $2::bigint), 1))",
                   2, values, NULL, err, err_size);
    if (result == NULL)
        return -1;
    *first = (uint64_t)column_i64(result, 0, 0);
    PQclear(result);
    return 0;
}

static int fetch_pages(struct page_cursor *cursor, char *err, size_t err_size)
{
    PQclear(cursor->batch);
    cursor->batch = NULL;
    cursor->row = 0;
    struct number n[5];
    const uint64_t none[EPCS_SUMMARY_WORDS] = {0};
    const uint64_t *wanted = cursor->wanted != NULL ? cursor->wanted : none;
    const char *values[] = {
        number_of(&n[0], (int64_t)cursor->from), number_of(&n[1], (int64_t)wanted[0]),
        number_of(&n[2], (int64_t)wanted[1]), number_of(&n[3], (int64_t)wanted[2]),
        number_of(&n[4], (int64_t)wanted[3])};
    cursor->batch = run_binary(cursor->conn, "reading pages of decisions",
                               "SELECT first_id, first_us, body FROM epcs_decision_pages"
                               " WHERE first_id >= $1::bigint"
                               " AND (s0 & $2::bigint) = $2::bigint"
                               " AND (s1 & $3::bigint) = $3::bigint"
                               " AND (s2 & $4::bigint) = $4::bigint"
                               " AND (s3 & $5::bigint) = $5::bigint"
                               " ORDER BY first_id LIMIT " PAGES_PER_FETCH_SQL,
                               5, values, NULL, err, err_size);
    if (cursor->batch == NULL)
        return -1;
    int rows = PQntuples(cursor->batch);
    cursor->from =
        rows < PAGES_PER_FETCH ? 0 : (uint64_t)column_i64(cursor->batch, rows - 1, 0) + 1;
    return 0;
}

/* Makes the cursor hold the next page entry: 1, 0 when the pages are done, -1. */
static int page_entry(struct page_cursor *cursor, char *err, size_t err_size)
{
    while (!cursor->has) {
        int next = epcs_page_decoder_next(&cursor->decoder, &cursor->entry);
        if (next < 0)
            return -1;
        if (next == 1) {
            cursor->has = 1;
            break;
        }
        if (cursor->batch == NULL || cursor->row == PQntuples(cursor->batch)) {
            if (cursor->from == 0)
                return 0;
            if (fetch_pages(cursor, err, err_size) != 0)
                return -1;
            if (PQntuples(cursor->batch) == 0)
                return 0;
        }
        int row = cursor->row++;
        const struct epcs_decision_query *query = cursor->query;
        if (query->to_us &&
            column_i64(cursor->batch, row, 1) >= query->to_us + EPCS_PAGE_TIME_SLACK_US) {
            cursor->from = 0;
            cursor->row = PQntuples(cursor->batch);
            return 0;
        }
        epcs_page_decoder_start(&cursor->decoder, PQgetvalue(cursor->batch, row, 2),
                                (size_t)PQgetlength(cursor->batch, row, 2));
    }
    return 1;
}

/* Makes the cursor hold the next row's entry: 1, 0 when there are no more, -1. */
static int row_entry(struct row_cursor *cursor)
{
    if (cursor->has)
        return 1;
    if (cursor->rows == NULL || cursor->row == PQntuples(cursor->rows))
        return 0;
    int row = cursor->row++;
    epcs_page_decoder_start(&cursor->decoder, PQgetvalue(cursor->rows, row, 1),
                            (size_t)PQgetlength(cursor->rows, row, 1));
    int next = epcs_page_decoder_next(&cursor->decoder, &cursor->entry);
    if (next == 0) {
        snprintf(cursor->decoder.err, cursor->decoder.err_size,
                 "an entry of the decision log is empty");
        return -1;
    }
    cursor->has = next == 1;
    return next;
}

/* The entries of other stores that `query` lists, up to one more than it asks for. */
static PGresult *fetch_rows(PGconn *conn, const struct epcs_decision_query *query, char *err,
                            size_t err_size)
{
    struct number after, from, to, limit;
    const char *values[] = {number_of(&after, (int64_t)query->after),
                            number_of(&from, query->from_us),
                            number_of(&to, query->to_us),
                            query->partner,
                            query->election,
                            query->area,
                            query->verdict,
                            number_of(&limit, (int64_t)query->limit + 1)};
    return run_binary(conn, "reading entries of the decision log",
                      "SELECT id, entry FROM epcs_decision_entries WHERE id > $1::bigint"
                      " AND ($2::bigint = 0 OR at_us >= $2::bigint)"
                      " AND ($3::bigint = 0 OR at_us < $3::bigint)"
                      " AND ($4::text IS NULL OR partner = $4)"
                      " AND ($5::text IS NULL OR election = $5)"
                      " AND ($6::text IS NULL OR (kind = 0 AND area = $6))"
                      " AND ($7::text IS NULL OR (kind = 0 AND verdict = $7))"
                      " ORDER BY id LIMIT $8::bigint",
                      8, values, NULL, err, err_size);
}

/* Packs the entries of both cursors that the query lists, in id order. */
static int merge_listing(struct page_cursor *pages, struct row_cursor *rows,
                         struct pg_reader *reader, msgpack_packer *pk, char *err, size_t err_size)
{
    const struct epcs_decision_query *query = pages->query;
    struct epcs_buf packed = {0};
    msgpack_packer row_packer;
    msgpack_packer_init(&row_packer, &packed, epcs_buf_msgpack_write);
    size_t count = 0;
    uint64_t last_id = 0;
    int more = 0, rc = 0;
    for (;;) {
        int page_has = page_entry(pages, err, err_size);
        int row_has = page_has < 0 ? -1 : row_entry(rows);
        if (page_has < 0 || row_has < 0) {
            rc = -1;
            break;
        }
        if (!page_has && !row_has)
            break;
        int from_page =
            page_has && (!row_has || epcs_entry_id(&pages->entry) < epcs_entry_id(&rows->entry));
        const msgpack_object *entry = from_page ? &pages->entry : &rows->entry;
        if (epcs_entry_matches(query, entry)) {
            /* One entry more than asked tells whether there is a next page. */
            if (count == query->limit) {
                more = 1;
                break;
            }
            if (epcs_entry_pack(&row_packer, entry, lookup_answer, reader, err, err_size) != 0) {
                rc = -1;
                break;
            }
            last_id = epcs_entry_id(entry);
            count++;
        }
        if (from_page)
            pages->has = 0;
        else
            rows->has = 0;
    }
    if (rc == 0)
        epcs_pack_listing(pk, &packed, count, more, last_id);
    epcs_buf_free(&packed);
    return rc;
}

static int read_query_on(struct epcs_decision_log *handle, struct epcs_decision_reader *source,
                         const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                         size_t err_size)
{
    struct pg_reader *reader = reader_of(source);
    uint64_t wanted[EPCS_SUMMARY_WORDS];
    /* As on every backend, a query without the log skips no page. */
    int filtered = epcs_summary_wanted(query, wanted) && handle != NULL;
    struct page_cursor pages = {
        .conn = reader->conn, .query = query, .wanted = filtered ? wanted : NULL};
    struct row_cursor rows = {.rows = NULL};
    int rc = -1;
    if (epcs_page_decoder_init(&pages.decoder, err, err_size) != 0)
        return -1;
    if (epcs_page_decoder_init(&rows.decoder, err, err_size) != 0) {
        epcs_page_decoder_dispose(&pages.decoder);
        return -1;
    }
    if (first_page(reader->conn, query, &pages.from, err, err_size) == 0 &&
        (rows.rows = fetch_rows(reader->conn, query, err, err_size)) != NULL)
        rc = merge_listing(&pages, &rows, reader, pk, err, err_size);
    PQclear(pages.batch);
    PQclear(rows.rows);
    epcs_page_decoder_dispose(&pages.decoder);
    epcs_page_decoder_dispose(&rows.decoder);
    return rc;
}

/* ---- one entry ---------------------------------------------------------------------------- */

/* Finds entry `id` in the `len` bytes at `body` and packs it: 0, 1 when it is not there, -1. */
static int get_from(struct pg_reader *reader, const char *body, size_t len, uint64_t id,
                    msgpack_packer *pk, struct epcs_buf *request, char *ruleset,
                    size_t ruleset_size, char *date, char *err, size_t err_size)
{
    struct epcs_page_decoder decoder;
    if (epcs_page_decoder_init(&decoder, err, err_size) != 0)
        return -1;
    epcs_page_decoder_start(&decoder, body, len);
    msgpack_object entry;
    int next;
    while ((next = epcs_page_decoder_next(&decoder, &entry)) == 1 && epcs_entry_id(&entry) != id)
        ;
    int rc = next < 0 ? -1 : next == 0 ? 1 : 0;
    if (rc == 0)
        rc = epcs_entry_pack(pk, &entry, lookup_answer, reader, err, err_size);
    if (rc == 0)
        rc = epcs_entry_details(&entry, request, ruleset, ruleset_size, date);
    epcs_page_decoder_dispose(&decoder);
    return rc;
}

static int read_get_on(struct epcs_decision_reader *source, uint64_t id, msgpack_packer *pk,
                       struct epcs_buf *request, char *ruleset, size_t ruleset_size, char *date,
                       char *err, size_t err_size)
{
    struct pg_reader *reader = reader_of(source);
    struct number number;
    const char *values[] = {number_of(&number, (int64_t)id)};
    PGresult *page = run_binary(reader->conn, "reading a page of decisions",
                                "SELECT body FROM epcs_decision_pages WHERE first_id ="
                                " (SELECT max(first_id) FROM epcs_decision_pages"
                                " WHERE first_id <= $1) AND last_id >= $1",
                                1, values, NULL, err, err_size);
    if (page == NULL)
        return -1;
    int rc = 1;
    if (PQntuples(page) == 1)
        rc = get_from(reader, PQgetvalue(page, 0, 0), (size_t)PQgetlength(page, 0, 0), id, pk,
                      request, ruleset, ruleset_size, date, err, err_size);
    PQclear(page);
    if (rc != 1)
        return rc;
    /* Not in the writer's pages: an entry of another store's, if any (an id within a page's
     * range may be one). */
    PGresult *row = run_binary(reader->conn, "reading an entry of the decision log",
                               "SELECT entry FROM epcs_decision_entries WHERE id = $1", 1, values,
                               NULL, err, err_size);
    if (row == NULL)
        return -1;
    if (PQntuples(row) == 1)
        rc = get_from(reader, PQgetvalue(row, 0, 0), (size_t)PQgetlength(row, 0, 0), id, pk,
                      request, ruleset, ruleset_size, date, err, err_size);
    PQclear(row);
    return rc;
}

/* ---- the latest decisions, newest first --------------------------------------------------- */

struct recent {
    struct pg_reader *reader;
    size_t limit, given;
    int (*fn)(void *ctx, const void *request, size_t len, const char *date);
    void *ctx;
    /* The newest decisions of other stores, newest first. */
    PGresult *rows;
    int row;
    struct epcs_page_decoder row_decoder;
    char *err;
    size_t err_size;
};

/* Gives `entry` (a decision or an event, which is passed over) to the caller's function. */
static int give(struct recent *recent, const msgpack_object *entry)
{
    const void *request;
    size_t len;
    char date[11];
    if (recent->given == recent->limit || epcs_entry_check(entry, &request, &len, date) != 0)
        return 0;
    recent->given++;
    if (recent->fn(recent->ctx, request, len, date) == 0)
        return 0;
    snprintf(recent->err, recent->err_size, "a logged check is unreadable");
    return -1;
}

/* Gives the rows newer than `id` (0: every row left). */
static int give_rows_above(struct recent *recent, uint64_t id)
{
    while (recent->row < PQntuples(recent->rows) && recent->given < recent->limit &&
           (id == 0 || (uint64_t)column_i64(recent->rows, recent->row, 0) > id)) {
        int row = recent->row++;
        epcs_page_decoder_start(&recent->row_decoder, PQgetvalue(recent->rows, row, 1),
                                (size_t)PQgetlength(recent->rows, row, 1));
        msgpack_object entry;
        if (epcs_page_decoder_next(&recent->row_decoder, &entry) != 1 || give(recent, &entry) != 0)
            return -1;
    }
    return 0;
}

/* Gives the decisions of the page in `body`, newest first, with the rows between them. */
static int give_page(struct recent *recent, struct epcs_page_decoder *decoder, const char *body,
                     size_t len, msgpack_object **entries, size_t *capacity)
{
    epcs_page_decoder_start(decoder, body, len);
    size_t count = 0;
    int next;
    msgpack_object entry;
    while ((next = epcs_page_decoder_next(decoder, &entry)) == 1) {
        if (count == *capacity) {
            size_t grown_capacity = *capacity ? *capacity * 2 : EPCS_PAGE_ENTRIES;
            msgpack_object *grown = realloc(*entries, grown_capacity * sizeof(*grown));
            if (grown == NULL) {
                snprintf(recent->err, recent->err_size, "out of memory");
                return -1;
            }
            *entries = grown;
            *capacity = grown_capacity;
        }
        (*entries)[count++] = entry;
    }
    if (next < 0)
        return -1;
    for (size_t i = count; i-- > 0 && recent->given < recent->limit;) {
        if (give_rows_above(recent, epcs_entry_id(&(*entries)[i])) != 0 ||
            give(recent, &(*entries)[i]) != 0)
            return -1;
    }
    return 0;
}

static int read_recent_on(struct epcs_decision_reader *source, size_t limit,
                          int (*fn)(void *ctx, const void *request, size_t len, const char *date),
                          void *ctx, char *err, size_t err_size)
{
    struct pg_reader *reader = reader_of(source);
    struct recent recent = {
        .reader = reader, .limit = limit, .fn = fn, .ctx = ctx, .err = err, .err_size = err_size};
    struct number number, before;
    const char *values[] = {number_of(&number, (int64_t)limit)};
    if ((recent.rows = run_binary(reader->conn, "reading entries of the decision log",
                                  "SELECT id, entry FROM epcs_decision_entries WHERE kind = 0"
                                  " ORDER BY id DESC LIMIT $1",
                                  1, values, NULL, err, err_size)) == NULL)
        return -1;
    struct epcs_page_decoder decoder;
    if (epcs_page_decoder_init(&recent.row_decoder, err, err_size) != 0) {
        PQclear(recent.rows);
        return -1;
    }
    if (epcs_page_decoder_init(&decoder, err, err_size) != 0) {
        epcs_page_decoder_dispose(&recent.row_decoder);
        PQclear(recent.rows);
        return -1;
    }
    msgpack_object *entries = NULL;
    size_t capacity = 0;
    int64_t below = INT64_MAX;
    int rc = 0, more = 1;
    while (rc == 0 && more && recent.given < limit) {
        const char *page_values[] = {number_of(&before, below)};
        PGresult *pages = run_binary(reader->conn, "reading pages of decisions",
                                     "SELECT first_id, body FROM epcs_decision_pages"
                                     " WHERE first_id < $1 ORDER BY first_id DESC"
                                     " LIMIT " PAGES_PER_FETCH_SQL,
                                     1, page_values, NULL, err, err_size);
        if (pages == NULL) {
            rc = -1;
            break;
        }
        int count = PQntuples(pages);
        more = count == PAGES_PER_FETCH;
        for (int i = 0; rc == 0 && i < count && recent.given < limit; i++) {
            below = column_i64(pages, i, 0);
            rc = give_page(&recent, &decoder, PQgetvalue(pages, i, 1),
                           (size_t)PQgetlength(pages, i, 1), &entries, &capacity);
        }
        PQclear(pages);
    }
    if (rc == 0)
        rc = give_rows_above(&recent, 0);
    free(entries);
    epcs_page_decoder_dispose(&decoder);
    epcs_page_decoder_dispose(&recent.row_decoder);
    PQclear(recent.rows);
    return rc;
}

/* ---- entries of other stores' transactions (pg_log.h) ------------------------------------- */

/* Inserts one entry, in page form, with the columns a listing filters on. */
static int insert_entry(PGconn *conn, const struct epcs_entry_header *header,
                        const struct epcs_buf *form, const char *partner, const char *election,
                        const char *area, const char *verdict, char *err, size_t err_size)
{
    struct number id, at, kind;
    const char *values[] = {number_of(&id, (int64_t)header->id),
                            number_of(&at, header->at_us),
                            number_of(&kind, header->kind),
                            partner,
                            election,
                            area,
                            verdict,
                            form->data};
    const int lengths[] = {-1, -1, -1, -1, -1, -1, -1, (int)form->len};
    PGresult *result = run_binary(
        conn, "storing an entry of the decision log",
        "INSERT INTO epcs_decision_entries (id, at_us, kind, partner, election, area, verdict,"
        " entry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        8, values, lengths, err, err_size);
    PQclear(result);
    return result != NULL ? 0 : -1;
}

/* Stores the answer of the handed-over decision at `raw` and makes its page form. */
static int decision_form(PGconn *conn, const struct epcs_entry_header *header, const char *raw,
                         struct epcs_buf *form, struct epcs_buf *article, char *err,
                         size_t err_size)
{
    const char *answer = raw + header->answer_at;
    size_t answer_len = header->len - header->answer_at;
    const char *values[] = {answer};
    const int lengths[] = {(int)answer_len};
    PGresult *result =
        run_binary(conn, "storing an answer",
                   "INSERT INTO epcs_decision_answers (answer) VALUES ($1) RETURNING id", 1, values,
                   lengths, err, err_size);
    if (result == NULL)
        return -1;
    int64_t answer_id = column_i64(result, 0, 0);
    PQclear(result);
    epcs_entry_cited_articles(answer, answer_len, article);
    if (epcs_buf_append(article, "", 1) != 0 ||
        epcs_entry_page_form(form, header, raw, answer_id, article->data) != 0) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    return 0;
}

int epcs_pg_log_insert(PGconn *conn, const struct epcs_decision *decisions,
                       const char *const *partners, size_t decision_count,
                       const struct epcs_decision_event *events, size_t event_count, char *err,
                       size_t err_size)
{
    struct epcs_buf encoded = {0}, form = {0}, article = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < decision_count + event_count; i++) {
        epcs_buf_reset(&encoded);
        epcs_buf_reset(&form);
        int is_event = i >= decision_count;
        const struct epcs_decision *decision = is_event ? NULL : &decisions[i];
        const struct epcs_decision_event *event = is_event ? &events[i - decision_count] : NULL;
        if ((is_event ? epcs_entry_encode_event(&encoded, event)
                      : epcs_entry_encode_decisions(&encoded, decision, 1, partners[i])) != 0) {
            snprintf(err, err_size, "out of memory");
            rc = -1;
            break;
        }
        const char *at = encoded.data, *raw;
        size_t left = encoded.len;
        struct epcs_entry_header header;
        if (epcs_entry_read(&at, &left, &header, &raw) != 0) {
            snprintf(err, err_size, "an entry of the decision log cannot be encoded");
            rc = -1;
        } else if (is_event) {
            rc = epcs_buf_append(&form, raw, header.len) == 0
                     ? insert_entry(conn, &header, &form, event->partner, event->election, NULL,
                                    NULL, err, err_size)
                     : -1;
        } else {
            rc = decision_form(conn, &header, raw, &form, &article, err, err_size) == 0
                     ? insert_entry(conn, &header, &form, partners[i], decision->election,
                                    decision->area, epcs_verdict_name(decision->verdict), err,
                                    err_size)
                     : -1;
        }
    }
    epcs_buf_free(&encoded);
    epcs_buf_free(&form);
    epcs_buf_free(&article);
    return rc;
}

/* ---- what a read answers when the database is away ---------------------------------------- */

/* A read that failed because the database cannot be reached says so, as a rule store's does. */
static int read_outcome(const struct pg_reader *reader, int rc, char *err, size_t err_size)
{
    if (rc >= 0 || !epcs_pg_unreachable(reader->conn))
        return rc;
    if (reader->conn == NULL)
        snprintf(err, err_size, "PostgreSQL cannot be reached");
    return EPCS_DECISION_LOG_UNREACHABLE;
}

static int pg_log_query(struct epcs_decision_log *handle, struct epcs_decision_reader *source,
                        const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                        size_t err_size)
{
    struct pg_reader *reader = reader_of(source);
    int rc = reader->conn != NULL ? read_query_on(handle, source, query, pk, err, err_size) : -1;
    return read_outcome(reader, rc, err, err_size);
}

static int pg_log_get(struct epcs_decision_reader *source, uint64_t id, msgpack_packer *pk,
                      struct epcs_buf *request, char *ruleset, size_t ruleset_size, char *date,
                      char *err, size_t err_size)
{
    struct pg_reader *reader = reader_of(source);
    int rc = reader->conn != NULL
                 ? read_get_on(source, id, pk, request, ruleset, ruleset_size, date, err, err_size)
                 : -1;
    return read_outcome(reader, rc, err, err_size);
}

static int pg_log_recent(struct epcs_decision_reader *source, size_t limit,
                         int (*fn)(void *ctx, const void *request, size_t len, const char *date),
                         void *ctx, char *err, size_t err_size)
{
    struct pg_reader *reader = reader_of(source);
    int rc = reader->conn != NULL ? read_recent_on(source, limit, fn, ctx, err, err_size) : -1;
    return read_outcome(reader, rc, err, err_size);
}

const struct epcs_decision_log_ops epcs_decision_log_postgresql = {
    .name = "postgresql",
    .open = pg_log_open,
    .close = pg_log_close,
    EPCS_LOG_CORE_OPS,
    .reader_open = pg_log_reader_open,
    .reader_close = pg_log_reader_close,
    .reader_acquire = pg_log_reader_acquire,
    .reader_release = pg_log_reader_release,
    .query = pg_log_query,
    .get = pg_log_get,
    .recent = pg_log_recent,
};
