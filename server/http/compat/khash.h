#ifndef EPCS_COMPAT_KHASH_H
#define EPCS_COMPAT_KHASH_H

/*
 * h2o 2.2.5's <h2o/http2_internal.h> keeps an HTTP/2 connection's streams in a klib khash
 * table and includes "khash.h", which Debian's libh2o-dev does not install. The connection
 * guard (conn_guard.c) only reads that table, so this declares it with khash's layout (four
 * counters, then 2-bit flags per bucket, keys, values) and looks keys up by scanning the
 * buckets: a connection holds at most a few hundred, and nothing here writes to the table.
 */

#include <stdint.h>

typedef uint32_t khint_t;
typedef uint32_t khint32_t;
typedef uint64_t khint64_t;
typedef khint_t khiter_t;

/* Bucket x holds an entry unless its flags say empty (2) or deleted (1). */
#define kh_exist(h, x) (!(((h)->flags[(x) >> 4] >> (((x)&0xfU) << 1)) & 3))
#define kh_begin(h) ((khint_t)0)
#define kh_end(h) ((h)->n_buckets)
#define kh_val(h, x) ((h)->vals[x])
#define kh_key(h, x) ((h)->keys[x])
#define khash_t(name) kh_##name##_t
#define kh_get(name, h, k) kh_get_##name(h, k)

#define KHASH_MAP_INIT_INT64(name, khval_t)                                                        \
    typedef struct kh_##name##_s {                                                                 \
        khint_t n_buckets, size, n_occupied, upper_bound;                                          \
        khint32_t *flags;                                                                          \
        khint64_t *keys;                                                                           \
        khval_t *vals;                                                                             \
    } kh_##name##_t;                                                                               \
    static inline khint_t kh_get_##name(const kh_##name##_t *h, khint64_t key)                     \
    {                                                                                              \
        for (khint_t x = 0; h->flags != NULL && x < h->n_buckets; x++) {                           \
            if (kh_exist(h, x) && h->keys[x] == key)                                               \
                return x;                                                                          \
        }                                                                                          \
        return h->n_buckets;                                                                       \
    }

#endif
