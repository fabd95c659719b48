#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int fail(struct epcs_buf *buf)
{
    buf->failed = 1;
    return -1;
}

int epcs_buf_reserve(struct epcs_buf *buf, size_t len)
{
    if (buf->failed)
        return -1;
    if (len <= buf->cap - buf->len)
        return 0;
    if (len > SIZE_MAX - buf->len)
        return fail(buf);
    size_t want = buf->len + len;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < want) {
        if (cap > SIZE_MAX / 2)
            return fail(buf);
        cap *= 2;
    }
    char *grown = realloc(buf->data, cap);
    if (grown == NULL)
        return fail(buf);
    buf->data = grown;
    buf->cap = cap;
    return 0;
}

int epcs_buf_append(struct epcs_buf *buf, const void *data, size_t len)
{
    if (epcs_buf_reserve(buf, len) != 0)
        return -1;
    if (len != 0)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return 0;
}

int epcs_buf_append_buf(struct epcs_buf *buf, const struct epcs_buf *src)
{
    if (src->failed)
        return fail(buf);
    return epcs_buf_append(buf, src->data, src->len);
}

int epcs_buf_append_str(struct epcs_buf *buf, const char *str)
{
    return epcs_buf_append(buf, str, strlen(str));
}

void epcs_buf_reset(struct epcs_buf *buf)
{
    buf->len = 0;
    buf->failed = 0;
}

void epcs_buf_free(struct epcs_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->failed = 0;
}

int epcs_buf_msgpack_write(void *data, const char *bytes, size_t len)
{
    return epcs_buf_append(data, bytes, len);
}
