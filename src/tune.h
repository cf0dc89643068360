/* tune: the hyper-parameter search of `starling tune`, as a library.
 *
 * Configurations come from lists of values (factors, lambda, alpha,
 * iterations, confidence): every combination in order (grid), or seeded draws
 * from them (random). Each configuration is trained on the split's training
 * part; every eval_every iterations its validation metric (the users of the
 * split whose hash marks them validation users, ranked by the model alone)
 * is measured, and a run stops after `patience` checks without a better
 * value, keeping the factors of its best check. The best configuration's
 * best factors come back.
 *
 * Owns: the trained result it returns (st_trained_free). Never prints:
 * progress goes to the callbacks.
 */
#ifndef STARLING_TUNE_H
#define STARLING_TUNE_H

#include <stdint.h>

#include "als.h"
#include "eval.h"
#include "evaluate.h"
#include "interactions.h"
#include "train.h"

#define ST_TUNE_MAX_LIST 16
#define ST_TUNE_MAX_CONFIGS 1000

typedef struct {
    uint32_t factors, iterations;
    double lambda, alpha;
    st_conf_scheme confidence;
    /* results */
    uint32_t best_iteration, ran;
    double value, seconds;
} st_tune_config;

/* The lists a search draws from (n* values each, at least one). */
typedef struct {
    uint64_t factors[ST_TUNE_MAX_LIST], iterations[ST_TUNE_MAX_LIST];
    double lambda[ST_TUNE_MAX_LIST], alpha[ST_TUNE_MAX_LIST];
    int confidence[ST_TUNE_MAX_LIST];
    int nf, ni, nl, na, nc;
} st_tune_lists;

/* The configurations: every combination (random == 0; the first list varies
 * fastest), or `trials` draws seeded by seed. Each is checked against base
 * (st_als_check). Returns how many (in *out, allocated), or -1 with err. */
int st_tune_configs(const st_tune_lists *l, int random, uint32_t trials, const st_als_params *base, uint64_t seed,
                    st_tune_config **out, char *err);

/* The split data a search trains and validates on. */
typedef struct {
    const st_event_table *table;
    const uint8_t *role;
    const st_interactions *x; /* the training part */
    const st_weighting *w;
} st_tune_data;

typedef struct {
    const st_evaluate_opts *eo; /* the cut-offs and the metric to select on */
    double validation;          /* the share of evaluated users that validate */
    uint64_t split_seed;
    uint64_t eval_every, patience;
    int threads;
    /* Progress (may be NULL): a configuration starts; a check measured value. */
    void (*on_config)(void *ctx, uint32_t i, uint32_t n, const st_tune_config *c);
    void (*on_check)(void *ctx, const st_trained *t, double value);
    void *ctx;
} st_tune_opts;

/* Trains every configuration of cfg (filling its results) and returns the
 * index of the best in *best_cfg with its best factors in best (iterations =
 * its best check's). base gives every other training parameter. -1 with err
 * on failure or when no configuration produced a validation metric. */
int st_tune_run(const st_tune_data *d, const st_als_params *base, st_tune_config *cfg, uint32_t ncfg,
                const st_tune_opts *o, st_trained *best, uint32_t *best_cfg, char *err);

#endif
