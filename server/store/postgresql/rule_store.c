/*
 * The rule store's PostgreSQL backend (epcs_rule_store_postgresql, store.h): the versions every
 * replica of a cluster shares. Blobs by SHA-256 and manifests by version id are written once
 * and never changed (a second save of either inserts nothing); the activation history is
 * append-only, and `epcs_ruleset_active` is its single-row summary with an epoch that every
 * activation moves on by one, in the same transaction as its history row.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "log.h"
#include "pg_follow.h"
#include "pg_store.h"
#include "rule_store.h"
#include "rule_versions.h"
#include "store.h"

#define SCHEMA_VERSION 1

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS epcs_ruleset_blobs ("
    " sha256 text PRIMARY KEY, content bytea NOT NULL);"
    /* `stored` orders the listing: ids are hashes and say nothing of when. */
    "CREATE TABLE IF NOT EXISTS epcs_rulesets ("
    " id text PRIMARY KEY, stored bigint GENERATED ALWAYS AS IDENTITY UNIQUE,"
    " manifest text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS epcs_ruleset_activations ("
    " seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at text NOT NULL,"
    " from_id text, to_id text NOT NULL, by_whom text NOT NULL, why text NOT NULL);"
    /* Its one row exists from the start (no version, epoch 0), so that every activation,
     * the first included, locks the same row. */
    "CREATE TABLE IF NOT EXISTS epcs_ruleset_active ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one), id text, epoch bigint NOT NULL);"
    "INSERT INTO epcs_ruleset_active (one, id, epoch) VALUES (true, NULL, 0)"
    " ON CONFLICT (one) DO NOTHING;";

/* Every activation is announced on this channel, its payload the new epoch. */
#define CHANNEL "epcs_rules"

struct pg_rule_store {
    struct epcs_rule_store base;
    struct epcs_pg *pg;
    /* Other replicas' activations, heard of (NULL: not following). */
    struct epcs_pg_follower *follower;
};

static struct epcs_pg *pool_of(const struct epcs_rule_store *store)
{
    return ((const struct pg_rule_store *)store)->pg;
}

static struct epcs_rule_store *pg_open(const char *uri, char *err, size_t err_size)
{
    struct pg_rule_store *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        snprintf(err, err_size, "out of memory opening the rule store");
        return NULL;
    }
    store->base.ops = &epcs_rule_store_postgresql;
    if ((store->pg = epcs_pg_open(uri, "rule store", SCHEMA_VERSION, schema, err, err_size)) ==
        NULL) {
        free(store);
        return NULL;
    }
    return &store->base;
}

static void pg_unfollow(struct epcs_rule_store *base);

static void pg_close(struct epcs_rule_store *store)
{
    pg_unfollow(store);
    epcs_pg_close(pool_of(store));
    free(store);
}

static const char *pg_where(const struct epcs_rule_store *store)
{
    return epcs_pg_where(pool_of(store));
}

/* Logs `err` as the store's error and gives the connection back; what the caller returns:
 * EPCS_RULE_STORE_UNREACHABLE when the database is away, -1 otherwise. */
static int failed(struct epcs_rule_store *store, PGconn *conn, const char *err)
{
    int unreachable = epcs_pg_unreachable(conn);
    epcs_log(EPCS_LOG_ERROR, "store", "rule store at %s: %s", pg_where(store), err);
    epcs_pg_give(pool_of(store), conn);
    return unreachable ? EPCS_RULE_STORE_UNREACHABLE : -1;
}

static int save_blobs(PGconn *conn, const struct epcs_ruleset *ruleset, char *err, size_t err_size)
{
    for (size_t i = 0; i < ruleset->file_count; i++) {
        const struct epcs_rule_file *file = &ruleset->files[i];
        const char *values[] = {file->sha256, file->source};
        const int lengths[] = {-1, (int)file->length};
        /* Content-addressed: a blob already present holds exactly these bytes. */
        PGresult *result = epcs_pg_run(conn, "storing a rule file",
                                       "INSERT INTO epcs_ruleset_blobs (sha256, content)"
                                       " VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
                                       2, values, lengths, err, err_size);
        if (result == NULL)
            return -1;
        PQclear(result);
    }
    return 0;
}

static int pg_save(struct epcs_rule_store *store, const struct epcs_ruleset *ruleset)
{
    char err[512];
    char *manifest = epcs_rule_store_manifest_text(ruleset);
    if (manifest == NULL) {
        epcs_log(EPCS_LOG_ERROR, "store", "out of memory storing %s", ruleset->id);
        return -1;
    }
    PGconn *conn = epcs_pg_take(pool_of(store), err, sizeof(err));
    if (conn == NULL) {
        free(manifest);
        return failed(store, NULL, err);
    }
    const char *values[] = {ruleset->id, manifest};
    PGresult *result = NULL;
    /* The manifest goes in with its blobs or not at all: a version is never listed without
     * the files it names. A version stored before keeps the manifest it was stored with. */
    int rc = epcs_pg_command(conn, "storing a ruleset", "BEGIN", err, sizeof(err)) == 0 &&
                     save_blobs(conn, ruleset, err, sizeof(err)) == 0 &&
                     (result = epcs_pg_run(conn, "storing a manifest",
                                           "INSERT INTO epcs_rulesets (id, manifest)"
                                           " VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                                           2, values, NULL, err, sizeof(err))) != NULL &&
                     epcs_pg_command(conn, "storing a ruleset", "COMMIT", err, sizeof(err)) == 0
                 ? 0
                 : -1;
    PQclear(result);
    free(manifest);
    if (rc != 0)
        return failed(store, conn, err);
    epcs_pg_give(pool_of(store), conn);
    epcs_log(EPCS_LOG_INFO, "store", "stored %s in %s", ruleset->id, pg_where(store));
    return 0;
}

/* One text column of one row, looked up by a key: 0 found (appended to `out`), 1 not, -1. */
static int fetch_one(struct epcs_rule_store *store, const char *what, const char *sql,
                     const char *key, struct epcs_buf *out)
{
    char err[512];
    PGconn *conn = epcs_pg_take(pool_of(store), err, sizeof(err));
    if (conn == NULL)
        return failed(store, NULL, err);
    const char *values[] = {key};
    PGresult *result = epcs_pg_run(conn, what, sql, 1, values, NULL, err, sizeof(err));
    if (result == NULL)
        return failed(store, conn, err);
    int rc = 1;
    if (PQntuples(result) > 0 && PQgetisnull(result, 0, 0))
        rc = -1;
    else if (PQntuples(result) > 0)
        rc = epcs_buf_append(out, PQgetvalue(result, 0, 0), (size_t)PQgetlength(result, 0, 0));
    PQclear(result);
    epcs_pg_give(pool_of(store), conn);
    return rc;
}

static int pg_manifest(struct epcs_rule_store *store, const char *id, struct epcs_buf *out)
{
    if (!epcs_rule_store_valid_id(id, strlen(id)))
        return 1;
    return fetch_one(store, "reading a manifest",
                     "SELECT manifest FROM epcs_rulesets WHERE id = $1", id, out);
}

static int pg_blob(struct epcs_rule_store *store, const char *sha256, struct epcs_buf *out)
{
    if (!epcs_rule_store_valid_sha256(sha256))
        return 1;
    /* Hex text is the one bytea form that needs no binary result: decode it here. */
    struct epcs_buf hex = {0};
    int rc = fetch_one(store, "reading a rule file",
                       "SELECT encode(content, 'hex') FROM epcs_ruleset_blobs WHERE sha256 = $1",
                       sha256, &hex);
    for (size_t i = 0; rc == 0 && i + 1 < hex.len; i += 2) {
        char pair[3] = {hex.data[i], hex.data[i + 1], 0};
        char byte = (char)strtol(pair, NULL, 16);
        rc = epcs_buf_append(out, &byte, 1);
    }
    epcs_buf_free(&hex);
    return rc;
}

static json_t *activation_entry(PGresult *rows, int row)
{
    return json_pack("{s:s, s:s?, s:s, s:s, s:s}", "at", PQgetvalue(rows, row, 0), "from",
                     PQgetisnull(rows, row, 1) ? NULL : PQgetvalue(rows, row, 1), "to",
                     PQgetvalue(rows, row, 2), "by", PQgetvalue(rows, row, 3), "why",
                     PQgetvalue(rows, row, 4));
}

static int pg_list(struct epcs_rule_store *store, struct epcs_buf *out)
{
    char err[512];
    PGconn *conn = epcs_pg_take(pool_of(store), err, sizeof(err));
    if (conn == NULL)
        return failed(store, NULL, err);
    /* One snapshot for both halves: an activation committed between them would otherwise
     * name a version the list does not hold. */
    PGresult *versions = NULL, *history = NULL;
    if (epcs_pg_command(conn, "listing rulesets", "BEGIN ISOLATION LEVEL REPEATABLE READ", err,
                        sizeof(err)) != 0 ||
        (versions = epcs_pg_run(conn, "listing rulesets",
                                "SELECT manifest FROM epcs_rulesets ORDER BY stored", 0, NULL, NULL,
                                err, sizeof(err))) == NULL ||
        (history = epcs_pg_run(conn, "listing activations",
                               "SELECT at, from_id, to_id, by_whom, why"
                               " FROM epcs_ruleset_activations ORDER BY seq",
                               0, NULL, NULL, err, sizeof(err))) == NULL ||
        epcs_pg_command(conn, "listing rulesets", "COMMIT", err, sizeof(err)) != 0) {
        PQclear(versions);
        PQclear(history);
        return failed(store, conn, err);
    }
    epcs_pg_give(pool_of(store), conn);
    json_t *version_list = json_array(), *activation_list = json_array();
    for (int i = 0; i < PQntuples(versions); i++) {
        json_t *summary = epcs_rule_store_version_summary(PQgetvalue(versions, i, 0),
                                                          (size_t)PQgetlength(versions, i, 0));
        if (summary != NULL)
            json_array_append_new(version_list, summary);
    }
    for (int i = 0; i < PQntuples(history); i++)
        json_array_append_new(activation_list, activation_entry(history, i));
    PQclear(versions);
    PQclear(history);
    json_t *document =
        json_pack("{s:o, s:o}", "versions", version_list, "activations", activation_list);
    char *text = document != NULL ? json_dumps(document, JSON_COMPACT) : NULL;
    json_decref(document);
    int rc = text != NULL ? epcs_buf_append_str(out, text) : -1;
    free(text);
    return rc;
}

static int pg_active(struct epcs_rule_store *store, char id[24], uint64_t *epoch)
{
    char err[512];
    PGconn *conn = epcs_pg_take(pool_of(store), err, sizeof(err));
    if (conn == NULL)
        return failed(store, NULL, err);
    PGresult *result =
        epcs_pg_run(conn, "reading the active ruleset", "SELECT id, epoch FROM epcs_ruleset_active",
                    0, NULL, NULL, err, sizeof(err));
    if (result == NULL)
        return failed(store, conn, err);
    int rc = 1;
    *epoch = 0;
    if (PQntuples(result) == 1) {
        *epoch = strtoull(PQgetvalue(result, 0, 1), NULL, 10);
        const char *found = PQgetvalue(result, 0, 0);
        if (!PQgetisnull(result, 0, 0) && epcs_rule_store_valid_id(found, strlen(found))) {
            snprintf(id, 24, "%s", found);
            rc = 0;
        }
    }
    PQclear(result);
    epcs_pg_give(pool_of(store), conn);
    return rc;
}

/* Inside the activation's transaction: the epoch now, the active row locked until COMMIT. */
static int lock_epoch(PGconn *conn, uint64_t *epoch, char *err, size_t err_size)
{
    PGresult *result =
        epcs_pg_run(conn, "reading the epoch", "SELECT epoch FROM epcs_ruleset_active FOR UPDATE",
                    0, NULL, NULL, err, err_size);
    if (result == NULL)
        return -1;
    int rc = PQntuples(result) == 1 ? 0 : -1;
    if (rc == 0)
        *epoch = strtoull(PQgetvalue(result, 0, 0), NULL, 10);
    else
        snprintf(err, err_size, "the active ruleset's row is missing");
    PQclear(result);
    return rc;
}

static int run_and_clear(PGconn *conn, const char *what, const char *sql, int count,
                         const char *const *values, char *err, size_t err_size)
{
    PGresult *result = epcs_pg_run(conn, what, sql, count, values, NULL, err, err_size);
    PQclear(result);
    return result != NULL ? 0 : -1;
}

/* The history row, the active row and the announcement, in the transaction under way. */
static int record(PGconn *conn, const struct epcs_rule_activation *activation, uint64_t epoch,
                  char *err, size_t err_size)
{
    char at[EPCS_INSTANT_US_LEN], number[24];
    epcs_instant_format_us(epcs_now_us(), at);
    snprintf(number, sizeof(number), "%llu", (unsigned long long)epoch);
    const char *entry[] = {at, activation->from, activation->to, activation->by, activation->why};
    const char *active[] = {activation->to, number};
    const char *announce[] = {number};
    return run_and_clear(conn, "recording an activation",
                         "INSERT INTO epcs_ruleset_activations (at, from_id, to_id, by_whom, why)"
                         " VALUES ($1, $2, $3, $4, $5)",
                         5, entry, err, err_size) == 0 &&
                   run_and_clear(conn, "moving the active ruleset",
                                 "UPDATE epcs_ruleset_active SET id = $1, epoch = $2", 2, active,
                                 err, err_size) == 0 &&
                   /* Delivered at COMMIT, and only then: a listener never hears of an
                    * activation it cannot read yet. */
                   run_and_clear(conn, "announcing an activation",
                                 "SELECT pg_notify('" CHANNEL "', $1)", 1, announce, err,
                                 err_size) == 0
               ? 0
               : -1;
}

static int pg_activate(struct epcs_rule_store *store, const struct epcs_rule_activation *activation,
                       uint64_t *epoch)
{
    char err[512];
    PGconn *conn = epcs_pg_take(pool_of(store), err, sizeof(err));
    if (conn == NULL)
        return failed(store, NULL, err);
    int rc = epcs_pg_command(conn, "recording an activation", "BEGIN", err, sizeof(err)) == 0 &&
                     lock_epoch(conn, epoch, err, sizeof(err)) == 0
                 ? 0
                 : -1;
    if (rc == 0 && activation->expected_epoch != EPCS_RULE_EPOCH_ANY &&
        activation->expected_epoch != *epoch) {
        /* Decided on a stale view: give the lock back, record nothing. */
        epcs_pg_give(pool_of(store), conn);
        return 1;
    }
    if (rc == 0 &&
        (record(conn, activation, *epoch + 1, err, sizeof(err)) != 0 ||
         epcs_pg_command(conn, "recording an activation", "COMMIT", err, sizeof(err)) != 0))
        rc = -1;
    if (rc != 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot record the activation of %s: %s", activation->to,
                 err);
        epcs_pg_give(pool_of(store), conn);
        return -1;
    }
    *epoch += 1;
    epcs_pg_give(pool_of(store), conn);
    return 0;
}

/* ---- following the other replicas' activations ---------------------------------------------- */

static int pg_follow(struct epcs_rule_store *base, void (*changed)(void *ctx), void *ctx)
{
    struct pg_rule_store *store = (struct pg_rule_store *)base;
    if (store->follower != NULL)
        return -1;
    store->follower =
        epcs_pg_follow(store->pg, CHANNEL, "activations", EPCS_RULE_FOLLOW_POLL_MS, changed, ctx);
    return store->follower != NULL ? 0 : -1;
}

static void pg_unfollow(struct epcs_rule_store *base)
{
    struct pg_rule_store *store = (struct pg_rule_store *)base;
    epcs_pg_unfollow(store->follower);
    store->follower = NULL;
}

const struct epcs_rule_store_ops epcs_rule_store_postgresql = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .save = pg_save,
    .activate = pg_activate,
    .active = pg_active,
    .follow = pg_follow,
    .unfollow = pg_unfollow,
    .manifest = pg_manifest,
    .blob = pg_blob,
    .list = pg_list,
    .where = pg_where,
};
