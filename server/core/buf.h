#ifndef EPCS_BUF_H
#define EPCS_BUF_H

#include <stddef.h>

/**
 * A growable byte buffer. The owner keeps one per worker and resets it per request, so the
 * steady state does no allocation. `data` is owned by the buffer and freed by epcs_buf_free.
 *
 * An append that runs out of memory marks the buffer `failed` until the next reset, and every
 * later append fails too: whoever sends the buffer checks that one flag instead of every
 * append and msgpack_pack_* call, and never sends a document with a piece missing.
 */
struct epcs_buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

/** Appends len bytes; returns 0, or -1 when memory runs out or the buffer has failed before
 * (the bytes are not appended; the buffer is marked failed). */
int epcs_buf_append(struct epcs_buf *buf, const void *data, size_t len);
/** Appends the contents of `src`; fails (marking `buf`) when `src` has failed. */
int epcs_buf_append_buf(struct epcs_buf *buf, const struct epcs_buf *src);
/** Makes room for `len` more bytes (data + len stays valid until the next growth); 0, or -1
 * when memory runs out. */
int epcs_buf_reserve(struct epcs_buf *buf, size_t len);
/** Appends a NUL-terminated string without its terminator; 0 or -1 as epcs_buf_append. */
int epcs_buf_append_str(struct epcs_buf *buf, const char *str);
/** Forgets the contents (and a failure) but keeps the memory for the next use. */
void epcs_buf_reset(struct epcs_buf *buf);
/** Releases the memory; the buffer may be reused afterwards as if zero-initialised. */
void epcs_buf_free(struct epcs_buf *buf);
/** msgpack_packer write callback: `data` is a struct epcs_buf *. */
int epcs_buf_msgpack_write(void *data, const char *bytes, size_t len);

#endif
