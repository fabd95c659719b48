#include "dates.h"

#include <stdio.h>
#include <sys/time.h>

/* The civil-from-days algorithms are H. Hinnant's: exact over the whole proleptic Gregorian
 * calendar with integer arithmetic only. */

int32_t epcs_days_from_civil(int year, int month, int day)
{
    int y = month <= 2 ? year - 1 : year;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + doe - 719468);
}

void epcs_civil_from_days(int32_t days, int *year, int *month, int *day)
{
    int32_t z = days + 719468;
    int32_t era = (z >= 0 ? z : z - 146096) / 146097;
    int32_t doe = z - era * 146097;
    int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int32_t mp = (5 * doy + 2) / 153;
    int32_t d = doy - (153 * mp + 2) / 5 + 1;
    int32_t m = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(yoe + era * 400 + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

static int is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int month)
{
    static const int lengths[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : lengths[month - 1];
}

static int parse_digits(const char *str, int count)
{
    int value = 0;
    for (int i = 0; i < count; i++) {
        if (str[i] < '0' || str[i] > '9')
            return -1;
        value = value * 10 + (str[i] - '0');
    }
    return value;
}

int epcs_date_parse(const char *str, size_t len, int32_t *days)
{
    if (len != 10 || str[4] != '-' || str[7] != '-')
        return -1;
    int year = parse_digits(str, 4);
    int month = parse_digits(str + 5, 2);
    int day = parse_digits(str + 8, 2);
    if (year < EPCS_DATE_MIN_YEAR || year > EPCS_DATE_MAX_YEAR || month < 1 || month > 12 ||
        day < 1 || day > days_in_month(year, month))
        return -1;
    *days = epcs_days_from_civil(year, month, day);
    return 0;
}

void epcs_date_format(int32_t days, char out[11])
{
    int year, month, day;
    epcs_civil_from_days(days, &year, &month, &day);
    /* Every verdict formats several dates: digits by hand cost a tenth of snprintf. Only valid
     * day numbers reach here, so the year has four digits. */
    unsigned y = (unsigned)year % 10000u, m = (unsigned)month % 100u, d = (unsigned)day % 100u;
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
}

int32_t epcs_date_in_seoul(time_t now)
{
    const int64_t seoul_offset = 9 * 3600;
    int64_t seconds = (int64_t)now + seoul_offset;
    int64_t day = seconds / 86400;
    if (seconds % 86400 < 0)
        day--;
    return (int32_t)day;
}

int64_t epcs_clock_ns(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t epcs_now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

void epcs_instant_format_s(time_t t, char out[EPCS_INSTANT_S_LEN])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, EPCS_INSTANT_S_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void epcs_instant_format_us(int64_t us, char out[EPCS_INSTANT_US_LEN])
{
    time_t seconds = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    size_t len = strftime(out, EPCS_INSTANT_US_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + len, EPCS_INSTANT_US_LEN - len, ".%06uZ", (unsigned)(us % 1000000));
}
