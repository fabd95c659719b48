#include "ical.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "dates.h"

#define FOLD_AT 75

/* One content line: folded (CRLF + space) before 75 octets, never inside a UTF-8 sequence. */
static int append_line(struct epcs_buf *out, const char *line, size_t len)
{
    size_t width = 0;
    for (size_t i = 0; i < len;) {
        size_t char_len = 1;
        while (i + char_len < len && ((unsigned char)line[i + char_len] & 0xc0) == 0x80)
            char_len++;
        if (width + char_len > FOLD_AT) {
            if (epcs_buf_append(out, "\r\n ", 3) != 0)
                return -1;
            width = 1;
        }
        if (epcs_buf_append(out, line + i, char_len) != 0)
            return -1;
        width += char_len;
        i += char_len;
    }
    return epcs_buf_append(out, "\r\n", 2);
}

/* Builds "NAME:escaped text" in `line` (RFC 5545 3.3.11 escapes) and appends it. */
static int append_text(struct epcs_buf *out, struct epcs_buf *line, const char *name,
                       const char *text, size_t len)
{
    epcs_buf_reset(line);
    if (epcs_buf_append_str(line, name) != 0 || epcs_buf_append(line, ":", 1) != 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        const char *escaped = NULL;
        switch (text[i]) {
        case '\\':
            escaped = "\\\\";
            break;
        case ';':
            escaped = "\\;";
            break;
        case ',':
            escaped = "\\,";
            break;
        case '\n':
            escaped = "\\n";
            break;
        case '\r':
            continue;
        }
        if (escaped != NULL ? epcs_buf_append_str(line, escaped) != 0
                            : epcs_buf_append(line, text + i, 1) != 0)
            return -1;
    }
    return append_line(out, line->data, line->len);
}

static int append_fmt(struct epcs_buf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int append_fmt(struct epcs_buf *out, const char *fmt, ...)
{
    char line[512];
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);
    if (len < 0 || (size_t)len >= sizeof(line))
        return -1;
    return append_line(out, line, (size_t)len);
}

static void compact_date(int32_t day, char out[9])
{
    char text[11];
    epcs_date_format(day, text);
    snprintf(out, 9, "%.4s%.2s%.2s", text, text + 5, text + 8);
}

static int day_of(const msgpack_object *value, int32_t *day)
{
    return value != NULL && value->type == MSGPACK_OBJECT_STR &&
                   epcs_date_parse(value->via.str.ptr, value->via.str.size, day) == 0
               ? 0
               : -1;
}

static int str_len(const msgpack_object *value)
{
    return value != NULL && value->type == MSGPACK_OBJECT_STR ? (int)value->via.str.size : 0;
}

static const char *str_ptr(const msgpack_object *value)
{
    return value != NULL && value->type == MSGPACK_OBJECT_STR ? value->via.str.ptr : "";
}

/* An all-day event from `first` to `last` inclusive (DTEND is exclusive in RFC 5545). */
static int append_event(struct epcs_buf *out, struct epcs_buf *line, const char *uid,
                        const char *stamp, int32_t first, int32_t last, const char *summary,
                        const char *description, const char *category)
{
    char start[9], end[9];
    compact_date(first, start);
    compact_date(last + 1, end);
    return append_line(out, "BEGIN:VEVENT", 12) ||
                   append_text(out, line, "UID", uid, strlen(uid)) ||
                   append_fmt(out, "DTSTAMP:%s", stamp) ||
                   append_fmt(out, "DTSTART;VALUE=DATE:%s", start) ||
                   append_fmt(out, "DTEND;VALUE=DATE:%s", end) ||
                   append_text(out, line, "SUMMARY", summary, strlen(summary)) ||
                   append_text(out, line, "DESCRIPTION", description, strlen(description)) ||
                   append_text(out, line, "CATEGORIES", category, strlen(category)) ||
                   append_line(out, "TRANSP:TRANSPARENT", 18) || append_line(out, "END:VEVENT", 10)
               ? -1
               : 0;
}

int epcs_ical_render(const struct epcs_election *election, const msgpack_object *items,
                     const char *ruleset_id, time_t stamp_time, struct epcs_buf *out)
{
    struct epcs_buf line = {0};
    char stamp[17], uid[256], summary[512], description[1024];
    struct tm tm;
    gmtime_r(&stamp_time, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    int failed =
        append_line(out, "BEGIN:VCALENDAR", 15) || append_line(out, "VERSION:2.0", 11) ||
        append_fmt(out, "PRODID:-//epcs//election-period compliance server %s//EN", ruleset_id) ||
        append_line(out, "CALSCALE:GREGORIAN", 18) || append_line(out, "METHOD:PUBLISH", 14) ||
        append_text(out, &line, "X-WR-CALNAME", election->name, strlen(election->name));
    snprintf(uid, sizeof(uid), "%s/election-day@epcs", election->id);
    snprintf(summary, sizeof(summary), "Election day: %s", election->name);
    snprintf(description, sizeof(description), "%s (%s); ruleset %s", election->name,
             election->name_ko, ruleset_id);
    failed = failed || append_event(out, &line, uid, stamp, election->day, election->day, summary,
                                    description, "election");
    for (uint32_t i = 0;
         !failed && items->type == MSGPACK_OBJECT_ARRAY && i < items->via.array.size; i++) {
        const msgpack_object *item = &items->via.array.ptr[i];
        const msgpack_object *area = epcs_map_get(item, "area"),
                             *article = epcs_map_get(item, "article");
        const msgpack_object *rule = epcs_map_get(item, "rule"),
                             *title = epcs_map_get(item, "title");
        const msgpack_object *title_ko = epcs_map_get(item, "title_ko");
        int32_t first, last;
        int is_window = day_of(epcs_map_get(item, "from"), &first) == 0 &&
                        day_of(epcs_map_get(item, "to"), &last) == 0;
        if (!is_window && day_of(epcs_map_get(item, "day"), &first) != 0)
            continue;
        if (!is_window)
            last = first;
        /* Stable across reloads and orderings: what the item is, not where it was listed. */
        char start[9];
        compact_date(first, start);
        snprintf(uid, sizeof(uid), "%s/%.*s/%s-%s@epcs", election->id, str_len(rule), str_ptr(rule),
                 is_window ? "window" : "deadline", start);
        snprintf(summary, sizeof(summary), "%sArt. %.*s: %.*s",
                 is_window ? "" : "Deadline: ", str_len(article), str_ptr(article), str_len(title),
                 str_ptr(title));
        snprintf(description, sizeof(description), "%.*s%sArea %.*s, rule %.*s, ruleset %s.",
                 str_len(title_ko), str_ptr(title_ko), title_ko != NULL ? "\n" : "", str_len(area),
                 str_ptr(area), str_len(rule), str_ptr(rule), ruleset_id);
        char category[64];
        snprintf(category, sizeof(category), "%.*s", str_len(area), str_ptr(area));
        failed = append_event(out, &line, uid, stamp, first, last, summary, description, category);
    }
    failed = failed || append_line(out, "END:VCALENDAR", 13);
    epcs_buf_free(&line);
    return failed ? -1 : 0;
}
