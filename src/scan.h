/* scan: the questions over every user of a model (AUDIENCE, LOOKALIKE,
 * REACH, the reach curve), answered in one pass over the user factors at
 * the speed memory allows.
 *
 * Legend: users m, rank k, positions: the model's rows 0 .. m-1, then the
 * `extra` users (the overlay's online users) m .. m+nextra-1.
 * A user's score is fl(U[u] . x + add): the dot product exactly as st_dot
 * sums it (for an int8 model, of the row dequantized as st_model_user does),
 * then the blend added, so every answer (users, scores, order, counts) is
 * the one st_score_segment_users / st_score_all_users and st_topk give.
 * The rows are split among threads (st_scan_set_threads), each scoring and
 * selecting in one fused pass; int8 rows are scored first by an integer
 * kernel against a quantized query and only the candidates whose bounds
 * admit them are rescored exactly (scan.c states the bound).
 * Owns: nothing past a call. Allocates per call (per-thread candidate
 * buffers of about 2 want entries), so it is for the heavy pool and the
 * batch commands, never an event loop. Never blocks on anything but its own
 * threads, never prints.
 */
#ifndef STARLING_SCAN_H
#define STARLING_SCAN_H

#include <stdint.h>

#include "model.h"

typedef struct {
    const float *x;          /* k floats: a segment's factors, or LOOKALIKE's query (lookalike.h) */
    float add;               /* added to every dot product: the blend w q[s]; -0.0f adds nothing (not even to -0) */
    float min;               /* only users scoring at least min count or are selected; -INFINITY: all */
    uint32_t want;           /* select the best `want` (0: none) */
    int count;               /* count the users scoring at least min (into matching) */
    const uint8_t *skip;     /* m flags, 1 = model row u is no user (the overlay hides it); NULL: none */
    const uint32_t *exclude; /* positions never selected (still counted), ascending */
    uint64_t nexclude;
    const float *extra;      /* users after the model's rows: nextra x k floats */
    uint32_t nextra;
} st_scan_query;

typedef struct {
    uint32_t n;        /* users selected */
    uint64_t matching; /* users (not skipped) scoring at least min, when asked to count */
    uint64_t rescored; /* int8: scores computed exactly because the bounds could not decide */
    int kernel;        /* the integer kernel that ran (ST_Q8_*), or -1: float scores only */
    int passes;        /* 2 when the first cut, guessed from a sample, did not hold and the scan ran again */
} st_scan_result;

/* The best q->want users by score among those scoring at least q->min, not
 * skipped and not excluded, best first (ties: the lower position), into
 * out_idx / out_score (want entries each): the very users and floats a full
 * scan, a NaN for each left-out score and st_topk would give. NaN scores are
 * never selected or counted. 0, or -1 on out-of-memory (r then undefined). */
int st_scan_best(const st_model *m, const st_scan_query *q, uint32_t *out_idx, float *out_score, st_scan_result *r);

/* The reach curve in one pass: counts[j] = the users (not skipped) scoring
 * at least t[j], for j < nt (any order), reading q->x, add, skip, extra and
 * nextra. 0, or -1 on out-of-memory. */
int st_scan_curve(const st_model *m, const st_scan_query *q, const float *t, uint32_t nt, uint64_t *counts,
                  st_scan_result *r);

/* What REACH does below the privacy floor, for a curve: every count under
 * floor becomes ST_SCAN_WITHHELD. Returns how many were withheld. */
#define ST_SCAN_WITHHELD UINT64_MAX
uint32_t st_scan_withhold(uint64_t *counts, uint32_t n, uint64_t floor);

/* The naive references of st_scan_best and st_scan_curve: every position
 * scored one at a time (st_model_user, st_dot), then a full sort. For
 * tests; same contracts. */
int st_scan_best_reference(const st_model *m, const st_scan_query *q, uint32_t *out_idx, float *out_score,
                           st_scan_result *r);
int st_scan_curve_reference(const st_model *m, const st_scan_query *q, const float *t, uint32_t nt,
                            uint64_t *counts);

/* The bounds the candidate stage puts on the scores of model rows r0 ..
 * r0 + n - 1 for the query x + add: lo[i] <= score <= hi[i] (NaN: the row
 * is always rescored), with the kernel st_scan_set_kernel chose. Returns 1
 * when they are the exact scores (a float model, or a query scored in float;
 * lo = hi), 0 for bounds, -1 on out-of-memory. For tests and benchmarks: it
 * shows how tight the bound is, and that it holds. */
int st_scan_bounds(const st_model *m, const float *x, float add, uint32_t r0, uint32_t n, float *lo, float *hi);

/* Threads a scan uses: n > 0, or 0 for every CPU (the default). Process-wide. */
void st_scan_set_threads(int n);
int st_scan_threads(void);

/* The integer kernel int8 scans use: an ST_Q8_* id this CPU runs,
 * ST_SCAN_KERNEL_BEST (the default: the fastest available), or
 * ST_SCAN_KERNEL_FLOAT (dequantize every row and score it in float: no
 * candidate stage). Returns -1 when the CPU cannot run id. Process-wide. */
enum { ST_SCAN_KERNEL_BEST = -1, ST_SCAN_KERNEL_FLOAT = -2 };
int st_scan_set_kernel(int id);

#endif
