/*
 * The decision log's SQLite backend (epcs_decision_log_sqlite, store.h): the sink and readers of
 * the shared log (decision_log_core.h) for one epcsd's data directory. Callers reach it only
 * through the ops, and its reader handles are its read-only connections.
 *
 * A page's bytes are appended to <data>/decisions.pages and SQLite (WAL) indexes them: stored
 * as blobs, every byte went through the WAL and again through each checkpoint, whose bursts of
 * copying were what delayed the slowest answers most. The page file is written before the
 * transaction that indexes it commits (and fsync'd first under --audit sync), so an index row
 * never points at bytes a crash of the process can lose; bytes no row points at are cut off at
 * start.
 */
#include "decision_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dates.h"
#include "decision_log_core.h"
#include "decision_pages.h"
#include "files.h"
#include "log.h"
#include "sqlite_store.h"
#include "store.h"

/* Busy readers may hold the database briefly; the writer waits rather than drop a commit. */
#define BUSY_TIMEOUT_MS 5000

/* A stalled journal is retried (by the writer) as a write of this many bytes to the disk. */
#define PROBE_BYTES (64 * 1024)

struct sqlite_log {
    struct epcs_log_core *core;
    enum epcs_audit_mode mode;
    sqlite3 *db;
    sqlite3_stmt *insert_page;
    sqlite3_stmt *insert_answer;
    /* Journal recovery at start: the page that may hold an id. */
    sqlite3_stmt *lookup;
    /* decisions.pages, where the next page goes, and where the group being written began
     * (writer thread only after open). */
    int pages_fd;
    uint64_t pages_end;
    uint64_t group_start;

    /* Read connections for queries on the thread pool. */
    struct epcs_sqlite_pool readers;
    /* What filtered queries learnt of the pages they read whole (see page summaries in
     * decision_pages.h), keyed by a page's first id and place in the file. */
    struct epcs_summary_table summaries;
};

/*
 * Answers repeat far more than questions (every post of a day gets one of a few verdicts), so
 * each distinct answer is stored once in `answers` and decisions point at it. An answer is
 * stored without its decision id, which is the decision's own id.
 */
#define SCHEMA_VERSION 4
static const char schema[] = "CREATE TABLE IF NOT EXISTS page_file (id BLOB NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS runs ("
                             "  run INTEGER PRIMARY KEY,"
                             "  started TEXT NOT NULL,"
                             "  audit TEXT NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS answers ("
                             "  id INTEGER PRIMARY KEY,"
                             "  answer BLOB NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS pages ("
                             "  first_id INTEGER PRIMARY KEY,"
                             "  last_id INTEGER NOT NULL,"
                             "  first_us INTEGER NOT NULL,"
                             "  last_us INTEGER NOT NULL,"
                             "  count INTEGER NOT NULL,"
                             "  body_at INTEGER NOT NULL,"
                             "  body_len INTEGER NOT NULL);"
                             "CREATE INDEX IF NOT EXISTS pages_by_time ON pages(last_us);";

static void db_path(const char *data_dir, char *path, size_t size)
{
    snprintf(path, size, "%s/decisions.db", data_dir);
}

/* The page file beside the database at `db_file` (".../decisions.db"); -1 for another name. */
static int pages_path(const char *db_file, char *path, size_t size)
{
    size_t len = strlen(db_file);
    if (len < 3 || strcmp(db_file + len - 3, ".db") != 0)
        return -1;
    snprintf(path, size, "%.*s.pages", (int)(len - 3), db_file);
    return 0;
}

/* ---- the sink: pages to decisions.pages, indexed in decisions.db -------------------------- */

/* Runs `sql` on the writer's connection; 0, or -1 with `err` naming the database. */
static int writer_exec(struct sqlite_log *log, const char *sql, char *err, size_t err_size)
{
    char why[200];
    if (epcs_sqlite_exec(log->db, sql, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, err_size, "decisions.db: %s", why);
    return -1;
}

static int sink_begin(void *backend, char *err, size_t err_size)
{
    struct sqlite_log *log = backend;
    log->group_start = log->pages_end;
    return writer_exec(log, "BEGIN", err, err_size);
}

static int sink_insert_answer(void *backend, const char *answer, size_t len, int64_t *id, char *err,
                              size_t err_size)
{
    struct sqlite_log *log = backend;
    sqlite3_stmt *stmt = log->insert_answer;
    sqlite3_reset(stmt);
    sqlite3_bind_blob(stmt, 1, answer, (int)len, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        snprintf(err, err_size, "decisions.db: %s", sqlite3_errmsg(log->db));
        return -1;
    }
    *id = sqlite3_last_insert_rowid(log->db);
    return 0;
}

/* Appends the page to the page file and indexes it. */
static int sink_put_page(void *backend, const struct epcs_log_page *page, char *err,
                         size_t err_size)
{
    struct sqlite_log *log = backend;
    for (size_t done = 0; done < page->len;) {
        ssize_t wrote = pwrite(log->pages_fd, page->body + done, page->len - done,
                               (off_t)(log->pages_end + done));
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote <= 0) {
            snprintf(err, err_size, "decisions.pages: %s",
                     wrote < 0 ? strerror(errno) : "nothing written");
            return -1;
        }
        done += (size_t)wrote;
    }
    sqlite3_stmt *stmt = log->insert_page;
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)page->first_id);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)page->last_id);
    sqlite3_bind_int64(stmt, 3, page->first_us);
    sqlite3_bind_int64(stmt, 4, page->last_us);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)page->count);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)log->pages_end);
    sqlite3_bind_int64(stmt, 7, (sqlite3_int64)page->len);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        snprintf(err, err_size, "decisions.db: %s", sqlite3_errmsg(log->db));
        return -1;
    }
    log->pages_end += page->len;
    return 0;
}

/* The page must be on the disk before the index that points at it. */
static int sink_commit(void *backend, int durable, char *err, size_t err_size)
{
    struct sqlite_log *log = backend;
    if (durable && fdatasync(log->pages_fd) != 0) {
        snprintf(err, err_size, "decisions.pages: %s", strerror(errno));
        return -1;
    }
    return writer_exec(log, "COMMIT", err, err_size);
}

/* The page file is cut back to where the group began: what the failed write took is given
 * back to a full disk, and its bytes are indexed by nothing. */
static void sink_rollback(void *backend)
{
    struct sqlite_log *log = backend;
    char ignored[200];
    epcs_sqlite_exec(log->db, "ROLLBACK", ignored, sizeof(ignored));
    log->pages_end = log->group_start;
    int cut = ftruncate(log->pages_fd, (off_t)log->group_start);
    (void)cut; /* if not, the next page is written over them */
}

/*
 * Whether the index holds entry `id`. Pages are written in id order, each holding every entry
 * of its range (an id on its way holds back all above it), so an id inside a page's range is
 * in that page.
 */
static int sink_stored(void *backend, uint64_t id, char *err, size_t err_size)
{
    struct sqlite_log *log = backend;
    sqlite3_stmt *lookup = log->lookup;
    sqlite3_reset(lookup);
    sqlite3_bind_int64(lookup, 1, (sqlite3_int64)id);
    int step = sqlite3_step(lookup);
    if (step == SQLITE_DONE)
        return 0;
    if (step == SQLITE_ROW)
        return (uint64_t)sqlite3_column_int64(lookup, 0) >= id;
    snprintf(err, err_size, "decisions.db: %s", sqlite3_errmsg(log->db));
    return -1;
}

/* Whether the disk takes a write again: PROBE_BYTES after the page file's end, then cut off
 * (start-up cuts off bytes no page row points at anyway). 0 when it took them. */
static int sink_probe(void *backend)
{
    struct sqlite_log *log = backend;
    static const char zeros[PROBE_BYTES];
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < sizeof(zeros);) {
        ssize_t wrote = pwrite(log->pages_fd, zeros + done, sizeof(zeros) - done,
                               (off_t)(log->pages_end + done));
        if (wrote < 0 && errno == EINTR)
            continue;
        rc = wrote > 0 ? 0 : -1;
        done += wrote > 0 ? (size_t)wrote : 0;
    }
    if (ftruncate(log->pages_fd, (off_t)log->pages_end) != 0)
        rc = -1;
    return rc;
}

static const struct epcs_log_sink sqlite_sink = {
    .begin = sink_begin,
    .insert_answer = sink_insert_answer,
    .put_page = sink_put_page,
    .commit = sink_commit,
    .rollback = sink_rollback,
    .stored = sink_stored,
    .probe = sink_probe,
    .retry_max_ms = EPCS_DECISION_LOG_RETRY_MS,
};

/* The first column of the first row of `sql` with `bound` as ?1, 0 when it gives no row (a
 * DELETE); -1 after an error. */
static int64_t query_int(sqlite3 *db, const char *sql, int64_t bound)
{
    sqlite3_stmt *stmt = NULL;
    int64_t value = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(stmt, 1, bound);
        int step = sqlite3_step(stmt);
        value = step == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : step == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_finalize(stmt);
    return value;
}

/*
 * decisions.pages starts with a header naming the file and carrying a random id that
 * decisions.db records, so a page file is never taken for another database's: its pages would
 * be cut off or written over.
 */
#define PAGE_FILE_MAGIC "epcs-pages-1\n\0\0\0"
#define PAGE_FILE_ID_BYTES 16
#define PAGE_FILE_HEADER (16 + PAGE_FILE_ID_BYTES)

/* The page file's id as decisions.db records it: 1 with `id` filled, 0 when none is, -1. */
static int recorded_page_file(sqlite3 *db, unsigned char id[PAGE_FILE_ID_BYTES])
{
    sqlite3_stmt *stmt = NULL;
    int found = -1;
    if (sqlite3_prepare_v2(db, "SELECT id FROM page_file", -1, &stmt, NULL) == SQLITE_OK) {
        int step = sqlite3_step(stmt);
        if (step == SQLITE_ROW && sqlite3_column_bytes(stmt, 0) == PAGE_FILE_ID_BYTES) {
            memcpy(id, sqlite3_column_blob(stmt, 0), PAGE_FILE_ID_BYTES);
            found = 1;
        } else if (step == SQLITE_DONE) {
            found = 0;
        }
    }
    sqlite3_finalize(stmt);
    return found;
}

/* Gives an empty page file its header, with the id decisions.db has or a new one it records. */
static int start_page_file(struct sqlite_log *log, const unsigned char *known_id, const char *path,
                           char *err, size_t err_size)
{
    unsigned char header[PAGE_FILE_HEADER];
    memcpy(header, PAGE_FILE_MAGIC, 16);
    if (known_id != NULL) {
        memcpy(header + 16, known_id, PAGE_FILE_ID_BYTES);
    } else {
        sqlite3_stmt *stmt = NULL;
        int recorded = getrandom(header + 16, PAGE_FILE_ID_BYTES, 0) == PAGE_FILE_ID_BYTES &&
                       sqlite3_prepare_v2(log->db, "INSERT INTO page_file(id) VALUES(?)", -1, &stmt,
                                          NULL) == SQLITE_OK &&
                       sqlite3_bind_blob(stmt, 1, header + 16, PAGE_FILE_ID_BYTES, SQLITE_STATIC) ==
                           SQLITE_OK &&
                       sqlite3_step(stmt) == SQLITE_DONE;
        sqlite3_finalize(stmt);
        if (!recorded) {
            snprintf(err, err_size, "%s: cannot record the page file's id: %s", path,
                     sqlite3_errmsg(log->db));
            return -1;
        }
    }
    if (pwrite(log->pages_fd, header, sizeof(header), 0) != (ssize_t)sizeof(header) ||
        fdatasync(log->pages_fd) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Refuses a page file that is not the one decisions.db knows; starts an empty one. */
static int check_page_file(struct sqlite_log *log, const struct stat *st, const char *path,
                           char *err, size_t err_size)
{
    unsigned char recorded[PAGE_FILE_ID_BYTES], header[PAGE_FILE_HEADER];
    int known = recorded_page_file(log->db, recorded);
    int64_t pages = query_int(log->db, "SELECT EXISTS (SELECT 1 FROM pages)", 0);
    if (known < 0 || pages < 0) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        return -1;
    }
    if (st->st_size == 0) {
        if (pages > 0) {
            snprintf(err, err_size,
                     "%s is empty, but the database beside it indexes %lld page(s) of decisions "
                     "in it: put it back (nothing was changed)",
                     path, (long long)query_int(log->db, "SELECT count(*) FROM pages", 0));
            return -1;
        }
        return start_page_file(log, known ? recorded : NULL, path, err, err_size);
    }
    if (st->st_size < PAGE_FILE_HEADER ||
        pread(log->pages_fd, header, sizeof(header), 0) != (ssize_t)sizeof(header) ||
        memcmp(header, PAGE_FILE_MAGIC, 16) != 0) {
        snprintf(err, err_size,
                 "%s is not a page file of the decision log: move it aside (nothing was changed)",
                 path);
        return -1;
    }
    if (!known || memcmp(header + 16, recorded, PAGE_FILE_ID_BYTES) != 0) {
        snprintf(err, err_size,
                 "%s belongs to another decision log than the database beside it: keep the two "
                 "files of a decision log together (nothing was changed)",
                 path);
        return -1;
    }
    return 0;
}

/*
 * Opens decisions.pages beside the database at `db_file` and makes it agree with the index.
 * Bytes after the last indexed page are from a transaction that never committed (the process
 * stopped between the two writes) and are cut off. An indexed page the file does not hold whole
 * (a power cut under --audit async, which does not fsync, while the last run wrote) is
 * forgotten with a warning, since no query could read it. A file that is not this database's,
 * or that lacks pages of earlier runs, is refused.
 */
static int open_pages(struct sqlite_log *log, const char *db_file, char *err, size_t err_size)
{
    char path[4200];
    struct stat st;
    if (pages_path(db_file, path, sizeof(path)) != 0) {
        snprintf(err, err_size, "%s: the decision log must be named decisions.db", db_file);
        return -1;
    }
    log->pages_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (log->pages_fd < 0 || fstat(log->pages_fd, &st) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* The writer appends where it alone knows the end is: a second epcsd on the same data
     * directory would write over its pages. */
    if (flock(log->pages_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, err_size, "%s: %s", path,
                 errno == EWOULDBLOCK ? "another epcsd is using this data directory"
                                      : strerror(errno));
        return -1;
    }
    if (check_page_file(log, &st, path, err, err_size) != 0)
        return -1;
    off_t size = st.st_size > PAGE_FILE_HEADER ? st.st_size : PAGE_FILE_HEADER;
    int64_t end = query_int(log->db, "SELECT max(body_at + body_len) FROM pages", 0);
    /* Only a file shorter than its index needs a look at which pages it lacks. */
    if (end > size) {
        /* A power cut can only take what the last run to write pages had not yet written back;
         * a file that lacks pages of an earlier run was cut by someone. */
        int64_t cut = query_int(log->db,
                                "SELECT count(*) FROM pages WHERE body_at + body_len > ?1 AND "
                                "first_id >> 32 < (SELECT max(first_id >> 32) FROM pages)",
                                (int64_t)size);
        if (cut > 0) {
            snprintf(err, err_size,
                     "%s ends at byte %lld, before %lld page(s) of earlier runs: it was cut "
                     "short; put the whole file back (nothing was changed)",
                     path, (long long)size, (long long)cut);
            return -1;
        }
        int64_t lost =
            cut < 0 ? -1
                    : query_int(log->db, "SELECT count(*) FROM pages WHERE body_at + body_len > ?1",
                                (int64_t)size);
        if (lost > 0) {
            epcs_log(EPCS_LOG_WARN, "decisions",
                     "%s ends before %lld indexed page(s) of decisions, lost to a power cut; their "
                     "index rows are dropped",
                     path, (long long)lost);
            lost = query_int(log->db, "DELETE FROM pages WHERE body_at + body_len > ?1",
                             (int64_t)size);
        }
        end = lost < 0 ? -1 : query_int(log->db, "SELECT max(body_at + body_len) FROM pages", 0);
    }
    if (end < 0) {
        snprintf(err, err_size, "%s: %s", db_file, sqlite3_errmsg(log->db));
        return -1;
    }
    if (end < PAGE_FILE_HEADER)
        end = PAGE_FILE_HEADER;
    if (size > end && ftruncate(log->pages_fd, (off_t)end) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    log->pages_end = (uint64_t)end;
    return 0;
}

/* ---- opening and closing ------------------------------------------------------------------ */

/* Opens (creating) decisions.db, in the mode's durability, at its format. */
static int open_database(struct sqlite_log *log, const char *path, char *err, size_t err_size)
{
    /* Only the writer thread uses this connection: SQLite's own locking would be wasted. */
    if (sqlite3_open_v2(path, &log->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        return -1;
    }
    sqlite3_busy_timeout(log->db, BUSY_TIMEOUT_MS);
    /* Sync answers promise the decision survives a power cut, so each commit is fsync'd; async
     * ones only that it survives the process, which the journal gives. */
    const char *pragmas = log->mode == EPCS_AUDIT_SYNC
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                              : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
    char why[256];
    if (epcs_sqlite_exec(log->db, pragmas, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "%s: %s", path, why);
        return -1;
    }
    return epcs_sqlite_schema(log->db, path, "decision log", "it is evidence",
                              "'decisions', 'pages'", SCHEMA_VERSION, schema, err, err_size);
}

/* Prepares the writer's statements and records this run, whose number starts its ids. */
static int start_run(struct sqlite_log *log, const char *path, uint64_t *number, char *err,
                     size_t err_size)
{
    sqlite3_stmt *run = NULL;
    char started[EPCS_INSTANT_S_LEN];
    epcs_instant_format_s(time(NULL), started);
    int ok = sqlite3_prepare_v2(log->db, "INSERT INTO answers(answer) VALUES(?)", -1,
                                &log->insert_answer, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(log->db,
                                "INSERT INTO pages(first_id, last_id, first_us, last_us, count, "
                                "body_at, body_len) VALUES(?,?,?,?,?,?,?)",
                                -1, &log->insert_page, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(log->db,
                                "SELECT last_id FROM pages WHERE first_id <= ?1 ORDER BY "
                                "first_id DESC LIMIT 1",
                                -1, &log->lookup, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(log->db, "INSERT INTO runs(started, audit) VALUES(?, ?)", -1, &run,
                                NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(run, 1, started, -1, SQLITE_STATIC);
        sqlite3_bind_text(run, 2, log->mode == EPCS_AUDIT_SYNC ? "sync" : "async", -1,
                          SQLITE_STATIC);
        ok = sqlite3_step(run) == SQLITE_DONE;
    }
    sqlite3_finalize(run);
    if (!ok) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        return -1;
    }
    *number = (uint64_t)sqlite3_last_insert_rowid(log->db);
    return 0;
}

static void sqlite_log_close(struct epcs_decision_log *handle);

static struct epcs_decision_log *sqlite_log_open(const char *where, const char *data_dir,
                                                 enum epcs_audit_mode mode, size_t queue_limit,
                                                 char *err, size_t err_size)
{
    (void)where;
    struct sqlite_log *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    log->mode = mode;
    log->pages_fd = -1;
    epcs_summary_table_init(&log->summaries);
    char path[4200], pages[4200];
    db_path(data_dir, path, sizeof(path));
    epcs_sqlite_pool_init(&log->readers, path, BUSY_TIMEOUT_MS);
    log->core = epcs_log_core_create(&epcs_decision_log_sqlite, &sqlite_sink, log, data_dir, mode,
                                     queue_limit, err, err_size);
    if (log->core == NULL) {
        epcs_sqlite_pool_dispose(&log->readers);
        epcs_summary_table_dispose(&log->summaries);
        free(log);
        return NULL;
    }
    struct epcs_decision_log *handle = epcs_log_core_handle(log->core);
    pages_path(path, pages, sizeof(pages));
    /* New files' directory entries are made durable too, or a power cut could take them. */
    int fresh = access(path, F_OK) != 0 || access(pages, F_OK) != 0;
    if (open_database(log, path, err, err_size) != 0 || open_pages(log, path, err, err_size) != 0)
        goto fail;
    if (fresh && epcs_file_sync_dir(data_dir) != 0) {
        snprintf(err, err_size, "%s: %s", data_dir, strerror(errno));
        goto fail;
    }
    uint64_t run;
    if (start_run(log, path, &run, err, err_size) != 0 ||
        epcs_log_core_start(log->core, run, err, err_size) != 0)
        goto fail;
    return handle;
fail:
    sqlite_log_close(handle);
    return NULL;
}

static void sqlite_log_close(struct epcs_decision_log *handle)
{
    struct sqlite_log *log = epcs_log_backend(handle);
    epcs_log_core_stop(log->core);
    sqlite3_finalize(log->insert_page);
    sqlite3_finalize(log->insert_answer);
    sqlite3_finalize(log->lookup);
    sqlite3_close(log->db);
    if (log->pages_fd >= 0)
        close(log->pages_fd);
    epcs_sqlite_pool_dispose(&log->readers);
    epcs_summary_table_dispose(&log->summaries);
    epcs_log_core_destroy(log->core);
    free(log);
}

/* ---- queries ------------------------------------------------------------------------------ */

/* A reader handle is the read-only connection itself: no allocation stands between a pool and
 * its queries. */
static sqlite3 *reader_db(struct epcs_decision_reader *source)
{
    return (sqlite3 *)(void *)source;
}

static struct epcs_decision_reader *reader_of(sqlite3 *db)
{
    return (struct epcs_decision_reader *)(void *)db;
}

static struct epcs_decision_reader *sqlite_log_reader_open(const char *where, char *err,
                                                           size_t err_size)
{
    char path[4200];
    db_path(where, path, sizeof(path));
    return reader_of(epcs_sqlite_reader(path, BUSY_TIMEOUT_MS, err, err_size));
}

static void sqlite_log_reader_close(struct epcs_decision_reader *source)
{
    sqlite3_close(reader_db(source));
}

/* Reading one page's entries in order. */
struct page_reader {
    sqlite3_stmt *answer;
    /* decisions.pages, and the page read from it. */
    int fd;
    struct epcs_buf page;
    struct epcs_page_decoder decoder;
    char *err;
    size_t err_size;
};

static int reader_init(struct page_reader *reader, sqlite3 *db, char *err, size_t err_size)
{
    *reader = (struct page_reader){.fd = -1, .err = err, .err_size = err_size};
    char path[4200];
    const char *db_file = sqlite3_db_filename(db, "main");
    if (db_file == NULL || pages_path(db_file, path, sizeof(path)) != 0) {
        snprintf(err, err_size, "the decision log's page file has no name");
        return -1;
    }
    if ((reader->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (epcs_page_decoder_init(&reader->decoder, err, err_size) != 0) {
        close(reader->fd);
        return -1;
    }
    if (sqlite3_prepare_v2(db, "SELECT answer FROM answers WHERE id = ?", -1, &reader->answer,
                           NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        epcs_page_decoder_dispose(&reader->decoder);
        close(reader->fd);
        return -1;
    }
    return 0;
}

static void reader_close(struct page_reader *reader)
{
    sqlite3_finalize(reader->answer);
    epcs_page_decoder_dispose(&reader->decoder);
    epcs_buf_free(&reader->page);
    close(reader->fd);
}

/* Reads the page indexed by the current row of `stmt`, whose columns `column` and `column` + 1
 * are its offset and length in the page file. 0, or -1 with the reader's error filled. */
static int reader_open_page(struct page_reader *reader, sqlite3_stmt *stmt, int column)
{
    int64_t offset = sqlite3_column_int64(stmt, column);
    int64_t length = sqlite3_column_int64(stmt, column + 1);
    epcs_buf_reset(&reader->page);
    epcs_page_decoder_start(&reader->decoder, NULL, 0);
    /* A page is EPCS_PAGE_BYTES plus at most one entry; a length beyond any body is damage. */
    if (offset < 0 || length <= 0 || length > ((int64_t)1 << 30)) {
        snprintf(reader->err, reader->err_size, "a page of the decision log has a bad index row");
        return -1;
    }
    if ((size_t)length > reader->page.cap) {
        char *grown = realloc(reader->page.data, (size_t)length);
        if (grown == NULL) {
            snprintf(reader->err, reader->err_size, "out of memory");
            return -1;
        }
        reader->page.data = grown;
        reader->page.cap = (size_t)length;
    }
    for (size_t done = 0; done < (size_t)length;) {
        ssize_t got = pread(reader->fd, reader->page.data + done, (size_t)length - done,
                            (off_t)offset + (off_t)done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(reader->err, reader->err_size,
                     "a page of the decision log is missing from decisions.pages (%s)",
                     got < 0 ? strerror(errno) : "the file ends before it");
            return -1;
        }
        done += (size_t)got;
    }
    reader->page.len = (size_t)length;
    epcs_page_decoder_start(&reader->decoder, reader->page.data, reader->page.len);
    return 0;
}

/* The page's next entry: 1, 0 at its end, -1 when the page is unreadable. */
static int reader_next(struct page_reader *reader, msgpack_object *entry)
{
    return epcs_page_decoder_next(&reader->decoder, entry);
}

/* epcs_answer_lookup on the reader's connection. */
static int lookup_answer(void *ctx, int64_t id, const char **bytes, size_t *len, char *err,
                         size_t err_size)
{
    struct page_reader *reader = ctx;
    sqlite3_stmt *stmt = reader->answer;
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, id);
    int step = sqlite3_step(stmt);
    if (step != SQLITE_ROW) {
        if (step == SQLITE_DONE)
            return 1;
        snprintf(err, err_size, "%s", sqlite3_errmsg(sqlite3_db_handle(stmt)));
        return -1;
    }
    *bytes = sqlite3_column_blob(stmt, 0);
    *len = (size_t)sqlite3_column_bytes(stmt, 0);
    return 0;
}

/* One stored entry as the API shows it. */
static int pack_entry(struct page_reader *reader, msgpack_packer *pk, const msgpack_object *entry)
{
    return epcs_entry_pack(pk, entry, lookup_answer, reader, reader->err, reader->err_size);
}

/* The first page that can hold an entry the query wants: the one holding `after`, or the
 * first that ends at or after `from`. */
static int first_page(sqlite3 *db, const struct epcs_decision_query *query, int64_t *first,
                      char *err, size_t err_size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT max(coalesce((SELECT max(first_id) FROM pages WHERE "
                           "first_id <= ?1), 0), coalesce((SELECT first_id FROM pages WHERE "
                           "last_us >= ?2 ORDER BY first_id LIMIT 1), 0))",
                           -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)query->after);
    sqlite3_bind_int64(stmt, 2, query->from_us);
    int step = sqlite3_step(stmt);
    *first = step == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    if (step != SQLITE_ROW)
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW ? 0 : -1;
}

/* Reads the page of the current row of `pages` and packs what the query wants into `rows`:
 * 1 when the query has its entries (one more than asked for is there), 0 to go on, -1. */
static int query_page(struct page_reader *reader, struct sqlite_log *log, sqlite3_stmt *pages,
                      const struct epcs_decision_query *query, const uint64_t *wanted,
                      msgpack_packer *rows, size_t *count, uint64_t *last_id)
{
    int64_t first_id = sqlite3_column_int64(pages, 3), body_at = sqlite3_column_int64(pages, 1);
    uint64_t bits[EPCS_SUMMARY_WORDS] = {0};
    if (wanted != NULL && log != NULL &&
        epcs_summary_table_excludes(&log->summaries, first_id, body_at, wanted))
        return 0;
    if (reader_open_page(reader, pages, 1) != 0)
        return -1;
    msgpack_object entry;
    int next;
    while ((next = reader_next(reader, &entry)) == 1) {
        if (wanted != NULL)
            epcs_summary_add_entry(bits, &entry);
        if (!epcs_entry_matches(query, &entry))
            continue;
        /* One entry more than asked tells whether there is a next page. */
        if (*count == query->limit)
            return 1;
        if (pack_entry(reader, rows, &entry) != 0)
            return -1;
        *last_id = epcs_entry_id(&entry);
        (*count)++;
    }
    if (next < 0)
        return -1;
    if (wanted != NULL && log != NULL)
        epcs_summary_table_store(&log->summaries, first_id, body_at, bits);
    return 0;
}

static int sqlite_log_query(struct epcs_decision_log *handle, struct epcs_decision_reader *source,
                            const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                            size_t err_size)
{
    struct sqlite_log *log = handle != NULL ? epcs_log_backend(handle) : NULL;
    sqlite3 *db = reader_db(source);
    int64_t first;
    if (first_page(db, query, &first, err, err_size) != 0)
        return -1;
    struct page_reader reader;
    if (reader_init(&reader, db, err, err_size) != 0)
        return -1;
    sqlite3_stmt *pages = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT first_us, body_at, body_len, first_id FROM pages WHERE "
                           "first_id >= ? ORDER BY first_id",
                           -1, &pages, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        reader_close(&reader);
        return -1;
    }
    sqlite3_bind_int64(pages, 1, first);
    uint64_t wanted[EPCS_SUMMARY_WORDS];
    int filtered = epcs_summary_wanted(query, wanted);
    struct epcs_buf rows = {0};
    msgpack_packer row_packer;
    msgpack_packer_init(&row_packer, &rows, epcs_buf_msgpack_write);
    size_t count = 0;
    uint64_t last_id = 0;
    int more = 0, step, rc = 0;
    while (!more && rc == 0 && (step = sqlite3_step(pages)) == SQLITE_ROW) {
        if (query->to_us &&
            sqlite3_column_int64(pages, 0) >= query->to_us + EPCS_PAGE_TIME_SLACK_US)
            break;
        int got = query_page(&reader, log, pages, query, filtered ? wanted : NULL, &row_packer,
                             &count, &last_id);
        more = got == 1;
        rc = got < 0 ? -1 : 0;
    }
    if (rc == 0 && !more && step != SQLITE_ROW && step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    sqlite3_finalize(pages);
    reader_close(&reader);
    if (rc == 0)
        epcs_pack_listing(pk, &rows, count, more, last_id);
    epcs_buf_free(&rows);
    return rc;
}

static int sqlite_log_get(struct epcs_decision_reader *source, uint64_t id, msgpack_packer *pk,
                          struct epcs_buf *request, char *ruleset, size_t ruleset_size, char *date,
                          char *err, size_t err_size)
{
    sqlite3 *db = reader_db(source);
    struct page_reader reader;
    if (reader_init(&reader, db, err, err_size) != 0)
        return -1;
    sqlite3_stmt *page = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT body_at, body_len FROM pages WHERE first_id <= ?1 AND "
                           "last_id >= ?1 "
                           "AND first_id = (SELECT max(first_id) FROM pages WHERE first_id <= ?1)",
                           -1, &page, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        reader_close(&reader);
        return -1;
    }
    sqlite3_bind_int64(page, 1, (sqlite3_int64)id);
    int step = sqlite3_step(page), rc = 1;
    if (step == SQLITE_ROW) {
        msgpack_object entry = {.type = MSGPACK_OBJECT_NIL};
        int next = reader_open_page(&reader, page, 0) == 0 ? 1 : -1;
        while (next == 1 && (next = reader_next(&reader, &entry)) == 1 &&
               epcs_entry_id(&entry) != id)
            ;
        rc = next < 0 ? -1 : next == 0 ? 1 : pack_entry(&reader, pk, &entry);
        /* Only a found entry is read below. */
        if (rc == 0)
            rc = epcs_entry_details(&entry, request, ruleset, ruleset_size, date);
    } else if (step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    sqlite3_finalize(page);
    reader_close(&reader);
    return rc;
}

static int sqlite_log_recent(struct epcs_decision_reader *source, size_t limit,
                             int (*fn)(void *ctx, const void *request, size_t len,
                                       const char *date),
                             void *ctx, char *err, size_t err_size)
{
    sqlite3 *db = reader_db(source);
    struct page_reader reader;
    if (reader_init(&reader, db, err, err_size) != 0)
        return -1;
    sqlite3_stmt *pages = NULL;
    if (sqlite3_prepare_v2(db, "SELECT body_at, body_len FROM pages ORDER BY first_id DESC", -1,
                           &pages, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        reader_close(&reader);
        return -1;
    }
    msgpack_object *entries = NULL;
    size_t given = 0, capacity = 0;
    int step = SQLITE_DONE, rc = 0;
    while (rc == 0 && given < limit && (step = sqlite3_step(pages)) == SQLITE_ROW) {
        if (reader_open_page(&reader, pages, 0) != 0) {
            rc = -1;
            break;
        }
        /* Entries are stored oldest first; newest first means the page backwards. */
        size_t count = 0;
        msgpack_object entry;
        int next;
        while ((next = reader_next(&reader, &entry)) == 1) {
            if (count == capacity) {
                size_t grown_capacity = capacity ? capacity * 2 : EPCS_PAGE_ENTRIES;
                msgpack_object *grown = realloc(entries, grown_capacity * sizeof(*grown));
                if (grown == NULL) {
                    next = -1;
                    snprintf(err, err_size, "out of memory");
                    break;
                }
                entries = grown;
                capacity = grown_capacity;
            }
            entries[count++] = entry;
        }
        if (next < 0) {
            rc = -1;
            break;
        }
        for (size_t i = count; rc == 0 && i-- > 0 && given < limit;) {
            const void *request;
            size_t len;
            char date[11];
            if (epcs_entry_check(&entries[i], &request, &len, date) != 0)
                continue;
            if (fn(ctx, request, len, date) != 0) {
                snprintf(err, err_size, "a logged check is unreadable");
                rc = -1;
            }
            given++;
        }
    }
    if (rc == 0 && step != SQLITE_ROW && step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        rc = -1;
    }
    free(entries);
    sqlite3_finalize(pages);
    reader_close(&reader);
    return rc;
}

/* ---- readers for the thread pool ---------------------------------------------------------- */

static struct epcs_decision_reader *sqlite_log_reader_acquire(struct epcs_decision_log *handle,
                                                              char *err, size_t err_size)
{
    struct sqlite_log *log = epcs_log_backend(handle);
    return reader_of(epcs_sqlite_pool_acquire(&log->readers, err, err_size));
}

static void sqlite_log_reader_release(struct epcs_decision_log *handle,
                                      struct epcs_decision_reader *source)
{
    struct sqlite_log *log = epcs_log_backend(handle);
    epcs_sqlite_pool_release(&log->readers, reader_db(source));
}

const struct epcs_decision_log_ops epcs_decision_log_sqlite = {
    .name = "sqlite",
    .open = sqlite_log_open,
    .close = sqlite_log_close,
    EPCS_LOG_CORE_OPS,
    .reader_open = sqlite_log_reader_open,
    .reader_close = sqlite_log_reader_close,
    .reader_acquire = sqlite_log_reader_acquire,
    .reader_release = sqlite_log_reader_release,
    .query = sqlite_log_query,
    .get = sqlite_log_get,
    .recent = sqlite_log_recent,
};
