#include "pg_store.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* About five connections a replica whatever --threads is (CLUSTER.md): more idle ones would
 * only hold server memory. A burst beyond this opens connections that are closed on return. */
#define IDLE_MAX 6

/* How long one connection attempt or one statement may take (epcs_pg_set_timeout). */
static _Atomic int timeout_ms = EPCS_PG_TIMEOUT_MS;

void epcs_pg_set_timeout(int ms)
{
    atomic_store(&timeout_ms, ms);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the connection's socket is ready for `events` or `deadline` passes: 1 ready,
 * 0 out of time, -1 broken. */
static int wait_socket(PGconn *conn, short events, int64_t deadline)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -1;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int ready = poll(&pfd, 1, (int)left);
        if (ready > 0)
            return 1;
        if (ready == 0)
            return 0;
    }
}

/*
 * A database that stops answering (paused, or a network that drops packets) would hold a
 * blocking call forever: past the deadline the connection is cut, so that the caller sees
 * the database as unreachable and the pool opens a fresh connection next time.
 */
static void cut(PGconn *conn)
{
    int fd = PQsocket(conn);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    /* libpq learns of it and marks the connection bad. */
    PQconsumeInput(conn);
}

struct epcs_pg {
    char *uri;
    char *where;
    pthread_mutex_t lock;
    PGconn *idle[IDLE_MAX];
    size_t idle_count;
};

/* The connection string for messages: a password given as user:password@ or password=... is
 * left out, since messages reach logs and HTTP answers. */
static char *redact(const char *uri)
{
    size_t len = strlen(uri);
    /* "password=***" may be longer than what it replaces, once per parameter at most. */
    char *out = malloc(2 * len + 16);
    if (out == NULL)
        return NULL;
    const char *scheme = strstr(uri, "://");
    const char *at = scheme != NULL ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at != NULL ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (colon != NULL && uri + i == colon) {
            i = (size_t)(at - uri);
            continue;
        }
        if (strncmp(uri + i, "password=", 9) == 0 && (i == 0 || strchr("?& ", uri[i - 1]))) {
            memcpy(out + o, "password=***", 12);
            o += 12;
            i += 9;
            while (i < len && uri[i] != '&' && uri[i] != ' ')
                i++;
            continue;
        }
        out[o++] = uri[i++];
    }
    out[o] = '\0';
    return out;
}

static void trim_newline(char *text)
{
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
}

static void connection_error(const struct epcs_pg *pg, PGconn *conn, char *err, size_t err_size)
{
    snprintf(err, err_size, "cannot reach PostgreSQL at %s: %s", pg->where,
             conn != NULL ? PQerrorMessage(conn) : "out of memory");
    trim_newline(err);
}

/* The server's notices ("relation already exists, skipping", a session terminated) would go
 * to stderr unformatted; what matters of them reaches the caller as an error anyway. */
static void drop_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* PQconnectdb with a deadline of our own, whatever connect_timeout the URI gives. */
static PGconn *connect_within(const char *uri, int ms)
{
    PGconn *conn = PQconnectStart(uri);
    if (conn == NULL || PQstatus(conn) == CONNECTION_BAD)
        return conn;
    int64_t deadline = now_ms() + ms;
    PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
    while (polling != PGRES_POLLING_OK && polling != PGRES_POLLING_FAILED) {
        int ready =
            wait_socket(conn, polling == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (ready == 0) {
            cut(conn);
            break;
        }
        polling = PQconnectPoll(conn);
    }
    /* A blocking connection waits, unbounded, for the socket to take every byte of a statement
     * it sends; without blocking, collect() flushes it within the statement's deadline. */
    if (PQstatus(conn) == CONNECTION_OK && PQsetnonblocking(conn, 1) != 0)
        cut(conn);
    return conn;
}

/*
 * Whether the server closed an idle connection meanwhile (a restart, a failover, an ended
 * session): its last words and the end of the stream wait on the socket, so a look costs no
 * round trip, and the caller's first statement never meets a connection known to be gone.
 */
static int closed_meanwhile(PGconn *conn)
{
    /* An idle connection has a few messages pending at most; more is no end of stream. */
    for (int reads = 0; reads < 4 && PQstatus(conn) == CONNECTION_OK; reads++) {
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        if (pfd.fd < 0 || poll(&pfd, 1, 0) != 1)
            break;
        if (PQconsumeInput(conn) == 0)
            return 1;
    }
    return PQstatus(conn) == CONNECTION_BAD;
}

PGconn *epcs_pg_take(struct epcs_pg *pg, char *err, size_t err_size)
{
    pthread_mutex_lock(&pg->lock);
    PGconn *conn = pg->idle_count > 0 ? pg->idle[--pg->idle_count] : NULL;
    pthread_mutex_unlock(&pg->lock);
    if (conn != NULL && closed_meanwhile(conn)) {
        PQfinish(conn);
        conn = NULL;
    }
    if (conn == NULL && (conn = connect_within(pg->uri, atomic_load(&timeout_ms))) != NULL)
        PQsetNoticeProcessor(conn, drop_notice, NULL);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        connection_error(pg, conn, err, err_size);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

PGconn *epcs_pg_connect(const char *uri, char *err, size_t err_size)
{
    PGconn *conn = connect_within(uri, atomic_load(&timeout_ms));
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
        PQsetNoticeProcessor(conn, drop_notice, NULL);
        return conn;
    }
    /* libpq's further lines guess at causes. */
    const char *why = conn != NULL ? PQerrorMessage(conn) : "out of memory";
    snprintf(err, err_size, "cannot reach PostgreSQL: %.*s", (int)strcspn(why, "\n"), why);
    PQfinish(conn);
    return NULL;
}

void epcs_pg_give(struct epcs_pg *pg, PGconn *conn)
{
    if (conn == NULL)
        return;
    /* A unit of work that failed part-way leaves its transaction open: it must not become the
     * next caller's. */
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        char err[200];
        PQclear(epcs_pg_run(conn, "rolling back", "ROLLBACK", 0, NULL, NULL, err, sizeof(err)));
    }
    int keep = PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
    pthread_mutex_lock(&pg->lock);
    if (keep && pg->idle_count < IDLE_MAX) {
        pg->idle[pg->idle_count++] = conn;
        conn = NULL;
    }
    pthread_mutex_unlock(&pg->lock);
    PQfinish(conn);
}

/* The results of what was sent, within the deadline: the first that failed, else the last.
 * NULL (with the connection cut) when the deadline passed. */
static PGresult *collect(PGconn *conn, int64_t deadline)
{
    int flushed;
    while ((flushed = PQflush(conn)) == 1) {
        if (wait_socket(conn, POLLOUT | POLLIN, deadline) != 1) {
            cut(conn);
            return NULL;
        }
        PQconsumeInput(conn);
    }
    PGresult *kept = NULL, *next;
    int failed = 0;
    for (;;) {
        while (flushed == 0 && PQisBusy(conn)) {
            if (wait_socket(conn, POLLIN, deadline) != 1 || PQconsumeInput(conn) == 0) {
                cut(conn);
                PQclear(kept);
                return NULL;
            }
        }
        if ((next = PQgetResult(conn)) == NULL)
            return kept;
        if (failed) {
            PQclear(next);
            continue;
        }
        ExecStatusType status = PQresultStatus(next);
        failed = status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK;
        PQclear(kept);
        kept = next;
    }
}

/* A result that is a command's success or rows, or NULL with `err` naming `what`. */
static PGresult *checked(PGconn *conn, PGresult *result, const char *what, char *err,
                         size_t err_size)
{
    ExecStatusType status = PQresultStatus(result);
    if (result != NULL && (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK))
        return result;
    if (result == NULL && PQstatus(conn) != CONNECTION_OK)
        snprintf(err, err_size, "%s: no answer from PostgreSQL within %d ms", what,
                 atomic_load(&timeout_ms));
    else
        snprintf(err, err_size, "%s: %s", what,
                 result != NULL ? PQresultErrorMessage(result) : PQerrorMessage(conn));
    trim_newline(err);
    PQclear(result);
    return NULL;
}

/* epcs_pg_run with the results in `result_format` (0 text, 1 binary). */
static PGresult *run_params(PGconn *conn, const char *what, const char *sql, int count,
                            const char *const *values, const int *lengths, int result_format,
                            char *err, size_t err_size)
{
    int formats[EPCS_PG_PARAMS_MAX] = {0}, sizes[EPCS_PG_PARAMS_MAX] = {0};
    if (count > EPCS_PG_PARAMS_MAX) {
        snprintf(err, err_size, "%s: %d parameters, at most %d", what, count, EPCS_PG_PARAMS_MAX);
        return NULL;
    }
    for (int i = 0; lengths != NULL && i < count; i++) {
        formats[i] = lengths[i] >= 0;
        sizes[i] = lengths[i] >= 0 ? lengths[i] : 0;
    }
    int64_t deadline = now_ms() + atomic_load(&timeout_ms);
    if (PQsendQueryParams(conn, sql, count, NULL, values, sizes, formats, result_format) == 0)
        return checked(conn, NULL, what, err, err_size);
    return checked(conn, collect(conn, deadline), what, err, err_size);
}

PGresult *epcs_pg_run(PGconn *conn, const char *what, const char *sql, int count,
                      const char *const *values, const int *lengths, char *err, size_t err_size)
{
    return run_params(conn, what, sql, count, values, lengths, 0, err, err_size);
}

PGresult *epcs_pg_run_binary(PGconn *conn, const char *what, const char *sql, int count,
                             const char *const *values, const int *lengths, char *err,
                             size_t err_size)
{
    return run_params(conn, what, sql, count, values, lengths, 1, err, err_size);
}

PGresult *epcs_pg_run_script(PGconn *conn, const char *what, const char *sql, char *err,
                             size_t err_size)
{
    int64_t deadline = now_ms() + atomic_load(&timeout_ms);
    if (PQsendQuery(conn, sql) == 0)
        return checked(conn, NULL, what, err, err_size);
    return checked(conn, collect(conn, deadline), what, err, err_size);
}

int epcs_pg_unreachable(const PGconn *conn)
{
    return conn == NULL || PQstatus(conn) != CONNECTION_OK;
}

int epcs_pg_command(PGconn *conn, const char *what, const char *sql, char *err, size_t err_size)
{
    PGresult *result = epcs_pg_run(conn, what, sql, 0, NULL, NULL, err, err_size);
    PQclear(result);
    return result != NULL ? 0 : -1;
}

/* The schema step in its own transaction: read the store's version, create or refuse. */
static int bring_schema(PGconn *conn, const char *store, int version, const char *schema, char *err,
                        size_t err_size)
{
    if (epcs_pg_command(conn, "beginning the schema step", "BEGIN", err, err_size) != 0)
        return -1;
    /* Replicas starting together would otherwise race on CREATE TABLE IF NOT EXISTS, which is
     * not safe against itself. */
    if (epcs_pg_command(conn, "locking the schema",
                        "SELECT pg_advisory_xact_lock(hashtext('epcs schema'))", err,
                        err_size) != 0 ||
        epcs_pg_command(conn, "creating the schema table",
                        "CREATE TABLE IF NOT EXISTS epcs_schema ("
                        " store text PRIMARY KEY, version integer NOT NULL)",
                        err, err_size) != 0)
        return -1;
    const char *params[] = {store};
    PGresult *found = epcs_pg_run(conn, "reading the schema version",
                                  "SELECT version FROM epcs_schema WHERE store = $1", 1, params,
                                  NULL, err, err_size);
    if (found == NULL)
        return -1;
    int have = PQntuples(found) > 0 ? atoi(PQgetvalue(found, 0, 0)) : 0;
    PQclear(found);
    if (have > version) {
        snprintf(err, err_size,
                 "the %s tables are at schema version %d, this epcsd knows %d: upgrade epcsd",
                 store, have, version);
        return -1;
    }
    if (have == version)
        return epcs_pg_command(conn, "ending the schema step", "COMMIT", err, err_size);
    char what[64];
    snprintf(what, sizeof(what), "creating the %s tables", store);
    PGresult *created = epcs_pg_run_script(conn, what, schema, err, err_size);
    if (created == NULL)
        return -1;
    PQclear(created);
    char number[16];
    snprintf(number, sizeof(number), "%d", version);
    const char *row[] = {store, number};
    PGresult *set = epcs_pg_run(conn, "recording the schema version",
                                "INSERT INTO epcs_schema (store, version) VALUES ($1, $2)"
                                " ON CONFLICT (store) DO UPDATE SET version = EXCLUDED.version",
                                2, row, NULL, err, err_size);
    PQclear(set);
    if (set == NULL)
        return -1;
    return epcs_pg_command(conn, "ending the schema step", "COMMIT", err, err_size);
}

struct epcs_pg *epcs_pg_open(const char *uri, const char *store, int version, const char *schema,
                             char *err, size_t err_size)
{
    struct epcs_pg *pg = calloc(1, sizeof(*pg));
    if (pg != NULL)
        pthread_mutex_init(&pg->lock, NULL);
    if (pg == NULL || (pg->uri = strdup(uri)) == NULL || (pg->where = redact(uri)) == NULL) {
        snprintf(err, err_size, "out of memory opening the %s store", store);
        epcs_pg_close(pg);
        return NULL;
    }
    if (epcs_pg_schema(pg, store, version, schema, err, err_size) != 0) {
        epcs_pg_close(pg);
        return NULL;
    }
    return pg;
}

int epcs_pg_schema(struct epcs_pg *pg, const char *store, int version, const char *schema,
                   char *err, size_t err_size)
{
    char why[400] = "";
    PGconn *conn = epcs_pg_take(pg, err, err_size);
    if (conn == NULL)
        return -1;
    int rc = bring_schema(conn, store, version, schema, why, sizeof(why));
    epcs_pg_give(pg, conn);
    if (rc != 0)
        snprintf(err, err_size, "PostgreSQL at %s: %s", pg->where, why);
    return rc;
}

void epcs_pg_close(struct epcs_pg *pg)
{
    if (pg == NULL)
        return;
    for (size_t i = 0; i < pg->idle_count; i++)
        PQfinish(pg->idle[i]);
    pthread_mutex_destroy(&pg->lock);
    free(pg->uri);
    free(pg->where);
    free(pg);
}

const char *epcs_pg_where(const struct epcs_pg *pg)
{
    return pg->where;
}
