/* The case store: reports, the requests they caused and their history, in SQLite. */
#include "cases.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "codec.h"
#include "dates.h"
#include "decision_log.h"
#include "facts.h"
#include "log.h"
#include "partner.h"
#include "sqlite_store.h"
#include "store.h"

/* Readers and the writer may meet on the database; a write waits rather than fail. */
#define BUSY_TIMEOUT_MS 5000
/* Who takes the steps nobody asked for: requests made from a verdict, overdue, escalation. */
#define EPCS_ACTOR "epcs"
/* More actions than this in one verdict is a rule gone wrong, not a case. */
#define MAX_ACTIONS 16
/* Escalations of escalations: the contract nests two deep; a little room, never unbounded. */
#define MAX_ESCALATION_DEPTH 4
/* Ten years: a longer period is a typo in the rules, and would overflow nothing but sense. */
#define MAX_DUE_HOURS (24.0 * 366 * 10)
#define MAX_OBJECTION_DAYS 3660.0

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

/* Splices already-encoded msgpack into the packer's output. */
static void pack_raw(msgpack_packer *pk, const void *bytes, size_t len)
{
    pk->callback(pk->data, bytes, len);
}

static void pack_text_column(msgpack_packer *pk, sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    const char *text = (const char *)sqlite3_column_text(stmt, column);
    size_t len = (size_t)sqlite3_column_bytes(stmt, column);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, text, len);
}

static void pack_time_column(msgpack_packer *pk, sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        msgpack_pack_nil(pk);
    else
        epcs_pack_instant_us(pk, sqlite3_column_int64(stmt, column));
}

static void pack_id_column(msgpack_packer *pk, sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint64(pk, (uint64_t)sqlite3_column_int64(stmt, column));
}

/* A stored msgpack value, or nil when the column is NULL or empty. */
static void pack_blob_column(msgpack_packer *pk, sqlite3_stmt *stmt, int column)
{
    int len = sqlite3_column_bytes(stmt, column);
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL || len == 0)
        msgpack_pack_nil(pk);
    else
        pack_raw(pk, sqlite3_column_blob(stmt, column), (size_t)len);
}

/* A string member copied into `out`; -1 when absent, not a string, empty, too long or with
 * a NUL byte. */
static int copy_string(const msgpack_object *value, char *out, size_t size)
{
    if (value == NULL || value->type != MSGPACK_OBJECT_STR || value->via.str.size == 0 ||
        value->via.str.size >= size || memchr(value->via.str.ptr, '\0', value->via.str.size))
        return -1;
    memcpy(out, value->via.str.ptr, value->via.str.size);
    out[value->via.str.size] = '\0';
    return 0;
}

static int as_number(const msgpack_object *value, double *out)
{
    switch (value->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)value->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)value->via.i64;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = value->via.f64;
        return isfinite(*out) ? 0 : -1;
    default:
        return -1;
    }
}

/* ---- postings ----------------------------------------------------------------------------- */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c;
}

/* Appends `len` bytes of path and query with their percent-escapes normalised (RFC 3986
   6.2.2): an escape of an unreserved character becomes the character, the others get upper
   case hex digits. Returns the new length, or SIZE_MAX when `out` is full. */
static size_t put_escaped(char *out, size_t at, size_t size, const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int high = text[i] == '%' && i + 2 < len ? hex_value(text[i + 1]) : -1;
        int low = high >= 0 ? hex_value(text[i + 2]) : -1;
        char c = text[i];
        if (low >= 0) {
            i += 2;
            c = (char)(high << 4 | low);
            if (!unreserved((unsigned char)c)) {
                if (at + 3 >= size)
                    return SIZE_MAX;
                out[at++] = '%';
                out[at++] = "0123456789ABCDEF"[high];
                out[at++] = "0123456789ABCDEF"[low];
                continue;
            }
        }
        if (at + 1 >= size)
            return SIZE_MAX;
        out[at++] = c;
    }
    return at;
}

/* Whether `port` (`len` digits) is the default of a scheme of `scheme` bytes ("http://"). */
static int default_port(const char *port, size_t len, size_t scheme)
{
    return (scheme == 7 && len == 2 && memcmp(port, "80", 2) == 0) ||
           (scheme == 8 && len == 3 && memcmp(port, "443", 3) == 0);
}

int epcs_cases_posting(const char *url, char *out, size_t size)
{
    size_t scheme = strncasecmp(url, "https://", 8) == 0  ? 8
                    : strncasecmp(url, "http://", 7) == 0 ? 7
                                                          : 0;
    /* The fragment is the reader's place in the page, not another posting. */
    size_t end = strcspn(url, "#");
    const char *authority = url + scheme;
    size_t authority_len = scheme != 0 ? strcspn(authority, "/?#") : 0;
    if (authority_len == 0 || end + 2 >= size)
        return -1;
    for (size_t i = 0; i < scheme; i++)
        out[i] = lower(url[i]);
    /* Userinfo keeps its case; the host is case-insensitive (RFC 3986 3.2.2). */
    const char *at_sign = memchr(authority, '@', authority_len);
    const char *host = at_sign != NULL ? at_sign + 1 : authority;
    size_t host_len = authority_len - (size_t)(host - authority);
    /* An IPv6 literal holds colons of its own: the port's comes after its bracket. */
    const char *bracket = host_len > 0 && host[0] == '[' ? memchr(host, ']', host_len) : NULL;
    const char *colon =
        bracket != NULL ? (bracket + 1 < host + host_len && bracket[1] == ':' ? bracket + 1 : NULL)
                        : memchr(host, ':', host_len);
    size_t name_len = colon != NULL ? (size_t)(colon - host) : host_len;
    size_t port_len = colon != NULL ? host_len - name_len - 1 : 0;
    /* A default port, or none after the colon, and the final dot of a fully qualified name
       name the same host. */
    int keep_port = colon != NULL && port_len > 0 && !default_port(colon + 1, port_len, scheme);
    if (name_len > 1 && host[name_len - 1] == '.')
        name_len--;
    if (name_len == 0)
        return -1;
    size_t at = scheme, userinfo_len = (size_t)(host - authority);
    memcpy(out + at, authority, userinfo_len);
    at += userinfo_len;
    for (size_t i = 0; i < name_len; i++)
        out[at++] = lower(host[i]);
    if (keep_port) {
        out[at++] = ':';
        memcpy(out + at, colon + 1, port_len);
        at += port_len;
    }
    const char *rest = authority + authority_len;
    size_t rest_len = end - scheme - authority_len;
    /* An empty path is the root (RFC 3986 6.2.3). */
    if (rest_len == 0 || rest[0] == '?')
        out[at++] = '/';
    at = put_escaped(out, at, size, rest, rest_len);
    if (at == SIZE_MAX)
        return -1;
    out[at] = '\0';
    return 0;
}

/* ---- actions ------------------------------------------------------------------------------ */

/* One action of a verdict (or an escalation of one), read and checked. */
struct action {
    const msgpack_object *map;
    char kind[32];
    char to[EPCS_KEY_PARTNER_MAX];
    char article[64];
    /* Durations from the moment the request is sent; 0: no due time, -1: no objection. */
    int64_t due_span_us;
    int64_t objection_span_us;
    const msgpack_object *escalation;
    int escalate_after;
};

static int parse_action(const msgpack_object *map, const char *platform, int depth,
                        struct action *action, char *why, size_t why_size)
{
    memset(action, 0, sizeof(*action));
    action->map = map;
    action->objection_span_us = -1;
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return snprintf(why, why_size, "is not a map"), -1;
    if (copy_string(epcs_map_get(map, "kind"), action->kind, sizeof(action->kind)) != 0 ||
        (strcmp(action->kind, "deletion_request") != 0 && strcmp(action->kind, "referral") != 0))
        return snprintf(why, why_size, "kind must be deletion_request or referral"), -1;
    if (copy_string(epcs_map_get(map, "to"), action->to, sizeof(action->to)) != 0)
        return snprintf(why, why_size, "to must be \"platform\" or a partner id"), -1;
    if (strcmp(action->to, "platform") == 0)
        snprintf(action->to, sizeof(action->to), "%s", platform);
    else if (!epcs_partner_id_valid(action->to))
        return snprintf(why, why_size, "to '%s' is not a partner id (a-z 0-9 _ - .)", action->to),
               -1;
    if (copy_string(epcs_map_get(map, "article"), action->article, sizeof(action->article)) != 0)
        return snprintf(why, why_size, "article must be a string of 1 to 63 bytes"), -1;
    const msgpack_object *due = epcs_map_get(map, "due_hours");
    if (due != NULL) {
        double hours;
        if (as_number(due, &hours) != 0 || hours <= 0 || hours > MAX_DUE_HOURS)
            return snprintf(why, why_size, "due_hours must be a number above 0 and at most %g",
                            MAX_DUE_HOURS),
                   -1;
        action->due_span_us = llround(hours * 3600e6);
        if (action->due_span_us == 0)
            action->due_span_us = 1;
    }
    const msgpack_object *objection = epcs_map_get(map, "objection_days");
    if (objection != NULL) {
        double days;
        if (as_number(objection, &days) != 0 || days < 0 || days > MAX_OBJECTION_DAYS)
            return snprintf(why, why_size, "objection_days must be a number from 0 to %g",
                            MAX_OBJECTION_DAYS),
                   -1;
        action->objection_span_us = llround(days * 86400e6);
    }
    const msgpack_object *escalation = epcs_map_get(map, "escalation");
    if (escalation != NULL) {
        const msgpack_object *after = epcs_map_get(escalation, "after");
        if (depth >= MAX_ESCALATION_DEPTH)
            return snprintf(why, why_size, "escalations nest too deep"), -1;
        if (escalation->type != MSGPACK_OBJECT_MAP || after == NULL ||
            after->type != MSGPACK_OBJECT_POSITIVE_INTEGER || after->via.u64 < 1 ||
            after->via.u64 > 100)
            return snprintf(why, why_size,
                            "escalation must be a map whose after is a whole number from 1 to "
                            "100"),
                   -1;
        struct action inner;
        char inner_why[200];
        if (parse_action(escalation, platform, depth + 1, &inner, inner_why, sizeof(inner_why)) !=
            0)
            return snprintf(why, why_size, "escalation: %.150s", inner_why), -1;
        action->escalation = escalation;
        action->escalate_after = (int)after->via.u64;
    }
    return 0;
}

/* The parts of a verdict the store reads. */
struct verdict_view {
    msgpack_object root;
    char verdict[16];
    char article[64];
    char ruleset[32];
    const msgpack_object *actions;
};

static int read_verdict(msgpack_zone *zone, const char *bytes, size_t len,
                        struct verdict_view *view, char *why, size_t why_size)
{
    size_t offset = 0;
    memset(view, 0, sizeof(*view));
    if (msgpack_unpack(bytes, len, &offset, zone, &view->root) != MSGPACK_UNPACK_SUCCESS ||
        view->root.type != MSGPACK_OBJECT_MAP)
        return snprintf(why, why_size, "the verdict is not a msgpack map"), -1;
    if (copy_string(epcs_map_get(&view->root, "verdict"), view->verdict, sizeof(view->verdict)) !=
            0 ||
        copy_string(epcs_map_get(&view->root, "article"), view->article, sizeof(view->article)) !=
            0 ||
        copy_string(epcs_map_get(&view->root, "ruleset"), view->ruleset, sizeof(view->ruleset)) !=
            0)
        return snprintf(why, why_size, "the verdict lacks verdict, article or ruleset"), -1;
    /* The store gives the decision its id, and adds it to the answer. */
    if (epcs_map_get(&view->root, "decision") != NULL)
        return snprintf(why, why_size, "the verdict carries a decision id already"), -1;
    view->actions = epcs_map_get(&view->root, "actions");
    if (view->actions != NULL && view->actions->type != MSGPACK_OBJECT_ARRAY)
        return snprintf(why, why_size, "actions is not a list"), -1;
    if (view->actions != NULL && view->actions->via.array.size > MAX_ACTIONS)
        return snprintf(why, why_size, "more than %d actions", MAX_ACTIONS), -1;
    return 0;
}

static size_t action_count(const struct verdict_view *view)
{
    return view->actions != NULL ? view->actions->via.array.size : 0;
}

int epcs_cases_check_actions(const char *verdict, size_t verdict_len, const char *platform,
                             char *why, size_t why_size)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 2048))
        return snprintf(why, why_size, "out of memory"), -1;
    struct verdict_view view;
    int rc = read_verdict(&zone, verdict, verdict_len, &view, why, why_size);
    for (size_t i = 0; rc == 0 && i < action_count(&view); i++) {
        struct action action;
        char inner[200];
        if (parse_action(&view.actions->via.array.ptr[i], platform, 0, &action, inner,
                         sizeof(inner)) != 0) {
            snprintf(why, why_size, "actions[%zu]: %.200s", i, inner);
            rc = -1;
        }
    }
    /* The actions live in the zone: counted before it goes. */
    int count = rc == 0 ? (int)action_count(&view) : -1;
    msgpack_zone_destroy(&zone);
    return count;
}

/* ---- steps -------------------------------------------------------------------------------- */

/* A detail map under construction. */
struct detail {
    struct epcs_buf buf;
    msgpack_packer pk;
};

static void detail_begin(struct detail *detail, size_t fields)
{
    detail->buf = (struct epcs_buf){0};
    msgpack_packer_init(&detail->pk, &detail->buf, epcs_buf_msgpack_write);
    msgpack_pack_map(&detail->pk, fields);
}

static void detail_str(struct detail *detail, const char *key, const char *value)
{
    epcs_pack_cstr(&detail->pk, key);
    epcs_pack_cstr(&detail->pk, value);
}

static void detail_id(struct detail *detail, const char *key, uint64_t value)
{
    epcs_pack_cstr(&detail->pk, key);
    msgpack_pack_uint64(&detail->pk, value);
}

static void detail_time(struct detail *detail, const char *key, int64_t us)
{
    epcs_pack_cstr(&detail->pk, key);
    epcs_pack_instant_us(&detail->pk, us);
}

/* One step of a case: a history row and its event in the decision log. */
struct step {
    uint64_t report;
    /* 0 for a step of the report itself. */
    uint64_t request;
    const char *event;
    /* The status of the request (or report) after the step. */
    const char *status;
    /* Who took the step: a partner id, or EPCS_ACTOR. */
    const char *actor;
    /* Whom it concerns, the event's partner in the decision log. */
    const char *partner;
    const char *election;
    const struct detail *detail;
    int64_t at_us;
};

/* Whether the decision log can take another entry now: a full or failed log means the step is
   refused (503) before anything is stored. */
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

/* A fresh decision-log id for an entry of the step under way, or 0 with the log off. */
static int take_log_id(struct sqlite_cases *cases, uint64_t *id, char *err, size_t err_size)
{
    *id = 0;
    if (cases->log == NULL)
        return EPCS_CASES_OK;
    if (!log_can_take(cases, err, err_size))
        return EPCS_CASES_LOG_REFUSED;
    *id = epcs_decision_log_next_id(cases->log, &cases->stage);
    return EPCS_CASES_OK;
}

static int outbox_event(struct sqlite_cases *cases, uint64_t id, const struct step *step,
                        const char *detail, size_t detail_len, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "INSERT INTO outbox(id, kind, at_us, partner, election, event, "
                                 "subject, detail) VALUES(?,1,?,?,?,?,?,?)",
                                 err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(stmt, 2, step->at_us);
    bind_text(stmt, 3, step->partner);
    bind_text(stmt, 4, step->election);
    bind_text(stmt, 5, step->event);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)(step->request != 0 ? step->request : step->report));
    if (detail != NULL)
        sqlite3_bind_blob(stmt, 7, detail, (int)detail_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, 7);
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* The step's history row and, with the log on, its event in the outbox, in the transaction
   under way: both are stored or neither. */
static int record_step(struct sqlite_cases *cases, const struct step *step, char *err,
                       size_t err_size)
{
    const char *detail = step->detail != NULL ? step->detail->buf.data : NULL;
    size_t detail_len = step->detail != NULL ? step->detail->buf.len : 0;
    uint64_t log_id;
    int rc = take_log_id(cases, &log_id, err, err_size);
    if (rc == EPCS_CASES_OK && log_id != 0)
        rc = outbox_event(cases, log_id, step, detail, detail_len, err, err_size);
    if (rc != EPCS_CASES_OK)
        return rc;
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "INSERT INTO history(report, request, at_us, event, status, "
                                 "actor, detail, log_id) VALUES(?,?,?,?,?,?,?,?)",
                                 err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)step->report);
    bind_optional_int(stmt, 2, (int64_t)step->request, step->request != 0);
    sqlite3_bind_int64(stmt, 3, step->at_us);
    bind_text(stmt, 4, step->event);
    bind_text(stmt, 5, step->status);
    bind_text(stmt, 6, step->actor);
    if (detail != NULL)
        sqlite3_bind_blob(stmt, 7, detail, (int)detail_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, 7);
    bind_optional_int(stmt, 8, (int64_t)log_id, log_id != 0);
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* A request about to be sent, or held for staff. */
struct new_request {
    uint64_t report;
    const char *election;
    const struct action *action;
    /* 0: the request starts a chain of its own. */
    uint64_t chain;
    int attempt;
    /* The ignored request that caused this one, or 0. */
    uint64_t follows;
    /* Held until staff confirm it: no due time or objection period yet, in nobody's queue. */
    int held;
    int64_t now_us;
};

/* The detail of request_sent and request_held. */
static void sent_detail(struct detail *detail, uint64_t report, const struct action *action,
                        int attempt, const int64_t *due, uint64_t follows)
{
    detail_begin(detail, 5 + (due != NULL) + (follows != 0));
    detail_id(detail, "report", report);
    detail_str(detail, "kind", action->kind);
    detail_str(detail, "to", action->to);
    detail_str(detail, "article", action->article);
    epcs_pack_cstr(&detail->pk, "attempt");
    msgpack_pack_int(&detail->pk, attempt);
    if (due != NULL)
        detail_time(detail, "due", *due);
    if (follows != 0)
        detail_id(detail, "follows", follows);
}

static int create_request(struct sqlite_cases *cases, const struct new_request *new_request,
                          uint64_t *id, char *err, size_t err_size)
{
    const struct action *action = new_request->action;
    struct epcs_buf spec = {0};
    msgpack_packer spec_pk;
    msgpack_packer_init(&spec_pk, &spec, epcs_buf_msgpack_write);
    msgpack_pack_object(&spec_pk, *action->map);
    int64_t now = new_request->now_us;
    int sent = !new_request->held;
    int has_due = sent && action->due_span_us > 0;
    int has_objection = sent && action->objection_span_us >= 0;
    int64_t due = now + action->due_span_us;
    sqlite3_stmt *stmt =
        prepare(cases->db,
                "INSERT INTO requests(report, chain, attempt, follows, kind, partner, article, "
                "action, created_us, sent_us, due_us, objection_until_us, status, updated_us) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                err, err_size);
    if (stmt == NULL) {
        epcs_buf_free(&spec);
        return EPCS_CASES_FAILED;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)new_request->report);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)new_request->chain);
    sqlite3_bind_int(stmt, 3, new_request->attempt);
    bind_optional_int(stmt, 4, (int64_t)new_request->follows, new_request->follows != 0);
    bind_text(stmt, 5, action->kind);
    bind_text(stmt, 6, action->to);
    bind_text(stmt, 7, action->article);
    sqlite3_bind_blob(stmt, 8, spec.data, (int)spec.len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 9, now);
    bind_optional_int(stmt, 10, now, sent);
    bind_optional_int(stmt, 11, due, has_due);
    bind_optional_int(stmt, 12, now + action->objection_span_us, has_objection);
    bind_text(stmt, 13, sent ? "open" : "held");
    sqlite3_bind_int64(stmt, 14, now);
    epcs_buf_free(&spec);
    if (run(cases->db, stmt, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    *id = (uint64_t)sqlite3_last_insert_rowid(cases->db);
    if (new_request->chain == 0) {
        stmt = prepare(cases->db, "UPDATE requests SET chain = id WHERE id = ?", err, err_size);
        if (stmt == NULL)
            return EPCS_CASES_FAILED;
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)*id);
        if (run(cases->db, stmt, err, err_size) != 0)
            return EPCS_CASES_FAILED;
    }
    struct detail detail;
    sent_detail(&detail, new_request->report, action, new_request->attempt, has_due ? &due : NULL,
                new_request->follows);
    struct step step = {.report = new_request->report,
                        .request = *id,
                        .event = sent ? "request_sent" : "request_held",
                        .status = sent ? "open" : "held",
                        .actor = EPCS_ACTOR,
                        .partner = action->to,
                        .election = new_request->election,
                        .detail = &detail,
                        .at_us = now};
    int rc = record_step(cases, &step, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* How many of a report's requests are in each state that decides the report's. */
struct request_counts {
    long long all, pending, held, dismissed;
};

static const char *report_status(const char *verdict, const struct request_counts *counts)
{
    if (counts->all == 0)
        return strcmp(verdict, "needs_facts") == 0 ? "needs_facts" : "no_action";
    if (counts->held > 0)
        return "held";
    if (counts->pending > 0)
        return "open";
    return counts->dismissed == counts->all ? "dismissed" : "closed";
}

/* Brings the report's status in line with its requests after a change to them. */
static int refresh_report(struct sqlite_cases *cases, uint64_t report, int64_t now, char *err,
                          size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        cases->db,
        "SELECT status, verdict, filed_by, election, "
        "(SELECT count(*) FROM requests WHERE report = ?1), "
        "(SELECT count(*) FROM requests WHERE report = ?1 AND status IN ('open', 'overdue')), "
        "(SELECT count(*) FROM requests WHERE report = ?1 AND status = 'held'), "
        "(SELECT count(*) FROM requests WHERE report = ?1 AND status = 'dismissed') "
        "FROM reports WHERE id = ?1",
        err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        snprintf(err, err_size, "report %llu vanished: %s", (unsigned long long)report,
                 sqlite3_errmsg(cases->db));
        sqlite3_finalize(stmt);
        return EPCS_CASES_FAILED;
    }
    char current[16], verdict[16], filed_by[EPCS_KEY_PARTNER_MAX], election[64];
    snprintf(current, sizeof(current), "%s", (const char *)sqlite3_column_text(stmt, 0));
    snprintf(verdict, sizeof(verdict), "%s", (const char *)sqlite3_column_text(stmt, 1));
    snprintf(filed_by, sizeof(filed_by), "%s", (const char *)sqlite3_column_text(stmt, 2));
    snprintf(election, sizeof(election), "%s", (const char *)sqlite3_column_text(stmt, 3));
    struct request_counts counts = {sqlite3_column_int64(stmt, 4), sqlite3_column_int64(stmt, 5),
                                    sqlite3_column_int64(stmt, 6), sqlite3_column_int64(stmt, 7)};
    const char *status = report_status(verdict, &counts);
    sqlite3_finalize(stmt);
    stmt = prepare(cases->db, "UPDATE reports SET status = ?, updated_us = ? WHERE id = ?", err,
                   err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, status);
    sqlite3_bind_int64(stmt, 2, now);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)report);
    if (run(cases->db, stmt, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    if (strcmp(status, current) == 0 || strcmp(status, "closed") != 0)
        return EPCS_CASES_OK;
    struct step step = {.report = report,
                        .event = "report_closed",
                        .status = status,
                        .actor = EPCS_ACTOR,
                        .partner = filed_by,
                        .election = election,
                        .at_us = now};
    return record_step(cases, &step, err, err_size);
}

/* ---- packing ------------------------------------------------------------------------------ */

#define REQUEST_COLUMNS                                                                            \
    "SELECT q.id, q.report, q.kind, q.partner, q.article, q.attempt, q.status, q.created_us, "     \
    "q.due_us, q.objection_until_us, q.follows, q.action, q.answered_us, q.reason, q.data, "       \
    "q.answered_via, r.url, r.platform, r.election, r.category, q.sent_us FROM requests q "        \
    "JOIN reports r ON r.id = q.report"

static void pack_request_row(msgpack_packer *pk, sqlite3_stmt *stmt)
{
    msgpack_pack_map(pk, 18);
    epcs_pack_cstr(pk, "id");
    pack_id_column(pk, stmt, 0);
    epcs_pack_cstr(pk, "report");
    pack_id_column(pk, stmt, 1);
    epcs_pack_cstr(pk, "kind");
    pack_text_column(pk, stmt, 2);
    epcs_pack_cstr(pk, "to");
    pack_text_column(pk, stmt, 3);
    epcs_pack_cstr(pk, "article");
    pack_text_column(pk, stmt, 4);
    epcs_pack_cstr(pk, "attempt");
    msgpack_pack_int64(pk, sqlite3_column_int64(stmt, 5));
    epcs_pack_cstr(pk, "status");
    pack_text_column(pk, stmt, 6);
    epcs_pack_cstr(pk, "created");
    pack_time_column(pk, stmt, 7);
    epcs_pack_cstr(pk, "sent");
    pack_time_column(pk, stmt, 20);
    epcs_pack_cstr(pk, "due");
    pack_time_column(pk, stmt, 8);
    epcs_pack_cstr(pk, "objection_until");
    pack_time_column(pk, stmt, 9);
    epcs_pack_cstr(pk, "follows");
    pack_id_column(pk, stmt, 10);
    epcs_pack_cstr(pk, "url");
    pack_text_column(pk, stmt, 16);
    epcs_pack_cstr(pk, "platform");
    pack_text_column(pk, stmt, 17);
    epcs_pack_cstr(pk, "election");
    pack_text_column(pk, stmt, 18);
    epcs_pack_cstr(pk, "category");
    pack_text_column(pk, stmt, 19);
    epcs_pack_cstr(pk, "action");
    pack_blob_column(pk, stmt, 11);
    epcs_pack_cstr(pk, "answer");
    if (sqlite3_column_type(stmt, 12) == SQLITE_NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    int has_reason = sqlite3_column_type(stmt, 13) != SQLITE_NULL;
    int has_data = sqlite3_column_type(stmt, 14) != SQLITE_NULL;
    int has_via = sqlite3_column_type(stmt, 15) != SQLITE_NULL;
    msgpack_pack_map(pk, 2 + (size_t)has_reason + (size_t)has_data + (size_t)has_via);
    epcs_pack_cstr(pk, "status");
    pack_text_column(pk, stmt, 6);
    epcs_pack_cstr(pk, "at");
    pack_time_column(pk, stmt, 12);
    if (has_reason) {
        epcs_pack_cstr(pk, "reason");
        pack_text_column(pk, stmt, 13);
    }
    if (has_data) {
        epcs_pack_cstr(pk, "data");
        pack_blob_column(pk, stmt, 14);
    }
    if (has_via) {
        epcs_pack_cstr(pk, "via");
        pack_id_column(pk, stmt, 15);
    }
}

static int get_request(sqlite3 *db, uint64_t id, const char *partner, msgpack_packer *pk, char *err,
                       size_t err_size)
{
    /* A held or dismissed request was never sent: its addressee does not see it. */
    sqlite3_stmt *stmt = prepare(db,
                                 REQUEST_COLUMNS " WHERE q.id = ?1 AND (?2 IS NULL OR (q.partner = "
                                                 "?2 AND q.status NOT IN ('held', 'dismissed')))",
                                 err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    bind_text(stmt, 2, partner);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        pack_request_row(pk, stmt);
    else if (step != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? 1 : -1;
}

#define REPORT_COLUMNS                                                                             \
    "SELECT id, filed_us, filed_by, status, url, platform, election, category, date, verdict, "    \
    "article, ruleset, decision, updated_us, "                                                     \
    "(SELECT count(*) FROM requests WHERE requests.report = reports.id), facts, answer, posting, " \
    "(SELECT count(*) FROM reporters WHERE reporters.report = reports.id) FROM reports"

/* Columns 0 to 14, 17 and 18 of REPORT_COLUMNS as a map of 17 + `more` entries; the caller
   adds those. */
static void pack_report_summary(msgpack_packer *pk, sqlite3_stmt *stmt, size_t more)
{
    msgpack_pack_map(pk, 17 + more);
    epcs_pack_cstr(pk, "id");
    pack_id_column(pk, stmt, 0);
    epcs_pack_cstr(pk, "status");
    pack_text_column(pk, stmt, 3);
    epcs_pack_cstr(pk, "filed_at");
    pack_time_column(pk, stmt, 1);
    epcs_pack_cstr(pk, "filed_by");
    pack_text_column(pk, stmt, 2);
    static const char *const texts[] = {"url",  "platform", "election", "category",
                                        "date", "verdict",  "article",  "ruleset"};
    for (int i = 0; i < 8; i++) {
        epcs_pack_cstr(pk, texts[i]);
        pack_text_column(pk, stmt, 4 + i);
    }
    epcs_pack_cstr(pk, "decision");
    pack_id_column(pk, stmt, 12);
    epcs_pack_cstr(pk, "updated_at");
    pack_time_column(pk, stmt, 13);
    epcs_pack_cstr(pk, "request_count");
    msgpack_pack_int64(pk, sqlite3_column_int64(stmt, 14));
    epcs_pack_cstr(pk, "posting");
    pack_text_column(pk, stmt, 17);
    epcs_pack_cstr(pk, "reporter_count");
    msgpack_pack_int64(pk, sqlite3_column_int64(stmt, 18));
}

/* The rows of a page, packed one after another. */
struct packed_rows {
    struct epcs_buf bytes;
    size_t count;
    /* Column 0 of the last row packed. */
    uint64_t last;
    /* A row beyond `limit` followed. */
    int more;
};

/* Packs up to `limit` rows of `stmt` (finalized here) into `rows` (freed by the caller). 0, or
 * -1 with SQLite's message in `err` when a step fails. */
static int pack_rows(sqlite3 *db, sqlite3_stmt *stmt, size_t limit,
                     void (*pack_row)(msgpack_packer *pk, sqlite3_stmt *stmt),
                     struct packed_rows *rows, char *err, size_t err_size)
{
    msgpack_packer rows_pk;
    msgpack_packer_init(&rows_pk, &rows->bytes, epcs_buf_msgpack_write);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (rows->count == limit) {
            rows->more = 1;
            break;
        }
        pack_row(&rows_pk, stmt);
        rows->last = (uint64_t)sqlite3_column_int64(stmt, 0);
        rows->count++;
    }
    int failed = step != SQLITE_ROW && step != SQLITE_DONE;
    if (failed)
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return failed ? -1 : 0;
}

/* Packs every row of `stmt` (finalized here) as an array, or nothing when a step fails. */
static int pack_all_rows(sqlite3 *db, sqlite3_stmt *stmt, msgpack_packer *pk,
                         void (*pack_row)(msgpack_packer *pk, sqlite3_stmt *stmt), char *err,
                         size_t err_size)
{
    struct packed_rows rows = {.count = 0};
    int rc = pack_rows(db, stmt, SIZE_MAX, pack_row, &rows, err, err_size);
    if (rc == 0) {
        msgpack_pack_array(pk, rows.count);
        pack_raw(pk, rows.bytes.data, rows.bytes.len);
    }
    epcs_buf_free(&rows.bytes);
    return rc;
}

static void pack_history_row(msgpack_packer *pk, sqlite3_stmt *stmt)
{
    msgpack_pack_map(pk, 7);
    epcs_pack_cstr(pk, "at");
    pack_time_column(pk, stmt, 0);
    epcs_pack_cstr(pk, "event");
    pack_text_column(pk, stmt, 1);
    epcs_pack_cstr(pk, "request");
    pack_id_column(pk, stmt, 2);
    epcs_pack_cstr(pk, "status");
    pack_text_column(pk, stmt, 3);
    epcs_pack_cstr(pk, "by");
    pack_text_column(pk, stmt, 4);
    epcs_pack_cstr(pk, "detail");
    pack_blob_column(pk, stmt, 5);
    epcs_pack_cstr(pk, "decision");
    pack_id_column(pk, stmt, 6);
}

/* With `partner`, the report's own steps and those of the requests addressed to it. */
static int pack_history(sqlite3 *db, uint64_t report, const char *partner, msgpack_packer *pk,
                        char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        db,
        "SELECT at_us, event, request, status, actor, detail, log_id FROM history "
        "WHERE report = ?1 AND (?2 IS NULL OR "
        "(request IS NULL AND (event != 'report_joined' OR actor = ?2)) OR "
        "request IN (SELECT id FROM requests WHERE report = ?1 AND partner = ?2)) ORDER BY id",
        err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    bind_text(stmt, 2, partner);
    return pack_all_rows(db, stmt, pk, pack_history_row, err, err_size);
}

static int pack_requests_of(sqlite3 *db, uint64_t report, const char *partner, msgpack_packer *pk,
                            char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        db, REQUEST_COLUMNS " WHERE q.report = ?1 AND (?2 IS NULL OR q.partner = ?2) ORDER BY q.id",
        err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    bind_text(stmt, 2, partner);
    return pack_all_rows(db, stmt, pk, pack_request_row, err, err_size);
}

static void pack_reporter_row(msgpack_packer *pk, sqlite3_stmt *stmt)
{
    msgpack_pack_map(pk, 3);
    epcs_pack_cstr(pk, "partner");
    pack_text_column(pk, stmt, 0);
    epcs_pack_cstr(pk, "at");
    pack_time_column(pk, stmt, 1);
    epcs_pack_cstr(pk, "url");
    pack_text_column(pk, stmt, 2);
}

/* The partners that reported the case, first first; with `partner`, that one only: who else
   reported a posting, and what they said of it, is theirs and the staff's to read. */
static int pack_reporters(sqlite3 *db, uint64_t report, const char *partner, msgpack_packer *pk,
                          char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(db,
                                 "SELECT partner, at_us, url FROM reporters WHERE report = ?1 AND "
                                 "(?2 IS NULL OR partner = ?2) ORDER BY at_us, rowid",
                                 err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    bind_text(stmt, 2, partner);
    return pack_all_rows(db, stmt, pk, pack_reporter_row, err, err_size);
}

/* The report of the statement's current row, whole, or nothing when a part fails; with
   `joined` 0 or 1, a `joined` entry too (the answer to a filing). */
static int pack_report_row(sqlite3 *db, sqlite3_stmt *stmt, uint64_t id, const char *partner,
                           int joined, msgpack_packer *pk, char *err, size_t err_size)
{
    struct epcs_buf out = {0};
    msgpack_packer out_pk;
    msgpack_packer_init(&out_pk, &out, epcs_buf_msgpack_write);
    pack_report_summary(&out_pk, stmt, 5 + (joined >= 0));
    if (joined >= 0) {
        epcs_pack_cstr(&out_pk, "joined");
        if (joined)
            msgpack_pack_true(&out_pk);
        else
            msgpack_pack_false(&out_pk);
    }
    epcs_pack_cstr(&out_pk, "facts");
    pack_blob_column(&out_pk, stmt, 15);
    epcs_pack_cstr(&out_pk, "answer");
    pack_blob_column(&out_pk, stmt, 16);
    epcs_pack_cstr(&out_pk, "reporters");
    int rc = pack_reporters(db, id, partner, &out_pk, err, err_size);
    if (rc == 0) {
        epcs_pack_cstr(&out_pk, "requests");
        rc = pack_requests_of(db, id, partner, &out_pk, err, err_size);
    }
    if (rc == 0) {
        epcs_pack_cstr(&out_pk, "history");
        rc = pack_history(db, id, partner, &out_pk, err, err_size);
    }
    if (rc == 0)
        pack_raw(pk, out.data, out.len);
    epcs_buf_free(&out);
    return rc;
}

/* Report `id` as epcs_cases_get_report packs it, with `joined` as pack_report_row takes it. */
static int pack_report(sqlite3 *db, uint64_t id, const char *reporter, int joined,
                       msgpack_packer *pk, char *err, size_t err_size)
{
    /* One read transaction, so the report, its requests and its history agree; inside a
     * write's (its answer kept under an Idempotency-Key), that one. */
    int own = sqlite3_get_autocommit(db);
    if (own && epcs_sqlite_exec(db, "BEGIN", err, err_size) != 0)
        return -1;
    sqlite3_stmt *stmt = prepare(db,
                                 REPORT_COLUMNS " WHERE id = ?1 AND (?2 IS NULL OR EXISTS (SELECT "
                                                "1 FROM reporters WHERE report = ?1 AND partner "
                                                "= ?2))",
                                 err, err_size);
    int rc = -1;
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
        bind_text(stmt, 2, reporter);
        int step = sqlite3_step(stmt);
        if (step == SQLITE_ROW)
            rc = pack_report_row(db, stmt, id, reporter, joined, pk, err, err_size);
        else if (step == SQLITE_DONE)
            rc = 1;
        else
            snprintf(err, err_size, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
    }
    char ignored[64];
    if (own)
        epcs_sqlite_exec(db, "COMMIT", ignored, sizeof(ignored));
    return rc;
}

static int get_report(sqlite3 *db, uint64_t id, const char *filer, msgpack_packer *pk, char *err,
                      size_t err_size)
{
    return pack_report(db, id, filer, -1, pk, err, err_size);
}

static sqlite3_stmt *report_query(sqlite3 *db, const struct epcs_report_query *query, char *err,
                                  size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        db,
        REPORT_COLUMNS " WHERE id > ?1 AND (?2 IS NULL OR status = ?2) AND "
                       "(?3 IS NULL OR platform = ?3) AND (?4 IS NULL OR election = ?4) AND "
                       "(?5 IS NULL OR category = ?5) AND (?6 IS NULL OR filed_us >= ?6) AND "
                       "(?7 IS NULL OR filed_us < ?7) AND (?9 IS NULL OR filed_by = ?9) AND "
                       "(?10 IS NULL OR EXISTS (SELECT 1 FROM reporters WHERE report = "
                       "reports.id AND partner = ?10)) ORDER BY id LIMIT ?8",
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

/* Packs {<name>: [rows...], next} from a statement whose column 0 is the id. */
static int pack_page(sqlite3 *db, sqlite3_stmt *stmt, const char *name, size_t limit,
                     void (*pack_row)(msgpack_packer *pk, sqlite3_stmt *stmt), msgpack_packer *pk,
                     char *err, size_t err_size)
{
    struct packed_rows rows = {.count = 0};
    int rc = pack_rows(db, stmt, limit, pack_row, &rows, err, err_size);
    if (rc == 0) {
        msgpack_pack_map(pk, 2);
        epcs_pack_cstr(pk, name);
        msgpack_pack_array(pk, rows.count);
        pack_raw(pk, rows.bytes.data, rows.bytes.len);
        epcs_pack_cstr(pk, "next");
        if (rows.more)
            msgpack_pack_uint64(pk, rows.last);
        else
            msgpack_pack_nil(pk);
    }
    epcs_buf_free(&rows.bytes);
    return rc;
}

static void pack_summary_row(msgpack_packer *pk, sqlite3_stmt *stmt)
{
    pack_report_summary(pk, stmt, 0);
}

static int list_reports(sqlite3 *db, const struct epcs_report_query *query, msgpack_packer *pk,
                        char *err, size_t err_size)
{
    sqlite3_stmt *stmt = report_query(db, query, err, err_size);
    if (stmt == NULL)
        return -1;
    return pack_page(db, stmt, "reports", query->limit, pack_summary_row, pk, err, err_size);
}

/* Whether a spreadsheet would read a cell starting so as a formula (OWASP, CSV injection): the
   cell then gets a leading apostrophe, which shows it as the text it is. */
static int csv_formula_start(const char *text, size_t len)
{
    return len > 0 && text[0] != '\0' && strchr("=+-@\t\r", text[0]) != NULL;
}

static void csv_field(struct epcs_buf *out, const char *text, size_t len, int last)
{
    int formula = csv_formula_start(text, len);
    if (strcspn(text, ",\"\r\n") < len) {
        epcs_buf_append(out, formula ? "\"'" : "\"", formula ? 2 : 1);
        for (size_t i = 0; i < len; i++) {
            if (text[i] == '"')
                epcs_buf_append(out, "\"", 1);
            epcs_buf_append(out, text + i, 1);
        }
        epcs_buf_append(out, "\"", 1);
    } else {
        if (formula)
            epcs_buf_append(out, "'", 1);
        epcs_buf_append(out, text, len);
    }
    epcs_buf_append(out, last ? "\r\n" : ",", last ? 2 : 1);
}

static void csv_column(struct epcs_buf *out, sqlite3_stmt *stmt, int column, int last)
{
    const char *text = (const char *)sqlite3_column_text(stmt, column);
    csv_field(out, text != NULL ? text : "", text != NULL ? strlen(text) : 0, last);
}

/* A time column as the JSON listings give it, or an empty field for NULL. */
static void csv_time(struct epcs_buf *out, sqlite3_stmt *stmt, int column, int last)
{
    char text[32] = "";
    if (sqlite3_column_type(stmt, column) != SQLITE_NULL)
        epcs_instant_format_us(sqlite3_column_int64(stmt, column), text);
    csv_field(out, text, strlen(text), last);
}

/* Writes `header`, then a line per row of `stmt` (finalized here; column 0 the id) up to
   `limit`; `next` is the last id written when more remain, else 0. */
static int export_rows(sqlite3 *db, sqlite3_stmt *stmt, size_t limit, const char *header,
                       void (*write_row)(struct epcs_buf *out, sqlite3_stmt *stmt),
                       struct epcs_buf *out, uint64_t *next, char *err, size_t err_size)
{
    epcs_buf_append_str(out, header);
    size_t count = 0;
    uint64_t last = 0;
    int step;
    *next = 0;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (count == limit) {
            *next = last;
            break;
        }
        write_row(out, stmt);
        last = (uint64_t)sqlite3_column_int64(stmt, 0);
        count++;
    }
    int failed = step != SQLITE_ROW && step != SQLITE_DONE;
    if (failed)
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return failed ? -1 : 0;
}

static void write_report_line(struct epcs_buf *out, sqlite3_stmt *stmt)
{
    csv_column(out, stmt, 0, 0);
    csv_time(out, stmt, 1, 0);
    for (int column = 2; column <= 12; column++)
        csv_column(out, stmt, column, 0);
    csv_column(out, stmt, 14, 0);
    csv_time(out, stmt, 13, 1);
}

static int export_reports(sqlite3 *db, const struct epcs_report_query *query, struct epcs_buf *out,
                          uint64_t *next, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = report_query(db, query, err, err_size);
    if (stmt == NULL)
        return -1;
    return export_rows(db, stmt, query->limit,
                       "id,filed_at,filed_by,status,url,platform,election,category,date,verdict,"
                       "article,ruleset,decision,request_count,updated_at\r\n",
                       write_report_line, out, next, err, err_size);
}

static sqlite3_stmt *request_query(sqlite3 *db, const struct epcs_request_query *query, char *err,
                                   size_t err_size)
{
    int all = strcmp(query->status, "all") == 0, pending = strcmp(query->status, "pending") == 0;
    sqlite3_stmt *stmt =
        prepare(db,
                REQUEST_COLUMNS " WHERE q.partner = ?1 AND q.id > ?2 AND (?3 IS NULL OR "
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
    sqlite3_stmt *stmt = request_query(db, query, err, err_size);
    if (stmt == NULL)
        return -1;
    return pack_page(db, stmt, "requests", query->limit, pack_request_row, pk, err, err_size);
}

/* REQUEST_COLUMNS in the order of the JSON request, without `action` and the answer's `data`
   (maps, which a spreadsheet cannot hold). */
static void write_request_line(struct epcs_buf *out, sqlite3_stmt *stmt)
{
    for (int column = 0; column <= 6; column++)
        csv_column(out, stmt, column, 0);
    for (int column = 7; column <= 9; column++)
        csv_time(out, stmt, column, 0);
    csv_column(out, stmt, 10, 0);
    for (int column = 16; column <= 19; column++)
        csv_column(out, stmt, column, 0);
    csv_time(out, stmt, 12, 0);
    csv_column(out, stmt, 13, 0);
    csv_column(out, stmt, 15, 1);
}

static int export_requests(sqlite3 *db, const struct epcs_request_query *query,
                           struct epcs_buf *out, uint64_t *next, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = request_query(db, query, err, err_size);
    if (stmt == NULL)
        return -1;
    return export_rows(db, stmt, query->limit,
                       "id,report,kind,to,article,attempt,status,created,due,objection_until,"
                       "follows,url,platform,election,category,answered_at,reason,via\r\n",
                       write_request_line, out, next, err, err_size);
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

/* `verdict` (a map without `decision`) with "decision": `id` at its end, as /v1/check
   answers. 0, or -1 when it is not a map. */
static int with_decision(const char *verdict, size_t len, uint64_t id, struct epcs_buf *out)
{
    uint32_t fields;
    size_t header_len;
    if (epcs_msgpack_map_header(verdict, len, &fields, &header_len) != 0)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    msgpack_pack_map(&pk, fields + 1);
    pack_raw(&pk, verdict + header_len, len - header_len);
    epcs_pack_cstr(&pk, "decision");
    msgpack_pack_uint64(&pk, id);
    return 0;
}

/* The report's decision in the outbox, as /v1/check would have logged it. */
static int outbox_decision(struct sqlite_cases *cases, uint64_t id,
                           const struct epcs_case_report *report, const struct epcs_buf *answer,
                           char *err, size_t err_size)
{
    const struct epcs_decision *decision = report->decision;
    sqlite3_stmt *stmt = prepare(
        cases->db,
        "INSERT INTO outbox(id, kind, at_us, partner, election, date, area, verdict, ruleset, "
        "request, answer, latency_us) VALUES(?,0,?,?,?,?,?,?,?,?,?,?)",
        err, err_size);
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
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* Takes the report's decision id (before its steps', so the decision comes first in the log)
   and makes the answer the report keeps: the verdict with that id. */
static int decide(struct sqlite_cases *cases, const struct epcs_case_report *report,
                  uint64_t *decision, struct epcs_buf *answer, char *err, size_t err_size)
{
    *decision = 0;
    int rc = report->decision != NULL ? take_log_id(cases, decision, err, err_size) : EPCS_CASES_OK;
    if (rc != EPCS_CASES_OK)
        return rc;
    if (*decision == 0)
        return epcs_buf_append(answer, report->verdict, report->verdict_len) == 0
                   ? EPCS_CASES_OK
                   : EPCS_CASES_FAILED;
    if (with_decision(report->verdict, report->verdict_len, *decision, answer) != 0)
        return snprintf(err, err_size, "the verdict is not a map"), EPCS_CASES_FAILED;
    return outbox_decision(cases, *decision, report, answer, err, err_size);
}

/* Whether `partner`'s reports send their requests at once (a policy staff set to "send"). */
static int policy_sends(struct sqlite_cases *cases, const char *partner, int *sends, char *err,
                        size_t err_size)
{
    sqlite3_stmt *stmt =
        prepare(cases->db, "SELECT reports FROM partner_policies WHERE partner = ?", err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, partner);
    int step = sqlite3_step(stmt);
    *sends = step == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(stmt, 0), "send") == 0;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW || step == SQLITE_DONE ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

static int add_reporter(struct sqlite_cases *cases, uint64_t report, const char *partner,
                        const struct epcs_case_report *filing, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        cases->db, "INSERT INTO reporters(report, partner, at_us, url, facts) VALUES(?,?,?,?,?)",
        err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    bind_text(stmt, 2, partner);
    sqlite3_bind_int64(stmt, 3, filing->now_us);
    bind_text(stmt, 4, filing->url);
    sqlite3_bind_blob(stmt, 5, filing->facts, (int)filing->facts_len, SQLITE_TRANSIENT);
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

static int file_locked(struct sqlite_cases *cases, const struct epcs_case_report *report,
                       const struct verdict_view *view, const struct action *actions, size_t count,
                       const char *posting, int held, uint64_t *id, char *err, size_t err_size)
{
    struct request_counts counts = {.all = (long long)count,
                                    .pending = held ? 0 : (long long)count,
                                    .held = held ? (long long)count : 0};
    const char *status = report_status(view->verdict, &counts);
    int64_t now = report->now_us;
    uint64_t decision;
    struct epcs_buf answer = {0};
    int rc = decide(cases, report, &decision, &answer, err, err_size);
    sqlite3_stmt *stmt =
        rc != EPCS_CASES_OK
            ? NULL
            : prepare(cases->db,
                      "INSERT INTO reports(filed_us, filed_by, url, posting, platform, election, "
                      "category, date, facts, verdict, article, ruleset, decision, answer, "
                      "status, updated_us) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      err, err_size);
    if (stmt == NULL) {
        epcs_buf_free(&answer);
        return rc != EPCS_CASES_OK ? rc : EPCS_CASES_FAILED;
    }
    sqlite3_bind_int64(stmt, 1, now);
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
    sqlite3_bind_blob(stmt, 14, answer.data, (int)answer.len, SQLITE_TRANSIENT);
    bind_text(stmt, 15, status);
    sqlite3_bind_int64(stmt, 16, now);
    rc = run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    epcs_buf_free(&answer);
    if (rc != EPCS_CASES_OK)
        return rc;
    *id = (uint64_t)sqlite3_last_insert_rowid(cases->db);
    rc = add_reporter(cases, *id, report->filed_by, report, err, err_size);
    struct detail detail;
    detail_begin(&detail, 6 + (decision != 0));
    detail_str(&detail, "url", report->url);
    detail_str(&detail, "platform", report->platform);
    detail_str(&detail, "category", report->category);
    detail_str(&detail, "date", report->date);
    detail_str(&detail, "verdict", view->verdict);
    detail_str(&detail, "article", view->article);
    if (decision != 0)
        detail_id(&detail, "decision", decision);
    struct step step = {.report = *id,
                        .event = "report_filed",
                        .status = status,
                        .actor = report->filed_by,
                        .partner = report->filed_by,
                        .election = report->election,
                        .detail = &detail,
                        .at_us = now};
    if (rc == EPCS_CASES_OK)
        rc = record_step(cases, &step, err, err_size);
    epcs_buf_free(&detail.buf);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++) {
        struct new_request new_request = {.report = *id,
                                          .election = report->election,
                                          .action = &actions[i],
                                          .attempt = 1,
                                          .held = held,
                                          .now_us = now};
        uint64_t request;
        rc = create_request(cases, &new_request, &request, err, err_size);
    }
    return rc;
}

/* The report already made for the posting, if any: 0 with *id (0 when none), or -1. A report
   that lacked facts decides nothing, so a filing that decides opens a case of its own rather
   than join it; one that lacks facts too joins it. */
static int find_case(struct sqlite_cases *cases, const char *posting,
                     const struct epcs_case_report *report, int decides, uint64_t *id, char *err,
                     size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "SELECT id FROM reports WHERE posting = ?1 AND election = ?2 AND "
                                 "category = ?3 AND (?4 = 0 OR status != 'needs_facts') "
                                 "ORDER BY status = 'needs_facts', id LIMIT 1",
                                 err, err_size);
    if (stmt == NULL)
        return -1;
    bind_text(stmt, 1, posting);
    bind_text(stmt, 2, report->election);
    bind_text(stmt, 3, report->category);
    sqlite3_bind_int(stmt, 4, decides);
    int step = sqlite3_step(stmt);
    *id = step == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(stmt, 0) : 0;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
}

/* A text column of the report's row: status, election, ... Copied into `out`. */
static int report_text(struct sqlite_cases *cases, uint64_t report, const char *column, char *out,
                       size_t size, char *err, size_t err_size)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT %s FROM reports WHERE id = ?", column);
    sqlite3_stmt *stmt = prepare(cases->db, sql, err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(stmt, 0));
    else if (step != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW    ? EPCS_CASES_OK
           : step == SQLITE_DONE ? EPCS_CASES_NOT_FOUND
                                 : EPCS_CASES_FAILED;
}

static int confirm_locked(struct sqlite_cases *cases, uint64_t report, const char *staff,
                          const struct detail *why, int64_t now, char *err, size_t err_size);

/*
 * A report of a posting that has its case already: the filer becomes one of its reporters
 * (a step of the case), or, when it is one already, nothing changes. No request is made; when
 * the filer's reports send at once and the case's requests are held, they are sent now.
 */
static int join_locked(struct sqlite_cases *cases, const struct epcs_case_report *report,
                       uint64_t id, int sends, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        cases->db, "SELECT 1 FROM reporters WHERE report = ? AND partner = ?", err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    bind_text(stmt, 2, report->filed_by);
    int step = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (step != SQLITE_DONE)
        return step == SQLITE_ROW ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    char status[24];
    int rc = report_text(cases, id, "status", status, sizeof(status), err, err_size);
    if (rc == EPCS_CASES_OK)
        rc = add_reporter(cases, id, report->filed_by, report, err, err_size);
    struct detail detail;
    detail_begin(&detail, 2);
    detail_str(&detail, "url", report->url);
    epcs_pack_cstr(&detail.pk, "facts");
    pack_raw(&detail.pk, report->facts, report->facts_len);
    struct step joined = {.report = id,
                          .event = "report_joined",
                          .status = status,
                          .actor = report->filed_by,
                          .partner = report->filed_by,
                          .election = report->election,
                          .detail = &detail,
                          .at_us = report->now_us};
    if (rc == EPCS_CASES_OK)
        rc = record_step(cases, &joined, err, err_size);
    epcs_buf_free(&detail.buf);
    if (rc != EPCS_CASES_OK || !sends || strcmp(status, "held") != 0)
        return rc == EPCS_CASES_OK ? refresh_report(cases, id, report->now_us, err, err_size) : rc;
    detail_begin(&detail, 1);
    detail_str(&detail, "via", "report_joined");
    rc = confirm_locked(cases, id, report->filed_by, &detail, report->now_us, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* Reads the verdict and its actions; -1 with `err` when they do not read. */
static int read_filing(msgpack_zone *zone, const struct epcs_case_report *report,
                       struct verdict_view *view, struct action *actions, size_t *count, char *err,
                       size_t err_size)
{
    if (read_verdict(zone, report->verdict, report->verdict_len, view, err, err_size) != 0)
        return -1;
    *count = action_count(view);
    for (size_t i = 0; i < *count; i++) {
        char why[200];
        if (parse_action(&view->actions->via.array.ptr[i], report->platform, 0, &actions[i], why,
                         sizeof(why)) != 0)
            return snprintf(err, err_size, "actions[%zu]: %.200s", i, why), -1;
    }
    return 0;
}

/* The filing in the transaction under way: a new case or a join. */
static int filing_locked(struct sqlite_cases *cases, const struct epcs_case_report *report,
                         const struct verdict_view *view, const struct action *actions,
                         size_t count, const char *posting, struct epcs_case_filed *filed,
                         char *err, size_t err_size)
{
    int sends = report->by_staff;
    int rc = sends ? EPCS_CASES_OK : policy_sends(cases, report->filed_by, &sends, err, err_size);
    if (rc == EPCS_CASES_OK &&
        find_case(cases, posting, report, strcmp(view->verdict, "needs_facts") != 0, &filed->id,
                  err, err_size) != 0)
        rc = EPCS_CASES_FAILED;
    if (rc != EPCS_CASES_OK)
        return rc;
    filed->joined = filed->id != 0;
    if (filed->joined)
        return join_locked(cases, report, filed->id, sends, err, err_size);
    return file_locked(cases, report, view, actions, count, posting, !sends, &filed->id, err,
                       err_size);
}

/* ---- Idempotency-Key ---------------------------------------------------------------------- */

/* A kept first answer, as a retry gets it. */
struct kept_answer {
    uint64_t subject;
    int joined;
    struct epcs_buf answer;
};

/*
 * Looks the key up in the transaction under way: EPCS_CASES_OK with `found` 0 (a first call),
 * or 1 and `kept` filled (a retry of the same request); KEY_REUSED for another request under
 * the key; FAILED.
 */
static int idempotency_lookup(struct sqlite_cases *cases, const char *partner, const char *scope,
                              const struct epcs_case_idempotency *idempotency, int *found,
                              struct kept_answer *kept, char *err, size_t err_size)
{
    *found = 0;
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "SELECT request_sha256, subject, joined, answer FROM idempotency "
                                 "WHERE partner = ? AND scope = ? AND key = ?",
                                 err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, partner);
    bind_text(stmt, 2, scope);
    bind_text(stmt, 3, idempotency->key);
    int step = sqlite3_step(stmt), rc = EPCS_CASES_OK;
    if (step == SQLITE_ROW) {
        const void *hash = sqlite3_column_blob(stmt, 0);
        if (sqlite3_column_bytes(stmt, 0) != 32 ||
            memcmp(hash, idempotency->request_sha256, 32) != 0) {
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
    } else if (step != SQLITE_DONE) {
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
        rc = EPCS_CASES_FAILED;
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* Keeps the answer of the write under way with its key, in its transaction. */
static int idempotency_keep(struct sqlite_cases *cases, const char *partner, const char *scope,
                            const struct epcs_case_idempotency *idempotency,
                            const struct kept_answer *kept, int64_t now_us, char *err,
                            size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "INSERT INTO idempotency(partner, scope, key, request_sha256, "
                                 "subject, joined, answer, at_us) VALUES(?,?,?,?,?,?,?,?)",
                                 err, err_size);
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
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* The caller's packer gets bytes packed elsewhere as they are. */
static void pack_kept(msgpack_packer *pk, const struct epcs_buf *answer)
{
    if (answer->len > 0)
        pk->callback(pk->data, answer->data, answer->len);
}

static int sqlite_cases_file(struct epcs_cases *handle, const struct epcs_case_report *report,
                             msgpack_packer *pk, struct epcs_case_filed *filed, char *err,
                             size_t err_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    msgpack_zone zone;
    *filed = (struct epcs_case_filed){.id = 0};
    char posting[EPCS_CASES_POSTING_MAX];
    if (epcs_cases_posting(report->url, posting, sizeof(posting)) != 0)
        return snprintf(err, err_size, "the url is not an http(s) address"), EPCS_CASES_FAILED;
    if (!msgpack_zone_init(&zone, 4096))
        return snprintf(err, err_size, "out of memory"), EPCS_CASES_FAILED;
    struct verdict_view view;
    struct action actions[MAX_ACTIONS];
    size_t count = 0;
    if (read_filing(&zone, report, &view, actions, &count, err, err_size) != 0) {
        msgpack_zone_destroy(&zone);
        return EPCS_CASES_FAILED;
    }
    pthread_mutex_lock(&cases->lock);
    int began = begin(cases, err, err_size) == 0;
    int rc = began ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    const struct epcs_case_idempotency *idempotency = &report->idempotency;
    struct kept_answer kept = {.subject = 0};
    int found = 0;
    if (rc == EPCS_CASES_OK && idempotency->key != NULL)
        rc = idempotency_lookup(cases, report->filed_by, "file", idempotency, &found, &kept, err,
                                err_size);
    if (rc == EPCS_CASES_OK && !found) {
        rc = filing_locked(cases, report, &view, actions, count, posting, filed, err, err_size);
        /* Packed before the commit when it is to be kept: the answer and the filing it tells
         * of are stored together or not at all. */
        if (rc == EPCS_CASES_OK && idempotency->key != NULL) {
            msgpack_packer kept_pk;
            msgpack_packer_init(&kept_pk, &kept.answer, epcs_buf_msgpack_write);
            kept.subject = filed->id;
            kept.joined = filed->joined;
            rc = pack_report(cases->db, filed->id, report->partner_view ? report->filed_by : NULL,
                             filed->joined, &kept_pk, err, err_size) == 0 &&
                         !kept.answer.failed
                     ? idempotency_keep(cases, report->filed_by, "file", idempotency, &kept,
                                        report->now_us, err, err_size)
                     : EPCS_CASES_FAILED;
        }
    }
    if (rc == EPCS_CASES_OK && found)
        *filed = (struct epcs_case_filed){.id = kept.subject, .joined = kept.joined, .replayed = 1};
    if (began)
        rc = finish(cases, rc, err, err_size);
    if (rc == EPCS_CASES_OK) {
        filed->ticket = hold_ticket(cases);
        if (idempotency->key != NULL)
            pack_kept(pk, &kept.answer);
        else if (pack_report(cases->db, filed->id, report->partner_view ? report->filed_by : NULL,
                             filed->joined, pk, err, err_size) != 0)
            rc = EPCS_CASES_FAILED;
    }
    pthread_mutex_unlock(&cases->lock);
    epcs_buf_free(&kept.answer);
    msgpack_zone_destroy(&zone);
    return rc;
}

/* The request's row as the writes need it. */
struct request_row {
    uint64_t report;
    uint64_t chain;
    int attempt;
    char partner[EPCS_KEY_PARTNER_MAX];
    char status[24];
    char election[64];
    char platform[EPCS_KEY_PARTNER_MAX];
    int has_due, has_objection;
    int64_t due_us, objection_until_us;
    /* The action map as stored (msgpack), owned. */
    struct epcs_buf action;
};

static int load_request(struct sqlite_cases *cases, uint64_t id, struct request_row *row, char *err,
                        size_t err_size)
{
    sqlite3_stmt *stmt =
        prepare(cases->db,
                "SELECT q.report, q.chain, q.attempt, q.partner, q.status, r.election, "
                "r.platform, q.due_us, q.objection_until_us, q.action FROM requests q "
                "JOIN reports r ON r.id = q.report WHERE q.id = ?",
                err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)id);
    int step = sqlite3_step(stmt);
    if (step != SQLITE_ROW) {
        if (step != SQLITE_DONE)
            snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
        sqlite3_finalize(stmt);
        return step == SQLITE_DONE ? EPCS_CASES_NOT_FOUND : EPCS_CASES_FAILED;
    }
    memset(row, 0, sizeof(*row));
    row->report = (uint64_t)sqlite3_column_int64(stmt, 0);
    row->chain = (uint64_t)sqlite3_column_int64(stmt, 1);
    row->attempt = sqlite3_column_int(stmt, 2);
    snprintf(row->partner, sizeof(row->partner), "%s", (const char *)sqlite3_column_text(stmt, 3));
    snprintf(row->status, sizeof(row->status), "%s", (const char *)sqlite3_column_text(stmt, 4));
    snprintf(row->election, sizeof(row->election), "%s",
             (const char *)sqlite3_column_text(stmt, 5));
    snprintf(row->platform, sizeof(row->platform), "%s",
             (const char *)sqlite3_column_text(stmt, 6));
    row->has_due = sqlite3_column_type(stmt, 7) != SQLITE_NULL;
    row->due_us = sqlite3_column_int64(stmt, 7);
    row->has_objection = sqlite3_column_type(stmt, 8) != SQLITE_NULL;
    row->objection_until_us = sqlite3_column_int64(stmt, 8);
    epcs_buf_append(&row->action, sqlite3_column_blob(stmt, 9),
                    (size_t)sqlite3_column_bytes(stmt, 9));
    sqlite3_finalize(stmt);
    return EPCS_CASES_OK;
}

/* Ids of the chain's requests in `status_sql` (an IN list), other than `except`, in order. */
static int chain_members(struct sqlite_cases *cases, uint64_t chain, uint64_t except,
                         const char *status_sql, uint64_t *ids, size_t max, size_t *count,
                         char *err, size_t err_size)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT id FROM requests WHERE chain = ? AND id != ? AND status IN (%s) ORDER BY id",
             status_sql);
    sqlite3_stmt *stmt = prepare(cases->db, sql, err, err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)chain);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)except);
    *count = 0;
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW && *count < max)
        ids[(*count)++] = (uint64_t)sqlite3_column_int64(stmt, 0);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
}

/* Attempts of one chain are bounded by escalation.after (at most 100) plus the escalation. */
#define MAX_CHAIN 128

static int set_request_status(struct sqlite_cases *cases, uint64_t id, const char *status,
                              int64_t now, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        cases->db, "UPDATE requests SET status = ?, updated_us = ? WHERE id = ?", err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, status);
    sqlite3_bind_int64(stmt, 2, now);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)id);
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* Whether the partner may answer the request now: EPCS_CASES_OK with *late set when it is
   overdue, or the code that refuses it with its detail in detail_text. */
static int check_answerable(const struct epcs_case_answer *answer, const struct request_row *row,
                            int *late, char *detail_text, size_t detail_size)
{
    /* Another partner's request is no business of the caller's, not even its existence; nor is
       one that was never sent to it (held, dismissed). */
    if (strcmp(row->partner, answer->partner) != 0 || strcmp(row->status, "held") == 0 ||
        strcmp(row->status, "dismissed") == 0)
        return EPCS_CASES_NOT_FOUND;
    *late = strcmp(row->status, "overdue") == 0;
    if (!*late && strcmp(row->status, "open") != 0) {
        snprintf(detail_text, detail_size, "%s", row->status);
        return EPCS_CASES_CLOSED;
    }
    if (strcmp(answer->status, "objected") == 0) {
        if (!row->has_objection)
            return EPCS_CASES_NO_OBJECTION;
        if (answer->now_us > row->objection_until_us) {
            epcs_instant_format_us(row->objection_until_us, detail_text);
            return EPCS_CASES_TOO_LATE;
        }
    }
    return EPCS_CASES_OK;
}

static int store_answer(struct sqlite_cases *cases, const struct epcs_case_answer *answer,
                        char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "UPDATE requests SET status = ?, answered_us = ?, reason = ?, "
                                 "data = ?, updated_us = ? WHERE id = ?",
                                 err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, answer->status);
    sqlite3_bind_int64(stmt, 2, answer->now_us);
    if (answer->reason != NULL)
        sqlite3_bind_text(stmt, 3, answer->reason, (int)answer->reason_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, 3);
    if (answer->data != NULL)
        sqlite3_bind_blob(stmt, 4, answer->data, (int)answer->data_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, 4);
    sqlite3_bind_int64(stmt, 5, answer->now_us);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)answer->request);
    return run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
}

/* The partner's request_answered step for `request`, the answered one or a sibling of its
   chain; `detail` is borrowed. */
static struct step answer_step(const struct epcs_case_answer *answer, const struct request_row *row,
                               uint64_t request, const struct detail *detail)
{
    return (struct step){.report = row->report,
                         .request = request,
                         .event = "request_answered",
                         .status = answer->status,
                         .actor = answer->partner,
                         .partner = answer->partner,
                         .election = row->election,
                         .detail = detail,
                         .at_us = answer->now_us};
}

static int record_answer(struct sqlite_cases *cases, const struct epcs_case_answer *answer,
                         const struct request_row *row, int late, char *err, size_t err_size)
{
    struct detail detail;
    detail_begin(&detail, 3 + (answer->reason != NULL));
    detail_id(&detail, "report", row->report);
    detail_str(&detail, "status", answer->status);
    if (answer->reason != NULL) {
        epcs_pack_cstr(&detail.pk, "reason");
        msgpack_pack_str(&detail.pk, answer->reason_len);
        msgpack_pack_str_body(&detail.pk, answer->reason, answer->reason_len);
    }
    epcs_pack_cstr(&detail.pk, "late");
    if (late)
        msgpack_pack_true(&detail.pk);
    else
        msgpack_pack_false(&detail.pk);
    struct step step = answer_step(answer, row, answer->request, &detail);
    int rc = record_step(cases, &step, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* Marks one sibling answered via the partner's request, with its own history step. */
static int answer_sibling(struct sqlite_cases *cases, const struct epcs_case_answer *answer,
                          const struct request_row *row, uint64_t sibling, char *err,
                          size_t err_size)
{
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "UPDATE requests SET status = ?, answered_us = ?, "
                                 "answered_via = ?, updated_us = ? WHERE id = ?",
                                 err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    bind_text(stmt, 1, answer->status);
    sqlite3_bind_int64(stmt, 2, answer->now_us);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)answer->request);
    sqlite3_bind_int64(stmt, 4, answer->now_us);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)sibling);
    if (run(cases->db, stmt, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    struct detail detail;
    detail_begin(&detail, 3);
    detail_id(&detail, "report", row->report);
    detail_str(&detail, "status", answer->status);
    detail_id(&detail, "via", answer->request);
    struct step step = answer_step(answer, row, sibling, &detail);
    int rc = record_step(cases, &step, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* The other attempts of the chain ask the same thing: one answer answers them all. */
static int answer_siblings(struct sqlite_cases *cases, const struct epcs_case_answer *answer,
                           const struct request_row *row, char *err, size_t err_size)
{
    uint64_t siblings[MAX_CHAIN];
    size_t count = 0;
    if (chain_members(cases, row->chain, answer->request, "'open', 'overdue'", siblings, MAX_CHAIN,
                      &count, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    int rc = EPCS_CASES_OK;
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++)
        rc = answer_sibling(cases, answer, row, siblings[i], err, err_size);
    return rc;
}

static int answer_locked(struct sqlite_cases *cases, const struct epcs_case_answer *answer,
                         struct request_row *row, char *detail_text, size_t detail_size)
{
    int rc = load_request(cases, answer->request, row, detail_text, detail_size);
    int late = 0;
    if (rc == EPCS_CASES_OK)
        rc = check_answerable(answer, row, &late, detail_text, detail_size);
    if (rc == EPCS_CASES_OK)
        rc = store_answer(cases, answer, detail_text, detail_size);
    if (rc == EPCS_CASES_OK)
        rc = record_answer(cases, answer, row, late, detail_text, detail_size);
    if (rc == EPCS_CASES_OK)
        rc = answer_siblings(cases, answer, row, detail_text, detail_size);
    if (rc == EPCS_CASES_OK)
        rc = refresh_report(cases, row->report, answer->now_us, detail_text, detail_size);
    return rc;
}

static int sqlite_cases_answer(struct epcs_cases *handle, const struct epcs_case_answer *answer,
                               msgpack_packer *pk, uint64_t *ticket, char *detail,
                               size_t detail_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    struct request_row row = {.action = {0}};
    *ticket = 0;
    pthread_mutex_lock(&cases->lock);
    int began = begin(cases, detail, detail_size) == 0;
    int rc = began ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    const struct epcs_case_idempotency *idempotency = &answer->idempotency;
    struct kept_answer kept = {.subject = answer->request};
    int found = 0;
    if (rc == EPCS_CASES_OK && idempotency->key != NULL)
        rc = idempotency_lookup(cases, answer->partner, "answer", idempotency, &found, &kept,
                                detail, detail_size);
    if (rc == EPCS_CASES_OK && !found) {
        rc = answer_locked(cases, answer, &row, detail, detail_size);
        /* Kept with the answer it tells of, in its transaction. */
        if (rc == EPCS_CASES_OK && idempotency->key != NULL) {
            msgpack_packer kept_pk;
            msgpack_packer_init(&kept_pk, &kept.answer, epcs_buf_msgpack_write);
            rc =
                get_request(cases->db, answer->request, NULL, &kept_pk, detail, detail_size) == 0 &&
                        !kept.answer.failed
                    ? idempotency_keep(cases, answer->partner, "answer", idempotency, &kept,
                                       answer->now_us, detail, detail_size)
                    : EPCS_CASES_FAILED;
        }
    }
    /* Refusals (not found, closed, too late) change nothing, so the rollback is right. */
    if (began)
        rc = finish(cases, rc, detail, detail_size);
    if (rc == EPCS_CASES_OK) {
        *ticket = hold_ticket(cases);
        if (idempotency->key != NULL)
            pack_kept(pk, &kept.answer);
        else if (get_request(cases->db, answer->request, NULL, pk, detail, detail_size) != 0)
            rc = EPCS_CASES_FAILED;
    }
    pthread_mutex_unlock(&cases->lock);
    epcs_buf_free(&kept.answer);
    epcs_buf_free(&row.action);
    return rc;
}

/* ---- staff review of held requests ----------------------------------------------------- */

/* The held requests of `report`, in order. */
static int held_requests(struct sqlite_cases *cases, uint64_t report, uint64_t *ids, size_t max,
                         size_t *count, char *err, size_t err_size)
{
    sqlite3_stmt *stmt = prepare(
        cases->db, "SELECT id FROM requests WHERE report = ? AND status = 'held' ORDER BY id", err,
        err_size);
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)report);
    *count = 0;
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW && *count < max)
        ids[(*count)++] = (uint64_t)sqlite3_column_int64(stmt, 0);
    int failed = step != SQLITE_ROW && step != SQLITE_DONE;
    if (failed)
        snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
    sqlite3_finalize(stmt);
    return failed ? -1 : 0;
}

/* Sends a held request now, as staff confirmed it: its due time and objection period start. */
static int send_held(struct sqlite_cases *cases, uint64_t id, const char *staff, int64_t now,
                     char *err, size_t err_size)
{
    struct request_row row = {.action = {0}};
    int rc = load_request(cases, id, &row, err, err_size);
    if (rc != EPCS_CASES_OK) {
        epcs_buf_free(&row.action);
        return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_FAILED : rc;
    }
    msgpack_zone zone;
    msgpack_object map = {.type = MSGPACK_OBJECT_NIL};
    size_t offset = 0;
    struct action action;
    char why[200];
    if (!msgpack_zone_init(&zone, 2048)) {
        epcs_buf_free(&row.action);
        return snprintf(err, err_size, "out of memory"), EPCS_CASES_FAILED;
    }
    msgpack_unpack(row.action.data, row.action.len, &offset, &zone, &map);
    if (parse_action(&map, row.platform, 0, &action, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "request %llu: its stored action does not read (%s)",
                 (unsigned long long)id, why);
        rc = EPCS_CASES_FAILED;
    }
    int has_due = action.due_span_us > 0, has_objection = action.objection_span_us >= 0;
    int64_t due = now + action.due_span_us;
    sqlite3_stmt *stmt =
        rc != EPCS_CASES_OK
            ? NULL
            : prepare(cases->db,
                      "UPDATE requests SET status = 'open', sent_us = ?, due_us = ?, "
                      "objection_until_us = ?, updated_us = ? WHERE id = ?",
                      err, err_size);
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, now);
        bind_optional_int(stmt, 2, due, has_due);
        bind_optional_int(stmt, 3, now + action.objection_span_us, has_objection);
        sqlite3_bind_int64(stmt, 4, now);
        sqlite3_bind_int64(stmt, 5, (sqlite3_int64)id);
        rc = run(cases->db, stmt, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    } else {
        rc = EPCS_CASES_FAILED;
    }
    if (rc == EPCS_CASES_OK) {
        struct detail detail;
        sent_detail(&detail, row.report, &action, row.attempt, has_due ? &due : NULL, 0);
        struct step step = {.report = row.report,
                            .request = id,
                            .event = "request_sent",
                            .status = "open",
                            .actor = staff,
                            .partner = row.partner,
                            .election = row.election,
                            .detail = &detail,
                            .at_us = now};
        rc = record_step(cases, &step, err, err_size);
        epcs_buf_free(&detail.buf);
    }
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&row.action);
    return rc;
}

/* A report-level step taken by staff (report_confirmed, report_dismissed). */
static int staff_step(struct sqlite_cases *cases, uint64_t report, const char *event,
                      const char *status, const char *staff, const struct detail *detail,
                      int64_t now, char *err, size_t err_size)
{
    char filed_by[EPCS_KEY_PARTNER_MAX], election[64];
    int rc = report_text(cases, report, "filed_by", filed_by, sizeof(filed_by), err, err_size);
    if (rc == EPCS_CASES_OK)
        rc = report_text(cases, report, "election", election, sizeof(election), err, err_size);
    struct step step = {.report = report,
                        .event = event,
                        .status = status,
                        .actor = staff,
                        .partner = filed_by,
                        .election = election,
                        .detail = detail,
                        .at_us = now};
    return rc == EPCS_CASES_OK ? record_step(cases, &step, err, err_size) : rc;
}

static int confirm_locked(struct sqlite_cases *cases, uint64_t report, const char *staff,
                          const struct detail *why, int64_t now, char *err, size_t err_size)
{
    uint64_t ids[MAX_ACTIONS];
    size_t count = 0;
    if (held_requests(cases, report, ids, MAX_ACTIONS, &count, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    int rc = staff_step(cases, report, "report_confirmed", "open", staff, why, now, err, err_size);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++)
        rc = send_held(cases, ids[i], staff, now, err, err_size);
    return rc == EPCS_CASES_OK ? refresh_report(cases, report, now, err, err_size) : rc;
}

static int dismiss_locked(struct sqlite_cases *cases, uint64_t report, const char *staff,
                          const struct detail *why, int64_t now, char *err, size_t err_size)
{
    uint64_t ids[MAX_ACTIONS];
    size_t count = 0;
    if (held_requests(cases, report, ids, MAX_ACTIONS, &count, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    int rc =
        staff_step(cases, report, "report_dismissed", "dismissed", staff, why, now, err, err_size);
    char election[64];
    if (rc == EPCS_CASES_OK)
        rc = report_text(cases, report, "election", election, sizeof(election), err, err_size);
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++) {
        char partner[EPCS_KEY_PARTNER_MAX];
        sqlite3_stmt *stmt =
            prepare(cases->db, "SELECT partner FROM requests WHERE id = ?", err, err_size);
        if (stmt == NULL)
            return EPCS_CASES_FAILED;
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)ids[i]);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            snprintf(partner, sizeof(partner), "%s", (const char *)sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
        rc = set_request_status(cases, ids[i], "dismissed", now, err, err_size);
        struct detail detail;
        detail_begin(&detail, 1);
        detail_id(&detail, "report", report);
        struct step step = {.report = report,
                            .request = ids[i],
                            .event = "request_dismissed",
                            .status = "dismissed",
                            .actor = staff,
                            .partner = partner,
                            .election = election,
                            .detail = &detail,
                            .at_us = now};
        if (rc == EPCS_CASES_OK)
            rc = record_step(cases, &step, err, err_size);
        epcs_buf_free(&detail.buf);
    }
    return rc == EPCS_CASES_OK ? refresh_report(cases, report, now, err, err_size) : rc;
}

static int review_locked(struct sqlite_cases *cases, const struct epcs_case_review *review,
                         char *detail_text, size_t detail_size)
{
    char status[24];
    int rc = report_text(cases, review->report, "status", status, sizeof(status), detail_text,
                         detail_size);
    if (rc != EPCS_CASES_OK)
        return rc;
    if (strcmp(status, "held") != 0) {
        snprintf(detail_text, detail_size, "%s", status);
        return EPCS_CASES_NOT_HELD;
    }
    struct detail why;
    detail_begin(&why, review->reason != NULL);
    if (review->reason != NULL) {
        epcs_pack_cstr(&why.pk, "reason");
        msgpack_pack_str(&why.pk, review->reason_len);
        msgpack_pack_str_body(&why.pk, review->reason, review->reason_len);
    }
    rc = (review->dismiss ? dismiss_locked : confirm_locked)(
        cases, review->report, review->staff, &why, review->now_us, detail_text, detail_size);
    epcs_buf_free(&why.buf);
    return rc;
}

static int sqlite_cases_review(struct epcs_cases *handle, const struct epcs_case_review *review,
                               msgpack_packer *pk, uint64_t *ticket, char *detail,
                               size_t detail_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    *ticket = 0;
    pthread_mutex_lock(&cases->lock);
    int rc = begin(cases, detail, detail_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    if (rc == EPCS_CASES_OK) {
        rc = review_locked(cases, review, detail, detail_size);
        rc = finish(cases, rc, detail, detail_size);
    }
    if (rc == EPCS_CASES_OK) {
        *ticket = hold_ticket(cases);
        if (pack_report(cases->db, review->report, NULL, -1, pk, detail, detail_size) != 0)
            rc = EPCS_CASES_FAILED;
    }
    pthread_mutex_unlock(&cases->lock);
    return rc;
}

/* ---- partner policies --------------------------------------------------------------------- */

static int get_policy(sqlite3 *db, const char *partner, msgpack_packer *pk, char *err,
                      size_t err_size)
{
    sqlite3_stmt *stmt =
        prepare(db, "SELECT reports, set_us, set_by FROM partner_policies WHERE partner = ?", err,
                err_size);
    if (stmt == NULL)
        return -1;
    bind_text(stmt, 1, partner);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW || step == SQLITE_DONE) {
        int set = step == SQLITE_ROW;
        msgpack_pack_map(pk, 5);
        epcs_pack_cstr(pk, "partner");
        epcs_pack_cstr(pk, partner);
        epcs_pack_cstr(pk, "reports");
        if (set)
            pack_text_column(pk, stmt, 0);
        else
            epcs_pack_cstr(pk, "hold");
        epcs_pack_cstr(pk, "default");
        if (set)
            msgpack_pack_false(pk);
        else
            msgpack_pack_true(pk);
        epcs_pack_cstr(pk, "set_at");
        if (set)
            pack_time_column(pk, stmt, 1);
        else
            msgpack_pack_nil(pk);
        epcs_pack_cstr(pk, "set_by");
        if (set)
            pack_text_column(pk, stmt, 2);
        else
            msgpack_pack_nil(pk);
    } else {
        snprintf(err, err_size, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
}

static int policy_locked(struct sqlite_cases *cases, const struct epcs_case_policy *policy,
                         char *err, size_t err_size)
{
    int sends;
    int rc = policy_sends(cases, policy->partner, &sends, err, err_size);
    if (rc != EPCS_CASES_OK || sends == policy->send)
        return rc;
    sqlite3_stmt *stmt = prepare(cases->db,
                                 "INSERT OR REPLACE INTO partner_policies(partner, reports, "
                                 "set_us, set_by) VALUES(?,?,?,?)",
                                 err, err_size);
    if (stmt == NULL)
        return EPCS_CASES_FAILED;
    const char *reports = policy->send ? "send" : "hold";
    bind_text(stmt, 1, policy->partner);
    bind_text(stmt, 2, reports);
    sqlite3_bind_int64(stmt, 3, policy->now_us);
    bind_text(stmt, 4, policy->by);
    if (run(cases->db, stmt, err, err_size) != 0)
        return EPCS_CASES_FAILED;
    /* Not a step of any case: the event alone, about the partner, with who set it. */
    struct detail detail;
    detail_begin(&detail, 4);
    detail_str(&detail, "partner", policy->partner);
    detail_str(&detail, "reports", reports);
    detail_str(&detail, "previous", sends ? "send" : "hold");
    detail_str(&detail, "by", policy->by);
    struct step step = {
        .event = "partner_policy_set", .partner = policy->partner, .at_us = policy->now_us};
    uint64_t log_id;
    rc = take_log_id(cases, &log_id, err, err_size);
    if (rc == EPCS_CASES_OK && log_id != 0)
        rc = outbox_event(cases, log_id, &step, detail.buf.data, detail.buf.len, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

static int sqlite_cases_set_policy(struct epcs_cases *handle, const struct epcs_case_policy *policy,
                                   msgpack_packer *pk, uint64_t *ticket, char *err, size_t err_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    *ticket = 0;
    pthread_mutex_lock(&cases->lock);
    int rc = begin(cases, err, err_size) == 0 ? EPCS_CASES_OK : EPCS_CASES_FAILED;
    if (rc == EPCS_CASES_OK) {
        rc = policy_locked(cases, policy, err, err_size);
        rc = finish(cases, rc, err, err_size);
    }
    if (rc == EPCS_CASES_OK) {
        *ticket = hold_ticket(cases);
        if (get_policy(cases->db, policy->partner, pk, err, err_size) != 0)
            rc = EPCS_CASES_FAILED;
    }
    pthread_mutex_unlock(&cases->lock);
    return rc;
}

/* One open request past its due time: overdue, then the next attempt or the escalation. */
/* A step epcs itself takes on an unanswered request of `row`'s chain; `detail` is borrowed. */
static struct step overdue_step(const struct request_row *row, uint64_t request, const char *event,
                                const char *status, const struct detail *detail, int64_t now)
{
    return (struct step){.report = row->report,
                         .request = request,
                         .event = event,
                         .status = status,
                         .actor = EPCS_ACTOR,
                         .partner = row->partner,
                         .election = row->election,
                         .detail = detail,
                         .at_us = now};
}

/* The request is overdue; its step tells what the stored action says follows (`consequence`,
   or NULL). */
static int mark_overdue(struct sqlite_cases *cases, const struct request_row *row, uint64_t id,
                        const msgpack_object *consequence, int64_t now, char *err, size_t err_size)
{
    int rc = set_request_status(cases, id, "overdue", now, err, err_size);
    if (rc != EPCS_CASES_OK)
        return rc;
    struct detail detail;
    detail_begin(&detail, 2 + (consequence != NULL));
    detail_id(&detail, "report", row->report);
    detail_time(&detail, "due", row->due_us);
    if (consequence != NULL) {
        epcs_pack_cstr(&detail.pk, "overdue");
        msgpack_pack_object(&detail.pk, *consequence);
    }
    struct step step = overdue_step(row, id, "request_overdue", "overdue", &detail, now);
    rc = record_step(cases, &step, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* An unanswered attempt of the chain is escalated: its step names the referral that follows
   it. */
static int mark_escalated(struct sqlite_cases *cases, const struct request_row *row,
                          uint64_t ignored, uint64_t referral, const struct action *escalation,
                          int64_t now, char *err, size_t err_size)
{
    int rc = set_request_status(cases, ignored, "escalated", now, err, err_size);
    if (rc != EPCS_CASES_OK)
        return rc;
    struct detail detail;
    detail_begin(&detail, 4);
    detail_id(&detail, "report", row->report);
    detail_id(&detail, "referral", referral);
    detail_str(&detail, "to", escalation->to);
    detail_str(&detail, "article", escalation->article);
    struct step step = overdue_step(row, ignored, "request_escalated", "escalated", &detail, now);
    rc = record_step(cases, &step, err, err_size);
    epcs_buf_free(&detail.buf);
    return rc;
}

/* The attempts are used up: the escalation's request starts a chain of its own, and every
   overdue attempt of the old chain is marked escalated to it. */
static int escalate_chain(struct sqlite_cases *cases, const struct request_row *row, uint64_t id,
                          const struct action *action, int64_t now, char *err, size_t err_size)
{
    struct action escalation;
    char why[200];
    if (parse_action(action->escalation, row->platform, 1, &escalation, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "request %llu: its escalation does not read (%s)",
                 (unsigned long long)id, why);
        return EPCS_CASES_FAILED;
    }
    struct new_request next = {.report = row->report,
                               .election = row->election,
                               .follows = id,
                               .now_us = now,
                               .action = &escalation,
                               .attempt = 1};
    uint64_t made;
    int rc = create_request(cases, &next, &made, err, err_size);
    uint64_t ignored[MAX_CHAIN];
    size_t count = 0;
    if (rc == EPCS_CASES_OK && chain_members(cases, row->chain, 0, "'overdue'", ignored, MAX_CHAIN,
                                             &count, err, err_size) != 0)
        rc = EPCS_CASES_FAILED;
    for (size_t i = 0; rc == EPCS_CASES_OK && i < count; i++)
        rc = mark_escalated(cases, row, ignored[i], made, &escalation, now, err, err_size);
    return rc;
}

/* What the stored action (`map`) says follows an unanswered request: nothing, another attempt
   in the same chain, or once the attempts are used up its escalation. */
static int follow_overdue(struct sqlite_cases *cases, const struct request_row *row, uint64_t id,
                          const msgpack_object *map, int64_t now, char *err, size_t err_size)
{
    struct action action;
    char why[200];
    if (parse_action(map, row->platform, 0, &action, why, sizeof(why)) != 0) {
        /* Checked when filed; a stored action that no longer reads is flagged, not acted on. */
        epcs_log(EPCS_LOG_ERROR, "cases", "request %llu: its stored action does not read (%s)",
                 (unsigned long long)id, why);
        return EPCS_CASES_OK;
    }
    if (action.escalation == NULL)
        return EPCS_CASES_OK;
    if (row->attempt >= action.escalate_after)
        return escalate_chain(cases, row, id, &action, now, err, err_size);
    struct new_request next = {.report = row->report,
                               .election = row->election,
                               .follows = id,
                               .now_us = now,
                               .action = &action,
                               .chain = row->chain,
                               .attempt = row->attempt + 1};
    uint64_t made;
    return create_request(cases, &next, &made, err, err_size);
}

static int handle_overdue(struct sqlite_cases *cases, uint64_t id, int64_t now, char *err,
                          size_t err_size)
{
    struct request_row row = {.action = {0}};
    int rc = load_request(cases, id, &row, err, err_size);
    if (rc != EPCS_CASES_OK)
        return rc == EPCS_CASES_NOT_FOUND ? EPCS_CASES_FAILED : rc;
    msgpack_zone zone;
    msgpack_object map = {.type = MSGPACK_OBJECT_NIL};
    size_t offset = 0;
    if (!msgpack_zone_init(&zone, 2048)) {
        epcs_buf_free(&row.action);
        return snprintf(err, err_size, "out of memory"), EPCS_CASES_FAILED;
    }
    msgpack_unpack(row.action.data, row.action.len, &offset, &zone, &map);
    rc = mark_overdue(cases, &row, id, epcs_map_get(&map, "overdue"), now, err, err_size);
    if (rc == EPCS_CASES_OK)
        rc = follow_overdue(cases, &row, id, &map, now, err, err_size);
    if (rc == EPCS_CASES_OK)
        rc = refresh_report(cases, row.report, now, err, err_size);
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&row.action);
    return rc;
}

static int sqlite_cases_sweep(struct epcs_cases *handle, int64_t now_us, size_t limit, char *err,
                              size_t err_size)
{
    struct sqlite_cases *cases = (struct sqlite_cases *)handle;
    size_t handled = 0;
    while (handled < limit) {
        /* One transaction per request, the lock released between them, so partners' answers
         * never wait for a long sweep. */
        pthread_mutex_lock(&cases->lock);
        if (begin(cases, err, err_size) != 0) {
            pthread_mutex_unlock(&cases->lock);
            return -1;
        }
        sqlite3_stmt *stmt = prepare(cases->db,
                                     "SELECT id FROM requests WHERE status = 'open' AND due_us "
                                     "<= ? ORDER BY due_us, id LIMIT 1",
                                     err, err_size);
        int rc = stmt != NULL ? EPCS_CASES_OK : EPCS_CASES_FAILED;
        uint64_t id = 0;
        if (stmt != NULL) {
            sqlite3_bind_int64(stmt, 1, now_us);
            int step = sqlite3_step(stmt);
            if (step == SQLITE_ROW)
                id = (uint64_t)sqlite3_column_int64(stmt, 0);
            else if (step != SQLITE_DONE)
                rc = EPCS_CASES_FAILED;
            if (step != SQLITE_ROW && step != SQLITE_DONE)
                snprintf(err, err_size, "%s", sqlite3_errmsg(cases->db));
            sqlite3_finalize(stmt);
        }
        if (rc == EPCS_CASES_OK && id != 0)
            rc = handle_overdue(cases, id, now_us, err, err_size);
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
    return get_report(reader_db(reader), id, filer, pk, err, err_size);
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
