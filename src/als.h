/* als: implicit-feedback alternating least squares (Hu, Koren, Volinsky 2008).
 *
 * Legend: users m, segments n, rank k, nonzeros nnz. X is m x k (user
 * factors), Y is n x k (segment factors), both row-major float32.
 *
 * Objective, over every (user u, segment s) pair:
 *   sum c_us (p_us - x_u . y_s)^2 + sum_u lambda_u |x_u|^2 + sum_s lambda_s |y_s|^2
 * with p = 1 and c = 1 + alpha f(r) where the user engaged (r > 0), p = 0 and
 * c = 1 elsewhere. f is the confidence scheme: linear r, log log(1 + r/eps),
 * or bm25 (Robertson's weighting of r by segment rarity and user activity).
 * lambda_row = lambda (nnz_row + alpha0 * cols)^nu under frequency-scaled
 * regularisation (Rendle et al. 2022), plain lambda otherwise.
 *
 * Each half-step solves, for every row independently,
 *   (YtY + Y_S^T (C_S - I) Y_S + lambda I) x = Y_S^T C_S 1
 * YtY comes from one BLAS syrk per half-step. The solve is either exact
 * (Cholesky, LAPACK potrf/potrs) or a few conjugate-gradient steps warm-started
 * from the previous x (Takacs, Pilaszy, Tikk 2011), which never forms the k x k
 * matrix. Threads take rows in fixed chunks; BLAS runs single-threaded inside.
 * A row's result does not depend on the thread count, and the loss is summed
 * per chunk in chunk order, so runs are bit-identical for a given seed
 * whatever the number of threads.
 *
 * Owns: nothing between calls. Never: allocates per row (scratch is per
 * thread, per call), prints.
 */
#ifndef STARLING_ALS_H
#define STARLING_ALS_H

#include <stdint.h>

#include "interactions.h"

typedef enum { ST_SOLVER_CG = 0, ST_SOLVER_CHOLESKY = 1 } st_solver;
typedef enum { ST_CONF_LINEAR = 0, ST_CONF_LOG = 1, ST_CONF_BM25 = 2 } st_conf_scheme;
typedef enum { ST_REG_PLAIN = 0, ST_REG_FREQUENCY = 1 } st_reg_scheme;
typedef enum { ST_MISSING_UNIFORM = 0, ST_MISSING_POPULARITY = 1 } st_missing_scheme;

typedef struct {
    uint32_t factors;     /* k */
    uint32_t iterations;
    double lambda;
    double alpha;
    st_conf_scheme confidence;
    double eps;           /* log scheme: r / eps; 0 = auto, the median pair value (st_als_resolve_eps) */
    double bm25_k1, bm25_b;
    st_reg_scheme regularization;
    double reg_alpha0, reg_nu;
    double unobserved;    /* w0, the weight of an unobserved pair (observed: c = 1 + alpha f(r)); 0 < w0 <= 1 */
    st_missing_scheme missing; /* uniform: every unobserved pair weighs w0; popularity: w_s (below) */
    double missing_exponent;   /* e of the popularity scheme */
    st_solver solver;
    uint32_t cg_steps;
    uint64_t seed;
    int threads;
    double init_scale;
} st_als_params;

void st_als_params_default(st_als_params *p);

/* eps 0 (auto) takes the median of the pair values, to within 1/16 of an
 * octave: the lower edge of the bucket of a histogram of 16 log2(r). Scale
 * free: weights multiplied by a constant give the same confidences. The
 * histogram (ST_EPS_BUCKETS counts) is summed over any parts of the data
 * (MPI ranks) before st_als_eps_of gives the value. */
#define ST_EPS_BUCKETS 4096
void st_als_eps_histogram(const float *vals, uint64_t n, uint64_t *hist);
double st_als_eps_of(const uint64_t *hist);

/* NULL when p is usable, else a sentence a person can act on. */
const char *st_als_check(const st_als_params *p);

const char *st_solver_name(st_solver s);
const char *st_conf_name(st_conf_scheme c);
const char *st_reg_name(st_reg_scheme r);
const char *st_missing_name(st_missing_scheme m);

/* Popularity-weighted missing data (He et al. 2016, eALS): an unobserved
 * pair (u, s) weighs w_s = w0 rho_s, rho_s = n f_s^e / sum_j f_j^e, with f_s
 * the share of users who have s; the mean of rho is 1, so w0 stays the mean
 * weight. rho (n floats) from the users per segment `count` (rho may be
 * count: computed in place). Under the uniform scheme every rho_s is 1.
 *
 * What it changes, with every system divided by w0 as for uniform weights:
 *   a user's row:    (Y^T R Y + sum_S a_s y_s y_s^T + lambda_u / w0) x = sum_S (a_s + rho_s) y_s
 *                    with R = diag(rho), a_s = c_us / w0 - rho_s (may be negative);
 *   a segment's row: divided by w_s instead: the usual form with c / w_s and
 *                    lambda_s / w_s, against X^T X.
 * The per-nonzero values st_als_confidence stores are those a's. */
void st_als_missing_weights(double exponent, const float *count, uint32_t n, float *rho);
/* (Exponent 0 is the uniform scheme: st_als_confidence leaves d->rho NULL.) */

/* The matrix the trainer consumes: structure of both orientations and c - 1
 * for every nonzero, aligned with each orientation's indices. */
typedef struct {
    const st_csr *by_user;
    const st_csr *by_segment;
    float *cu; /* by_user.nnz */
    float *cs; /* by_segment.nnz */
    float *rho; /* segments: rho_s of the popularity scheme; NULL when uniform */
} st_als_data;

/* Computes c - 1 = alpha f(r) for every nonzero of both orientations into
 * newly allocated d->cu and d->cs (free with st_als_data_free), in the form
 * the solvers take (divided by w0; under popularity weighting the a's above
 * and d->rho, from the users per segment of x). */
int st_als_confidence(const st_als_params *p, const st_interactions *x, st_als_data *d, char *err);
void st_als_data_free(st_als_data *d);

/* The confidence-minus-one of one raw value r for a user with row statistics
 * (for fold-in of online events; bm25 needs the model's statistics, so for it
 * the caller passes idf and length_norm, otherwise they are ignored). */
float st_als_conf1(const st_als_params *p, double r, double idf, double length_norm);

/* Fills X (m x k) and Y (n x k) with small random values from p->seed; row r
 * of each draws from its own stream, so the result is thread-independent. */
void st_als_init(const st_als_params *p, uint32_t m, uint32_t n, float *X, float *Y);

/* The same from the ids: each row's stream is derived from the seed and the
 * row's id (XXH3), so a user or segment starts from the same values whatever
 * its index: in any input order and on any MPI rank. This is what training
 * uses. st_als_init_row fills one row (segment = 1 for segment rows). */
void st_als_init_ids(const st_als_params *p, const st_idmap *users, const st_idmap *segments, float *X, float *Y);
void st_als_init_row(const st_als_params *p, const char *id, size_t len, int segment, float *row);

/* One full iteration (users, then segments). When loss is not NULL it
 * receives the objective after the iteration, computed along the way (the
 * same value as st_als_loss up to summation order). Returns -1 with a message
 * on out-of-memory or a failed factorisation. */
int st_als_iterate(const st_als_params *p, const st_als_data *d, float *X, float *Y, double *loss, char *err);

/* One half-step: solves every row of `rows` (m_rows x k) against the fixed
 * `fixed` (n_fixed x k) with the structure a and confidences c. */
int st_als_half_step(const st_als_params *p, const st_csr *a, const float *c, const float *fixed, float *rows,
                     char *err);

/* The same half-step with the weights of d (popularity-weighted missing
 * data): the users' rows (segments 0, fixed = Y) or the segments' rows
 * (segments 1, fixed = X). */
int st_als_data_half_step(const st_als_params *p, const st_als_data *d, int segments, const float *fixed,
                          float *rows, char *err);

/* The solve of a half-step with the Gram matrix G = F^T F given: rows of a
 * index rows of F (which need not be all of the fixed factors: a process that
 * holds a part of them remaps the indices), a->cols is the number of fixed
 * rows in the whole problem (for frequency-scaled regularisation). With
 * loss_out, also adds up the rows' share of the objective (their nonzeros'
 * c (1 - s)^2 - s^2 and regularisation). */
int st_als_solve_rows(const st_als_params *p, const st_csr *a, const float *c, const float *F, const float *G,
                      float *rows, double *loss_out, char *err);

/* The objective above, and the normaliser weight = m n + sum(c - 1) that
 * turns it into the per-weight figure printed in progress lines. */
int st_als_loss(const st_als_params *p, const st_als_data *d, const float *X, const float *Y, double *loss,
                double *weight, char *err);

/* m n + sum(c - 1): divides the objective into the per-weight loss that
 * progress lines and models report. */
double st_als_weight(const st_als_data *d);

/* Fold-in: solves one row exactly (Cholesky) against fixed factors F (its
 * Gram matrix G = F^T F, k x k) for the nonzeros (idx[i], cm1[i]).
 * scratch needs st_als_foldin_scratch(k) floats. Never allocates; -1 when the
 * system is not positive definite. A row with no nonzeros gets x = 0. */
int st_als_foldin(uint32_t k, const float *F, const float *G, double lambda, const uint32_t *idx,
                  const float *cm1, uint32_t nnz, float *x, float *scratch);
/* The same for a user of a popularity-weighted model: G = F^T diag(rho) F
 * (st_als_gram_weighted), a[i] = c / w0 - rho[idx[i]] (st_als_user_coef) and
 * the right-hand side sum (a[i] + rho[idx[i]]) f_i. rho NULL is st_als_foldin. */
int st_als_foldin_weighted(uint32_t k, const float *F, const float *G, const float *rho, double lambda,
                           const uint32_t *idx, const float *a, uint32_t nnz, float *x, float *scratch);
/* The lower triangle of a row's system A = G + lambda I + sum_q a_q f_q f_q^T
 * (f_q row idx[q] of F), as the exact solver forms it; M is scratch for
 * min(nnz, 64) x k floats. Handles a_q < 0 (popularity-weighted rows). */
void st_als_row_system(uint32_t k, const float *F, const float *G, double lambda, const uint32_t *idx,
                       const float *a, uint64_t nnz, float *A, float *M);

/* A user's per-nonzero value under weights rho: from cm1 = st_als_conf1(..)
 * (c / w0 - 1) to c / w0 - rho_s. rho NULL returns cm1. */
static inline float st_als_user_coef(float cm1, const float *rho, uint32_t s)
{
    return rho ? cm1 + (1.0f - rho[s]) : cm1;
}
uint64_t st_als_foldin_scratch(uint32_t k);

/* lambda of a row with nnz nonzeros in a problem of `cols` columns (plain or
 * frequency-scaled, see above). */
double st_als_row_lambda(const st_als_params *p, uint64_t nnz, uint32_t cols);

/* Gram matrix G = F^T F (k x k, full, symmetric) of an r x k matrix. */
void st_als_gram(const float *F, uint64_t r, uint32_t k, float *G);
/* G = F^T diag(w) F, w >= 0 (r values); w NULL is st_als_gram. Allocates a
 * block of scaled rows: -1 when out of memory. */
int st_als_gram_weighted(const float *F, uint64_t r, uint32_t k, const float *w, float *G);

/* The naive reference: one half-step in double precision that forms the full
 * confidence-weighted system of every row explicitly (O(rows * cols * k^2))
 * and solves it by plain Cholesky. For tests on small problems only. */
int st_als_reference_half_step(const st_als_params *p, const st_csr *a, const float *c, const float *fixed,
                               uint32_t n_fixed, float *rows);
/* The reference's solve: A z = b for a k x k symmetric positive definite A
 * (row-major, overwritten by its Cholesky factor), z into b; -1 when A is
 * not positive definite. */
int st_als_reference_solve(double *A, double *b, uint32_t k);

#endif
