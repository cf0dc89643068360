/* score_text_ref: the score formatter as it was before the filtered search
 * in src/resp.c (one trial rounding per digit count, 1 to 9, each checked by
 * reading it back; the layout of the digits, unchanged, is resp.c's
 * resp_format_decimal). Kept as the reference the fast one must match byte for
 * byte: tests/test_resp.c on a random and edge-case sample,
 * bench/score_text_check.c over every float. */
#ifndef STARLING_SCORE_TEXT_REF_H
#define STARLING_SCORE_TEXT_REF_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "resp.h"

static const double ref_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline double ref_scale10(double m, int e)
{
    if (e >= 0) return e <= 22 ? m * ref_pow10[e] : m * pow(10, e);
    return -e <= 22 ? m / ref_pow10[-e] : m / pow(10, -e);
}

/* The old resp_format_score: writes v's text at buf, returns its length. */
static inline int ref_format_score(char *buf, float v)
{
    if (isnan(v)) return snprintf(buf, 32, "nan");
    if (isinf(v)) return snprintf(buf, 32, v > 0 ? "inf" : "-inf");
    if (v == 0) return snprintf(buf, 32, signbit(v) ? "-0" : "0");
    double d = fabs((double)v);
    int e0 = (int)floor(log10(d)), e = e0;
    int64_t m = 0;
    for (int digits = 1; digits <= 9; digits++) {
        e = e0;
        m = (int64_t)llround(ref_scale10(d, digits - 1 - e));
        if (m >= (int64_t)ref_pow10[digits]) {
            m /= 10;
            e++;
        }
        if ((float)ref_scale10((double)m, e - digits + 1) == fabsf(v)) break;
    }
    return resp_format_decimal(buf, v < 0, m, e);
}

#endif
