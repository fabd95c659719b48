/*
 * The decision log: workers encode decisions into per-turn chunks; one writer thread sorts what
 * has queued up by id and stores it as pages of up to PAGE_ENTRIES entries, in one transaction
 * per group. A row per decision with its own index entries cost the writer more CPU than the
 * check itself; a page costs one B-tree insert per few hundred decisions, and queries decode
 * the pages they visit.
 *
 * A page's bytes are appended to <data>/decisions.pages and SQLite (WAL) indexes them: stored
 * as blobs, every byte went through the WAL and again through each checkpoint, whose bursts of
 * copying were what delayed the slowest answers most. The page file is written before the
 * transaction that indexes it commits (and fsync'd first under --audit sync), so an index row
 * never points at bytes a crash of the process can lose.
 *
 * A page cannot be written before its answer goes out: its row points at answers inserted in
 * the same transaction, and bytes no row points at are cut off at start. So in async mode each
 * worker writes the chunk of its loop turn, as the writer reads it, to its own journal with one
 * write(2) before the turn's answers go; at start, entries of journals that the index lacks are
 * queued again (ids never repeat across runs), and a segment is deleted once everything in it is
 * committed. A write that fails is rolled back and retried with the group kept whole; the log
 * meanwhile reports itself stalled and refuses new decisions.
 *
 * This is the decision log's SQLite backend (epcs_decision_log_sqlite, store.h): callers reach
 * it only through the ops, and its reader handles are its read-only connections.
 */
#include "decision_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "files.h"
#include "dates.h"
#include "journal.h"
#include "log.h"
#include "sqlite_store.h"
#include "store.h"

/* Busy readers may hold the database briefly; the writer waits rather than drop a commit. */
#define BUSY_TIMEOUT_MS 5000

/* A page is decoded whole by every query that visits it: small enough to decode quickly,
 * large enough that a busy log writes few rows. */
#define PAGE_ENTRIES 512
#define PAGE_BYTES (256 * 1024)

/*
 * In async mode nobody waits for a commit, so a small group waits up to GATHER_US for company:
 * a transaction costs the same for 5 entries as for 500, and at low load the writer would
 * otherwise commit once per loop turn of every worker.
 */
#define GATHER_ENTRIES 512
/* The async writer's nice value (see writer_main). */
#define WRITER_NICE 5
#define GATHER_US 2000

/* A journal segment is retired for a new one past this size, once the writer has made it. */
#define SEGMENT_BYTES (16 * 1024 * 1024)

/* A stalled journal is retried (by the writer) as a write of this many bytes to the disk. */
#define PROBE_BYTES (64 * 1024)

/* Why the log is stalled: bits of `stalled`. */
enum { STALL_WRITER = 1, STALL_JOURNAL = 2 };

/*
 * A decision's time and id are taken when its verdict is ready, but a batch's decisions get
 * their ids one by one and their time afterwards, so pages (ordered by id) are ordered by time
 * only within the time a batch takes. A query for times
 * before `to` stops at the first page that starts this much later.
 */
#define TIME_SLACK_US (10 * 1000000LL)

/* Entry kinds, the first element of every entry. */
enum { ENTRY_DECISION = 0, ENTRY_EVENT = 1 };

/*
 * Entries as workers hand them over (msgpack arrays):
 *   decision: [0, id, at_us, latency_us, day, verdict, partner, election, area|nil, ruleset,
 *              request (bin: the check's msgpack), answer (bin: the verdict without its id)]
 *   event:    [1, id, at_us, partner, election|nil, event, subject, detail (bin)|nil]
 * In a page a decision's answer is replaced by its row in `answers` and its cited articles:
 *   decision: [0, id, at_us, latency_us, day, verdict, partner, election, area|nil, ruleset,
 *              request (bin), answer_id, article|nil]
 * and an event is stored as handed over.
 */
#define DECISION_FIELDS 12
#define PAGE_DECISION_FIELDS 13
#define EVENT_FIELDS 8

/*
 * In a chunk every entry follows a fixed header with what the writer needs to sort and page
 * it, so the writer never parses the msgpack (unpacking every entry again cost it a fifth of
 * its time). Entries are not aligned: a header is copied in and out with memcpy.
 */
struct entry_header {
    uint64_t id;
    int64_t at_us;
    /* The entry's msgpack bytes, right after the header. */
    uint32_t len;
    uint32_t kind;
    /* Decisions: where the answer's bin header and the answer itself start in those bytes. */
    uint32_t answer_header_at;
    uint32_t answer_at;
};

/*
 * Entries handed to the writer together: one worker's turn, one sync answer, or one event. The
 * writer gives a chunk back for reuse once written (see `spare`).
 */
struct epcs_decision_chunk {
    struct epcs_decision_chunk *next;
    size_t count;
    /* The ticket of the first entry; the others follow it in order. */
    uint64_t first_ticket;
    struct epcs_buf bytes;
};

/*
 * Chunks kept for reuse. A chunk malloc'd by a worker and freed by the writer moved its memory
 * (and malloc's bookkeeping) between cores on every loop turn; reused, a chunk keeps its
 * capacity and no allocator runs. One larger than SPARE_CHUNK_BYTES (a burst) is freed, so
 * spares hold at most 8 MiB.
 */
#define SPARE_CHUNKS 8
#define SPARE_CHUNK_BYTES (1024 * 1024)

struct sqlite_log {
    /* The handle callers hold: this backend's ops. */
    struct epcs_decision_log base;
    enum epcs_audit_mode mode;
    /* The data directory: journal segments live there, and it is fsync'd when they come or go. */
    char dir[4096];
    sqlite3 *db;
    sqlite3_stmt *insert_page;
    /* decisions.pages, and where the next page goes (writer thread only after open). */
    int pages_fd;
    uint64_t pages_end;
    uint64_t run;
    _Atomic uint64_t next_sequence;
    pthread_t writer;
    int writer_started;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* Broadcast after each commit, for epcs_decision_log_wait. */
    pthread_cond_t committed_cond;
    struct epcs_decision_chunk *head, **tail;
    /* Entries in the chunks from head on; `queued` also counts those the writer holds. */
    size_t incoming;
    size_t queued;
    size_t queue_limit;
    uint64_t last_ticket;
    int stopping;
    /* A stage cleared its in-flight mark: held entries may be ready. */
    int released;
    /* The writer holds entries back (its `held`, published under the lock). */
    int holding;
    /* Every worker's stage, so the writer can see which ids are still on their way. */
    struct epcs_decision_stage **lanes;
    size_t lane_count;
    struct epcs_decision_chunk *spare;
    size_t spare_count;

    _Atomic uint64_t committed;
    _Atomic uint64_t written;
    _Atomic uint64_t commits;
    _Atomic uint64_t journal_writes;
    _Atomic uint64_t refused;
    _Atomic int failed;
    /* STALL_* bits while writes fail; `stall_reason` says which write and why (lock held). */
    _Atomic int stalled;
    char stall_reason[256];
    void (*on_commit)(void *ctx);
    void *on_commit_ctx;
    /* Journal segments no stage writes any more, deleted once committed (lock held). */
    struct epcs_journal *retired;
    _Atomic uint64_t next_segment;
    /* Groups are fsync'd until this ticket is committed: entries recovered from journals that
     * are deleted once they are, and pages of earlier runs must never go missing at the end. */
    uint64_t durable_ticket;

    /* Writer thread only. */
    sqlite3_stmt *insert_answer;
    struct known_answer *known;
    /* The slot the previous decision's answer was found in. */
    const struct known_answer *last_answer;
    struct epcs_buf article;
    struct pending *pending;
    size_t pending_cap;
    struct epcs_buf page;
    /* Entries a group could not commit yet (an id below theirs was still on its way). */
    struct epcs_decision_chunk *held;

    /* Read connections for queries on the thread pool. */
    struct epcs_sqlite_pool readers;
    /* What filtered queries learnt of the pages they read whole (see page summaries), an
     * open-addressed table of `summary_slots` slots. */
    pthread_mutex_t summaries_lock;
    struct page_summary *summaries;
    size_t summary_count, summary_slots;
};

/* The highest ticket committed: what answers and the writer's bookkeeping wait for. */
static uint64_t committed_ticket(const struct sqlite_log *log)
{
    return atomic_load_explicit(&log->committed, memory_order_acquire);
}

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

/* Answers the writer has stored this run, by content: most decisions find theirs here. */
#define KNOWN_ANSWER_SLOTS 4096

struct known_answer {
    uint64_t hash;
    int64_t id;
    char *bytes;
    size_t len;
    char *article;
};

/* One entry of a group while the writer sorts it. */
struct pending {
    struct entry_header header;
    uint64_t ticket;
    /* The entry's msgpack bytes as handed over (header.len of them). */
    const char *raw;
};

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

static void pack_key(msgpack_packer *pk, const char *key)
{
    size_t len = strlen(key);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, key, len);
}

static void pack_text_or_nil(msgpack_packer *pk, const char *text)
{
    if (text != NULL)
        pack_key(pk, text);
    else
        msgpack_pack_nil(pk);
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

/* The stored answer with these bytes, found among those known or inserted now. */
static const struct known_answer *store_answer(struct sqlite_log *log, const char *answer,
                                               size_t len)
{
    /* Runs of equal answers are the common case: one memcmp instead of hashing. */
    const struct known_answer *last = log->last_answer;
    if (last != NULL && last->bytes != NULL && last->len == len &&
        memcmp(last->bytes, answer, len) == 0)
        return last;
    uint64_t hash = epcs_hash_bytes(answer, len);
    struct known_answer *known = &log->known[hash & (KNOWN_ANSWER_SLOTS - 1)];
    log->last_answer = known;
    if (known->bytes != NULL && known->hash == hash && known->len == len &&
        memcmp(known->bytes, answer, len) == 0)
        return known;
    sqlite3_stmt *stmt = log->insert_answer;
    sqlite3_reset(stmt);
    sqlite3_bind_blob(stmt, 1, answer, (int)len, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        return NULL;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 1024))
        return NULL;
    cited_articles(&zone, answer, len, &log->article);
    msgpack_zone_destroy(&zone);
    char *bytes = malloc(len ? len : 1);
    char *article = malloc(log->article.len + 1);
    if (bytes == NULL || article == NULL) {
        free(bytes);
        free(article);
        return NULL;
    }
    free(known->bytes);
    free(known->article);
    memcpy(bytes, answer, len);
    /* An answer citing no article (every area's results empty) leaves the buffer unused. */
    if (log->article.len > 0)
        memcpy(article, log->article.data, log->article.len);
    article[log->article.len] = '\0';
    *known = (struct known_answer){.hash = hash,
                                   .id = sqlite3_last_insert_rowid(log->db),
                                   .bytes = bytes,
                                   .len = len,
                                   .article = article};
    return known;
}

static void forget_answers(struct sqlite_log *log)
{
    for (size_t i = 0; log->known != NULL && i < KNOWN_ANSWER_SLOTS; i++) {
        free(log->known[i].bytes);
        free(log->known[i].article);
        log->known[i] = (struct known_answer){0};
    }
}

static uint64_t entry_id(const msgpack_object *entry)
{
    return entry->via.array.ptr[1].via.u64;
}

static int64_t entry_at_us(const msgpack_object *entry)
{
    const msgpack_object *at = &entry->via.array.ptr[2];
    return at->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)at->via.u64 : at->via.i64;
}

static int is_integer(const msgpack_object *value)
{
    return value->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
           value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

/*
 * Whether a page's `entry` has the layout the rest of this file reads without further checks.
 * Only a damaged database fails it.
 */
static int entry_valid(const msgpack_object *entry)
{
    if (entry->type != MSGPACK_OBJECT_ARRAY || entry->via.array.size < 3)
        return 0;
    const msgpack_object *f = entry->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || !is_integer(&f[2]))
        return 0;
    if (f[0].via.u64 == ENTRY_EVENT)
        return entry->via.array.size == EVENT_FIELDS &&
               f[6].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
               (f[7].type == MSGPACK_OBJECT_BIN || f[7].type == MSGPACK_OBJECT_NIL);
    if (f[0].via.u64 != ENTRY_DECISION || entry->via.array.size != PAGE_DECISION_FIELDS)
        return 0;
    return is_integer(&f[3]) && is_integer(&f[4]) && f[9].type == MSGPACK_OBJECT_STR &&
           f[10].type == MSGPACK_OBJECT_BIN && is_integer(&f[11]);
}

static int compare_pending(const void *a, const void *b)
{
    uint64_t x = ((const struct pending *)a)->header.id;
    uint64_t y = ((const struct pending *)b)->header.id;
    return x < y ? -1 : x > y;
}

/* Writes one handed-over entry as a page stores it: the bytes before the answer are copied as
 * they are (re-packing them field by field cost the writer a third of its time). */
static int pack_page_entry(struct sqlite_log *log, msgpack_packer *pk,
                           const struct pending *pending)
{
    const struct entry_header *header = &pending->header;
    if (header->kind == ENTRY_EVENT)
        return epcs_buf_append(&log->page, pending->raw, header->len);
    const struct known_answer *known =
        store_answer(log, pending->raw + header->answer_at, header->len - header->answer_at);
    if (known == NULL)
        return -1;
    /* Both arrays are short enough for a one-byte header. */
    const char array = (char)(0x90 | PAGE_DECISION_FIELDS);
    if (epcs_buf_append(&log->page, &array, 1) != 0 ||
        epcs_buf_append(&log->page, pending->raw + 1, header->answer_header_at - 1) != 0)
        return -1;
    msgpack_pack_int64(pk, known->id);
    pack_text_or_nil(pk, known->article[0] != '\0' ? known->article : NULL);
    return 0;
}

/* Appends the page in log->page to the page file and indexes it. */
static int insert_page(struct sqlite_log *log, const struct pending *from, size_t count, char *err,
                       size_t err_size)
{
    int64_t first_us = from[0].header.at_us, last_us = first_us;
    for (size_t i = 1; i < count; i++) {
        int64_t at = from[i].header.at_us;
        first_us = at < first_us ? at : first_us;
        last_us = at > last_us ? at : last_us;
    }
    for (size_t done = 0; done < log->page.len;) {
        ssize_t wrote = pwrite(log->pages_fd, log->page.data + done, log->page.len - done,
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
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)from[0].header.id);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)from[count - 1].header.id);
    sqlite3_bind_int64(stmt, 3, first_us);
    sqlite3_bind_int64(stmt, 4, last_us);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)count);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)log->pages_end);
    sqlite3_bind_int64(stmt, 7, (sqlite3_int64)log->page.len);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        snprintf(err, err_size, "decisions.db: %s", sqlite3_errmsg(log->db));
        return -1;
    }
    log->pages_end += log->page.len;
    return 0;
}

/* Writes entries [0, count) of log->pending, sorted, as pages. */
static int write_pages(struct sqlite_log *log, size_t count, char *err, size_t err_size)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &log->page, epcs_buf_msgpack_write);
    size_t page_start = 0;
    epcs_buf_reset(&log->page);
    for (size_t i = 0; i < count; i++) {
        if (pack_page_entry(log, &pk, &log->pending[i]) != 0) {
            snprintf(err, err_size, "decisions.db: %s", sqlite3_errmsg(log->db));
            return -1;
        }
        size_t in_page = i + 1 - page_start;
        if (in_page == PAGE_ENTRIES || log->page.len >= PAGE_BYTES || i + 1 == count) {
            if (insert_page(log, log->pending + page_start, in_page, err, err_size) != 0)
                return -1;
            epcs_buf_reset(&log->page);
            page_start = i + 1;
        }
    }
    return 0;
}

static void free_chunks(struct epcs_decision_chunk *chunk)
{
    while (chunk != NULL) {
        struct epcs_decision_chunk *next = chunk->next;
        epcs_buf_free(&chunk->bytes);
        free(chunk);
        chunk = next;
    }
}

/* An empty chunk: a spare one when there is one (lock held), else a new one (NULL: no memory). */
static struct epcs_decision_chunk *take_chunk_locked(struct sqlite_log *log)
{
    struct epcs_decision_chunk *chunk = log->spare;
    if (chunk == NULL)
        return calloc(1, sizeof(*chunk));
    log->spare = chunk->next;
    log->spare_count--;
    chunk->next = NULL;
    chunk->count = 0;
    chunk->first_ticket = 0;
    epcs_buf_reset(&chunk->bytes);
    return chunk;
}

static struct epcs_decision_chunk *take_chunk(struct sqlite_log *log)
{
    pthread_mutex_lock(&log->lock);
    struct epcs_decision_chunk *chunk = take_chunk_locked(log);
    pthread_mutex_unlock(&log->lock);
    return chunk;
}

/* Keeps what of `chunks` fits among the spares (lock held); returns the rest, to be freed. */
static struct epcs_decision_chunk *keep_spares_locked(struct sqlite_log *log,
                                                      struct epcs_decision_chunk *chunks)
{
    struct epcs_decision_chunk *unkept = NULL;
    while (chunks != NULL) {
        struct epcs_decision_chunk *next = chunks->next;
        if (log->spare_count < SPARE_CHUNKS && chunks->bytes.cap <= SPARE_CHUNK_BYTES) {
            chunks->next = log->spare;
            log->spare = chunks;
            log->spare_count++;
        } else {
            chunks->next = unkept;
            unkept = chunks;
        }
        chunks = next;
    }
    return unkept;
}

/* Keeps entries [from, count) of log->pending for the next group, as one chunk whose ticket is
 * the lowest among them: the committed ticket must not pass it. */
static int hold_entries(struct sqlite_log *log, size_t from, size_t count)
{
    struct epcs_decision_chunk *held = calloc(1, sizeof(*held));
    if (held == NULL)
        return -1;
    uint64_t lowest = UINT64_MAX;
    for (size_t i = from; i < count; i++) {
        const struct pending *pending = &log->pending[i];
        lowest = pending->ticket < lowest ? pending->ticket : lowest;
        if (epcs_buf_append(&held->bytes, &pending->header, sizeof(pending->header)) != 0 ||
            epcs_buf_append(&held->bytes, pending->raw, pending->header.len) != 0) {
            free_chunks(held);
            return -1;
        }
    }
    held->count = count - from;
    held->first_ticket = lowest;
    log->held = held;
    return 0;
}

/*
 * Reads the entry at *at (header, then its msgpack bytes) of the *left bytes of a chunk and
 * moves past it; *raw is set to its msgpack bytes. 0, or -1 when the bytes are not an entry as
 * encode_decision and epcs_decision_log_event write them.
 */
static int read_entry(const char **at, size_t *left, struct entry_header *header, const char **raw)
{
    if (*left < sizeof(*header))
        return -1;
    memcpy(header, *at, sizeof(*header));
    const char *bytes = *at + sizeof(*header);
    size_t after = *left - sizeof(*header);
    if (header->len > after || header->len == 0)
        return -1;
    int decision_fits =
        (unsigned char)bytes[0] == (0x90 | DECISION_FIELDS) && header->answer_header_at > 0 &&
        header->answer_header_at < header->answer_at && header->answer_at <= header->len;
    if (header->kind != ENTRY_EVENT && (header->kind != ENTRY_DECISION || !decision_fits))
        return -1;
    *raw = bytes;
    *at = bytes + header->len;
    *left = after - header->len;
    return 0;
}

/* Adds the entries of `chunk` to log->pending, reading only their headers. */
static int gather(struct sqlite_log *log, const struct epcs_decision_chunk *chunk,
                  const struct epcs_decision_chunk *held, size_t *count)
{
    const char *at = chunk->bytes.data;
    size_t left = chunk->bytes.len;
    for (size_t i = 0; i < chunk->count; i++) {
        if (*count == log->pending_cap) {
            size_t cap = log->pending_cap ? log->pending_cap * 2 : 1024;
            struct pending *grown = realloc(log->pending, cap * sizeof(*grown));
            if (grown == NULL)
                return -1;
            log->pending = grown;
            log->pending_cap = cap;
        }
        struct pending *pending = &log->pending[*count];
        if (read_entry(&at, &left, &pending->header, &pending->raw) != 0)
            return -1;
        /* A held chunk's entries all carry its lowest ticket; it only ever holds them back. */
        pending->ticket = chunk->first_ticket + (chunk == held ? 0 : i);
        (*count)++;
    }
    return left == 0 ? 0 : -1;
}

/* Runs `sql` on the writer's connection; 0, or -1 with `err` naming the database. */
static int writer_exec(struct sqlite_log *log, const char *sql, char *err, size_t err_size)
{
    char why[200];
    if (epcs_sqlite_exec(log->db, sql, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, err_size, "decisions.db: %s", why);
    return -1;
}

/*
 * Writes entries [0, ready) of log->pending, sorted, in one transaction. On failure nothing
 * of it stays: the transaction is rolled back, the page file cut back to where it ended (what
 * the failed write took is given back to a full disk), and the answers it inserted forgotten.
 */
static int write_group(struct sqlite_log *log, size_t ready, char *err, size_t err_size)
{
    uint64_t pages_start = log->pages_end;
    if (writer_exec(log, "BEGIN", err, err_size) != 0)
        return -1;
    if (write_pages(log, ready, err, err_size) != 0)
        goto rollback;
    /* A sync answer promises its decision survives a power cut, and so do entries recovered
     * from journals deleted once they are committed: the page must be on the disk before the
     * index that points at it. */
    int durable = log->mode == EPCS_AUDIT_SYNC || committed_ticket(log) < log->durable_ticket;
    if (durable && fdatasync(log->pages_fd) != 0) {
        snprintf(err, err_size, "decisions.pages: %s", strerror(errno));
        goto rollback;
    }
    if (writer_exec(log, "COMMIT", err, err_size) != 0)
        goto rollback;
    atomic_fetch_add(&log->written, ready);
    atomic_fetch_add(&log->commits, 1);
    return 0;
rollback:;
    char ignored[200];
    epcs_sqlite_exec(log->db, "ROLLBACK", ignored, sizeof(ignored));
    /* Answers inserted by the rolled-back transaction are gone from the table, and its pages'
     * bytes are indexed by nothing. */
    forget_answers(log);
    log->pages_end = pages_start;
    int cut = ftruncate(log->pages_fd, (off_t)pages_start);
    (void)cut; /* if not, the next page is written over them */
    return -1;
}

enum group_outcome {
    /* Written, or nothing to write. */
    GROUP_WRITTEN,
    /* Every entry waits for an id still on its way: nothing was tried. */
    GROUP_WAITING,
    /* The write failed; every entry is kept for the next try. */
    GROUP_KEPT,
    /* Out of memory or a damaged queue entry: the entries are gone. */
    GROUP_LOST,
};

/*
 * Writes one group in one transaction: every entry whose id is below `below` (ids of lower
 * value may still be on their way from a worker; those entries wait for the next group).
 * Sets *committed_ticket to the highest ticket on disk after GROUP_WRITTEN or GROUP_WAITING;
 * after GROUP_KEPT `err` says why the write failed. GROUP_LOST is logged here.
 */
static enum group_outcome commit_group(struct sqlite_log *log, struct epcs_decision_chunk *group,
                                       uint64_t below, uint64_t last_ticket,
                                       uint64_t *committed_ticket, char *err, size_t err_size)
{
    size_t count = 0;
    /* Entries of the old held chunk are read in place until written or copied: freed last. */
    struct epcs_decision_chunk *held = log->held;
    log->held = NULL;
    int rc = 0;
    if (held != NULL)
        rc = gather(log, held, held, &count);
    for (const struct epcs_decision_chunk *chunk = group; rc == 0 && chunk != NULL;
         chunk = chunk->next)
        rc = gather(log, chunk, NULL, &count);
    if (rc != 0)
        goto lost;
    /* A pass may bring nothing (a stalled log's retry with no entries): no array yet. */
    if (count > 1)
        qsort(log->pending, count, sizeof(*log->pending), compare_pending);
    size_t ready = 0;
    while (ready < count && log->pending[ready].header.id < below)
        ready++;
    int wrote = ready == 0 || write_group(log, ready, err, err_size) == 0;
    if (!wrote)
        ready = 0;
    if (ready < count && hold_entries(log, ready, count) != 0)
        goto lost;
    *committed_ticket = log->held != NULL ? log->held->first_ticket - 1 : last_ticket;
    free_chunks(held);
    return !wrote ? GROUP_KEPT : ready == 0 && count > 0 ? GROUP_WAITING : GROUP_WRITTEN;
lost:
    epcs_log(EPCS_LOG_ERROR, "decisions",
             "cannot keep %zu decision(s) to write: out of memory or a damaged queue entry; "
             "refusing further checks until restarted",
             count);
    free_chunks(held);
    free_chunks(log->held);
    log->held = NULL;
    return GROUP_LOST;
}

/* Marks the log stalled by `bit` for `what` ("file: why"); logs the first failure of a stall. */
static void set_stall(struct sqlite_log *log, int bit, const char *what)
{
    pthread_mutex_lock(&log->lock);
    int before = atomic_fetch_or(&log->stalled, bit);
    snprintf(log->stall_reason, sizeof(log->stall_reason), "%s", what);
    /* The writer tries a stalled journal again; it may be waiting for work. */
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
    if (before & bit)
        return;
    if (bit == STALL_JOURNAL)
        epcs_log(EPCS_LOG_ERROR, "decisions",
                 "cannot write %s. The answers of that turn get 503, and new decisions are "
                 "refused (503) until the disk takes a write again (tried every %d ms)",
                 what, EPCS_DECISION_LOG_RETRY_MS);
    else
        epcs_log(EPCS_LOG_ERROR, "decisions",
                 "cannot write %s. The decisions are kept and written again every %d ms; new "
                 "decisions are refused (503) until then",
                 what, EPCS_DECISION_LOG_RETRY_MS);
}

static void clear_stall(struct sqlite_log *log, int bit)
{
    pthread_mutex_lock(&log->lock);
    int before = atomic_fetch_and(&log->stalled, ~bit);
    if ((before & ~bit) == 0)
        log->stall_reason[0] = '\0';
    pthread_mutex_unlock(&log->lock);
    if (before & bit)
        epcs_log(EPCS_LOG_INFO, "decisions", "the decision log writes again%s",
                 bit == STALL_JOURNAL ? " (journal)" : "");
}

/* Whether the disk takes a write again: PROBE_BYTES after the page file's end, then cut off
 * (start-up cuts off bytes no page row points at anyway). 0 when it took them. */
static int probe_disk(struct sqlite_log *log)
{
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

/* A new journal segment named after this run; the directory is fsync'd when `sync_dir`. */
static struct epcs_journal *new_segment(struct sqlite_log *log, int sync_dir, char *err,
                                        size_t err_size)
{
    char name[96];
    snprintf(name, sizeof(name), EPCS_JOURNAL_PREFIX "%llu.%llu", (unsigned long long)log->run,
             (unsigned long long)atomic_fetch_add(&log->next_segment, 1));
    return epcs_journal_create(log->dir, name, sync_dir, err, err_size);
}

/* Gives a stage lacking a spare segment `spare` (lock held); 0 when none lacks one. */
static int place_spare_locked(struct sqlite_log *log, struct epcs_journal *spare)
{
    for (size_t i = 0; i < log->lane_count; i++) {
        struct epcs_decision_stage *lane = log->lanes[i];
        if (lane->journal != NULL && atomic_load(&lane->spare) == NULL) {
            atomic_store(&lane->spare, spare);
            return 1;
        }
    }
    return 0;
}

/*
 * Deletes the retired journal segments whose every record is committed, and makes a spare
 * segment for each stage lacking one, so that a worker never creates a file itself. The
 * directory is fsync'd once after either. Writer thread, or close() once the writer stopped.
 */
static void tend_segments(struct sqlite_log *log)
{
    uint64_t committed = committed_ticket(log);
    struct epcs_journal *done = NULL;
    size_t lacking = 0;
    pthread_mutex_lock(&log->lock);
    for (struct epcs_journal **link = &log->retired; *link != NULL;) {
        struct epcs_journal *journal = *link;
        if (journal->last_ticket <= committed) {
            *link = journal->next;
            journal->next = done;
            done = journal;
        } else {
            link = &journal->next;
        }
    }
    for (size_t i = 0; i < log->lane_count; i++)
        lacking += log->lanes[i]->journal != NULL && atomic_load(&log->lanes[i]->spare) == NULL;
    pthread_mutex_unlock(&log->lock);
    int changed = done != NULL;
    while (done != NULL) {
        struct epcs_journal *next = done->next;
        if (epcs_journal_delete(done) != 0 && errno != ENOENT)
            epcs_log(EPCS_LOG_WARN, "decisions", "cannot delete a written journal segment: %s",
                     strerror(errno));
        done = next;
    }
    char err[256];
    struct epcs_journal *spare;
    /* On a full disk this fails; the next pass tries again, and the stage keeps its segment. */
    for (; lacking > 0 && (spare = new_segment(log, 0, err, sizeof(err))) != NULL; lacking--) {
        changed = 1;
        pthread_mutex_lock(&log->lock);
        int placed = place_spare_locked(log, spare);
        pthread_mutex_unlock(&log->lock);
        if (!placed)
            epcs_journal_delete(spare);
    }
    if (changed && epcs_file_sync_dir(log->dir) != 0)
        epcs_log(EPCS_LOG_WARN, "decisions", "cannot fsync %s: %s", log->dir, strerror(errno));
}

/* The lowest id a worker has taken but not yet handed over; UINT64_MAX when none. Called
 * with the lock held, so a stage cannot hand over its entries and clear its mark unseen. */
static uint64_t lowest_in_flight(const struct sqlite_log *log)
{
    uint64_t lowest = UINT64_MAX;
    for (size_t i = 0; i < log->lane_count; i++) {
        uint64_t taken = atomic_load(&log->lanes[i]->in_flight);
        if (taken != 0 && taken < lowest)
            lowest = taken;
    }
    return lowest;
}

static void deadline_in(struct timespec *until, long us)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += us / 1000000;
    until->tv_nsec += (us % 1000000) * 1000L;
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

/* What the writer takes from the queue for one pass. */
struct writer_pass {
    struct epcs_decision_chunk *group;
    uint64_t last_ticket;
    uint64_t below;
    int stopping;
};

/* Waits for something to do (a stalled log tries again every EPCS_DECISION_LOG_RETRY_MS) and
 * takes the queue. */
static void writer_take(struct sqlite_log *log, struct writer_pass *pass)
{
    pthread_mutex_lock(&log->lock);
    struct timespec until;
    deadline_in(&until, EPCS_DECISION_LOG_RETRY_MS * 1000L);
    while (log->head == NULL && !log->stopping && !(log->held != NULL && log->released)) {
        if (!atomic_load(&log->stalled))
            pthread_cond_wait(&log->wake, &log->lock);
        else if (pthread_cond_timedwait(&log->wake, &log->lock, &until) != 0)
            break;
    }
    if (log->mode == EPCS_AUDIT_ASYNC && log->incoming < GATHER_ENTRIES &&
        !atomic_load(&log->stalled)) {
        deadline_in(&until, GATHER_US);
        while (!log->stopping && log->incoming < GATHER_ENTRIES &&
               pthread_cond_timedwait(&log->wake, &log->lock, &until) == 0)
            ;
    }
    pass->group = log->head;
    pass->last_ticket = log->last_ticket;
    pass->stopping = log->stopping;
    /* At shutdown the workers have stopped: nothing is on its way any more. */
    pass->below = pass->stopping ? UINT64_MAX : lowest_in_flight(log);
    log->head = NULL;
    log->tail = &log->head;
    log->incoming = 0;
    log->released = 0;
    pthread_mutex_unlock(&log->lock);
}

/* One try at writing the pass's group and what is held; the stall follows the outcome. */
static enum group_outcome writer_write(struct sqlite_log *log, const struct writer_pass *pass)
{
    if (atomic_load(&log->failed))
        return GROUP_LOST;
    char err[256] = "";
    uint64_t committed = 0;
    enum group_outcome outcome = commit_group(log, pass->group, pass->below, pass->last_ticket,
                                              &committed, err, sizeof(err));
    if (outcome == GROUP_WRITTEN || outcome == GROUP_WAITING)
        atomic_store_explicit(&log->committed, committed, memory_order_release);
    if (outcome == GROUP_WRITTEN)
        clear_stall(log, STALL_WRITER);
    else if (outcome == GROUP_KEPT)
        set_stall(log, STALL_WRITER, err);
    else if (outcome == GROUP_LOST)
        atomic_store(&log->failed, 1);
    if ((atomic_load(&log->stalled) & STALL_JOURNAL) && probe_disk(log) == 0)
        clear_stall(log, STALL_JOURNAL);
    return outcome;
}

static void *writer_main(void *arg)
{
    struct sqlite_log *log = arg;
    /*
     * In async mode no answer waits for this thread, and on a machine as small as two cores it
     * competes with the event loops: it runs at a lower priority, so answers go first and the
     * queue takes up the slack. Under sync the answers wait for its commits; it stays as is.
     */
    if (log->mode == EPCS_AUDIT_ASYNC &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WRITER_NICE) != 0)
        epcs_log(EPCS_LOG_DEBUG, "decisions", "the writer keeps its priority: %s", strerror(errno));
    for (;;) {
        struct writer_pass pass;
        writer_take(log, &pass);
        if (pass.group == NULL && log->held == NULL && pass.stopping)
            break;
        size_t taken = log->held != NULL ? log->held->count : 0;
        for (const struct epcs_decision_chunk *chunk = pass.group; chunk != NULL;
             chunk = chunk->next)
            taken += chunk->count;
        enum group_outcome outcome = writer_write(log, &pass);
        pthread_mutex_lock(&log->lock);
        struct epcs_decision_chunk *unkept = keep_spares_locked(log, pass.group);
        /* Held entries stay counted until written. */
        log->queued -= taken - (log->held != NULL ? log->held->count : 0);
        log->holding = log->held != NULL;
        pthread_cond_broadcast(&log->committed_cond);
        pthread_mutex_unlock(&log->lock);
        free_chunks(unkept);
        tend_segments(log);
        if (log->on_commit != NULL)
            log->on_commit(log->on_commit_ctx);
        if (pass.stopping && outcome == GROUP_KEPT) {
            /* Shutting down on a disk that takes nothing: the journals keep what was answered
             * in async mode, and the next start writes it. */
            epcs_log(EPCS_LOG_ERROR, "decisions",
                     "stopping with %zu decision(s) and event(s) unwritten", log->held->count);
            break;
        }
    }
    return NULL;
}

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

/* ---- recovery from the journals ----------------------------------------------------------- */

static uint64_t enqueue_locked(struct sqlite_log *log, struct epcs_decision_chunk *chunk,
                               struct epcs_decision_stage *stage);

/* Entries of journals being read at start, and those of them the index lacks. */
struct recovery {
    sqlite3_stmt *lookup;
    struct epcs_decision_chunk *chunk;
    size_t seen;
    const char *path;
    char *err;
    size_t err_size;
};

/*
 * Whether the index holds entry `id`: 1, 0, or -1 after an error. Pages are written in id
 * order, each holding every entry of its range (an id on its way holds back all above it),
 * so an id inside a page's range is in that page.
 */
static int indexed(sqlite3_stmt *lookup, uint64_t id)
{
    sqlite3_reset(lookup);
    sqlite3_bind_int64(lookup, 1, (sqlite3_int64)id);
    int step = sqlite3_step(lookup);
    if (step == SQLITE_DONE)
        return 0;
    return step == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(lookup, 0) >= id : -1;
}

/* epcs_journal_read's callback: copies the record's entries the index lacks. */
static int recover_record(void *ctx, const char *payload, size_t len, uint32_t count)
{
    struct recovery *recovery = ctx;
    const char *at = payload;
    size_t left = len;
    for (uint32_t i = 0; i < count; i++) {
        const char *start = at, *raw;
        struct entry_header header;
        if (read_entry(&at, &left, &header, &raw) != 0) {
            snprintf(recovery->err, recovery->err_size,
                     "%s holds a damaged entry: move it aside (nothing was changed)",
                     recovery->path);
            return -1;
        }
        int known = indexed(recovery->lookup, header.id);
        if (known < 0) {
            snprintf(recovery->err, recovery->err_size, "decisions.db: %s",
                     sqlite3_errmsg(sqlite3_db_handle(recovery->lookup)));
            return -1;
        }
        recovery->seen++;
        if (!known) {
            if (epcs_buf_append(&recovery->chunk->bytes, start, (size_t)(at - start)) != 0) {
                snprintf(recovery->err, recovery->err_size, "out of memory");
                return -1;
            }
            recovery->chunk->count++;
        }
    }
    return 0;
}

/* Reads journal segment `name` into `recovery`; 0, or -1 with the error filled. */
static int recover_segment(struct sqlite_log *log, struct recovery *recovery, const char *name)
{
    char path[4096 + 300];
    snprintf(path, sizeof(path), "%s/%s", log->dir, name);
    recovery->path = path;
    size_t torn = 0;
    if (epcs_journal_read(path, recover_record, recovery, &torn, recovery->err,
                          recovery->err_size) != 0)
        return -1;
    if (torn > 0)
        epcs_log(EPCS_LOG_WARN, "decisions",
                 "%s ends in %zu byte(s) of a record the process did not finish writing (their "
                 "answers were never sent): ignored",
                 path, torn);
    struct epcs_journal *journal = epcs_journal_named(path);
    if (journal == NULL) {
        snprintf(recovery->err, recovery->err_size, "out of memory");
        return -1;
    }
    journal->next = log->retired;
    log->retired = journal;
    return 0;
}

/*
 * Queues the entries of the journals an earlier run left behind that the index lacks: their
 * answers were sent, and the process stopped before the writer committed them. The segments
 * are retired, to be deleted once those entries are committed (at once when there are none).
 */
static int recover_journals(struct sqlite_log *log, char *err, size_t err_size)
{
    struct recovery recovery = {.err = err, .err_size = err_size};
    DIR *dir = opendir(log->dir);
    if (dir == NULL) {
        snprintf(err, err_size, "%s: %s", log->dir, strerror(errno));
        return -1;
    }
    int rc = -1;
    recovery.chunk = calloc(1, sizeof(*recovery.chunk));
    if (recovery.chunk == NULL ||
        sqlite3_prepare_v2(log->db,
                           "SELECT last_id FROM pages WHERE first_id <= ?1 ORDER BY first_id DESC "
                           "LIMIT 1",
                           -1, &recovery.lookup, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "decisions.db: %s", sqlite3_errmsg(log->db));
        goto done;
    }
    const struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, EPCS_JOURNAL_PREFIX, strlen(EPCS_JOURNAL_PREFIX)) == 0 &&
            recover_segment(log, &recovery, entry->d_name) != 0)
            goto done;
    }
    rc = 0;
    if (recovery.chunk->count == 0)
        goto done;
    pthread_mutex_lock(&log->lock);
    uint64_t last = enqueue_locked(log, recovery.chunk, NULL);
    pthread_mutex_unlock(&log->lock);
    log->durable_ticket = last;
    for (struct epcs_journal *journal = log->retired; journal != NULL; journal = journal->next)
        journal->last_ticket = last;
    epcs_log(EPCS_LOG_WARN, "decisions",
             "%zu of the %zu entries in the journals of an earlier run were answered but not yet "
             "written when it stopped: queued again",
             recovery.chunk->count, recovery.seen);
    recovery.chunk = NULL;
done:
    free_chunks(recovery.chunk);
    sqlite3_finalize(recovery.lookup);
    closedir(dir);
    return rc;
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
static int start_run(struct sqlite_log *log, const char *path, char *err, size_t err_size)
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
    log->run = (uint64_t)sqlite3_last_insert_rowid(log->db);
    atomic_init(&log->next_sequence, 1);
    atomic_init(&log->next_segment, 1);
    return 0;
}

static void sqlite_log_close(struct epcs_decision_log *handle);

static struct epcs_decision_log *sqlite_log_open(const char *data_dir, enum epcs_audit_mode mode,
                                                 size_t queue_limit, char *err, size_t err_size)
{
    struct sqlite_log *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    log->base.ops = &epcs_decision_log_sqlite;
    log->mode = mode;
    log->queue_limit = queue_limit;
    log->tail = &log->head;
    log->pages_fd = -1;
    snprintf(log->dir, sizeof(log->dir), "%s", data_dir);
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->wake, NULL);
    pthread_cond_init(&log->committed_cond, NULL);
    pthread_mutex_init(&log->summaries_lock, NULL);
    char path[4200], pages[4200];
    db_path(data_dir, path, sizeof(path));
    epcs_sqlite_pool_init(&log->readers, path, BUSY_TIMEOUT_MS);
    pages_path(path, pages, sizeof(pages));
    /* New files' directory entries are made durable too, or a power cut could take them. */
    int fresh = access(path, F_OK) != 0 || access(pages, F_OK) != 0;
    if (open_database(log, path, err, err_size) != 0 || open_pages(log, path, err, err_size) != 0)
        goto fail;
    if (fresh && epcs_file_sync_dir(data_dir) != 0) {
        snprintf(err, err_size, "%s: %s", data_dir, strerror(errno));
        goto fail;
    }
    log->known = calloc(KNOWN_ANSWER_SLOTS, sizeof(*log->known));
    if (log->known == NULL) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    if (start_run(log, path, err, err_size) != 0 || recover_journals(log, err, err_size) != 0)
        goto fail;
    /* Segments with nothing the index lacks go now. */
    tend_segments(log);
    if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
        snprintf(err, err_size, "cannot start the decision log writer");
        goto fail;
    }
    log->writer_started = 1;
    return &log->base;
fail:
    sqlite_log_close(&log->base);
    return NULL;
}

static void sqlite_log_close(struct epcs_decision_log *handle)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    if (log == NULL)
        return;
    if (log->writer_started) {
        pthread_mutex_lock(&log->lock);
        log->stopping = 1;
        pthread_cond_signal(&log->wake);
        pthread_mutex_unlock(&log->lock);
        pthread_join(log->writer, NULL);
        /* What the writer committed last may free more segments. */
        tend_segments(log);
    }
    /* Segments still holding entries not written (a disk that took nothing) stay for the next
     * start; so do all of a log that failed to open, whose journals were not read whole. */
    size_t kept = 0;
    while (log->retired != NULL) {
        struct epcs_journal *next = log->retired->next;
        epcs_journal_close(log->retired);
        log->retired = next;
        kept++;
    }
    if (kept > 0 && log->writer_started)
        epcs_log(EPCS_LOG_WARN, "decisions",
                 "%zu journal segment(s) kept: they hold answered decisions not yet written, "
                 "which the next start writes",
                 kept);
    sqlite3_finalize(log->insert_page);
    sqlite3_finalize(log->insert_answer);
    sqlite3_close(log->db);
    if (log->pages_fd >= 0)
        close(log->pages_fd);
    forget_answers(log);
    free(log->known);
    free(log->pending);
    free_chunks(log->held);
    free_chunks(log->head);
    free_chunks(log->spare);
    free(log->lanes);
    epcs_buf_free(&log->article);
    epcs_buf_free(&log->page);
    epcs_sqlite_pool_dispose(&log->readers);
    free(log->summaries);
    pthread_mutex_destroy(&log->summaries_lock);
    pthread_cond_destroy(&log->wake);
    pthread_cond_destroy(&log->committed_cond);
    pthread_mutex_destroy(&log->lock);
    free(log);
}

static enum epcs_audit_mode sqlite_log_mode(const struct epcs_decision_log *handle)
{
    const struct sqlite_log *log = (const struct sqlite_log *)handle;
    return log != NULL ? log->mode : EPCS_AUDIT_OFF;
}

static uint64_t sqlite_log_committed(const struct epcs_decision_log *handle)
{
    return committed_ticket((const struct sqlite_log *)handle);
}

static int sqlite_log_wait(struct epcs_decision_log *handle, uint64_t ticket)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    if (log == NULL || ticket == 0)
        return 0;
    pthread_mutex_lock(&log->lock);
    /* The writer broadcasts after every try, so a stalled log is looked at that often. */
    int64_t stalled_since = 0;
    while (committed_ticket(log) < ticket && !atomic_load(&log->failed)) {
        int64_t now = epcs_clock_ns(CLOCK_MONOTONIC) / 1000000;
        if (!atomic_load(&log->stalled))
            stalled_since = 0;
        else if (stalled_since == 0)
            stalled_since = now;
        else if (now - stalled_since >= EPCS_DECISION_LOG_STALL_WAIT_MS)
            break;
        struct timespec until;
        deadline_in(&until, EPCS_DECISION_LOG_RETRY_MS * 1000L);
        pthread_cond_timedwait(&log->committed_cond, &log->lock, &until);
    }
    int committed = committed_ticket(log) >= ticket;
    pthread_mutex_unlock(&log->lock);
    return committed ? 0 : -1;
}

static void sqlite_log_on_commit(struct epcs_decision_log *handle, void (*fn)(void *ctx), void *ctx)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    log->on_commit = fn;
    log->on_commit_ctx = ctx;
}

static void sqlite_log_stats(struct epcs_decision_log *handle,
                             struct epcs_decision_log_stats *stats)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    pthread_mutex_lock(&log->lock);
    stats->queued = log->queued;
    stats->stalled = atomic_load(&log->stalled) != 0;
    snprintf(stats->reason, sizeof(stats->reason), "%s", stats->stalled ? log->stall_reason : "");
    pthread_mutex_unlock(&log->lock);
    stats->queue_limit = log->queue_limit;
    stats->written = atomic_load(&log->written);
    stats->commits = atomic_load(&log->commits);
    stats->journal_writes = atomic_load(&log->journal_writes);
    stats->refused = atomic_load(&log->refused);
    stats->failed = atomic_load(&log->failed);
    if (stats->failed)
        snprintf(stats->reason, sizeof(stats->reason),
                 "decisions were lost to a lack of memory or a damaged queue entry");
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

/* Starts an entry in `out`: room for its header, filled in by finish_entry. */
static size_t begin_entry(struct epcs_buf *out)
{
    static const struct entry_header blank;
    size_t at = out->len;
    return epcs_buf_append(out, &blank, sizeof(blank)) == 0 ? at : SIZE_MAX;
}

static void finish_entry(struct epcs_buf *out, size_t at, struct entry_header *header)
{
    header->len = (uint32_t)(out->len - at - sizeof(*header));
    memcpy(out->data + at, header, sizeof(*header));
}

/*
 * Writes msgpack into room reserved beforehand. A decision is a dozen small fields, and a
 * packer callback with its own bounds check per field cost more than writing the bytes.
 */
struct cursor {
    char *at;
};

/* The most bytes a number, or a string's or bin's header, takes. */
#define MAX_HEAD 9

static void put_raw(struct cursor *c, const void *bytes, size_t len)
{
    if (len > 0)
        memcpy(c->at, bytes, len);
    c->at += len;
}

static void put_tagged(struct cursor *c, unsigned char tag, uint64_t value, int width)
{
    *c->at++ = (char)tag;
    for (int i = width - 1; i >= 0; i--)
        *c->at++ = (char)(value >> (8 * i));
}

static void put_uint(struct cursor *c, uint64_t value)
{
    if (value < 0x80)
        *c->at++ = (char)value;
    else if (value <= UINT8_MAX)
        put_tagged(c, 0xcc, value, 1);
    else if (value <= UINT16_MAX)
        put_tagged(c, 0xcd, value, 2);
    else if (value <= UINT32_MAX)
        put_tagged(c, 0xce, value, 4);
    else
        put_tagged(c, 0xcf, value, 8);
}

static void put_int(struct cursor *c, int64_t value)
{
    if (value >= 0)
        put_uint(c, (uint64_t)value);
    else if (value >= -32)
        *c->at++ = (char)value;
    else if (value >= INT8_MIN)
        put_tagged(c, 0xd0, (uint64_t)value, 1);
    else if (value >= INT16_MIN)
        put_tagged(c, 0xd1, (uint64_t)value, 2);
    else if (value >= INT32_MIN)
        put_tagged(c, 0xd2, (uint64_t)value, 4);
    else
        put_tagged(c, 0xd3, (uint64_t)value, 8);
}

/* A length behind one of three consecutive tags, for 8-, 16- and 32-bit lengths (str 8 is
 * 0xd9, bin 8 is 0xc4). */
static void put_length(struct cursor *c, unsigned char tag8, size_t len)
{
    if (len <= UINT8_MAX)
        put_tagged(c, tag8, len, 1);
    else if (len <= UINT16_MAX)
        put_tagged(c, (unsigned char)(tag8 + 1), len, 2);
    else
        put_tagged(c, (unsigned char)(tag8 + 2), len, 4);
}

static void put_str(struct cursor *c, const char *text, size_t len)
{
    if (len < 32)
        *c->at++ = (char)(0xa0 | len);
    else
        put_length(c, 0xd9, len);
    put_raw(c, text, len);
}

static void put_bin_header(struct cursor *c, size_t len)
{
    put_length(c, 0xc4, len);
}

/*
 * Packs one decision as the writer takes it (see the entry layout at the top). A check that
 * has no bytes of its own is packed straight into `out` behind a bin header patched
 * afterwards, saving a copy.
 */
static int encode_decision(struct epcs_buf *out, const struct epcs_decision *decision,
                           const char *partner, int64_t at_us)
{
    enum { TEXTS = 5 };
    const char *texts[TEXTS] = {epcs_verdict_name(decision->verdict), partner, decision->election,
                                decision->area, decision->ruleset};
    size_t lens[TEXTS];
    size_t room = sizeof(struct entry_header) + 1 + 5 * MAX_HEAD + MAX_HEAD;
    for (int i = 0; i < TEXTS; i++) {
        lens[i] = texts[i] != NULL ? strlen(texts[i]) : 0;
        room += MAX_HEAD + lens[i];
    }
    if (decision->check_msgpack != NULL)
        room += decision->check_len;
    if (epcs_buf_reserve(out, room) != 0)
        return -1;
    size_t header_at = out->len, start = header_at + sizeof(struct entry_header);
    struct cursor c = {out->data + start};
    *c.at++ = (char)(0x90 | DECISION_FIELDS);
    put_uint(&c, ENTRY_DECISION);
    put_uint(&c, decision->id);
    put_int(&c, at_us);
    put_uint(&c, decision->latency_us);
    put_int(&c, decision->date);
    for (int i = 0; i < TEXTS; i++) {
        /* Only the area may be missing (every area answered). */
        if (texts[i] == NULL)
            *c.at++ = (char)0xc0;
        else
            put_str(&c, texts[i], lens[i]);
    }
    if (decision->check_msgpack != NULL) {
        put_bin_header(&c, decision->check_len);
        put_raw(&c, decision->check_msgpack, decision->check_len);
        out->len = (size_t)(c.at - out->data);
    } else {
        static const char bin32[5] = {(char)0xc6, 0, 0, 0, 0};
        out->len = (size_t)(c.at - out->data);
        size_t bin_at = out->len;
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
        if (epcs_buf_append(out, bin32, sizeof(bin32)) != 0 ||
            msgpack_pack_object(&pk, *decision->check) != 0)
            return -1;
        size_t request_len = out->len - bin_at - sizeof(bin32);
        for (int i = 0; i < 4; i++)
            out->data[bin_at + 1 + i] = (char)(request_len >> (24 - 8 * i));
    }
    struct small_buf answer_header = {.len = 0};
    size_t entries_at = 0, entries_end = decision->verdict_len;
    if (strip_decision(decision->verdict_msgpack, decision->verdict_len, decision->id,
                       &answer_header, &entries_at, &entries_end) != 0)
        answer_header.len = 0;
    size_t answer_len = answer_header.len + entries_end - entries_at;
    if (epcs_buf_reserve(out, MAX_HEAD + answer_len) != 0)
        return -1;
    struct entry_header header = {.id = decision->id, .at_us = at_us, .kind = ENTRY_DECISION};
    c.at = out->data + out->len;
    header.answer_header_at = (uint32_t)(out->len - start);
    put_bin_header(&c, answer_len);
    header.answer_at = (uint32_t)((size_t)(c.at - out->data) - start);
    put_raw(&c, answer_header.data, answer_header.len);
    put_raw(&c, decision->verdict_msgpack + entries_at, entries_end - entries_at);
    out->len = (size_t)(c.at - out->data);
    finish_entry(out, header_at, &header);
    return 0;
}

/* Encodes `count` decisions at the end of `out`, all or none. */
static int encode_decisions(struct epcs_buf *out, const struct epcs_decision *decisions,
                            size_t count, const char *partner)
{
    size_t before = out->len;
    int64_t now = 0;
    for (size_t i = 0; i < count; i++) {
        int64_t at_us = decisions[i].at_us;
        if (at_us == 0)
            at_us = now != 0 ? now : (now = epcs_now_us());
        if (encode_decision(out, &decisions[i], partner, at_us) != 0) {
            out->len = before;
            return -1;
        }
    }
    return 0;
}

/* Queues `chunk` (or only forgets the stage's mark when NULL). Called with the lock held. */
static uint64_t enqueue_locked(struct sqlite_log *log, struct epcs_decision_chunk *chunk,
                               struct epcs_decision_stage *stage)
{
    /* The writer is woken only when it has something new to act on: a first chunk, a full
     * group, or held entries that may now go. A signal per loop turn of every worker cost
     * more than the writing itself at low load. */
    int wake = 0;
    if (chunk != NULL) {
        chunk->first_ticket = log->last_ticket + 1;
        log->last_ticket += chunk->count;
        *log->tail = chunk;
        log->tail = &chunk->next;
        log->queued += chunk->count;
        size_t before = log->incoming;
        log->incoming += chunk->count;
        wake = before == 0 || (before < GATHER_ENTRIES && log->incoming >= GATHER_ENTRIES);
    }
    if (stage != NULL && atomic_load(&stage->in_flight) != 0) {
        atomic_store(&stage->in_flight, 0);
        log->released = 1;
        wake |= log->holding;
    }
    if (wake)
        pthread_cond_signal(&log->wake);
    return log->last_ticket;
}

static int sqlite_log_attach(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                             char *err, size_t err_size)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    stage->record = 1;
    stage->journaled = 0;
    if (log->mode == EPCS_AUDIT_ASYNC &&
        (stage->journal = new_segment(log, 1, err, err_size)) == NULL)
        return -1;
    pthread_mutex_lock(&log->lock);
    struct epcs_decision_stage **lanes =
        realloc(log->lanes, (log->lane_count + 1) * sizeof(*log->lanes));
    if (lanes != NULL) {
        log->lanes = lanes;
        log->lanes[log->lane_count++] = stage;
    }
    pthread_mutex_unlock(&log->lock);
    if (lanes != NULL)
        return 0;
    snprintf(err, err_size, "out of memory");
    epcs_journal_delete(stage->journal);
    stage->journal = NULL;
    return -1;
}

/* Puts `journal` (NULL: none) among the segments deleted once `last_ticket` is committed.
 * Lock held. */
static void retire_locked(struct sqlite_log *log, struct epcs_journal *journal)
{
    if (journal == NULL)
        return;
    journal->next = log->retired;
    log->retired = journal;
}

static int sqlite_log_flush(struct epcs_decision_log *handle, struct epcs_decision_stage *stage);

static void sqlite_log_detach(struct epcs_decision_log *handle, struct epcs_decision_stage *stage)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    sqlite_log_flush(&log->base, stage);
    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; i < log->lane_count; i++) {
        if (log->lanes[i] == stage) {
            log->lanes[i] = log->lanes[--log->lane_count];
            break;
        }
    }
    retire_locked(log, stage->journal);
    retire_locked(log, atomic_exchange(&stage->spare, NULL));
    pthread_mutex_unlock(&log->lock);
    stage->journal = NULL;
    free_chunks(stage->open);
    stage->open = NULL;
}

static uint64_t sqlite_log_next_id(struct epcs_decision_log *handle,
                                   struct epcs_decision_stage *stage)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    /* The mark goes up before the id is taken, so the writer never misses an id on its way. */
    if (stage != NULL && atomic_load(&stage->in_flight) == 0)
        atomic_store(&stage->in_flight,
                     log->run << 32 | (atomic_load(&log->next_sequence) & 0xffffffffu));
    return log->run << 32 | (atomic_fetch_add(&log->next_sequence, 1) & 0xffffffffu);
}

/* Whether new entries may come: not while a write fails, nor after a failure. */
static int accepting(const struct sqlite_log *log)
{
    return !atomic_load(&log->failed) && !atomic_load(&log->stalled);
}

static int sqlite_log_append(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                             const struct epcs_decision *decisions, size_t count,
                             const char *partner, uint64_t *ticket)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    *ticket = 0;
    if (!accepting(log))
        goto refuse;
    struct epcs_decision_chunk *chunk = NULL;
    if (count > 0) {
        if ((chunk = take_chunk(log)) == NULL)
            goto refuse;
        chunk->count = count;
        if (encode_decisions(&chunk->bytes, decisions, count, partner) != 0) {
            free_chunks(chunk);
            goto refuse;
        }
    }
    pthread_mutex_lock(&log->lock);
    if (log->queued + count > log->queue_limit) {
        enqueue_locked(log, NULL, stage);
        pthread_mutex_unlock(&log->lock);
        free_chunks(chunk);
        goto refuse;
    }
    uint64_t last = enqueue_locked(log, chunk, stage);
    pthread_mutex_unlock(&log->lock);
    *ticket = count > 0 ? last : 0;
    return 0;
refuse:
    atomic_fetch_add(&log->refused, count);
    return -1;
}

static int sqlite_log_stage(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                            const struct epcs_decision *decisions, size_t count,
                            const char *partner)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    if (!accepting(log))
        goto refuse;
    pthread_mutex_lock(&log->lock);
    size_t queued = log->queued;
    pthread_mutex_unlock(&log->lock);
    if (stage->open == NULL && (stage->open = calloc(1, sizeof(*stage->open))) == NULL)
        goto refuse;
    /* All or none: a check answered 503 must leave nothing on record. */
    if (queued + stage->open->count + count > log->queue_limit ||
        encode_decisions(&stage->open->bytes, decisions, count, partner) != 0)
        goto refuse;
    stage->open->count += count;
    return 0;
refuse:
    atomic_fetch_add(&log->refused, count);
    return -1;
}

/*
 * Writes the turn's chunk to the stage's journal as record stage->record. On failure the
 * chunk's decisions are dropped (their answers get 503) and the log stalls. 0 or -1.
 */
static int journal_turn(struct sqlite_log *log, struct epcs_decision_stage *stage,
                        struct epcs_decision_chunk *chunk)
{
    char err[256];
    uint64_t record = stage->record++;
    if (epcs_journal_append(stage->journal, chunk->bytes.data, chunk->bytes.len,
                            (uint32_t)chunk->count, err, sizeof(err)) == 0) {
        stage->journaled = record;
        atomic_fetch_add_explicit(&log->journal_writes, 1, memory_order_relaxed);
        return 0;
    }
    atomic_fetch_add(&log->refused, chunk->count);
    chunk->count = 0;
    epcs_buf_reset(&chunk->bytes);
    set_stall(log, STALL_JOURNAL, err);
    return -1;
}

/* After a record of tickets up to `last` went to the stage's journal: a segment grown past
 * SEGMENT_BYTES is retired for the spare the writer made, if it has. Lock held. */
static void rotate_locked(struct sqlite_log *log, struct epcs_decision_stage *stage, uint64_t last)
{
    stage->journal->last_ticket = last;
    if (stage->journal->size < SEGMENT_BYTES)
        return;
    struct epcs_journal *spare = atomic_exchange(&stage->spare, NULL);
    if (spare == NULL)
        return;
    retire_locked(log, stage->journal);
    stage->journal = spare;
}

static int sqlite_log_flush(struct epcs_decision_log *handle, struct epcs_decision_stage *stage)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    struct epcs_decision_chunk *full = stage->open;
    if (full != NULL && full->count == 0)
        full = NULL;
    if (full == NULL && atomic_load(&stage->in_flight) == 0)
        return 0;
    int rc = 0;
    if (full != NULL && stage->journal != NULL && journal_turn(log, stage, full) != 0) {
        full = NULL;
        rc = -1;
    }
    pthread_mutex_lock(&log->lock);
    uint64_t last = enqueue_locked(log, full, stage);
    /* The stage's next chunk is taken now, under the lock already held; NULL (out of memory)
     * is tried again by the next epcs_decision_log_stage. */
    if (full != NULL) {
        stage->open = take_chunk_locked(log);
        if (stage->journal != NULL)
            rotate_locked(log, stage, last);
    }
    pthread_mutex_unlock(&log->lock);
    return rc;
}

/* One case event as the log stores it: epcs_decision_log_event packs it with the id it takes,
 * epcs_decision_log_forward with the id and time the case store gave it. */
static int encode_event(struct epcs_buf *out, const struct epcs_decision_event *event)
{
    struct entry_header header = {.id = event->id, .at_us = event->at_us, .kind = ENTRY_EVENT};
    size_t header_at = begin_entry(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    int packed = header_at != SIZE_MAX && msgpack_pack_array(&pk, EVENT_FIELDS) == 0 &&
                 msgpack_pack_uint8(&pk, ENTRY_EVENT) == 0 &&
                 msgpack_pack_uint64(&pk, event->id) == 0 &&
                 msgpack_pack_int64(&pk, event->at_us) == 0;
    pack_key(&pk, event->partner);
    pack_text_or_nil(&pk, event->election);
    pack_key(&pk, event->event);
    packed = packed && msgpack_pack_uint64(&pk, event->subject) == 0;
    if (event->detail != NULL)
        packed = packed && msgpack_pack_bin(&pk, event->detail_len) == 0 &&
                 msgpack_pack_bin_body(&pk, event->detail, event->detail_len) == 0;
    else
        packed = packed && msgpack_pack_nil(&pk) == 0;
    if (!packed)
        return -1;
    finish_entry(out, header_at, &header);
    return 0;
}

static int sqlite_log_event(struct epcs_decision_log *handle, const char *partner,
                            const char *event, const char *election, uint64_t subject,
                            const char *detail, size_t detail_len, uint64_t *id, uint64_t *ticket)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    *id = 0;
    if (ticket != NULL)
        *ticket = 0;
    if (log == NULL)
        return 0;
    if (!accepting(log))
        goto refuse;
    /* The id is taken under the lock that queues the event, so no later id can reach the
     * writer before it. */
    pthread_mutex_lock(&log->lock);
    struct epcs_decision_chunk *chunk = NULL;
    if (log->queued + 1 > log->queue_limit || (chunk = take_chunk_locked(log)) == NULL) {
        pthread_mutex_unlock(&log->lock);
        goto refuse;
    }
    uint64_t event_id = sqlite_log_next_id(&log->base, NULL);
    struct epcs_decision_event entry = {.id = event_id,
                                        .at_us = epcs_now_us(),
                                        .partner = partner,
                                        .event = event,
                                        .election = election,
                                        .subject = subject,
                                        .detail = detail,
                                        .detail_len = detail_len};
    if (encode_event(&chunk->bytes, &entry) != 0) {
        pthread_mutex_unlock(&log->lock);
        free_chunks(chunk);
        goto refuse;
    }
    chunk->count = 1;
    uint64_t place = enqueue_locked(log, chunk, NULL);
    pthread_mutex_unlock(&log->lock);
    *id = event_id;
    if (ticket != NULL)
        *ticket = place;
    return 0;
refuse:
    atomic_fetch_add(&log->refused, 1);
    return -1;
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

static struct epcs_decision_reader *sqlite_log_reader_open(const char *data_dir, char *err,
                                                           size_t err_size)
{
    char path[4200];
    db_path(data_dir, path, sizeof(path));
    return reader_of(epcs_sqlite_reader(path, BUSY_TIMEOUT_MS, err, err_size));
}

static void sqlite_log_reader_close(struct epcs_decision_reader *source)
{
    sqlite3_close(reader_db(source));
}

/* Reading one page's entries in order. */
struct page_reader {
    sqlite3 *db;
    sqlite3_stmt *answer;
    /* decisions.pages, and the page read from it. */
    int fd;
    struct epcs_buf page;
    msgpack_zone zone;
    const char *body;
    size_t len, offset;
    char *err;
    size_t err_size;
};

static int reader_init(struct page_reader *reader, sqlite3 *db, char *err, size_t err_size)
{
    *reader = (struct page_reader){.db = db, .fd = -1, .err = err, .err_size = err_size};
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
    if (!msgpack_zone_init(&reader->zone, 8192)) {
        snprintf(err, err_size, "out of memory");
        close(reader->fd);
        return -1;
    }
    if (sqlite3_prepare_v2(db, "SELECT answer FROM answers WHERE id = ?", -1, &reader->answer,
                           NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        msgpack_zone_destroy(&reader->zone);
        close(reader->fd);
        return -1;
    }
    return 0;
}

static void reader_close(struct page_reader *reader)
{
    sqlite3_finalize(reader->answer);
    msgpack_zone_destroy(&reader->zone);
    epcs_buf_free(&reader->page);
    close(reader->fd);
}

/* Reads the page indexed by the current row of `stmt`, whose columns `column` and `column` + 1
 * are its offset and length in the page file. 0, or -1 with the reader's error filled. */
static int reader_open_page(struct page_reader *reader, sqlite3_stmt *stmt, int column)
{
    int64_t offset = sqlite3_column_int64(stmt, column);
    int64_t length = sqlite3_column_int64(stmt, column + 1);
    msgpack_zone_clear(&reader->zone);
    epcs_buf_reset(&reader->page);
    /* A page is PAGE_BYTES plus at most one entry; a length beyond any body is damage. */
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
    reader->body = reader->page.data;
    reader->len = (size_t)length;
    reader->offset = 0;
    return 0;
}

/* The page's next entry: 1, 0 at its end, -1 when the page is unreadable. */
static int reader_next(struct page_reader *reader, msgpack_object *entry)
{
    if (reader->offset >= reader->len)
        return 0;
    msgpack_unpack_return rc =
        msgpack_unpack(reader->body, reader->len, &reader->offset, &reader->zone, entry);
    if ((rc != MSGPACK_UNPACK_SUCCESS && rc != MSGPACK_UNPACK_EXTRA_BYTES) || !entry_valid(entry)) {
        snprintf(reader->err, reader->err_size, "a page of the decision log is unreadable");
        return -1;
    }
    return 1;
}

static int str_is(const msgpack_object *value, const char *text)
{
    return value->type == MSGPACK_OBJECT_STR && epcs_str_eq(value, text);
}

static void pack_str_object(msgpack_packer *pk, const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_STR)
        msgpack_pack_object(pk, *value);
    else
        msgpack_pack_nil(pk);
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

/* One stored entry as the API shows it; a logged check is spliced in as received. */
static int pack_entry(struct page_reader *reader, msgpack_packer *pk, const msgpack_object *entry)
{
    const msgpack_object *f = entry->via.array.ptr;
    uint64_t id = f[1].via.u64;
    if (f[0].via.u64 == ENTRY_EVENT) {
        msgpack_pack_map(pk, 7);
        pack_key(pk, "id");
        msgpack_pack_uint64(pk, id);
        pack_key(pk, "at");
        epcs_pack_instant_us(pk, entry_at_us(entry));
        pack_key(pk, "partner");
        pack_str_object(pk, &f[3]);
        pack_key(pk, "election");
        pack_str_object(pk, &f[4]);
        pack_key(pk, "event");
        pack_str_object(pk, &f[5]);
        pack_key(pk, "subject");
        msgpack_pack_object(pk, f[6]);
        pack_key(pk, "detail");
        if (f[7].type == MSGPACK_OBJECT_BIN)
            epcs_buf_append(pk->data, f[7].via.bin.ptr, f[7].via.bin.size);
        else
            msgpack_pack_nil(pk);
        return 0;
    }
    sqlite3_stmt *stmt = reader->answer;
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, f[11].via.i64);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        snprintf(reader->err, reader->err_size, "decision %llu: its answer is missing",
                 (unsigned long long)id);
        return -1;
    }
    char date[11];
    epcs_date_format((int32_t)f[4].via.i64, date);
    msgpack_pack_map(pk, 12);
    pack_key(pk, "id");
    msgpack_pack_uint64(pk, id);
    pack_key(pk, "at");
    epcs_pack_instant_us(pk, entry_at_us(entry));
    pack_key(pk, "partner");
    pack_str_object(pk, &f[6]);
    pack_key(pk, "election");
    pack_str_object(pk, &f[7]);
    pack_key(pk, "date");
    pack_key(pk, date);
    pack_key(pk, "area");
    pack_str_object(pk, &f[8]);
    pack_key(pk, "verdict");
    pack_str_object(pk, &f[5]);
    pack_key(pk, "article");
    pack_str_object(pk, &f[12]);
    pack_key(pk, "ruleset");
    pack_str_object(pk, &f[9]);
    pack_key(pk, "latency_us");
    msgpack_pack_object(pk, f[3]);
    pack_key(pk, "request");
    epcs_buf_append(pk->data, f[10].via.bin.ptr, f[10].via.bin.size);
    pack_key(pk, "answer");
    pack_answer(pk, id, sqlite3_column_blob(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0));
    return 0;
}

static int matches(const struct epcs_decision_query *query, const msgpack_object *entry)
{
    const msgpack_object *f = entry->via.array.ptr;
    int64_t at = entry_at_us(entry);
    if (f[1].via.u64 <= query->after || (query->from_us && at < query->from_us) ||
        (query->to_us && at >= query->to_us))
        return 0;
    if (f[0].via.u64 == ENTRY_EVENT)
        return query->area == NULL && query->verdict == NULL &&
               (query->partner == NULL || str_is(&f[3], query->partner)) &&
               (query->election == NULL || str_is(&f[4], query->election));
    return (query->partner == NULL || str_is(&f[6], query->partner)) &&
           (query->area == NULL || str_is(&f[8], query->area)) &&
           (query->verdict == NULL || str_is(&f[5], query->verdict)) &&
           (query->election == NULL || str_is(&f[7], query->election));
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

/*
 * Page summaries. A listing filtered by partner, area, verdict or election decodes every page it
 * visits, and on a busy log most pages hold nothing for one partner. A query that reads a page
 * whole records which values of those its entries have, as a Bloom filter kept in memory under
 * the page's first id and place in the file (a page never changes once indexed); later queries
 * skip a page whose filter lacks a value they ask for without reading it. Nothing goes to disk,
 * so data directories keep their format, and each run learns its summaries again.
 */
#define SUMMARY_WORDS 4
#define SUMMARY_BITS (SUMMARY_WORDS * 64)
/* Bits set per value: with a page's few dozen distinct values, a few percent false matches. */
#define SUMMARY_PROBES 3
/* Pages summarised at most (48 bytes a slot, half the slots used): 2 billion entries. */
#define SUMMARY_MAX_PAGES ((size_t)1 << 22)

struct page_summary {
    /* 0: a free slot (ids carry their run, which starts at 1, in the high bits). */
    int64_t first_id;
    int64_t body_at;
    uint64_t bits[SUMMARY_WORDS];
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Sets in `bits` the probes of `text` as a value of the field `tag` names. */
static void summary_set(uint64_t *bits, char tag, const char *text, size_t len)
{
    uint64_t hash = 0xcbf29ce484222325ULL ^ (unsigned char)tag;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)text[i]) * 0x100000001b3ULL;
    hash = mix64(hash);
    for (int probe = 0; probe < SUMMARY_PROBES; probe++) {
        unsigned bit = (unsigned)(hash >> (probe * 16)) % SUMMARY_BITS;
        bits[bit / 64] |= (uint64_t)1 << (bit % 64);
    }
}

static void summary_set_object(uint64_t *bits, char tag, const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_STR)
        summary_set(bits, tag, value->via.str.ptr, value->via.str.size);
}

static void summary_add_entry(uint64_t *bits, const msgpack_object *entry)
{
    const msgpack_object *f = entry->via.array.ptr;
    if (f[0].via.u64 == ENTRY_EVENT) {
        summary_set_object(bits, 'p', &f[3]);
        summary_set_object(bits, 'e', &f[4]);
        return;
    }
    summary_set_object(bits, 'p', &f[6]);
    summary_set_object(bits, 'e', &f[7]);
    summary_set_object(bits, 'a', &f[8]);
    summary_set_object(bits, 'v', &f[5]);
}

/* The bits a page must have to hold an entry the query wants; 0 when it filters on none. */
static int summary_wanted(const struct epcs_decision_query *query, uint64_t *bits)
{
    const char *const values[] = {query->partner, query->election, query->area, query->verdict};
    static const char tags[] = {'p', 'e', 'a', 'v'};
    int filtered = 0;
    memset(bits, 0, sizeof(uint64_t) * SUMMARY_WORDS);
    for (size_t i = 0; i < sizeof(tags); i++) {
        if (values[i] != NULL) {
            summary_set(bits, tags[i], values[i], strlen(values[i]));
            filtered = 1;
        }
    }
    return filtered;
}

static size_t summary_slot(const struct sqlite_log *log, int64_t first_id, int64_t body_at)
{
    return (size_t)mix64((uint64_t)first_id ^ ((uint64_t)body_at << 20)) & (log->summary_slots - 1);
}

/* Whether the page's summary is known and says it holds none of what the query wants. */
static int summary_excludes(struct sqlite_log *log, int64_t first_id, int64_t body_at,
                            const uint64_t *wanted)
{
    int excluded = 0;
    pthread_mutex_lock(&log->summaries_lock);
    for (size_t at = log->summary_slots ? summary_slot(log, first_id, body_at) : 0;
         log->summary_slots > 0 && log->summaries[at].first_id != 0;
         at = (at + 1) & (log->summary_slots - 1)) {
        const struct page_summary *summary = &log->summaries[at];
        if (summary->first_id != first_id || summary->body_at != body_at)
            continue;
        for (int w = 0; w < SUMMARY_WORDS; w++)
            excluded |= (summary->bits[w] & wanted[w]) != wanted[w];
        break;
    }
    pthread_mutex_unlock(&log->summaries_lock);
    return excluded;
}

static void summary_insert_locked(struct sqlite_log *log, const struct page_summary *page)
{
    size_t at = summary_slot(log, page->first_id, page->body_at);
    while (log->summaries[at].first_id != 0) {
        if (log->summaries[at].first_id == page->first_id &&
            log->summaries[at].body_at == page->body_at)
            return;
        at = (at + 1) & (log->summary_slots - 1);
    }
    log->summaries[at] = *page;
    log->summary_count++;
}

/* Keeps a page's summary; when memory runs out or the table is full, the page stays unknown. */
static void summary_store(struct sqlite_log *log, const struct page_summary *page)
{
    pthread_mutex_lock(&log->summaries_lock);
    if ((log->summary_count + 1) * 2 > log->summary_slots &&
        log->summary_count < SUMMARY_MAX_PAGES) {
        size_t slots = log->summary_slots ? log->summary_slots * 2 : 1024;
        struct page_summary *grown = calloc(slots, sizeof(*grown));
        if (grown != NULL) {
            struct page_summary *old = log->summaries;
            size_t old_slots = log->summary_slots;
            log->summaries = grown;
            log->summary_slots = slots;
            log->summary_count = 0;
            for (size_t i = 0; i < old_slots; i++) {
                if (old[i].first_id != 0)
                    summary_insert_locked(log, &old[i]);
            }
            free(old);
        }
    }
    if ((log->summary_count + 1) * 2 <= log->summary_slots)
        summary_insert_locked(log, page);
    pthread_mutex_unlock(&log->summaries_lock);
}

/* Reads the page of the current row of `pages` and packs what the query wants into `rows`:
 * 1 when the query has its entries (one more than asked for is there), 0 to go on, -1. */
static int query_page(struct page_reader *reader, struct sqlite_log *log, sqlite3_stmt *pages,
                      const struct epcs_decision_query *query, const uint64_t *wanted,
                      msgpack_packer *rows, size_t *count, uint64_t *last_id)
{
    struct page_summary summary = {.first_id = sqlite3_column_int64(pages, 3),
                                   .body_at = sqlite3_column_int64(pages, 1)};
    if (wanted != NULL && log != NULL &&
        summary_excludes(log, summary.first_id, summary.body_at, wanted))
        return 0;
    if (reader_open_page(reader, pages, 1) != 0)
        return -1;
    msgpack_object entry;
    int next;
    while ((next = reader_next(reader, &entry)) == 1) {
        if (wanted != NULL)
            summary_add_entry(summary.bits, &entry);
        if (!matches(query, &entry))
            continue;
        /* One entry more than asked tells whether there is a next page. */
        if (*count == query->limit)
            return 1;
        if (pack_entry(reader, rows, &entry) != 0)
            return -1;
        *last_id = entry_id(&entry);
        (*count)++;
    }
    if (next < 0)
        return -1;
    if (wanted != NULL && log != NULL)
        summary_store(log, &summary);
    return 0;
}

static int sqlite_log_query(struct epcs_decision_log *handle, struct epcs_decision_reader *source,
                            const struct epcs_decision_query *query, msgpack_packer *pk, char *err,
                            size_t err_size)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
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
    uint64_t wanted[SUMMARY_WORDS];
    int filtered = summary_wanted(query, wanted);
    struct epcs_buf rows = {0};
    msgpack_packer row_packer;
    msgpack_packer_init(&row_packer, &rows, epcs_buf_msgpack_write);
    size_t count = 0;
    uint64_t last_id = 0;
    int more = 0, step, rc = 0;
    while (!more && rc == 0 && (step = sqlite3_step(pages)) == SQLITE_ROW) {
        if (query->to_us && sqlite3_column_int64(pages, 0) >= query->to_us + TIME_SLACK_US)
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
    if (rc == 0) {
        msgpack_pack_map(pk, 2);
        pack_key(pk, "decisions");
        msgpack_pack_array(pk, count);
        epcs_buf_append(pk->data, rows.data, rows.len);
        pack_key(pk, "next");
        if (more)
            msgpack_pack_uint64(pk, last_id);
        else
            msgpack_pack_nil(pk);
    }
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
        while (next == 1 && (next = reader_next(&reader, &entry)) == 1 && entry_id(&entry) != id)
            ;
        rc = next < 0 ? -1 : next == 0 ? 1 : pack_entry(&reader, pk, &entry);
        /* Only a found entry is read below. */
        const msgpack_object *f = entry.via.array.ptr;
        if (rc == 0 && f[0].via.u64 == ENTRY_DECISION) {
            if (request != NULL)
                epcs_buf_append(request, f[10].via.bin.ptr, f[10].via.bin.size);
            if (ruleset != NULL)
                snprintf(ruleset, ruleset_size, "%.*s", (int)f[9].via.str.size, f[9].via.str.ptr);
            if (date != NULL)
                epcs_date_format((int32_t)f[4].via.i64, date);
        } else if (rc == 0 && request != NULL) {
            rc = 2;
        }
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
                size_t grown_capacity = capacity ? capacity * 2 : PAGE_ENTRIES;
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
            const msgpack_object *f = entries[i].via.array.ptr;
            if (f[0].via.u64 != ENTRY_DECISION)
                continue;
            char date[11];
            epcs_date_format((int32_t)f[4].via.i64, date);
            if (fn(ctx, f[10].via.bin.ptr, f[10].via.bin.size, date) != 0) {
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

/* ---- entries committed elsewhere first (the case store's outbox) ------------------------- */

static int sqlite_log_forward(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                              const struct epcs_decision *decisions, const char *const *partners,
                              size_t decision_count, const struct epcs_decision_event *events,
                              size_t event_count, uint64_t *ticket)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    *ticket = 0;
    if (atomic_load(&log->failed))
        return -1;
    struct epcs_decision_chunk *chunk = take_chunk(log);
    if (chunk == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < decision_count; i++)
        rc = encode_decisions(&chunk->bytes, &decisions[i], 1, partners[i]);
    for (size_t i = 0; rc == 0 && i < event_count; i++)
        rc = encode_event(&chunk->bytes, &events[i]);
    if (rc != 0) {
        free_chunks(chunk);
        return -1;
    }
    chunk->count = decision_count + event_count;
    /* No queue limit: these are on disk elsewhere already, and the stage's mark holds every
     * later id back until they are handed over. */
    pthread_mutex_lock(&log->lock);
    uint64_t last = enqueue_locked(log, chunk->count > 0 ? chunk : NULL, stage);
    pthread_mutex_unlock(&log->lock);
    if (chunk->count == 0)
        free_chunks(chunk);
    else
        *ticket = last;
    return 0;
}

/* ---- readers for the thread pool ---------------------------------------------------------- */

static struct epcs_decision_reader *sqlite_log_reader_acquire(struct epcs_decision_log *handle,
                                                              char *err, size_t err_size)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    return reader_of(epcs_sqlite_pool_acquire(&log->readers, err, err_size));
}

static void sqlite_log_reader_release(struct epcs_decision_log *handle,
                                      struct epcs_decision_reader *source)
{
    struct sqlite_log *log = (struct sqlite_log *)handle;
    epcs_sqlite_pool_release(&log->readers, reader_db(source));
}

const struct epcs_decision_log_ops epcs_decision_log_sqlite = {
    .name = "sqlite",
    .open = sqlite_log_open,
    .close = sqlite_log_close,
    .mode = sqlite_log_mode,
    .attach = sqlite_log_attach,
    .detach = sqlite_log_detach,
    .next_id = sqlite_log_next_id,
    .append = sqlite_log_append,
    .stage = sqlite_log_stage,
    .flush = sqlite_log_flush,
    .event = sqlite_log_event,
    .forward = sqlite_log_forward,
    .wait = sqlite_log_wait,
    .committed = sqlite_log_committed,
    .on_commit = sqlite_log_on_commit,
    .stats = sqlite_log_stats,
    .reader_open = sqlite_log_reader_open,
    .reader_close = sqlite_log_reader_close,
    .reader_acquire = sqlite_log_reader_acquire,
    .reader_release = sqlite_log_reader_release,
    .query = sqlite_log_query,
    .get = sqlite_log_get,
    .recent = sqlite_log_recent,
};
