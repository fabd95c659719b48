#ifndef EPCS_PG_FOLLOW_H
#define EPCS_PG_FOLLOW_H

#include "pg_store.h"

/*
 * Following what other replicas change: a thread of its own with one connection that LISTENs
 * on a channel (the only connection epcs uses asynchronously, and never on an event loop). It
 * calls back at every announcement, after every (re)connection, since what was announced
 * while nobody listened is lost, at every failed attempt to connect (the callback's own read
 * then tells it the database is away), and every `poll_ms` in any case, so that a lost announcement
 * delays a change by one period at most. What changed is for the callback to read.
 */

/** A following thread. */
struct epcs_pg_follower;

/**
 * Starts following `channel` on a connection of `pg`'s: `changed(ctx)` is called on the
 * follower's thread as said above. `what` names the changes in messages ("activations"). The
 * database need not answer now: the follower connects, and connects again, by itself, logging
 * once per outage. NULL when no thread can be started.
 */
struct epcs_pg_follower *epcs_pg_follow(struct epcs_pg *pg, const char *channel, const char *what,
                                        int poll_ms, void (*changed)(void *ctx), void *ctx);

/** Stops the thread (waits for a callback under way) and frees it. Accepts NULL. */
void epcs_pg_unfollow(struct epcs_pg_follower *follower);

#endif
