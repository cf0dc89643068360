/* segindex: the exact top-k over segments that SEGMENTS answers from.
 *
 * A user's best segments by blended score (U[u] . V[s] + w q[s], as
 * st_score_blend gives it), found without scoring most segments:
 * - segments are visited in the order of an upper bound on their score for
 *   a typical user (w q[s] + c |V[s]|, c the median user norm), 32 at a
 *   time, and the visit stops once the most any remaining segment can score
 *   falls below the want-th best so far (or below MIN);
 * - each visited block is first bounded row by row from a short projection:
 *   V[s]'s coordinates along 8 directions, dotted with the user's, plus
 *   |tail of x| |tail of V[s]| for the rest (Cauchy-Schwarz), then the same
 *   with 40 directions when a row is still in (the directions: the leading
 *   eigenvectors of the visited rows' and the users' Gram matrices, each
 *   scaled to trace 1; the question is projected in float, the rows in
 *   double, and both are read as 16-bit integers, so the bounds' sums are
 *   exact integer ones); only the rows whose bound reaches the want-th best
 *   are scored, with the one dot-product kernel (st_dot), so every score
 *   returned is the float SCORE gives.
 * Both bounds carry margins larger than the rounding of the arithmetic
 * behind them, so the answer is always exactly the full scan's: the same
 * segments, scores and order (tests/test_score.c checks it against the
 * full scan on random and skewed models). A model or user vector with a
 * value that is not finite is scored row by row without the projection.
 *
 * Legend: segments n, rank k. Owns: the index's arrays. Never: allocates
 * after st_segment_index_build, blocks, or prints.
 */
#ifndef STARLING_SEGINDEX_H
#define STARLING_SEGINDEX_H

#include <stdint.h>

#include "model.h"

typedef struct {
    uint32_t n, k;       /* segments, rank */
    float c;             /* the user norm the visiting order is tuned to */
    uint32_t *order;     /* position -> segment */
    float *rows;         /* n x k, by position: the exact rows */
    float *add;          /* by position: the prior blend w q[s] */
    struct st_seg_reach { /* per block, and one past the last: from its first position on, */
        float norm;       /* the largest |V[s]| (rounded up), */
        float add;        /* the largest blend (with its margin), */
        float key;        /* the largest blend + c |V[s]| (rounded up) */
    } *reach;             /* together, so a question's stop test reads one line */
    double *dir;         /* k x 40: orthonormal directions (segindex.c) */
    float *dirf;         /* the same, rounded to float: questions are projected in float */
    float *blocks;       /* per block of 32 positions: 40 x 32 projections in 16-bit integers (the
                            space of 640 floats), then 32 scales, 2 x 32 tail norms, 32 margins
                            and 32 blends with margin, each rounded up */
    uint8_t *exact;      /* per block: 1 when a value in it is not finite (scored row by row) */
} st_segment_index;

/* Builds the index of model m with the blend q (from st_score_prior).
 * Allocates about n (k + 16) floats; -1 on out-of-memory. */
int st_segment_index_build(const st_model *m, const float *q, st_segment_index *ix);
void st_segment_index_free(st_segment_index *ix);

/* The best `want` segments for the user vector x among those scoring at
 * least min and not marked in skip (indexed by segment; NULL = none): the
 * same answer, scores and order as st_score_blend followed by st_topk (NaN
 * and -inf scores are none).
 * *visited (may be NULL) receives the position the visit stopped at. */
uint32_t st_score_topk_segments(const st_segment_index *ix, const float *x, uint32_t want, float min,
                                const uint8_t *skip, uint32_t *out_idx, float *out_score, uint32_t *visited);

/* One question of st_score_topk_segments_many. */
typedef struct {
    const float *x;       /* k floats */
    uint32_t want;
    float min;            /* -INFINITY: none */
    const uint8_t *skip;  /* segment s is left out when skip[s] & skip_bit; NULL = none */
    uint8_t skip_bit;     /* so that eight questions can share one mask */
    uint32_t *out_idx;    /* want entries: the answer, best first */
    float *out_score;     /* want entries */
    uint32_t got;         /* out: entries in the answer */
    uint32_t visited;     /* out: the position the visit stopped at */
    uint32_t scored;      /* out: segments whose exact score was computed */
} st_segment_query;

/* Answers nq questions together, each exactly as st_score_topk_segments
 * answers it alone (the same rows visited and scored, in the same order),
 * block by block: a block of the index is read for every question still
 * running while it is in the cache. */
void st_score_topk_segments_many(const st_segment_index *ix, st_segment_query *q, uint32_t nq);

#endif
