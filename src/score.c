/* score: every score, the top-k selections, and the questions built on them.
 *
 * What it is: the one dot-product kernel (a fixed summation order, so a
 * (user, segment) pair scores the same float in every command), the
 * popularity prior and its blend, calibration, top-k selection (a buffered
 * quickselect for small k, a bounded heap otherwise), an exact top-k over
 * segments that stops early (segments visited by decreasing norm), the
 * Redis sorted-set order for the server's views, fold-in of an unseen user,
 * explanations, every user's score for a segment, and similar segments.
 * (AUDIENCE, LOOKALIKE and REACH select and count in one pass: scan.c.)
 * What it is not: a place that allocates per request; every buffer is the
 * caller's.
 */
#include "score.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "util.h"

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

float st_dot(const float *a, const float *b, uint32_t k) { return dot8(a, b, k); }

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
static void dot8x8_any(const float *const *a, uint32_t k, const float *x, float *out)
{
    if (k == 64) dot8x8(a, 64, x, out);
    else if (k == 32) dot8x8(a, 32, x, out);
    else if (k == 128) dot8x8(a, 128, x, out);
    else dot8x8(a, k, x, out);
}

/* scores[r] = rows[r] . x for every row of an r x k matrix. */
static void scan_rows(const float *rows, uint32_t nrows, uint32_t k, const float *x, float *scores)
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

void st_score_rows(const float *rows, uint32_t nrows, uint32_t k, const float *x, float *scores)
{
    scan_rows(rows, nrows, k, x, scores);
}

void st_score_all_segments(const st_model *m, const float *x, float *scores)
{
    scan_rows(m->V, m->segments, m->k, x, scores);
}

void st_score_prior(const st_model *m, float *q)
{
    float top = 0;
    for (uint32_t s = 0; s < m->segments; s++)
        if (m->popularity[s] > top) top = m->popularity[s];
    double d = log1p((double)top);
    for (uint32_t s = 0; s < m->segments; s++) q[s] = d > 0 ? (float)(log1p((double)m->popularity[s]) / d) : 0.0f;
}

void st_score_blend(const st_model *m, const float *q, const float *x, float *scores)
{
    st_score_all_segments(m, x, scores);
    float w = (float)m->h.prior_weight;
    if (w != 0) /* (float)w * q[s], added as st_score_one adds it: the same float */
        for (uint32_t s = 0; s < m->segments; s++) scores[s] += w * q[s];
}

float st_score_one(const st_model *m, const float *q, const float *x, uint32_t s)
{
    return st_dot(x, m->V + (size_t)s * m->k, m->k) + (float)m->h.prior_weight * q[s];
}

double st_score_calibrated(const st_model *m, float score)
{
    if (!(m->h.flags & ST_MODEL_CALIBRATED)) return NAN;
    double z = m->h.calib_a * score + m->h.calib_b;
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
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

static void sift_down(uint32_t *idx, float *sc, uint32_t n, uint32_t i)
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

static void sift_up(uint32_t *idx, float *sc, uint32_t i)
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

/* Quickselect on parallel arrays: afterwards the `want` best of sc[0..n)
 * (higher score, then lower index) are in [0, want), in no order. */
static void select_best(uint32_t *idx, float *sc, uint32_t n, uint32_t want)
{
    uint32_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        /* Median of three as the pivot, moved to hi - 1. */
        uint32_t a = lo, b = mid, c = hi - 1, p;
        if (worse(sc[a], idx[a], sc[b], idx[b])) { uint32_t t = a; a = b; b = t; }
        if (worse(sc[b], idx[b], sc[c], idx[c])) { b = c; }
        if (worse(sc[a], idx[a], sc[b], idx[b])) { b = a; }
        p = b;
        float ps = sc[p];
        uint32_t pi = idx[p];
        sc[p] = sc[hi - 1];
        idx[p] = idx[hi - 1];
        sc[hi - 1] = ps;
        idx[hi - 1] = pi;
        uint32_t store = lo;
        for (uint32_t j = lo; j < hi - 1; j++) {
            if (worse(ps, pi, sc[j], idx[j])) { /* j better than the pivot */
                float ts = sc[j];
                uint32_t ti = idx[j];
                sc[j] = sc[store];
                idx[j] = idx[store];
                sc[store] = ts;
                idx[store] = ti;
                store++;
            }
        }
        sc[hi - 1] = sc[store];
        idx[hi - 1] = idx[store];
        sc[store] = ps;
        idx[store] = pi;
        if (store == want || store + 1 == want) return;
        if (store > want) hi = store;
        else lo = store + 1;
    }
}

#define TOPK_BUFFERED_MAX 256

/* Ascending sort of a few hundred keys: quicksort with insertion sort below 16. */
static void sort_u64(uint64_t *a, uint32_t n)
{
    while (n > 16) {
        uint64_t p = a[n / 2], t;
        uint32_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i >= j) break;
            t = a[i];
            a[i] = a[j];
            a[j] = t;
            i++;
            j--;
        }
        sort_u64(a, j + 1);
        a += j + 1;
        n -= j + 1;
    }
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        uint32_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* A score that about 2 want of the n lie above, from a sample of 1024 (32
 * runs of 32, spread over the scores: few cache lines, and not biased to the
 * front, where the popular segments first seen tend to be), or -inf when n is
 * too small for sampling to pay. When at least
 * `want` scores turn out to be above it, the best `want` are all among them,
 * so one pass that keeps only those gives the exact answer. */
static float estimate_threshold(const float *s, uint32_t n, uint32_t want)
{
    enum { SAMPLE = 1024, MAXR = 64 };
    if (n < 8192 || (uint64_t)want * 64 > n) return -INFINITY;
    uint32_t r = (uint32_t)((2ull * want * SAMPLE + n - 1) / n) + 2, stride = n / 32;
    if (r > MAXR) return -INFINITY;
    float best[MAXR]; /* the r largest sampled, ascending */
    uint32_t have = 0;
    for (uint32_t q = 0; q < SAMPLE; q++) {
        float v = s[(size_t)(q / 32) * stride + q % 32];
        if (!(v == v)) continue;
        if (have < r) {
            uint32_t j = have++;
            while (j > 0 && best[j - 1] > v) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = v;
        } else if (v > best[0]) {
            uint32_t j = 0;
            while (j + 1 < r && best[j + 1] < v) {
                best[j] = best[j + 1];
                j++;
            }
            best[j] = v;
        }
    }
    return have == r ? best[0] : -INFINITY;
}

/* For want <= TOPK_BUFFERED_MAX: candidates above a threshold are appended to
 * a buffer of 4 want; when it fills, a quickselect keeps the best want and
 * raises the threshold to the worst of them. Appending costs a few cycles
 * where a heap replacement costs a mispredicted branch per level. */
static uint32_t topk_buffered(const float *scores, uint32_t n, uint32_t want, const uint32_t *exclude,
                              uint64_t nexclude, uint32_t *out_idx, float *out_score)
{
    uint32_t bidx[4 * TOPK_BUFFERED_MAX];
    float bsc[4 * TOPK_BUFFERED_MAX];
    uint32_t cap = 4 * want, cnt = 0, i = 0;
    uint64_t e = 0;
    float thr = estimate_threshold(scores, n, want);
again:
    for (;;) {
        uint32_t m, base = i;
        if (i + 32 <= n) {
            m = above_mask(scores + i, thr);
            i += 32;
        } else if (i < n) {
            m = 0;
            for (uint32_t j = 0; i + j < n; j++) m |= (uint32_t)(scores[i + j] > thr) << j;
            i = n;
        } else {
            break;
        }
        while (m) {
            uint32_t j = base + (uint32_t)__builtin_ctz(m);
            m &= m - 1;
            while (e < nexclude && exclude[e] < j) e++;
            if (e < nexclude && exclude[e] == j) continue;
            bidx[cnt] = j;
            bsc[cnt++] = scores[j];
            if (cnt == cap) {
                select_best(bidx, bsc, cnt, want);
                cnt = want;
                float w = bsc[0];
                for (uint32_t q = 1; q < want; q++) w = bsc[q] < w ? bsc[q] : w;
                thr = w;
            }
        }
    }
    if (cnt < want && thr != -INFINITY) {
        /* The estimate was too high (exclusions, ties): every score counts. */
        thr = -INFINITY;
        cnt = i = 0;
        e = 0;
        goto again;
    }
    if (cnt > want) {
        select_best(bidx, bsc, cnt, want);
        cnt = want;
    }
    /* Best first: each survivor becomes one u64 whose ascending order is
     * (higher score, then lower index), sorted with single compares. */
    uint64_t keys[TOPK_BUFFERED_MAX];
    for (uint32_t q = 0; q < cnt; q++) {
        uint32_t bits;
        memcpy(&bits, &bsc[q], 4);
        /* IEEE order as unsigned (negatives flipped), then reversed: best first. */
        bits = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
        keys[q] = (uint64_t)~bits << 32 | bidx[q];
    }
    sort_u64(keys, cnt);
    for (uint32_t q = 0; q < cnt; q++) {
        out_idx[q] = (uint32_t)keys[q];
        out_score[q] = scores[out_idx[q]];
    }
    return cnt;
}

/* Pops the worst to the end repeatedly: the heap ends up sorted best first. */
static void heap_to_sorted(uint32_t *idx, float *sc, uint32_t size)
{
    for (uint32_t end = size; end > 1; end--) {
        swap_pair(idx, sc, 0, end - 1);
        sift_down(idx, sc, end - 1, 0);
    }
}

uint32_t st_topk_keep(uint32_t *idx, float *sc, uint32_t n, uint32_t want)
{
    if (n <= want) return n;
    select_best(idx, sc, n, want);
    return want;
}

uint32_t st_topk(const float *scores, uint32_t n, uint32_t want, const uint32_t *exclude, uint64_t nexclude,
                 uint32_t *out_idx, float *out_score)
{
    if (want == 0) return 0;
    if (want <= TOPK_BUFFERED_MAX) return topk_buffered(scores, n, want, exclude, nexclude, out_idx, out_score);
    uint32_t size = 0, i = 0;
    uint64_t e = 0;
    /* Until the heap is full, and up to a multiple of 32: every score. */
    for (; i < n && (size < want || (i & 31)); i++) {
        while (e < nexclude && exclude[e] < i) e++;
        if (e < nexclude && exclude[e] == i) continue;
        if (isnan(scores[i])) continue;
        offer(out_idx, out_score, &size, want, i, scores[i]);
    }
    /* Then 32 at a time, looking only at the scores above the heap's worst
     * (a later index never wins a tie, and NaN is never above): with K much
     * smaller than n, most blocks have none and the rest very few. */
    for (; i + 32 <= n; i += 32) {
        uint32_t m = above_mask(scores + i, out_score[0]);
        while (m) {
            uint32_t j = i + (uint32_t)__builtin_ctz(m);
            m &= m - 1;
            while (e < nexclude && exclude[e] < j) e++;
            if (e < nexclude && exclude[e] == j) continue;
            offer(out_idx, out_score, &size, want, j, scores[j]);
        }
    }
    for (; i < n; i++) {
        while (e < nexclude && exclude[e] < i) e++;
        if (e < nexclude && exclude[e] == i) continue;
        if (isnan(scores[i])) continue;
        offer(out_idx, out_score, &size, want, i, scores[i]);
    }
    heap_to_sorted(out_idx, out_score, size);
    return size;
}

/* ---- the Redis sorted-set order ------------------------------------------- */

typedef struct {
    st_member_name_fn name;
    const void *ctx;
    int descending;
} member_order;

/* a comes after b in a sorted set: by score, equal scores by member bytes
 * (memcmp, then the shorter first); descending reverses both. */
static int member_after(const member_order *o, float sa, uint32_t ia, float sb, uint32_t ib)
{
    if (sa != sb) return o->descending ? sa < sb : sa > sb;
    size_t la, lb;
    const char *na = o->name(o->ctx, ia, &la), *nb = o->name(o->ctx, ib, &lb);
    int r = memcmp(na, nb, la < lb ? la : lb);
    if (r == 0) r = la < lb ? -1 : la > lb;
    return o->descending ? r < 0 : r > 0;
}

/* The heap of st_topk with this order instead of (score, index): the root is
 * the kept member that comes last. Not on a hot path, so no vector tricks. */
static void member_sift_down(const member_order *o, uint32_t *idx, float *sc, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && member_after(o, sc[l], idx[l], sc[w], idx[w])) w = l;
        if (r < n && member_after(o, sc[r], idx[r], sc[w], idx[w])) w = r;
        if (w == i) return;
        swap_pair(idx, sc, i, w);
        i = w;
    }
}

uint32_t st_topk_members(const float *scores, uint32_t n, uint32_t want, int descending, st_member_name_fn name,
                         const void *ctx, uint32_t *out_idx, float *out_score)
{
    member_order o = {name, ctx, descending};
    uint32_t size = 0;
    if (want == 0) return 0;
    for (uint32_t i = 0; i < n; i++) {
        float s = scores[i];
        if (isnan(s)) continue;
        if (size < want) {
            out_idx[size] = i;
            out_score[size++] = s;
            if (size == want) /* heapify once full */
                for (uint32_t j = size / 2; j-- > 0;) member_sift_down(&o, out_idx, out_score, size, j);
        } else if (member_after(&o, out_score[0], out_idx[0], s, i)) {
            out_idx[0] = i;
            out_score[0] = s;
            member_sift_down(&o, out_idx, out_score, size, 0);
        }
    }
    if (size < want)
        for (uint32_t j = size / 2; j-- > 0;) member_sift_down(&o, out_idx, out_score, size, j);
    for (uint32_t end = size; end > 1; end--) {
        swap_pair(out_idx, out_score, 0, end - 1);
        member_sift_down(&o, out_idx, out_score, end - 1, 0);
    }
    return size;
}

/* ---- pruned top-k over segments ------------------------------------------ */

int st_segment_index_build(const st_model *m, const float *q, st_segment_index *ix)
{
    memset(ix, 0, sizeof *ix);
    uint32_t n = m->segments, k = m->k;
    ix->order = st_malloc((size_t)n * sizeof *ix->order);
    ix->norms = st_malloc((size_t)n * sizeof *ix->norms);
    ix->add = st_malloc((size_t)n * sizeof *ix->add);
    ix->add_max = st_malloc(((size_t)n + 1) * sizeof *ix->add_max);
    ix->rows = st_aligned_alloc(64, (size_t)n * k * sizeof *ix->rows);
    float *norms = st_malloc((size_t)n * sizeof *norms);
    if (!ix->order || !ix->norms || !ix->add || !ix->add_max || !ix->rows || !norms) {
        st_free(norms);
        st_segment_index_free(ix);
        return -1;
    }
    st_score_segment_norms(m, norms);
    st_topk(norms, n, n, NULL, 0, ix->order, ix->norms); /* by decreasing norm */
    float w = (float)m->h.prior_weight;
    for (uint32_t p = 0; p < n; p++) {
        memcpy(ix->rows + (size_t)p * k, m->V + (size_t)ix->order[p] * k, k * sizeof *ix->rows);
        ix->add[p] = w * q[ix->order[p]]; /* the blend, exactly as st_score_one adds it */
    }
    /* add_max[p]: the most the blend adds from position p on. */
    ix->add_max[n] = -INFINITY;
    for (uint32_t p = n; p-- > 0;) ix->add_max[p] = ix->add[p] > ix->add_max[p + 1] ? ix->add[p] : ix->add_max[p + 1];
    st_free(norms);
    ix->n = n;
    ix->k = k;
    return 0;
}

void st_segment_index_free(st_segment_index *ix)
{
    st_free(ix->order);
    st_free(ix->norms);
    st_free(ix->add);
    st_free(ix->add_max);
    st_free(ix->rows);
    memset(ix, 0, sizeof *ix);
}

/* The most a segment of norm n (as ix->norms holds it) with blend add can
 * score for a user of norm xnorm: Cauchy-Schwarz on the dot product plus
 * the blend. A computed dot of k rounded products is within k 2^-24 |x| |v|
 * of the exact one, the norms are each within a few roundings of theirs,
 * and adding the blend rounds once more; the margins are a hundred times
 * that. */
static inline float reach_of(float xnorm, float n, float add, uint32_t k)
{
    float b = xnorm * n;
    return b * (1.0f + (float)k * 1e-5f) + add + (fabsf(add) + b) * 1e-6f + 1e-6f;
}

/* The most any segment from position p on can score: its norm is at most
 * norms[p] and its blend at most add_max[p]. */
static float reach_from(const st_segment_index *ix, float xnorm, uint32_t p)
{
    return reach_of(xnorm, ix->norms[p], ix->add_max[p], ix->k);
}

enum { SEG_BLOCK = 32, SEG_GROUP = 64 };

/* 1 when nothing from position p on can enter q's answer: the most any
 * segment there can score is below min, or below the want-th best so far. */
static int seg_pruned(const st_segment_index *ix, const st_segment_query *q, float xnorm, uint32_t p)
{
    float reach = reach_from(ix, xnorm, p);
    return reach < q->min || (q->got == q->want && reach < q->out_score[0]);
}

/* Scores for q the rows at positions [p, p + nb) of ix and offers them.
 * Only the scores that can enter the heap are looked at one by one: those
 * at least min and, once the heap is full, at least its worst (a tie may
 * still win on the lower index; offer decides). */
static void seg_block(const st_segment_index *ix, st_segment_query *q, uint32_t p, uint32_t nb)
{
    const float *add = ix->add + p;
    float sc[SEG_BLOCK];
    scan_rows(ix->rows + (size_t)p * ix->k, nb, ix->k, q->x, sc);
    for (uint32_t j = 0; j < nb; j++) sc[j] += add[j]; /* the blend, exactly as st_score_one adds it */
    uint32_t m = nb == SEG_BLOCK ? 0xffffffffu : (1u << nb) - 1;
    if (nb == SEG_BLOCK) m = atleast_mask(sc, q->got == q->want && q->out_score[0] > q->min ? q->out_score[0] : q->min);
    while (m) {
        uint32_t j = (uint32_t)__builtin_ctz(m);
        m &= m - 1;
        uint32_t i = ix->order[p + j];
        float v = sc[j];
        if ((q->skip && (q->skip[i] & q->skip_bit)) || isnan(v) || !(v >= q->min)) continue;
        offer(q->out_idx, q->out_score, &q->got, q->want, i, v);
    }
}

/* Up to SEG_GROUP queries, block by block: each block of rows is scored
 * for every query not yet pruned while it is in the cache. */
static void seg_group(const st_segment_index *ix, st_segment_query *q, uint32_t nq)
{
    uint32_t n = ix->n, k = ix->k, live[SEG_GROUP], nlive = 0;
    float xnorm[SEG_GROUP];
    for (uint32_t b = 0; b < nq; b++) {
        q[b].got = q[b].visited = 0;
        if (q[b].want == 0) continue;
        xnorm[b] = sqrtf(dot8(q[b].x, q[b].x, k));
        live[nlive++] = b;
    }
    for (uint32_t p = 0; p < n && nlive > 0; p += SEG_BLOCK) {
        uint32_t nb = n - p < SEG_BLOCK ? n - p : SEG_BLOCK, w = 0;
        for (uint32_t i = 0; i < nlive; i++) {
            uint32_t b = live[i];
            if (seg_pruned(ix, &q[b], xnorm[b], p)) {
                q[b].visited = p;
                continue;
            }
            live[w++] = b;
        }
        nlive = w;
        for (uint32_t i = 0; i < nlive; i++) seg_block(ix, &q[live[i]], p, nb);
    }
    for (uint32_t i = 0; i < nlive; i++) q[live[i]].visited = n;
    for (uint32_t b = 0; b < nq; b++) heap_to_sorted(q[b].out_idx, q[b].out_score, q[b].got);
}

void st_score_topk_segments_many(const st_segment_index *ix, st_segment_query *q, uint32_t nq)
{
    for (uint32_t g = 0; g < nq; g += SEG_GROUP) seg_group(ix, q + g, nq - g < SEG_GROUP ? nq - g : SEG_GROUP);
}

uint32_t st_score_topk_segments(const st_segment_index *ix, const float *x, uint32_t want, float min,
                                const uint8_t *skip, uint32_t *out_idx, float *out_score, uint32_t *visited)
{
    st_segment_query q = {.x = x, .want = want, .min = min, .skip = skip, .skip_bit = 0xff, .out_idx = out_idx,
                          .out_score = out_score};
    seg_group(ix, &q, 1);
    if (visited) *visited = q.visited;
    return q.got;
}

/* ---- fold-in and explanations -------------------------------------------- */

uint64_t st_score_foldin_scratch(const st_model *m, uint32_t nnz) { return nnz + st_als_foldin_scratch(m->k); }

uint64_t st_score_explain_scratch(const st_model *m, uint32_t nnz)
{
    /* confidences, the gathered rows, the system and one right-hand side */
    uint64_t k = m->k;
    return nnz + (uint64_t)nnz * k + k * k + k;
}

double st_score_confidences(const st_model *m, const st_als_params *p, const uint32_t *seg, const float *r,
                            uint32_t nnz, float *cm1)
{
    double norm = 1.0;
    if (p->confidence == ST_CONF_BM25) {
        double sum = 0;
        for (uint32_t i = 0; i < nnz; i++) sum += r[i];
        double mean = m->h.bm25_mean_rowsum > 0 ? m->h.bm25_mean_rowsum : 1.0;
        norm = (1.0 - p->bm25_b) + p->bm25_b * sum / mean;
    }
    for (uint32_t i = 0; i < nnz; i++) {
        /* idf as st_als_confidence computes it in training */
        double idf = p->confidence == ST_CONF_BM25 ? log((double)m->users) - log1p((double)m->popularity[seg[i]]) : 0;
        cm1[i] = st_als_user_coef(st_als_conf1(p, r[i], idf, norm), m->missing, seg[i]);
    }
    return st_als_row_lambda(p, nnz, m->segments);
}

static double confidences(const st_model *m, const uint32_t *seg, const float *r, uint32_t nnz, float *cm1)
{
    st_als_params p;
    st_model_params(&m->h, &p);
    return st_score_confidences(m, &p, seg, r, nnz, cm1);
}

int st_score_foldin(const st_model *m, const float *G, const uint32_t *seg, const float *r, uint32_t nnz, float *x,
                    float *scratch)
{
    float *cm1 = scratch;
    double lambda = confidences(m, seg, r, nnz, cm1);
    return st_als_foldin_weighted(m->k, m->V, G, m->missing, lambda, seg, cm1, nnz, x, scratch + nnz);
}

int st_score_explain(const st_model *m, const float *G, const uint32_t *seg, const float *r, uint32_t nnz,
                     uint32_t s, float *contrib, float *scratch)
{
    uint32_t k = m->k;
    float *cm1 = scratch, *M = cm1 + nnz, *A = M + (size_t)nnz * k, *z = A + (size_t)k * k;
    double lambda = confidences(m, seg, r, nnz, cm1);
    /* W = G + lambda I + sum_i cm1_i v_i v_i^T, as the fold-in forms it. */
    st_als_row_system(k, m->V, G, lambda, seg, cm1, nnz, A, M);
    memcpy(z, m->V + (size_t)s * k, k * sizeof *z);
    if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)k, A, (lapack_int)k) != 0) return -1;
    if (LAPACKE_spotrs_work(LAPACK_COL_MAJOR, 'L', (lapack_int)k, 1, A, (lapack_int)k, z, (lapack_int)k) != 0)
        return -1;
    /* z = W^-1 v_s; past segment i contributes c_i (z . v_i), with c / w0 = cm1 + rho
     * (rho 1 unless missing data is weighted by popularity). */
    for (uint32_t i = 0; i < nnz; i++)
        contrib[i] = (cm1[i] + (m->missing ? m->missing[seg[i]] : 1.0f)) * st_dot(z, m->V + (size_t)seg[i] * k, k);
    return 0;
}

/* ---- questions over all users -------------------------------------------- */

/* scan_rows over int8 rows with a scale each, read as int8 (a quarter of the
 * bytes): lane i is dequantized to (float)q_i * scale and then multiplied and
 * summed exactly as dot8 does with the dequantized row, so every user scores
 * the same float here as through st_model_user and st_dot. */
static void scan_rows_q8(const int8_t *rows, const float *scale, uint32_t nrows, uint32_t k, const float *x,
                         float *scores)
{
    typedef int8_t v8q __attribute__((vector_size(8)));
    for (uint32_t r = 0; r < nrows; r++) {
        const int8_t *a = rows + (size_t)r * k;
        float sc = scale[r];
        v8f scv = sc - (v8f){0}, acc = {0, 0, 0, 0, 0, 0, 0, 0};
        uint32_t i = 0;
        for (; i + 8 <= k; i += 8) {
            v8q qv;
            memcpy(&qv, a + i, 8);
            v8f deq = __builtin_convertvector(qv, v8f) * scv;
            acc += deq * load8(x + i);
        }
        for (int j = 0; i < k; i++, j++) acc[j] += ((float)a[i] * sc) * x[i];
        scores[r] = hsum8(acc);
    }
}

void st_score_all_users(const st_model *m, const float *y, float *out)
{
    if (m->Uq) scan_rows_q8(m->Uq, m->Uscale, m->users, m->k, y, out);
    else scan_rows(m->U, m->users, m->k, y, out);
}

void st_score_segment_users(const st_model *m, const float *q, uint32_t s, float *out)
{
    st_score_all_users(m, m->V + (size_t)s * m->k, out);
    float add = (float)m->h.prior_weight * q[s];
    for (uint32_t u = 0; u < m->users; u++) out[u] += add;
}

void st_score_centroid(const float *U, uint32_t k, const uint32_t *rows, uint32_t n, float *c)
{
    /* In double, so the mean does not depend on the order of the rows (the
     * sharded batch sums seeds from several files in another order). */
    for (uint32_t j = 0; j < k; j++) {
        double sum = 0;
        for (uint32_t i = 0; i < n; i++) sum += U[(size_t)rows[i] * k + j];
        c[j] = n > 0 ? (float)(sum / n) : 0.0f;
    }
}

void st_score_segment_norms(const st_model *m, float *norms)
{
    for (uint32_t s = 0; s < m->segments; s++) {
        const float *v = m->V + (size_t)s * m->k;
        norms[s] = sqrtf(st_dot(v, v, m->k));
    }
}

uint64_t st_score_similar_scratch(const st_model *m) { return (uint64_t)m->k + st_score_foldin_scratch(m, 1); }

uint32_t st_score_similar(const st_model *m, const float *G, const float *q, uint32_t s, uint32_t want,
                          float *scores, float *work, uint32_t *out_idx, float *out_score)
{
    /* A user whose only engagement is s, at the typical value of a pair (the
     * scale eps of the log scheme, else 1), folded in and ranked exactly as
     * SEGMENTS ranks a user: the segments such a user is most likely to
     * engage with next. */
    float *x = work, r = m->h.confidence == ST_CONF_LOG && m->h.eps > 0 ? (float)m->h.eps : 1.0f;
    if (st_score_foldin(m, G, &s, &r, 1, x, work + m->k) != 0) return 0;
    st_score_blend(m, q, x, scores);
    uint32_t self = s;
    return st_topk(scores, m->segments, want, &self, 1, out_idx, out_score);
}
