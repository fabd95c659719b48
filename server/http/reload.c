/* The active ruleset and keys, swapped while the server runs: a reload (signal, directory
 * watch, staff route) compiles, tests and stores the candidate first, and the workers take
 * the new engine at their next request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "files.h"
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
    struct epcs_server *server = epcs_worker_of(req)->server;
    char reason[600];
    /* Deciding by rules the cluster has left would answer differently from the other
     * replicas; the client's retry through the proxy reaches one that serves them. */
    if (epcs_server_rules_behind(server, reason, sizeof(reason))) {
        epcs_respond_error(req, 503, "not_ready", NULL, "%s", reason);
        return NULL;
    }
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

/* SIGHUP, the directory watch, staff and the rule store's follower may ask at once; one
 * switch at a time keeps the history honest. */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* The epoch served now, and the replica no longer behind. */
static void set_serving(struct epcs_server *server, uint64_t epoch)
{
    atomic_store(&server->rules_epoch, epoch);
    pthread_mutex_lock(&server->rules_state_lock);
    server->rules_behind = 0;
    pthread_mutex_unlock(&server->rules_state_lock);
}

int epcs_server_rules_behind(struct epcs_server *server, char *reason, size_t reason_size)
{
    pthread_mutex_lock(&server->rules_state_lock);
    int behind = server->rules_behind;
    if (behind)
        snprintf(reason, reason_size, "%s", server->rules_behind_reason);
    pthread_mutex_unlock(&server->rules_state_lock);
    return behind;
}

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
    /* No switch the history does not tell. Another replica that read the same directory may
     * have recorded this very version already: it is then only taken up here. */
    char active[24] = "";
    uint64_t epoch = 0;
    const struct epcs_rule_activation activation = {.from = outcome->previous,
                                                    .to = ruleset->id,
                                                    .by = by,
                                                    .why = why,
                                                    .expected_epoch = EPCS_RULE_EPOCH_ANY};
    int adopted = epcs_rule_store_active(server->rule_store, active, &epoch) == 0 &&
                  strcmp(active, ruleset->id) == 0;
    if (!adopted && epcs_rule_store_activate(server->rule_store, &activation, &epoch) != 0) {
        snprintf(err.message, sizeof(err.message),
                 "the activation of %s cannot be recorded under %s", ruleset->id,
                 server->config.data_dir);
        epcs_ruleset_release(ruleset);
        refuse(server, outcome, &err);
        return;
    }
    set_refusal(server, NULL);
    publish_ruleset(server, ruleset);
    set_serving(server, epoch);
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

/* ---- activations by id, and other replicas' ---------------------------------------------- */

struct epcs_ruleset *epcs_server_load_stored(struct epcs_server *server, const char *id,
                                             enum epcs_activation_status *failure, char *message,
                                             size_t message_size)
{
    char dir[4200];
    struct epcs_buf manifest = {0};
    int found = epcs_rule_store_manifest(server->rule_store, id, &manifest);
    epcs_buf_free(&manifest);
    if (found != 0) {
        *failure = found == 1 ? EPCS_ACTIVATION_UNKNOWN : EPCS_ACTIVATION_STORE_FAILED;
        snprintf(message, message_size,
                 found == 1 ? "no stored ruleset %s" : "the rule store cannot be read for %s", id);
        return NULL;
    }
    *failure = EPCS_ACTIVATION_STORE_FAILED;
    /* With the rule store in PostgreSQL nothing else makes <data>/rulesets. */
    snprintf(dir, sizeof(dir), "%s/rulesets", server->config.data_dir);
    epcs_file_make_dir(dir);
    snprintf(dir, sizeof(dir), "%s/rulesets/following", server->config.data_dir);
    if (epcs_rule_store_restore(server->rule_store, id, dir) != 0) {
        snprintf(message, message_size, "stored ruleset %s cannot be restored into %.300s", id,
                 dir);
        return NULL;
    }
    struct epcs_rule_error err = {.line = 0};
    struct epcs_ruleset *ruleset =
        epcs_ruleset_load(dir, server->plugins, &server->config.lua, &err);
    char failure_text[400] = "";
    *failure = EPCS_ACTIVATION_REFUSED;
    if (ruleset == NULL) {
        snprintf(message, message_size, "stored ruleset %s does not load here: %.100s%s%.300s", id,
                 err.file, err.file[0] != '\0' ? ": " : "", err.message);
    } else if (strcmp(ruleset->id, id) != 0) {
        snprintf(message, message_size, "stored ruleset %s loads here as %s", id, ruleset->id);
    } else if (epcs_rule_tests_verify(ruleset, failure_text, sizeof(failure_text)) != 0) {
        snprintf(message, message_size, "the rule tests of %s fail here: %s", id, failure_text);
    } else {
        return ruleset;
    }
    epcs_ruleset_release(ruleset);
    return NULL;
}

static void activate_locked(struct epcs_server *server, const char *id, uint64_t expected_epoch,
                            const char *by, struct epcs_activation_outcome *outcome)
{
    snprintf(outcome->previous, sizeof(outcome->previous), "%s",
             atomic_load(&server->active_ruleset)->id);
    /* The store's view, not this replica's: another may have activated since. */
    int active = epcs_rule_store_active(server->rule_store, outcome->active, &outcome->epoch);
    if (active < 0) {
        outcome->status = EPCS_ACTIVATION_STORE_FAILED;
        snprintf(outcome->message, sizeof(outcome->message),
                 "the rule store cannot be read for the active ruleset");
        return;
    }
    if (active == 1)
        snprintf(outcome->active, sizeof(outcome->active), "none");
    if (expected_epoch != outcome->epoch) {
        outcome->status = EPCS_ACTIVATION_STALE;
        return;
    }
    if (strcmp(id, outcome->active) == 0 && strcmp(id, outcome->previous) == 0) {
        outcome->status = EPCS_ACTIVATION_UNCHANGED;
        return;
    }
    struct epcs_ruleset *ruleset = epcs_server_load_stored(
        server, id, &outcome->status, outcome->message, sizeof(outcome->message));
    if (ruleset == NULL)
        return;
    char why[64];
    snprintf(why, sizeof(why), "activated by id at epoch %llu", (unsigned long long)expected_epoch);
    const struct epcs_rule_activation activation = {.from = outcome->previous,
                                                    .to = id,
                                                    .by = by,
                                                    .why = why,
                                                    .expected_epoch = expected_epoch};
    int rc = epcs_rule_store_activate(server->rule_store, &activation, &outcome->epoch);
    if (rc != 0) {
        epcs_ruleset_release(ruleset);
        /* Another activation came between the look above and the compare-and-set. */
        if (rc == 1 && epcs_rule_store_active(server->rule_store, outcome->active, NULL) != 0)
            snprintf(outcome->active, sizeof(outcome->active), "none");
        outcome->status = rc == 1 ? EPCS_ACTIVATION_STALE : EPCS_ACTIVATION_STORE_FAILED;
        if (rc != 1)
            snprintf(outcome->message, sizeof(outcome->message),
                     "the activation of %s cannot be recorded in the rule store", id);
        return;
    }
    set_refusal(server, NULL);
    publish_ruleset(server, ruleset);
    set_serving(server, outcome->epoch);
    atomic_fetch_add(&server->reloads_activated, 1);
    outcome->status = EPCS_ACTIVATION_DONE;
    epcs_log(EPCS_LOG_INFO, "rules", "activated %s by id (epoch %llu, by %s)", id,
             (unsigned long long)outcome->epoch, by);
}

void epcs_server_activate(struct epcs_server *server, const char *id, uint64_t expected_epoch,
                          const char *by, struct epcs_activation_outcome *outcome)
{
    memset(outcome, 0, sizeof(*outcome));
    pthread_mutex_lock(&reload_lock);
    activate_locked(server, id, expected_epoch, by, outcome);
    pthread_mutex_unlock(&reload_lock);
}

static void set_behind(struct epcs_server *server, const char *id, uint64_t epoch, int refused,
                       const char *why)
{
    pthread_mutex_lock(&server->rules_state_lock);
    int was = server->rules_behind;
    server->rules_behind = 1;
    server->rules_behind_epoch = refused ? epoch : 0;
    snprintf(server->rules_behind_reason, sizeof(server->rules_behind_reason),
             "this replica cannot serve the active ruleset %s (epoch %llu): %.480s", id,
             (unsigned long long)epoch, why);
    pthread_mutex_unlock(&server->rules_state_lock);
    if (!was)
        epcs_log(EPCS_LOG_ERROR, "rules", "%s", server->rules_behind_reason);
}

static int refused_already(struct epcs_server *server, uint64_t epoch)
{
    pthread_mutex_lock(&server->rules_state_lock);
    int refused = server->rules_behind && server->rules_behind_epoch == epoch;
    pthread_mutex_unlock(&server->rules_state_lock);
    return refused;
}

static void follow_locked(struct epcs_server *server)
{
    char id[24];
    uint64_t epoch;
    /* A store that cannot be read now is read again at the next announcement or poll. */
    int read = epcs_rule_store_active(server->rule_store, id, &epoch);
    int down = read == EPCS_RULE_STORE_UNREACHABLE;
    if (atomic_exchange(&server->store_down, down) != down)
        epcs_log(down ? EPCS_LOG_ERROR : EPCS_LOG_INFO, "store",
                 down ? "the rule store's database cannot be reached: not ready until it can"
                      : "the rule store's database answers again");
    if (read != 0 || epoch == atomic_load(&server->rules_epoch))
        return;
    if (strcmp(id, atomic_load(&server->active_ruleset)->id) == 0) {
        set_serving(server, epoch);
        return;
    }
    int64_t started = epcs_clock_ns(CLOCK_MONOTONIC);
    /* A version refused here stays refused (its files and this epcsd's plugins are what they
     * are); only a store that failed is worth asking again at every poll. */
    if (refused_already(server, epoch))
        return;
    enum epcs_activation_status failure;
    char message[600];
    struct epcs_ruleset *ruleset =
        epcs_server_load_stored(server, id, &failure, message, sizeof(message));
    if (ruleset == NULL) {
        set_behind(server, id, epoch, failure == EPCS_ACTIVATION_REFUSED, message);
        return;
    }
    publish_ruleset(server, ruleset);
    set_serving(server, epoch);
    atomic_fetch_add(&server->reloads_activated, 1);
    epcs_log(EPCS_LOG_INFO, "rules",
             "serving %s, activated elsewhere (epoch %llu), after %.1f ms (restore, compile, "
             "tests)",
             id, (unsigned long long)epoch,
             (double)(epcs_clock_ns(CLOCK_MONOTONIC) - started) / 1e6);
}

void epcs_server_cb_rules_activated(void *ctx)
{
    struct epcs_server *server = ctx;
    pthread_mutex_lock(&reload_lock);
    follow_locked(server);
    pthread_mutex_unlock(&reload_lock);
}

/* ---- keys -------------------------------------------------------------------------------- */

static pthread_mutex_t keys_reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* The key store's keys as a keyring, or NULL with `err`. */
static struct epcs_keyring *load_keyring(struct epcs_server *server, char *err, size_t err_size)
{
    struct epcs_key_record *records;
    size_t count;
    if (epcs_key_store_load(server->key_store, &records, &count, err, err_size) != 0)
        return NULL;
    struct epcs_keyring *keyring = epcs_keyring_create(records, count, err, err_size);
    free(records);
    return keyring;
}

int epcs_server_reload_keys(struct epcs_server *server, int force)
{
    if (server->config.no_auth)
        return 0;
    pthread_mutex_lock(&keys_reload_lock);
    struct epcs_keyring *current = atomic_load(&server->keyring);
    int rc = 0;
    if (force || epcs_key_store_stale(server->key_store)) {
        char err[512];
        struct epcs_keyring *fresh = load_keyring(server, err, sizeof(err));
        if (fresh == NULL) {
            epcs_log(EPCS_LOG_ERROR, "keys", "keys not reloaded, the previous keys stay: %s", err);
            rc = -1;
        } else {
            epcs_keyring_inherit_buckets(fresh, current);
            pthread_mutex_lock(&server->keyring_lock);
            atomic_store_explicit(&server->keyring, fresh, memory_order_release);
            pthread_mutex_unlock(&server->keyring_lock);
            epcs_keyring_release(current);
            epcs_log(EPCS_LOG_INFO, "keys", "%zu API key(s) from %s", fresh->count,
                     epcs_key_store_where(server->key_store));
        }
    }
    pthread_mutex_unlock(&keys_reload_lock);
    return rc;
}

/* On the key store's thread: another replica (or `epcsd keys`) changed the keys. */
static void cb_keys_changed(void *ctx)
{
    epcs_server_reload_keys(ctx, 0);
}

int epcs_server_open_keys(struct epcs_server *server)
{
    char err[512];
    atomic_init(&server->rate_divisor, 1);
    struct epcs_keyring *keyring = load_keyring(server, err, sizeof(err));
    if (keyring == NULL) {
        epcs_log(EPCS_LOG_ERROR, "keys", "%s", err);
        return -1;
    }
    atomic_store(&server->keyring, keyring);
    epcs_log(keyring->count > 0 ? EPCS_LOG_INFO : EPCS_LOG_WARN, "keys", "%zu API key(s) from %s%s",
             keyring->count, epcs_key_store_where(server->key_store),
             keyring->count > 0 ? ""
                                : ": every request but /healthz and /readyz gets 401 "
                                  "until `epcsd keys create` adds one");
    if (epcs_key_store_follow(server->key_store, cb_keys_changed, server) != 0) {
        epcs_log(EPCS_LOG_ERROR, "keys", "cannot follow the changes of the keys in %s",
                 epcs_key_store_where(server->key_store));
        return -1;
    }
    return epcs_rate_share_start(server);
}

void epcs_server_close_keys(struct epcs_server *server)
{
    if (server->key_store == NULL)
        return;
    epcs_rate_share_stop(server);
    epcs_key_store_unfollow(server->key_store);
}

void epcs_server_cb_rules_changed(void *ctx)
{
    struct epcs_server *server = ctx;
    struct epcs_reload_outcome outcome;
    epcs_server_reload(server, "directory watch", "the files of the rules directory changed",
                       &outcome);
}
