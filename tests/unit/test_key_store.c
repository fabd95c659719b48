/* The key store: keys made, listed and revoked as every epcsd sees them, what a second handle
 * (another replica, `epcsd keys`) learns of a change and how soon, what a damaged store
 * answers, and the rate usage replicas share. */
#include <fcntl.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "key_store.h"
#include "pg_scratch.h"
#include "store.h"
#include "testing.h"

static char scratch[] = "/tmp/epcs-test-key-store-XXXXXX";
/* The backend's place: the keys file's path, or a schema's connection string. */
static char where[600];

/*
 * Every test runs against each backend of the key store, through the ops of the handles it
 * opens. What a test must do beneath the interface (damage a key, look for a secret, change
 * the keys without telling anyone) is the row's, in that backend's terms; NULL where the
 * backend cannot suffer it.
 */
struct backend {
    const struct epcs_key_store_ops *ops;
    /** Makes a fresh, empty place into `where`. 0, or -1. */
    int (*prepare)(void);
    /** Gives key `id` the role "root", as a hand edit would. 0, or -1. */
    int (*damage)(const char *id);
    /** 0 when `text` appears nowhere in the store, -1 when it does (or cannot be read). */
    int (*absent)(const char *text);
    /** Changes key `id`'s rate with no announcement, as a lost one would leave it. 0, -1. */
    int (*change_silently)(const char *id);
};

static char *read_all(const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return NULL;
    char *text = calloc(1, 65536);
    size_t got = text != NULL ? fread(text, 1, 65535, file) : 0;
    (void)got;
    fclose(file);
    return text;
}

static int file_prepare(void)
{
    snprintf(where, sizeof(where), "%s/keys", scratch);
    unlink(where);
    return 0;
}

static int file_damage(const char *id)
{
    char *text = read_all(where), *line = text != NULL ? strstr(text, id) : NULL;
    char *role = line != NULL ? strchr(strchr(line, ' ') + 1, ' ') : NULL;
    if (role == NULL) {
        free(text);
        return -1;
    }
    /* The role field, whichever it is, becomes "root" (padded: lines keep their length). */
    size_t len = strcspn(role + 1, " ");
    memset(role + 1, ' ', len);
    memcpy(role + 1, "root", 4);
    FILE *file = fopen(where, "w");
    int rc = file != NULL && fputs(text, file) >= 0 ? 0 : -1;
    if (file != NULL)
        fclose(file);
    free(text);
    return rc;
}

static int file_absent(const char *text)
{
    char *content = read_all(where);
    int rc = content != NULL && strstr(content, text) == NULL ? 0 : -1;
    free(content);
    return rc;
}

static int pg_prepare(void)
{
    return epcs_test_pg_schema("test_key_store", where, sizeof(where));
}

static int pg_damage(const char *id)
{
    return epcs_test_pg_exec(where, "UPDATE epcs_keys SET role = 'root' WHERE id = $1", id);
}

static int pg_absent(const char *text)
{
    /* A division by zero, and so an error, when any row holds the text. */
    return epcs_test_pg_exec(where,
                             "SELECT 1 / (NOT EXISTS (SELECT 1 FROM epcs_keys k"
                             " WHERE k::text LIKE '%' || $1 || '%'))::int",
                             text);
}

static int pg_change_silently(const char *id)
{
    return epcs_test_pg_exec(where,
                             "WITH changed AS (UPDATE epcs_keys SET rate = 7 WHERE id = $1)"
                             " UPDATE epcs_keys_version SET version = version + 1",
                             id);
}

static const struct backend backends[] = {
    {.ops = &epcs_key_store_file,
     .prepare = file_prepare,
     .damage = file_damage,
     .absent = file_absent},
    {.ops = &epcs_key_store_postgresql,
     .prepare = pg_prepare,
     .damage = pg_damage,
     .absent = pg_absent,
     .change_silently = pg_change_silently},
};

static const struct backend *backend;

static struct epcs_key_store *open_store(void)
{
    char err[512] = "";
    struct epcs_key_store *store = backend->ops->open(where, err, sizeof(err));
    if (store == NULL)
        fprintf(stderr, "cannot open the %s key store: %s\n", backend->ops->name, err);
    return store;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void test_empty_store(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_key_store *store = open_store();
    EXPECT(store != NULL);
    if (store == NULL)
        return;
    struct epcs_key_record *records = (void *)1;
    size_t count = 99;
    char err[512] = "";
    EXPECT_INT(epcs_key_store_load(store, &records, &count, err, sizeof(err)), 0);
    EXPECT(records == NULL);
    EXPECT_INT(count, 0);
    EXPECT(!epcs_key_store_stale(store));
    epcs_key_store_close(store);
}

static void test_create_list_revoke(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_key_store *store = open_store();
    if (store == NULL)
        return;
    char token[EPCS_KEY_TOKEN_LEN + 1], second[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key_record key, other;
    EXPECT_INT(
        epcs_key_store_create(store, "naver", EPCS_ROLE_PARTNER, 0, token, &key, err, sizeof(err)),
        0);
    EXPECT_INT(epcs_key_store_create(store, "nec-staff", EPCS_ROLE_STAFF, 25.5, second, &other, err,
                                     sizeof(err)),
               0);
    EXPECT_INT(strlen(token), EPCS_KEY_TOKEN_LEN);
    EXPECT(strncmp(token, "epcs_", 5) == 0);
    EXPECT(strncmp(token + 5, key.id, EPCS_KEY_ID_LEN) == 0);
    unsigned char digest[32];
    SHA256((const unsigned char *)token, strlen(token), digest);
    EXPECT(memcmp(digest, key.token_sha256, 32) == 0);
    /* Only the hash is kept: the secret is nowhere in the store. */
    EXPECT_INT(backend->absent(token + 5 + EPCS_KEY_ID_LEN + 1), 0);
    EXPECT_INT(backend->absent(second + 5 + EPCS_KEY_ID_LEN + 1), 0);
    /* What is kept is found by the same look. */
    EXPECT_INT(backend->absent("nec-staff"), -1);
    if (backend->ops == &epcs_key_store_file) {
        struct stat st;
        EXPECT_INT(stat(where, &st), 0);
        /* Only the owner may read who holds which hash. */
        EXPECT_INT(st.st_mode & 0777, 0600);
    }

    struct epcs_key_record *records = NULL;
    size_t count = 0;
    EXPECT_INT(epcs_key_store_load(store, &records, &count, err, sizeof(err)), 0);
    EXPECT_INT(count, 2);
    if (count == 2) {
        int first = strcmp(key.id, other.id) < 0 ? 0 : 1;
        const struct epcs_key_record *a = &records[first], *b = &records[1 - first];
        EXPECT_STR(a->id, key.id);
        EXPECT_STR(a->partner, "naver");
        EXPECT_INT(a->role, EPCS_ROLE_PARTNER);
        EXPECT(a->rate == 0);
        EXPECT_STR(a->created, key.created);
        EXPECT(memcmp(a->token_sha256, key.token_sha256, 32) == 0);
        EXPECT_STR(b->id, other.id);
        EXPECT_STR(b->partner, "nec-staff");
        EXPECT_INT(b->role, EPCS_ROLE_STAFF);
        EXPECT(b->rate == 25.5);
        EXPECT(memcmp(b->token_sha256, other.token_sha256, 32) == 0);
    }
    free(records);

    EXPECT_INT(epcs_key_store_revoke(store, key.id, err, sizeof(err)), 0);
    EXPECT_INT(epcs_key_store_revoke(store, key.id, err, sizeof(err)), 1);
    EXPECT_INT(epcs_key_store_revoke(store, "0123456789abcdef", err, sizeof(err)), 1);
    EXPECT_INT(epcs_key_store_revoke(store, "../keys", err, sizeof(err)), 1);
    EXPECT_INT(epcs_key_store_load(store, &records, &count, err, sizeof(err)), 0);
    EXPECT_INT(count, 1);
    EXPECT_STR(count == 1 ? records[0].id : NULL, other.id);
    free(records);
    epcs_key_store_close(store);
}

static void test_refuses_bad_input(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_key_store *store = open_store();
    if (store == NULL)
        return;
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key_record key;
    EXPECT_INT(epcs_key_store_create(store, "Has Space", EPCS_ROLE_PARTNER, 0, token, &key, err,
                                     sizeof(err)),
               -1);
    EXPECT_STR(err, "partner 'Has Space' must be 1-63 of a-z 0-9 _ - .");
    EXPECT_INT(
        epcs_key_store_create(store, "kakao", EPCS_ROLE_NONE, 0, token, &key, err, sizeof(err)),
        -1);
    EXPECT_STR(err, "role must be partner, staff or admin");
    EXPECT_INT(
        epcs_key_store_create(store, "kakao", EPCS_ROLE_ADMIN, -1, token, &key, err, sizeof(err)),
        -1);
    EXPECT_STR(err, "rate must be a number of requests a second, 0 for the default");
    struct epcs_key_record *records = NULL;
    size_t count = 9;
    EXPECT_INT(epcs_key_store_load(store, &records, &count, err, sizeof(err)), 0);
    EXPECT_INT(count, 0);
    free(records);
    epcs_key_store_close(store);
}

static void test_damaged_key(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_key_store *store = open_store();
    if (store == NULL)
        return;
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key_record key;
    EXPECT_INT(
        epcs_key_store_create(store, "naver", EPCS_ROLE_PARTNER, 0, token, &key, err, sizeof(err)),
        0);
    EXPECT_INT(backend->damage(key.id), 0);
    struct epcs_key_record *records = NULL;
    size_t count = 0;
    EXPECT_INT(epcs_key_store_load(store, &records, &count, err, sizeof(err)), -1);
    EXPECT(records == NULL);
    EXPECT_CONTAINS(err, "role 'root' must be partner, staff or admin");
    /* Where: the file's line, or the key's id. */
    EXPECT_CONTAINS(err, backend->ops == &epcs_key_store_file ? ":3: " : key.id);
    /* The file is read whole before it is written, and a write refuses rather than drop a
     * line it cannot read; a table's rows are written one by one. */
    EXPECT_INT(epcs_key_store_revoke(store, key.id, err, sizeof(err)),
               backend->ops == &epcs_key_store_file ? -1 : 0);
    epcs_key_store_close(store);
}

/* What a follower heard: how many calls, and when the first came. */
static struct {
    pthread_mutex_t lock;
    int calls;
    struct timespec first;
} heard = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void cb_changed(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&heard.lock);
    if (heard.calls++ == 0)
        clock_gettime(CLOCK_MONOTONIC, &heard.first);
    pthread_mutex_unlock(&heard.lock);
}

/* Seconds from `start` to the follower's first call after it, or -1 after `limit` seconds. */
static double wait_heard(const struct timespec *start, double limit)
{
    for (;;) {
        pthread_mutex_lock(&heard.lock);
        int calls = heard.calls;
        struct timespec first = heard.first;
        pthread_mutex_unlock(&heard.lock);
        if (calls > 0)
            return (double)(first.tv_sec - start->tv_sec) +
                   (double)(first.tv_nsec - start->tv_nsec) / 1e9;
        if (seconds_since(start) > limit)
            return -1;
        usleep(2000);
    }
}

static void reset_heard(void)
{
    pthread_mutex_lock(&heard.lock);
    heard.calls = 0;
    pthread_mutex_unlock(&heard.lock);
}

static void test_other_handles_learn_of_changes(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_key_store *replica = open_store(), *admin = open_store();
    if (replica == NULL || admin == NULL) {
        epcs_key_store_close(replica);
        epcs_key_store_close(admin);
        return;
    }
    char token[EPCS_KEY_TOKEN_LEN + 1], err[512] = "";
    struct epcs_key_record key, *records = NULL;
    size_t count = 0;
    EXPECT_INT(epcs_key_store_load(replica, &records, &count, err, sizeof(err)), 0);
    EXPECT_INT(epcs_key_store_follow(replica, cb_changed, NULL), 0);
    reset_heard();
    /* A follower's first look, at its connection, finds nothing new. */
    usleep(200 * 1000);
    EXPECT_INT(heard.calls, 0);
    EXPECT(!epcs_key_store_stale(replica));

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    EXPECT_INT(
        epcs_key_store_create(admin, "naver", EPCS_ROLE_PARTNER, 0, token, &key, err, sizeof(err)),
        0);
    if (backend->ops->follow != NULL) {
        /* Announced: heard well within the second a revocation may take. */
        double took = wait_heard(&start, 2);
        fprintf(stderr, "  a change heard after %.1f ms\n", took * 1000);
        EXPECT(took >= 0 && took < 0.5);
    }
    EXPECT(epcs_key_store_stale(replica));
    EXPECT_INT(epcs_key_store_load(replica, &records, &count, err, sizeof(err)), 0);
    EXPECT_INT(count, 1);
    free(records);
    EXPECT(!epcs_key_store_stale(replica));

    if (backend->change_silently != NULL) {
        /* Nothing announced: the next poll finds it, a second later at most. */
        reset_heard();
        clock_gettime(CLOCK_MONOTONIC, &start);
        EXPECT_INT(backend->change_silently(key.id), 0);
        double took = wait_heard(&start, 3);
        fprintf(stderr, "  an unannounced change found after %.1f ms\n", took * 1000);
        EXPECT(took >= 0 && took <= EPCS_KEY_FOLLOW_POLL_MS / 1000.0 + 0.2);
        EXPECT(epcs_key_store_stale(replica));
        EXPECT_INT(epcs_key_store_load(replica, &records, &count, err, sizeof(err)), 0);
        EXPECT(count == 1 && records[0].rate == 7);
        free(records);
    }

    /* A revocation by the other handle, the reason for all this. */
    reset_heard();
    EXPECT_INT(epcs_key_store_revoke(admin, key.id, err, sizeof(err)), 0);
    if (backend->ops->follow != NULL)
        EXPECT(wait_heard(&start, 2) >= 0);
    EXPECT(epcs_key_store_stale(replica));
    EXPECT_INT(epcs_key_store_load(replica, &records, &count, err, sizeof(err)), 0);
    EXPECT_INT(count, 0);
    free(records);
    epcs_key_store_unfollow(replica);
    epcs_key_store_close(replica);
    epcs_key_store_close(admin);
}

static void test_shared_usage(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_key_store *a = open_store(), *b = open_store();
    if (a == NULL || b == NULL) {
        epcs_key_store_close(a);
        epcs_key_store_close(b);
        return;
    }
    char err[512] = "";
    const char *ids[] = {"00000000000000a1", "00000000000000b2"};
    double totals[2] = {-1, -1};
    if (!epcs_key_store_shares_usage(a)) {
        /* One epcsd per keys file: nothing to share, and asking is an error, not a no-op. */
        EXPECT_INT(
            epcs_key_store_exchange_usage(a, ids, (double[]){1, 1}, 2, totals, err, sizeof(err)),
            -1);
        EXPECT_STR(err, "the file key store shares no rate usage");
        epcs_key_store_close(a);
        epcs_key_store_close(b);
        return;
    }
    EXPECT_INT(epcs_key_store_exchange_usage(a, ids, (double[]){3, 0}, 2, totals, err, sizeof(err)),
               0);
    EXPECT(totals[0] == 3 && totals[1] == 0);
    EXPECT_INT(epcs_key_store_exchange_usage(b, ids, (double[]){2}, 1, totals, err, sizeof(err)),
               0);
    EXPECT(totals[0] == 5);
    /* The other's takings show to one that took nothing; a refund counts back. */
    EXPECT_INT(
        epcs_key_store_exchange_usage(a, ids, (double[]){0.5, 1}, 2, totals, err, sizeof(err)), 0);
    EXPECT(totals[0] == 5.5 && totals[1] == 1);
    EXPECT_INT(
        epcs_key_store_exchange_usage(b, ids, (double[]){-1.5, 0}, 2, totals, err, sizeof(err)), 0);
    EXPECT(totals[0] == 4 && totals[1] == 1);
    const char *bad[] = {"1'; DROP TABLE x"};
    EXPECT_INT(epcs_key_store_exchange_usage(a, bad, (double[]){1}, 1, totals, err, sizeof(err)),
               -1);
    EXPECT_CONTAINS(err, "a key id is malformed");

    epcs_key_store_close(a);
    epcs_key_store_close(b);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        backend = &backends[i];
        if (mkdtemp(strcpy(scratch, "/tmp/epcs-test-key-store-XXXXXX")) == NULL)
            return 1;
        fprintf(stderr, "key store backend %s\n", backend->ops->name);
        test_empty_store();
        test_create_list_revoke();
        test_refuses_bad_input();
        test_damaged_key();
        test_other_handles_learn_of_changes();
        test_shared_usage();
        char command[128];
        snprintf(command, sizeof(command), "rm -rf %s", scratch);
        if (system(command) != 0)
            return 1;
    }
    return epcs_test_report();
}
