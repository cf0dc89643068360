/* score: dot products, one kernel for every score, and a bounded-heap top-k; the
 * prior, fold-in, explanations, audiences, look-alikes, reach, similarity.
 *
 * The top-k keeps a heap of the best `want` candidates seen so far (the
 * worst at the root), so selecting from n scores costs O(n log want) with no
 * allocation; the survivors are then heap-sorted best first.
 */
#include "score.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "util.h"

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

/* scores[r] = rows[r] . x for every row of an r x k matrix. */
static void scan_rows(const float *rows, uint32_t nrows, uint32_t k, const float *x, float *scores)
{
    uint32_t r = 0;
    /* Four rows at a time share each load of x; every row is still summed
     * exactly as dot8 sums it. */
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

void st_score_all_segments(const st_model *m, const float *x, float *scores)
{
    scan_rows(m->V, m->segments, m->k, x, scores);
}

/* ---- bounded-heap selection ----------------------------------------------- */

/* A selection keeps the best `want` candidates seen so far in a heap whose
 * root is the one that ranks last, so each new candidate costs one compare
 * unless it gets in. The order is a function, so the same heap serves
 * st_topk (score, then lower index) and the sorted-set order (score, then
 * member bytes, either direction). */
typedef int (*rank_after_fn)(const void *ctx, float sa, uint32_t ia, float sb, uint32_t ib);

typedef struct {
    rank_after_fn after; /* a ranks after (worse than) b */
    const void *ctx;
    uint32_t *idx;
    float *sc;
    uint32_t size, want;
} selection;

static inline void swap_at(selection *h, uint32_t i, uint32_t j)
{
    float ts = h->sc[i];
    h->sc[i] = h->sc[j];
    h->sc[j] = ts;
    uint32_t ti = h->idx[i];
    h->idx[i] = h->idx[j];
    h->idx[j] = ti;
}

static inline int after_at(const selection *h, uint32_t i, uint32_t j)
{
    return h->after(h->ctx, h->sc[i], h->idx[i], h->sc[j], h->idx[j]);
}

static void sift_down(selection *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && after_at(h, l, w)) w = l;
        if (r < n && after_at(h, r, w)) w = r;
        if (w == i) return;
        swap_at(h, i, w);
        i = w;
    }
}

/* Offers candidate i with score s. */
static inline void offer(selection *h, uint32_t i, float s)
{
    if (h->size < h->want) {
        uint32_t c = h->size++;
        h->idx[c] = i;
        h->sc[c] = s;
        while (c > 0 && after_at(h, c, (c - 1) / 2)) {
            swap_at(h, c, (c - 1) / 2);
            c = (c - 1) / 2;
        }
    } else if (h->after(h->ctx, h->sc[0], h->idx[0], s, i)) {
        h->idx[0] = i;
        h->sc[0] = s;
        sift_down(h, h->size, 0);
    }
}

/* Pops the last-ranked to the end repeatedly: the heap ends up in order,
 * best first. Returns how many were kept. */
static uint32_t finish(selection *h)
{
    for (uint32_t end = h->size; end > 1; end--) {
        swap_at(h, 0, end - 1);
        sift_down(h, end - 1, 0);
    }
    return h->size;
}

/* Lower score, or equal score and higher index. */
static int after_by_index(const void *ctx, float sa, uint32_t ia, float sb, uint32_t ib)
{
    (void)ctx;
    return sa < sb || (sa == sb && ia > ib);
}

uint32_t st_topk(const float *scores, uint32_t n, uint32_t want, const uint32_t *exclude, uint64_t nexclude,
                 uint32_t *out_idx, float *out_score)
{
    selection h = {after_by_index, NULL, out_idx, out_score, 0, want};
    if (want == 0) return 0;
    uint64_t e = 0;
    for (uint32_t i = 0; i < n; i++) {
        while (e < nexclude && exclude[e] < i) e++;
        if (e < nexclude && exclude[e] == i) continue;
        if (!isnan(scores[i])) offer(&h, i, scores[i]);
    }
    return finish(&h);
}

typedef struct {
    const st_idmap *names;
    int descending;
} member_order;

/* Redis's sorted-set order: by score, equal scores by member bytes (memcmp,
 * then the shorter first); descending reverses both. */
static int after_by_member(const void *vctx, float sa, uint32_t ia, float sb, uint32_t ib)
{
    const member_order *o = vctx;
    if (sa != sb) return o->descending ? sa < sb : sa > sb;
    size_t la, lb;
    const char *na = st_idmap_name(o->names, ia, &la), *nb = st_idmap_name(o->names, ib, &lb);
    int r = memcmp(na, nb, la < lb ? la : lb);
    if (r == 0) r = la < lb ? -1 : la > lb;
    return o->descending ? r < 0 : r > 0;
}

uint32_t st_topk_members(const float *scores, uint32_t n, uint32_t want, int descending, const st_idmap *names,
                         uint32_t *out_idx, float *out_score)
{
    member_order o = {names, descending};
    selection h = {after_by_member, &o, out_idx, out_score, 0, want};
    if (want == 0) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (!isnan(scores[i])) offer(&h, i, scores[i]);
    return finish(&h);
}

/* ---- pruned top-k over segments ------------------------------------------ */

int st_segment_index_build(const st_model *m, st_segment_index *ix)
{
    memset(ix, 0, sizeof *ix);
    uint32_t n = m->segments, k = m->k;
    ix->order = st_malloc((size_t)n * sizeof *ix->order);
    ix->norms = st_malloc((size_t)n * sizeof *ix->norms);
    ix->rows = st_aligned_alloc(64, (size_t)n * k * sizeof *ix->rows);
    float *norms = st_malloc((size_t)n * sizeof *norms);
    if (!ix->order || !ix->norms || !ix->rows || !norms) {
        st_free(norms);
        st_segment_index_free(ix);
        return -1;
    }
    st_score_segment_norms(m, norms);
    st_topk(norms, n, n, NULL, 0, ix->order, ix->norms); /* by decreasing norm */
    for (uint32_t p = 0; p < n; p++)
        memcpy(ix->rows + (size_t)p * k, m->V + (size_t)ix->order[p] * k, k * sizeof *ix->rows);
    st_free(norms);
    ix->n = n;
    ix->k = k;
    return 0;
}

void st_segment_index_free(st_segment_index *ix)
{
    st_free(ix->order);
    st_free(ix->norms);
    st_free(ix->rows);
    memset(ix, 0, sizeof *ix);
}

/* How far a computed score may exceed |x| |v| through float rounding: the
 * dot of k products, each rounded, is within k * 2^-24 * |x| |v| of exact;
 * the margin is a hundred times that and then some. */
static float bound_with_margin(float b, uint32_t k) { return b * (1.0f + (float)k * 1e-5f) + 1e-6f; }

uint32_t st_score_topk_segments(const st_segment_index *ix, const float *x, uint32_t want, float min,
                                const uint8_t *skip, uint32_t *out_idx, float *out_score, uint32_t *visited)
{
    enum { BLOCK = 32 };
    uint32_t n = ix->n, k = ix->k, p = 0;
    selection h = {after_by_index, NULL, out_idx, out_score, 0, want};
    float xnorm = sqrtf(dot8(x, x, k));
    while (p < n && want > 0) {
        /* Nothing from here on can beat the want-th best or reach min. */
        float reach = bound_with_margin(xnorm * ix->norms[p], k);
        if (reach < min || (h.size == want && reach < out_score[0])) break;
        uint32_t end = p + BLOCK < n ? p + BLOCK : n;
        float sc[BLOCK];
        scan_rows(ix->rows + (size_t)p * k, end - p, k, x, sc);
        for (uint32_t q = p; q < end; q++) {
            uint32_t i = ix->order[q];
            float v = sc[q - p];
            if ((skip && skip[i]) || isnan(v) || !(v >= min)) continue;
            offer(&h, i, v);
        }
        p = end;
    }
    if (visited) *visited = p;
    return finish(&h);
}

/* ---- the prior, calibration, fold-in and explanations -------------------- */

void st_score_prior(const st_model *m, float *out)
{
    float users = m->users > 0 ? (float)m->users : 1.0f;
    for (uint32_t s = 0; s < m->segments; s++) out[s] = m->popularity[s] / users;
}

float st_score_calibrate(const st_model *m, float score)
{
    return (float)(1.0 / (1.0 + exp(-(m->h.calib_a * score + m->h.calib_b))));
}

uint64_t st_score_foldin_scratch(const st_model *m, uint32_t nnz) { return nnz + st_als_foldin_scratch(m->k); }

uint64_t st_score_explain_scratch(const st_model *m, uint32_t nnz)
{
    /* confidences, the gathered rows, the system and one right-hand side */
    uint64_t k = m->k;
    return nnz + (uint64_t)nnz * k + k * k + k;
}

/* The model's confidence-minus-one of each history entry, and the row's
 * regularisation: exactly what training used for a row with this history. */
static double confidences(const st_model *m, const uint32_t *seg, const float *r, uint32_t nnz, float *cm1)
{
    st_als_params p;
    st_model_params(&m->h, &p);
    double norm = 1.0;
    if (p.confidence == ST_CONF_BM25) {
        double sum = 0;
        for (uint32_t i = 0; i < nnz; i++) sum += r[i];
        double mean = m->h.bm25_mean_rowsum > 0 ? m->h.bm25_mean_rowsum : 1.0;
        norm = (1.0 - p.bm25_b) + p.bm25_b * sum / mean;
    }
    for (uint32_t i = 0; i < nnz; i++) {
        double idf = p.confidence == ST_CONF_BM25 ? log((double)m->users) - log1p((double)m->popularity[seg[i]]) : 0;
        cm1[i] = st_als_conf1(&p, r[i], idf, norm);
    }
    if (p.regularization == ST_REG_FREQUENCY)
        return p.lambda * pow((double)nnz + p.reg_alpha0 * m->segments, p.reg_nu);
    return p.lambda;
}

int st_score_foldin(const st_model *m, const float *G, const uint32_t *seg, const float *r, uint32_t nnz, float *x,
                    float *scratch)
{
    float *cm1 = scratch;
    double lambda = confidences(m, seg, r, nnz, cm1);
    return st_als_foldin(m->k, m->V, G, lambda, seg, cm1, nnz, x, scratch + nnz);
}

int st_score_explain(const st_model *m, const float *G, const uint32_t *seg, const float *r, uint32_t nnz,
                     uint32_t s, float *contrib, float *scratch)
{
    uint32_t k = m->k;
    float *cm1 = scratch, *M = cm1 + nnz, *A = M + (size_t)nnz * k, *z = A + (size_t)k * k;
    double lambda = confidences(m, seg, r, nnz, cm1);
    /* W = G + lambda I + sum_i cm1_i v_i v_i^T, the last term as one syrk over
     * the rows sqrt(cm1_i) v_i gathered into M. */
    memcpy(A, G, (size_t)k * k * sizeof *A);
    for (uint32_t i = 0; i < k; i++) A[(size_t)i * k + i] += (float)lambda;
    for (uint32_t i = 0; i < nnz; i++) {
        const float *v = m->V + (size_t)seg[i] * k;
        float sc = sqrtf(cm1[i]);
        for (uint32_t j = 0; j < k; j++) M[(size_t)i * k + j] = sc * v[j];
    }
    if (nnz > 0)
        cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)k, (blasint)nnz, 1.0f, M, (blasint)k, 1.0f, A,
                    (blasint)k);
    memcpy(z, m->V + (size_t)s * k, k * sizeof *z);
    if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)k, A, (lapack_int)k) != 0) return -1;
    if (LAPACKE_spotrs_work(LAPACK_COL_MAJOR, 'L', (lapack_int)k, 1, A, (lapack_int)k, z, (lapack_int)k) != 0)
        return -1;
    /* z = W^-1 v_s; past segment i contributes c_i (z . v_i), with c = 1 + cm1. */
    for (uint32_t i = 0; i < nnz; i++) contrib[i] = (1.0f + cm1[i]) * st_dot(z, m->V + (size_t)seg[i] * k, k);
    return 0;
}

/* ---- questions over all users -------------------------------------------- */

void st_score_all_users(const st_model *m, const float *y, float *out) { scan_rows(m->U, m->users, m->k, y, out); }

uint64_t st_score_reach(const st_model *m, uint32_t s, float min, float *scratch)
{
    st_score_all_users(m, m->V + (size_t)s * m->k, scratch);
    uint64_t n = 0;
    for (uint32_t u = 0; u < m->users; u++) n += scratch[u] >= min;
    return n;
}

/* Marks scores under min as NaN, which st_topk skips. */
static void drop_below(float *scores, uint32_t n, float min)
{
    if (isinf(min) && min < 0) return;
    for (uint32_t i = 0; i < n; i++)
        if (!(scores[i] >= min)) scores[i] = NAN;
}

uint32_t st_score_audience(const st_model *m, uint32_t s, uint32_t want, float min, float *scratch,
                           uint32_t *out_idx, float *out_score)
{
    st_score_all_users(m, m->V + (size_t)s * m->k, scratch);
    drop_below(scratch, m->users, min);
    return st_topk(scratch, m->users, want, NULL, 0, out_idx, out_score);
}

uint32_t st_score_lookalike(const st_model *m, const uint32_t *seeds, uint32_t nseeds, uint32_t want,
                            float *scratch, uint32_t *out_idx, float *out_score)
{
    uint32_t k = m->k;
    float *c = scratch + m->users;
    memset(c, 0, k * sizeof *c);
    for (uint32_t i = 0; i < nseeds; i++) {
        const float *x = m->U + (size_t)seeds[i] * k;
        for (uint32_t j = 0; j < k; j++) c[j] += x[j];
    }
    for (uint32_t j = 0; j < k; j++) c[j] /= nseeds > 0 ? (float)nseeds : 1.0f;
    st_score_all_users(m, c, scratch);
    return st_topk(scratch, m->users, want, seeds, nseeds, out_idx, out_score);
}

void st_score_segment_norms(const st_model *m, float *norms)
{
    for (uint32_t s = 0; s < m->segments; s++) {
        const float *v = m->V + (size_t)s * m->k;
        norms[s] = sqrtf(st_dot(v, v, m->k));
    }
}

uint32_t st_score_similar(const st_model *m, const float *norms, uint32_t s, uint32_t want, float *scratch,
                          uint32_t *out_idx, float *out_score)
{
    st_score_all_segments(m, m->V + (size_t)s * m->k, scratch);
    for (uint32_t t = 0; t < m->segments; t++) {
        float d = norms[s] * norms[t];
        scratch[t] = d > 0 ? scratch[t] / d : 0.0f;
    }
    uint32_t self = s;
    return st_topk(scratch, m->segments, want, &self, 1, out_idx, out_score);
}
