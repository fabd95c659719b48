/* The address of a listener as --listen gives it: the server opens it, the flags check it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int epcs_listen_split(const char *text, char *host, size_t host_size, uint16_t *port)
{
    const char *colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - text - 1) >= host_size)
            return -1;
        snprintf(host, host_size, "%.*s", (int)(close - text - 1), text + 1);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || colon == text || (size_t)(colon - text) >= host_size)
            return -1;
        snprintf(host, host_size, "%.*s", (int)(colon - text), text);
    }
    const char *digits = colon + 1;
    size_t len = strlen(digits);
    if (len == 0 || len > 5 || strspn(digits, "0123456789") != len)
        return -1;
    long value = strtol(digits, NULL, 10);
    if (value > 65535)
        return -1;
    *port = (uint16_t)value;
    return 0;
}
