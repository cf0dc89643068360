/* Tests of top-k selection against a full sort, with exclusions and ties. */
#include "rng.h"
#include "score.h"
#include "tap.h"

static float *g_scores;
static int by_rank(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    int ni = isnan(g_scores[i]), nj = isnan(g_scores[j]);
    if (ni || nj) return ni && nj ? (i < j ? -1 : 1) : ni ? 1 : -1;
    if (g_scores[i] != g_scores[j]) return g_scores[i] > g_scores[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

/* st_topk against a full sort, on random scores with many ties. */
static void test_topk_random(st_rng *r)
{
    int all = 1;
    for (int trial = 0; trial < 400; trial++) {
        /* Small and large: the buffered selection (want <= 256) with several
         * compactions, and the heap (want > 256). */
        int big = trial >= 200;
        uint32_t n = 1 + (uint32_t)st_rng_below(r, big ? 6000 : 300);
        uint32_t want = 1 + (uint32_t)st_rng_below(r, big ? 400 : 40);
        float *s = malloc(n * sizeof *s);
        uint32_t *order = malloc(n * sizeof *order), *ex = malloc(n * sizeof *ex);
        uint32_t nex = 0;
        for (uint32_t i = 0; i < n; i++) {
            /* Few distinct values, so ties are common. */
            s[i] = big ? (float)st_rng_below(r, 2000) : (float)st_rng_below(r, 20);
            if (big && st_rng_uniform(r) < 0.01) s[i] = NAN;
            order[i] = i;
            if (st_rng_uniform(r) < 0.2) ex[nex++] = i;
        }
        g_scores = s;
        qsort(order, n, sizeof *order, by_rank);
        uint32_t idx[512];
        float top[512];
        uint32_t got = st_topk(s, n, want, ex, nex, idx, top);
        /* Expected: the sorted order without excluded indices, first `want`. */
        uint32_t k = 0, e = 0;
        for (uint32_t q = 0; q < n && k < want; q++) {
            uint32_t i = order[q];
            int excluded = 0;
            for (e = 0; e < nex; e++) excluded |= ex[e] == i;
            if (excluded || isnan(s[i])) continue;
            if (k >= got || idx[k] != i || top[k] != s[i]) all = 0;
            k++;
        }
        if (got != k) all = 0;
        free(s);
        free(order);
        free(ex);
    }
    ok(all, "top-k equals a full sort (ties by lower index, exclusions and NaN skipped) over 400 random cases");
}

/* st_topk's edge cases: NaN, ties, nothing wanted, everything excluded. */
static void test_topk_edges(void)
{
    float s[5] = {1, NAN, 3, 2, 3};
    uint32_t idx[5];
    float top[5];
    uint32_t got = st_topk(s, 5, 5, NULL, 0, idx, top);
    ok(got == 4 && idx[0] == 2 && idx[1] == 4 && idx[2] == 3 && idx[3] == 0, "NaN skipped, tie by index");
    ok(st_topk(s, 5, 0, NULL, 0, idx, top) == 0, "want 0 gives nothing");
    uint32_t ex[5] = {0, 1, 2, 3, 4};
    ok(st_topk(s, 5, 3, ex, 5, idx, top) == 0, "everything excluded gives nothing");
}

/* Pruned top-k over segments = full scan + st_topk, exactly. */
static void test_topk_segments_pruned(st_rng *r)
{
    int same = 1, pruned_some = 0;
    for (int trial = 0; trial < 300 && same; trial++) {
        uint32_t n = 1 + (uint32_t)st_rng_below(r, 400), k = 1 + (uint32_t)st_rng_below(r, 40);
        uint32_t want = (uint32_t)st_rng_below(r, 30);
        float *V = malloc((size_t)n * k * sizeof *V), *x = malloc(k * sizeof *x), *full = malloc(n * sizeof *full);
        uint8_t *skip = calloc(n, 1);
        for (uint32_t i = 0; i < n; i++) {
            /* Skewed norms, as popular segments have, and some duplicate rows for ties. */
            double scale = trial % 3 == 0 ? 1.0 : exp(3 * st_rng_normal(r));
            for (uint32_t j = 0; j < k; j++) V[(size_t)i * k + j] = (float)(scale * st_rng_normal(r));
            if (i > 0 && st_rng_uniform(r) < 0.1) memcpy(V + (size_t)i * k, V + (size_t)(i - 1) * k, k * sizeof *V);
            skip[i] = trial % 2 && st_rng_uniform(r) < 0.2;
        }
        for (uint32_t j = 0; j < k; j++) x[j] = (float)st_rng_normal(r);
        /* Half the cases with a prior blend w q[s] on top (q from popularity). */
        float *pop = malloc(n * sizeof *pop), *q = malloc(n * sizeof *q);
        for (uint32_t i = 0; i < n; i++) pop[i] = (float)st_rng_below(r, 1000);
        st_model m = {.segments = n, .k = k, .V = V, .popularity = pop};
        m.h.prior_weight = trial % 4 < 2 ? 0.0 : 3 * st_rng_normal(r);
        st_score_prior(&m, q);
        st_segment_index ix;
        st_segment_index_build(&m, q, &ix);
        float min = trial % 5 == 0 ? (float)st_rng_normal(r) : -INFINITY;
        st_score_blend(&m, q, x, full);
        int one = 1;
        for (uint32_t i = 0; i < n; i++) one &= full[i] == st_score_one(&m, q, x, i);
        if (!one) printf("#   trial %d: st_score_one and st_score_blend differ\n", trial);
        same &= one;
        for (uint32_t i = 0; i < n; i++)
            if ((trial % 2 && skip[i]) || !(full[i] >= min)) full[i] = NAN;
        uint32_t i1[64], i2[64], visited = 0;
        float t1[64], t2[64];
        uint32_t g1 = st_topk(full, n, want, NULL, 0, i1, t1);
        uint32_t g2 = st_score_topk_segments(&ix, x, want, min, trial % 2 ? skip : NULL, i2, t2, &visited);
        same &= g1 == g2;
        for (uint32_t i = 0; same && i < g1; i++) same = i1[i] == i2[i] && t1[i] == t2[i];
        if (!same) printf("#   trial %d: n %u k %u want %u: %u vs %u results\n", trial, n, k, want, g1, g2);
        pruned_some += visited < n;
        st_segment_index_free(&ix);
        free(pop);
        free(q);
        free(V);
        free(x);
        free(full);
        free(skip);
    }
    ok(same, "pruned top-k equals the full blended scan: same segments, same scores, same order, and every score "
             "equals st_score_one (300 random cases, half with a prior blend)");
    ok(pruned_some > 50, "and it stops early in many of them (%d of 300)", pruned_some);
}

int main(void)
{
    st_rng r;
    st_rng_seed(&r, 7);
    test_topk_random(&r);
    test_topk_edges();
    test_topk_segments_pruned(&r);
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    is_near(st_dot(a, b, 3), 32, 0, "dot");
    return tap_done();
}
