/* cli_eval: the options and pieces `starling eval` (cli_eval.c) and `starling
 * tune` (cli_tune.c) share: the evaluation options (cut-offs, the metric,
 * the split, the baselines, the outputs), reading and splitting the events,
 * the facts every output starts with, and saving an evaluated model.
 * Command-line layer: these print errors and return exit codes.
 */
#ifndef STARLING_CLI_EVAL_H
#define STARLING_CLI_EVAL_H

#include <stdint.h>

#include "cli.h"
#include "eval.h"
#include "evalout.h"
#include "evaluate.h"

/* The evaluation options, as parsed. */
typedef struct {
    const char *ks_spec, *split_spec, *prior_spec, *metric_spec, *report, *dump, *out, *baselines_spec;
    uint64_t split_seed, min_events, max_events, fold_max, negatives, segments, knn_neighbours, ease_max;
    double fold_in, validation, knn_shrink, ease_lambda;
    unsigned baselines;
    int json, csv, quiet, lookalike;
    double seed_share;
    /* parsed */
    st_split split;
    uint32_t ks[ST_EVAL_MAXK], nk, metric_ki;
    int metric;           /* ST_M_*, or ST_NMETRICS for AUC */
    int prior_mode;       /* 0 fit on validation users, 1 the model's, 2 fixed */
    int prior_shape;      /* ST_PRIOR_SHAPE_* */
    double prior_fixed;
} st_eval_cli;

/* The split form's data: every event, its role, the training interactions. */
typedef struct {
    st_event_table table;
    uint8_t *role;
    double cut;
    st_interactions x;
    int have_x;
} st_split_data;

void st_eval_cli_init(st_eval_cli *o);

/* Appends the evaluation options to opts at *n; tune's help differs a little. */
void st_eval_cli_add(st_eval_cli *o, st_opt *opts, int *n, int tune);

/* Checks and completes o after parsing: ST_CLI_GO, or an exit code after
 * printing what is wrong. */
int st_eval_cli_finish(st_eval_cli *o, const st_cmd_doc *doc, int split_form);

/* What st_evaluate needs of the options. */
st_evaluate_opts st_eval_cli_evaluate_opts(const st_eval_cli *o, int threads);

/* Reads paths, splits them by o->split and builds the training part:
 * ST_EXIT_OK, or an exit code after printing why (cmd names the command). */
int st_split_data_read(const char *cmd, char **paths, int npaths, const st_read_opts *ro, const st_weighting *w,
                       const st_eval_cli *o, st_split_data *d);
void st_split_data_free(st_split_data *d);

/* The facts shared by every output: data, split, model, users. */
void st_eval_cli_describe(st_facts *fa, char **inputs, int ninputs, const st_eval_cli *o, const st_model *m,
                          const st_eval_set *set, const st_evaluation *r, double cut, double train_seconds,
                          int split_form);

/* Saves m to path with the evaluation's figures in its META. */
int st_eval_cli_save(st_model *m, const st_evaluation *r, const st_eval_cli *o, const char *path, char *err);

#endif
