/* What the SQLite stores share: running statements, checking a file's format, readers. */
#include "sqlite_store.h"

#include <stdio.h>

int epcs_sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t err_size)
{
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) == SQLITE_OK)
        return 0;
    snprintf(err, err_size, "%s", message != NULL ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return -1;
}

static int single_int(sqlite3 *db, const char *sql, int otherwise)
{
    sqlite3_stmt *stmt = NULL;
    int value = otherwise;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        value = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

int epcs_sqlite_schema(sqlite3 *db, const char *path, const char *what, const char *keep,
                       const char *tables, int version, const char *schema, char *err,
                       size_t err_size)
{
    char sql[256], why[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master WHERE name IN (%s)", tables);
    int user_version = single_int(db, "PRAGMA user_version", -1);
    if (single_int(db, sql, -1) > 0 && user_version != version) {
        snprintf(err, err_size,
                 "%s has %s format %d, this epcsd writes %d: move it aside (%s: keep it) and "
                 "start again",
                 path, what, user_version, version, keep);
        return -1;
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    if (epcs_sqlite_exec(db, schema, why, sizeof(why)) != 0 ||
        epcs_sqlite_exec(db, sql, why, sizeof(why)) != 0) {
        snprintf(err, err_size, "%s: %s", path, why);
        return -1;
    }
    return 0;
}

sqlite3 *epcs_sqlite_reader(const char *path, int busy_ms, char *err, size_t err_size)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, busy_ms);
    return db;
}

void epcs_sqlite_pool_init(struct epcs_sqlite_pool *pool, const char *path, int busy_ms)
{
    pthread_mutex_init(&pool->lock, NULL);
    snprintf(pool->path, sizeof(pool->path), "%s", path);
    pool->busy_ms = busy_ms;
    pool->idle_count = 0;
}

void epcs_sqlite_pool_dispose(struct epcs_sqlite_pool *pool)
{
    for (size_t i = 0; i < pool->idle_count; i++)
        sqlite3_close(pool->idle[i]);
    pool->idle_count = 0;
    pthread_mutex_destroy(&pool->lock);
}

sqlite3 *epcs_sqlite_pool_acquire(struct epcs_sqlite_pool *pool, char *err, size_t err_size)
{
    sqlite3 *db = NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->idle_count > 0)
        db = pool->idle[--pool->idle_count];
    pthread_mutex_unlock(&pool->lock);
    return db != NULL ? db : epcs_sqlite_reader(pool->path, pool->busy_ms, err, err_size);
}

void epcs_sqlite_pool_release(struct epcs_sqlite_pool *pool, sqlite3 *db)
{
    if (db == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    int kept = pool->idle_count < EPCS_SQLITE_POOL_KEPT;
    if (kept)
        pool->idle[pool->idle_count++] = db;
    pthread_mutex_unlock(&pool->lock);
    if (!kept)
        sqlite3_close(db);
}
