/* report: a self-contained HTML report of one evaluation run.
 *
 * One file, DIR/index.html: the run's description, the metric table, and
 * inline SVG plots (recall@K and NDCG@K of the model against the baselines,
 * the loss per training iteration, the reliability diagram, the score
 * histogram of held-out and other pairs). No network, no external asset, no
 * script library: the plots are plain SVG written here, and a tiny inline
 * script only adds hover read-outs, so the page renders the same offline.
 * Never: computes a metric (eval.c does), reads a model.
 */
#ifndef STARLING_REPORT_H
#define STARLING_REPORT_H

#include <stdint.h>

#include "ranking.h"
#include "segeval.h"

#define ST_REPORT_HIST_BINS 40

typedef struct {
    const char *title;           /* "starling eval: ..." */
    const char *const *facts;    /* "key", "value" pairs, NULL-terminated */
#define ST_REPORT_RANKERS 5
    const st_eval_summary *sum[ST_REPORT_RANKERS]; /* model first, then the baselines; NULL = not ranked */
    const char *names[ST_REPORT_RANKERS];          /* their names */
    const char *notes;                             /* baselines left out and why, may be NULL */
    const double *loss;          /* per iteration, may be NULL */
    uint32_t iterations;
    const st_reliability *rel;   /* may be NULL (uncalibrated) */
    double calib_a, calib_b;
    /* score histogram: bins over [hist_lo, hist_hi), weighted shares */
    double hist_lo, hist_hi;
    double hist_pos[ST_REPORT_HIST_BINS], hist_neg[ST_REPORT_HIST_BINS];
    /* per-segment recall at one K */
    uint32_t nseg, seg_k;
    const char *const *seg_names;
    const uint32_t *seg_users;
    const double *seg_recall;
    const st_segeval *seg_eval;  /* LOOKALIKE and SIMILAR, may be NULL */
} st_report;

/* Writes DIR/index.html (creating DIR). -1 with a reason. */
int st_report_write(const char *dir, const st_report *r, char *err);

#endif
