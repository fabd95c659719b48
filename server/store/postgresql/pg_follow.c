#define _GNU_SOURCE /* pipe2 */
#include "pg_follow.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct epcs_pg_follower {
    struct epcs_pg *pg;
    char channel[64];
    char what[64];
    int poll_ms;
    void (*changed)(void *ctx);
    void *ctx;
    pthread_t thread;
    /* Written to stop the thread, which polls it beside the listening connection. */
    int stop_pipe[2];
};

/* The listening connection, or NULL with `err`. */
static PGconn *listen_on(struct epcs_pg_follower *follower, char *err, size_t err_size)
{
    PGconn *conn = epcs_pg_take(follower->pg, err, err_size);
    if (conn == NULL)
        return NULL;
    char sql[80];
    snprintf(sql, sizeof(sql), "LISTEN %s", follower->channel);
    if (epcs_pg_command(conn, "listening", sql, err, err_size) != 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Waits up to `ms` for the listening connection or the stop pipe. 1 stop, 0 otherwise. */
static int wait_for(struct epcs_pg_follower *follower, PGconn *conn, int ms)
{
    struct pollfd fds[2] = {{.fd = follower->stop_pipe[0], .events = POLLIN},
                            {.fd = conn != NULL ? PQsocket(conn) : -1, .events = POLLIN}};
    int ready = poll(fds, conn != NULL ? 2 : 1, ms);
    return ready > 0 && (fds[0].revents & POLLIN) != 0;
}

/* Whatever has arrived on the listening connection: 1 an announcement, 0 none, -1 broken. */
static int take_announcements(PGconn *conn)
{
    if (PQconsumeInput(conn) == 0)
        return -1;
    int heard = 0;
    PGnotify *notify;
    while ((notify = PQnotifies(conn)) != NULL) {
        heard = 1;
        PQfreemem(notify);
    }
    return heard;
}

static void *follow_main(void *arg)
{
    struct epcs_pg_follower *follower = arg;
    PGconn *conn = NULL;
    int backoff_ms = 100, said_down = 0;
    char err[512];
    for (;;) {
        if (conn == NULL) {
            conn = listen_on(follower, err, sizeof(err));
            if (conn == NULL) {
                if (!said_down)
                    epcs_log(EPCS_LOG_WARN, "store",
                             "cannot hear of %s (tries again, and reads every %d ms once "
                             "back): %s",
                             follower->what, follower->poll_ms, err);
                said_down = 1;
                /* The callback's own read then fails too: that is how a caller learns the
                 * database is away (/readyz). */
                follower->changed(follower->ctx);
                if (wait_for(follower, NULL, backoff_ms))
                    break;
                backoff_ms =
                    backoff_ms < follower->poll_ms / 2 ? backoff_ms * 2 : follower->poll_ms;
                continue;
            }
            if (said_down)
                epcs_log(EPCS_LOG_INFO, "store", "listening for %s again", follower->what);
            said_down = 0;
            backoff_ms = 100;
            /* What changed while nobody listened. */
            follower->changed(follower->ctx);
        }
        if (wait_for(follower, conn, follower->poll_ms))
            break;
        if (take_announcements(conn) < 0) {
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        /* An announcement, or the poll's period: both read again. */
        follower->changed(follower->ctx);
    }
    PQfinish(conn);
    return NULL;
}

struct epcs_pg_follower *epcs_pg_follow(struct epcs_pg *pg, const char *channel, const char *what,
                                        int poll_ms, void (*changed)(void *ctx), void *ctx)
{
    struct epcs_pg_follower *follower = calloc(1, sizeof(*follower));
    if (follower == NULL)
        return NULL;
    follower->pg = pg;
    snprintf(follower->channel, sizeof(follower->channel), "%s", channel);
    snprintf(follower->what, sizeof(follower->what), "%s", what);
    follower->poll_ms = poll_ms;
    follower->changed = changed;
    follower->ctx = ctx;
    if (pipe2(follower->stop_pipe, O_CLOEXEC) != 0) {
        free(follower);
        return NULL;
    }
    if (pthread_create(&follower->thread, NULL, follow_main, follower) != 0) {
        close(follower->stop_pipe[0]);
        close(follower->stop_pipe[1]);
        free(follower);
        return NULL;
    }
    return follower;
}

void epcs_pg_unfollow(struct epcs_pg_follower *follower)
{
    if (follower == NULL)
        return;
    char stop = 1;
    while (write(follower->stop_pipe[1], &stop, 1) < 0 && errno == EINTR)
        ;
    pthread_join(follower->thread, NULL);
    close(follower->stop_pipe[0]);
    close(follower->stop_pipe[1]);
    free(follower);
}
