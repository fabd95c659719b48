#ifndef EPCS_QUERY_H
#define EPCS_QUERY_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>

/* Query strings of the staff and partner listings (GET /v1/decisions, /v1/reports, ...). */

#define EPCS_QUERY_MAX_PARAMS 12

/** The decoded name=value pairs of a query string. */
struct epcs_query {
    size_t count;
    char names[EPCS_QUERY_MAX_PARAMS][32];
    char values[EPCS_QUERY_MAX_PARAMS][256];
};

/**
 * Splits and percent-decodes the request's query into `query`. Returns 0, or answers 400
 * (malformed, more than `max` pairs, a name given twice) and returns -1.
 */
int epcs_query_read(h2o_req_t *req, struct epcs_query *query, size_t max);

/** A decimal number of digits only, as ids and limits are written. 0, or -1. */
int epcs_parse_unsigned(const char *text, uint64_t *out);

/** Bytes an id's text may take in a route: more than any 64-bit number needs. */
#define EPCS_ID_TEXT_MAX 23

/** The same for `len` bytes of a path segment, which is not NUL-terminated: an id in a route.
 * -1 for an empty segment or one longer than EPCS_ID_TEXT_MAX. */
int epcs_parse_unsigned_span(const char *text, size_t len, uint64_t *out);

/** "YYYY-MM-DD" (00:00 UTC) or "YYYY-MM-DDTHH:MM:SSZ" as microseconds since the epoch. */
int epcs_parse_instant(const char *text, int64_t *us);

#endif
