#ifndef EPCS_CODEC_H
#define EPCS_CODEC_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/** Deepest nesting a request may have; deeper input is refused before any recursion. */
#define EPCS_CODEC_MAX_DEPTH 32
/**
 * Most entries a map (JSON: members an object) may have. A check holds a few dozen; without a
 * bound one body of the batch size could hold a map of 800,000 keys. Refused before decoding.
 */
#define EPCS_CODEC_MAX_MAP_ENTRIES 1024

/**
 * Why a body could not be decoded. `field` is the dotted path of the offending member
 * ("activity.labeled", "checks.3.election"), or "" when the body as a whole is at fault.
 */
struct epcs_decode_error {
    char field[128];
    char message[256];
};

/**
 * Decodes one msgpack document that must fill `data` exactly (truncated input or trailing bytes
 * are errors). Map keys must be strings and unique, strings valid UTF-8, nesting at most
 * EPCS_CODEC_MAX_DEPTH, maps at most EPCS_CODEC_MAX_MAP_ENTRIES entries. The object borrows memory
 * from `zone` and from `data`, so both must outlive it. Returns 0, or -1 with `err` filled.
 */
int epcs_msgpack_decode(const char *data, size_t len, msgpack_zone *zone, msgpack_object *out,
                        struct epcs_decode_error *err);

/**
 * Decodes a JSON document into the same msgpack object model, with the same rules as
 * epcs_msgpack_decode. Integers become msgpack integers, other numbers float64. Strings are
 * copied into `zone`, so only `zone` must outlive the object. Returns 0, or -1 with `err` filled.
 */
int epcs_json_decode(const char *text, size_t len, msgpack_zone *zone, msgpack_object *out,
                     struct epcs_decode_error *err);

/**
 * Appends the JSON text of `obj` to `out`. Returns 0, or -1 when the object has no JSON form
 * (bin, ext, non-string map keys, non-finite floats) or memory runs out; `out` may then hold
 * a partial document and should be reset by the caller.
 */
int epcs_json_encode(const msgpack_object *obj, struct epcs_buf *out);

/**
 * Reads the map header at the start of `bytes` (fixmap or map16, what verdicts use): its field
 * count and its own length. Returns 0, or -1 when `bytes` does not start with one.
 */
int epcs_msgpack_map_header(const char *bytes, size_t len, uint32_t *fields, size_t *header_len);

/** True when [str, str+len) is well-formed UTF-8 (no overlongs, surrogates or values > U+10FFFF).
 */
int epcs_utf8_valid(const char *str, size_t len);

/**
 * A 64-bit hash of `len` bytes for in-memory tables (the verdict cache, the decision log's
 * known answers); not stable across versions, never stored.
 */
uint64_t epcs_hash_bytes(const void *bytes, size_t len);

/** The value under the string key [key, key+len) of `map`, or NULL (also when `map` is NULL or
 * no map). Borrowed from `map`. */
const msgpack_object *epcs_map_find(const msgpack_object *map, const char *key, size_t len);
/** epcs_map_find with a NUL-terminated key. */
const msgpack_object *epcs_map_get(const msgpack_object *map, const char *key);

/** How many bytes of client text an error message quotes: a name cut there is still clear. */
#define EPCS_QUOTE_MAX 64

/** The length to quote of `len` bytes of client text ("%.*s"): `len`, cut at EPCS_QUOTE_MAX. */
int epcs_quote_len(size_t len);
/** epcs_quote_len of the msgpack string `str`. */
int epcs_quoted_len(const msgpack_object *str);

/** Packs `len` bytes of `str` as a msgpack string. */
void epcs_pack_str(msgpack_packer *pk, const char *str, size_t len);
/** Packs the NUL-terminated `str` as a msgpack string. */
void epcs_pack_cstr(msgpack_packer *pk, const char *str);
/** Packs `day` (days since 1970-01-01) as its "YYYY-MM-DD" string. */
void epcs_pack_day(msgpack_packer *pk, int32_t day);
/** Packs `us` (microseconds since the epoch) as epcs_instant_format_us writes it. */
void epcs_pack_instant_us(msgpack_packer *pk, int64_t us);

#endif
