/* What every PostgreSQL store shares (server/store/postgresql/pg_store.h, pg_runs.h): a schema
 * newer than this epcsd is refused, passwords stay out of messages, connections broken under a
 * pool are found again, and run numbers are unique across replicas. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pg_runs.h"
#include "pg_scratch.h"
#include "pg_store.h"
#include "testing.h"

static char uri[600];

static void test_newer_schema_is_refused(void)
{
    char err[600] = "";
    struct epcs_pg *pg =
        epcs_pg_open(uri, "sample", 2, "CREATE TABLE sample (n int);", err, sizeof(err));
    EXPECT(pg != NULL);
    epcs_pg_close(pg);
    /* The same version again creates nothing (the table exists: running the DDL would fail). */
    pg = epcs_pg_open(uri, "sample", 2, "CREATE TABLE sample (n int);", err, sizeof(err));
    EXPECT(pg != NULL);
    epcs_pg_close(pg);
    pg = epcs_pg_open(uri, "sample", 1, "CREATE TABLE sample (n int);", err, sizeof(err));
    EXPECT(pg == NULL);
    EXPECT_CONTAINS(err, "the sample tables are at schema version 2, this epcsd knows 1: "
                         "upgrade epcsd");
}

static void test_where_hides_passwords(void)
{
    char err[600] = "";
    /* Not reachable, so the message must carry the place: without its password. */
    struct epcs_pg *pg =
        epcs_pg_open("postgresql://epcs:s3cret@127.0.0.1:1/epcs?password=other&connect_timeout=1",
                     "sample", 1, "", err, sizeof(err));
    EXPECT(pg == NULL);
    EXPECT_CONTAINS(err, "cannot reach PostgreSQL at "
                         "postgresql://epcs@127.0.0.1:1/epcs?password=***&connect_timeout=1");
    EXPECT(strstr(err, "s3cret") == NULL && strstr(err, "other") == NULL);
}

/* Ends every session of the database but the caller's own, and waits until they are gone. */
static void end_other_sessions(void)
{
    EXPECT_INT(epcs_test_pg_exec(uri,
                                 "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                                 " WHERE pid <> pg_backend_pid() AND datname = current_database()",
                                 NULL),
               0);
    /* A session leaves the server's tables a moment before its socket closes. */
    usleep(100 * 1000);
}

static void test_broken_connections_are_found_again(void)
{
    char err[600] = "";
    struct epcs_pg *pg = epcs_pg_open(uri, "sample", 2, "", err, sizeof(err));
    EXPECT(pg != NULL);
    if (pg == NULL)
        return;
    PGconn *conn = epcs_pg_take(pg, err, sizeof(err));
    EXPECT(conn != NULL);
    epcs_pg_give(pg, conn);
    /* The server ends every other session, as a restart or a failover would. */
    end_other_sessions();
    /* The idle connection's end is found before it is handed out: the first statement runs
     * on a fresh one. */
    conn = epcs_pg_take(pg, err, sizeof(err));
    EXPECT(conn != NULL);
    PGresult *result =
        conn != NULL ? epcs_pg_run(conn, "probing", "SELECT 1", 0, NULL, NULL, err, sizeof(err))
                     : NULL;
    EXPECT(result != NULL);
    PQclear(result);
    epcs_pg_give(pg, conn);
    /* A connection broken in use is replaced at the next take too. */
    conn = epcs_pg_take(pg, err, sizeof(err));
    EXPECT(conn != NULL);
    end_other_sessions();
    result = conn != NULL
                 ? epcs_pg_run(conn, "probing", "SELECT 1", 0, NULL, NULL, err, sizeof(err))
                 : NULL;
    EXPECT(result == NULL);
    epcs_pg_give(pg, conn);
    conn = epcs_pg_take(pg, err, sizeof(err));
    EXPECT(conn != NULL);
    result = conn != NULL
                 ? epcs_pg_run(conn, "probing", "SELECT 1", 0, NULL, NULL, err, sizeof(err))
                 : NULL;
    EXPECT(result != NULL);
    PQclear(result);
    epcs_pg_give(pg, conn);
    epcs_pg_close(pg);
}

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* A server that accepts connections and never answers, as a paused one does. */
static void test_a_silent_server_costs_the_timeout_not_more(void)
{
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    EXPECT(bind(listener, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
           listen(listener, 8) == 0 && getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
    char silent[200], err[600] = "";
    snprintf(silent, sizeof(silent), "postgresql://epcs@127.0.0.1:%d/epcs", ntohs(addr.sin_port));
    epcs_pg_set_timeout(300);
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    struct epcs_pg *pg = epcs_pg_open(silent, "sample", 2, "", err, sizeof(err));
    long took = elapsed_ms(&started);
    EXPECT(pg == NULL);
    EXPECT(took >= 250 && took < 2000);
    EXPECT_CONTAINS(err, "cannot reach PostgreSQL at postgresql://epcs@127.0.0.1:");
    close(listener);

    /* An established connection whose server process stops answering mid-statement. */
    pg = epcs_pg_open(uri, "sample", 2, "", err, sizeof(err));
    PGconn *conn = pg != NULL ? epcs_pg_take(pg, err, sizeof(err)) : NULL;
    EXPECT(conn != NULL);
    if (conn != NULL) {
        int backend = PQbackendPID(conn);
        EXPECT_INT(kill(backend, SIGSTOP), 0);
        clock_gettime(CLOCK_MONOTONIC, &started);
        PGresult *result =
            epcs_pg_run(conn, "probing", "SELECT 1", 0, NULL, NULL, err, sizeof(err));
        took = elapsed_ms(&started);
        EXPECT(result == NULL);
        EXPECT(took >= 250 && took < 2000);
        EXPECT_STR(err, "probing: no answer from PostgreSQL within 300 ms");
        EXPECT(epcs_pg_unreachable(conn));
        kill(backend, SIGCONT);
        epcs_pg_give(pg, conn);
        /* The pool opens a fresh connection in place of the cut one. */
        conn = epcs_pg_take(pg, err, sizeof(err));
        result = conn != NULL
                     ? epcs_pg_run(conn, "probing", "SELECT 1", 0, NULL, NULL, err, sizeof(err))
                     : NULL;
        EXPECT(result != NULL);
        PQclear(result);
        epcs_pg_give(pg, conn);
    }
    epcs_pg_close(pg);
    epcs_pg_set_timeout(EPCS_PG_TIMEOUT_MS);
}

static void test_runs_are_unique_across_replicas(void)
{
    char err[600] = "";
    struct epcs_pg *a = epcs_pg_open(uri, "sample", 2, "", err, sizeof(err));
    struct epcs_pg *b = epcs_pg_open(uri, "sample", 2, "", err, sizeof(err));
    EXPECT(a != NULL && b != NULL);
    if (a == NULL || b == NULL)
        return;
    EXPECT_INT(epcs_pg_runs_schema(a, err, sizeof(err)), 0);
    EXPECT_INT(epcs_pg_runs_schema(b, err, sizeof(err)), 0);
    uint64_t first = 0, second = 0, third = 0;
    EXPECT_INT(epcs_pg_claim_run(a, "sync", &first, err, sizeof(err)), 0);
    EXPECT_INT(epcs_pg_claim_run(b, "async", &second, err, sizeof(err)), 0);
    EXPECT_INT(epcs_pg_claim_run(a, "off", &third, err, sizeof(err)), 0);
    EXPECT(first > 0 && second > first && third > second);
    epcs_pg_close(a);
    epcs_pg_close(b);
}

int main(void)
{
    if (epcs_test_pg_schema("test_pg_store", uri, sizeof(uri)) != 0)
        return 1;
    test_newer_schema_is_refused();
    test_where_hides_passwords();
    test_broken_connections_are_found_again();
    test_runs_are_unique_across_replicas();
    test_a_silent_server_costs_the_timeout_not_more();
    return epcs_test_report();
}
