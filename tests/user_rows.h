/* user_rows: what the scan tests (test_scan.c, test_ann.c) share about the
 * random user factors they build: exact twins, the model's float32 or
 * int8 view of them, and comparing two top-N answers bit for bit. */
#ifndef STARLING_USER_ROWS_H
#define STARLING_USER_ROWS_H

#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Every `every`-th row of the m x k rows U becomes the row before it:
 * exact ties whatever the query. */
static inline void user_rows_twins(float *U, uint32_t m, uint32_t k, uint32_t every)
{
    for (uint32_t u = 1; u < m; u += every) memcpy(U + (size_t)u * k, U + (size_t)(u - 1) * k, k * sizeof *U);
}

/* Points mm's user factors at U (m x k), or, when q8, at its int8
 * quantization, allocated into *Uq and *scale (the caller frees them). */
static inline void user_rows_attach(st_model *mm, float *U, uint32_t m, uint32_t k, int q8, int8_t **Uq,
                                    float **scale)
{
    mm->users = m;
    mm->k = k;
    if (q8) {
        *Uq = malloc((size_t)m * k + 1);
        *scale = malloc(((size_t)m + 1) * sizeof **scale);
        st_model_quantize(U, m, k, *Uq, *scale);
        mm->Uq = *Uq;
        mm->Uscale = *scale;
    } else {
        mm->U = U;
    }
}

/* Two answers of n entries (indices and scores) equal, bit for bit. */
static inline int same_answer(uint32_t n1, const uint32_t *i1, const float *s1, uint32_t n2, const uint32_t *i2,
                              const float *s2)
{
    return n1 == n2 && memcmp(i1, i2, n1 * sizeof *i1) == 0 && memcmp(s1, s2, n1 * sizeof *s1) == 0;
}

#endif
