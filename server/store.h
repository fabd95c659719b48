#ifndef EPCS_STORE_H
#define EPCS_STORE_H

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

#endif
