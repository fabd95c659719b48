#ifndef EPCS_DECISION_PAGES_H
#define EPCS_DECISION_PAGES_H

#include <msgpack.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "decision.h"
#include "decision_log.h"

/*
 * The decision log's entries and pages, whatever keeps them: how workers encode an entry for
 * the writer (and the journals), how a page stores it, and how readers decode, filter, pack and
 * summarise pages. Every backend stores the same bytes; only where a page goes differs
 * (decision_log_core.h).
 *
 * Entries as workers hand them over (msgpack arrays):
 *   decision: [0, id, at_us, latency_us, day, verdict, partner, election, area|nil, ruleset,
 *              request (bin: the check's msgpack), answer (bin: the verdict without its id)]
 *   event:    [1, id, at_us, partner, election|nil, event, subject, detail (bin)|nil]
 * In a page a decision's answer is replaced by the id of its stored answer and its cited
 * articles:
 *   decision: [0, id, at_us, latency_us, day, verdict, partner, election, area|nil, ruleset,
 *              request (bin), answer_id, article|nil]
 * and an event is stored as handed over. A page is its entries' msgpack, one after another.
 */

/* Entry kinds, the first element of every entry. */
enum { EPCS_ENTRY_DECISION = 0, EPCS_ENTRY_EVENT = 1 };

/* A page is decoded whole by every query that visits it: small enough to decode quickly,
 * large enough that a busy log writes few rows. */
#define EPCS_PAGE_ENTRIES 512
#define EPCS_PAGE_BYTES (256 * 1024)

/*
 * A decision's time and id are taken when its verdict is ready, but a batch's decisions get
 * their ids one by one and their time afterwards, so pages (ordered by id) are ordered by time
 * only within the time a batch takes. A query for times before `to` stops at the first page
 * that starts this much later.
 */
#define EPCS_PAGE_TIME_SLACK_US (10 * 1000000LL)

/*
 * In a chunk (and a journal record) every entry follows a fixed header with what the writer
 * needs to sort and page it, so the writer never parses the msgpack (unpacking every entry
 * again cost it a fifth of its time). Entries are not aligned: a header is copied in and out
 * with memcpy. Journals hold these bytes: the layout is part of their format.
 */
struct epcs_entry_header {
    uint64_t id;
    int64_t at_us;
    /* The entry's msgpack bytes, right after the header. */
    uint32_t len;
    uint32_t kind;
    /* Decisions: where the answer's bin header and the answer itself start in those bytes. */
    uint32_t answer_header_at;
    uint32_t answer_at;
};

/** Encodes `count` decisions made for `partner` (header + msgpack each) at the end of `out`,
 * all or none; a decision without a time gets the current one. 0, or -1 (memory). */
int epcs_entry_encode_decisions(struct epcs_buf *out, const struct epcs_decision *decisions,
                                size_t count, const char *partner);

/** Encodes one case event (header + msgpack) at the end of `out`. 0, or -1 (memory). */
int epcs_entry_encode_event(struct epcs_buf *out, const struct epcs_decision_event *event);

/**
 * Reads the entry at *at (header, then its msgpack bytes) of the *left bytes of a chunk and
 * moves past it; *raw is set to its msgpack bytes. 0, or -1 when the bytes are not an entry as
 * the encoders write them.
 */
int epcs_entry_read(const char **at, size_t *left, struct epcs_entry_header *header,
                    const char **raw);

/** The articles an answer cites: its own, or those of every area's result, comma-separated,
 * into `out` (emptied first). */
void epcs_entry_cited_articles(const char *answer, size_t len, struct epcs_buf *out);

/**
 * Appends handed-over entry `raw` (with its header) to `page` as a page stores it: an event as
 * it is, a decision with `answer_id` and `article` ("" or NULL: none) in place of its answer.
 * The bytes before the answer are copied as they are (re-packing them field by field cost the
 * writer a third of its time). 0, or -1 (memory).
 */
int epcs_entry_page_form(struct epcs_buf *page, const struct epcs_entry_header *header,
                         const char *raw, int64_t answer_id, const char *article);

/* ---- summaries --------------------------------------------------------------------------- */

/*
 * A page's summary: a Bloom filter of the partners, elections, areas and verdicts its entries
 * have. A filtered listing skips a page whose summary lacks a value it asks for; with a page's
 * few dozen distinct values, a few percent of the pages it skips not are read for nothing.
 */
#define EPCS_SUMMARY_WORDS 4

/** Adds the values of page-form entry `entry` (a valid one) to `bits`. */
void epcs_summary_add_entry(uint64_t *bits, const msgpack_object *entry);
/** Adds the values of handed-over entry `raw` to `bits`, without unpacking it. */
void epcs_summary_add_raw(uint64_t *bits, const struct epcs_entry_header *header, const char *raw);
/** The bits a page must have to hold an entry the query wants; 0 when it filters on none. */
int epcs_summary_wanted(const struct epcs_decision_query *query, uint64_t *bits);
/** Whether a page summarised by `bits` may hold an entry with the `wanted` bits. */
int epcs_summary_may_hold(const uint64_t *bits, const uint64_t *wanted);

/*
 * Summaries learnt by queries, for a backend that stores none: a query that reads a page whole
 * records its summary here under the page's key (its first id and a second number of the
 * backend's, such as its place in a file: a page never changes once stored), and later queries
 * skip it without reading it. Nothing goes to disk; each run learns its summaries again.
 */
struct epcs_summary_table {
    pthread_mutex_t lock;
    struct epcs_page_summary *slots;
    size_t count, capacity;
};

void epcs_summary_table_init(struct epcs_summary_table *table);
void epcs_summary_table_dispose(struct epcs_summary_table *table);
/** Whether the page's summary is known and says it holds none of what is `wanted`. */
int epcs_summary_table_excludes(struct epcs_summary_table *table, int64_t first_id, int64_t key,
                                const uint64_t *wanted);
/** Keeps a page's summary; when memory runs out or the table is full, the page stays unknown. */
void epcs_summary_table_store(struct epcs_summary_table *table, int64_t first_id, int64_t key,
                              const uint64_t *bits);

/* ---- reading pages ----------------------------------------------------------------------- */

/** Decoding one page's (or stored entry's) bytes, entry by entry. */
struct epcs_page_decoder {
    msgpack_zone zone;
    const char *body;
    size_t len, offset;
    char *err;
    size_t err_size;
};

/** 0, or -1 with `err` filled (memory). Errors of later calls go to `err` too. */
int epcs_page_decoder_init(struct epcs_page_decoder *decoder, char *err, size_t err_size);
void epcs_page_decoder_dispose(struct epcs_page_decoder *decoder);
/** Starts on `len` bytes at `body` (borrowed until the next start), forgetting earlier
 * entries. */
void epcs_page_decoder_start(struct epcs_page_decoder *decoder, const char *body, size_t len);
/** The next entry: 1, 0 at the end, -1 (with `err`) when the bytes are no valid entry. */
int epcs_page_decoder_next(struct epcs_page_decoder *decoder, msgpack_object *entry);

/** A decoded entry's id, time and kind. */
uint64_t epcs_entry_id(const msgpack_object *entry);
int64_t epcs_entry_at_us(const msgpack_object *entry);
int epcs_entry_kind(const msgpack_object *entry);

/** Whether a decoded entry is one `query` lists (its `after`, times and filters). */
int epcs_entry_matches(const struct epcs_decision_query *query, const msgpack_object *entry);

/**
 * Finds the stored answer `id` for a decision being packed: 0 with `bytes` and `len` set (valid
 * until the next call), 1 when there is none, or -1 with `err` filled.
 */
typedef int (*epcs_answer_lookup)(void *ctx, int64_t id, const char **bytes, size_t *len, char *err,
                                  size_t err_size);

/** Packs a decoded entry as the API shows it (a logged check spliced in as received); a
 * decision's answer comes from `lookup`. 0, or -1 with `err`. */
int epcs_entry_pack(msgpack_packer *pk, const msgpack_object *entry, epcs_answer_lookup lookup,
                    void *ctx, char *err, size_t err_size);

/** For a decoded decision: appends its check to `request`, copies its ruleset and date
 * (each when not NULL). Returns 0, or 2 for an event when `request` is asked for (it has
 * none), as epcs_decision_log_get. */
int epcs_entry_details(const msgpack_object *entry, struct epcs_buf *request, char *ruleset,
                       size_t ruleset_size, char *date);

/** For a decoded decision: its logged check and its date ("YYYY-MM-DD"). 0, or 1 for an event. */
int epcs_entry_check(const msgpack_object *entry, const void **request, size_t *len, char date[11]);

/** Packs {decisions: [`count` packed `rows`], next: `last_id` when `more`, else nil}. */
void epcs_pack_listing(msgpack_packer *pk, const struct epcs_buf *rows, size_t count, int more,
                       uint64_t last_id);

#endif
