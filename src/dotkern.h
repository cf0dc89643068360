/* dotkern: the scoring kernels score.c and segindex.c share, inline.
 *
 * The one dot product every score is computed with (a fixed summation
 * order: a (user, segment) pair scores the same float in every command),
 * eight rows at a time, and the bounded heap a top-k keeps its best in
 * (higher score, then lower index). Included only by .c files that score;
 * it turns off floating-point contraction for the rest of the file.
 */
#ifndef STARLING_DOTKERN_H
#define STARLING_DOTKERN_H

#include <stdint.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif
/* Every score must come out bit-identical whichever function computes it
 * (SCORE, SEGMENTS, the sorted-set views, the CLI): no fused multiply-adds
 * in this file, which the compiler (the build has -ffp-contract=fast) would
 * otherwise use in some of those paths and not in others. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

/* The one summation order every score is computed in: eight partial sums
 * (lane j takes elements j, j+8, j+16, ...), combined pairwise, written with
 * GCC's vector extension so that it is one AVX register whatever the
 * optimisation level. A single
 * SCORE, a SEGMENTS scan and a ZRANGE over users all call this, so one
 * (user, segment) pair gets the same float from every command; a BLAS sgemv
 * would sum in its own, kernel-dependent order. A scan runs about as fast
 * as sgemv (bench/README.md). */
typedef float v8f __attribute__((vector_size(32)));

static inline v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v); /* unaligned load; compiles to one vmovups */
    return v;
}

static inline float hsum8(v8f acc)
{
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* The tail (k not a multiple of 8) goes lane by lane into the same lanes. */
static inline v8f tail8(v8f acc, const float *a, const float *b, uint32_t i, uint32_t k)
{
    for (int j = 0; i < k; i++, j++) acc[j] += a[i] * b[i];
    return acc;
}

static inline float dot8(const float *restrict a, const float *restrict b, uint32_t k)
{
    v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t i = 0;
    for (; i + 8 <= k; i += 8) acc += load8(a + i) * load8(b + i);
    return hsum8(tail8(acc, a, b, i, k));
}


/* hsum8 of eight vectors at once: out[r] = hsum8(cr), the same additions
 * in the same order ((0+4)+(1+5))+((2+6)+(3+7)), done side by side. */
static inline void hsum8x8(v8f c0, v8f c1, v8f c2, v8f c3, v8f c4, v8f c5, v8f c6, v8f c7, float *out)
{
#ifdef __AVX__
    /* Lanes i and i+4 of two rows: [r0: 0+4 1+5 2+6 3+7 | r1: ...]. */
    __m256 t01 = _mm256_add_ps(_mm256_permute2f128_ps((__m256)c0, (__m256)c1, 0x20),
                               _mm256_permute2f128_ps((__m256)c0, (__m256)c1, 0x31));
    __m256 t23 = _mm256_add_ps(_mm256_permute2f128_ps((__m256)c2, (__m256)c3, 0x20),
                               _mm256_permute2f128_ps((__m256)c2, (__m256)c3, 0x31));
    __m256 t45 = _mm256_add_ps(_mm256_permute2f128_ps((__m256)c4, (__m256)c5, 0x20),
                               _mm256_permute2f128_ps((__m256)c4, (__m256)c5, 0x31));
    __m256 t67 = _mm256_add_ps(_mm256_permute2f128_ps((__m256)c6, (__m256)c7, 0x20),
                               _mm256_permute2f128_ps((__m256)c6, (__m256)c7, 0x31));
    /* Adjacent pairs: [r0 (0+4)+(1+5), r0 (2+6)+(3+7), r2 .., r2 .. | r1 .., r1 .., r3 .., r3 ..]. */
    __m256 u0 = _mm256_hadd_ps(t01, t23), u1 = _mm256_hadd_ps(t45, t67);
    /* The two halves of each row: [r0 r2 r4 r6 | r1 r3 r5 r7]. */
    __m256 w = _mm256_hadd_ps(u0, u1);
    float o[8];
    _mm256_storeu_ps(o, w);
    out[0] = o[0];
    out[1] = o[4];
    out[2] = o[1];
    out[3] = o[5];
    out[4] = o[2];
    out[5] = o[6];
    out[6] = o[3];
    out[7] = o[7];
#else
    out[0] = hsum8(c0);
    out[1] = hsum8(c1);
    out[2] = hsum8(c2);
    out[3] = hsum8(c3);
    out[4] = hsum8(c4);
    out[5] = hsum8(c5);
    out[6] = hsum8(c6);
    out[7] = hsum8(c7);
#endif
}

/* Eight rows a[0..8) (k a multiple of 8) against x: eight independent
 * sums that the core overlaps (one row's eight dependent adds would wait on
 * each other), each summed exactly as dot8 sums it. */
static inline __attribute__((always_inline)) void dot8x8(const float *const *restrict a, uint32_t k,
                                                         const float *restrict x, float *restrict out)
{
    v8f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, c4 = {0}, c5 = {0}, c6 = {0}, c7 = {0};
    for (uint32_t i = 0; i < k; i += 8) {
        v8f xv = load8(x + i);
        c0 += load8(a[0] + i) * xv;
        c1 += load8(a[1] + i) * xv;
        c2 += load8(a[2] + i) * xv;
        c3 += load8(a[3] + i) * xv;
        c4 += load8(a[4] + i) * xv;
        c5 += load8(a[5] + i) * xv;
        c6 += load8(a[6] + i) * xv;
        c7 += load8(a[7] + i) * xv;
    }
    hsum8x8(c0, c1, c2, c3, c4, c5, c6, c7, out);
}

/* dot8x8 with k known to the compiler for the common ranks (fully
 * unrolled), k a multiple of 8. */
static inline void dot8x8_any(const float *const *a, uint32_t k, const float *x, float *out)
{
    if (k == 64) dot8x8(a, 64, x, out);
    else if (k == 32) dot8x8(a, 32, x, out);
    else if (k == 128) dot8x8(a, 128, x, out);
    else dot8x8(a, k, x, out);
}

/* scores[r] = rows[r] . x for every row of an r x k matrix. */
static inline void scan_rows(const float *rows, uint32_t nrows, uint32_t k, const float *x, float *scores)
{
    uint32_t r = 0;
    if (k % 8 == 0)
        for (; r + 8 <= nrows; r += 8) {
            const float *a = rows + (size_t)r * k;
            const float *p[8] = {a, a + k, a + 2 * k, a + 3 * k, a + 4 * k, a + 5 * k, a + 6 * k, a + 7 * k};
            dot8x8_any(p, k, x, scores + r);
        }
    /* Otherwise four rows at a time share each load of x. */
    for (; r + 4 <= nrows; r += 4) {
        const float *a0 = rows + (size_t)r * k, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k;
        v8f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
        uint32_t i = 0;
        for (; i + 8 <= k; i += 8) {
            v8f xv = load8(x + i);
            c0 += load8(a0 + i) * xv;
            c1 += load8(a1 + i) * xv;
            c2 += load8(a2 + i) * xv;
            c3 += load8(a3 + i) * xv;
        }
        scores[r] = hsum8(tail8(c0, a0, x, i, k));
        scores[r + 1] = hsum8(tail8(c1, a1, x, i, k));
        scores[r + 2] = hsum8(tail8(c2, a2, x, i, k));
        scores[r + 3] = hsum8(tail8(c3, a3, x, i, k));
    }
    for (; r < nrows; r++) scores[r] = dot8(rows + (size_t)r * k, x, k);
}

/* Swaps entries i and j of the parallel index and score arrays. */
static inline void swap_pair(uint32_t *idx, float *sc, uint32_t i, uint32_t j)
{
    float ts = sc[i];
    sc[i] = sc[j];
    sc[j] = ts;
    uint32_t ti = idx[i];
    idx[i] = idx[j];
    idx[j] = ti;
}

/* a ranks worse than b: lower score, or equal score and higher index. */
static inline int worse(float sa, uint32_t ia, float sb, uint32_t ib) { return sa < sb || (sa == sb && ia > ib); }

static inline void sift_down(uint32_t *idx, float *sc, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(sc[l], idx[l], sc[w], idx[w])) w = l;
        if (r < n && worse(sc[r], idx[r], sc[w], idx[w])) w = r;
        if (w == i) return;
        swap_pair(idx, sc, i, w);
        i = w;
    }
}

static inline void sift_up(uint32_t *idx, float *sc, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!worse(sc[i], idx[i], sc[p], idx[p])) return;
        swap_pair(idx, sc, i, p);
        i = p;
    }
}

/* A bit for each of the 32 scores at s that compares PRED (an AVX
 * predicate, and the same test in C) with thr; NaN compares false. */
#ifdef __AVX__
#define MASK32(s, thr, PRED, TEST)                                                                                  \
    do {                                                                                                            \
        __m256 t_ = _mm256_set1_ps(thr);                                                                            \
        uint32_t a_ = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s), t_, PRED));                    \
        uint32_t b_ = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps((s) + 8), t_, PRED));              \
        uint32_t c_ = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps((s) + 16), t_, PRED));             \
        uint32_t d_ = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps((s) + 24), t_, PRED));             \
        return a_ | b_ << 8 | c_ << 16 | d_ << 24;                                                                  \
    } while (0)
#else
#define MASK32(s, thr, PRED, TEST)                                                                                  \
    do {                                                                                                            \
        uint32_t m_ = 0;                                                                                            \
        for (uint32_t j_ = 0; j_ < 32; j_++) m_ |= (uint32_t)((s)[j_] TEST(thr)) << j_;                           \
        return m_;                                                                                                  \
    } while (0)
#endif

/* Scores greater than thr; at least thr. */
static inline uint32_t above_mask(const float *s, float thr) { MASK32(s, thr, _CMP_GT_OQ, >); }
static inline uint32_t atleast_mask(const float *s, float thr) { MASK32(s, thr, _CMP_GE_OQ, >=); }

/* Offers score s of index i to the heap of `size` (full at `want`). */
static inline void offer(uint32_t *idx, float *sc, uint32_t *size, uint32_t want, uint32_t i, float s)
{
    if (*size < want) {
        idx[*size] = i;
        sc[*size] = s;
        sift_up(idx, sc, *size);
        (*size)++;
    } else if (worse(sc[0], idx[0], s, i)) {
        idx[0] = i;
        sc[0] = s;
        sift_down(idx, sc, *size, 0);
    }
}

/* Pops the worst to the end repeatedly: the heap ends up sorted best first. */
static inline void heap_to_sorted(uint32_t *idx, float *sc, uint32_t size)
{
    for (uint32_t end = size; end > 1; end--) {
        swap_pair(idx, sc, 0, end - 1);
        sift_down(idx, sc, end - 1, 0);
    }
}

#endif
