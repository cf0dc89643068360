/* baseline: item-kNN and EASE, the strong baselines of `starling eval`
 * (baseline.h has the definitions).
 *
 * Both are built from the training history alone and score a user from its
 * history alone, so they rank exactly the users, candidates and held-out
 * segments the model is ranked on. Neither is meant for serving: they are
 * the yardstick the model must beat.
 */
#include "baseline.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- the history by segment ----------------------------------------------- */

typedef struct {
    uint64_t *ptr; /* n + 1 */
    uint32_t *user;
} by_segment;

static int transpose(const st_history *h, by_segment *t, char *err)
{
    uint32_t n = h->segments;
    uint64_t nnz = h->ptr[h->users];
    t->ptr = st_calloc((size_t)n + 1, sizeof *t->ptr);
    t->user = st_malloc((nnz + 1) * sizeof *t->user);
    if (!t->ptr || !t->user) {
        st_free(t->ptr);
        st_free(t->user);
        return st_seterr(err, "out of memory for the history by segment (%llu pairs)", (unsigned long long)nnz);
    }
    for (uint64_t q = 0; q < nnz; q++) t->ptr[h->idx[q] + 1]++;
    for (uint32_t s = 0; s < n; s++) t->ptr[s + 1] += t->ptr[s];
    uint64_t *fill = st_malloc(((size_t)n + 1) * sizeof *fill);
    if (!fill) {
        st_free(t->ptr);
        st_free(t->user);
        return st_seterr(err, "out of memory");
    }
    memcpy(fill, t->ptr, (size_t)n * sizeof *fill);
    for (uint32_t u = 0; u < h->users; u++)
        for (uint64_t q = h->ptr[u]; q < h->ptr[u + 1]; q++) t->user[fill[h->idx[q]]++] = u;
    st_free(fill);
    return 0;
}

static void by_segment_free(by_segment *t)
{
    st_free(t->ptr);
    st_free(t->user);
}

/* ---- item-kNN -------------------------------------------------------------- */

/* A bounded min-heap of (sim, segment): the weakest kept neighbour on top.
 * Ties go to the smaller segment index, so the lists do not depend on the
 * order co-occurrences were met in. */
static int weaker(float sa, uint32_t a, float sb, uint32_t b) { return sa < sb || (sa == sb && a > b); }

static void heap_sift(float *s, uint32_t *x, uint32_t len, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < len && weaker(s[l], x[l], s[m], x[m])) m = l;
        if (r < len && weaker(s[r], x[r], s[m], x[m])) m = r;
        if (m == i) return;
        float ts = s[i];
        s[i] = s[m];
        s[m] = ts;
        uint32_t tx = x[i];
        x[i] = x[m];
        x[m] = tx;
        i = m;
    }
}

static void heap_push(float *s, uint32_t *x, uint32_t *len, uint32_t cap, float sim, uint32_t j)
{
    if (*len < cap) {
        uint32_t i = (*len)++;
        s[i] = sim;
        x[i] = j;
        while (i > 0) {
            uint32_t p = (i - 1) / 2;
            if (!weaker(s[i], x[i], s[p], x[p])) break;
            float ts = s[i];
            s[i] = s[p];
            s[p] = ts;
            uint32_t tx = x[i];
            x[i] = x[p];
            x[p] = tx;
            i = p;
        }
    } else if (weaker(s[0], x[0], sim, j)) {
        s[0] = sim;
        x[0] = j;
        heap_sift(s, x, *len, 0);
    }
}

typedef struct {
    const st_history *h;
    const by_segment *t;
    st_knn *k;
    uint32_t *count;  /* per thread: n co-occurrence counters, zero between segments */
    uint32_t *touched; /* per thread: n */
    uint32_t *len;     /* n: neighbours found */
} knn_ctx;

#define KNN_CHUNK 64

static void knn_task(void *vctx, uint64_t task, int thread)
{
    knn_ctx *c = vctx;
    const st_history *h = c->h;
    uint32_t n = h->segments, cap = c->k->neighbours;
    uint32_t *count = c->count + (size_t)thread * n, *touched = c->touched + (size_t)thread * n;
    uint32_t i0 = (uint32_t)task * KNN_CHUNK, i1 = i0 + KNN_CHUNK < n ? i0 + KNN_CHUNK : n;
    for (uint32_t i = i0; i < i1; i++) {
        uint32_t nt = 0;
        for (uint64_t q = c->t->ptr[i]; q < c->t->ptr[i + 1]; q++) {
            uint32_t u = c->t->user[q];
            for (uint64_t p = h->ptr[u]; p < h->ptr[u + 1]; p++) {
                uint32_t j = h->idx[p];
                if (count[j]++ == 0) touched[nt++] = j;
            }
        }
        float *s = c->k->sim + (size_t)i * cap;
        uint32_t *x = c->k->nbr + (size_t)i * cap, len = 0;
        double ci = (double)(c->t->ptr[i + 1] - c->t->ptr[i]);
        for (uint32_t q = 0; q < nt; q++) {
            uint32_t j = touched[q];
            if (j != i) {
                double cj = (double)(c->t->ptr[j + 1] - c->t->ptr[j]);
                float sim = (float)(count[j] / (sqrt(ci * cj) + c->k->shrink));
                heap_push(s, x, &len, cap, sim, j);
            }
            count[j] = 0;
        }
        /* Heap to best-first order: pop the weakest to the end. */
        for (uint32_t e = len; e > 1; e--) {
            float ts = s[0];
            s[0] = s[e - 1];
            s[e - 1] = ts;
            uint32_t tx = x[0];
            x[0] = x[e - 1];
            x[e - 1] = tx;
            heap_sift(s, x, e - 1, 0);
        }
        c->len[i] = len;
    }
}

int st_knn_build(const st_history *h, uint32_t neighbours, double shrink, int threads, st_knn *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (neighbours < 1) return st_seterr(err, "item-kNN needs at least one neighbour per segment");
    if (!(shrink >= 0)) return st_seterr(err, "item-kNN shrinkage must be >= 0");
    uint32_t n = h->segments;
    if (neighbours > n) neighbours = n ? n : 1;
    if (threads < 1) threads = st_cpu_count();
    by_segment t;
    if (transpose(h, &t, err) != 0) return -1;
    out->n = n;
    out->neighbours = neighbours;
    out->shrink = shrink;
    size_t slots;
    knn_ctx c = {.h = h, .t = &t, .k = out};
    if (st_mul_size((size_t)n, neighbours, &slots) != 0) slots = SIZE_MAX / 8;
    out->ptr = st_calloc((size_t)n + 1, sizeof *out->ptr);
    out->nbr = st_malloc((slots + 1) * sizeof *out->nbr);
    out->sim = st_malloc((slots + 1) * sizeof *out->sim);
    c.count = st_calloc((size_t)threads * n + 1, sizeof *c.count);
    c.touched = st_malloc(((size_t)threads * n + 1) * sizeof *c.touched);
    c.len = st_calloc((size_t)n + 1, sizeof *c.len);
    if (!out->ptr || !out->nbr || !out->sim || !c.count || !c.touched || !c.len) {
        st_free(c.count);
        st_free(c.touched);
        st_free(c.len);
        by_segment_free(&t);
        st_knn_free(out);
        return st_seterr(err, "out of memory for item-kNN (%u segments x %u neighbours)", n, neighbours);
    }
    st_parallel_run(threads, (n + KNN_CHUNK - 1) / KNN_CHUNK, knn_task, &c);
    /* Compact the fixed-width rows into CSR. */
    uint64_t w = 0;
    for (uint32_t i = 0; i < n; i++) {
        out->ptr[i] = w;
        memmove(out->nbr + w, out->nbr + (size_t)i * neighbours, c.len[i] * sizeof *out->nbr);
        memmove(out->sim + w, out->sim + (size_t)i * neighbours, c.len[i] * sizeof *out->sim);
        w += c.len[i];
    }
    out->ptr[n] = w;
    st_free(c.count);
    st_free(c.touched);
    st_free(c.len);
    by_segment_free(&t);
    return 0;
}

void st_knn_free(st_knn *k)
{
    st_free(k->ptr);
    st_free(k->nbr);
    st_free(k->sim);
    memset(k, 0, sizeof *k);
}

void st_knn_score(const st_knn *k, const uint32_t *seen, uint64_t nseen, float *row)
{
    memset(row, 0, (size_t)k->n * sizeof *row);
    for (uint64_t q = 0; q < nseen; q++) {
        uint32_t i = seen[q];
        if (i >= k->n) continue;
        for (uint64_t p = k->ptr[i]; p < k->ptr[i + 1]; p++) row[k->nbr[p]] += k->sim[p];
    }
}

/* ---- EASE ----------------------------------------------------------------------- */

uint32_t st_ease_active(const st_history *h)
{
    uint8_t *has = st_calloc((size_t)h->segments + 1, 1);
    if (!has) return UINT32_MAX;
    uint32_t active = 0;
    for (uint64_t q = 0; q < h->ptr[h->users]; q++)
        if (!has[h->idx[q]]) {
            has[h->idx[q]] = 1;
            active++;
        }
    st_free(has);
    return active;
}

typedef struct {
    const st_history *h;
    const st_ease *e;
    int threads;
} gram_ctx;

/* Thread t adds the co-occurrences of rows r with r % threads == t into G:
 * every row of G is written by one thread only. */
static void gram_task(void *vctx, uint64_t task, int thread)
{
    (void)thread;
    const gram_ctx *c = vctx;
    const st_history *h = c->h;
    const st_ease *e = c->e;
    uint32_t na = e->active, T = (uint32_t)c->threads;
    for (uint32_t u = 0; u < h->users; u++)
        for (uint64_t p = h->ptr[u]; p < h->ptr[u + 1]; p++) {
            uint32_t a = e->slot[h->idx[p]];
            if (a % T != task) continue;
            float *Ga = e->B + (size_t)a * na;
            for (uint64_t q = h->ptr[u]; q < h->ptr[u + 1]; q++) Ga[e->slot[h->idx[q]]] += 1.0f;
        }
}

int st_ease_build(const st_history *h, double lambda, uint32_t max_segments, int threads, st_ease *out, char *err)
{
    memset(out, 0, sizeof *out);
    uint32_t n = h->segments;
    if (threads < 1) threads = st_cpu_count();
    out->n = n;
    out->slot = st_malloc(((size_t)n + 1) * sizeof *out->slot);
    out->segment = st_malloc(((size_t)n + 1) * sizeof *out->segment);
    if (!out->slot || !out->segment) {
        st_ease_free(out);
        return st_seterr(err, "out of memory");
    }
    for (uint32_t s = 0; s < n; s++) out->slot[s] = UINT32_MAX;
    uint32_t na = 0;
    for (uint64_t q = 0; q < h->ptr[h->users]; q++) {
        uint32_t s = h->idx[q];
        if (out->slot[s] == UINT32_MAX) out->slot[s] = na++;
    }
    /* Rows in segment order, so B does not depend on the order of the pairs. */
    na = 0;
    for (uint32_t s = 0; s < n; s++)
        if (out->slot[s] != UINT32_MAX) {
            out->slot[s] = na;
            out->segment[na++] = s;
        }
    out->active = na;
    if (na > max_segments) {
        st_ease_free(out);
        return st_seterr(err, "EASE skipped: %u segments with training users, above its bound of %u (an %u x %u "
                              "matrix, %.1f GB, and about %.0f GFLOP to invert)",
                         na, max_segments, na, na, (double)na * na * 4 / 1e9, (double)na * na * na / 1e9);
    }
    if (na == 0) {
        st_ease_free(out);
        return st_seterr(err, "EASE skipped: no segment has a training user");
    }
    size_t cells;
    if (st_mul_size(na, na, &cells) != 0 || !(out->B = st_aligned_alloc(64, cells * sizeof *out->B))) {
        st_ease_free(out);
        return st_seterr(err, "out of memory for EASE's %u x %u matrix", na, na);
    }
    memset(out->B, 0, cells * sizeof *out->B);
    gram_ctx g = {.h = h, .e = out, .threads = threads};
    st_parallel_run(threads, (uint64_t)threads, gram_task, &g);
    double diag = 0;
    for (uint32_t a = 0; a < na; a++) diag += out->B[(size_t)a * na + a];
    if (!(lambda > 0)) lambda = ST_EASE_LAMBDA_SCALE * diag / na;
    out->lambda = lambda;
    for (uint32_t a = 0; a < na; a++) out->B[(size_t)a * na + a] += (float)lambda;
    /* P = G^-1 by Cholesky, LAPACK on the BLAS threads. */
    openblas_set_num_threads(threads);
    lapack_int rc = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)na, out->B, (lapack_int)na);
    if (rc == 0) rc = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)na, out->B, (lapack_int)na);
    openblas_set_num_threads(1);
    if (rc != 0) {
        st_ease_free(out);
        return st_seterr(err, "EASE: the Gram matrix plus lambda %g is not positive definite (LAPACK %d)", lambda,
                         (int)rc);
    }
    /* The lower triangle holds P: B_ij = -P_ij / P_jj, B_jj = 0. */
    float *B = out->B;
    for (uint32_t i = 0; i < na; i++)
        for (uint32_t j = i + 1; j < na; j++) B[(size_t)i * na + j] = B[(size_t)j * na + i];
    float *inv = st_malloc((size_t)na * sizeof *inv);
    if (!inv) {
        st_ease_free(out);
        return st_seterr(err, "out of memory");
    }
    for (uint32_t j = 0; j < na; j++) inv[j] = -1.0f / B[(size_t)j * na + j];
    for (uint32_t i = 0; i < na; i++) {
        float *row = B + (size_t)i * na;
        for (uint32_t j = 0; j < na; j++) row[j] *= inv[j];
        row[i] = 0;
    }
    st_free(inv);
    return 0;
}

void st_ease_free(st_ease *e)
{
    st_free(e->slot);
    st_free(e->segment);
    st_free(e->B);
    memset(e, 0, sizeof *e);
}

void st_ease_score(const st_ease *e, const uint32_t *seen, uint64_t nseen, float *row)
{
    memset(row, 0, (size_t)e->n * sizeof *row);
    uint32_t na = e->active;
    for (uint64_t q = 0; q < nseen; q++) {
        uint32_t s = seen[q];
        if (s >= e->n || e->slot[s] == UINT32_MAX) continue;
        const float *b = e->B + (size_t)e->slot[s] * na;
        for (uint32_t a = 0; a < na; a++) row[e->segment[a]] += b[a];
    }
}
