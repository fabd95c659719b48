#ifndef EPCS_TESTING_H
#define EPCS_TESTING_H

/* A minimal test harness: each unit test file is one executable that ctest runs; it prints one
 * line per failed expectation and ends with "N passed, N failed". */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int epcs_test_passed;
static int epcs_test_failed;

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (cond) {                                                                                \
            epcs_test_passed++;                                                                    \
        } else {                                                                                   \
            epcs_test_failed++;                                                                    \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                    \
        }                                                                                          \
    } while (0)

#define EXPECT_INT(actual, expected)                                                               \
    do {                                                                                           \
        long long epcs_a_ = (long long)(actual), epcs_e_ = (long long)(expected);                  \
        if (epcs_a_ == epcs_e_) {                                                                  \
            epcs_test_passed++;                                                                    \
        } else {                                                                                   \
            epcs_test_failed++;                                                                    \
            fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #actual,     \
                    epcs_a_, epcs_e_);                                                             \
        }                                                                                          \
    } while (0)

#define EXPECT_STR(actual, expected)                                                               \
    do {                                                                                           \
        const char *epcs_a_ = (actual), *epcs_e_ = (expected);                                     \
        if (epcs_a_ != NULL && strcmp(epcs_a_, epcs_e_) == 0) {                                    \
            epcs_test_passed++;                                                                    \
        } else {                                                                                   \
            epcs_test_failed++;                                                                    \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #actual, \
                    epcs_a_ ? epcs_a_ : "(null)", epcs_e_);                                        \
        }                                                                                          \
    } while (0)

/* Substring match, for error messages that carry a location or a detail. */
#define EXPECT_CONTAINS(haystack, needle)                                                          \
    do {                                                                                           \
        const char *epcs_h_ = (haystack), *epcs_n_ = (needle);                                     \
        if (epcs_h_ != NULL && strstr(epcs_h_, epcs_n_) != NULL) {                                 \
            epcs_test_passed++;                                                                    \
        } else {                                                                                   \
            epcs_test_failed++;                                                                    \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected to contain \"%s\"\n", __FILE__,         \
                    __LINE__, #haystack, epcs_h_ ? epcs_h_ : "(null)", epcs_n_);                   \
        }                                                                                          \
    } while (0)

static inline int epcs_test_report(void)
{
    printf("%d passed, %d failed\n", epcs_test_passed, epcs_test_failed);
    return epcs_test_failed == 0 && epcs_test_passed > 0 ? 0 : 1;
}

#endif
