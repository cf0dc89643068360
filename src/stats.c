/* stats: counters, the latency histogram, the HTTP status slots and the
 * nanosecond clock (stats.h). No locks: each st_stats has one writer, and
 * readers sum with relaxed loads.
 */
#include "stats.h"

#include <math.h>
#include <time.h>

const int st_http_codes[ST_HTTP_CODES] = {200, 304, 400, 401, 404, 405, 413, 417, 429, 431,
                                          500, 501, 503, 505, 0,   0,   0,   0,   0,   0};

int st_http_code_slot(int status)
{
    for (int i = 0; i < ST_HTTP_CODES - 1; i++)
        if (st_http_codes[i] == status) return i;
    return ST_HTTP_CODES - 1;
}

void st_stats_http(st_stats *stats, int status)
{
    if (stats) st_stat_add(&stats->http_codes[st_http_code_slot(status)], 1);
}

int st_latency_bucket(uint64_t ns)
{
    if (ns < 32) return (int)ns;
    int msb = 63 - __builtin_clzll(ns);
    int b = 32 + (msb - 5) * 16 + (int)((ns >> (msb - 4)) & 15);
    return b < ST_LAT_BUCKETS ? b : ST_LAT_BUCKETS - 1;
}

double st_latency_bucket_ns(int b)
{
    if (b < 32) return b;
    int msb = (b - 32) / 16 + 5, sub = (b - 32) % 16;
    double lo = (double)((uint64_t)(16 + sub) << (msb - 4)), width = (double)(1ull << (msb - 4));
    return lo + width / 2;
}

void st_stats_record(st_cmdstat *s, uint64_t ns, int failed)
{
    st_stat_add(&s->calls, 1);
    st_stat_add(&s->nanos, ns);
    if (failed) st_stat_add(&s->failed, 1);
    st_stat_add(&s->hist[st_latency_bucket(ns)], 1);
}

double st_latency_percentile(const st_cmdstat *s, double q)
{
    uint64_t total = 0;
    for (int b = 0; b < ST_LAT_BUCKETS; b++) total += st_stat_get(&s->hist[b]);
    if (total == 0) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)total), seen = 0;
    if (want == 0) want = 1;
    for (int b = 0; b < ST_LAT_BUCKETS; b++) {
        seen += st_stat_get(&s->hist[b]);
        if (seen >= want) return st_latency_bucket_ns(b);
    }
    return st_latency_bucket_ns(ST_LAT_BUCKETS - 1);
}

void st_stats_add(st_stats *to, const st_stats *s)
{
    for (int c = 0; c < ST_MAX_COMMANDS; c++) {
        st_stat_add(&to->cmd[c].calls, st_stat_get(&s->cmd[c].calls));
        st_stat_add(&to->cmd[c].nanos, st_stat_get(&s->cmd[c].nanos));
        st_stat_add(&to->cmd[c].failed, st_stat_get(&s->cmd[c].failed));
        st_stat_add(&to->cmd[c].rejected, st_stat_get(&s->cmd[c].rejected));
        if (st_stat_get(&s->cmd[c].calls) == 0) continue;
        for (int b = 0; b < ST_LAT_BUCKETS; b++) st_stat_add(&to->cmd[c].hist[b], st_stat_get(&s->cmd[c].hist[b]));
    }
    st_stat_add(&to->connections, st_stat_get(&s->connections));
    st_stat_add(&to->rejected_connections, st_stat_get(&s->rejected_connections));
    st_stat_add(&to->commands, st_stat_get(&s->commands));
    st_stat_add(&to->protocol_errors, st_stat_get(&s->protocol_errors));
    st_stat_add(&to->net_in, st_stat_get(&s->net_in));
    st_stat_add(&to->net_out, st_stat_get(&s->net_out));
    st_stat_add(&to->dropped_output, st_stat_get(&s->dropped_output));
    st_stat_add(&to->idle_closed, st_stat_get(&s->idle_closed));
    st_stat_add(&to->http_connections, st_stat_get(&s->http_connections));
    for (int c = 0; c < ST_HTTP_CODES; c++) st_stat_add(&to->http_codes[c], st_stat_get(&s->http_codes[c]));
}

uint64_t st_nanos(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
