/* Route work on libuv's thread pool, answered from the request's loop (offload.h). */
#include "offload.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
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
 *
 * A nice value alone is not enough on Linux 6.6 and later (EEVDF): a running thread keeps its
 * core to the end of its time slice (a few milliseconds) before a thread that wakes gets it,
 * whatever their nice values, so with every core busy on pool work a check often waited for a
 * slice to end. Since 6.12 a thread may ask for a shorter slice: the pool's ask for the
 * shortest, and a woken loop waits for a core at most about that long (on the 2-core test
 * machine, with four loads at once, the checks' p99 fell by a fifth). Older kernels ignore
 * it.
 */
#define POOL_NICE 10
#define POOL_SLICE_NS 100000

/* The kernel's struct sched_attr (its first version), which glibc does not declare. */
struct pool_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

static _Thread_local int pool_thread_reniced;

static void lower_pool_thread(void)
{
    /* Named, so that a thread's CPU time can be told from a loop's (top -H, the tests). */
    prctl(PR_SET_NAME, "epcs-pool");
    struct pool_sched_attr attr = {.size = sizeof(attr),
                                   .sched_policy = SCHED_OTHER,
                                   .sched_nice = POOL_NICE,
                                   .sched_runtime = POOL_SLICE_NS};
    if (syscall(SYS_sched_setattr, 0, &attr, 0) == 0)
        return;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), POOL_NICE) != 0)
        epcs_log(EPCS_LOG_DEBUG, "offload", "a pool thread keeps its priority: %s",
                 strerror(errno));
}

static void cb_work(uv_work_t *work)
{
    struct epcs_offload *job = work->data;
    if (!pool_thread_reniced) {
        pool_thread_reniced = 1;
        lower_pool_thread();
    }
    job->ops->work(job);
}

/* The answer `work` chose: its error, or whatever `respond` sends. */
static void respond(struct epcs_offload *job)
{
    const struct epcs_offload_error *error = &job->error;
    if (error->status == 0)
        job->ops->respond(job, job->req);
    else
        epcs_respond_error(job->req, error->status, error->code, error->field, "%s",
                           error->message);
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
            respond(job);
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

void epcs_offload_fail(struct epcs_offload *job, int status, const char *code, const char *field,
                       const char *fmt, ...)
{
    va_list args;
    job->error.status = status;
    job->error.code = code;
    job->error.field = field;
    va_start(args, fmt);
    vsnprintf(job->error.message, sizeof(job->error.message), fmt, args);
    va_end(args);
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

int epcs_offload_finish(struct epcs_offload *job, struct epcs_buf *body)
{
    if (body->failed) {
        epcs_log(EPCS_LOG_ERROR, "offload", "out of memory building the answer of %s",
                 job->ops->what);
        epcs_offload_fail(job, 500, "internal", NULL,
                          "the server ran out of memory building the answer; retry");
        return -1;
    }
    if (epcs_offload_encode(job, body) != 0) {
        epcs_log(EPCS_LOG_ERROR, "offload", "cannot encode the answer of %s as JSON",
                 job->ops->what);
        epcs_offload_fail(job, 500, "internal", NULL, "response could not be encoded as JSON");
        return -1;
    }
    return 0;
}

int epcs_offload_send(struct epcs_offload *job, h2o_req_t *req, int status, struct epcs_buf *body)
{
    return epcs_response_send_buf(
        req, status,
        job->format == EPCS_FORMAT_MSGPACK ? "application/msgpack" : "application/json", body);
}
