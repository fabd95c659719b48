#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decision_log.h"
#include "log.h"

#ifndef EPCS_VERSION
#define EPCS_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: epcsd [options]\n"
            "\n"
            "Election-period compliance server: answers whether an actor may do an activity on\n"
            "a date for an election under the Public Official Election Act.\n"
            "\n"
            "  --listen HOST:PORT     address to serve (repeatable; default %s;\n"
            "                         port 0 picks a free port, logged at start-up)\n"
            "  --rules DIR            Lua rule files (default ./lua_rules)\n"
            "  --no-watch-rules       do not reload the rules when their directory changes\n"
            "  --impact DIR --checks FILE\n"
            "                         decide FILE's checks ({\"checks\": [...]}, JSON or\n"
            "                         msgpack) under --rules and under DIR, print every answer\n"
            "                         that would change as JSON, and exit\n"
            "  --restore-rules ID     write stored ruleset ID (from --data) into --rules DIR\n"
            "                         and exit; a running epcsd watching DIR takes it up\n"
            "  --test-rules DIR       run the rule files' own tests and probes in DIR, print\n"
            "                         the results and exit (0: all passed)\n"
            "  --plugins DIR          area plugins, *.so (default: plugins/ beside epcsd)\n"
            "  --data DIR             state directory, created if missing (default ./var)\n"
            "  --threads N            worker threads (default: number of cores)\n"
            "  --tls-cert FILE        PEM certificate chain: every listener then speaks TLS\n"
            "  --tls-key FILE         PEM private key for --tls-cert\n"
            "  --max-body BYTES       largest request body (default %d)\n"
            "  --max-batch N          most checks in one /v1/check/batch (default %d)\n"
            "  --max-batch-body BYTES largest /v1/check/batch body (default %d)\n"
            "  --lua-memory MIB       memory cap per Lua rule state (default %u)\n"
            "  --lua-budget N         VM instructions one evaluation may run (default %ld)\n"
            "  --shutdown-timeout S   seconds in-flight requests get on SIGTERM (default %d)\n"
            "  --keys FILE            API keys (default DATA/keys; see epcsd keys --help)\n"
            "  --no-auth              development mode: no keys asked; loopback --listen only\n"
            "  --rate-limit N         requests a second per key, a batch counting its checks\n"
            "                         (default %d; 0 for none; the keys file may set its own)\n"
            "  --max-streams N        requests of one HTTP/2 connection in progress at once;\n"
            "                         the others wait their turn (1-100, default %d)\n"
            "  --max-connections N    connections kept open at once, shared by the workers;\n"
            "                         more are closed when accepted (default %d; 0: no limit)\n"
            "  --audit MODE           decision log: async (default; answer once the decision\n"
            "                         is in the worker's journal), sync (answer after the\n"
            "                         fsync'd commit) or off\n"
            "  --audit-queue N        decisions waiting for the disk before checks get 503\n"
            "                         (default %d)\n"
            "  --no-access-log        no JSON line per request on stderr\n"
            "  --verdict-cache N      verdicts each worker remembers for repeated questions\n"
            "                         (default %d; 0 turns it off)\n"
            "  --case-sweep MS        how often requests past their due time are looked for\n"
            "                         (default %d ms)\n"
            "  --log-level LEVEL      debug, info, warn or error (default info)\n"
            "  --help, --version\n"
            "\n"
            "epcsd keys create|revoke|list ... manages API keys (epcsd keys --help).\n",
            EPCS_DEFAULT_LISTEN, EPCS_DEFAULT_MAX_BODY, EPCS_DEFAULT_MAX_BATCH,
            EPCS_DEFAULT_MAX_BATCH_BODY, EPCS_LUA_DEFAULT_MEMORY >> 20,
            EPCS_LUA_DEFAULT_INSTRUCTIONS, EPCS_DEFAULT_SHUTDOWN_SECONDS, EPCS_DEFAULT_RATE_LIMIT,
            EPCS_DEFAULT_MAX_STREAMS, EPCS_DEFAULT_MAX_CONNECTIONS, EPCS_DEFAULT_AUDIT_QUEUE,
            EPCS_VERDICT_CACHE_DEFAULT, EPCS_DEFAULT_CASE_SWEEP_MS);
}

static int parse_number(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "epcsd: %s must be a whole number from %ld to %ld, got '%s'\n", flag, min,
                max, text);
        return -1;
    }
    *out = value;
    return 0;
}

int epcs_listen_split(const char *text, char *host, size_t host_size, uint16_t *port)
{
    const char *colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - text - 1) >= host_size)
            return -1;
        snprintf(host, host_size, "%.*s", (int)(close - text - 1), text + 1);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || colon == text || (size_t)(colon - text) >= host_size)
            return -1;
        snprintf(host, host_size, "%.*s", (int)(colon - text), text);
    }
    const char *digits = colon + 1;
    size_t len = strlen(digits);
    if (len == 0 || len > 5 || strspn(digits, "0123456789") != len)
        return -1;
    long value = strtol(digits, NULL, 10);
    if (value > 65535)
        return -1;
    *port = (uint16_t)value;
    return 0;
}

/* Plugins are built beside the binary, so a fresh build runs without flags from any cwd. */
static char *default_plugins_dir(void)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
        return strdup("plugins");
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL)
        *slash = '\0';
    size_t size = strlen(exe) + sizeof("/plugins");
    char *dir = malloc(size);
    if (dir != NULL)
        snprintf(dir, size, "%s/plugins", exe);
    return dir;
}

int epcs_config_parse(struct epcs_config *config, int argc, char **argv)
{
    enum {
        OPT_LISTEN = 256,
        OPT_RULES,
        OPT_PLUGINS,
        OPT_DATA,
        OPT_THREADS,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_MAX_BODY,
        OPT_LUA_MEMORY,
        OPT_LUA_BUDGET,
        OPT_SHUTDOWN,
        OPT_LOG_LEVEL,
        OPT_HELP,
        OPT_VERSION,
        OPT_TEST_RULES,
        OPT_MAX_BATCH,
        OPT_MAX_BATCH_BODY,
        OPT_NO_WATCH_RULES,
        OPT_RESTORE_RULES,
        OPT_IMPACT,
        OPT_CHECKS,
        OPT_KEYS,
        OPT_NO_AUTH,
        OPT_RATE_LIMIT,
        OPT_MAX_STREAMS,
        OPT_MAX_CONNECTIONS,
        OPT_AUDIT,
        OPT_AUDIT_QUEUE,
        OPT_NO_ACCESS_LOG,
        OPT_VERDICT_CACHE,
        OPT_CASE_SWEEP,
    };
    static const struct option options[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"rules", required_argument, NULL, OPT_RULES},
        {"plugins", required_argument, NULL, OPT_PLUGINS},
        {"data", required_argument, NULL, OPT_DATA},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"lua-memory", required_argument, NULL, OPT_LUA_MEMORY},
        {"lua-budget", required_argument, NULL, OPT_LUA_BUDGET},
        {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"test-rules", required_argument, NULL, OPT_TEST_RULES},
        {"no-watch-rules", no_argument, NULL, OPT_NO_WATCH_RULES},
        {"restore-rules", required_argument, NULL, OPT_RESTORE_RULES},
        {"impact", required_argument, NULL, OPT_IMPACT},
        {"checks", required_argument, NULL, OPT_CHECKS},
        {"max-batch", required_argument, NULL, OPT_MAX_BATCH},
        {"max-batch-body", required_argument, NULL, OPT_MAX_BATCH_BODY},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"no-auth", no_argument, NULL, OPT_NO_AUTH},
        {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
        {"max-streams", required_argument, NULL, OPT_MAX_STREAMS},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"audit", required_argument, NULL, OPT_AUDIT},
        {"audit-queue", required_argument, NULL, OPT_AUDIT_QUEUE},
        {"no-access-log", no_argument, NULL, OPT_NO_ACCESS_LOG},
        {"verdict-cache", required_argument, NULL, OPT_VERDICT_CACHE},
        {"case-sweep", required_argument, NULL, OPT_CASE_SWEEP},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(config, 0, sizeof(*config));
    config->rules_dir = "lua_rules";
    config->data_dir = "var";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    config->threads = cores > 0 ? (int)cores : 1;
    config->watch_rules = 1;
    config->max_body = EPCS_DEFAULT_MAX_BODY;
    config->max_batch = EPCS_DEFAULT_MAX_BATCH;
    config->max_batch_body = EPCS_DEFAULT_MAX_BATCH_BODY;
    config->shutdown_seconds = EPCS_DEFAULT_SHUTDOWN_SECONDS;
    config->log_level = EPCS_LOG_INFO;
    config->lua.memory_bytes = EPCS_LUA_DEFAULT_MEMORY;
    config->lua.instructions = EPCS_LUA_DEFAULT_INSTRUCTIONS;
    config->rate_limit = EPCS_DEFAULT_RATE_LIMIT;
    config->max_streams = EPCS_DEFAULT_MAX_STREAMS;
    config->max_connections = EPCS_DEFAULT_MAX_CONNECTIONS;
    config->audit = EPCS_AUDIT_ASYNC;
    config->audit_queue = EPCS_DEFAULT_AUDIT_QUEUE;
    config->access_log = 1;
    config->verdict_cache = EPCS_VERDICT_CACHE_DEFAULT;
    config->case_sweep_ms = EPCS_DEFAULT_CASE_SWEEP_MS;

    long number;
    int opt;
    opterr = 0;
    /* 0, not 1: glibc then starts afresh, so a process may parse more than once (the tests). */
    optind = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN:
            if (config->listen_count == EPCS_MAX_LISTENERS) {
                fprintf(stderr, "epcsd: at most %d --listen addresses\n", EPCS_MAX_LISTENERS);
                return -1;
            }
            char host[256];
            uint16_t port;
            if (epcs_listen_split(optarg, host, sizeof(host), &port) != 0) {
                fprintf(stderr,
                        "epcsd: --listen must be HOST:PORT or [IPV6]:PORT with a port from 0 to "
                        "65535, got '%s'\n",
                        optarg);
                return -1;
            }
            config->listen[config->listen_count++] = optarg;
            break;
        case OPT_KEYS:
            config->keys_file = optarg;
            break;
        case OPT_NO_AUTH:
            config->no_auth = 1;
            break;
        case OPT_NO_ACCESS_LOG:
            config->access_log = 0;
            break;
        case OPT_CASE_SWEEP:
            if (parse_number("--case-sweep", optarg, 10, 3600000L, &number) != 0)
                return -1;
            config->case_sweep_ms = (int)number;
            break;
        case OPT_VERDICT_CACHE:
            if (parse_number("--verdict-cache", optarg, 0, 1L << 20, &number) != 0)
                return -1;
            config->verdict_cache = (size_t)number;
            break;
        case OPT_RATE_LIMIT:
            if (parse_number("--rate-limit", optarg, 0, 100000000L, &number) != 0)
                return -1;
            config->rate_limit = (double)number;
            break;
        case OPT_MAX_STREAMS:
            if (parse_number("--max-streams", optarg, 1, 100, &number) != 0)
                return -1;
            config->max_streams = (int)number;
            break;
        case OPT_MAX_CONNECTIONS:
            if (parse_number("--max-connections", optarg, 0, 1000000L, &number) != 0)
                return -1;
            config->max_connections = (size_t)number;
            break;
        case OPT_AUDIT_QUEUE:
            if (parse_number("--audit-queue", optarg, 1, 10000000L, &number) != 0)
                return -1;
            config->audit_queue = (size_t)number;
            break;
        case OPT_AUDIT:
            if (strcmp(optarg, "async") == 0)
                config->audit = EPCS_AUDIT_ASYNC;
            else if (strcmp(optarg, "sync") == 0)
                config->audit = EPCS_AUDIT_SYNC;
            else if (strcmp(optarg, "off") == 0)
                config->audit = EPCS_AUDIT_OFF;
            else {
                fprintf(stderr, "epcsd: --audit must be async, sync or off, got '%s'\n", optarg);
                return -1;
            }
            break;
        case OPT_RULES:
            config->rules_dir = optarg;
            break;
        case OPT_IMPACT:
            config->impact_dir = optarg;
            break;
        case OPT_CHECKS:
            config->impact_checks = optarg;
            break;
        case OPT_RESTORE_RULES:
            config->restore_rules = optarg;
            break;
        case OPT_NO_WATCH_RULES:
            config->watch_rules = 0;
            break;
        case OPT_MAX_BATCH:
            if (parse_number("--max-batch", optarg, 1, 100000, &number) != 0)
                return -1;
            config->max_batch = (size_t)number;
            break;
        case OPT_MAX_BATCH_BODY:
            if (parse_number("--max-batch-body", optarg, 64, 256L * 1024 * 1024, &number) != 0)
                return -1;
            config->max_batch_body = (size_t)number;
            break;
        case OPT_TEST_RULES:
            config->test_rules_dir = optarg;
            break;
        case OPT_PLUGINS:
            free(config->plugins_dir);
            config->plugins_dir = strdup(optarg);
            break;
        case OPT_DATA:
            config->data_dir = optarg;
            break;
        case OPT_THREADS:
            if (parse_number("--threads", optarg, 1, 256, &number) != 0)
                return -1;
            config->threads = (int)number;
            break;
        case OPT_TLS_CERT:
            config->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            config->tls_key = optarg;
            break;
        case OPT_MAX_BODY:
            if (parse_number("--max-body", optarg, 64, 64L * 1024 * 1024, &number) != 0)
                return -1;
            config->max_body = (size_t)number;
            break;
        case OPT_LUA_MEMORY:
            if (parse_number("--lua-memory", optarg, 1, 4096, &number) != 0)
                return -1;
            config->lua.memory_bytes = (size_t)number << 20;
            break;
        case OPT_LUA_BUDGET:
            if (parse_number("--lua-budget", optarg, 10000, 1000000000L, &number) != 0)
                return -1;
            config->lua.instructions = number;
            break;
        case OPT_SHUTDOWN:
            if (parse_number("--shutdown-timeout", optarg, 1, 3600, &number) != 0)
                return -1;
            config->shutdown_seconds = (int)number;
            break;
        case OPT_LOG_LEVEL:
            if (strcmp(optarg, "debug") == 0)
                config->log_level = EPCS_LOG_DEBUG;
            else if (strcmp(optarg, "info") == 0)
                config->log_level = EPCS_LOG_INFO;
            else if (strcmp(optarg, "warn") == 0)
                config->log_level = EPCS_LOG_WARN;
            else if (strcmp(optarg, "error") == 0)
                config->log_level = EPCS_LOG_ERROR;
            else {
                fprintf(stderr, "epcsd: --log-level must be debug, info, warn or error\n");
                return -1;
            }
            break;
        case OPT_HELP:
            usage(stdout);
            return 1;
        case OPT_VERSION:
            printf("epcsd %s\n", EPCS_VERSION);
            return 1;
        default:
            if (optopt != 0)
                fprintf(stderr, "epcsd: option --%s needs a value\n", argv[optind - 1] + 2);
            else
                fprintf(stderr, "epcsd: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "epcsd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if ((config->impact_dir == NULL) != (config->impact_checks == NULL)) {
        fprintf(stderr, "epcsd: --impact and --checks go together\n");
        return -1;
    }
    if (config->no_auth && config->keys_file != NULL) {
        fprintf(stderr, "epcsd: --no-auth asks for no keys; drop it or --keys\n");
        return -1;
    }
    if ((config->tls_cert == NULL) != (config->tls_key == NULL)) {
        fprintf(stderr, "epcsd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (config->listen_count == 0)
        config->listen[config->listen_count++] = EPCS_DEFAULT_LISTEN;
    if (config->plugins_dir == NULL && (config->plugins_dir = default_plugins_dir()) == NULL) {
        fprintf(stderr, "epcsd: out of memory\n");
        return -1;
    }
    return 0;
}

void epcs_config_dispose(struct epcs_config *config)
{
    free(config->plugins_dir);
    config->plugins_dir = NULL;
}
