/* als_problem: the small random problems the ALS tests solve, and the
 * comparison they use. */
#ifndef STARLING_ALS_PROBLEM_H
#define STARLING_ALS_PROBLEM_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interactions.h"
#include "rng.h"
#include "util.h"

/* users x segs, integer counts 1..20; pair (u, s) is kept with probability
 * density, or density / (1 + s) when skewed (popularity falling with s).
 * Every user and segment appears: pair (u, u mod segs) and (s mod users, s)
 * are forced. */
__attribute__((unused)) static void als_problem(st_interactions *out, uint32_t users, uint32_t segs, double density,
                                                int skewed, uint64_t seed)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    st_builder *b = st_builder_new(&w, err);
    st_rng r;
    st_rng_seed(&r, seed);
    char us[32], ss[32];
    for (uint32_t u = 0; u < users; u++) {
        for (uint32_t s = 0; s < segs; s++) {
            double keep = skewed ? density / (1.0 + s) : density;
            if (s != u % segs && st_rng_uniform(&r) >= keep) continue;
            snprintf(us, sizeof us, "u%u", u);
            snprintf(ss, sizeof ss, "s%u", s);
            st_event e = {.user = us, .user_len = strlen(us), .segment = ss, .segment_len = strlen(ss),
                          .weight = (double)(1 + st_rng_below(&r, 20))};
            st_builder_add(b, &e, err);
        }
    }
    for (uint32_t s = 0; s < segs; s++) {
        snprintf(us, sizeof us, "u%u", s % users);
        snprintf(ss, sizeof ss, "s%u", s);
        st_event e = {.user = us, .user_len = strlen(us), .segment = ss, .segment_len = strlen(ss), .weight = 1};
        st_builder_add(b, &e, err);
    }
    if (st_builder_finish(b, out, err) != 0) {
        printf("# als_problem: %s\n", err);
        exit(1);
    }
}

__attribute__((unused)) static double max_abs_diff(const float *a, const float *b, size_t len)
{
    double most = 0;
    for (size_t i = 0; i < len; i++)
        if (fabs((double)a[i] - b[i]) > most) most = fabs((double)a[i] - b[i]);
    return most;
}

#endif
