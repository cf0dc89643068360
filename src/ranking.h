/* ranking: ranks an evaluation set's users and measures the rankings.
 *
 * The ranking pass takes the selected users in blocks: it gathers their
 * vectors, scores them (one sgemm for the model; popularity, random,
 * item-kNN and EASE by their own rules), selects each user's best Kmax
 * candidates with the bounded heap of score.c (st_topk, which skips the
 * user's seen segments) and computes every metric at every K from that list;
 * AUC is counted in one more pass over the user's n scores. Threads take
 * blocks, and a block's results depend only on its users, so any thread
 * count gives the same bytes. Then: means with 95% intervals, coverage,
 * per-segment recall, the popularity-prior weight fitted on validation users,
 * and the logistic calibration with its reliability table.
 *
 * Owns: the run results it allocates (st_eval_run_free, st_eval_samples_free).
 * Never: prints, reads or writes files. docs/EVALUATION.md defines every
 * number; each metric kernel has a naive reference beside the fast one.
 */
#ifndef STARLING_RANKING_H
#define STARLING_RANKING_H

#include <stdint.h>

#include "eval.h"

/* ---- rankers and the ranking pass ----------------------------------------- */

typedef enum {
    ST_RANK_MODEL = 0,
    ST_RANK_POPULARITY = 1,
    ST_RANK_RANDOM = 2,
    ST_RANK_KNN = 3,  /* item-kNN (baseline.h) from the user's excluded segments */
    ST_RANK_EASE = 4, /* EASE (baseline.h), likewise */
} st_rank_kind;

struct st_knn;
struct st_ease;

typedef struct {
    st_rank_kind kind;
    const float *V;        /* model: n x k segment factors */
    const float *prior;    /* model: the prior q (n), NULL for none */
    double prior_weight;   /* model: score = x . V[s] + prior_weight * q[s] */
    const float *popularity; /* popularity: the score is popularity[s] */
    uint64_t seed;         /* random: scores uniform in [0, 1) from a stream per user */
    const struct st_knn *knn;   /* knn: the neighbour lists */
    const struct st_ease *ease; /* ease: the fitted matrix */
    int no_auc;            /* st_eval_rank leaves AUC out (NaN), for passes that need only the metrics */
} st_ranker;

const char *st_rank_name(st_rank_kind r);

/* The per-user metrics at one cut-off K, in this order. */
enum { ST_M_PRECISION, ST_M_RECALL, ST_M_NDCG, ST_M_MAP, ST_M_HIT, ST_NMETRICS };
const char *st_metric_name(int metric); /* "precision", "recall", ... */

typedef struct {
    uint32_t users;   /* e, as the set */
    uint32_t nk, kmax, n;
    uint32_t ks[ST_EVAL_MAXK];
    double *metric;   /* e x nk x ST_NMETRICS */
    double *auc;      /* e; NaN when the user has no negative candidate */
    uint32_t *top;    /* e x kmax, best first, ST_NOT_FOUND past the candidates */
    double seconds;   /* wall time of the pass */
    uint32_t ranked;  /* users ranked (those selected) */
} st_eval_run;

/* Ranks every user of s selected by mask (NULL = all; else users whose
 * s->validation equals *mask) with r against n segments, excluding each user's
 * seen segments, and computes its metrics. Users are scored in blocks through
 * one sgemm per block and a bounded-heap top-Kmax per user, on `threads`
 * threads (BLAS single-threaded inside); the result does not depend on the
 * thread count. ks ascending, 1..100000. */
int st_eval_rank(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint32_t *ks, uint32_t nk,
                 const uint8_t *mask, int threads, st_eval_run *out, char *err);
void st_eval_run_free(st_eval_run *run);

/* The scores themselves, exactly as st_eval_rank computes them (the same
 * blocks and calls): out receives one row of n per selected user, in the
 * set's order. For checks and dumps; allocates nothing large. */
int st_eval_scores(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint8_t *mask, int threads,
                   float *out, char *err);

/* Only the scoring step (sgemm + top-Kmax, no metrics): for the benchmark. */
int st_eval_score_only(const st_eval_set *s, const st_ranker *r, uint32_t n, uint32_t kmax, int threads,
                       double *seconds, char *err);

/* The metrics of one ranking, naive and fast. ranked: the candidate
 * segments best first (ncand of them, seen already removed); test: the
 * held-out segments, ascending. out: nk x ST_NMETRICS. The reference sorts
 * nothing and tests membership by a linear scan: the obvious code, kept to
 * check the fast one (st_eval_metrics) in tests. */
void st_eval_metrics_ref(const uint32_t *ranked, uint32_t ncand, const uint32_t *test, uint32_t ntest,
                         const uint32_t *ks, uint32_t nk, double *out);
void st_eval_metrics(const uint32_t *top, uint32_t ntop, const uint8_t *is_test, uint32_t ntest, const uint32_t *ks,
                     uint32_t nk, double *out);

/* AUC of one user's scores (n of them): the fraction of (held-out, other
 * candidate) pairs in which the held-out segment scores higher, ties
 * counting one half; seen segments are not candidates. NaN when there is no
 * held-out segment or no other candidate. The reference compares every
 * pair; the fast one counts in one pass against the sorted held-out scores.
 * mark: n bytes, zero on entry and on return (scratch). */
double st_eval_auc_ref(const float *scores, uint32_t n, const uint32_t *seen, uint32_t nseen, const uint32_t *test,
                       uint32_t ntest);
double st_eval_auc(const float *scores, uint32_t n, const uint32_t *seen, uint32_t nseen, const uint32_t *test,
                   uint32_t ntest, uint8_t *mark, float *scratch);

/* ---- summaries -------------------------------------------------------------- */

typedef struct {
    double mean, half; /* mean and the half-width of its 95% confidence interval */
    uint32_t count;
} st_stat;

typedef struct {
    uint32_t nk;
    uint32_t ks[ST_EVAL_MAXK];
    uint32_t users;                         /* users summarised */
    st_stat m[ST_EVAL_MAXK][ST_NMETRICS];
    st_stat auc;
    double coverage[ST_EVAL_MAXK];          /* distinct segments in any top-K / n */
} st_eval_summary;

/* Mean +- 1.96 s / sqrt(N) (s the sample standard deviation) of x[i * stride]
 * over i with sel[i] == want (sel NULL = all), skipping NaN. */
st_stat st_stat_of(const double *x, uint64_t count, uint64_t stride, const uint8_t *sel, uint8_t want);

/* Summarises the users of run selected by mask (as st_eval_rank). */
void st_eval_summarize(const st_eval_set *s, const st_eval_run *run, const uint8_t *mask, st_eval_summary *out);

/* Recall at K for each segment among the `want` segments held out by the
 * most selected users: for segment s, the share of users holding s out whose
 * top K contains s. Writes up to want (segment, users, recall) triples
 * (largest first, ties by index) and returns how many. Allocates scratch. */
uint32_t st_eval_segment_recall(const st_eval_set *s, const st_eval_run *run, const uint8_t *mask, uint32_t n,
                                uint32_t ki, uint32_t want, uint32_t *seg, uint32_t *users, double *recall,
                                char *err);

/* ---- the popularity prior ------------------------------------------------- */

/* The fitted prior-weight grid tried by st_eval_fit_prior (ascending, 0 first). */
extern const double st_prior_grid[];
extern const uint32_t st_prior_grid_len;

/* Chooses the prior weight among st_prior_grid that maximises the mean of
 * metric at ks[ki] over validation users (ties: the smaller weight). r is the
 * model ranker (its prior_weight is ignored). *best and the value reached at
 * each grid weight (values, grid_len entries, may be NULL) come back. */
int st_eval_fit_prior(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint32_t *ks, uint32_t nk,
                      uint32_t ki, int metric, int threads, double *best, double *values, char *err);

/* The prior's shape chosen with its weight: each of the two priors (q_log,
 * then q_linear: score.h) gets its best weight as above, and the linear one
 * is chosen (*linear = 1) only when its gain over the log one, averaged over
 * two cut-offs (ks[ki] and ks[0] when that is smaller), is beyond twice the
 * standard error of the users' paired differences and it loses at neither
 * cut-off. The differences are cross-fitted (each half of the users compared
 * at the weights the other half chose; a user's copies, st_eval_set.origin, go
 * with it and count with it as one observation) over at least
 * ST_SHAPE_MIN_USERS users: so noise on a small validation set, or a gain at
 * one cut-off paid for at the other, keeps the log shape. r->prior is
 * ignored. *best and values are the chosen shape's; *ev the evidence. */
#define ST_SHAPE_MIN_USERS 20

/* The evidence for the prior's shape: the linear prior's mean gain over the
 * log one and its standard error at the cut-offs k[0] (the fitted one) and
 * k[1] (the smaller one; 0: none), and of their mean, [2] (what decides; [0]
 * without a second cut-off). k[0] is 0 when the shape was not fitted. */
typedef struct {
    uint32_t k[2];
    double gain[3], se[3];
} st_shape_evidence;

int st_eval_fit_prior_shape(const st_eval_set *s, const st_ranker *r, const float *q_log, const float *q_linear,
                            uint32_t n, const uint32_t *ks, uint32_t nk, uint32_t ki, int metric, int threads,
                            int *linear, double *best, double *values, st_shape_evidence *ev, char *err);

/* ---- calibration -------------------------------------------------------------- */

/* Scores of a user sample: every held-out pair (label 1, weight 1) and up to
 * `negatives` other candidates drawn without replacement (label 0, weight =
 * candidates / drawn, so the sample stands for every pair). */
typedef struct {
    uint64_t count, cap;
    float *score;
    uint8_t *label;
    double *weight;
} st_eval_samples;

int st_eval_sample(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint8_t *mask, uint32_t negatives,
                   uint64_t seed, int threads, st_eval_samples *out, char *err);
void st_eval_samples_free(st_eval_samples *x);

/* Fits p = 1 / (1 + exp(-(a score + b))) by weighted maximum likelihood
 * (Newton's method on the two parameters). -1 when there are no positives
 * or no negatives. */
int st_calib_fit(const st_eval_samples *x, double *a, double *b, char *err);

#define ST_CALIB_BINS 10
typedef struct {
    uint32_t bins;
    double lo[ST_CALIB_BINS], hi[ST_CALIB_BINS]; /* predicted-probability range of the bin */
    double predicted[ST_CALIB_BINS];             /* weighted mean predicted probability */
    double observed[ST_CALIB_BINS];              /* weighted share of positives */
    double weight[ST_CALIB_BINS];                /* pairs the bin stands for */
    uint64_t positives[ST_CALIB_BINS];
    double ece;                                  /* sum of weight |observed - predicted| / total weight */
} st_reliability;

/* The reliability table of p = sigmoid(a score + b) on x: ST_CALIB_BINS bins
 * of equal weight by predicted probability, and the expected calibration
 * error. Allocates scratch. */
int st_calib_reliability(const st_eval_samples *x, double a, double b, st_reliability *out, char *err);

#endif
