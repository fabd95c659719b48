/* The active ruleset and keys, swapped while the server runs: a reload (signal, directory
 * watch, staff route) compiles, tests and stores the candidate first, and the workers take
 * the new engine at their next request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "http.h"
#include "log.h"
#include "rule_store.h"
#include "rule_tests.h"

/* ---- rulesets ----------------------------------------------------------------------------- */

struct epcs_engine *epcs_worker_engine(struct epcs_worker *worker)
{
    struct epcs_server *server = worker->server;
    struct epcs_ruleset *active =
        atomic_load_explicit(&server->active_ruleset, memory_order_acquire);
    if (worker->engine != NULL && epcs_engine_ruleset(worker->engine) == active)
        return worker->engine;
    pthread_mutex_lock(&server->ruleset_lock);
    active = atomic_load(&server->active_ruleset);
    epcs_ruleset_retain(active);
    pthread_mutex_unlock(&server->ruleset_lock);
    struct epcs_rule_error err;
    struct epcs_engine *engine = epcs_engine_create(active, &err);
    if (engine == NULL) {
        /* The ruleset compiled once already, so this is memory pressure: keep serving. */
        epcs_log(EPCS_LOG_ERROR, "rules", "worker %d cannot switch to %s: %s", worker->index,
                 active->id, err.message);
    } else {
        epcs_engine_destroy(worker->engine);
        worker->engine = engine;
        epcs_log(EPCS_LOG_DEBUG, "rules", "worker %d now runs %s", worker->index, active->id);
    }
    epcs_ruleset_release(active);
    return worker->engine;
}

struct epcs_engine *epcs_engine_or_503(h2o_req_t *req)
{
    struct epcs_engine *engine = epcs_worker_engine(epcs_worker_of(req));
    if (engine == NULL)
        epcs_respond_error(req, 503, "not_ready", NULL, "no rule engine is available");
    return engine;
}

static void publish_ruleset(struct epcs_server *server, struct epcs_ruleset *ruleset)
{
    pthread_mutex_lock(&server->ruleset_lock);
    struct epcs_ruleset *old = atomic_load(&server->active_ruleset);
    atomic_store_explicit(&server->active_ruleset, ruleset, memory_order_release);
    pthread_mutex_unlock(&server->ruleset_lock);
    epcs_ruleset_release(old);
    /* Busy workers switch at their next request anyway; this reaches the idle ones. A worker
     * that has stopped (its loop closed while another still drains) is left alone: its async
     * handle is gone. */
    epcs_workers_wake_rulesets(server);
}

void epcs_worker_cb_ruleset_changed(uv_async_t *async)
{
    epcs_worker_engine(async->data);
}

/* SIGHUP and the directory watch may ask at once; one reload at a time keeps the log honest. */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* What /v1/rules and /readyz say about the rules directory: its latest refusal stays visible
 * until a reload of it works. */
static void set_refusal(struct epcs_server *server, const struct epcs_rule_error *err)
{
    pthread_mutex_lock(&server->rules_state_lock);
    server->rules_refused = err != NULL;
    if (err != NULL) {
        server->rules_refusal = *err;
        server->rules_refused_at = time(NULL);
    } else {
        server->rules_fallback = 0;
    }
    pthread_mutex_unlock(&server->rules_state_lock);
}

void epcs_server_rules_state(struct epcs_server *server, struct epcs_rules_state *state)
{
    pthread_mutex_lock(&server->rules_state_lock);
    state->refused = server->rules_refused;
    state->fallback = server->rules_fallback;
    state->error = server->rules_refusal;
    state->refused_at = server->rules_refused_at;
    pthread_mutex_unlock(&server->rules_state_lock);
}

static void refuse(struct epcs_server *server, struct epcs_reload_outcome *outcome,
                   const struct epcs_rule_error *err)
{
    atomic_fetch_add(&server->reloads_refused, 1);
    set_refusal(server, err);
    outcome->status = "refused";
    outcome->error = *err;
    epcs_log(EPCS_LOG_ERROR, "rules", "reload refused, the running ruleset stays: %s",
             err->message);
}

static void reload_rules_locked(struct epcs_server *server, const char *by, const char *why,
                                struct epcs_reload_outcome *outcome)
{
    int64_t started = epcs_clock_ns(CLOCK_MONOTONIC);
    struct epcs_rule_error err = {.line = 0};
    memset(outcome, 0, sizeof(*outcome));
    snprintf(outcome->previous, sizeof(outcome->previous), "%s",
             atomic_load(&server->active_ruleset)->id);
    struct epcs_ruleset *ruleset =
        epcs_ruleset_load(server->config.rules_dir, server->plugins, &server->config.lua, &err);
    if (ruleset == NULL) {
        refuse(server, outcome, &err);
        return;
    }
    snprintf(outcome->ruleset, sizeof(outcome->ruleset), "%s", ruleset->id);
    char failure[400] = "";
    if (epcs_rule_tests_verify(ruleset, failure, sizeof(failure)) != 0) {
        snprintf(err.message, sizeof(err.message), "the rule tests of %s fail: %s", ruleset->id,
                 failure);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    if (epcs_rule_store_save(server->rule_store, ruleset) != 0) {
        snprintf(err.message, sizeof(err.message), "%s cannot be stored under %s", ruleset->id,
                 server->config.data_dir);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    if (strcmp(ruleset->id, outcome->previous) == 0) {
        atomic_fetch_add(&server->reloads_unchanged, 1);
        set_refusal(server, NULL);
        outcome->status = "unchanged";
        epcs_log(EPCS_LOG_INFO, "rules", "%s unchanged (%s)", server->config.rules_dir,
                 ruleset->id);
        epcs_ruleset_release(ruleset);
        return;
    }
    /* No switch the history does not tell. */
    if (epcs_rule_store_record_activation(server->rule_store, outcome->previous, ruleset->id, by,
                                          why) != 0) {
        snprintf(err.message, sizeof(err.message),
                 "the activation of %s cannot be recorded under %s", ruleset->id,
                 server->config.data_dir);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    set_refusal(server, NULL);
    publish_ruleset(server, ruleset);
    int64_t finished = epcs_clock_ns(CLOCK_MONOTONIC);
    atomic_fetch_add(&server->reloads_activated, 1);
    outcome->status = "activated";
    outcome->milliseconds = (double)(finished - started) / 1e6;
    epcs_log(EPCS_LOG_INFO, "rules", "reloaded %s as %s in %.1f ms (compile, tests, store)",
             server->config.rules_dir, outcome->ruleset, outcome->milliseconds);
}

void epcs_server_reload(struct epcs_server *server, const char *by, const char *why,
                        struct epcs_reload_outcome *outcome)
{
    pthread_mutex_lock(&reload_lock);
    reload_rules_locked(server, by, why, outcome);
    pthread_mutex_unlock(&reload_lock);
}

static pthread_mutex_t keys_reload_lock = PTHREAD_MUTEX_INITIALIZER;

int epcs_server_reload_keys(struct epcs_server *server, int force)
{
    if (server->config.no_auth)
        return 0;
    pthread_mutex_lock(&keys_reload_lock);
    struct epcs_keyring *current = atomic_load(&server->keyring);
    int rc = 0;
    if (force || epcs_keyring_stale(current, server->keys_path)) {
        char err[512];
        struct epcs_keyring *fresh = epcs_keyring_load(server->keys_path, err, sizeof(err));
        if (fresh == NULL) {
            epcs_log(EPCS_LOG_ERROR, "keys", "keys file not reloaded, the previous keys stay: %s",
                     err);
            rc = -1;
        } else {
            epcs_keyring_inherit_buckets(fresh, current);
            pthread_mutex_lock(&server->keyring_lock);
            atomic_store_explicit(&server->keyring, fresh, memory_order_release);
            pthread_mutex_unlock(&server->keyring_lock);
            epcs_keyring_release(current);
            epcs_log(EPCS_LOG_INFO, "keys", "%zu API key(s) from %s", fresh->count,
                     server->keys_path);
        }
    }
    pthread_mutex_unlock(&keys_reload_lock);
    return rc;
}

void epcs_server_cb_rules_changed(void *ctx)
{
    struct epcs_server *server = ctx;
    struct epcs_reload_outcome outcome;
    epcs_server_reload(server, "directory watch", "the files of the rules directory changed",
                       &outcome);
}
