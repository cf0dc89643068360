/* score: dot products, one sgemv per user, and a bounded-heap top-k.
 *
 * The top-k keeps a min-heap of the best `want` candidates seen so far (the
 * worst at the root), so selecting from n scores costs O(n log want) with no
 * allocation; the survivors are then heap-sorted best first.
 */
#include "score.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

float st_dot(const float *a, const float *b, uint32_t k)
{
    float s = 0;
    for (uint32_t i = 0; i < k; i++) s += a[i] * b[i];
    return s;
}

void st_score_all_segments(const st_model *m, const float *x, float *scores)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m->segments, (blasint)m->k, 1.0f, m->V, (blasint)m->k, x, 1,
                0.0f, scores, 1);
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
    if (w != 0)
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

/* a ranks worse than b: lower score, or equal score and higher index. */
static inline int worse(float sa, uint32_t ia, float sb, uint32_t ib) { return sa < sb || (sa == sb && ia > ib); }

static void sift_down(uint32_t *idx, float *sc, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(sc[l], idx[l], sc[w], idx[w])) w = l;
        if (r < n && worse(sc[r], idx[r], sc[w], idx[w])) w = r;
        if (w == i) return;
        float ts = sc[i];
        sc[i] = sc[w];
        sc[w] = ts;
        uint32_t ti = idx[i];
        idx[i] = idx[w];
        idx[w] = ti;
        i = w;
    }
}

static void sift_up(uint32_t *idx, float *sc, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!worse(sc[i], idx[i], sc[p], idx[p])) return;
        float ts = sc[i];
        sc[i] = sc[p];
        sc[p] = ts;
        uint32_t ti = idx[i];
        idx[i] = idx[p];
        idx[p] = ti;
        i = p;
    }
}

/* A bit for each of the 32 scores at s that is greater than thr (NaN is not). */
static inline uint32_t above_mask(const float *s, float thr)
{
#ifdef __AVX__
    __m256 t = _mm256_set1_ps(thr);
    uint32_t a = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s), t, _CMP_GT_OQ));
    uint32_t b = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 8), t, _CMP_GT_OQ));
    uint32_t c = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 16), t, _CMP_GT_OQ));
    uint32_t d = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 24), t, _CMP_GT_OQ));
    return a | b << 8 | c << 16 | d << 24;
#else
    uint32_t m = 0;
    for (uint32_t j = 0; j < 32; j++) m |= (uint32_t)(s[j] > thr) << j;
    return m;
#endif
}

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
    /* Pop the worst to the end repeatedly: the array ends up best first. */
    for (uint32_t end = size; end > 1; end--) {
        float ts = out_score[0];
        out_score[0] = out_score[end - 1];
        out_score[end - 1] = ts;
        uint32_t ti = out_idx[0];
        out_idx[0] = out_idx[end - 1];
        out_idx[end - 1] = ti;
        sift_down(out_idx, out_score, end - 1, 0);
    }
    return size;
}
