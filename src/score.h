/* score: scores and top-k selections over a model.
 *
 * Legend: users m, segments n, rank k. A score is U[u] . V[s].
 * Owns: nothing. Never: allocates (every buffer is the caller's, so the
 * server's hot path can reuse per-connection scratch), blocks, or prints.
 * Ties are broken by the lower index, so every ranking is deterministic.
 */
#ifndef STARLING_SCORE_H
#define STARLING_SCORE_H

#include <stdint.h>

#include "model.h"

/* scores[s] = V[s] . x for every segment (one sgemv). */
void st_score_all_segments(const st_model *m, const float *x, float *scores);

/* The best `want` of n scores, best first, skipping the indices listed in
 * exclude (sorted ascending, nexclude of them) and any NaN. Writes at most
 * `want` (index, score) pairs and returns how many; out_idx and out_score
 * (want entries each) double as the heap while selecting. */
uint32_t st_topk(const float *scores, uint32_t n, uint32_t want, const uint32_t *exclude, uint64_t nexclude,
                 uint32_t *out_idx, float *out_score);

/* The dot product of two k-vectors (the one scoring kernel). */
float st_dot(const float *a, const float *b, uint32_t k);

#endif
