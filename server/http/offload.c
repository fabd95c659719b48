/* Route work on the store's threads, answered from the request's loop (offload.h). */
#include "offload.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

static void cb_work(struct epcs_store_job *store_job)
{
    struct epcs_offload *job = H2O_STRUCT_FROM_MEMBER(struct epcs_offload, store, store_job);
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

static void cb_done(struct epcs_store_job *store_job)
{
    struct epcs_offload *job = H2O_STRUCT_FROM_MEMBER(struct epcs_offload, store, store_job);
    struct epcs_worker *worker = job->worker;
    int answered = 0;
    if (job->req != NULL)
        job->link->job = NULL;
    /* After the loop was stopped the connections' handles are closing: nothing to send on. */
    if (job->req != NULL && !worker->loop_stopped) {
        worker->route = job->route;
        worker->partner = job->partner;
        worker->hold_ticket = job->hold_ticket;
        respond(job);
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
    job->link = h2o_mem_alloc_shared(&req->pool, sizeof(*job->link), cb_link_disposed);
    job->link->job = job;
    job->store = (struct epcs_store_job){.work = cb_work, .done = cb_done, .worker = worker};
    epcs_store_queue(worker->server->store_threads, &job->store);
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
