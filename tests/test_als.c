/* Tests of the ALS kernels: the fast half-steps against the naive
 * double-precision reference, CG against Cholesky, the loss against a brute
 * force over every pair, confidence schemes against hand computations, and
 * thread-count independence. */
#include "als.h"
#include "als_problem.h"
#include "interactions.h"
#include "rng.h"
#include "tap.h"
#include "util.h"

/* The problem every test below works on, made once by main: 40 users x 25
 * segments, its confidences under p, and factor buffers. */
static st_interactions x;
static uint32_t m, n;
static st_als_params p, pc;
static st_als_data d;
static size_t xs, ys;
static float *X, *Y, *Xr, *Yr;

/* The objective by brute force over every pair, in double. */
static double brute_loss(const st_als_params *pa, const st_interactions *xi, const st_als_data *da, const float *U,
                         const float *V)
{
    uint32_t users = xi->users.count, segs = xi->segments.count, k = pa->factors;
    double total = 0;
    for (uint32_t u = 0; u < users; u++) {
        for (uint32_t s = 0; s < segs; s++) {
            double c = 1, pr = 0, sc = 0;
            for (uint64_t q = xi->by_user.indptr[u]; q < xi->by_user.indptr[u + 1]; q++)
                if (xi->by_user.indices[q] == s) {
                    c = 1 + da->cu[q];
                    pr = 1;
                }
            for (uint32_t i = 0; i < k; i++) sc += (double)U[(size_t)u * k + i] * V[(size_t)s * k + i];
            total += c * (pr - sc) * (pr - sc);
        }
    }
    /* lambda per row: plain, or lambda (nnz + alpha0 cols)^nu (frequency) */
    for (uint32_t u = 0; u < users; u++) {
        double nnz = (double)(xi->by_user.indptr[u + 1] - xi->by_user.indptr[u]);
        double lu = pa->regularization == ST_REG_FREQUENCY ? pa->lambda * pow(nnz + pa->reg_alpha0 * segs, pa->reg_nu)
                                                          : pa->lambda;
        for (uint32_t i = 0; i < k; i++) total += lu * U[(size_t)u * k + i] * U[(size_t)u * k + i];
    }
    for (uint32_t s = 0; s < segs; s++) {
        double nnz = 0;
        for (uint64_t q = 0; q < xi->by_user.indptr[users]; q++) nnz += xi->by_user.indices[q] == s;
        double ls = pa->regularization == ST_REG_FREQUENCY ? pa->lambda * pow(nnz + pa->reg_alpha0 * users, pa->reg_nu)
                                                          : pa->lambda;
        for (uint32_t i = 0; i < k; i++) total += ls * V[(size_t)s * k + i] * V[(size_t)s * k + i];
    }
    return total;
}

/* Confidence: linear 1 + alpha r, so c - 1 = alpha r. */
static void test_linear_confidence(void)
{
    int conf_ok = 1;
    for (uint64_t q = 0; q < x.by_user.nnz; q++)
        if (fabs(d.cu[q] - 2.0 * x.by_user.data[q]) > 1e-5) conf_ok = 0;
    ok(conf_ok, "linear confidence c - 1 = alpha r");
}

/* Fast Cholesky half-step vs the naive reference, both orientations. */
static void test_half_steps(void)
{
    char err[ST_ERRLEN] = "";
    ok(st_als_half_step(&p, d.by_user, d.cu, Y, X, err) == 0, "user half-step");
    ok(st_als_reference_half_step(&p, d.by_user, d.cu, Y, n, Xr) == 0, "reference user half-step");
    ok(max_abs_diff(X, Xr, xs) < 1e-4, "user factors equal the reference (max diff %.2g)", max_abs_diff(X, Xr, xs));
    ok(st_als_half_step(&p, d.by_segment, d.cs, X, Y, err) == 0, "segment half-step");
    ok(st_als_reference_half_step(&p, d.by_segment, d.cs, X, m, Yr) == 0, "reference segment half-step");
    ok(max_abs_diff(Y, Yr, ys) < 1e-4, "segment factors equal the reference (max diff %.2g)",
       max_abs_diff(Y, Yr, ys));

    /* Frequency-scaled regularisation, the same comparison. */
    st_als_params pf = p;
    pf.regularization = ST_REG_FREQUENCY;
    pf.reg_alpha0 = 0.5;
    pf.reg_nu = 0.7;
    st_als_half_step(&pf, d.by_user, d.cu, Y, X, err);
    st_als_reference_half_step(&pf, d.by_user, d.cu, Y, n, Xr);
    ok(max_abs_diff(X, Xr, xs) < 1e-4, "frequency-scaled lambda equals the reference (max diff %.2g)",
       max_abs_diff(X, Xr, xs));
}

/* The loss: the Gram-trick formula against the brute force. */
static void test_loss(void)
{
    char err[ST_ERRLEN] = "";
    double loss, weight;
    ok(st_als_loss(&p, &d, X, Y, &loss, &weight, err) == 0, "loss computed");
    double brute = brute_loss(&p, &x, &d, X, Y);
    ok(fabs(loss - brute) <= 1e-4 * brute, "loss %.6f equals the brute force %.6f", loss, brute);

    /* Each half-step does not increase the objective (exact solves). */
    int monotone = 1;
    double prev = loss;
    for (int it = 0; it < 10; it++) {
        st_als_iterate(&p, &d, X, Y, &loss, err);
        if (loss > prev * (1 + 1e-6)) monotone = 0;
        prev = loss;
    }
    ok(monotone, "Cholesky ALS never increases the loss over 10 iterations");
    double separate;
    st_als_loss(&p, &d, X, Y, &separate, NULL, err);
    ok(fabs(separate - loss) <= 1e-9 * separate, "the loss computed along the iteration equals st_als_loss");
    is_near(st_als_weight(&d), weight, 1e-9 * weight, "weight m n + sum(c - 1)");
}

/* CG reaches Cholesky's loss within 1% after the same iterations, from
 * the same start, with the default (log) confidence. */
static void test_cg_vs_cholesky(void)
{
    char err[ST_ERRLEN] = "";
    pc = p;
    st_als_params ph = p;
    pc.solver = ST_SOLVER_CG;
    pc.cg_steps = 3;
    pc.confidence = ph.confidence = ST_CONF_LOG;
    pc.alpha = ph.alpha = 10;
    st_als_data dl;
    st_als_confidence(&pc, &x, &dl, err);
    double chol_loss = 0, cg_loss = 0;
    st_als_init(&ph, m, n, X, Y);
    st_als_init(&pc, m, n, Xr, Yr);
    for (int it = 0; it < 15; it++) {
        st_als_iterate(&ph, &dl, X, Y, &chol_loss, err);
        st_als_iterate(&pc, &dl, Xr, Yr, &cg_loss, err);
    }
    ok(fabs(cg_loss - chol_loss) <= 0.01 * chol_loss, "CG loss %.6f within 1%% of Cholesky's %.6f", cg_loss,
       chol_loss);
    st_als_data_free(&dl);
}

/* The vector CG kernels (k a multiple of 8: specialised 16, 32, 64, 128
 * and the generic one) run to convergence equal the exact solve. */
static void test_cg_kernels(void)
{
    char err[ST_ERRLEN] = "";
    static const uint32_t ranks[] = {8, 16, 24, 32, 40, 64, 128};
    for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++) {
        uint32_t kk = ranks[ri];
        st_als_params pe = p, pv = p;
        pe.factors = pv.factors = kk;
        pv.solver = ST_SOLVER_CG;
        pv.cg_steps = 3 * kk;
        size_t xk = (size_t)m * kk, yk = (size_t)n * kk;
        float *Xe = malloc(xk * 4), *Ye = malloc(yk * 4), *Xv = malloc(xk * 4), *Yv = malloc(yk * 4);
        st_als_init(&pe, m, n, Xe, Ye);
        memcpy(Yv, Ye, yk * 4);
        memcpy(Xv, Xe, xk * 4);
        st_als_half_step(&pe, d.by_user, d.cu, Ye, Xe, err);
        st_als_half_step(&pv, d.by_user, d.cu, Yv, Xv, err);
        double diff = max_abs_diff(Xe, Xv, xk);
        ok(diff < 2e-3, "k = %u: CG to convergence equals Cholesky (max diff %.2g)", kk, diff);
        free(Xe);
        free(Ye);
        free(Xv);
        free(Yv);
    }
}

/* Fold-in of one user equals that user's row of a half-step. */
static void test_foldin(void)
{
    char err[ST_ERRLEN] = "";
    float *G = malloc((size_t)p.factors * p.factors * 4), *scratch = malloc(st_als_foldin_scratch(p.factors) * 4);
    float xf[6];
    st_als_half_step(&p, d.by_user, d.cu, Y, X, err);
    st_als_gram(Y, n, p.factors, G);
    uint32_t u = 3;
    uint64_t q0 = x.by_user.indptr[u];
    ok(st_als_foldin(p.factors, Y, G, st_als_row_lambda(&p, x.by_user.indptr[u + 1] - q0, n),
                     x.by_user.indices + q0, d.cu + q0, (uint32_t)(x.by_user.indptr[u + 1] - q0), xf, scratch) == 0,
       "fold-in solves");
    ok(max_abs_diff(xf, X + (size_t)u * p.factors, p.factors) < 1e-6, "fold-in equals the half-step's row");
    ok(st_als_foldin(p.factors, Y, G, p.lambda, NULL, NULL, 0, xf, scratch) == 0 && xf[0] == 0 && xf[5] == 0,
       "no events: the zero vector");
    free(G);
    free(scratch);
}

/* Thread count does not change a single bit. */
static void test_threads(void)
{
    char err[ST_ERRLEN] = "";
    st_als_params p1 = pc, p2 = pc;
    p1.threads = 1;
    p2.threads = 2;
    float *X1 = malloc(xs * 4), *Y1 = malloc(ys * 4), *X2 = malloc(xs * 4), *Y2 = malloc(ys * 4);
    st_als_init(&p1, m, n, X1, Y1);
    st_als_init(&p2, m, n, X2, Y2);
    double l1 = 0, l2 = 0;
    for (int it = 0; it < 3; it++) {
        st_als_iterate(&p1, &d, X1, Y1, &l1, err);
        st_als_iterate(&p2, &d, X2, Y2, &l2, err);
    }
    ok(memcmp(X1, X2, xs * 4) == 0 && memcmp(Y1, Y2, ys * 4) == 0 && l1 == l2,
       "1 and 2 threads give bit-identical factors and loss");
    free(X1);
    free(Y1);
    free(X2);
    free(Y2);
    st_als_data_free(&d);
}

/* Confidence schemes by hand on the same matrix. */
static void test_confidence_schemes(void)
{
    char err[ST_ERRLEN] = "";
    st_als_params pl = p;
    pl.confidence = ST_CONF_LOG;
    pl.alpha = 3;
    pl.eps = 2;
    st_als_confidence(&pl, &x, &d, err);
    int conf_ok = 1;
    for (uint64_t q = 0; q < x.by_user.nnz; q++)
        if (fabs(d.cu[q] - 3.0 * log(1 + x.by_user.data[q] / 2.0)) > 1e-5) conf_ok = 0;
    ok(conf_ok, "log confidence c - 1 = alpha log(1 + r / eps)");
    st_als_data_free(&d);
    /* Unobserved pairs weighted w0: the system divided by w0 has c / w0 - 1. */
    st_als_params pw = pl;
    pw.unobserved = 0.4;
    st_als_confidence(&pw, &x, &d, err);
    conf_ok = 1;
    for (uint64_t q = 0; q < x.by_user.nnz; q++)
        if (fabs(d.cu[q] - ((1 + 3.0 * log(1 + x.by_user.data[q] / 2.0)) / 0.4 - 1)) > 1e-4) conf_ok = 0;
    ok(conf_ok, "unobserved weight w0: c / w0 - 1 per observed pair");
    is_near(st_als_row_lambda(&pw, 5, 10), 0.3 * 5 / 0.4, 1e-12, "and lambda n / w0 (frequency-scaled, nu 1)");
    st_als_data_free(&d);
    st_als_params pb = p;
    pb.confidence = ST_CONF_BM25;
    pb.alpha = 1;
    pb.bm25_k1 = 1.2;
    pb.bm25_b = 0.75;
    st_als_confidence(&pb, &x, &d, err);
    /* bm25 of one entry by hand: user 0's first nonzero. */
    double rowsum0 = 0, total = 0;
    for (uint64_t q = x.by_user.indptr[0]; q < x.by_user.indptr[1]; q++) rowsum0 += x.by_user.data[q];
    for (uint64_t q = 0; q < x.by_user.nnz; q++) total += x.by_user.data[q];
    uint32_t s0 = x.by_user.indices[0];
    double df = (double)(x.by_segment.indptr[s0 + 1] - x.by_segment.indptr[s0]);
    double idf = log((double)m) - log1p(df);
    double norm = 0.25 + 0.75 * rowsum0 / (total / m);
    double r0 = x.by_user.data[0];
    double want = r0 * 2.2 / (1.2 * norm + r0) * idf;
    is_near(d.cu[0], want > 0 ? want : 0, 1e-5, "bm25 weight of one entry by hand");
    /* The CSC confidences line up with the CSC entries. */
    uint64_t qs;
    for (qs = x.by_segment.indptr[s0]; x.by_segment.indices[qs] != 0; qs++) {}
    is_near(d.cs[qs], d.cu[0], 1e-7, "bm25 CSC value equals the CSR value");
    st_als_data_free(&d);
}

/* Parameter checks are sentences. */
static void test_param_checks(void)
{
    st_als_params bad = p;
    bad.factors = 0;
    ok(st_als_check(&bad) && strstr(st_als_check(&bad), "--factors"), "factors 0 rejected");
    bad = p;
    bad.lambda = -1;
    ok(st_als_check(&bad) && strstr(st_als_check(&bad), "--lambda"), "negative lambda rejected");
    ok(st_als_check(&p) == NULL, "defaults pass");
}

int main(void)
{
    char err[ST_ERRLEN] = "";
    als_problem(&x, 40, 25, 0.15, 0, 1);
    m = x.users.count;
    n = x.segments.count;
    st_als_params_default(&p);
    p.factors = 6;
    p.alpha = 2;
    p.confidence = ST_CONF_LINEAR;
    p.solver = ST_SOLVER_CHOLESKY;
    p.lambda = 0.3;
    p.threads = 2;
    p.unobserved = 1.0; /* the classical form: the kernels see c - 1 as it is (w0 below) */
    ok(st_als_confidence(&p, &x, &d, err) == 0, "confidence computed");
    xs = (size_t)m * p.factors;
    ys = (size_t)n * p.factors;
    X = malloc(xs * 4);
    Y = malloc(ys * 4);
    Xr = malloc(xs * 4);
    Yr = malloc(ys * 4);
    st_als_init(&p, m, n, X, Y);
    test_linear_confidence();
    test_half_steps();
    test_loss();
    test_cg_vs_cholesky();
    test_cg_kernels();
    test_foldin();
    test_threads();
    test_confidence_schemes();
    test_param_checks();

    free(X);
    free(Y);
    free(Xr);
    free(Yr);
    st_interactions_free(&x);
    return tap_done();
}
