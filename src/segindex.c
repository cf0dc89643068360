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
 * the exact value. A segment's projection a, tails and norms are computed
 * in double from the float inputs (the directions are orthonormal to about
 * 1e-15); a is kept as 16-bit integers q over the scale s = |a| / SEG_Q,
 * and what that takes off, e = a - s q, is computed exactly: |x| |e| goes
 * into the row's margin. A question's projection xp is computed in float
 * (directions rounded to float, k products summed): each coordinate within
 * (2k + 2) u |x| of the exact one, so the projected dot product is within
 * sqrt(SEG_DIRS) (2k + 2) u |x| |v| < 7 (2k + 2) u |x| |v| of its exact
 * value, and its tails' squares within 13 (2k + 2) u |x|^2, which
 * tail_query adds. xp is kept as integers over xs = |x| / SEG_Q, each
 * within xs / 2, in all within SEG_QX |x|: times |s q| <= |a| + |e|, that
 * goes into the margin too. The integer dot is exact (no sum passes
 * 2^31); turning it into a float and multiplying by the two scales loses
 * at most 2^-23 |x| |v|. So every bound is raised by |x| times
 * (8k + 67) 2^-23 |v| + SEG_QX (|a| + |e|) + (1 + 2^-10) |e| ((k + 60) 2u
 * for the rest, 7 (2k + 2) u for the question's float projection), plus
 * 2^-20 |blend| plus 1e-30: several times what the arithmetic can lose,
 * and about 1e-4 |x| |v| in all, at no measurable cost in pruning
 * (tests/test_score.c has answers go wrong without the margins).
 */
#include "segindex.h"

#include <cblas.h>
#include <lapacke.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dotkern.h"
#include "util.h"

/* A block of 32 positions holds the projections on the SEG_DIRS directions
 * as 16-bit integers (row r's coordinates 2j and 2j + 1 side by side at
 * (32 j + r) 2, so one 32-byte load holds a pair for eight rows), then, 32
 * floats each: the scale of each row's integers, the norm of the rest past
 * the first SEG_DIRS_A directions and past all of them, the margin and the
 * blend with its margin. */
enum {
    SEG_BLOCK = 32,
    SEG_GROUP = 64,
    SEG_DIRS_A = 8,
    SEG_DIRS = 40,
    SEG_PAIRS = SEG_DIRS / 2,
    SEG_SCALE = SEG_DIRS * SEG_BLOCK / 2, /* floats the integers take */
    SEG_TAIL_A = SEG_SCALE + SEG_BLOCK,
    SEG_TAIL_B = SEG_TAIL_A + SEG_BLOCK,
    SEG_EPS = SEG_TAIL_B + SEG_BLOCK,
    SEG_ADDU = SEG_EPS + SEG_BLOCK,
    SEG_STRIDE = SEG_ADDU + SEG_BLOCK,
    SEG_HEAD = 1024,       /* segment rows the directions are fitted to */
    SEG_USER_SAMPLE = 4096, /* user rows the order and the directions are fitted to */
    SEG_Q = 32000           /* the norm of a projection in integers: any pair's dot fits in 31 bits */
};
_Static_assert(SEG_DIRS % 8 == 0, "project() and project_query() sum the directions 4 doubles, 8 floats at a time");
_Static_assert(SEG_DIRS_A % 4 == 0, "bound_mask() takes the coordinates two at a time, project_query() sums four");
_Static_assert((double)SEG_Q * SEG_Q * 1.001 < 2147483647.0 && SEG_Q < 32767, "integer dots fit in int32");

/* What the question's integers can take off its dot with a row, relative
 * to |x| and |that row's projection + its own error|: sqrt(SEG_DIRS)/2 of
 * the question's scale (segindex.c's header). */
#define SEG_QX (sqrt((double)SEG_DIRS) / (2.0 * SEG_Q) * (1.0 + 0x1p-6))

/* The float at least d (for d = +inf, +inf). */
static inline float up(double d)
{
    float f = (float)d;
    if (!((double)f < d)) return f;
    if (f > 0 && f < INFINITY) { /* the next float up: its bits plus one */
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        bits++;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return nextafterf(f, INFINITY);
}

/* The relative margin on |x| |v| of a bound at rank k. */
static double margin_factor(uint32_t k) { return (double)(k + SEG_DIRS + 20) * 0x1p-23 + 7.0 * (2 * k + 2) * 0x1p-24; }

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

/* The projection of the k-vector v on the directions (SEG_DIRS doubles),
 * the squared norms of its first SEG_DIRS_A coordinates, of all
 * of them, and of v, in double. dir is k x SEG_DIRS (coordinate j of every
 * direction together), so the SEG_DIRS sums run side by side. */
static void project(const double *dir, uint32_t k, const float *v, double *a, double p2[2], double *v2)
{
    uint32_t j = 0;
    for (int t = 0; t < SEG_DIRS; t++) a[t] = 0;
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
    /* Even and odd j in separate sums: twice the chains for the FMA units. */
    __m256 acc[SEG_DIRS / 8], odd[SEG_DIRS / 8];
    for (int t = 0; t < SEG_DIRS / 8; t++) acc[t] = odd[t] = _mm256_setzero_ps();
    uint32_t j = 0;
    for (; j + 2 <= k; j += 2) {
        __m256 xj = _mm256_set1_ps(x[j]), xo = _mm256_set1_ps(x[j + 1]);
        for (int t = 0; t < SEG_DIRS / 8; t++) {
            acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(dirf + (size_t)j * SEG_DIRS + 8 * t), xj, acc[t]);
            odd[t] = _mm256_fmadd_ps(_mm256_loadu_ps(dirf + (size_t)(j + 1) * SEG_DIRS + 8 * t), xo, odd[t]);
        }
    }
    if (j < k)
        for (int t = 0; t < SEG_DIRS / 8; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(dirf + (size_t)j * SEG_DIRS + 8 * t), _mm256_set1_ps(x[j]), acc[t]);
    for (int t = 0; t < SEG_DIRS / 8; t++) _mm256_storeu_ps(xp + 8 * t, _mm256_add_ps(acc[t], odd[t]));
#else
    for (int t = 0; t < SEG_DIRS; t++) xp[t] = 0;
    for (uint32_t j = 0; j < k; j++)
        for (int t = 0; t < SEG_DIRS; t++) xp[t] += dirf[(size_t)j * SEG_DIRS + t] * x[j];
#endif
    /* Four sums side by side (one chain of 40 adds waits on each). */
    double a[4] = {0}, c[4] = {0};
    for (int t = 0; t < SEG_DIRS_A; t += 4)
        for (int h = 0; h < 4; h++) a[h] += (double)xp[t + h] * xp[t + h];
    for (int t = SEG_DIRS_A; t < SEG_DIRS; t += 4)
        for (int h = 0; h < 4; h++) c[h] += (double)xp[t + h] * xp[t + h];
    p2[0] = (a[0] + a[1]) + (a[2] + a[3]);
    p2[1] = p2[0] + ((c[0] + c[1]) + (c[2] + c[3]));
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

/* Lays out position p's block entry: its projection in integers and their
 * scale, tails, margin and blend. The integers are the projection over a
 * scale that takes its norm to SEG_Q, rounded; what the rounding took off
 * (|e|, in double) goes into the margin, with what the question's own
 * rounding can take (SEG_QX). */
static void fill_row(st_segment_index *ix, uint32_t p)
{
    uint32_t k = ix->k, b = p / SEG_BLOCK, r = p % SEG_BLOCK;
    float *blk = ix->blocks + (size_t)b * SEG_STRIDE;
    int16_t *iv = (int16_t *)blk;
    const float *v = ix->rows + (size_t)p * k;
    double a[SEG_DIRS], p2[2], v2, e2 = 0;
    project(ix->dir, k, v, a, p2, &v2);
    int finite = isfinite(v2) && isfinite(ix->add[p]) && isfinite(p2[1]);
    float scale = (float)(sqrt(p2[1]) / SEG_Q);
    if (!finite || !(scale >= FLT_MIN)) scale = 0; /* no integers: the whole projection is the error */
    for (uint32_t t = 0; t < SEG_DIRS; t++) {
        double qt = scale > 0 ? nearbyint(a[t] / scale) : 0;
        qt = fmin(fmax(qt, -32767), 32767);
        double e = a[t] - qt * scale; /* exact: a 16-bit integer times a float */
        e2 += e * e;
        iv[(t / 2 * SEG_BLOCK + r) * 2 + t % 2] = (int16_t)qt;
    }
    double en = sqrt(e2) * (1 + 0x1p-20) + 1e-300, pn = sqrt(p2[1]);
    blk[SEG_SCALE + r] = scale;
    blk[SEG_TAIL_A + r] = tail_norm(p2[0], v2);
    blk[SEG_TAIL_B + r] = tail_norm(p2[1], v2);
    blk[SEG_EPS + r] = up(sqrt(v2) * margin_factor(k) + (pn + en) * SEG_QX + en * (1 + 0x1p-10));
    blk[SEG_ADDU + r] = add_up(ix->add[p]);
    /* A term past the float range (a tail, the margin, the blend's) makes bounds of inf or NaN:
     * such a block is scored row by row. */
    for (uint32_t f = SEG_SCALE; f < SEG_STRIDE; f += SEG_BLOCK) finite &= isfinite(blk[f + r]) != 0;
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
 * in integers (pairs side by side, as the rows' are) and their scale, the
 * bound on the rest of it and what the rows' margins are multiplied by;
 * exact = 1 when x is not finite. */
typedef struct {
    double xnu, over; /* the norm with its margin; by how much it passes the visiting order's c (or 0) */
    float txa, txb, xn, xe, xs;
    int16_t xq[SEG_DIRS];
    int exact;
} query_bounds;

static void query_prepare(const st_segment_index *ix, const float *x, query_bounds *b)
{
    double p2[2], x2;
    float xp[SEG_DIRS];
    project_query(ix->dirf, ix->k, x, xp, p2, &x2);
    b->exact = !isfinite(x2);
    for (uint32_t t = 0; t < SEG_DIRS; t++) b->exact |= !isfinite(xp[t]);
    b->xn = up(sqrt(x2));
    b->exact |= !isfinite(b->xn); /* a norm past the float range, from finite coordinates */
    b->xnu = up(sqrt(x2) * (1.0 + margin_factor(ix->k)));
    b->over = b->xnu > ix->c ? b->xnu - ix->c : 0;
    b->txa = tail_query(p2[0], x2, ix->k);
    b->txb = tail_query(p2[1], x2, ix->k);
    /* The integers: the projection over xs = xn / SEG_Q, rounded (each within
     * xs / 2, so all within sqrt(SEG_DIRS) xs / 2: SEG_QX xn of a row's margin;
     * |xp| is within xn (1 + 2^-10), so none passes SEG_Q (1 + 2^-10)). A
     * question too short for a normal scale has no integers: its margin
     * then covers |xp| |projection| whole. */
    b->xs = up((double)b->xn / SEG_Q);
    b->xe = b->xn;
    int16_t *xq = b->xq;
    memset(xq, 0, sizeof b->xq);
    if (b->xs >= FLT_MIN && !b->exact) {
        /* xp times 1 / xs in float: within 2^-23 of xp / xs (at most SEG_Q (1 + 2^-10)), so
         * each integer is within 0.504 of it, which SEG_QX's cushion (2^-6) takes. */
        float inv = (float)(1.0 / b->xs);
#ifdef __AVX2__
        enum { W = SEG_DIRS / 8 };
        __m256i w[W + 1];
        for (int t = 0; t < W; t++) w[t] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xp + 8 * t), _mm256_set1_ps(inv)));
        w[W] = _mm256_setzero_si256();
        /* packs saturates (nothing here passes 32,767) and interleaves the halves; the permute restores the order */
        for (int t = 0; 2 * t < W; t++) {
            __m256i v = _mm256_permute4x64_epi64(_mm256_packs_epi32(w[2 * t], w[2 * t + 1]), 0xD8);
            int16_t tmp[16];
            _mm256_storeu_si256((__m256i *)tmp, v);
            memcpy(xq + 16 * t, tmp, (size_t)(SEG_DIRS - 16 * t < 16 ? SEG_DIRS - 16 * t : 16) * sizeof *xq);
        }
#else
        for (uint32_t t = 0; t < SEG_DIRS; t++) {
            float qt = nearbyintf(xp[t] * inv);
            xq[t] = (int16_t)(qt > 32767 ? 32767 : qt < -32767 ? -32767 : qt);
        }
#endif
    } else {
        /* Nothing is read from the float projection here: the margin covers the projected
         * part whole and the tails are taken as all of x (the float projection of a
         * subnormal x errs by more than its norm's share). */
        b->xs = 0;
        b->xe = up((double)b->xn * (1 + 0x1p-9) / SEG_QX);
        b->txa = b->txb = b->xn;
    }
}

/* The most any segment from a block on (s: its maxima) can score for the
 * question: through the norm and blend maxima, or through the visiting key. */
static inline double reach_from(const struct st_seg_reach *s, const query_bounds *b)
{
    double nm = s->norm, r1 = b->xnu * nm + s->add, r2 = (double)s->key + b->over * nm;
    double r = r1 < r2 ? r1 : r2;
    return r + fabs(r) * 1e-12;
}

/* The score a position must reach to enter q's answer now. */
static float entry_threshold(const st_segment_query *q)
{
    return q->got == q->want && q->out_score[0] > q->min ? q->out_score[0] : q->min;
}

/* Offers the exact scores v[0..np) of positions pos[] (v: 32 entries, the
 * unused ones -inf) to q. When more of them can enter its answer than it
 * wants, only the block's own best `want` can (`want` of its rows beat any
 * other): each is found by its rank in the block, how many entries score
 * higher, and they are offered worst first, so the heap takes each without
 * sifting (unpredictable sifts cost more than the ranks). Equal scores
 * share a rank; then every entry is offered, as the heap's tie-break needs. */
static void offer_block(const st_segment_index *ix, st_segment_query *q, const uint32_t *pos, const float *v,
                        uint32_t np)
{
    float thr = entry_threshold(q);
    /* At least thr and more than -inf (NaN: neither; a NaN thr, a MIN of NaN, admits none,
     * as the full scan's comparison does); the unused entries are -inf. */
    uint32_t cand = thr == -INFINITY ? above_mask(v, -INFINITY) : atleast_mask(v, thr);
    uint32_t nc = (uint32_t)__builtin_popcount(cand);
    q->scored += np;
    if (nc > q->want) {
        uint32_t by_rank[32], ranks = 0;
        for (uint32_t m = cand; m; m &= m - 1) {
            uint32_t t = (uint32_t)__builtin_ctz(m), r = (uint32_t)__builtin_popcount(above_mask(v, v[t]) & cand);
            by_rank[r] = t;
            ranks |= 1u << r;
        }
        if ((uint32_t)__builtin_popcount(ranks) == nc) {
            for (uint32_t r = q->want; r-- > 0;)
                offer(q->out_idx, q->out_score, &q->got, q->want, ix->order[pos[by_rank[r]]], v[by_rank[r]]);
            return;
        }
    }
    for (; cand; cand &= cand - 1) {
        uint32_t t = (uint32_t)__builtin_ctz(cand);
        offer(q->out_idx, q->out_score, &q->got, q->want, ix->order[pos[t]], v[t]);
    }
}

/* Scores exactly, for q, the positions in mask (bits of the block at p)
 * that q does not skip, eight rows at a time with the eight-row kernel,
 * then offers them. */
static void score_mask(const st_segment_index *ix, st_segment_query *q, uint32_t p, uint32_t mask)
{
    uint32_t k = ix->k, pos[32], np = 0;
    float v[32];
    for (; mask; mask &= mask - 1) {
        uint32_t j = (uint32_t)__builtin_ctz(mask);
        if (q->skip && (q->skip[ix->order[p + j]] & q->skip_bit)) continue;
        pos[np++] = p + j;
    }
    if (np == 0) return;
    for (uint32_t g = 0; g < np; g += 8) {
        uint32_t n8 = np - g < 8 ? np - g : 8;
        if (k % 8 == 0) {
            const float *row[8];
            for (uint32_t t = 0; t < 8; t++) row[t] = ix->rows + (size_t)pos[g + (t < n8 ? t : 0)] * k;
            dot8x8_any(row, k, q->x, v + g); /* rows past n8 are copies, scored and dropped */
        } else
            for (uint32_t t = 0; t < n8; t++) v[g + t] = dot8(ix->rows + (size_t)pos[g + t] * k, q->x, k);
    }
    for (uint32_t t = 0; t < np; t++) v[t] += ix->add[pos[t]]; /* the blend, exactly as st_score_one adds it */
    for (uint32_t t = np; t < 32; t++) v[t] = -INFINITY;
    offer_block(ix, q, pos, v, np);
}

/* a * b + c, fused where the CPU can (a bound needs no fixed rounding). */
static inline v8f fmav8(v8f a, v8f b, v8f c)
{
#ifdef __FMA__
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

/* The same with a scalar a. */
static inline v8f fma8(float a, v8f b, v8f c) { return fmav8((v8f){a, a, a, a, a, a, a, a}, b, c); }

/* Bit j set when lane j of a is not below thr: a bound that came out NaN
 * (infinities met in its terms) rules nothing out. */
static inline uint32_t at_least8(v8f a, float thr)
{
#ifdef __AVX__
    return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps((__m256)a, _mm256_set1_ps(thr), _CMP_NLT_UQ));
#else
    uint32_t m = 0;
    for (int j = 0; j < 8; j++) m |= (uint32_t)!(a[j] < thr) << j;
    return m;
#endif
}

/* The block's 32 integer dots with the question (four groups of eight
 * rows), pairs [j0, j1) added to acc: iv is the block's integers. Exact: no
 * pair's or sum's magnitude passes |the question's integers| |the row's|
 * < 2^31. */
#ifdef __AVX2__
typedef __m256i iacc8;
static inline __m256i imadd(__m256i acc, const int16_t *g, __m256i xv)
{
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)g), xv));
    __asm__("" : "+x"(acc)); /* keeps the sums in order: reassociated into trees, they spill every product */
    return acc;
}
static inline void idot32(iacc8 *acc, const int16_t *iv, const int16_t *xq, int j0, int j1)
{
    __m256i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#pragma GCC unroll 32
    for (int j = j0; j < j1; j++) {
        int32_t pair; /* coordinates 2j and 2j + 1, as a row's pair lies (x86 is little-endian) */
        memcpy(&pair, xq + 2 * j, sizeof pair);
        __m256i xv = _mm256_set1_epi32(pair);
        const int16_t *g = iv + j * SEG_BLOCK * 2;
        a0 = imadd(a0, g, xv);
        a1 = imadd(a1, g + 16, xv);
        a2 = imadd(a2, g + 32, xv);
        a3 = imadd(a3, g + 48, xv);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
static inline v8f itof8(iacc8 a) { return (v8f)_mm256_cvtepi32_ps(a); }
#else
typedef int32_t iacc8 __attribute__((vector_size(32)));
static inline void idot32(iacc8 *acc, const int16_t *iv, const int16_t *xq, int j0, int j1)
{
    for (int j = j0; j < j1; j++) {
        int32_t lo = xq[2 * j], hi = xq[2 * j + 1];
        for (int r = 0; r < SEG_BLOCK; r++)
            acc[r / 8][r % 8] += lo * iv[(j * SEG_BLOCK + r) * 2] + hi * iv[(j * SEG_BLOCK + r) * 2 + 1];
    }
}
static inline v8f itof8(iacc8 a) { return __builtin_convertvector(a, v8f); }
#endif

/* The bits of the block at position p whose bound reaches thr, 32 rows at
 * once, four groups of eight side by side: the integer dot of the first
 * SEG_DIRS_A projected coordinates, times the two scales, plus the tails'
 * product, the margin and the blend; then, when a row is still in, the
 * same through all SEG_DIRS coordinates for the whole block, a tighter
 * bound. The integers halve the loads and the multiplies of float
 * projections (two coordinates an instruction) and their sums are exact.
 * A stage between the two (16 coordinates), skipping groups with no row in
 * and scoring the few rows the first leaves without the second were
 * measured: none gains on bench/serve.sh's model or the shared data sets'
 * (bench/README.md). */
static uint32_t bound_mask(const st_segment_index *ix, const query_bounds *b, uint32_t p, float thr)
{
    const float *blk = ix->blocks + (size_t)(p / SEG_BLOCK) * SEG_STRIDE;
    const int16_t *iv = (const int16_t *)blk;
    iacc8 acc[4] = {{0}};
    v8f base[4], sc[4];
    uint32_t mask = 0;
    idot32(acc, iv, b->xq, 0, SEG_DIRS_A / 2);
    for (int i = 0; i < 4; i++) {
        const float *c = blk + 8 * i;
        base[i] = fma8(b->xe, load8(c + SEG_EPS), load8(c + SEG_ADDU));
        sc[i] = b->xs * load8(c + SEG_SCALE);
        mask |= at_least8(fma8(b->txa, load8(c + SEG_TAIL_A), fmav8(itof8(acc[i]), sc[i], base[i])), thr) << (8 * i);
    }
    if (!mask) return 0;
    uint32_t out = 0;
    idot32(acc, iv, b->xq, SEG_DIRS_A / 2, SEG_PAIRS);
    for (int i = 0; i < 4; i++)
        out |= at_least8(fma8(b->txb, load8(blk + 8 * i + SEG_TAIL_B), fmav8(itof8(acc[i]), sc[i], base[i])), thr)
               << (8 * i);
    return out & mask;
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
        uint32_t nb = n - p < SEG_BLOCK ? n - p : SEG_BLOCK, kept = 0, blk = p / SEG_BLOCK;
        uint32_t valid = nb == SEG_BLOCK ? 0xffffffffu : (1u << nb) - 1;
        for (uint32_t j = 0; j < nlive; j++) {
            uint32_t i = live[j], mask;
            const query_bounds *b = &qb[i];
            /* Stopped once nothing from here on can reach the score that enters
             * its answer now (no bound holds for a vector that is not finite). */
            float thr = entry_threshold(&q[i]);
            if (!b->exact && reach_from(&ix->reach[blk], b) < thr) {
                q[i].visited = p;
                continue;
            }
            live[kept++] = i;
            /* Every row is scored while nothing can be ruled out (no bound, or no threshold yet). */
            if (b->exact || ix->exact[blk] || thr == -INFINITY) mask = valid;
            else mask = bound_mask(ix, b, p, thr) & valid;
            if (mask) score_mask(ix, &q[i], p, mask);
        }
        nlive = kept;
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
