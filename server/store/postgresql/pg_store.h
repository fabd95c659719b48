#ifndef EPCS_PG_STORE_H
#define EPCS_PG_STORE_H

#include <libpq-fe.h>
#include <stddef.h>

/*
 * What every PostgreSQL backend shares: a small pool of blocking connections to one database
 * (one connection string, which may name several hosts: libpq then finds the primary with
 * target_session_attrs=read-write), and the step that brings a store's schema up to date.
 *
 * A connection is taken for one unit of work and given back; one found broken is reset before
 * it is handed out again, so a database that went away and came back is found again without a
 * restart. Calls may come from any thread; a connection is only ever used by one at a time.
 */

/** How long a connection attempt or a statement may take by default (--store-timeout). */
#define EPCS_PG_TIMEOUT_MS 5000

/**
 * Sets how long a connection attempt or one statement may take before the database counts as
 * unreachable and the connection is cut, for every pool (once, at start). A database that
 * stops answering then costs a caller that long, never more.
 */
void epcs_pg_set_timeout(int ms);

/** A pool of connections to one database. */
struct epcs_pg;

/**
 * Connects once to `uri` (a libpq connection string or postgresql:// URI) to check that the
 * database answers, and brings `schema` (statements run in one transaction, under an advisory
 * lock so that replicas starting together do not race) to `version` for the store `store`.
 * A database whose schema for that store is newer than `version` is refused: an older epcsd
 * must not write tables it does not know. Returns the pool, or NULL with `err` filled.
 */
struct epcs_pg *epcs_pg_open(const char *uri, const char *store, int version, const char *schema,
                             char *err, size_t err_size);

/**
 * Brings one more store's `schema` to `version` on an open pool, as epcs_pg_open does for the
 * first (several stores may share one pool). 0, or -1 with `err` filled.
 */
int epcs_pg_schema(struct epcs_pg *pg, const char *store, int version, const char *schema,
                   char *err, size_t err_size);

/** Closes every connection of the pool and frees it. Accepts NULL. */
void epcs_pg_close(struct epcs_pg *pg);

/** The connection string without any password, for messages. */
const char *epcs_pg_where(const struct epcs_pg *pg);

/**
 * A connection for the caller's own use until epcs_pg_give: an idle one, or a new one in place
 * of one the last use left broken or the server has closed since. NULL with `err` filled when
 * the database cannot be reached.
 */
PGconn *epcs_pg_take(struct epcs_pg *pg, char *err, size_t err_size);

/**
 * A connection of the caller's own to `uri`, outside any pool (a reader on what a store left,
 * open or not), within the connection deadline; PQfinish it. NULL with `err` filled.
 */
PGconn *epcs_pg_connect(const char *uri, char *err, size_t err_size);

/** Gives a connection from epcs_pg_take back to the pool. */
void epcs_pg_give(struct epcs_pg *pg, PGconn *conn);

/** The most parameters one statement of epcs_pg_run may take. */
#define EPCS_PG_PARAMS_MAX 20

/**
 * Runs `sql` with `count` text parameters (NULL: SQL NULL) and `lengths` (NULL: every
 * parameter is a C string; otherwise a length of 0 or more marks a binary parameter of that
 * many bytes, -1 a C string). Returns the result when it is a command's success or rows, or
 * NULL with `err` naming `what` and the database's message (the result is cleared).
 */
PGresult *epcs_pg_run(PGconn *conn, const char *what, const char *sql, int count,
                      const char *const *values, const int *lengths, char *err, size_t err_size);

/**
 * As epcs_pg_run, with the result's columns in binary: bytea as its bytes, integers big-endian
 * in their size (int2, int4, int8), booleans one byte, text as it is.
 */
PGresult *epcs_pg_run_binary(PGconn *conn, const char *what, const char *sql, int count,
                             const char *const *values, const int *lengths, char *err,
                             size_t err_size);

/** Runs `sql`, which may hold several statements (a schema), as epcs_pg_run does. */
PGresult *epcs_pg_run_script(PGconn *conn, const char *what, const char *sql, char *err,
                             size_t err_size);

/**
 * Whether a failure on `conn` (NULL: epcs_pg_take failed) means the database could not be
 * reached, or stopped answering, rather than that it refused the statement: the former is
 * temporary (503, try again), the latter is not.
 */
int epcs_pg_unreachable(const PGconn *conn);

/** Runs a statement without parameters or rows (BEGIN, COMMIT). 0, or -1 with `err`. */
int epcs_pg_command(PGconn *conn, const char *what, const char *sql, char *err, size_t err_size);

#endif
