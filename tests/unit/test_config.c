#include "flags.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "decision_log.h"
#include "log.h"
#include "ruleset.h"
#include "testing.h"

#ifndef EPCS_VERSION
#define EPCS_VERSION "0.1.0"
#endif

#define MAX_ARGS 40
#define CAPTURE_SIZE 16384

/* What one epcs_config_parse call said. */
struct parsed {
    int status;
    char out[CAPTURE_SIZE];
    char err[CAPTURE_SIZE];
};

/* The strings the config points into, as argv's would: valid until the next parse. */
static char arg_storage[MAX_ARGS][256];

static void read_back(FILE *file, char *text)
{
    rewind(file);
    size_t len = fread(text, 1, CAPTURE_SIZE - 1, file);
    text[len] = '\0';
    fclose(file);
}

/* Parses "epcsd" plus the NULL-terminated arguments, with stdout and stderr captured. */
static struct parsed *parse_list(struct epcs_config *config, const char *const *args)
{
    static struct parsed result;
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    snprintf(arg_storage[argc], sizeof(arg_storage[argc]), "epcsd");
    argv[argc] = arg_storage[argc];
    for (argc = 1; args[argc - 1] != NULL && argc < MAX_ARGS; argc++) {
        snprintf(arg_storage[argc], sizeof(arg_storage[argc]), "%s", args[argc - 1]);
        argv[argc] = arg_storage[argc];
    }
    argv[argc] = NULL;
    FILE *out = tmpfile(), *err = tmpfile();
    fflush(stdout);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    dup2(fileno(out), STDOUT_FILENO);
    dup2(fileno(err), STDERR_FILENO);
    result.status = epcs_config_parse(config, argc, argv);
    fflush(stdout);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    read_back(out, result.out);
    read_back(err, result.err);
    return &result;
}

static struct parsed *parse(struct epcs_config *config, ...)
{
    const char *args[MAX_ARGS];
    size_t count = 0;
    va_list ap;
    va_start(ap, config);
    while (count + 1 < MAX_ARGS && (args[count] = va_arg(ap, const char *)) != NULL)
        count++;
    va_end(ap);
    args[count] = NULL;
    return parse_list(config, args);
}

/* A refusal: -1, nothing on stdout, exactly `message` on stderr. */
static void expect_refused(struct parsed *result, const char *message)
{
    EXPECT_INT(result->status, -1);
    EXPECT_STR(result->out, "");
    EXPECT_STR(result->err, message);
}

static void test_defaults(void)
{
    struct epcs_config config;
    struct parsed *result = parse(&config, NULL);
    EXPECT_INT(result->status, 0);
    EXPECT_STR(result->out, "");
    EXPECT_STR(result->err, "");
    EXPECT_INT(config.listen_count, 1);
    EXPECT_STR(config.listen[0], "127.0.0.1:8080");
    EXPECT_STR(config.rules_dir, "lua_rules");
    EXPECT_STR(config.data_dir, "var");
    EXPECT(config.test_rules_dir == NULL && config.restore_rules == NULL);
    EXPECT(config.impact_dir == NULL && config.impact_checks == NULL);
    EXPECT(config.tls_cert == NULL && config.tls_key == NULL && config.keys_file == NULL);
    /* Beside the executable: this test's own directory. */
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[len > 0 ? len : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL)
        strcpy(slash, "/plugins");
    EXPECT_STR(config.plugins_dir, exe);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    EXPECT_INT(config.threads, cores > 0 ? cores : 1);
    EXPECT_INT(config.watch_rules, 1);
    EXPECT_INT(config.no_auth, 0);
    EXPECT_INT(config.access_log, 1);
    EXPECT_INT(config.max_body, 65536);
    EXPECT_INT(config.max_batch, 1000);
    EXPECT_INT(config.max_batch_body, 4194304);
    EXPECT_INT(config.shutdown_seconds, 10);
    EXPECT_INT(config.log_level, EPCS_LOG_INFO);
    EXPECT(config.rate_limit == 1000.0);
    EXPECT_INT(config.max_streams, 100);
    EXPECT_INT(config.max_connections, 4096);
    EXPECT_INT(config.audit, EPCS_AUDIT_ASYNC);
    EXPECT_INT(config.audit_queue, 100000);
    EXPECT_INT(config.verdict_cache, EPCS_VERDICT_CACHE_DEFAULT);
    EXPECT_INT(config.case_sweep_ms, 1000);
    EXPECT_INT(config.lua.memory_bytes, 32L << 20);
    EXPECT_INT(config.lua.instructions, 1000000);
    epcs_config_dispose(&config);
    EXPECT(config.plugins_dir == NULL);
}

static void test_text_options(void)
{
    struct epcs_config config;
    struct parsed *result =
        parse(&config, "--rules", "r", "--data=d", "--test-rules", "t", "--restore-rules", "rs-1",
              "--keys", "k", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--impact", "amended",
              "--checks", "checks.json", "--plugins", "first", "--plugins", "second", NULL);
    EXPECT_INT(result->status, 0);
    EXPECT_STR(result->err, "");
    EXPECT_STR(config.rules_dir, "r");
    EXPECT_STR(config.data_dir, "d");
    EXPECT_STR(config.test_rules_dir, "t");
    EXPECT_STR(config.restore_rules, "rs-1");
    EXPECT_STR(config.keys_file, "k");
    EXPECT_STR(config.tls_cert, "c.pem");
    EXPECT_STR(config.tls_key, "k.pem");
    EXPECT_STR(config.impact_dir, "amended");
    EXPECT_STR(config.impact_checks, "checks.json");
    /* The last --plugins wins and is a copy the config owns (the first one freed). */
    EXPECT_STR(config.plugins_dir, "second");
    EXPECT(config.plugins_dir != arg_storage[21]);
    epcs_config_dispose(&config);

    /* getopt_long's unique prefixes stay accepted. */
    result = parse(&config, "--rul", "short", NULL);
    EXPECT_INT(result->status, 0);
    EXPECT_STR(config.rules_dir, "short");
    epcs_config_dispose(&config);
}

static void test_flags(void)
{
    struct epcs_config config;
    struct parsed *result =
        parse(&config, "--no-watch-rules", "--no-auth", "--no-access-log", NULL);
    EXPECT_INT(result->status, 0);
    EXPECT_INT(config.watch_rules, 0);
    EXPECT_INT(config.no_auth, 1);
    EXPECT_INT(config.access_log, 0);
    epcs_config_dispose(&config);
    /* A flag given with a value is refused (the message is getopt's case of a missing one). */
    result = parse(&config, "--no-auth=1", NULL);
    EXPECT_INT(result->status, -1);
    EXPECT_CONTAINS(result->err, "--no-auth=1");
    EXPECT_CONTAINS(result->err, "usage: epcsd [options]\n");
    epcs_config_dispose(&config);
}

static void test_listen(void)
{
    struct epcs_config config;
    struct parsed *result = parse(&config, "--listen", "0.0.0.0:0", "--listen=[::1]:65535", NULL);
    EXPECT_INT(result->status, 0);
    EXPECT_INT(config.listen_count, 2);
    EXPECT_STR(config.listen[0], "0.0.0.0:0");
    EXPECT_STR(config.listen[1], "[::1]:65535");
    epcs_config_dispose(&config);

    const char *bad[] = {"nope", "[::1]", "1.2.3.4:65536", ":80", "h:", "h:8o", "[::1]8080"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char message[256];
        snprintf(message, sizeof(message),
                 "epcsd: --listen must be HOST:PORT or [IPV6]:PORT with a port from 0 to 65535, "
                 "got '%s'\n",
                 bad[i]);
        expect_refused(parse(&config, "--listen", bad[i], NULL), message);
        epcs_config_dispose(&config);
    }

    const char *args[2 * EPCS_MAX_LISTENERS + 3];
    for (int i = 0; i < EPCS_MAX_LISTENERS; i++) {
        args[2 * i] = "--listen";
        args[2 * i + 1] = "127.0.0.1:0";
    }
    args[2 * EPCS_MAX_LISTENERS] = NULL;
    result = parse_list(&config, args);
    EXPECT_INT(result->status, 0);
    EXPECT_INT(config.listen_count, EPCS_MAX_LISTENERS);
    epcs_config_dispose(&config);
    args[2 * EPCS_MAX_LISTENERS] = "--listen";
    args[2 * EPCS_MAX_LISTENERS + 1] = "127.0.0.1:0";
    args[2 * EPCS_MAX_LISTENERS + 2] = NULL;
    expect_refused(parse_list(&config, args), "epcsd: at most 16 --listen addresses\n");
    epcs_config_dispose(&config);
}

/* Every number option: its field read back in the option's unit. */
struct number_case {
    const char *name;
    long min, max;
};

static const struct number_case number_cases[] = {
    {"threads", 1, 256},           {"max-body", 64, 64L * 1024 * 1024},
    {"max-batch", 1, 100000},      {"max-batch-body", 64, 256L * 1024 * 1024},
    {"lua-memory", 1, 4096},       {"lua-budget", 10000, 1000000000L},
    {"shutdown-timeout", 1, 3600}, {"rate-limit", 0, 100000000L},
    {"max-streams", 1, 100},       {"max-connections", 0, 1000000L},
    {"audit-queue", 1, 10000000L}, {"verdict-cache", 0, 1L << 20},
    {"case-sweep", 10, 3600000L},
};

static double number_field(const struct epcs_config *config, const char *name)
{
    const struct {
        const char *name;
        double value;
    } fields[] = {
        {"threads", config->threads},
        {"max-body", (double)config->max_body},
        {"max-batch", (double)config->max_batch},
        {"max-batch-body", (double)config->max_batch_body},
        {"lua-memory", (double)(config->lua.memory_bytes >> 20)},
        {"lua-budget", (double)config->lua.instructions},
        {"shutdown-timeout", config->shutdown_seconds},
        {"rate-limit", config->rate_limit},
        {"max-streams", config->max_streams},
        {"max-connections", (double)config->max_connections},
        {"audit-queue", (double)config->audit_queue},
        {"verdict-cache", (double)config->verdict_cache},
        {"case-sweep", config->case_sweep_ms},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (strcmp(fields[i].name, name) == 0)
            return fields[i].value;
    }
    return -1;
}

static void expect_number_refused(const struct number_case *c, const char *text)
{
    struct epcs_config config;
    char flag[64], message[256];
    snprintf(flag, sizeof(flag), "--%s", c->name);
    snprintf(message, sizeof(message),
             "epcsd: --%s must be a whole number from %ld to %ld, got '%s'\n", c->name, c->min,
             c->max, text);
    expect_refused(parse(&config, flag, text, NULL), message);
    epcs_config_dispose(&config);
}

static void test_numbers(void)
{
    for (size_t i = 0; i < sizeof(number_cases) / sizeof(number_cases[0]); i++) {
        const struct number_case *c = &number_cases[i];
        char flag[64], text[32];
        snprintf(flag, sizeof(flag), "--%s", c->name);
        long bounds[] = {c->min, c->max};
        for (size_t b = 0; b < 2; b++) {
            struct epcs_config config;
            snprintf(text, sizeof(text), "%ld", bounds[b]);
            struct parsed *result = parse(&config, flag, text, NULL);
            EXPECT_INT(result->status, 0);
            EXPECT_STR(result->err, "");
            EXPECT(number_field(&config, c->name) == (double)bounds[b]);
            epcs_config_dispose(&config);
        }
        snprintf(text, sizeof(text), "%ld", c->min - 1);
        expect_number_refused(c, text);
        snprintf(text, sizeof(text), "%ld", c->max + 1);
        expect_number_refused(c, text);
        const char *garbage[] = {"", "zero", "12x", "0x10", "1.5", "99999999999999999999"};
        for (size_t g = 0; g < sizeof(garbage) / sizeof(garbage[0]); g++)
            expect_number_refused(c, garbage[g]);
    }
    /* MiB in, bytes stored. */
    struct epcs_config config;
    parse(&config, "--lua-memory", "3", NULL);
    EXPECT_INT(config.lua.memory_bytes, 3L << 20);
    epcs_config_dispose(&config);
}

static void test_choices(void)
{
    const struct {
        const char *flag, *text;
        int value;
        int is_audit;
    } cases[] = {
        {"--audit", "async", EPCS_AUDIT_ASYNC, 1},   {"--audit", "sync", EPCS_AUDIT_SYNC, 1},
        {"--audit", "off", EPCS_AUDIT_OFF, 1},       {"--log-level", "debug", EPCS_LOG_DEBUG, 0},
        {"--log-level", "info", EPCS_LOG_INFO, 0},   {"--log-level", "warn", EPCS_LOG_WARN, 0},
        {"--log-level", "error", EPCS_LOG_ERROR, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct epcs_config config;
        struct parsed *result = parse(&config, cases[i].flag, cases[i].text, NULL);
        EXPECT_INT(result->status, 0);
        EXPECT_INT(cases[i].is_audit ? config.audit : config.log_level, cases[i].value);
        epcs_config_dispose(&config);
    }
    struct epcs_config config;
    expect_refused(parse(&config, "--audit", "later", NULL),
                   "epcsd: --audit must be async, sync or off, got 'later'\n");
    expect_refused(parse(&config, "--audit", "ASYNC", NULL),
                   "epcsd: --audit must be async, sync or off, got 'ASYNC'\n");
    expect_refused(parse(&config, "--log-level", "loud", NULL),
                   "epcsd: --log-level must be debug, info, warn or error\n");
    epcs_config_dispose(&config);
}

/* A getopt error prints its line, then the usage, on stderr. */
static void expect_usage_error(struct parsed *result, const char *line)
{
    EXPECT_INT(result->status, -1);
    EXPECT_STR(result->out, "");
    size_t len = strlen(line);
    EXPECT(strncmp(result->err, line, len) == 0);
    EXPECT(strncmp(result->err + len, "usage: epcsd [options]\n", 23) == 0);
}

static void test_refusals(void)
{
    struct epcs_config config;
    expect_usage_error(parse(&config, "--bogus", NULL), "epcsd: unknown option '--bogus'\n");
    /* Ambiguous: --max-body, --max-batch, --max-streams, ... */
    expect_usage_error(parse(&config, "--max", "1", NULL), "epcsd: unknown option '--max'\n");
    expect_usage_error(parse(&config, "--threads", NULL),
                       "epcsd: option --threads needs a value\n");
    expect_usage_error(parse(&config, "--log-level", NULL),
                       "epcsd: option --log-level needs a value\n");
    expect_refused(parse(&config, "foo", NULL), "epcsd: unexpected argument 'foo'\n");
    expect_refused(parse(&config, "--threads", "2", "foo", "bar", NULL),
                   "epcsd: unexpected argument 'foo'\n");
    expect_refused(parse(&config, "--impact", "dir", NULL),
                   "epcsd: --impact and --checks go together\n");
    expect_refused(parse(&config, "--checks", "f", NULL),
                   "epcsd: --impact and --checks go together\n");
    expect_refused(parse(&config, "--tls-cert", "x.pem", NULL),
                   "epcsd: --tls-cert and --tls-key go together\n");
    expect_refused(parse(&config, "--tls-key", "x.pem", NULL),
                   "epcsd: --tls-cert and --tls-key go together\n");
    expect_refused(parse(&config, "--no-auth", "--keys", "k", NULL),
                   "epcsd: --no-auth asks for no keys; drop it or --keys\n");
    /* The rules between options are looked at in this order, one refusal at a time. */
    expect_refused(
        parse(&config, "--tls-cert", "a", "--no-auth", "--keys", "k", "--impact", "x", NULL),
        "epcsd: --impact and --checks go together\n");
    expect_refused(parse(&config, "--tls-cert", "a", "--no-auth", "--keys", "k", NULL),
                   "epcsd: --no-auth asks for no keys; drop it or --keys\n");
    /* Options are read in order: the first bad one stops the parse, --help after it unread. */
    expect_refused(parse(&config, "--threads", "0", "--help", NULL),
                   "epcsd: --threads must be a whole number from 1 to 256, got '0'\n");
    epcs_config_dispose(&config);
}

static void test_help_and_version(void)
{
    struct epcs_config config;
    struct parsed *result = parse(&config, "--help", "--threads", "0", NULL);
    EXPECT_INT(result->status, 1);
    EXPECT_STR(result->err, "");
    EXPECT(strncmp(result->out, "usage: epcsd [options]\n\n", 24) == 0);
    /* The column, a label that fills it, one too long for it, continuation lines, the end. */
    EXPECT_CONTAINS(result->out,
                    "\n  --rules DIR            Lua rule files (default ./lua_rules)\n");
    EXPECT_CONTAINS(result->out, "\n  --max-batch-body BYTES largest /v1/check/batch body "
                                 "(default 4194304)\n");
    EXPECT_CONTAINS(result->out, "\n  --impact DIR --checks FILE\n                         decide");
    EXPECT_CONTAINS(result->out, "\n  --max-streams N        requests of one HTTP/2 connection in "
                                 "progress at once;\n                         the others wait "
                                 "their turn (1-100, default 100)\n");
    EXPECT_CONTAINS(result->out, "\n  --lua-memory MIB       memory cap per Lua rule state "
                                 "(default 32)\n");
    EXPECT_CONTAINS(result->out, "(repeatable; default 127.0.0.1:8080;\n");
    const char *end = "\n  --help, --version\n\nepcsd keys create|revoke|list ... manages API "
                      "keys (epcsd keys --help).\n";
    size_t out_len = strlen(result->out), end_len = strlen(end);
    EXPECT(out_len > end_len && strcmp(result->out + out_len - end_len, end) == 0);
    epcs_config_dispose(&config);

    result = parse(&config, "--version", NULL);
    EXPECT_INT(result->status, 1);
    EXPECT_STR(result->out, "epcsd " EPCS_VERSION "\n");
    EXPECT_STR(result->err, "");
    epcs_config_dispose(&config);
}

/* The names in one column of --help or README: every "--name" in `text`, up to `end`. */
static size_t flag_names(const char *text, const char *end, char names[][32], size_t size)
{
    size_t count = 0;
    for (const char *p = strstr(text, "--"); p != NULL && p < end && count < size;
         p = strstr(p, "--")) {
        p += 2;
        size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz-");
        snprintf(names[count++], sizeof(names[0]), "%.*s", (int)len, p);
        p += len;
    }
    return count;
}

static int listed(char names[][32], size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], name) == 0)
            return 1;
    }
    return 0;
}

/* The names in --help's left column: a label ends at two spaces or at the end of its line. */
static size_t help_labels(const char *help, char names[][32], size_t size)
{
    size_t count = 0;
    for (const char *line = strstr(help, "\n  --"); line != NULL && count < size;
         line = strstr(line + 1, "\n  --")) {
        const char *label = line + 3, *end = strchr(label, '\n'), *gap = strstr(label, "  ");
        if (gap != NULL && (end == NULL || gap < end))
            end = gap;
        count += flag_names(label, end, names + count, size - count);
    }
    return count;
}

/* --help's block for `name`: from its line to the next option's, NULL when not there. */
static const char *help_block(const char *help, const char *name, const char **end)
{
    char start[48];
    snprintf(start, sizeof(start), "\n  --%s ", name);
    const char *block = strstr(help, start);
    if (block == NULL)
        return NULL;
    *end = strstr(block + 1, "\n  --");
    if (*end == NULL)
        *end = block + strlen(block);
    return block;
}

/* One README row: its flags' names, and its default when that is a plain number. */
static void check_readme_row(const char *row, const char *help, char help_names[][32],
                             size_t help_count)
{
    const char *first_end = strchr(row + 1, '|');
    char names[4][32];
    size_t count = flag_names(row, first_end, names, 4);
    EXPECT(count > 0);
    for (size_t i = 0; i < count; i++) {
        if (!listed(help_names, help_count, names[i]))
            fprintf(stderr, "README's flag --%s is not an option of epcsd --help\n", names[i]);
        EXPECT(listed(help_names, help_count, names[i]));
    }
    const char *value = first_end + 1 + strspn(first_end + 1, " ");
    size_t digits = strspn(value, "0123456789");
    if (count == 0 || digits == 0 || value[digits] != ' ')
        return;
    char expected[48];
    snprintf(expected, sizeof(expected), "default %.*s", (int)digits, value);
    const char *end = NULL, *block = help_block(help, names[0], &end);
    int found = block != NULL && strstr(block, expected) != NULL && strstr(block, expected) < end;
    if (!found)
        fprintf(stderr, "README gives --%s %s; --help does not say so\n", names[0], expected);
    EXPECT(found);
}

/* README's "epcsd flags" table and --help, made from the option table, name the same options
 * with the same numeric defaults; --help and --version, which the table leaves out, aside. */
static void test_readme_matches_help(void)
{
    struct epcs_config config;
    struct parsed *result = parse(&config, "--help", NULL);
    static char help[CAPTURE_SIZE];
    snprintf(help, sizeof(help), "%s", result->out);
    char help_names[64][32];
    size_t help_count = help_labels(help, help_names, 64);

    FILE *file = fopen(EPCS_README, "r");
    EXPECT(file != NULL);
    if (file == NULL)
        return;
    static char readme[1 << 18];
    size_t len = fread(readme, 1, sizeof(readme) - 1, file);
    readme[len] = '\0';
    fclose(file);
    const char *table = strstr(readme, "## epcsd flags\n");
    EXPECT(table != NULL);
    if (table == NULL)
        return;
    table = strstr(table, "|---|");
    EXPECT(table != NULL);
    char readme_names[64][32];
    size_t readme_count = 0;
    for (const char *row = table ? strchr(table, '\n') + 1 : NULL; row != NULL && row[0] == '|';) {
        const char *row_end = strchr(row, '\n');
        readme_count +=
            flag_names(row, strchr(row + 1, '|'), readme_names + readme_count, 64 - readme_count);
        check_readme_row(row, help, help_names, help_count);
        row = row_end != NULL ? row_end + 1 : NULL;
    }
    EXPECT(readme_count > 20);
    for (size_t i = 0; i < help_count; i++) {
        if (strcmp(help_names[i], "help") == 0 || strcmp(help_names[i], "version") == 0)
            continue;
        if (!listed(readme_names, readme_count, help_names[i]))
            fprintf(stderr, "--help's --%s is missing from README's flag table\n", help_names[i]);
        EXPECT(listed(readme_names, readme_count, help_names[i]));
    }
}

int main(void)
{
    test_defaults();
    test_text_options();
    test_flags();
    test_listen();
    test_numbers();
    test_choices();
    test_refusals();
    test_help_and_version();
    test_readme_matches_help();
    return epcs_test_report();
}
