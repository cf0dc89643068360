/* ann: the approximate index of AUDIENCE and LOOKALIKE (ann.h), an
 * inverted-file index (IVF) for maximum inner product, probed in the order
 * of the centroids' scores and stopped by a bound.
 *
 * Why our own: Debian 12's libfaiss-dev ships the headers of faiss's C API
 * but its libfaiss.a holds no faiss_* symbol (the C API is not built) and
 * pulls in C++ and OpenMP; libhnswlib-dev is a C++ header library. Either
 * would need a C++ shim and an HNSW graph costs several times the factors'
 * memory. An IVF over the factors is a few hundred lines of C on OpenBLAS,
 * and its bound makes a query exact whenever it can stop early
 * (docs/CAPACITY.md).
 *
 * Build: k-means (Lloyd, Euclidean) on a sample of about 40 users a list,
 * then every user assigned to its nearest centroid (distances from one
 * sgemm per chunk of users, chunks split among threads), the lists laid out
 * by a counting sort, the centroids recomputed as the mean of their users
 * and each list's radius measured (in double, rounded up). The bound of a
 * list for the query x + add is
 *     c . x + r |x| + k 2^-23 (|c| + r) |x|  (+ add, rounded up),
 * the last term covering the float rounding of st_dot's sum of k products
 * of a user of norm at most |c| + r: no user's float score exceeds it.
 * Query: every list's centroid score c . x and bound (in double); lists
 * are probed in decreasing centroid score, each list's users scored in
 * blocks into a heap of the best want; the probe stops when the greatest
 * bound of the lists left is under min or under the heap's worst score when
 * full (the answer is then exact), or once the row budget is read.
 * Why that order and not the bound's: on trained factors the radii are
 * larger than the centroids' norms (the lists are not tight balls), so the
 * bounds are loose and ordering by them visits wide lists first and tight
 * clusters last, while the users engaged with a segment form such tight
 * clusters: on 1M trained users (bench/README.md) ordering by bound needed
 * 47% of the rows (median) for recall@1000 of 0.95 and by centroid score
 * about 0.1%. The bound still says when the answer is exact.
 * What it is not: a second copy of the privacy floors or of the overlay:
 * cmd_scan.c gives the index the overlay's view (hidden rows, online users)
 * and applies the floors as for the exact scan.
 */
#include "ann.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "score.h"
#include "util.h"

enum {
    SAMPLE_PER_LIST = 40, /* k-means sample: users per list */
    KMEANS_ITERS = 8,
    CHUNK = 1024,         /* users assigned per sgemm */
    BLOCK = 64,           /* users scored together at query time */
    CHECK_QUERIES = 32,   /* sample queries choosing the budget, and as many more measuring recall */
    MARGIN = 2,           /* the budget: MARGIN times the fewest rows giving the sample queries */
                          /* a mean recall of the target, */
    MIN_LISTS = 8,        /* and at least the rows of MIN_LISTS average lists */
    CHECK_N = 1000,       /* recall@N of the check (at most 1% of the users) */
};

struct st_ann {
    uint32_t k, users, lists;
    float *cent;      /* lists x k */
    double *cnorm;    /* lists: |c| */
    float *radius;    /* lists */
    uint64_t *start;  /* lists + 1: list l's users are ids[start[l] .. start[l+1]) */
    uint32_t *ids;    /* users: model rows in list order */
    float *rows;      /* users x k: their vectors in list order (float models); NULL for int8 */
    st_ann_stats st;
};

/* ---- the process-wide setting ----------------------------------------------------- */

static atomic_int g_mode = ST_ANN_OFF;
static _Atomic double g_target = 0.98;

void st_ann_set_mode(int mode, double target)
{
    atomic_store(&g_mode, mode);
    if (target > 0 && target <= 1) atomic_store(&g_target, target);
}

int st_ann_mode(void) { return atomic_load(&g_mode); }
double st_ann_target(void) { return atomic_load(&g_target); }

const char *st_ann_mode_name(int mode)
{
    return mode == ST_ANN_ON ? "on" : mode == ST_ANN_REQUEST ? "request" : "off";
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
    return p < q ? -1 : p > q;
}

/* ---- building ------------------------------------------------------------------------ */

/* Rows r0 .. r0 + n - 1 of the model as floats: a pointer into U, or the
 * int8 rows dequantized into buf (n x k). */
static const float *model_rows(const st_model *m, uint32_t r0, uint32_t n, float *buf)
{
    if (m->U) return m->U + (size_t)r0 * m->k;
    for (uint32_t i = 0; i < n; i++) st_model_user(m, r0 + i, buf + (size_t)i * m->k);
    return buf;
}

/* One chunk's nearest centroids: d = X C^T (n x L), then for each row the
 * list maximising x . c - |c|^2 / 2 (the nearest in Euclidean distance). */
static void nearest(const float *X, uint32_t n, const float *C, const float *half, uint32_t L, uint32_t k, float *d,
                    uint32_t *out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)L, (blasint)k, 1.0f, X, (blasint)k, C,
                (blasint)k, 0.0f, d, (blasint)L);
    for (uint32_t i = 0; i < n; i++) {
        const float *r = d + (size_t)i * L;
        uint32_t best = 0;
        float bv = r[0] - half[0];
        for (uint32_t l = 1; l < L; l++) {
            float v = r[l] - half[l];
            if (v > bv) {
                bv = v;
                best = l;
            }
        }
        out[i] = best;
    }
}

static void half_norms(const float *C, uint32_t L, uint32_t k, float *half)
{
    for (uint32_t l = 0; l < L; l++) half[l] = 0.5f * st_dot(C + (size_t)l * k, C + (size_t)l * k, k);
}

/* The assignment of every user, chunks split among threads. */
typedef struct {
    const st_model *m;
    const float *C, *half;
    uint32_t L;
    uint32_t *assign;
    float **d, **buf; /* per thread: CHUNK x L distances, CHUNK x k rows */
} assign_job;

static void assign_task(void *ctx, uint64_t task, int thread)
{
    assign_job *j = ctx;
    uint32_t r0 = (uint32_t)(task * CHUNK), n = j->m->users - r0 < CHUNK ? j->m->users - r0 : CHUNK;
    const float *X = model_rows(j->m, r0, n, j->buf[thread]);
    nearest(X, n, j->C, j->half, j->L, j->m->k, j->d[thread], j->assign + r0);
}

/* Lloyd's iterations on the sample S (s x k) from L of its rows; an empty
 * list takes a random sample row. C: L x k. 0, or -1 on out-of-memory. */
static int kmeans(const float *S, uint32_t s, uint32_t k, uint32_t L, st_rng *rng, float *C)
{
    float *d = st_malloc((size_t)CHUNK * L * sizeof *d), *half = st_malloc((size_t)L * sizeof *half);
    uint32_t *as = st_malloc((size_t)s * sizeof *as);
    double *sum = st_malloc((size_t)L * k * sizeof *sum);
    uint64_t *cnt = st_malloc((size_t)L * sizeof *cnt);
    int rc = d && half && as && sum && cnt ? 0 : -1;
    for (uint32_t l = 0; l < L && rc == 0; l++)
        memcpy(C + (size_t)l * k, S + (size_t)st_rng_below(rng, s) * k, k * sizeof *C);
    for (int it = 0; it < KMEANS_ITERS && rc == 0; it++) {
        half_norms(C, L, k, half);
        for (uint32_t i = 0; i < s; i += CHUNK)
            nearest(S + (size_t)i * k, s - i < CHUNK ? s - i : CHUNK, C, half, L, k, d, as + i);
        memset(sum, 0, (size_t)L * k * sizeof *sum);
        memset(cnt, 0, (size_t)L * sizeof *cnt);
        for (uint32_t i = 0; i < s; i++) {
            cnt[as[i]]++;
            for (uint32_t t = 0; t < k; t++) sum[(size_t)as[i] * k + t] += S[(size_t)i * k + t];
        }
        for (uint32_t l = 0; l < L; l++) {
            if (!cnt[l]) {
                memcpy(C + (size_t)l * k, S + (size_t)st_rng_below(rng, s) * k, k * sizeof *C);
                continue;
            }
            for (uint32_t t = 0; t < k; t++) C[(size_t)l * k + t] = (float)(sum[(size_t)l * k + t] / (double)cnt[l]);
        }
    }
    st_free(d);
    st_free(half);
    st_free(as);
    st_free(sum);
    st_free(cnt);
    return rc;
}

/* Every user into its list: assign (m), then start, ids and (float) rows. */
static int assign_all(st_ann *a, const st_model *m, int threads, uint32_t *assign)
{
    uint32_t L = a->lists, k = a->k;
    float *half = st_malloc((size_t)L * sizeof *half);
    float **d = st_calloc((size_t)threads, sizeof *d), **buf = st_calloc((size_t)threads, sizeof *buf);
    int rc = half && d && buf ? 0 : -1;
    for (int t = 0; t < threads && rc == 0; t++) {
        d[t] = st_malloc((size_t)CHUNK * L * sizeof **d);
        buf[t] = st_malloc((size_t)CHUNK * k * sizeof **buf);
        if (!d[t] || !buf[t]) rc = -1;
    }
    if (rc == 0) {
        half_norms(a->cent, L, k, half);
        assign_job j = {.m = m, .C = a->cent, .half = half, .L = L, .assign = assign, .d = d, .buf = buf};
        st_parallel_run(threads, ((uint64_t)m->users + CHUNK - 1) / CHUNK, assign_task, &j);
    }
    for (int t = 0; t < threads && d && buf; t++) {
        st_free(d[t]);
        st_free(buf[t]);
    }
    st_free(d);
    st_free(buf);
    st_free(half);
    if (rc != 0) return -1;
    memset(a->start, 0, ((size_t)L + 1) * sizeof *a->start);
    for (uint32_t u = 0; u < m->users; u++) a->start[assign[u] + 1]++;
    for (uint32_t l = 0; l < L; l++) a->start[l + 1] += a->start[l];
    uint64_t *at = st_malloc(((size_t)L + 1) * sizeof *at);
    if (!at) return -1;
    memcpy(at, a->start, ((size_t)L + 1) * sizeof *at);
    for (uint32_t u = 0; u < m->users; u++) a->ids[at[assign[u]]++] = u;
    st_free(at);
    if (a->rows)
        for (uint64_t i = 0; i < m->users; i++) memcpy(a->rows + i * k, m->U + (size_t)a->ids[i] * k, k * sizeof(float));
    return 0;
}

/* Each list's centroid made the mean of its users (an empty list keeps its
 * own, with radius 0), its norm, and its radius, rounded up. */
static int lists_geometry(st_ann *a, const st_model *m)
{
    uint32_t k = a->k;
    double *mean = st_malloc(((size_t)k + 1) * sizeof *mean);
    float *buf = st_malloc(((size_t)k + 1) * sizeof *buf);
    if (!mean || !buf) {
        st_free(mean);
        st_free(buf);
        return -1;
    }
    for (uint32_t l = 0; l < a->lists; l++) {
        float *c = a->cent + (size_t)l * k;
        uint64_t n = a->start[l + 1] - a->start[l];
        if (n) {
            memset(mean, 0, k * sizeof *mean);
            for (uint64_t i = a->start[l]; i < a->start[l + 1]; i++) {
                const float *u = st_model_user(m, a->ids[i], buf);
                for (uint32_t t = 0; t < k; t++) mean[t] += u[t];
            }
            for (uint32_t t = 0; t < k; t++) c[t] = (float)(mean[t] / (double)n);
        }
        double r2 = 0, c2 = 0;
        for (uint32_t t = 0; t < k; t++) c2 += (double)c[t] * c[t];
        for (uint64_t i = a->start[l]; i < a->start[l + 1]; i++) {
            const float *u = st_model_user(m, a->ids[i], buf);
            double d2 = 0;
            for (uint32_t t = 0; t < k; t++) d2 += ((double)u[t] - c[t]) * ((double)u[t] - c[t]);
            r2 = d2 > r2 ? d2 : r2;
        }
        a->cnorm[l] = sqrt(c2);
        a->radius[l] = nextafterf((float)(sqrt(r2) * (1 + 1e-12)), INFINITY);
    }
    st_free(mean);
    st_free(buf);
    return 0;
}

/* ---- querying ------------------------------------------------------------------------- */

typedef struct {
    double key; /* the centroid's score c . x: lists are probed in decreasing key */
    float b;    /* the list's bound, with add; after list_order, the greatest bound of this list and the later ones */
    uint32_t l;
} bound;

static int bound_order(const void *x, const void *y)
{
    const bound *p = x, *q = y;
    if (p->key != q->key) return p->key > q->key ? -1 : 1;
    return p->l < q->l ? -1 : p->l > q->l;
}

/* Every list's key and bound for x + add (design comment), in decreasing
 * key, each b then the greatest bound from there on. A list whose centroid
 * or radius is not finite (it holds a NaN or infinite row) comes first and
 * its bound is infinite: it is always probed. */
static void list_order(const st_ann *a, const float *x, float add, bound *out)
{
    uint32_t k = a->k;
    double nx = 0;
    for (uint32_t t = 0; t < k; t++) nx += (double)x[t] * x[t];
    nx = sqrt(nx);
    double eps = (double)k * ldexp(1.0, -23);
    for (uint32_t l = 0; l < a->lists; l++) {
        const float *c = a->cent + (size_t)l * k;
        double cx = 0;
        for (uint32_t t = 0; t < k; t++) cx += (double)c[t] * x[t];
        double r = a->radius[l], b = cx + r * nx + eps * (a->cnorm[l] + r) * nx + 1e-37;
        float f = nextafterf((float)(b + (double)add), INFINITY);
        out[l] = f == f ? (bound){cx == cx ? cx : INFINITY, f, l} : (bound){INFINITY, INFINITY, l};
    }
    qsort(out, a->lists, sizeof *out, bound_order);
    for (uint32_t i = a->lists; i-- > 1;) out[i - 1].b = out[i].b > out[i - 1].b ? out[i].b : out[i - 1].b;
}

/* The best `want` as a heap whose root is the worst: lower score, or at an
 * equal score the higher position. */
typedef struct {
    uint32_t *pos;
    float *sc;
    uint32_t n, want;
} heap;

static int worse(float s1, uint32_t p1, float s2, uint32_t p2) { return s1 < s2 || (s1 == s2 && p1 > p2); }

static void heap_down(heap *h, uint32_t i)
{
    for (;;) {
        uint32_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < h->n && worse(h->sc[l], h->pos[l], h->sc[w], h->pos[w])) w = l;
        if (r < h->n && worse(h->sc[r], h->pos[r], h->sc[w], h->pos[w])) w = r;
        if (w == i) return;
        uint32_t tp = h->pos[i];
        float ts = h->sc[i];
        h->pos[i] = h->pos[w];
        h->sc[i] = h->sc[w];
        h->pos[w] = tp;
        h->sc[w] = ts;
        i = w;
    }
}

static void heap_offer(heap *h, uint32_t pos, float s)
{
    if (h->n < h->want) {
        uint32_t i = h->n++;
        while (i > 0 && worse(s, pos, h->sc[(i - 1) / 2], h->pos[(i - 1) / 2])) {
            h->pos[i] = h->pos[(i - 1) / 2];
            h->sc[i] = h->sc[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h->pos[i] = pos;
        h->sc[i] = s;
    } else if (h->want && worse(h->sc[0], h->pos[0], s, pos)) {
        h->pos[0] = pos;
        h->sc[0] = s;
        heap_down(h, 0);
    }
}

/* The heap's users best first into out_*; returns how many. */
static uint32_t heap_drain(heap *h, uint32_t *out_idx, float *out_score)
{
    uint32_t n = h->n;
    while (h->n) {
        uint32_t i = --h->n;
        out_idx[i] = h->pos[0];
        out_score[i] = h->sc[0];
        h->pos[0] = h->pos[i];
        h->sc[0] = h->sc[i];
        heap_down(h, 0);
    }
    return n;
}


/* Whether position pos is in q's exclude list (ascending). */
static int is_excluded(const st_scan_query *q, uint32_t pos)
{
    if (!q->nexclude) return 0;
    return bsearch(&pos, q->exclude, q->nexclude, sizeof pos, st_cmp_u32) != NULL;
}

/* Offers a scored user: counted when at least min, kept unless excluded. */
static void take(heap *h, const st_scan_query *q, uint32_t pos, float s, st_ann_result *r)
{
    if (!(s >= q->min)) return;
    r->matching++;
    if (!is_excluded(q, pos)) heap_offer(h, pos, s);
}

/* Scores list l's users in blocks and offers them. */
static void probe_list(const st_ann *a, const st_model *m, const st_scan_query *q, uint32_t l, float *buf, heap *h,
                       st_ann_result *r)
{
    uint32_t k = a->k;
    float sc[BLOCK];
    for (uint64_t i = a->start[l]; i < a->start[l + 1]; i += BLOCK) {
        uint32_t nb = a->start[l + 1] - i < BLOCK ? (uint32_t)(a->start[l + 1] - i) : BLOCK;
        const float *rows = a->rows + i * k;
        if (!a->rows) {
            for (uint32_t t = 0; t < nb; t++) st_model_user(m, a->ids[i + t], buf + (size_t)t * k);
            rows = buf;
        }
        st_score_rows(rows, nb, k, q->x, sc);
        for (uint32_t t = 0; t < nb; t++) {
            uint32_t u = a->ids[i + t];
            if (q->skip && q->skip[u]) continue;
            take(h, q, u, sc[t] + q->add, r);
        }
    }
    r->scored += a->start[l + 1] - a->start[l];
    r->lists++;
}

/* The probe of st_ann_best and its reference: visit(l) for each list in
 * list_order's order until a stop; sets r->exact. */
typedef void (*visit_fn)(void *ctx, uint32_t l);
static void probe(const st_ann *a, const bound *order, float min, uint64_t max_rows, const heap *h, visit_fn visit,
                  void *ctx, st_ann_result *r)
{
    r->exact = 1;
    for (uint32_t i = 0; i < a->lists; i++) {
        float b = order[i].b;
        if (!(b >= min)) break;
        if (h->want && h->n == h->want && b < h->sc[0]) break;
        if (r->scored >= max_rows) {
            r->exact = 0;
            break;
        }
        visit(ctx, order[i].l);
    }
}

typedef struct {
    const st_ann *a;
    const st_model *m;
    const st_scan_query *q;
    float *buf;
    heap *h;
    st_ann_result *r;
} fast_ctx;

static void fast_visit(void *ctx, uint32_t l)
{
    fast_ctx *c = ctx;
    probe_list(c->a, c->m, c->q, l, c->buf, c->h, c->r);
}

int st_ann_best(const st_ann *a, const st_model *m, const st_scan_query *q, uint64_t max_rows, uint32_t *out_idx,
                float *out_score, st_ann_result *r)
{
    memset(r, 0, sizeof *r);
    uint32_t k = a->k;
    uint64_t total = (uint64_t)a->users + q->nextra;
    uint32_t want = q->want < total ? q->want : (uint32_t)total;
    bound *order = st_malloc(((size_t)a->lists + 1) * sizeof *order);
    float *buf = st_malloc(((size_t)BLOCK * k + 1) * sizeof *buf);
    heap h = {.pos = st_malloc(((size_t)want + 1) * sizeof(uint32_t)), .sc = st_malloc(((size_t)want + 1) * sizeof(float)),
              .want = want};
    int rc = order && buf && h.pos && h.sc ? 0 : -1;
    if (rc == 0) {
        /* The overlay's users first: a full heap from the start lets the bound stop sooner. */
        for (uint32_t i = 0; i < q->nextra; i++)
            take(&h, q, a->users + i, st_dot(q->extra + (size_t)i * k, q->x, k) + q->add, r);
        list_order(a, q->x, q->add, order);
        fast_ctx c = {a, m, q, buf, &h, r};
        probe(a, order, q->min, max_rows ? max_rows : a->st.probe_rows, &h, fast_visit, &c, r);
        r->n = heap_drain(&h, out_idx, out_score);
    }
    st_free(order);
    st_free(buf);
    st_free(h.pos);
    st_free(h.sc);
    return rc;
}

/* ---- the recall check ---------------------------------------------------------------- */

/* need[0..n): for each of a query's n true best users, the rows read
 * before its list's turn (lists in list_order's order), ascending: the
 * query's recall at a budget of B rows is the share of need below B. */
static void rows_before(const st_ann *a, const uint32_t *assign, const float *x, const uint32_t *best, uint32_t n,
                        bound *order, uint64_t *before, uint64_t *need)
{
    list_order(a, x, 0.0f, order);
    uint64_t cum = 0;
    for (uint32_t i = 0; i < a->lists; i++) {
        before[order[i].l] = cum;
        cum += a->start[order[i].l + 1] - a->start[order[i].l];
    }
    for (uint32_t i = 0; i < n; i++) need[i] = before[assign[best[i]]];
    qsort(need, n, sizeof *need, cmp_u64);
}

/* The mean over nq queries (need: nq x n, each ascending) of the share of
 * need below rows. */
static double mean_recall_at(const uint64_t *need, uint32_t nq, uint32_t n, uint64_t rows)
{
    double sum = 0;
    for (uint32_t qi = 0; qi < nq; qi++) {
        const uint64_t *v = need + (size_t)qi * n;
        uint32_t lo = 0, hi = n; /* the count of v below rows */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (v[mid] < rows) lo = mid + 1;
            else hi = mid;
        }
        sum += n ? (double)lo / n : 1.0;
    }
    return nq ? sum / nq : 1.0;
}

/* Chooses the budget on CHECK_QUERIES segment queries: MARGIN times the
 * fewest rows that give them a mean recall of the target, at least
 * MIN_LISTS lists' worth. A mean, not the most any one query needs: on 4M
 * trained users 98% of segment queries reach 0.98 within 0.05% of the users
 * and the broadest (the most popular segments) need 7-16%, so one of those
 * in the sample set every query's budget at 28% (bench/README.md); with
 * the mean they get less of their top N and the rest stay fast. Then
 * measures recall@N on as many other queries with st_ann_best. 0, or -1 on
 * out-of-memory. */
static int check_recall(st_ann *a, const st_model *m, const uint32_t *assign, st_rng *rng)
{
    uint32_t n = a->users / 100 < CHECK_N ? a->users / 100 : CHECK_N;
    if (n == 0) n = 1;
    uint32_t *best = st_malloc((size_t)n * sizeof *best), *got = st_malloc((size_t)n * sizeof *got);
    float *sc = st_malloc((size_t)n * sizeof *sc);
    bound *order = st_malloc(((size_t)a->lists + 1) * sizeof *order);
    uint64_t *before = st_malloc(((size_t)a->lists + 1) * sizeof *before);
    uint64_t *need = st_malloc((size_t)CHECK_QUERIES * n * sizeof *need);
    int rc = best && got && sc && order && before && need ? 0 : -1;
    a->st.probe_rows = 0;
    double recall = 0;
    for (int qi = 0; qi < 2 * CHECK_QUERIES && rc == 0; qi++) {
        const float *x = m->V + (size_t)st_rng_below(rng, m->segments) * a->k;
        st_scan_query q = {.x = x, .add = -0.0f, .min = -INFINITY, .want = n};
        st_scan_result sr;
        st_ann_result ar;
        if (st_scan_best(m, &q, best, sc, &sr) != 0) {
            rc = -1;
            break;
        }
        if (qi < CHECK_QUERIES) {
            /* Fewer than n answers (scores all NaN): the rest count as found,
             * as zeros ahead of the sorted needs (mean_recall_at bisects). */
            uint64_t *nq = need + (size_t)qi * n;
            for (uint32_t i = 0; i < n - sr.n; i++) nq[i] = 0;
            rows_before(a, assign, x, best, sr.n, order, before, nq + (n - sr.n));
            continue;
        }
        if (qi == CHECK_QUERIES) {
            uint64_t lo = 1, hi = a->users; /* the fewest rows reaching the target */
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                if (mean_recall_at(need, CHECK_QUERIES, n, mid) >= a->st.target) hi = mid;
                else lo = mid + 1;
            }
            uint64_t floor = (uint64_t)MIN_LISTS * a->users / a->lists;
            a->st.probe_rows = MARGIN * lo > floor ? MARGIN * lo : floor;
            if (a->st.probe_rows > a->users) a->st.probe_rows = a->users;
        }
        if (st_ann_best(a, m, &q, 0, got, sc, &ar) != 0) {
            rc = -1;
            break;
        }
        qsort(best, sr.n, sizeof *best, st_cmp_u32);
        uint32_t hit = 0;
        for (uint32_t i = 0; i < ar.n; i++) hit += bsearch(&got[i], best, sr.n, sizeof *best, st_cmp_u32) != NULL;
        recall += sr.n ? (double)hit / sr.n : 1.0;
    }
    a->st.recall_at = n;
    a->st.recall_queries = CHECK_QUERIES;
    a->st.recall = recall / CHECK_QUERIES;
    st_free(best);
    st_free(got);
    st_free(sc);
    st_free(order);
    st_free(before);
    st_free(need);
    return rc;
}

/* ---- the index ------------------------------------------------------------------------- */

void st_ann_free(st_ann *a)
{
    if (!a) return;
    st_free(a->cent);
    st_free(a->cnorm);
    st_free(a->radius);
    st_free(a->start);
    st_free(a->ids);
    st_free(a->rows);
    st_free(a);
}

void st_ann_get_stats(const st_ann *a, st_ann_stats *s) { *s = a->st; }

uint32_t st_ann_list_of(const st_ann *a, uint32_t u)
{
    for (uint64_t i = 0; i < a->users; i++) {
        if (a->ids[i] != u) continue;
        uint32_t l = 0;
        while (a->start[l + 1] <= i) l++;
        return l;
    }
    return UINT32_MAX;
}

const float *st_ann_centroid(const st_ann *a, uint32_t l, float *radius)
{
    *radius = a->radius[l];
    return a->cent + (size_t)l * a->k;
}

/* The k-means sample: about SAMPLE_PER_LIST users a list, drawn at random. */
static float *draw_sample(const st_model *m, uint32_t L, st_rng *rng, uint32_t *s_out)
{
    uint64_t s = (uint64_t)L * SAMPLE_PER_LIST;
    if (s > m->users) s = m->users;
    float *S = st_malloc(s * m->k * sizeof *S);
    if (!S) return NULL;
    for (uint64_t i = 0; i < s; i++) {
        uint32_t u = s == m->users ? (uint32_t)i : (uint32_t)st_rng_below(rng, m->users);
        memmove(S + i * m->k, st_model_user(m, u, S + i * m->k), m->k * sizeof *S);
    }
    *s_out = (uint32_t)s;
    return S;
}

st_ann *st_ann_build(const st_model *m, uint32_t lists, double target, uint64_t seed, int threads, char *err)
{
    double t0 = st_now();
    uint32_t L = lists ? lists : (uint32_t)lround(sqrt((double)m->users));
    if (L < 1) L = 1;
    if (L > m->users) L = m->users;
    if (threads <= 0) threads = st_cpu_count();
    st_rng rng = st_rng_for(seed, 0x616e6e);
    st_ann *a = st_calloc(1, sizeof *a);
    uint32_t *assign = st_malloc(((size_t)m->users + 1) * sizeof *assign);
    uint32_t s = 0;
    float *S = a && assign && m->users ? draw_sample(m, L, &rng, &s) : NULL;
    int rc = S ? 0 : -1;
    if (rc == 0) {
        a->k = m->k;
        a->users = m->users;
        a->lists = L;
        a->st.target = target;
        a->cent = st_aligned_alloc(64, (size_t)L * m->k * sizeof *a->cent);
        a->cnorm = st_malloc((size_t)L * sizeof *a->cnorm);
        a->radius = st_malloc((size_t)L * sizeof *a->radius);
        a->start = st_malloc(((size_t)L + 1) * sizeof *a->start);
        a->ids = st_malloc((size_t)m->users * sizeof *a->ids);
        if (m->U) a->rows = st_aligned_alloc(64, (size_t)m->users * m->k * sizeof *a->rows);
        rc = a->cent && a->cnorm && a->radius && a->start && a->ids && (a->rows || !m->U) ? 0 : -1;
    }
    if (rc == 0) rc = kmeans(S, s, m->k, L, &rng, a->cent);
    st_free(S);
    if (rc == 0) rc = assign_all(a, m, threads, assign);
    if (rc == 0) rc = lists_geometry(a, m);
    if (rc == 0) rc = check_recall(a, m, assign, &rng);
    st_free(assign);
    if (rc != 0) {
        st_ann_free(a);
        st_seterr(err, "out of memory for the approximate index (%u users, rank %u)", m->users, m->k);
        return NULL;
    }
    a->st.lists = L;
    a->st.users = m->users;
    a->st.k = m->k;
    a->st.bytes = (uint64_t)L * (m->k * sizeof(float) + sizeof(double) + sizeof(float) + sizeof(uint64_t)) +
                  (uint64_t)m->users * sizeof(uint32_t) + (a->rows ? (uint64_t)m->users * m->k * sizeof(float) : 0);
    a->st.build_seconds = st_now() - t0;
    return a;
}

/* ---- the reference ------------------------------------------------------------------- */

typedef struct {
    const st_ann *a;
    const st_model *m;
    const st_scan_query *q;
    float *row;
    uint32_t *pos;
    float *sc;
    uint64_t n;
    heap *h;
    st_ann_result *r;
} ref_ctx;

/* The stop rule needs the want-th best score so far: found naively, by
 * selection over every candidate, into the stand-in heap's root. */
static void ref_refresh(ref_ctx *c)
{
    uint32_t want = c->h->want;
    if (!want || c->n < want) return;
    float *tmp = st_malloc(c->n * sizeof *tmp);
    if (!tmp) return;
    memcpy(tmp, c->sc, c->n * sizeof *tmp);
    for (uint32_t s = 0; s < want; s++) {
        uint64_t b = s;
        for (uint64_t t = s + 1; t < c->n; t++)
            if (tmp[t] > tmp[b]) b = t;
        float x = tmp[s];
        tmp[s] = tmp[b];
        tmp[b] = x;
    }
    c->h->n = want;
    c->h->sc[0] = tmp[want - 1];
    st_free(tmp);
}

static void ref_visit(void *ctx, uint32_t l)
{
    ref_ctx *c = ctx;
    const st_ann *a = c->a;
    for (uint64_t i = a->start[l]; i < a->start[l + 1]; i++) {
        uint32_t u = a->ids[i];
        float s = st_dot(st_model_user(c->m, u, c->row), c->q->x, a->k) + c->q->add;
        if (!(c->q->skip && c->q->skip[u]) && s >= c->q->min) {
            c->r->matching++;
            if (!is_excluded(c->q, u)) {
                c->pos[c->n] = u;
                c->sc[c->n++] = s;
            }
        }
    }
    c->r->scored += a->start[l + 1] - a->start[l];
    c->r->lists++;
    ref_refresh(c);
}

static const float *g_ref_sc;
static int ref_order(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    if (g_ref_sc[i] != g_ref_sc[j]) return g_ref_sc[i] > g_ref_sc[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

int st_ann_best_reference(const st_ann *a, const st_model *m, const st_scan_query *q, uint64_t max_rows,
                          uint32_t *out_idx, float *out_score, st_ann_result *r)
{
    memset(r, 0, sizeof *r);
    uint64_t total = (uint64_t)a->users + q->nextra;
    uint32_t want = q->want < total ? q->want : (uint32_t)total;
    bound *order = st_malloc(((size_t)a->lists + 1) * sizeof *order);
    float worst = 0, *row = st_malloc(((size_t)a->k + 1) * sizeof *row), *sc = st_malloc((total + 1) * sizeof *sc);
    uint32_t *pos = st_malloc((total + 1) * sizeof *pos), *slot = st_malloc((total + 1) * sizeof *slot);
    heap h = {.sc = &worst, .want = want};
    ref_ctx c = {a, m, q, row, pos, sc, 0, &h, r};
    int rc = order && row && sc && pos && slot ? 0 : -1;
    if (rc == 0) {
        for (uint32_t i = 0; i < q->nextra; i++) {
            float s = st_dot(q->extra + (size_t)i * a->k, q->x, a->k) + q->add;
            if (!(s >= q->min)) continue;
            r->matching++;
            if (!is_excluded(q, a->users + i)) {
                pos[c.n] = a->users + i;
                sc[c.n++] = s;
            }
        }
        ref_refresh(&c);
        list_order(a, q->x, q->add, order);
        probe(a, order, q->min, max_rows ? max_rows : a->st.probe_rows, &h, ref_visit, &c, r);
        /* The candidates by (score desc, position asc), through their positions. */
        float *bypos = st_calloc(total + 1, sizeof *bypos);
        if (!bypos) rc = -1;
        for (uint64_t i = 0; bypos && i < c.n; i++) bypos[pos[i]] = sc[i];
        for (uint64_t i = 0; bypos && i < c.n; i++) slot[i] = pos[i];
        g_ref_sc = bypos; /* tests only: not reentrant */
        if (bypos) qsort(slot, c.n, sizeof *slot, ref_order);
        r->n = (uint32_t)(c.n < want ? c.n : want);
        for (uint32_t i = 0; bypos && i < r->n; i++) {
            out_idx[i] = slot[i];
            out_score[i] = bypos[slot[i]];
        }
        st_free(bypos);
    }
    st_free(order);
    st_free(row);
    st_free(sc);
    st_free(pos);
    st_free(slot);
    return rc;
}
