#include "flags.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decision_log.h"
#include "log.h"

#ifndef EPCS_VERSION
#define EPCS_VERSION "0.1.0"
#endif

/* How an option's value reaches its field of struct epcs_config. */
enum option_kind {
    /* const char *: the argument itself, which lives as long as argv. */
    OPTION_TEXT,
    /* char *: an owned copy, replacing an earlier one. */
    OPTION_COPY,
    /* One more listen[] entry, once it splits as an address. */
    OPTION_LISTEN,
    /* int, no argument: 0 by default, 1 when given. */
    OPTION_SET,
    /* int, no argument: 1 by default, 0 when given. */
    OPTION_CLEAR,
    /* A whole number from min to max, shifted left by `shift`, stored as the kind's C type. */
    OPTION_INT,
    OPTION_SIZE,
    OPTION_LONG,
    OPTION_DOUBLE,
    /* int: the value of one of `choices`. */
    OPTION_CHOICE,
    /* No argument, no field: print and stop (epcs_config_parse returns 1). */
    OPTION_HELP,
    OPTION_VERSION,
};

struct option_choice {
    const char *name;
    int value;
};

/* One option: everything the parser, the defaults and --help know about it. */
struct config_option {
    /* The long name, without "--". */
    const char *name;
    enum option_kind kind;
    size_t offset;
    /* Numbers (before the shift) and choices: the default. */
    long initial;
    /* OPTION_TEXT: the default, NULL for none. */
    const char *initial_text;
    long min, max;
    unsigned shift;
    /* OPTION_CHOICE: ends with a NULL name. */
    const struct option_choice *choices;
    /* OPTION_CHOICE: the refusal quotes the value given. */
    int echo_value;
    /* --help's left column; NULL: "--name ARG". */
    const char *label;
    /* Its placeholder after the name in --help. */
    const char *arg;
    /* --help's right column, lines split by '\n', "{}" standing for `initial`; NULL: shown in
     * another option's row, "": the label alone. */
    const char *help;
};

#define FIELD(member) offsetof(struct epcs_config, member)

static const struct option_choice audit_modes[] = {
    {"async", EPCS_AUDIT_ASYNC}, {"sync", EPCS_AUDIT_SYNC}, {"off", EPCS_AUDIT_OFF}, {NULL, 0}};

static const struct option_choice log_levels[] = {{"debug", EPCS_LOG_DEBUG},
                                                  {"info", EPCS_LOG_INFO},
                                                  {"warn", EPCS_LOG_WARN},
                                                  {"error", EPCS_LOG_ERROR},
                                                  {NULL, 0}};

/* In --help's order. */
static const struct config_option options[] = {
    {.name = "listen",
     .kind = OPTION_LISTEN,
     .arg = "HOST:PORT",
     .help = "address to serve (repeatable; default " EPCS_DEFAULT_LISTEN ";\n"
             "port 0 picks a free port, logged at start-up)"},
    {.name = "rules",
     .kind = OPTION_TEXT,
     .offset = FIELD(rules_dir),
     .initial_text = "lua_rules",
     .arg = "DIR",
     .help = "Lua rule files (default ./lua_rules)"},
    {.name = "no-watch-rules",
     .kind = OPTION_CLEAR,
     .offset = FIELD(watch_rules),
     .help = "do not reload the rules when their directory changes"},
    {.name = "impact",
     .kind = OPTION_TEXT,
     .offset = FIELD(impact_dir),
     .label = "--impact DIR --checks FILE",
     .help = "decide FILE's checks ({\"checks\": [...]}, JSON or\n"
             "msgpack) under --rules and under DIR, print every answer\n"
             "that would change as JSON, and exit"},
    {.name = "checks", .kind = OPTION_TEXT, .offset = FIELD(impact_checks)},
    {.name = "restore-rules",
     .kind = OPTION_TEXT,
     .offset = FIELD(restore_rules),
     .arg = "ID",
     .help = "write stored ruleset ID (from --data) into --rules DIR\n"
             "and exit; a running epcsd watching DIR takes it up"},
    {.name = "test-rules",
     .kind = OPTION_TEXT,
     .offset = FIELD(test_rules_dir),
     .arg = "DIR",
     .help = "run the rule files' own tests and probes in DIR, print\n"
             "the results and exit (0: all passed)"},
    {.name = "plugins",
     .kind = OPTION_COPY,
     .offset = FIELD(plugins_dir),
     .arg = "DIR",
     .help = "area plugins, *.so (default: plugins/ beside epcsd)"},
    {.name = "data",
     .kind = OPTION_TEXT,
     .offset = FIELD(data_dir),
     .initial_text = "var",
     .arg = "DIR",
     .help = "state directory, created if missing (default ./var)"},
    {.name = "store",
     .kind = OPTION_TEXT,
     .offset = FIELD(store),
     .initial_text = "sqlite",
     .arg = "sqlite|URI",
     .help = "where shared state lives: sqlite (under --data, the\n"
             "default) or a postgresql:// URI (rulesets, the\n"
             "decision log, keys and cases)"},
    {.name = "store-threads",
     .kind = OPTION_INT,
     .offset = FIELD(store_threads),
     .initial = 4,
     .min = 1,
     .max = 256,
     .arg = "N",
     .help = "threads for the work that waits on the stores (reads,\n"
             "writes, exports, impact), off the event loops\n"
             "(default {})"},
    {.name = "store-timeout",
     .kind = OPTION_INT,
     .offset = FIELD(store_timeout_ms),
     .initial = 5000,
     .min = 100,
     .max = 600000,
     .arg = "MS",
     .help = "with PostgreSQL: how long a connection attempt or a\n"
             "statement may take before the database counts as\n"
             "unreachable (default {})"},
    /* set_defaults puts the number of cores in place of 1, when it is known. */
    {.name = "threads",
     .kind = OPTION_INT,
     .offset = FIELD(threads),
     .initial = 1,
     .min = 1,
     .max = 256,
     .arg = "N",
     .help = "worker threads (default: number of cores)"},
    {.name = "tls-cert",
     .kind = OPTION_TEXT,
     .offset = FIELD(tls_cert),
     .arg = "FILE",
     .help = "PEM certificate chain: every listener then speaks TLS"},
    {.name = "tls-key",
     .kind = OPTION_TEXT,
     .offset = FIELD(tls_key),
     .arg = "FILE",
     .help = "PEM private key for --tls-cert"},
    {.name = "max-body",
     .kind = OPTION_SIZE,
     .offset = FIELD(max_body),
     .initial = EPCS_DEFAULT_MAX_BODY,
     .min = 64,
     .max = 64L * 1024 * 1024,
     .arg = "BYTES",
     .help = "largest request body (default {})"},
    {.name = "max-batch",
     .kind = OPTION_SIZE,
     .offset = FIELD(max_batch),
     .initial = EPCS_DEFAULT_MAX_BATCH,
     .min = 1,
     .max = 100000,
     .arg = "N",
     .help = "most checks in one /v1/check/batch (default {})"},
    {.name = "max-batch-body",
     .kind = OPTION_SIZE,
     .offset = FIELD(max_batch_body),
     .initial = EPCS_DEFAULT_MAX_BATCH_BODY,
     .min = 64,
     .max = 256L * 1024 * 1024,
     .arg = "BYTES",
     .help = "largest /v1/check/batch body (default {})"},
    {.name = "lua-memory",
     .kind = OPTION_SIZE,
     .offset = FIELD(lua.memory_bytes),
     .initial = EPCS_LUA_DEFAULT_MEMORY >> 20,
     .min = 1,
     .max = 4096,
     .shift = 20,
     .arg = "MIB",
     .help = "memory cap per Lua rule state (default {})"},
    {.name = "lua-budget",
     .kind = OPTION_LONG,
     .offset = FIELD(lua.instructions),
     .initial = EPCS_LUA_DEFAULT_INSTRUCTIONS,
     .min = 10000,
     .max = 1000000000L,
     .arg = "N",
     .help = "VM instructions one evaluation may run (default {})"},
    {.name = "shutdown-timeout",
     .kind = OPTION_INT,
     .offset = FIELD(shutdown_seconds),
     .initial = EPCS_DEFAULT_SHUTDOWN_SECONDS,
     .min = 1,
     .max = 3600,
     .arg = "S",
     .help = "seconds in-flight requests get on SIGTERM (default {})"},
    {.name = "keys",
     .kind = OPTION_TEXT,
     .offset = FIELD(keys_file),
     .arg = "FILE",
     .help = "API keys (default DATA/keys; see epcsd keys --help)"},
    {.name = "no-auth",
     .kind = OPTION_SET,
     .offset = FIELD(no_auth),
     .help = "development mode: no keys asked; loopback --listen only"},
    {.name = "rate-limit",
     .kind = OPTION_DOUBLE,
     .offset = FIELD(rate_limit),
     .initial = EPCS_DEFAULT_RATE_LIMIT,
     .min = 0,
     .max = 100000000L,
     .arg = "N",
     .help = "requests a second per key, a batch counting its checks\n"
             "(default {}; 0 for none; the keys file may set its own)"},
    {.name = "max-streams",
     .kind = OPTION_INT,
     .offset = FIELD(max_streams),
     .initial = EPCS_DEFAULT_MAX_STREAMS,
     .min = 1,
     .max = 100,
     .arg = "N",
     .help = "requests of one HTTP/2 connection in progress at once;\n"
             "the others wait their turn (1-100, default {})"},
    {.name = "max-connections",
     .kind = OPTION_SIZE,
     .offset = FIELD(max_connections),
     .initial = EPCS_DEFAULT_MAX_CONNECTIONS,
     .min = 0,
     .max = 1000000L,
     .arg = "N",
     .help = "connections kept open at once, shared by the workers;\n"
             "more are closed when accepted (default {}; 0: no limit)"},
    {.name = "audit",
     .kind = OPTION_CHOICE,
     .offset = FIELD(audit),
     .initial = EPCS_AUDIT_ASYNC,
     .choices = audit_modes,
     .echo_value = 1,
     .arg = "MODE",
     .help = "decision log: async (default; answer once the decision\n"
             "is in the worker's journal), sync (answer after the\n"
             "fsync'd commit) or off"},
    {.name = "audit-queue",
     .kind = OPTION_SIZE,
     .offset = FIELD(audit_queue),
     .initial = EPCS_DEFAULT_AUDIT_QUEUE,
     .min = 1,
     .max = 10000000L,
     .arg = "N",
     .help = "decisions waiting for the disk before checks get 503\n"
             "(default {})"},
    {.name = "no-access-log",
     .kind = OPTION_CLEAR,
     .offset = FIELD(access_log),
     .help = "no JSON line per request on stderr"},
    {.name = "verdict-cache",
     .kind = OPTION_SIZE,
     .offset = FIELD(verdict_cache),
     .initial = EPCS_VERDICT_CACHE_DEFAULT,
     .min = 0,
     .max = 1L << 20,
     .arg = "N",
     .help = "verdicts each worker remembers for repeated questions\n"
             "(default {}; 0 turns it off)"},
    {.name = "case-sweep",
     .kind = OPTION_INT,
     .offset = FIELD(case_sweep_ms),
     .initial = EPCS_DEFAULT_CASE_SWEEP_MS,
     .min = 10,
     .max = 3600000L,
     .arg = "MS",
     .help = "how often requests past their due time are looked for\n"
             "(default {} ms)"},
    {.name = "log-level",
     .kind = OPTION_CHOICE,
     .offset = FIELD(log_level),
     .initial = EPCS_LOG_INFO,
     .choices = log_levels,
     .arg = "LEVEL",
     .help = "debug, info, warn or error (default info)"},
    {.name = "help", .kind = OPTION_HELP, .label = "--help, --version", .help = ""},
    {.name = "version", .kind = OPTION_VERSION},
};

#define OPTION_COUNT (sizeof(options) / sizeof(options[0]))
/* getopt_long's value for options[i]: clear of '?' and ':', which it returns on errors. */
#define OPTION_VALUE_BASE 256
/* --help's right column starts after this many characters. */
#define HELP_INDENT 25

/* Writes `text` with "{}" as `value` and each line after the first indented to the column. */
static void usage_help(FILE *out, const char *text, long value)
{
    for (const char *p = text; *p != '\0'; p++) {
        if (p[0] == '{' && p[1] == '}') {
            fprintf(out, "%ld", value);
            p++;
        } else if (*p == '\n') {
            fprintf(out, "\n%*s", HELP_INDENT, "");
        } else {
            fputc(*p, out);
        }
    }
    fputc('\n', out);
}

/* One option's lines; a label too long for the left column puts the help on the next line. */
static void usage_option(FILE *out, const struct config_option *option)
{
    char label[64];
    if (option->label != NULL)
        snprintf(label, sizeof(label), "%s", option->label);
    else if (option->arg != NULL)
        snprintf(label, sizeof(label), "--%s %s", option->name, option->arg);
    else
        snprintf(label, sizeof(label), "--%s", option->name);
    if (option->help[0] == '\0') {
        fprintf(out, "  %s\n", label);
        return;
    }
    int width = HELP_INDENT - 3;
    if ((int)strlen(label) > width)
        fprintf(out, "  %s\n%*s", label, HELP_INDENT, "");
    else
        fprintf(out, "  %-*s ", width, label);
    usage_help(out, option->help, option->initial);
}

static void usage(FILE *out)
{
    fputs("usage: epcsd [options]\n"
          "\n"
          "Election-period compliance server: answers whether an actor may do an activity on\n"
          "a date for an election under the Public Official Election Act.\n"
          "\n",
          out);
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        if (options[i].help != NULL)
            usage_option(out, &options[i]);
    }
    fputs("\n"
          "epcsd keys create|revoke|list ... manages API keys (epcsd keys --help).\n",
          out);
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

static void *field(struct epcs_config *config, const struct config_option *option)
{
    return (char *)config + option->offset;
}

static void store_number(struct epcs_config *config, const struct config_option *option, long value)
{
    void *at = field(config, option);
    switch (option->kind) {
    case OPTION_INT:
        *(int *)at = (int)(value << option->shift);
        break;
    case OPTION_SIZE:
        *(size_t *)at = (size_t)value << option->shift;
        break;
    case OPTION_LONG:
        *(long *)at = value << option->shift;
        break;
    case OPTION_DOUBLE:
        *(double *)at = (double)(value << option->shift);
        break;
    default:
        break;
    }
}

static void set_defaults(struct epcs_config *config)
{
    memset(config, 0, sizeof(*config));
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const struct config_option *option = &options[i];
        switch (option->kind) {
        case OPTION_TEXT:
            *(const char **)field(config, option) = option->initial_text;
            break;
        case OPTION_CLEAR:
            *(int *)field(config, option) = 1;
            break;
        case OPTION_CHOICE:
            *(int *)field(config, option) = (int)option->initial;
            break;
        case OPTION_INT:
        case OPTION_SIZE:
        case OPTION_LONG:
        case OPTION_DOUBLE:
            store_number(config, option, option->initial);
            break;
        default:
            /* Zero from the memset: off, none, or filled in by fill_remaining. */
            break;
        }
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0)
        config->threads = (int)cores;
}

static int store_listen(struct epcs_config *config, const char *text)
{
    if (config->listen_count == EPCS_MAX_LISTENERS) {
        fprintf(stderr, "epcsd: at most %d --listen addresses\n", EPCS_MAX_LISTENERS);
        return -1;
    }
    char host[256];
    uint16_t port;
    if (epcs_listen_split(text, host, sizeof(host), &port) != 0) {
        fprintf(stderr,
                "epcsd: --listen must be HOST:PORT or [IPV6]:PORT with a port from 0 to 65535, "
                "got '%s'\n",
                text);
        return -1;
    }
    config->listen[config->listen_count++] = text;
    return 0;
}

/* The refusal lists the choices as "a, b or c". */
static int store_choice(struct epcs_config *config, const struct config_option *option,
                        const char *text)
{
    size_t count = 0;
    for (const struct option_choice *c = option->choices; c->name != NULL; c++, count++) {
        if (strcmp(c->name, text) == 0) {
            *(int *)field(config, option) = c->value;
            return 0;
        }
    }
    fprintf(stderr, "epcsd: --%s must be ", option->name);
    for (size_t i = 0; i < count; i++)
        fprintf(stderr, "%s%s",
                i == 0           ? ""
                : i + 1 == count ? " or "
                                 : ", ",
                option->choices[i].name);
    if (option->echo_value)
        fprintf(stderr, ", got '%s'", text);
    fputc('\n', stderr);
    return -1;
}

/* Puts one option's argument where it goes. Returns 0, 1 when it answered (--help), or -1. */
static int apply(struct epcs_config *config, const struct config_option *option, const char *text)
{
    long number;
    char flag[64];
    switch (option->kind) {
    case OPTION_TEXT:
        *(const char **)field(config, option) = text;
        return 0;
    case OPTION_COPY: {
        char **copy = field(config, option);
        free(*copy);
        *copy = strdup(text);
        return 0;
    }
    case OPTION_LISTEN:
        return store_listen(config, text);
    case OPTION_SET:
    case OPTION_CLEAR:
        *(int *)field(config, option) = option->kind == OPTION_SET;
        return 0;
    case OPTION_INT:
    case OPTION_SIZE:
    case OPTION_LONG:
    case OPTION_DOUBLE:
        snprintf(flag, sizeof(flag), "--%s", option->name);
        if (parse_number(flag, text, option->min, option->max, &number) != 0)
            return -1;
        store_number(config, option, number);
        return 0;
    case OPTION_CHOICE:
        return store_choice(config, option, text);
    case OPTION_HELP:
        usage(stdout);
        return 1;
    case OPTION_VERSION:
        printf("epcsd %s\n", EPCS_VERSION);
        return 1;
    }
    return -1;
}

static int takes_value(enum option_kind kind)
{
    return kind != OPTION_SET && kind != OPTION_CLEAR && kind != OPTION_HELP &&
           kind != OPTION_VERSION;
}

/* getopt_long's view of the table; `longopts` holds OPTION_COUNT + 1 entries. */
static void getopt_table(struct option *longopts)
{
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        longopts[i] = (struct option){
            options[i].name, takes_value(options[i].kind) ? required_argument : no_argument, NULL,
            OPTION_VALUE_BASE + (int)i};
    }
    longopts[OPTION_COUNT] = (struct option){NULL, 0, NULL, 0};
}

/* After getopt_long answered '?': optopt is set only when a known option lacks its value. */
static void report_bad_option(char **argv)
{
    if (optopt != 0)
        fprintf(stderr, "epcsd: option --%s needs a value\n", argv[optind - 1] + 2);
    else
        fprintf(stderr, "epcsd: unknown option '%s'\n", argv[optind - 1]);
    usage(stderr);
}

static int go_together(const void *a, const void *b, const char *name_a, const char *name_b)
{
    if ((a == NULL) == (b == NULL))
        return 0;
    fprintf(stderr, "epcsd: --%s and --%s go together\n", name_a, name_b);
    return -1;
}

/* The embedded store, or PostgreSQL by URI: anything else is a typo, not a third backend. */
static int check_store(const struct epcs_config *config)
{
    if (strcmp(config->store, "sqlite") == 0 || strncmp(config->store, "postgresql://", 13) == 0 ||
        strncmp(config->store, "postgres://", 11) == 0)
        return 0;
    fprintf(stderr, "epcsd: --store must be sqlite or a postgresql:// URI, got '%.*s'\n",
            (int)strnlen(config->store, 64), config->store);
    return -1;
}

/* The rules between options, once all are read. */
static int check_combinations(const struct epcs_config *config)
{
    if (check_store(config) != 0)
        return -1;
    if (go_together(config->impact_dir, config->impact_checks, "impact", "checks") != 0)
        return -1;
    if (config->no_auth && config->keys_file != NULL) {
        fprintf(stderr, "epcsd: --no-auth asks for no keys; drop it or --keys\n");
        return -1;
    }
    return go_together(config->tls_cert, config->tls_key, "tls-cert", "tls-key");
}

/* The defaults that depend on what was given, or on where epcsd is. */
static int fill_remaining(struct epcs_config *config)
{
    if (config->listen_count == 0)
        config->listen[config->listen_count++] = EPCS_DEFAULT_LISTEN;
    if (config->plugins_dir == NULL && (config->plugins_dir = default_plugins_dir()) == NULL) {
        fprintf(stderr, "epcsd: out of memory\n");
        return -1;
    }
    return 0;
}

int epcs_config_parse(struct epcs_config *config, int argc, char **argv)
{
    struct option longopts[OPTION_COUNT + 1];
    getopt_table(longopts);
    set_defaults(config);
    opterr = 0;
    /* 0, not 1: glibc then starts afresh, so a process may parse more than once (the tests). */
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt < OPTION_VALUE_BASE) {
            report_bad_option(argv);
            return -1;
        }
        int applied = apply(config, &options[opt - OPTION_VALUE_BASE], optarg);
        if (applied != 0)
            return applied;
    }
    if (optind < argc) {
        fprintf(stderr, "epcsd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (check_combinations(config) != 0)
        return -1;
    return fill_remaining(config);
}

const char *epcs_config_store_uri(const struct epcs_config *config)
{
    return strcmp(config->store, "sqlite") == 0 ? NULL : config->store;
}

void epcs_config_dispose(struct epcs_config *config)
{
    free(config->plugins_dir);
    config->plugins_dir = NULL;
}
