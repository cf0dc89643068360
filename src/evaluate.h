/* evaluate: the evaluation of one model on one evaluation set, end to end,
 * and the validation holdout `starling train` fits the model's prior on.
 *
 * st_evaluate fits the popularity-prior weight and the calibration on the
 * set's validation users (or takes them as given), ranks the test users with
 * the model and the baselines, and summarises: the one result every output
 * of `starling eval` and `tune` is written from, and what `train` writes into
 * the model it saves.
 *
 * The holdout (st_holdout_*): a seeded share of the users with enough
 * segments, capped in count, each with a share of its segments held out of
 * training. `train` trains once without the held-out pairs, evaluates the
 * validation users on them (half fit the prior weight and the calibration,
 * half report), then folds every validation user back in with all its
 * segments, so the model saved has learned from every event.
 *
 * Owns: the result's arrays (st_evaluation_free), the holdout's (
 * st_holdout_free). Never: prints, reads or writes files.
 */
#ifndef STARLING_EVALUATE_H
#define STARLING_EVALUATE_H

#include <stdint.h>

#include "ranking.h"
#include "interactions.h"
#include "model.h"
#include "report.h"
#include "segeval.h"

#define ST_EVALUATE_SEGMENT_ROWS 50 /* rows of the per-segment recall table, at most */

enum { ST_PRIOR_FIT = 0, ST_PRIOR_MODEL = 1, ST_PRIOR_FIXED = 2 };
/* The prior's shape (score.h): chosen with the weight when it is fitted,
 * else the model's (auto); or as asked. */
enum { ST_PRIOR_SHAPE_AUTO = 0, ST_PRIOR_SHAPE_LOG = 1, ST_PRIOR_SHAPE_LINEAR = 2 };

typedef struct {
    uint32_t ks[ST_EVAL_MAXK], nk; /* the cut-offs, ascending */
    int metric;                    /* what the prior is fitted to: ST_M_*, or ST_NMETRICS for AUC */
    uint32_t metric_ki;            /* ... at ks[metric_ki] */
    int prior_mode;                /* ST_PRIOR_* */
    double prior_fixed;            /* the weight, for ST_PRIOR_FIXED */
    int prior_shape;               /* ST_PRIOR_SHAPE_* */
    uint64_t seed;                 /* the random baseline and the calibration samples */
    uint32_t negatives;            /* other segments sampled per user for calibration */
    uint32_t segments;             /* rows of the per-segment recall table */
    int threads;
    int quick;                     /* the model and popularity only, no AUC, no per-segment table (train) */
    unsigned baselines;            /* ST_BASELINE_* bits: the strong baselines to rank with too */
    uint32_t knn_neighbours;       /* item-kNN: neighbours kept per segment */
    double knn_shrink;             /* item-kNN: shrinkage of the cosine */
    double ease_lambda;            /* EASE: lambda, <= 0 for the data-scaled default (baseline.h) */
    uint32_t ease_max_segments;    /* EASE: skipped above this many segments with training users */
} st_evaluate_opts;

#define ST_BASELINE_KNN 1u
#define ST_BASELINE_EASE 2u

/* Sets the baseline fields of o to their defaults (both baselines on). */
void st_evaluate_opts_baselines(st_evaluate_opts *o);

/* Rankers in st_evaluation.run and .sum, in this order. */
enum { ST_EV_MODEL = 0, ST_EV_POPULARITY = 1, ST_EV_RANDOM = 2, ST_EV_KNN = 3, ST_EV_EASE = 4, ST_EV_RANKERS = 5 };

/* The st_rank_kind of each ranker of an evaluation. */
extern const st_rank_kind st_ev_kind[ST_EV_RANKERS];

typedef struct {
    st_eval_run run[ST_EV_RANKERS];
    st_eval_summary sum[ST_EV_RANKERS]; /* test users */
    int ranked[ST_EV_RANKERS];          /* 1 when run and sum hold this ranker's results */
    char why[ST_EV_RANKERS][200];       /* a baseline not ranked: why (empty when it was not asked for) */
    double build_seconds[ST_EV_RANKERS]; /* a baseline's fitting time */
    double ease_lambda;                 /* the lambda EASE used */
    uint32_t ease_segments;             /* the segments EASE took part with */
    st_segeval seg_eval;                /* LOOKALIKE and SIMILAR (eval --lookalike) */
    int have_seg_eval;
    float *prior;            /* n */
    double prior_weight;
    const char *prior_how;
    double prior_values[32]; /* the validation metric at each grid weight (fit) */
    int prior_linear;        /* the prior's shape: 1 linear, 0 log (score.h) */
    const char *shape_how;   /* how the shape came about */
    st_shape_evidence shape; /* the shape's evidence when it was fitted (shape.k[0] != 0) */
    int calibrated;
    const char *calib_how;
    double a, b;
    st_reliability rel;      /* on test users */
    int have_rel;
    double hist_lo, hist_hi, hist_pos[ST_REPORT_HIST_BINS], hist_neg[ST_REPORT_HIST_BINS];
    uint32_t nseg, seg[ST_EVALUATE_SEGMENT_ROWS], seg_users[ST_EVALUATE_SEGMENT_ROWS];
    double seg_recall[ST_EVALUATE_SEGMENT_ROWS];
    uint32_t validation_users, test_users;
    uint64_t test_pairs;
} st_evaluation;

/* Evaluates m on set (its validation flags say who fits and who is
 * tested) into r (zeroed here). Fails when there is no test user. */
int st_evaluate(const st_model *m, const st_eval_set *set, const st_evaluate_opts *o, st_evaluation *r, char *err);
void st_evaluation_free(st_evaluation *r);

/* The scores of the test users by the baseline ranker (ST_EV_KNN or
 * ST_EV_EASE), fitted again as st_evaluate fits it: one row of n per test
 * user, in the set's order (for --dump and its checks). */
int st_evaluate_baseline_scores(const st_model *m, const st_eval_set *set, const st_evaluate_opts *o, int ranker,
                                float *out, char *err);

/* The value of the selection metric in a summary. */
double st_evaluate_metric(const st_eval_summary *s, const st_evaluate_opts *o);

/* Sets m's prior weight and, when fitted, its calibration from r. */
void st_evaluation_apply(st_model *m, const st_evaluation *r);

/* m's META with r's headline figures as eval.KEY=VALUE lines (replacing
 * eval.* lines of an earlier evaluation), for `starling info` and the model
 * card. split: how the evaluated users came about, one line. Returns a new
 * string (caller frees) and its length in *len, or NULL when out of memory. */
char *st_evaluation_meta(const st_model *m, const st_evaluation *r, const st_evaluate_opts *o, const char *split,
                         uint64_t seed, size_t *len);

/* ---- the validation holdout of `train` ---------------------------------------- */

typedef struct {
    double share;          /* of the eligible users (0 = no holdout) */
    uint32_t cap;          /* at most this many validation users */
    uint32_t min_segments; /* eligible: at least this many distinct segments */
    double fraction;       /* of a validation user's segments held out (at least one) */
    uint64_t seed;
} st_holdout_opts;

void st_holdout_opts_default(st_holdout_opts *o);

typedef struct {
    st_interactions train;  /* x without the held-out pairs: x's ids (borrowed), x's dimensions */
    uint32_t users;         /* validation users */
    uint32_t *user;         /* their rows in x, in the order of a hash of their ids */
    uint64_t *test_ptr;     /* users + 1 */
    uint32_t *test;         /* held-out segments, ascending per user */
    uint64_t pairs;         /* held-out pairs */
    uint32_t eligible;      /* users that could have been chosen */
} st_holdout;

/* Chooses the validation users of x (by a hash of each id and the seed, so
 * the choice does not depend on the order of the input) and holds out their
 * pairs. h->users may come back 0 (too few eligible users): then h->train
 * is still a usable copy of x. */
int st_holdout_make(const st_interactions *x, const st_holdout_opts *o, st_holdout *h, char *err);
void st_holdout_free(st_holdout *h);

#define ST_HOLDOUT_SPARSE_MAX 3 /* segments a fitting user's sparse copy is folded in from */

/* The evaluation set of the validation users of h, for the model m trained
 * on h->train: every user's own row, its training segments excluded, its
 * held-out segments the truth; half of them (by hash) fit, half report.
 * Each fitting user also gets a sparse copy (a validation user too): folded
 * in from at most ST_HOLDOUT_SPARSE_MAX of its training segments, tested on
 * the same held-out segments, so the prior weight is fitted on known and on
 * sparse users alike. */
int st_holdout_set(const st_holdout *h, const st_model *m, st_eval_set *set, char *err);

/* Folds every validation user of h back in with all its segments in x:
 * each one's row of U (m users x k, the model trained on h->train) is
 * solved again against the fixed segment factors of m, exactly. */
int st_holdout_restore(const st_holdout *h, const st_interactions *x, const st_model *m, float *U, char *err);

#endif
