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
    "CREATE TABLE IF NOT EXISTS epcs_ruleset_active ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one), id text NOT NULL,"
    " epoch bigint NOT NULL);";

struct pg_rule_store {
    struct epcs_rule_store base;
    struct epcs_pg *pg;
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

static void pg_close(struct epcs_rule_store *store)
{
    epcs_pg_close(pool_of(store));
    free(store);
}

static const char *pg_where(const struct epcs_rule_store *store)
{
    return epcs_pg_where(pool_of(store));
}

/* Logs `err` as the store's error and gives the connection back; -1 for the caller to return. */
static int failed(struct epcs_rule_store *store, PGconn *conn, const char *err)
{
    epcs_log(EPCS_LOG_ERROR, "store", "rule store at %s: %s", pg_where(store), err);
    epcs_pg_give(pool_of(store), conn);
    return -1;
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

static int pg_last_active(struct epcs_rule_store *store, char id[24])
{
    struct epcs_buf found = {0};
    int rc = fetch_one(store, "reading the active ruleset",
                       "SELECT id FROM epcs_ruleset_active WHERE one = $1", "true", &found);
    if (rc == 0 && epcs_rule_store_valid_id(found.data, found.len))
        snprintf(id, 24, "%.*s", (int)found.len, found.data);
    else if (rc == 0)
        rc = 1;
    epcs_buf_free(&found);
    return rc < 0 ? 1 : rc;
}

static int pg_record_activation(struct epcs_rule_store *store, const char *from, const char *to,
                                const char *by, const char *why)
{
    char err[512], at[EPCS_INSTANT_US_LEN];
    epcs_instant_format_us(epcs_now_us(), at);
    PGconn *conn = epcs_pg_take(pool_of(store), err, sizeof(err));
    if (conn == NULL)
        return failed(store, NULL, err);
    const char *entry[] = {at, from, to, by, why};
    const char *active[] = {to};
    PGresult *added = NULL, *moved = NULL;
    /* The history row and the active row's new epoch commit together: every replica that
     * reads the epoch finds the activation that made it. */
    int rc =
        epcs_pg_command(conn, "recording an activation", "BEGIN", err, sizeof(err)) == 0 &&
                (added = epcs_pg_run(conn, "recording an activation",
                                     "INSERT INTO epcs_ruleset_activations"
                                     " (at, from_id, to_id, by_whom, why)"
                                     " VALUES ($1, $2, $3, $4, $5)",
                                     5, entry, NULL, err, sizeof(err))) != NULL &&
                (moved = epcs_pg_run(conn, "moving the active ruleset",
                                     "INSERT INTO epcs_ruleset_active (id, epoch)"
                                     " VALUES ($1, 1) ON CONFLICT (one) DO UPDATE"
                                     " SET id = EXCLUDED.id,"
                                     " epoch = epcs_ruleset_active.epoch + 1",
                                     1, active, NULL, err, sizeof(err))) != NULL &&
                epcs_pg_command(conn, "recording an activation", "COMMIT", err, sizeof(err)) == 0
            ? 0
            : -1;
    PQclear(added);
    PQclear(moved);
    if (rc != 0) {
        epcs_log(EPCS_LOG_ERROR, "store", "cannot record the activation of %s: %s", to, err);
        epcs_pg_give(pool_of(store), conn);
        return -1;
    }
    epcs_pg_give(pool_of(store), conn);
    return 0;
}

const struct epcs_rule_store_ops epcs_rule_store_postgresql = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .save = pg_save,
    .record_activation = pg_record_activation,
    .last_active = pg_last_active,
    .manifest = pg_manifest,
    .blob = pg_blob,
    .list = pg_list,
    .where = pg_where,
};
