#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "dates.h"
#include "plugin_loader.h"
#include "ruleset.h"
#include "testing.h"

static char log_path[] = "/tmp/epcs-test-loader-log-XXXXXX";
static int saved_stderr = -1;

/* The loader reports refusals on stderr; the test reads them back from a file. */
static void capture_stderr(void)
{
    fflush(stderr);
    int fd = open(log_path, O_WRONLY | O_TRUNC);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static const char *captured(void)
{
    static char text[8192];
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    FILE *file = fopen(log_path, "r");
    size_t len = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[len] = '\0';
    return text;
}

/* Loads one directory with `host`, returning the number of plugins that loaded and the log. */
static size_t load_with(const char *dir, const struct epcs_host_api *host, const char **log,
                        struct epcs_plugin_set **out)
{
    capture_stderr();
    struct epcs_plugin_set *set = epcs_plugins_load(dir, host);
    *log = captured();
    size_t count = set != NULL ? set->count : (size_t)-1;
    if (out != NULL)
        *out = set;
    else
        epcs_plugins_destroy(set);
    return count;
}

/* Loads one directory with epcsd's host API table. */
static size_t load(const char *dir, const char **log, struct epcs_plugin_set **out)
{
    return load_with(dir, &epcs_host_api_v1, log, out);
}

static void expect_refused(const char *name, const char *reason)
{
    char dir[512];
    const char *log;
    snprintf(dir, sizeof(dir), "%s/%s", EPCS_TEST_PLUGIN_DIR, name);
    EXPECT_INT(load(dir, &log, NULL), 0);
    char line[768];
    snprintf(line, sizeof(line), "\"component\":\"loader\",\"msg\":\"refused %s/%s.so: %s", dir,
             name, reason);
    EXPECT_CONTAINS(log, line);
}

static void test_each_broken_plugin_refused(void)
{
    expect_refused("wrong_abi", "plugin ABI version 99, epcsd speaks 1");
    expect_refused("short_struct", "descriptor is 56 bytes, ABI 1 needs at least 96");
    expect_refused("null_descriptor", "epcs_plugin_entry returned no descriptor");
    expect_refused("no_entry", "no epcs_plugin_entry symbol");
    expect_refused("missing_callback", "init, evaluate and calendar callbacks are required");
    expect_refused("bad_name", "name must be 1-32 characters of a-z, 0-9 and '_'");
    expect_refused("init_fails", "init failed");
}

static void test_good_plugin_loads(void)
{
    char dir[512];
    const char *log;
    struct epcs_plugin_set *set;
    snprintf(dir, sizeof(dir), "%s/good", EPCS_TEST_PLUGIN_DIR);
    EXPECT_INT(load(dir, &log, &set), 1);
    EXPECT_STR(set->items[0].desc->name, "test_area");
    EXPECT_CONTAINS(log, "loaded area 'test_area' (Art. 0)");
    const struct epcs_vocab_entry *colour = epcs_vocab_find(set->vocab, "activity.colour");
    EXPECT(colour != NULL && colour->type == EPCS_FACT_ENUM && colour->value_count == 2);
    EXPECT(epcs_vocab_find(set->vocab, "actor.kind") != NULL);
    EXPECT_INT(epcs_plugins_find(set, "test_area", 9), 0);
    EXPECT_INT(epcs_plugins_find(set, "test_are", 8), -1);
    EXPECT(epcs_plugin_covers(set->items[0].desc, "post", 4));
    EXPECT(!epcs_plugin_covers(set->items[0].desc, "pos", 3));
    epcs_plugins_destroy(set);
}

/* Reads facts decoded from JSON into `zone` against the set's vocabulary, the act dated
 * `date`. */
static void decode_facts(const struct epcs_plugin_set *set, msgpack_zone *zone,
                         const char *actor_json, const char *activity_json, const char *date,
                         struct epcs_facts *facts)
{
    msgpack_object actor, activity;
    struct epcs_decode_error error;
    EXPECT_INT(epcs_json_decode(actor_json, strlen(actor_json), zone, &actor, &error), 0);
    EXPECT_INT(epcs_json_decode(activity_json, strlen(activity_json), zone, &activity, &error), 0);
    EXPECT_INT(epcs_facts_read(facts, set->vocab, &actor, &activity), 0);
    EXPECT_INT(epcs_date_parse(date, strlen(date), &facts->date), 0);
}

/* Calls the set's first plugin's validate on facts decoded from JSON; returns what validate
 * returned, with the refusal in *facts. */
static int validate(const struct epcs_plugin_set *set, const char *actor_json,
                    const char *activity_json, const char *date, struct epcs_facts *facts)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    decode_facts(set, &zone, actor_json, activity_json, date, facts);
    int status = set->items[0].desc->validate(set->items[0].state, facts);
    msgpack_zone_destroy(&zone);
    return status;
}

/* A plugin built against ABI 1's header, whose fact value has no size, loads into this host
 * and reads every kind of fact exactly as it did, and nothing lands past its struct (the
 * plugin checks guard bytes; ASan watches its exact-size heap copy). */
static void test_abi1_plugin_served(void)
{
    char dir[512];
    const char *log;
    struct epcs_plugin_set *set;
    struct epcs_facts facts;
    snprintf(dir, sizeof(dir), "%s/abi1", EPCS_TEST_PLUGIN_DIR);
    EXPECT_INT(load(dir, &log, &set), 1);
    EXPECT_CONTAINS(log, "loaded area 'publication_ceremony' (Art. 103(5))");
    EXPECT_INT(validate(set, "{\"kind\":\"publisher\"}",
                        "{\"kind\":\"publication_ceremony\",\"book_related_to_candidate\":true,"
                        "\"abi_day\":\"2024-04-10\",\"abi_probe\":\"echo\"}",
                        "2024-02-01", &facts),
               -1);
    EXPECT(facts.rejected);
    EXPECT_STR(facts.field, "activity.abi_probe");
    EXPECT_STR(facts.message, "read: actor.kind=2:publisher activity.kind=2:publication_ceremony "
                              "activity.book_related_to_candidate=bool:1 "
                              "activity.abi_day=date:19823:2024-04-10 date=date:19754: "
                              "activity.abi_probe=4:echo");
    /* Absent facts stay absent; without the probe the facts pass on to the rules. */
    EXPECT_INT(validate(set, "{}", "{\"book_related_to_candidate\":false}", "2024-01-10", &facts),
               0);
    EXPECT(!facts.rejected);
    EXPECT_INT(validate(set, "{}", "{\"abi_probe\":\"echo\"}", "1970-01-01", &facts), -1);
    EXPECT_STR(facts.message, "read: actor.kind=absent activity.kind=absent "
                              "activity.book_related_to_candidate=absent activity.abi_day=absent "
                              "date=date:0: activity.abi_probe=4:echo");
    epcs_plugins_destroy(set);
}

/* A fact value of struct_size bytes followed by guard bytes: what a plugin built against a
 * shorter or longer struct epcs_fact_value hands read_fact. */
struct sized_value {
    union {
        struct epcs_fact_value value;
        unsigned char bytes[sizeof(struct epcs_fact_value) + 16];
    } u;
};

static int read_sized(const struct epcs_facts *facts, const char *path, uint32_t size,
                      struct sized_value *out)
{
    memset(out, 0xA5, sizeof(*out));
    out->u.value.struct_size = size;
    return epcs_host_api_v1.read_fact(facts, path, &out->u.value);
}

/* Whether every byte of `out` from `from` on still holds the guard. */
static int untouched_from(const struct sized_value *out, size_t from)
{
    for (size_t i = from; i < sizeof(out->u.bytes); i++) {
        if (out->u.bytes[i] != 0xA5)
            return 0;
    }
    return 1;
}

/* read_fact writes only the members within the caller's struct_size, whether the caller's
 * struct is older (shorter) or newer (longer) than the host's, and never struct_size. */
static void test_read_fact_honours_struct_size(void)
{
    char dir[512];
    const char *log;
    struct epcs_plugin_set *set;
    struct epcs_facts facts;
    struct sized_value out;
    msgpack_zone zone;
    snprintf(dir, sizeof(dir), "%s/abi1", EPCS_TEST_PLUGIN_DIR);
    EXPECT_INT(load(dir, &log, &set), 1);
    msgpack_zone_init(&zone, 1024);
    decode_facts(set, &zone, "{\"kind\":\"publisher\"}",
                 "{\"book_related_to_candidate\":true,\"abi_day\":\"2024-04-10\"}", "2024-02-01",
                 &facts);

    const uint32_t short_size = offsetof(struct epcs_fact_value, string);
    EXPECT_INT(read_sized(&facts, "activity.book_related_to_candidate", short_size, &out), 1);
    EXPECT_INT(out.u.value.struct_size, short_size);
    EXPECT_INT(out.u.value.type, EPCS_FACT_BOOL);
    EXPECT_INT(out.u.value.boolean, 1);
    EXPECT(untouched_from(&out, short_size));
    /* A plugin whose header ended the struct after `boolean`, its value alone on the heap:
     * AddressSanitizer reports any write past it. */
    struct older_fact_value {
        uint32_t struct_size;
        enum epcs_fact_type type;
        int boolean;
    } *older = malloc(sizeof(*older));
    older->struct_size = sizeof(*older);
    older->type = 0;
    EXPECT_INT(epcs_host_api_v1.read_fact(&facts, "actor.kind", (struct epcs_fact_value *)older),
               1);
    EXPECT_INT(older->type, EPCS_FACT_ENUM);
    EXPECT_INT(older->struct_size, sizeof(*older));
    free(older);

    const uint32_t long_size = sizeof(out.u.bytes);
    EXPECT_INT(read_sized(&facts, "activity.abi_day", long_size, &out), 1);
    EXPECT_INT(out.u.value.struct_size, long_size);
    EXPECT_INT(out.u.value.type, EPCS_FACT_DATE);
    EXPECT_INT(out.u.value.day, 19823);
    EXPECT_INT(out.u.value.length, 10);
    EXPECT(out.u.value.string != NULL && memcmp(out.u.value.string, "2024-04-10", 10) == 0);
    EXPECT(untouched_from(&out, sizeof(struct epcs_fact_value)));

    EXPECT_INT(read_sized(&facts, "date", 0, &out), 1);
    EXPECT_INT(out.u.value.struct_size, 0);
    EXPECT(untouched_from(&out, sizeof(out.u.value.struct_size)));
    EXPECT_INT(read_sized(&facts, "activity.abi_probe", long_size, &out), 0);
    EXPECT(untouched_from(&out, sizeof(out.u.value.struct_size)));

    /* What plugins call: the struct's size set for them. */
    struct epcs_fact_value value;
    EXPECT_INT(epcs_fact_read(&epcs_host_api_v1, &facts, "date", &value), 1);
    EXPECT_INT(value.type, EPCS_FACT_DATE);
    EXPECT_INT(value.day, 19754);
    EXPECT(epcs_fact_equals(&epcs_host_api_v1, &facts, "actor.kind", "publisher"));
    EXPECT(!epcs_fact_equals(&epcs_host_api_v1, &facts, "actor.kind", "publishe"));
    EXPECT(!epcs_fact_equals(&epcs_host_api_v1, &facts, "activity.abi_probe", ""));
    msgpack_zone_destroy(&zone);
    epcs_plugins_destroy(set);
}

static void link_into(const char *dir, const char *target, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    EXPECT_INT(symlink(target, path), 0);
}

/* Next to the real deepfake plugin: a second "deepfake", a fact type clash and a file that is
 * not a shared object are refused, and deepfake still loads. */
static void test_conflicts_with_real_plugin(void)
{
    char dir[] = "/tmp/epcs-test-plugins-XXXXXX";
    const char *log;
    struct epcs_plugin_set *set;
    EXPECT(mkdtemp(dir) != NULL);
    link_into(dir, EPCS_PLUGIN_DIR "/deepfake.so", "deepfake.so");
    link_into(dir, EPCS_TEST_PLUGIN_DIR "/duplicate/duplicate.so", "duplicate.so");
    link_into(dir, EPCS_TEST_PLUGIN_DIR "/fact_conflict/fact_conflict.so", "fact_conflict.so");
    char garbage[600];
    snprintf(garbage, sizeof(garbage), "%s/garbage.so", dir);
    FILE *file = fopen(garbage, "w");
    fputs("this is not an ELF object\n", file);
    fclose(file);

    EXPECT_INT(load(dir, &log, &set), 1);
    EXPECT_STR(set->items[0].desc->name, "deepfake");
    EXPECT_CONTAINS(log, "duplicate.so: area 'deepfake' is already provided by");
    EXPECT_CONTAINS(log, "fact_conflict.so: fact 'activity.labeled' is one of its listed values "
                         "here but a boolean in an earlier plugin");
    EXPECT_CONTAINS(log, "garbage.so: ");
    /* A refused plugin leaves no trace in the request vocabulary. */
    EXPECT(epcs_vocab_find(set->vocab, "activity.colour") == NULL);
    epcs_plugins_destroy(set);

    char command[700];
    snprintf(command, sizeof(command), "rm -rf '%s'", dir);
    EXPECT_INT(system(command), 0);
}

/* A plugin built against this header, in an epcsd whose host table ends before read_fact (one
 * built before it existed), refuses to start and says why. */
static void test_plugin_refuses_older_host(void)
{
    char dir[] = "/tmp/epcs-test-plugins-XXXXXX";
    const char *log;
    struct epcs_host_api older = epcs_host_api_v1;
    older.struct_size = offsetof(struct epcs_host_api, read_fact);
    EXPECT(mkdtemp(dir) != NULL);
    link_into(dir, EPCS_PLUGIN_DIR "/deepfake.so", "deepfake.so");
    EXPECT_INT(load_with(dir, &older, &log, NULL), 0);
    EXPECT_CONTAINS(log, "\"component\":\"plugin\",\"msg\":\"epcsd's host API is 48 bytes, "
                         "this plugin's header needs 56: a newer epcsd is needed\"");
    EXPECT_CONTAINS(log, "deepfake.so: init failed");
    EXPECT_INT(load_with(dir, &epcs_host_api_v1, &log, NULL), 1);

    char command[700];
    snprintf(command, sizeof(command), "rm -rf '%s'", dir);
    EXPECT_INT(system(command), 0);
}

static void test_unreadable_dir(void)
{
    const char *log;
    EXPECT_INT(load("/nonexistent/epcs/plugins", &log, NULL), (size_t)-1);
    EXPECT_CONTAINS(log, "cannot read plugin directory /nonexistent/epcs/plugins");
}

int main(void)
{
    int fd = mkstemp(log_path);
    close(fd);
    test_each_broken_plugin_refused();
    test_good_plugin_loads();
    test_abi1_plugin_served();
    test_read_fact_honours_struct_size();
    test_conflicts_with_real_plugin();
    test_plugin_refuses_older_host();
    test_unreadable_dir();
    unlink(log_path);
    return epcs_test_report();
}
