/* metrics: the server's state in the Prometheus text exposition format
 * (version 0.0.4), for GET /metrics.
 *
 * It formats a snapshot it is handed (the summed statistics, the server's
 * figures, the served model) and never asks the server for anything, so
 * /metrics and INFO, which read the same snapshot, never disagree.
 * docs/OPERATIONS.md lists every name.
 */
#ifndef STARLING_METRICS_H
#define STARLING_METRICS_H

#include "resp.h"
#include "served.h"
#include "services.h"
#include "stats.h"

typedef struct {
    const st_stats *stats;      /* every thread's statistics, summed */
    const st_server_info *info; /* the server's figures */
    const st_served *model;     /* NULL before a model is loaded */
} st_metrics_snapshot;

/* Appends the exposition of snap to o as one text/plain body. Does not
 * allocate beyond o's growth (o->overflow on out-of-memory). */
void st_metrics_text(const st_metrics_snapshot *snap, resp_out *o);

#endif
