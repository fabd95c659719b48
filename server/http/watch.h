#ifndef EPCS_WATCH_H
#define EPCS_WATCH_H

/*
 * Watches a directory (libuv fs events, inotify on Linux) from a thread of its own and calls
 * back once the directory has been quiet for a moment after a change: editors write a file in
 * several steps, and one reload per edit is what staff expect.
 */

struct epcs_watch;

/**
 * Starts watching `dir`. `changed(ctx)` runs on the watch thread `quiet_ms` after the last event
 * of a burst. Returns NULL (logged) when the directory cannot be watched.
 */
struct epcs_watch *epcs_watch_start(const char *dir, unsigned quiet_ms, void (*changed)(void *),
                                    void *ctx);
/** Stops the thread and frees the watch. Accepts NULL. */
void epcs_watch_stop(struct epcs_watch *watch);

#endif
