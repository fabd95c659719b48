/* API keys: the keys file, bearer-token checks and per-key rate limits. */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "dates.h"
#include "files.h"

#define KEYS_HEADER                                                                                \
    "# epcs API keys, one per line: id partner role sha256(token) rate created\n"                  \
    "# Managed with `epcsd keys create|revoke|list`; tokens themselves are never stored.\n"

const char *epcs_role_name(enum epcs_role role)
{
    switch (role) {
    case EPCS_ROLE_PARTNER:
        return "partner";
    case EPCS_ROLE_STAFF:
        return "staff";
    case EPCS_ROLE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

enum epcs_role epcs_role_parse(const char *name)
{
    if (strcmp(name, "partner") == 0)
        return EPCS_ROLE_PARTNER;
    if (strcmp(name, "staff") == 0)
        return EPCS_ROLE_STAFF;
    if (strcmp(name, "admin") == 0)
        return EPCS_ROLE_ADMIN;
    return EPCS_ROLE_NONE;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int parse_hex(const char *text, unsigned char *out, size_t bytes)
{
    if (strlen(text) != bytes * 2)
        return -1;
    for (size_t i = 0; i < bytes; i++) {
        int high = hex_value(text[2 * i]), low = hex_value(text[2 * i + 1]);
        if (high < 0 || low < 0)
            return -1;
        out[i] = (unsigned char)(high << 4 | low);
    }
    return 0;
}

static void format_hex(const unsigned char *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(((const struct epcs_key *)a)->id, ((const struct epcs_key *)b)->id);
}

/* One line of the keys file into `key`. Returns 0, or -1 with `err` saying what is wrong. */
static int parse_line(char *line, struct epcs_key *key, char *err, size_t err_size)
{
    char *fields[7];
    size_t count = 0;
    char *save = NULL;
    for (char *field = strtok_r(line, " \t\r\n", &save); field != NULL;
         field = strtok_r(NULL, " \t\r\n", &save)) {
        if (count == 7)
            break;
        fields[count++] = field;
    }
    if (count != 6) {
        snprintf(err, err_size, "expected 6 fields (id partner role sha256 rate created), got %zu",
                 count);
        return -1;
    }
    memset(key, 0, sizeof(*key));
    unsigned char id_bytes[EPCS_KEY_ID_LEN / 2];
    if (parse_hex(fields[0], id_bytes, sizeof(id_bytes)) != 0) {
        snprintf(err, err_size, "the id must be %d lowercase hex digits", EPCS_KEY_ID_LEN);
        return -1;
    }
    memcpy(key->id, fields[0], EPCS_KEY_ID_LEN + 1);
    if (!epcs_partner_id_valid(fields[1])) {
        snprintf(err, err_size, "partner '%.64s' must be 1-63 of a-z 0-9 _ - .", fields[1]);
        return -1;
    }
    snprintf(key->partner, sizeof(key->partner), "%s", fields[1]);
    if ((key->role = epcs_role_parse(fields[2])) == EPCS_ROLE_NONE) {
        snprintf(err, err_size, "role '%.32s' must be partner, staff or admin", fields[2]);
        return -1;
    }
    if (parse_hex(fields[3], key->token_sha256, sizeof(key->token_sha256)) != 0) {
        snprintf(err, err_size, "the token hash must be 64 lowercase hex digits");
        return -1;
    }
    char *end;
    key->rate = strtod(fields[4], &end);
    if (*end != '\0' || !isfinite(key->rate) || key->rate < 0) {
        snprintf(err, err_size,
                 "rate '%.32s' must be a number of requests a second, 0 for the "
                 "server default",
                 fields[4]);
        return -1;
    }
    snprintf(key->created, sizeof(key->created), "%s", fields[5]);
    return 0;
}

static void init_bucket(struct epcs_key *key)
{
    pthread_mutex_init(&key->bucket.lock, NULL);
    /* NaN marks a bucket that has never been used: it starts full at the first request. */
    key->bucket.tokens = NAN;
    key->bucket.refilled_ns = 0;
}

struct epcs_keyring *epcs_keyring_load(const char *path, char *err, size_t err_size)
{
    struct epcs_keyring *keyring = calloc(1, sizeof(*keyring));
    if (keyring == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&keyring->refs, 1);
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        if (errno == ENOENT)
            return keyring;
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        free(keyring);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(file), &st) == 0) {
        keyring->file_exists = 1;
        keyring->device = st.st_dev;
        keyring->inode = st.st_ino;
        keyring->size = st.st_size;
        keyring->modified = st.st_mtim;
    }
    char line[512];
    size_t capacity = 0;
    int line_number = 0;
    while (fgets(line, sizeof(line), file) != NULL) {
        line_number++;
        char *text = line + strspn(line, " \t");
        if (*text == '#' || *text == '\n' || *text == '\r' || *text == '\0')
            continue;
        if (keyring->count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            struct epcs_key *keys = realloc(keyring->keys, grown * sizeof(*keys));
            if (keys == NULL) {
                snprintf(err, err_size, "out of memory");
                goto fail;
            }
            keyring->keys = keys;
            capacity = grown;
        }
        char reason[160];
        if (parse_line(text, &keyring->keys[keyring->count], reason, sizeof(reason)) != 0) {
            snprintf(err, err_size, "%s:%d: %s", path, line_number, reason);
            goto fail;
        }
        keyring->count++;
    }
    fclose(file);
    file = NULL;
    if (keyring->count > 0)
        qsort(keyring->keys, keyring->count, sizeof(*keyring->keys), compare_keys);
    for (size_t i = 0; i < keyring->count; i++) {
        if (i > 0 && strcmp(keyring->keys[i - 1].id, keyring->keys[i].id) == 0) {
            snprintf(err, err_size, "%s: key id %s appears twice", path, keyring->keys[i].id);
            goto fail;
        }
    }
    for (size_t i = 0; i < keyring->count; i++)
        init_bucket(&keyring->keys[i]);
    return keyring;
fail:
    if (file != NULL)
        fclose(file);
    free(keyring->keys);
    free(keyring);
    return NULL;
}

void epcs_keyring_retain(struct epcs_keyring *keyring)
{
    atomic_fetch_add(&keyring->refs, 1);
}

void epcs_keyring_release(struct epcs_keyring *keyring)
{
    if (keyring == NULL || atomic_fetch_sub(&keyring->refs, 1) != 1)
        return;
    for (size_t i = 0; i < keyring->count; i++)
        pthread_mutex_destroy(&keyring->keys[i].bucket.lock);
    free(keyring->keys);
    free(keyring);
}

int epcs_keyring_stale(const struct epcs_keyring *keyring, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return keyring->file_exists;
    return !keyring->file_exists || st.st_dev != keyring->device || st.st_ino != keyring->inode ||
           st.st_size != keyring->size || st.st_mtim.tv_sec != keyring->modified.tv_sec ||
           st.st_mtim.tv_nsec != keyring->modified.tv_nsec;
}

static struct epcs_key *find_key(struct epcs_keyring *keyring, const char *id)
{
    if (keyring->count == 0)
        return NULL;
    struct epcs_key probe;
    memcpy(probe.id, id, EPCS_KEY_ID_LEN);
    probe.id[EPCS_KEY_ID_LEN] = '\0';
    return bsearch(&probe, keyring->keys, keyring->count, sizeof(probe), compare_keys);
}

void epcs_keyring_inherit_buckets(struct epcs_keyring *fresh, struct epcs_keyring *old)
{
    if (old == NULL)
        return;
    for (size_t i = 0; i < fresh->count; i++) {
        struct epcs_key *before = find_key(old, fresh->keys[i].id);
        if (before == NULL)
            continue;
        pthread_mutex_lock(&before->bucket.lock);
        fresh->keys[i].bucket.tokens = before->bucket.tokens;
        fresh->keys[i].bucket.refilled_ns = before->bucket.refilled_ns;
        pthread_mutex_unlock(&before->bucket.lock);
    }
}

int epcs_keyring_has_partner(const struct epcs_keyring *keyring, const char *partner, size_t len)
{
    /* Keys are sorted by id, not partner; a keys file holds tens of keys, not thousands. */
    for (size_t i = 0; i < keyring->count; i++) {
        const char *id = keyring->keys[i].partner;
        if (strlen(id) == len && memcmp(id, partner, len) == 0)
            return 1;
    }
    return 0;
}

struct epcs_key *epcs_keyring_verify(struct epcs_keyring *keyring, const char *token, size_t len)
{
    if (len != EPCS_KEY_TOKEN_LEN || memcmp(token, "epcs_", 5) != 0 ||
        token[5 + EPCS_KEY_ID_LEN] != '_')
        return NULL;
    char id[EPCS_KEY_ID_LEN + 1];
    memcpy(id, token + 5, EPCS_KEY_ID_LEN);
    id[EPCS_KEY_ID_LEN] = '\0';
    struct epcs_key *key = find_key(keyring, id);
    if (key == NULL)
        return NULL;
    unsigned char digest[32];
    SHA256((const unsigned char *)token, len, digest);
    return CRYPTO_memcmp(digest, key->token_sha256, sizeof(digest)) == 0 ? key : NULL;
}

unsigned epcs_rate_take(struct epcs_rate_bucket *bucket, double rate, double cost, double paid)
{
    double burst = rate * 2;
    uint64_t now = (uint64_t)epcs_clock_ns(CLOCK_MONOTONIC);
    unsigned wait = 0;
    pthread_mutex_lock(&bucket->lock);
    if (isnan(bucket->tokens)) {
        bucket->tokens = burst;
    } else {
        bucket->tokens += (double)(now - bucket->refilled_ns) / 1e9 * rate;
        if (bucket->tokens > burst)
            bucket->tokens = burst;
    }
    bucket->refilled_ns = now;
    /* A cost above the burst (a big batch) is taken from a full bucket, which goes into debt:
     * the key's next requests wait until it is paid, so the rate holds on average. What the
     * request paid already counts toward that full bucket. */
    double due = cost + paid > burst ? burst - paid : cost;
    if (bucket->tokens >= due) {
        bucket->tokens -= cost;
    } else {
        double seconds = ceil((due - bucket->tokens) / rate);
        wait = seconds < 1 ? 1 : (unsigned)seconds;
        /* The request is refused whole: what it paid goes back. */
        bucket->tokens += paid;
    }
    pthread_mutex_unlock(&bucket->lock);
    return wait;
}

/* ---- the keys file ------------------------------------------------------------------------ */

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

static void format_key_line(const struct epcs_key *key, char *line, size_t size)
{
    char hash[65];
    format_hex(key->token_sha256, sizeof(key->token_sha256), hash);
    snprintf(line, size, "%s %s %s %s %g %s\n", key->id, key->partner, epcs_role_name(key->role),
             hash, key->rate, key->created);
}

/* Replaces the file at `path` with `keys` (skipping `skip`, may be NULL) and `extra`. */
static int write_keys_file(const char *path, const struct epcs_keyring *keyring,
                           const struct epcs_key *skip, const struct epcs_key *extra, char *err,
                           size_t err_size)
{
    struct epcs_buf text = {0};
    char line[256];
    epcs_buf_append_str(&text, KEYS_HEADER);
    for (size_t i = 0; i < keyring->count; i++) {
        if (&keyring->keys[i] == skip)
            continue;
        format_key_line(&keyring->keys[i], line, sizeof(line));
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

int epcs_keys_file_add(const char *path, const char *partner, enum epcs_role role, double rate,
                       char *token, struct epcs_key *key, char *err, size_t err_size)
{
    if (!epcs_partner_id_valid(partner)) {
        snprintf(err, err_size, "partner '%.64s' must be 1-63 of a-z 0-9 _ - .", partner);
        return -1;
    }
    if (role == EPCS_ROLE_NONE) {
        snprintf(err, err_size, "role must be partner, staff or admin");
        return -1;
    }
    if (!isfinite(rate) || rate < 0) {
        snprintf(err, err_size, "rate must be a number of requests a second, 0 for the default");
        return -1;
    }
    int lock = lock_keys_file(path, err, err_size);
    if (lock < 0)
        return -1;
    int rc = -1;
    struct epcs_keyring *keyring = epcs_keyring_load(path, err, err_size);
    if (keyring == NULL)
        goto done;
    unsigned char id_bytes[EPCS_KEY_ID_LEN / 2], secret[32];
    do {
        if (RAND_bytes(id_bytes, sizeof(id_bytes)) != 1 ||
            RAND_bytes(secret, sizeof(secret)) != 1) {
            snprintf(err, err_size, "no random bytes for a key");
            goto done;
        }
        format_hex(id_bytes, sizeof(id_bytes), key->id);
    } while (find_key(keyring, key->id) != NULL);
    char secret_hex[65];
    format_hex(secret, sizeof(secret), secret_hex);
    snprintf(token, EPCS_KEY_TOKEN_LEN + 1, "epcs_%s_%s", key->id, secret_hex);
    SHA256((const unsigned char *)token, EPCS_KEY_TOKEN_LEN, key->token_sha256);
    snprintf(key->partner, sizeof(key->partner), "%s", partner);
    key->role = role;
    key->rate = rate;
    epcs_instant_format_s(time(NULL), key->created);
    rc = write_keys_file(path, keyring, NULL, key, err, err_size);
done:
    epcs_keyring_release(keyring);
    unlock_keys_file(lock);
    return rc;
}

int epcs_keys_file_revoke(const char *path, const char *id, char *err, size_t err_size)
{
    if (strlen(id) != EPCS_KEY_ID_LEN)
        return 1;
    int lock = lock_keys_file(path, err, err_size);
    if (lock < 0)
        return -1;
    int rc = -1;
    struct epcs_keyring *keyring = epcs_keyring_load(path, err, err_size);
    if (keyring == NULL)
        goto done;
    struct epcs_key *key = find_key(keyring, id);
    rc = key == NULL ? 1 : write_keys_file(path, keyring, key, NULL, err, err_size);
done:
    epcs_keyring_release(keyring);
    unlock_keys_file(lock);
    return rc;
}

/* ---- epcsd keys ... ----------------------------------------------------------------------- */

static void keys_usage(FILE *out)
{
    fputs("usage: epcsd keys create --partner ID --role partner|staff|admin [--rate N] [--keys "
          "FILE]\n"
          "       epcsd keys revoke ID [--keys FILE]\n"
          "       epcsd keys list [--keys FILE]\n"
          "\n"
          "The keys file defaults to var/keys (--data's default); give the same --keys FILE\n"
          "the server runs with. create prints the new token once: only its SHA-256 is kept.\n"
          "A running epcsd notices the change within a second.\n",
          out);
}

int epcs_keys_command(int argc, char **argv)
{
    const char *path = "var/keys", *partner = NULL, *role = NULL, *rate_text = "0", *id = NULL;
    if (argc < 1) {
        keys_usage(stderr);
        return 2;
    }
    const char *action = argv[0];
    if (strcmp(action, "--help") == 0 || strcmp(action, "help") == 0) {
        keys_usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **target = strcmp(arg, "--keys") == 0      ? &path
                              : strcmp(arg, "--partner") == 0 ? &partner
                              : strcmp(arg, "--role") == 0    ? &role
                              : strcmp(arg, "--rate") == 0    ? &rate_text
                                                              : NULL;
        if (target != NULL) {
            if (i + 1 == argc) {
                fprintf(stderr, "epcsd keys: %s needs a value\n", arg);
                return 2;
            }
            *target = argv[++i];
        } else if (arg[0] != '-' && id == NULL && strcmp(action, "revoke") == 0) {
            id = arg;
        } else {
            fprintf(stderr, "epcsd keys: unexpected argument '%s'\n", arg);
            keys_usage(stderr);
            return 2;
        }
    }
    char err[512];
    if (strcmp(action, "create") == 0) {
        if (partner == NULL || role == NULL) {
            fprintf(stderr, "epcsd keys create: --partner and --role are required\n");
            return 2;
        }
        char *end;
        double rate = strtod(rate_text, &end);
        if (*end != '\0') {
            fprintf(stderr, "epcsd keys create: --rate must be a number, got '%s'\n", rate_text);
            return 2;
        }
        char token[EPCS_KEY_TOKEN_LEN + 1];
        struct epcs_key key;
        if (epcs_keys_file_add(path, partner, epcs_role_parse(role), rate, token, &key, err,
                               sizeof(err)) != 0) {
            fprintf(stderr, "epcsd keys create: %s\n", err);
            return 1;
        }
        fprintf(stderr, "key %s for partner %s (%s) added to %s; the token follows, shown once\n",
                key.id, key.partner, epcs_role_name(key.role), path);
        printf("%s\n", token);
        return 0;
    }
    if (strcmp(action, "revoke") == 0) {
        if (id == NULL) {
            fprintf(stderr, "epcsd keys revoke: which key id? (epcsd keys list shows them)\n");
            return 2;
        }
        int rc = epcs_keys_file_revoke(path, id, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "epcsd keys revoke: %s\n", err);
            return 1;
        }
        if (rc > 0) {
            fprintf(stderr, "epcsd keys revoke: no key %s in %s\n", id, path);
            return 1;
        }
        fprintf(stderr, "key %s revoked in %s\n", id, path);
        return 0;
    }
    if (strcmp(action, "list") == 0) {
        struct epcs_keyring *keyring = epcs_keyring_load(path, err, sizeof(err));
        if (keyring == NULL) {
            fprintf(stderr, "epcsd keys list: %s\n", err);
            return 1;
        }
        printf("%-16s  %-20s  %-7s  %-8s  %s\n", "id", "partner", "role", "rate", "created");
        for (size_t i = 0; i < keyring->count; i++) {
            const struct epcs_key *key = &keyring->keys[i];
            char rate[32];
            if (key->rate > 0)
                snprintf(rate, sizeof(rate), "%g/s", key->rate);
            else
                snprintf(rate, sizeof(rate), "default");
            printf("%-16s  %-20s  %-7s  %-8s  %s\n", key->id, key->partner,
                   epcs_role_name(key->role), rate, key->created);
        }
        epcs_keyring_release(keyring);
        return 0;
    }
    fprintf(stderr, "epcsd keys: unknown action '%s'\n", action);
    keys_usage(stderr);
    return 2;
}
