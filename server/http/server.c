/* The server: its listeners and TLS, its workers and their loops, the route groups it
 * registers, the signals that reload or stop it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "conn_guard.h"
#include "dates.h"
#include "log.h"
#include "rule_store.h"
#include "rule_tests.h"
#include "http.h"
#include "watch.h"

/* Long enough for an editor's save (write, rename, chmod) to finish. */
#define EPCS_WATCH_QUIET_MS 300

#define LISTEN_BACKLOG 1024
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define DRAIN_POLL_MS 20

/* ---- routing ------------------------------------------------------------------------------ */

/*
 * The route table, in the order of its metrics labels. Under --no-auth there are no keys to
 * manage, so the keys' paths answer that instead.
 */
static int register_routes(struct epcs_server *server)
{
    const struct epcs_route_group *groups[] = {
        &epcs_check_routes,    &epcs_health_routes,
        &epcs_meta_routes,     server->config.no_auth ? &epcs_no_key_routes : &epcs_key_routes,
        &epcs_decision_routes, &epcs_case_routes,
    };
    char err[256];
    server->router = epcs_router_create();
    if (server->router == NULL) {
        epcs_log(EPCS_LOG_ERROR, "epcsd", "out of memory for the routes");
        return -1;
    }
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (epcs_router_add(server->router, groups[i], err, sizeof(err)) != 0) {
            epcs_log(EPCS_LOG_ERROR, "epcsd", "%s", err);
            return -1;
        }
    }
    return 0;
}

#ifdef EPCS_BENCH_CEILING
/*
 * bench/run's ceiling: what h2o and HTTP/2 cost alone, a fixed answer of a verdict's size with
 * no decoding, rules, log or accounting. Compiled in only with -DEPCS_BENCH_CEILING=ON.
 */
static int answer_ceiling(h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    static char body[600];
    memset(body, 'x', sizeof(body));
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = sizeof(body);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/msgpack"));
    h2o_start_response(req, &generator);
    h2o_iovec_t chunk = h2o_iovec_init(body, sizeof(body));
    h2o_send(req, &chunk, 1, H2O_SEND_STATE_FINAL);
    return 0;
}
#endif

static int cb_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct epcs_worker *worker = epcs_worker_of(req);
#ifdef EPCS_BENCH_CEILING
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len,
                  H2O_STRLIT("/bench/ceiling")))
        return answer_ceiling(req);
#endif
    msgpack_zone_clear(&worker->zone);
    worker->hold_ticket = 0;
    struct epcs_route_result route;
    epcs_router_match(worker->server->router, req->method, req->path_normalized, &route);
    worker->route = route.slot;
    if (epcs_authorize(req, worker, route.role) != 0)
        return 0;
    return epcs_router_answer(req, &route);
}

/* ---- listeners ---------------------------------------------------------------------------- */

static int address_is_loopback(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127;
    if (addr->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)addr)->sin6_addr);
    return 0;
}

/* A stream socket for `ai` with `port`, the address to bind it to in `addr`; -1 on failure. */
static int address_socket(const struct addrinfo *ai, uint16_t port, struct sockaddr_storage *addr)
{
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    if (addr->ss_family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)addr)->sin6_port = htons(port);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd >= 0 && ai->ai_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int open_listener(const struct addrinfo *ai, uint16_t port)
{
    struct sockaddr_storage addr;
    int fd = address_socket(ai, port, &addr);
    if (fd < 0)
        return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/*
 * The workers' listeners share their address with SO_REUSEPORT, which lets any process of the
 * same user join in and take part of the traffic unseen (an old ruleset, or a --no-auth
 * epcsd). A plain bind first tells whether someone listens there already.
 */
static int address_taken(const struct addrinfo *ai, uint16_t port)
{
    struct sockaddr_storage addr;
    int fd = address_socket(ai, port, &addr);
    if (fd < 0)
        return 0;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    int taken = bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

/* One socket per worker per address, all bound to the same port with SO_REUSEPORT so the
 * kernel spreads connections over the workers. Port 0 is resolved by the first bind. */
static int open_listeners(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    size_t total = config->listen_count * (size_t)server->worker_count;
    server->listen_fds = malloc(sizeof(int) * total);
    if (server->listen_fds == NULL)
        return -1;
    for (size_t a = 0; a < config->listen_count; a++) {
        char host[256], port_text[16];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
        struct addrinfo *ai = NULL;
        uint16_t port;
        int rc;
        /* The command line checked every address already. */
        if (epcs_listen_split(config->listen[a], host, sizeof(host), &port) != 0)
            return -1;
        snprintf(port_text, sizeof(port_text), "%u", port);
        if ((rc = getaddrinfo(host, port_text, &hints, &ai)) != 0) {
            epcs_log(EPCS_LOG_ERROR, "listen", "--listen %s: %s", config->listen[a],
                     gai_strerror(rc));
            return -1;
        }
        for (const struct addrinfo *each = ai; config->no_auth && each != NULL;
             each = each->ai_next) {
            if (!address_is_loopback(each->ai_addr)) {
                epcs_log(EPCS_LOG_ERROR, "listen",
                         "--listen %s is not a loopback address: --no-auth (no API keys) is "
                         "for development on this machine only; create keys with epcsd keys",
                         config->listen[a]);
                freeaddrinfo(ai);
                return -1;
            }
        }
        if (port != 0 && address_taken(ai, port)) {
            epcs_log(EPCS_LOG_ERROR, "listen",
                     "--listen %s: the address is in use (another epcsd, or another program, "
                     "listens there); epcsd does not share its address",
                     config->listen[a]);
            freeaddrinfo(ai);
            return -1;
        }
        for (int w = 0; w < server->worker_count; w++) {
            int fd = open_listener(ai, port);
            if (fd < 0) {
                epcs_log(EPCS_LOG_ERROR, "listen", "--listen %s: %s", config->listen[a],
                         strerror(errno));
                freeaddrinfo(ai);
                return -1;
            }
            server->listen_fds[server->listen_fd_count++] = fd;
            if (port == 0) {
                struct sockaddr_storage bound;
                socklen_t bound_len = sizeof(bound);
                getsockname(fd, (struct sockaddr *)&bound, &bound_len);
                port =
                    ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                     : ((struct sockaddr_in6 *)&bound)->sin6_port);
            }
        }
        freeaddrinfo(ai);
        epcs_log(EPCS_LOG_INFO, "listen", "listening on %s://%s%s%s:%u (%s)",
                 server->ssl_ctx ? "https" : "http", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", port,
                 server->ssl_ctx ? "TLS 1.2+, ALPN h2 and http/1.1"
                                 : "h2c prior knowledge and HTTP/1.1");
    }
    return 0;
}

static SSL_CTX *create_tls(const struct epcs_config *config)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* TLS 1.2 offers only forward-secret AEAD suites (the "intermediate" profile); TLS 1.3 has
     * no others. A recorded session must not be decryptable with the key stolen later. */
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1) {
        epcs_log(EPCS_LOG_ERROR, "tls", "cannot set the TLS 1.2 cipher suites: %s",
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, config->tls_cert) != 1) {
        epcs_log(EPCS_LOG_ERROR, "tls", "--tls-cert %s: %s", config->tls_cert,
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, config->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        epcs_log(EPCS_LOG_ERROR, "tls", "--tls-key %s: %s", config->tls_key,
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

/* ---- workers ------------------------------------------------------------------------------ */

static void cb_accept(uv_stream_t *listener, int status)
{
    struct epcs_worker *worker = listener->data;
    if (status != 0)
        return;
    epcs_guard_accept(worker->guard, listener, &worker->accept_ctx);
}

static int drained(struct epcs_worker *worker)
{
    h2o_context_t *ctx = &worker->ctx;
    if (!h2o_linklist_is_empty(&ctx->http1._conns) || !h2o_linklist_is_empty(&ctx->http2._conns))
        return 0;
    /* h2o's graceful shutdown resends GOAWAY after a second and then waits --shutdown-timeout
     * to close stragglers; with no connection left there is nothing for either to do, and
     * waiting it out held every stop whose last request ended after that second. */
    if (h2o_timeout_is_linked(&ctx->http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&ctx->http2._graceful_shutdown_timeout);
    return 1;
}

static void cb_drain(uv_timer_t *timer)
{
    struct epcs_worker *worker = timer->data;
    /* Keep-alive HTTP/1.1 connections fall idle as their last answers go out. */
    epcs_guard_close_idle(worker->guard);
    if (drained(worker)) {
        uv_stop(&worker->loop);
    } else if (uv_now(&worker->loop) >= worker->drain_deadline) {
        epcs_log(EPCS_LOG_WARN, "shutdown",
                 "worker %d: connections still open after %d s, "
                 "closing them",
                 worker->index, worker->server->config.shutdown_seconds);
        uv_stop(&worker->loop);
    }
}

static void cb_stop(uv_async_t *async)
{
    struct epcs_worker *worker = async->data;
    for (size_t i = 0; i < worker->listener_count; i++)
        uv_close((uv_handle_t *)&worker->listeners[i], NULL);
    h2o_context_request_shutdown(&worker->ctx);
    worker->drain_deadline =
        uv_now(&worker->loop) + (uint64_t)worker->server->config.shutdown_seconds * 1000;
    uv_timer_start(&worker->drain_timer, cb_drain, 0, DRAIN_POLL_MS);
}

/* Closes `handle` unless it is `arg` (NULL: every one). */
static void cb_close_handle(uv_handle_t *handle, void *arg)
{
    if (handle != arg && !uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void *worker_main(void *arg)
{
    struct epcs_worker *worker = arg;
    struct epcs_server *server = worker->server;
    char name[16];
    snprintf(name, sizeof(name), "epcs-worker-%d", worker->index);
    prctl(PR_SET_NAME, name);
    h2o_context_init(&worker->ctx, &worker->loop, &server->globalconf);
    worker->accept_ctx.ctx = &worker->ctx;
    worker->accept_ctx.hosts = server->globalconf.hosts;
    worker->accept_ctx.ssl_ctx = server->ssl_ctx;
    for (size_t i = 0; i < worker->listener_count; i++) {
        uv_tcp_t *listener = &worker->listeners[i];
        int fd = server->listen_fds[i * (size_t)server->worker_count + (size_t)worker->index];
        int rc;
        uv_tcp_init(&worker->loop, listener);
        listener->data = worker;
        /* libuv owns the descriptor from here and closes it with the handle. */
        server->listen_fds[i * (size_t)server->worker_count + (size_t)worker->index] = -1;
        if ((rc = uv_tcp_open(listener, fd)) != 0 ||
            (rc = uv_listen((uv_stream_t *)listener, LISTEN_BACKLOG, cb_accept)) != 0)
            epcs_log(EPCS_LOG_ERROR, "listen", "worker %d: %s", worker->index, uv_strerror(rc));
    }
    uv_run(&worker->loop, UV_RUN_DEFAULT);
    worker->loop_stopped = 1;

    epcs_worker_set_wakeable(worker, 0);
    /* Decisions of requests answered by nobody now (the loop stopped) still go on record, as
     * those of a client that went away do. */
    if (worker->server->decisions != NULL)
        epcs_decision_log_flush(worker->server->decisions, &worker->staged);
    epcs_worker_flush_access_log(worker);
    int clean = drained(worker);
    if (clean)
        h2o_context_dispose(&worker->ctx);
    /* Every handle but the store's way back, which the jobs still under way return by: a
     * write that was asked commits, and its job is freed here. */
    uv_walk(&worker->loop, cb_close_handle, &worker->store_returns.wake);
    epcs_store_returns_drain(worker, &worker->loop);
    uv_close((uv_handle_t *)&worker->store_returns.wake, NULL);
    uv_run(&worker->loop, UV_RUN_DEFAULT);
    if (clean)
        uv_loop_close(&worker->loop);
    return NULL;
}

static int init_worker(struct epcs_server *server, struct epcs_worker *worker, int index)
{
    struct epcs_rule_error err;
    worker->server = server;
    worker->index = index;
    worker->listener_count = server->config.listen_count;
    worker->listeners = calloc(worker->listener_count, sizeof(*worker->listeners));
    if (worker->listeners == NULL || !msgpack_zone_init(&worker->zone, 4096))
        return -1;
    worker->zone_ready = 1;
    char why[512];
    if (server->decisions != NULL &&
        epcs_decision_log_attach(server->decisions, &worker->staged, why, sizeof(why)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "worker %d: %s", index, why);
        return -1;
    }
    msgpack_packer_init(&worker->packer, &worker->body, epcs_buf_msgpack_write);
    msgpack_packer_init(&worker->scratch_packer, &worker->scratch, epcs_buf_msgpack_write);
    msgpack_packer_init(&worker->batch_packer, &worker->batch, epcs_buf_msgpack_write);
    worker->engine = epcs_engine_create(atomic_load(&server->active_ruleset), &err);
    if (worker->engine == NULL) {
        epcs_log(EPCS_LOG_ERROR, "rules", "worker %d: %s", index, err.message);
        return -1;
    }
    if (uv_loop_init(&worker->loop) != 0)
        return -1;
    worker->loop_ready = 1;
    size_t share = (server->config.max_connections + (size_t)server->worker_count - 1) /
                   (size_t)server->worker_count;
    size_t largest_body = server->config.max_body > server->config.max_batch_body
                              ? server->config.max_body
                              : server->config.max_batch_body;
    /* Two of the largest bodies at once: a batch may be uploading while the next one starts. */
    struct epcs_guard_limits limits = {.max_connections = share,
                                       .max_connection_body = 2 * largest_body};
    worker->guard =
        epcs_guard_create(&worker->loop, &worker->ctx, &limits, epcs_authorize_body, worker);
    if (worker->guard == NULL)
        return -1;
    uv_async_init(&worker->loop, &worker->stop_signal, cb_stop);
    worker->stop_signal.data = worker;
    if (epcs_store_returns_init(worker, &worker->loop) != 0)
        return -1;
    uv_async_init(&worker->loop, &worker->ruleset_changed, epcs_worker_cb_ruleset_changed);
    worker->ruleset_changed.data = worker;
    uv_timer_init(&worker->loop, &worker->drain_timer);
    worker->drain_timer.data = worker;
    uv_async_init(&worker->loop, &worker->decisions_committed, epcs_worker_cb_decisions_committed);
    worker->decisions_committed.data = worker;
    uv_prepare_init(&worker->loop, &worker->access_log_flush);
    worker->access_log_flush.data = worker;
    uv_timer_init(&worker->loop, &worker->access_log_due);
    worker->access_log_due.data = worker;
    uv_prepare_start(&worker->access_log_flush, epcs_worker_cb_end_of_turn);
    uv_check_init(&worker->loop, &worker->after_io);
    worker->after_io.data = worker;
    uv_check_start(&worker->after_io, epcs_worker_cb_after_io);
    epcs_cases_worker_init(worker);
    h2o_linklist_init_anchor(&worker->held);
    epcs_worker_set_wakeable(worker, 1);
    worker->partner = "-";
    /* One row per area and one for checks every matching area answered. */
    worker->metrics.verdicts =
        calloc(server->plugins->count + 1, sizeof(*worker->metrics.verdicts));
    if (worker->metrics.verdicts == NULL)
        return -1;
    return 0;
}

static void dispose_worker(struct epcs_worker *worker)
{
    /* A worker after one that failed to set up was never set up itself. */
    if (worker->server != NULL && worker->server->decisions != NULL)
        epcs_decision_log_detach(worker->server->decisions, &worker->staged);
    epcs_guard_destroy(worker->guard);
    epcs_store_returns_dispose(worker);
    epcs_engine_destroy(worker->engine);
    epcs_keyring_release(worker->keyring);
    free(worker->metrics.verdicts);
    if (worker->zone_ready)
        msgpack_zone_destroy(&worker->zone);
    epcs_buf_free(&worker->body);
    epcs_buf_free(&worker->scratch);
    epcs_buf_free(&worker->json);
    epcs_buf_free(&worker->batch);
    /* Lines of a worker that never ran its loop to the end (start-up failure) still count. */
    epcs_log_write_lines(worker->access_log.data, worker->access_log.len);
    epcs_buf_free(&worker->access_log);
    free(worker->listeners);
}

static int wait_for_stop_signal(struct epcs_server *server, const sigset_t *signals)
{
    /* Once a second the key store is asked whether the keys changed, so `epcsd keys revoke`
     * takes effect by itself. */
    const struct timespec key_poll = {.tv_sec = 1};
    for (;;) {
        int sig = sigtimedwait(signals, NULL, &key_poll);
        if (sig < 0) {
            epcs_server_reload_keys(server, 0);
            continue;
        }
        if (sig == SIGHUP) {
            struct epcs_reload_outcome outcome;
            epcs_server_reload_keys(server, 0);
            epcs_server_reload(server, "signal", "SIGHUP", &outcome);
            continue;
        }
        epcs_log(EPCS_LOG_INFO, "shutdown", "%s: finishing in-flight requests (up to %d s)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", server->config.shutdown_seconds);
        return sig;
    }
}

/* ---- start-up and shutdown ---------------------------------------------------------------- */

static void configure_h2o(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    h2o_config_init(&server->globalconf);
    server->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("epcsd"));
    /* h2o's own limit sits above ours so clients get our 413 with a JSON body; beyond it an
     * HTTP/2 stream is refused outright, which is all such a body deserves. */
    size_t largest =
        config->max_body > config->max_batch_body ? config->max_body : config->max_batch_body;
    server->globalconf.max_request_entity_size = largest * 2;
    server->globalconf.http2.graceful_shutdown_timeout = (uint64_t)config->shutdown_seconds * 1000;
    server->globalconf.http2.max_concurrent_requests_per_connection = (size_t)config->max_streams;
    h2o_hostconf_t *hostconf =
        h2o_config_register_host(&server->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = cb_on_req;
}

void epcs_server_hold_signals(sigset_t *signals)
{
    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    sigaddset(signals, SIGHUP);
    /* Workers inherit the mask, so only the main thread's sigwait sees these signals. */
    pthread_sigmask(SIG_BLOCK, signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file size limit (ulimit -f) makes a write fail with EFBIG, which stalls the decision
     * log until it is raised, instead of killing epcsd mid-write. */
    signal(SIGXFSZ, SIG_IGN);
}

/* The database of --store, or NULL for "sqlite": the stores under --data. */
static const char *store_uri(const struct epcs_config *config)
{
    return strcmp(config->store, "sqlite") != 0 ? config->store : NULL;
}

static int open_decision_log(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    char err[512];
    const char *uri = store_uri(config);
    server->decisions = epcs_decision_log_open(uri, config->data_dir, config->audit,
                                               config->audit_queue, err, sizeof(err));
    if (server->decisions == NULL) {
        epcs_log(EPCS_LOG_ERROR, "decisions", "cannot open the decision log: %s", err);
        return -1;
    }
    if (config->audit == EPCS_AUDIT_SYNC)
        epcs_decision_log_on_commit(server->decisions, epcs_workers_wake_committed, server);
    if (uri != NULL)
        epcs_log(EPCS_LOG_INFO, "decisions", "decision log on PostgreSQL, journals in %s (%s)",
                 config->data_dir, config->audit == EPCS_AUDIT_SYNC ? "sync" : "async");
    else
        epcs_log(EPCS_LOG_INFO, "decisions", "decision log %s/decisions.db (%s)", config->data_dir,
                 config->audit == EPCS_AUDIT_SYNC ? "sync" : "async");
    return 0;
}

static int open_case_store(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    char err[1024];
    const char *uri = store_uri(config);
    server->cases = epcs_cases_open(uri, config->data_dir, server->decisions, err, sizeof(err));
    if (server->cases == NULL) {
        epcs_log(EPCS_LOG_ERROR, "cases", "cannot open the case store: %s", err);
        return -1;
    }
    if (uri != NULL)
        epcs_log(EPCS_LOG_INFO, "cases", "case store on PostgreSQL");
    return 0;
}

/* This replica's place among the replicas: the rate limits' split needs it before the keys. */
static int open_replicas(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    const char *store_uri = strcmp(config->store, "sqlite") != 0 ? config->store : NULL;
    const char *audit = config->audit == EPCS_AUDIT_SYNC    ? "sync"
                        : config->audit == EPCS_AUDIT_ASYNC ? "async"
                                                            : "off";
    char err[512];
    server->replicas = epcs_replicas_open(store_uri, audit, err, sizeof(err));
    if (server->replicas == NULL) {
        epcs_log(EPCS_LOG_ERROR, "cluster", "cannot join the replicas: %s", err);
        return -1;
    }
    if (store_uri != NULL)
        epcs_log(EPCS_LOG_INFO, "cluster", "run %llu among the replicas on PostgreSQL",
                 (unsigned long long)epcs_replicas_run(server->replicas));
    return 0;
}

/* Everything the workers share, in the order a failure must be reported; 0 or -1 (logged). */
static int open_shared(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    server->worker_count = config->threads;
    server->workers = calloc((size_t)server->worker_count, sizeof(*server->workers));
    if (server->workers == NULL || register_routes(server) != 0)
        return -1;
    if (config->tls_cert != NULL && (server->ssl_ctx = create_tls(config)) == NULL)
        return -1;
    if (open_listeners(server) != 0 || open_replicas(server) != 0)
        return -1;
    if ((server->store_threads = epcs_store_threads_start(config->store_threads)) == NULL)
        return -1;
    if (!config->no_auth && epcs_server_open_keys(server) != 0)
        return -1;
    if (config->audit != EPCS_AUDIT_OFF && open_decision_log(server) != 0)
        return -1;
    return open_case_store(server);
}

/* Every worker is set up before any thread starts; *started counts the threads that did. */
static int start_workers(struct epcs_server *server, int *started)
{
    *started = 0;
    for (int i = 0; i < server->worker_count; i++) {
        if (init_worker(server, &server->workers[i], i) != 0) {
            epcs_log(EPCS_LOG_ERROR, "epcsd", "cannot set up worker %d", i);
            return -1;
        }
    }
    for (; *started < server->worker_count; (*started)++) {
        struct epcs_worker *worker = &server->workers[*started];
        if (pthread_create(&worker->thread, NULL, worker_main, worker) != 0) {
            epcs_log(EPCS_LOG_ERROR, "epcsd", "cannot start worker thread %d", *started);
            return -1;
        }
    }
    return 0;
}

static void serve_until_stopped(struct epcs_server *server, const sigset_t *signals,
                                const char *ruleset_id)
{
    const struct epcs_config *config = &server->config;
    /* Armed before "ready": an edit saved the moment an operator sees that line is seen. */
    struct epcs_watch *watch = config->watch_rules
                                   ? epcs_watch_start(config->rules_dir, EPCS_WATCH_QUIET_MS,
                                                      epcs_server_cb_rules_changed, server)
                                   : NULL;
    /* Other replicas' activations, once workers can take a new ruleset (the file store has
     * nobody else's to hear of). */
    if (epcs_rule_store_follow(server->rule_store, epcs_server_cb_rules_activated, server) != 0)
        epcs_log(EPCS_LOG_ERROR, "rules", "cannot follow the rule store's activations");
    /* A replica that cannot beat still serves; the cluster's list misses it. */
    epcs_beat_start(server);
    epcs_log(EPCS_LOG_INFO, "epcsd", "ready: %d worker thread(s), ruleset %s, %zu area(s)",
             server->worker_count, ruleset_id, server->plugins->count);
    wait_for_stop_signal(server, signals);
    epcs_beat_stop(server);
    epcs_rule_store_unfollow(server->rule_store);
    epcs_watch_stop(watch);
}

/* Threads that ran are stopped and joined; a loop set up for a thread that never started is
 * closed here instead. Every worker is then disposed of. */
static void stop_workers(struct epcs_server *server, int started)
{
    for (int i = 0; i < started; i++)
        uv_async_send(&server->workers[i].stop_signal);
    for (int i = 0; i < started; i++)
        pthread_join(server->workers[i].thread, NULL);
    for (int i = 0; i < server->worker_count; i++) {
        struct epcs_worker *worker = &server->workers[i];
        if (i >= started && worker->loop_ready) {
            epcs_worker_set_wakeable(worker, 0);
            uv_walk(&worker->loop, cb_close_handle, NULL);
            uv_run(&worker->loop, UV_RUN_DEFAULT);
            uv_loop_close(&worker->loop);
        }
        dispose_worker(worker);
    }
}

/* 0 once a stop signal was served and every worker stopped; 1 when a worker could not start. */
static int run_workers(struct epcs_server *server, const sigset_t *signals)
{
    /* Copied while no worker runs: once one does, a reload it serves may free the ruleset. */
    char ruleset_id[sizeof(atomic_load(&server->active_ruleset)->id)];
    snprintf(ruleset_id, sizeof(ruleset_id), "%s", atomic_load(&server->active_ruleset)->id);
    int started;
    int status = 1;
    if (start_workers(server, &started) == 0) {
        serve_until_stopped(server, signals, ruleset_id);
        status = 0;
    }
    stop_workers(server, started);
    if (status == 0)
        epcs_log(EPCS_LOG_INFO, "shutdown", "stopped cleanly");
    return status;
}

static void close_shared(struct epcs_server *server)
{
    for (size_t i = 0; i < server->listen_fd_count; i++) {
        if (server->listen_fds[i] >= 0)
            close(server->listen_fds[i]);
    }
    free(server->listen_fds);
    epcs_workers_forget(server);
    if (server->ssl_ctx != NULL)
        SSL_CTX_free(server->ssl_ctx);
    /* After the workers, whose loops waited for every job they had queued. */
    epcs_store_threads_stop(server->store_threads);
    server->store_threads = NULL;
    /* After the workers, whose loops ran every write they had queued to the end; before the
     * decision log, which takes the store's events. */
    epcs_cases_close(server->cases);
    server->cases = NULL;
    /* After the workers: answers held for a commit have all been released by now. */
    epcs_decision_log_close(server->decisions);
    server->decisions = NULL;
    /* Its threads share the keyring's buckets: stopped before the keyring goes. */
    epcs_server_close_keys(server);
    epcs_keyring_release(atomic_load(&server->keyring));
    /* After the rate share, which reads it; marks this run stopped. */
    epcs_replicas_close(server->replicas);
    server->replicas = NULL;
    epcs_router_destroy(server->router);
    server->router = NULL;
    h2o_config_dispose(&server->globalconf);
}

int epcs_server_run(struct epcs_server *server)
{
    configure_h2o(server);
    sigset_t signals;
    epcs_server_hold_signals(&signals);
    int status = 1;
    if (open_shared(server) == 0)
        status = run_workers(server, &signals);
    close_shared(server);
    return status;
}
