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

int main(void)
{
    st_rng r;
    st_rng_seed(&r, 7);
    int all = 1;
    for (int trial = 0; trial < 400; trial++) {
        /* Small and large: the buffered selection (want <= 256) with several
         * compactions, and the heap (want > 256). */
        int big = trial >= 200;
        uint32_t n = 1 + (uint32_t)st_rng_below(&r, big ? 6000 : 300);
        uint32_t want = 1 + (uint32_t)st_rng_below(&r, big ? 400 : 40);
        float *s = malloc(n * sizeof *s);
        uint32_t *order = malloc(n * sizeof *order), *ex = malloc(n * sizeof *ex);
        uint32_t nex = 0;
        for (uint32_t i = 0; i < n; i++) {
            /* Few distinct values, so ties are common. */
            s[i] = big ? (float)st_rng_below(&r, 2000) : (float)st_rng_below(&r, 20);
            if (big && st_rng_uniform(&r) < 0.01) s[i] = NAN;
            order[i] = i;
            if (st_rng_uniform(&r) < 0.2) ex[nex++] = i;
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
    float s[5] = {1, NAN, 3, 2, 3};
    uint32_t idx[5];
    float top[5];
    uint32_t got = st_topk(s, 5, 5, NULL, 0, idx, top);
    ok(got == 4 && idx[0] == 2 && idx[1] == 4 && idx[2] == 3 && idx[3] == 0, "NaN skipped, tie by index");
    ok(st_topk(s, 5, 0, NULL, 0, idx, top) == 0, "want 0 gives nothing");
    uint32_t ex[5] = {0, 1, 2, 3, 4};
    ok(st_topk(s, 5, 3, ex, 5, idx, top) == 0, "everything excluded gives nothing");
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    is_near(st_dot(a, b, 3), 32, 0, "dot");
    return tap_done();
}
