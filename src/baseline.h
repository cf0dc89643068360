/* baseline: the strong non-factor baselines a model is judged against.
 *
 * Legend: users m, segments n, training pairs nnz, a user's history H (the
 * segments it has in training, as binary input: the value is ignored).
 *
 * Item-kNN (Sarwar et al. 2001, Deshpande and Karypis 2004), cosine with
 * shrinkage:
 *   sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink)
 * where U_i is the set of users with segment i; each segment keeps its
 * `neighbours` most similar others; a user's score for segment j is the
 * sum of sim(i, j) over the segments i in H that have j among their
 * neighbours. Built in O(sum over users of |H|^2) time and O(n x
 * neighbours) memory, on threads.
 *
 * EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"), closed form:
 *   P = (X^T X + lambda I)^-1,  B_ij = -P_ij / P_jj,  B_jj = 0,
 * X the binary user x segment history; a user's scores are sum over i in H of
 * B[i, :]. Only segments with at least one training user take part (the
 * rest have B = 0, as the full solution gives them); their count n' must be
 * at most max_segments, since B is n' x n' floats (20,000 segments: 1.6 GB)
 * and its inverse costs about n'^3 flops. lambda <= 0 picks lambda =
 * ST_EASE_LAMBDA_SCALE x the mean of diag(X^T X) (users per segment), so the
 * choice follows the data's scale (docs/EVALUATION.md: the evidence).
 *
 * Owns: the neighbour lists / the matrix B (free with *_free). Never: prints,
 * reads files. Scoring never allocates.
 */
#ifndef STARLING_BASELINE_H
#define STARLING_BASELINE_H

#include <stdint.h>

#define ST_KNN_NEIGHBOURS 100
#define ST_KNN_SHRINK 10.0
#define ST_EASE_MAX_SEGMENTS 20000
#define ST_EASE_LAMBDA_SCALE 10.0

/* A user x segment history in CSR form (values unused). Rows sorted or not;
 * duplicates within a row are not allowed. */
typedef struct {
    uint32_t users, segments;
    const uint64_t *ptr; /* users + 1 */
    const uint32_t *idx; /* ptr[users] */
} st_history;

typedef struct st_knn {
    uint32_t n, neighbours;
    double shrink;
    uint64_t *ptr; /* n + 1 */
    uint32_t *nbr; /* the neighbours of each segment, most similar first */
    float *sim;
} st_knn;

/* Builds the neighbour lists of h's segments. neighbours >= 1, shrink >= 0.
 * Allocates; -1 with a sentence when out of memory. */
int st_knn_build(const st_history *h, uint32_t neighbours, double shrink, int threads, st_knn *out, char *err);
void st_knn_free(st_knn *k);

/* row (n floats) receives the scores of a user whose history is seen
 * (nseen segments). Never allocates. */
void st_knn_score(const st_knn *k, const uint32_t *seen, uint64_t nseen, float *row);

typedef struct st_ease {
    uint32_t n;        /* segments of the model */
    uint32_t active;   /* n': segments with a training user */
    uint32_t *slot;    /* n: the segment's row in B, or UINT32_MAX when it takes no part */
    uint32_t *segment; /* n': the segment of each row */
    float *B;          /* n' x n', row-major */
    double lambda;     /* the lambda used */
} st_ease;

/* Fits EASE on h. Fails with a sentence that says why (too many segments for
 * max_segments, out of memory, a failed factorisation). */
int st_ease_build(const st_history *h, double lambda, uint32_t max_segments, int threads, st_ease *out, char *err);
void st_ease_free(st_ease *e);

/* Counts the segments EASE would take part with (at least one user in h). */
uint32_t st_ease_active(const st_history *h);

/* row (n floats) receives the scores of a user whose history is seen. */
void st_ease_score(const st_ease *e, const uint32_t *seen, uint64_t nseen, float *row);

#endif
