#include "rule_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dates.h"
#include "files.h"
#include "log.h"
#include "rule_versions.h"
#include "store.h"

/*
 * The rule store's file backend (epcs_rule_store_files, store.h): callers reach it through the
 * epcs_rule_store_* calls of store.c. Its only state is the data directory, which no call
 * changes, so calls from many threads at once share nothing but the files, and those are
 * replaced whole (files.h) or appended to in one write.
 */
struct file_store {
    struct epcs_rule_store base;
    char *data_dir;
    /** <data>/rulesets, what messages name. */
    char *rulesets;
};

static const char *data_dir_of(struct epcs_rule_store *store)
{
    return ((struct file_store *)store)->data_dir;
}

static struct epcs_rule_store *files_open(const char *data_dir, char *err, size_t err_size)
{
    struct file_store *store = calloc(1, sizeof(*store));
    size_t size = strlen(data_dir) + sizeof("/rulesets");
    if (store == NULL || (store->data_dir = strdup(data_dir)) == NULL ||
        (store->rulesets = malloc(size)) == NULL) {
        snprintf(err, err_size, "out of memory opening the rule store under %s", data_dir);
        if (store != NULL)
            free(store->data_dir);
        free(store);
        return NULL;
    }
    snprintf(store->rulesets, size, "%s/rulesets", data_dir);
    store->base.ops = &epcs_rule_store_files;
    return &store->base;
}

static void files_close(struct epcs_rule_store *base)
{
    struct file_store *store = (struct file_store *)base;
    free(store->data_dir);
    free(store->rulesets);
    free(store);
}

#define ACTIVATIONS_FILE "activations.jsonl"

static int read_file(const char *path, struct epcs_buf *out)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return errno == ENOENT ? 1 : -1;
    char chunk[8192];
    size_t got;
    int failed = 0;
    while (!failed && (got = fread(chunk, 1, sizeof(chunk), file)) > 0)
        failed = epcs_buf_append(out, chunk, got) != 0;
    failed |= ferror(file);
    fclose(file);
    return failed ? -1 : 0;
}

static int files_save(struct epcs_rule_store *store, const struct epcs_ruleset *ruleset)
{
    const char *data_dir = data_dir_of(store);
    char root[4096], path[4200];
    snprintf(root, sizeof(root), "%s/rulesets", data_dir);
    snprintf(path, sizeof(path), "%s/blobs", root);
    if (epcs_file_make_dir(root) != 0 || epcs_file_make_dir(path) != 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        struct stat st;
        snprintf(path, sizeof(path), "%s/blobs/%s", root, file->sha256);
        /* Content-addressed: a blob already present holds exactly these bytes. */
        if (stat(path, &st) != 0 &&
            epcs_file_replace(path, file->source, file->length, 0640) != 0) {
            epcs_log(EPCS_LOG_ERROR, "store", "cannot write %s: %s", path, strerror(errno));
            return -1;
        }
    }
    /* Content-addressed too: a version stored before keeps the manifest it was stored with. */
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s.json", root, ruleset->id);
    if (stat(path, &st) == 0)
        return 0;
    char *text = epcs_rule_store_manifest_text(ruleset);
    int rc = text != NULL ? epcs_file_replace(path, text, strlen(text), 0640) : -1;
    free(text);
    if (rc != 0)
        epcs_log(EPCS_LOG_ERROR, "store", "cannot write %s: %s", path, strerror(errno));
    else
        epcs_log(EPCS_LOG_INFO, "store", "stored %s in %s", ruleset->id, root);
    return rc;
}

static int files_manifest(struct epcs_rule_store *store, const char *id, struct epcs_buf *out)
{
    char path[4200];
    if (!epcs_rule_store_valid_id(id, strlen(id)))
        return 1;
    snprintf(path, sizeof(path), "%s/rulesets/%s.json", data_dir_of(store), id);
    return read_file(path, out);
}

static int files_blob(struct epcs_rule_store *store, const char *sha256, struct epcs_buf *out)
{
    char path[4200];
    if (!epcs_rule_store_valid_sha256(sha256))
        return 1;
    snprintf(path, sizeof(path), "%s/rulesets/blobs/%s", data_dir_of(store), sha256);
    return read_file(path, out);
}

static int by_storing(const void *a, const void *b)
{
    const char *left = json_string_value(json_object_get(*(json_t *const *)a, "stored_at"));
    const char *right = json_string_value(json_object_get(*(json_t *const *)b, "stored_at"));
    return strcmp(left ? left : "", right ? right : "");
}

static json_t *stored_versions(const char *data_dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rulesets", data_dir);
    json_t *list = json_array();
    DIR *dir = opendir(path);
    struct dirent *entry;
    while (list != NULL && dir != NULL && (entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len != 24 || strcmp(entry->d_name + 19, ".json") != 0 ||
            !epcs_rule_store_valid_id(entry->d_name, 19))
            continue;
        struct epcs_buf text = {0};
        snprintf(path, sizeof(path), "%s/rulesets/%s", data_dir, entry->d_name);
        if (read_file(path, &text) == 0) {
            json_t *summary = epcs_rule_store_version_summary(text.data ? text.data : "", text.len);
            if (summary != NULL)
                json_array_append_new(list, summary);
        }
        epcs_buf_free(&text);
    }
    if (dir != NULL)
        closedir(dir);
    size_t count = json_array_size(list);
    json_t **items = calloc(count ? count : 1, sizeof(*items));
    for (size_t i = 0; items != NULL && i < count; i++)
        items[i] = json_incref(json_array_get(list, i));
    if (items != NULL) {
        qsort(items, count, sizeof(*items), by_storing);
        json_array_clear(list);
        for (size_t i = 0; i < count; i++)
            json_array_append_new(list, items[i]);
    }
    free(items);
    return list;
}

/* The activation history, oldest first; a last line a crash cut short is left out. */
static json_t *activations(const char *data_dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rulesets/" ACTIVATIONS_FILE, data_dir);
    json_t *list = json_array();
    FILE *file = fopen(path, "r");
    char line[2048];
    while (list != NULL && file != NULL && fgets(line, sizeof(line), file) != NULL) {
        json_t *entry = json_loads(line, 0, NULL);
        if (json_is_object(entry) && json_is_string(json_object_get(entry, "to")))
            json_array_append(list, entry);
        json_decref(entry);
    }
    if (file != NULL)
        fclose(file);
    return list;
}

static int files_list(struct epcs_rule_store *store, struct epcs_buf *out)
{
    const char *data_dir = data_dir_of(store);
    json_t *document = json_pack("{s:o, s:o}", "versions", stored_versions(data_dir), "activations",
                                 activations(data_dir));
    char *text = document != NULL ? json_dumps(document, JSON_COMPACT) : NULL;
    json_decref(document);
    int rc = text != NULL ? epcs_buf_append_str(out, text) : -1;
    free(text);
    return rc;
}

/* The last version the history activated, and how many activations it holds (the epoch). */
static int files_active(struct epcs_rule_store *store, char id[24], uint64_t *epoch)
{
    json_t *list = activations(data_dir_of(store));
    size_t count = json_array_size(list);
    const char *last =
        count > 0 ? json_string_value(json_object_get(json_array_get(list, count - 1), "to"))
                  : NULL;
    int found = last != NULL && epcs_rule_store_valid_id(last, strlen(last));
    if (found)
        snprintf(id, 24, "%s", last);
    *epoch = count;
    json_decref(list);
    return found ? 0 : 1;
}

/* Whether the open history `fd` is non-empty and does not end with a newline. */
static int ends_mid_line(int fd)
{
    struct stat st;
    char last;
    return fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 &&
           last != '\n';
}

static char *activation_line(const struct epcs_rule_activation *activation)
{
    char at[EPCS_INSTANT_US_LEN];
    /* Microseconds: two activations within a second must still list in order. */
    epcs_instant_format_us(epcs_now_us(), at);
    json_t *entry = json_pack("{s:s, s:s?, s:s, s:s, s:s}", "at", at, "from", activation->from,
                              "to", activation->to, "by", activation->by, "why", activation->why);
    char *text = entry != NULL ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    return text;
}

/* Appends `text` and a newline to the open history, fsync'd before the switch is reported
 * done. */
static int append_line(int fd, char *text, int created, const char *path)
{
    size_t len = strlen(text);
    text[len] = '\n';
    /* A crash may have cut the last entry short: this one then starts on a line of its own,
     * or it would complete the cut one and neither would read back. */
    int after_cut = ends_mid_line(fd);
    return (!after_cut || write(fd, "\n", 1) == 1) &&
                   write(fd, text, len + 1) == (ssize_t)(len + 1) && fsync(fd) == 0 &&
                   (!created || epcs_file_sync_parent(path) == 0)
               ? 0
               : -1;
}

static int files_activate(struct epcs_rule_store *store,
                          const struct epcs_rule_activation *activation, uint64_t *epoch)
{
    char path[4200], id[24];
    char *text = activation_line(activation);
    if (text == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/rulesets/" ACTIVATIONS_FILE, data_dir_of(store));
    struct stat st;
    int created = stat(path, &st) != 0;
    /* Append-only, one line per activation. The lock makes reading the epoch and appending one
     * step, so that of two activations decided on the same epoch only one is recorded. */
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    int rc = fd >= 0 && flock(fd, LOCK_EX) == 0 ? 0 : -1;
    if (rc == 0) {
        files_active(store, id, epoch);
        if (activation->expected_epoch != EPCS_RULE_EPOCH_ANY &&
            activation->expected_epoch != *epoch)
            rc = 1;
        else if ((rc = append_line(fd, text, created, path)) == 0)
            *epoch += 1;
    }
    if (rc < 0)
        epcs_log(EPCS_LOG_ERROR, "store", "cannot record the activation of %s in %s: %s",
                 activation->to, path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(text);
    return rc;
}

/* One epcsd per data directory: there is nobody else's activation to hear of. */
static int files_follow(struct epcs_rule_store *store, void (*changed)(void *ctx), void *ctx)
{
    return 0;
}

static void files_unfollow(struct epcs_rule_store *store)
{
}

static const char *files_where(const struct epcs_rule_store *store)
{
    return ((const struct file_store *)store)->rulesets;
}

const struct epcs_rule_store_ops epcs_rule_store_files = {
    .name = "files",
    .open = files_open,
    .close = files_close,
    .save = files_save,
    .activate = files_activate,
    .active = files_active,
    .follow = files_follow,
    .unfollow = files_unfollow,
    .manifest = files_manifest,
    .blob = files_blob,
    .list = files_list,
    .where = files_where,
};
