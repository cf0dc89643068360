/* ann: an approximate index over the user factors for AUDIENCE and
 * LOOKALIKE top N (an inverted-file index, IVF), built from the model alone.
 *
 * Legend: users m, rank k, lists L (about sqrt m), the query x (k floats)
 * and its blend add. The users are clustered by k-means into L lists; each
 * list keeps its centroid c, its radius r = max |u - c| over its users, and
 * its users' model rows (for a float model also a contiguous copy of their
 * vectors, in list order, so a probed list is read as a stream). A query
 * visits lists in decreasing centroid score c . x; since u . x <= c . x +
 * r |x| for every user of a list, it stops when no list left has a bound
 * that can beat its N-th best score (the answer is then exact), or when it
 * has read its budget of rows (the answer is then approximate). The budget is chosen at
 * build time on sample queries so that recall@N reaches the target, and the
 * recall reached on other sample queries is measured and kept.
 * Every score returned is the exact one (st_score_rows over the user's very
 * floats, as the exact scan computes it); positions, skip (hidden rows),
 * exclude and the extra (overlay) users mean what they mean in scan.h; the
 * extra users are all scored, as the exact scan scores them.
 * Owns: its lists, centroids and copies. Never: touches the model after the
 * build except to read int8 rows, blocks, or keeps state between queries.
 */
#ifndef STARLING_ANN_H
#define STARLING_ANN_H

#include <stdint.h>

#include "model.h"
#include "scan.h"

/* When the server uses the index: never (no index is built; APPROX in a
 * request is answered by the exact scan), when a request asks (APPROX), or
 * for every AUDIENCE and LOOKALIKE unless a request says EXACT. */
enum { ST_ANN_OFF = 0, ST_ANN_REQUEST = 1, ST_ANN_ON = 2 };

typedef struct st_ann st_ann;

/* What a build measured, for INFO, /metrics and the bench. */
typedef struct {
    uint32_t lists, users, k;
    uint64_t bytes;         /* memory of the index */
    double build_seconds;   /* clustering, lists, copies and the recall check */
    uint64_t probe_rows;    /* the rows a query reads at most (its budget) */
    uint32_t recall_at;     /* N of the recall check */
    uint32_t recall_queries;
    double recall;          /* mean recall@N of the check's queries against the exact scan */
    double target;          /* the recall the budget was chosen for */
} st_ann_stats;

typedef struct {
    uint32_t n;          /* users selected */
    uint64_t matching;   /* users scored (not skipped) at least min: a lower bound of the exact count */
    uint32_t lists;      /* lists probed */
    uint64_t scored;     /* model rows scored */
    int exact;           /* 1: stopped by the bound (or every list probed): the exact scan's answer */
} st_ann_result;

/* Builds the index of m's users: L lists (0: about sqrt m), k-means from
 * seed, then a budget chosen on sample segment queries for recall@N at
 * least target (0 < target <= 1), measured on other ones. threads: for the
 * clustering and the check's exact scans (0: every CPU). Allocates (about
 * the user factors' size for a float model, 4 bytes a user for int8);
 * blocks for seconds at millions of users. NULL with err set on failure. */
st_ann *st_ann_build(const st_model *m, uint32_t lists, double target, uint64_t seed, int threads, char *err);

void st_ann_free(st_ann *a);

void st_ann_get_stats(const st_ann *a, st_ann_stats *s);

/* The best q->want users (as st_scan_best, best first, ties to the lower
 * position) among those the index probes: lists in decreasing centroid
 * score until the bound proves the rest cannot enter (exact) or max_rows model rows are
 * read (0: the build's budget; UINT64_MAX: every list), plus every extra
 * user. q->count is ignored: r->matching counts the users scored at least
 * q->min. m is the model a was built from. 0, or -1 on out-of-memory. */
int st_ann_best(const st_ann *a, const st_model *m, const st_scan_query *q, uint64_t max_rows, uint32_t *out_idx,
                float *out_score, st_ann_result *r);

/* The naive reference of st_ann_best for tests: the lists probed in the
 * same order with the same budget and stop rule, each user scored by st_dot
 * one at a time, the stop rule's N-th best found by selection over every
 * candidate, all candidates fully sorted. Same contract. */
int st_ann_best_reference(const st_ann *a, const st_model *m, const st_scan_query *q, uint64_t max_rows,
                          uint32_t *out_idx, float *out_score, st_ann_result *r);

/* The list of model row u (for tests: the lists partition the users). */
uint32_t st_ann_list_of(const st_ann *a, uint32_t u);
/* List l's centroid (k floats) and radius. */
const float *st_ann_centroid(const st_ann *a, uint32_t l, float *radius);

/* The process-wide setting (serve --approx, --approx-recall): mode ST_ANN_*
 * and the recall target of builds. */
void st_ann_set_mode(int mode, double target);
int st_ann_mode(void);
double st_ann_target(void);
const char *st_ann_mode_name(int mode);

#endif
