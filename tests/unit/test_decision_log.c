#include <dirent.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "dates.h"
#include "decision_log.h"
#include "journal.h"
#include "pg_log.h"
#include "pg_scratch.h"
#include "store.h"
#include "testing.h"

static char scratch[] = "/tmp/epcs-test-decisions-XXXXXX";
/* The backend's place: the scratch directory for SQLite, a schema's connection string for
 * PostgreSQL. The journals are in the scratch directory for both. */
static char where[700];

/*
 * Every test runs against each backend of the decision log, through its ops. What a test must
 * see or do beneath the interface (count what is on disk, hold the store's write lock, find a
 * page) is the row's, in that backend's terms; a second backend is one more row.
 */
struct backend {
    const struct epcs_decision_log_ops *ops;
    /** Makes a fresh place for the backend into `where`. 0, or -1. */
    int (*prepare)(void);
    /** The entries stored, of every run; -1 when they cannot be counted. */
    long long (*count_entries)(const char *where);
    /** The rows of one of the backend's tables; -1 when they cannot be counted. */
    long long (*count_rows)(const char *where, const char *table);
    /** Holds the write lock from another connection, as a busy peer would. NULL: failed. */
    void *(*hold_writes)(const char *where);
    /** Gives the lock back. 0, or -1 when the hold had failed. */
    int (*release_writes)(void *hold);
    /** Makes the stored page starting at `first_id` unreadable; NULL when it cannot. */
    void *(*spoil_page)(const char *where, uint64_t first_id);
    /** Makes it readable again. 0, or -1. */
    int (*mend_page)(void *spoiled);
    /** The files the backend keeps in the data directory, NULL-terminated. */
    const char *const *files;
    /** The tests that look beneath the interface in this backend's terms. */
    void (*own_tests)(void);
};

static const struct backend *backend;

static sqlite3 *sqlite_reader(const char *dir)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/decisions.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static long long sqlite_count(const char *dir, const char *sql)
{
    sqlite3 *reader = sqlite_reader(dir);
    sqlite3_stmt *stmt = NULL;
    long long count = -1;
    if (reader != NULL && sqlite3_prepare_v2(reader, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        count = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(reader);
    return count;
}

static long long sqlite_count_entries(const char *dir)
{
    return sqlite_count(dir, "SELECT coalesce(sum(count), 0) FROM pages");
}

static long long sqlite_count_rows(const char *dir, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    return sqlite_count(dir, sql);
}

static void *sqlite_hold_writes(const char *dir)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/decisions.db", dir);
    sqlite3 *blocker = NULL;
    if (sqlite3_open(path, &blocker) != SQLITE_OK ||
        sqlite3_exec(blocker, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(blocker);
        return NULL;
    }
    return blocker;
}

static int sqlite_release_writes(void *hold)
{
    if (hold == NULL)
        return -1;
    int rc = sqlite3_exec(hold, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    sqlite3_close(hold);
    return rc;
}

/* Where the page starting at `first_id` lies in decisions.pages (*at -1: nowhere). */
static void sqlite_page_place(const char *dir, uint64_t first_id, off_t *at, size_t *len)
{
    sqlite3 *reader = sqlite_reader(dir);
    sqlite3_stmt *stmt = NULL;
    *at = -1;
    *len = 0;
    if (reader != NULL &&
        sqlite3_prepare_v2(reader, "SELECT body_at, body_len FROM pages WHERE first_id = ?", -1,
                           &stmt, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)first_id) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        *at = (off_t)sqlite3_column_int64(stmt, 0);
        *len = (size_t)sqlite3_column_int64(stmt, 1);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(reader);
}

/* A page's bytes in decisions.pages, kept while they are written over. */
struct spoiled_page {
    int fd;
    off_t at;
    size_t len;
    char kept[4096];
};

static void *sqlite_spoil_page(const char *dir, uint64_t first_id)
{
    struct spoiled_page *spoiled = calloc(1, sizeof(*spoiled));
    sqlite_page_place(dir, first_id, &spoiled->at, &spoiled->len);
    EXPECT(spoiled->at >= 0 && spoiled->len > 0 && spoiled->len < 4096);
    char junk[4096];
    char pages[300];
    snprintf(pages, sizeof(pages), "%s/decisions.pages", dir);
    spoiled->fd = open(pages, O_RDWR);
    EXPECT(spoiled->fd >= 0);
    EXPECT(pread(spoiled->fd, spoiled->kept, spoiled->len, spoiled->at) == (ssize_t)spoiled->len);
    /* 0xc1 is no msgpack value. */
    memset(junk, 0xc1, spoiled->len);
    EXPECT(pwrite(spoiled->fd, junk, spoiled->len, spoiled->at) == (ssize_t)spoiled->len);
    return spoiled;
}

static int sqlite_mend_page(void *hold)
{
    struct spoiled_page *spoiled = hold;
    int rc = pwrite(spoiled->fd, spoiled->kept, spoiled->len, spoiled->at) == (ssize_t)spoiled->len
                 ? 0
                 : -1;
    close(spoiled->fd);
    free(spoiled);
    return rc;
}

static int sqlite_prepare(void)
{
    snprintf(where, sizeof(where), "%s", scratch);
    return 0;
}

static const char *const sqlite_files[] = {"decisions.db", "decisions.db-wal", "decisions.db-shm",
                                           "decisions.pages", NULL};

/* ---- the PostgreSQL row -------------------------------------------------------------------- */

/*
 * The log connects as a role of its own, so that a test can take the database away from it
 * alone (NOLOGIN and its sessions ended) without touching the other tests of the run.
 */
#define PG_LOG_ROLE "epcs_test_decision_log"
#define PG_SCHEMA "test_decision_log"
/* The schema's connection string as the superuser the scratch cluster has, for the checks. */
static char pg_admin[700];

static int pg_prepare(void)
{
    if (epcs_test_pg_schema(PG_SCHEMA, pg_admin, sizeof(pg_admin)) != 0 ||
        epcs_test_pg_exec(pg_admin,
                          "DO $$ BEGIN CREATE ROLE " PG_LOG_ROLE " LOGIN;"
                          " EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
                          "ALTER ROLE " PG_LOG_ROLE " LOGIN;"
                          "GRANT ALL ON SCHEMA " PG_SCHEMA " TO " PG_LOG_ROLE,
                          NULL) != 0)
        return -1;
    /* The same place, as the log's role. */
    const char *user = strstr(pg_admin, "user=epcs");
    if (user == NULL || (user[9] != '&' && user[9] != '\0'))
        return -1;
    snprintf(where, sizeof(where), "%.*suser=" PG_LOG_ROLE "%s", (int)(user - pg_admin), pg_admin,
             user + 9);
    return 0;
}

/* The first column of the first row of `sql` (one text parameter or none), -1 on failure. */
static long long pg_number(const char *uri, const char *sql, const char *param)
{
    PGconn *conn = PQconnectdb(uri);
    const char *values[] = {param};
    PGresult *result =
        PQstatus(conn) == CONNECTION_OK
            ? PQexecParams(conn, sql, param != NULL ? 1 : 0, NULL, values, NULL, NULL, 0)
            : NULL;
    long long value = -1;
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1)
        value = strtoll(PQgetvalue(result, 0, 0), NULL, 10);
    else
        fprintf(stderr, "%s: %s", sql, conn != NULL ? PQerrorMessage(conn) : "no connection");
    PQclear(result);
    PQfinish(conn);
    return value;
}

static long long pg_count_entries(const char *uri)
{
    (void)uri;
    return pg_number(pg_admin,
                     "SELECT (SELECT coalesce(sum(count), 0) FROM epcs_decision_pages) +"
                     " (SELECT count(*) FROM epcs_decision_entries)",
                     NULL);
}

static long long pg_count_rows(const char *uri, const char *table)
{
    (void)uri;
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM epcs_decision_%s", table);
    return pg_number(pg_admin, sql, NULL);
}

/* A table lock that lets readers through and keeps every INSERT waiting. */
static void *pg_hold_writes(const char *uri)
{
    (void)uri;
    PGconn *conn = PQconnectdb(pg_admin);
    PGresult *result = PQstatus(conn) == CONNECTION_OK
                           ? PQexec(conn, "BEGIN; LOCK TABLE epcs_decision_pages IN EXCLUSIVE MODE")
                           : NULL;
    int held = PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    if (!held) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static int pg_release_writes(void *hold)
{
    if (hold == NULL)
        return -1;
    PGresult *result = PQexec(hold, "COMMIT");
    int rc = PQresultStatus(result) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(result);
    PQfinish(hold);
    return rc;
}

/* Bytes that are no msgpack value (0xc1) ahead of the page's own. */
static char spoiled_pg_page[24];

static void *pg_spoil_page(const char *uri, uint64_t first_id)
{
    (void)uri;
    snprintf(spoiled_pg_page, sizeof(spoiled_pg_page), "%llu", (unsigned long long)first_id);
    return epcs_test_pg_exec(pg_admin,
                             "UPDATE epcs_decision_pages SET body = '\\xc1c1c1c1'::bytea || body"
                             " WHERE first_id = $1::bigint",
                             spoiled_pg_page) == 0 &&
                   pg_number(pg_admin,
                             "SELECT count(*) FROM epcs_decision_pages WHERE first_id = $1::bigint"
                             " AND get_byte(body, 0) = 193",
                             spoiled_pg_page) == 1
               ? spoiled_pg_page
               : NULL;
}

static int pg_mend_page(void *spoiled)
{
    return epcs_test_pg_exec(pg_admin,
                             "UPDATE epcs_decision_pages SET body = substring(body FROM 5)"
                             " WHERE first_id = $1::bigint",
                             spoiled);
}

static const char *const pg_files[] = {"decisions.lock", NULL};

static void sqlite_tests(void);
static void pg_tests(void);

static const struct backend backends[] = {
    {.ops = &epcs_decision_log_sqlite,
     .prepare = sqlite_prepare,
     .count_entries = sqlite_count_entries,
     .count_rows = sqlite_count_rows,
     .hold_writes = sqlite_hold_writes,
     .release_writes = sqlite_release_writes,
     .spoil_page = sqlite_spoil_page,
     .mend_page = sqlite_mend_page,
     .files = sqlite_files,
     .own_tests = sqlite_tests},
    {.ops = &epcs_decision_log_postgresql,
     .prepare = pg_prepare,
     .count_entries = pg_count_entries,
     .count_rows = pg_count_rows,
     .hold_writes = pg_hold_writes,
     .release_writes = pg_release_writes,
     .spoil_page = pg_spoil_page,
     .mend_page = pg_mend_page,
     .files = pg_files,
     .own_tests = pg_tests},
};

static struct epcs_decision_log *open_log(enum epcs_audit_mode mode, size_t queue_limit, char *err,
                                          size_t err_size)
{
    return backend->ops->open(where, scratch, mode, queue_limit, err, err_size);
}

/* A decision as the check path hands it over, with its check and verdict msgpack-encoded. */
struct sample {
    msgpack_sbuffer check_bytes;
    msgpack_sbuffer verdict_bytes;
    msgpack_zone zone;
    msgpack_object check;
    struct epcs_decision decision;
};

static void pack_str(msgpack_packer *pk, const char *text)
{
    msgpack_pack_str(pk, strlen(text));
    msgpack_pack_str_body(pk, text, strlen(text));
}

static void make_sample(struct sample *sample, struct epcs_decision_log *log, const char *area)
{
    msgpack_sbuffer_init(&sample->check_bytes);
    msgpack_sbuffer_init(&sample->verdict_bytes);
    msgpack_zone_init(&sample->zone, 1024);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sample->check_bytes, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "election");
    pack_str(&pk, "na22");
    pack_str(&pk, "area");
    pack_str(&pk, area);
    size_t offset = 0;
    msgpack_unpack(sample->check_bytes.data, sample->check_bytes.size, &offset, &sample->zone,
                   &sample->check);
    /* As the check path packs it: the decision id is the last entry. */
    uint64_t id = epcs_decision_log_next_id(log, NULL);
    msgpack_packer_init(&pk, &sample->verdict_bytes, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "verdict");
    pack_str(&pk, "prohibited");
    pack_str(&pk, "article");
    pack_str(&pk, "82-8(1)");
    pack_str(&pk, "decision");
    msgpack_pack_uint64(&pk, id);
    int32_t date;
    epcs_date_parse("2024-02-15", 10, &date);
    sample->decision = (struct epcs_decision){.id = id,
                                              .election = "na22",
                                              .date = date,
                                              .area = area,
                                              .area_index = 0,
                                              .verdict = EPCS_VERDICT_PROHIBITED,
                                              .ruleset = "rs-0123456789abcdef",
                                              .check = &sample->check,
                                              .verdict_msgpack = sample->verdict_bytes.data,
                                              .verdict_len = sample->verdict_bytes.size,
                                              .latency_us = 42};
}

static void free_sample(struct sample *sample)
{
    msgpack_sbuffer_destroy(&sample->check_bytes);
    msgpack_sbuffer_destroy(&sample->verdict_bytes);
    msgpack_zone_destroy(&sample->zone);
}

static int wait_committed(struct epcs_decision_log *log, uint64_t ticket)
{
    for (int i = 0; i < 500 && epcs_decision_log_committed(log) < ticket; i++)
        usleep(10 * 1000);
    return epcs_decision_log_committed(log) >= ticket;
}

/* Decisions and events on disk, of every run. */
static long long count_entries(void)
{
    return backend->count_entries(where);
}

/* The ids GET /v1/decisions would list for `query`, following `next` to the end. */
static size_t list_ids(struct epcs_decision_query query, uint64_t *ids, size_t capacity)
{
    char err[256];
    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, sizeof(err));
    struct epcs_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    size_t count = 0;
    for (;;) {
        epcs_buf_reset(&buf);
        msgpack_zone_clear(&zone);
        msgpack_object result;
        size_t offset = 0;
        if (reader == NULL ||
            backend->ops->query(NULL, reader, &query, &pk, err, sizeof(err)) != 0 ||
            msgpack_unpack(buf.data, buf.len, &offset, &zone, &result) != MSGPACK_UNPACK_SUCCESS)
            break;
        const msgpack_object *list = &result.via.map.ptr[0].val, *next = &result.via.map.ptr[1].val;
        for (uint32_t i = 0; i < list->via.array.size && count < capacity; i++)
            ids[count++] = list->via.array.ptr[i].via.map.ptr[0].val.via.u64;
        if (next->type == MSGPACK_OBJECT_NIL)
            break;
        query.after = next->via.u64;
    }
    epcs_buf_free(&buf);
    msgpack_zone_destroy(&zone);
    backend->ops->reader_close(reader);
    return count;
}

static long long count_rows_of(const char *table)
{
    return backend->count_rows(where, table);
}

static void test_records_and_queries(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample samples[2];
    make_sample(&samples[0], log, "deepfake");
    make_sample(&samples[1], log, "advertising");
    /* Ids carry this run in their high half and count up in the low half. */
    EXPECT_INT(samples[1].decision.id, samples[0].decision.id + 1);
    EXPECT_INT(samples[0].decision.id >> 32, 1);
    struct epcs_decision both[2] = {samples[0].decision, samples[1].decision};
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, both, 2, "naver", &ticket), 0);
    EXPECT_INT(ticket, 2);
    EXPECT(wait_committed(log, ticket));
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    EXPECT_INT(stats.written, 2);
    /* Both answers differ only in their decision ids: stored once. */
    EXPECT_INT(count_rows_of("answers"), 1);
    EXPECT_INT(stats.queued, 0);
    EXPECT_INT(stats.failed, 0);

    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, sizeof(err));
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    struct epcs_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    struct epcs_decision_query query = {.area = "advertising", .limit = 10};
    EXPECT_INT(backend->ops->query(NULL, reader, &query, &pk, err, sizeof(err)), 0);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object result;
    size_t offset = 0;
    EXPECT_INT(msgpack_unpack(buf.data, buf.len, &offset, &zone, &result), MSGPACK_UNPACK_SUCCESS);
    struct epcs_buf json = {0};
    epcs_json_encode(&result, &json);
    epcs_buf_append(&json, "", 1);
    char expected[512];
    snprintf(expected, sizeof(expected),
             "\"partner\":\"naver\",\"election\":\"na22\",\"date\":\"2024-02-15\","
             "\"area\":\"advertising\",\"verdict\":\"prohibited\",\"article\":\"82-8(1)\","
             "\"ruleset\":\"rs-0123456789abcdef\",\"latency_us\":42,\"request\":{\"election\":"
             "\"na22\",\"area\":\"advertising\"},\"answer\":{\"verdict\":\"prohibited\","
             "\"article\":\"82-8(1)\",\"decision\":%llu}}]",
             (unsigned long long)samples[1].decision.id);
    EXPECT_CONTAINS(json.data, expected);
    EXPECT_CONTAINS(json.data, "\"next\":null");
    EXPECT(strstr(json.data, "deepfake") == NULL);

    /* A page of one says where the next page starts. */
    epcs_buf_reset(&buf);
    query = (struct epcs_decision_query){.limit = 1};
    EXPECT_INT(backend->ops->query(NULL, reader, &query, &pk, err, sizeof(err)), 0);
    offset = 0;
    msgpack_unpack(buf.data, buf.len, &offset, &zone, &result);
    epcs_buf_reset(&json);
    epcs_json_encode(&result, &json);
    epcs_buf_append(&json, "", 1);
    char next[64];
    snprintf(next, sizeof(next), "\"next\":%llu}", (unsigned long long)samples[0].decision.id);
    EXPECT_CONTAINS(json.data, next);

    epcs_buf_reset(&buf);
    char ruleset[64] = "", date[11] = "";
    EXPECT_INT(backend->ops->get(reader, samples[1].decision.id, &pk, NULL, ruleset,
                                 sizeof(ruleset), date, err, sizeof(err)),
               0);
    EXPECT_STR(ruleset, "rs-0123456789abcdef");
    EXPECT_STR(date, "2024-02-15");
    EXPECT_INT(backend->ops->get(reader, 12345, &pk, NULL, ruleset, sizeof(ruleset), date, err,
                                 sizeof(err)),
               1);
    epcs_buf_free(&json);
    epcs_buf_free(&buf);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&out);
    backend->ops->reader_close(reader);
    free_sample(&samples[0]);
    free_sample(&samples[1]);
    epcs_decision_log_close(log);
}

/* While another connection holds the write lock, decisions queue up to the limit, then are
 * refused; once the lock goes, every accepted one is written. */
static void test_full_queue_refuses(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_ASYNC, 3, err, sizeof(err));
    EXPECT(log != NULL);
    /* A second run: the ids of its decisions can never collide with the first's. */
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    EXPECT_INT(sample.decision.id >> 32, 2);
    long long before = count_entries();

    void *blocker = backend->hold_writes(where);
    EXPECT(blocker != NULL);
    uint64_t ticket;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &sample.decision, 1, "kakao", &ticket), 0);
    /* Let the writer take that one and wait on the lock. */
    usleep(200 * 1000);
    /* The one the writer holds still counts: memory is what the limit bounds. */
    struct epcs_decision three[3] = {sample.decision, sample.decision, sample.decision};
    for (int i = 0; i < 3; i++)
        three[i].id = epcs_decision_log_next_id(log, NULL);
    EXPECT_INT(epcs_decision_log_append(log, NULL, three, 2, "kakao", &ticket), 0);
    EXPECT_INT(epcs_decision_log_append(log, NULL, three + 2, 1, "kakao", &ticket), -1);
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    EXPECT_INT(stats.queued, 3);
    EXPECT_INT(stats.refused, 1);
    EXPECT_INT(backend->release_writes(blocker), 0);
    /* Closing commits what is queued. */
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries() - before, 3);
    uint64_t ids[8];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "kakao", .limit = 2}, ids, 8), 3);
    free_sample(&sample);
}

static int count_recent(void *ctx, const void *request, size_t len, const char *date)
{
    (void)request;
    (void)len;
    EXPECT_STR(date, "2024-02-15");
    (*(size_t *)ctx)++;
    return 0;
}

/*
 * Entries are stored in id order: an id a worker took but has not handed over holds back
 * everything after it (here an event), and case events sit among the decisions.
 */
static void test_id_order_and_events(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct epcs_decision_stage stage = {0};
    EXPECT_INT(epcs_decision_log_attach(log, &stage, err, sizeof(err)), 0);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    sample.decision.id = epcs_decision_log_next_id(log, &stage);
    uint64_t event = 0;
    const char detail[] = "\x81\xa6status\xa4open"; /* {"status": "open"} */
    uint64_t event_ticket = 0;
    EXPECT_INT(epcs_decision_log_event(log, "naver", "request_sent", "na22", 7, detail,
                                       sizeof(detail) - 1, &event, &event_ticket),
               0);
    EXPECT_INT(event_ticket, 1);
    EXPECT(event > sample.decision.id);
    usleep(200 * 1000);
    uint64_t ids[8];
    struct epcs_decision_query all = {.after = sample.decision.id - 1, .limit = 10};
    EXPECT_INT(list_ids(all, ids, 8), 0);
    /* Held back behind the decision on its way: not committed. */
    EXPECT_INT(epcs_decision_log_committed(log), 0);
    EXPECT_INT(epcs_decision_log_stage(log, &stage, &sample.decision, 1, "kakao"), 0);
    epcs_decision_log_flush(log, &stage);
    EXPECT_INT(epcs_decision_log_wait(log, event_ticket + 1), 0);
    struct epcs_decision_log_stats stats;
    for (int i = 0; i < 500; i++) {
        epcs_decision_log_stats(log, &stats);
        if (stats.queued == 0)
            break;
        usleep(10 * 1000);
    }
    EXPECT_INT(list_ids(all, ids, 8), 2);
    EXPECT_INT(ids[0], sample.decision.id);
    EXPECT_INT(ids[1], event);
    /* An area or verdict filter is about checks: events drop out. */
    all.verdict = "prohibited";
    EXPECT_INT(list_ids(all, ids, 8), 1);

    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, sizeof(err));
    struct epcs_buf buf = {0}, json = {0}, request = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    EXPECT_INT(backend->ops->get(reader, event, &pk, NULL, NULL, 0, NULL, err, sizeof(err)), 0);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object shown;
    size_t offset = 0;
    EXPECT_INT(msgpack_unpack(buf.data, buf.len, &offset, &zone, &shown), MSGPACK_UNPACK_SUCCESS);
    epcs_json_encode(&shown, &json);
    epcs_buf_append(&json, "", 1);
    EXPECT_CONTAINS(json.data, "\"partner\":\"naver\",\"election\":\"na22\",\"event\":"
                               "\"request_sent\",\"subject\":7,\"detail\":{\"status\":\"open\"}}");
    /* An event has no check to replay. */
    char ruleset[64], date[11];
    EXPECT_INT(backend->ops->get(reader, event, &pk, &request, ruleset, sizeof(ruleset), date, err,
                                 sizeof(err)),
               2);
    epcs_buf_free(&buf);
    epcs_buf_free(&json);
    epcs_buf_free(&request);
    msgpack_zone_destroy(&zone);
    backend->ops->reader_close(reader);
    epcs_decision_log_detach(log, &stage);
    epcs_decision_log_close(log);
    free_sample(&sample);
}

/* More decisions than a page holds: listing pages through them all in order, and the newest
 * come first for impact analysis. */
static void test_many_pages(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 5000, err, sizeof(err));
    EXPECT(log != NULL);
    enum { MANY = 1300 };
    struct sample sample;
    make_sample(&sample, log, "advertising");
    static struct epcs_decision many[MANY];
    for (size_t i = 0; i < MANY; i++) {
        many[i] = sample.decision;
        many[i].id = epcs_decision_log_next_id(log, NULL);
    }
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, many, MANY, "google", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    EXPECT(count_rows_of("pages WHERE count > 0") >= 3);
    static uint64_t ids[MANY + 1];
    EXPECT_INT(
        list_ids((struct epcs_decision_query){.partner = "google", .limit = 500}, ids, MANY + 1),
        MANY);
    int ordered = 1;
    for (size_t i = 0; i < MANY; i++)
        ordered &= ids[i] == many[i].id;
    EXPECT(ordered);
    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, sizeof(err));
    size_t seen = 0;
    EXPECT_INT(backend->ops->recent(reader, 600, count_recent, &seen, err, sizeof(err)), 0);
    EXPECT_INT(seen, 600);
    backend->ops->reader_close(reader);
    epcs_decision_log_close(log);
    free_sample(&sample);
}

/* The ids a query lists on one page, with `log`'s page summaries (NULL: none); -1 on error. */
static int query_ids(struct epcs_decision_log *log, struct epcs_decision_query query, uint64_t *ids,
                     size_t capacity, char *err, size_t err_size)
{
    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, err_size);
    struct epcs_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object result;
    size_t offset = 0;
    int count = -1;
    if (reader != NULL && backend->ops->query(log, reader, &query, &pk, err, err_size) == 0 &&
        msgpack_unpack(buf.data, buf.len, &offset, &zone, &result) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *list = &result.via.map.ptr[0].val;
        for (count = 0; (size_t)count < list->via.array.size && (size_t)count < capacity; count++)
            ids[count] = list->via.array.ptr[count].via.map.ptr[0].val.via.u64;
    }
    epcs_buf_free(&buf);
    msgpack_zone_destroy(&zone);
    backend->ops->reader_close(reader);
    return count;
}

/* A filtered query skips, without reading them, the pages an earlier query read whole (or,
 * where pages are stored with their summaries, the writer summarised) and found none of its
 * values in; it still reads every page that may hold one. A page made unreadable after it was
 * summarised shows which pages are read. */
static void test_filtered_queries_skip_pages(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample samples[3];
    const char *partners[] = {"alpha", "beta", "alpha"};
    const char *areas[] = {"deepfake", "advertising", "deepfake"};
    for (size_t i = 0; i < 3; i++) {
        /* One commit each: three pages. */
        uint64_t ticket = 0;
        make_sample(&samples[i], log, areas[i]);
        EXPECT_INT(
            epcs_decision_log_append(log, NULL, &samples[i].decision, 1, partners[i], &ticket), 0);
        EXPECT(wait_committed(log, ticket));
    }
    uint64_t a = samples[0].decision.id, b = samples[1].decision.id, c = samples[2].decision.id;
    uint64_t ids[4];
    struct epcs_decision_query alpha = {.partner = "alpha", .after = a - 1, .limit = 10};
    EXPECT_INT(query_ids(log, alpha, ids, 4, err, sizeof(err)), 2);
    EXPECT(ids[0] == a && ids[1] == c);
    void *spoiled = backend->spoil_page(where, b);
    EXPECT(spoiled != NULL);

    memset(ids, 0, sizeof(ids));
    EXPECT_INT(query_ids(log, alpha, ids, 4, err, sizeof(err)), 2);
    EXPECT(ids[0] == a && ids[1] == c);
    struct epcs_decision_query deepfake = {.area = "deepfake", .after = a - 1, .limit = 10};
    EXPECT_INT(query_ids(log, deepfake, ids, 4, err, sizeof(err)), 2);
    /* Beta's page may hold what these ask for: it is read, and is unreadable. */
    struct epcs_decision_query beta = {.partner = "beta", .after = a - 1, .limit = 10};
    EXPECT_INT(query_ids(log, beta, ids, 4, err, sizeof(err)), -1);
    EXPECT_CONTAINS(err, "a page of the decision log is unreadable");
    struct epcs_decision_query alpha_na22 = {
        .partner = "alpha", .election = "na22", .after = a - 1, .limit = 10};
    EXPECT_INT(query_ids(log, alpha_na22, ids, 4, err, sizeof(err)), 2);
    /* Unfiltered, or without the log's summaries, every page is read. */
    struct epcs_decision_query all = {.after = a - 1, .limit = 10};
    EXPECT_INT(query_ids(log, all, ids, 4, err, sizeof(err)), -1);
    EXPECT_INT(query_ids(NULL, alpha, ids, 4, err, sizeof(err)), -1);

    EXPECT_INT(backend->mend_page(spoiled), 0);
    EXPECT_INT(query_ids(log, beta, ids, 4, err, sizeof(err)), 1);
    EXPECT(ids[0] == b);
    for (size_t i = 0; i < 3; i++)
        free_sample(&samples[i]);
    epcs_decision_log_close(log);
}

/* Texts long enough for msgpack's 8- and 16-bit string lengths come back as they went in. */
static void test_long_texts(void)
{
    char err[256] = "", partner8[41], partner16[301], ruleset[71], got[128] = "";
    memset(partner8, 'p', 40);
    partner8[40] = '\0';
    memset(partner16, 'q', 300);
    partner16[300] = '\0';
    memset(ruleset, 'r', 70);
    ruleset[70] = '\0';
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    sample.decision.ruleset = ruleset;
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &sample.decision, 1, partner8, &ticket), 0);
    struct epcs_decision second = sample.decision;
    second.id = epcs_decision_log_next_id(log, NULL);
    EXPECT_INT(epcs_decision_log_append(log, NULL, &second, 1, partner16, &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    uint64_t ids[4];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = partner8, .limit = 10}, ids, 4), 1);
    EXPECT_INT(ids[0], sample.decision.id);
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = partner16, .limit = 10}, ids, 4),
               1);
    EXPECT_INT(ids[0], second.id);
    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, sizeof(err));
    struct epcs_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    EXPECT_INT(
        backend->ops->get(reader, second.id, &pk, NULL, got, sizeof(got), NULL, err, sizeof(err)),
        0);
    EXPECT_STR(got, ruleset);
    epcs_buf_free(&buf);
    backend->ops->reader_close(reader);
    epcs_decision_log_close(log);
    free_sample(&sample);
}

/* Copies the file at `from` to `to`; 0 or -1. */
static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char block[4096];
    size_t n;
    int rc = in != NULL && out != NULL ? 0 : -1;
    while (rc == 0 && (n = fread(block, 1, sizeof(block), in)) > 0)
        rc = fwrite(block, 1, n, out) == n ? 0 : -1;
    if (in != NULL)
        fclose(in);
    if (out != NULL && fclose(out) != 0)
        rc = -1;
    return rc;
}

static long long file_size(const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", scratch, name);
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The page file and its index agree again after the process stopped between the two writes
 * (bytes no page row points at: cut off) or a power cut lost the file's tail (rows pointing past
 * its end: dropped), and a page file no database indexes is refused. */
static void test_page_file_recovery(void)
{
    char err[256] = "", path[300];
    snprintf(path, sizeof(path), "%s/decisions.pages", scratch);
    long long entries = count_entries(), size = file_size("decisions.pages");
    EXPECT(entries > 0);
    EXPECT(size > 0);

    /* Bytes of a transaction that never committed. */
    FILE *pages = fopen(path, "ab");
    EXPECT(pages != NULL);
    fputs("bytes of a page whose transaction never committed", pages);
    fclose(pages);
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    EXPECT_INT(file_size("decisions.pages"), size);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &sample.decision, 1, "daum", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), entries + 1);
    uint64_t ids[4];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "daum", .limit = 10}, ids, 4), 1);
    EXPECT_INT(ids[0], sample.decision.id);
    free_sample(&sample);

    /* One writer per page file: a second log on the same directory is refused. */
    log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    EXPECT(open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "decisions.pages: another epcsd is using this data directory");
    epcs_decision_log_close(log);

    /* A tail lost to a power cut: the last page (daum's decision) is gone. */
    EXPECT_INT(truncate(path, (off_t)size + 5), 0);
    log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), entries);
    EXPECT_INT(file_size("decisions.pages"), size);
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "daum", .limit = 10}, ids, 4), 0);
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "google", .limit = 500}, ids, 4),
               4);

    /* Another log's page file, whole, beside a new database: refused, left as it is. */
    char other[] = "/tmp/epcs-test-decisions-other-XXXXXX", stray[300];
    EXPECT(mkdtemp(other) != NULL);
    snprintf(stray, sizeof(stray), "%s/decisions.pages", other);
    EXPECT_INT(copy_file(path, stray), 0);
    EXPECT(backend->ops->open(other, other, EPCS_AUDIT_ASYNC, 100, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "belongs to another decision log than the database beside it");
    struct stat st;
    EXPECT(stat(stray, &st) == 0 && st.st_size == size);

    /* Not a page file at all. */
    pages = fopen(stray, "wb");
    EXPECT(pages != NULL);
    fputs("pages of another decision log", pages);
    fclose(pages);
    EXPECT(backend->ops->open(other, other, EPCS_AUDIT_ASYNC, 100, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "is not a page file of the decision log: move it aside");

    /* A page file cut into pages of earlier runs: refused, nothing dropped. */
    EXPECT_INT(truncate(path, (off_t)size / 2), 0);
    EXPECT(open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "page(s) of earlier runs: it was cut short; put the whole file back");
    EXPECT_INT(count_entries(), entries);
    EXPECT_INT(file_size("decisions.pages"), size / 2);

    /* An empty page file beside a database that indexes pages. */
    EXPECT_INT(truncate(path, 0), 0);
    EXPECT(open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "is empty, but the database beside it indexes");
    EXPECT_INT(count_entries(), entries);

    for (const char *const *file = backend->files; *file != NULL; file++) {
        snprintf(stray, sizeof(stray), "%s/%s", other, *file);
        unlink(stray);
    }
    EXPECT_INT(rmdir(other), 0);
}

/* The journal segments in the scratch directory: how many, and the largest one's path. */
static int count_segments(char *largest, size_t size)
{
    DIR *dir = opendir(scratch);
    int count = 0;
    long long most = -1;
    const struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, EPCS_JOURNAL_PREFIX, strlen(EPCS_JOURNAL_PREFIX)) != 0)
            continue;
        count++;
        char path[400];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", scratch, entry->d_name);
        if (stat(path, &st) == 0 && st.st_size > most && largest != NULL) {
            most = st.st_size;
            snprintf(largest, size, "%s", path);
        }
    }
    if (dir != NULL)
        closedir(dir);
    return count;
}

/* Stages `count` copies of the sample (fresh ids) for `partner` and ends the turn. */
static int stage_turn(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                      const struct sample *sample, size_t count, const char *partner)
{
    struct epcs_decision many[8];
    for (size_t i = 0; i < count; i++) {
        many[i] = sample->decision;
        many[i].id = epcs_decision_log_next_id(log, stage);
    }
    if (epcs_decision_log_stage(log, stage, many, count, partner) != 0)
        return -2;
    return epcs_decision_log_flush(log, stage);
}

/*
 * A run killed (here: _exit) after two turns went to its journal while the writer was kept
 * from committing them: the next start queues what the index lacks, ignoring a record cut
 * short and bytes after it, writes those entries once, and deletes the journal once they are
 * committed; a start after that finds nothing to queue.
 */
static void test_journal_recovery(void)
{
    long long before = count_entries();
    pid_t child = fork();
    if (child == 0) {
        char err[256];
        struct epcs_decision_log *log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
        struct epcs_decision_stage stage = {0};
        struct sample sample;
        if (log == NULL || epcs_decision_log_attach(log, &stage, err, sizeof(err)) != 0 ||
            backend->hold_writes(where) == NULL)
            _exit(2);
        make_sample(&sample, log, "deepfake");
        /* Three decisions answered in one turn, two in the next (cut short below). */
        int first = stage_turn(log, &stage, &sample, 3, "journaled");
        int second = stage_turn(log, &stage, &sample, 2, "cut-short");
        _exit(first == 0 && second == 0 && stage.journaled == 2 ? 0 : 3);
    }
    int status = -1;
    EXPECT(child > 0 && waitpid(child, &status, 0) == child);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_INT(count_entries(), before);
    char largest[400] = "";
    EXPECT_INT(count_segments(largest, sizeof(largest)), 1);
    /* The second record loses its last bytes, and something follows that is no record. */
    struct stat st;
    EXPECT(stat(largest, &st) == 0);
    EXPECT_INT(truncate(largest, st.st_size - 3), 0);
    FILE *segment = fopen(largest, "ab");
    EXPECT(segment != NULL);
    if (segment != NULL) {
        fputs("EPCJ and bytes of no record", segment);
        fclose(segment);
    }

    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    EXPECT(wait_committed(log, 1));
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), before + 3);
    uint64_t ids[8];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "journaled", .limit = 10}, ids, 8),
               3);
    EXPECT(ids[0] < ids[1] && ids[1] < ids[2]);
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "cut-short", .limit = 10}, ids, 8),
               0);
    EXPECT_INT(count_segments(NULL, 0), 0);

    /* Once written, nothing is queued twice. */
    log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    epcs_decision_log_stats(log, &stats);
    EXPECT_INT(stats.queued, 0);
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), before + 3);
}

/* A sample whose answer is `bytes` long, so that a few thousand fill a journal segment. */
static void make_large_sample(struct sample *sample, struct epcs_decision_log *log, size_t bytes)
{
    make_sample(sample, log, "advertising");
    msgpack_sbuffer_clear(&sample->verdict_bytes);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sample->verdict_bytes, msgpack_sbuffer_write);
    char *reason = malloc(bytes);
    memset(reason, 'r', bytes);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "verdict");
    pack_str(&pk, "allowed");
    pack_str(&pk, "reason");
    msgpack_pack_str(&pk, bytes);
    msgpack_pack_str_body(&pk, reason, bytes);
    free(reason);
    sample->decision.verdict = EPCS_VERDICT_ALLOWED;
    sample->decision.verdict_msgpack = sample->verdict_bytes.data;
    sample->decision.verdict_len = sample->verdict_bytes.size;
}

/* A stage's segment is retired past its size for the spare the writer made, and deleted once
 * everything in it is committed; closing deletes the rest. */
static void test_segments_deleted_after_commit(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_ASYNC, 100000, err, sizeof(err));
    EXPECT(log != NULL);
    struct epcs_decision_stage stage = {0};
    EXPECT_INT(epcs_decision_log_attach(log, &stage, err, sizeof(err)), 0);
    EXPECT_INT(count_segments(NULL, 0), 1);
    struct sample sample;
    make_large_sample(&sample, log, 8000);
    /* 20 MiB in turns of 8 decisions: more than a segment holds. */
    int rc = 0;
    size_t turns = 20 * 1024 * 1024 / (8 * 8000);
    for (size_t turn = 0; turn < turns && rc == 0; turn++) {
        rc = stage_turn(log, &stage, &sample, 8, "segments");
        /* Give the writer its turn too, so that it makes the spare in time. */
        if (turn % 64 == 0)
            usleep(20 * 1000);
    }
    EXPECT_INT(rc, 0);
    EXPECT_INT(stage.journaled, turns);
    EXPECT(wait_committed(log, turns * 8));
    /* One more pass of the writer after the last commit deletes the retired segment. */
    EXPECT_INT(stage_turn(log, &stage, &sample, 1, "segments"), 0);
    EXPECT(wait_committed(log, turns * 8 + 1));
    int segments = 0;
    for (int i = 0; i < 200 && (segments = count_segments(NULL, 0)) != 2; i++)
        usleep(10 * 1000);
    /* The one written to now and the spare; the retired one is gone. */
    EXPECT_INT(segments, 2);
    epcs_decision_log_detach(log, &stage);
    epcs_decision_log_close(log);
    EXPECT_INT(count_segments(NULL, 0), 0);
    uint64_t ids[1];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "segments", .limit = 1000}, ids, 1),
               1);
    free_sample(&sample);
}

static void set_file_limit(rlim_t limit)
{
    struct rlimit now;
    getrlimit(RLIMIT_FSIZE, &now);
    now.rlim_cur = limit;
    EXPECT_INT(setrlimit(RLIMIT_FSIZE, &now), 0);
}

/* Waits up to 5 s for the log's stalled flag to be `stalled`; returns its stats. */
static struct epcs_decision_log_stats wait_stalled(struct epcs_decision_log *log, int stalled)
{
    struct epcs_decision_log_stats stats;
    for (int i = 0; i < 500; i++) {
        epcs_decision_log_stats(log, &stats);
        if (stats.stalled == stalled)
            break;
        usleep(10 * 1000);
    }
    return stats;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * A write that fails (here: past the file size limit, as a full disk would) stalls the log:
 * nothing is refused silently, everything new is refused at once, a wait gives up after the
 * stall wait, and the kept group is written by itself once writes succeed again.
 */
static void test_stall_and_retry(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    long long before = count_entries();
    set_file_limit((rlim_t)file_size("decisions.pages"));
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &sample.decision, 1, "stalled", &ticket), 0);
    struct epcs_decision_log_stats stats = wait_stalled(log, 1);
    EXPECT_INT(stats.stalled, 1);
    EXPECT_INT(stats.failed, 0);
    EXPECT_INT(stats.queued, 1);
    EXPECT_CONTAINS(stats.reason, "File too large");
    EXPECT(epcs_decision_log_committed(log) < ticket);
    /* Everything new is refused while stalled. */
    struct epcs_decision second = sample.decision;
    second.id = epcs_decision_log_next_id(log, NULL);
    uint64_t refused_ticket = 0, event = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &second, 1, "stalled", &refused_ticket), -1);
    EXPECT_INT(
        epcs_decision_log_event(log, "naver", "request_sent", "na22", 7, NULL, 0, &event, NULL),
        -1);
    /* A waiter gives up after the stall wait (wall clock, with room for a busy machine). */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    EXPECT_INT(epcs_decision_log_wait(log, ticket), -1);
    double waited = seconds_since(&start);
    EXPECT(waited >= EPCS_DECISION_LOG_STALL_WAIT_MS / 1000.0 - 0.3);
    EXPECT(waited < 10.0);
    EXPECT_INT(count_entries(), before);

    /* Space again: the kept decision is written by itself and the log takes new ones. */
    set_file_limit(RLIM_INFINITY);
    EXPECT(wait_committed(log, ticket));
    stats = wait_stalled(log, 0);
    EXPECT_INT(stats.stalled, 0);
    EXPECT_STR(stats.reason, "");
    EXPECT_INT(epcs_decision_log_append(log, NULL, &second, 1, "stalled", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), before + 2);
    uint64_t ids[4];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "stalled", .limit = 10}, ids, 4),
               2);
    EXPECT_INT(ids[0], sample.decision.id);
    EXPECT_INT(ids[1], second.id);
    free_sample(&sample);
}

/*
 * A journal write that fails drops its turn (its answers get 503) and stalls the log; the
 * writer's probe of the disk ends the stall by itself once writes succeed again.
 */
static void test_journal_stall(void)
{
    char err[256] = "", segment[400];
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct epcs_decision_stage stage = {0};
    EXPECT_INT(epcs_decision_log_attach(log, &stage, err, sizeof(err)), 0);
    EXPECT_INT(count_segments(segment, sizeof(segment)), 1);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    long long before = count_entries();
    struct stat st;
    EXPECT(stat(segment, &st) == 0);
    set_file_limit((rlim_t)st.st_size + 10);
    EXPECT_INT(stage_turn(log, &stage, &sample, 2, "dropped"), -1);
    EXPECT_INT(stage.journaled, 0);
    EXPECT_INT(stage.record, 2);
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    EXPECT_INT(stats.stalled, 1);
    /* Named as in the data directory, like decisions.pages. */
    char reason[450];
    snprintf(reason, sizeof(reason), "%s: File too large", strrchr(segment, '/') + 1);
    EXPECT_STR(stats.reason, reason);
    EXPECT_INT(stats.refused, 2);
    /* What failed is gone from the segment, and new turns are refused at once. */
    EXPECT(stat(segment, &st) == 0 && st.st_size == 16);
    EXPECT_INT(stage_turn(log, &stage, &sample, 1, "refused"), -2);
    set_file_limit(RLIM_INFINITY);
    stats = wait_stalled(log, 0);
    EXPECT_INT(stats.stalled, 0);
    EXPECT_INT(stage_turn(log, &stage, &sample, 2, "after-stall"), 0);
    EXPECT_INT(stage.journaled, 2);
    /* One write for the turn, whatever it held; none for the one that failed. */
    epcs_decision_log_stats(log, &stats);
    EXPECT_INT(stats.journal_writes, 1);
    epcs_decision_log_detach(log, &stage);
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), before + 2);
    uint64_t ids[4];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "dropped", .limit = 10}, ids, 4),
               0);
    EXPECT_INT(
        list_ids((struct epcs_decision_query){.partner = "after-stall", .limit = 10}, ids, 4), 2);
    EXPECT_INT(count_segments(NULL, 0), 0);
    free_sample(&sample);
}

/* ---- what only one backend has ---------------------------------------------------------- */

static void sqlite_tests(void)
{
    test_stall_and_retry();
    /* Last: it leaves the directory with a page file no log opens. */
    test_page_file_recovery();
}

/* Runs `sql` as the scratch cluster's superuser on the test's schema. */
static int pg_admin_exec(const char *sql, const char *param)
{
    return epcs_test_pg_exec(pg_admin, sql, param);
}

/* Waits up to 5 s for the log's stall reason to contain `text`; returns its stats. */
static struct epcs_decision_log_stats wait_reason(struct epcs_decision_log *log, const char *text)
{
    struct epcs_decision_log_stats stats;
    for (int i = 0; i < 500; i++) {
        epcs_decision_log_stats(log, &stats);
        if (strstr(stats.reason, text) != NULL)
            break;
        usleep(10 * 1000);
    }
    return stats;
}

/*
 * Two logs on one database (two replicas, each with its own data directory) claim different
 * runs, so their ids never meet; a second log on the same data directory is refused, since it
 * would read the first's journals as those of an earlier run.
 */
static void test_pg_ids_unique_across_logs(void)
{
    char err[256] = "", other[] = "/tmp/epcs-test-decisions-other-XXXXXX";
    EXPECT(mkdtemp(other) != NULL);
    struct epcs_decision_log *first = open_log(EPCS_AUDIT_SYNC, 1000, err, sizeof(err));
    struct epcs_decision_log *second =
        backend->ops->open(where, other, EPCS_AUDIT_SYNC, 1000, err, sizeof(err));
    EXPECT(first != NULL && second != NULL);
    EXPECT(open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err)) == NULL);
    EXPECT_CONTAINS(err, "decisions.lock: another epcsd is using this data directory");
    enum { EACH = 40 };
    struct sample samples[2];
    make_sample(&samples[0], first, "deepfake");
    make_sample(&samples[1], second, "deepfake");
    EXPECT_INT(samples[1].decision.id >> 32, (samples[0].decision.id >> 32) + 1);
    struct epcs_decision_log *logs[2] = {first, second};
    for (int l = 0; l < 2; l++) {
        struct epcs_decision each[EACH];
        for (int i = 0; i < EACH; i++) {
            each[i] = samples[l].decision;
            each[i].id = i == 0 ? samples[l].decision.id : epcs_decision_log_next_id(logs[l], NULL);
        }
        uint64_t ticket = 0;
        EXPECT_INT(epcs_decision_log_append(logs[l], NULL, each, EACH, "replicas", &ticket), 0);
        EXPECT(wait_committed(logs[l], ticket));
    }
    uint64_t ids[2 * EACH + 1];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "replicas", .limit = 30}, ids,
                        2 * EACH + 1),
               2 * EACH);
    int increasing = 1;
    for (int i = 1; i < 2 * EACH; i++)
        increasing &= ids[i] > ids[i - 1];
    EXPECT(increasing);
    EXPECT_INT(ids[0], samples[0].decision.id);
    EXPECT_INT(ids[EACH], samples[1].decision.id);
    epcs_decision_log_close(first);
    epcs_decision_log_close(second);
    char lock[300];
    snprintf(lock, sizeof(lock), "%s/decisions.lock", other);
    EXPECT_INT(unlink(lock), 0);
    EXPECT_INT(rmdir(other), 0);
    free_sample(&samples[0]);
    free_sample(&samples[1]);
}

/*
 * The database goes away for the log (its sessions ended, new ones refused, as in an outage):
 * the log stalls exactly as on a failing disk, refuses new decisions, a waiter gives up after
 * the stall wait, and once the database is back the kept group is written by itself, once.
 */
static void test_pg_outage(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    long long before = count_entries();
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &sample.decision, 1, "outage", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    EXPECT_INT(pg_admin_exec("ALTER ROLE " PG_LOG_ROLE " NOLOGIN", NULL), 0);
    EXPECT_INT(pg_admin_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE usename = '" PG_LOG_ROLE "'",
                             NULL),
               0);
    struct epcs_decision second = sample.decision;
    second.id = epcs_decision_log_next_id(log, NULL);
    EXPECT_INT(epcs_decision_log_append(log, NULL, &second, 1, "outage", &ticket), 0);
    struct epcs_decision_log_stats stats = wait_reason(log, "is not permitted to log in");
    EXPECT_INT(stats.stalled, 1);
    EXPECT_INT(stats.failed, 0);
    EXPECT_INT(stats.queued, 1);
    EXPECT(strncmp(stats.reason, "PostgreSQL unreachable: connection to server", 44) == 0);
    EXPECT_CONTAINS(stats.reason, "role \"" PG_LOG_ROLE "\" is not permitted to log in");
    struct epcs_decision third = sample.decision;
    third.id = epcs_decision_log_next_id(log, NULL);
    uint64_t refused_ticket = 0, event = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &third, 1, "outage", &refused_ticket), -1);
    EXPECT_INT(
        epcs_decision_log_event(log, "naver", "request_sent", "na22", 7, NULL, 0, &event, NULL),
        -1);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    EXPECT_INT(epcs_decision_log_wait(log, ticket), -1);
    double waited = seconds_since(&start);
    EXPECT(waited >= EPCS_DECISION_LOG_STALL_WAIT_MS / 1000.0 - 0.3);
    EXPECT(waited < 10.0);
    EXPECT_INT(count_entries(), before + 1);

    EXPECT_INT(pg_admin_exec("ALTER ROLE " PG_LOG_ROLE " LOGIN", NULL), 0);
    EXPECT(wait_committed(log, ticket));
    stats = wait_stalled(log, 0);
    EXPECT_INT(stats.stalled, 0);
    EXPECT_STR(stats.reason, "");
    EXPECT_INT(epcs_decision_log_append(log, NULL, &third, 1, "outage", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    epcs_decision_log_close(log);
    EXPECT_INT(count_entries(), before + 3);
    uint64_t ids[4];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "outage", .limit = 10}, ids, 4), 3);
    EXPECT_INT(ids[0], sample.decision.id);
    EXPECT_INT(ids[1], second.id);
    EXPECT_INT(ids[2], third.id);
    free_sample(&sample);
}

/*
 * A resend after a COMMIT whose answer was lost finds its page stored under its key (here put
 * there beforehand, a copy of another page's bytes) and inserts nothing; a page under that key
 * with other entries is no resend: the log stalls, saying so, until it is gone.
 */
static void test_pg_resend_inserts_nothing(void)
{
    char err[256] = "", id[24], other_id[24];
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_SYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    uint64_t ticket = 0;
    EXPECT_INT(epcs_decision_log_append(log, NULL, &sample.decision, 1, "resent", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    long long before = count_entries();
    struct epcs_decision again = sample.decision;
    again.id = epcs_decision_log_next_id(log, NULL);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)again.id);
    snprintf(other_id, sizeof(other_id), "%llu", (unsigned long long)sample.decision.id);
    char sql[400];
    snprintf(sql, sizeof(sql),
             "INSERT INTO epcs_decision_pages SELECT $1::bigint, $1::bigint, first_us, last_us,"
             " 1, s0, s1, s2, s3, body FROM epcs_decision_pages WHERE first_id = %s",
             other_id);
    EXPECT_INT(pg_admin_exec(sql, id), 0);
    EXPECT_INT(epcs_decision_log_append(log, NULL, &again, 1, "resent", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    struct epcs_decision_log_stats stats;
    epcs_decision_log_stats(log, &stats);
    EXPECT_INT(stats.stalled, 0);
    EXPECT_INT(count_entries(), before + 1);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM epcs_decision_pages WHERE first_id = $1::bigint AND body ="
             " (SELECT body FROM epcs_decision_pages WHERE first_id = %s)",
             other_id);
    EXPECT_INT(pg_number(pg_admin, sql, id), 1);

    struct epcs_decision clash = sample.decision;
    clash.id = epcs_decision_log_next_id(log, NULL);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)clash.id);
    EXPECT_INT(pg_admin_exec("INSERT INTO epcs_decision_pages VALUES ($1::bigint,"
                             " $1::bigint + 5, 0, 0, 3, 0, 0, 0, 0, '\\x00')",
                             id),
               0);
    EXPECT_INT(epcs_decision_log_append(log, NULL, &clash, 1, "clash", &ticket), 0);
    char reason[200];
    snprintf(reason, sizeof(reason),
             "PostgreSQL: the page of decisions from id %s is stored already with other entries",
             id);
    stats = wait_reason(log, reason);
    EXPECT_INT(stats.stalled, 1);
    EXPECT_STR(stats.reason, reason);
    EXPECT_INT(pg_admin_exec("DELETE FROM epcs_decision_pages WHERE first_id = $1::bigint", id), 0);
    EXPECT(wait_committed(log, ticket));
    stats = wait_stalled(log, 0);
    EXPECT_INT(stats.stalled, 0);
    epcs_decision_log_close(log);
    uint64_t ids[2];
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "clash", .limit = 10}, ids, 2), 1);
    EXPECT_INT(ids[0], clash.id);
    free_sample(&sample);
}

/* The dates of the checks recent() replays, in its order. */
struct recent_dates {
    size_t count;
    char dates[4][11];
};

static int note_date(void *ctx, const void *request, size_t len, const char *date)
{
    (void)request;
    (void)len;
    struct recent_dates *dates = ctx;
    if (dates->count < 4)
        snprintf(dates->dates[dates->count], sizeof(dates->dates[0]), "%s", date);
    dates->count++;
    return 0;
}

static int runs_sql(PGconn *conn, const char *sql)
{
    PGresult *result = PQexec(conn, sql);
    int rc = PQresultStatus(result) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(result);
    return rc;
}

/* The JSON of entry `id` as GET /v1/decisions/{id} gives it ("" when it cannot be read). */
static void entry_json(struct epcs_decision_reader *reader, uint64_t id, struct epcs_buf *json)
{
    char err[256];
    struct epcs_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object shown;
    size_t offset = 0;
    epcs_buf_reset(json);
    if (backend->ops->get(reader, id, &pk, NULL, NULL, 0, NULL, err, sizeof(err)) == 0 &&
        msgpack_unpack(buf.data, buf.len, &offset, &zone, &shown) == MSGPACK_UNPACK_SUCCESS)
        epcs_json_encode(&shown, json);
    epcs_buf_append(json, "", 1);
    epcs_buf_free(&buf);
    msgpack_zone_destroy(&zone);
}

/*
 * Entries another store commits in its own transaction (a case step, pg_log.h) are listed,
 * filtered, got and replayed with the writer's, in id order, even between the ids of one of
 * its pages; a rolled-back step leaves nothing, and an id is never taken twice.
 */
static void test_pg_entries_in_callers_transaction(void)
{
    char err[256] = "";
    struct epcs_decision_log *log = open_log(EPCS_AUDIT_ASYNC, 100, err, sizeof(err));
    EXPECT(log != NULL);
    struct sample sample;
    make_sample(&sample, log, "deepfake");
    /* A decision of the case store's, with an answer of its own id. */
    struct sample case_sample;
    make_sample(&case_sample, log, "deepfake");
    struct epcs_decision by_case = case_sample.decision;
    EXPECT_INT(epcs_date_parse("2024-03-01", 10, &by_case.date), 0);
    uint64_t event_id = epcs_decision_log_next_id(log, NULL);
    uint64_t rolled_back = epcs_decision_log_next_id(log, NULL);
    struct epcs_decision writer[2] = {sample.decision, sample.decision};
    writer[1].id = epcs_decision_log_next_id(log, NULL);
    uint64_t ticket = 0;
    /* One page from the first id to the last: the case store's ids are inside its range. */
    EXPECT_INT(epcs_decision_log_append(log, NULL, writer, 2, "portal", &ticket), 0);
    EXPECT(wait_committed(log, ticket));
    char first_text[24];
    snprintf(first_text, sizeof(first_text), "%llu", (unsigned long long)sample.decision.id);
    EXPECT_INT(pg_number(pg_admin,
                         "SELECT count(*) FROM epcs_decision_pages WHERE last_id >= $1::bigint",
                         first_text),
               1);

    PGconn *conn = PQconnectdb(where);
    EXPECT(PQstatus(conn) == CONNECTION_OK);
    const char detail[] = "\x81\xa6status\xa4open"; /* {"status": "open"} */
    const char *partners[] = {"police"};
    struct epcs_decision_event event = {.id = event_id,
                                        .at_us = epcs_now_us(),
                                        .partner = "police",
                                        .event = "report_filed",
                                        .election = "na22",
                                        .subject = 9,
                                        .detail = detail,
                                        .detail_len = sizeof(detail) - 1};
    EXPECT_INT(runs_sql(conn, "BEGIN"), 0);
    EXPECT_INT(epcs_pg_log_insert(conn, &by_case, partners, 1, &event, 1, err, sizeof(err)), 0);
    EXPECT_INT(runs_sql(conn, "COMMIT"), 0);
    struct epcs_decision_event lost = event;
    lost.id = rolled_back;
    EXPECT_INT(runs_sql(conn, "BEGIN"), 0);
    EXPECT_INT(epcs_pg_log_insert(conn, NULL, NULL, 0, &lost, 1, err, sizeof(err)), 0);
    EXPECT_INT(runs_sql(conn, "ROLLBACK"), 0);
    EXPECT_INT(runs_sql(conn, "BEGIN"), 0);
    EXPECT_INT(epcs_pg_log_insert(conn, NULL, NULL, 0, &event, 1, err, sizeof(err)), -1);
    EXPECT_CONTAINS(err, "storing an entry of the decision log: ERROR:  duplicate key value");
    EXPECT_INT(runs_sql(conn, "ROLLBACK"), 0);
    PQfinish(conn);

    uint64_t ids[8];
    uint64_t first = sample.decision.id;
    EXPECT_INT(list_ids((struct epcs_decision_query){.after = first - 1, .limit = 1}, ids, 8), 4);
    EXPECT(ids[0] == first && ids[1] == by_case.id && ids[2] == event_id && ids[3] == writer[1].id);
    EXPECT_INT(list_ids((struct epcs_decision_query){.partner = "police", .limit = 10}, ids, 8), 2);
    EXPECT(ids[0] == by_case.id && ids[1] == event_id);
    EXPECT_INT(
        list_ids(
            (struct epcs_decision_query){.after = first - 1, .verdict = "prohibited", .limit = 10},
            ids, 8),
        3);
    EXPECT(ids[0] == first && ids[1] == by_case.id && ids[2] == writer[1].id);
    EXPECT_INT(
        list_ids((struct epcs_decision_query){.partner = "police", .area = "deepfake", .limit = 10},
                 ids, 8),
        1);

    struct epcs_decision_reader *reader = backend->ops->reader_open(where, err, sizeof(err));
    EXPECT(reader != NULL);
    struct epcs_buf json = {0};
    entry_json(reader, by_case.id, &json);
    char expected[600];
    snprintf(expected, sizeof(expected),
             "\"partner\":\"police\",\"election\":\"na22\",\"date\":\"2024-03-01\","
             "\"area\":\"deepfake\",\"verdict\":\"prohibited\",\"article\":\"82-8(1)\","
             "\"ruleset\":\"rs-0123456789abcdef\",\"latency_us\":42,\"request\":{\"election\":"
             "\"na22\",\"area\":\"deepfake\"},\"answer\":{\"verdict\":\"prohibited\","
             "\"article\":\"82-8(1)\",\"decision\":%llu}}",
             (unsigned long long)by_case.id);
    EXPECT_CONTAINS(json.data, expected);
    entry_json(reader, event_id, &json);
    EXPECT_CONTAINS(json.data, "\"partner\":\"police\",\"election\":\"na22\",\"event\":"
                               "\"report_filed\",\"subject\":9,\"detail\":{\"status\":\"open\"}}");
    entry_json(reader, rolled_back, &json);
    EXPECT_STR(json.data, "");
    struct epcs_buf buf = {0}, request = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    char ruleset[64] = "", date[11] = "";
    EXPECT_INT(backend->ops->get(reader, by_case.id, &pk, &request, ruleset, sizeof(ruleset), date,
                                 err, sizeof(err)),
               0);
    EXPECT_STR(ruleset, "rs-0123456789abcdef");
    EXPECT_STR(date, "2024-03-01");
    EXPECT_INT(request.len, sample.check_bytes.size);
    EXPECT_INT(backend->ops->get(reader, event_id, &pk, &request, ruleset, sizeof(ruleset), date,
                                 err, sizeof(err)),
               2);
    EXPECT_INT(backend->ops->get(reader, rolled_back, &pk, NULL, NULL, 0, NULL, err, sizeof(err)),
               1);
    /* Replayed newest first: the writer's two decisions and the case store's between them. */
    struct recent_dates dates = {.count = 0};
    EXPECT_INT(backend->ops->recent(reader, 3, note_date, &dates, err, sizeof(err)), 0);
    EXPECT_INT(dates.count, 3);
    EXPECT_STR(dates.dates[0], "2024-02-15");
    EXPECT_STR(dates.dates[1], "2024-03-01");
    EXPECT_STR(dates.dates[2], "2024-02-15");
    dates.count = 0;
    EXPECT_INT(backend->ops->recent(reader, 2, note_date, &dates, err, sizeof(err)), 0);
    EXPECT_INT(dates.count, 2);
    EXPECT_STR(dates.dates[1], "2024-03-01");
    epcs_buf_free(&json);
    epcs_buf_free(&buf);
    epcs_buf_free(&request);
    backend->ops->reader_close(reader);
    epcs_decision_log_close(log);
    free_sample(&sample);
    free_sample(&case_sample);
}

static void pg_tests(void)
{
    test_pg_ids_unique_across_logs();
    test_pg_outage();
    test_pg_resend_inserts_nothing();
    test_pg_entries_in_callers_transaction();
}

int main(void)
{
    /* Writes past a file size limit fail with EFBIG instead of killing the test. */
    signal(SIGXFSZ, SIG_IGN);
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        backend = &backends[i];
        if (mkdtemp(strcpy(scratch, "/tmp/epcs-test-decisions-XXXXXX")) == NULL)
            return 1;
        fprintf(stderr, "decision log backend %s\n", backend->ops->name);
        if (backend->prepare() != 0)
            return 1;
        test_records_and_queries();
        test_full_queue_refuses();
        test_id_order_and_events();
        test_many_pages();
        test_filtered_queries_skip_pages();
        test_long_texts();
        test_journal_recovery();
        test_segments_deleted_after_commit();
        test_journal_stall();
        /* Last: the SQLite row's leave the directory with a page file no log opens. */
        backend->own_tests();
        for (const char *const *file = backend->files; *file != NULL; file++) {
            char path[300];
            snprintf(path, sizeof(path), "%s/%s", scratch, *file);
            unlink(path);
        }
        rmdir(scratch);
    }
    return epcs_test_report();
}
