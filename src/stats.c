/* stats: counters, latency buckets and the clock (stats.h). */
#include "stats.h"

#include <string.h>

#include <time.h>

uint64_t st_nanos(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
    st_stat_bump(&s->calls, 1);
    st_stat_bump(&s->nanos, ns);
    if (failed) st_stat_bump(&s->failed, 1);
    st_stat_bump(&s->hist[st_latency_bucket(ns)], 1);
}

static void add(atomic_uint_fast64_t *to, const atomic_uint_fast64_t *from)
{
    st_stat_bump(to, atomic_load_explicit(from, memory_order_relaxed));
}

void st_stats_add(st_stats *out, const st_stats *s)
{
    for (int c = 0; c < ST_MAX_COMMANDS; c++) {
        add(&out->cmd[c].calls, &s->cmd[c].calls);
        add(&out->cmd[c].nanos, &s->cmd[c].nanos);
        add(&out->cmd[c].failed, &s->cmd[c].failed);
        add(&out->cmd[c].rejected, &s->cmd[c].rejected);
        if (atomic_load_explicit(&s->cmd[c].calls, memory_order_relaxed) == 0) continue;
        for (int b = 0; b < ST_LAT_BUCKETS; b++) add(&out->cmd[c].hist[b], &s->cmd[c].hist[b]);
    }
    add(&out->connections, &s->connections);
    add(&out->rejected_connections, &s->rejected_connections);
    add(&out->commands, &s->commands);
    add(&out->protocol_errors, &s->protocol_errors);
    add(&out->net_in, &s->net_in);
    add(&out->net_out, &s->net_out);
    add(&out->dropped_output, &s->dropped_output);
    add(&out->idle_closed, &s->idle_closed);
    add(&out->http_connections, &s->http_connections);
    add(&out->auth_failures, &s->auth_failures);
    add(&out->acl_denied, &s->acl_denied);
    add(&out->cross_protocol, &s->cross_protocol);
    add(&out->request_timeouts, &s->request_timeouts);
    add(&out->protected_refused, &s->protected_refused);
    for (int c = 0; c < ST_HTTP_CODES; c++) add(&out->http_codes[c], &s->http_codes[c]);
    for (int c = 0; c < ST_ERROR_CODES; c++) add(&out->errors[c], &s->errors[c]);
}

const int st_http_codes[ST_HTTP_CODES] = {200, 304, 400, 401, 404, 405, 413, 417, 429, 431,
                                          500, 501, 503, 505, 403, 415, 421, 204, 0,   0};

int st_http_code_slot(int status)
{
    for (int i = 0; i < ST_HTTP_CODES - 1; i++)
        if (st_http_codes[i] == status) return i;
    return ST_HTTP_CODES - 1;
}

const char *const st_error_codes[ST_ERROR_CODES] = {"ERR",      "NOAUTH",  "WRONGPASS", "NOPERM",    "NOPROTO",
                                                    "LOADING",  "MISCONF", "WRONGTYPE", "DENIED",    "BUSY",
                                                    "EXECABORT", "OTHER"};

int st_error_slot(const char *reply, size_t len)
{
    size_t w = 0;
    while (w < len && reply[w] != ' ' && reply[w] != '\r') w++;
    for (int i = 0; i < ST_ERROR_CODES - 1; i++)
        if (strlen(st_error_codes[i]) == w && memcmp(st_error_codes[i], reply, w) == 0) return i;
    return ST_ERROR_CODES - 1;
}
