/* lookalike: the query vector LOOKALIKE ranks every user against.
 *
 * Legend: users m, rank k, seeds S (distinct users, as vectors).
 * A seed list is folded in as a new segment: the one implicit-ALS item solve
 * training would give a segment whose users are the seeds, against the fixed
 * user factors U,
 *   v = (w0 U^T U + sum_S (c - w0) u u^T + lambda I)^-1 sum_S c u
 * (divided by w0 as als.h solves every row: c / w0 and lambda / w0), with c
 * the model's confidence of one pair at the typical value (the log scheme's
 * eps, else 1; bm25 with the idf of a segment of S users and a mean user's
 * length), w0 the model's plain unobserved weight, and lambda the row
 * lambda of a segment with S users among m. score(u) = U_u . v.
 * The solve is st_als_foldin's (one Cholesky, k x k) with U^T U in place of
 * V^T V. When it fails (not positive definite, or a non-finite v), the
 * query is the seeds' centroid, as LOOKALIKE served before. For a trained
 * model it cannot fail (lambda > 0 and c >= w0 make the system positive
 * definite); the fallback guards factors that are not finite, and the
 * return value says it was taken (not logged: nothing trained reaches it).
 *
 * U^T U is computed once per model (st_lookalike_gram: at load in the
 * server, once per run in eval and the batch commands): an aggregate of the
 * file's rows, one BLAS ssyrk per block of rows, the blocks summed in double
 * (so shards summed give the whole model's to rounding), then kept in float
 * as the solvers take it.
 *
 * Owns: nothing. Never: prints, blocks. st_lookalike_gram and
 * st_lookalike_query allocate their scratch (heavy paths only).
 */
#ifndef STARLING_LOOKALIKE_H
#define STARLING_LOOKALIKE_H

#include <stdint.h>

#include "model.h"

/* acc (k x k doubles, full and symmetric) += U^T U over m's user rows,
 * float32 (read in place) or int8 (dequantized as st_model_user gives them,
 * a block at a time).
 * 0, or -1 on out-of-memory. Run once per model file; for shards, call it
 * on each file into one acc. */
int st_lookalike_gram_add(const st_model *m, double *acc);

/* G (k x k floats, full) = U^T U of m's user rows (st_lookalike_gram_add,
 * rounded once). 0, or -1 on out-of-memory. */
int st_lookalike_gram(const st_model *m, float *G);

/* The query v (k floats) of the nseeds seed vectors rows (nseeds x k,
 * row-major, distinct users), folded in as a segment against G (the
 * Gram of the users, st_lookalike_gram) with m's hyper-parameters; users is
 * the number of users G sums over (all shards' for a sharded model).
 * Returns 0 when solved, 1 when the solve failed and v is the seeds'
 * centroid instead (st_score_centroid), -1 on out-of-memory. nseeds 0
 * gives v = 0. */
int st_lookalike_query(const st_model *m, uint64_t users, const float *G, const float *rows, uint32_t nseeds,
                       float *v);

/* The confidence-minus-one of each seed and the row lambda
 * st_lookalike_query solves with (both divided by w0, als.h). */
double st_lookalike_confidence(const st_model *m, uint64_t users, uint32_t nseeds, float *cm1);

/* The scores LOOKALIKE ranks, in batch form for evaluations: scratch[u] =
 * U[u] . v for every user u (seeds included), v = st_lookalike_query of the
 * seeds (user indices, distinct) against G, left at scratch + m.
 * scratch: m + k floats. Returns as st_lookalike_query. */
int st_lookalike_scores(const st_model *m, const float *G, const uint32_t *seeds, uint32_t nseeds, float *scratch);

#endif
