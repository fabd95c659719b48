/* epcsd: the election-period compliance server. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "impact.h"
#include "key_store.h"
#include "keys_command.h"
#include "log.h"
#include "rule_store.h"
#include "store.h"
#include "rule_tests.h"
#include "flags.h"
#include "http.h"

static int make_data_dir(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return -1;
    for (char *slash = path + 1; *slash; slash++) {
        if (*slash != '/')
            continue;
        *slash = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return -1;
        *slash = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* --test-rules: what commission staff run on an amended copy of the rules before deploying. */
static int test_rules(const struct epcs_config *config, const struct epcs_plugin_set *plugins)
{
    struct epcs_rule_error err;
    struct epcs_ruleset *ruleset =
        epcs_ruleset_load(config->test_rules_dir, plugins, &config->lua, &err);
    if (ruleset == NULL) {
        fprintf(stderr, "epcsd: %s does not load: %s\n", config->test_rules_dir, err.message);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    struct epcs_rule_test_summary summary;
    int rc = epcs_rule_tests_run(ruleset, stdout, &summary);
    printf("ruleset %s: %zu passed, %zu failed\n", ruleset->id, summary.passed, summary.failed);
    epcs_ruleset_release(ruleset);
    return rc == 0 ? 0 : 1;
}

/* The impact report as JSON on stdout: 0, or 1 with the reason on stderr. */
static int print_impact(const struct epcs_plugin_set *plugins, struct epcs_ruleset *active,
                        struct epcs_ruleset *candidate, const msgpack_object *checks)
{
    struct epcs_buf report = {0}, json = {0};
    char err[512];
    msgpack_zone zone;
    msgpack_object document;
    size_t offset = 0;
    int status = 1;
    if (!msgpack_zone_init(&zone, 4096)) {
        fprintf(stderr, "epcsd: out of memory\n");
        return 1;
    }
    if (epcs_impact_run(plugins, active, candidate, checks, &report, err, sizeof(err)) != 0)
        fprintf(stderr, "epcsd: %s\n", err);
    else if (msgpack_unpack(report.data, report.len, &offset, &zone, &document) !=
                 MSGPACK_UNPACK_SUCCESS ||
             epcs_json_encode(&document, &json) != 0)
        fprintf(stderr, "epcsd: the impact report could not be encoded\n");
    else
        status = printf("%.*s\n", (int)json.len, json.data) < 0 ? 1 : 0;
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&report);
    epcs_buf_free(&json);
    return status;
}

/* --impact: every answer an amendment would change, on a supplied list of checks. */
static int impact(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    struct epcs_rule_error err;
    struct epcs_buf text = {0};
    FILE *file = fopen(config->impact_checks, "rb");
    char chunk[8192];
    size_t got;
    while (file != NULL && (got = fread(chunk, 1, sizeof(chunk), file)) > 0)
        epcs_buf_append(&text, chunk, got);
    if (file == NULL) {
        fprintf(stderr, "epcsd: --checks %s: %s\n", config->impact_checks, strerror(errno));
        return 1;
    }
    fclose(file);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object body;
    struct epcs_decode_error decode_error;
    /* JSON starts with '{'; msgpack maps with a byte of 0x80 and above. */
    int decoded = text.len > 0 && (unsigned char)text.data[0] >= 0x80
                      ? epcs_msgpack_decode(text.data, text.len, &zone, &body, &decode_error)
                      : epcs_json_decode(text.data, text.len, &zone, &body, &decode_error);
    const msgpack_object *checks = decoded == 0 ? epcs_map_get(&body, "checks") : NULL;
    int status = 1;
    struct epcs_ruleset *active = NULL, *candidate = NULL;
    if (decoded != 0) {
        fprintf(stderr, "epcsd: --checks %s: %s\n", config->impact_checks, decode_error.message);
    } else if (checks == NULL || checks->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "epcsd: --checks %s must hold {\"checks\": [...]}\n",
                config->impact_checks);
    } else if ((active = epcs_ruleset_load(config->rules_dir, server->plugins, &config->lua,
                                           &err)) == NULL ||
               (candidate = epcs_ruleset_load(config->impact_dir, server->plugins, &config->lua,
                                              &err)) == NULL) {
        fprintf(stderr, "epcsd: %s does not load: %s\n",
                active == NULL ? config->rules_dir : config->impact_dir, err.message);
    } else {
        status = print_impact(server->plugins, active, candidate, checks);
    }
    epcs_ruleset_release(active);
    epcs_ruleset_release(candidate);
    msgpack_zone_destroy(&zone);
    epcs_buf_free(&text);
    return status;
}

/* A ruleset that loads, passes its own tests and is stored; NULL with `err` filled. */
static struct epcs_ruleset *load_verified(const struct epcs_server *server, const char *dir,
                                          struct epcs_rule_error *err)
{
    const struct epcs_config *config = &server->config;
    struct epcs_ruleset *ruleset = epcs_ruleset_load(dir, server->plugins, &config->lua, err);
    if (ruleset == NULL)
        return NULL;
    epcs_log(EPCS_LOG_INFO, "rules", "loaded %s as %s: %zu elections, %zu rule files", dir,
             ruleset->id, ruleset->election_count, ruleset->file_count);
    char failure[400] = "";
    if (epcs_rule_tests_verify(ruleset, failure, sizeof(failure)) != 0) {
        snprintf(err->file, sizeof(err->file), "%s", "");
        err->line = 0;
        snprintf(err->message, sizeof(err->message), "the rule tests of %s fail: %s", ruleset->id,
                 failure);
    } else if (epcs_rule_store_save(server->rule_store, ruleset) != 0) {
        snprintf(err->file, sizeof(err->file), "%s", "");
        err->line = 0;
        snprintf(err->message, sizeof(err->message), "%s cannot be stored under %s", ruleset->id,
                 config->data_dir);
    } else {
        return ruleset;
    }
    epcs_ruleset_release(ruleset);
    return NULL;
}

/*
 * A replica joining a cluster serves the cluster's active ruleset, not whatever its own rules
 * directory holds: an older directory must not roll every replica back by starting. The
 * directory is taken up (for the whole cluster) when it changes while epcsd runs.
 */
static struct epcs_ruleset *join_cluster_ruleset(struct epcs_server *server, const char *id,
                                                 uint64_t epoch)
{
    enum epcs_activation_status failure;
    char message[600];
    struct epcs_ruleset *ruleset =
        epcs_server_load_stored(server, id, &failure, message, sizeof(message));
    if (ruleset == NULL) {
        epcs_log(EPCS_LOG_ERROR, "rules",
                 "refusing to start: the cluster's active ruleset %s (epoch %llu) cannot be "
                 "served here: %s",
                 id, (unsigned long long)epoch, message);
        return NULL;
    }
    atomic_init(&server->rules_epoch, epoch);
    epcs_log(EPCS_LOG_INFO, "rules",
             "serving the cluster's active ruleset %s (epoch %llu); a change to %s while epcsd "
             "runs activates it for every replica",
             id, (unsigned long long)epoch, server->config.rules_dir);
    return ruleset;
}

/*
 * The ruleset to start with: the rules directory's, or, when it is refused (an amendment left
 * there that fails, say), the last one the history activated, from the rule store, so that a
 * restart (or a container's restart policy) does not turn one bad edit into an outage. The
 * refusal stays visible in /v1/rules and /readyz until the directory loads again.
 */
static struct epcs_ruleset *start_ruleset(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    struct epcs_rule_error err = {.line = 0};
    char last[24] = "", why[600];
    uint64_t epoch = 0;
    int known = epcs_rule_store_active(server->rule_store, last, &epoch) == 0;
    pthread_mutex_init(&server->rules_state_lock, NULL);
    if (known && epcs_config_store_uri(config) != NULL)
        return join_cluster_ruleset(server, last, epoch);
    struct epcs_ruleset *ruleset = load_verified(server, config->rules_dir, &err);
    if (ruleset != NULL) {
        snprintf(why, sizeof(why), "started with %s", config->rules_dir);
        const struct epcs_rule_activation activation = {.from = known ? last : NULL,
                                                        .to = ruleset->id,
                                                        .by = "start",
                                                        .why = why,
                                                        .expected_epoch = EPCS_RULE_EPOCH_ANY};
        /* A restart with the rules it stopped with adds nothing to the history. */
        if ((!known || strcmp(last, ruleset->id) != 0) &&
            epcs_rule_store_activate(server->rule_store, &activation, &epoch) != 0) {
            epcs_ruleset_release(ruleset);
            return NULL;
        }
        atomic_init(&server->rules_epoch, epoch);
        return ruleset;
    }
    if (!known) {
        epcs_log(EPCS_LOG_ERROR, "rules",
                 "refusing to start: %s fails (%s) and no ruleset was "
                 "ever activated under %s to fall back on",
                 config->rules_dir, err.message, config->data_dir);
        return NULL;
    }
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/rulesets/serving", config->data_dir);
    struct epcs_rule_error fallback_err = {.line = 0};
    struct epcs_ruleset *fallback = epcs_rule_store_restore(server->rule_store, last, dir) == 0
                                        ? load_verified(server, dir, &fallback_err)
                                        : NULL;
    if (fallback == NULL || strcmp(fallback->id, last) != 0) {
        epcs_log(EPCS_LOG_ERROR, "rules",
                 "refusing to start: %s fails (%s), and the last activated ruleset %s cannot be "
                 "restored from %s",
                 config->rules_dir, err.message, last, config->data_dir);
        epcs_ruleset_release(fallback);
        return NULL;
    }
    epcs_log(EPCS_LOG_ERROR, "rules",
             "%s is refused (%s); serving the last activated ruleset %s from the rule store until "
             "the directory loads",
             config->rules_dir, err.message, last);
    server->rules_refused = 1;
    server->rules_fallback = 1;
    server->rules_refusal = err;
    server->rules_refused_at = time(NULL);
    atomic_init(&server->rules_epoch, epoch);
    return fallback;
}

/* --restore-rules: the stored version into the rules directory, on a handle of its own. */
static int restore_rules(const struct epcs_config *config)
{
    char err[300];
    epcs_store_set_timeout(config->store_timeout_ms);
    struct epcs_rule_store *store =
        epcs_rule_store_open(epcs_config_store_uri(config), config->data_dir, err, sizeof(err));
    if (store == NULL) {
        fprintf(stderr, "epcsd: %s\n", err);
        return 1;
    }
    int status =
        epcs_rule_store_restore(store, config->restore_rules, config->rules_dir) == 0 ? 0 : 1;
    if (status == 0)
        printf("restored %s into %s\n", config->restore_rules, config->rules_dir);
    epcs_rule_store_close(store);
    return status;
}

/* The keys file (--keys, default <data>/keys), or the --store URI's tables; none for --no-auth. */
static int open_key_store(struct epcs_server *server)
{
    const struct epcs_config *config = &server->config;
    const char *uri = epcs_config_store_uri(config);
    char path[4096], err[512];
    if (config->no_auth)
        return 0;
    if (uri != NULL && config->keys_file != NULL) {
        epcs_log(EPCS_LOG_ERROR, "keys",
                 "--keys %s names a keys file, but with --store postgresql://... the keys are "
                 "in PostgreSQL (epcsd keys ... --store URI): drop --keys",
                 config->keys_file);
        return -1;
    }
    if (config->keys_file != NULL)
        snprintf(path, sizeof(path), "%s", config->keys_file);
    else
        snprintf(path, sizeof(path), "%s/keys", config->data_dir);
    if ((server->key_store = epcs_key_store_open(uri, path, err, sizeof(err))) == NULL) {
        epcs_log(EPCS_LOG_ERROR, "keys", "%s", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct epcs_server server;
    if (argc > 1 && strcmp(argv[1], "keys") == 0)
        return epcs_keys_command(argc - 2, argv + 2);
    int parsed = epcs_config_parse(&server.config, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    const struct epcs_config *config = &server.config;
    epcs_log_set_level(config->log_level);
    epcs_verdict_cache_configure(config->verdict_cache);

    int status = 1;
    if (config->restore_rules != NULL) {
        status = restore_rules(config);
        goto done;
    }
    if (config->impact_dir != NULL) {
        epcs_log_set_level(EPCS_LOG_WARN);
        server.plugins = epcs_plugins_load(config->plugins_dir, &epcs_host_api_v1);
        if (server.plugins != NULL)
            status = impact(&server);
        goto done;
    }
    if (config->test_rules_dir != NULL) {
        epcs_log_set_level(EPCS_LOG_WARN);
        server.plugins = epcs_plugins_load(config->plugins_dir, &epcs_host_api_v1);
        if (server.plugins != NULL)
            status = test_rules(config, server.plugins);
        goto done;
    }
    /* A stop asked while the server starts (it stores and activates its rules first) waits
     * until the server runs, which then drains at once and exits 0: left to the default
     * action, it would end the process in the middle of writing the rule store. */
    sigset_t stops;
    epcs_server_hold_signals(&stops);
    if (make_data_dir(config->data_dir) != 0) {
        epcs_log(EPCS_LOG_ERROR, "epcsd", "--data %s: cannot create the directory: %s",
                 config->data_dir, strerror(errno));
        goto done;
    }
    server.plugins = epcs_plugins_load(config->plugins_dir, &epcs_host_api_v1);
    if (server.plugins == NULL)
        goto done;
    if (server.plugins->count == 0) {
        epcs_log(EPCS_LOG_ERROR, "epcsd",
                 "no usable plugin in %s (build them, or point "
                 "--plugins at the directory holding the area .so files)",
                 config->plugins_dir);
        goto done;
    }
    char err[300];
    epcs_store_set_timeout(config->store_timeout_ms);
    if ((server.rule_store = epcs_rule_store_open(epcs_config_store_uri(config), config->data_dir,
                                                  err, sizeof(err))) == NULL) {
        epcs_log(EPCS_LOG_ERROR, "epcsd", "%s", err);
        goto done;
    }
    if (open_key_store(&server) != 0)
        goto done;
    struct epcs_ruleset *ruleset = start_ruleset(&server);
    if (ruleset == NULL)
        goto done;
    atomic_init(&server.active_ruleset, ruleset);
    pthread_mutex_init(&server.ruleset_lock, NULL);
    pthread_mutex_init(&server.keyring_lock, NULL);
    status = epcs_server_run(&server);
    epcs_ruleset_release(atomic_load(&server.active_ruleset));
    pthread_mutex_destroy(&server.ruleset_lock);
    pthread_mutex_destroy(&server.keyring_lock);
    pthread_mutex_destroy(&server.rules_state_lock);
done:
    epcs_key_store_close(server.key_store);
    epcs_rule_store_close(server.rule_store);
    epcs_plugins_destroy(server.plugins);
    epcs_config_dispose(&server.config);
    return status;
}
