#ifndef EPCS_OFFLOAD_H
#define EPCS_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "store_threads.h"

/*
 * Work a route must not do on its event loop (the stores' reads and writes, fsyncs, long
 * exports), run on the store's threads (store_threads.h) and answered from the loop when it is
 * done.
 *
 * A route copies what the work needs out of the request into a job of its own that embeds
 * `struct epcs_offload` (first, or anywhere: the callbacks get the member back and reach the job
 * with H2O_STRUCT_FROM_MEMBER), then calls epcs_offload_start. The work runs on a store thread
 * and sees nothing of h2o or the loop; `respond` runs on the loop with the request restored as
 * the router left it; `destroy` runs last, always, on the loop. When the client goes away, or
 * the loop stops, before the work is done, the work still runs to the end (a write commits) and
 * only `respond` is skipped.
 *
 * Every route that would block its loop uses it: writes, reads and exports of the case store,
 * decision listings and reads, replay, impact, reloads, stored rules and key writes.
 */

struct epcs_offload;

/** A job's callbacks: a static const table per kind of job. */
struct epcs_offload_ops {
    /** What the job does, for the log: "listing reports". */
    const char *what;
    /** On a store thread: does the work and keeps its outcome in the job. Must not touch the
     * request, the worker, h2o or the loop; may block. */
    void (*work)(struct epcs_offload *job);
    /** On the loop, once, when the client is still there and `work` chose no error: answers
     * the request. */
    void (*respond)(struct epcs_offload *job, h2o_req_t *req);
    /** On the loop, last: frees the job. `answered` is 0 when nobody was there to answer. */
    void (*destroy)(struct epcs_offload *job, int answered);
};

/** An error answer chosen by `work` (epcs_offload_fail); `status` 0 while there is none. */
struct epcs_offload_error {
    int status;
    /* Static, or in the job: they must outlive `respond`. */
    const char *code;
    const char *field;
    char message[512];
};

/** The helper's part of a job. Zero it with the job; epcs_offload_start fills it. */
struct epcs_offload {
    struct epcs_store_job store;
    const struct epcs_offload_ops *ops;
    struct epcs_worker *worker;
    /* NULL once the client has gone (see cb_link_disposed). */
    h2o_req_t *req;
    struct epcs_offload_link *link;
    /* The router's per-request fields, restored for `respond`: the worker's belong to
       whichever request came last. */
    unsigned route;
    char partner[EPCS_KEY_PARTNER_MAX];
    /** The answer's format, read from the request's headers when the job started. */
    enum epcs_format format;
    /** Set by `work` (0: none): under --audit sync whatever `respond` answers waits until the
     * decision log has committed this ticket, as a check's answer waits for its decision. */
    uint64_t hold_ticket;
    /** Set by `work` through epcs_offload_fail: the helper answers it instead of calling
     * `respond`. */
    struct epcs_offload_error error;
};

/**
 * Queues `job` (which the caller allocated, and `ops->destroy` frees) for the store's threads.
 * Returns 0, the handler's return value.
 */
int epcs_offload_start(h2o_req_t *req, struct epcs_offload *job,
                       const struct epcs_offload_ops *ops);

/**
 * For `work`: makes the answer {error: code, message, field?} with `status`, sent from the loop
 * as epcs_respond_error sends it, instead of calling `respond`. `code` and `field` (NULL: none)
 * must outlive the job.
 */
void epcs_offload_fail(struct epcs_offload *job, int status, const char *code, const char *field,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/**
 * For `work`: turns the msgpack document in `body` into the job's format (JSON text with a
 * final newline, as epcs_response_send writes it), in place. Returns 0, or -1 when it has no
 * JSON form or memory runs out.
 */
int epcs_offload_encode(const struct epcs_offload *job, struct epcs_buf *body);

/**
 * For `work`: readies `body` (a msgpack document) as the answer, as epcs_offload_encode does;
 * when the document lacks a piece (memory ran out) or has no JSON form, chooses the 500 that
 * epcs_response_send gives for those instead (epcs_offload_fail). Returns 0, or -1 then.
 */
int epcs_offload_finish(struct epcs_offload *job, struct epcs_buf *body);

/** For `respond`: sends `body` (as epcs_offload_encode left it) with `status` in the job's
 * format; the request takes its memory and leaves it empty. Returns 0. */
int epcs_offload_send(struct epcs_offload *job, h2o_req_t *req, int status, struct epcs_buf *body);

#endif
