/* Tests of the evaluation baselines (baseline.h) against the obvious code:
 * item-kNN from a dense co-occurrence matrix and a full sort of each
 * segment's similarities; EASE from a Gauss-Jordan inverse in double. */
#include "baseline.h"
#include "rng.h"
#include "tap.h"
#include "util.h"

typedef struct {
    uint32_t m, n;
    uint64_t *ptr;
    uint32_t *idx;
} history;

/* A random history: each user has up to maxrow distinct segments, drawn with
 * a skew so that some segments are popular and some are never used. */
static history make_history(st_rng *g, uint32_t m, uint32_t n, uint32_t maxrow)
{
    history h = {m, n, calloc(m + 1, sizeof(uint64_t)), malloc((size_t)m * maxrow * sizeof(uint32_t))};
    uint8_t *has = calloc(n, 1);
    for (uint32_t u = 0; u < m; u++) {
        uint32_t want = (uint32_t)st_rng_below(g, maxrow + 1);
        uint64_t w = h.ptr[u];
        for (uint32_t t = 0; t < want; t++) {
            double x = st_rng_uniform(g);
            uint32_t s = (uint32_t)(x * x * (n - n / 5)); /* the last fifth never drawn */
            if (has[s]) continue;
            has[s] = 1;
            h.idx[w++] = s;
        }
        for (uint64_t q = h.ptr[u]; q < w; q++) has[h.idx[q]] = 0;
        h.ptr[u + 1] = w;
    }
    free(has);
    return h;
}

static st_history view(const history *h) { return (st_history){h->m, h->n, h->ptr, h->idx}; }

/* Dense co-occurrence counts C (n x n) and the counts per segment. */
static double *cooccurrence(const history *h)
{
    double *C = calloc((size_t)h->n * h->n, sizeof *C);
    for (uint32_t u = 0; u < h->m; u++)
        for (uint64_t p = h->ptr[u]; p < h->ptr[u + 1]; p++)
            for (uint64_t q = h->ptr[u]; q < h->ptr[u + 1]; q++) C[(size_t)h->idx[p] * h->n + h->idx[q]] += 1;
    return C;
}

static const double *g_sim;
static int by_sim(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (g_sim[i] != g_sim[j]) return g_sim[i] > g_sim[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

/* The reference neighbour lists: every other segment with a co-occurrence,
 * sorted by similarity (ties by index), the first `keep`. */
static void test_knn_lists(void)
{
    st_rng g;
    st_rng_seed(&g, 11);
    for (int trial = 0; trial < 20; trial++) {
        uint32_t m = 50 + (uint32_t)st_rng_below(&g, 200), n = 5 + (uint32_t)st_rng_below(&g, 60);
        uint32_t keep = 1 + (uint32_t)st_rng_below(&g, 12);
        double shrink = trial % 3 == 0 ? 0 : 5.0 * st_rng_uniform(&g);
        history h = make_history(&g, m, n, 8);
        st_history v = view(&h);
        st_knn k;
        char err[ST_ERRLEN] = "";
        int rc = st_knn_build(&v, keep, shrink, 1 + trial % 3, &k, err);
        double *C = cooccurrence(&h);
        double *sim = calloc(n, sizeof *sim);
        uint32_t *order = malloc(n * sizeof *order);
        int same = rc == 0;
        for (uint32_t i = 0; i < n && same; i++) {
            uint32_t cand = 0;
            for (uint32_t j = 0; j < n; j++) {
                double co = C[(size_t)i * n + j];
                sim[j] = co > 0 && j != i ? co / (sqrt(C[(size_t)i * n + i] * C[(size_t)j * n + j]) + shrink) : -1;
                if (sim[j] >= 0) order[cand++] = j;
            }
            g_sim = sim;
            qsort(order, cand, sizeof *order, by_sim);
            uint32_t want = cand < keep ? cand : keep;
            if (k.ptr[i + 1] - k.ptr[i] != want) same = 0;
            for (uint32_t q = 0; q < want && same; q++) {
                uint32_t got = k.nbr[k.ptr[i] + q];
                /* float similarities may order near-ties differently: compare values */
                if (got != order[q] && fabs(sim[got] - sim[order[q]]) > 1e-6) same = 0;
                if (fabs(k.sim[k.ptr[i] + q] - sim[order[q]]) > 1e-5) same = 0;
            }
        }
        ok(same, "item-kNN lists match the dense reference (m %u, n %u, keep %u, shrink %.2f)", m, n, keep, shrink);
        /* Scores: the sum of the seen segments' similarities. */
        float *row = malloc(n * sizeof *row);
        double worst = 0;
        for (uint32_t u = 0; u < m && rc == 0; u++) {
            uint64_t a = h.ptr[u], b = h.ptr[u + 1];
            st_knn_score(&k, h.idx + a, b - a, row);
            for (uint32_t j = 0; j < n; j++) {
                double want = 0;
                for (uint64_t q = a; q < b; q++) {
                    uint32_t i = h.idx[q];
                    for (uint64_t p = k.ptr[i]; p < k.ptr[i + 1]; p++)
                        if (k.nbr[p] == j) want += k.sim[p];
                }
                if (fabs(want - row[j]) > worst) worst = fabs(want - row[j]);
            }
        }
        ok(rc == 0 && worst < 1e-4, "item-kNN scores are the sums of the neighbours' similarities (worst %.2g)", worst);
        st_knn_free(&k);
        free(row);
        free(C);
        free(sim);
        free(order);
        free(h.ptr);
        free(h.idx);
    }
}

/* Inverts A (n x n, double) in place by Gauss-Jordan with partial pivoting. */
static int invert(double *A, uint32_t n)
{
    double *I = calloc((size_t)n * n, sizeof *I);
    for (uint32_t i = 0; i < n; i++) I[(size_t)i * n + i] = 1;
    for (uint32_t c = 0; c < n; c++) {
        uint32_t p = c;
        for (uint32_t r = c + 1; r < n; r++)
            if (fabs(A[(size_t)r * n + c]) > fabs(A[(size_t)p * n + c])) p = r;
        if (fabs(A[(size_t)p * n + c]) < 1e-12) {
            free(I);
            return -1;
        }
        for (uint32_t j = 0; j < n; j++) {
            double t = A[(size_t)c * n + j];
            A[(size_t)c * n + j] = A[(size_t)p * n + j];
            A[(size_t)p * n + j] = t;
            t = I[(size_t)c * n + j];
            I[(size_t)c * n + j] = I[(size_t)p * n + j];
            I[(size_t)p * n + j] = t;
        }
        double d = A[(size_t)c * n + c];
        for (uint32_t j = 0; j < n; j++) {
            A[(size_t)c * n + j] /= d;
            I[(size_t)c * n + j] /= d;
        }
        for (uint32_t r = 0; r < n; r++) {
            if (r == c) continue;
            double f = A[(size_t)r * n + c];
            for (uint32_t j = 0; j < n; j++) {
                A[(size_t)r * n + j] -= f * A[(size_t)c * n + j];
                I[(size_t)r * n + j] -= f * I[(size_t)c * n + j];
            }
        }
    }
    memcpy(A, I, (size_t)n * n * sizeof *A);
    free(I);
    return 0;
}

static void test_ease(void)
{
    st_rng g;
    st_rng_seed(&g, 5);
    for (int trial = 0; trial < 12; trial++) {
        uint32_t m = 40 + (uint32_t)st_rng_below(&g, 300), n = 4 + (uint32_t)st_rng_below(&g, 70);
        double lambda = trial % 4 == 0 ? 0 : 0.5 + 20 * st_rng_uniform(&g);
        history h = make_history(&g, m, n, 10);
        st_history v = view(&h);
        st_ease e;
        char err[ST_ERRLEN] = "";
        int rc = st_ease_build(&v, lambda, 100000, 1 + trial % 2, &e, err);
        ok(rc == 0, "EASE fits (m %u, n %u): %s", m, n, rc == 0 ? "ok" : err);
        if (rc != 0) continue;
        /* Reference over every segment: the unused ones have a zero row and
         * column in the Gram matrix, so their B is zero too. */
        double *G = cooccurrence(&h), diag = 0;
        uint32_t active = 0;
        for (uint32_t i = 0; i < n; i++) {
            diag += G[(size_t)i * n + i];
            active += G[(size_t)i * n + i] > 0;
        }
        double lam = lambda > 0 ? lambda : ST_EASE_LAMBDA_SCALE * diag / active;
        is_near(e.lambda, lam, 1e-9 * lam, "EASE's lambda (%s)", lambda > 0 ? "given" : "10 x mean users per segment");
        is_int(e.active, active, "EASE takes part with the %u segments that have users", active);
        is_int(st_ease_active(&v), active, "st_ease_active counts them");
        for (uint32_t i = 0; i < n; i++) G[(size_t)i * n + i] += lam;
        invert(G, n);
        float *row = malloc(n * sizeof *row);
        double worst = 0, scale = 0;
        for (uint32_t u = 0; u < m; u++) {
            uint64_t a = h.ptr[u], b = h.ptr[u + 1];
            st_ease_score(&e, h.idx + a, b - a, row);
            for (uint32_t j = 0; j < n; j++) {
                double want = 0;
                for (uint64_t q = a; q < b; q++) {
                    uint32_t i = h.idx[q];
                    if (i != j) want += -G[(size_t)i * n + j] / G[(size_t)j * n + j];
                }
                if (fabs(want) > scale) scale = fabs(want);
                if (fabs(want - row[j]) > worst) worst = fabs(want - row[j]);
            }
        }
        ok(worst <= 1e-4 * (scale > 1 ? scale : 1), "EASE scores match the double-precision inverse (worst %.2g)",
           worst);
        free(row);
        free(G);
        st_ease_free(&e);
        free(h.ptr);
        free(h.idx);
    }
}

static void test_ease_bound(void)
{
    st_rng g;
    st_rng_seed(&g, 9);
    history h = make_history(&g, 100, 50, 6);
    st_history v = view(&h);
    st_ease e;
    char err[ST_ERRLEN] = "";
    int rc = st_ease_build(&v, 0, 5, 1, &e, err);
    ok(rc != 0 && strstr(err, "above its bound of 5") != NULL, "EASE over too many segments says why: %s", err);
    uint64_t empty_ptr[3] = {0, 0, 0};
    st_history none = {2, 4, empty_ptr, h.idx};
    rc = st_ease_build(&none, 0, 100, 1, &e, err);
    ok(rc != 0 && strstr(err, "no segment") != NULL, "EASE without any training pair says so: %s", err);
    st_knn k;
    ok(st_knn_build(&none, 10, 1, 1, &k, err) == 0 && k.ptr[4] == 0, "item-kNN of an empty history has no neighbours");
    st_knn_free(&k);
    free(h.ptr);
    free(h.idx);
}

int main(void)
{
    test_knn_lists();
    test_ease();
    test_ease_bound();
    return tap_done();
}
