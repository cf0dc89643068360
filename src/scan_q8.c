/* scan_q8: the integer dot-product kernels of the int8 scans, and the choice
 * among them at run time.
 *
 * What it is: one kernel per instruction set, each compiled for its own
 * target (GCC's target attribute), so one binary carries them all and picks
 * the fastest the CPU has (__builtin_cpu_supports, and CPUID for AVX-VNNI,
 * which not every compiler's builtin knows). Each takes eight rows at a time
 * and sums their products in int32 lanes, then folds the eight accumulators
 * into one vector of eight sums with horizontal adds. Columns past the last
 * full group of 16 (32 for AVX-512) are summed in scalar code, so no kernel
 * reads a byte past row k - 1 of the last row.
 * What it is not: a float kernel. Integer sums are exact, so each kernel's
 * output equals the portable loop's bit for bit; only speed differs.
 */
#include "scan_q8.h"

#include <stddef.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define ST_Q8_X86 1
#endif

/* The sum over columns [from, k) of one row. */
static inline int32_t dot_tail(const int8_t *row, const int16_t *xq, uint32_t from, uint32_t k)
{
    int32_t s = 0;
    for (uint32_t i = from; i < k; i++) s += (int32_t)row[i] * xq[i];
    return s;
}

/* The reference: one row at a time, column by column. */
static void dots_portable(const int8_t *rows, uint32_t nrows, uint32_t k, const int16_t *xq, int32_t *out)
{
    for (uint32_t r = 0; r < nrows; r++) out[r] = dot_tail(rows + (size_t)r * k, xq, 0, k);
}

#ifdef ST_Q8_X86

/* Eight vectors of eight int32 lanes -> one vector of their eight sums, by
 * interleaving pairs and adding (single-uop shuffles, where a horizontal
 * add costs several). */
__attribute__((target("avx2"))) static inline __m256i fold8(const __m256i *a)
{
    __m256i p[4], q[2];
    for (int i = 0; i < 4; i++) /* per 128-bit half: a0+a2, b0+b2, a1+a3, b1+b3 */
        p[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(a[2 * i], a[2 * i + 1]),
                                _mm256_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 2; i++) /* per half: the four rows' sums over the half */
        q[i] = _mm256_add_epi32(_mm256_unpacklo_epi64(p[2 * i], p[2 * i + 1]),
                                _mm256_unpackhi_epi64(p[2 * i], p[2 * i + 1]));
    /* q[0] holds rows 0-3 (low half: their low lanes' sums, high half: their
     * high lanes'), q[1] rows 4-7: add the halves. */
    return _mm256_add_epi32(_mm256_permute2x128_si256(q[0], q[1], 0x20), _mm256_permute2x128_si256(q[0], q[1], 0x31));
}

/* The columns of eight rows past `from`, added to the eight sums in out. */
static inline void tail8(const int8_t *rows, uint32_t k, const int16_t *xq, uint32_t from, int32_t *out)
{
    if (from < k)
        for (int j = 0; j < 8; j++) out[j] += dot_tail(rows + (size_t)j * k, xq, from, k);
}

/* 16 int8 values widened to int16. */
__attribute__((target("avx2"))) static inline __m256i widen16(const int8_t *p)
{
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
}

/* The AVX2 and AVX-VNNI kernels differ in one step, acc += the pairwise
 * products of a widened row and the query: vpmaddwd then vpaddd, or one
 * vpdpwssd. One definition makes both. */
#define ST_Q8_DOTS_YMM(name, isa, madd_add)                                                                          \
    __attribute__((target(isa))) static void name(const int8_t *rows, uint32_t nrows, uint32_t k, const int16_t *xq, \
                                                  int32_t *out)                                                      \
    {                                                                                                                \
        uint32_t k16 = k & ~15u, r = 0;                                                                              \
        for (; r + 8 <= nrows; r += 8) {                                                                             \
            const int8_t *base = rows + (size_t)r * k;                                                               \
            __m256i acc[8];                                                                                          \
            for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_si256();                                             \
            for (uint32_t i = 0; i < k16; i += 16) {                                                                 \
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + i));                                          \
                for (int j = 0; j < 8; j++) acc[j] = madd_add(acc[j], widen16(base + (size_t)j * k + i), xv);        \
            }                                                                                                        \
            _mm256_storeu_si256((__m256i *)(out + r), fold8(acc));                                                   \
            tail8(base, k, xq, k16, out + r);                                                                        \
        }                                                                                                            \
        dots_portable(rows + (size_t)r * k, nrows - r, k, xq, out + r);                                              \
    }

#define ST_Q8_MADD_ADD(acc, v, x) _mm256_add_epi32((acc), _mm256_madd_epi16((v), (x)))
ST_Q8_DOTS_YMM(dots_avx2, "avx2", ST_Q8_MADD_ADD)
ST_Q8_DOTS_YMM(dots_avxvnni, "avx2,avxvnni", _mm256_dpwssd_avx_epi32)

__attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni"))) static void
dots_avx512vnni(const int8_t *rows, uint32_t nrows, uint32_t k, const int16_t *xq, int32_t *out)
{
    uint32_t k32 = k & ~31u, k16 = k & ~15u, r = 0;
    for (; r + 8 <= nrows; r += 8) {
        const int8_t *base = rows + (size_t)r * k;
        __m512i acc[8];
        __m256i half[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_si512();
        for (uint32_t i = 0; i < k32; i += 32) {
            __m512i xv = _mm512_loadu_si512((const void *)(xq + i));
            for (int j = 0; j < 8; j++) {
                __m512i v = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(base + (size_t)j * k + i)));
                acc[j] = _mm512_dpwssd_epi32(acc[j], v, xv);
            }
        }
        for (int j = 0; j < 8; j++)
            half[j] = _mm256_add_epi32(_mm512_castsi512_si256(acc[j]), _mm512_extracti64x4_epi64(acc[j], 1));
        if (k16 > k32) { /* one group of 16 columns left */
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + k32));
            for (int j = 0; j < 8; j++) half[j] = _mm256_dpwssd_epi32(half[j], widen16(base + (size_t)j * k + k32), xv);
        }
        _mm256_storeu_si256((__m256i *)(out + r), fold8(half));
        tail8(base, k, xq, k16, out + r);
    }
    dots_portable(rows + (size_t)r * k, nrows - r, k, xq, out + r);
}

/* AVX-VNNI is CPUID leaf 7, sub-leaf 1, EAX bit 4; the OS saving the AVX
 * state is what __builtin_cpu_supports("avx2") already checks. */
static int has_avxvnni(void)
{
    unsigned a, b, c, d;
    if (!__builtin_cpu_supports("avx2")) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    (void)b;
    (void)c;
    (void)d;
    return (a >> 4) & 1;
}

st_q8_dots_fn st_q8_kernel(int id)
{
    __builtin_cpu_init();
    switch (id) {
    case ST_Q8_PORTABLE: return dots_portable;
    case ST_Q8_AVX2: return __builtin_cpu_supports("avx2") ? dots_avx2 : NULL;
    case ST_Q8_AVXVNNI: return has_avxvnni() ? dots_avxvnni : NULL;
    case ST_Q8_AVX512VNNI:
        return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl")
                   ? dots_avx512vnni
                   : NULL;
    default: return NULL;
    }
}

#else

st_q8_dots_fn st_q8_kernel(int id) { return id == ST_Q8_PORTABLE ? dots_portable : NULL; }

#endif

const char *st_q8_kernel_name(int id)
{
    static const char *const names[ST_Q8_KERNELS] = {"portable", "avx2", "avx-vnni", "avx512-vnni"};
    return id >= 0 && id < ST_Q8_KERNELS ? names[id] : "none";
}

int st_q8_best(void)
{
    static _Atomic int best = -1; /* every thread that races here stores the same value */
    if (best < 0) {
        int b = ST_Q8_PORTABLE;
        for (int id = ST_Q8_KERNELS - 1; id > ST_Q8_PORTABLE; id--)
            if (st_q8_kernel(id)) {
                b = id;
                break;
            }
        best = b;
    }
    return best;
}
