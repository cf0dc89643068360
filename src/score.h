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

/* The popularity prior of every segment (n floats into q):
 *   q[s] = log(1 + popularity[s]) / log(1 + max popularity), in [0, 1].
 * Computed once per model (at load); a caller keeps it beside the model. */
void st_score_prior(const st_model *m, float *q);

/* Every segment's score for the user vector x, with the model's prior blend:
 *   scores[s] = V[s] . x + prior_weight q[s]
 * (prior_weight from the header; 0 in a model nobody fitted it for, and then
 * this is st_score_all_segments). q from st_score_prior. */
void st_score_blend(const st_model *m, const float *q, const float *x, float *scores);

/* One segment's blended score. */
float st_score_one(const st_model *m, const float *q, const float *x, uint32_t s);

/* The probability of engagement of a (blended) score from the model's
 * logistic calibration: 1 / (1 + exp(-(calib_a score + calib_b))). NaN when
 * the model is not calibrated (flags lack ST_MODEL_CALIBRATED). */
double st_score_calibrated(const st_model *m, float score);

/* The dot product of two k-vectors (the one scoring kernel). */
float st_dot(const float *a, const float *b, uint32_t k);

#endif
