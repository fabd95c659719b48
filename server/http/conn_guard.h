#ifndef EPCS_CONN_GUARD_H
#define EPCS_CONN_GUARD_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * What a client may make one worker do before its requests reach the router. h2o 2.2.5 buffers
 * a request's whole body before any handler sees the request, counts no reset streams, and
 * takes every connection it is offered; the guard sits between the sockets and h2o's parsers:
 *
 * - A request body is buffered only for a request that carries a valid API key (or with
 *   --no-auth): any other request with a body is handed to h2o without it, so the router
 *   answers 401 at once, and the body is dropped as it arrives (HTTP/2) or the connection is
 *   closed after the answer (HTTP/1.1).
 * - One HTTP/2 connection starts at most GUARD_STREAMS_PER_TURN streams per loop turn (the
 *   rest wait in its input for the next turn, so other connections are served in between) and
 *   may reset at most a budget of streams (then GOAWAY ENHANCE_YOUR_CALM): HTTP/2 Rapid Reset
 *   (CVE-2023-44487), against which Debian's libh2o 2.2.5 has no fix.
 * - The bodies one HTTP/2 connection has in progress at once are bounded.
 * - A worker holds at most its share of --max-connections; more are closed when accepted.
 *
 * One guard per worker, used on that worker's loop thread only.
 */

struct epcs_guard;

/**
 * Whether a request with Authorization header value [value, value+len) (NULL: none) may have
 * its body buffered: 1 yes, 0 no. Called on the worker's thread.
 */
typedef int (*epcs_guard_admit_fn)(void *ctx, const char *value, size_t len);

struct epcs_guard_limits {
    /** Connections this worker keeps open at most; 0: no limit. */
    size_t max_connections;
    /** Request body bytes one HTTP/2 connection may have buffered at once, over its streams. */
    size_t max_connection_body;
};

/** What a guard has done, for /metrics. */
struct epcs_guard_counts {
    /** Connections open now. */
    uint64_t open;
    /** Connections closed when accepted, past max_connections. */
    uint64_t refused;
    /** Request bodies not buffered for want of a valid key. */
    uint64_t bodies_dropped;
    /** HTTP/2 connections ended with GOAWAY ENHANCE_YOUR_CALM. */
    uint64_t goaways;
    /** Times an HTTP/2 connection waited for the next loop turn to start more streams. */
    uint64_t deferred;
};

/**
 * Creates the guard of the worker whose loop is `loop` and whose h2o context `ctx` will be
 * (set up before the first connection is accepted). Returns NULL when memory runs out.
 */
struct epcs_guard *epcs_guard_create(uv_loop_t *loop, h2o_context_t *ctx,
                                     const struct epcs_guard_limits *limits,
                                     epcs_guard_admit_fn admit, void *admit_ctx);
/** Frees the guard once its loop has closed every handle. Accepts NULL. */
void epcs_guard_destroy(struct epcs_guard *guard);

/** Accepts one connection from `listener` and hands it to h2o, or closes it past the limit. */
void epcs_guard_accept(struct epcs_guard *guard, uv_stream_t *listener,
                       h2o_accept_ctx_t *accept_ctx);

/**
 * Once per loop turn, before the loop waits: takes up the read callbacks h2o installed while
 * it wrote (HTTP/1.1 between requests) so the guard sees every read.
 */
void epcs_guard_turn(struct epcs_guard *guard);

/**
 * During shutdown: closes the HTTP/1.1 connections that wait for a request (h2o 2.2.5 has no
 * graceful shutdown for HTTP/1.1, so a client or proxy keeping them alive held the worker until
 * --shutdown-timeout). Connections in the middle of a request are left to finish.
 */
void epcs_guard_close_idle(struct epcs_guard *guard);

/** Reads the guard's counters; any thread may call it while the worker runs. */
void epcs_guard_read_counts(const struct epcs_guard *guard, struct epcs_guard_counts *counts);

#endif
