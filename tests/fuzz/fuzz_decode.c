/*
 * libFuzzer harness for the request decoders. Every input goes to both epcs_msgpack_decode and
 * epcs_json_decode; whatever decodes is encoded with epcs_json_encode (the server answers JSON
 * clients that way), and that text must decode again into a document with the same JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/*
 * msgpack can carry what JSON through jansson cannot: integers above INT64_MAX (jansson's
 * integers are signed 64-bit) and strings holding NUL (refused without JSON_ALLOW_NUL). Only
 * such documents may fail to decode from their own JSON.
 */
static int outside_json(const msgpack_object *obj)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return obj->via.u64 > INT64_MAX;
    case MSGPACK_OBJECT_STR:
        /* An empty string may have a NULL pointer, which memchr must not get. */
        return obj->via.str.size > 0 && memchr(obj->via.str.ptr, '\0', obj->via.str.size) != NULL;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            if (outside_json(&obj->via.array.ptr[i]))
                return 1;
        }
        return 0;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            if (outside_json(&obj->via.map.ptr[i].key) || outside_json(&obj->via.map.ptr[i].val))
                return 1;
        }
        return 0;
    default:
        return 0;
    }
}

static void require(int condition, const char *what, const struct epcs_buf *text)
{
    if (condition)
        return;
    fprintf(stderr, "fuzz_decode: %s\n", what);
    if (text != NULL && text->len > 0)
        fprintf(stderr, "JSON: %.*s\n", (int)(text->len > 4096 ? 4096 : text->len), text->data);
    abort();
}

/* A refusal must say why, within its buffers, so the client gets a message. */
static void require_explained(const struct epcs_decode_error *err)
{
    require(memchr(err->field, '\0', sizeof(err->field)) != NULL, "field not terminated", NULL);
    require(memchr(err->message, '\0', sizeof(err->message)) != NULL, "message not terminated",
            NULL);
    require(err->message[0] != '\0', "refused without a message", NULL);
}

static void round_trip(const msgpack_object *doc, int from_json, msgpack_zone *zone)
{
    struct epcs_buf first = {0}, second = {0};
    if (epcs_json_encode(doc, &first) != 0) {
        /* bin, ext and non-finite floats have no JSON form; a JSON document always has one. */
        require(!from_json, "a document decoded from JSON has no JSON form", NULL);
        epcs_buf_free(&first);
        return;
    }
    msgpack_object again;
    struct epcs_decode_error err;
    if (epcs_json_decode(first.data, first.len, zone, &again, &err) != 0) {
        if (!outside_json(doc)) {
            fprintf(stderr, "fuzz_decode: own JSON refused: %s (field '%s')\n", err.message,
                    err.field);
            require(0, "the JSON of a decoded document does not decode", &first);
        }
    } else {
        require(epcs_json_encode(&again, &second) == 0, "re-decoded document has no JSON form",
                &first);
        require(second.len == first.len && memcmp(second.data, first.data, first.len) == 0,
                "JSON changed on its way through the decoder", &first);
    }
    epcs_buf_free(&first);
    epcs_buf_free(&second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bytes = (const char *)data;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return 0;
    msgpack_object doc;
    struct epcs_decode_error err;

    if (epcs_msgpack_decode(bytes, size, &zone, &doc, &err) == 0)
        round_trip(&doc, 0, &zone);
    else
        require_explained(&err);

    if (epcs_json_decode(bytes, size, &zone, &doc, &err) == 0)
        round_trip(&doc, 1, &zone);
    else
        require_explained(&err);

    /* The verdict cache and the decision log read answers' map headers with it. */
    uint32_t fields;
    size_t header_len;
    if (epcs_msgpack_map_header(bytes, size, &fields, &header_len) == 0)
        require(header_len <= size, "map header longer than the input", NULL);

    msgpack_zone_destroy(&zone);
    return 0;
}
