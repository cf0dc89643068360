/* evalout: an evaluation's outputs, written from the one result
 * (st_evaluation) every form of `starling eval` and `tune` ends in.
 *
 * The terminal table (the run's facts, every ranker's metrics with their
 * intervals, the model's lifts, LOOKALIKE and SIMILAR, per-segment recall,
 * calibration), JSON (everything, for machines), CSV (the metrics), the HTML
 * report (report.c) and --dump (what an independent check needs to recompute
 * every figure). Each writes to the FILE, directory or JSON it is handed;
 * none decides which outputs a run wants (the command-line layer does).
 */
#ifndef STARLING_EVALOUT_H
#define STARLING_EVALOUT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "evaluate.h"
#include "model.h"

/* The facts of a run ("key", "value" lines: data, split, model, users...),
 * shown first by every output. */
#define ST_MAX_FACTS 40
typedef struct {
    const char *kv[2 * ST_MAX_FACTS + 1]; /* NULL-terminated pairs */
    char buf[ST_MAX_FACTS][2][256];
    int n;
} st_facts;

void st_facts_add(st_facts *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The terminal table. */
void st_evalout_table(FILE *f, const st_facts *fa, const st_evaluation *r, const st_evaluate_opts *o,
                      const st_model *m);

/* Everything as JSON (the caller owns the result); loss: per iteration, may be NULL. */
json_t *st_evalout_json(const st_facts *fa, const st_evaluation *r, const st_evaluate_opts *o, const st_model *m,
                        const double *loss, uint32_t iterations);

/* ranker,metric,k,mean,ci95,users lines. */
void st_evalout_csv(FILE *f, const st_evaluation *r, const st_evaluate_opts *o);

/* DIR/index.html. 0, or -1 with err. */
int st_evalout_report(const char *dir, const st_facts *fa, const st_evaluation *r, const st_evaluate_opts *o,
                      const st_model *m, const double *loss, uint32_t iterations, char *err);

/* The dump: users.tsv, seen.tsv, test.tsv, segments.tsv, scores.f32 (and
 * one .f32 per baseline ranked), metrics.json (the JSON given). 0, or -1. */
int st_evalout_dump(const char *dir, const st_eval_set *set, const st_model *m, const st_evaluation *r,
                    const st_evaluate_opts *o, json_t *metrics, int threads, char *err);

#endif
