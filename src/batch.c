/* batch: many users' queries in one pass (batch.h).
 *
 * Threads take contiguous ranges (of rows for segments, of segments for
 * audiences), so no two threads ever write the same output and none waits
 * for another; each thread owns its scratch. The sgemm blocks are sized so a
 * block's scores stay near the cache (about 2 MiB for rows x segments, 1 MiB
 * for segments x rows): a block of C = A B^T with the rank k inner, so
 * OpenBLAS runs its packed kernels at close to the machine's sgemm rate.
 * An audience keeps, per segment, its best `want` rows so far; each block's
 * best (st_topk) are merged in, the earlier rows first on equal scores, so
 * the result is the one st_topk over all rows gives.
 */
#include "batch.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "score.h"
#include "util.h"

typedef struct {
    const st_model *m;
    const float *q;
    const st_batch_rows *r;
    const float *U;
    const uint8_t *skip;
    uint64_t rows, nskip;
    float min;
    uint32_t want, lo, hi;
    int gemm, failed;
    uint32_t *idx, *got;
    float *score;
    uint64_t *reach;
} batch_job;

/* Runs fn over jobs[0..n) on n threads (the first on the caller's). */
static int run_jobs(void *(*fn)(void *), batch_job *jobs, int n)
{
    pthread_t tid[256];
    int started = 0;
    for (int i = 1; i < n; i++, started++)
        if (pthread_create(&tid[i], NULL, fn, &jobs[i]) != 0) break;
    for (int i = started + 1; i < n; i++) fn(&jobs[i]); /* threads refused: done here */
    fn(&jobs[0]);
    int failed = jobs[0].failed;
    for (int i = 1; i <= started; i++) {
        pthread_join(tid[i], NULL);
        failed |= jobs[i].failed;
    }
    for (int i = started + 1; i < n; i++) failed |= jobs[i].failed;
    return failed ? -1 : 0;
}

/* Splits [0, total) into n ranges at multiples of grain, job i taking [lo,
 * hi). The blocks are then the same whatever the thread count, and so is
 * every sgemm's rounding: the output does not depend on --threads. */
static int split_jobs(batch_job *jobs, const batch_job *proto, int threads, uint32_t total, uint32_t grain)
{
    uint32_t grains = (total + grain - 1) / grain;
    int n = threads < 1 ? 1 : threads > 256 ? 256 : threads;
    if ((uint32_t)n > grains) n = grains ? (int)grains : 1;
    for (int i = 0; i < n; i++) {
        jobs[i] = *proto;
        uint64_t lo = (uint64_t)grains * (uint64_t)i / (uint64_t)n * grain,
                 hi = (uint64_t)grains * (uint64_t)(i + 1) / (uint64_t)n * grain;
        jobs[i].lo = (uint32_t)(lo < total ? lo : total);
        jobs[i].hi = (uint32_t)(hi < total ? hi : total);
    }
    openblas_set_num_threads(1);
    return n;
}

/* Rows per sgemm block: their scores in about 2 MiB. */
static uint32_t segments_block(int gemm, uint32_t n)
{
    if (!gemm) return 1;
    uint32_t block = (uint32_t)((2u << 20) / ((size_t)n * sizeof(float)));
    return block < 1 ? 1 : block > 256 ? 256 : block;
}

static void *segments_worker(void *arg)
{
    batch_job *j = arg;
    const st_model *m = j->m;
    uint32_t n = m->segments, k = m->k, want = j->want;
    uint32_t block = segments_block(j->gemm, n);
    float *S = st_malloc((size_t)block * n * sizeof *S);
    if (!S) {
        j->failed = 1;
        return NULL;
    }
    float w = (float)m->h.prior_weight;
    const st_batch_rows *r = j->r;
    for (uint32_t i0 = j->lo; i0 < j->hi; i0 += block) {
        uint32_t nb = j->hi - i0 < block ? j->hi - i0 : block;
        if (j->gemm) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)n, (int)k, 1.0f, r->X + (size_t)i0 * k,
                        (int)k, m->V, (int)k, 0.0f, S, (int)n);
            if (w != 0) /* as st_score_blend adds it */
                for (uint32_t b = 0; b < nb; b++)
                    for (uint32_t s = 0; s < n; s++) S[(size_t)b * n + s] += w * j->q[s];
        }
        for (uint32_t b = 0; b < nb; b++) {
            uint32_t row = i0 + b;
            float *sc = S + (size_t)b * n;
            if (!j->gemm) st_score_blend(m, j->q, r->X + (size_t)row * k, sc);
            const uint32_t *ex = r->hist_off ? r->hist + r->hist_off[row] : NULL;
            uint64_t nex = r->hist_off ? r->hist_off[row + 1] - r->hist_off[row] : 0;
            j->got[row] = st_topk(sc, n, want, ex, nex, j->idx + (size_t)row * want, j->score + (size_t)row * want);
        }
    }
    st_free(S);
    return NULL;
}

int st_batch_segments(const st_model *m, const float *q, const st_batch_rows *r, uint32_t want, int gemm, int threads,
                      uint32_t *idx, float *score, uint32_t *got)
{
    if (r->rows == 0) return 0;
    batch_job proto = {.m = m, .q = q, .r = r, .want = want, .gemm = gemm, .idx = idx, .got = got, .score = score};
    batch_job jobs[256];
    int n = split_jobs(jobs, &proto, threads, r->rows, segments_block(gemm, m->segments));
    return run_jobs(segments_worker, jobs, n);
}

/* Merges the block's best (bi, bs: nb of them, rows after every row of the
 * kept list) into a segment's kept list (ki, ks: *nk), keeping `want`; t
 * is scratch of want entries each. */
static void merge_best(uint32_t *ki, float *ks, uint32_t *nk, const uint32_t *bi, const float *bs, uint32_t nb,
                       uint32_t want, uint32_t *ti, float *ts)
{
    uint32_t a = 0, b = 0, o = 0;
    while (o < want && (a < *nk || b < nb)) {
        /* Equal scores: the kept one, an earlier row. */
        if (b >= nb || (a < *nk && ks[a] >= bs[b])) {
            ti[o] = ki[a];
            ts[o++] = ks[a++];
        } else {
            ti[o] = bi[b];
            ts[o++] = bs[b++];
        }
    }
    memcpy(ki, ti, o * sizeof *ki);
    memcpy(ks, ts, o * sizeof *ks);
    *nk = o;
}

enum { AUD_SEGS = 64, AUD_ROWS = 4096 };

/* Scores of segments s0.. (ns) for rows u0.. (nu) in C (ns x nu), blended,
 * NaN where skipped or under min; counts the rest into reach. */
static void audience_block(const batch_job *j, uint32_t s0, uint32_t ns, uint64_t u0, uint32_t nu, float *C)
{
    const st_model *m = j->m;
    uint32_t k = m->k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ns, (int)nu, (int)k, 1.0f, m->V + (size_t)s0 * k, (int)k,
                j->U + u0 * k, (int)k, 0.0f, C, (int)nu);
    for (uint32_t a = 0; a < ns; a++) {
        float add = (float)m->h.prior_weight * j->q[s0 + a], *c = C + (size_t)a * nu;
        uint64_t n = 0;
        for (uint32_t b = 0; b < nu; b++) {
            c[b] += add;
            if ((u0 + b < j->nskip && j->skip[u0 + b]) || !(c[b] >= j->min)) c[b] = NAN;
            else n++;
        }
        j->reach[s0 + a] += n;
    }
}

static void *audiences_worker(void *arg)
{
    batch_job *j = arg;
    uint32_t want = j->want;
    float *C = st_malloc((size_t)AUD_SEGS * AUD_ROWS * sizeof *C), *bs = st_malloc(want * sizeof *bs),
          *ts = st_malloc(want * sizeof *ts);
    uint32_t *bi = st_malloc(want * sizeof *bi), *ti = st_malloc(want * sizeof *ti);
    if (!C || !bs || !ts || !bi || !ti) {
        j->failed = 1;
    } else {
        for (uint32_t s0 = j->lo; s0 < j->hi; s0 += AUD_SEGS) {
            uint32_t ns = j->hi - s0 < AUD_SEGS ? j->hi - s0 : AUD_SEGS;
            for (uint64_t u0 = 0; u0 < j->rows; u0 += AUD_ROWS) {
                uint32_t nu = j->rows - u0 < AUD_ROWS ? (uint32_t)(j->rows - u0) : AUD_ROWS;
                audience_block(j, s0, ns, u0, nu, C);
                for (uint32_t a = 0; a < ns; a++) {
                    uint32_t s = s0 + a, nb = st_topk(C + (size_t)a * nu, nu, want, NULL, 0, bi, bs);
                    for (uint32_t i = 0; i < nb; i++) bi[i] += (uint32_t)u0;
                    merge_best(j->idx + (size_t)s * want, j->score + (size_t)s * want, &j->got[s], bi, bs, nb, want,
                               ti, ts);
                }
            }
        }
    }
    st_free(C);
    st_free(bs);
    st_free(ts);
    st_free(bi);
    st_free(ti);
    return NULL;
}

int st_batch_audiences(const st_model *m, const float *q, const float *U, uint64_t rows, const uint8_t *skip,
                       uint64_t nskip, uint32_t want, float min, int threads, uint32_t *idx, float *score, uint32_t *got,
                       uint64_t *reach)
{
    memset(got, 0, (size_t)m->segments * sizeof *got);
    memset(reach, 0, (size_t)m->segments * sizeof *reach);
    batch_job proto = {.m = m, .q = q, .U = U, .rows = rows, .skip = skip, .nskip = skip ? nskip : 0, .min = min,
                       .want = want,
                       .idx = idx, .got = got, .score = score, .reach = reach};
    batch_job jobs[256];
    int n = split_jobs(jobs, &proto, threads, m->segments, AUD_SEGS);
    return run_jobs(audiences_worker, jobs, n);
}
