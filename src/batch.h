/* batch: the query commands over many users at once, for the batch forms of
 * `starling segments` (--users, --all-users) and `starling audience`
 * (--all-segments).
 *
 * Dimensions: rows r (the users asked about), segments n, rank k, want w.
 * Two ways to score a set of rows: row by row with st_score_blend (the
 * scores bit for bit those of SEGMENTS and `starling segments USER`), or in
 * blocks by cblas_sgemm (a block of rows x every segment, or of segments x
 * every row: the compute floor of the machine, Spark MLlib's
 * recommendForAll; the sums are ordered differently, so a score may differ
 * in its last bits and two nearly equal segments may trade places). Ranking
 * is st_topk's: best first, equal scores to the lower index.
 * Owns nothing; the callers own every array. Never prints. Runs `threads`
 * threads of its own and holds BLAS to one thread inside each.
 */
#ifndef STARLING_BATCH_H
#define STARLING_BATCH_H

#include <stdint.h>

#include "model.h"

/* Rows to rank segments for: X (rows x k, row-major), and each row's
 * segments to leave out (hist[hist_off[i] .. hist_off[i+1]), ascending), or
 * hist_off NULL for none. */
typedef struct {
    const float *X;
    uint32_t rows;
    const uint64_t *hist_off;
    const uint32_t *hist;
} st_batch_rows;

/* For every row, its best `want` segments by blended score (st_score_blend
 * with the prior q), best first: idx and score (rows x want), got[i] of them
 * (fewer when the history leaves fewer). gemm 0: row by row, the scores of
 * SEGMENTS; 1: sgemm blocks. 0, or -1 when memory ran out. */
int st_batch_segments(const st_model *m, const float *q, const st_batch_rows *r, uint32_t want, int gemm, int threads,
                      uint32_t *idx, float *score, uint32_t *got);

/* For every segment, the best `want` of `rows` user vectors U (rows x k) by
 * blended score (what AUDIENCE ranks), among the rows not marked in skip
 * (nskip flags for the first nskip rows; NULL = none) scoring at least min: idx and score (segments x want), got[s]
 * of them, and reach[s], how many rows scored at least min (REACH). By sgemm
 * blocks of segments x rows. 0, or -1 when memory ran out. */
int st_batch_audiences(const st_model *m, const float *q, const float *U, uint64_t rows, const uint8_t *skip,
                       uint64_t nskip, uint32_t want, float min, int threads, uint32_t *idx, float *score, uint32_t *got,
                       uint64_t *reach);

#endif
