/* Tests of top-k selection against a full sort, with exclusions and ties, and of
 * the pruned segment top-k, alone and batched, against the full scan. */
#include <string.h>

#include "rng.h"
#include "score.h"
#include "segindex.h"
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

/* The answer the index must give: st_score_one for every segment, the
 * skipped and those under min left out, then st_topk. */
static uint32_t full_answer(const st_model *m, const float *q, const float *x, uint32_t want, float min,
                            const uint8_t *skip, uint32_t *idx, float *top)
{
    float *full = malloc(m->segments * sizeof *full);
    for (uint32_t s = 0; s < m->segments; s++) {
        full[s] = st_score_one(m, q, x, s);
        if ((skip && skip[s]) || !(full[s] >= min)) full[s] = NAN;
    }
    uint32_t got = st_topk(full, m->segments, want, NULL, 0, idx, top);
    free(full);
    return got;
}

/* A random segment index of n rows at rank k: skewed norms, duplicate rows
 * (ties), half the time a prior blend. V, q, pop are the caller's to free. */
static void random_index(st_rng *r, uint32_t n, uint32_t k, int blend, float **V, float **pop, float **q,
                         st_model *m, st_segment_index *ix)
{
    *V = malloc((size_t)n * k * sizeof **V);
    *pop = malloc(n * sizeof **pop);
    *q = malloc(n * sizeof **q);
    for (uint32_t i = 0; i < n; i++) {
        double scale = exp(1.5 * st_rng_normal(r));
        for (uint32_t j = 0; j < k; j++) (*V)[(size_t)i * k + j] = (float)(scale * st_rng_normal(r));
        if (i > 0 && st_rng_uniform(r) < 0.05) memcpy(*V + (size_t)i * k, *V + (size_t)(i - 1) * k, k * sizeof **V);
        (*pop)[i] = (float)st_rng_below(r, 1000);
    }
    *m = (st_model){.segments = n, .k = k, .V = *V, .popularity = *pop};
    m->h.prior_weight = blend ? fabs(2 * st_rng_normal(r)) : 0.0;
    st_score_prior(m, *q);
    st_segment_index_build(m, *q, ix);
}

/* The batched kernel against the single-request one and against a full
 * scan: many questions at once (more than one group of 64), each with its
 * own COUNT, MIN and skip bit, users repeated, ranks with and without the
 * eight-row kernel (k a multiple of 8 or not). */
static void test_topk_segments_many(st_rng *r)
{
    int same = 1, full_same = 1, checked = 0;
    for (int trial = 0; trial < 60 && same && full_same; trial++) {
        static const uint32_t ranks[] = {64, 64, 32, 128, 24, 13, 1, 7};
        uint32_t k = ranks[trial % 8], n = 1 + (uint32_t)st_rng_below(r, trial % 3 ? 2000 : 100);
        uint32_t nq = 1 + (uint32_t)st_rng_below(r, trial % 4 ? 40 : 150);
        float *V, *pop, *q;
        st_model m;
        st_segment_index ix;
        random_index(r, n, k, trial % 2, &V, &pop, &q, &m, &ix);
        float *X = malloc((size_t)nq * k * sizeof *X);
        uint8_t *skip = calloc(n, 1);
        uint32_t *idx = malloc((size_t)nq * 64 * sizeof *idx), i1[64], i2[64], vis;
        float *top = malloc((size_t)nq * 64 * sizeof *top), t1[64], t2[64];
        st_segment_query *qs = malloc(nq * sizeof *qs);
        for (uint32_t s = 0; s < n; s++) skip[s] = (uint8_t)(st_rng_uniform(r) < 0.3 ? st_rng_below(r, 256) : 0);
        for (uint32_t b = 0; b < nq; b++) {
            float *x = X + (size_t)b * k;
            if (b > 0 && st_rng_uniform(r) < 0.2) memcpy(x, x - k, k * sizeof *x); /* the same user again */
            else for (uint32_t j = 0; j < k; j++) x[j] = (float)st_rng_normal(r);
            qs[b] = (st_segment_query){.x = x, .want = (uint32_t)st_rng_below(r, 40), .min = -INFINITY,
                                       .skip = st_rng_uniform(r) < 0.5 ? skip : NULL,
                                       .skip_bit = (uint8_t)(1u << st_rng_below(r, 8)),
                                       .out_idx = idx + (size_t)b * 64, .out_score = top + (size_t)b * 64};
            if (st_rng_uniform(r) < 0.2) qs[b].min = (float)st_rng_normal(r);
        }
        st_score_topk_segments_many(&ix, qs, nq);
        for (uint32_t b = 0; b < nq && same && full_same; b++) {
            const st_segment_query *e = &qs[b];
            /* alone: a private mask holding only this question's bit */
            uint8_t *mine = calloc(n, 1);
            for (uint32_t s = 0; s < n; s++) mine[s] = e->skip && (skip[s] & e->skip_bit);
            uint32_t g1 = st_score_topk_segments(&ix, e->x, e->want, e->min, e->skip ? mine : NULL, i1, t1, &vis);
            same &= g1 == e->got && vis == e->visited;
            for (uint32_t i = 0; same && i < g1; i++) same = i1[i] == e->out_idx[i] && t1[i] == e->out_score[i];
            /* the full scan, every score st_score_one's */
            uint32_t g2 = full_answer(&m, q, e->x, e->want, e->min, mine, i2, t2);
            full_same &= g2 == e->got;
            for (uint32_t i = 0; full_same && i < g2; i++) full_same = i2[i] == e->out_idx[i] && t2[i] == e->out_score[i];
            if (!same || !full_same)
                printf("#   trial %d question %u: n %u k %u want %u: %u results, alone %u, full scan %u\n", trial, b, n,
                       k, e->want, e->got, g1, g2);
            checked++;
            free(mine);
        }
        st_segment_index_free(&ix);
        free(V);
        free(pop);
        free(q);
        free(X);
        free(skip);
        free(idx);
        free(top);
        free(qs);
    }
    ok(same, "batched pruned top-k equals each question asked alone: same segments, scores (bit for bit), order "
             "and segments visited (%d questions in 60 batches)", checked);
    ok(full_same, "and equals the full scan of st_score_one scores with the question's COUNT, MIN and skips");
}

/* 1 when the index answers x exactly as the full scan does; adds the
 * segments visited and scored to *visited, *scored. */
static int index_agrees(const st_segment_index *ix, const st_model *m, const float *q, const float *x, uint32_t want,
                        float min, const uint8_t *skip, uint64_t *visited, uint64_t *scored)
{
    uint32_t i1[64], i2[64];
    float t1[64], t2[64];
    uint32_t g1 = full_answer(m, q, x, want, min, skip, i1, t1);
    st_segment_query qq = {.x = x, .want = want, .min = min, .skip = skip, .skip_bit = 1, .out_idx = i2,
                           .out_score = t2};
    st_score_topk_segments_many(ix, &qq, 1);
    *visited += qq.visited;
    *scored += qq.scored;
    int same = g1 == qq.got;
    for (uint32_t i = 0; same && i < g1; i++) same = i1[i] == i2[i] && memcmp(&t1[i], &t2[i], sizeof t1[i]) == 0;
    return same;
}

/* Models the bounds are tight on and models they must not be trusted on:
 * trained-like factors (a decaying spectrum, users and segments sharing
 * it, a popularity blend), where the projection must rule out most visited
 * segments; values near underflow and near overflow; rows and user vectors
 * with NaN or infinity; every rank from 1 to past the 32 projected
 * coordinates; fewer segments than a block. */
static void test_segment_index_hard(st_rng *r)
{
    static const uint32_t ranks[] = {64, 48, 32, 33, 100, 16, 8, 7, 3, 1};
    int agree = 1, cases = 0;
    uint64_t visited = 0, scored = 0, tight_visited = 0, tight_scored = 0;
    for (int trial = 0; trial < 60 && agree; trial++) {
        uint32_t k = ranks[trial % 10], n = trial % 7 == 0 ? 1 + (uint32_t)st_rng_below(r, 40) : 3000;
        uint32_t users = 200, kind = (uint32_t)(trial / 10) % 6;
        /* kind 0, 1: trained-like; 2: tiny values; 3: huge values; 4: NaN and inf rows; 5: plain normal */
        double scale = kind == 2 ? 1e-22 : kind == 3 ? 1e18 : 1.0;
        float *V = malloc((size_t)n * k * sizeof *V), *U = malloc((size_t)users * k * sizeof *U);
        float *pop = malloc(n * sizeof *pop), *q = malloc(n * sizeof *q);
        uint8_t *skip = calloc(n, 1);
        for (uint32_t s = 0; s < n; s++) {
            double pw = exp(st_rng_normal(r));
            for (uint32_t j = 0; j < k; j++) {
                double spectrum = kind <= 1 ? exp(-0.08 * j) : 1.0;
                V[(size_t)s * k + j] = (float)(scale * spectrum * (kind <= 1 ? pw : 1.0) * st_rng_normal(r));
            }
            pop[s] = (float)st_rng_below(r, 1000) * (float)pw;
            skip[s] = st_rng_uniform(r) < 0.1;
        }
        for (uint32_t u = 0; u < users; u++)
            for (uint32_t j = 0; j < k; j++)
                U[(size_t)u * k + j] = (float)(scale * (kind <= 1 ? exp(-0.08 * j) : 1.0) * st_rng_normal(r));
        if (kind == 4 && n > 3) {
            V[0] = NAN;
            V[(size_t)1 * k] = INFINITY;
            V[(size_t)2 * k] = -INFINITY;
            V[(size_t)3 * k + k - 1] = 3e38f;
        }
        st_model m = {.segments = n, .users = users, .k = k, .V = V, .U = U, .popularity = pop};
        m.h.prior_weight = kind == 5 ? 0.0 : (trial % 2 ? 1.5 : -0.7) * scale * 1e-3;
        st_score_prior(&m, q);
        st_segment_index ix;
        if (st_segment_index_build(&m, q, &ix) != 0) {
            agree = 0;
            break;
        }
        for (uint32_t u = 0; u < users && agree; u += 4) {
            float *x = U + (size_t)u * k;
            if (kind == 4 && u == 8) x[0] = NAN;
            if (kind == 4 && u == 12) x[k - 1] = INFINITY;
            uint32_t want = 1 + (uint32_t)st_rng_below(r, 30);
            float min = u % 20 == 0 ? (float)(scale * scale * st_rng_normal(r)) : -INFINITY;
            uint64_t v0 = visited, s0 = scored;
            agree &= index_agrees(&ix, &m, q, x, want, min, u % 3 == 0 ? skip : NULL, &visited, &scored);
            if (!agree)
                printf("#   trial %d (kind %u) user %u: n %u k %u want %u differs from the full scan\n", trial, kind,
                       u, n, k, want);
            if (kind <= 1 && n == 3000 && k >= 32 && min == -INFINITY) {
                tight_visited += visited - v0;
                tight_scored += scored - s0;
            }
            cases++;
        }
        st_segment_index_free(&ix);
        free(V);
        free(U);
        free(pop);
        free(q);
        free(skip);
    }
    ok(agree, "the pruned top-k equals the full scan bit for bit on %d questions: trained-like, tiny, huge, NaN and "
              "infinite rows and users, ranks 1 to 100, fewer segments than a block", cases);
    ok(tight_scored * 3 < tight_visited,
       "on trained-like factors the projection bound leaves under a third of the visited segments to score "
       "(%llu of %llu)", (unsigned long long)tight_scored, (unsigned long long)tight_visited);
}

/* The directions follow the rows questions visit and the users, not the
 * bulk of V: here the popular head (visited first) and the users vary
 * along coordinates 40-63 and a much larger tail of quiet segments along
 * 0-39, so V's own 40 principal axes would be the tail's and leave the
 * head's bounds no tighter than Cauchy-Schwarz. */
static void test_segment_index_directions(st_rng *r)
{
    enum { N = 3000, HEAD = 256, USERS = 200, K = 64 };
    float *V = malloc((size_t)N * K * sizeof *V), *U = malloc((size_t)USERS * K * sizeof *U);
    float *pop = malloc(N * sizeof *pop), *q = malloc(N * sizeof *q);
    for (uint32_t s = 0; s < N; s++) {
        int head = s < HEAD;
        for (uint32_t j = 0; j < K; j++) {
            int own = head ? j >= 40 : j < 40; /* the coordinates this row varies along */
            double sd = own ? (head ? 0.3 : 0.15) : 0.002;
            V[(size_t)s * K + j] = (float)(sd * st_rng_normal(r));
        }
        pop[s] = head ? 1000.0f + (float)st_rng_below(r, 1000) : (float)st_rng_below(r, 50);
    }
    for (uint32_t u = 0; u < USERS; u++)
        for (uint32_t j = 0; j < K; j++)
            U[(size_t)u * K + j] = (float)((j >= 40 ? 1.0 : 0.05) * st_rng_normal(r));
    st_model m = {.segments = N, .users = USERS, .k = K, .V = V, .U = U, .popularity = pop};
    m.h.prior_weight = 0.5;
    st_score_prior(&m, q);
    st_segment_index ix;
    int built = st_segment_index_build(&m, q, &ix) == 0, agree = built;
    uint64_t visited = 0, scored = 0;
    for (uint32_t u = 0; u < USERS && agree; u++)
        agree &= index_agrees(&ix, &m, q, U + (size_t)u * K, 10, -INFINITY, NULL, &visited, &scored);
    ok(agree, "with the visited rows and the users along other axes than most of V, answers equal the full scan");
    ok(agree && scored * 20 < visited,
       "and the projection, on directions fitted to them, leaves under 5%% of the visited segments to score (%llu "
       "of %llu; V's own axes leave 8.5%%)", (unsigned long long)scored, (unsigned long long)visited);
    if (built) st_segment_index_free(&ix);
    free(V);
    free(U);
    free(pop);
    free(q);
}

/* The bounds read each row's projection as 16-bit integers over a scale
 * set by its norm, and the question's the same way, so a small coordinate
 * beside a large one keeps only a few bits. Here every row is one large
 * shared coordinate plus small ones that decide the answer, half the users
 * carry a small share of the large one, and the whole rank is projected
 * (no tail term to absorb an error): with the margins taken out of the
 * bounds, answers here differ from the full scan. */
static void test_segment_index_integers(st_rng *r)
{
    enum { N = 3000, USERS = 300, K = 32 }; /* all of it projected: no tail to hide a bound's error */
    float *V = malloc((size_t)N * K * sizeof *V), *U = malloc((size_t)USERS * K * sizeof *U);
    float *pop = calloc(N, sizeof *pop), *q = malloc(N * sizeof *q);
    for (uint32_t s = 0; s < N; s++)
        for (uint32_t j = 0; j < K; j++)
            V[(size_t)s * K + j] = (float)(j == 0 ? 1000.0 * (1 + 1e-3 * st_rng_normal(r)) : st_rng_normal(r));
    for (uint32_t u = 0; u < USERS; u++)
        for (uint32_t j = 0; j < K; j++)
            U[(size_t)u * K + j] = (float)(j == 0 ? (u % 2 ? 3e-3 * st_rng_normal(r) : 0.0) : st_rng_normal(r));
    st_model m = {.segments = N, .users = USERS, .k = K, .V = V, .U = U, .popularity = pop};
    st_score_prior(&m, q);
    st_segment_index ix;
    int built = st_segment_index_build(&m, q, &ix) == 0, agree = built, failed = -1;
    uint64_t visited = 0, scored = 0;
    for (uint32_t u = 0; u < USERS && agree; u++) {
        agree &= index_agrees(&ix, &m, q, U + (size_t)u * K, 10, -INFINITY, NULL, &visited, &scored);
        if (!agree) failed = (int)u;
    }
    ok(agree, "with rows and users whose small coordinates decide the answer, answers equal the full scan (%d "
              "questions; first differing: %d)", USERS, failed);
    if (built) st_segment_index_free(&ix);
    free(V);
    free(U);
    free(pop);
    free(q);
}

/* Magnitudes at the edge of float, where a bound's terms can overflow: a
 * question whose norm passes FLT_MAX from finite coordinates, |x| |v| past
 * the product of the two scales' range with an integer dot of 0, a zero
 * question against rows whose tails pass FLT_MAX; and MIN NaN, which the
 * full scan's comparison admits nothing under. Each answer must equal the
 * full scan's (a bound that comes out inf or NaN rules nothing out). */
static void test_segment_index_extremes(void)
{
    int agree = 1;
    uint64_t visited = 0, scored = 0;
    st_segment_index ix;
    {   /* the norm past FLT_MAX; V's rows in sign pairs keep the directions on the axes */
        enum { N = 200, K = 2 };
        static float V[N * K], pop[N], q[N], U[3 * K] = {1, 0, 1, 0, 0, 1};
        for (int s = 0; s < N; s++) {
            double a = s < 150 ? -5e-30 * (1 + s / 2) : 1e-31 * (1 + s / 2 % 7);
            V[s * K] = (float)a;
            V[s * K + 1] = (float)(s % 2 ? -a : a);
        }
        st_model m = {.segments = N, .users = 3, .k = K, .V = V, .U = U, .popularity = pop};
        st_score_prior(&m, q);
        float x[K] = {3e38f, 3e38f};
        agree &= st_segment_index_build(&m, q, &ix) == 0;
        agree &= index_agrees(&ix, &m, q, x, 1, -INFINITY, NULL, &visited, &scored);
        agree &= index_agrees(&ix, &m, q, x, 5, -INFINITY, NULL, &visited, &scored);
        st_segment_index_free(&ix);
    }
    {   /* the two scales' product past FLT_MAX, the integer dot 0 */
        enum { NB = 40, N = NB + 1, K = 2 };
        static float V[N * K], pop[N], q[N], U[4 * K] = {1e24f, 0, 1e24f, 0, 1e24f, 0, 1e24f, 0};
        for (int s = 0; s < NB; s++) {
            V[s * K] = -1e13f;
            V[s * K + 1] = s % 2 ? 1e25f : -1e25f;
        }
        V[NB * K + 1] = 1e24f;
        st_model m = {.segments = N, .users = 4, .k = K, .V = V, .U = U, .popularity = pop};
        st_score_prior(&m, q);
        float x[K] = {1e24f, 0};
        agree &= st_segment_index_build(&m, q, &ix) == 0;
        agree &= index_agrees(&ix, &m, q, x, 1, -INFINITY, NULL, &visited, &scored);
        st_segment_index_free(&ix);
    }
    {   /* a zero question; rows whose part past the first 8 directions passes FLT_MAX */
        enum { N = 64, K = 24 };
        static float V[N * K], pop[N], q[N], U[8 * K];
        uint32_t rs = 12345;
        for (int s = 0; s < N; s++) {
            for (int j = 8; j < K; j++) {
                rs = rs * 1103515245u + 12345u;
                V[s * K + j] = (rs >> 16) & 1 ? 2e38f : -2e38f;
            }
            pop[s] = (float)s;
        }
        for (int u = 0; u < 8; u++) U[u * K + u] = 1.0f;
        st_model m = {.segments = N, .users = 8, .k = K, .V = V, .U = U, .popularity = pop};
        m.h.prior_weight = 1.0;
        st_score_prior(&m, q);
        float x[K] = {0};
        agree &= st_segment_index_build(&m, q, &ix) == 0;
        agree &= index_agrees(&ix, &m, q, x, 1, -INFINITY, NULL, &visited, &scored);
        st_segment_index_free(&ix);
    }
    {   /* MIN NaN, with a row that is not finite (its block scored row by row) */
        enum { N = 40, K = 4 };
        static float V[N * K], pop[N], q[N], U[K] = {1, 1, 1, 1};
        for (int i = 0; i < N * K; i++) V[i] = (float)((i * 37 % 17) - 8);
        V[5 * K] = INFINITY;
        st_model m = {.segments = N, .users = 1, .k = K, .V = V, .U = U, .popularity = pop};
        st_score_prior(&m, q);
        float x[K] = {1, 2, 3, 4};
        agree &= st_segment_index_build(&m, q, &ix) == 0;
        agree &= index_agrees(&ix, &m, q, x, 5, NAN, NULL, &visited, &scored);
        st_segment_index_free(&ix);
    }
    ok(agree, "at the edge of float (a norm past FLT_MAX, scales whose product overflows, tails past FLT_MAX) "
              "and with MIN NaN, answers equal the full scan");
}

int main(void)
{
    st_rng r;
    st_rng_seed(&r, 7);
    test_topk_random(&r);
    test_topk_edges();
    test_topk_segments_pruned(&r);
    test_topk_segments_many(&r);
    test_segment_index_hard(&r);
    test_segment_index_directions(&r);
    test_segment_index_integers(&r);
    test_segment_index_extremes();
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    is_near(st_dot(a, b, 3), 32, 0, "dot");
    return tap_done();
}
