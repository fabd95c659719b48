/* JSON-lines logs on stderr: what operators feed to their log collectors as is. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

#define LINE_MAX_BYTES EPCS_LOG_LINE_MAX

static int min_level = EPCS_LOG_INFO;

void epcs_log_set_level(int level)
{
    min_level = level;
}

int epcs_log_enabled(int level)
{
    return level >= min_level;
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

/* A line being built; text past the end is dropped, never written out of bounds. */
struct line {
    char text[LINE_MAX_BYTES];
    size_t len;
};

static void put(struct line *line, const char *text, size_t len)
{
    /* Two bytes stay free for the closing brace and the newline. */
    size_t room = sizeof(line->text) - 2 - line->len;
    if (len > room)
        len = room;
    memcpy(line->text + line->len, text, len);
    line->len += len;
}

static void put_str(struct line *line, const char *text)
{
    put(line, text, strlen(text));
}

/* The length of the UTF-8 sequence starting at `s`, or 0 when it is not a valid one. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    size_t need = s[0] < 0x80             ? 1
                  : (s[0] & 0xe0) == 0xc0 ? 2
                  : (s[0] & 0xf0) == 0xe0 ? 3
                  : (s[0] & 0xf8) == 0xf0 ? 4
                                          : 0;
    if (need == 0 || need > len || (need == 2 && s[0] < 0xc2))
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    return need;
}

/* Bytes a JSON string holds as they are: printable ASCII but the quote and the backslash. */
static int plain_ascii(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* A JSON string: quotes, backslashes and control bytes escaped, broken UTF-8 replaced. */
static void put_json_string(struct line *line, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    put(line, "\"", 1);
    for (size_t i = 0; i < len;) {
        /* Paths, partners and most messages are plain ASCII: copied a run at a time. */
        size_t run = i;
        while (run < len && plain_ascii(s[run]))
            run++;
        if (run > i) {
            put(line, text + i, run - i);
            i = run;
            continue;
        }
        if (s[i] == '"' || s[i] == '\\') {
            char escaped[2] = {'\\', (char)s[i]};
            put(line, escaped, 2);
            i++;
        } else if (s[i] < 0x20) {
            char escaped[8];
            snprintf(escaped, sizeof(escaped), "\\u%04x", s[i]);
            put(line, escaped, 6);
            i++;
        } else {
            size_t n = utf8_sequence(s + i, len - i);
            if (n == 0) {
                put(line, "\\ufffd", 6);
                i++;
            } else {
                put(line, text + i, n);
                i += n;
            }
        }
    }
    put(line, "\"", 1);
}

/* Decimal digits of `value`, for the hot access line where snprintf showed in profiles. */
static void put_unsigned(struct line *line, unsigned long long value)
{
    char digits[24];
    size_t at = sizeof(digits);
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    put(line, digits + at, sizeof(digits) - at);
}

/*
 * `{"ts":"YYYY-MM-DDTHH:MM:SS.` for the current second. Each thread keeps its own, so the
 * calendar is worked out once a second per thread rather than once a line.
 */
static _Thread_local time_t stamp_second = -1;
static _Thread_local char stamp_prefix[48];
static _Thread_local size_t stamp_prefix_len;

static void begin_line(struct line *line, const struct timeval *now, const char *level,
                       const char *component)
{
    struct timeval tv = *now;
    if (tv.tv_sec != stamp_second) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        int len = snprintf(stamp_prefix, sizeof(stamp_prefix),
                           "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        stamp_prefix_len = len > 0 && (size_t)len < sizeof(stamp_prefix) ? (size_t)len : 0;
        stamp_second = tv.tv_sec;
    }
    int millis = (int)(tv.tv_usec / 1000);
    char tail[] = {(char)('0' + millis / 100), (char)('0' + millis / 10 % 10),
                   (char)('0' + millis % 10), 'Z', '"'};
    line->len = 0;
    put(line, stamp_prefix, stamp_prefix_len);
    put(line, tail, sizeof(tail));
    put_str(line, ",\"level\":");
    put_json_string(line, level, strlen(level));
    put_str(line, ",\"component\":");
    put_json_string(line, component, strlen(component));
}

static void close_line(struct line *line)
{
    line->text[line->len++] = '}';
    line->text[line->len++] = '\n';
}

static void end_line(struct line *line)
{
    close_line(line);
    /* One write per line so lines from different threads never interleave. */
    ssize_t written = write(STDERR_FILENO, line->text, line->len);
    (void)written;
}

/* Whether stderr keeps writes of any size whole: a file or a device, not a pipe or socket. */
static int stderr_whole_writes(void)
{
    static _Atomic int known; /* 0 unknown, 1 yes, 2 no */
    int answer = atomic_load(&known);
    if (answer == 0) {
        struct stat st;
        answer =
            fstat(STDERR_FILENO, &st) == 0 && (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)) ? 1 : 2;
        atomic_store(&known, answer);
    }
    return answer == 1;
}

void epcs_log_write_lines(const char *lines, size_t len)
{
    /* Pipes keep writes of up to PIPE_BUF bytes whole: cut at line ends within that. A file
     * takes the whole batch in one write. */
    size_t most = stderr_whole_writes() ? len : PIPE_BUF;
    while (len > 0) {
        size_t chunk = len;
        if (chunk > most) {
            chunk = most;
            while (chunk > 0 && lines[chunk - 1] != '\n')
                chunk--;
            if (chunk == 0)
                chunk = len < most ? len : most;
        }
        ssize_t written = write(STDERR_FILENO, lines, chunk);
        if (written <= 0)
            return;
        lines += written;
        len -= (size_t)written;
    }
}

void epcs_log(int level, const char *component, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char message[LINE_MAX_BYTES];
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(message))
        len = (int)sizeof(message) - 1;
    struct line line;
    struct timeval now;
    gettimeofday(&now, NULL);
    begin_line(&line, &now, level_name(level), component ? component : "epcsd");
    put_str(&line, ",\"msg\":");
    put_json_string(&line, message, (size_t)len);
    end_line(&line);
}

size_t epcs_log_access_line(char *out, size_t size, const struct timeval *now, const char *method,
                            size_t method_len, const char *path, size_t path_len, int status,
                            uint64_t duration_us, const char *partner, const char *protocol,
                            size_t bytes)
{
    struct line line;
    begin_line(&line, now, "info", "access");
    put_str(&line, ",\"method\":");
    put_json_string(&line, method, method_len);
    put_str(&line, ",\"path\":");
    put_json_string(&line, path, path_len > 512 ? 512 : path_len);
    put_str(&line, ",\"status\":");
    put_unsigned(&line, status > 0 ? (unsigned long long)status : 0);
    put_str(&line, ",\"duration_us\":");
    put_unsigned(&line, duration_us);
    put_str(&line, ",\"bytes\":");
    put_unsigned(&line, bytes);
    put_str(&line, ",\"partner\":");
    put_json_string(&line, partner, strlen(partner));
    put_str(&line, ",\"protocol\":");
    put_json_string(&line, protocol, strlen(protocol));
    close_line(&line);
    if (line.len > size)
        return 0;
    memcpy(out, line.text, line.len);
    return line.len;
}
