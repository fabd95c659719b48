#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int min_level = EPCS_LOG_INFO;

void epcs_log_set_level(int level)
{
    min_level = level;
}

static const char *level_name(int level)
{
    switch (level) {
    case EPCS_LOG_DEBUG:
        return "debug";
    case EPCS_LOG_INFO:
        return "info";
    case EPCS_LOG_WARN:
        return "warn";
    default:
        return "error";
    }
}

void epcs_log(int level, const char *component, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int len =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), level_name(level), component ? component : "epcsd");
    if (len < 0)
        return;
    if ((size_t)len < sizeof(line)) {
        va_list args;
        va_start(args, fmt);
        int body = vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, args);
        va_end(args);
        if (body > 0)
            len += body;
    }
    if ((size_t)len >= sizeof(line) - 1)
        len = (int)sizeof(line) - 2;
    line[len++] = '\n';
    /* One write per line so lines from different threads never interleave. */
    ssize_t written = write(STDERR_FILENO, line, (size_t)len);
    (void)written;
}
