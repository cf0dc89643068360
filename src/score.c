/* score: dot products, one sgemv per user, and a bounded-heap top-k.
 *
 * The top-k keeps a min-heap of the best `want` candidates seen so far (the
 * worst at the root), so selecting from n scores costs O(n log want) with no
 * allocation; the survivors are then heap-sorted best first.
 */
#include "score.h"

#include <cblas.h>
#include <math.h>

float st_dot(const float *a, const float *b, uint32_t k)
{
    float s = 0;
    for (uint32_t i = 0; i < k; i++) s += a[i] * b[i];
    return s;
}

void st_score_all_segments(const st_model *m, const float *x, float *scores)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m->segments, (blasint)m->k, 1.0f, m->V, (blasint)m->k, x, 1,
                0.0f, scores, 1);
}

void st_score_prior(const st_model *m, float *q)
{
    float top = 0;
    for (uint32_t s = 0; s < m->segments; s++)
        if (m->popularity[s] > top) top = m->popularity[s];
    double d = log1p((double)top);
    for (uint32_t s = 0; s < m->segments; s++) q[s] = d > 0 ? (float)(log1p((double)m->popularity[s]) / d) : 0.0f;
}

void st_score_blend(const st_model *m, const float *q, const float *x, float *scores)
{
    st_score_all_segments(m, x, scores);
    float w = (float)m->h.prior_weight;
    if (w != 0)
        for (uint32_t s = 0; s < m->segments; s++) scores[s] += w * q[s];
}

float st_score_one(const st_model *m, const float *q, const float *x, uint32_t s)
{
    return st_dot(x, m->V + (size_t)s * m->k, m->k) + (float)m->h.prior_weight * q[s];
}

double st_score_calibrated(const st_model *m, float score)
{
    if (!(m->h.flags & ST_MODEL_CALIBRATED)) return NAN;
    double z = m->h.calib_a * score + m->h.calib_b;
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* a ranks worse than b: lower score, or equal score and higher index. */
static inline int worse(float sa, uint32_t ia, float sb, uint32_t ib) { return sa < sb || (sa == sb && ia > ib); }

static void sift_down(uint32_t *idx, float *sc, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(sc[l], idx[l], sc[w], idx[w])) w = l;
        if (r < n && worse(sc[r], idx[r], sc[w], idx[w])) w = r;
        if (w == i) return;
        float ts = sc[i];
        sc[i] = sc[w];
        sc[w] = ts;
        uint32_t ti = idx[i];
        idx[i] = idx[w];
        idx[w] = ti;
        i = w;
    }
}

static void sift_up(uint32_t *idx, float *sc, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!worse(sc[i], idx[i], sc[p], idx[p])) return;
        float ts = sc[i];
        sc[i] = sc[p];
        sc[p] = ts;
        uint32_t ti = idx[i];
        idx[i] = idx[p];
        idx[p] = ti;
        i = p;
    }
}

uint32_t st_topk(const float *scores, uint32_t n, uint32_t want, const uint32_t *exclude, uint64_t nexclude,
                 uint32_t *out_idx, float *out_score)
{
    if (want == 0) return 0;
    uint32_t size = 0;
    uint64_t e = 0;
    typedef float v8f __attribute__((vector_size(32)));
    typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
    typedef int v8i __attribute__((vector_size(32)));
    for (uint32_t i = 0; i < n; i++) {
        /* Once the heap is full almost every score is below its worst: skip
         * eight at a time while none beats it (a later index never wins a tie,
         * and NaN compares false, so skipped scores could not enter). */
        if (size == want && (i & 7) == 0) {
            v8f thr = out_score[0] - (v8f){0};
            while (i + 8 <= n) {
                v8i gt = *(const v8f_u *)(const void *)(scores + i) > thr;
                if (gt[0] | gt[1] | gt[2] | gt[3] | gt[4] | gt[5] | gt[6] | gt[7]) break;
                i += 8;
            }
            if (i >= n) break;
        }
        while (e < nexclude && exclude[e] < i) e++;
        if (e < nexclude && exclude[e] == i) continue;
        float s = scores[i];
        if (isnan(s)) continue;
        if (size < want) {
            out_idx[size] = i;
            out_score[size] = s;
            sift_up(out_idx, out_score, size);
            size++;
        } else if (worse(out_score[0], out_idx[0], s, i)) {
            out_idx[0] = i;
            out_score[0] = s;
            sift_down(out_idx, out_score, size, 0);
        }
    }
    /* Pop the worst to the end repeatedly: the array ends up best first. */
    for (uint32_t end = size; end > 1; end--) {
        float ts = out_score[0];
        out_score[0] = out_score[end - 1];
        out_score[end - 1] = ts;
        uint32_t ti = out_idx[0];
        out_idx[0] = out_idx[end - 1];
        out_idx[end - 1] = ti;
        sift_down(out_idx, out_score, end - 1, 0);
    }
    return size;
}
