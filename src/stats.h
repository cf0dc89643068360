/* stats: the serve layer's counters, its latency histogram and its clock.
 *
 * A leaf: every other part of the server (the command path that records,
 * the loops that count connections and bytes, INFO and /metrics that read)
 * depends on it, and it depends on nothing of theirs.
 *
 * Counters are kept per thread, single writer: updates are plain relaxed
 * loads and stores (st_stat_bump), and a reader on any thread sums the
 * threads' copies (st_stats_add). Latencies go to a log-linear histogram of
 * nanoseconds: exact below 32 ns, then 16 buckets per power of two (about 6%
 * wide). HTTP responses are counted per status code, one slot per code of
 * st_http_codes and a last slot for any other.
 */
#ifndef STARLING_STATS_H
#define STARLING_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_COMMANDS 96
#define ST_LAT_BUCKETS (32 + 40 * 16)
#define ST_HTTP_CODES 20
#define ST_ERROR_CODES 12

typedef struct {
    atomic_uint_fast64_t calls, nanos, failed, rejected;
    atomic_uint_fast64_t hist[ST_LAT_BUCKETS];
} st_cmdstat;

typedef struct {
    st_cmdstat cmd[ST_MAX_COMMANDS]; /* indexed as the command table's rows */
    atomic_uint_fast64_t connections, rejected_connections, commands, protocol_errors;
    atomic_uint_fast64_t net_in, net_out, dropped_output, idle_closed;
    atomic_uint_fast64_t http_connections, http_codes[ST_HTTP_CODES];
    /* refused: wrong passwords, commands past the user's rights, HTTP requests on
     * the RESP port, requests not complete within request-timeout, clients
     * refused by protected mode */
    atomic_uint_fast64_t auth_failures, acl_denied, cross_protocol, request_timeouts, protected_refused;
    /* error replies by their code (INFO errorstats), one slot per code of
     * st_error_codes and a last one for any other */
    atomic_uint_fast64_t errors[ST_ERROR_CODES];
} st_stats;

/* The error codes counted in their own slots, and the slot of an error
 * reply's text (its first word: "ERR", "NOAUTH", ...). */
extern const char *const st_error_codes[ST_ERROR_CODES];
int st_error_slot(const char *reply, size_t len);

/* Monotonic nanoseconds. */
uint64_t st_nanos(void);

/* *a += v by its only writer (relaxed: readers may see it a little late). */
static inline void st_stat_bump(atomic_uint_fast64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v, memory_order_relaxed);
}

/* The histogram bucket of a latency, and the middle of bucket b in
 * nanoseconds (the value INFO's percentiles report). */
int st_latency_bucket(uint64_t ns);
double st_latency_bucket_ns(int b);

/* One command's call: its count, time, failure and histogram bucket. */
void st_stats_record(st_cmdstat *s, uint64_t ns, int failed);

/* out += every counter of s (out is the caller's, s another thread's). */
void st_stats_add(st_stats *out, const st_stats *s);

/* The HTTP status codes counted in their own slots (0 = unused slot), and
 * the slot of a status: its own, or the last one for any other. */
extern const int st_http_codes[ST_HTTP_CODES];
int st_http_code_slot(int status);

#endif
