/*
 * The decision log's shared machinery (decision_log_core.h): workers encode decisions into
 * per-turn chunks; one writer thread sorts what has queued up by id and stores it as pages of up
 * to EPCS_PAGE_ENTRIES entries, in one transaction per group, through the backend's sink. A row
 * per decision with its own index entries cost the writer more CPU than the check itself; a
 * page costs one insert per few hundred decisions, and queries decode the pages they visit.
 *
 * A page cannot be written before its answer goes out: its row points at answers inserted in
 * the same transaction. So in async mode each worker writes the chunk of its loop turn, as the
 * writer reads it, to its own journal with one write(2) before the turn's answers go; at start,
 * entries of journals that the sink lacks are queued again (ids never repeat across runs), and
 * a segment is deleted once everything in it is committed. A write that fails is rolled back
 * and retried with the group kept whole; the log meanwhile reports itself stalled and refuses
 * new decisions. A retry writes exactly the entries the failed try did before any that came
 * since, so that a sink which cannot tell whether a lost COMMIT took effect (a database that
 * went away) sees the same pages again and may keep the first copy.
 */
#include "decision_log_core.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "dates.h"
#include "files.h"
#include "journal.h"
#include "log.h"

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

struct epcs_log_core {
    /* The handle callers hold: the backend's ops. */
    struct epcs_decision_log base;
    const struct epcs_log_sink *sink;
    void *backend;
    enum epcs_audit_mode mode;
    /* The data directory: journal segments live there, and it is fsync'd when they come or go. */
    char dir[4096];
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
    /* Groups are durable until this ticket is committed: entries recovered from journals that
     * are deleted once they are, and pages of earlier runs must never go missing at the end. */
    uint64_t durable_ticket;

    /* Writer thread only. */
    struct known_answer *known;
    /* The slot the previous decision's answer was found in. */
    const struct known_answer *last_answer;
    struct epcs_buf article;
    struct pending *pending;
    size_t pending_cap;
    struct epcs_buf page;
    /* Entries a group could not commit yet (an id below theirs was still on its way). */
    struct epcs_decision_chunk *held;
    /* After a failed write: how many entries it tried, which the next try writes alone. */
    size_t resend;
    /* How long the writer waits before trying a failed group again. */
    int retry_ms;
    /* The writer has held entries that may be ready: it takes another pass without waiting. */
    int again;
};

/* The highest ticket committed: what answers and the writer's bookkeeping wait for. */
static uint64_t committed_ticket(const struct epcs_log_core *log)
{
    return atomic_load_explicit(&log->committed, memory_order_acquire);
}

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
    struct epcs_entry_header header;
    uint64_t ticket;
    /* The entry's msgpack bytes as handed over (header.len of them). */
    const char *raw;
};

/* The stored answer with these bytes, found among those known or inserted now. */
static const struct known_answer *store_answer(struct epcs_log_core *log, const char *answer,
                                               size_t len, char *err, size_t err_size)
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
    int64_t id;
    if (log->sink->insert_answer(log->backend, answer, len, &id, err, err_size) != 0)
        return NULL;
    epcs_entry_cited_articles(answer, len, &log->article);
    char *bytes = malloc(len ? len : 1);
    char *article = malloc(log->article.len + 1);
    if (bytes == NULL || article == NULL) {
        free(bytes);
        free(article);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    free(known->bytes);
    free(known->article);
    memcpy(bytes, answer, len);
    /* An answer citing no article (every area's results empty) leaves the buffer unused. */
    if (log->article.len > 0)
        memcpy(article, log->article.data, log->article.len);
    article[log->article.len] = '\0';
    *known = (struct known_answer){
        .hash = hash, .id = id, .bytes = bytes, .len = len, .article = article};
    return known;
}

static void forget_answers(struct epcs_log_core *log)
{
    for (size_t i = 0; log->known != NULL && i < KNOWN_ANSWER_SLOTS; i++) {
        free(log->known[i].bytes);
        free(log->known[i].article);
        log->known[i] = (struct known_answer){0};
    }
}

static int compare_pending(const void *a, const void *b)
{
    uint64_t x = ((const struct pending *)a)->header.id;
    uint64_t y = ((const struct pending *)b)->header.id;
    return x < y ? -1 : x > y;
}

/* Stores the page in log->page, entries `from`[0, count), through the sink. */
static int put_page(struct epcs_log_core *log, const struct pending *from, size_t count, char *err,
                    size_t err_size)
{
    struct epcs_log_page page = {.first_id = from[0].header.id,
                                 .last_id = from[count - 1].header.id,
                                 .first_us = from[0].header.at_us,
                                 .last_us = from[0].header.at_us,
                                 .count = count,
                                 .body = log->page.data,
                                 .len = log->page.len};
    for (size_t i = 0; i < count; i++) {
        int64_t at = from[i].header.at_us;
        page.first_us = at < page.first_us ? at : page.first_us;
        page.last_us = at > page.last_us ? at : page.last_us;
        if (log->sink->summarise)
            epcs_summary_add_raw(page.summary, &from[i].header, from[i].raw);
    }
    return log->sink->put_page(log->backend, &page, err, err_size);
}

/* Writes entries [0, count) of log->pending, sorted, as pages. */
static int write_pages(struct epcs_log_core *log, size_t count, char *err, size_t err_size)
{
    size_t page_start = 0;
    epcs_buf_reset(&log->page);
    for (size_t i = 0; i < count; i++) {
        const struct pending *pending = &log->pending[i];
        const struct known_answer *known = NULL;
        if (pending->header.kind == EPCS_ENTRY_DECISION &&
            (known = store_answer(log, pending->raw + pending->header.answer_at,
                                  pending->header.len - pending->header.answer_at, err,
                                  err_size)) == NULL)
            return -1;
        if (epcs_entry_page_form(&log->page, &pending->header, pending->raw,
                                 known != NULL ? known->id : 0,
                                 known != NULL ? known->article : NULL) != 0) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        size_t in_page = i + 1 - page_start;
        if (in_page == EPCS_PAGE_ENTRIES || log->page.len >= EPCS_PAGE_BYTES || i + 1 == count) {
            if (put_page(log, log->pending + page_start, in_page, err, err_size) != 0)
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
static struct epcs_decision_chunk *take_chunk_locked(struct epcs_log_core *log)
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

static struct epcs_decision_chunk *take_chunk(struct epcs_log_core *log)
{
    pthread_mutex_lock(&log->lock);
    struct epcs_decision_chunk *chunk = take_chunk_locked(log);
    pthread_mutex_unlock(&log->lock);
    return chunk;
}

/* Keeps what of `chunks` fits among the spares (lock held); returns the rest, to be freed. */
static struct epcs_decision_chunk *keep_spares_locked(struct epcs_log_core *log,
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
static int hold_entries(struct epcs_log_core *log, size_t from, size_t count)
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

/* Adds the entries of `chunk` to log->pending, reading only their headers. */
static int gather(struct epcs_log_core *log, const struct epcs_decision_chunk *chunk,
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
        if (epcs_entry_read(&at, &left, &pending->header, &pending->raw) != 0)
            return -1;
        /* A held chunk's entries all carry its lowest ticket; it only ever holds them back. */
        pending->ticket = chunk->first_ticket + (chunk == held ? 0 : i);
        (*count)++;
    }
    return left == 0 ? 0 : -1;
}

/*
 * Writes entries [0, ready) of log->pending, sorted, in one transaction. On failure nothing
 * of it stays: the sink rolls back what it did, and the answers it inserted are forgotten.
 */
static int write_group(struct epcs_log_core *log, size_t ready, char *err, size_t err_size)
{
    if (log->sink->begin(log->backend, err, err_size) != 0)
        goto rollback;
    if (write_pages(log, ready, err, err_size) != 0)
        goto rollback;
    /* A sync answer promises its decision survives a power cut, and so do entries recovered
     * from journals deleted once they are committed. */
    int durable = log->mode == EPCS_AUDIT_SYNC || committed_ticket(log) < log->durable_ticket;
    if (log->sink->commit(log->backend, durable, err, err_size) != 0)
        goto rollback;
    atomic_fetch_add(&log->written, ready);
    atomic_fetch_add(&log->commits, 1);
    return 0;
rollback:
    log->sink->rollback(log->backend);
    /* Answers inserted by the rolled-back transaction are gone. */
    forget_answers(log);
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
static enum group_outcome commit_group(struct epcs_log_core *log, struct epcs_decision_chunk *group,
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
    size_t ready = 0;
    int resending = log->resend > 0;
    if (resending) {
        /* The entries the failed try wrote lead the held chunk, in the order they were tried;
         * whatever came since waits for the next pass. */
        ready = log->resend < count ? log->resend : count;
    } else {
        /* A pass may bring nothing (a stalled log's retry with no entries): no array yet. */
        if (count > 1)
            qsort(log->pending, count, sizeof(*log->pending), compare_pending);
        while (ready < count && log->pending[ready].header.id < below)
            ready++;
    }
    int wrote = ready == 0 || write_group(log, ready, err, err_size) == 0;
    if (!wrote) {
        log->resend = ready;
        ready = 0;
    } else if (resending) {
        log->resend = 0;
        /* What waited behind the resend may be ready now. */
        log->again = 1;
    }
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
static void set_stall(struct epcs_log_core *log, int bit, const char *what)
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
    else if (log->sink->retry_max_ms <= EPCS_DECISION_LOG_RETRY_MS)
        epcs_log(EPCS_LOG_ERROR, "decisions",
                 "cannot write %s. The decisions are kept and written again every %d ms; new "
                 "decisions are refused (503) until then",
                 what, EPCS_DECISION_LOG_RETRY_MS);
    else
        epcs_log(EPCS_LOG_ERROR, "decisions",
                 "cannot write %s. The decisions are kept and written again, every %d ms at "
                 "first and every %d ms at most; new decisions are refused (503) until then",
                 what, EPCS_DECISION_LOG_RETRY_MS, log->sink->retry_max_ms);
}

static void clear_stall(struct epcs_log_core *log, int bit)
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

/* Whether the data directory takes a write again: PROBE_BYTES to a file made and removed
 * for it. 0 when it took them. */
static int probe_dir(struct epcs_log_core *log)
{
    static const char zeros[PROBE_BYTES];
    char path[4200];
    snprintf(path, sizeof(path), "%s/decisions.probe", log->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int rc = fd >= 0 ? 0 : -1;
    for (size_t done = 0; rc == 0 && done < sizeof(zeros);) {
        ssize_t wrote = write(fd, zeros + done, sizeof(zeros) - done);
        if (wrote < 0 && errno == EINTR)
            continue;
        rc = wrote > 0 ? 0 : -1;
        done += wrote > 0 ? (size_t)wrote : 0;
    }
    if (fd >= 0)
        close(fd);
    unlink(path);
    return rc;
}

/* A new journal segment named after this run; the directory is fsync'd when `sync_dir`. */
static struct epcs_journal *new_segment(struct epcs_log_core *log, int sync_dir, char *err,
                                        size_t err_size)
{
    char name[96];
    snprintf(name, sizeof(name), EPCS_JOURNAL_PREFIX "%llu.%llu", (unsigned long long)log->run,
             (unsigned long long)atomic_fetch_add(&log->next_segment, 1));
    return epcs_journal_create(log->dir, name, sync_dir, err, err_size);
}

/* Gives a stage lacking a spare segment `spare` (lock held); 0 when none lacks one. */
static int place_spare_locked(struct epcs_log_core *log, struct epcs_journal *spare)
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
static void tend_segments(struct epcs_log_core *log)
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
static uint64_t lowest_in_flight(const struct epcs_log_core *log)
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

/* Waits for something to do (a stalled log tries again after its retry time) and takes the
 * queue. */
static void writer_take(struct epcs_log_core *log, struct writer_pass *pass)
{
    pthread_mutex_lock(&log->lock);
    struct timespec until;
    deadline_in(&until, log->retry_ms * 1000L);
    while (log->head == NULL && !log->stopping && !(log->held != NULL && log->released) &&
           !log->again) {
        if (!atomic_load(&log->stalled))
            pthread_cond_wait(&log->wake, &log->lock);
        else if (pthread_cond_timedwait(&log->wake, &log->lock, &until) != 0)
            break;
    }
    if (log->mode == EPCS_AUDIT_ASYNC && log->incoming < GATHER_ENTRIES &&
        !atomic_load(&log->stalled) && !log->again) {
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
    log->again = 0;
    pthread_mutex_unlock(&log->lock);
}

/* One try at writing the pass's group and what is held; the stall follows the outcome. */
static enum group_outcome writer_write(struct epcs_log_core *log, const struct writer_pass *pass)
{
    if (atomic_load(&log->failed))
        return GROUP_LOST;
    char err[256] = "";
    uint64_t committed = 0;
    enum group_outcome outcome = commit_group(log, pass->group, pass->below, pass->last_ticket,
                                              &committed, err, sizeof(err));
    if (outcome == GROUP_WRITTEN || outcome == GROUP_WAITING)
        atomic_store_explicit(&log->committed, committed, memory_order_release);
    if (outcome == GROUP_WRITTEN) {
        log->retry_ms = EPCS_DECISION_LOG_RETRY_MS;
        clear_stall(log, STALL_WRITER);
    } else if (outcome == GROUP_KEPT) {
        /* The first retry comes as soon as ever, later ones less often. */
        if (atomic_load(&log->stalled) & STALL_WRITER)
            log->retry_ms = log->retry_ms * 2 < log->sink->retry_max_ms ? log->retry_ms * 2
                                                                        : log->sink->retry_max_ms;
        set_stall(log, STALL_WRITER, err);
    } else if (outcome == GROUP_LOST) {
        atomic_store(&log->failed, 1);
    }
    if ((atomic_load(&log->stalled) & STALL_JOURNAL) &&
        (log->sink->probe != NULL ? log->sink->probe(log->backend) : probe_dir(log)) == 0)
        clear_stall(log, STALL_JOURNAL);
    return outcome;
}

static void *writer_main(void *arg)
{
    struct epcs_log_core *log = arg;
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

/* ---- recovery from the journals ----------------------------------------------------------- */

static uint64_t enqueue_locked(struct epcs_log_core *log, struct epcs_decision_chunk *chunk,
                               struct epcs_decision_stage *stage);

/* Entries of journals being read at start, and those of them the sink lacks. */
struct recovery {
    struct epcs_log_core *log;
    struct epcs_decision_chunk *chunk;
    size_t seen;
    const char *path;
    char *err;
    size_t err_size;
};

/* epcs_journal_read's callback: copies the record's entries the sink lacks. */
static int recover_record(void *ctx, const char *payload, size_t len, uint32_t count)
{
    struct recovery *recovery = ctx;
    const char *at = payload;
    size_t left = len;
    for (uint32_t i = 0; i < count; i++) {
        const char *start = at, *raw;
        struct epcs_entry_header header;
        if (epcs_entry_read(&at, &left, &header, &raw) != 0) {
            snprintf(recovery->err, recovery->err_size,
                     "%s holds a damaged entry: move it aside (nothing was changed)",
                     recovery->path);
            return -1;
        }
        struct epcs_log_core *log = recovery->log;
        int known = log->sink->stored(log->backend, header.id, recovery->err, recovery->err_size);
        if (known < 0)
            return -1;
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
static int recover_segment(struct epcs_log_core *log, struct recovery *recovery, const char *name)
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
 * Queues the entries of the journals an earlier run left behind that the sink lacks: their
 * answers were sent, and the process stopped before the writer committed them. The segments
 * are retired, to be deleted once those entries are committed (at once when there are none).
 */
static int recover_journals(struct epcs_log_core *log, char *err, size_t err_size)
{
    struct recovery recovery = {.log = log, .err = err, .err_size = err_size};
    DIR *dir = opendir(log->dir);
    if (dir == NULL) {
        snprintf(err, err_size, "%s: %s", log->dir, strerror(errno));
        return -1;
    }
    int rc = -1;
    recovery.chunk = calloc(1, sizeof(*recovery.chunk));
    if (recovery.chunk == NULL) {
        snprintf(err, err_size, "out of memory");
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
    closedir(dir);
    return rc;
}

/* ---- opening and closing ------------------------------------------------------------------ */

struct epcs_log_core *epcs_log_core_create(const struct epcs_decision_log_ops *ops,
                                           const struct epcs_log_sink *sink, void *backend,
                                           const char *data_dir, enum epcs_audit_mode mode,
                                           size_t queue_limit, char *err, size_t err_size)
{
    struct epcs_log_core *log = calloc(1, sizeof(*log));
    if (log == NULL || (log->known = calloc(KNOWN_ANSWER_SLOTS, sizeof(*log->known))) == NULL) {
        free(log);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    log->base.ops = ops;
    log->sink = sink;
    log->backend = backend;
    log->mode = mode;
    log->queue_limit = queue_limit;
    log->tail = &log->head;
    log->retry_ms = EPCS_DECISION_LOG_RETRY_MS;
    snprintf(log->dir, sizeof(log->dir), "%s", data_dir);
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->wake, NULL);
    pthread_cond_init(&log->committed_cond, NULL);
    atomic_init(&log->next_sequence, 1);
    atomic_init(&log->next_segment, 1);
    return log;
}

void *epcs_log_backend(const struct epcs_decision_log *handle)
{
    return ((const struct epcs_log_core *)handle)->backend;
}

struct epcs_decision_log *epcs_log_core_handle(struct epcs_log_core *core)
{
    return &core->base;
}

int epcs_log_core_start(struct epcs_log_core *log, uint64_t run, char *err, size_t err_size)
{
    log->run = run;
    if (recover_journals(log, err, err_size) != 0)
        return -1;
    /* Segments with nothing the sink lacks go now. */
    tend_segments(log);
    if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
        snprintf(err, err_size, "cannot start the decision log writer");
        return -1;
    }
    log->writer_started = 1;
    return 0;
}

void epcs_log_core_stop(struct epcs_log_core *log)
{
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
    log->writer_started = 0;
}

void epcs_log_core_destroy(struct epcs_log_core *log)
{
    if (log == NULL)
        return;
    forget_answers(log);
    free(log->known);
    free(log->pending);
    free_chunks(log->held);
    free_chunks(log->head);
    free_chunks(log->spare);
    free(log->lanes);
    epcs_buf_free(&log->article);
    epcs_buf_free(&log->page);
    pthread_cond_destroy(&log->wake);
    pthread_cond_destroy(&log->committed_cond);
    pthread_mutex_destroy(&log->lock);
    free(log);
}

enum epcs_audit_mode epcs_log_core_mode(const struct epcs_decision_log *handle)
{
    const struct epcs_log_core *log = (const struct epcs_log_core *)handle;
    return log != NULL ? log->mode : EPCS_AUDIT_OFF;
}

uint64_t epcs_log_core_committed(const struct epcs_decision_log *handle)
{
    return committed_ticket((const struct epcs_log_core *)handle);
}

int epcs_log_core_wait(struct epcs_decision_log *handle, uint64_t ticket)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
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

void epcs_log_core_on_commit(struct epcs_decision_log *handle, void (*fn)(void *ctx), void *ctx)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
    log->on_commit = fn;
    log->on_commit_ctx = ctx;
}

void epcs_log_core_stats(struct epcs_decision_log *handle, struct epcs_decision_log_stats *stats)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
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

/* Queues `chunk` (or only forgets the stage's mark when NULL). Called with the lock held. */
static uint64_t enqueue_locked(struct epcs_log_core *log, struct epcs_decision_chunk *chunk,
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

int epcs_log_core_attach(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                         char *err, size_t err_size)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
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
static void retire_locked(struct epcs_log_core *log, struct epcs_journal *journal)
{
    if (journal == NULL)
        return;
    journal->next = log->retired;
    log->retired = journal;
}

void epcs_log_core_detach(struct epcs_decision_log *handle, struct epcs_decision_stage *stage)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
    epcs_log_core_flush(&log->base, stage);
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

uint64_t epcs_log_core_next_id(struct epcs_decision_log *handle, struct epcs_decision_stage *stage)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
    /* The mark goes up before the id is taken, so the writer never misses an id on its way. */
    if (stage != NULL && atomic_load(&stage->in_flight) == 0)
        atomic_store(&stage->in_flight,
                     log->run << 32 | (atomic_load(&log->next_sequence) & 0xffffffffu));
    return log->run << 32 | (atomic_fetch_add(&log->next_sequence, 1) & 0xffffffffu);
}

/* Whether new entries may come: not while a write fails, nor after a failure. */
static int accepting(const struct epcs_log_core *log)
{
    return !atomic_load(&log->failed) && !atomic_load(&log->stalled);
}

int epcs_log_core_append(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                         const struct epcs_decision *decisions, size_t count, const char *partner,
                         uint64_t *ticket)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
    *ticket = 0;
    if (!accepting(log))
        goto refuse;
    struct epcs_decision_chunk *chunk = NULL;
    if (count > 0) {
        if ((chunk = take_chunk(log)) == NULL)
            goto refuse;
        chunk->count = count;
        if (epcs_entry_encode_decisions(&chunk->bytes, decisions, count, partner) != 0) {
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

int epcs_log_core_stage(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                        const struct epcs_decision *decisions, size_t count, const char *partner)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
    if (!accepting(log))
        goto refuse;
    pthread_mutex_lock(&log->lock);
    size_t queued = log->queued;
    pthread_mutex_unlock(&log->lock);
    if (stage->open == NULL && (stage->open = calloc(1, sizeof(*stage->open))) == NULL)
        goto refuse;
    /* All or none: a check answered 503 must leave nothing on record. */
    if (queued + stage->open->count + count > log->queue_limit ||
        epcs_entry_encode_decisions(&stage->open->bytes, decisions, count, partner) != 0)
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
static int journal_turn(struct epcs_log_core *log, struct epcs_decision_stage *stage,
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
static void rotate_locked(struct epcs_log_core *log, struct epcs_decision_stage *stage,
                          uint64_t last)
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

int epcs_log_core_flush(struct epcs_decision_log *handle, struct epcs_decision_stage *stage)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
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

int epcs_log_core_event(struct epcs_decision_log *handle, const char *partner, const char *event,
                        const char *election, uint64_t subject, const char *detail,
                        size_t detail_len, uint64_t *id, uint64_t *ticket)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
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
    uint64_t event_id = epcs_log_core_next_id(&log->base, NULL);
    struct epcs_decision_event entry = {.id = event_id,
                                        .at_us = epcs_now_us(),
                                        .partner = partner,
                                        .event = event,
                                        .election = election,
                                        .subject = subject,
                                        .detail = detail,
                                        .detail_len = detail_len};
    if (epcs_entry_encode_event(&chunk->bytes, &entry) != 0) {
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

/* ---- entries committed elsewhere first (the case store's outbox) ------------------------- */

int epcs_log_core_forward(struct epcs_decision_log *handle, struct epcs_decision_stage *stage,
                          const struct epcs_decision *decisions, const char *const *partners,
                          size_t decision_count, const struct epcs_decision_event *events,
                          size_t event_count, uint64_t *ticket)
{
    struct epcs_log_core *log = (struct epcs_log_core *)handle;
    *ticket = 0;
    if (atomic_load(&log->failed))
        return -1;
    struct epcs_decision_chunk *chunk = take_chunk(log);
    if (chunk == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < decision_count; i++)
        rc = epcs_entry_encode_decisions(&chunk->bytes, &decisions[i], 1, partners[i]);
    for (size_t i = 0; rc == 0 && i < event_count; i++)
        rc = epcs_entry_encode_event(&chunk->bytes, &events[i]);
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
