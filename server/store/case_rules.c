/*
 * What every case store backend decides alike without SQL (case_rules.h): postings, actions,
 * verdicts, timings, a report's status, the details of steps and whether a request takes an
 * answer.
 */
#include "case_rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "dates.h"

/* Escalations of escalations: the contract nests two deep; a little room, never unbounded. */
#define MAX_ESCALATION_DEPTH 4
/* Ten years: a longer period is a typo in the rules, and would overflow nothing but sense. */
#define MAX_DUE_HOURS (24.0 * 366 * 10)
#define MAX_OBJECTION_DAYS 3660.0

/* ---- msgpack members ---------------------------------------------------------------------- */

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

int epcs_case_parse_action(const msgpack_object *map, const char *platform, int depth,
                           struct epcs_case_action *action, char *why, size_t why_size)
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
        struct epcs_case_action inner;
        char inner_why[200];
        if (epcs_case_parse_action(escalation, platform, depth + 1, &inner, inner_why,
                                   sizeof(inner_why)) != 0)
            return snprintf(why, why_size, "escalation: %.150s", inner_why), -1;
        action->escalation = escalation;
        action->escalate_after = (int)after->via.u64;
    }
    return 0;
}

static int read_verdict(msgpack_zone *zone, const char *bytes, size_t len,
                        struct epcs_case_verdict *view, char *why, size_t why_size)
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
    if (view->actions != NULL && view->actions->via.array.size > EPCS_CASE_MAX_ACTIONS)
        return snprintf(why, why_size, "more than %d actions", EPCS_CASE_MAX_ACTIONS), -1;
    return 0;
}

size_t epcs_case_action_count(const struct epcs_case_verdict *view)
{
    return view->actions != NULL ? view->actions->via.array.size : 0;
}

int epcs_cases_check_actions(const char *verdict, size_t verdict_len, const char *platform,
                             char *why, size_t why_size)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 2048))
        return snprintf(why, why_size, "out of memory"), -1;
    struct epcs_case_verdict view;
    int rc = read_verdict(&zone, verdict, verdict_len, &view, why, why_size);
    for (size_t i = 0; rc == 0 && i < epcs_case_action_count(&view); i++) {
        struct epcs_case_action action;
        char inner[200];
        if (epcs_case_parse_action(&view.actions->via.array.ptr[i], platform, 0, &action, inner,
                                   sizeof(inner)) != 0) {
            snprintf(why, why_size, "actions[%zu]: %.200s", i, inner);
            rc = -1;
        }
    }
    /* The actions live in the zone: counted before it goes. */
    int count = rc == 0 ? (int)epcs_case_action_count(&view) : -1;
    msgpack_zone_destroy(&zone);
    return count;
}

/* ---- reading a filing ------------------------------------------------------------------- */

int epcs_case_read_filing(msgpack_zone *zone, const struct epcs_case_report *report,
                          struct epcs_case_verdict *view, struct epcs_case_action *actions,
                          size_t *count, char *err, size_t err_size)
{
    if (read_verdict(zone, report->verdict, report->verdict_len, view, err, err_size) != 0)
        return -1;
    *count = epcs_case_action_count(view);
    for (size_t i = 0; i < *count; i++) {
        char why[200];
        if (epcs_case_parse_action(&view->actions->via.array.ptr[i], report->platform, 0,
                                   &actions[i], why, sizeof(why)) != 0)
            return snprintf(err, err_size, "actions[%zu]: %.200s", i, why), -1;
    }
    return 0;
}

int epcs_case_unpack_action(msgpack_zone *zone, const char *bytes, size_t len, msgpack_object *map)
{
    size_t offset = 0;
    map->type = MSGPACK_OBJECT_NIL;
    if (!msgpack_zone_init(zone, 2048))
        return -1;
    msgpack_unpack(bytes, len, &offset, zone, map);
    return 0;
}

struct epcs_case_timing epcs_case_timing_of(const struct epcs_case_action *action, int64_t now)
{
    return (struct epcs_case_timing){.has_due = action->due_span_us > 0,
                                     .has_objection = action->objection_span_us >= 0,
                                     .due_us = now + action->due_span_us,
                                     .objection_until_us = now + action->objection_span_us};
}

const char *epcs_case_report_status(const char *verdict,
                                    const struct epcs_case_request_counts *counts)
{
    if (counts->all == 0)
        return strcmp(verdict, "needs_facts") == 0 ? "needs_facts" : "no_action";
    if (counts->held > 0)
        return "held";
    if (counts->pending > 0)
        return "open";
    return counts->dismissed == counts->all ? "dismissed" : "closed";
}

void epcs_case_pack_raw(msgpack_packer *pk, const void *bytes, size_t len)
{
    pk->callback(pk->data, bytes, len);
}

int epcs_case_with_decision(const char *verdict, size_t len, uint64_t id, struct epcs_buf *out)
{
    uint32_t fields;
    size_t header_len;
    if (epcs_msgpack_map_header(verdict, len, &fields, &header_len) != 0)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, epcs_buf_msgpack_write);
    msgpack_pack_map(&pk, fields + 1);
    epcs_case_pack_raw(&pk, verdict + header_len, len - header_len);
    epcs_pack_cstr(&pk, "decision");
    msgpack_pack_uint64(&pk, id);
    return 0;
}

/* ---- details of steps ------------------------------------------------------------------- */

void epcs_case_detail_begin(struct epcs_case_detail *detail, size_t fields)
{
    detail->buf = (struct epcs_buf){0};
    msgpack_packer_init(&detail->pk, &detail->buf, epcs_buf_msgpack_write);
    msgpack_pack_map(&detail->pk, fields);
}

void epcs_case_detail_str(struct epcs_case_detail *detail, const char *key, const char *value)
{
    epcs_pack_cstr(&detail->pk, key);
    epcs_pack_cstr(&detail->pk, value);
}

void epcs_case_detail_id(struct epcs_case_detail *detail, const char *key, uint64_t value)
{
    epcs_pack_cstr(&detail->pk, key);
    msgpack_pack_uint64(&detail->pk, value);
}

void epcs_case_detail_time(struct epcs_case_detail *detail, const char *key, int64_t us)
{
    epcs_pack_cstr(&detail->pk, key);
    epcs_pack_instant_us(&detail->pk, us);
}

void epcs_case_detail_text(struct epcs_case_detail *detail, const char *key, const char *text,
                           size_t len)
{
    epcs_pack_cstr(&detail->pk, key);
    epcs_pack_str(&detail->pk, text, len);
}

const char *epcs_case_step_detail(const struct epcs_case_step *step, size_t *len)
{
    *len = step->detail != NULL ? step->detail->buf.len : 0;
    return step->detail != NULL ? step->detail->buf.data : NULL;
}

void epcs_case_sent_detail(struct epcs_case_detail *detail, uint64_t report,
                           const struct epcs_case_action *action, int attempt, const int64_t *due,
                           uint64_t follows)
{
    epcs_case_detail_begin(detail, 5 + (due != NULL) + (follows != 0));
    epcs_case_detail_id(detail, "report", report);
    epcs_case_detail_str(detail, "kind", action->kind);
    epcs_case_detail_str(detail, "to", action->to);
    epcs_case_detail_str(detail, "article", action->article);
    epcs_pack_cstr(&detail->pk, "attempt");
    msgpack_pack_int(&detail->pk, attempt);
    if (due != NULL)
        epcs_case_detail_time(detail, "due", *due);
    if (follows != 0)
        epcs_case_detail_id(detail, "follows", follows);
}

/* ---- answers ---------------------------------------------------------------------------- */

int epcs_case_check_answerable(const struct epcs_case_answer *answer,
                               const struct epcs_case_request_row *row, int *late, char *detail,
                               size_t detail_size)
{
    /* Another partner's request is no business of the caller's, not even its existence; nor is
       one that was never sent to it (held, dismissed). */
    if (strcmp(row->partner, answer->partner) != 0 || strcmp(row->status, "held") == 0 ||
        strcmp(row->status, "dismissed") == 0)
        return EPCS_CASES_NOT_FOUND;
    *late = strcmp(row->status, "overdue") == 0;
    if (!*late && strcmp(row->status, "open") != 0) {
        snprintf(detail, detail_size, "%s", row->status);
        return EPCS_CASES_CLOSED;
    }
    if (strcmp(answer->status, "objected") == 0) {
        if (!row->has_objection)
            return EPCS_CASES_NO_OBJECTION;
        if (answer->now_us > row->objection_until_us) {
            epcs_instant_format_us(row->objection_until_us, detail);
            return EPCS_CASES_TOO_LATE;
        }
    }
    return EPCS_CASES_OK;
}
