/*
 * The decision log's entries and pages as every backend stores them (decision_pages.h): the
 * encoders the workers call, the page form the writer makes, and what readers need to decode,
 * filter, summarise and pack what they read.
 */
#include "decision_pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dates.h"
#include "facts.h"

/* The fields of each entry kind, as handed over and as a page stores it. */
#define DECISION_FIELDS 12
#define PAGE_DECISION_FIELDS 13
#define EVENT_FIELDS 8

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
void epcs_entry_cited_articles(const char *answer, size_t len, struct epcs_buf *out)
{
    msgpack_object root;
    size_t offset = 0;
    epcs_buf_reset(out);
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 1024))
        return;
    if (msgpack_unpack(answer, len, &offset, &zone, &root) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_zone_destroy(&zone);
        return;
    }
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
    msgpack_zone_destroy(&zone);
}

uint64_t epcs_entry_id(const msgpack_object *entry)
{
    return entry->via.array.ptr[1].via.u64;
}

int64_t epcs_entry_at_us(const msgpack_object *entry)
{
    const msgpack_object *at = &entry->via.array.ptr[2];
    return at->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)at->via.u64 : at->via.i64;
}

int epcs_entry_kind(const msgpack_object *entry)
{
    return (int)entry->via.array.ptr[0].via.u64;
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
    if (f[0].via.u64 == EPCS_ENTRY_EVENT)
        return entry->via.array.size == EVENT_FIELDS &&
               f[6].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
               (f[7].type == MSGPACK_OBJECT_BIN || f[7].type == MSGPACK_OBJECT_NIL);
    if (f[0].via.u64 != EPCS_ENTRY_DECISION || entry->via.array.size != PAGE_DECISION_FIELDS)
        return 0;
    return is_integer(&f[3]) && is_integer(&f[4]) && f[9].type == MSGPACK_OBJECT_STR &&
           f[10].type == MSGPACK_OBJECT_BIN && is_integer(&f[11]);
}

/*
 * Reads the entry at *at (header, then its msgpack bytes) of the *left bytes of a chunk and
 * moves past it; *raw is set to its msgpack bytes. 0, or -1 when the bytes are not an entry as
 * encode_decision and epcs_decision_log_event write them.
 */
int epcs_entry_read(const char **at, size_t *left, struct epcs_entry_header *header,
                    const char **raw)
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
    if (header->kind != EPCS_ENTRY_EVENT && (header->kind != EPCS_ENTRY_DECISION || !decision_fits))
        return -1;
    *raw = bytes;
    *at = bytes + header->len;
    *left = after - header->len;
    return 0;
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
    static const struct epcs_entry_header blank;
    size_t at = out->len;
    return epcs_buf_append(out, &blank, sizeof(blank)) == 0 ? at : SIZE_MAX;
}

static void finish_entry(struct epcs_buf *out, size_t at, struct epcs_entry_header *header)
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
    size_t room = sizeof(struct epcs_entry_header) + 1 + 5 * MAX_HEAD + MAX_HEAD;
    for (int i = 0; i < TEXTS; i++) {
        lens[i] = texts[i] != NULL ? strlen(texts[i]) : 0;
        room += MAX_HEAD + lens[i];
    }
    if (decision->check_msgpack != NULL)
        room += decision->check_len;
    if (epcs_buf_reserve(out, room) != 0)
        return -1;
    size_t header_at = out->len, start = header_at + sizeof(struct epcs_entry_header);
    struct cursor c = {out->data + start};
    *c.at++ = (char)(0x90 | DECISION_FIELDS);
    put_uint(&c, EPCS_ENTRY_DECISION);
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
    struct epcs_entry_header header = {
        .id = decision->id, .at_us = at_us, .kind = EPCS_ENTRY_DECISION};
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
int epcs_entry_encode_decisions(struct epcs_buf *out, const struct epcs_decision *decisions,
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

/* One case event as the log stores it: epcs_decision_log_event packs it with the id it takes,
 * epcs_decision_log_forward with the id and time the case store gave it. */
int epcs_entry_encode_event(struct epcs_buf *out, const struct epcs_decision_event *event)
{
    struct epcs_entry_header header = {
        .id = event->id, .at_us = event->at_us, .kind = EPCS_ENTRY_EVENT};
    size_t header_at = begin_entry(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    int packed = header_at != SIZE_MAX && msgpack_pack_array(&pk, EVENT_FIELDS) == 0 &&
                 msgpack_pack_uint8(&pk, EPCS_ENTRY_EVENT) == 0 &&
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
int epcs_entry_pack(msgpack_packer *pk, const msgpack_object *entry, epcs_answer_lookup lookup,
                    void *ctx, char *err, size_t err_size)
{
    const msgpack_object *f = entry->via.array.ptr;
    uint64_t id = f[1].via.u64;
    if (f[0].via.u64 == EPCS_ENTRY_EVENT) {
        msgpack_pack_map(pk, 7);
        pack_key(pk, "id");
        msgpack_pack_uint64(pk, id);
        pack_key(pk, "at");
        epcs_pack_instant_us(pk, epcs_entry_at_us(entry));
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
    const char *answer;
    size_t answer_len;
    int found = lookup(ctx, f[11].via.i64, &answer, &answer_len, err, err_size);
    if (found != 0) {
        if (found > 0)
            snprintf(err, err_size, "decision %llu: its answer is missing", (unsigned long long)id);
        return -1;
    }
    char date[11];
    epcs_date_format((int32_t)f[4].via.i64, date);
    msgpack_pack_map(pk, 12);
    pack_key(pk, "id");
    msgpack_pack_uint64(pk, id);
    pack_key(pk, "at");
    epcs_pack_instant_us(pk, epcs_entry_at_us(entry));
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
    pack_answer(pk, id, answer, answer_len);
    return 0;
}

int epcs_entry_matches(const struct epcs_decision_query *query, const msgpack_object *entry)
{
    const msgpack_object *f = entry->via.array.ptr;
    int64_t at = epcs_entry_at_us(entry);
    if (f[1].via.u64 <= query->after || (query->from_us && at < query->from_us) ||
        (query->to_us && at >= query->to_us))
        return 0;
    if (f[0].via.u64 == EPCS_ENTRY_EVENT)
        return query->area == NULL && query->verdict == NULL &&
               (query->partner == NULL || str_is(&f[3], query->partner)) &&
               (query->election == NULL || str_is(&f[4], query->election));
    return (query->partner == NULL || str_is(&f[6], query->partner)) &&
           (query->area == NULL || str_is(&f[8], query->area)) &&
           (query->verdict == NULL || str_is(&f[5], query->verdict)) &&
           (query->election == NULL || str_is(&f[7], query->election));
}

int epcs_entry_page_form(struct epcs_buf *page, const struct epcs_entry_header *header,
                         const char *raw, int64_t answer_id, const char *article)
{
    if (header->kind == EPCS_ENTRY_EVENT)
        return epcs_buf_append(page, raw, header->len);
    msgpack_packer pk;
    msgpack_packer_init(&pk, page, epcs_buf_msgpack_write);
    /* Both arrays are short enough for a one-byte header. */
    const char array = (char)(0x90 | PAGE_DECISION_FIELDS);
    if (epcs_buf_append(page, &array, 1) != 0 ||
        epcs_buf_append(page, raw + 1, header->answer_header_at - 1) != 0 ||
        msgpack_pack_int64(&pk, answer_id) != 0)
        return -1;
    if (article != NULL && article[0] != '\0')
        pack_key(&pk, article);
    else
        msgpack_pack_nil(&pk);
    return 0;
}

/* ---- summaries ---------------------------------------------------------------------------- */

#define SUMMARY_BITS (EPCS_SUMMARY_WORDS * 64)
/* Bits set per value: with a page's few dozen distinct values, a few percent false matches. */
#define SUMMARY_PROBES 3
/* Pages summarised at most in a table (48 bytes a slot, half the slots used): 2 billion
 * entries. */
#define SUMMARY_MAX_PAGES ((size_t)1 << 22)

struct epcs_page_summary {
    /* 0: a free slot (ids carry their run, which starts at 1, in the high bits). */
    int64_t first_id;
    int64_t key;
    uint64_t bits[EPCS_SUMMARY_WORDS];
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

void epcs_summary_add_entry(uint64_t *bits, const msgpack_object *entry)
{
    const msgpack_object *f = entry->via.array.ptr;
    if (f[0].via.u64 == EPCS_ENTRY_EVENT) {
        summary_set_object(bits, 'p', &f[3]);
        summary_set_object(bits, 'e', &f[4]);
        return;
    }
    summary_set_object(bits, 'p', &f[6]);
    summary_set_object(bits, 'e', &f[7]);
    summary_set_object(bits, 'a', &f[8]);
    summary_set_object(bits, 'v', &f[5]);
}

/*
 * Steps over the msgpack scalar at *at (an integer, nil or a string: what the fields before
 * an entry's first bin are), setting *text and *len for a string (NULL otherwise). 0, or -1
 * for anything else or bytes that end first.
 */
static int scan_scalar(const unsigned char **at, const unsigned char *end, const char **text,
                       size_t *len)
{
    const unsigned char *p = *at;
    if (p >= end)
        return -1;
    size_t head = 1, body = 0;
    int is_text = 0;
    if (*p <= 0x7f || *p >= 0xe0 || *p == 0xc0) {
        head = 1;
    } else if ((*p & 0xe0) == 0xa0) {
        body = *p & 0x1f;
        is_text = 1;
    } else if (*p == 0xcc || *p == 0xd0 || *p == 0xd9) {
        head = 2;
    } else if (*p == 0xcd || *p == 0xd1 || *p == 0xda) {
        head = 3;
    } else if (*p == 0xce || *p == 0xd2 || *p == 0xdb) {
        head = 5;
    } else if (*p == 0xcf || *p == 0xd3) {
        head = 9;
    } else {
        return -1;
    }
    if ((size_t)(end - p) < head)
        return -1;
    if (*p >= 0xd9 && *p <= 0xdb) {
        is_text = 1;
        for (size_t i = 1; i < head; i++)
            body = body << 8 | p[i];
    }
    if ((size_t)(end - p) - head < body)
        return -1;
    *text = is_text ? (const char *)p + head : NULL;
    *len = body;
    *at = p + head + body;
    return 0;
}

void epcs_summary_add_raw(uint64_t *bits, const struct epcs_entry_header *header, const char *raw)
{
    /* The fields after the array header and the kind, up to the election (events) or the
     * area (decisions), and the tag each of their strings is summarised under. */
    static const char event_tags[] = {0, 0, 'p', 'e'};
    static const char decision_tags[] = {0, 0, 0, 0, 'v', 'p', 'e', 'a'};
    int event = header->kind == EPCS_ENTRY_EVENT;
    const char *tags = event ? event_tags : decision_tags;
    size_t fields = event ? sizeof(event_tags) : sizeof(decision_tags);
    const unsigned char *at = (const unsigned char *)raw + 2, *end = at - 2 + header->len;
    for (size_t i = 0; i < fields; i++) {
        const char *text;
        size_t len;
        if (scan_scalar(&at, end, &text, &len) != 0)
            return;
        if (tags[i] != 0 && text != NULL)
            summary_set(bits, tags[i], text, len);
    }
}

int epcs_summary_wanted(const struct epcs_decision_query *query, uint64_t *bits)
{
    const char *const values[] = {query->partner, query->election, query->area, query->verdict};
    static const char tags[] = {'p', 'e', 'a', 'v'};
    int filtered = 0;
    memset(bits, 0, sizeof(uint64_t) * EPCS_SUMMARY_WORDS);
    for (size_t i = 0; i < sizeof(tags); i++) {
        if (values[i] != NULL) {
            summary_set(bits, tags[i], values[i], strlen(values[i]));
            filtered = 1;
        }
    }
    return filtered;
}

int epcs_summary_may_hold(const uint64_t *bits, const uint64_t *wanted)
{
    for (int w = 0; w < EPCS_SUMMARY_WORDS; w++) {
        if ((bits[w] & wanted[w]) != wanted[w])
            return 0;
    }
    return 1;
}

void epcs_summary_table_init(struct epcs_summary_table *table)
{
    *table = (struct epcs_summary_table){.slots = NULL};
    pthread_mutex_init(&table->lock, NULL);
}

void epcs_summary_table_dispose(struct epcs_summary_table *table)
{
    free(table->slots);
    table->slots = NULL;
    pthread_mutex_destroy(&table->lock);
}

static size_t summary_slot(const struct epcs_summary_table *table, int64_t first_id, int64_t key)
{
    return (size_t)mix64((uint64_t)first_id ^ ((uint64_t)key << 20)) & (table->capacity - 1);
}

int epcs_summary_table_excludes(struct epcs_summary_table *table, int64_t first_id, int64_t key,
                                const uint64_t *wanted)
{
    int excluded = 0;
    pthread_mutex_lock(&table->lock);
    for (size_t at = table->capacity ? summary_slot(table, first_id, key) : 0;
         table->capacity > 0 && table->slots[at].first_id != 0;
         at = (at + 1) & (table->capacity - 1)) {
        const struct epcs_page_summary *summary = &table->slots[at];
        if (summary->first_id != first_id || summary->key != key)
            continue;
        excluded = !epcs_summary_may_hold(summary->bits, wanted);
        break;
    }
    pthread_mutex_unlock(&table->lock);
    return excluded;
}

static void summary_insert_locked(struct epcs_summary_table *table,
                                  const struct epcs_page_summary *page)
{
    size_t at = summary_slot(table, page->first_id, page->key);
    while (table->slots[at].first_id != 0) {
        if (table->slots[at].first_id == page->first_id && table->slots[at].key == page->key)
            return;
        at = (at + 1) & (table->capacity - 1);
    }
    table->slots[at] = *page;
    table->count++;
}

void epcs_summary_table_store(struct epcs_summary_table *table, int64_t first_id, int64_t key,
                              const uint64_t *bits)
{
    struct epcs_page_summary page = {.first_id = first_id, .key = key};
    memcpy(page.bits, bits, sizeof(page.bits));
    pthread_mutex_lock(&table->lock);
    if ((table->count + 1) * 2 > table->capacity && table->count < SUMMARY_MAX_PAGES) {
        size_t slots = table->capacity ? table->capacity * 2 : 1024;
        struct epcs_page_summary *grown = calloc(slots, sizeof(*grown));
        if (grown != NULL) {
            struct epcs_page_summary *old = table->slots;
            size_t old_slots = table->capacity;
            table->slots = grown;
            table->capacity = slots;
            table->count = 0;
            for (size_t i = 0; i < old_slots; i++) {
                if (old[i].first_id != 0)
                    summary_insert_locked(table, &old[i]);
            }
            free(old);
        }
    }
    if ((table->count + 1) * 2 <= table->capacity)
        summary_insert_locked(table, &page);
    pthread_mutex_unlock(&table->lock);
}

/* ---- reading pages ------------------------------------------------------------------------ */

int epcs_page_decoder_init(struct epcs_page_decoder *decoder, char *err, size_t err_size)
{
    *decoder = (struct epcs_page_decoder){.err = err, .err_size = err_size};
    if (!msgpack_zone_init(&decoder->zone, 8192)) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    return 0;
}

void epcs_page_decoder_dispose(struct epcs_page_decoder *decoder)
{
    msgpack_zone_destroy(&decoder->zone);
}

void epcs_page_decoder_start(struct epcs_page_decoder *decoder, const char *body, size_t len)
{
    msgpack_zone_clear(&decoder->zone);
    decoder->body = body;
    decoder->len = len;
    decoder->offset = 0;
}

int epcs_page_decoder_next(struct epcs_page_decoder *decoder, msgpack_object *entry)
{
    if (decoder->offset >= decoder->len)
        return 0;
    msgpack_unpack_return rc =
        msgpack_unpack(decoder->body, decoder->len, &decoder->offset, &decoder->zone, entry);
    if ((rc != MSGPACK_UNPACK_SUCCESS && rc != MSGPACK_UNPACK_EXTRA_BYTES) || !entry_valid(entry)) {
        snprintf(decoder->err, decoder->err_size, "a page of the decision log is unreadable");
        return -1;
    }
    return 1;
}

int epcs_entry_details(const msgpack_object *entry, struct epcs_buf *request, char *ruleset,
                       size_t ruleset_size, char *date)
{
    const msgpack_object *f = entry->via.array.ptr;
    if (f[0].via.u64 != EPCS_ENTRY_DECISION)
        return request != NULL ? 2 : 0;
    if (request != NULL)
        epcs_buf_append(request, f[10].via.bin.ptr, f[10].via.bin.size);
    if (ruleset != NULL)
        snprintf(ruleset, ruleset_size, "%.*s", (int)f[9].via.str.size, f[9].via.str.ptr);
    if (date != NULL)
        epcs_date_format((int32_t)f[4].via.i64, date);
    return 0;
}

int epcs_entry_check(const msgpack_object *entry, const void **request, size_t *len, char date[11])
{
    const msgpack_object *f = entry->via.array.ptr;
    if (f[0].via.u64 != EPCS_ENTRY_DECISION)
        return 1;
    *request = f[10].via.bin.ptr;
    *len = f[10].via.bin.size;
    epcs_date_format((int32_t)f[4].via.i64, date);
    return 0;
}

void epcs_pack_listing(msgpack_packer *pk, const struct epcs_buf *rows, size_t count, int more,
                       uint64_t last_id)
{
    msgpack_pack_map(pk, 2);
    pack_key(pk, "decisions");
    msgpack_pack_array(pk, count);
    epcs_buf_append(pk->data, rows->data, rows->len);
    pack_key(pk, "next");
    if (more)
        msgpack_pack_uint64(pk, last_id);
    else
        msgpack_pack_nil(pk);
}
