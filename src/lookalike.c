/* lookalike: the seeds folded in as a segment (lookalike.h).
 *
 * Why a solve and not the seeds' mean vector: the mean scores a user by
 * closeness to the seeds in factor space, so users who are simply large
 * (active) score high whatever the seeds; the item solve asks which segment
 * vector, scored the way training scores segments (against every user, the
 * unobserved ones weighted w0), best explains "these users engaged", which
 * discounts directions every user has. Measured with `starling eval
 * --lookalike` (docs/EVALUATION.md). It is the same solve as a user's
 * fold-in (st_als_foldin) with the roles of users and segments swapped.
 */
#include "lookalike.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "als.h"
#include "score.h"
#include "util.h"

enum { GRAM_BLOCK = 4096 }; /* rows per ssyrk: float within a block, double across blocks */

int st_lookalike_gram_add(const st_model *m, double *acc)
{
    uint32_t k = m->k;
    float *T = st_malloc((size_t)k * k * sizeof *T);
    float *B = m->U ? NULL : st_malloc((size_t)GRAM_BLOCK * k * sizeof *B); /* int8: a block dequantized */
    if (!T || (!m->U && !B)) {
        st_free(T);
        st_free(B);
        return -1;
    }
    for (uint32_t r0 = 0; r0 < m->users; r0 += GRAM_BLOCK) {
        uint32_t r1 = m->users - r0 > GRAM_BLOCK ? r0 + GRAM_BLOCK : m->users;
        const float *rows = m->U ? m->U + (size_t)r0 * k : B;
        for (uint32_t u = r0; u < r1 && B; u++) {
            float *b = B + (size_t)(u - r0) * k;
            const float *x = st_model_user(m, u, b);
            if (x != b) memcpy(b, x, k * sizeof *b);
        }
        /* rows is (r1 - r0) x k row-major, that is k x (r1 - r0)
         * column-major: T = rows^T rows, upper triangle (T[j k + i], i <= j). */
        cblas_ssyrk(CblasColMajor, CblasUpper, CblasNoTrans, (blasint)k, (blasint)(r1 - r0), 1.0f, rows, (blasint)k,
                    0.0f, T, (blasint)k);
        for (uint32_t j = 0; j < k; j++)
            for (uint32_t i = 0; i <= j; i++) {
                double t = T[(size_t)j * k + i];
                acc[(size_t)i * k + j] += t;
                if (i != j) acc[(size_t)j * k + i] += t;
            }
    }
    st_free(T);
    st_free(B);
    return 0;
}

int st_lookalike_gram(const st_model *m, float *G)
{
    size_t kk = (size_t)m->k * m->k;
    double *acc = st_calloc(kk, sizeof *acc);
    if (!acc || st_lookalike_gram_add(m, acc) != 0) {
        st_free(acc);
        return -1;
    }
    for (size_t i = 0; i < kk; i++) G[i] = (float)acc[i];
    st_free(acc);
    return 0;
}

double st_lookalike_confidence(const st_model *m, uint64_t users, uint32_t nseeds, float *cm1)
{
    st_als_params p;
    st_model_params(&m->h, &p);
    /* One seed pair at the typical value of a pair, as SIMILAR folds in a
     * one-segment user; bm25: a segment held by the seeds, a mean user. */
    double r = p.confidence == ST_CONF_LOG && p.eps > 0 ? p.eps : 1.0;
    double idf = p.confidence == ST_CONF_BM25 ? log((double)users) - log1p((double)nseeds) : 0;
    float c = st_als_conf1(&p, r, idf, 1.0);
    for (uint32_t i = 0; i < nseeds; i++) cm1[i] = c;
    /* A segment row: its nonzeros are its users, its columns every user. */
    return st_als_row_lambda(&p, nseeds, (uint32_t)(users < UINT32_MAX ? users : UINT32_MAX));
}

int st_lookalike_query(const st_model *m, uint64_t users, const float *G, const float *rows, uint32_t nseeds,
                       float *v)
{
    uint32_t k = m->k;
    float *cm1 = st_malloc(((size_t)nseeds + 1) * sizeof *cm1);
    uint32_t *iota = st_malloc(((size_t)nseeds + 1) * sizeof *iota);
    float *work = st_malloc(st_als_foldin_scratch(k) * sizeof *work);
    int rc = cm1 && iota && work ? 0 : -1;
    if (rc == 0) {
        for (uint32_t i = 0; i < nseeds; i++) iota[i] = i;
        double lambda = st_lookalike_confidence(m, users, nseeds, cm1);
        int ok = st_als_foldin(k, rows, G, lambda, iota, cm1, nseeds, v, work) == 0;
        for (uint32_t j = 0; j < k && ok; j++) ok = isfinite(v[j]);
        if (!ok) {
            st_score_centroid(rows, k, iota, nseeds, v);
            rc = 1;
        }
    }
    st_free(cm1);
    st_free(iota);
    st_free(work);
    return rc;
}

int st_lookalike_scores(const st_model *m, const float *G, const uint32_t *seeds, uint32_t nseeds, float *scratch)
{
    uint32_t k = m->k;
    float *rows = st_malloc(((size_t)nseeds * k + 1) * sizeof *rows);
    if (!rows) return -1;
    for (uint32_t i = 0; i < nseeds; i++) {
        float *x = rows + (size_t)i * k;
        const float *u = st_model_user(m, seeds[i], x);
        if (u != x) memcpy(x, u, k * sizeof *x);
    }
    float *v = scratch + m->users;
    int rc = st_lookalike_query(m, m->users, G, rows, nseeds, v);
    st_free(rows);
    if (rc >= 0) st_score_all_users(m, v, scratch);
    return rc;
}
