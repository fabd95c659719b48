/*
 * The decisions the case store makes before any SQL runs, in process: which spellings of a
 * URL are one posting, which actions a verdict may ask for and of whom, which ids name a
 * partner, and how a moment is written. Each is exact: what it accepts and the message naming
 * what it refuses, up to the bounds of each field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "cases.h"
#include "codec.h"
#include "dates.h"
#include "partner.h"

/* ---- postings ----------------------------------------------------------------------------- */

struct posting_case {
    const char *url;
    const char *posting;
};

static void test_spellings_of_one_posting_are_one(void **state)
{
    (void)state;
    static const struct posting_case cases[] = {
        {"https://blog.naver.com/x/1", "https://blog.naver.com/x/1"},
        /* Scheme and host are case-insensitive (RFC 3986 3.1, 3.2.2). */
        {"HtTpS://Blog.NAVER.com/x/1", "https://blog.naver.com/x/1"},
        /* A default port, an empty one and the final dot of the host change nothing. */
        {"https://blog.naver.com:443/x", "https://blog.naver.com/x"},
        {"http://blog.naver.com:80/x", "http://blog.naver.com/x"},
        {"https://blog.naver.com:/x", "https://blog.naver.com/x"},
        {"https://blog.naver.com./x", "https://blog.naver.com/x"},
        /* Another scheme's default port is a port. */
        {"https://blog.naver.com:80/x", "https://blog.naver.com:80/x"},
        {"http://blog.naver.com:8080/x", "http://blog.naver.com:8080/x"},
        /* The fragment is a place in the page; an empty path is the root. */
        {"https://tv.kakao.com#top", "https://tv.kakao.com/"},
        {"https://tv.kakao.com/v/9?t=30#comments", "https://tv.kakao.com/v/9?t=30"},
        {"https://tv.kakao.com?v=9", "https://tv.kakao.com/?v=9"},
        /* Escapes of unreserved characters are the characters; the others get upper hex. */
        {"https://x.example/%7e%2D%2e%5F%41%7A%30", "https://x.example/~-._Az0"},
        {"https://x.example/a%2fb%3f?q=%ea%b0%80", "https://x.example/a%2Fb%3F?q=%EA%B0%80"},
        /* What is no escape stays as written. */
        {"https://x.example/100%", "https://x.example/100%"},
        {"https://x.example/%g1%4", "https://x.example/%g1%4"},
        /* Path and query are the platform's: their case and order stay. */
        {"https://x.example/Post/1?B=2&a=1", "https://x.example/Post/1?B=2&a=1"},
        /* Userinfo keeps its case; an IPv6 literal's colons are not a port. */
        {"https://Kim:Secret@X.Example/p", "https://Kim:Secret@x.example/p"},
        {"https://[2001:DB8::A]:443/p", "https://[2001:db8::a]/p"},
        {"https://[2001:db8::a]:8443/p", "https://[2001:db8::a]:8443/p"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char posting[EPCS_CASES_POSTING_MAX];
        memset(posting, 'z', sizeof(posting));
        if (epcs_cases_posting(cases[i].url, posting, sizeof(posting)) != 0)
            fail_msg("%s refused", cases[i].url);
        assert_string_equal(posting, cases[i].posting);
    }
}

static void test_what_is_no_posting_is_refused(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "",
        "blog.naver.com/x",
        "ftp://blog.naver.com/x",
        "https:/blog.naver.com/x",
        "https://",
        "https:///x",
        "https://?q=1",
        "https://#top",
        "https://kim@/x",
        "https://:443/x",
        "mailto:kim@naver.com",
        "javascript:alert(1)",
        "https//x.example/",
        " https://x.example/",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char posting[EPCS_CASES_POSTING_MAX] = "untouched";
        if (epcs_cases_posting(refused[i], posting, sizeof(posting)) != -1)
            fail_msg("'%s' taken as %s", refused[i], posting);
    }
}

/* A URL of `len` bytes: the scheme and host, then `fill` repeated. */
static char *long_url(size_t len, const char *fill)
{
    char *url = malloc(len + 1);
    assert_non_null(url);
    size_t at = (size_t)snprintf(url, len + 1, "https://x.example/");
    while (at + strlen(fill) <= len) {
        memcpy(url + at, fill, strlen(fill));
        at += strlen(fill);
    }
    memset(url + at, 'a', len - at);
    url[len] = '\0';
    return url;
}

static void test_a_posting_fits_its_buffer_or_is_refused(void **state)
{
    (void)state;
    char posting[EPCS_CASES_POSTING_MAX];
    /* A partner may report a URL of 2048 bytes: its posting fits. */
    char *url = long_url(2048, "p");
    assert_int_equal(epcs_cases_posting(url, posting, sizeof(posting)), 0);
    assert_string_equal(posting, url);
    free(url);
    /* Escapes only ever shrink or keep a URL: 2048 bytes of them fit too. */
    url = long_url(2048, "%7e%e2%82%ac");
    assert_int_equal(epcs_cases_posting(url, posting, sizeof(posting)), 0);
    assert_memory_equal(posting, "https://x.example/~%E2%82%AC~%E2%82%AC", 38);
    free(url);
    url = long_url(EPCS_CASES_POSTING_MAX, "p");
    assert_int_equal(epcs_cases_posting(url, posting, sizeof(posting)), -1);
    free(url);
    /* A buffer too small for the root slash an empty path gains refuses. */
    char small[sizeof("https://x.example")];
    assert_int_equal(epcs_cases_posting("https://x.example", small, sizeof(small)), -1);
    char enough[sizeof("https://x.example/") + 1];
    assert_int_equal(epcs_cases_posting("https://x.example", enough, sizeof(enough)), 0);
    assert_string_equal(enough, "https://x.example/");
}

/* ---- actions ------------------------------------------------------------------------------ */

#define VERDICT_WITH(actions)                                                                      \
    "{\"verdict\": \"prohibited\", \"article\": \"82-4(2)\", \"ruleset\": "                        \
    "\"rs-0123456789abcdef\", \"actions\": " actions "}"
#define TAKE_DOWN                                                                                  \
    "{\"kind\": \"deletion_request\", \"to\": \"platform\", \"article\": \"82-4(3)\", "            \
    "\"due_hours\": 24, \"objection_days\": 3}"
#define REFER(to) "{\"kind\": \"referral\", \"to\": \"" to "\", \"article\": \"250(2)\"}"

/* What epcs_cases_check_actions says of the verdict `json` reported on `platform`. */
static int check(const char *json, const char *platform, char *why, size_t why_size)
{
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 4096));
    msgpack_object verdict;
    struct epcs_decode_error err;
    if (epcs_json_decode(json, strlen(json), &zone, &verdict, &err) != 0)
        fail_msg("test input does not decode: %s", err.message);
    struct epcs_buf bytes = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &bytes, epcs_buf_msgpack_write);
    assert_int_equal(msgpack_pack_object(&pk, verdict), 0);
    snprintf(why, why_size, "untouched");
    int rc = epcs_cases_check_actions(bytes.data, bytes.len, platform, why, why_size);
    epcs_buf_free(&bytes);
    msgpack_zone_destroy(&zone);
    return rc;
}

static void test_the_actions_a_verdict_asks_are_counted(void **state)
{
    (void)state;
    char why[256];
    static const struct {
        const char *verdict;
        int count;
    } accepted[] = {
        {"{\"verdict\": \"allowed\", \"article\": \"82-8(2)\", \"ruleset\": \"rs-1\"}", 0},
        {VERDICT_WITH("[]"), 0},
        {VERDICT_WITH("[" TAKE_DOWN "]"), 1},
        {VERDICT_WITH("[" TAKE_DOWN ", " REFER("police.seoul") "]"), 2},
        /* The bounds: 16 actions, due within 10 years, objections for 0 to 3660 days. */
        {VERDICT_WITH("[" TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN
                      "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN
                      "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN
                      "," TAKE_DOWN "]"),
         16},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"due_hours\": 0.5, \"objection_days\": 0}]"),
         1},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"due_hours\": 87840, \"objection_days\": 3660}]"),
         1},
        /* An ignored deletion request is referred on: escalations nest, four deep at most. */
        {VERDICT_WITH("[{\"kind\": \"deletion_request\", \"to\": \"platform\", \"article\": "
                      "\"82-4(3)\", \"due_hours\": 24, \"escalation\": {\"after\": 2, \"kind\": "
                      "\"referral\", \"to\": \"police\", \"article\": \"250(2)\", "
                      "\"escalation\": {\"after\": 100, \"kind\": \"referral\", \"to\": \"a\", "
                      "\"article\": \"x\", \"escalation\": {\"after\": 1, \"kind\": \"referral\", "
                      "\"to\": \"b\", \"article\": \"x\", \"escalation\": {\"after\": 1, \"kind\": "
                      "\"referral\", \"to\": \"c\", \"article\": \"x\"}}}}}]"),
         1},
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        int count = check(accepted[i].verdict, "naver", why, sizeof(why));
        if (count != accepted[i].count)
            fail_msg("verdict %zu: %d actions, expected %d (%s)", i, count, accepted[i].count, why);
    }
}

struct refusal {
    const char *verdict;
    const char *why;
};

static void assert_refusals(const struct refusal *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char why[256];
        assert_int_equal(check(cases[i].verdict, "naver", why, sizeof(why)), -1);
        assert_string_equal(why, cases[i].why);
    }
}

static void test_a_verdict_the_store_cannot_read_is_refused(void **state)
{
    (void)state;
    static const struct refusal cases[] = {
        {"[\"prohibited\"]", "the verdict is not a msgpack map"},
        {"{\"article\": \"82-4(2)\", \"ruleset\": \"rs-1\"}",
         "the verdict lacks verdict, article or ruleset"},
        {"{\"verdict\": \"prohibited\", \"article\": \"\", \"ruleset\": \"rs-1\"}",
         "the verdict lacks verdict, article or ruleset"},
        {"{\"verdict\": \"prohibited\", \"article\": 82, \"ruleset\": \"rs-1\"}",
         "the verdict lacks verdict, article or ruleset"},
        {"{\"verdict\": \"prohibited\", \"article\": \"82-4(2)\"}",
         "the verdict lacks verdict, article or ruleset"},
        /* The store gives the decision its id: one that comes with it was given elsewhere. */
        {"{\"verdict\": \"prohibited\", \"article\": \"82-4(2)\", \"ruleset\": \"rs-1\", "
         "\"decision\": 7}",
         "the verdict carries a decision id already"},
        {VERDICT_WITH("{\"kind\": \"referral\"}"), "actions is not a list"},
        {VERDICT_WITH("[" TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN
                      "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN
                      "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN "," TAKE_DOWN
                      "," TAKE_DOWN "," TAKE_DOWN "]"),
         "more than 16 actions"},
    };
    assert_refusals(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_each_wrong_action_is_named(void **state)
{
    (void)state;
    static const struct refusal cases[] = {
        {VERDICT_WITH("[\"delete it\"]"), "actions[0]: is not a map"},
        {VERDICT_WITH("[" TAKE_DOWN ", {\"kind\": \"mail\", \"to\": \"nec\", \"article\": "
                      "\"x\"}]"),
         "actions[1]: kind must be deletion_request or referral"},
        {VERDICT_WITH("[{\"to\": \"nec\", \"article\": \"x\"}]"),
         "actions[0]: kind must be deletion_request or referral"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"article\": \"x\"}]"),
         "actions[0]: to must be \"platform\" or a partner id"},
        {VERDICT_WITH("[" REFER("Police") "]"),
         "actions[0]: to 'Police' is not a partner id (a-z 0-9 _ - .)"},
        {VERDICT_WITH("[" REFER("police/seoul") "]"),
         "actions[0]: to 'police/seoul' is not a partner id (a-z 0-9 _ - .)"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\"}]"),
         "actions[0]: article must be a string of 1 to 63 bytes"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": "
                      "\"0123456789012345678901234567890123456789012345678901234567890123\"}]"),
         "actions[0]: article must be a string of 1 to 63 bytes"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"due_hours\": 0}]"),
         "actions[0]: due_hours must be a number above 0 and at most 87840"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"due_hours\": 87841}]"),
         "actions[0]: due_hours must be a number above 0 and at most 87840"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"due_hours\": \"24\"}]"),
         "actions[0]: due_hours must be a number above 0 and at most 87840"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"objection_days\": -1}]"),
         "actions[0]: objection_days must be a number from 0 to 3660"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"objection_days\": 3661}]"),
         "actions[0]: objection_days must be a number from 0 to 3660"},
    };
    assert_refusals(cases, sizeof(cases) / sizeof(cases[0]));
}

#define ESCALATE(after, inner)                                                                     \
    "{\"after\": " after                                                                           \
    ", \"kind\": \"referral\", \"to\": \"police\", \"article\": \"250(2)\"" inner "}"

static void test_each_wrong_escalation_is_named(void **state)
{
    (void)state;
    static const struct refusal cases[] = {
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"escalation\": " ESCALATE("0", "") "}]"),
         "actions[0]: escalation must be a map whose after is a whole number from 1 to 100"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"escalation\": " ESCALATE("101", "") "}]"),
         "actions[0]: escalation must be a map whose after is a whole number from 1 to 100"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"escalation\": " ESCALATE("1.5", "") "}]"),
         "actions[0]: escalation must be a map whose after is a whole number from 1 to 100"},
        {VERDICT_WITH("[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
                      "\"escalation\": [2]}]"),
         "actions[0]: escalation must be a map whose after is a whole number from 1 to 100"},
        /* What is wrong inside an escalation is named as its own. */
        {VERDICT_WITH("[" TAKE_DOWN ", {\"kind\": \"referral\", \"to\": \"nec\", \"article\": "
                      "\"x\", \"escalation\": {\"after\": 2, \"kind\": "
                      "\"referral\", \"to\": \"Police\", \"article\": \"x\"}}]"),
         "actions[1]: escalation: to 'Police' is not a partner id (a-z 0-9 _ - .)"},
        /* A fifth escalation inside the fourth is too deep. */
        {VERDICT_WITH(
             "[{\"kind\": \"referral\", \"to\": \"nec\", \"article\": \"x\", "
             "\"escalation\": " ESCALATE(
                 "1", ", \"escalation\": " ESCALATE(
                          "1", ", \"escalation\": " ESCALATE(
                                   "1", ", \"escalation\": " ESCALATE(
                                            "1", ", \"escalation\": " ESCALATE("1", ""))))) "}]"),
         "actions[0]: escalation: escalation: escalation: escalation: escalations nest too deep"},
    };
    assert_refusals(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- partner ids -------------------------------------------------------------------------- */

static void test_which_ids_name_a_partner(void **state)
{
    (void)state;
    char longest[EPCS_KEY_PARTNER_MAX];
    memset(longest, 'p', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    static const char *const valid[] = {"naver", "police.seoul-1_a", "0", "-", ".", "nec_2024"};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        if (!epcs_partner_id_valid(valid[i]))
            fail_msg("'%s' refused", valid[i]);
    assert_true(epcs_partner_id_valid(longest));

    char too_long[EPCS_KEY_PARTNER_MAX + 1];
    memset(too_long, 'p', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    static const char *const invalid[] = {
        "",         "Naver",   "naver kakao",
        "naver/x",  "naver\t", "naver\n",
        "naver:1",  "naver@x", "\xeb\x84\xa4\xec\x9d\xb4\xeb\xb2\x84",
        "naver%2e",
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        if (epcs_partner_id_valid(invalid[i]))
            fail_msg("'%s' taken as a partner id", invalid[i]);
    assert_false(epcs_partner_id_valid(too_long));
}

/* ---- the time format the store writes (core/dates.c) ------------------------------ */

static void test_a_moment_is_written_to_the_microsecond_in_utc(void **state)
{
    (void)state;
    static const struct {
        int64_t us;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000000Z"},
        {1, "1970-01-01T00:00:00.000001Z"},
        {1767323045123456, "2026-01-02T03:04:05.123456Z"},
        /* A leap day's last microsecond, then the next day. */
        {1709251199999999, "2024-02-29T23:59:59.999999Z"},
        {1709251200000000, "2024-03-01T00:00:00.000000Z"},
        {7258118399000001, "2199-12-31T23:59:59.000001Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[EPCS_INSTANT_US_LEN];
        memset(text, 'z', sizeof(text));
        epcs_instant_format_us(cases[i].us, text);
        assert_string_equal(text, cases[i].text);
        assert_int_equal(strlen(text), EPCS_INSTANT_US_LEN - 1);
    }
    /* To the second, as keys and rulesets are stamped. */
    char seconds[EPCS_INSTANT_S_LEN];
    epcs_instant_format_s((time_t)1709251199, seconds);
    assert_string_equal(seconds, "2024-02-29T23:59:59Z");
    epcs_instant_format_s((time_t)7258118399, seconds);
    assert_string_equal(seconds, "2199-12-31T23:59:59Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spellings_of_one_posting_are_one),
        cmocka_unit_test(test_what_is_no_posting_is_refused),
        cmocka_unit_test(test_a_posting_fits_its_buffer_or_is_refused),
        cmocka_unit_test(test_the_actions_a_verdict_asks_are_counted),
        cmocka_unit_test(test_a_verdict_the_store_cannot_read_is_refused),
        cmocka_unit_test(test_each_wrong_action_is_named),
        cmocka_unit_test(test_each_wrong_escalation_is_named),
        cmocka_unit_test(test_which_ids_name_a_partner),
        cmocka_unit_test(test_a_moment_is_written_to_the_microsecond_in_utc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
