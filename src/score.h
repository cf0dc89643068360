/* score: scores and top-k selections over a model, and the questions built
 * on them: a user's segments, fold-in of an unseen user, every user's
 * score for a segment (the scans over all users that select or count are
 * in scan.h), similar segments, explanations, the popularity prior.
 *
 * Legend: users m, segments n, rank k. A score is U[u] . V[s] + w q[s]: the
 * dot product plus the model's prior blend (w = prior_weight, 0 unless
 * `starling eval`/`tune` fitted it; q from st_score_prior).
 * Owns: nothing. Never: allocates (every buffer is the caller's, so the
 * server's hot path can reuse per-thread scratch), blocks, or prints. The
 * pruned top-k over segments SEGMENTS answers from is segindex.h.
 * Ties are broken by the lower index, so every ranking is deterministic.
 * Functions that take a user's vector or history take them as arguments
 * rather than a user index, so a caller may pass a user that is not in the
 * model file (folded in, or updated online).
 */
#ifndef STARLING_SCORE_H
#define STARLING_SCORE_H

#include <stdint.h>

#include "als.h"
#include "model.h"

/* scores[s] = V[s] . x for every segment (st_dot on each row). */
void st_score_all_segments(const st_model *m, const float *x, float *scores);

/* The best `want` of n scores, best first, skipping the indices listed in
 * exclude (sorted ascending, nexclude of them) and any NaN or -inf (no
 * score; the buffered and the heap selections agree on it). Writes at most
 * `want` (index, score) pairs and returns how many; out_idx and out_score
 * (want entries each) double as the heap while selecting. */
uint32_t st_topk(const float *scores, uint32_t n, uint32_t want, const uint32_t *exclude, uint64_t nexclude,
                 uint32_t *out_idx, float *out_score);

/* Of n (index, score) pairs, moves the best `want` (higher score, then
 * lower index; no NaN among them) to [0, want) in no particular order and
 * returns min(n, want). Quickselect: O(n), no allocation. */
uint32_t st_topk_keep(uint32_t *idx, float *sc, uint32_t n, uint32_t want);

/* The popularity prior of every segment (n floats into q), in [0, 1], in the
 * model's shape (ST_MODEL_PRIOR_LINEAR in the header's flags):
 *   log:    q[s] = log(1 + popularity[s]) / log(1 + max popularity)
 *   linear: q[s] = popularity[s] / max popularity
 * Computed once per model (at load); a caller keeps it beside the model. */
void st_score_prior(const st_model *m, float *q);
/* The same in the shape asked for (linear: 1), whatever the model's. */
void st_score_prior_shape(const st_model *m, int linear, float *q);
/* q of a segment with pop users in the shape asked for, against the model's
 * largest popularity top (st_score_prior's value, for a segment the model
 * has not seen, e.g. one created online); at most 1. */
float st_score_prior_of(double pop, double top, int linear);
/* The model's largest popularity: the top of st_score_prior_of. */
float st_score_prior_top(const st_model *m);

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

/* scores[r] = rows[r] . x for the nrows x k matrix rows (row-major): each
 * score the very float st_dot gives, several rows sharing each load of x. */
void st_score_rows(const float *rows, uint32_t nrows, uint32_t k, const float *x, float *scores);

/* The dot product of two k-vectors: the one scoring kernel, with a fixed
 * summation order, so a pair scores the same in every command. */
float st_dot(const float *a, const float *b, uint32_t k);


/* The name of member i (its bytes and length), for st_topk_members. */
typedef const char *(*st_member_name_fn)(const void *ctx, uint32_t i, size_t *len);

/* The first `want` of n scores in the order of a Redis sorted set: by
 * ascending score, equal scores by member name bytes (name(ctx, i) names
 * index i); descending reverses both, as ZREVRANGE does. NaN scores are
 * skipped. out_idx, out_score: want entries. */
uint32_t st_topk_members(const float *scores, uint32_t n, uint32_t want, int descending, st_member_name_fn name,
                         const void *ctx, uint32_t *out_idx, float *out_score);

/* Floats of scratch that st_score_foldin / st_score_explain need for a
 * history of nnz entries. */
uint64_t st_score_foldin_scratch(const st_model *m, uint32_t nnz);
uint64_t st_score_explain_scratch(const st_model *m, uint32_t nnz);

/* The confidence-minus-one of each history entry (seg[i], r[i]) into cm1,
 * with model m's scheme as the parameters p say (st_model_params), and the
 * row's lambda, returned: exactly what training uses for a row with this
 * history (for a popularity-weighted model c / w0 - rho_s, als.h). */
double st_score_confidences(const st_model *m, const st_als_params *p, const uint32_t *seg, const float *r,
                            uint32_t nnz, float *cm1);

/* Fold-in: the vector x (k) the model would give a user whose history is
 * (seg[i], r[i]), i < nnz: distinct segment indices and raw engagement values
 * r >= 0, weighted with the model's own confidence scheme and regularisation,
 * solved exactly against the segment factors (G = st_model_gram, k x k). Returns -1
 * when the system cannot be solved (not positive definite). */
int st_score_foldin(const st_model *m, const float *G, const uint32_t *seg, const float *r, uint32_t nnz, float *x,
                    float *scratch);

/* Why a user with history (seg[i], r[i]) scores as they do on segment s
 * (Hu, Koren, Volinsky 2008, section 5): with W = V^T C V + lambda I, the
 * fold-in score is sum_i c_i (v_s^T W^-1 v_seg[i]), so contrib[i] is the part
 * past segment seg[i] contributes; the contributions sum to the score that
 * fold-in of this history gives. Returns -1 as st_score_foldin. */
int st_score_explain(const st_model *m, const float *G, const uint32_t *seg, const float *r, uint32_t nnz,
                     uint32_t s, float *contrib, float *scratch);

/* out[u] = U[u] . y for every user (st_dot on each row). */
void st_score_all_users(const st_model *m, const float *y, float *out);

/* out[u] = every user's blended score for segment s, the same float
 * st_score_one gives each (q from st_score_prior; out: m floats). */
void st_score_segment_users(const st_model *m, const float *q, uint32_t s, float *out);

/* c = the mean of rows rows[0..n) of U (k columns), summed in double so that
 * it does not depend on their order (LOOKALIKE's query when its seed solve
 * fails: lookalike.h). */
void st_score_centroid(const float *U, uint32_t k, const uint32_t *rows, uint32_t n, float *c);

/* norms[s] = |V[s]| for every segment. */
void st_score_segment_norms(const st_model *m, float *norms);

/* Segments most similar to s: the segments a user whose only engagement is
 * s (at the typical value of a pair) would be ranked, folded in against G
 * (V^T V) and blended with the prior q as SEGMENTS blends: co-engagement in
 * the model's own metric, so a rare segment's small, noisy vector does not
 * win as it does under the cosine of factors. s is excluded. scores: n
 * floats; work: st_score_similar_scratch floats. Returns how many (0 when
 * the fold-in cannot be solved). */
uint64_t st_score_similar_scratch(const st_model *m);
uint32_t st_score_similar(const st_model *m, const float *G, const float *q, uint32_t s, uint32_t want,
                          float *scores, float *work, uint32_t *out_idx, float *out_score);

#endif
