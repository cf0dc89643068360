/* tap: the smallest useful test harness. Each test binary prints TAP
 * (ok N - description / not ok N - description, then 1..N), which prove
 * runs and summarises. A failed check prints where it failed and why. */
#ifndef STARLING_TAP_H
#define STARLING_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count, tap_failures;

__attribute__((format(printf, 4, 5))) static int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_count++;
    printf("%sok %d - ", pass ? "" : "not ", tap_count);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!pass) {
        tap_failures++;
        printf("#   failed at %s:%d\n", file, line);
    }
    fflush(stdout);
    return pass;
}

#define ok(cond, ...) tap_ok((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

/* |a - b| <= tol (absolute), printing both values on failure. */
#define is_near(a, b, tol, ...)                                                                   \
    do {                                                                                          \
        double tap_a_ = (a), tap_b_ = (b);                                                        \
        if (!tap_ok(fabs(tap_a_ - tap_b_) <= (tol), __FILE__, __LINE__, __VA_ARGS__))            \
            printf("#   got %.9g, expected %.9g (tolerance %g)\n", tap_a_, tap_b_, (double)(tol)); \
    } while (0)

#define is_int(a, b, ...)                                                                         \
    do {                                                                                          \
        long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);                               \
        if (!tap_ok(tap_a_ == tap_b_, __FILE__, __LINE__, __VA_ARGS__))                          \
            printf("#   got %lld, expected %lld\n", tap_a_, tap_b_);                              \
    } while (0)

#define is_str(a, b, ...)                                                                         \
    do {                                                                                          \
        const char *tap_a_ = (a), *tap_b_ = (b);                                                  \
        int tap_p_ = tap_a_ && tap_b_ && strcmp(tap_a_, tap_b_) == 0;                             \
        if (!tap_ok(tap_p_, __FILE__, __LINE__, __VA_ARGS__))                                     \
            printf("#   got '%s', expected '%s'\n", tap_a_ ? tap_a_ : "(null)", tap_b_ ? tap_b_ : "(null)"); \
    } while (0)

__attribute__((unused)) static int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failures ? 1 : 0;
}

/* A scratch directory for the test's files, removed by the caller. */
__attribute__((unused)) static const char *tap_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/starling-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return dir;
}

#endif
