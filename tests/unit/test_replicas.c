/* The replica registry: what each replica lists of the others, with which ruleset, epoch and
 * readiness, how live ones are told from silent and stopped ones, and what a replica cut off
 * from the database still answers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg_scratch.h"
#include "replicas.h"
#include "store.h"
#include "testing.h"

static char where[600];

struct backend {
    const struct epcs_replicas_ops *ops;
    /** Makes a fresh place into `where`. 0, or -1. */
    int (*prepare)(void);
    /** Whether several handles on one place see each other (a cluster), or each is alone. */
    int shared;
};

static int embedded_prepare(void)
{
    where[0] = '\0';
    return 0;
}

static int pg_prepare(void)
{
    return epcs_test_pg_schema("test_replicas", where, sizeof(where));
}

static const struct backend backends[] = {
    {.ops = &epcs_replicas_embedded, .prepare = embedded_prepare, .shared = 0},
    {.ops = &epcs_replicas_postgresql, .prepare = pg_prepare, .shared = 1},
};

static const struct backend *backend;

static struct epcs_replicas *open_replicas(const char *audit)
{
    char err[512] = "";
    struct epcs_replicas *replicas = backend->ops->open(where, audit, err, sizeof(err));
    if (replicas == NULL)
        fprintf(stderr, "cannot open the %s registry: %s\n", backend->ops->name, err);
    return replicas;
}

/* What epcs_replicas_pack packs, decoded into `zone`'s keeping by `unpacked`. */
static const msgpack_object *listed(struct epcs_replicas *replicas, msgpack_sbuffer *out,
                                    msgpack_unpacked *unpacked)
{
    msgpack_sbuffer_clear(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    epcs_replicas_pack(replicas, &pk);
    msgpack_unpacked_destroy(unpacked);
    msgpack_unpacked_init(unpacked);
    if (msgpack_unpack_next(unpacked, out->data, out->size, NULL) != MSGPACK_UNPACK_SUCCESS)
        return NULL;
    return &unpacked->data;
}

static const msgpack_object *member(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int is_str(const msgpack_object *value, const char *text)
{
    return value != NULL && value->type == MSGPACK_OBJECT_STR &&
           value->via.str.size == strlen(text) &&
           memcmp(value->via.str.ptr, text, strlen(text)) == 0;
}

static int is_uint(const msgpack_object *value, uint64_t number)
{
    return value != NULL && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
           value->via.u64 == number;
}

static int is_bool(const msgpack_object *value, int truth)
{
    return value != NULL && value->type == MSGPACK_OBJECT_BOOLEAN && value->via.boolean == truth;
}

/* The listed row of run `run`, or NULL. */
static const msgpack_object *row_of(const msgpack_object *list, uint64_t run)
{
    const msgpack_object *rows = member(list, "replicas");
    if (rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    for (uint32_t i = 0; i < rows->via.array.size; i++) {
        if (is_uint(member(&rows->via.array.ptr[i], "run"), run))
            return &rows->via.array.ptr[i];
    }
    return NULL;
}

static size_t row_count(const msgpack_object *list)
{
    const msgpack_object *rows = member(list, "replicas");
    return rows != NULL && rows->type == MSGPACK_OBJECT_ARRAY ? rows->via.array.size : 0;
}

static const struct epcs_replica_status serving_a = {.ruleset = "rs-a", .epoch = 3, .ready = 1};
static const struct epcs_replica_status behind_b = {.ruleset = "rs-b", .epoch = 2, .ready = 0};

/* Before its first beat a replica lists nothing and counts itself. */
static void test_before_the_first_beat(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_replicas *a = open_replicas("sync");
    if (a == NULL)
        return;
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    const msgpack_object *list = listed(a, &out, &unpacked);
    EXPECT_INT(row_count(list), 0);
    EXPECT(is_uint(member(list, "live"), 1));
    EXPECT(member(list, "read_at") != NULL && member(list, "read_at")->type == MSGPACK_OBJECT_NIL);
    EXPECT_INT(epcs_replicas_live(a), 1);
    EXPECT(epcs_replicas_run(a) >= 1);
    msgpack_unpacked_destroy(&unpacked);
    msgpack_sbuffer_destroy(&out);
    epcs_replicas_close(a);
}

/* Each beat lists this replica with what it said: ruleset, epoch, readiness, audit, pid. */
static void test_a_beat_lists_this_replica(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_replicas *a = open_replicas("sync");
    if (a == NULL)
        return;
    char err[512] = "";
    EXPECT_INT(epcs_replicas_beat(a, &serving_a, err, sizeof(err)), 0);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    const msgpack_object *list = listed(a, &out, &unpacked);
    EXPECT_INT(row_count(list), 1);
    const msgpack_object *row = row_of(list, epcs_replicas_run(a));
    EXPECT(row != NULL);
    EXPECT(is_str(member(row, "ruleset"), "rs-a"));
    EXPECT(is_uint(member(row, "epoch"), 3));
    EXPECT(is_bool(member(row, "ready"), 1));
    EXPECT(is_bool(member(row, "self"), 1));
    EXPECT(is_str(member(row, "state"), "live"));
    EXPECT(is_str(member(row, "audit"), "sync"));
    EXPECT(is_uint(member(row, "pid"), (uint64_t)getpid()));
    const msgpack_object *age = member(row, "heartbeat_age_ms");
    EXPECT(age != NULL && age->type == MSGPACK_OBJECT_POSITIVE_INTEGER && age->via.u64 < 1000);
    EXPECT(is_uint(member(list, "live"), 1));
    /* A later beat says what changed. */
    EXPECT_INT(epcs_replicas_beat(a, &behind_b, err, sizeof(err)), 0);
    list = listed(a, &out, &unpacked);
    row = row_of(list, epcs_replicas_run(a));
    EXPECT(is_str(member(row, "ruleset"), "rs-b"));
    EXPECT(is_uint(member(row, "epoch"), 2));
    EXPECT(is_bool(member(row, "ready"), 0));
    msgpack_unpacked_destroy(&unpacked);
    msgpack_sbuffer_destroy(&out);
    epcs_replicas_close(a);
}

/* Replicas on one database see each other: live until one stops, silent once its beat is
 * older than EPCS_REPLICA_LIVE_MS; the embedded registry is each process alone. */
static void test_replicas_see_each_other(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_replicas *a = open_replicas("sync"), *b = open_replicas("async");
    if (a == NULL || b == NULL) {
        epcs_replicas_close(a);
        epcs_replicas_close(b);
        return;
    }
    char err[512] = "";
    EXPECT_INT(epcs_replicas_beat(b, &behind_b, err, sizeof(err)), 0);
    EXPECT_INT(epcs_replicas_beat(a, &serving_a, err, sizeof(err)), 0);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    const msgpack_object *list = listed(a, &out, &unpacked);
    if (!backend->shared) {
        EXPECT_INT(row_count(list), 1);
        EXPECT_INT(epcs_replicas_live(a), 1);
        goto done;
    }
    EXPECT(epcs_replicas_run(a) != epcs_replicas_run(b));
    EXPECT_INT(row_count(list), 2);
    const msgpack_object *other = row_of(list, epcs_replicas_run(b));
    EXPECT(other != NULL);
    EXPECT(is_str(member(other, "ruleset"), "rs-b"));
    EXPECT(is_bool(member(other, "ready"), 0));
    EXPECT(is_bool(member(other, "self"), 0));
    EXPECT(is_str(member(other, "audit"), "async"));
    EXPECT(is_str(member(other, "state"), "live"));
    EXPECT_INT(epcs_replicas_live(a), 2);
    /* One whose beat is older than EPCS_REPLICA_LIVE_MS (killed, cut off) is silent. */
    char number[24];
    snprintf(number, sizeof(number), "%llu", (unsigned long long)epcs_replicas_run(b));
    EXPECT_INT(epcs_test_pg_exec(where,
                                 "UPDATE epcs_runs SET heartbeat_at = now() - interval '6 s'"
                                 " WHERE id = $1::bigint",
                                 number),
               0);
    EXPECT_INT(epcs_replicas_beat(a, &serving_a, err, sizeof(err)), 0);
    list = listed(a, &out, &unpacked);
    EXPECT(is_str(member(row_of(list, epcs_replicas_run(b)), "state"), "silent"));
    EXPECT_INT(epcs_replicas_live(a), 1);
    EXPECT(is_uint(member(list, "live"), 1));
    /* One that stopped is listed as stopped, and no longer counted. */
    EXPECT_INT(epcs_replicas_beat(b, &behind_b, err, sizeof(err)), 0);
    uint64_t run_b = epcs_replicas_run(b);
    epcs_replicas_close(b);
    b = NULL;
    EXPECT_INT(epcs_replicas_beat(a, &serving_a, err, sizeof(err)), 0);
    list = listed(a, &out, &unpacked);
    EXPECT(is_str(member(row_of(list, run_b), "state"), "stopped"));
    EXPECT_INT(epcs_replicas_live(a), 1);
    /* One stopped longer ago than EPCS_REPLICA_LISTED_S is no longer listed. */
    snprintf(number, sizeof(number), "%llu", (unsigned long long)run_b);
    EXPECT_INT(epcs_test_pg_exec(where,
                                 "UPDATE epcs_runs SET stopped_at = now() - interval '601 s'"
                                 " WHERE id = $1::bigint",
                                 number),
               0);
    EXPECT_INT(epcs_replicas_beat(a, &serving_a, err, sizeof(err)), 0);
    list = listed(a, &out, &unpacked);
    EXPECT(row_of(list, run_b) == NULL);
    EXPECT_INT(row_count(list), 1);
done:
    msgpack_unpacked_destroy(&unpacked);
    msgpack_sbuffer_destroy(&out);
    epcs_replicas_close(a);
    epcs_replicas_close(b);
}

/* A replica whose row is gone (a database restored from an older backup) fails its beat and
 * keeps its last read, rather than list a cluster it is not part of. */
static void test_a_lost_row_fails_the_beat(void)
{
    if (!backend->shared)
        return;
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_replicas *a = open_replicas("sync");
    if (a == NULL)
        return;
    char err[512] = "", number[24];
    EXPECT_INT(epcs_replicas_beat(a, &serving_a, err, sizeof(err)), 0);
    snprintf(number, sizeof(number), "%llu", (unsigned long long)epcs_replicas_run(a));
    EXPECT_INT(epcs_test_pg_exec(where, "DELETE FROM epcs_runs WHERE id = $1::bigint", number), 0);
    EXPECT_INT(epcs_replicas_beat(a, &behind_b, err, sizeof(err)), -1);
    char expected[128];
    snprintf(expected, sizeof(expected), "marking this replica alive: no run %s in epcs_runs",
             number);
    EXPECT_STR(err, expected);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    const msgpack_object *list = listed(a, &out, &unpacked);
    EXPECT(is_str(member(row_of(list, epcs_replicas_run(a)), "ruleset"), "rs-a"));
    msgpack_unpacked_destroy(&unpacked);
    msgpack_sbuffer_destroy(&out);
    epcs_replicas_close(a);
}

struct beater {
    struct epcs_replicas *replicas;
    int beats, failed;
};

static void *beat_often(void *arg)
{
    struct beater *beater = arg;
    char err[512];
    for (int i = 0; i < beater->beats; i++) {
        const struct epcs_replica_status *status = i % 2 ? &serving_a : &behind_b;
        beater->failed += epcs_replicas_beat(beater->replicas, status, err, sizeof(err)) != 0;
    }
    return NULL;
}

/* The beat replaces the last read on its thread while routes pack it on theirs: every pack is
 * whole (one row, of one beat or the other), under ThreadSanitizer too. */
static void test_packs_while_beating(void)
{
    EXPECT_INT(backend->prepare(), 0);
    struct epcs_replicas *a = open_replicas("sync");
    if (a == NULL)
        return;
    struct beater beater = {.replicas = a, .beats = 200};
    pthread_t thread;
    EXPECT_INT(pthread_create(&thread, NULL, beat_often, &beater), 0);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    int whole = 1;
    for (int i = 0; i < 200; i++) {
        const msgpack_object *list = listed(a, &out, &unpacked);
        const msgpack_object *row = row_of(list, epcs_replicas_run(a));
        if (row_count(list) > 1 || (row != NULL && !is_str(member(row, "ruleset"), "rs-a") &&
                                    !is_str(member(row, "ruleset"), "rs-b")))
            whole = 0;
        (void)epcs_replicas_live(a);
    }
    pthread_join(thread, NULL);
    EXPECT_INT(beater.failed, 0);
    EXPECT(whole);
    msgpack_unpacked_destroy(&unpacked);
    msgpack_sbuffer_destroy(&out);
    epcs_replicas_close(a);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        backend = &backends[i];
        fprintf(stderr, "replica registry backend %s\n", backend->ops->name);
        test_before_the_first_beat();
        test_a_beat_lists_this_replica();
        test_replicas_see_each_other();
        test_a_lost_row_fails_the_beat();
        test_packs_while_beating();
    }
    return epcs_test_report();
}
