#include "dates.h"
#include "testing.h"

static int32_t day(const char *text)
{
    int32_t value = -999999;
    epcs_date_parse(text, strlen(text), &value);
    return value;
}

static const char *format(int32_t value)
{
    static char text[11];
    epcs_date_format(value, text);
    return text;
}

static void test_known_days(void)
{
    EXPECT_INT(epcs_days_from_civil(1970, 1, 1), 0);
    EXPECT_INT(epcs_days_from_civil(1969, 12, 31), -1);
    EXPECT_INT(epcs_days_from_civil(2000, 3, 1), 11017);
    EXPECT_INT(day("2024-04-10"), 19823);
    EXPECT_STR(format(19823), "2024-04-10");
}

/* SPEC section 1: the 22nd National Assembly election's D-N dates. */
static void test_d_minus_n(void)
{
    int32_t election = day("2024-04-10");
    EXPECT_STR(format(election - 90), "2024-01-11");
    EXPECT_STR(format(election - 30), "2024-03-11");
    EXPECT_STR(format(election - 120), "2023-12-12");
    EXPECT_STR(format(election - 180), "2023-10-13");
    EXPECT_STR(format(day("2026-06-03") - 90), "2026-03-05");
    EXPECT_STR(format(day("2025-06-03") - 90), "2025-03-05");
}

static void test_parse_rejects(void)
{
    int32_t value = 42;
    const char *bad[] = {"",           "2024-1-01",  "2024-01-1",  "2024/01/01",  "2024-01-011",
                         "2023-02-29", "2024-02-30", "2024-13-01", "2024-00-10",  "2024-04-00",
                         "1899-12-31", "2200-01-01", "20a4-01-01", " 2024-01-01", "2024-01-01 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EXPECT_INT(epcs_date_parse(bad[i], strlen(bad[i]), &value), -1);
    }
    EXPECT_INT(value, 42);
    EXPECT_INT(epcs_date_parse("2024-02-29", 10, &value), 0);
    EXPECT_INT(epcs_date_parse("2000-02-29", 10, &value), 0);
    EXPECT_INT(epcs_date_parse("1900-02-29", 10, &value), -1);
    EXPECT_INT(epcs_date_parse("1900-01-01", 10, &value), 0);
    EXPECT_INT(epcs_date_parse("2199-12-31", 10, &value), 0);
}

static void test_round_trip_every_day(void)
{
    int32_t first = epcs_days_from_civil(EPCS_DATE_MIN_YEAR, 1, 1);
    int32_t last = epcs_days_from_civil(EPCS_DATE_MAX_YEAR, 12, 31);
    int mismatches = 0;
    for (int32_t d = first; d <= last; d++) {
        char text[11];
        int32_t back;
        epcs_date_format(d, text);
        if (epcs_date_parse(text, 10, &back) != 0 || back != d)
            mismatches++;
    }
    EXPECT_INT(mismatches, 0);
    EXPECT_INT(last - first + 1, 300 * 365 + 73);
}

static void test_seoul_today(void)
{
    /* 2024-01-10T14:59:59Z is 23:59:59 in Seoul; one second later it is the next day there. */
    EXPECT_STR(format(epcs_date_in_seoul(1704898799)), "2024-01-10");
    EXPECT_STR(format(epcs_date_in_seoul(1704898800)), "2024-01-11");
    EXPECT_STR(format(epcs_date_in_seoul(0)), "1970-01-01");
}

int main(void)
{
    test_known_days();
    test_d_minus_n();
    test_parse_rejects();
    test_round_trip_every_day();
    test_seoul_today();
    return epcs_test_report();
}
