/* ann_bench: the approximate AUDIENCE (ann.c) on one trained model file
 * against the exact scan (scan.c) in the same run: the index's build
 * (seconds, memory, the recall it measured), then for a number of segments
 * the exact top 1,000 on every thread, the approximate top 1,000 on one
 * thread, recall@1,000 of the approximate answer against the exact one,
 * and the streaming-read floor of the user factors on the same threads
 * (bench/scale.sh runs it; bench/README.md explains the columns).
 *
 * Usage: ann_bench MODEL [threads] [queries]
 * Trained factors matter: random factors have no clusters for an index to
 * use, so their recall or speed says nothing of real models.
 */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ann.h"
#include "model.h"
#include "rng.h"
#include "scan.h"
#include "score.h"
#include "util.h"

enum { WANT = 1000, SEEDS = 100 };

/* ---- the floor: the threads reading the factors' bytes once -------------------- */

/* Each task sums 1 MiB as 64-bit integers in four 256-bit accumulators, so
 * the loop waits on memory alone (as bench/scan_bench.c's floor does). */
typedef struct {
    const char *p;
    uint64_t bytes;
    long long sums[256];
} floor_job;

enum { FLOOR_TASK = 1 << 20 };

static void floor_task(void *ctx, uint64_t task, int thread)
{
    floor_job *j = ctx;
    uint64_t a = task * FLOOR_TASK, b = a + FLOOR_TASK < j->bytes ? a + FLOOR_TASK : j->bytes;
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    uint64_t i = a;
    for (; i + 128 <= b; i += 128)
        for (int w = 0; w < 4; w++)
            acc[w] = _mm256_add_epi64(acc[w], _mm256_loadu_si256((const __m256i *)(j->p + i + 32 * w)));
    long long t = 0, lanes[4];
    for (int w = 0; w < 4; w++) {
        _mm256_storeu_si256((__m256i *)lanes, acc[w]);
        t += lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    for (; i < b; i++) t += j->p[i];
    j->sums[thread & 255] += t;
}

/* Seconds to read `bytes` at p once on `threads` threads. */
static double read_floor(const void *p, uint64_t bytes, int threads)
{
    floor_job j = {.p = p, .bytes = bytes};
    double t0 = st_now();
    st_parallel_run(threads, (bytes + FLOOR_TASK - 1) / FLOOR_TASK, floor_task, &j);
    double t = st_now() - t0;
    long long s = 0;
    for (int i = 0; i < 256; i++) s += j.sums[i];
    if (s == 12345) printf("#\n"); /* the sums are used */
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Best and median of n timings (seconds), in ms. */
static void best_median(double *t, int n, double *best, double *median)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *best = t[0] * 1e3;
    *median = t[n / 2] * 1e3;
}

/* One question's timings and recall over nq queries. */
typedef struct {
    double *te, *ta, *tf; /* exact, approximate, floor: seconds per query */
    double recall, least, rows;
    int proved, exact_scores, n;
} round_stats;

/* The exact and the approximate top WANT of query q, timed (the floor read
 * just before, on the same threads), compared, into r's i-th entries.
 * ei/es/ai/as: WANT entries each. */
static void one_query(const st_model *m, const st_ann *a, const st_scan_query *q, int threads, round_stats *r, int i,
                      uint32_t *ei, float *es, uint32_t *ai, float *as)
{
    st_scan_result sr;
    st_ann_result ar;
    r->tf[i] = read_floor(m->U, (uint64_t)m->users * m->k * sizeof(float), threads);
    double t0 = st_now();
    st_scan_best(m, q, ei, es, &sr);
    r->te[i] = st_now() - t0;
    t0 = st_now();
    st_ann_best(a, m, q, 0, ai, as, &ar);
    r->ta[i] = st_now() - t0;
    for (uint32_t j = 0; j < ar.n; j++) {
        float s = 0;
        st_score_rows(m->U + (size_t)ai[j] * m->k, 1, m->k, q->x, &s);
        r->exact_scores &= s + q->add == as[j];
    }
    qsort(ei, sr.n, sizeof *ei, cmp_u32);
    uint32_t hit = 0;
    for (uint32_t j = 0; j < ar.n; j++) hit += bsearch(&ai[j], ei, sr.n, sizeof *ei, cmp_u32) != NULL;
    double rec = sr.n ? (double)hit / sr.n : 1;
    r->recall += rec;
    r->least = rec < r->least ? rec : r->least;
    r->rows += (double)ar.scored;
    r->proved += ar.exact;
    r->n++;
}

static void print_round(const char *what, const st_model *m, round_stats *r, int threads)
{
    double fb, fm, eb, em, ab, am, mib = (double)m->users * m->k * 4 / 1048576.0;
    best_median(r->tf, r->n, &fb, &fm);
    best_median(r->te, r->n, &eb, &em);
    best_median(r->ta, r->n, &ab, &am);
    printf("\n| %s (%u users, rank %u, %d queries) | threads | best ms | median ms | MiB read | x read floor | "
           "recall@1,000 |\n|---|---|---|---|---|---|---|\n",
           what, m->users, m->k, r->n);
    printf("| streaming read of the user factors (the floor) | %d | %.2f | %.2f | %.0f | 1.00 | |\n", threads, fb, fm, mib);
    printf("| exact float32 scan | %d | %.2f | %.2f | %.0f | %.2f | 1 |\n", threads, eb, em, mib, eb / fb);
    printf("| approximate (index, --approx) | 1 | %.2f | %.2f | %.1f | %.2f | %.4f (least %.4f) |\n", ab, am,
           r->rows / r->n * m->k * 4 / 1048576.0, ab / fb, r->recall / r->n, r->least);
    printf("\nmedian speed-up of the approximate over the exact scan: %.1fx; %d of %d probes proved exact by the "
           "bound; every approximate score equal to the exact one: %s\n",
           em / am, r->proved, r->n, r->exact_scores ? "yes" : "NO");
}

/* LOOKALIKE's query for seeds: their centroid (summed in double), the
 * seeds ascending into the exclude list. */
static void seed_query(const st_model *m, uint32_t *seeds, uint32_t n, float *centroid, st_scan_query *q)
{
    qsort(seeds, n, sizeof *seeds, cmp_u32);
    for (uint32_t t = 0; t < m->k; t++) {
        double sum = 0;
        for (uint32_t i = 0; i < n; i++) sum += m->U[(size_t)seeds[i] * m->k + t];
        centroid[t] = (float)(sum / n);
    }
    *q = (st_scan_query){.x = centroid, .add = -0.0f, .min = -INFINITY, .want = WANT, .exclude = seeds, .nexclude = n};
}

int main(int argc, char **argv)

{
    if (argc < 2) {
        fprintf(stderr, "usage: ann_bench MODEL [threads] [queries]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : st_cpu_count(), nq = argc > 3 ? atoi(argv[3]) : 20;
    if (threads < 1) threads = 1;
    if (nq < 1) nq = 1;
    char err[ST_ERRLEN];
    st_model m;
    if (st_model_read(argv[1], &m, err) != 0) {
        fprintf(stderr, "ann_bench: %s\n", err);
        return 1;
    }
    if (!m.U) {
        fprintf(stderr, "ann_bench: %s: a float32 model is needed (the exact float32 scan is the reference)\n", argv[1]);
        return 1;
    }
    st_scan_set_threads(threads);
    st_ann *a = st_ann_build(&m, 0, 0.98, 42, threads, err);
    if (!a) {
        fprintf(stderr, "ann_bench: %s\n", err);
        return 1;
    }
    st_ann_stats st;
    st_ann_get_stats(a, &st);
    printf("index of %u users, rank %u: %u lists, %.1f MiB, built in %.1f s on %d threads; at build: recall@%u %.4f "
           "(%u queries) reading at most %llu rows (%.2f%%)\n",
           m.users, m.k, st.lists, st.bytes / 1048576.0, st.build_seconds, threads, st.recall_at, st.recall,
           st.recall_queries, (unsigned long long)st.probe_rows, 100.0 * st.probe_rows / m.users);
    uint32_t *ei = malloc(WANT * sizeof *ei), *ai = malloc(WANT * sizeof *ai), seeds[SEEDS];
    float *es = malloc(WANT * sizeof *es), *as = malloc(WANT * sizeof *as), *centroid = malloc(m.k * sizeof(float));
    round_stats ra = {malloc(nq * sizeof(double)), malloc(nq * sizeof(double)), malloc(nq * sizeof(double)), 0, 1, 0, 0, 1, 0};
    round_stats rl = {malloc(nq * sizeof(double)), malloc(nq * sizeof(double)), malloc(nq * sizeof(double)), 0, 1, 0, 0, 1, 0};
    st_rng rng = st_rng_for(7, 7);
    for (int i = 0; i < nq; i++) {
        st_scan_query q = {.x = m.V + (size_t)st_rng_below(&rng, m.segments) * m.k, .add = -0.0f, .min = -INFINITY,
                           .want = WANT};
        one_query(&m, a, &q, threads, &ra, i, ei, es, ai, as);
        /* Look-alikes of 100 of the segment's best 1,000 users (an advertiser's customers, say). */
        for (uint32_t j = 0; j < SEEDS; j++) seeds[j] = ei[(size_t)j * (WANT / SEEDS)];
        seed_query(&m, seeds, SEEDS, centroid, &q);
        one_query(&m, a, &q, threads, &rl, i, ei, es, ai, as);
    }
    print_round("AUDIENCE top 1,000", &m, &ra, threads);
    print_round("LOOKALIKE of 100 of a segment's best users, top 1,000", &m, &rl, threads);
    int good = ra.exact_scores && rl.exact_scores;
    st_ann_free(a);
    st_model_free(&m);
    free(ei);
    free(ai);
    free(es);
    free(as);
    free(centroid);
    for (int i = 0; i < 2; i++) {
        round_stats *r = i ? &rl : &ra;
        free(r->te);
        free(r->ta);
        free(r->tf);
    }
    return good ? 0 : 1;
}
