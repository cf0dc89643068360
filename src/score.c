/* score: every score, the top-k selections, and the questions built on them.
 *
 * What it is: the one dot-product kernel (a fixed summation order, so a
 * (user, segment) pair scores the same float in every command), the
 * popularity prior and its blend, calibration, top-k selection (a buffered
 * quickselect for small k, a bounded heap otherwise), the
 * Redis sorted-set order for the server's views, fold-in of an unseen user,
 * explanations, every user's score for a segment, and similar segments.
 * (AUDIENCE, LOOKALIKE and REACH select and count in one pass: scan.c;
 * SEGMENTS' pruned top-k over segments: segindex.c; the kernels score.c
 * shares with it: dotkern.h.)
 * What it is not: a place that allocates per request; every buffer is the
 * caller's.
 */
#include "score.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "dotkern.h"
#include "util.h"

float st_dot(const float *a, const float *b, uint32_t k) { return dot8(a, b, k); }


void st_score_rows(const float *rows, uint32_t nrows, uint32_t k, const float *x, float *scores)
{
    scan_rows(rows, nrows, k, x, scores);
}

void st_score_all_segments(const st_model *m, const float *x, float *scores)
{
    scan_rows(m->V, m->segments, m->k, x, scores);
}

float st_score_prior_of(double pop, double top, int linear)
{
    double q;
    if (linear) q = top > 0 ? pop / top : 0;
    else {
        double d = log1p(top);
        q = d > 0 ? log1p(pop) / d : 0;
    }
    return (float)(q < 1 ? q : 1);
}

float st_score_prior_top(const st_model *m)
{
    float top = 0;
    for (uint32_t s = 0; s < m->segments; s++)
        if (m->popularity[s] > top) top = m->popularity[s];
    return top;
}

void st_score_prior_shape(const st_model *m, int linear, float *q)
{
    float top = st_score_prior_top(m);
    for (uint32_t s = 0; s < m->segments; s++) q[s] = st_score_prior_of(m->popularity[s], top, linear);
}

void st_score_prior(const st_model *m, float *q)
{
    st_score_prior_shape(m, (m->h.flags & ST_MODEL_PRIOR_LINEAR) != 0, q);
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
        if (!(scores[i] > -INFINITY)) continue; /* NaN and -inf are no score */
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
        if (!(scores[i] > -INFINITY)) continue; /* NaN and -inf are no score */
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
