/* metrics: the server's state in the Prometheus text exposition format
 * (version 0.0.4), for GET /metrics.
 *
 * Everything here is formatted from the snapshot the caller hands over, the
 * same figures INFO reads (the per-thread statistics summed, the server's
 * info, the served model), so the two never disagree; metrics calls nothing
 * of the server's.
 * Per command (only those called at least once, as INFO commandstats):
 * calls, failures, rejections and a latency histogram in seconds. The
 * histogram's buckets are cumulative counts taken from the server's own
 * log-linear histogram (about 6% wide buckets), each of its buckets counted
 * at its middle, as INFO's percentiles are; its _count is the +Inf bucket
 * and its _sum the total time. docs/OPERATIONS.md lists every name.
 */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ann.h"
#include "util.h"
#include "version.h"


static void out(resp_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(resp_out *o, const char *fmt, ...)
{
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n > 0) resp_raw(o, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

static void family(resp_out *o, const char *name, const char *type, const char *help)
{
    out(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with backslash, double quote and newline escaped. */
static void label_value(resp_out *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') resp_raw(o, "\\\\", 2);
        else if (*s == '"') resp_raw(o, "\\\"", 2);
        else if (*s == '\n') resp_raw(o, "\\n", 2);
        else resp_raw(o, s, 1);
    }
}

static uint64_t ld(const atomic_uint_fast64_t *a) { return atomic_load_explicit(a, memory_order_relaxed); }

/* Bucket bounds in seconds: 1, 2.5, 5 per decade from 1 us to 10 s. */
static const double bounds[] = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
                                5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,  0.25, 0.5,  1,    2.5,  5,    10};

/* Commands, from either protocol. */
static void commands_text(const st_metrics_snapshot *snap, resp_out *o)
{
    const st_stats *s = snap->stats;
    size_t ncmd = snap->ncommands;
    const char *(*name)(size_t) = snap->command_name;
#define st_command_name(i) name(i)
    family(o, "starling_commands_total", "counter", "Commands run, per command (RESP and HTTP alike).");
    for (size_t i = 0; i < ncmd; i++)
        if (ld(&s->cmd[i].calls) || ld(&s->cmd[i].rejected))
            out(o, "starling_commands_total{command=\"%s\"} %llu\n", st_command_name(i),
                (unsigned long long)ld(&s->cmd[i].calls));
    family(o, "starling_command_errors_total", "counter", "Commands that replied with an error, per command.");
    for (size_t i = 0; i < ncmd; i++)
        if (ld(&s->cmd[i].calls) || ld(&s->cmd[i].rejected))
            out(o, "starling_command_errors_total{command=\"%s\"} %llu\n", st_command_name(i),
                (unsigned long long)ld(&s->cmd[i].failed));
    family(o, "starling_command_rejections_total", "counter",
           "Commands refused before they ran (arguments, authentication), per command.");
    for (size_t i = 0; i < ncmd; i++)
        if (ld(&s->cmd[i].calls) || ld(&s->cmd[i].rejected))
            out(o, "starling_command_rejections_total{command=\"%s\"} %llu\n", st_command_name(i),
                (unsigned long long)ld(&s->cmd[i].rejected));
    family(o, "starling_command_duration_seconds", "histogram",
           "Time from dispatch to reply per command (heavy ones include their wait for the pool).");
    for (size_t i = 0; i < ncmd; i++) {
        const st_cmdstat *c = &s->cmd[i];
        if (!ld(&c->calls)) continue;
        uint64_t cum = 0;
        int b = 0;
        for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
            for (; b < ST_LAT_BUCKETS && st_latency_bucket_ns(b) <= bounds[k] * 1e9; b++) cum += ld(&c->hist[b]);
            out(o, "starling_command_duration_seconds_bucket{command=\"%s\",le=\"%g\"} %llu\n", st_command_name(i),
                bounds[k], (unsigned long long)cum);
        }
        for (; b < ST_LAT_BUCKETS; b++) cum += ld(&c->hist[b]);
        out(o, "starling_command_duration_seconds_bucket{command=\"%s\",le=\"+Inf\"} %llu\n", st_command_name(i),
            (unsigned long long)cum);
        out(o, "starling_command_duration_seconds_sum{command=\"%s\"} %.9f\n", st_command_name(i),
            (double)ld(&c->nanos) * 1e-9);
        out(o, "starling_command_duration_seconds_count{command=\"%s\"} %llu\n", st_command_name(i),
            (unsigned long long)cum);
    }
#undef st_command_name
}

/* HTTP responses, connections and traffic. */
static void traffic_text(const st_metrics_snapshot *snap, resp_out *o)
{
    const st_stats *s = snap->stats;
    const st_server_info si = *snap->info;
    family(o, "starling_http_responses_total", "counter", "HTTP responses sent, per status code.");
    for (int i = 0; i < ST_HTTP_CODES; i++) {
        if (i < ST_HTTP_CODES - 1 && !st_http_codes[i]) continue;
        uint64_t n = ld(&s->http_codes[i]);
        if (i == ST_HTTP_CODES - 1) {
            if (n) out(o, "starling_http_responses_total{code=\"other\"} %llu\n", (unsigned long long)n);
        } else {
            out(o, "starling_http_responses_total{code=\"%d\"} %llu\n", st_http_codes[i], (unsigned long long)n);
        }
    }

    /* Connections and traffic. */
    family(o, "starling_connections", "gauge", "Open client connections, per protocol.");
    /* The counters are read one after the other while connections come and
     * go: a difference is clamped at 0 rather than wrapping. */
    uint64_t http_acc = ld(&s->http_connections), all_acc = ld(&s->connections);
    out(o, "starling_connections{protocol=\"resp\"} %llu\n",
        (unsigned long long)(si.clients > si.http_clients ? si.clients - si.http_clients : 0));
    out(o, "starling_connections{protocol=\"http\"} %llu\n", (unsigned long long)si.http_clients);
    family(o, "starling_connections_accepted_total", "counter", "Client connections accepted, per protocol.");
    out(o, "starling_connections_accepted_total{protocol=\"resp\"} %llu\n",
        (unsigned long long)(all_acc > http_acc ? all_acc - http_acc : 0));
    out(o, "starling_connections_accepted_total{protocol=\"http\"} %llu\n", (unsigned long long)http_acc);
    family(o, "starling_connections_rejected_total", "counter", "Connections refused at maxclients.");
    out(o, "starling_connections_rejected_total %llu\n", (unsigned long long)ld(&s->rejected_connections));
    family(o, "starling_maxclients", "gauge", "The maxclients setting.");
    out(o, "starling_maxclients %llu\n", (unsigned long long)si.maxclients);
    family(o, "starling_blocked_clients", "gauge", "Clients waiting for a heavy command.");
    out(o, "starling_blocked_clients %llu\n", (unsigned long long)si.blocked_clients);
    family(o, "starling_heavy_queue_length", "gauge", "Heavy commands waiting for a worker.");
    out(o, "starling_heavy_queue_length %llu\n", (unsigned long long)si.heavy_queued);
    family(o, "starling_protocol_errors_total", "counter", "Malformed requests (RESP or HTTP); each closed its connection.");
    out(o, "starling_protocol_errors_total %llu\n", (unsigned long long)ld(&s->protocol_errors));
    family(o, "starling_output_limit_disconnections_total", "counter", "Clients dropped at the output limit.");
    out(o, "starling_output_limit_disconnections_total %llu\n", (unsigned long long)ld(&s->dropped_output));
    family(o, "starling_idle_timeout_disconnections_total", "counter", "Clients closed after the idle timeout.");
    out(o, "starling_idle_timeout_disconnections_total %llu\n", (unsigned long long)ld(&s->idle_closed));
    family(o, "starling_auth_failures_total", "counter", "Failed AUTHs and wrong HTTP bearer tokens.");
    out(o, "starling_auth_failures_total %llu\n", (unsigned long long)ld(&s->auth_failures));
    family(o, "starling_acl_denied_total", "counter", "Commands refused because the user lacks the right (NOPERM, 403).");
    out(o, "starling_acl_denied_total %llu\n", (unsigned long long)ld(&s->acl_denied));
    family(o, "starling_cross_protocol_total", "counter",
           "Connections to the RESP port closed for sending an HTTP request line or a Host: header.");
    out(o, "starling_cross_protocol_total %llu\n", (unsigned long long)ld(&s->cross_protocol));
    family(o, "starling_request_timeout_disconnections_total", "counter",
           "Connections cut for not completing a started request within request-timeout.");
    out(o, "starling_request_timeout_disconnections_total %llu\n", (unsigned long long)ld(&s->request_timeouts));
    family(o, "starling_protected_mode_refusals_total", "counter",
           "Non-loopback clients refused by protected mode (bound beyond loopback with no password).");
    out(o, "starling_protected_mode_refusals_total %llu\n", (unsigned long long)ld(&s->protected_refused));
    family(o, "starling_network_received_bytes_total", "counter", "Bytes read from clients.");
    out(o, "starling_network_received_bytes_total %llu\n", (unsigned long long)ld(&s->net_in));
    family(o, "starling_network_sent_bytes_total", "counter", "Bytes written to clients.");
    out(o, "starling_network_sent_bytes_total %llu\n", (unsigned long long)ld(&s->net_out));
}

/* The approximate index (ann.h) of the served model, once built. */
static void approx_text(const st_served *model, resp_out *o)
{
    const st_ann *a = atomic_load(&model->ann);
    st_ann_stats st = {0};
    if (a) st_ann_get_stats(a, &st);
    family(o, "starling_approx_ready", "gauge", "1 once the approximate index of the served model is built.");
    out(o, "starling_approx_ready %d\n", a != NULL);
    family(o, "starling_approx_memory_bytes", "gauge", "Memory of the approximate index.");
    out(o, "starling_approx_memory_bytes %llu\n", (unsigned long long)st.bytes);
    family(o, "starling_approx_build_seconds", "gauge", "Seconds the approximate index took to build.");
    out(o, "starling_approx_build_seconds %.3f\n", st.build_seconds);
    family(o, "starling_approx_recall", "gauge", "Recall@N of the index against the exact scan, measured at build time.");
    out(o, "starling_approx_recall %.4f\n", st.recall);
    family(o, "starling_approx_queries_total", "counter", "AUDIENCE and LOOKALIKE scans the index answered.");
    out(o, "starling_approx_queries_total %llu\n", (unsigned long long)ld(&model->approx_queries));
    family(o, "starling_approx_exact_total", "counter", "Of those, the ones the index's bound proved exact.");
    out(o, "starling_approx_exact_total %llu\n", (unsigned long long)ld(&model->approx_exact));
    family(o, "starling_approx_fallbacks_total", "counter",
           "Scans that asked for the index and were answered by the exact scan (no index yet, or the privacy floor).");
    out(o, "starling_approx_fallbacks_total %llu\n", (unsigned long long)ld(&model->approx_fallbacks));
}

/* The model and its reloads. */
static void model_text(const st_metrics_snapshot *snap, resp_out *o)
{
    const st_served *model = snap->model;
    const st_server_info si = *snap->info;
    family(o, "starling_model_loaded", "gauge", "1 once a model is loaded and served.");
    out(o, "starling_model_loaded %d\n", model ? 1 : 0);
    if (model) {
        const st_model *m = &model->m;
        family(o, "starling_model_info", "gauge", "The served model: its file and the fingerprint of its training data.");
        out(o, "starling_model_info{path=\"");
        label_value(o, model->path);
        out(o, "\",fingerprint=\"%016llx\"} 1\n", (unsigned long long)m->h.fingerprint);
        family(o, "starling_model_generation", "gauge", "1 for the first model, +1 per reload.");
        out(o, "starling_model_generation %llu\n", (unsigned long long)model->generation);
        family(o, "starling_model_created_timestamp_seconds", "gauge", "When the served model was trained, unix seconds.");
        out(o, "starling_model_created_timestamp_seconds %lld\n", (long long)m->h.created);
        family(o, "starling_model_age_seconds", "gauge", "Seconds since the served model was trained.");
        out(o, "starling_model_age_seconds %.0f\n", difftime(time(NULL), (time_t)m->h.created));
        family(o, "starling_model_loaded_timestamp_seconds", "gauge", "When the served model was loaded, unix seconds.");
        out(o, "starling_model_loaded_timestamp_seconds %.0f\n", model->loaded_at);
        family(o, "starling_model_users", "gauge", "Users in the served model.");
        out(o, "starling_model_users %u\n", m->users);
        family(o, "starling_model_segments", "gauge", "Segments in the served model.");
        out(o, "starling_model_segments %u\n", m->segments);
        family(o, "starling_model_factors", "gauge", "Rank of the served model.");
        out(o, "starling_model_factors %u\n", m->k);
        family(o, "starling_online_engagements_total", "counter",
               "EVENTs since the model was loaded, on a segment new to the user (new) or not (repeat).");
        out(o, "starling_online_engagements_total{pair=\"new\"} %llu\n", (unsigned long long)ld(&model->q_new));
        out(o, "starling_online_engagements_total{pair=\"repeat\"} %llu\n", (unsigned long long)ld(&model->q_repeat));
        family(o, "starling_online_hits_total", "counter",
               "New engagements whose segment was in the user's top K of unengaged segments just before, by the "
               "model's ranking and by popularity's: divided by the new engagements, the online hit rate.");
        out(o, "starling_online_hits_total{ranker=\"model\",k=\"10\"} %llu\n", (unsigned long long)ld(&model->q_hit10));
        out(o, "starling_online_hits_total{ranker=\"model\",k=\"50\"} %llu\n", (unsigned long long)ld(&model->q_hit50));
        out(o, "starling_online_hits_total{ranker=\"popularity\",k=\"10\"} %llu\n",
            (unsigned long long)ld(&model->q_pop10));
        out(o, "starling_online_hits_total{ranker=\"popularity\",k=\"50\"} %llu\n",
            (unsigned long long)ld(&model->q_pop50));
        approx_text(model, o);
    }
    family(o, "starling_model_reloads_total", "counter", "Successful reloads.");
    out(o, "starling_model_reloads_total %llu\n", (unsigned long long)si.reloads);
    family(o, "starling_model_reload_failures_total", "counter", "Reloads that failed (the previous model kept serving).");
    out(o, "starling_model_reload_failures_total %llu\n", (unsigned long long)si.reload_failures);
}

/* The journal of online events: 0 while the server keeps none. */
static void journal_text(const st_server_info *si, resp_out *o)
{
    family(o, "starling_journal_enabled", "gauge", "1 when online events are journaled.");
    out(o, "starling_journal_enabled %d\n", si->journal ? 1 : 0);
    family(o, "starling_journal_lag_events", "gauge",
           "Online writes appended to the journal but not yet fdatasync'ed (under appendfsync always, none is "
           "acknowledged before its fdatasync).");
    out(o, "starling_journal_lag_events %llu\n", (unsigned long long)si->journal_lag_events);
    family(o, "starling_journal_lag_seconds", "gauge",
           "While writes wait for an fdatasync: seconds since the last one (0 when every write is durable).");
    out(o, "starling_journal_lag_seconds %.3f\n", si->journal_lag_seconds);
    family(o, "starling_journal_bytes", "gauge", "Size of the journal file.");
    out(o, "starling_journal_bytes %llu\n", (unsigned long long)si->journal_bytes);
    family(o, "starling_journal_write_failures_total", "counter",
           "Journal appends and fdatasyncs that failed (the writes were refused, never acknowledged).");
    out(o, "starling_journal_write_failures_total %llu\n", (unsigned long long)si->journal_write_failures);
    family(o, "starling_journal_writable", "gauge",
           "0 after a failed fdatasync: writes are refused (MISCONF) until the server is restarted.");
    out(o, "starling_journal_writable %d\n", si->journal && !si->journal_broken ? 1 : 0);
    family(o, "starling_journal_rolled_back_writes_total", "counter",
           "Writes a failed fdatasync lost under appendfsync always: cut from the journal and never served.");
    out(o, "starling_journal_rolled_back_writes_total %llu\n", (unsigned long long)si->journal_rolled_back);
}

void st_metrics_text(const st_metrics_snapshot *snap, resp_out *o)
{
    family(o, "starling_build_info", "gauge", "The running starling's version.");
    out(o, "starling_build_info{version=\"%s\"} 1\n", st_version);
    family(o, "starling_start_time_seconds", "gauge", "When the server started, unix seconds.");
    out(o, "starling_start_time_seconds %.0f\n", snap->info->started_unix);
    family(o, "starling_uptime_seconds", "gauge", "Seconds since the server started.");
    out(o, "starling_uptime_seconds %.3f\n", st_now() - snap->info->started);
    commands_text(snap, o);
    traffic_text(snap, o);
    model_text(snap, o);
    journal_text(snap->info, o);
}
