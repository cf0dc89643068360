/* scan_bench: the scans over every user (AUDIENCE top 1,000, LOOKALIKE of
 * 100 seeds, REACH, the reach curve) on one model file, and LOOKALIKE's
 * fixed costs (U^T U once per model load, the seeds' k x k solve per
 * request: lookalike.h), each beside the
 * streaming-read floor of the very bytes it scans, measured in the same run
 * on the same threads (bench/scale.sh runs it; bench/README.md explains).
 *
 * Usage: scan_bench MODEL [threads] [repetitions]
 * Prints one markdown row per question: milliseconds (best and median of
 * the repetitions, a different segment or seed list each), the bytes
 * scanned, the floor's milliseconds for those bytes and the ratio; then,
 * for an int8 model, how many users the candidate stage rescored exactly,
 * and a check that every answer equals the float scan's.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lookalike.h"
#include "model.h"
#include "rng.h"
#include "scan.h"
#include "scan_q8.h"
#include "score.h"
#include "util.h"

enum { WANT = 1000, SEEDS = 100, CURVE = 26 };

/* Wall-clock seconds, or with SCAN_BENCH_CPU set in the environment the
 * process's CPU seconds (every thread's), for comparing variants on a busy
 * machine: time spent waiting for a core is then left out. */
static int g_cpu;
static double clock_now(void)
{
    if (!g_cpu) return st_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the floor: every thread summing its share of the bytes ------------------- */

typedef long long v4i __attribute__((vector_size(32)));

typedef struct {
    const char *p;
    size_t n;
    long long sum;
} share;

static void *read_share(void *arg)
{
    share *s = arg;
    v4i a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, x;
    size_t i = 0;
    for (; i + 128 <= s->n; i += 128) {
        memcpy(&x, s->p + i, 32);
        a0 += x;
        memcpy(&x, s->p + i + 32, 32);
        a1 += x;
        memcpy(&x, s->p + i + 64, 32);
        a2 += x;
        memcpy(&x, s->p + i + 96, 32);
        a3 += x;
    }
    v4i a = a0 + a1 + a2 + a3;
    long long t = a[0] + a[1] + a[2] + a[3];
    for (; i < s->n; i++) t += s->p[i];
    s->sum = t;
    return NULL;
}

/* Seconds to read regions (pointers p[r], bytes n[r]) once on `threads`
 * threads, each thread a contiguous share of every region. */
static double read_once(const void *const *p, const size_t *n, int nreg, int threads)
{
    pthread_t t[64];
    share s[64 * 2];
    double t0 = clock_now();
    for (int i = 0; i < threads; i++) {
        for (int r = 0; r < nreg; r++) {
            size_t a = n[r] * i / threads, b = n[r] * (i + 1) / threads;
            s[i * nreg + r] = (share){(const char *)p[r] + a, b - a, 0};
        }
    }
    for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, read_share, &s[i * nreg]);
    read_share(&s[0]);
    for (int r = 1; r < nreg; r++) read_share(&s[r]);
    for (int i = 1; i < threads; i++) {
        pthread_join(t[i], NULL);
        for (int r = 1; r < nreg; r++) read_share(&s[i * nreg + r]);
    }
    return clock_now() - t0;
}

/* ---- timing ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double best, median;
} timing;

static timing summarize(double *t, int n)
{
    qsort(t, n, sizeof *t, cmp_double);
    return (timing){t[0] * 1e3, t[n / 2] * 1e3};
}

static void row(const char *what, timing t, double bytes, double floor_ms, const char *note)
{
    printf("| %s | %.2f | %.2f | %.0f | %.2f | %.2f | %s |\n", what, t.best, t.median, bytes / 1048576.0, floor_ms,
           t.best / floor_ms, note);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* How tight the int8 bound is on segment 0's scores: every row's bounds
 * beside its exact score (the bounds must hold on every row), the median
 * and largest half-width against the scores' standard deviation, and how
 * many rows the bound leaves undecided at the 1,000th best score. */
static void bound_report(const st_model *m, const float *prior)
{
    uint32_t n = m->users;
    float *lo = malloc((size_t)n * sizeof *lo), *hi = malloc((size_t)n * sizeof *hi);
    float *ex = malloc((size_t)n * sizeof *ex), *ex2 = malloc((size_t)n * sizeof *ex2);
    if (!lo || !hi || !ex || !ex2) return;
    float add = (float)m->h.prior_weight * prior[0];
    st_scan_bounds(m, m->V, add, 0, n, lo, hi);
    st_scan_set_kernel(ST_SCAN_KERNEL_FLOAT);
    st_scan_bounds(m, m->V, add, 0, n, ex, ex2);
    st_scan_set_kernel(ST_SCAN_KERNEL_BEST);
    uint64_t broken = 0, undecided = 0, straddle = 0;
    double sum = 0, sum2 = 0;
    for (uint32_t i = 0; i < n; i++) {
        sum += ex[i];
        sum2 += (double)ex[i] * ex[i];
        if (lo[i] != lo[i] || hi[i] != hi[i]) undecided++;
        else if (!(lo[i] <= ex[i] && ex[i] <= hi[i])) broken++;
        ex2[i] = (hi[i] - lo[i]) / 2;
    }
    double sd = sqrt(sum2 / n - (sum / n) * (sum / n));
    qsort(ex2, n, sizeof *ex2, cmp_float);
    float med = ex2[n / 2], top = ex2[n - 1];
    memcpy(ex2, ex, (size_t)n * sizeof *ex2);
    qsort(ex2, n, sizeof *ex2, cmp_float);
    float t = ex2[n > WANT ? n - WANT : 0];
    for (uint32_t i = 0; i < n; i++) straddle += lo[i] < t && hi[i] >= t;
    printf("\nint8 bound on segment 0's %u scores: half-width median %.3g, largest %.3g (%.2e and %.2e of the scores' "
           "standard deviation %.3g); rows outside their bounds: %llu; undecided rows: %llu; rows the bound leaves "
           "undecided at the 1,000th score: %llu\n",
           n, med, top, med / sd, top / sd, sd, (unsigned long long)broken, (unsigned long long)undecided,
           (unsigned long long)straddle);
    free(lo);
    free(hi);
    free(ex);
    free(ex2);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: scan_bench MODEL [threads] [repetitions]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : st_cpu_count(), reps = argc > 3 ? atoi(argv[3]) : 9;
    if (threads < 1 || threads > 64) threads = st_cpu_count();
    if (reps < 1 || reps > 1000) reps = 9;
    g_cpu = getenv("SCAN_BENCH_CPU") != NULL;
    st_scan_set_threads(threads);
    char err[ST_ERRLEN];
    st_model m;
    if (st_model_load(argv[1], &m, err) != 0) {
        fprintf(stderr, "scan_bench: %s\n", err);
        return 1;
    }
    uint32_t k = m.k, n = m.segments;
    const void *reg[2] = {m.U ? (const void *)m.U : (const void *)m.Uq, m.Uscale};
    size_t len[2] = {(size_t)m.users * k * (m.U ? sizeof(float) : 1), m.U ? 0 : (size_t)m.users * sizeof(float)};
    int nreg = m.U ? 1 : 2;
    double bytes = (double)len[0] + (double)len[1];
    float *prior = malloc(((size_t)n + 1) * sizeof *prior), *centroid = malloc(k * sizeof *centroid);
    float *sc = malloc(WANT * sizeof *sc), *sc2 = malloc(WANT * sizeof *sc2);
    uint32_t *idx = malloc(WANT * sizeof *idx), *idx2 = malloc(WANT * sizeof *idx2), seeds[SEEDS];
    float *rows = malloc((size_t)SEEDS * k * sizeof *rows), *all = malloc(((size_t)m.users + 1) * sizeof *all);
    double *tf = malloc(reps * sizeof *tf), *ta = malloc(reps * sizeof *ta), *tl = malloc(reps * sizeof *tl);
    double *tr = malloc(reps * sizeof *tr), *tc = malloc(reps * sizeof *tc), *to = malloc(reps * sizeof *to);
    double *ts = malloc(reps * sizeof *ts), tg = clock_now();
    float *GU = malloc((size_t)k * k * sizeof *GU);
    if (st_lookalike_gram(&m, GU) != 0) {
        fprintf(stderr, "scan_bench: out of memory for U^T U\n");
        return 1;
    }
    tg = clock_now() - tg; /* one thread, as at load */
    st_score_prior(&m, prior);
    st_rng r;
    st_rng_seed(&r, 5);
    uint64_t rescored[3] = {0, 0, 0};
    int same = 1;
    st_scan_result res, ref;
    for (int i = 0; i < reps; i++) {
        tf[i] = read_once(reg, len, nreg, threads);
        uint32_t s = (uint32_t)st_rng_below(&r, n);
        st_scan_query q = {.x = m.V + (size_t)s * k, .add = (float)m.h.prior_weight * prior[s], .min = -INFINITY,
                           .want = WANT, .count = 1};
        double t0 = clock_now();
        st_scan_best(&m, &q, idx, sc, &res);
        ta[i] = clock_now() - t0;
        rescored[0] += res.rescored;
        float top = res.n ? sc[0] : 1.0f, tenth = res.n >= WANT ? sc[WANT - 1] : 0.0f;
        if (m.Uq && i == 0) { /* the same answer as the float scan of the dequantized rows */
            st_scan_set_kernel(ST_SCAN_KERNEL_FLOAT);
            st_scan_best(&m, &q, idx2, sc2, &ref);
            st_scan_set_kernel(ST_SCAN_KERNEL_BEST);
            same &= ref.n == res.n && ref.matching == res.matching && !memcmp(idx, idx2, res.n * sizeof *idx) &&
                    !memcmp(sc, sc2, res.n * sizeof *sc);
        }
        /* REACH at the 1,000th best score. */
        st_scan_query qr = q;
        qr.want = 0;
        qr.min = tenth;
        t0 = clock_now();
        st_scan_best(&m, &qr, idx, sc, &res);
        tr[i] = clock_now() - t0;
        rescored[1] += res.rescored;
        /* The curve the explorer draws: 26 thresholds from 0 to the best score. */
        float t[CURVE];
        uint64_t counts[CURVE];
        for (int c = 0; c < CURVE; c++) t[c] = top * (float)c / (CURVE - 1);
        t0 = clock_now();
        st_scan_curve(&m, &q, t, CURVE, counts, &res);
        tc[i] = clock_now() - t0;
        rescored[2] += res.rescored;
        if (m.Uq && i == 0) {
            uint64_t ref_counts[CURVE];
            st_scan_set_kernel(ST_SCAN_KERNEL_FLOAT);
            st_scan_curve(&m, &q, t, CURVE, ref_counts, &ref);
            st_scan_set_kernel(ST_SCAN_KERNEL_BEST);
            same &= !memcmp(counts, ref_counts, sizeof counts);
        }
        /* LOOKALIKE of 100 random seeds. */
        for (int j = 0; j < SEEDS; j++) seeds[j] = (uint32_t)st_rng_below(&r, m.users);
        for (int j = 0; j < SEEDS; j++) {
            const float *u = st_model_user(&m, seeds[j], rows + (size_t)j * k);
            memmove(rows + (size_t)j * k, u, k * sizeof *rows);
        }
        t0 = clock_now();
        st_lookalike_query(&m, m.users, GU, rows, SEEDS, centroid);
        ts[i] = clock_now() - t0;
        for (int a = 1; a < SEEDS; a++) /* sorted, for the exclusion list */
            for (int b = a; b > 0 && seeds[b - 1] > seeds[b]; b--) {
                uint32_t x = seeds[b];
                seeds[b] = seeds[b - 1];
                seeds[b - 1] = x;
            }
        st_scan_query ql = {.x = centroid, .add = -0.0f, .min = -INFINITY, .want = WANT, .exclude = seeds, .nexclude = SEEDS};
        t0 = clock_now();
        st_scan_best(&m, &ql, idx, sc, &res);
        tl[i] = clock_now() - t0 + ts[i];
        /* Before: every score into an array on one thread, then the selection. */
        t0 = clock_now();
        st_score_segment_users(&m, prior, s, all);
        st_topk(all, m.users, WANT, NULL, 0, idx2, sc2);
        to[i] = clock_now() - t0;
    }
    timing floor = summarize(tf, reps), aud = summarize(ta, reps);
    const char *kind = m.U ? "float32" : "int8";
    char note[128];
    printf("| question (%u users, rank %u, %s, %d threads) | best ms | median ms | MiB scanned | read floor ms | x floor "
           "| notes |\n|---|---:|---:|---:|---:|---:|---|\n",
           m.users, k, kind, threads);
    row("streaming read of the same bytes (the floor)", floor, bytes, floor.best, "");
    snprintf(note, sizeof note, "%s", m.Uq ? st_q8_kernel_name(st_q8_best()) : "");
    row("AUDIENCE top 1,000", aud, bytes, floor.best, note);
    row("LOOKALIKE 100 seeds, top 1,000 (solve and scan)", summarize(tl, reps), bytes, floor.best, note);
    timing solve = summarize(ts, reps);
    char fixed[128];
    snprintf(fixed, sizeof fixed, "%.1f us best, %.1f us median: one k x k Cholesky", solve.best * 1e3,
             solve.median * 1e3);
    row("LOOKALIKE's seed solve (100 seeds)", solve, 0, floor.best, fixed);
    snprintf(fixed, sizeof fixed, "once per model load, one thread, %.2f s", tg);
    row("U^T U of every user (ssyrk per 4,096 rows)", (timing){tg * 1e3, tg * 1e3}, bytes, floor.best, fixed);
    row("REACH at the 1,000th score", summarize(tr, reps), bytes, floor.best, note);
    timing cur = summarize(tc, reps);
    snprintf(note, sizeof note, "%d thresholds; %.2fx one AUDIENCE", CURVE, cur.best / aud.best);
    row("reach curve", cur, bytes, floor.best, note);
    row("AUDIENCE before (all scores, then top-k, 1 thread)", summarize(to, reps), bytes, floor.best, "");
    if (m.Uq) bound_report(&m, prior);
    if (m.Uq)
        printf("\nint8 candidate stage: %.1f exact rescores per AUDIENCE, %.1f per REACH, %.1f per curve (of %u users); "
               "answers equal to the float scan's: %s\n",
               (double)rescored[0] / reps, (double)rescored[1] / reps, (double)rescored[2] / reps, m.users,
               same ? "yes" : "NO");
    free(GU);
    free(ts);
    st_model_free(&m);
    return same ? 0 : 1;
}
