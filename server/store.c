/* What the stores share: running statements, checking a file's format, syncing directories. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

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

int epcs_store_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
