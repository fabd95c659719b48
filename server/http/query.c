/* Query strings: percent-decoding and the few value forms the listings accept. */
#include "query.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "http.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes into `out` (NUL-terminated); -1 if malformed, holding NUL, or too long. */
static int url_decode(const char *text, size_t len, char *out, size_t size)
{
    size_t at = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int high = hex_digit(text[i + 1]), low = hex_digit(text[i + 2]);
            if (high < 0 || low < 0)
                return -1;
            c = (char)(high << 4 | low);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0' || at + 1 >= size)
            return -1;
        out[at++] = c;
    }
    out[at] = '\0';
    return 0;
}

int epcs_query_read(h2o_req_t *req, struct epcs_query *query, size_t max)
{
    query->count = 0;
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *at = req->path.base + req->query_at + 1;
    const char *end = req->path.base + req->path.len;
    while (at < end) {
        const char *amp = memchr(at, '&', (size_t)(end - at));
        const char *stop = amp != NULL ? amp : end;
        if (stop == at) {
            at = stop + 1;
            continue;
        }
        if (query->count == max || query->count == EPCS_QUERY_MAX_PARAMS)
            return epcs_respond_error(req, 400, "bad_request", NULL, "at most %zu parameters", max),
                   -1;
        const char *equals = memchr(at, '=', (size_t)(stop - at));
        size_t i = query->count;
        if (equals == NULL ||
            url_decode(at, (size_t)(equals - at), query->names[i], sizeof(query->names[i])) != 0 ||
            url_decode(equals + 1, (size_t)(stop - equals - 1), query->values[i],
                       sizeof(query->values[i])) != 0)
            return epcs_respond_error(req, 400, "bad_request", NULL,
                                      "the query must be name=value pairs, percent-encoded"),
                   -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(query->names[j], query->names[i]) == 0)
                return epcs_respond_error(req, 400, "bad_request", query->names[i],
                                          "%s is given twice", query->names[i]),
                       -1;
        }
        query->count++;
        at = stop + 1;
    }
    return 0;
}

int epcs_parse_unsigned(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (text[0] < '0' || text[0] > '9')
        return -1;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = value;
    return 0;
}

int epcs_parse_unsigned_span(const char *text, size_t len, uint64_t *out)
{
    char copy[EPCS_ID_TEXT_MAX + 1];
    if (len == 0 || len > EPCS_ID_TEXT_MAX)
        return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    return epcs_parse_unsigned(copy, out);
}

int epcs_parse_instant(const char *text, int64_t *us)
{
    int32_t day;
    int hour = 0, minute = 0, second = 0;
    size_t len = strlen(text);
    if ((len != 10 && len != 20) || epcs_date_parse(text, 10, &day) != 0)
        return -1;
    if (len == 20 && (text[10] != 'T' || text[19] != 'Z' ||
                      sscanf(text + 11, "%2d:%2d:%2d", &hour, &minute, &second) != 3 ||
                      text[13] != ':' || text[16] != ':' || hour > 23 || minute > 59 ||
                      second > 60 || hour < 0 || minute < 0 || second < 0))
        return -1;
    *us = ((int64_t)day * 86400 + hour * 3600 + minute * 60 + second) * 1000000;
    return 0;
}
