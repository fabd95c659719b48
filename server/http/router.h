#ifndef EPCS_ROUTER_H
#define EPCS_ROUTER_H

#include <h2o.h>
#include <stddef.h>

#include "keys.h"

/** How a row's pattern meets a request's path. */
enum epcs_route_match {
    /** The whole path is the pattern. */
    EPCS_MATCH_EXACT,
    /** The path is the pattern followed by at least one more byte: that rest is the param. */
    EPCS_MATCH_PREFIX,
};

/**
 * One route: a method on a path pattern, whom it is for and what answers it. Each group of
 * handlers exports its rows (const, static storage); the router keeps pointers to them.
 *
 * `pattern` is literal text but for at most one `{name}` in an exact pattern, which stands for
 * one non-empty path segment (no '/'); that segment is the handler's `param`. Of the rows whose
 * pattern takes a path, the most specific wins: the one with the most literal bytes, an exact
 * one before a prefix one of the same length. Rows sharing a pattern share its role and label.
 */
struct epcs_route_row {
    /** "GET", "POST"...; NULL: every method (a row that claims its path whatever the method). */
    const char *method;
    const char *pattern;
    enum epcs_route_match match;
    /** The least role that may use the route; EPCS_ROLE_NONE: open to anyone (probes). */
    enum epcs_role role;
    /** The metrics label ("check"); rows of one route share it. */
    const char *label;
    /**
     * Answers the request and returns 0; `param` is the text of the pattern's `{name}`, what
     * follows a prefix, or empty. NULL: the paths the row takes are 404, after its role.
     */
    int (*handler)(h2o_req_t *req, h2o_iovec_t param);
};

/** A group's rows, as its file exports them. */
struct epcs_route_group {
    const struct epcs_route_row *rows;
    size_t count;
};

/** The metrics label of the requests no row takes. */
#define EPCS_ROUTE_NOT_FOUND_LABEL "not_found"
/** Metrics slots: distinct labels of the registered rows, and one for EPCS_ROUTE_NOT_FOUND_LABEL.
 */
#define EPCS_ROUTE_SLOTS 32

/** Registered rows, matched against requests; filled before the workers start, then read-only. */
struct epcs_router;

/** What the router made of a request's method and path (see epcs_router_match). */
struct epcs_route_result {
    /** The row that answers; NULL when the answer is 404 or 405. */
    const struct epcs_route_row *row;
    /** The row's param: its `{name}` segment or what follows its prefix; else empty. */
    h2o_iovec_t param;
    /** The role the request needs before anything else is answered. */
    enum epcs_role role;
    /** The metrics slot of its label. */
    unsigned slot;
    /** When the path's route takes other methods only: the Allow value ("GET, POST"). */
    const char *allow;
};

/** An empty router; NULL when out of memory. The caller destroys it. */
struct epcs_router *epcs_router_create(void);

/** Frees `router` (NULL accepted); the rows stay their groups'. */
void epcs_router_destroy(struct epcs_router *router);

/**
 * Registers `group`'s rows after those registered before, giving each new label the next
 * metrics slot. Returns 0, or -1 with `err` naming the row that is malformed or conflicts with
 * one registered (same method and pattern twice, another role or label on a pattern, a method
 * beside an any-method row, too many labels); then nothing of `group` is registered.
 */
int epcs_router_add(struct epcs_router *router, const struct epcs_route_group *group, char *err,
                    size_t err_size);

/**
 * Matches a request: `out` gets the row to answer it, or none (404 when no pattern takes the
 * path, 405 when `allow` is set), the role to ask and the metrics slot. Allocates nothing.
 */
void epcs_router_match(const struct epcs_router *router, h2o_iovec_t method, h2o_iovec_t path,
                       struct epcs_route_result *out);

/**
 * Answers a request matched (and authorised) already: the row's handler, or 405 with Allow,
 * or 404 "no route". Returns 0.
 */
int epcs_router_answer(h2o_req_t *req, const struct epcs_route_result *result);

/** How many metrics slots are in use: the labels registered, and the not-found one last. */
unsigned epcs_router_slots(const struct epcs_router *router);

/** The label of metrics slot `slot` (< epcs_router_slots), owned by the rows or the router. */
const char *epcs_router_label(const struct epcs_router *router, unsigned slot);

#endif
