#ifndef EPCS_CONFIG_H
#define EPCS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "lua_engine.h"

#define EPCS_MAX_LISTENERS 16
#define EPCS_DEFAULT_LISTEN "127.0.0.1:8080"
#define EPCS_DEFAULT_MAX_BODY (64 * 1024)
#define EPCS_DEFAULT_MAX_BATCH 1000
#define EPCS_DEFAULT_MAX_BATCH_BODY (4 * 1024 * 1024)
#define EPCS_DEFAULT_SHUTDOWN_SECONDS 10
#define EPCS_DEFAULT_RATE_LIMIT 1000
#define EPCS_DEFAULT_MAX_STREAMS 100
#define EPCS_DEFAULT_MAX_CONNECTIONS 4096
#define EPCS_DEFAULT_AUDIT_QUEUE 100000
#define EPCS_DEFAULT_CASE_SWEEP_MS 1000

/** The daemon's settings, from the command line. Strings point into argv or static memory. */
struct epcs_config {
    const char *listen[EPCS_MAX_LISTENERS];
    size_t listen_count;
    const char *rules_dir;
    /** Set by --test-rules: run that directory's rule tests and exit instead of serving. */
    const char *test_rules_dir;
    /** Set by --restore-rules: write that stored version into rules_dir and exit. */
    const char *restore_rules;
    /** Set by --impact DIR: compare DIR's rules with --rules on the checks in impact_checks. */
    const char *impact_dir;
    const char *impact_checks;
    /** Owned: the default is derived from the executable's location. */
    char *plugins_dir;
    const char *data_dir;
    /** --store: "sqlite", or a PostgreSQL connection URI. */
    const char *store;
    /** --store-threads: the store's threads (store_threads.h). */
    int store_threads;
    /** --store-timeout: a connection attempt's or statement's limit with PostgreSQL. */
    int store_timeout_ms;
    int threads;
    const char *tls_cert;
    const char *tls_key;
    /** Reload the rules when their directory changes (on unless --no-watch-rules). */
    int watch_rules;
    size_t max_body;
    size_t max_batch;
    size_t max_batch_body;
    int shutdown_seconds;
    int log_level;
    /** --keys FILE; NULL: <data>/keys. */
    const char *keys_file;
    /** Development mode: no keys, loopback listeners only. */
    int no_auth;
    /** Requests a second per key (a batch costs one per check); 0: unlimited. */
    double rate_limit;
    /** SETTINGS_MAX_CONCURRENT_STREAMS for each HTTP/2 connection. */
    int max_streams;
    /** Connections open at once over all workers (0: no limit). */
    size_t max_connections;
    /** enum epcs_audit_mode */
    int audit;
    size_t audit_queue;
    /** One JSON line per request on stderr. */
    int access_log;
    /** Verdicts each worker remembers (0: none). */
    size_t verdict_cache;
    /** Milliseconds between looks for case requests past their due time. */
    int case_sweep_ms;
    struct epcs_lua_limits lua;
};

/**
 * Splits a --listen address, "HOST:PORT" or "[IPV6]:PORT", into `host` and `port` (0-65535,
 * digits only). Returns 0, or -1 when it is not one.
 */
int epcs_listen_split(const char *text, char *host, size_t host_size, uint16_t *port);

#endif
