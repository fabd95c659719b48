/* Who is asking, and may they: the bearer token checked against the keys, the role against
 * the route's row, the key's rate bucket charged. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/*
 * The worker's view of the keys, refreshed where no request holds a key of it: as a request
 * starts, and when the connection guard looks at a request's headers. Handlers keep the
 * keyring their request was authorised with (epcs_worker_keyring), so a reload cannot free the
 * key `worker->key` and `worker->partner` point into.
 */
static struct epcs_keyring *refresh_keyring(struct epcs_worker *worker)
{
    struct epcs_server *server = worker->server;
    struct epcs_keyring *active = atomic_load_explicit(&server->keyring, memory_order_acquire);
    if (worker->keyring == active)
        return active;
    pthread_mutex_lock(&server->keyring_lock);
    active = atomic_load(&server->keyring);
    epcs_keyring_retain(active);
    pthread_mutex_unlock(&server->keyring_lock);
    epcs_keyring_release(worker->keyring);
    worker->keyring = active;
    return active;
}

struct epcs_keyring *epcs_worker_keyring(struct epcs_worker *worker)
{
    return worker->keyring;
}

static int unauthorized(h2o_req_t *req, const char *message)
{
    static const char challenge[] = "Bearer realm=\"epcs\"";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge,
                   sizeof(challenge) - 1);
    return epcs_respond_error(req, 401, "unauthorized", "authorization", "%s", message);
}

static int too_many_requests(h2o_req_t *req, unsigned wait_seconds, double rate)
{
    char *retry_after = h2o_mem_alloc_pool(&req->pool, 16);
    int len = snprintf(retry_after, 16, "%u", wait_seconds);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry_after,
                   (size_t)len);
    struct epcs_worker *worker = epcs_worker_of(req);
    return epcs_respond_error(req, 429, "rate_limited", NULL,
                              "key %s of partner %s is limited to %g requests a second (a batch "
                              "counts its checks); retry after %u s",
                              worker->key->id, worker->key->partner, rate, wait_seconds);
}

static double key_rate(const struct epcs_worker *worker)
{
    return worker->key->rate > 0 ? worker->key->rate : worker->server->config.rate_limit;
}

/* The key's share here: all of it while the replicas tell each other what they took (each
 * bucket is then charged the others' takings), a live replica's part while they cannot. */
static double local_rate(const struct epcs_worker *worker, double rate)
{
    unsigned divisor = atomic_load_explicit(&worker->server->rate_divisor, memory_order_relaxed);
    return divisor > 1 ? rate / divisor : rate;
}

int epcs_rate_charge(h2o_req_t *req, double cost)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    double rate;
    if (worker->key == NULL || cost <= 0 || (rate = key_rate(worker)) <= 0)
        return 0;
    /* The router took one for the request already. */
    unsigned wait = epcs_rate_take(&worker->key->bucket, local_rate(worker, rate), cost, 1);
    if (wait == 0)
        return 0;
    too_many_requests(req, wait, rate);
    return -1;
}

/* The token of an Authorization header value "Bearer <token>". 0, or -1 when it is not one. */
static int bearer_token(const char *value, size_t len, const char **token, size_t *token_len)
{
    if (value == NULL || len < 7 || strncasecmp(value, "Bearer ", 7) != 0)
        return -1;
    *token = value + 7;
    *token_len = len - 7;
    while (*token_len > 0 && **token == ' ') {
        (*token)++;
        (*token_len)--;
    }
    return 0;
}

/* The connection guard's question: may a request with this Authorization have its body
 * buffered? Only one with a key epcsd knows (any role), or any without keys (--no-auth). */
int epcs_authorize_body(void *ctx, const char *value, size_t len)
{
    struct epcs_worker *worker = ctx;
    const char *token;
    size_t token_len;
    if (worker->server->config.no_auth)
        return 1;
    return bearer_token(value, len, &token, &token_len) == 0 &&
           epcs_keyring_verify(refresh_keyring(worker), token, token_len) != NULL;
}

/*
 * Who is asking, and may they: 0 to go on, or -1 after answering 401, 403 or 429. Sets the
 * worker's key and partner for the handler, the decision log and the access log.
 */
int epcs_authorize(h2o_req_t *req, struct epcs_worker *worker, enum epcs_role needed)
{
    worker->key = NULL;
    if (worker->server->config.no_auth) {
        worker->partner = "local";
        return 0;
    }
    worker->partner = "-";
    if (needed == EPCS_ROLE_NONE)
        return 0;
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (at < 0)
        return unauthorized(req, "this route needs an API key: Authorization: Bearer <token>"), -1;
    const h2o_iovec_t *value = &req->headers.entries[at].value;
    const char *token;
    size_t token_len;
    if (bearer_token(value->base, value->len, &token, &token_len) != 0)
        return unauthorized(req, "the Authorization header must be Bearer <token>"), -1;
    struct epcs_key *key = epcs_keyring_verify(refresh_keyring(worker), token, token_len);
    if (key == NULL)
        return unauthorized(req, "the API key is not valid: unknown, revoked or mistyped"), -1;
    worker->key = key;
    worker->partner = key->partner;
    if (key->role < needed)
        return epcs_respond_error(req, 403, "forbidden", NULL,
                                  "key %s of partner %s has the role %s; %.*s needs %s", key->id,
                                  key->partner, epcs_role_name(key->role),
                                  (int)req->path_normalized.len, req->path_normalized.base,
                                  epcs_role_name(needed)),
               -1;
    double rate = key_rate(worker);
    unsigned wait = rate > 0 ? epcs_rate_take(&key->bucket, local_rate(worker, rate), 1, 0) : 0;
    if (wait != 0)
        return too_many_requests(req, wait, rate), -1;
    return 0;
}
