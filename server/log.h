#ifndef EPCS_LOG_H
#define EPCS_LOG_H

#include <stddef.h>
#include <stdint.h>

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

/**
 * The access log: one JSON line per answered request, component "access", with method, path,
 * status, duration_us, partner, protocol and bytes. Written whatever the level.
 */
void epcs_log_access(const char *method, size_t method_len, const char *path, size_t path_len,
                     int status, uint64_t duration_us, const char *partner, const char *protocol,
                     size_t bytes);

#endif
