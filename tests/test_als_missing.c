/* Tests of popularity-weighted missing data (He et al. 2016, eALS; als.h):
 * the half-steps, the fold-in and the loss against a naive dense reference
 * written from the objective itself (every pair weighted c_us where
 * observed, w_s = w0 n f_s^e / sum f^e where not, lambda undivided), in
 * double precision; CG against the exact solve; exponent 0 against the
 * uniform scheme bit for bit. */
#include "als.h"
#include "als_problem.h"
#include "interactions.h"
#include "rng.h"
#include "tap.h"
#include "util.h"

static st_interactions x;
static uint32_t m, n;

/* The dense weights of every pair, from the definitions: C[u n + s] = c_us
 * = 1 + alpha f(r) where observed, w_s otherwise; P the preference. */
static void dense_weights(const st_als_params *p, double *C, double *P, double *w)
{
    double sum = 0;
    for (uint32_t s = 0; s < n; s++) sum += pow((double)(x.by_segment.indptr[s + 1] - x.by_segment.indptr[s]), p->missing_exponent);
    for (uint32_t s = 0; s < n; s++)
        w[s] = p->unobserved * n * pow((double)(x.by_segment.indptr[s + 1] - x.by_segment.indptr[s]), p->missing_exponent) / sum;
    st_als_params raw = *p;
    raw.unobserved = 1; /* st_als_conf1 then gives c - 1 = alpha f(r) as it is */
    for (uint32_t u = 0; u < m; u++) {
        for (uint32_t s = 0; s < n; s++) {
            C[(size_t)u * n + s] = w[s];
            P[(size_t)u * n + s] = 0;
        }
        for (uint64_t q = x.by_user.indptr[u]; q < x.by_user.indptr[u + 1]; q++) {
            uint32_t s = x.by_user.indices[q];
            C[(size_t)u * n + s] = 1.0 + st_als_conf1(&raw, x.by_user.data[q], 0, 1);
            P[(size_t)u * n + s] = 1;
        }
    }
}

/* One half-step of the dense objective: rows (nr x k) against fixed (nf x k),
 * pair weights C and preferences P read through stride (rs, fs) so that the
 * same code serves users (C[r n + f]) and segments (C[f n + r]). */
static void dense_half_step(const st_als_params *p, const double *C, const double *P, size_t rs, size_t fs,
                            uint32_t nr, uint32_t nf, const float *fixed, float *rows, const st_csr *a)
{
    uint32_t k = p->factors;
    double *A = malloc((size_t)k * k * sizeof *A), *b = malloc(k * sizeof *b);
    for (uint32_t r = 0; r < nr; r++) {
        uint64_t nnz = a->indptr[r + 1] - a->indptr[r];
        double lam = p->regularization == ST_REG_FREQUENCY ? p->lambda * pow((double)nnz, p->reg_nu) : p->lambda;
        for (uint32_t i = 0; i < k; i++) {
            b[i] = 0;
            for (uint32_t j = 0; j < k; j++) A[i * k + j] = i == j ? lam : 0;
        }
        for (uint32_t f = 0; f < nf; f++) {
            double c = C[r * rs + f * fs], pr = P[r * rs + f * fs];
            const float *y = fixed + (size_t)f * k;
            for (uint32_t i = 0; i < k; i++) {
                b[i] += c * pr * y[i];
                for (uint32_t j = 0; j < k; j++) A[i * k + j] += c * y[i] * y[j];
            }
        }
        st_als_reference_solve(A, b, k);
        for (uint32_t i = 0; i < k; i++) rows[(size_t)r * k + i] = (float)b[i];
    }
    free(A);
    free(b);
}

static double dense_loss(const st_als_params *p, const double *C, const double *P, const float *X, const float *Y)
{
    uint32_t k = p->factors;
    double total = 0;
    for (uint32_t u = 0; u < m; u++)
        for (uint32_t s = 0; s < n; s++) {
            double sc = 0;
            for (uint32_t i = 0; i < k; i++) sc += (double)X[(size_t)u * k + i] * Y[(size_t)s * k + i];
            total += C[(size_t)u * n + s] * (P[(size_t)u * n + s] - sc) * (P[(size_t)u * n + s] - sc);
        }
    for (int side = 0; side < 2; side++) {
        const st_csr *a = side ? &x.by_segment : &x.by_user;
        const float *F = side ? Y : X;
        for (uint32_t r = 0; r < a->rows; r++) {
            double lam = p->lambda * pow((double)(a->indptr[r + 1] - a->indptr[r]), p->reg_nu);
            for (uint32_t i = 0; i < k; i++) total += lam * F[(size_t)r * k + i] * F[(size_t)r * k + i];
        }
    }
    return total;
}

static void test_against_dense(uint32_t k, st_solver solver, uint32_t cg_steps, double tol, double w0, double e)
{
    char err[ST_ERRLEN] = "";
    st_als_params p;
    st_als_params_default(&p);
    p.factors = k;
    p.solver = solver;
    p.cg_steps = cg_steps;
    p.lambda = 0.2;
    p.eps = 3;
    p.unobserved = w0;
    p.missing = ST_MISSING_POPULARITY;
    p.missing_exponent = e;
    p.alpha = e > 1 ? 1.0 : 10.0;
    p.threads = 2;
    st_als_data d;
    ok(st_als_confidence(&p, &x, &d, err) == 0 && d.rho, "k %u %s: confidences and weights", k,
       st_solver_name(solver));
    double *C = malloc((size_t)m * n * sizeof *C), *P = malloc((size_t)m * n * sizeof *P), *w = malloc(n * sizeof *w);
    dense_weights(&p, C, P, w);
    if (e > 1) {
        /* Steep weights: a popular segment's unobserved pairs outweigh some
         * observed ones, so some of the solvers' coefficients are negative. */
        uint64_t neg = 0;
        for (uint64_t q = 0; q < x.by_user.nnz; q++) neg += d.cu[q] < 0;
        for (uint64_t q = 0; q < x.by_segment.nnz; q++) neg += d.cs[q] < 0;
        ok(neg > 0, "k %u %s, e %g: %llu negative coefficients", k, st_solver_name(solver), e, (unsigned long long)neg);
    }
    float *X = malloc((size_t)m * k * 4), *Y = malloc((size_t)n * k * 4), *Xr = malloc((size_t)m * k * 4),
          *Yr = malloc((size_t)n * k * 4);
    st_als_init(&p, m, n, X, Y);
    ok(st_als_data_half_step(&p, &d, 0, Y, X, err) == 0, "user half-step");
    dense_half_step(&p, C, P, n, 1, m, n, Y, Xr, &x.by_user);
    ok(max_abs_diff(X, Xr, (size_t)m * k) < tol, "k %u %s: user rows equal the dense reference (max diff %.2g)", k,
       st_solver_name(solver), max_abs_diff(X, Xr, (size_t)m * k));
    ok(st_als_data_half_step(&p, &d, 1, X, Y, err) == 0, "segment half-step");
    dense_half_step(&p, C, P, 1, n, n, m, X, Yr, &x.by_segment);
    ok(max_abs_diff(Y, Yr, (size_t)n * k) < tol, "k %u %s: segment rows equal the dense reference (max diff %.2g)", k,
       st_solver_name(solver), max_abs_diff(Y, Yr, (size_t)n * k));
    /* The loss of an iteration: the objective divided by w0. */
    double loss = 0, sep = 0;
    ok(st_als_iterate(&p, &d, X, Y, &loss, err) == 0, "iteration");
    double want = dense_loss(&p, C, P, X, Y) / p.unobserved;
    ok(fabs(loss - want) < 1e-4 * want, "k %u %s: iteration loss %.6f equals the dense objective / w0 %.6f", k,
       st_solver_name(solver), loss, want);
    st_als_loss(&p, &d, X, Y, &sep, NULL, err);
    ok(fabs(sep - want) < 1e-4 * want, "st_als_loss %.6f too", sep);
    double cw = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) cw += C[i];
    ok(fabs(st_als_weight(&d) - cw / p.unobserved) < 1e-6 * cw, "weight: the sum of every pair's weight / w0");
    free(C);
    free(P);
    free(w);
    free(X);
    free(Y);
    free(Xr);
    free(Yr);
    st_als_data_free(&d);
}

/* Fold-in with the weighted Gram equals the exact half-step's row. */
static void test_foldin(void)
{
    char err[ST_ERRLEN] = "";
    st_als_params p;
    st_als_params_default(&p);
    p.factors = 8;
    p.solver = ST_SOLVER_CHOLESKY;
    p.missing = ST_MISSING_POPULARITY;
    p.missing_exponent = 0.8;
    st_als_data d;
    st_als_confidence(&p, &x, &d, err);
    uint32_t k = p.factors;
    float *X = malloc((size_t)m * k * 4), *Y = malloc((size_t)n * k * 4), *G = malloc((size_t)k * k * 4);
    float *scratch = malloc(st_als_foldin_scratch(k) * 4), *a = malloc((size_t)n * 4), xf[8];
    st_als_init(&p, m, n, X, Y);
    st_als_data_half_step(&p, &d, 0, Y, X, err);
    ok(st_als_gram_weighted(Y, n, k, d.rho, G) == 0, "weighted Gram");
    int all = 1;
    for (uint32_t u = 0; u < m; u++) {
        uint64_t q0 = x.by_user.indptr[u], nnz = x.by_user.indptr[u + 1] - q0;
        /* As the server computes them: st_als_conf1, then st_als_user_coef. */
        for (uint64_t q = 0; q < nnz; q++)
            a[q] = st_als_user_coef(st_als_conf1(&p, x.by_user.data[q0 + q], 0, 1), d.rho, x.by_user.indices[q0 + q]);
        if (st_als_foldin_weighted(k, Y, G, d.rho, st_als_row_lambda(&p, nnz, n), x.by_user.indices + q0, a,
                                   (uint32_t)nnz, xf, scratch) != 0 ||
            max_abs_diff(xf, X + (size_t)u * k, k) > 1e-5)
            all = 0;
    }
    ok(all, "every user's fold-in equals its row of the weighted half-step");
    free(X);
    free(Y);
    free(G);
    free(scratch);
    free(a);
    st_als_data_free(&d);
}

/* Exponent 0 weighs every segment alike: the uniform scheme, bit for bit. */
static void test_exponent_zero(void)
{
    char err[ST_ERRLEN] = "";
    st_als_params pu;
    st_als_params_default(&pu);
    pu.factors = 16;
    pu.eps = 2;
    st_als_params pz = pu;
    pz.missing = ST_MISSING_POPULARITY;
    pz.missing_exponent = 0;
    st_als_data du, dz;
    st_als_confidence(&pu, &x, &du, err);
    st_als_confidence(&pz, &x, &dz, err);
    size_t xs = (size_t)m * 16, ys = (size_t)n * 16;
    float *X1 = malloc(xs * 4), *Y1 = malloc(ys * 4), *X2 = malloc(xs * 4), *Y2 = malloc(ys * 4);
    st_als_init(&pu, m, n, X1, Y1);
    st_als_init(&pz, m, n, X2, Y2);
    double l1 = 0, l2 = 0;
    for (int i = 0; i < 3; i++) {
        st_als_iterate(&pu, &du, X1, Y1, &l1, err);
        st_als_iterate(&pz, &dz, X2, Y2, &l2, err);
    }
    ok(!dz.rho, "exponent 0: no weights (the uniform path)");
    ok(memcmp(X1, X2, xs * 4) == 0 && memcmp(Y1, Y2, ys * 4) == 0, "exponent 0: the uniform factors, bit for bit");
    ok(fabs(l1 - l2) <= 1e-9 * l1, "and the same loss (%.9f, %.9f)", l1, l2);
    free(X1);
    free(Y1);
    free(X2);
    free(Y2);
    st_als_data_free(&du);
    st_als_data_free(&dz);
}

static void test_weights(void)
{
    float count[4] = {1, 4, 9, 0}, rho[4];
    st_als_missing_weights(0.5, count, 4, rho);
    /* sqrt: 1, 2, 3, 0; sum 6; n = 4 */
    ok(fabs(rho[0] - 4.0 / 6) < 1e-6 && fabs(rho[1] - 8.0 / 6) < 1e-6 && fabs(rho[2] - 2.0) < 1e-6 && rho[3] == 0,
       "rho_s = n f_s^e / sum f^e (%.4f %.4f %.4f %.4f)", rho[0], rho[1], rho[2], rho[3]);
    st_als_params p;
    st_als_params_default(&p);
    ok(p.missing == ST_MISSING_UNIFORM, "uniform by default");
    p.missing_exponent = -1;
    ok(st_als_check(&p) && strstr(st_als_check(&p), "--missing-exponent"), "a negative exponent is refused");
}

int main(void)
{
    als_problem(&x, 30, 14, 0.6, 1, 7);
    m = x.users.count;
    n = x.segments.count;
    test_weights();
    /* The paper's exponent, and a steep one whose coefficients go negative. */
    for (int i = 0; i < 2; i++) {
        double w0 = i ? 1.0 : 0.4, e = i ? 2.0 : 0.5;
        test_against_dense(6, ST_SOLVER_CHOLESKY, 3, 1e-4, w0, e);
        test_against_dense(16, ST_SOLVER_CHOLESKY, 3, 1e-4, w0, e);
        /* CG run to convergence: its weighted right-hand side and Gram are the exact solve's. */
        test_against_dense(6, ST_SOLVER_CG, 60, 1e-3, w0, e);
        test_against_dense(16, ST_SOLVER_CG, 80, 1e-3, w0, e);
    }
    test_foldin();
    test_exponent_zero();
    st_interactions_free(&x);
    return tap_done();
}
