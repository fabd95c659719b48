#ifndef EPCS_SQLITE_STORE_H
#define EPCS_SQLITE_STORE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>

/* What the SQLite stores (the decision log, the case store) share. */

/** Runs `sql` (several statements allowed). 0, or -1 with SQLite's message in `err`. */
int epcs_sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t err_size);

/**
 * A read-only connection for one thread's queries, waiting up to `busy_ms` for the writer.
 * NULL with `err` filled.
 */
sqlite3 *epcs_sqlite_reader(const char *path, int busy_ms, char *err, size_t err_size);

/**
 * Brings the store at `path` to format `version`: a file that already has one of `tables` (a
 * SQL list such as "'reports'") under another format is refused, naming `what` and why it is
 * kept (`keep`), for the operator to move aside; otherwise `schema` is run and the format
 * recorded. 0, or -1 with `err` filled.
 */
int epcs_sqlite_schema(sqlite3 *db, const char *path, const char *what, const char *keep,
                       const char *tables, int version, const char *schema, char *err,
                       size_t err_size);

/** Idle read connections a pool keeps; those beyond are closed when given back. */
#define EPCS_SQLITE_POOL_KEPT 8

/**
 * Read-only connections to one database for reads on the thread pool: a thread takes one
 * (opened with epcs_sqlite_reader when none is idle), reads, and gives it back. The idle ones
 * are under their own lock, so reads never wait for a writer's lock or for each other.
 */
struct epcs_sqlite_pool {
    pthread_mutex_t lock;
    char path[4200];
    int busy_ms;
    sqlite3 *idle[EPCS_SQLITE_POOL_KEPT];
    size_t idle_count;
};

/** Readies `pool` (zeroed or not) for the database at `path`; opens nothing yet. */
void epcs_sqlite_pool_init(struct epcs_sqlite_pool *pool, const char *path, int busy_ms);
/** Closes the idle connections; every one taken must have been given back. */
void epcs_sqlite_pool_dispose(struct epcs_sqlite_pool *pool);
/** A connection the calling thread owns until epcs_sqlite_pool_release. NULL with `err`. */
sqlite3 *epcs_sqlite_pool_acquire(struct epcs_sqlite_pool *pool, char *err, size_t err_size);
/** Gives `db` (from epcs_sqlite_pool_acquire; NULL accepted) back, or closes it. */
void epcs_sqlite_pool_release(struct epcs_sqlite_pool *pool, sqlite3 *db);

#endif
