/*
 * The key store's file backend (epcs_key_store_file, store.h): the keys file, one line a key
 * (id partner role sha256(token) rate created), which `epcsd keys` and a running epcsd share.
 * Writes hold an flock of PATH.lock, read the file afresh under it and replace it whole
 * (files.h), so neither loses the other's change. The handle remembers which file its last
 * load read (device, inode, size, mtime), which is all epcs_key_store_stale asks.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_key.h"
#include "buf.h"
#include "files.h"
#include "key_store.h"
#include "store.h"

#define KEYS_HEADER                                                                                \
    "# epcs API keys, one per line: id partner role sha256(token) rate created\n"                  \
    "# Managed with `epcsd keys create|revoke|list`; tokens themselves are never stored.\n"

/* What the file looked like when a load read it. */
struct file_seen {
    int exists;
    dev_t device;
    ino_t inode;
    off_t size;
    struct timespec modified;
};

struct file_key_store {
    struct epcs_key_store base;
    char *path;
    pthread_mutex_t lock;
    struct file_seen seen;
};

static struct epcs_key_store *file_open(const char *path, char *err, size_t err_size)
{
    struct file_key_store *store = calloc(1, sizeof(*store));
    if (store == NULL || (store->path = strdup(path)) == NULL) {
        snprintf(err, err_size, "out of memory opening the keys file");
        free(store);
        return NULL;
    }
    store->base.ops = &epcs_key_store_file;
    pthread_mutex_init(&store->lock, NULL);
    return &store->base;
}

static void file_close(struct epcs_key_store *base)
{
    struct file_key_store *store = (struct file_key_store *)base;
    pthread_mutex_destroy(&store->lock);
    free(store->path);
    free(store);
}

static const char *file_where(const struct epcs_key_store *base)
{
    return ((const struct file_key_store *)base)->path;
}

/* One line of the keys file into `record`. 0, or -1 with `err` saying what is wrong. */
static int parse_line(char *line, struct epcs_key_record *record, char *err, size_t err_size)
{
    const char *fields[EPCS_KEY_FIELDS + 1];
    size_t count = 0;
    char *save = NULL;
    for (char *field = strtok_r(line, " \t\r\n", &save); field != NULL;
         field = strtok_r(NULL, " \t\r\n", &save)) {
        if (count == EPCS_KEY_FIELDS + 1)
            break;
        fields[count++] = field;
    }
    if (count != EPCS_KEY_FIELDS) {
        snprintf(err, err_size, "expected 6 fields (id partner role sha256 rate created), got %zu",
                 count);
        return -1;
    }
    return epcs_key_record_parse(fields, record, err, err_size);
}

/* The lines of `file` into `*records`, sorted by id. 0, or -1 with `err` naming the line. */
static int read_records(FILE *file, const char *path, struct epcs_key_record **records,
                        size_t *count, char *err, size_t err_size)
{
    char line[512];
    size_t capacity = 0;
    int line_number = 0;
    while (fgets(line, sizeof(line), file) != NULL) {
        line_number++;
        char *text = line + strspn(line, " \t");
        if (*text == '#' || *text == '\n' || *text == '\r' || *text == '\0')
            continue;
        if (*count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            struct epcs_key_record *more = realloc(*records, grown * sizeof(*more));
            if (more == NULL) {
                snprintf(err, err_size, "out of memory");
                return -1;
            }
            *records = more;
            capacity = grown;
        }
        char reason[160];
        if (parse_line(text, &(*records)[*count], reason, sizeof(reason)) != 0) {
            snprintf(err, err_size, "%s:%d: %s", path, line_number, reason);
            return -1;
        }
        (*count)++;
    }
    if (*count > 0)
        qsort(*records, *count, sizeof(**records), epcs_key_record_compare);
    for (size_t i = 1; i < *count; i++) {
        if (strcmp((*records)[i - 1].id, (*records)[i].id) == 0) {
            snprintf(err, err_size, "%s: key id %s appears twice", path, (*records)[i].id);
            return -1;
        }
    }
    return 0;
}

/* The keys file at `path` (a missing one holds no key), and what it looked like. */
static int read_file(const char *path, struct epcs_key_record **records, size_t *count,
                     struct file_seen *seen, char *err, size_t err_size)
{
    *records = NULL;
    *count = 0;
    memset(seen, 0, sizeof(*seen));
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(file), &st) == 0) {
        seen->exists = 1;
        seen->device = st.st_dev;
        seen->inode = st.st_ino;
        seen->size = st.st_size;
        seen->modified = st.st_mtim;
    }
    int rc = read_records(file, path, records, count, err, err_size);
    fclose(file);
    if (rc != 0) {
        free(*records);
        *records = NULL;
        *count = 0;
    }
    return rc;
}

static int file_load(struct epcs_key_store *base, struct epcs_key_record **records, size_t *count,
                     char *err, size_t err_size)
{
    struct file_key_store *store = (struct file_key_store *)base;
    struct file_seen seen;
    if (read_file(store->path, records, count, &seen, err, err_size) != 0)
        return -1;
    pthread_mutex_lock(&store->lock);
    store->seen = seen;
    pthread_mutex_unlock(&store->lock);
    return 0;
}

static int file_stale(struct epcs_key_store *base)
{
    struct file_key_store *store = (struct file_key_store *)base;
    pthread_mutex_lock(&store->lock);
    struct file_seen seen = store->seen;
    pthread_mutex_unlock(&store->lock);
    struct stat st;
    if (stat(store->path, &st) != 0)
        return seen.exists;
    return !seen.exists || st.st_dev != seen.device || st.st_ino != seen.inode ||
           st.st_size != seen.size || st.st_mtim.tv_sec != seen.modified.tv_sec ||
           st.st_mtim.tv_nsec != seen.modified.tv_nsec;
}

/* Holds an exclusive lock on PATH.lock so `epcsd keys` and the admin API never interleave. */
static int lock_keys_file(const char *path, char *err, size_t err_size)
{
    char lock_path[4200];
    snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        snprintf(err, err_size, "%s: %s", lock_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void unlock_keys_file(int fd)
{
    flock(fd, LOCK_UN);
    close(fd);
}

static void format_key_line(const struct epcs_key_record *record, char *line, size_t size)
{
    char hash[65];
    epcs_key_record_hash_hex(record, hash);
    snprintf(line, size, "%s %s %s %s %g %s\n", record->id, record->partner,
             epcs_role_name(record->role), hash, record->rate, record->created);
}

/* Replaces the file at `path` with `records` (but `skip`, may be NULL) and `extra` (may be
 * NULL). */
static int write_keys_file(const char *path, const struct epcs_key_record *records, size_t count,
                           const struct epcs_key_record *skip, const struct epcs_key_record *extra,
                           char *err, size_t err_size)
{
    struct epcs_buf text = {0};
    char line[256];
    epcs_buf_append_str(&text, KEYS_HEADER);
    for (size_t i = 0; i < count; i++) {
        if (&records[i] == skip)
            continue;
        format_key_line(&records[i], line, sizeof(line));
        epcs_buf_append_str(&text, line);
    }
    if (extra != NULL) {
        format_key_line(extra, line, sizeof(line));
        epcs_buf_append_str(&text, line);
    }
    /* The keys decide who gets in: durable, directory entry included, before anyone is told. */
    int rc = text.failed ? -1 : epcs_file_replace(path, text.data, text.len, 0600);
    if (rc != 0)
        snprintf(err, err_size, "%s: %s", path, text.failed ? "out of memory" : strerror(errno));
    epcs_buf_free(&text);
    return rc;
}

static const struct epcs_key_record *find(const struct epcs_key_record *records, size_t count,
                                          const char *id)
{
    struct epcs_key_record probe;
    snprintf(probe.id, sizeof(probe.id), "%s", id);
    return count == 0 ? NULL
                      : bsearch(&probe, records, count, sizeof(probe), epcs_key_record_compare);
}

static int file_create(struct epcs_key_store *base, const char *partner, enum epcs_role role,
                       double rate, char *token, struct epcs_key_record *record, char *err,
                       size_t err_size)
{
    struct file_key_store *store = (struct file_key_store *)base;
    /* The key's own faults first: a bad request must not wait for the lock. */
    if (epcs_key_mint(partner, role, rate, record, token, err, err_size) != 0)
        return -1;
    int lock = lock_keys_file(store->path, err, err_size);
    if (lock < 0)
        return -1;
    struct epcs_key_record *records = NULL;
    size_t count = 0;
    struct file_seen seen;
    int rc = read_file(store->path, &records, &count, &seen, err, err_size);
    while (rc == 0 && find(records, count, record->id) != NULL)
        rc = epcs_key_mint(partner, role, rate, record, token, err, err_size);
    if (rc == 0)
        rc = write_keys_file(store->path, records, count, NULL, record, err, err_size);
    free(records);
    unlock_keys_file(lock);
    return rc;
}

static int file_revoke(struct epcs_key_store *base, const char *id, char *err, size_t err_size)
{
    struct file_key_store *store = (struct file_key_store *)base;
    int lock = lock_keys_file(store->path, err, err_size);
    if (lock < 0)
        return -1;
    struct epcs_key_record *records = NULL;
    size_t count = 0;
    struct file_seen seen;
    int rc = read_file(store->path, &records, &count, &seen, err, err_size);
    if (rc == 0) {
        const struct epcs_key_record *record = find(records, count, id);
        rc = record == NULL
                 ? 1
                 : write_keys_file(store->path, records, count, record, NULL, err, err_size);
    }
    free(records);
    unlock_keys_file(lock);
    return rc;
}

const struct epcs_key_store_ops epcs_key_store_file = {
    .name = "file",
    .open = file_open,
    .close = file_close,
    .where = file_where,
    .load = file_load,
    .create = file_create,
    .revoke = file_revoke,
    .stale = file_stale,
};
