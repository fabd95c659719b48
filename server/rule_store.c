#include "rule_store.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int make_dir(const char *path)
{
    return mkdir(path, 0750) == 0 || errno == EEXIST ? 0 : -1;
}

/* Writes through a temporary name and renames, so a crash never leaves a half-written file. */
static int write_atomically(const char *path, const char *data, size_t len)
{
    char temporary[4200];
    snprintf(temporary, sizeof(temporary), "%s.tmp%ld", path, (long)getpid());
    FILE *file = fopen(temporary, "wb");
    if (file == NULL)
        return -1;
    int failed = fwrite(data, 1, len, file) != len;
    failed |= fflush(file) != 0 || fsync(fileno(file)) != 0;
    failed |= fclose(file) != 0;
    if (failed || rename(temporary, path) != 0) {
        unlink(temporary);
        return -1;
    }
    return 0;
}

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

int epcs_rule_store_save(const char *data_dir, const struct epcs_ruleset *ruleset)
{
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
        if (stat(path, &st) != 0 && write_atomically(path, file->source, file->length) != 0) {
            epcs_log(EPCS_LOG_ERROR, "store", "cannot write %s: %s", path, strerror(errno));
            json_decref(files);
            return -1;
        }
        json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "name", file->name, "sha256",
                                               file->sha256, "bytes", (json_int_t)file->length));
    }
    /* Microseconds: two activations within a second must still list in order. */
    char activated[64], seconds[24];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(seconds, sizeof(seconds), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(activated, sizeof(activated), "%s.%06uZ", seconds,
             (unsigned)(now.tv_nsec / 1000) % 1000000u);
    json_t *manifest =
        json_pack("{s:s, s:s?, s:s, s:s, s:o}", "ruleset", ruleset->id, "label", ruleset->label,
                  "directory", ruleset->dir, "activated_at", activated, "files", files);
    char *text = manifest != NULL ? json_dumps(manifest, JSON_INDENT(2)) : NULL;
    json_decref(manifest);
    snprintf(path, sizeof(path), "%s/%s.json", root, ruleset->id);
    int rc = text != NULL ? write_atomically(path, text, strlen(text)) : -1;
    free(text);
    if (rc != 0)
        epcs_log(EPCS_LOG_ERROR, "store", "cannot write %s: %s", path, strerror(errno));
    else
        epcs_log(EPCS_LOG_INFO, "store", "stored %s in %s", ruleset->id, root);
    return rc;
}

int epcs_rule_store_manifest(const char *data_dir, const char *id, struct epcs_buf *out)
{
    char path[4200];
    if (!epcs_rule_store_valid_id(id, strlen(id)))
        return 1;
    snprintf(path, sizeof(path), "%s/rulesets/%s.json", data_dir, id);
    return read_file(path, out);
}

int epcs_rule_store_blob(const char *data_dir, const char *sha256, struct epcs_buf *out)
{
    char path[4200];
    if (!valid_sha256(sha256))
        return 1;
    snprintf(path, sizeof(path), "%s/rulesets/blobs/%s", data_dir, sha256);
    return read_file(path, out);
}

static int by_activation(const void *a, const void *b)
{
    const char *left = json_string_value(json_object_get(*(json_t *const *)a, "activated_at"));
    const char *right = json_string_value(json_object_get(*(json_t *const *)b, "activated_at"));
    return strcmp(left ? left : "", right ? right : "");
}

int epcs_rule_store_list(const char *data_dir, struct epcs_buf *out)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rulesets", data_dir);
    json_t *list = json_array();
    DIR *dir = opendir(path);
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len != 24 || strcmp(entry->d_name + 19, ".json") != 0 ||
            !epcs_rule_store_valid_id(entry->d_name, 19))
            continue;
        snprintf(path, sizeof(path), "%s/rulesets/%s", data_dir, entry->d_name);
        json_t *manifest = json_load_file(path, 0, NULL);
        if (manifest == NULL)
            continue;
        json_array_append_new(list, json_pack("{s:O, s:O?, s:O}", "ruleset",
                                              json_object_get(manifest, "ruleset"), "label",
                                              json_object_get(manifest, "label"), "activated_at",
                                              json_object_get(manifest, "activated_at")));
        json_decref(manifest);
    }
    if (dir != NULL)
        closedir(dir);
    size_t count = json_array_size(list);
    json_t **items = calloc(count ? count : 1, sizeof(*items));
    for (size_t i = 0; items != NULL && i < count; i++)
        items[i] = json_incref(json_array_get(list, i));
    if (items != NULL) {
        qsort(items, count, sizeof(*items), by_activation);
        json_array_clear(list);
        for (size_t i = 0; i < count; i++)
            json_array_append_new(list, items[i]);
    }
    free(items);
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    int rc = text != NULL ? epcs_buf_append_str(out, text) : -1;
    free(text);
    return rc;
}

int epcs_rule_store_restore(const char *data_dir, const char *id, const char *dir)
{
    struct epcs_buf text = {0}, blob = {0};
    int rc = epcs_rule_store_manifest(data_dir, id, &text);
    json_t *manifest = NULL;
    if (rc == 0 && epcs_buf_append(&text, "", 1) == 0)
        manifest = json_loads(text.data, 0, NULL);
    if (manifest == NULL) {
        fprintf(stderr, "epcsd: no stored ruleset %s under %s/rulesets\n", id, data_dir);
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
            epcs_rule_store_blob(data_dir, sha256, &blob) != 0) {
            fprintf(stderr, "epcsd: stored ruleset %s is incomplete\n", id);
            rc = -1;
            break;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (write_atomically(path, blob.data ? blob.data : "", blob.len) != 0) {
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
        rc = write_atomically(path, line, (size_t)len);
    }
    json_decref(manifest);
    epcs_buf_free(&text);
    epcs_buf_free(&blob);
    return rc;
}
