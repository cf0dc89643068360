/* eval_bench: users evaluated per second, and the scoring step (sgemm over
 * blocks of users + bounded-heap top-K) against the sgemm peak of this
 * OpenBLAS measured in the same run. Random factors; sizes from argv:
 *   eval_bench USERS SEGMENTS RANK THREADS */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ranking.h"
#include "rng.h"
#include "util.h"

int main(int argc, char **argv)
{
    uint32_t e = argc > 1 ? (uint32_t)atoi(argv[1]) : 20000, n = argc > 2 ? (uint32_t)atoi(argv[2]) : 20000;
    uint32_t k = argc > 3 ? (uint32_t)atoi(argv[3]) : 64;
    int threads = argc > 4 ? atoi(argv[4]) : st_cpu_count();
    st_rng g;
    st_rng_seed(&g, 1);
    float *V = malloc((size_t)n * k * sizeof *V);
    for (size_t i = 0; i < (size_t)n * k; i++) V[i] = (float)st_rng_uniform(&g) - 0.5f;
    st_eval_set s;
    st_eval_set_init(&s, k);
    s.users = s.cap = e;
    s.X = malloc((size_t)e * k * sizeof *s.X);
    for (size_t i = 0; i < (size_t)e * k; i++) s.X[i] = (float)st_rng_uniform(&g) - 0.5f;
    s.seen_ptr = malloc(((size_t)e + 1) * 8);
    s.test_ptr = malloc(((size_t)e + 1) * 8);
    s.seen = malloc((size_t)e * 20 * 4);
    s.test = malloc((size_t)e * 5 * 4);
    s.validation = calloc(e, 1);
    s.seen_ptr[0] = s.test_ptr[0] = 0;
    for (uint32_t u = 0; u < e; u++) {
        /* 20 seen and 5 held-out segments, ascending and disjoint */
        uint32_t step = n / 25;
        for (int j = 0; j < 20; j++) s.seen[(size_t)u * 20 + j] = (u % step) + (uint32_t)j * step;
        for (int j = 0; j < 5; j++) s.test[(size_t)u * 5 + j] = (u % step) + (uint32_t)(20 + j) * step;
        s.seen_ptr[u + 1] = (uint64_t)(u + 1) * 20;
        s.test_ptr[u + 1] = (uint64_t)(u + 1) * 5;
    }
    st_ranker r = {.kind = ST_RANK_MODEL, .V = V};
    char err[ST_ERRLEN];
    double flops = 2.0 * e * n * k, t_score, best_score = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        if (st_eval_score_only(&s, &r, n, 100, threads, &t_score, err) != 0) return fprintf(stderr, "%s\n", err), 1;
        if (t_score < best_score) best_score = t_score;
    }
    uint32_t ks[5] = {5, 10, 20, 50, 100};
    st_eval_run run;
    if (st_eval_rank(&s, &r, n, ks, 5, NULL, threads, &run, err) != 0) return fprintf(stderr, "%s\n", err), 1;
    double t_full = run.seconds;
    st_eval_run_free(&run);
    /* The floor: the best of a few large square sgemms on the same threads. */
    openblas_set_num_threads(threads);
    int N = 2048;
    float *A = malloc((size_t)N * N * 4), *B = malloc((size_t)N * N * 4), *C = malloc((size_t)N * N * 4);
    for (size_t i = 0; i < (size_t)N * N; i++) A[i] = B[i] = 0.001f * (float)(i % 1000);
    double peak = 0;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = st_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, A, N, B, N, 0, C, N);
        double gf = 2.0 * N * N * (double)N / (st_now() - t0) / 1e9;
        if (gf > peak) peak = gf;
    }
    double score_gf = flops / best_score / 1e9;
    printf("users %u, segments %u, rank %u, threads %d\n", e, n, k, threads);
    printf("scoring step (sgemm + top-100)   %10.0f users/s   %7.1f GFLOP/s   %5.1f%% of sgemm peak\n",
           e / best_score, score_gf, 100 * score_gf / peak);
    printf("full evaluation (+ 5 metrics x 5 K, AUC) %6.0f users/s\n", e / t_full);
    printf("floor: OpenBLAS sgemm 2048^3 on %d threads  %7.1f GFLOP/s\n", threads, peak);
    return 0;
}
