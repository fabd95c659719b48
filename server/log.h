#ifndef EPCS_LOG_H
#define EPCS_LOG_H

#include "epcs/plugin.h"

/**
 * Writes one line to stderr: time, level, the component (a plugin or area name, or a
 * subsystem such as "loader"), then the message. Thread-safe: each line is one write().
 */
void epcs_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Lines below this level are dropped; EPCS_LOG_INFO by default. */
void epcs_log_set_level(int level);

#endif
