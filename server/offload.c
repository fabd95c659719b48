/* Route work on libuv's thread pool, answered from the request's loop (offload.h). */
#include "offload.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "codec.h"
#include "log.h"

/* Lives in the request's pool: its disposal tells the job that the client has gone. */
struct epcs_offload_link {
    struct epcs_offload *job;
};

static void cb_link_disposed(void *ptr)
{
    struct epcs_offload_link *link = ptr;
    if (link->job != NULL)
        link->job->req = NULL;
}

/*
 * The pool's threads run at a lower priority than the event loops: a loop answers a check in
 * microseconds and must not wait for a core behind an export that takes the better part of a
 * second, while the pool's work loses little by waiting. Set once per thread (an unprivileged
 * thread cannot raise its priority again).
 */
#define POOL_NICE 10

static _Thread_local int pool_thread_reniced;

static void cb_work(uv_work_t *work)
{
    struct epcs_offload *job = work->data;
    if (!pool_thread_reniced) {
        pool_thread_reniced = 1;
        if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), POOL_NICE) != 0)
            epcs_log(EPCS_LOG_DEBUG, "offload", "a pool thread keeps its priority: %s",
                     strerror(errno));
    }
    job->ops->work(job);
}

static void cb_done(uv_work_t *work, int status)
{
    struct epcs_offload *job = work->data;
    struct epcs_worker *worker = job->worker;
    int answered = 0;
    if (job->req != NULL)
        job->link->job = NULL;
    /* After the loop was stopped the connections' handles are closing: nothing to send on. */
    if (job->req != NULL && !worker->loop_stopped) {
        worker->route = job->route;
        worker->partner = job->partner;
        if (status != 0) {
            job->failed = 1;
            epcs_log(EPCS_LOG_ERROR, "offload", "%s could not run: %s", job->ops->what,
                     uv_strerror(status));
            epcs_respond_error(job->req, 500, "internal", NULL, "%s could not run", job->ops->what);
        } else {
            worker->hold_ticket = job->hold_ticket;
            job->ops->respond(job, job->req);
        }
        worker->hold_ticket = 0;
        worker->partner = "-";
        answered = 1;
    }
    job->ops->destroy(job, answered);
}

int epcs_offload_start(h2o_req_t *req, struct epcs_offload *job, const struct epcs_offload_ops *ops)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    job->ops = ops;
    job->worker = worker;
    job->req = req;
    job->route = worker->route;
    snprintf(job->partner, sizeof(job->partner), "%s", worker->partner);
    job->format = epcs_response_format(req);
    job->work.data = job;
    job->link = h2o_mem_alloc_shared(&req->pool, sizeof(*job->link), cb_link_disposed);
    job->link->job = job;
    int rc = uv_queue_work(&worker->loop, &job->work, cb_work, cb_done);
    if (rc != 0) {
        job->link->job = NULL;
        job->failed = 1;
        epcs_log(EPCS_LOG_ERROR, "offload", "cannot queue %s: %s", ops->what, uv_strerror(rc));
        epcs_respond_error(req, 500, "internal", NULL, "%s could not run", ops->what);
        ops->destroy(job, 1);
    }
    return 0;
}

int epcs_offload_encode(const struct epcs_offload *job, struct epcs_buf *body)
{
    if (job->format == EPCS_FORMAT_MSGPACK)
        return 0;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return -1;
    msgpack_object object;
    size_t offset = 0;
    struct epcs_buf text = {0};
    int rc =
        msgpack_unpack(body->data, body->len, &offset, &zone, &object) == MSGPACK_UNPACK_SUCCESS &&
                epcs_json_encode(&object, &text) == 0 && epcs_buf_append(&text, "\n", 1) == 0
            ? 0
            : -1;
    msgpack_zone_destroy(&zone);
    if (rc == 0) {
        epcs_buf_free(body);
        *body = text;
    } else {
        epcs_buf_free(&text);
    }
    return rc;
}

int epcs_offload_send(struct epcs_offload *job, h2o_req_t *req, int status, struct epcs_buf *body)
{
    return epcs_response_send_buf(
        req, status,
        job->format == EPCS_FORMAT_MSGPACK ? "application/msgpack" : "application/json", body);
}
