/* als: the implicit ALS half-steps, exact and conjugate gradient, and the loss.
 *
 * What it is: the per-row solvers, a thread fan-out over fixed chunks of rows,
 * and beside them the naive double-precision reference that tests compare
 * against. What it is not: a general sparse solver, or a place for I/O.
 *
 * The per-row system is A x = b with
 *   A = G + sum_{i in S} cm1_i f_i f_i^T + lambda I,   b = sum_{i in S} (1 + cm1_i) f_i
 * where G = F^T F of the fixed factors F, S the row's nonzeros and cm1 = c - 1.
 * Cholesky forms A (G copied, then one syrk over the gathered sqrt(cm1) f_i in
 * blocks) and factors it. CG only ever multiplies by A:
 *   A p = G p + lambda p + sum_i cm1_i (f_i . p) f_i
 * which costs k^2 + 4k nnz flops, instead of k^2 nnz + k^3 / 3 for forming and
 * factoring A.
 *
 * Popularity-weighted missing data (als.h) changes only the inputs: G is
 * F^T diag(rho) F, b's weight of nonzero i is cm1_i + rho_i (rho passed to the
 * solvers, NULL for 1), and the segment side scales each row's lambda and
 * loss by its own rho. The uniform path passes NULL and computes what it
 * always did.
 */
#include "als.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "rng.h"
#include "util.h"

/* Rows per task: small enough to balance skewed rows across threads, large
 * enough that the task counter is not contended. Fixed, so that results and
 * loss sums never depend on the thread count. */
#define ROWS_PER_TASK 64
#define GATHER_ROWS 64

void st_als_params_default(st_als_params *p)
{
    memset(p, 0, sizeof *p);
    p->factors = 64;
    p->iterations = 15;
    p->lambda = 1.0;
    p->alpha = 10.0;
    p->confidence = ST_CONF_LOG;
    p->eps = 0.0; /* auto */
    p->bm25_k1 = 100.0;
    p->bm25_b = 0.8;
    p->regularization = ST_REG_FREQUENCY;
    p->reg_alpha0 = 0.0;
    p->reg_nu = 1.0;
    p->solver = ST_SOLVER_CG;
    p->cg_steps = 3;
    p->seed = 42;
    p->threads = 0;
    p->init_scale = 0.01;
    p->unobserved = 0.3;
    p->missing = ST_MISSING_UNIFORM;
    p->missing_exponent = 0.5;
}

void st_als_eps_histogram(const float *vals, uint64_t n, uint64_t *hist)
{
    for (uint64_t i = 0; i < n; i++) {
        if (!(vals[i] > 0)) continue;
        double b = floor(16.0 * log2((double)vals[i])) + ST_EPS_BUCKETS / 2;
        hist[b < 0 ? 0 : b >= ST_EPS_BUCKETS ? ST_EPS_BUCKETS - 1 : (int)b]++;
    }
}

double st_als_eps_of(const uint64_t *hist)
{
    uint64_t total = 0, cum = 0;
    for (int b = 0; b < ST_EPS_BUCKETS; b++) total += hist[b];
    if (total == 0) return 1.0;
    for (int b = 0; b < ST_EPS_BUCKETS; b++) {
        cum += hist[b];
        if (2 * cum >= total) return exp2((double)(b - ST_EPS_BUCKETS / 2) / 16.0);
    }
    return 1.0;
}

const char *st_solver_name(st_solver s) { return s == ST_SOLVER_CHOLESKY ? "cholesky" : "cg"; }

const char *st_conf_name(st_conf_scheme c)
{
    switch (c) {
    case ST_CONF_LINEAR: return "linear";
    case ST_CONF_LOG: return "log";
    case ST_CONF_BM25: return "bm25";
    }
    return "?";
}

const char *st_reg_name(st_reg_scheme r) { return r == ST_REG_FREQUENCY ? "frequency" : "plain"; }

const char *st_missing_name(st_missing_scheme m) { return m == ST_MISSING_POPULARITY ? "popularity" : "uniform"; }

void st_als_missing_weights(double exponent, const float *count, uint32_t n, float *rho)
{
    /* f_s = count_s / users: the users cancel between f_s^e and the sum. */
    double sum = 0;
    for (uint32_t s = 0; s < n; s++) sum += count[s] > 0 ? pow((double)count[s], exponent) : 0.0;
    for (uint32_t s = 0; s < n; s++) {
        double f = count[s] > 0 ? pow((double)count[s], exponent) : 0.0;
        rho[s] = sum > 0 ? (float)((double)n * f / sum) : 1.0f;
    }
}

const char *st_als_check(const st_als_params *p)
{
    if (p->factors < 1 || p->factors > 1024) return "--factors must be between 1 and 1024";
    if (p->iterations > 100000) return "--iterations must be at most 100000";
    if (!(p->lambda >= 0) || !isfinite(p->lambda)) return "--lambda must be a finite number >= 0";
    if (!(p->alpha >= 0) || !isfinite(p->alpha)) return "--alpha must be a finite number >= 0";
    if (!(p->eps >= 0) || !isfinite(p->eps)) return "--eps must be a finite number > 0, or 0 for auto";
    if (!(p->bm25_k1 > 0) || !isfinite(p->bm25_k1)) return "--bm25-k1 must be > 0";
    if (!(p->bm25_b >= 0 && p->bm25_b <= 1)) return "--bm25-b must be between 0 and 1";
    if (!(p->reg_alpha0 >= 0) || !isfinite(p->reg_alpha0)) return "--reg-alpha0 must be >= 0";
    if (!isfinite(p->reg_nu) || p->reg_nu < 0 || p->reg_nu > 4) return "--reg-nu must be between 0 and 4";
    if (!(p->unobserved > 0 && p->unobserved <= 1)) return "--unobserved-weight must be above 0 and at most 1";
    if (p->missing != ST_MISSING_UNIFORM && p->missing != ST_MISSING_POPULARITY)
        return "--missing-weight must be uniform or popularity";
    if (!(p->missing_exponent >= 0 && p->missing_exponent <= 2)) return "--missing-exponent must be between 0 and 2";
    if (p->solver == ST_SOLVER_CG && (p->cg_steps < 1 || p->cg_steps > 1024))
        return "--cg-steps must be between 1 and 1024";
    if (p->threads < 0 || p->threads > 256) return "--threads must be between 0 (all CPUs) and 256";
    if (p->lambda == 0 && p->regularization == ST_REG_PLAIN)
        return "--lambda 0 leaves rows of users with few events unsolvable; use a small positive value";
    return NULL;
}

static int thread_count(const st_als_params *p)
{
    int t = p->threads > 0 ? p->threads : st_cpu_count();
    return t < 1 ? 1 : t;
}

/* ---- confidence ---------------------------------------------------------- */

float st_als_conf1(const st_als_params *p, double r, double idf, double length_norm)
{
    double f;
    switch (p->confidence) {
    case ST_CONF_LOG: f = log1p(r / p->eps); break;
    case ST_CONF_BM25: f = r * (p->bm25_k1 + 1.0) / (p->bm25_k1 * length_norm + r) * idf; break;
    default: f = r; break;
    }
    double c = p->alpha * f;
    if (!(c > 0 && isfinite(c))) c = 0;
    /* With unobserved pairs weighted w0, a row's system is w0 G + sum (c - w0)
     * f f^T + lambda I, b = sum c f: divided by w0, the usual form with
     * c / w0 for c and lambda / w0 for lambda (row_lambda), the same
     * solution. */
    if (p->unobserved != 1) c = (1 + c) / p->unobserved - 1;
    return (float)c;
}

void st_als_data_free(st_als_data *d)
{
    st_free(d->cu);
    st_free(d->cs);
    st_free(d->rho);
    d->cu = d->cs = d->rho = NULL;
}

/* Popularity-weighted missing data: rho from the users per segment, then
 * each nonzero's c / w0 - 1 into the forms of als.h: c / w0 - rho_s by user,
 * c / w_s - 1 by segment (a rho of exactly 1 leaves a value as it was). */
static int apply_missing_weights(const st_als_params *p, st_als_data *d, char *err)
{
    const st_csr *a = d->by_user, *t = d->by_segment;
    d->rho = st_malloc(((size_t)t->rows + 1) * sizeof *d->rho);
    if (!d->rho) return st_seterr(err, "out of memory for the missing-data weights");
    for (uint32_t s = 0; s < t->rows; s++) d->rho[s] = (float)(t->indptr[s + 1] - t->indptr[s]);
    st_als_missing_weights(p->missing_exponent, d->rho, t->rows, d->rho);
    for (uint64_t q = 0; q < a->nnz; q++) d->cu[q] = st_als_user_coef(d->cu[q], d->rho, a->indices[q]);
    for (uint32_t s = 0; s < t->rows; s++) {
        float r = d->rho[s];
        if (r == 1.0f) continue;
        for (uint64_t q = t->indptr[s]; q < t->indptr[s + 1]; q++) d->cs[q] = (1.0f + d->cs[q]) / r - 1.0f;
    }
    return 0;
}

int st_als_confidence(const st_als_params *p, const st_interactions *x, st_als_data *d, char *err)
{
    const st_csr *a = &x->by_user, *t = &x->by_segment;
    d->by_user = a;
    d->by_segment = t;
    d->rho = NULL;
    d->cu = st_malloc(a->nnz * sizeof *d->cu);
    d->cs = st_malloc(t->nnz * sizeof *d->cs);
    double *idf = NULL, *norm = NULL;
    if (p->confidence == ST_CONF_BM25) {
        idf = st_malloc(((size_t)a->cols + 1) * sizeof *idf);
        norm = st_malloc(((size_t)a->rows + 1) * sizeof *norm);
    }
    if (!d->cu || !d->cs || (p->confidence == ST_CONF_BM25 && (!idf || !norm))) {
        st_free(idf);
        st_free(norm);
        st_als_data_free(d);
        return st_seterr(err, "out of memory for the confidence values");
    }
    if (idf) {
        /* idf of a segment from how many users have it; length norm of a user
         * from the sum of their values against the mean over users. */
        double total = 0;
        for (uint32_t s = 0; s < a->cols; s++)
            idf[s] = log((double)a->rows) - log1p((double)(t->indptr[s + 1] - t->indptr[s]));
        for (uint32_t u = 0; u < a->rows; u++) {
            double sum = 0;
            for (uint64_t q = a->indptr[u]; q < a->indptr[u + 1]; q++) sum += a->data[q];
            norm[u] = sum;
            total += sum;
        }
        double mean = a->rows ? total / a->rows : 1.0;
        if (mean <= 0) mean = 1.0;
        for (uint32_t u = 0; u < a->rows; u++) norm[u] = (1.0 - p->bm25_b) + p->bm25_b * norm[u] / mean;
    }
    /* cu in CSR order; cs in CSC order, placed through a cursor per segment
     * while walking the CSR by user (CSC entries of a segment are sorted by
     * user, so the walk fills them in order) */
    uint64_t *cursor = st_malloc(((size_t)t->rows + 1) * sizeof *cursor);
    if (!cursor) {
        st_free(idf);
        st_free(norm);
        st_als_data_free(d);
        return st_seterr(err, "out of memory for the confidence values");
    }
    memcpy(cursor, t->indptr, (size_t)t->rows * sizeof *cursor);
    for (uint32_t u = 0; u < a->rows; u++) {
        for (uint64_t q = a->indptr[u]; q < a->indptr[u + 1]; q++) {
            uint32_t s = a->indices[q];
            float c = st_als_conf1(p, a->data[q], idf ? idf[s] : 0, norm ? norm[u] : 1);
            d->cu[q] = c;
            d->cs[cursor[s]++] = c;
        }
    }
    st_free(cursor);
    st_free(idf);
    st_free(norm);
    /* Exponent 0 weighs every segment alike: the uniform path itself. */
    if (p->missing == ST_MISSING_POPULARITY && p->missing_exponent > 0 && apply_missing_weights(p, d, err) != 0) {
        st_als_data_free(d);
        return -1;
    }
    return 0;
}

/* ---- small dense kernels ------------------------------------------------- */

/* Scalar kernels for any k. */
static inline float dot(const float *restrict a, const float *restrict b, uint32_t k)
{
    float s = 0;
    for (uint32_t i = 0; i < k; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float a, const float *restrict x, float *restrict y, uint32_t k)
{
    for (uint32_t i = 0; i < k; i++) y[i] += a * x[i];
}

/* out = G v for a full symmetric k x k G. */
static inline void symv(const float *restrict G, const float *restrict v, float *restrict out, uint32_t k)
{
    for (uint32_t i = 0; i < k; i++) out[i] = dot(G + (size_t)i * k, v, k);
}

/* Vector kernels for k a multiple of 8, written with GCC vector extensions
 * (AVX with -march on x86-64, SSE pairs otherwise). Sums are taken in a fixed
 * order, so results are the same on every run. Why not BLAS: at k = 64 an
 * sdot or saxpy call costs more in overhead than the arithmetic it does. */
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
#define VLOAD(p) (*(const v8f_u *)(const void *)(p))
#define VSTORE(p, v) (*(v8f_u *)(void *)(p) = (v))

static inline float hsum8(v8f v)
{
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline __attribute__((always_inline)) float vdot(const float *a, const float *b, uint32_t k)
{
    v8f s0 = {0}, s1 = {0};
    uint32_t i = 0;
    for (; i + 16 <= k; i += 16) {
        s0 += VLOAD(a + i) * VLOAD(b + i);
        s1 += VLOAD(a + i + 8) * VLOAD(b + i + 8);
    }
    if (i < k) s0 += VLOAD(a + i) * VLOAD(b + i);
    return hsum8(s0 + s1);
}

static inline __attribute__((always_inline)) void vaxpy(float a, const float *x, float *y, uint32_t k)
{
    v8f av = a - (v8f){0};
    for (uint32_t i = 0; i < k; i += 8) VSTORE(y + i, VLOAD(y + i) + av * VLOAD(x + i));
}

/* out = G v as a sum of G's rows (G is symmetric): no horizontal sums. */
static inline __attribute__((always_inline)) void vsymv(const float *G, const float *v, float *out, uint32_t k)
{
    for (uint32_t i = 0; i < k; i += 8) VSTORE(out + i, (v8f){0});
    for (uint32_t j = 0; j < k; j++) vaxpy(v[j], G + (size_t)j * k, out, k);
}

void st_als_gram(const float *F, uint64_t r, uint32_t k, float *G)
{
    memset(G, 0, (size_t)k * k * sizeof *G);
    if (r > 0) {
        /* F is r x k row-major, that is k x r column-major: G = F^T F. */
        cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, (blasint)k, (blasint)r, 1.0f, F, (blasint)k, 0.0f, G,
                    (blasint)k);
    }
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < i; j++) G[(size_t)j * k + i] = G[(size_t)i * k + j];
}

int st_als_gram_weighted(const float *F, uint64_t r, uint32_t k, const float *w, float *G)
{
    if (!w) {
        st_als_gram(F, r, k, G);
        return 0;
    }
    enum { BLOCK = 256 };
    float *M = st_malloc((size_t)BLOCK * k * sizeof *M);
    if (!M) return -1;
    memset(G, 0, (size_t)k * k * sizeof *G);
    /* G += M^T M over blocks of rows sqrt(w_i) f_i. */
    for (uint64_t r0 = 0; r0 < r; r0 += BLOCK) {
        uint64_t nb = r - r0 < BLOCK ? r - r0 : BLOCK;
        for (uint64_t i = 0; i < nb; i++) {
            float sw = sqrtf(w[r0 + i] > 0 ? w[r0 + i] : 0.0f);
            for (uint32_t j = 0; j < k; j++) M[i * k + j] = sw * F[(r0 + i) * k + j];
        }
        cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, (blasint)k, (blasint)nb, 1.0f, M, (blasint)k, 1.0f, G,
                    (blasint)k);
    }
    st_free(M);
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < i; j++) G[(size_t)j * k + i] = G[(size_t)i * k + j];
    return 0;
}

static double row_lambda(const st_als_params *p, uint64_t nnz, uint32_t cols)
{
    double w0 = p->unobserved > 0 ? p->unobserved : 1;
    if (p->regularization == ST_REG_FREQUENCY)
        return p->lambda * pow((double)nnz + p->reg_alpha0 * cols, p->reg_nu) / w0;
    return p->lambda / w0;
}

double st_als_row_lambda(const st_als_params *p, uint64_t nnz, uint32_t cols) { return row_lambda(p, nnz, cols); }

/* ---- per-row solvers ----------------------------------------------------- */

uint64_t st_als_foldin_scratch(uint32_t k) { return (uint64_t)k * k + k + (uint64_t)GATHER_ROWS * k; }

/* A += sign sum a_q f_q f_q^T over the nonzeros whose a has that sign, as
 * syrk calls over the rows sqrt(|a_q|) f_q gathered into M in blocks. Only
 * popularity-weighted systems have negative a's (their A stays positive
 * definite: it is a sum of positive weights over every pair). */
static int add_outer(uint32_t k, const float *F, const uint32_t *idx, const float *a, uint64_t nnz, float sign,
                     float *A, float *M)
{
    int other = 0;
    uint64_t q = 0;
    while (q < nnz) {
        uint32_t g = 0;
        for (; q < nnz && g < GATHER_ROWS; q++) {
            if (!(sign * a[q] >= 0)) {
                other = 1;
                continue;
            }
            const float *f = F + (size_t)idx[q] * k;
            float sc = sqrtf(sign * a[q]);
            float *m = M + (size_t)g++ * k;
            for (uint32_t i = 0; i < k; i++) m[i] = sc * f[i];
        }
        /* A += sign M^T M over the gathered rows (M is g x k row-major). */
        if (g > 0)
            cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)k, (blasint)g, sign, M, (blasint)k, 1.0f,
                        A, (blasint)k);
    }
    return other;
}

void st_als_row_system(uint32_t k, const float *F, const float *G, double lambda, const uint32_t *idx,
                       const float *a, uint64_t nnz, float *A, float *M)
{
    memcpy(A, G, (size_t)k * k * sizeof *A);
    for (uint32_t i = 0; i < k; i++) A[(size_t)i * k + i] += (float)lambda;
    if (add_outer(k, F, idx, a, nnz, 1.0f, A, M)) add_outer(k, F, idx, a, nnz, -1.0f, A, M);
}

/* Exact solve: A = G + sum a_q f f^T + lambda I, b = sum (a_q + rho_q) f_q
 * with rho_q = rho[idx[q]], or 1 when rho is NULL. scratch: A (k*k), b (k),
 * gather (GATHER_ROWS*k). */
static int solve_cholesky(uint32_t k, const float *F, const float *G, const float *rho, double lambda,
                          const uint32_t *idx, const float *cm1, uint64_t nnz, float *x, float *scratch)
{
    if (nnz == 0) {
        memset(x, 0, k * sizeof *x);
        return 0;
    }
    float *A = scratch, *b = A + (size_t)k * k, *M = b + k;
    memset(b, 0, k * sizeof *b);
    for (uint64_t q = 0; q < nnz; q++) axpy(cm1[q] + (rho ? rho[idx[q]] : 1.0f), F + (size_t)idx[q] * k, b, k);
    st_als_row_system(k, F, G, lambda, idx, cm1, nnz, A, M);
    if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)k, A, (lapack_int)k) != 0) return -1;
    if (LAPACKE_spotrs_work(LAPACK_COL_MAJOR, 'L', (lapack_int)k, 1, A, (lapack_int)k, b, (lapack_int)k) != 0)
        return -1;
    memcpy(x, b, k * sizeof *x);
    return 0;
}

/* A few conjugate-gradient steps from the current x. scratch: r, p, Ap (3k).
 * This scalar version serves any k; cg_body below is the same algorithm with
 * vector kernels. */
static void solve_cg(uint32_t k, const float *F, const float *G, const float *rho, double lambda,
                     const uint32_t *idx, const float *cm1, uint64_t nnz, float *x, uint32_t steps, float *scratch)
{
    if (nnz == 0) {
        memset(x, 0, k * sizeof *x);
        return;
    }
    float *r = scratch, *p = r + k, *Ap = p + k;
    float lam = (float)lambda;
    /* r = b - A x */
    symv(G, x, r, k);
    for (uint32_t i = 0; i < k; i++) r[i] = -r[i] - lam * x[i];
    for (uint64_t q = 0; q < nnz; q++) {
        const float *f = F + (size_t)idx[q] * k;
        float c = cm1[q];
        axpy((c + (rho ? rho[idx[q]] : 1.0f)) - c * dot(f, x, k), f, r, k);
    }
    memcpy(p, r, k * sizeof *p);
    float rs = dot(r, r, k);
    for (uint32_t s = 0; s < steps; s++) {
        if (rs < 1e-20f) break;
        symv(G, p, Ap, k);
        for (uint32_t i = 0; i < k; i++) Ap[i] += lam * p[i];
        for (uint64_t q = 0; q < nnz; q++) {
            const float *f = F + (size_t)idx[q] * k;
            axpy(cm1[q] * dot(f, p, k), f, Ap, k);
        }
        float pAp = dot(p, Ap, k);
        if (!(pAp > 0)) break;
        float a = rs / pAp;
        axpy(a, p, x, k);
        axpy(-a, Ap, r, k);
        float rsn = dot(r, r, k);
        float beta = rsn / rs;
        for (uint32_t i = 0; i < k; i++) p[i] = r[i] + beta * p[i];
        rs = rsn;
    }
}

/* Rows of the fixed factors are read in index order, which the hardware
 * cannot predict: ask for a row a few nonzeros before it is needed. */
#define PREFETCH_AHEAD 6
#define CG_BLOCK 256
static inline __attribute__((always_inline)) void prefetch_row(const float *f, uint32_t k)
{
    for (uint32_t i = 0; i < k; i += 16) __builtin_prefetch(f + i, 0, 3);
}

/* out += sum_q (base_q + scale_q (f_q . v)) f_q over a row's nonzeros, where
 * f_q is row idx[q] of F; k % 8 == 0, k <= 128. base = NULL means 0. With k a
 * constant the loops unroll and v and out stay in registers for the whole
 * row: per nonzero one pass over f_q for the dot and one for the update. */
static inline __attribute__((always_inline)) void nnz_pass(uint32_t k, const float *F, const uint32_t *idx,
                                                            const float *base, const float *scale, uint64_t nnz,
                                                            const float *v, float *out)
{
    enum { MAXV = 16 };
    v8f vv[MAXV], acc[MAXV];
    uint32_t nv = k / 8;
    for (uint32_t j = 0; j < nv; j++) {
        vv[j] = VLOAD(v + 8 * j);
        acc[j] = VLOAD(out + 8 * j);
    }
    for (uint64_t q = 0; q < nnz; q++) {
        const float *f = F + (size_t)idx[q] * k;
        if (q + PREFETCH_AHEAD < nnz) prefetch_row(F + (size_t)idx[q + PREFETCH_AHEAD] * k, k);
        v8f d0 = {0}, d1 = {0};
        for (uint32_t j = 0; j + 1 < nv; j += 2) {
            d0 += VLOAD(f + 8 * j) * vv[j];
            d1 += VLOAD(f + 8 * j + 8) * vv[j + 1];
        }
        if (nv & 1) d0 += VLOAD(f + 8 * (nv - 1)) * vv[nv - 1];
        float coef = scale[q] * hsum8(d0 + d1) + (base ? base[q] : 0.0f);
        v8f cv = coef - (v8f){0};
        for (uint32_t j = 0; j < nv; j++) acc[j] += cv * VLOAD(f + 8 * j);
    }
    for (uint32_t j = 0; j < nv; j++) VSTORE(out + 8 * j, acc[j]);
}

/* The CG of solve_cg with vector kernels; k % 8 == 0, k <= 128. Inlined into
 * one function per common rank so the compiler sees k as a constant.
 * scratch: r, p, Ap (3k). */
static inline __attribute__((always_inline)) void cg_body(uint32_t k, const float *F, const float *G,
                                                           const float *rho, float lam, const uint32_t *idx,
                                                           const float *cm1, uint64_t nnz, float *x, uint32_t steps,
                                                           float *scratch)
{
    if (nnz == 0) {
        memset(x, 0, k * sizeof *x);
        return;
    }
    float *r = scratch, *p = r + k, *Ap = p + k;
    v8f lv = lam - (v8f){0};
    /* r = b - A x = sum_q ((c_q + rho_q) - c_q (f_q . x)) f_q - G x - lambda x,
     * rho_q = 1 unless the model weighs missing data by popularity */
    vsymv(G, x, r, k);
    for (uint32_t i = 0; i < k; i += 8) VSTORE(r + i, -VLOAD(r + i) - lv * VLOAD(x + i));
    for (uint64_t q0 = 0; q0 < nnz; q0 += CG_BLOCK) {
        /* c + rho and -c for a block of nonzeros, so one kernel serves both passes. */
        float one_plus[CG_BLOCK], minus[CG_BLOCK];
        uint64_t nb = nnz - q0 < CG_BLOCK ? nnz - q0 : CG_BLOCK;
        if (rho) {
            for (uint64_t q = 0; q < nb; q++) one_plus[q] = cm1[q0 + q] + rho[idx[q0 + q]];
        } else {
            for (uint64_t q = 0; q < nb; q++) one_plus[q] = 1.0f + cm1[q0 + q];
        }
        for (uint64_t q = 0; q < nb; q++) minus[q] = -cm1[q0 + q];
        nnz_pass(k, F, idx + q0, one_plus, minus, nb, x, r);
    }
    memcpy(p, r, k * sizeof *p);
    float rs = vdot(r, r, k);
    for (uint32_t s = 0; s < steps; s++) {
        if (rs < 1e-20f) break;
        /* Ap = G p + lambda p + sum_q c_q (f_q . p) f_q */
        vsymv(G, p, Ap, k);
        for (uint32_t i = 0; i < k; i += 8) VSTORE(Ap + i, VLOAD(Ap + i) + lv * VLOAD(p + i));
        nnz_pass(k, F, idx, NULL, cm1, nnz, p, Ap);
        float pAp = vdot(p, Ap, k);
        if (!(pAp > 0)) break;
        float a = rs / pAp;
        vaxpy(a, p, x, k);
        vaxpy(-a, Ap, r, k);
        float rsn = vdot(r, r, k);
        v8f bv = rsn / rs - (v8f){0};
        for (uint32_t i = 0; i < k; i += 8) VSTORE(p + i, VLOAD(r + i) + bv * VLOAD(p + i));
        rs = rsn;
    }
}

#define CG_FOR(K)                                                                                           \
    static void solve_cg_##K(const float *F, const float *G, const float *rho, float lam, const uint32_t *idx,  \
                             const float *cm1, uint64_t nnz, float *x, uint32_t steps, float *scratch)         \
    {                                                                                                       \
        cg_body(K, F, G, rho, lam, idx, cm1, nnz, x, steps, scratch);                                       \
    }
CG_FOR(16)
CG_FOR(32)
CG_FOR(64)
CG_FOR(128)

static void solve_cg_v(uint32_t k, const float *F, const float *G, const float *rho, float lam, const uint32_t *idx,
                       const float *cm1, uint64_t nnz, float *x, uint32_t steps, float *scratch)
{
    cg_body(k, F, G, rho, lam, idx, cm1, nnz, x, steps, scratch);
}

/* Picks the fastest CG for k. */
static void solve_cg_any(uint32_t k, const float *F, const float *G, const float *rho, double lambda,
                         const uint32_t *idx, const float *cm1, uint64_t nnz, float *x, uint32_t steps, float *scratch)
{
    float lam = (float)lambda;
    switch (k) {
    case 16: solve_cg_16(F, G, rho, lam, idx, cm1, nnz, x, steps, scratch); return;
    case 32: solve_cg_32(F, G, rho, lam, idx, cm1, nnz, x, steps, scratch); return;
    case 64: solve_cg_64(F, G, rho, lam, idx, cm1, nnz, x, steps, scratch); return;
    case 128: solve_cg_128(F, G, rho, lam, idx, cm1, nnz, x, steps, scratch); return;
    default:
        if (k % 8 == 0 && k <= 128) solve_cg_v(k, F, G, rho, lam, idx, cm1, nnz, x, steps, scratch);
        else solve_cg(k, F, G, rho, lambda, idx, cm1, nnz, x, steps, scratch);
    }
}

int st_als_foldin(uint32_t k, const float *F, const float *G, double lambda, const uint32_t *idx,
                  const float *cm1, uint32_t nnz, float *x, float *scratch)
{
    return solve_cholesky(k, F, G, NULL, lambda, idx, cm1, nnz, x, scratch);
}

int st_als_foldin_weighted(uint32_t k, const float *F, const float *G, const float *rho, double lambda,
                           const uint32_t *idx, const float *a, uint32_t nnz, float *x, float *scratch)
{
    return solve_cholesky(k, F, G, rho, lambda, idx, a, nnz, x, scratch);
}

/* ---- half-steps ---------------------------------------------------------- */

/* The missing-data weights of one half-step: rho of the fixed rows (the
 * user side, indexed by a nonzero's column) or of the rows solved (the
 * segment side: each row's system is divided by its own rho). */
typedef struct {
    const float *fixed;
    const float *rows;
} side_weights;

typedef struct {
    const st_als_params *p;
    const st_csr *a;
    const float *c, *fixed, *G;
    side_weights w;
    float *rows;
    float *scratch; /* per thread */
    uint64_t scratch_per_thread;
    double *loss; /* per task, or NULL: the rows' share of the objective */
    atomic_int failed;
} half_ctx;

/* The part of the objective that belongs to row x: its nonzeros'
 * c (1 - s)^2 - s^2 (the all-pairs s^2 term is added once, from the Gram
 * matrices) and its regularisation. The fixed rows it reads were just used
 * by the solve, so they are still in cache. */
static double row_loss(const float *F, const float *rho, const uint32_t *idx, const float *cm1, uint64_t nnz,
                       const float *x, uint32_t k, double lam)
{
    double sum = 0;
    for (uint64_t q = 0; q < nnz; q++) {
        const float *f = F + (size_t)idx[q] * k;
        double sc = k % 8 == 0 ? vdot(f, x, k) : dot(f, x, k);
        double w = rho ? rho[idx[q]] : 1.0, c = cm1[q] + w;
        sum += c * (1 - sc) * (1 - sc) - w * sc * sc;
    }
    return sum + lam * (k % 8 == 0 ? vdot(x, x, k) : dot(x, x, k));
}

static void half_task(void *vctx, uint64_t task, int thread)
{
    half_ctx *h = vctx;
    const st_csr *a = h->a;
    uint32_t k = h->p->factors;
    float *scratch = h->scratch + (size_t)thread * h->scratch_per_thread;
    uint64_t r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < a->rows ? r0 + ROWS_PER_TASK : a->rows;
    double loss = 0;
    const float *rho = h->w.fixed;
    for (uint64_t r = r0; r < r1; r++) {
        uint64_t q0 = a->indptr[r], nnz = a->indptr[r + 1] - q0;
        /* A row weighted rho_r solves its system divided by rho_r; its share
         * of the objective is multiplied back. */
        double scale = h->w.rows && h->w.rows[r] > 0 ? h->w.rows[r] : 1.0;
        double lam = row_lambda(h->p, nnz, a->cols) / scale;
        float *x = h->rows + (size_t)r * k;
        if (h->p->solver == ST_SOLVER_CHOLESKY) {
            if (solve_cholesky(k, h->fixed, h->G, rho, lam, a->indices + q0, h->c + q0, nnz, x, scratch) != 0)
                atomic_store(&h->failed, 1);
        } else {
            solve_cg_any(k, h->fixed, h->G, rho, lam, a->indices + q0, h->c + q0, nnz, x, h->p->cg_steps, scratch);
        }
        if (h->loss) loss += scale * row_loss(h->fixed, rho, a->indices + q0, h->c + q0, nnz, x, k, lam);
    }
    if (h->loss) h->loss[task] = loss;
}

static int solve_rows(const st_als_params *p, const st_csr *a, const float *c, const float *F, const float *G,
                      side_weights w, float *rows, double *loss_out, char *err)
{
    uint32_t k = p->factors;
    int threads = thread_count(p);
    openblas_set_num_threads(1);
    half_ctx h = {.p = p, .a = a, .c = c, .fixed = F, .G = G, .w = w, .rows = rows};
    atomic_init(&h.failed, 0);
    h.scratch_per_thread = st_align_up(st_als_foldin_scratch(k), 16);
    uint64_t tasks = ((uint64_t)a->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    h.scratch = st_aligned_alloc(64, (size_t)threads * h.scratch_per_thread * sizeof(float));
    h.loss = loss_out ? st_calloc(tasks ? tasks : 1, sizeof *h.loss) : NULL;
    if (!h.scratch || (loss_out && !h.loss)) {
        st_free(h.scratch);
        st_free(h.loss);
        return st_seterr(err, "out of memory for solver scratch");
    }
    st_parallel_run(threads, tasks, half_task, &h);
    if (loss_out) {
        double sum = 0;
        for (uint64_t i = 0; i < tasks; i++) sum += h.loss[i]; /* in task order: thread-independent */
        *loss_out = sum;
    }
    st_free(h.scratch);
    st_free(h.loss);
    if (atomic_load(&h.failed))
        return st_seterr(err, "a row's system was not positive definite (try a larger --lambda)");
    return 0;
}

int st_als_solve_rows(const st_als_params *p, const st_csr *a, const float *c, const float *F, const float *G,
                      float *rows, double *loss_out, char *err)
{
    side_weights none = {NULL, NULL};
    return solve_rows(p, a, c, F, G, none, rows, loss_out, err);
}

/* One half-step; with loss_out, also the rows' share of the objective, and
 * with G_out, the Gram matrix of the fixed factors (weighted by w.fixed). */
static int half_step(const st_als_params *p, const st_csr *a, const float *c, const float *fixed, side_weights w,
                     float *rows, double *loss_out, float *G_out, char *err)
{
    uint32_t k = p->factors;
    float *G = G_out ? G_out : st_aligned_alloc(64, (size_t)k * k * sizeof *G);
    if (!G) return st_seterr(err, "out of memory for solver scratch");
    openblas_set_num_threads(1);
    int rc = st_als_gram_weighted(fixed, a->cols, k, w.fixed, G);
    if (rc != 0) st_seterr(err, "out of memory for solver scratch");
    else rc = solve_rows(p, a, c, fixed, G, w, rows, loss_out, err);
    if (G != G_out) st_free(G);
    return rc;
}

/* The weights of each side of an iteration over d. */
static side_weights user_side(const st_als_data *d) { return (side_weights){d->rho, NULL}; }
static side_weights segment_side(const st_als_data *d) { return (side_weights){NULL, d->rho}; }

int st_als_half_step(const st_als_params *p, const st_csr *a, const float *c, const float *fixed, float *rows,
                     char *err)
{
    side_weights none = {NULL, NULL};
    return half_step(p, a, c, fixed, none, rows, NULL, NULL, err);
}

int st_als_data_half_step(const st_als_params *p, const st_als_data *d, int segments, const float *fixed,
                          float *rows, char *err)
{
    if (segments) return half_step(p, d->by_segment, d->cs, fixed, segment_side(d), rows, NULL, NULL, err);
    return half_step(p, d->by_user, d->cu, fixed, user_side(d), rows, NULL, NULL, err);
}

/* ---- loss ---------------------------------------------------------------- */

typedef struct {
    const st_als_params *p;
    const st_csr *a;
    const float *c, *X, *Y, *rho;
    double *partial; /* per task */
} loss_ctx;

static void loss_task(void *vctx, uint64_t task, int thread)
{
    (void)thread;
    loss_ctx *l = vctx;
    const st_csr *a = l->a;
    uint32_t k = l->p->factors;
    uint64_t r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < a->rows ? r0 + ROWS_PER_TASK : a->rows;
    double sum = 0;
    for (uint64_t r = r0; r < r1; r++) {
        const float *x = l->X + (size_t)r * k;
        uint64_t q0 = a->indptr[r], q1 = a->indptr[r + 1];
        for (uint64_t q = q0; q < q1; q++) {
            const float *y = l->Y + (size_t)a->indices[q] * k;
            double s = k % 8 == 0 ? vdot(x, y, k) : dot(x, y, k);
            double w = l->rho ? l->rho[a->indices[q]] : 1.0, c = l->c[q] + w;
            sum += c * (1 - s) * (1 - s) - w * s * s;
        }
        sum += row_lambda(l->p, q1 - q0, a->cols) * dot(x, x, k);
    }
    l->partial[task] = sum;
}

int st_als_loss(const st_als_params *p, const st_als_data *d, const float *X, const float *Y, double *loss,
                double *weight, char *err)
{
    const st_csr *a = d->by_user, *t = d->by_segment;
    uint32_t k = p->factors;
    uint64_t tasks = ((uint64_t)a->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    double *partial = st_calloc(tasks ? tasks : 1, sizeof *partial);
    float *GX = st_malloc((size_t)k * k * sizeof *GX), *GY = st_malloc((size_t)k * k * sizeof *GY);
    if (!partial || !GX || !GY) {
        st_free(partial);
        st_free(GX);
        st_free(GY);
        return st_seterr(err, "out of memory computing the loss");
    }
    openblas_set_num_threads(1);
    loss_ctx l = {.p = p, .a = a, .c = d->cu, .X = X, .Y = Y, .rho = d->rho, .partial = partial};
    st_parallel_run(thread_count(p), tasks, loss_task, &l);
    double total = 0;
    for (uint64_t i = 0; i < tasks; i++) total += partial[i];
    /* Every pair's (x . y)^2 with weight rho_s: sum_ab (X^T X)_ab (Y^T R Y)_ab. */
    st_als_gram(X, a->rows, k, GX);
    if (st_als_gram_weighted(Y, a->cols, k, d->rho, GY) != 0) {
        st_free(partial);
        st_free(GX);
        st_free(GY);
        return st_seterr(err, "out of memory computing the loss");
    }
    for (size_t i = 0; i < (size_t)k * k; i++) total += (double)GX[i] * GY[i];
    for (uint32_t s = 0; s < t->rows; s++) {
        const float *y = Y + (size_t)s * k;
        total += row_lambda(p, t->indptr[s + 1] - t->indptr[s], t->cols) * dot(y, y, k);
    }
    double w = (double)a->rows * a->cols;
    for (uint64_t q = 0; q < a->nnz; q++) w += d->cu[q];
    st_free(partial);
    st_free(GX);
    st_free(GY);
    *loss = total;
    if (weight) *weight = w;
    return 0;
}

/* ---- iteration ----------------------------------------------------------- */

void st_als_init(const st_als_params *p, uint32_t m, uint32_t n, float *X, float *Y)
{
    uint32_t k = p->factors;
    float s = (float)p->init_scale;
    for (uint32_t r = 0; r < m; r++) {
        st_rng g = st_rng_for(p->seed, 2 * (uint64_t)r);
        for (uint32_t i = 0; i < k; i++) X[(size_t)r * k + i] = s * (float)(2 * st_rng_uniform(&g) - 1);
    }
    for (uint32_t r = 0; r < n; r++) {
        st_rng g = st_rng_for(p->seed, 2 * (uint64_t)r + 1);
        for (uint32_t i = 0; i < k; i++) Y[(size_t)r * k + i] = s * (float)(2 * st_rng_uniform(&g) - 1);
    }
}

void st_als_init_row(const st_als_params *p, const char *id, size_t len, int segment, float *row)
{
    /* The stream is a function of the id alone, so a row starts the same
     * whatever index it gets: in any input order, and on any MPI rank. */
    st_rng g = st_rng_for(p->seed, st_idmap_hash(id, len) ^ (segment ? 0x5851f42d4c957f2dULL : 0));
    float s = (float)p->init_scale;
    for (uint32_t i = 0; i < p->factors; i++) row[i] = s * (float)(2 * st_rng_uniform(&g) - 1);
}

void st_als_init_ids(const st_als_params *p, const st_idmap *users, const st_idmap *segments, float *X, float *Y)
{
    uint32_t k = p->factors;
    size_t len;
    for (uint32_t r = 0; r < users->count; r++) {
        const char *id = st_idmap_name(users, r, &len);
        st_als_init_row(p, id, len, 0, X + (size_t)r * k);
    }
    for (uint32_t r = 0; r < segments->count; r++) {
        const char *id = st_idmap_name(segments, r, &len);
        st_als_init_row(p, id, len, 1, Y + (size_t)r * k);
    }
}

double st_als_weight(const st_als_data *d)
{
    double w = (double)d->by_user->rows * d->by_user->cols;
    for (uint64_t q = 0; q < d->by_user->nnz; q++) w += d->cu[q];
    return w;
}

int st_als_iterate(const st_als_params *p, const st_als_data *d, float *X, float *Y, double *loss, char *err)
{
    if (!loss) {
        if (st_als_data_half_step(p, d, 0, Y, X, err) != 0) return -1;
        return st_als_data_half_step(p, d, 1, X, Y, err);
    }
    /* The objective after the iteration, without a separate pass: the segment
     * half-step adds up its rows' share while their users' rows are in cache
     * and leaves X^T X behind; then the users' regularisation and the
     * all-pairs term sum_ab (X^T X)_ab (Y^T Y)_ab. */
    uint32_t k = p->factors;
    const st_csr *a = d->by_user;
    float *GX = st_aligned_alloc(64, (size_t)k * k * sizeof *GX), *GY = st_aligned_alloc(64, (size_t)k * k * sizeof *GY);
    if (!GX || !GY) {
        st_free(GX);
        st_free(GY);
        return st_seterr(err, "out of memory");
    }
    double seg_part = 0;
    int rc = half_step(p, d->by_user, d->cu, Y, user_side(d), X, NULL, NULL, err);
    if (rc == 0) rc = half_step(p, d->by_segment, d->cs, X, segment_side(d), Y, &seg_part, GX, err);
    if (rc == 0 && st_als_gram_weighted(Y, a->cols, k, d->rho, GY) != 0) rc = st_seterr(err, "out of memory");
    if (rc == 0) {
        double total = seg_part;
        for (size_t i = 0; i < (size_t)k * k; i++) total += (double)GX[i] * GY[i];
        for (uint32_t u = 0; u < a->rows; u++) {
            const float *x = X + (size_t)u * k;
            total += row_lambda(p, a->indptr[u + 1] - a->indptr[u], a->cols) * dot(x, x, k);
        }
        *loss = total;
    }
    st_free(GX);
    st_free(GY);
    return rc;
}

/* ---- the naive reference ------------------------------------------------- */

int st_als_reference_solve(double *A, double *b, uint32_t k)
{
    /* Plain Cholesky A = L L^T in place (lower), then two triangular solves. */
    for (uint32_t j = 0; j < k; j++) {
        double s = A[j * k + j];
        for (uint32_t l = 0; l < j; l++) s -= A[j * k + l] * A[j * k + l];
        if (s <= 0) return -1;
        A[j * k + j] = sqrt(s);
        for (uint32_t i = j + 1; i < k; i++) {
            double t = A[i * k + j];
            for (uint32_t l = 0; l < j; l++) t -= A[i * k + l] * A[j * k + l];
            A[i * k + j] = t / A[j * k + j];
        }
    }
    for (uint32_t i = 0; i < k; i++) {
        double t = b[i];
        for (uint32_t l = 0; l < i; l++) t -= A[i * k + l] * b[l];
        b[i] = t / A[i * k + i];
    }
    for (uint32_t i = k; i-- > 0;) {
        double t = b[i];
        for (uint32_t l = i + 1; l < k; l++) t -= A[l * k + i] * b[l];
        b[i] = t / A[i * k + i];
    }
    return 0;
}

int st_als_reference_half_step(const st_als_params *p, const st_csr *a, const float *c, const float *fixed,
                               uint32_t n_fixed, float *rows)
{
    uint32_t k = p->factors;
    double *A = st_malloc((size_t)k * k * sizeof *A), *b = st_malloc(k * sizeof *b);
    double *cfull = st_malloc(((size_t)n_fixed + 1) * sizeof *cfull);
    double *pfull = st_malloc(((size_t)n_fixed + 1) * sizeof *pfull);
    int rc = -1;
    if (!A || !b || !cfull || !pfull) goto out;
    for (uint32_t r = 0; r < a->rows; r++) {
        /* Dense confidence and preference of this row over every fixed row. */
        for (uint32_t j = 0; j < n_fixed; j++) {
            cfull[j] = 1.0;
            pfull[j] = 0.0;
        }
        uint64_t nnz = a->indptr[r + 1] - a->indptr[r];
        for (uint64_t q = a->indptr[r]; q < a->indptr[r + 1]; q++) {
            cfull[a->indices[q]] = 1.0 + c[q];
            pfull[a->indices[q]] = 1.0;
        }
        double lam = row_lambda(p, nnz, a->cols);
        for (uint32_t i = 0; i < k; i++) {
            b[i] = 0;
            for (uint32_t j = 0; j < k; j++) A[i * k + j] = i == j ? lam : 0.0;
        }
        for (uint32_t j = 0; j < n_fixed; j++) {
            const float *f = fixed + (size_t)j * k;
            for (uint32_t i = 0; i < k; i++) {
                b[i] += cfull[j] * pfull[j] * f[i];
                for (uint32_t l = 0; l < k; l++) A[i * k + l] += cfull[j] * f[i] * f[l];
            }
        }
        if (nnz == 0) {
            for (uint32_t i = 0; i < k; i++) rows[(size_t)r * k + i] = 0;
            continue;
        }
        if (st_als_reference_solve(A, b, k) != 0) goto out;
        for (uint32_t i = 0; i < k; i++) rows[(size_t)r * k + i] = (float)b[i];
    }
    rc = 0;
out:
    st_free(A);
    st_free(b);
    st_free(cfull);
    st_free(pfull);
    return rc;
}
