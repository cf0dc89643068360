/* segindex: the exact, pruned top-k over segments (see segindex.h).
 *
 * Why these bounds. On a trained model at rank 64 with 10,000 segments and
 * a popularity blend (bench/serve.sh's), visiting by decreasing norm scored
 * about 1,400 segments a question; visiting by blend + c |V[s]| stops after
 * about 900, and projections on directions fitted to the rows visited
 * and to the users rule out all but about 40 of those, most for an eighth
 * of a dot product each (bench/README.md).
 *
 * Rounding. u = 2^-24. A computed score (dot8: k products summed in eight
 * lanes, then the blend added) is within (k + 2) u (|x| |v| + |blend|) of
 * the exact value. A segment's projections, tails and norms are computed in
 * double from the float inputs and rounded up (projections to nearest,
 * within u |v| of theirs); the directions are orthonormal to about 1e-15; a
 * bound sums four float terms. A question's projection is computed in
 * float (directions rounded to float, k products summed): each coordinate
 * within (2k + 2) u |x| of the exact one, so the projected dot product is
 * within sqrt(SEG_DIRS) (2k + 2) u |x| |v| < 7 (2k + 2) u |x| |v| of its
 * exact value, and its tails' squares within 13 (2k + 2) u |x|^2, which
 * tail_query adds. So every bound is raised by (8k + 63) 2^-23 |x| |v|
 * ((k + 56) 2u for the rest, 7 (2k + 2) u for the question's projection)
 * plus 2^-20 |blend| plus 1e-30: several times what the arithmetic can lose,
 * at no measurable cost in pruning.
 */
#include "segindex.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dotkern.h"
#include "util.h"

/* A block of 32 positions holds, 32 floats each: the projections on the
 * SEG_DIRS directions, the norm of the rest past the first SEG_DIRS_A
 * directions and past all of them, the rounding margin and the blend with
 * its margin. */
enum {
    SEG_BLOCK = 32,
    SEG_GROUP = 64,
    SEG_DIRS_A = 8,
    SEG_DIRS = 40,
    SEG_TAIL_A = SEG_DIRS * SEG_BLOCK,
    SEG_TAIL_B = SEG_TAIL_A + SEG_BLOCK,
    SEG_EPS = SEG_TAIL_B + SEG_BLOCK,
    SEG_ADDU = SEG_EPS + SEG_BLOCK,
    SEG_STRIDE = SEG_ADDU + SEG_BLOCK,
    SEG_HEAD = 1024,       /* segment rows the directions are fitted to */
    SEG_USER_SAMPLE = 4096 /* user rows the order and the directions are fitted to */
};
_Static_assert(SEG_DIRS % 8 == 0, "project() and project_query() sum the directions 4 doubles, 8 floats at a time");
_Static_assert((SEG_DIRS - SEG_DIRS_A) % 2 == 0, "bound_mask() takes the second stage's coordinates two at a time");

/* The float at least d (for d = +inf, +inf). */
static float up(double d)
{
    float f = (float)d;
    return (double)f < d ? nextafterf(f, INFINITY) : f;
}

/* The relative margin on |x| |v| of a bound at rank k. */
static double margin_factor(uint32_t k) { return (double)(k + SEG_DIRS + 16) * 0x1p-23 + 7.0 * (2 * k + 2) * 0x1p-24; }

/* The blend a with its margin, rounded up. */
static float add_up(float a) { return up((double)a + fabs((double)a) * 0x1p-20 + 1e-30); }

static int by_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Row u of the user factors in double (dequantized for an int8 model);
 * 0 when a value in it is not finite. */
static int user_row(const st_model *m, uint32_t u, double *out)
{
    uint32_t k = m->k;
    int finite = 1;
    for (uint32_t j = 0; j < k; j++) {
        out[j] = m->U ? m->U[(size_t)u * k + j] : (double)m->Uq[(size_t)u * k + j] * m->Uscale[u];
        finite &= isfinite(out[j]) != 0;
    }
    return finite;
}

/* The user rows both the visiting order and the directions are fitted to:
 * up to SEG_USER_SAMPLE spread over the model. */
static uint32_t user_step(const st_model *m) { return m->users > SEG_USER_SAMPLE ? m->users / SEG_USER_SAMPLE : 1; }

/* The median norm of the sampled user rows (1 when the model has none):
 * the c of the visiting order. Any c gives exact answers; a typical one
 * visits fewest segments. */
static float typical_user_norm(const st_model *m)
{
    uint32_t users = m->users, k = m->k, step = user_step(m), n = 0;
    if (users == 0 || (!m->U && !m->Uq)) return 1.0f;
    float *norms = st_malloc(SEG_USER_SAMPLE * sizeof *norms);
    double *row = st_malloc(((size_t)k + 1) * sizeof *row);
    if (!norms || !row) {
        st_free(norms);
        st_free(row);
        return 1.0f;
    }
    for (uint32_t u = 0; u < users && n < SEG_USER_SAMPLE; u += step) {
        if (!user_row(m, u, row)) continue;
        double s = 0;
        for (uint32_t j = 0; j < k; j++) s += row[j] * row[j];
        if (isfinite(s)) norms[n++] = (float)sqrt(s);
    }
    float c = 1.0f;
    if (n > 0) {
        qsort(norms, n, sizeof *norms, by_float);
        c = norms[n / 2];
    }
    st_free(norms);
    st_free(row);
    return c > 0 && isfinite(c) ? c : 1.0f;
}

/* A Gram matrix (upper triangle) summed from rows pushed one at a time,
 * GRAM_CHUNK at a time through dsyrk. */
enum { GRAM_CHUNK = 256 };
typedef struct {
    double *C, *D;
    uint32_t k, rows;
} gram_acc;

static void gram_flush(gram_acc *g)
{
    if (g->rows > 0)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)g->k, (int)g->rows, 1.0, g->D, (int)g->k, 1.0, g->C,
                    (int)g->k);
    g->rows = 0;
}

static void gram_push(gram_acc *g, const double *row)
{
    memcpy(g->D + (size_t)g->rows * g->k, row, g->k * sizeof *row);
    if (++g->rows == GRAM_CHUNK) gram_flush(g);
}

/* C += G / trace(G) (upper triangles; nothing when the trace is 0). */
static void add_normalized(double *C, const double *G, uint32_t k)
{
    double tr = 0;
    for (uint32_t j = 0; j < k; j++) tr += G[(size_t)j * k + j];
    if (!(tr > 0) || !isfinite(tr)) return;
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = i; j < k; j++) C[(size_t)i * k + j] += G[(size_t)i * k + j] / tr;
}

/* dir (k x SEG_DIRS): w orthonormal directions, then zero directions up to
 * SEG_DIRS (they add nothing to a projection). The directions are the
 * leading eigenvectors of Vh^T Vh / |Vh|^2 + Us^T Us / |Us|^2 (double),
 * Vh the first SEG_HEAD finite segment rows in visiting order (the ones
 * questions visit) and Us the sampled finite user rows: the bound's tails
 * are |x past them| |v past them|, so the directions that hold most of
 * both the visited rows and the questions leave the smallest tails (on
 * bench/serve.sh's model, a third of the rows scored with V's own axes).
 * The first w unit vectors when the eigensolver fails. Any orthonormal set
 * keeps the bounds exact. */
static int principal_directions(const st_model *m, const uint32_t *order, uint32_t w, double *dir)
{
    uint32_t n = m->segments, k = m->k, users = m->users, step = user_step(m);
    if (k == 0) return 0;
    double *C = st_calloc((size_t)k * k, sizeof *C), *G = st_malloc((size_t)k * k * sizeof *G);
    double *D = st_malloc((size_t)GRAM_CHUNK * k * sizeof *D), *row = st_malloc((size_t)k * sizeof *row);
    double *eig = st_malloc((size_t)k * sizeof *eig);
    if (!C || !G || !D || !row || !eig) {
        st_free(C);
        st_free(G);
        st_free(D);
        st_free(row);
        st_free(eig);
        return -1;
    }
    gram_acc g = {.C = G, .D = D, .k = k};
    memset(G, 0, (size_t)k * k * sizeof *G);
    for (uint32_t p = 0, taken = 0; p < n && taken < SEG_HEAD; p++) {
        const float *v = m->V + (size_t)order[p] * k;
        int finite = 1;
        for (uint32_t j = 0; j < k; j++) {
            row[j] = v[j];
            finite &= isfinite(v[j]) != 0;
        }
        if (!finite) continue;
        gram_push(&g, row);
        taken++;
    }
    gram_flush(&g);
    add_normalized(C, G, k);
    memset(G, 0, (size_t)k * k * sizeof *G);
    if (m->U || m->Uq)
        for (uint32_t u = 0, taken = 0; u < users && taken < SEG_USER_SAMPLE; u += step)
            if (user_row(m, u, row)) {
                gram_push(&g, row);
                taken++;
            }
    gram_flush(&g);
    add_normalized(C, G, k);
    int ok = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)k, C, (lapack_int)k, eig) == 0;
    for (uint32_t j = 0; j < k; j++)
        for (uint32_t t = 0; t < SEG_DIRS; t++) {
            double d = t < w ? C[(size_t)j * k + (k - 1 - t)] : 0; /* eigenvalues come ascending */
            ok &= isfinite(d) != 0;
            dir[(size_t)j * SEG_DIRS + t] = d;
        }
    if (!ok)
        for (uint32_t j = 0; j < k; j++)
            for (uint32_t t = 0; t < SEG_DIRS; t++) dir[(size_t)j * SEG_DIRS + t] = t < w && j == t;
    st_free(C);
    st_free(G);
    st_free(D);
    st_free(row);
    st_free(eig);
    return 0;
}

/* |v|^2 of a k-vector, in double, four sums side by side. */
static double norm2(const float *v, uint32_t k)
{
    double b[4] = {0};
    uint32_t j = 0;
    for (; j + 4 <= k; j += 4)
        for (int h = 0; h < 4; h++) b[h] += (double)v[j + h] * v[j + h];
    for (; j < k; j++) b[0] += (double)v[j] * v[j];
    return (b[0] + b[1]) + (b[2] + b[3]);
}

/* The projection of the k-vector v on the directions (SEG_DIRS floats, to
 * nearest), the squared norms of its first SEG_DIRS_A coordinates, of all
 * of them, and of v, in double. dir is k x SEG_DIRS (coordinate j of every
 * direction together), so the SEG_DIRS sums run side by side. */
static void project(const double *dir, uint32_t k, const float *v, float *pv, double p2[2], double *v2)
{
    double a[SEG_DIRS] = {0};
    uint32_t j = 0;
#ifdef __FMA__
    __m256d acc[SEG_DIRS / 4];
    for (int t = 0; t < SEG_DIRS / 4; t++) acc[t] = _mm256_setzero_pd();
    for (; j < k; j++) {
        __m256d vj = _mm256_set1_pd(v[j]);
        for (int t = 0; t < SEG_DIRS / 4; t++)
            acc[t] = _mm256_fmadd_pd(_mm256_loadu_pd(dir + (size_t)j * SEG_DIRS + 4 * t), vj, acc[t]);
    }
    for (int t = 0; t < SEG_DIRS / 4; t++) _mm256_storeu_pd(a + 4 * t, acc[t]);
#else
    for (; j < k; j++)
        for (int t = 0; t < SEG_DIRS; t++) a[t] += dir[(size_t)j * SEG_DIRS + t] * v[j];
#endif
    double sb = 0;
    p2[0] = 0;
    for (int t = 0; t < SEG_DIRS; t++) {
        pv[t] = (float)a[t];
        sb += a[t] * a[t];
        if (t + 1 == SEG_DIRS_A) p2[0] = sb;
    }
    p2[1] = sb;
    *v2 = norm2(v, k);
}

/* |v| sqrt(1 - |proj|^2/|v|^2) with a cushion of 1e-6 |v|, rounded up. */
static float tail_norm(double p2, double v2) { return up(sqrt(fmax(0.0, v2 - p2) + 1e-12 * v2)); }

/* A question's tail from its float projection: the cushion covers what
 * that projection's rounding can take off p2 (13 (2k + 2) u |x|^2). */
static float tail_query(double p2, double x2, uint32_t k)
{
    return up(sqrt(fmax(0.0, x2 - p2) + (13.0 * (2 * k + 2) * 0x1p-24 + 1e-12) * x2));
}

/* A question's projection on the directions in float (dirf: k x SEG_DIRS,
 * the directions rounded to float), the squared norms of its first
 * SEG_DIRS_A coordinates and of all of them, and |x|^2, the last three in
 * double. Half the work of project() in double, which the margins allow. */
static void project_query(const float *dirf, uint32_t k, const float *x, float *xp, double p2[2], double *x2)
{
#ifdef __FMA__
    __m256 acc[SEG_DIRS / 8];
    for (int t = 0; t < SEG_DIRS / 8; t++) acc[t] = _mm256_setzero_ps();
    for (uint32_t j = 0; j < k; j++) {
        __m256 xj = _mm256_set1_ps(x[j]);
        for (int t = 0; t < SEG_DIRS / 8; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(dirf + (size_t)j * SEG_DIRS + 8 * t), xj, acc[t]);
    }
    for (int t = 0; t < SEG_DIRS / 8; t++) _mm256_storeu_ps(xp + 8 * t, acc[t]);
#else
    for (int t = 0; t < SEG_DIRS; t++) xp[t] = 0;
    for (uint32_t j = 0; j < k; j++)
        for (int t = 0; t < SEG_DIRS; t++) xp[t] += dirf[(size_t)j * SEG_DIRS + t] * x[j];
#endif
    double sb = 0;
    p2[0] = 0;
    for (int t = 0; t < SEG_DIRS; t++) {
        sb += (double)xp[t] * xp[t];
        if (t + 1 == SEG_DIRS_A) p2[0] = sb;
    }
    p2[1] = sb;
    *x2 = norm2(x, k);
}

typedef struct {
    double key;
    uint32_t s;
} keyed;

static int by_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return (x->s > y->s) - (x->s < y->s);
}

/* Lays out position p's block entry: its projection, tails, margin and blend. */
static void fill_row(st_segment_index *ix, uint32_t p)
{
    uint32_t k = ix->k, b = p / SEG_BLOCK, r = p % SEG_BLOCK;
    float *blk = ix->blocks + (size_t)b * SEG_STRIDE, pv[SEG_DIRS];
    const float *v = ix->rows + (size_t)p * k;
    double p2[2], v2;
    project(ix->dir, k, v, pv, p2, &v2);
    int finite = isfinite(v2) && isfinite(ix->add[p]);
    for (uint32_t t = 0; t < SEG_DIRS; t++) {
        finite &= isfinite(pv[t]) != 0;
        blk[t * SEG_BLOCK + r] = pv[t];
    }
    blk[SEG_TAIL_A + r] = tail_norm(p2[0], v2);
    blk[SEG_TAIL_B + r] = tail_norm(p2[1], v2);
    blk[SEG_EPS + r] = up(sqrt(v2) * margin_factor(k));
    blk[SEG_ADDU + r] = add_up(ix->add[p]);
    if (!finite) ix->exact[b] = 1;
}

int st_segment_index_build(const st_model *m, const float *q, st_segment_index *ix)
{
    memset(ix, 0, sizeof *ix);
    uint32_t n = m->segments, k = m->k, w = k < SEG_DIRS ? k : SEG_DIRS, nblocks = (n + SEG_BLOCK - 1) / SEG_BLOCK;
    ix->n = n;
    ix->k = k;
    ix->order = st_malloc((size_t)n * sizeof *ix->order + 1);
    ix->rows = st_aligned_alloc(64, (size_t)n * k * sizeof *ix->rows + 64);
    ix->add = st_malloc((size_t)n * sizeof *ix->add + 1);
    ix->reach = st_malloc(((size_t)nblocks + 1) * sizeof *ix->reach);
    ix->dir = st_malloc((size_t)k * SEG_DIRS * sizeof *ix->dir + 1);
    ix->dirf = st_malloc((size_t)k * SEG_DIRS * sizeof *ix->dirf + 1);
    ix->blocks = st_aligned_alloc(64, (size_t)nblocks * SEG_STRIDE * sizeof *ix->blocks + 64);
    ix->exact = st_calloc((size_t)nblocks + 1, 1);
    keyed *key = st_malloc((size_t)n * sizeof *key + 1);
    float *norm = st_malloc((size_t)n * sizeof *norm + 1);
    if (!ix->order || !ix->rows || !ix->add || !ix->reach || !ix->dir || !ix->dirf ||
        !ix->blocks || !ix->exact || !key || !norm) {
        st_free(key);
        st_free(norm);
        st_segment_index_free(ix);
        return -1;
    }
    ix->c = typical_user_norm(m);
    float wgt = (float)m->h.prior_weight;
    for (uint32_t s = 0; s < n; s++) {
        double v2 = 0;
        for (uint32_t j = 0; j < k; j++) v2 += (double)m->V[(size_t)s * k + j] * m->V[(size_t)s * k + j];
        norm[s] = up(sqrt(v2));
        /* Rows with a value that is not finite go first, where nothing stops before them. */
        double kv = (double)add_up(wgt * q[s]) + (double)ix->c * norm[s];
        key[s] = (keyed){.key = isfinite(kv) ? kv : INFINITY, .s = s};
    }
    qsort(key, n, sizeof *key, by_key);
    for (uint32_t p = 0; p < n; p++) ix->order[p] = key[p].s;
    if (principal_directions(m, ix->order, w, ix->dir) != 0) {
        st_free(key);
        st_free(norm);
        st_segment_index_free(ix);
        return -1;
    }
    for (size_t i = 0; i < (size_t)k * SEG_DIRS; i++) ix->dirf[i] = (float)ix->dir[i];
    memset(ix->blocks, 0, (size_t)nblocks * SEG_STRIDE * sizeof *ix->blocks);
    for (uint32_t p = 0; p < n; p++) {
        uint32_t s = key[p].s;
        memcpy(ix->rows + (size_t)p * k, m->V + (size_t)s * k, k * sizeof *ix->rows);
        ix->add[p] = wgt * q[s]; /* the blend, exactly as st_score_one adds it */
        fill_row(ix, p);
    }
    /* Past the last row of the last block: bounds of -inf (masked off anyway). */
    for (uint32_t p = n; p < nblocks * SEG_BLOCK; p++)
        ix->blocks[(size_t)(p / SEG_BLOCK) * SEG_STRIDE + SEG_ADDU + p % SEG_BLOCK] = -INFINITY;
    struct st_seg_reach r = {-INFINITY, -INFINITY, -INFINITY};
    ix->reach[nblocks] = r;
    for (uint32_t p = n; p-- > 0;) {
        float nm = norm[ix->order[p]], am = add_up(ix->add[p]), km = up(key[p].key);
        if (!isfinite(nm) || !isfinite(am)) nm = am = km = INFINITY;
        r.norm = fmaxf(nm, r.norm);
        r.add = fmaxf(am, r.add);
        r.key = fmaxf(km, r.key);
        if (p % SEG_BLOCK == 0) ix->reach[p / SEG_BLOCK] = r;
    }
    st_free(key);
    st_free(norm);
    return 0;
}

void st_segment_index_free(st_segment_index *ix)
{
    st_free(ix->order);
    st_free(ix->rows);
    st_free(ix->add);
    st_free(ix->reach);
    st_free(ix->dir);
    st_free(ix->dirf);
    st_free(ix->blocks);
    st_free(ix->exact);
    memset(ix, 0, sizeof *ix);
}

/* ---- questions ------------------------------------------------------------ */

/* What a question needs besides x: its norm with the margin, its projection
 * and the bound on the rest of it; exact = 1 when x is not finite. */
typedef struct {
    float xnu, txa, txb, xn, xp[SEG_DIRS];
    int exact;
} query_bounds;

static void query_prepare(const st_segment_index *ix, const float *x, query_bounds *b)
{
    double p2[2], x2;
    project_query(ix->dirf, ix->k, x, b->xp, p2, &x2);
    b->exact = !isfinite(x2);
    for (uint32_t t = 0; t < SEG_DIRS; t++) b->exact |= !isfinite(b->xp[t]);
    b->xn = up(sqrt(x2));
    b->xnu = up(sqrt(x2) * (1.0 + margin_factor(ix->k)));
    b->txa = tail_query(p2[0], x2, ix->k);
    b->txb = tail_query(p2[1], x2, ix->k);
}

/* The most any segment from position p (a block's first) on can score for the question:
 * through the norm and blend maxima, or through the visiting key. */
static double reach_from(const st_segment_index *ix, const query_bounds *b, uint32_t p)
{
    const struct st_seg_reach *s = &ix->reach[p / SEG_BLOCK];
    double nm = s->norm, r1 = (double)b->xnu * nm + s->add;
    double over = (double)b->xnu - ix->c, r2 = (double)s->key + (over > 0 ? over : 0) * nm;
    double r = r1 < r2 ? r1 : r2;
    return r + fabs(r) * 1e-12;
}

/* 1 when nothing from position p on can enter q's answer. */
static int seg_pruned(const st_segment_index *ix, const st_segment_query *q, const query_bounds *b, uint32_t p)
{
    if (b->exact) return 0; /* no bound holds for a vector that is not finite */
    double reach = reach_from(ix, b, p);
    return reach < q->min || (q->got == q->want && reach < q->out_score[0]);
}

/* The score a position must reach to enter q's answer now. */
static float entry_threshold(const st_segment_query *q)
{
    return q->got == q->want && q->out_score[0] > q->min ? q->out_score[0] : q->min;
}

/* Offers the exact scores sc of positions pos[0..np) to q: only those that
 * can enter its answer (a branch-free test first: most cannot). */
static void offer_all(const st_segment_index *ix, st_segment_query *q, const uint32_t *pos, const float *sc,
                      uint32_t np)
{
    float v[8], thr = entry_threshold(q);
    uint32_t m = 0;
    for (uint32_t t = 0; t < np; t++) {
        v[t] = sc[t] + ix->add[pos[t]]; /* the blend, exactly as st_score_one adds it */
        m |= (uint32_t)(v[t] >= thr) << t; /* thr >= min; NaN compares false; -inf is no score either */
    }
    for (; m; m &= m - 1) {
        uint32_t t = (uint32_t)__builtin_ctz(m);
        if (v[t] > -INFINITY) offer(q->out_idx, q->out_score, &q->got, q->want, ix->order[pos[t]], v[t]);
    }
    q->scored += np;
}

/* Scores eight rows exactly (row[np..8) are copies, scored and dropped). */
static void score8(const st_segment_index *ix, st_segment_query *q, const float **row, const uint32_t *pos,
                   uint32_t np)
{
    uint32_t k = ix->k;
    float sc[8];
    for (uint32_t t = np; t < 8; t++) row[t] = row[0];
    if (k % 8 == 0) dot8x8_any(row, k, q->x, sc);
    else
        for (uint32_t t = 0; t < np; t++) sc[t] = dot8(row[t], q->x, k);
    offer_all(ix, q, pos, sc, np);
}

/* Scores exactly, for q, the positions in mask (bits of the block at p)
 * that q does not skip, eight rows at a time with the eight-row kernel. */
static void score_mask(const st_segment_index *ix, st_segment_query *q, uint32_t p, uint32_t mask)
{
    uint32_t pos[8], np = 0;
    const float *row[8];
    for (; mask; mask &= mask - 1) {
        uint32_t j = (uint32_t)__builtin_ctz(mask);
        if (q->skip && (q->skip[ix->order[p + j]] & q->skip_bit)) continue;
        pos[np] = p + j;
        row[np++] = ix->rows + (size_t)(p + j) * ix->k;
        if (np == 8) {
            score8(ix, q, row, pos, 8);
            np = 0;
        }
    }
    if (np) score8(ix, q, row, pos, np);
}

/* a * b + c, fused where the CPU can (a bound needs no fixed rounding). */
static inline v8f fma8(float a, v8f b, v8f c)
{
#ifdef __FMA__
    return (v8f)_mm256_fmadd_ps(_mm256_set1_ps(a), (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

/* Bit j set when lane j of a is at least thr (NaN: not set). */
static inline uint32_t at_least8(v8f a, float thr)
{
#ifdef __AVX__
    return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps((__m256)a, _mm256_set1_ps(thr), _CMP_GE_OQ));
#else
    uint32_t m = 0;
    for (int j = 0; j < 8; j++) m |= (uint32_t)(a[j] >= thr) << j;
    return m;
#endif
}

/* The bits of the block at position p whose bound reaches thr, 32 rows at
 * once (each projected coordinate is 32 floats in a row): the dot of the
 * first SEG_DIRS_A projected coordinates plus the tails' product, plus the
 * margin and the blend; then, when a row is still in, the same through all
 * SEG_DIRS coordinates for the whole block, a tighter bound. Each stage
 * runs the four groups of eight side by side (that beats skipping the
 * groups with none in: the sums are chains of dependent adds). A stage
 * between the two (16 coordinates) and scoring the few rows it leaves
 * without the last were measured: neither gains on bench/serve.sh's model
 * or the shared data sets' (bench/README.md). */
static uint32_t bound_mask(const st_segment_index *ix, const query_bounds *b, uint32_t p, float thr)
{
    const float *blk = ix->blocks + (size_t)(p / SEG_BLOCK) * SEG_STRIDE;
    v8f dot[4] = {{0}}, e[4] = {{0}}, base[4];
    uint32_t mask = 0;
    for (int t = 0; t < SEG_DIRS_A; t++)
        for (int i = 0; i < 4; i++) dot[i] = fma8(b->xp[t], load8(blk + t * SEG_BLOCK + 8 * i), dot[i]);
    for (int i = 0; i < 4; i++) {
        const float *c = blk + 8 * i;
        base[i] = fma8(b->xn, load8(c + SEG_EPS), load8(c + SEG_ADDU));
        mask |= at_least8(fma8(b->txa, load8(c + SEG_TAIL_A), base[i] + dot[i]), thr) << (8 * i);
    }
    if (!mask) return 0;
    /* Two chains a group from here: eight independent sums keep the FMA units busy. */
    for (int t = SEG_DIRS_A; t < SEG_DIRS; t += 2)
        for (int i = 0; i < 4; i++) {
            dot[i] = fma8(b->xp[t], load8(blk + t * SEG_BLOCK + 8 * i), dot[i]);
            e[i] = fma8(b->xp[t + 1], load8(blk + (t + 1) * SEG_BLOCK + 8 * i), e[i]);
        }
    uint32_t out = 0;
    for (int i = 0; i < 4; i++)
        out |= at_least8(fma8(b->txb, load8(blk + 8 * i + SEG_TAIL_B), base[i] + (dot[i] + e[i])), thr) << (8 * i);
    return out & mask;
}

/* Visits the block at position p (nb rows) for q: every row scored while
 * nothing can be ruled out (no bound, or no threshold yet). */
static void seg_block(const st_segment_index *ix, st_segment_query *q, const query_bounds *b, uint32_t p, uint32_t nb)
{
    uint32_t valid = nb == SEG_BLOCK ? 0xffffffffu : (1u << nb) - 1;
    float thr = entry_threshold(q);
    if (b->exact || ix->exact[p / SEG_BLOCK] || thr == -INFINITY) {
        score_mask(ix, q, p, valid);
        return;
    }
    score_mask(ix, q, p, bound_mask(ix, b, p, thr) & valid);
}

/* Up to SEG_GROUP questions, block by block: each block is visited for
 * every question not yet pruned while it is in the cache. */
static void seg_group(const st_segment_index *ix, st_segment_query *q, uint32_t nq)
{
    uint32_t n = ix->n, live[SEG_GROUP], nlive = 0;
    query_bounds qb[SEG_GROUP];
    for (uint32_t i = 0; i < nq; i++) {
        q[i].got = q[i].visited = q[i].scored = 0;
        if (q[i].want == 0) continue;
        query_prepare(ix, q[i].x, &qb[i]);
        live[nlive++] = i;
    }
    for (uint32_t p = 0; p < n && nlive > 0; p += SEG_BLOCK) {
        uint32_t nb = n - p < SEG_BLOCK ? n - p : SEG_BLOCK, kept = 0;
        for (uint32_t j = 0; j < nlive; j++) {
            uint32_t i = live[j];
            if (seg_pruned(ix, &q[i], &qb[i], p)) {
                q[i].visited = p;
                continue;
            }
            live[kept++] = i;
        }
        nlive = kept;
        for (uint32_t j = 0; j < nlive; j++) seg_block(ix, &q[live[j]], &qb[live[j]], p, nb);
    }
    for (uint32_t j = 0; j < nlive; j++) q[live[j]].visited = n;
    for (uint32_t i = 0; i < nq; i++) heap_to_sorted(q[i].out_idx, q[i].out_score, q[i].got);
}

void st_score_topk_segments_many(const st_segment_index *ix, st_segment_query *q, uint32_t nq)
{
    for (uint32_t g = 0; g < nq; g += SEG_GROUP) seg_group(ix, q + g, nq - g < SEG_GROUP ? nq - g : SEG_GROUP);
}

uint32_t st_score_topk_segments(const st_segment_index *ix, const float *x, uint32_t want, float min,
                                const uint8_t *skip, uint32_t *out_idx, float *out_score, uint32_t *visited)
{
    st_segment_query q = {.x = x, .want = want, .min = min, .skip = skip, .skip_bit = 0xff, .out_idx = out_idx,
                          .out_score = out_score};
    seg_group(ix, &q, 1);
    if (visited) *visited = q.visited;
    return q.got;
}
