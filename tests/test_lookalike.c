/* Tests of LOOKALIKE's query (lookalike.c) against a naive dense reference:
 * U^T U summed row by row in double (float32 and int8 rows, whole and split
 * like shards), and the seeds' segment solve formed from first principles
 * (c = 1 + alpha log(1 + r / eps) at r = eps, divided by w0, lambda times
 * the seed count over w0) and solved by Gaussian elimination; the fallback to
 * the centroid; the batch scores. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lookalike.h"
#include "rng.h"
#include "score.h"
#include "tap.h"

enum { M = 2500, K = 13 }; /* K: not a multiple of 8 */

/* A model of random user factors with the default hyper-parameters. */
static void make_model(st_model *m, float *U, st_rng *r)
{
    memset(m, 0, sizeof *m);
    st_als_params p;
    st_als_params_default(&p);
    p.factors = K;
    p.eps = 2.0;
    st_model_header_from_params(&m->h, &p);
    m->users = M;
    m->k = K;
    for (size_t i = 0; i < (size_t)M * K; i++) U[i] = (float)(st_rng_uniform(r) - 0.45) * 0.6f;
    m->U = U;
}

static void naive_gram(const float *U, uint32_t rows, double *G)
{
    memset(G, 0, sizeof(double) * K * K);
    for (uint32_t u = 0; u < rows; u++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) G[i * K + j] += (double)U[(size_t)u * K + i] * U[(size_t)u * K + j];
}

/* Solves A x = b (K x K, row-major) by Gaussian elimination with partial
 * pivoting; A and b are overwritten, x into b. */
static void naive_solve(double *A, double *b)
{
    for (int c = 0; c < K; c++) {
        int p = c;
        for (int r = c + 1; r < K; r++)
            if (fabs(A[r * K + c]) > fabs(A[p * K + c])) p = r;
        for (int j = 0; j < K; j++) {
            double t = A[c * K + j];
            A[c * K + j] = A[p * K + j];
            A[p * K + j] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < K; r++) {
            double f = A[r * K + c] / A[c * K + c];
            for (int j = c; j < K; j++) A[r * K + j] -= f * A[c * K + j];
            b[r] -= f * b[c];
        }
    }
    for (int c = K - 1; c >= 0; c--) {
        for (int j = c + 1; j < K; j++) b[c] -= A[c * K + j] * b[j];
        b[c] /= A[c * K + c];
    }
}

static double max_rel(const float *a, const double *b, int n)
{
    double worst = 0, scale = 0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]) / scale);
    return worst;
}

static void test_gram(const st_model *m, const float *U)
{
    double ref[K * K], acc[K * K];
    float G[K * K];
    naive_gram(U, M, ref);
    ok(st_lookalike_gram(m, G) == 0, "gram of %d x %d float32 rows", M, K);
    is_near(max_rel(G, ref, K * K), 0, 1e-6, "U^T U equals the naive double sum (relative)");
    int sym = 1;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) sym &= G[i * K + j] == G[j * K + i];
    ok(sym, "U^T U is full and exactly symmetric");
    /* Two shards: the rows split in two files, summed into one accumulator. */
    st_model a = *m, b = *m;
    a.users = 1000;
    b.users = M - 1000;
    b.U = U + (size_t)1000 * K;
    memset(acc, 0, sizeof acc);
    ok(st_lookalike_gram_add(&a, acc) == 0 && st_lookalike_gram_add(&b, acc) == 0, "gram of two shards");
    float Gs[K * K];
    for (int i = 0; i < K * K; i++) Gs[i] = (float)acc[i];
    is_near(max_rel(Gs, ref, K * K), 0, 1e-6, "the shards' summed Gram equals the whole model's");
    /* int8 rows, dequantized as st_model_user gives them. */
    int8_t *q = malloc((size_t)M * K);
    float *scale = malloc(M * sizeof *scale), *deq = malloc((size_t)M * K * sizeof *deq);
    st_model_quantize(U, M, K, q, scale);
    for (size_t u = 0; u < M; u++)
        for (int i = 0; i < K; i++) deq[u * K + i] = (float)q[u * K + i] * scale[u];
    st_model mq = *m;
    mq.U = NULL;
    mq.Uq = q;
    mq.Uscale = scale;
    mq.h.flags |= ST_MODEL_INT8;
    naive_gram(deq, M, ref);
    ok(st_lookalike_gram(&mq, G) == 0, "gram of int8 rows");
    is_near(max_rel(G, ref, K * K), 0, 1e-6, "int8: U^T U of the dequantized rows");
    free(q);
    free(scale);
    free(deq);
}

/* v from first principles, in double. */
static void naive_query(const st_model *m, const float *U, const uint32_t *seeds, uint32_t n, double *v)
{
    double A[K * K], w0 = m->h.unobserved_weight;
    double c = 1 + m->h.alpha * log1p(m->h.eps / m->h.eps); /* one pair at r = eps */
    double lam = m->h.lambda * pow((double)n + m->h.reg_alpha0 * m->users, m->h.reg_nu);
    naive_gram(U, M, A);
    for (int i = 0; i < K; i++) A[i * K + i] += lam / w0;
    memset(v, 0, sizeof(double) * K);
    for (uint32_t s = 0; s < n; s++) {
        const float *x = U + (size_t)seeds[s] * K;
        for (int i = 0; i < K; i++) {
            v[i] += c / w0 * x[i];
            for (int j = 0; j < K; j++) A[i * K + j] += (c / w0 - 1) * x[i] * x[j];
        }
    }
    naive_solve(A, v);
}

static void test_query(st_model *m, const float *U, st_rng *r)
{
    float G[K * K], v[K], *rows = malloc((size_t)M * K * sizeof *rows);
    uint32_t *seeds = malloc(M * sizeof *seeds);
    st_lookalike_gram(m, G);
    double worst = 0;
    int all = 1;
    for (int trial = 0; trial < 20; trial++) {
        uint32_t n = 1 + (uint32_t)st_rng_below(r, trial < 10 ? 10 : 400);
        for (uint32_t i = 0; i < n; i++) seeds[i] = (uint32_t)((i * 997u + (uint32_t)trial * 31u) % M);
        for (uint32_t i = 0; i < n; i++) memcpy(rows + (size_t)i * K, U + (size_t)seeds[i] * K, K * sizeof *rows);
        double ref[K];
        naive_query(m, U, seeds, n, ref);
        all &= st_lookalike_query(m, m->users, G, rows, n, v) == 0;
        worst = fmax(worst, max_rel(v, ref, K));
    }
    ok(all, "20 seed lists of 1 to 400 users solved");
    is_near(worst, 0, 1e-4, "v equals the naive dense solve (largest relative difference)");
    /* The batch scores: U_u . v for every user, v left after them. */
    float *sc = malloc((M + K) * sizeof *sc);
    ok(st_lookalike_scores(m, G, seeds, 50, sc) == 0, "batch scores of 50 seeds");
    for (uint32_t i = 0; i < 50; i++) memcpy(rows + (size_t)i * K, U + (size_t)seeds[i] * K, K * sizeof *rows);
    st_lookalike_query(m, m->users, G, rows, 50, v);
    int same = memcmp(v, sc + M, sizeof v) == 0;
    for (uint32_t u = 0; u < M; u++) same &= sc[u] == st_dot(U + (size_t)u * K, v, K);
    ok(same, "the batch scores are st_dot(U_u, v) with the query's v");
    /* Not positive definite: the centroid instead, said by the return value. */
    double lam = m->h.lambda;
    m->h.lambda = -1e6;
    uint32_t iota[3] = {0, 1, 2};
    float c[K];
    st_score_centroid(rows, K, iota, 3, c);
    ok(st_lookalike_query(m, m->users, G, rows, 3, v) == 1 && memcmp(v, c, sizeof c) == 0,
       "a system that is not positive definite: the seeds' centroid, returned as 1");
    m->h.lambda = lam;
    ok(st_lookalike_query(m, m->users, G, rows, 0, v) == 0 && v[0] == 0 && v[K - 1] == 0, "no seeds: v = 0");
    free(sc);
    free(rows);
    free(seeds);
}

int main(void)
{
    st_rng r;
    st_rng_seed(&r, 11);
    float *U = malloc((size_t)M * K * sizeof *U);
    st_model m;
    make_model(&m, U, &r);
    test_gram(&m, U);
    test_query(&m, U, &r);
    free(U);
    return tap_done();
}
