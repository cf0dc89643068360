/* stats: the server's counters, the latency histogram and the clock they
 * are read with. A leaf: it knows no command, connection or model.
 *
 * Statistics are kept per thread (each event loop owns an st_stats); a
 * counter has a single writer, so an update is a relaxed load and store
 * (st_stat_add), and a reader on another thread sums them (st_stats_add)
 * with relaxed loads: a figure may be a few updates old, never torn.
 *
 * Latencies go to a log-linear histogram of nanoseconds: exact below 32 ns,
 * then 16 buckets per power of two (about 6% wide); a bucket is reported at
 * its middle (st_latency_bucket_ns), by INFO's percentiles and /metrics'
 * histogram alike.
 *
 * HTTP responses are counted per status code: slot st_http_code_slot(code)
 * of st_stats.http_codes; st_http_codes lists the code of each slot (the
 * last slot, code 0, counts any other).
 */
#ifndef STARLING_STATS_H
#define STARLING_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define ST_MAX_COMMANDS 64 /* rows of the command table (commands.c checks) */
#define ST_LAT_BUCKETS (32 + 40 * 16)
#define ST_HTTP_CODES 20

typedef struct {
    atomic_uint_fast64_t calls, nanos, failed, rejected;
    atomic_uint_fast64_t hist[ST_LAT_BUCKETS];
} st_cmdstat;

typedef struct {
    st_cmdstat cmd[ST_MAX_COMMANDS]; /* indexed like the command table */
    atomic_uint_fast64_t connections, rejected_connections, commands, protocol_errors;
    atomic_uint_fast64_t net_in, net_out, dropped_output, idle_closed;
    atomic_uint_fast64_t http_connections, http_codes[ST_HTTP_CODES];
} st_stats;

extern const int st_http_codes[ST_HTTP_CODES];

/* The slot of st_stats.http_codes that counts status. */
int st_http_code_slot(int status);

/* Adds v to a counter that only the calling thread writes. */
static inline void st_stat_add(atomic_uint_fast64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v, memory_order_relaxed);
}

/* A counter's value, read from any thread. */
static inline uint64_t st_stat_get(const atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* Counts one HTTP response of this status in stats (NULL: not counted). */
void st_stats_http(st_stats *stats, int status);

/* Records one call of a command that took ns nanoseconds (failed: it
 * replied with an error). */
void st_stats_record(st_cmdstat *s, uint64_t ns, int failed);

/* Adds every counter of from into to (to's writer must be the caller). */
void st_stats_add(st_stats *to, const st_stats *from);

/* The histogram bucket of a latency, and the middle of bucket b in
 * nanoseconds. */
int st_latency_bucket(uint64_t ns);
double st_latency_bucket_ns(int b);

/* The q-quantile (0..1) of a command's latencies in nanoseconds, at the
 * middle of its bucket; 0 when it was never called. */
double st_latency_percentile(const st_cmdstat *s, double q);

/* Monotonic nanoseconds (CLOCK_MONOTONIC). */
uint64_t st_nanos(void);

#endif
