/* floors: what this machine can do at best, measured in the same run as the
 * benchmarks so every figure can be read against it.
 *
 *   sgemm_gflops  OpenBLAS sgemm, 2048^3, all threads (the compute floor)
 *   read_gbps     streaming read of 512 MiB by every thread (the bandwidth floor)
 *   memcpy_gbps   memcpy of 256 MiB by every thread (bytes copied per second)
 *   sgemv_us      one 10,000 x 64 sgemv, single-threaded (a scoring reference)
 *
 * Prints "name value" lines. Usage: floors [threads]
 */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    float *src, *dst;
    size_t n;
    double sum;
    int copy;
} job_t;

static void *work(void *arg)
{
    job_t *j = arg;
    if (j->copy) {
        memcpy(j->dst, j->src, j->n * sizeof(float));
        return NULL;
    }
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = 0; i + 8 <= j->n; i += 8) {
        s0 += j->src[i];
        s1 += j->src[i + 1];
        s2 += j->src[i + 2];
        s3 += j->src[i + 3];
        s4 += j->src[i + 4];
        s5 += j->src[i + 5];
        s6 += j->src[i + 6];
        s7 += j->src[i + 7];
    }
    j->sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    return NULL;
}

/* Best of `reps` runs of a threaded read or copy over n floats; bytes/s. */
static double bandwidth(int threads, size_t n, int copy, int reps)
{
    float *src = aligned_alloc(64, n * sizeof(float)), *dst = copy ? aligned_alloc(64, n * sizeof(float)) : NULL;
    for (size_t i = 0; i < n; i++) src[i] = (float)(i & 1023);
    if (dst) memset(dst, 0, n * sizeof(float));
    double best = 0, sink = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t t[64];
        job_t j[64];
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            size_t a = n * i / threads, b = n * (i + 1) / threads;
            j[i] = (job_t){src + a, dst ? dst + a : NULL, b - a, 0, copy};
            pthread_create(&t[i], NULL, work, &j[i]);
        }
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            sink += j[i].sum;
        }
        double bw = n * sizeof(float) / (now() - t0);
        if (bw > best) best = bw;
    }
    if (sink == 42.4242) puts("");
    free(src);
    free(dst);
    return best;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 64) threads = 2;
    openblas_set_num_threads(threads);
    int n = 2048;
    float *A = malloc((size_t)n * n * 4), *B = malloc((size_t)n * n * 4), *C = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        A[i] = (float)(i % 7) * 0.1f;
        B[i] = (float)(i % 5) * 0.1f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, B, n, 0, C, n);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, B, n, 0, C, n);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("sgemm_gflops %.1f\n", 2.0 * n * n * n / best / 1e9);
    free(A);
    free(B);
    free(C);
    printf("read_gbps %.1f\n", bandwidth(threads, (size_t)128 << 20, 0, 5) / 1e9);
    printf("memcpy_gbps %.1f\n", bandwidth(threads, (size_t)64 << 20, 1, 5) / 1e9);
    openblas_set_num_threads(1);
    int rows = 10000, k = 64;
    float *V = malloc((size_t)rows * k * 4), *x = malloc(k * 4), *y = malloc(rows * 4);
    for (int i = 0; i < rows * k; i++) V[i] = (float)(i % 11) * 0.01f;
    for (int i = 0; i < k; i++) x[i] = 0.1f;
    best = 1e30;
    for (int r = 0; r < 200; r++) {
        double t0 = now();
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, k, 1, V, k, x, 1, 0, y, 1);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("sgemv_us %.1f\n", best * 1e6);
    free(V);
    free(x);
    free(y);
    return 0;
}
