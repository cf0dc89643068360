/* eval: offline evaluation: splits, metrics, baselines, calibration and the
 * popularity-prior blend.
 *
 * Legend: users m (the model's), segments n, rank k, evaluated users e, the
 * cut-offs K1 < K2 < ... (nk of them, the largest Kmax), nnz events.
 *
 * The flow of one run (cli_eval.c drives it):
 *   events --st_eval_events_read--> an event table (ids interned, raw values)
 *          --st_split_assign--> a role per event: train, test, fold-in
 *   train events --st_interactions--> trained model (train.h)
 *   test / fold-in events --st_eval_set_*--> an evaluation set: per evaluated
 *          user the vector scored (the model's row, or a fold-in against the
 *          fixed segment factors), the segments excluded from its ranking
 *          (training history) and the held-out segments (the truth)
 *   set + ranker (model, popularity, random) --st_eval_rank--> per-user
 *          metrics at every K, AUC and the top-Kmax list
 *   --st_eval_summarize--> means with 95% confidence intervals, coverage.
 *
 * Every evaluated user is either a validation user (the prior weight and the
 * calibration are fitted on them) or a test user (the reported metrics); the
 * choice is a hash of the user id and the split seed, so it does not depend
 * on the order of the input.
 *
 * Owns: the event table and the evaluation set (free with the matching
 * *_free); ranking.h ranks the set. Never: prints, reads a model
 * file, writes files (the command-line layer does all three).
 * docs/EVALUATION.md gives every definition used here in full.
 */
#ifndef STARLING_EVAL_H
#define STARLING_EVAL_H

#include <stdint.h>

#include "events.h"
#include "idmap.h"
#include "interactions.h"
#include "model.h"

#define ST_EVAL_MAXK 16 /* cut-offs per run */

/* ---- the event table: every event kept, for splitting -------------------- */

typedef struct {
    st_idmap users, segments, kinds;
    uint64_t count, cap;
    uint32_t *user, *segment;
    uint32_t *kind; /* index in kinds, ST_NOT_FOUND for none */
    double *weight; /* the weight column, before kind weights and decay */
    double *ts;     /* NaN when the event has no timestamp */
} st_event_table;

/* Reads every file into t (zeroed by this call). stats accumulates. */
int st_eval_events_read(char **paths, int npaths, const st_read_opts *o, st_event_table *t, st_read_stats *stats,
                        char *err);
void st_event_table_free(st_event_table *t);

/* ---- splits --------------------------------------------------------------- */

typedef enum { ST_SPLIT_HOLDOUT, ST_SPLIT_LEAVE, ST_SPLIT_TIME, ST_SPLIT_USERS } st_split_kind;

typedef struct {
    st_split_kind kind;
    double fraction;       /* holdout: of each user's segments; users: of the eligible users */
    uint32_t leave;        /* leave:k */
    double time;           /* time: the cut (unix seconds), or a fraction of the time range */
    int time_is_fraction;
    uint64_t seed;         /* every random choice of the split */
    uint32_t min_events;   /* eligible users have between min and max distinct segments */
    uint32_t max_events;   /* 0 = no limit */
    double fold_in;        /* users: the fraction of a held-out user's segments folded in */
    uint32_t fold_max;     /* ... and at most this many (0 = no limit): a sparse user */
} st_split;

/* Parses "holdout:0.2", "leave:1", "time:2026-01-01", "time:0.8", "users:0.1"
 * into s (other fields untouched). -1 with a sentence on a bad spec. */
int st_split_parse(const char *spec, st_split *s, char *err);

/* "holdout:0.2" etc. back from s, for output. */
void st_split_describe(const st_split *s, char *out, size_t len);

enum { ST_ROLE_TRAIN = 0, ST_ROLE_TEST = 1, ST_ROLE_FOLDIN = 2, ST_ROLE_DROP = 3 };

/* Assigns a role to every event of t (role: t->count bytes). Held-out pairs
 * (all events of one user-segment pair share a role) become TEST; a held-out
 * user's pairs are FOLDIN or TEST (users split). Time split: events at or
 * after the cut are TEST unless the pair also has earlier events (then every
 * later event of it is DROPped: the user already had that segment). Fails
 * when nothing is held out, or when a time split meets an event without a
 * timestamp. *cut receives the time cut used (NaN for other splits). */
int st_split_assign(const st_event_table *t, const st_split *s, uint8_t *role, double *cut, char *err);

/* Builds interactions from the events of t whose role is `which`, weighted
 * by w (the same path as `starling train`). */
int st_eval_build(const st_event_table *t, const uint8_t *role, uint8_t which, const st_weighting *w,
                  st_interactions *x, char *err);

/* Roles for `eval MODEL TEST_EVENTS`: every event of a user the model knows
 * is TEST; a user it does not know is cold, and its segments are split as a
 * held-out user's are in the users split (fraction fold_in folded in, at
 * most fold_max segments when that is not 0). */
int st_split_cold(const st_event_table *t, const st_model *m, double fold_in, uint32_t fold_max, uint64_t seed,
                  uint8_t *role, char *err);

/* ---- the evaluation set ---------------------------------------------------- */

typedef struct {
    uint32_t users, cap;         /* e */
    uint32_t k;
    const char **names;          /* e: user ids (point into the model or the set's own copies) */
    char **owned_names;          /* e: copies for cold users, NULL for known ones */
    uint32_t *model_user;        /* e: row in the model, ST_NOT_FOUND for a cold (folded-in) user */
    float *X;                    /* e x k: the vector scored */
    uint32_t *activity;          /* e: distinct segments known for the user (history or fold-in) */
    uint64_t *seen_ptr;          /* e + 1 */
    uint32_t *seen;              /* segments excluded from the ranking, ascending per user */
    float *seen_r;               /* their raw values r (a cold user's fold-in input) */
    uint64_t *test_ptr;          /* e + 1 */
    uint32_t *test;              /* held-out segments, ascending per user, disjoint from seen */
    uint8_t *validation;         /* e: 1 = validation user, 0 = test user */
    uint32_t *origin;            /* e: the user e is a copy of (st_holdout_set's sparse copies), else e;
                                  * NULL: every user is its own. Set after the last user is added (the
                                  * adds do not grow it) */
    uint64_t seen_cap, test_cap;
    uint64_t dropped_pairs;      /* held-out pairs not usable: segment unknown to the model, or seen */
    uint64_t cold_skipped;       /* cold users with too few segments to fold in and test */
} st_eval_set;

/* What a cold user's fold-in needs from the model: V, its Gram matrix, the
 * confidence parameters. Built once per set. */
typedef struct {
    const st_model *m;
    st_als_params p;
    float *G;      /* k x k */
    float *cm1;    /* n: c - 1 of the row being folded in */
    float *scratch;
} st_foldin_ctx;

int st_foldin_ctx_init(st_foldin_ctx *f, const st_model *m, char *err);
void st_foldin_ctx_free(st_foldin_ctx *f);

/* Folds one user in: x solves the model's per-row system for the segments
 * idx (ascending, at most n of them) with raw values r, as the trainer
 * solves a row (exactly, by Cholesky). Never allocates. -1 when the system
 * is not positive definite. */
int st_foldin_user(st_foldin_ctx *f, const uint32_t *idx, const float *r, uint32_t nnz, float *x);

void st_eval_set_init(st_eval_set *s, uint32_t k);
void st_eval_set_free(st_eval_set *s);

/* Adds the model's user u with held-out segments test (model indices, any
 * order, duplicates allowed). Segments in u's history are dropped (counted).
 * A user left with nothing to test is not added. */
int st_eval_set_add_known(st_eval_set *s, const st_model *m, uint32_t u, const uint32_t *test, uint32_t ntest,
                          char *err);

/* Adds a cold user: folds in the segments fold (values r) and tests on test
 * (model indices; a test segment also folded in is dropped). */
int st_eval_set_add_cold(st_eval_set *s, st_foldin_ctx *f, const char *name, const uint32_t *fold, const float *r,
                         uint32_t nfold, const uint32_t *test, uint32_t ntest, char *err);

/* Adds every user of t that has TEST events, in the order of t: a user the
 * model knows with add_known, any other user with FOLDIN events with
 * add_cold (its fold-in values weighted by w, as training weighs them). */
int st_eval_set_from_roles(st_eval_set *s, const st_event_table *t, const uint8_t *role, const st_model *m,
                           const st_weighting *w, char *err);

/* Recomputes every user's vector from the model m (the same segments and
 * ids, new factors, as while training): a known user's row is copied, a
 * cold user is folded in again through f (initialised on m). */
int st_eval_set_refresh(st_eval_set *s, const st_model *m, st_foldin_ctx *f, char *err);

/* Marks each user validation (1) or test (0): a user is a validation user
 * when the hash of its id and the seed, as a fraction of 2^64, is below
 * fraction. */
void st_eval_set_partition(st_eval_set *s, double fraction, uint64_t seed);

#endif
