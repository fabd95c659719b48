#include <stdint.h>
#include <stdlib.h>

#include "codec.h"
#include "dates.h"
#include "partner.h"
#include "testing.h"

static msgpack_zone zone;

/* Decodes msgpack bytes and re-encodes as JSON; returns the JSON or the error message. */
static const char *msgpack_to_json(const char *data, size_t len, struct epcs_decode_error *err)
{
    static char text[4096];
    msgpack_object obj;
    struct epcs_buf out = {0};
    memset(err, 0, sizeof(*err));
    if (epcs_msgpack_decode(data, len, &zone, &obj, err) != 0)
        return snprintf(text, sizeof(text), "error: %s", err->message), text;
    int rc = epcs_json_encode(&obj, &out);
    snprintf(text, sizeof(text), "%.*s", rc == 0 ? (int)out.len : 0, out.data ? out.data : "");
    epcs_buf_free(&out);
    return rc == 0 ? text : "encode failed";
}

static const char *json_to_json(const char *json, struct epcs_decode_error *err)
{
    static char text[4096];
    msgpack_object obj;
    struct epcs_buf out = {0};
    memset(err, 0, sizeof(*err));
    if (epcs_json_decode(json, strlen(json), &zone, &obj, err) != 0)
        return snprintf(text, sizeof(text), "error: %s", err->message), text;
    int rc = epcs_json_encode(&obj, &out);
    snprintf(text, sizeof(text), "%.*s", rc == 0 ? (int)out.len : 0, out.data ? out.data : "");
    epcs_buf_free(&out);
    return rc == 0 ? text : "encode failed";
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

static const char expected_json[] =
    "{\"election\":\"na22\",\"activity\":{\"kind\":\"post\",\"deepfake\":true},\"n\":-5,"
    "\"big\":18446744073709551615,\"f\":1.5,\"nil\":null,\"arr\":[1,2]}";

static void pack_sample(msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    pack_key(&pk, "election");
    pack_key(&pk, "na22");
    pack_key(&pk, "activity");
    msgpack_pack_map(&pk, 2);
    pack_key(&pk, "kind");
    pack_key(&pk, "post");
    pack_key(&pk, "deepfake");
    msgpack_pack_true(&pk);
    pack_key(&pk, "n");
    msgpack_pack_int(&pk, -5);
    pack_key(&pk, "big");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    pack_key(&pk, "f");
    msgpack_pack_double(&pk, 1.5);
    pack_key(&pk, "nil");
    msgpack_pack_nil(&pk);
    pack_key(&pk, "arr");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
}

static void test_round_trips(void)
{
    struct epcs_decode_error err;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    pack_sample(&sbuf);
    EXPECT_STR(msgpack_to_json(sbuf.data, sbuf.size, &err), expected_json);
    /* JSON cannot hold UINT64_MAX through jansson; the rest survives JSON -> msgpack -> JSON. */
    EXPECT_STR(json_to_json("{\"election\":\"na22\",\"activity\":{\"kind\":\"post\","
                            "\"deepfake\":true},\"n\":-5,\"f\":1.5,\"nil\":null,\"arr\":[1,2]}",
                            &err),
               "{\"election\":\"na22\",\"activity\":{\"kind\":\"post\",\"deepfake\":true},"
               "\"n\":-5,\"f\":1.5,\"nil\":null,\"arr\":[1,2]}");
    EXPECT_STR(json_to_json("[1.0, 0.1, -2, 9223372036854775807]", &err),
               "[1.0,0.10000000000000001,-2,9223372036854775807]");

    /* Truncated at every length short of the whole: always an error, never a crash. */
    int truncated_errors = 0;
    for (size_t len = 1; len < sbuf.size; len++) {
        msgpack_object obj;
        if (epcs_msgpack_decode(sbuf.data, len, &zone, &obj, &err) != 0)
            truncated_errors++;
    }
    EXPECT_INT(truncated_errors, (long long)sbuf.size - 1);
    msgpack_object obj;
    EXPECT_INT(epcs_msgpack_decode(sbuf.data, sbuf.size - 1, &zone, &obj, &err), -1);
    EXPECT_CONTAINS(err.message, "truncated msgpack");
    EXPECT_STR(err.field, "");

    char *longer = malloc(sbuf.size + 1);
    memcpy(longer, sbuf.data, sbuf.size);
    longer[sbuf.size] = (char)0xc0;
    EXPECT_INT(epcs_msgpack_decode(longer, sbuf.size + 1, &zone, &obj, &err), -1);
    char expected[96];
    snprintf(expected, sizeof(expected), "trailing bytes after the msgpack document at offset %zu",
             sbuf.size);
    EXPECT_STR(err.message, expected);
    free(longer);
    msgpack_sbuffer_destroy(&sbuf);
}

static void test_msgpack_rules(void)
{
    struct epcs_decode_error err;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_object obj;

    EXPECT_INT(epcs_msgpack_decode("", 0, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "empty body");

    /* Declared sizes beyond the bytes there are: truncated, before anything is allocated. */
    static const struct {
        const char *bytes;
        size_t len;
    } short_bodies[] = {
        {"\xdd\xff\xff\xff\xff", 5},     /* array32 of 2^32-1 */
        {"\xdf\x04\x00\x00\x00", 5},     /* map32 of 2^26 pairs */
        {"\xdc\x00\x03\x01\x02", 5},     /* array16 of 3, two present */
        {"\xc6\x7f\xff\xff\xff\x00", 6}, /* bin32 of 2 GiB */
        {"\xdb\x00\x00\x01\x00", 5},     /* str32 of 256 */
        {"\xc9\x00\x00\x00\x10\x01", 6}, /* ext32 of 16 */
        {"\x81\xa1k", 3},                /* a map's value missing */
    };
    for (size_t i = 0; i < sizeof(short_bodies) / sizeof(short_bodies[0]); i++) {
        EXPECT_INT(
            epcs_msgpack_decode(short_bodies[i].bytes, short_bodies[i].len, &zone, &obj, &err), -1);
        EXPECT_CONTAINS(err.message, "truncated msgpack: the document ends early");
    }
    /* 0xc1 starts no msgpack value. */
    EXPECT_INT(epcs_msgpack_decode("\x91\xc1", 2, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "malformed msgpack near byte 1");
    /* A NUL inside a key could make "purpose\0x" look up as "purpose". */
    EXPECT_INT(epcs_msgpack_decode("\x81\xa2k\x00\xc3", 5, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "NUL byte in map key");

    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_true(&pk);
    EXPECT_INT(epcs_msgpack_decode(sbuf.data, sbuf.size, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "map key is not a string");
    EXPECT_STR(err.field, "");

    msgpack_sbuffer_clear(&sbuf);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "activity");
    msgpack_pack_map(&pk, 2);
    pack_key(&pk, "kind");
    pack_key(&pk, "post");
    pack_key(&pk, "kind");
    pack_key(&pk, "edit");
    EXPECT_INT(epcs_msgpack_decode(sbuf.data, sbuf.size, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "duplicate key 'kind'");
    EXPECT_STR(err.field, "activity.kind");

    msgpack_sbuffer_clear(&sbuf);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "activity");
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "kind");
    msgpack_pack_str(&pk, 2);
    msgpack_pack_str_body(&pk, "\xff\xfe", 2);
    EXPECT_INT(epcs_msgpack_decode(sbuf.data, sbuf.size, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "invalid UTF-8 in string");
    EXPECT_STR(err.field, "activity.kind");

    msgpack_sbuffer_clear(&sbuf);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "checks");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_map(&pk, 2);
    pack_key(&pk, "a");
    msgpack_pack_int(&pk, 1);
    pack_key(&pk, "a");
    msgpack_pack_int(&pk, 2);
    EXPECT_INT(epcs_msgpack_decode(sbuf.data, sbuf.size, &zone, &obj, &err), -1);
    EXPECT_STR(err.field, "checks.1.a");

    /* Depth counts containers, the top-level one being 1: 32 nested arrays pass, 33 do not. */
    for (int depth = 31; depth <= 34; depth++) {
        msgpack_sbuffer_clear(&sbuf);
        for (int i = 0; i < depth; i++)
            msgpack_pack_array(&pk, i + 1 < depth ? 1 : 0);
        int rc = epcs_msgpack_decode(sbuf.data, sbuf.size, &zone, &obj, &err);
        EXPECT_INT(rc, depth <= EPCS_CODEC_MAX_DEPTH ? 0 : -1);
        if (rc != 0)
            EXPECT_CONTAINS(err.message, "nesting deeper than 32 levels");
    }
    msgpack_sbuffer_clear(&sbuf);
    for (int i = 0; i < 100000; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    EXPECT_INT(epcs_msgpack_decode(sbuf.data, sbuf.size, &zone, &obj, &err), -1);
    EXPECT_CONTAINS(err.message, "nesting deeper than 32 levels");
    msgpack_sbuffer_destroy(&sbuf);

    /* 0xc1 is never used in msgpack. */
    EXPECT_INT(epcs_msgpack_decode("\xc1", 1, &zone, &obj, &err), -1);
    EXPECT_CONTAINS(err.message, "malformed msgpack");
}

static void test_json_rules(void)
{
    struct epcs_decode_error err;
    msgpack_object obj;
    EXPECT_INT(epcs_json_decode("", 0, &zone, &obj, &err), -1);
    EXPECT_STR(err.message, "empty body");
    EXPECT_CONTAINS(json_to_json("{\"a\":1,\"a\":2}", &err), "duplicate object key");
    EXPECT_STR(json_to_json("{\"a\":1} x", &err),
               "error: malformed JSON at line 1, column 9: end of file expected near 'x'");
    EXPECT_CONTAINS(json_to_json("{\"election\": }", &err), "error: malformed JSON at line 1");
    EXPECT_CONTAINS(json_to_json("{\"k\":\"\xff\"}", &err), "error: malformed JSON");
    EXPECT_STR(json_to_json("{\"checks\":[{},{\"a\":{\"b\":[1,{\"c\":\"\\u00e9\"}]}}]}", &err),
               "{\"checks\":[{},{\"a\":{\"b\":[1,{\"c\":\"\xc3\xa9\"}]}}]}");

    char deep[200];
    for (int depth = 32; depth <= 33; depth++) {
        memset(deep, 0, sizeof(deep));
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        int rc = epcs_json_decode(deep, strlen(deep), &zone, &obj, &err);
        EXPECT_INT(rc, depth == 32 ? 0 : -1);
        if (rc != 0)
            EXPECT_STR(err.message, "nesting deeper than 32 levels");
    }
    size_t huge = 100000;
    char *bomb = malloc(2 * huge);
    memset(bomb, '[', huge);
    memset(bomb + huge, ']', huge);
    EXPECT_INT(epcs_json_decode(bomb, 2 * huge, &zone, &obj, &err), -1);
    EXPECT_CONTAINS(err.message, "malformed JSON");
    free(bomb);
}

static void test_encode(void)
{
    struct epcs_buf out = {0};
    msgpack_object str = {.type = MSGPACK_OBJECT_STR};
    const char text[] = "q\"b\\n\nx\x01\t\xed\x95\x9c\xea\xb8\x80";
    str.via.str.ptr = text;
    str.via.str.size = sizeof(text) - 1;
    EXPECT_INT(epcs_json_encode(&str, &out), 0);
    epcs_buf_append(&out, "", 1);
    EXPECT_STR(out.data, "\"q\\\"b\\\\n\\nx\\u0001\\t\xed\x95\x9c\xea\xb8\x80\"");
    epcs_buf_reset(&out);

    msgpack_object nan = {.type = MSGPACK_OBJECT_FLOAT64};
    nan.via.f64 = 0.0 / 0.0;
    EXPECT_INT(epcs_json_encode(&nan, &out), -1);
    msgpack_object bin = {.type = MSGPACK_OBJECT_BIN};
    EXPECT_INT(epcs_json_encode(&bin, &out), -1);
    msgpack_object_kv pair = {.key = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER}};
    msgpack_object map = {.type = MSGPACK_OBJECT_MAP};
    map.via.map.ptr = &pair;
    map.via.map.size = 1;
    EXPECT_INT(epcs_json_encode(&map, &out), -1);
    epcs_buf_free(&out);
}

static void test_utf8(void)
{
    static const struct {
        const char *bytes;
        int valid;
    } cases[] = {
        {"plain ascii", 1},
        {"\xed\x95\x9c\xea\xb8\x80", 1}, /* 한글 */
        {"\xf0\x9f\x97\xb3", 1},         /* U+1F5F3 */
        {"\xf4\x8f\xbf\xbf", 1},         /* U+10FFFF */
        {"\xc0\x80", 0},                 /* overlong NUL */
        {"\xe0\x80\xaf", 0},             /* overlong '/' */
        {"\xed\xa0\x80", 0},             /* surrogate */
        {"\xf4\x90\x80\x80", 0},         /* above U+10FFFF */
        {"\xe2\x82", 0},                 /* truncated */
        {"\x80", 0},                     /* stray continuation */
        {"\xff", 0},
        {"a\xc3", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        EXPECT_INT(epcs_utf8_valid(cases[i].bytes, strlen(cases[i].bytes)), cases[i].valid);
}

/* A buffer that ran out of memory stays failed until reset, so a document missing a piece is
 * never sent: every later append, msgpack's included, fails too. */
static void test_buf_failure(void)
{
    struct epcs_buf buf = {0}, copy = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, epcs_buf_msgpack_write);
    EXPECT_INT(epcs_buf_append(&buf, "ab", 2), 0);
    EXPECT_INT(epcs_buf_reserve(&buf, SIZE_MAX - 1), -1);
    EXPECT_INT(buf.failed, 1);
    EXPECT_INT(epcs_buf_append(&buf, "c", 1), -1);
    EXPECT_INT(msgpack_pack_true(&pk), -1);
    EXPECT_INT((int)buf.len, 2);
    EXPECT_INT(epcs_buf_append_buf(&copy, &buf), -1);
    EXPECT_INT(copy.failed, 1);
    epcs_buf_reset(&buf);
    EXPECT_INT(buf.failed, 0);
    EXPECT_INT(msgpack_pack_true(&pk), 0);
    EXPECT_INT(epcs_buf_append_buf(&copy, &buf), -1);
    epcs_buf_reset(&copy);
    EXPECT_INT(epcs_buf_append_buf(&copy, &buf), 0);
    EXPECT_INT((int)copy.len, 1);
    epcs_buf_free(&buf);
    epcs_buf_free(&copy);
}

/* The helpers every layer shares: one map lookup, one quoting length, one clock, one rule for
 * partner ids. */
static void test_shared_helpers(void)
{
    msgpack_object doc;
    struct epcs_decode_error err;
    const char *json = "{\"election\": \"na22\", \"activity\": {\"kind\": \"post\"}}";
    EXPECT_INT(epcs_json_decode(json, strlen(json), &zone, &doc, &err), 0);
    const msgpack_object *activity = epcs_map_get(&doc, "activity");
    EXPECT(activity != NULL && activity->type == MSGPACK_OBJECT_MAP);
    const msgpack_object *kind = epcs_map_get(activity, "kind");
    EXPECT(kind != NULL && kind->type == MSGPACK_OBJECT_STR && kind->via.str.size == 4);
    EXPECT(epcs_map_find(&doc, "electionX", 8) != NULL);
    EXPECT(epcs_map_get(&doc, "elect") == NULL);
    EXPECT(epcs_map_get(&doc, "date") == NULL);
    EXPECT(epcs_map_get(kind, "kind") == NULL);
    EXPECT(epcs_map_get(NULL, "kind") == NULL);
    /* A key that is no string is never a match, whatever its bytes. */
    const char bin_key[] = {(char)0x81, (char)0xc4, 0x04, 'k', 'i', 'n', 'd', 0x01};
    msgpack_object odd;
    size_t offset = 0;
    EXPECT_INT(msgpack_unpack(bin_key, sizeof(bin_key), &offset, &zone, &odd),
               MSGPACK_UNPACK_SUCCESS);
    EXPECT(epcs_map_get(&odd, "kind") == NULL);

    const msgpack_object *election = epcs_map_get(&doc, "election");
    EXPECT_INT(epcs_quoted_len(election), 4);
    char long_text[300];
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    msgpack_object long_str = {.type = MSGPACK_OBJECT_STR,
                               .via.str = {.size = (uint32_t)strlen(long_text), .ptr = long_text}};
    EXPECT_INT(epcs_quoted_len(&long_str), EPCS_QUOTE_MAX);

    /* 2020-01-01 and 2200-01-01 in microseconds: the clock is the wall clock, in us. */
    int64_t now = epcs_now_us();
    EXPECT(now > 1577836800LL * 1000000 && now < 7258118400LL * 1000000);

    EXPECT(epcs_partner_id_valid("naver"));
    EXPECT(epcs_partner_id_valid("police.seoul-1_a"));
    EXPECT(!epcs_partner_id_valid(""));
    EXPECT(!epcs_partner_id_valid("Naver"));
    EXPECT(!epcs_partner_id_valid("naver kakao"));
    EXPECT(!epcs_partner_id_valid("naver/x"));
    char longest[EPCS_KEY_PARTNER_MAX + 1];
    memset(longest, 'a', sizeof(longest));
    longest[EPCS_KEY_PARTNER_MAX - 1] = '\0';
    EXPECT(epcs_partner_id_valid(longest));
    longest[EPCS_KEY_PARTNER_MAX - 1] = 'a';
    longest[EPCS_KEY_PARTNER_MAX] = '\0';
    EXPECT(!epcs_partner_id_valid(longest));
}

int main(void)
{
    test_buf_failure();
    msgpack_zone_init(&zone, 4096);
    test_round_trips();
    test_msgpack_rules();
    test_json_rules();
    test_encode();
    test_utf8();
    test_shared_helpers();
    msgpack_zone_destroy(&zone);
    return epcs_test_report();
}
