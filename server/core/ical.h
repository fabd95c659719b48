#ifndef EPCS_ICAL_H
#define EPCS_ICAL_H

#include <msgpack.h>
#include <time.h>

#include "buf.h"
#include "ruleset.h"

/**
 * Appends an RFC 5545 calendar for `election` to `out`: election day and one all-day event per
 * calendar item (the maps GET /v1/elections/{id}/calendar lists: area, kind, article, rule,
 * title, title_ko?, from/to or day). Lines end in CRLF and are folded at 75 octets without
 * splitting a UTF-8 character. `stamp` is the DTSTAMP: the ruleset's load time, when the
 * calendar's content last changed. Returns 0, or -1 when memory runs out.
 */
int epcs_ical_render(const struct epcs_election *election, const msgpack_object *items,
                     const char *ruleset_id, time_t stamp, struct epcs_buf *out);

#endif
