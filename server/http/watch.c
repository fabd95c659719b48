#include "watch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"

struct epcs_watch {
    char *dir;
    unsigned quiet_ms;
    void (*changed)(void *);
    void *ctx;
    uv_loop_t loop;
    uv_fs_event_t event;
    uv_timer_t quiet;
    uv_async_t stop;
    pthread_t thread;
};

static void cb_quiet(uv_timer_t *timer)
{
    struct epcs_watch *watch = timer->data;
    watch->changed(watch->ctx);
}

static void cb_event(uv_fs_event_t *event, const char *filename, int events, int status)
{
    struct epcs_watch *watch = event->data;
    if (status < 0) {
        epcs_log(EPCS_LOG_WARN, "watch", "%s: %s", watch->dir, uv_strerror(status));
        return;
    }
    /* Restarting the timer on every event waits for the end of the burst. */
    uv_timer_start(&watch->quiet, cb_quiet, watch->quiet_ms, 0);
}

static void cb_close(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void cb_stop(uv_async_t *async)
{
    uv_walk(async->loop, cb_close, NULL);
}

static void *watch_main(void *arg)
{
    struct epcs_watch *watch = arg;
    uv_run(&watch->loop, UV_RUN_DEFAULT);
    return NULL;
}

struct epcs_watch *epcs_watch_start(const char *dir, unsigned quiet_ms, void (*changed)(void *),
                                    void *ctx)
{
    struct epcs_watch *watch = calloc(1, sizeof(*watch));
    int rc;
    if (watch == NULL || (watch->dir = strdup(dir)) == NULL) {
        free(watch);
        epcs_log(EPCS_LOG_ERROR, "watch", "out of memory");
        return NULL;
    }
    watch->quiet_ms = quiet_ms;
    watch->changed = changed;
    watch->ctx = ctx;
    if ((rc = uv_loop_init(&watch->loop)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "watch", "%s", uv_strerror(rc));
        free(watch->dir);
        free(watch);
        return NULL;
    }
    uv_fs_event_init(&watch->loop, &watch->event);
    uv_timer_init(&watch->loop, &watch->quiet);
    uv_async_init(&watch->loop, &watch->stop, cb_stop);
    watch->event.data = watch;
    watch->quiet.data = watch;
    if ((rc = uv_fs_event_start(&watch->event, cb_event, dir, 0)) != 0 ||
        (rc = pthread_create(&watch->thread, NULL, watch_main, watch)) != 0) {
        epcs_log(EPCS_LOG_ERROR, "watch", "cannot watch %s: %s", dir,
                 rc < 0 ? uv_strerror(rc) : strerror(rc));
        uv_walk(&watch->loop, cb_close, NULL);
        uv_run(&watch->loop, UV_RUN_DEFAULT);
        uv_loop_close(&watch->loop);
        free(watch->dir);
        free(watch);
        return NULL;
    }
    epcs_log(EPCS_LOG_INFO, "watch", "reloading %s when it changes", dir);
    return watch;
}

void epcs_watch_stop(struct epcs_watch *watch)
{
    if (watch == NULL)
        return;
    uv_async_send(&watch->stop);
    pthread_join(watch->thread, NULL);
    uv_loop_close(&watch->loop);
    free(watch->dir);
    free(watch);
}
