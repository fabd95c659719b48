#ifndef EPCS_DATES_H
#define EPCS_DATES_H

#include <stdint.h>
#include <time.h>

/*
 * Dates are Korean calendar dates held as day numbers: days since 1970-01-01 in the proleptic
 * Gregorian calendar. Korea has one time zone (UTC+9) and no daylight saving, so a day number
 * is exact and "D-N" is plain subtraction.
 */

/** Smallest and largest year epcs accepts; keeps every day number far from int32 overflow. */
#define EPCS_DATE_MIN_YEAR 1900
#define EPCS_DATE_MAX_YEAR 2199

/** Day number of a valid civil date. */
int32_t epcs_days_from_civil(int year, int month, int day);
/** Inverse of epcs_days_from_civil. */
void epcs_civil_from_days(int32_t days, int *year, int *month, int *day);

/**
 * Parses exactly "YYYY-MM-DD" (len bytes, no terminator needed) into a day number. Rejects other
 * shapes, impossible dates (2023-02-29) and years outside the accepted range. Returns 0 or -1.
 */
int epcs_date_parse(const char *str, size_t len, int32_t *days);

/** Writes "YYYY-MM-DD" and a terminator into out (at least 11 bytes). */
void epcs_date_format(int32_t days, char out[11]);

/** The calendar date in Seoul (UTC+9) at the given instant. */
int32_t epcs_date_in_seoul(time_t now);

/** The wall clock, microseconds since 1970-01-01 UTC: decisions' and cases' times. */
int64_t epcs_now_us(void);
/** `clock` (CLOCK_MONOTONIC for spans, CLOCK_THREAD_CPUTIME_ID for budgets) in nanoseconds. */
int64_t epcs_clock_ns(clockid_t clock);

/** Room for an instant to the second, "2024-04-10T00:00:00Z", and its NUL. */
#define EPCS_INSTANT_S_LEN 21
/** Room for an instant to the microsecond, "2024-04-10T00:00:00.000000Z", and its NUL. */
#define EPCS_INSTANT_US_LEN 28

/** Writes `t` as "YYYY-MM-DDTHH:MM:SSZ" (UTC) into `out`: keys, rulesets, log runs. */
void epcs_instant_format_s(time_t t, char out[EPCS_INSTANT_S_LEN]);
/** Writes `us` (microseconds since the epoch, not negative) as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"
 * (UTC): decisions, case events and activations, whose order within a second matters. */
void epcs_instant_format_us(int64_t us, char out[EPCS_INSTANT_US_LEN]);

#endif
