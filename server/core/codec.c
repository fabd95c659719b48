#include "codec.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"

/* A dotted path under construction while walking a document ("activity.labeled"). */
struct path {
    char text[128];
    size_t len;
};

static size_t path_push(struct path *path, const char *name, size_t name_len)
{
    size_t saved = path->len;
    size_t room = sizeof(path->text) - path->len - 1;
    size_t dot = path->len > 0 ? 1 : 0;
    if (dot + name_len > room) {
        name_len = room > dot ? room - dot : 0;
        /* Cut between characters, never inside one: the path is quoted back to the client. */
        while (name_len > 0 && ((unsigned char)name[name_len] & 0xc0) == 0x80)
            name_len--;
    }
    if (dot && room > 0)
        path->text[path->len++] = '.';
    if (name_len > 0)
        memcpy(path->text + path->len, name, name_len);
    path->len += name_len;
    path->text[path->len] = '\0';
    return saved;
}

static size_t path_push_index(struct path *path, uint32_t index)
{
    char digits[16];
    int len = snprintf(digits, sizeof(digits), "%" PRIu32, index);
    return path_push(path, digits, (size_t)len);
}

static int fail(struct epcs_decode_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct epcs_decode_error *err, const char *field, const char *fmt, ...)
{
    va_list args;
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);
    return -1;
}

/* The bytes of the msgpack value whose type byte is `type`, beyond the type byte itself, and
 * the elements it holds (for containers). Returns -1 for a byte no value starts with. */
static int msgpack_item(const unsigned char *at, size_t left, size_t *head, uint64_t *payload,
                        uint64_t *elements, int *is_map)
{
    unsigned char type = at[0];
    *head = 1;
    *payload = 0;
    *elements = 0;
    *is_map = (type >= 0x80 && type <= 0x8f) || type == 0xde || type == 0xdf;
    if (type <= 0x7f || type >= 0xe0 || type == 0xc0 || type == 0xc2 || type == 0xc3)
        return 0;
    if (type >= 0x80 && type <= 0x8f) {
        *elements = 2u * (type & 0x0f);
        return 0;
    }
    if (type >= 0x90 && type <= 0x9f) {
        *elements = type & 0x0f;
        return 0;
    }
    if (type >= 0xa0 && type <= 0xbf) {
        *payload = type & 0x1f;
        return 0;
    }
    /* Fixed-size scalars: float32/64, uint8-64, int8-64, fixext 1-16 (one type byte more). */
    static const unsigned char fixed[][2] = {
        {0xca, 4}, {0xcb, 8}, {0xcc, 1}, {0xcd, 2}, {0xce, 4}, {0xcf, 8}, {0xd0, 1}, {0xd1, 2},
        {0xd2, 4}, {0xd3, 8}, {0xd4, 2}, {0xd5, 3}, {0xd6, 5}, {0xd7, 9}, {0xd8, 17}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (fixed[i][0] == type) {
            *payload = fixed[i][1];
            return 0;
        }
    }
    /* Sized values: a big-endian length of 1, 2 or 4 bytes, then (for ext) a type byte. */
    size_t width;
    int is_ext = 0, kind; /* 0 bytes, 1 array, 2 map */
    switch (type) {
    case 0xc4:
    case 0xd9:
        width = 1, kind = 0;
        break;
    case 0xc5:
    case 0xda:
        width = 2, kind = 0;
        break;
    case 0xc6:
    case 0xdb:
        width = 4, kind = 0;
        break;
    case 0xc7:
        width = 1, kind = 0, is_ext = 1;
        break;
    case 0xc8:
        width = 2, kind = 0, is_ext = 1;
        break;
    case 0xc9:
        width = 4, kind = 0, is_ext = 1;
        break;
    case 0xdc:
        width = 2, kind = 1;
        break;
    case 0xdd:
        width = 4, kind = 1;
        break;
    case 0xde:
        width = 2, kind = 2;
        break;
    case 0xdf:
        width = 4, kind = 2;
        break;
    default:
        return -1;
    }
    if (left < 1 + width)
        return 1;
    uint64_t count = 0;
    for (size_t i = 0; i < width; i++)
        count = count << 8 | at[1 + i];
    *head = 1 + width + (size_t)is_ext;
    if (kind == 0)
        *payload = count;
    else
        *elements = kind == 2 ? 2 * count : count;
    return 0;
}

/*
 * Walks the document's structure before msgpack-c builds it: msgpack-c allocates room for a
 * container's declared count first, so five bytes declaring 2^32 elements would cost gigabytes
 * before the missing elements are noticed. Every element takes at least a byte, so a count
 * beyond the bytes left is a truncated document. Nesting is bounded here too.
 */
static int msgpack_prescan(const unsigned char *data, size_t len, struct epcs_decode_error *err)
{
    uint64_t pending[EPCS_CODEC_MAX_DEPTH + 2];
    int depth = 0;
    size_t at = 0;
    pending[0] = 1;
    while (at < len) {
        while (depth >= 0 && pending[depth] == 0)
            depth--;
        if (depth < 0)
            return fail(err, "", "trailing bytes after the msgpack document at offset %zu", at);
        pending[depth]--;
        size_t head;
        uint64_t payload, elements;
        int is_map;
        int item = msgpack_item(data + at, len - at, &head, &payload, &elements, &is_map);
        if (item < 0)
            return fail(err, "", "malformed msgpack near byte %zu", at);
        if (item > 0 || head > len - at || payload > len - at - head)
            return fail(err, "", "truncated msgpack: the document ends early (%zu bytes)", len);
        at += head + (size_t)payload;
        if (elements > len - at)
            return fail(err, "", "truncated msgpack: the document ends early (%zu bytes)", len);
        if (is_map && elements / 2 > EPCS_CODEC_MAX_MAP_ENTRIES)
            return fail(err, "", "a map of %llu entries; maps hold at most %d",
                        (unsigned long long)(elements / 2), EPCS_CODEC_MAX_MAP_ENTRIES);
        if (elements > 0) {
            if (depth + 1 > EPCS_CODEC_MAX_DEPTH)
                return fail(err, "", "malformed msgpack: nesting deeper than %d levels",
                            EPCS_CODEC_MAX_DEPTH);
            pending[++depth] = elements;
        }
    }
    while (depth >= 0 && pending[depth] == 0)
        depth--;
    if (depth >= 0)
        return fail(err, "", "truncated msgpack: the document ends early (%zu bytes)", len);
    return 0;
}

int epcs_utf8_valid(const char *str, size_t len)
{
    /* msgpack-c gives an empty string a NULL pointer: no arithmetic on it. */
    if (len == 0)
        return 1;
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        if (*s < 0x80) {
            s++;
            continue;
        }
        size_t need;
        uint32_t min, code;
        if ((*s & 0xe0) == 0xc0) {
            need = 1, min = 0x80, code = *s & 0x1f;
        } else if ((*s & 0xf0) == 0xe0) {
            need = 2, min = 0x800, code = *s & 0x0f;
        } else if ((*s & 0xf8) == 0xf0) {
            need = 3, min = 0x10000, code = *s & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - s) <= need)
            return 0;
        for (size_t i = 1; i <= need; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            code = (code << 6) | (s[i] & 0x3f);
        }
        if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
            return 0;
        s += need + 1;
    }
    return 1;
}

/*
 * Where the walk of validate() is: the keys and indexes above the current value. It becomes a
 * dotted path only when an error names it; building the text for every key of every request
 * cost more than the checks themselves.
 */
struct walk {
    struct {
        const char *name;
        size_t len;
        /* For an array element, its index (name is NULL). */
        uint32_t index;
    } step[EPCS_CODEC_MAX_DEPTH + 1];
    int depth;
};

static const char *walk_text(const struct walk *walk, struct path *path)
{
    path->len = 0;
    path->text[0] = '\0';
    for (int i = 0; i < walk->depth; i++) {
        if (walk->step[i].name != NULL)
            path_push(path, walk->step[i].name, walk->step[i].len);
        else
            path_push_index(path, walk->step[i].index);
    }
    return path->text;
}

struct sorted_key {
    const char *ptr;
    uint32_t len;
    uint32_t index;
};

static int by_key_then_index(const void *a, const void *b)
{
    const struct sorted_key *left = a, *right = b;
    if (left->len != right->len)
        return left->len < right->len ? -1 : 1;
    int cmp = left->len > 0 ? memcmp(left->ptr, right->ptr, left->len) : 0;
    if (cmp != 0)
        return cmp;
    return left->index < right->index ? -1 : left->index > right->index;
}

/*
 * The index of the first string key of `pairs` that repeats an earlier one, UINT32_MAX when
 * none does (UINT32_MAX - 1: no memory). Two by two for small maps; sorted beyond that, so a
 * map up to the limit costs n log n, and the repeat found is the one a scan in order meets
 * first.
 */
static uint32_t first_repeat(const msgpack_object_kv *pairs, uint32_t count)
{
    uint32_t first = UINT32_MAX;
    if (count <= 16) {
        for (uint32_t i = 1; i < count && first == UINT32_MAX; i++) {
            const msgpack_object *key = &pairs[i].key;
            for (uint32_t j = 0; j < i && key->type == MSGPACK_OBJECT_STR; j++) {
                const msgpack_object *other = &pairs[j].key;
                if (other->type == MSGPACK_OBJECT_STR && other->via.str.size == key->via.str.size &&
                    (key->via.str.size == 0 ||
                     memcmp(other->via.str.ptr, key->via.str.ptr, key->via.str.size) == 0)) {
                    first = i;
                    break;
                }
            }
        }
        return first;
    }
    struct sorted_key *keys = malloc(sizeof(*keys) * count);
    if (keys == NULL)
        return UINT32_MAX - 1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (pairs[i].key.type == MSGPACK_OBJECT_STR)
            keys[n++] = (struct sorted_key){pairs[i].key.via.str.ptr, pairs[i].key.via.str.size, i};
    }
    qsort(keys, n, sizeof(*keys), by_key_then_index);
    for (uint32_t i = 1; i < n; i++) {
        if (keys[i].len == keys[i - 1].len &&
            (keys[i].len == 0 || memcmp(keys[i].ptr, keys[i - 1].ptr, keys[i].len) == 0) &&
            keys[i].index < first)
            first = keys[i].index;
    }
    free(keys);
    return first;
}

/* The checks both decoders share. Depth counts containers: the top-level map is at depth 1. */
static int validate(const msgpack_object *obj, int depth, struct walk *walk,
                    struct epcs_decode_error *err)
{
    struct path path;
    switch (obj->type) {
    case MSGPACK_OBJECT_STR:
        if (!epcs_utf8_valid(obj->via.str.ptr, obj->via.str.size))
            return fail(err, walk_text(walk, &path), "invalid UTF-8 in string");
        return 0;
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        if (depth > EPCS_CODEC_MAX_DEPTH)
            return fail(err, walk_text(walk, &path), "nesting deeper than %d levels",
                        EPCS_CODEC_MAX_DEPTH);
        break;
    default:
        return 0;
    }
    /* depth <= EPCS_CODEC_MAX_DEPTH here, so the step below is within walk->step. */
    int step = walk->depth++;
    int rc = 0;
    if (obj->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; rc == 0 && i < obj->via.array.size; i++) {
            walk->step[step].name = NULL;
            walk->step[step].index = i;
            rc = validate(&obj->via.array.ptr[i], depth + 1, walk, err);
        }
        walk->depth = step;
        return rc;
    }
    const msgpack_object_kv *pairs = obj->via.map.ptr;
    uint32_t repeat = first_repeat(pairs, obj->via.map.size);
    if (repeat == UINT32_MAX - 1) {
        walk->depth = step;
        return fail(err, walk_text(walk, &path), "out of memory checking map keys");
    }
    for (uint32_t i = 0; rc == 0 && i < obj->via.map.size; i++) {
        const msgpack_object *key = &pairs[i].key;
        walk->depth = step;
        if (key->type != MSGPACK_OBJECT_STR)
            return fail(err, walk_text(walk, &path), "map key is not a string");
        if (!epcs_utf8_valid(key->via.str.ptr, key->via.str.size))
            return fail(err, walk_text(walk, &path), "invalid UTF-8 in map key");
        /* Names are looked up as C strings: "purpose\0x" must not pass for "purpose". */
        if (key->via.str.size > 0 && memchr(key->via.str.ptr, '\0', key->via.str.size) != NULL)
            return fail(err, walk_text(walk, &path), "NUL byte in map key");
        walk->step[step].name = key->via.str.ptr;
        walk->step[step].len = key->via.str.size;
        walk->depth = step + 1;
        if (i == repeat)
            return fail(err, walk_text(walk, &path), "duplicate key '%.*s'", epcs_quoted_len(key),
                        key->via.str.ptr);
        rc = validate(&pairs[i].val, depth + 1, walk, err);
    }
    walk->depth = step;
    return rc;
}

static int validate_document(const msgpack_object *obj, struct epcs_decode_error *err)
{
    struct walk walk = {.depth = 0};
    return validate(obj, 1, &walk, err);
}

int epcs_msgpack_decode(const char *data, size_t len, msgpack_zone *zone, msgpack_object *out,
                        struct epcs_decode_error *err)
{
    if (len == 0)
        return fail(err, "", "empty body");
    if (msgpack_prescan((const unsigned char *)data, len, err) != 0)
        return -1;
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack(data, len, &offset, zone, out);
    switch (rc) {
    case MSGPACK_UNPACK_SUCCESS:
        break;
    case MSGPACK_UNPACK_EXTRA_BYTES:
        return fail(err, "", "trailing bytes after the msgpack document at offset %zu", offset);
    case MSGPACK_UNPACK_CONTINUE:
        return fail(err, "", "truncated msgpack: the document ends early (%zu bytes)", len);
    case MSGPACK_UNPACK_NOMEM_ERROR:
        /* msgpack-c's parser stack holds 32 nested containers; deeper input lands here. */
        return fail(err, "", "malformed msgpack: nesting deeper than %d levels",
                    EPCS_CODEC_MAX_DEPTH);
    default:
        return fail(err, "", "malformed msgpack near byte %zu", offset);
    }
    return validate_document(out, err);
}

static int from_json(const json_t *json, msgpack_zone *zone, msgpack_object *out, int depth)
{
    switch (json_typeof(json)) {
    case JSON_NULL:
        out->type = MSGPACK_OBJECT_NIL;
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        out->type = MSGPACK_OBJECT_BOOLEAN;
        out->via.boolean = json_is_true(json);
        return 0;
    case JSON_INTEGER: {
        json_int_t value = json_integer_value(json);
        if (value >= 0) {
            out->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
            out->via.u64 = (uint64_t)value;
        } else {
            out->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
            out->via.i64 = (int64_t)value;
        }
        return 0;
    }
    case JSON_REAL:
        out->type = MSGPACK_OBJECT_FLOAT64;
        out->via.f64 = json_real_value(json);
        return 0;
    case JSON_STRING: {
        size_t len = json_string_length(json);
        char *copy = msgpack_zone_malloc(zone, len ? len : 1);
        if (copy == NULL)
            return -1;
        memcpy(copy, json_string_value(json), len);
        out->type = MSGPACK_OBJECT_STR;
        out->via.str.ptr = copy;
        out->via.str.size = (uint32_t)len;
        return 0;
    }
    case JSON_ARRAY: {
        /* Deeper than the limit is refused by validation; stop converting there already. */
        if (depth > EPCS_CODEC_MAX_DEPTH + 1)
            return -2;
        size_t size = json_array_size(json);
        msgpack_object *items = msgpack_zone_malloc(zone, sizeof(*items) * (size ? size : 1));
        if (items == NULL)
            return -1;
        for (size_t i = 0; i < size; i++) {
            int rc = from_json(json_array_get(json, i), zone, &items[i], depth + 1);
            if (rc != 0)
                return rc;
        }
        out->type = MSGPACK_OBJECT_ARRAY;
        out->via.array.ptr = items;
        out->via.array.size = (uint32_t)size;
        return 0;
    }
    case JSON_OBJECT: {
        if (depth > EPCS_CODEC_MAX_DEPTH + 1)
            return -2;
        size_t size = json_object_size(json);
        msgpack_object_kv *pairs = msgpack_zone_malloc(zone, sizeof(*pairs) * (size ? size : 1));
        if (pairs == NULL)
            return -1;
        size_t i = 0;
        const char *key;
        json_t *value;
        /* jansson keeps insertion order, so the wire order survives the conversion. */
        json_object_foreach((json_t *)json, key, value)
        {
            json_t *key_json = json_string(key);
            int rc = key_json == NULL ? -1 : from_json(key_json, zone, &pairs[i].key, depth + 1);
            json_decref(key_json);
            if (rc == 0)
                rc = from_json(value, zone, &pairs[i].val, depth + 1);
            if (rc != 0)
                return rc;
            i++;
        }
        out->type = MSGPACK_OBJECT_MAP;
        out->via.map.ptr = pairs;
        out->via.map.size = (uint32_t)size;
        return 0;
    }
    }
    return -1;
}

/*
 * Counts the members of every object before jansson builds one: a scan of the text (strings
 * and their escapes skipped; a colon outside a string is an object's member), so an object
 * beyond EPCS_CODEC_MAX_MAP_ENTRIES is refused before any of it is allocated. Syntax is
 * jansson's to judge, nesting beyond the limit validation's.
 */
static int json_prescan(const char *text, size_t len, struct epcs_decode_error *err)
{
    /* Members so far of each open object, -1 for an array; deeper levels go uncounted. */
    long members[EPCS_CODEC_MAX_DEPTH + 2];
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (depth < (int)(sizeof(members) / sizeof(members[0])))
                members[depth] = c == '{' ? 0 : -1;
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ':' && depth > 0 && depth <= (int)(sizeof(members) / sizeof(members[0])) &&
                   members[depth - 1] >= 0 && ++members[depth - 1] > EPCS_CODEC_MAX_MAP_ENTRIES) {
            return fail(err, "", "an object of more than %d members", EPCS_CODEC_MAX_MAP_ENTRIES);
        }
    }
    return 0;
}

int epcs_json_decode(const char *text, size_t len, msgpack_zone *zone, msgpack_object *out,
                     struct epcs_decode_error *err)
{
    if (len == 0)
        return fail(err, "", "empty body");
    if (json_prescan(text, len, err) != 0)
        return -1;
    json_error_t error;
    json_t *json = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (json == NULL)
        return fail(err, "", "malformed JSON at line %d, column %d: %s", error.line, error.column,
                    error.text);
    int rc = from_json(json, zone, out, 1);
    json_decref(json);
    if (rc == -2)
        return fail(err, "", "nesting deeper than %d levels", EPCS_CODEC_MAX_DEPTH);
    if (rc != 0)
        return fail(err, "", "out of memory decoding JSON");
    return validate_document(out, err);
}

static int append_json_string(struct epcs_buf *out, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (epcs_buf_append(out, "\"", 1) != 0)
        return -1;
    size_t run = 0;
    if (len == 0)
        return epcs_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)str[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (epcs_buf_append(out, str + run, i - run) != 0)
            return -1;
        char escape[6] = {'\\', 0, 0, 0, 0, 0};
        size_t escape_len = 2;
        switch (c) {
        case '"':
            escape[1] = '"';
            break;
        case '\\':
            escape[1] = '\\';
            break;
        case '\n':
            escape[1] = 'n';
            break;
        case '\r':
            escape[1] = 'r';
            break;
        case '\t':
            escape[1] = 't';
            break;
        case '\b':
            escape[1] = 'b';
            break;
        case '\f':
            escape[1] = 'f';
            break;
        default:
            memcpy(escape + 1, "u00", 3);
            escape[4] = hex[c >> 4];
            escape[5] = hex[c & 0xf];
            escape_len = 6;
        }
        if (epcs_buf_append(out, escape, escape_len) != 0)
            return -1;
        run = i + 1;
    }
    if (epcs_buf_append(out, str + run, len - run) != 0)
        return -1;
    return epcs_buf_append(out, "\"", 1);
}

static int encode(const msgpack_object *obj, struct epcs_buf *out, int depth)
{
    char number[40];
    int len;
    if (depth > 64)
        return -1;
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        return epcs_buf_append(out, "null", 4);
    case MSGPACK_OBJECT_BOOLEAN:
        return obj->via.boolean ? epcs_buf_append(out, "true", 4)
                                : epcs_buf_append(out, "false", 5);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        len = snprintf(number, sizeof(number), "%" PRIu64, obj->via.u64);
        return epcs_buf_append(out, number, (size_t)len);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        len = snprintf(number, sizeof(number), "%" PRId64, obj->via.i64);
        return epcs_buf_append(out, number, (size_t)len);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(obj->via.f64))
            return -1;
        len = snprintf(number, sizeof(number), "%.17g", obj->via.f64);
        /* "%g" prints 1.0 as "1": keep the value a JSON real so it decodes back as one. */
        if (strspn(number, "-0123456789") == (size_t)len)
            number[len++] = '.', number[len++] = '0', number[len] = '\0';
        return epcs_buf_append(out, number, (size_t)len);
    case MSGPACK_OBJECT_STR:
        return append_json_string(out, obj->via.str.ptr, obj->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        if (epcs_buf_append(out, "[", 1) != 0)
            return -1;
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            if ((i > 0 && epcs_buf_append(out, ",", 1) != 0) ||
                encode(&obj->via.array.ptr[i], out, depth + 1) != 0)
                return -1;
        }
        return epcs_buf_append(out, "]", 1);
    case MSGPACK_OBJECT_MAP:
        if (epcs_buf_append(out, "{", 1) != 0)
            return -1;
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            const msgpack_object_kv *pair = &obj->via.map.ptr[i];
            if (pair->key.type != MSGPACK_OBJECT_STR)
                return -1;
            if ((i > 0 && epcs_buf_append(out, ",", 1) != 0) ||
                append_json_string(out, pair->key.via.str.ptr, pair->key.via.str.size) != 0 ||
                epcs_buf_append(out, ":", 1) != 0 || encode(&pair->val, out, depth + 1) != 0)
                return -1;
        }
        return epcs_buf_append(out, "}", 1);
    default:
        return -1;
    }
}

int epcs_json_encode(const msgpack_object *obj, struct epcs_buf *out)
{
    return encode(obj, out, 1);
}

int epcs_msgpack_map_header(const char *bytes, size_t len, uint32_t *fields, size_t *header_len)
{
    unsigned char first = len > 0 ? (unsigned char)bytes[0] : 0;
    if (first >= 0x80 && first <= 0x8f) {
        *fields = first & 0x0f;
        *header_len = 1;
        return 0;
    }
    if (first == 0xde && len >= 3) {
        *fields = (uint32_t)((unsigned char)bytes[1] << 8 | (unsigned char)bytes[2]);
        *header_len = 3;
        return 0;
    }
    return -1;
}

/* Keys and answers are tens to hundreds of bytes: mixed a word at a time, not a byte at a time. */
uint64_t epcs_hash_bytes(const void *bytes, size_t len)
{
    const unsigned char *at = bytes;
    uint64_t hash = 0x9e3779b97f4a7c15ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, at + i, 8);
        hash = (hash ^ word) * 0xbf58476d1ce4e5b9ull;
        hash ^= hash >> 31;
    }
    for (; i < len; i++)
        hash = (hash ^ at[i]) * 0x94d049bb133111ebull;
    return hash ^ (hash >> 29);
}

const msgpack_object *epcs_map_find(const msgpack_object *map, const char *key, size_t len)
{
    for (uint32_t i = 0; map != NULL && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size;
         i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
            memcmp(k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

const msgpack_object *epcs_map_get(const msgpack_object *map, const char *key)
{
    return epcs_map_find(map, key, strlen(key));
}

int epcs_quote_len(size_t len)
{
    return (int)(len > EPCS_QUOTE_MAX ? EPCS_QUOTE_MAX : len);
}

int epcs_quoted_len(const msgpack_object *str)
{
    return epcs_quote_len(str->via.str.size);
}

void epcs_pack_str(msgpack_packer *pk, const char *str, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, str, len);
}

void epcs_pack_cstr(msgpack_packer *pk, const char *str)
{
    epcs_pack_str(pk, str, strlen(str));
}

void epcs_pack_day(msgpack_packer *pk, int32_t day)
{
    char text[11];
    epcs_date_format(day, text);
    epcs_pack_str(pk, text, 10);
}

void epcs_pack_instant_us(msgpack_packer *pk, int64_t us)
{
    char text[EPCS_INSTANT_US_LEN];
    epcs_instant_format_us(us, text);
    epcs_pack_cstr(pk, text);
}
