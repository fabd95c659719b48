#ifndef EPCS_HTTP_H
#define EPCS_HTTP_H

#include <h2o.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#if !H2O_USE_LIBUV
#error "epcs needs h2o built for libuv (Debian's libh2o-dev, not libh2o-evloop-dev)"
#endif

#include "buf.h"
#include "cases.h"
#include "check.h"
#include "codec.h"
#include "config.h"
#include "conn_guard.h"
#include "decision_log.h"
#include "key_store.h"
#include "keys.h"
#include "plugin_loader.h"
#include "replicas.h"
#include "router.h"
#include "store_threads.h"
#include "rule_store.h"
#include "ruleset.h"

struct epcs_worker;
struct epcs_rate_share;
struct epcs_beat;

#define EPCS_LATENCY_BUCKETS 12
/** Status codes epcsd answers with, in the order of the metrics' status slots. */
#define EPCS_STATUS_CODES 200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503
#define EPCS_STATUS_SLOTS 15

/**
 * One worker's counters: written by its own thread only, read by whichever thread serves
 * /metrics, so relaxed atomics are enough and no two workers share a cache line.
 */
struct epcs_worker_metrics {
    /* [metrics slot of the route's label (epcs_router_label)][...] */
    _Atomic uint64_t responses[EPCS_ROUTE_SLOTS][EPCS_STATUS_SLOTS];
    _Atomic uint64_t latency[EPCS_ROUTE_SLOTS][EPCS_LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_sum_us[EPCS_ROUTE_SLOTS];
    /** Answers held for the decision log (journal write or commit) right now. */
    _Atomic uint64_t held_answers;
    /** [area index, plugin count for "all areas"][verdict kind] */
    _Atomic uint64_t (*verdicts)[3];
};

/** Process-wide state, shared read-only by the workers once they run. */
struct epcs_server {
    struct epcs_config config;
    h2o_globalconf_t globalconf;
    SSL_CTX *ssl_ctx;
    struct epcs_plugin_set *plugins;
    /*
     * The ruleset new requests use. Workers compare it with their engine's at each request
     * boundary and rebuild on change, so publishing a new ruleset here switches every worker
     * without stopping one; in-flight requests finish on the engine they started with.
     */
    _Atomic(struct epcs_ruleset *) active_ruleset;
    pthread_mutex_t ruleset_lock;
    /** One listening socket per address per worker (SO_REUSEPORT), made before workers start. */
    int *listen_fds;
    size_t listen_fd_count;
    struct epcs_worker *workers;
    int worker_count;
    /** The route groups' rows, registered before the workers start (epcs_server_run). */
    struct epcs_router *router;
    /** API keys, swapped like the ruleset when the key store changes; NULL with --no-auth. */
    _Atomic(struct epcs_keyring *) keyring;
    pthread_mutex_t keyring_lock;
    /** Where the keys are kept (key_store.h): the keys file, or PostgreSQL; opened and closed
     * by main() around the server's run, NULL with --no-auth. */
    struct epcs_key_store *key_store;
    /**
     * What every key's rate is divided by here: 1 while the replicas share their usage through
     * the key store (or there is nobody to share with), the number of live replicas last seen
     * while they cannot (rate_share.c).
     */
    _Atomic unsigned rate_divisor;
    struct epcs_rate_share *rate_share;
    /** The replicas of the cluster as this one last read them (replicas.h), beaten by `beat`
     * (beat.c); the embedded store's lists this process alone. */
    struct epcs_replicas *replicas;
    struct epcs_beat *beat;
    /** Where the work that waits on the stores runs (store_threads.h). */
    struct epcs_store_threads *store_threads;
    /** NULL with --audit off. */
    struct epcs_decision_log *decisions;
    /** Reports and the requests they caused (cases.h); epcsd does not start without it. */
    struct epcs_cases *cases;
    /** Every ruleset activated and the history of activations (rule_store.h); opened by main()
     * before the first ruleset is chosen, closed after the server stops. */
    struct epcs_rule_store *rule_store;
    /* The latest refusal of the rules directory (until a reload of it works), and whether the
     * ruleset served is a stored one because the directory failed at start. */
    pthread_mutex_t rules_state_lock;
    int rules_refused;
    int rules_fallback;
    struct epcs_rule_error rules_refusal;
    time_t rules_refused_at;
    /**
     * Set while the rule store's database cannot be reached (its follower's reads fail):
     * /readyz is then false with "store": "down", until a read succeeds again.
     */
    _Atomic int store_down;
    /** The activation epoch of the ruleset served (rule_store.h), 0 before the first. */
    _Atomic uint64_t rules_epoch;
    /**
     * Set when the store's active ruleset (another replica activated it) cannot be served
     * here: `rules_behind_reason` says which and why. /readyz is then false and checks answer
     * 503 rather than decide by rules the cluster has left; cleared by the next switch.
     */
    int rules_behind;
    char rules_behind_reason[600];
    /** The epoch whose ruleset was refused here (not tried again), 0 when the store failed. */
    uint64_t rules_behind_epoch;
    _Atomic uint64_t reloads_activated;
    _Atomic uint64_t reloads_refused;
    _Atomic uint64_t reloads_unchanged;
};

/** One thread's loop, h2o context and rule engine. */
struct epcs_worker {
    /* First member: handlers get here from req->conn->ctx. */
    h2o_context_t ctx;
    struct epcs_server *server;
    int index;
    pthread_t thread;
    uv_loop_t loop;
    int loop_ready;
    uv_async_t stop_signal;
    /** The way back of the jobs this loop gave the store's threads. */
    struct epcs_store_returns store_returns;
    /* Woken when a ruleset is published, so an idle worker lets go of the old one too. */
    uv_async_t ruleset_changed;
    uv_timer_t drain_timer;
    uint64_t drain_deadline;
    uv_tcp_t *listeners;
    size_t listener_count;
    h2o_accept_ctx_t accept_ctx;
    /** What a connection may make this worker do before the router sees its requests. */
    struct epcs_guard *guard;
    struct epcs_engine *engine;
    /* Per-request scratch, reset at the start of each request; never shared. */
    msgpack_zone zone;
    int zone_ready;
    struct epcs_buf body;
    struct epcs_buf scratch;
    struct epcs_buf json;
    struct epcs_buf batch;
    msgpack_packer packer;
    msgpack_packer scratch_packer;
    msgpack_packer batch_packer;
    struct epcs_facts facts;

    /* Who the current request is: set by the router before the handler runs. */
    struct epcs_keyring *keyring;
    struct epcs_key *key;
    const char *partner;
    /** The metrics slot of the request's route (epcs_router_label). */
    unsigned route;
    /*
     * A check's answer waits here until its decisions are safe: in async audit mode until the
     * end of the turn has written them to the worker's journal (`hold_ticket` is the stage's
     * record), in sync mode until the decision log has committed `hold_ticket`; the writer
     * wakes `decisions_committed` after each commit.
     */
    uint64_t hold_ticket;
    h2o_linklist_t held;
    uv_async_t decisions_committed;
    /** Whether other threads may signal its async handles (under a lock in http.c). */
    int wakeable;
    /** Decisions (async mode) not yet handed to the writer; flushed with the access log. */
    struct epcs_decision_stage staged;
    /** Access log lines not yet written; flushed each loop turn before it waits. */
    struct epcs_buf access_log;
    uv_prepare_t access_log_flush;
    /** Ends the turn right after its I/O callbacks too, so held answers leave at once. */
    uv_check_t after_io;
    /* Writes the gathered access lines when no busy turn has (see ACCESS_LOG_DELAY_MS). */
    uv_timer_t access_log_due;
    /** Worker 0 sweeps the case store for requests past due (cases_api.c). */
    uv_timer_t case_sweep;
    int case_sweep_busy;
    /** Set once the loop has stopped: thread-pool writes finishing later answer nobody. */
    int loop_stopped;
    struct epcs_worker_metrics metrics;
};

enum epcs_format { EPCS_FORMAT_JSON, EPCS_FORMAT_MSGPACK };

/** The request's worker. */
static inline struct epcs_worker *epcs_worker_of(h2o_req_t *req)
{
    return (struct epcs_worker *)req->conn->ctx;
}

/**
 * The worker's engine for the active ruleset, rebuilt first when a newer ruleset was
 * published. NULL when no engine could be built (logged); the caller answers 503.
 */
struct epcs_engine *epcs_worker_engine(struct epcs_worker *worker);

/**
 * The API keys the current request was authorised with (NULL with --no-auth): the worker
 * keeps them until its next request, so a key the request holds stays valid however often the
 * keys file is reloaded meanwhile.
 */
struct epcs_keyring *epcs_worker_keyring(struct epcs_worker *worker);

/** epcs_worker_engine for a handler: NULL after answering 503 when there is none. */
struct epcs_engine *epcs_engine_or_503(h2o_req_t *req);

/** The request body's Content-Type: 1 msgpack, 0 JSON, -1 missing or anything else. */
int epcs_request_media(h2o_req_t *req);

/** True when the Accept header lists `type` ("text/calendar"). */
int epcs_accepts(h2o_req_t *req, const char *type);

/** Sends `data` as is with `status` and `content_type`. Returns 0. */
int epcs_response_send_bytes(h2o_req_t *req, int status, const char *content_type, const char *data,
                             size_t len);
/**
 * As epcs_response_send_bytes, without a copy: the request takes `body`'s memory (freed with
 * the request) and leaves `body` empty. For long answers made off the loop. Returns 0.
 */
int epcs_response_send_buf(h2o_req_t *req, int status, const char *content_type,
                           struct epcs_buf *body);

/** The format a response should use: Accept, else the request's Content-Type, else JSON. */
enum epcs_format epcs_response_format(h2o_req_t *req);

/** Resets the worker's body buffer and packer for a new response. */
msgpack_packer *epcs_response_begin(struct epcs_worker *worker);

/**
 * Sends worker->body (a msgpack document) with `status`, converted to JSON when `format` says
 * so. Returns 0 (the handler's return value).
 */
int epcs_response_send(h2o_req_t *req, int status, enum epcs_format format);

/**
 * Sends {error, message, field?} with `status`; `field` may be NULL. Adds `allow` for 405.
 * Returns 0.
 */
int epcs_respond_error(h2o_req_t *req, int status, const char *code, const char *field,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/** The context of a worker's own check path: its plugins, decision ids from the decision log
 * and its stage, zone, facts and scratch buffer. Valid on the worker's thread while the worker
 * lives. */
struct epcs_check_ctx epcs_worker_check_ctx(struct epcs_worker *worker);

/** The HTTP status of a check's failure: the one table that maps failure kinds to statuses. */
int epcs_check_failure_status(enum epcs_check_failure failure);

/**
 * Answers a failed check: its status from epcs_check_failure_status, its body from
 * epcs_check_error_pack (a rule's own failure with its area, file and line). Returns 0.
 */
int epcs_respond_check_error(h2o_req_t *req, const struct epcs_check_error *err);

/*
 * The route groups, each its file's rows (router.h), registered by epcs_server_run: the checks
 * (check_routes.c), the probes and metrics (metrics.c), what the rules and elections are
 * (api.c), the decision log and the keys (admin.c; epcs_no_key_routes under --no-auth) and the
 * cases (cases_api.c).
 */
extern const struct epcs_route_group epcs_check_routes;
extern const struct epcs_route_group epcs_health_routes;
extern const struct epcs_route_group epcs_meta_routes;
extern const struct epcs_route_group epcs_key_routes;
extern const struct epcs_route_group epcs_no_key_routes;
extern const struct epcs_route_group epcs_decision_routes;
extern const struct epcs_route_group epcs_case_routes;
/** GET /healthz (api.c), a row of epcs_health_routes. Returns 0 after answering. */
int epcs_handle_healthz(h2o_req_t *req, h2o_iovec_t param);
/**
 * For a store thread: the checks of the `limit` latest decisions of `log`, oldest first, each
 * with the date it was decided for, as an array allocated in `zone`, read on a connection of
 * the log's reader pool. Returns 0, or -1 with `err` filled (EPCS_DECISION_LOG_UNREACHABLE).
 */
int epcs_recent_checks(struct epcs_decision_log *log, size_t limit, msgpack_zone *zone,
                       msgpack_object *checks, char *err, size_t err_size);
/** Sets up the worker's case sweep timer (started on worker 0 only). */
void epcs_cases_worker_init(struct epcs_worker *worker);

/**
 * Checks the body's size against `limit` and its media type, without decoding it (for a route
 * that decodes it off the loop). Returns 1 for msgpack, 0 for JSON, or answers 400 (no body),
 * 413 or 415 and returns -1.
 */
int epcs_body_media(h2o_req_t *req, size_t limit);

/**
 * Checks the body's size against `limit` and its media type, and decodes it into the worker's
 * zone. Returns 0, or answers 400, 413 or 415 and returns -1. `is_msgpack` may be NULL.
 */
int epcs_read_body(h2o_req_t *req, size_t limit, msgpack_object *body, int *is_msgpack);

/**
 * Charges `cost` more requests to the current key's rate limit. Returns 0, or answers 429 and
 * returns -1.
 */
int epcs_rate_charge(h2o_req_t *req, double cost);
/**
 * Reads the keys again if the key store says they changed (or `force`) and publishes them.
 * Any thread but an event loop's: the read may wait on a file or the database.
 */
int epcs_server_reload_keys(struct epcs_server *server, int force);

/**
 * Publishes the keys of `server->key_store` and starts following it; with PostgreSQL, joins
 * the replicas and starts sharing rate usage with them. 0, or -1 (logged). Before the workers
 * start.
 */
int epcs_server_open_keys(struct epcs_server *server);

/** Stops what epcs_server_open_keys started. After the workers stop; accepts --no-auth. */
void epcs_server_close_keys(struct epcs_server *server);

/**
 * Starts the thread that shares the keys' rate usage with the other replicas every
 * EPCS_RATE_SHARE_MS (rate_share.c), when the key store shares usage; joins the replicas
 * first. 0, or -1 (logged).
 */
int epcs_rate_share_start(struct epcs_server *server);

/** Stops the sharing thread and marks this replica stopped. Accepts a server without one. */
void epcs_rate_share_stop(struct epcs_server *server);

#define EPCS_RATE_SHARE_MS 100
/** Counts a verdict for /metrics: `area_index` -1 when every matching area answered. */
void epcs_metrics_count_verdict(struct epcs_worker *worker, int area_index,
                                enum epcs_verdict_kind verdict);

/** What a reload did: activated, unchanged or refused (with where the rules failed). */
struct epcs_reload_outcome {
    const char *status;
    char previous[24];
    char ruleset[24];
    double milliseconds;
    struct epcs_rule_error error;
};

/**
 * Loads --rules again, runs their tests, stores them, records the activation (`by` whom,
 * `why`) and publishes them; one reload at a time. Callable from any thread (signals, the
 * directory watch, the admin route).
 */
void epcs_server_reload(struct epcs_server *server, const char *by, const char *why,
                        struct epcs_reload_outcome *outcome);

/** What an activation by id did (epcs_server_activate). */
enum epcs_activation_status {
    EPCS_ACTIVATION_DONE,
    /** The version asked for is the one served, at the epoch given: nothing recorded. */
    EPCS_ACTIVATION_UNCHANGED,
    /** The epoch moved on since the caller looked: nothing recorded (409). */
    EPCS_ACTIVATION_STALE,
    /** No stored version has that id (404). */
    EPCS_ACTIVATION_UNKNOWN,
    /** The stored version does not load or its tests fail here (422). */
    EPCS_ACTIVATION_REFUSED,
    /** The rule store cannot be read or written now (503). */
    EPCS_ACTIVATION_STORE_FAILED,
};

struct epcs_activation_outcome {
    enum epcs_activation_status status;
    char previous[24];
    /** The epoch after the activation, or the current one when stale. */
    uint64_t epoch;
    /** The active version when stale. */
    char active[24];
    char message[600];
};

/**
 * Makes stored version `id` the active ruleset of every replica: restores it, compiles it,
 * runs its tests, and records the activation on the rule store only if the epoch is still
 * `expected_epoch` (compare-and-set: two staff members deciding on the same view cannot both
 * win), then serves it. Any thread; one reload or activation at a time.
 */
void epcs_server_activate(struct epcs_server *server, const char *id, uint64_t expected_epoch,
                          const char *by, struct epcs_activation_outcome *outcome);

/**
 * Stored version `id`, restored under <data>/rulesets/following, compiled and its tests run.
 * The files are those the store holds for `id`, so the ruleset must come out as `id` again.
 * NULL with `message` filled and `failure` saying whether the version is unknown, the store
 * failed, or the version is refused here.
 */
struct epcs_ruleset *epcs_server_load_stored(struct epcs_server *server, const char *id,
                                             enum epcs_activation_status *failure, char *message,
                                             size_t message_size);

/**
 * The rule store's follower (epcs_rule_store_follow): when the store's active ruleset is not
 * the one served, restores, compiles and tests it and switches, or marks the replica behind.
 * Runs on the store's thread.
 */
void epcs_server_cb_rules_activated(void *ctx);

/** Whether this replica serves the store's active ruleset; `reason` when it cannot. */
int epcs_server_rules_behind(struct epcs_server *server, char *reason, size_t reason_size);

/** Whether this replica is ready to serve (/readyz), and what says so. */
struct epcs_readiness {
    int ready;
    /** The decision log's state: off, sync, async, failed, stalled or full. */
    const char *log_state;
    size_t queued;
    /** This replica cannot serve the ruleset the cluster activated. */
    int behind;
    /** The store's database cannot be reached. */
    int store_down;
    /** Why it is not ready ("" when it is). */
    char reason[600];
};

/**
 * Fills `readiness` for this replica; `has_engine` says whether the caller's worker has a rule
 * engine to decide with. Any thread.
 */
void epcs_server_readiness(struct epcs_server *server, int has_engine,
                           struct epcs_readiness *readiness);

/**
 * Marks this replica alive in the registry now and then every EPCS_REPLICA_BEAT_MS, on a
 * thread of its own, with the ruleset it serves and its readiness (beat.c). 0, or -1 (logged).
 */
int epcs_beat_start(struct epcs_server *server);
/** Stops the beat (waits for one under way). Accepts a server whose beat never started. */
void epcs_beat_stop(struct epcs_server *server);

/** What the rules directory's latest load said, for /v1/rules and /readyz. */
struct epcs_rules_state {
    /** The directory's latest version was refused; `error` says where and why. */
    int refused;
    /** The ruleset served is the last stored one: the directory failed at start. */
    int fallback;
    struct epcs_rule_error error;
    time_t refused_at;
};
void epcs_server_rules_state(struct epcs_server *server, struct epcs_rules_state *state);

/** Starts the workers and blocks until SIGTERM/SIGINT has drained them. Returns exit status. */
int epcs_server_run(struct epcs_server *server);

/**
 * Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it starts), which
 * `signals` is filled with for sigwait, and ignores SIGPIPE and SIGXFSZ. epcs_server_run does
 * it; a caller that starts the server does it first so that a stop asked during the start
 * waits for the server instead of ending the process. Idempotent.
 */
void epcs_server_hold_signals(sigset_t *signals);

/*
 * The worker's machinery, for server.c to wire into each worker's loop: the callbacks that end
 * a loop's turn (respond.c), take a new ruleset (reload.c) and release held answers, the
 * request's authorisation (authorize.c), and the wake-ups other threads send (wake.c).
 */

/** Checks the request's key against `needed` and charges its rate bucket: 0 to go on, or -1
 * after answering 401, 403 or 429. Sets the worker's key and partner for the request. */
int epcs_authorize(h2o_req_t *req, struct epcs_worker *worker, enum epcs_role needed);
/** The connection guard's question (`ctx` is the worker): may a request with this
 * Authorization value have its body buffered? Only one with a known key, or any under
 * --no-auth. */
int epcs_authorize_body(void *ctx, const char *value, size_t len);

/** Writes the worker's gathered access lines and empties the buffer. */
void epcs_worker_flush_access_log(struct epcs_worker *worker);
/** The end of a loop's turn, before it polls (prepare) and after its I/O (check): the turn's
 * decisions go to the journal, held answers that are safe go out, access lines are written. */
void epcs_worker_cb_end_of_turn(uv_prepare_t *prepare);
void epcs_worker_cb_after_io(uv_check_t *check);
/** The decision log committed (sync mode): answers held for it go out. */
void epcs_worker_cb_decisions_committed(uv_async_t *async);
/** A new ruleset was published: the worker builds its engine now rather than at its next
 * request. */
void epcs_worker_cb_ruleset_changed(uv_async_t *async);
/** The rules directory changed (the watch's callback; `ctx` is the server): reload. */
void epcs_server_cb_rules_changed(void *ctx);

/** The decision log's commit callback (`ctx` is the server): wakes every wakeable worker. */
void epcs_workers_wake_committed(void *ctx);
/** Wakes every wakeable worker to take the newly published ruleset. */
void epcs_workers_wake_rulesets(struct epcs_server *server);
/** Whether other threads may signal the worker's async handles; 0 before they close. */
void epcs_worker_set_wakeable(struct epcs_worker *worker, int wakeable);
/** Frees the workers (disposed already) so that the writer's callback no longer sees them. */
void epcs_workers_forget(struct epcs_server *server);

#endif
