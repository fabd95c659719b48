/* The decision log: a writer thread with group commit into SQLite (WAL). */
#include "decision_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "buf.h"
#include "codec.h"
#include "dates.h"
#include "log.h"

#define EPCS_STRINGIFY_(x) #x
#define EPCS_STRINGIFY(x) EPCS_STRINGIFY_(x)

/* Busy readers may hold the database briefly; the writer waits rather than drop a commit. */
#define BUSY_TIMEOUT_MS 5000

/* One queued decision: the record and its variable parts in a single allocation. */
struct record {
    struct record *next;
    uint64_t id;
    uint64_t ticket;
    int64_t at_us;
    int64_t latency_us;
    int32_t date;
    int verdict;
    const char *partner;
    const char *election;
    const char *area;
    const char *ruleset;
    const char *request;
    size_t request_len;
    const char *answer;
    size_t answer_len;
    char bytes[];
};

struct epcs_decision_log {
    enum epcs_audit_mode mode;
    sqlite3 *db;
    sqlite3_stmt *insert;
    uint64_t run;
    _Atomic uint64_t next_sequence;
    pthread_t writer;
    int writer_started;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct record *head, **tail;
    size_t queued;
    size_t queue_limit;
    uint64_t last_ticket;
    int stopping;

    _Atomic uint64_t committed;
    _Atomic uint64_t written;
    _Atomic uint64_t commits;
    _Atomic uint64_t refused;
    _Atomic int failed;
    void (*on_commit)(void *ctx);
    void *on_commit_ctx;

    /* Writer thread only. */
    sqlite3_stmt *insert_answer;
    struct known_answer *known;
    msgpack_zone zone;
    int zone_ready;
    struct epcs_buf article;
};

/*
 * Answers repeat far more than questions (every post of a day gets one of a few verdicts), so
 * each distinct answer is stored once in `answers` and decisions point at it. An answer is
 * stored without its decision id, which is the decision's own id.
 */
#define SCHEMA_VERSION 2
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS runs ("
    "  run INTEGER PRIMARY KEY,"
    "  started TEXT NOT NULL,"
    "  audit TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS answers ("
    "  id INTEGER PRIMARY KEY,"
    "  answer BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS decisions ("
    "  id INTEGER PRIMARY KEY,"
    "  at_us INTEGER NOT NULL,"
    "  partner TEXT NOT NULL,"
    "  election TEXT NOT NULL,"
    "  date TEXT NOT NULL,"
    "  area TEXT,"
    "  verdict TEXT NOT NULL,"
    "  article TEXT,"
    "  ruleset TEXT NOT NULL,"
    "  latency_us INTEGER NOT NULL,"
    "  request BLOB NOT NULL,"
    "  answer_id INTEGER NOT NULL REFERENCES answers(id));"
    "CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions(at_us);"
    "CREATE INDEX IF NOT EXISTS decisions_by_partner ON decisions(partner, at_us);";

/* Answers the writer has stored this run, by content: most decisions find theirs here. */
#define KNOWN_ANSWER_SLOTS 4096

struct known_answer {
    uint64_t hash;
    int64_t id;
    char *bytes;
    size_t len;
    char *article;
};

static int64_t wall_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t err_size)
{
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) == SQLITE_OK)
        return 0;
    snprintf(err, err_size, "%s", message != NULL ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return -1;
}

static void db_path(const char *data_dir, char *path, size_t size)
{
    snprintf(path, size, "%s/decisions.db", data_dir);
}

/* The articles a verdict cites: its own, or those of every area's result, comma-separated. */
static void cited_articles(msgpack_zone *zone, const char *answer, size_t len, struct epcs_buf *out)
{
    msgpack_object root;
    size_t offset = 0;
    epcs_buf_reset(out);
    msgpack_zone_clear(zone);
    if (msgpack_unpack(answer, len, &offset, zone, &root) != MSGPACK_UNPACK_SUCCESS)
        return;
    const msgpack_object *results = NULL;
    for (uint32_t i = 0; root.type == MSGPACK_OBJECT_MAP && i < root.via.map.size; i++) {
        const msgpack_object *key = &root.via.map.ptr[i].key;
        const msgpack_object *value = &root.via.map.ptr[i].val;
        if (epcs_str_eq(key, "article") && value->type == MSGPACK_OBJECT_STR)
            epcs_buf_append(out, value->via.str.ptr, value->via.str.size);
        else if (epcs_str_eq(key, "results") && value->type == MSGPACK_OBJECT_ARRAY)
            results = value;
    }
    for (uint32_t r = 0; results != NULL && r < results->via.array.size; r++) {
        const msgpack_object *result = &results->via.array.ptr[r];
        for (uint32_t i = 0; result->type == MSGPACK_OBJECT_MAP && i < result->via.map.size; i++) {
            const msgpack_object *value = &result->via.map.ptr[i].val;
            if (epcs_str_eq(&result->via.map.ptr[i].key, "article") &&
                value->type == MSGPACK_OBJECT_STR) {
                if (out->len > 0)
                    epcs_buf_append(out, ",", 1);
                epcs_buf_append(out, value->via.str.ptr, value->via.str.size);
            }
        }
    }
}

/* Answers are hundreds of bytes: mixed a word at a time, not a byte at a time. */
static uint64_t answer_hash(const char *bytes, size_t len)
{
    uint64_t hash = 0x9e3779b97f4a7c15ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, bytes + i, 8);
        hash = (hash ^ word) * 0xbf58476d1ce4e5b9ull;
        hash ^= hash >> 31;
    }
    for (; i < len; i++)
        hash = (hash ^ (unsigned char)bytes[i]) * 0x94d049bb133111ebull;
    return hash ^ (hash >> 29);
}

/* The stored answer equal to the record's, found among those known or inserted now. */
static const struct known_answer *store_answer(struct epcs_decision_log *log,
                                               const struct record *record)
{
    uint64_t hash = answer_hash(record->answer, record->answer_len);
    struct known_answer *known = &log->known[hash & (KNOWN_ANSWER_SLOTS - 1)];
    if (known->bytes != NULL && known->hash == hash && known->len == record->answer_len &&
        memcmp(known->bytes, record->answer, known->len) == 0)
        return known;
    sqlite3_stmt *stmt = log->insert_answer;
    sqlite3_reset(stmt);
    sqlite3_bind_blob(stmt, 1, record->answer, (int)record->answer_len, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        return NULL;
    cited_articles(&log->zone, record->answer, record->answer_len, &log->article);
    char *bytes = malloc(record->answer_len ? record->answer_len : 1);
    char *article = malloc(log->article.len + 1);
    if (bytes == NULL || article == NULL) {
        free(bytes);
        free(article);
        return NULL;
    }
    free(known->bytes);
    free(known->article);
    memcpy(bytes, record->answer, record->answer_len);
    memcpy(article, log->article.data, log->article.len);
    article[log->article.len] = '\0';
    *known = (struct known_answer){.hash = hash,
                                   .id = sqlite3_last_insert_rowid(log->db),
                                   .bytes = bytes,
                                   .len = record->answer_len,
                                   .article = article};
    return known;
}

static void forget_answers(struct epcs_decision_log *log)
{
    for (size_t i = 0; log->known != NULL && i < KNOWN_ANSWER_SLOTS; i++) {
        free(log->known[i].bytes);
        free(log->known[i].article);
        log->known[i] = (struct known_answer){0};
    }
}

static int insert_record(struct epcs_decision_log *log, const struct record *record)
{
    const struct known_answer *answer = store_answer(log, record);
    if (answer == NULL)
        return -1;
    sqlite3_stmt *stmt = log->insert;
    char date[11];
    epcs_date_format(record->date, date);
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)record->id);
    sqlite3_bind_int64(stmt, 2, record->at_us);
    sqlite3_bind_text(stmt, 3, record->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, record->election, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, date, 10, SQLITE_STATIC);
    if (record->area != NULL)
        sqlite3_bind_text(stmt, 6, record->area, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 6);
    sqlite3_bind_text(stmt, 7, epcs_verdict_name(record->verdict), -1, SQLITE_STATIC);
    if (answer->article[0] != '\0')
        sqlite3_bind_text(stmt, 8, answer->article, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 8);
    sqlite3_bind_text(stmt, 9, record->ruleset, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 10, record->latency_us);
    sqlite3_bind_blob(stmt, 11, record->request, (int)record->request_len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 12, answer->id);
    return sqlite3_step(stmt) == SQLITE_DONE ? 0 : -1;
}

/* Writes one group in one transaction. Returns 0, or -1 after logging why. */
static int commit_group(struct epcs_decision_log *log, struct record *group, size_t count)
{
    char err[256];
    int rc = exec(log->db, "BEGIN", err, sizeof(err));
    for (struct record *record = group; rc == 0 && record != NULL; record = record->next) {
        if (insert_record(log, record) != 0) {
            snprintf(err, sizeof(err), "%s", sqlite3_errmsg(log->db));
            rc = -1;
        }
    }
    if (rc == 0)
        rc = exec(log->db, "COMMIT", err, sizeof(err));
    if (rc != 0) {
        /* Answers inserted by the rolled-back transaction are gone from the table. */
        forget_answers(log);
        char ignored[64];
        exec(log->db, "ROLLBACK", ignored, sizeof(ignored));
        epcs_log(EPCS_LOG_ERROR, "decisions",
                 "cannot write %zu decision(s): %s; refusing further checks until restarted", count,
                 err);
        return -1;
    }
    atomic_fetch_add(&log->written, count);
    atomic_fetch_add(&log->commits, 1);
    return 0;
}

static void *writer_main(void *arg)
{
    struct epcs_decision_log *log = arg;
    for (;;) {
        pthread_mutex_lock(&log->lock);
        while (log->head == NULL && !log->stopping)
            pthread_cond_wait(&log->wake, &log->lock);
        struct record *group = log->head;
        size_t count = log->queued;
        uint64_t last_ticket = log->last_ticket;
        int stopping = log->stopping;
        log->head = NULL;
        log->tail = &log->head;
        log->queued = 0;
        pthread_mutex_unlock(&log->lock);
        if (group == NULL && stopping)
            break;
        /* After a failure nothing more is written; queued decisions were never answered in
         * sync mode, and in async mode the failure is logged and readyz turns red. */
        if (!atomic_load(&log->failed) && commit_group(log, group, count) == 0)
            atomic_store_explicit(&log->committed, last_ticket, memory_order_release);
        else
            atomic_store(&log->failed, 1);
        while (group != NULL) {
            struct record *next = group->next;
            free(group);
            group = next;
        }
        if (log->on_commit != NULL)
            log->on_commit(log->on_commit_ctx);
    }
    return NULL;
}

struct epcs_decision_log *epcs_decision_log_open(const char *data_dir, enum epcs_audit_mode mode,
                                                 size_t queue_limit, char *err, size_t err_size)
{
    struct epcs_decision_log *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    log->mode = mode;
    log->queue_limit = queue_limit;
    log->tail = &log->head;
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->wake, NULL);
    char path[4200];
    db_path(data_dir, path, sizeof(path));
    /* Only the writer thread uses this connection: SQLite's own locking would be wasted. */
    if (sqlite3_open_v2(path, &log->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        goto fail;
    }
    sqlite3_busy_timeout(log->db, BUSY_TIMEOUT_MS);
    /* Sync answers promise the decision survives a power cut, so each commit is fsync'd; async
     * ones only that it survives the process, which WAL without fsync per commit gives. */
    const char *pragmas = mode == EPCS_AUDIT_SYNC
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                              : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
    char why[256];
    if (exec(log->db, pragmas, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "%s: %s", path, why);
        goto fail;
    }
    sqlite3_stmt *version = NULL;
    int user_version = -1, tables = -1;
    if (sqlite3_prepare_v2(log->db, "PRAGMA user_version", -1, &version, NULL) == SQLITE_OK &&
        sqlite3_step(version) == SQLITE_ROW)
        user_version = sqlite3_column_int(version, 0);
    sqlite3_finalize(version);
    if (sqlite3_prepare_v2(log->db, "SELECT count(*) FROM sqlite_master WHERE name = 'decisions'",
                           -1, &version, NULL) == SQLITE_OK &&
        sqlite3_step(version) == SQLITE_ROW)
        tables = sqlite3_column_int(version, 0);
    sqlite3_finalize(version);
    if (tables > 0 && user_version != SCHEMA_VERSION) {
        snprintf(err, err_size,
                 "%s has decision log format %d, this epcsd writes %d: move it aside (it is "
                 "evidence: keep it) and start again",
                 path, user_version, SCHEMA_VERSION);
        goto fail;
    }
    if (exec(log->db, schema, why, sizeof(why)) != 0 ||
        exec(log->db, "PRAGMA user_version = " EPCS_STRINGIFY(SCHEMA_VERSION), why, sizeof(why)) !=
            0) {
        snprintf(err, err_size, "%s: %s", path, why);
        goto fail;
    }
    log->known = calloc(KNOWN_ANSWER_SLOTS, sizeof(*log->known));
    if (log->known == NULL || !msgpack_zone_init(&log->zone, 4096)) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    log->zone_ready = 1;
    if (sqlite3_prepare_v2(log->db, "INSERT INTO answers(answer) VALUES(?)", -1,
                           &log->insert_answer, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        goto fail;
    }
    sqlite3_stmt *run = NULL;
    char started[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (sqlite3_prepare_v2(log->db, "INSERT INTO runs(started, audit) VALUES(?, ?)", -1, &run,
                           NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        goto fail;
    }
    sqlite3_bind_text(run, 1, started, -1, SQLITE_STATIC);
    sqlite3_bind_text(run, 2, mode == EPCS_AUDIT_SYNC ? "sync" : "async", -1, SQLITE_STATIC);
    int stepped = sqlite3_step(run);
    sqlite3_finalize(run);
    if (stepped != SQLITE_DONE) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        goto fail;
    }
    log->run = (uint64_t)sqlite3_last_insert_rowid(log->db);
    atomic_init(&log->next_sequence, 1);
    if (sqlite3_prepare_v2(log->db,
                           "INSERT INTO decisions(id, at_us, partner, election, date, area, "
                           "verdict, article, ruleset, latency_us, request, answer_id) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &log->insert, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(log->db));
        goto fail;
    }
    if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
        snprintf(err, err_size, "cannot start the decision log writer");
        goto fail;
    }
    log->writer_started = 1;
    return log;
fail:
    epcs_decision_log_close(log);
    return NULL;
}

void epcs_decision_log_close(struct epcs_decision_log *log)
{
    if (log == NULL)
        return;
    if (log->writer_started) {
        pthread_mutex_lock(&log->lock);
        log->stopping = 1;
        pthread_cond_signal(&log->wake);
        pthread_mutex_unlock(&log->lock);
        pthread_join(log->writer, NULL);
    }
    sqlite3_finalize(log->insert);
    sqlite3_finalize(log->insert_answer);
    sqlite3_close(log->db);
    forget_answers(log);
    free(log->known);
    if (log->zone_ready)
        msgpack_zone_destroy(&log->zone);
    epcs_buf_free(&log->article);
    pthread_cond_destroy(&log->wake);
    pthread_mutex_destroy(&log->lock);
    free(log);
}

enum epcs_audit_mode epcs_decision_log_mode(const struct epcs_decision_log *log)
{
    return log != NULL ? log->mode : EPCS_AUDIT_OFF;
}

uint64_t epcs_decision_log_next_id(struct epcs_decision_log *log)
{
    return log->run << 32 | (atomic_fetch_add(&log->next_sequence, 1) & 0xffffffffu);
}

/* A small fixed buffer for msgpack_packer: headers and the decision entry fit in 32 bytes. */
struct small_buf {
    char data[32];
    size_t len;
};

static int write_small(void *data, const char *bytes, size_t len)
{
    struct small_buf *buf = data;
    if (len > sizeof(buf->data) - buf->len)
        return -1;
    memcpy(buf->data + buf->len, bytes, len);
    buf->len += len;
    return 0;
}

/*
 * The answer without its trailing "decision" entry, so equal verdicts store once: `header`
 * gets the new map header, and the entries are [answer + *entries_at, answer + *entries_end).
 * Returns -1 when the answer does not end with that entry (it is then stored whole).
 */
static int strip_decision(const char *answer, size_t len, uint64_t id, struct small_buf *header,
                          size_t *entries_at, size_t *entries_end)
{
    struct small_buf tail = {.len = 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &tail, write_small);
    msgpack_pack_str(&pk, 8);
    msgpack_pack_str_body(&pk, "decision", 8);
    msgpack_pack_uint64(&pk, id);
    uint32_t fields;
    size_t header_len;
    if (epcs_msgpack_map_header(answer, len, &fields, &header_len) != 0 || fields == 0 ||
        len < header_len + tail.len || memcmp(answer + len - tail.len, tail.data, tail.len) != 0)
        return -1;
    msgpack_packer_init(&pk, header, write_small);
    msgpack_pack_map(&pk, fields - 1);
    *entries_at = header_len;
    *entries_end = len - tail.len;
    return 0;
}

/* Each worker packs the checks it logs into a buffer of its own, kept between decisions so a
 * copy costs no malloc, and freed when the thread ends. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void free_scratch(void *ptr)
{
    epcs_buf_free(ptr);
    free(ptr);
}

static void make_scratch_key(void)
{
    pthread_key_create(&scratch_key, free_scratch);
}

static struct epcs_buf *thread_scratch(void)
{
    pthread_once(&scratch_once, make_scratch_key);
    struct epcs_buf *buf = pthread_getspecific(scratch_key);
    if (buf == NULL && (buf = calloc(1, sizeof(*buf))) != NULL &&
        pthread_setspecific(scratch_key, buf) != 0) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* One decision as a single allocation the writer frees. */
static struct record *copy_decision(const struct epcs_decision *decision, const char *partner,
                                    int64_t at_us)
{
    struct epcs_buf *request = thread_scratch();
    msgpack_packer pk;
    if (request == NULL)
        return NULL;
    epcs_buf_reset(request);
    msgpack_packer_init(&pk, request, epcs_buf_msgpack_write);
    if (msgpack_pack_object(&pk, *decision->check) != 0)
        return NULL;
    struct small_buf header = {.len = 0};
    size_t entries_at = 0, entries_end = decision->verdict_len;
    if (strip_decision(decision->verdict_msgpack, decision->verdict_len, decision->id, &header,
                       &entries_at, &entries_end) != 0)
        header.len = 0;
    size_t answer_len = header.len + entries_end - entries_at;
    size_t partner_len = strlen(partner) + 1, election_len = strlen(decision->election) + 1,
           area_len = decision->area != NULL ? strlen(decision->area) + 1 : 0,
           ruleset_len = strlen(decision->ruleset) + 1;
    struct record *record = malloc(sizeof(*record) + partner_len + election_len + area_len +
                                   ruleset_len + request->len + answer_len);
    if (record == NULL)
        return NULL;
    char *at = record->bytes;
#define COPY_INTO(field, from, len)                                                                \
    do {                                                                                           \
        record->field = memcpy(at, from, len);                                                     \
        at += len;                                                                                 \
    } while (0)
    COPY_INTO(partner, partner, partner_len);
    COPY_INTO(election, decision->election, election_len);
    record->area = NULL;
    if (decision->area != NULL)
        COPY_INTO(area, decision->area, area_len);
    COPY_INTO(ruleset, decision->ruleset, ruleset_len);
    COPY_INTO(request, request->data, request->len);
    record->answer = at;
    memcpy(at, header.data, header.len);
    memcpy(at + header.len, decision->verdict_msgpack + entries_at, entries_end - entries_at);
#undef COPY_INTO
    record->request_len = request->len;
    record->answer_len = answer_len;
    record->next = NULL;
    record->id = decision->id;
    record->at_us = at_us;
    record->latency_us = (int64_t)decision->latency_us;
    record->date = decision->date;
    record->verdict = decision->verdict;
    return record;
}

int epcs_decision_log_append(struct epcs_decision_log *log, const struct epcs_decision *decisions,
                             size_t count, const char *partner, uint64_t *ticket)
{
    if (count == 0) {
        *ticket = 0;
        return 0;
    }
    if (atomic_load(&log->failed))
        return -1;
    /* Copies are made before taking the lock, so workers never wait on each other's packing. */
    int64_t at_us = wall_us();
    struct record *first = NULL, **link = &first, *last = NULL;
    for (size_t i = 0; i < count; i++) {
        struct record *record = copy_decision(&decisions[i], partner, at_us);
        if (record == NULL)
            goto refuse;
        *link = last = record;
        link = &record->next;
    }
    pthread_mutex_lock(&log->lock);
    if (log->queued + count > log->queue_limit) {
        pthread_mutex_unlock(&log->lock);
        goto refuse;
    }
    for (struct record *record = first; record != NULL; record = record->next)
        record->ticket = ++log->last_ticket;
    *log->tail = first;
    log->tail = &last->next;
    log->queued += count;
    *ticket = log->last_ticket;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
    return 0;
refuse:
    while (first != NULL) {
        struct record *next = first->next;
        free(first);
        first = next;
    }
    atomic_fetch_add(&log->refused, count);
    return -1;
}

int epcs_decision_log_stage(struct epcs_decision_log *log, struct epcs_decision_stage *stage,
                            const struct epcs_decision *decisions, size_t count,
                            const char *partner)
{
    if (atomic_load(&log->failed))
        return -1;
    pthread_mutex_lock(&log->lock);
    size_t queued = log->queued;
    pthread_mutex_unlock(&log->lock);
    if (queued + stage->count + count > log->queue_limit) {
        atomic_fetch_add(&log->refused, count);
        return -1;
    }
    int64_t at_us = wall_us();
    if (stage->tail == NULL)
        stage->tail = &stage->head;
    struct record **before = stage->tail;
    size_t count_before = stage->count;
    for (size_t i = 0; i < count; i++) {
        struct record *record = copy_decision(&decisions[i], partner, at_us);
        if (record == NULL) {
            /* All or none: a check answered 503 must leave nothing on record. */
            for (struct record *added = *before; added != NULL;) {
                struct record *next = added->next;
                free(added);
                added = next;
            }
            *before = NULL;
            stage->tail = before;
            stage->count = count_before;
            atomic_fetch_add(&log->refused, count);
            return -1;
        }
        *stage->tail = record;
        stage->tail = &record->next;
        stage->count++;
    }
    return 0;
}

void epcs_decision_log_flush(struct epcs_decision_log *log, struct epcs_decision_stage *stage)
{
    if (stage->count == 0)
        return;
    pthread_mutex_lock(&log->lock);
    for (struct record *record = stage->head; record != NULL; record = record->next)
        record->ticket = ++log->last_ticket;
    *log->tail = stage->head;
    log->tail = stage->tail;
    log->queued += stage->count;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
    *stage = (struct epcs_decision_stage){0};
}

uint64_t epcs_decision_log_committed(const struct epcs_decision_log *log)
{
    return atomic_load_explicit(&log->committed, memory_order_acquire);
}

void epcs_decision_log_on_commit(struct epcs_decision_log *log, void (*fn)(void *ctx), void *ctx)
{
    log->on_commit = fn;
    log->on_commit_ctx = ctx;
}

void epcs_decision_log_stats(struct epcs_decision_log *log, struct epcs_decision_log_stats *stats)
{
    pthread_mutex_lock(&log->lock);
    stats->queued = log->queued;
    pthread_mutex_unlock(&log->lock);
    stats->queue_limit = log->queue_limit;
    stats->written = atomic_load(&log->written);
    stats->commits = atomic_load(&log->commits);
    stats->refused = atomic_load(&log->refused);
    stats->failed = atomic_load(&log->failed);
}

/* ---- queries ------------------------------------------------------------------------------ */

sqlite3 *epcs_decision_log_reader(const char *data_dir, char *err, size_t err_size)
{
    char path[4200];
    sqlite3 *db = NULL;
    db_path(data_dir, path, sizeof(path));
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    return db;
}

#define SELECT_COLUMNS                                                                             \
    "SELECT decisions.id, at_us, partner, election, date, area, verdict, article, ruleset, "       \
    "latency_us, request, answers.answer FROM decisions JOIN answers ON answers.id = answer_id"

static void pack_text_column(msgpack_packer *pk, sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    const char *text = (const char *)sqlite3_column_text(stmt, column);
    msgpack_pack_str(pk, (size_t)sqlite3_column_bytes(stmt, column));
    msgpack_pack_str_body(pk, text, (size_t)sqlite3_column_bytes(stmt, column));
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    size_t len = strlen(key);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, key, len);
}

/* The answer as it was sent: the stored one with its decision id back as the last entry. */
static void pack_answer(msgpack_packer *pk, uint64_t id, const char *answer, size_t len)
{
    uint32_t fields;
    size_t header_len;
    if (epcs_msgpack_map_header(answer, len, &fields, &header_len) != 0) {
        epcs_buf_append(pk->data, answer, len);
        return;
    }
    msgpack_pack_map(pk, fields + 1);
    epcs_buf_append(pk->data, answer + header_len, len - header_len);
    pack_key(pk, "decision");
    msgpack_pack_uint64(pk, id);
}

/* One row as a map; the stored msgpack of the request is spliced in as is. */
static void pack_row(msgpack_packer *pk, sqlite3_stmt *stmt)
{
    int64_t at_us = sqlite3_column_int64(stmt, 1);
    time_t seconds = (time_t)(at_us / 1000000);
    struct tm tm;
    char at[96];
    gmtime_r(&seconds, &tm);
    snprintf(at, sizeof(at), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(at_us % 1000000));
    msgpack_pack_map(pk, 12);
    pack_key(pk, "id");
    msgpack_pack_uint64(pk, (uint64_t)sqlite3_column_int64(stmt, 0));
    pack_key(pk, "at");
    pack_key(pk, at);
    /* Columns 2 to 8 of SELECT_COLUMNS, in order. */
    static const char *const text_columns[] = {"partner", "election", "date",   "area",
                                               "verdict", "article",  "ruleset"};
    for (int i = 0; i < 7; i++) {
        pack_key(pk, text_columns[i]);
        pack_text_column(pk, stmt, 2 + i);
    }
    pack_key(pk, "latency_us");
    msgpack_pack_int64(pk, sqlite3_column_int64(stmt, 9));
    pack_key(pk, "request");
    epcs_buf_append(pk->data, sqlite3_column_blob(stmt, 10),
                    (size_t)sqlite3_column_bytes(stmt, 10));
    pack_key(pk, "answer");
    pack_answer(pk, (uint64_t)sqlite3_column_int64(stmt, 0), sqlite3_column_blob(stmt, 11),
                (size_t)sqlite3_column_bytes(stmt, 11));
}

int epcs_decision_log_query(sqlite3 *reader, const struct epcs_decision_query *query,
                            msgpack_packer *pk, char *err, size_t err_size)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             SELECT_COLUMNS " WHERE decisions.id > ?1 AND (?2 IS NULL OR at_us >= ?2) AND "
                            "(?3 IS NULL OR at_us < ?3) AND (?4 IS NULL OR partner = ?4) AND "
                            "(?5 IS NULL OR area = ?5) AND (?6 IS NULL OR verdict = ?6) AND "
                            "(?7 IS NULL OR election = ?7) ORDER BY decisions.id LIMIT ?8");
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(reader, sql, -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(reader));
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)query->after);
    if (query->from_us)
        sqlite3_bind_int64(stmt, 2, query->from_us);
    if (query->to_us)
        sqlite3_bind_int64(stmt, 3, query->to_us);
    const char *texts[] = {query->partner, query->area, query->verdict, query->election};
    for (int i = 0; i < 4; i++) {
        if (texts[i] != NULL)
            sqlite3_bind_text(stmt, 4 + i, texts[i], -1, SQLITE_STATIC);
    }
    /* One row more than asked tells whether there is a next page. */
    sqlite3_bind_int64(stmt, 8, (sqlite3_int64)query->limit + 1);
    struct epcs_buf rows = {0};
    msgpack_packer row_packer;
    msgpack_packer_init(&row_packer, &rows, epcs_buf_msgpack_write);
    size_t count = 0;
    uint64_t last_id = 0;
    int more = 0, step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == query->limit) {
            more = 1;
            break;
        }
        pack_row(&row_packer, stmt);
        last_id = (uint64_t)sqlite3_column_int64(stmt, 0);
        count++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(reader));
        sqlite3_finalize(stmt);
        epcs_buf_free(&rows);
        return -1;
    }
    sqlite3_finalize(stmt);
    msgpack_pack_map(pk, 2);
    pack_key(pk, "decisions");
    msgpack_pack_array(pk, count);
    epcs_buf_append(pk->data, rows.data, rows.len);
    pack_key(pk, "next");
    if (more)
        msgpack_pack_uint64(pk, last_id);
    else
        msgpack_pack_nil(pk);
    epcs_buf_free(&rows);
    return 0;
}

int epcs_decision_log_get(sqlite3 *reader, uint64_t id, msgpack_packer *pk,
                          struct epcs_buf *request, char *ruleset, size_t ruleset_size, char *date,
                          char *err, size_t err_size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(reader, SELECT_COLUMNS " WHERE decisions.id = ?", -1, &stmt, NULL) !=
        SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(reader));
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        pack_row(pk, stmt);
        if (request != NULL)
            epcs_buf_append(request, sqlite3_column_blob(stmt, 10),
                            (size_t)sqlite3_column_bytes(stmt, 10));
        if (ruleset != NULL)
            snprintf(ruleset, ruleset_size, "%s", (const char *)sqlite3_column_text(stmt, 8));
        if (date != NULL)
            snprintf(date, 11, "%s", (const char *)sqlite3_column_text(stmt, 4));
    } else if (step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(reader));
    }
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? 1 : -1;
}

int epcs_decision_log_recent(sqlite3 *reader, size_t limit,
                             int (*fn)(void *ctx, const void *request, size_t len,
                                       const char *date),
                             void *ctx, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(reader, "SELECT request, date FROM decisions ORDER BY id DESC LIMIT ?",
                           -1, &stmt, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(reader));
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)limit);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (fn(ctx, sqlite3_column_blob(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0),
               (const char *)sqlite3_column_text(stmt, 1)) != 0) {
            snprintf(err, err_size, "a logged check is unreadable");
            sqlite3_finalize(stmt);
            return -1;
        }
    }
    if (step != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(reader));
    sqlite3_finalize(stmt);
    return step == SQLITE_DONE ? 0 : -1;
}
