/* events: read engagement logs, one event per line.
 *
 * A line is `user, segment[, weight[, kind[, timestamp]]]`, separated by tabs
 * (TSV), commas (CSV, with RFC 4180 quoting) or runs of spaces; the separator
 * is detected from the first non-blank line of each file. The file may be
 * gzip-compressed (detected from its bytes, not its name); "-" reads stdin.
 * A header line is detected (a non-numeric weight column, or a first column
 * named like user/user_id/userID) or forced with header = 0 / 1.
 *
 * Weight: a finite number >= 0, 1 when absent or empty. Kind: any string,
 * absent when empty. Timestamp: unix seconds (decimals allowed) or ISO 8601
 * (2026-01-31, 2026-01-31T12:00:00Z, with an optional +hh:mm offset).
 *
 * Owns: nothing beyond the call. The event passed to the callback points into
 * an internal buffer valid only during the callback.
 * Never: prints. Malformed lines become "FILE:LINE: reason" in err (stop mode)
 * or are counted in st_read_stats (skip mode, the first few reasons kept).
 */
#ifndef STARLING_EVENTS_H
#define STARLING_EVENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *user;
    size_t user_len;
    const char *segment;
    size_t segment_len;
    double weight;    /* 1 when absent */
    const char *kind; /* NULL when absent */
    size_t kind_len;
    double ts;        /* unix seconds; valid when has_ts */
    int has_ts;
    const char *file; /* for messages */
    uint64_t line;    /* 0 when unknown (a read that began mid-file) */
} st_event;

typedef struct {
    int skip_errors;  /* 0: the first malformed line stops the read */
    size_t max_line;  /* bytes, including the newline; 0 = default 1 MiB */
    int header;       /* -1 auto, 0 never, 1 always */
    /* Parts of a file, for readers that share one input (MPI ranks):
     * - a byte range [begin, end) of the uncompressed input (end 0 = to the
     *   end): the lines whose first byte lies in it; a header is looked for
     *   only when begin is 0;
     * - every stride-th data line from the phase-th (stride 0 or 1 = all). */
    uint64_t begin, end;
    uint32_t stride, phase;
} st_read_opts;

#define ST_READ_KEEP_REASONS 5

typedef struct {
    uint64_t lines;    /* lines seen, including header and blank lines */
    uint64_t events;   /* events passed to the callback */
    uint64_t skipped;  /* malformed lines skipped (skip mode) */
    char reasons[ST_READ_KEEP_REASONS][256]; /* the first skipped lines' messages */
} st_read_stats;

/* Called once per event. A non-zero return stops the read; the callback's own
 * message in err is kept. */
typedef int (*st_event_fn)(const st_event *ev, void *ctx, char *err);

void st_read_opts_default(st_read_opts *o);

/* Reads one file (or "-") and calls fn for every event. stats accumulates
 * across calls (zero it first). Returns 0, or -1 with a message in err
 * (I/O error, malformed line in stop mode, or the callback's failure). */
int st_events_read(const char *path, const st_read_opts *o, st_event_fn fn, void *ctx,
                   st_read_stats *stats, char *err);

/* Parses one timestamp field (the forms above). 0 on success. */
int st_parse_timestamp(const char *s, size_t len, double *out);

/* Parses a line already split off a file: exposed for the fuzzer and tests.
 * sep is '\t', ',' or ' '. line is modified in place (CSV unquoting). Returns
 * 0 with *ev filled, 1 for a blank line, -1 with a reason in why. */
int st_events_parse_line(char *line, size_t len, char sep, st_event *ev, char *why, size_t whylen);

#endif
