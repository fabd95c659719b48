#ifndef EPCS_LOG_H
#define EPCS_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "epcs/plugin.h"

/**
 * Writes one JSON line to stderr: {"ts", "level", "component", "msg"}. The component is a
 * plugin or area name, or a subsystem such as "loader". Thread-safe: each line is one write().
 */
void epcs_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Lines below this level are dropped; EPCS_LOG_INFO by default. */
void epcs_log_set_level(int level);
/** True when lines of `level` are written: lets callers skip preparing one that is not. */
int epcs_log_enabled(int level);

/** The longest line epcs writes, newline included. */
#define EPCS_LOG_LINE_MAX 2048

/**
 * Formats one access log line into `out`: a JSON object with component "access", method,
 * path, status, duration_us, bytes, partner and protocol, newline-terminated. Returns its
 * length, or 0 when `size` is too small. `now` is the line's time (the caller has just read
 * the clock for the duration).
 */
size_t epcs_log_access_line(char *out, size_t size, const struct timeval *now, const char *method,
                            size_t method_len, const char *path, size_t path_len, int status,
                            uint64_t duration_us, const char *partner, const char *protocol,
                            size_t bytes);

/** Writes whole lines to stderr in as few writes as keep each line in one piece. */
void epcs_log_write_lines(const char *lines, size_t len);

#endif
