/* scan_q8: integer dot products of int8 user rows with an int16 query, the
 * inner loop of the int8 scans (scan.c), one kernel per instruction set.
 *
 * Every kernel computes exactly the same int32 sums (integer arithmetic has
 * no rounding), so they differ in speed only, and tests compare each one the
 * CPU can run with the portable one. The query is int16, not int8, so that
 * its quantization error stays about 1/32767 of its largest value: few
 * candidates need an exact rescore (scan.c states the bound). The products
 * are formed by pairs of int16 into int32 (AVX2 vpmaddwd; vpdpwssd, which
 * also accumulates, with AVX-VNNI and AVX-512 VNNI); user bytes are widened
 * to int16 on the way in.
 * Owns: nothing. Never: allocates, blocks, or reads past the rows given.
 */
#ifndef STARLING_SCAN_Q8_H
#define STARLING_SCAN_Q8_H

#include <stdint.h>

/* out[r] = sum_i rows[r k + i] xq[i] (i < k) for r < nrows, exactly. xq has
 * st_q8_padded(k) entries, zero past k. Overflow is impossible when every
 * |xq[i]| <= st_q8_query_max(k) (user values are within [-127, 127]). */
typedef void (*st_q8_dots_fn)(const int8_t *rows, uint32_t nrows, uint32_t k, const int16_t *xq, int32_t *out);

enum { ST_Q8_PORTABLE = 0, ST_Q8_AVX2, ST_Q8_AVXVNNI, ST_Q8_AVX512VNNI, ST_Q8_KERNELS };

/* Kernel id's function, or NULL when this CPU (or this build) cannot run it. */
st_q8_dots_fn st_q8_kernel(int id);

/* "portable", "avx2", "avx-vnni", "avx512-vnni". */
const char *st_q8_kernel_name(int id);

/* The fastest kernel this CPU runs (chosen once, at the first call). */
int st_q8_best(void);

/* The query's length with padding (a multiple of 32), and the largest
 * |xq[i]| for which a sum of k products cannot overflow int32. */
static inline uint32_t st_q8_padded(uint32_t k) { return (k + 31) & ~31u; }
static inline int32_t st_q8_query_max(uint32_t k)
{
    int64_t q = (int64_t)2147483647 / (127 * (int64_t)(k > 0 ? k : 1));
    return (int32_t)(q > 32767 ? 32767 : q);
}

#endif
