/* scan: one pass over every user's factors for AUDIENCE, LOOKALIKE, REACH
 * and the reach curve, split among threads, scoring and selecting fused.
 *
 * What it is: the rows are cut into chunks of about 1 MiB that threads take
 * in order from a shared counter (st_parallel_run), so a thread slowed by
 * other work on the machine simply takes fewer. Each thread scores blocks
 * of 64 rows into a buffer that stays in L1, counts the scores at least min,
 * and appends the few above its running cut to a candidate buffer of about
 * 2 want entries; when it fills, a quickselect keeps the best want and the
 * cut rises to the worst of them. A thread takes its chunks in increasing
 * order, so a later row that ties the cut loses to the kept one and strict
 * "above the cut" is exact. The threads' survivors are merged at the end.
 * Float rows are scored by st_score_rows: the very floats of st_dot.
 *
 * int8 rows: an integer kernel (scan_q8.c) forms D = q . xq against the
 * query quantized to int16 (x = b xq + r, |r_i| <= b / 2, b = max |x_i| /
 * st_q8_query_max), and A = D (a b) estimates the score of a row with scale
 * a. The exact score S (the row dequantized, q_i a in float, then st_dot)
 * differs from A by at most
 *     |a| C + e |A|,   C = 127 (sum |r_i| + (k + 8) u sum |x_i|) (1 + 1e-4),
 *                      e = 8 u,  u = 2^-24,
 * plus a few units of the smallest subnormal: the first term is the query's
 * rounding (|q_i| <= 127) and the rounding of dequantizing and summing in
 * float (each product rounded twice, each lane summing k/8 terms, three
 * pairwise sums: under (k/8 + 6) u of sum |q_i a x_i|); the second, the
 * three roundings of A itself and the bounds' own sums. So every row has
 * lo <= S <= hi, and since adding the blend is monotone, fl(lo + add) <=
 * score <= fl(hi + add). A row whose hi cannot beat the cut, or whose lo and
 * hi are on the same side of min, is decided without its exact score; only
 * the rest are rescored exactly. The candidate stage therefore misses
 * nothing: the users, scores and counts are those of the float scan, and
 * st_scan_result.rescored says how many rows needed their exact score.
 * The bound assumes nothing overflows and that a, a b and the query's
 * terms are normal floats (relative rounding): a row whose scale makes
 * 127 |a| sum |x_i| exceed 1e37, or makes a or a b subnormal, or is not
 * finite, is left undecided and rescored; a query that is not finite, or
 * whose largest value is under 1e-30, is scored in float throughout. Below
 * that, subnormal results round with an absolute error of 2^-150 at most
 * per operation, which the "tiny" term covers.
 *
 * What it is not: an approximate index, or a place that keeps state
 * between calls (except the two process-wide settings below).
 */
#include "scan.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#ifdef __AVX__
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "scan_q8.h"
#include "score.h"
#include "util.h"

enum {
    BLOCK = 64,           /* rows scored together; bits of a uint64_t mask */
    CHUNK_BYTES = 1 << 20, /* of user factors per task */
};


static atomic_int g_threads = 0, g_kernel = ST_SCAN_KERNEL_BEST;

void st_scan_set_threads(int n) { atomic_store(&g_threads, n > 0 ? n : 0); }

int st_scan_threads(void)
{
    int n = atomic_load(&g_threads);
    return n > 0 ? n : st_cpu_count();
}

int st_scan_set_kernel(int id)
{
    if (id != ST_SCAN_KERNEL_BEST && id != ST_SCAN_KERNEL_FLOAT && !st_q8_kernel(id)) return -1;
    atomic_store(&g_kernel, id);
    return 0;
}

uint32_t st_scan_withhold(uint64_t *counts, uint32_t n, uint64_t floor)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < n; i++)
        if (counts[i] < floor) {
            counts[i] = ST_SCAN_WITHHELD;
            w++;
        }
    return w;
}

/* ---- one thread's share -------------------------------------------------------- */

typedef struct {
    uint32_t *idx; /* candidates: positions and scores, cap of them */
    float *sc;
    uint32_t n;
    float cut;     /* only a score above it can still be selected: the sampled first cut, then the worst
                    * kept; NaN: no cut (every score at least min) */
    uint32_t cuts; /* times the buffer was cut */
    uint64_t count, rescored;
    uint64_t *curve; /* 2 nt counts: by sorted threshold, then the whole blocks (curve_block) */
    int32_t *lanes;  /* 8 nt: by sorted threshold, counts in vector lanes (curve_block) */
    float *row;      /* k floats: an int8 row dequantized */
    float *deq;      /* BLOCK x k floats: int8 rows dequantized, when scoring in float */
    char pad[64];    /* threads' counters on different cache lines */
} part;

typedef struct {
    const st_model *m;
    const st_scan_query *q;
    uint32_t k, want, cap, chunk; /* want: q->want, at most the positions */
    uint64_t nchunks;
    const float *t; /* the curve's thresholds, ascending, no NaN; NULL when selecting */
    uint32_t nt;
    float first_cut;    /* each part's cut at the start (sample_cut) */
    st_q8_dots_fn dots; /* int8 rows through the candidate stage; NULL: float scores */
    int kernel;
    int16_t *xq;
    float qb, qc, qe, qtiny; /* the query's scale and the bound's terms (above) */
    float qamax;             /* the largest row scale the bound holds for (no float overflow) */
    part *parts;
    int nparts;
} job;

/* One line of each 4 KiB page a page ahead of the int8 rows a block
 * scores: the hardware's stream prefetcher stops at a page boundary, so a
 * thread asks for the next page before it gets there; within a page the
 * hardware keeps up. (Measured on AMD Zen 3: 4-10% faster int8 scans;
 * float32 scans, with four times the bytes per row, were 15-20% slower
 * with the same prefetches, and go without: bench/README.md.) */
static void prefetch_next_page(const void *p, size_t bytes)
{
    const char *c = p;
    for (size_t off = 0; off < bytes; off += 4096) __builtin_prefetch(c + off + 4096);
}

/* The exact score of position pos, as st_score_segment_users and
 * st_score_all_users compute it. */
static float exact_score(const job *j, part *p, uint64_t pos)
{
    const st_model *m = j->m;
    const float *u = pos < m->users ? st_model_user(m, (uint32_t)pos, p->row) : j->q->extra + (pos - m->users) * j->k;
    return st_dot(u, j->q->x, j->k) + j->q->add;
}

/* A block of rows being scored: rows r0 .. r0 + nb - 1, lower and upper
 * bounds of their scores (the same array when the scores are exact), the
 * rows that are users (not skipped), and the exact scores computed so far. */
typedef struct {
    uint32_t r0, nb;
    float lo[BLOCK], hi[BLOCK];
    const float *l;  /* lo, or hi when exact */
    int exact;
    uint64_t keep;   /* bit i: row r0 + i is a user */
    uint64_t nan;    /* bit i: row r0 + i's bounds are NaN (never for exact scores) */
    uint64_t done;   /* bit i: ex[i] holds row r0 + i's exact score */
    float ex[BLOCK];
} block;

/* Row r0 + i's exact score, computed once per block. */
static float exact_cached(const job *j, part *p, block *b, uint32_t i)
{
    if (!(b->done >> i & 1)) {
        b->ex[i] = exact_score(j, p, b->r0 + i);
        b->done |= 1ull << i;
        p->rescored++;
    }
    return b->ex[i];
}

/* The bounds of the design comment from the integer sums acc and the row
 * scales a: A = acc (a b), E = |a| C + e |A| + tiny, hi = (A + E) + add,
 * lo = (A - E) + add; NaN for a row whose scale is not sane, for which the
 * bound does not hold (a scale that is NaN, too large, or so small that a
 * or a b is subnormal), so that it is rescored. */
static void q8_bounds(const job *j, const int32_t *acc, const float *a, uint32_t nb, float *lo, float *hi)
{
    float qb = j->qb, qc = j->qc, qe = j->qe, tiny = j->qtiny, amax = j->qamax, add = j->q->add;
    uint32_t i = 0;
#ifdef __AVX__
    const __m256 vb = _mm256_set1_ps(qb), vc = _mm256_set1_ps(qc), ve = _mm256_set1_ps(qe), vt = _mm256_set1_ps(tiny);
    const __m256 vmax = _mm256_set1_ps(amax), vadd = _mm256_set1_ps(add), vnan = _mm256_set1_ps(NAN);
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), vmin = _mm256_set1_ps(FLT_MIN);
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= nb; i += 8) {
        __m256 av = _mm256_loadu_ps(a + i), aa = _mm256_and_ps(av, abs), f = _mm256_mul_ps(av, vb);
        __m256 A = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + i))), f);
        __m256 E = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(aa, vc), _mm256_mul_ps(_mm256_and_ps(A, abs), ve)), vt);
        __m256 normal = _mm256_and_ps(_mm256_cmp_ps(aa, vmin, _CMP_GE_OQ),
                                      _mm256_cmp_ps(_mm256_and_ps(f, abs), vmin, _CMP_GE_OQ));
        __m256 sane = _mm256_and_ps(_mm256_cmp_ps(aa, vmax, _CMP_LE_OQ),
                                    _mm256_or_ps(normal, _mm256_cmp_ps(av, zero, _CMP_EQ_OQ)));
        _mm256_storeu_ps(hi + i, _mm256_blendv_ps(vnan, _mm256_add_ps(_mm256_add_ps(A, E), vadd), sane));
        _mm256_storeu_ps(lo + i, _mm256_blendv_ps(vnan, _mm256_add_ps(_mm256_sub_ps(A, E), vadd), sane));
    }
#endif
    for (; i < nb; i++) {
        float f = a[i] * qb, A = (float)acc[i] * f;
        float E = (fabsf(a[i]) * qc + fabsf(A) * qe) + tiny;
        int sane = fabsf(a[i]) <= amax && ((fabsf(a[i]) >= FLT_MIN && fabsf(f) >= FLT_MIN) || a[i] == 0);
        hi[i] = sane ? (A + E) + add : NAN;
        lo[i] = sane ? (A - E) + add : NAN;
    }
}

/* lo[i] <= score of row r0 + i <= hi[i] for i < nb. Returns 1 when hi holds
 * the exact scores (lo is then not written). */
static int block_bounds(const job *j, part *p, uint32_t r0, uint32_t nb, float *lo, float *hi)
{
    const st_model *m = j->m;
    uint32_t k = j->k;
    float add = j->q->add;
    if (m->U) {
        st_score_rows(m->U + (size_t)r0 * k, nb, k, j->q->x, hi);
    } else if (!j->dots) {
        for (uint32_t i = 0; i < nb; i++) st_model_user(m, r0 + i, p->deq + (size_t)i * k);
        st_score_rows(p->deq, nb, k, j->q->x, hi);
    } else {
        int32_t acc[BLOCK];
        prefetch_next_page(m->Uq + (size_t)r0 * k, (size_t)nb * k);
        j->dots(m->Uq + (size_t)r0 * k, nb, k, j->xq, acc);
        q8_bounds(j, acc, m->Uscale + r0, nb, lo, hi);
        return 0;
    }
    for (uint32_t i = 0; i < nb; i++) hi[i] += add;
    return 1;
}

/* Bit i set when v[i] >= t (a NaN is not). */
static uint64_t at_least(const float *v, uint32_t nb, float t)
{
    uint64_t m = 0;
#ifdef __AVX__
    if (nb == BLOCK) {
        __m256 tv = _mm256_set1_ps(t);
        for (uint32_t i = 0; i < BLOCK; i += 8)
            m |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + i), tv, _CMP_GE_OQ)) << i;
        return m;
    }
#endif
    for (uint32_t i = 0; i < nb; i++) m |= (uint64_t)(v[i] >= t) << i;
    return m;
}

/* Bit i set when lo[i] and hi[i] do not decide whether row i reaches t
 * (lo under t, hi not; a NaN bound decides nothing). */
static uint64_t straddle(const float *lo, const float *hi, uint32_t nb, float t)
{
    uint64_t m = 0;
#ifdef __AVX__
    if (nb == BLOCK) {
        __m256 tv = _mm256_set1_ps(t);
        for (uint32_t i = 0; i < BLOCK; i += 8) {
            __m256 k = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(lo + i), tv, _CMP_NGE_UQ),
                                     _mm256_cmp_ps(_mm256_loadu_ps(hi + i), tv, _CMP_NLT_UQ));
            m |= (uint64_t)(uint32_t)_mm256_movemask_ps(k) << i;
        }
        return m;
    }
#endif
    for (uint32_t i = 0; i < nb; i++) m |= (uint64_t)(!(lo[i] >= t) & !(hi[i] < t)) << i;
    return m;
}

/* Bit i set when lo[i] or hi[i] is NaN. */
static uint64_t either_nan(const float *lo, const float *hi, uint32_t nb)
{
    uint64_t m = 0;
#ifdef __AVX__
    if (nb == BLOCK) {
        for (uint32_t i = 0; i < BLOCK; i += 8)
            m |= (uint64_t)(uint32_t)_mm256_movemask_ps(
                     _mm256_cmp_ps(_mm256_loadu_ps(lo + i), _mm256_loadu_ps(hi + i), _CMP_UNORD_Q))
                 << i;
        return m;
    }
#endif
    for (uint32_t i = 0; i < nb; i++) m |= (uint64_t)(lo[i] != lo[i] || hi[i] != hi[i]) << i;
    return m;
}

/* Bit i set when row i is a user: skip[i] is 0. */
static uint64_t users_mask(const uint8_t *skip, uint32_t nb)
{
    uint64_t m = 0;
#ifdef __AVX2__
    if (nb == BLOCK) {
        const __m256i zero = _mm256_setzero_si256();
        for (uint32_t i = 0; i < BLOCK; i += 32) {
            __m256i z = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(skip + i)), zero);
            m |= (uint64_t)(uint32_t)_mm256_movemask_epi8(z) << i;
        }
        return m;
    }
#endif
    for (uint32_t i = 0; i < nb; i++) m |= (uint64_t)(skip[i] == 0) << i;
    return m;
}

#ifdef __AVX2__
/* The sum of the eight lanes. */
static inline uint32_t lanes_sum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(s);
}
#endif

/* How many of a whole block's lo and of its hi are at least t, counted in
 * vector lanes (a compare is -1 or 0): the common case of count_block,
 * cheaper than building masks. */
static void count_whole(const float *lo, const float *hi, float t, uint32_t *clo, uint32_t *chi)
{
#ifdef __AVX2__
    __m256 tv = _mm256_set1_ps(t);
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    for (uint32_t i = 0; i < BLOCK; i += 8) {
        a = _mm256_sub_epi32(a, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(lo + i), tv, _CMP_GE_OQ)));
        if (hi != lo)
            b = _mm256_sub_epi32(b, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(hi + i), tv, _CMP_GE_OQ)));
    }
    *clo = lanes_sum(a);
    *chi = hi != lo ? lanes_sum(b) : *clo;
#else
    uint32_t a = 0, b = 0;
    for (uint32_t i = 0; i < BLOCK; i++) {
        a += lo[i] >= t;
        b += hi[i] >= t;
    }
    *clo = a;
    *chi = b;
#endif
}

/* The block's users scoring at least t: those whose lower bound reaches
 * it, and of those whose bounds straddle it (a NaN bound decides nothing),
 * the ones whose exact score does (an exact NaN never does). A whole block
 * of users whose lo and hi agree, without NaN, needs no mask. */
static uint64_t count_block(const job *j, part *p, block *b, float t)
{
    if (b->nb == BLOCK && b->keep == ~0ull && !b->nan) {
        uint32_t clo, chi;
        count_whole(b->l, b->hi, t, &clo, &chi);
        if (clo == chi) return clo;
    }
    uint64_t c = (uint64_t)__builtin_popcountll(at_least(b->l, b->nb, t) & b->keep);
    if (!b->exact)
        for (uint64_t m = straddle(b->lo, b->hi, b->nb, t) & b->keep; m; m &= m - 1)
            c += exact_cached(j, p, b, (uint32_t)__builtin_ctzll(m)) >= t;
    return c;
}

static int excluded(const st_scan_query *q, uint64_t pos)
{
    uint64_t lo = 0, hi = q->nexclude;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (q->exclude[mid] < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo < q->nexclude && q->exclude[lo] == pos;
}

/* Appends (pos, s) when it can still be selected; a full buffer is cut to
 * the best want first, and the cut rises to the worst of them. */
static void offer(const job *j, part *p, uint32_t pos, float s)
{
    if (s <= p->cut || !(s >= j->q->min)) return;
    if (p->n == j->cap) {
        p->n = st_topk_keep(p->idx, p->sc, p->n, j->want);
        float w = p->sc[0];
        for (uint32_t i = 1; i < p->n; i++) w = p->sc[i] < w ? p->sc[i] : w;
        p->cut = w;
        p->cuts++;
        if (s <= p->cut) return;
    }
    p->idx[p->n] = pos;
    p->sc[p->n++] = s;
}

/* Bit i set when hi[i] could still be selected: not at or under the cut
 * (a NaN cut: none yet), not under min (a NaN bound decides nothing, so it
 * is set). */
static uint64_t candidates(const float *hi, uint32_t nb, float cut, float mn)
{
    uint64_t m = 0;
#ifdef __AVX__
    if (nb == BLOCK) {
        __m256 c = _mm256_set1_ps(cut), n = _mm256_set1_ps(mn);
        for (uint32_t i = 0; i < BLOCK; i += 8) {
            __m256 v = _mm256_loadu_ps(hi + i);
            __m256 k = _mm256_and_ps(_mm256_cmp_ps(v, c, _CMP_NLE_UQ), _mm256_cmp_ps(v, n, _CMP_NLT_UQ));
            m |= (uint64_t)(uint32_t)_mm256_movemask_ps(k) << i;
        }
        return m;
    }
#endif
    for (uint32_t i = 0; i < nb; i++) m |= (uint64_t)(!(hi[i] <= cut) & !(hi[i] < mn)) << i;
    return m;
}

static void offer_block(const job *j, part *p, block *b)
{
    const st_scan_query *q = j->q;
    for (uint64_t m = candidates(b->hi, b->nb, p->cut, q->min) & b->keep; m; m &= m - 1) {
        uint32_t i = (uint32_t)__builtin_ctzll(m), pos = b->r0 + i;
        if (b->hi[i] <= p->cut) continue; /* the cut rose since */
        if (q->nexclude && excluded(q, pos)) continue;
        offer(j, p, pos, b->exact ? b->hi[i] : exact_cached(j, p, b, i));
    }
}

/* The first of the n ascending thresholds t above v. */
static uint32_t first_above(const float *t, uint32_t n, float v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t[mid] <= v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The least of lo and the greatest of hi; 1 when one of them is NaN. */
static int block_range(const float *lo, const float *hi, uint32_t nb, float *bmin, float *bmax)
{
#ifdef __AVX__
    if (nb == BLOCK) {
        __m256 mn = _mm256_loadu_ps(lo), mx = _mm256_loadu_ps(hi), un = _mm256_setzero_ps();
        for (uint32_t i = 0; i < BLOCK; i += 8) {
            __m256 l = _mm256_loadu_ps(lo + i), h = _mm256_loadu_ps(hi + i);
            mn = _mm256_min_ps(mn, l);
            mx = _mm256_max_ps(mx, h);
            un = _mm256_or_ps(un, _mm256_or_ps(_mm256_cmp_ps(l, l, _CMP_UNORD_Q), _mm256_cmp_ps(h, h, _CMP_UNORD_Q)));
        }
        float a[8], b[8];
        _mm256_storeu_ps(a, mn);
        _mm256_storeu_ps(b, mx);
        *bmin = a[0];
        *bmax = b[0];
        for (int i = 1; i < 8; i++) {
            *bmin = a[i] < *bmin ? a[i] : *bmin;
            *bmax = b[i] > *bmax ? b[i] : *bmax;
        }
        return _mm256_movemask_ps(un) != 0;
    }
#endif
    int nan = 0;
    *bmin = INFINITY;
    *bmax = -INFINITY;
    for (uint32_t i = 0; i < nb; i++) {
        *bmin = lo[i] < *bmin ? lo[i] : *bmin;
        *bmax = hi[i] > *bmax ? hi[i] : *bmax;
        nan |= (lo[i] != lo[i]) | (hi[i] != hi[i]);
    }
    return nan;
}

/* The block's counts at every threshold. Only the thresholds between the
 * block's least lower bound and greatest upper bound are compared row by
 * row; every user reaches those at or below the least bound (added to
 * curve[nt + a - 1], summed into curve[0 .. a) at the end), none reaches
 * those above the greatest. A block with a NaN bound is compared row by
 * row at every threshold. */
static void curve_block(const job *j, part *p, block *b)
{
    float bmin, bmax;
    uint32_t first = 0, end = j->nt;
    if (!block_range(b->l, b->hi, b->nb, &bmin, &bmax)) {
        first = first_above(j->t, j->nt, bmin);
        end = first_above(j->t, j->nt, bmax);
        if (first > 0) p->curve[j->nt + first - 1] += (uint64_t)__builtin_popcountll(b->keep);
    }
#ifdef __AVX2__
    /* A whole block of users without NaN: each threshold's count stays in
     * vector lanes (no sum per block), and a straddling row shows as a lane
     * where lo and hi compare differently. */
    if (b->nb == BLOCK && b->keep == ~0ull && !b->nan) {
        for (uint32_t c = first; c < end; c++) {
            __m256 tv = _mm256_set1_ps(j->t[c]);
            __m256i acc = _mm256_load_si256((const __m256i *)(p->lanes + 8 * c)), band = _mm256_setzero_si256();
            for (uint32_t i = 0; i < BLOCK; i += 8) {
                __m256i lo = _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(b->l + i), tv, _CMP_GE_OQ));
                acc = _mm256_sub_epi32(acc, lo);
                if (!b->exact)
                    band = _mm256_or_si256(
                        band, _mm256_xor_si256(lo, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(b->hi + i), tv,
                                                                                    _CMP_GE_OQ))));
            }
            _mm256_store_si256((__m256i *)(p->lanes + 8 * c), acc);
            if (!_mm256_testz_si256(band, band))
                for (uint64_t m = straddle(b->lo, b->hi, BLOCK, j->t[c]); m; m &= m - 1)
                    p->curve[c] += exact_cached(j, p, b, (uint32_t)__builtin_ctzll(m)) >= j->t[c];
        }
        return;
    }
#endif
    for (uint32_t c = first; c < end; c++) p->curve[c] += count_block(j, p, b, j->t[c]);
}

static void scan_task(void *ctx, uint64_t task, int thread)
{
    job *j = ctx;
    part *p = &j->parts[thread];
    const st_scan_query *q = j->q;
    uint32_t from = (uint32_t)(task * j->chunk), to = from + j->chunk;
    if (to > j->m->users || to < from) to = j->m->users;
    block b;
    for (uint32_t r0 = from; r0 < to; r0 += BLOCK) {
        b.r0 = r0;
        b.nb = to - r0 < BLOCK ? to - r0 : BLOCK;
        b.exact = block_bounds(j, p, r0, b.nb, b.lo, b.hi);
        b.l = b.exact ? b.hi : b.lo;
        b.keep = q->skip ? users_mask(q->skip + r0, b.nb) : b.nb == BLOCK ? ~0ull : (1ull << b.nb) - 1;
        b.nan = b.exact ? 0 : either_nan(b.lo, b.hi, b.nb);
        b.done = 0;
        if (j->t) curve_block(j, p, &b);
        else {
            if (q->count) p->count += count_block(j, p, &b, q->min);
            if (j->want) offer_block(j, p, &b);
        }
    }
}

/* ---- setting a scan up ----------------------------------------------------------- */

/* Quantizes the query for the integer kernel and derives the bound (the
 * design comment). 0, or 1 when the query is not finite (score in float). */
static int quantize_query(job *j)
{
    const float *x = j->q->x;
    uint32_t k = j->k;
    double top = 0, l1 = 0;
    for (uint32_t i = 0; i < k; i++) {
        if (!isfinite(x[i])) return 1;
        double a = fabs((double)x[i]);
        top = a > top ? a : top;
        l1 += a;
    }
    /* Tiny queries would make b and C subnormal, where relative rounding
     * no longer holds: they are scored in float. */
    if (top > 0 && top < 1e-30) return 1;
    int32_t qmax = st_q8_query_max(k);
    float b = top > 0 ? (float)(top / qmax) : 1.0f;
    if (!(b > 0) || !isfinite(b)) return 1;
    double rsum = 0;
    for (uint32_t i = 0; i < k; i++) {
        long v = lrint((double)x[i] / b);
        v = v > qmax ? qmax : v < -qmax ? -qmax : v;
        j->xq[i] = (int16_t)v;
        rsum += fabs((double)x[i] - (double)b * (double)v);
    }
    const double u = 1.0 / 16777216.0;
    double C = 127.0 * (rsum + (double)(k + 8) * u * l1) * (1.0 + 1e-4);
    if (!isfinite(C) || C > 1e30) return 1;
    j->qb = b;
    j->qc = (float)C;
    j->qe = (float)(8 * u);
    j->qtiny = (float)((2.0 * k + 16) * ldexp(1.0, -149));
    /* A row's products sum to at most 127 |a| sum |x_i| in magnitude: under
     * 1e37 nothing computed for it overflows. */
    j->qamax = l1 > 0 ? (float)(1e37 / (127.0 * l1)) : INFINITY;
    return 0;
}

static void job_free(job *j)
{
    for (int i = 0; j->parts && i < j->nparts; i++) {
        st_free(j->parts[i].idx);
        st_free(j->parts[i].sc);
        st_free(j->parts[i].curve);
        st_free(j->parts[i].lanes);
        st_free(j->parts[i].row);
        st_free(j->parts[i].deq);
    }
    st_free(j->parts);
    st_free(j->xq);
}

/* Allocates the job's parts and chooses the kernel. 0, or -1 on
 * out-of-memory (the job freed). */
static int job_init(job *j, const st_model *m, const st_scan_query *q, const float *t, uint32_t nt)
{
    memset(j, 0, sizeof *j);
    j->m = m;
    j->q = q;
    j->k = m->k;
    j->t = t;
    j->nt = nt;
    j->kernel = -1;
    size_t row_bytes = m->U ? (size_t)m->k * sizeof(float) : (size_t)m->k + sizeof(float);
    size_t rows = CHUNK_BYTES / (row_bytes ? row_bytes : 1);
    j->chunk = (uint32_t)(rows < BLOCK ? BLOCK : rows / BLOCK * BLOCK);
    j->nchunks = ((uint64_t)m->users + j->chunk - 1) / j->chunk;
    int threads = st_scan_threads();
    if ((uint64_t)threads > j->nchunks) threads = j->nchunks > 0 ? (int)j->nchunks : 1;
    j->nparts = threads;
    /* More than every position is never selected; the buffers hold about 2 want. */
    uint64_t want = q->want < (uint64_t)m->users + q->nextra ? q->want : (uint64_t)m->users + q->nextra;
    j->want = (uint32_t)want;
    uint64_t cap = want ? 2 * want + BLOCK : 0;
    j->cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    int setting = atomic_load(&g_kernel);
    if (m->Uq && setting != ST_SCAN_KERNEL_FLOAT) {
        j->kernel = setting == ST_SCAN_KERNEL_BEST ? st_q8_best() : setting;
        j->xq = st_calloc(st_q8_padded(m->k), sizeof *j->xq);
        if (!j->xq) return -1;
        if (quantize_query(j) == 0) j->dots = st_q8_kernel(j->kernel);
        if (!j->dots) j->kernel = -1;
    }
    j->parts = st_aligned_alloc(64, (size_t)threads * sizeof *j->parts);
    if (!j->parts) {
        job_free(j);
        return -1;
    }
    memset(j->parts, 0, (size_t)threads * sizeof *j->parts);
    for (int i = 0; i < threads; i++) {
        part *p = &j->parts[i];
        p->cut = NAN;
        int bad = 0;
        if (j->cap) {
            p->idx = st_malloc((size_t)j->cap * sizeof *p->idx);
            p->sc = st_malloc((size_t)j->cap * sizeof *p->sc);
            bad |= !p->idx || !p->sc;
        }
        if (nt) bad |= !(p->curve = st_calloc(2 * (size_t)nt, sizeof *p->curve));
        if (nt) bad |= !(p->lanes = st_aligned_alloc(32, 8 * (size_t)nt * sizeof *p->lanes));
        if (p->lanes) memset(p->lanes, 0, 8 * (size_t)nt * sizeof *p->lanes);
        bad |= !(p->row = st_malloc(((size_t)m->k + 1) * sizeof *p->row));
        if (m->Uq && !j->dots) bad |= !(p->deq = st_malloc(((size_t)BLOCK * m->k + 1) * sizeof *p->deq));
        if (bad) {
            job_free(j);
            return -1;
        }
    }
    return 0;
}

/* ---- the questions ---------------------------------------------------------------- */

/* A first cut from a sample of the rows: blocks spread evenly, about
 * 16 m / (3 want) rows in all, and their rank-th best score (for int8 rows
 * the lower bound) where rank = 3 want sample / m, so that about 3 want
 * users score above it; NaN (no cut) when the sample would not be small.
 * A cut from the start spares the candidate stage the rows that only the
 * first few thousand would offer (for int8, their exact rescores). It is a
 * guess: cut_held checks it afterwards. */
static float sample_cut(job *j)
{
    enum { MAXRANK = 64 };
    uint64_t m = j->m->users, want = j->want;
    uint64_t blocks = want ? (16 * m / (3 * want) + BLOCK - 1) / BLOCK : 0;
    if (blocks == 0 || blocks * BLOCK * 8 > m) return NAN;
    uint64_t rank = 3 * want * blocks * BLOCK / m;
    if (rank < 1 || rank > MAXRANK) return NAN;
    float best[MAXRANK], lo[BLOCK], hi[BLOCK]; /* best: the rank largest, ascending */
    uint32_t have = 0;
    for (uint64_t b = 0; b < blocks; b++) {
        uint32_t r0 = (uint32_t)((m - BLOCK) * b / (blocks > 1 ? blocks - 1 : 1));
        const float *l = block_bounds(j, &j->parts[0], r0, BLOCK, lo, hi) ? hi : lo;
        for (uint32_t i = 0; i < BLOCK; i++) {
            float v = l[i];
            if (!(v > (have == rank ? best[0] : -INFINITY))) continue;
            uint32_t at = have < rank ? have++ : 0;
            while (at > 0 && best[at - 1] > v) {
                best[at] = best[at - 1];
                at--;
            }
            while (at + 1 < have && best[at + 1] < v) {
                best[at] = best[at + 1];
                at++;
            }
            best[at] = v;
        }
    }
    return have == rank ? best[0] : NAN;
}

/* Did the first cut hold: were at least want users selectable above it, so
 * the best want were all kept? (Below min it never mattered.) */
static int cut_held(const job *j)
{
    if (isnan(j->first_cut) || j->first_cut < j->q->min) return 1;
    uint64_t n = 0;
    for (int i = 0; i < j->nparts; i++) {
        if (j->parts[i].cuts) return 1; /* this part alone kept want above it */
        n += j->parts[i].n;
    }
    return n >= j->want;
}

/* The scan itself: every part from its first cut, then the online users
 * (after every model row, so part 0's positions stay ascending). */
static void run_best(job *j)
{
    const st_scan_query *q = j->q;
    for (int i = 0; i < j->nparts; i++) {
        part *p = &j->parts[i];
        p->n = p->cuts = 0;
        p->count = 0;
        p->cut = j->first_cut;
    }
    st_parallel_run(j->nparts, j->nchunks, scan_task, j);
    part *p0 = &j->parts[0];
    for (uint32_t i = 0; i < q->nextra; i++) {
        uint64_t pos = (uint64_t)j->m->users + i;
        float s = exact_score(j, p0, pos);
        if (q->count && s >= q->min) p0->count++;
        if (j->want && !(q->nexclude && excluded(q, pos))) offer(j, p0, (uint32_t)pos, s);
    }
}

/* Writes the n (idx, sc) pairs best first (higher score, then lower
 * position) into out_*: each pair becomes one u64 whose ascending order is
 * that order (the score's bits made monotone and reversed, -0 as +0, then
 * the position), sorted with its slot by eight passes of a byte-wise radix
 * sort, which has no branch to mispredict. keys: 2 n entries, slots: 2 n. */
static void sort_best(const uint32_t *idx, const float *sc, uint32_t n, uint64_t *keys, uint32_t *slots,
                      uint32_t *out_idx, float *out_score)
{
    uint64_t *a = keys, *b = keys + n;
    uint32_t *sa = slots, *sb = slots + n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &sc[i], 4);
        if (bits == 0x80000000u) bits = 0;
        bits = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
        a[i] = (uint64_t)~bits << 32 | idx[i];
        sa[i] = i;
    }
    for (int shift = 0; shift < 64; shift += 8) {
        uint32_t count[257] = {0};
        for (uint32_t i = 0; i < n; i++) count[(a[i] >> shift & 255) + 1]++;
        if (n == 0 || count[(a[0] >> shift & 255) + 1] == n) continue; /* one digit throughout */
        for (int d = 0; d < 256; d++) count[d + 1] += count[d];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t at = count[a[i] >> shift & 255]++;
            b[at] = a[i];
            sb[at] = sa[i];
        }
        uint64_t *t = a;
        a = b;
        b = t;
        uint32_t *ts = sa;
        sa = sb;
        sb = ts;
    }
    for (uint32_t i = 0; i < n; i++) {
        out_idx[i] = idx[sa[i]];
        out_score[i] = sc[sa[i]];
    }
}

/* The parts' best merged, sorted, into out_*; r->n. -1 on out-of-memory. */
static int merge_best(job *j, uint32_t *out_idx, float *out_score, st_scan_result *r)
{
    part *p0 = &j->parts[0];
    uint64_t total = 0;
    for (int i = 0; i < j->nparts; i++) {
        part *p = &j->parts[i];
        p->n = st_topk_keep(p->idx, p->sc, p->n, j->want);
        total += p->n;
    }
    /* Gathered into part 0's buffer when they fit (two parts do), else a new one. */
    uint32_t *idx = p0->idx;
    float *sc = p0->sc;
    if (total > j->cap) {
        idx = st_malloc(total * sizeof *idx);
        sc = st_malloc(total * sizeof *sc);
        if (!idx || !sc) {
            st_free(idx);
            st_free(sc);
            return -1;
        }
        memcpy(idx, p0->idx, p0->n * sizeof *idx);
        memcpy(sc, p0->sc, p0->n * sizeof *sc);
    }
    uint64_t n = p0->n;
    for (int i = 1; i < j->nparts; i++) {
        memcpy(idx + n, j->parts[i].idx, j->parts[i].n * sizeof *idx);
        memcpy(sc + n, j->parts[i].sc, j->parts[i].n * sizeof *sc);
        n += j->parts[i].n;
    }
    r->n = st_topk_keep(idx, sc, (uint32_t)n, j->want);
    uint64_t *keys = st_malloc((2 * (size_t)r->n + 1) * sizeof *keys);
    uint32_t *slots = st_malloc((2 * (size_t)r->n + 1) * sizeof *slots);
    int rc = keys && slots ? 0 : -1;
    if (rc == 0) sort_best(idx, sc, r->n, keys, slots, out_idx, out_score);
    st_free(keys);
    st_free(slots);
    if (idx != p0->idx) {
        st_free(idx);
        st_free(sc);
    }
    return rc;
}

int st_scan_best(const st_model *m, const st_scan_query *q, uint32_t *out_idx, float *out_score, st_scan_result *r)
{
    job j;
    memset(r, 0, sizeof *r);
    if (job_init(&j, m, q, NULL, 0) != 0) return -1;
    r->kernel = j.dots ? j.kernel : -1;
    if (j.want || q->count || q->nextra) {
        j.first_cut = sample_cut(&j);
        run_best(&j);
        r->passes = 1;
        if (!cut_held(&j)) {
            j.first_cut = NAN;
            run_best(&j);
            r->passes = 2;
        }
    }
    for (int i = 0; i < j.nparts; i++) {
        r->matching += j.parts[i].count;
        r->rescored += j.parts[i].rescored;
    }
    int rc = j.want ? merge_best(&j, out_idx, out_score, r) : 0;
    job_free(&j);
    return rc;
}

typedef struct {
    float t;
    uint32_t at;
} threshold;

static int threshold_order(const void *a, const void *b)
{
    float x = ((const threshold *)a)->t, y = ((const threshold *)b)->t;
    return x < y ? -1 : x > y;
}

int st_scan_curve(const st_model *m, const st_scan_query *q, const float *t, uint32_t nt, uint64_t *counts,
                  st_scan_result *r)
{
    job j;
    memset(r, 0, sizeof *r);
    memset(counts, 0, (size_t)nt * sizeof *counts);
    /* The thresholds ascending; a NaN one counts nobody and is left out. */
    threshold *ord = st_malloc(((size_t)nt + 1) * sizeof *ord);
    float *sorted = st_malloc(((size_t)nt + 1) * sizeof *sorted);
    if (!ord || !sorted) {
        st_free(ord);
        st_free(sorted);
        return -1;
    }
    uint32_t n = 0;
    for (uint32_t c = 0; c < nt; c++)
        if (t[c] == t[c]) ord[n++] = (threshold){t[c], c};
    qsort(ord, n, sizeof *ord, threshold_order);
    for (uint32_t c = 0; c < n; c++) sorted[c] = ord[c].t;
    int rc = n ? job_init(&j, m, q, sorted, n) : 0;
    if (n && rc == 0) {
        r->kernel = j.dots ? j.kernel : -1;
        st_parallel_run(j.nparts, j.nchunks, scan_task, &j);
        for (int i = 0; i < j.nparts; i++) {
            const uint64_t *cv = j.parts[i].curve;
            uint64_t whole = 0; /* blocks wholly at or above sorted[c] */
            for (uint32_t c = n; c-- > 0;) {
                whole += cv[n + c];
                counts[ord[c].at] += cv[c] + whole;
                for (int l = 0; l < 8; l++) counts[ord[c].at] += (uint32_t)j.parts[i].lanes[8 * c + l];
            }
            r->rescored += j.parts[i].rescored;
        }
        for (uint32_t i = 0; i < q->nextra; i++) {
            float s = exact_score(&j, &j.parts[0], (uint64_t)m->users + i);
            for (uint32_t c = 0; c < n; c++) counts[ord[c].at] += s >= sorted[c];
        }
        job_free(&j);
    }
    st_free(ord);
    st_free(sorted);
    return rc;
}

int st_scan_bounds(const st_model *m, const float *x, float add, uint32_t r0, uint32_t n, float *lo, float *hi)
{
    job j;
    st_scan_query q = {.x = x, .add = add, .min = -INFINITY};
    if (job_init(&j, m, &q, NULL, 0) != 0) return -1;
    int exact = 1;
    for (uint32_t i = 0; i < n; i += BLOCK) {
        uint32_t nb = n - i < BLOCK ? n - i : BLOCK;
        exact = block_bounds(&j, &j.parts[0], r0 + i, nb, lo + i, hi + i);
        if (exact) memcpy(lo + i, hi + i, nb * sizeof *lo);
    }
    job_free(&j);
    return exact;
}

/* ---- the references ---------------------------------------------------------------- */

/* Every position's exact score, one at a time; NaN for skipped rows. */
static float *reference_scores(const st_model *m, const st_scan_query *q)
{
    uint64_t n = (uint64_t)m->users + q->nextra;
    float *s = st_malloc((n + 1) * sizeof *s), *buf = st_malloc(((size_t)m->k + 1) * sizeof *buf);
    if (!s || !buf) {
        st_free(s);
        st_free(buf);
        return NULL;
    }
    for (uint64_t pos = 0; pos < n; pos++) {
        const float *u = pos < m->users ? st_model_user(m, (uint32_t)pos, buf) : q->extra + (pos - m->users) * m->k;
        s[pos] = pos < m->users && q->skip && q->skip[pos] ? NAN : st_dot(u, q->x, m->k) + q->add;
    }
    st_free(buf);
    return s;
}

static const float *g_ref_scores;
static int ref_order(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float x = g_ref_scores[i], y = g_ref_scores[j];
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : 1;
}

int st_scan_best_reference(const st_model *m, const st_scan_query *q, uint32_t *out_idx, float *out_score,
                           st_scan_result *r)
{
    memset(r, 0, sizeof *r);
    r->kernel = -1;
    uint64_t n = (uint64_t)m->users + q->nextra, sel = 0;
    float *s = reference_scores(m, q);
    uint32_t *pos = st_malloc((n + 1) * sizeof *pos);
    if (!s || !pos) {
        st_free(s);
        st_free(pos);
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!(s[i] >= q->min)) continue; /* NaN too */
        if (q->count) r->matching++;
        int ex = 0;
        for (uint64_t e = 0; e < q->nexclude; e++) ex |= q->exclude[e] == i;
        if (!ex) pos[sel++] = (uint32_t)i;
    }
    g_ref_scores = s; /* tests only: not reentrant */
    qsort(pos, sel, sizeof *pos, ref_order);
    r->n = (uint32_t)(sel < q->want ? sel : q->want);
    for (uint32_t i = 0; i < r->n; i++) {
        out_idx[i] = pos[i];
        out_score[i] = s[pos[i]];
    }
    st_free(s);
    st_free(pos);
    return 0;
}

int st_scan_curve_reference(const st_model *m, const st_scan_query *q, const float *t, uint32_t nt,
                            uint64_t *counts)
{
    float *s = reference_scores(m, q);
    if (!s) return -1;
    for (uint32_t c = 0; c < nt; c++) {
        counts[c] = 0;
        for (uint64_t i = 0; i < (uint64_t)m->users + q->nextra; i++) counts[c] += s[i] >= t[c];
    }
    st_free(s);
    return 0;
}
