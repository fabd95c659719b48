#include "rule_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dates.h"
#include "files.h"
#include "log.h"
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
};

static const char *data_dir_of(struct epcs_rule_store *store)
{
    return ((struct file_store *)store)->data_dir;
}

static struct epcs_rule_store *files_open(const char *data_dir, char *err, size_t err_size)
{
    struct file_store *store = calloc(1, sizeof(*store));
    if (store == NULL || (store->data_dir = strdup(data_dir)) == NULL) {
        snprintf(err, err_size, "out of memory opening the rule store under %s", data_dir);
        free(store);
        return NULL;
    }
    store->base.ops = &epcs_rule_store_files;
    return &store->base;
}

static void files_close(struct epcs_rule_store *base)
{
    struct file_store *store = (struct file_store *)base;
    free(store->data_dir);
    free(store);
}

/* A directory made here is fsync'd into its parent: what is stored in it must stay findable
 * after a power cut. */
static int make_dir(const char *path)
{
    if (mkdir(path, 0750) == 0)
        return epcs_file_sync_parent(path);
    return errno == EEXIST ? 0 : -1;
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

int epcs_rule_store_valid_id(const char *id, size_t len)
{
    if (len != 19 || strncmp(id, "rs-", 3) != 0)
        return 0;
    for (size_t i = 3; i < len; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    }
    return 1;
}

static int valid_sha256(const char *hash)
{
    size_t len = strlen(hash);
    return len == 64 && strspn(hash, "0123456789abcdef") == 64;
}

static int files_save(struct epcs_rule_store *store, const struct epcs_ruleset *ruleset)
{
    const char *data_dir = data_dir_of(store);
    char root[4096], path[4200];
    snprintf(root, sizeof(root), "%s/rulesets", data_dir);
    snprintf(path, sizeof(path), "%s/blobs", root);
    if (make_dir(root) != 0 || make_dir(path) != 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    json_t *files = json_array();
    for (size_t i = 0; i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        struct stat st;
        snprintf(path, sizeof(path), "%s/blobs/%s", root, file->sha256);
        /* Content-addressed: a blob already present holds exactly these bytes. */
        if (stat(path, &st) != 0 &&
            epcs_file_replace(path, file->source, file->length, 0640) != 0) {
            epcs_log(EPCS_LOG_ERROR, "store", "cannot write %s: %s", path, strerror(errno));
            json_decref(files);
            return -1;
        }
        json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "name", file->name, "sha256",
                                               file->sha256, "bytes", (json_int_t)file->length));
    }
    /* Content-addressed too: a version stored before keeps the manifest it was stored with. */
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s.json", root, ruleset->id);
    if (stat(path, &st) == 0) {
        json_decref(files);
        return 0;
    }
    char stored[EPCS_INSTANT_US_LEN];
    epcs_instant_format_us(epcs_now_us(), stored);
    json_t *manifest =
        json_pack("{s:s, s:s?, s:s, s:s, s:o}", "ruleset", ruleset->id, "label", ruleset->label,
                  "directory", ruleset->dir, "stored_at", stored, "files", files);
    char *text = manifest != NULL ? json_dumps(manifest, JSON_INDENT(2)) : NULL;
    json_decref(manifest);
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
    if (!valid_sha256(sha256))
        return 1;
    snprintf(path, sizeof(path), "%s/rulesets/blobs/%s", data_dir_of(store), sha256);
    return read_file(path, out);
}

/* When a version was first stored: manifests written by older epcs name it activated_at. */
static const char *stored_at(json_t *version)
{
    const char *at = json_string_value(json_object_get(version, "stored_at"));
    return at != NULL ? at : json_string_value(json_object_get(version, "activated_at"));
}

static int by_storing(const void *a, const void *b)
{
    const char *left = stored_at(*(json_t *const *)a), *right = stored_at(*(json_t *const *)b);
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
        snprintf(path, sizeof(path), "%s/rulesets/%s", data_dir, entry->d_name);
        json_t *manifest = json_load_file(path, 0, NULL);
        if (manifest == NULL)
            continue;
        json_array_append_new(list, json_pack("{s:O, s:O?, s:s?}", "ruleset",
                                              json_object_get(manifest, "ruleset"), "label",
                                              json_object_get(manifest, "label"), "stored_at",
                                              stored_at(manifest)));
        json_decref(manifest);
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

static int files_last_active(struct epcs_rule_store *store, char id[24])
{
    json_t *list = activations(data_dir_of(store));
    size_t count = json_array_size(list);
    const char *last =
        count > 0 ? json_string_value(json_object_get(json_array_get(list, count - 1), "to"))
                  : NULL;
    int found = last != NULL && epcs_rule_store_valid_id(last, strlen(last));
    if (found)
        snprintf(id, 24, "%s", last);
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

static int files_record_activation(struct epcs_rule_store *store, const char *from, const char *to,
                                   const char *by, const char *why)
{
    char path[4200], at[EPCS_INSTANT_US_LEN];
    /* Microseconds: two activations within a second must still list in order. */
    epcs_instant_format_us(epcs_now_us(), at);
    json_t *entry = json_pack("{s:s, s:s?, s:s, s:s, s:s}", "at", at, "from", from, "to", to, "by",
                              by, "why", why);
    char *text = entry != NULL ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    if (text == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/rulesets/" ACTIVATIONS_FILE, data_dir_of(store));
    struct stat st;
    int created = stat(path, &st) != 0;
    /* Append-only: one line per activation, fsync'd before the switch is reported done. */
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    size_t len = strlen(text);
    text[len] = '\n';
    /* A crash may have cut the last entry short: this one then starts on a line of its own,
     * or it would complete the cut one and neither would read back. */
    int after_cut = fd >= 0 && ends_mid_line(fd);
    int rc = fd >= 0 && (!after_cut || write(fd, "\n", 1) == 1) &&
                     write(fd, text, len + 1) == (ssize_t)(len + 1) && fsync(fd) == 0 &&
                     (!created || epcs_file_sync_parent(path) == 0)
                 ? 0
                 : -1;
    if (rc != 0)
        epcs_log(EPCS_LOG_ERROR, "store", "cannot record the activation of %s in %s: %s", to, path,
                 strerror(errno));
    if (fd >= 0)
        close(fd);
    free(text);
    return rc;
}

static int files_restore(struct epcs_rule_store *store, const char *id, const char *dir)
{
    struct epcs_buf text = {0}, blob = {0};
    int rc = files_manifest(store, id, &text);
    json_t *manifest = NULL;
    if (rc == 0 && epcs_buf_append(&text, "", 1) == 0)
        manifest = json_loads(text.data, 0, NULL);
    if (manifest == NULL) {
        fprintf(stderr, "epcsd: no stored ruleset %s under %s/rulesets\n", id, data_dir_of(store));
        epcs_buf_free(&text);
        return -1;
    }
    if (make_dir(dir) != 0) {
        fprintf(stderr, "epcsd: cannot create %s: %s\n", dir, strerror(errno));
        rc = -1;
    }
    size_t index;
    json_t *file;
    json_array_foreach(json_object_get(manifest, "files"), index, file)
    {
        const char *name = json_string_value(json_object_get(file, "name"));
        const char *sha256 = json_string_value(json_object_get(file, "sha256"));
        char path[4200];
        epcs_buf_reset(&blob);
        if (rc != 0 || name == NULL || sha256 == NULL || strchr(name, '/') != NULL ||
            files_blob(store, sha256, &blob) != 0) {
            fprintf(stderr, "epcsd: stored ruleset %s is incomplete\n", id);
            rc = -1;
            break;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (epcs_file_replace(path, blob.data ? blob.data : "", blob.len, 0640) != 0) {
            fprintf(stderr, "epcsd: cannot write %s: %s\n", path, strerror(errno));
            rc = -1;
            break;
        }
    }
    const char *label = json_string_value(json_object_get(manifest, "label"));
    if (rc == 0 && label != NULL) {
        char path[4200], line[300];
        snprintf(path, sizeof(path), "%s/LABEL", dir);
        int len = snprintf(line, sizeof(line), "%s\n", label);
        rc = epcs_file_replace(path, line, (size_t)len, 0640);
    }
    json_decref(manifest);
    epcs_buf_free(&text);
    epcs_buf_free(&blob);
    return rc;
}

const struct epcs_rule_store_ops epcs_rule_store_files = {
    .name = "files",
    .open = files_open,
    .close = files_close,
    .save = files_save,
    .record_activation = files_record_activation,
    .last_active = files_last_active,
    .manifest = files_manifest,
    .blob = files_blob,
    .list = files_list,
    .restore = files_restore,
};
