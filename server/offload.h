#ifndef EPCS_OFFLOAD_H
#define EPCS_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

/*
 * Work a route must not do on its event loop (SQLite reads and writes, fsyncs, long exports),
 * run on libuv's thread pool and answered from the loop when it is done.
 *
 * A route copies what the work needs out of the request into a job of its own that embeds
 * `struct epcs_offload` (first, or anywhere: the callbacks get the member back and reach the job
 * with H2O_STRUCT_FROM_MEMBER), then calls epcs_offload_start. The work runs on a pool thread
 * and sees nothing of h2o or the loop; `respond` runs on the loop with the request restored as
 * the router left it; `destroy` runs last, always, on the loop. When the client goes away, or
 * the loop stops, before the work is done, the work still runs to the end (a write commits) and
 * only `respond` is skipped.
 *
 * Writes, reads and exports of the case store use it; so should every route that would block
 * its loop (decision listings, replay, impact, reload, key writes).
 */

struct epcs_offload;

/** A job's callbacks: a static const table per kind of job. */
struct epcs_offload_ops {
    /** What the job does, for the log: "listing reports". */
    const char *what;
    /** On a pool thread: does the work and keeps its outcome in the job. Must not touch the
     * request, the worker, h2o or the loop; may block. */
    void (*work)(struct epcs_offload *job);
    /** On the loop, once, when the client is still there: answers the request. `job->failed`
     * is set when the pool could not run the work (the helper answers 500 then instead). */
    void (*respond)(struct epcs_offload *job, h2o_req_t *req);
    /** On the loop, last: frees the job. `answered` is 0 when nobody was there to answer. */
    void (*destroy)(struct epcs_offload *job, int answered);
};

/** The helper's part of a job. Zero it with the job; epcs_offload_start fills it. */
struct epcs_offload {
    uv_work_t work;
    const struct epcs_offload_ops *ops;
    struct epcs_worker *worker;
    /* NULL once the client has gone (see cb_link_disposed). */
    h2o_req_t *req;
    struct epcs_offload_link *link;
    /* The router's per-request fields, restored for `respond`: the worker's belong to
       whichever request came last. */
    enum epcs_route route;
    char partner[EPCS_KEY_PARTNER_MAX];
    /** The answer's format, read from the request's headers when the job started. */
    enum epcs_format format;
    /** Set by `work` (0: none): under --audit sync whatever `respond` answers waits until the
     * decision log has committed this ticket, as a check's answer waits for its decision. */
    uint64_t hold_ticket;
    /** Set when the pool could not run the work. */
    int failed;
};

/**
 * Queues `job` (which the caller allocated, and `ops->destroy` frees) for the thread pool.
 * Returns 0, the handler's return value: when the pool refuses it, answers 500 and destroys
 * the job at once.
 */
int epcs_offload_start(h2o_req_t *req, struct epcs_offload *job,
                       const struct epcs_offload_ops *ops);

/**
 * For `work`: turns the msgpack document in `body` into the job's format (JSON text with a
 * final newline, as epcs_response_send writes it), in place. Returns 0, or -1 when it has no
 * JSON form or memory runs out.
 */
int epcs_offload_encode(const struct epcs_offload *job, struct epcs_buf *body);

/** For `respond`: sends `body` (as epcs_offload_encode left it) with `status` in the job's
 * format; the request takes its memory and leaves it empty. Returns 0. */
int epcs_offload_send(struct epcs_offload *job, h2o_req_t *req, int status, struct epcs_buf *body);

#endif
