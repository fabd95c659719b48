/*
 * The key store's PostgreSQL backend (epcs_key_store_postgresql, store.h): the keys every
 * replica of a cluster shares, and what their rate limits share.
 *
 * epcs_keys holds a row per key ever made; a revoked one keeps its row, with revoked_at, so
 * that who could get in when stays known. Every change moves the single row of
 * epcs_keys_version on by one in its own transaction and announces the new version on channel
 * epcs_keys at COMMIT. A follower (pg_follow.h) reads the version at every announcement and
 * every second: a replica whose keys are older reloads them, so a revocation reaches every
 * replica within a second even when the announcement is lost.
 *
 * epcs_key_usage (UNLOGGED: a count lost in a crash costs a moment's leniency, not a WAL
 * record ten times a second per replica) holds how many tokens the replicas together ever
 * took under each key; each replica adds what it took and reads the total back in one
 * statement (epcs_key_store_exchange_usage).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_key.h"
#include "buf.h"
#include "key_store.h"
#include "log.h"
#include "pg_follow.h"
#include "pg_store.h"
#include "store.h"

#define SCHEMA_VERSION 1

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS epcs_keys ("
    " id text PRIMARY KEY, partner text NOT NULL, role text NOT NULL,"
    " token_sha256 text NOT NULL, rate double precision NOT NULL, created text NOT NULL,"
    " revoked_at timestamptz);"
    /* Its one row exists from the start, so every change, the first included, locks it:
     * changes are then seen in the order they committed. */
    "CREATE TABLE IF NOT EXISTS epcs_keys_version ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one), version bigint NOT NULL);"
    "INSERT INTO epcs_keys_version (one, version) VALUES (true, 0)"
    " ON CONFLICT (one) DO NOTHING;"
    "CREATE UNLOGGED TABLE IF NOT EXISTS epcs_key_usage ("
    " key_id text PRIMARY KEY, used double precision NOT NULL);";

/* Every change of the keys is announced on this channel, its payload the new version. */
#define CHANNEL "epcs_keys"

struct pg_key_store {
    struct epcs_key_store base;
    struct epcs_pg *pg;
    /* The version the last load read, and the one the follower last read; -1 before either. */
    _Atomic int64_t loaded_version;
    _Atomic int64_t heard_version;
    struct epcs_pg_follower *follower;
    void (*changed)(void *ctx);
    void *ctx;
};

static struct pg_key_store *of(struct epcs_key_store *base)
{
    return (struct pg_key_store *)base;
}

static struct epcs_key_store *pg_open(const char *uri, char *err, size_t err_size)
{
    struct pg_key_store *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        snprintf(err, err_size, "out of memory opening the key store");
        return NULL;
    }
    store->base.ops = &epcs_key_store_postgresql;
    atomic_init(&store->loaded_version, -1);
    atomic_init(&store->heard_version, -1);
    if ((store->pg = epcs_pg_open(uri, "keys", SCHEMA_VERSION, schema, err, err_size)) == NULL) {
        free(store);
        return NULL;
    }
    return &store->base;
}

static void pg_unfollow(struct epcs_key_store *base);

static void pg_close(struct epcs_key_store *base)
{
    pg_unfollow(base);
    epcs_pg_close(of(base)->pg);
    free(base);
}

static const char *pg_where(const struct epcs_key_store *base)
{
    return epcs_pg_where(((const struct pg_key_store *)base)->pg);
}

/* A row of the load's result into `record`. 0, or -1 with `err` naming the key. */
static int row_record(PGresult *rows, int row, struct epcs_key_record *record, char *err,
                      size_t err_size)
{
    const char *fields[EPCS_KEY_FIELDS];
    for (int i = 0; i < EPCS_KEY_FIELDS; i++)
        fields[i] = PQgetvalue(rows, row, i + 1);
    char reason[200];
    if (epcs_key_record_parse(fields, record, reason, sizeof(reason)) == 0)
        return 0;
    snprintf(err, err_size, "key %.32s in epcs_keys: %s", fields[EPCS_KEY_FIELD_ID], reason);
    return -1;
}

static int pg_load(struct epcs_key_store *base, struct epcs_key_record **records, size_t *count,
                   char *err, size_t err_size)
{
    struct pg_key_store *store = of(base);
    *records = NULL;
    *count = 0;
    PGconn *conn = epcs_pg_take(store->pg, err, err_size);
    if (conn == NULL)
        return -1;
    /* The version and the keys in one snapshot; "C" sorts ids as strcmp does. */
    PGresult *rows =
        epcs_pg_run(conn, "reading the keys",
                    "SELECT v.version, k.id, k.partner, k.role, k.token_sha256, k.rate, k.created"
                    " FROM epcs_keys_version v LEFT JOIN epcs_keys k ON k.revoked_at IS NULL"
                    " ORDER BY k.id COLLATE \"C\"",
                    0, NULL, NULL, err, err_size);
    epcs_pg_give(store->pg, conn);
    if (rows == NULL)
        return -1;
    int total = PQntuples(rows), rc = 0;
    if (total == 0) {
        snprintf(err, err_size, "reading the keys: the row of epcs_keys_version is missing");
        rc = -1;
    } else if ((*records = calloc((size_t)total, sizeof(**records))) == NULL) {
        snprintf(err, err_size, "out of memory reading %d keys", total);
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < total; i++) {
        /* No key at all: the version's row joined to nothing. */
        if (PQgetisnull(rows, i, 1))
            continue;
        rc = row_record(rows, i, &(*records)[*count], err, err_size);
        if (rc == 0)
            (*count)++;
    }
    if (rc == 0)
        atomic_store(&store->loaded_version, strtoll(PQgetvalue(rows, 0, 0), NULL, 10));
    PQclear(rows);
    if (rc != 0 || *count == 0) {
        free(*records);
        *records = NULL;
        if (rc != 0)
            *count = 0;
    }
    return rc;
}

static int run_and_clear(PGconn *conn, const char *what, const char *sql, int count,
                         const char *const *values, char *err, size_t err_size)
{
    PGresult *result = epcs_pg_run(conn, what, sql, count, values, NULL, err, err_size);
    PQclear(result);
    return result != NULL ? 0 : -1;
}

/* Inside the change's transaction: the version moved on, announced at COMMIT, committed. */
static int commit_change(PGconn *conn, char *err, size_t err_size)
{
    PGresult *moved = epcs_pg_run(conn, "moving the keys' version",
                                  "UPDATE epcs_keys_version SET version = version + 1"
                                  " RETURNING version",
                                  0, NULL, NULL, err, err_size);
    if (moved == NULL)
        return -1;
    int rc = PQntuples(moved) == 1 ? 0 : -1;
    if (rc != 0)
        snprintf(err, err_size,
                 "moving the keys' version: the row of epcs_keys_version is "
                 "missing");
    const char *announce[] = {rc == 0 ? PQgetvalue(moved, 0, 0) : NULL};
    /* Delivered at COMMIT, and only then: a follower never hears of keys it cannot read. */
    if (rc == 0)
        rc = run_and_clear(conn, "announcing the change", "SELECT pg_notify('" CHANNEL "', $1)", 1,
                           announce, err, err_size);
    PQclear(moved);
    if (rc == 0)
        rc = epcs_pg_command(conn, "committing the change", "COMMIT", err, err_size);
    return rc;
}

/* The minted key inserted, or 1 when its id is taken (minted again by the caller). */
static int insert_key(PGconn *conn, const struct epcs_key_record *record, char *err,
                      size_t err_size)
{
    char hash[65], rate[32];
    epcs_key_record_hash_hex(record, hash);
    snprintf(rate, sizeof(rate), "%.17g", record->rate);
    const char *values[] = {record->id, record->partner, epcs_role_name(record->role), hash,
                            rate,       record->created};
    PGresult *result = epcs_pg_run(conn, "adding a key",
                                   "INSERT INTO epcs_keys"
                                   " (id, partner, role, token_sha256, rate, created)"
                                   " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                                   6, values, NULL, err, err_size);
    if (result == NULL)
        return -1;
    int inserted = strcmp(PQcmdTuples(result), "1") == 0;
    PQclear(result);
    return inserted ? 0 : 1;
}

/* Gives `conn` back (a transaction left open is rolled back by the pool), `rc` told apart: a
 * database away is EPCS_KEY_STORE_UNREACHABLE, worth a retry. */
static int give_back(struct pg_key_store *store, PGconn *conn, int rc)
{
    if (rc < 0 && epcs_pg_unreachable(conn))
        rc = EPCS_KEY_STORE_UNREACHABLE;
    epcs_pg_give(store->pg, conn);
    return rc;
}

static int pg_create(struct epcs_key_store *base, const char *partner, enum epcs_role role,
                     double rate, char *token, struct epcs_key_record *record, char *err,
                     size_t err_size)
{
    struct pg_key_store *store = of(base);
    if (epcs_key_mint(partner, role, rate, record, token, err, err_size) != 0)
        return -1;
    PGconn *conn = epcs_pg_take(store->pg, err, err_size);
    if (conn == NULL)
        return EPCS_KEY_STORE_UNREACHABLE;
    int rc = epcs_pg_command(conn, "adding a key", "BEGIN", err, err_size);
    while (rc == 0 && (rc = insert_key(conn, record, err, err_size)) == 1)
        rc = epcs_key_mint(partner, role, rate, record, token, err, err_size);
    if (rc == 0)
        rc = commit_change(conn, err, err_size);
    return give_back(store, conn, rc);
}

static int pg_revoke(struct epcs_key_store *base, const char *id, char *err, size_t err_size)
{
    struct pg_key_store *store = of(base);
    PGconn *conn = epcs_pg_take(store->pg, err, err_size);
    if (conn == NULL)
        return EPCS_KEY_STORE_UNREACHABLE;
    const char *values[] = {id};
    PGresult *revoked = NULL;
    int rc = epcs_pg_command(conn, "revoking a key", "BEGIN", err, err_size);
    if (rc == 0 && (revoked = epcs_pg_run(conn, "revoking a key",
                                          "UPDATE epcs_keys SET revoked_at = now()"
                                          " WHERE id = $1 AND revoked_at IS NULL",
                                          1, values, NULL, err, err_size)) == NULL)
        rc = -1;
    if (rc == 0 && strcmp(PQcmdTuples(revoked), "1") != 0)
        rc = 1;
    PQclear(revoked);
    if (rc == 0)
        rc =
            run_and_clear(conn, "forgetting a revoked key's usage",
                          "DELETE FROM epcs_key_usage WHERE key_id = $1", 1, values, err, err_size);
    if (rc == 0)
        rc = commit_change(conn, err, err_size);
    return give_back(store, conn, rc);
}

static int pg_stale(struct epcs_key_store *base)
{
    struct pg_key_store *store = of(base);
    int64_t heard = atomic_load(&store->heard_version);
    return heard >= 0 && heard != atomic_load(&store->loaded_version);
}

/* On the follower's thread: the version now, and the caller told when it is not the loaded
 * one. A database that cannot be read now is read again at the next period. */
static void cb_announced(void *ctx)
{
    struct pg_key_store *store = ctx;
    char err[512];
    PGconn *conn = epcs_pg_take(store->pg, err, sizeof(err));
    PGresult *result = conn == NULL ? NULL
                                    : epcs_pg_run(conn, "reading the keys' version",
                                                  "SELECT version FROM epcs_keys_version", 0, NULL,
                                                  NULL, err, sizeof(err));
    epcs_pg_give(store->pg, conn);
    if (result == NULL)
        return;
    if (PQntuples(result) == 1)
        atomic_store(&store->heard_version, strtoll(PQgetvalue(result, 0, 0), NULL, 10));
    PQclear(result);
    if (pg_stale(&store->base))
        store->changed(store->ctx);
}

static int pg_follow(struct epcs_key_store *base, void (*changed)(void *ctx), void *ctx)
{
    struct pg_key_store *store = of(base);
    if (store->follower != NULL)
        return -1;
    store->changed = changed;
    store->ctx = ctx;
    store->follower = epcs_pg_follow(store->pg, CHANNEL, "key changes", EPCS_KEY_FOLLOW_POLL_MS,
                                     cb_announced, store);
    return store->follower != NULL ? 0 : -1;
}

static void pg_unfollow(struct epcs_key_store *base)
{
    struct pg_key_store *store = of(base);
    epcs_pg_unfollow(store->follower);
    store->follower = NULL;
}

/* `{a,b,...}`: key ids are hex digits and the counts numbers, so nothing needs quoting. */
static int array_literals(const char *const *ids, const double *used, size_t count,
                          struct epcs_buf *id_list, struct epcs_buf *used_list)
{
    char number[40];
    epcs_buf_append_str(id_list, "{");
    epcs_buf_append_str(used_list, "{");
    for (size_t i = 0; i < count; i++) {
        if (!epcs_key_id_valid(ids[i]))
            return -1;
        epcs_buf_append_str(id_list, i > 0 ? "," : "");
        epcs_buf_append_str(id_list, ids[i]);
        snprintf(number, sizeof(number), "%s%.17g", i > 0 ? "," : "", used[i]);
        epcs_buf_append_str(used_list, number);
    }
    epcs_buf_append(id_list, "}", 2);
    epcs_buf_append(used_list, "}", 2);
    return id_list->failed || used_list->failed ? -1 : 0;
}

static int pg_exchange_usage(struct epcs_key_store *base, const char *const *ids,
                             const double *used, size_t count, double *totals, char *err,
                             size_t err_size)
{
    struct pg_key_store *store = of(base);
    struct epcs_buf id_list = {0}, used_list = {0};
    if (array_literals(ids, used, count, &id_list, &used_list) != 0) {
        snprintf(err, err_size, "exchanging rate usage: a key id is malformed, or out of memory");
        epcs_buf_free(&id_list);
        epcs_buf_free(&used_list);
        return -1;
    }
    PGconn *conn = epcs_pg_take(store->pg, err, err_size);
    const char *values[] = {id_list.data, used_list.data};
    /* The insert's rows are not visible to the rest of its own statement: the total of a key
     * this replica added to comes from RETURNING, that of one it did not from the table. */
    PGresult *rows =
        conn == NULL
            ? NULL
            : epcs_pg_run(conn, "exchanging rate usage",
                          "WITH mine AS (SELECT * FROM unnest($1::text[], $2::float8[])"
                          "  WITH ORDINALITY AS m(key_id, used, i)),"
                          " added AS (INSERT INTO epcs_key_usage AS u (key_id, used)"
                          "  SELECT key_id, used FROM mine WHERE used <> 0"
                          "  ON CONFLICT (key_id) DO UPDATE SET used = u.used + EXCLUDED.used"
                          "  RETURNING u.key_id, u.used)"
                          " SELECT m.i, COALESCE(a.used, u.used, 0) FROM mine m"
                          " LEFT JOIN added a ON a.key_id = m.key_id"
                          " LEFT JOIN epcs_key_usage u ON u.key_id = m.key_id",
                          2, values, NULL, err, err_size);
    epcs_pg_give(store->pg, conn);
    epcs_buf_free(&id_list);
    epcs_buf_free(&used_list);
    if (rows == NULL)
        return -1;
    int rc = PQntuples(rows) == (int)count ? 0 : -1;
    if (rc != 0)
        snprintf(err, err_size, "exchanging rate usage: %d totals for %zu keys", PQntuples(rows),
                 count);
    for (int row = 0; rc == 0 && row < PQntuples(rows); row++) {
        size_t i = strtoull(PQgetvalue(rows, row, 0), NULL, 10);
        if (i >= 1 && i <= count)
            totals[i - 1] = strtod(PQgetvalue(rows, row, 1), NULL);
    }
    PQclear(rows);
    return rc;
}

const struct epcs_key_store_ops epcs_key_store_postgresql = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .where = pg_where,
    .load = pg_load,
    .create = pg_create,
    .revoke = pg_revoke,
    .stale = pg_stale,
    .follow = pg_follow,
    .unfollow = pg_unfollow,
    .exchange_usage = pg_exchange_usage,
};
