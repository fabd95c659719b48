/*
 * What every rule store backend shares: the shape of a version id, the manifest a save
 * writes, and restoring a version through the backend's manifest and blob operations, so that
 * a backend holds only where the bytes live.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "files.h"
#include "rule_store.h"
#include "store.h"

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

int epcs_rule_store_valid_sha256(const char *hash)
{
    size_t len = strlen(hash);
    return len == 64 && strspn(hash, "0123456789abcdef") == 64;
}

char *epcs_rule_store_manifest_text(const struct epcs_ruleset *ruleset)
{
    json_t *files = json_array();
    for (size_t i = 0; files != NULL && i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "name", file->name, "sha256",
                                               file->sha256, "bytes", (json_int_t)file->length));
    }
    char stored[EPCS_INSTANT_US_LEN];
    epcs_instant_format_us(epcs_now_us(), stored);
    json_t *manifest =
        json_pack("{s:s, s:s?, s:s, s:s, s:o}", "ruleset", ruleset->id, "label", ruleset->label,
                  "directory", ruleset->dir, "stored_at", stored, "files", files);
    char *text = manifest != NULL ? json_dumps(manifest, JSON_INDENT(2)) : NULL;
    json_decref(manifest);
    return text;
}

json_t *epcs_rule_store_version_summary(const char *manifest_text, size_t len)
{
    json_t *manifest = json_loadb(manifest_text, len, 0, NULL);
    if (!json_is_object(manifest) || !json_is_string(json_object_get(manifest, "ruleset"))) {
        json_decref(manifest);
        return NULL;
    }
    /* Manifests written by older epcs name the storing activated_at. */
    json_t *at = json_object_get(manifest, "stored_at");
    if (at == NULL)
        at = json_object_get(manifest, "activated_at");
    json_t *summary =
        json_pack("{s:O, s:O?, s:O?}", "ruleset", json_object_get(manifest, "ruleset"), "label",
                  json_object_get(manifest, "label"), "stored_at", at);
    json_decref(manifest);
    return summary;
}

static int restore_file(struct epcs_rule_store *store, const char *id, const char *dir,
                        json_t *file, struct epcs_buf *blob)
{
    const char *name = json_string_value(json_object_get(file, "name"));
    const char *sha256 = json_string_value(json_object_get(file, "sha256"));
    char path[4200];
    epcs_buf_reset(blob);
    if (name == NULL || sha256 == NULL || strchr(name, '/') != NULL ||
        store->ops->blob(store, sha256, blob) != 0) {
        fprintf(stderr, "epcsd: stored ruleset %s is incomplete\n", id);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (epcs_file_replace(path, blob->data ? blob->data : "", blob->len, 0640) != 0) {
        fprintf(stderr, "epcsd: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int epcs_rule_store_restore(struct epcs_rule_store *store, const char *id, const char *dir)
{
    struct epcs_buf text = {0}, blob = {0};
    json_t *manifest = NULL;
    if (store->ops->manifest(store, id, &text) == 0)
        manifest = json_loadb(text.data ? text.data : "", text.len, 0, NULL);
    epcs_buf_free(&text);
    if (manifest == NULL) {
        fprintf(stderr, "epcsd: no stored ruleset %s in %s\n", id, store->ops->where(store));
        return -1;
    }
    int rc = 0;
    if (epcs_file_make_dir(dir) != 0) {
        fprintf(stderr, "epcsd: cannot create %s: %s\n", dir, strerror(errno));
        rc = -1;
    }
    size_t index;
    json_t *file;
    json_array_foreach(json_object_get(manifest, "files"), index, file)
    {
        if (rc == 0)
            rc = restore_file(store, id, dir, file, &blob);
    }
    const char *label = json_string_value(json_object_get(manifest, "label"));
    if (rc == 0 && label != NULL) {
        char path[4200], line[300];
        snprintf(path, sizeof(path), "%s/LABEL", dir);
        int len = snprintf(line, sizeof(line), "%s\n", label);
        rc = epcs_file_replace(path, line, (size_t)len, 0640);
    }
    json_decref(manifest);
    epcs_buf_free(&blob);
    return rc;
}
