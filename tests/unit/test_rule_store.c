/* The rule store: versions kept as first stored, manifests and blobs, the listing's order, the
 * activation history, restores, and what a damaged store answers. */
#include <fcntl.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pg_scratch.h"
#include "rule_store.h"
#include "store.h"
#include "testing.h"

static char scratch[] = "/tmp/epcs-test-rules-XXXXXX";
/* The backend's place: the scratch directory for files, a schema's connection string for
 * PostgreSQL. */
static char where[600];

/*
 * Every test runs against each backend of the rule store, through the ops of the handle it
 * opened; a second backend is one more row. What a test must do beneath the interface (damage
 * a version, lose a file, cut the history's last entry short, as a crash or a disk would) is
 * the row's, in that backend's terms; a damage the backend cannot suffer (a history line cut
 * short, where every activation is one transaction) is NULL and its step is left out.
 */
struct backend {
    const struct epcs_rule_store_ops *ops;
    /** Makes a fresh place for the backend into `where`. 0, or -1. */
    int (*prepare)(void);
    /** Replaces the manifest of `id` with text that is not one. 0, or -1. */
    int (*corrupt_manifest)(const char *dir, const char *id);
    /** Makes the manifest of `id` unreadable (not missing: present and failing). 0, or -1. */
    int (*unreadable_manifest)(const char *dir, const char *id);
    /** Removes the stored file with this SHA-256. 0, or -1. */
    int (*lose_blob)(const char *dir, const char *sha256);
    /** Appends the first half of an activation entry, as a crash in the middle would. 0, -1. */
    int (*cut_history)(const char *dir);
};

static int write_text(const char *path, const char *text, int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | flags, 0640);
    size_t len = strlen(text);
    int rc = fd >= 0 && write(fd, text, len) == (ssize_t)len ? 0 : -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

static int files_corrupt_manifest(const char *dir, const char *id)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/rulesets/%s.json", dir, id);
    return write_text(path, "{\"ruleset\": \"", O_TRUNC);
}

static int files_unreadable_manifest(const char *dir, const char *id)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/rulesets/%s.json", dir, id);
    /* Root reads any file whatever its mode; nobody reads a directory as a file. */
    return unlink(path) == 0 && mkdir(path, 0750) == 0 ? 0 : -1;
}

static int files_lose_blob(const char *dir, const char *sha256)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/rulesets/blobs/%s", dir, sha256);
    return unlink(path);
}

static int files_cut_history(const char *dir)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/rulesets/activations.jsonl", dir);
    return write_text(path, "{\"at\":\"2026-03-02T00:00:00.000000Z\",\"to\":\"rs-", O_APPEND);
}

static int files_prepare(void)
{
    snprintf(where, sizeof(where), "%s", scratch);
    return 0;
}

static int pg_prepare(void)
{
    return epcs_test_pg_schema("test_rule_store", where, sizeof(where));
}

static int pg_corrupt_manifest(const char *uri, const char *id)
{
    return epcs_test_pg_exec(uri,
                             "UPDATE epcs_rulesets SET manifest = '{\"ruleset\": \"'"
                             " WHERE id = $1",
                             id);
}

static int pg_lose_blob(const char *uri, const char *sha256)
{
    return epcs_test_pg_exec(uri, "DELETE FROM epcs_ruleset_blobs WHERE sha256 = $1", sha256);
}

static const struct backend backends[] = {
    {.ops = &epcs_rule_store_files,
     .prepare = files_prepare,
     .corrupt_manifest = files_corrupt_manifest,
     .unreadable_manifest = files_unreadable_manifest,
     .lose_blob = files_lose_blob,
     .cut_history = files_cut_history},
    /* A manifest row cannot be present and unreadable short of a damaged database, and an
     * activation commits whole or not at all. */
    {.ops = &epcs_rule_store_postgresql,
     .prepare = pg_prepare,
     .corrupt_manifest = pg_corrupt_manifest,
     .lose_blob = pg_lose_blob},
};

static const struct backend *backend;

/* Three versions whose ids sort the other way round from the order they are stored in, so
 * that the listing's order can only come from when each was stored. */
#define ID_FIRST "rs-ffff000000000001"
#define ID_SECOND "rs-8888000000000002"
#define ID_THIRD "rs-0000000000000003"

static char elections_src[] = "return { elections = {} }\n";
static char rules_a_src[] = "-- Art. 60: who may not campaign\nreturn {}\n";
static char rules_b_src[] = "-- Art. 60, amended\nreturn { amended = true }\n";

static struct epcs_rule_file make_file(char *name, char *source)
{
    struct epcs_rule_file file = {.name = name, .source = source, .length = strlen(source)};
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)source, file.length, digest);
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(file.sha256 + 2 * i, 3, "%02x", digest[i]);
    return file;
}

static struct epcs_rule_file files_a[2], files_b[2];

static void make_files(void)
{
    files_a[0] = make_file("elections.lua", elections_src);
    files_a[1] = make_file("campaign.lua", rules_a_src);
    files_b[0] = files_a[0];
    files_b[1] = make_file("campaign.lua", rules_b_src);
}

/* A ruleset as the store sees it: only its id, label, directory and files. */
static struct epcs_ruleset version(const char *id, char *label, char *dir,
                                   struct epcs_rule_file *files)
{
    struct epcs_ruleset ruleset = {.dir = dir, .label = label, .files = files, .file_count = 2};
    snprintf(ruleset.id, sizeof(ruleset.id), "%s", id);
    return ruleset;
}

static struct epcs_rule_store *open_store(void)
{
    char err[300] = "";
    struct epcs_rule_store *store = backend->ops->open(where, err, sizeof(err));
    EXPECT(store != NULL);
    if (store == NULL)
        fprintf(stderr, "cannot open the rule store: %s\n", err);
    else
        EXPECT(store->ops == backend->ops);
    return store;
}

/* What a call returned as JSON text, parsed; NULL (and a failed expectation) otherwise. */
static json_t *parse(struct epcs_buf *text)
{
    json_error_t error;
    json_t *value = json_loadb(text->data ? text->data : "", text->len, 0, &error);
    EXPECT(value != NULL);
    if (value == NULL)
        fprintf(stderr, "not JSON (%s): %.*s\n", error.text, (int)text->len, text->data);
    return value;
}

static const char *member(json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value != NULL ? value : "(missing)";
}

/* The listing, parsed; NULL when the call failed. */
static json_t *listing(struct epcs_rule_store *store)
{
    struct epcs_buf text = {0};
    int rc = store->ops->list(store, &text);
    EXPECT_INT(rc, 0);
    json_t *list = rc == 0 ? parse(&text) : NULL;
    epcs_buf_free(&text);
    return list;
}

/* Runs a call with stderr going to a file, for the messages a restore prints there. */
static int restore_capturing(struct epcs_rule_store *store, const char *id, const char *dir,
                             char *said, size_t said_size)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/stderr.txt", scratch);
    fflush(stderr);
    int saved = dup(STDERR_FILENO), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    dup2(fd, STDERR_FILENO);
    int rc = epcs_rule_store_restore(store, id, dir);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    FILE *file = fopen(path, "r");
    size_t got = file != NULL ? fread(said, 1, said_size - 1, file) : 0;
    said[got] = '\0';
    if (file != NULL)
        fclose(file);
    return rc;
}

static void test_empty_store(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    char id[24] = "untouched";
    struct epcs_buf out = {0};
    EXPECT_INT(epcs_rule_store_last_active(store, id), 1);
    EXPECT_STR(id, "untouched");
    EXPECT_INT(store->ops->manifest(store, ID_FIRST, &out), 1);
    /* Not the shape of an id: never looked up, whatever it names. */
    EXPECT_INT(store->ops->manifest(store, "../activations", &out), 1);
    EXPECT_INT(store->ops->manifest(store, "rs-FFFF000000000001", &out), 1);
    EXPECT_INT(store->ops->blob(store, files_a[0].sha256, &out), 1);
    EXPECT_INT(store->ops->blob(store, "../activations.jsonl", &out), 1);
    EXPECT_INT(out.len, 0);
    struct epcs_buf text = {0};
    EXPECT_INT(store->ops->list(store, &text), 0);
    EXPECT(epcs_buf_append(&text, "", 1) == 0);
    EXPECT_STR(text.data, "{\"versions\":[],\"activations\":[]}");
    epcs_buf_free(&text);
    epcs_buf_free(&out);
    store->ops->close(store);
}

static void test_save_keeps_the_first(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    struct epcs_ruleset first = version(ID_FIRST, "2024 text", "/rules/a", files_a);
    EXPECT_INT(store->ops->save(store, &first), 0);
    struct epcs_buf before = {0}, after = {0}, blob = {0};
    EXPECT_INT(store->ops->manifest(store, ID_FIRST, &before), 0);
    json_t *manifest = parse(&before);
    EXPECT_STR(member(manifest, "ruleset"), ID_FIRST);
    EXPECT_STR(member(manifest, "label"), "2024 text");
    EXPECT_STR(member(manifest, "directory"), "/rules/a");
    EXPECT_INT(strlen(member(manifest, "stored_at")), strlen("2026-03-02T00:00:00.000000Z"));
    json_t *files = json_object_get(manifest, "files");
    EXPECT_INT(json_array_size(files), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *file = json_array_get(files, i);
        EXPECT_STR(member(file, "name"), files_a[i].name);
        EXPECT_STR(member(file, "sha256"), files_a[i].sha256);
        EXPECT_INT(json_integer_value(json_object_get(file, "bytes")), files_a[i].length);
    }
    json_decref(manifest);

    /* The same id again, from elsewhere and named otherwise: the first storing stands. */
    struct epcs_ruleset again = version(ID_FIRST, "renamed", "/rules/elsewhere", files_a);
    EXPECT_INT(store->ops->save(store, &again), 0);
    EXPECT_INT(store->ops->manifest(store, ID_FIRST, &after), 0);
    EXPECT_INT(after.len, before.len);
    EXPECT(after.len == before.len && memcmp(after.data, before.data, after.len) == 0);

    EXPECT_INT(store->ops->blob(store, files_a[1].sha256, &blob), 0);
    EXPECT_INT(blob.len, files_a[1].length);
    EXPECT(blob.len == files_a[1].length && memcmp(blob.data, rules_a_src, blob.len) == 0);
    epcs_buf_free(&before);
    epcs_buf_free(&after);
    epcs_buf_free(&blob);
    store->ops->close(store);
}

static void test_list_in_storing_order(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    /* ID_FIRST is stored already (test_save_keeps_the_first). */
    struct epcs_ruleset second = version(ID_SECOND, "2024 amendment", "/rules/b", files_b);
    struct epcs_ruleset third = version(ID_THIRD, NULL, "/rules/c", files_a);
    EXPECT_INT(store->ops->save(store, &second), 0);
    EXPECT_INT(store->ops->save(store, &third), 0);
    /* A file both versions hold is one stored file, and each version's own is there too. */
    struct epcs_buf blob = {0};
    EXPECT_INT(store->ops->blob(store, files_b[1].sha256, &blob), 0);
    EXPECT(blob.len == files_b[1].length && memcmp(blob.data, rules_b_src, blob.len) == 0);
    epcs_buf_free(&blob);

    json_t *list = listing(store);
    json_t *versions = json_object_get(list, "versions");
    EXPECT_INT(json_array_size(versions), 3);
    EXPECT_STR(member(json_array_get(versions, 0), "ruleset"), ID_FIRST);
    EXPECT_STR(member(json_array_get(versions, 1), "ruleset"), ID_SECOND);
    EXPECT_STR(member(json_array_get(versions, 2), "ruleset"), ID_THIRD);
    EXPECT_STR(member(json_array_get(versions, 0), "label"), "2024 text");
    EXPECT_STR(member(json_array_get(versions, 1), "label"), "2024 amendment");
    EXPECT(json_is_null(json_object_get(json_array_get(versions, 2), "label")));
    EXPECT(strcmp(member(json_array_get(versions, 0), "stored_at"),
                  member(json_array_get(versions, 1), "stored_at")) < 0);
    EXPECT(strcmp(member(json_array_get(versions, 1), "stored_at"),
                  member(json_array_get(versions, 2), "stored_at")) < 0);
    EXPECT_INT(json_array_size(json_object_get(list, "activations")), 0);
    json_decref(list);
    store->ops->close(store);
}

static void expect_activation(json_t *entry, const char *from, const char *to, const char *by,
                              const char *why)
{
    if (from == NULL)
        EXPECT(json_is_null(json_object_get(entry, "from")));
    else
        EXPECT_STR(member(entry, "from"), from);
    EXPECT_STR(member(entry, "to"), to);
    EXPECT_STR(member(entry, "by"), by);
    EXPECT_STR(member(entry, "why"), why);
    EXPECT_INT(strlen(member(entry, "at")), strlen("2026-03-02T00:00:00.000000Z"));
}

static void test_activation_history(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    char id[24] = "";
    EXPECT_INT(epcs_rule_store_record_activation(store, NULL, ID_FIRST, "start", "started with a"),
               0);
    EXPECT_INT(epcs_rule_store_last_active(store, id), 0);
    EXPECT_STR(id, ID_FIRST);
    EXPECT_INT(
        epcs_rule_store_record_activation(store, ID_FIRST, ID_SECOND, "key ops-1", "amended"), 0);
    EXPECT_INT(epcs_rule_store_last_active(store, id), 0);
    EXPECT_STR(id, ID_SECOND);
    EXPECT_INT(
        epcs_rule_store_record_activation(store, ID_SECOND, ID_FIRST, "SIGHUP", "rolled back"), 0);
    EXPECT_INT(epcs_rule_store_last_active(store, id), 0);
    EXPECT_STR(id, ID_FIRST);

    /* The last entry a crash cut short is no activation: the one before it stands. */
    if (backend->cut_history != NULL) {
        EXPECT_INT(backend->cut_history(where), 0);
        EXPECT_INT(epcs_rule_store_last_active(store, id), 0);
        EXPECT_STR(id, ID_FIRST);
    }

    json_t *list = listing(store);
    json_t *history = json_object_get(list, "activations");
    EXPECT_INT(json_array_size(history), 3);
    expect_activation(json_array_get(history, 0), NULL, ID_FIRST, "start", "started with a");
    expect_activation(json_array_get(history, 1), ID_FIRST, ID_SECOND, "key ops-1", "amended");
    expect_activation(json_array_get(history, 2), ID_SECOND, ID_FIRST, "SIGHUP", "rolled back");
    EXPECT(strcmp(member(json_array_get(history, 0), "at"),
                  member(json_array_get(history, 1), "at")) < 0);
    EXPECT(strcmp(member(json_array_get(history, 1), "at"),
                  member(json_array_get(history, 2), "at")) < 0);
    json_decref(list);
    store->ops->close(store);

    /* Another handle on the same data reads the same history. */
    store = open_store();
    if (store == NULL)
        return;
    EXPECT_INT(epcs_rule_store_last_active(store, id), 0);
    EXPECT_STR(id, ID_FIRST);

    /* The activation after the cut is kept whole: it starts on a line of its own rather than
     * completing the cut entry, which would lose both. */
    EXPECT_INT(epcs_rule_store_record_activation(store, ID_FIRST, ID_SECOND, "directory watch",
                                                 "after the crash"),
               0);
    EXPECT_INT(epcs_rule_store_last_active(store, id), 0);
    EXPECT_STR(id, ID_SECOND);
    list = listing(store);
    history = json_object_get(list, "activations");
    EXPECT_INT(json_array_size(history), 4);
    expect_activation(json_array_get(history, 3), ID_FIRST, ID_SECOND, "directory watch",
                      "after the crash");
    json_decref(list);
    store->ops->close(store);
}

/* The content of `dir`/`name`, NUL-terminated, into `out`; -1 when it cannot be read. */
static long read_back(const char *dir, const char *name, char *out, size_t size)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return -1;
    size_t got = fread(out, 1, size - 1, file);
    out[got] = '\0';
    fclose(file);
    return (long)got;
}

static void test_restore(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    char dir[300], text[512], said[512];
    snprintf(dir, sizeof(dir), "%s/restored", scratch);
    EXPECT_INT(restore_capturing(store, ID_SECOND, dir, said, sizeof(said)), 0);
    EXPECT_STR(said, "");
    EXPECT_INT(read_back(dir, "elections.lua", text, sizeof(text)), strlen(elections_src));
    EXPECT_STR(text, elections_src);
    EXPECT_INT(read_back(dir, "campaign.lua", text, sizeof(text)), strlen(rules_b_src));
    EXPECT_STR(text, rules_b_src);
    EXPECT_INT(read_back(dir, "LABEL", text, sizeof(text)), strlen("2024 amendment\n"));
    EXPECT_STR(text, "2024 amendment\n");

    /* Into the same directory again: each file replaced by the other version's. */
    EXPECT_INT(restore_capturing(store, ID_FIRST, dir, said, sizeof(said)), 0);
    EXPECT_INT(read_back(dir, "campaign.lua", text, sizeof(text)), strlen(rules_a_src));
    EXPECT_STR(text, rules_a_src);
    EXPECT_INT(read_back(dir, "LABEL", text, sizeof(text)), strlen("2024 text\n"));
    EXPECT_STR(text, "2024 text\n");

    char expected[400];
    snprintf(expected, sizeof(expected), "epcsd: no stored ruleset rs-1234567890abcdef in %s\n",
             store->ops->where(store));
    EXPECT_INT(restore_capturing(store, "rs-1234567890abcdef", dir, said, sizeof(said)), -1);
    EXPECT_CONTAINS(said, expected);
    store->ops->close(store);
}

static void test_damaged_store(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    char dir[300], said[512];
    snprintf(dir, sizeof(dir), "%s/damaged", scratch);
    struct epcs_buf out = {0};

    /* A version one of whose files is gone is not restored as if whole. */
    EXPECT_INT(backend->lose_blob(where, files_b[1].sha256), 0);
    EXPECT_INT(store->ops->blob(store, files_b[1].sha256, &out), 1);
    EXPECT_INT(restore_capturing(store, ID_SECOND, dir, said, sizeof(said)), -1);
    EXPECT_CONTAINS(said, "epcsd: stored ruleset " ID_SECOND " is incomplete");

    /* A manifest that is not one: handed over as stored, never restored, left out of the list. */
    EXPECT_INT(backend->corrupt_manifest(where, ID_THIRD), 0);
    epcs_buf_reset(&out);
    EXPECT_INT(store->ops->manifest(store, ID_THIRD, &out), 0);
    EXPECT(out.len == strlen("{\"ruleset\": \"") &&
           memcmp(out.data, "{\"ruleset\": \"", out.len) == 0);
    EXPECT_INT(restore_capturing(store, ID_THIRD, dir, said, sizeof(said)), -1);
    EXPECT_CONTAINS(said, "epcsd: no stored ruleset " ID_THIRD " in ");

    /* A manifest that cannot be read is an error, not an unknown version. */
    if (backend->unreadable_manifest != NULL) {
        EXPECT_INT(backend->unreadable_manifest(where, ID_FIRST), 0);
        epcs_buf_reset(&out);
        EXPECT_INT(store->ops->manifest(store, ID_FIRST, &out), -1);
    }

    json_t *list = listing(store);
    json_t *versions = json_object_get(list, "versions");
    if (backend->unreadable_manifest != NULL) {
        EXPECT_INT(json_array_size(versions), 1);
        EXPECT_STR(member(json_array_get(versions, 0), "ruleset"), ID_SECOND);
    } else {
        EXPECT_INT(json_array_size(versions), 2);
        EXPECT_STR(member(json_array_get(versions, 0), "ruleset"), ID_FIRST);
        EXPECT_STR(member(json_array_get(versions, 1), "ruleset"), ID_SECOND);
    }
    /* The four activations test_activation_history recorded, the cut entry left out. */
    EXPECT_INT(json_array_size(json_object_get(list, "activations")), 4);
    json_decref(list);
    epcs_buf_free(&out);
    store->ops->close(store);
}

static void test_epochs(void)
{
    struct epcs_rule_store *store = open_store();
    if (store == NULL)
        return;
    /* The four activations recorded so far. */
    char id[24] = "";
    uint64_t epoch = 0, now = 0;
    EXPECT_INT(epcs_rule_store_active(store, id, &epoch), 0);
    EXPECT_STR(id, ID_SECOND);
    EXPECT_INT(epoch, 4);

    /* Decided on epoch 4: recorded, epoch 5. */
    struct epcs_rule_activation activation = {.from = ID_SECOND,
                                              .to = ID_THIRD,
                                              .by = "key staff-1",
                                              .why = "POST /v1/admin/rules/activate",
                                              .expected_epoch = 4};
    EXPECT_INT(epcs_rule_store_activate(store, &activation, &now), 0);
    EXPECT_INT(now, 5);
    /* Decided on epoch 4 as well, by someone who had not seen the other: refused, nothing
     * recorded, told the epoch it missed. */
    activation.to = ID_FIRST;
    EXPECT_INT(epcs_rule_store_activate(store, &activation, &now), 1);
    EXPECT_INT(now, 5);
    EXPECT_INT(epcs_rule_store_active(store, id, &epoch), 0);
    EXPECT_STR(id, ID_THIRD);
    EXPECT_INT(epoch, 5);
    /* A reload of the rules directory wins whatever came between. */
    EXPECT_INT(epcs_rule_store_record_activation(store, ID_THIRD, ID_SECOND, "directory watch",
                                                 "the files changed"),
               0);
    EXPECT_INT(epcs_rule_store_active(store, id, &epoch), 0);
    EXPECT_STR(id, ID_SECOND);
    EXPECT_INT(epoch, 6);
    json_t *list = listing(store);
    EXPECT_INT(json_array_size(json_object_get(list, "activations")), 6);
    json_decref(list);
    store->ops->close(store);
}

/* ---- following another process's activations ---------------------------------------------- */

struct heard {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int calls;
};

static void on_changed(void *ctx)
{
    struct heard *heard = ctx;
    pthread_mutex_lock(&heard->lock);
    heard->calls++;
    pthread_cond_broadcast(&heard->changed);
    pthread_mutex_unlock(&heard->lock);
}

/* Waits until `heard` has more than `calls` calls or `ms` pass; the milliseconds it took. */
static long wait_heard(struct heard *heard, int calls, long ms)
{
    struct timespec start, until;
    clock_gettime(CLOCK_REALTIME, &start);
    until = start;
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&heard->lock);
    while (heard->calls <= calls &&
           pthread_cond_timedwait(&heard->changed, &heard->lock, &until) == 0)
        ;
    int got = heard->calls > calls;
    pthread_mutex_unlock(&heard->lock);
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    long took = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    return got ? took : -1;
}

static void test_following(void)
{
    struct epcs_rule_store *follower = open_store(), *other = open_store();
    if (follower == NULL || other == NULL)
        return;
    struct heard heard = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
    EXPECT_INT(epcs_rule_store_follow(follower, on_changed, &heard), 0);
    if (strcmp(backend->ops->name, "files") == 0) {
        /* One epcsd per data directory: nothing to follow, never called. */
        EXPECT_INT(epcs_rule_store_record_activation(other, ID_SECOND, ID_FIRST, "test", "follow"),
                   0);
        EXPECT_INT(wait_heard(&heard, 0, 300), -1);
    } else {
        /* The follower reads the active row once it listens; then an activation by another
         * handle (another replica) reaches it as it commits, well before the 2 s poll. */
        EXPECT(wait_heard(&heard, 0, 5000) >= 0);
        pthread_mutex_lock(&heard.lock);
        int before = heard.calls;
        pthread_mutex_unlock(&heard.lock);
        EXPECT_INT(epcs_rule_store_record_activation(other, ID_SECOND, ID_FIRST, "test", "follow"),
                   0);
        long took = wait_heard(&heard, before, 5000);
        fprintf(stderr, "an activation reached the follower in %ld ms\n", took);
        EXPECT(took >= 0 && took < 250);
        char id[24] = "";
        uint64_t epoch = 0;
        EXPECT_INT(epcs_rule_store_active(follower, id, &epoch), 0);
        EXPECT_STR(id, ID_FIRST);
        EXPECT_INT(epoch, 7);
        /* Without announcements (the listening session ended, as a restart of the server
         * would end it), it reconnects and reads again by itself. */
        pthread_mutex_lock(&heard.lock);
        before = heard.calls;
        pthread_mutex_unlock(&heard.lock);
        EXPECT_INT(epcs_test_pg_exec(where,
                                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                     " WHERE query LIKE 'LISTEN%'",
                                     NULL),
                   0);
        EXPECT(wait_heard(&heard, before, 5000) >= 0);
    }
    epcs_rule_store_unfollow(follower);
    /* Stopped: no call after unfollow returns. */
    pthread_mutex_lock(&heard.lock);
    int stopped_at = heard.calls;
    pthread_mutex_unlock(&heard.lock);
    EXPECT_INT(epcs_rule_store_record_activation(other, ID_FIRST, ID_SECOND, "test", "stopped"), 0);
    EXPECT_INT(wait_heard(&heard, stopped_at, 300), -1);
    follower->ops->close(follower);
    other->ops->close(other);
}

int main(void)
{
    make_files();
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        backend = &backends[i];
        if (mkdtemp(strcpy(scratch, "/tmp/epcs-test-rules-XXXXXX")) == NULL ||
            backend->prepare() != 0)
            return 1;
        fprintf(stderr, "rule store backend %s\n", backend->ops->name);
        /* In order: each test starts from what the ones before it stored. */
        test_empty_store();
        test_save_keeps_the_first();
        test_list_in_storing_order();
        test_activation_history();
        test_restore();
        test_damaged_store();
        test_epochs();
        test_following();
        char command[128];
        snprintf(command, sizeof(command), "rm -rf %s", scratch);
        if (system(command) != 0)
            return 1;
    }
    return epcs_test_report();
}
