/* metrics: the server's state in the Prometheus text exposition format,
 * for GET /metrics (docs/OPERATIONS.md lists every name).
 *
 * Formats the snapshot it is handed and nothing else: the caller (the HTTP
 * API, through the server's operations) sums the statistics and reads the
 * server's figures, so metrics depends on no module of the serve layer but
 * the leaf ones. Never allocates beyond the output buffer.
 */
#ifndef STARLING_METRICS_H
#define STARLING_METRICS_H

#include <stddef.h>

#include "resp.h"
#include "service.h"

typedef struct {
    const st_stats *stats;        /* every thread's, summed */
    const st_server_info *info;
    const st_served *model;       /* NULL before a model is loaded */
    size_t ncommands;             /* rows of the command table (stats->cmd's indices) */
    const char *(*command_name)(size_t i); /* row i's name: "segments", "model|info" */
} st_metrics_snapshot;

/* Appends the exposition of snap to out, one text/plain body. */
void st_metrics_text(const st_metrics_snapshot *snap, resp_out *out);

#endif
