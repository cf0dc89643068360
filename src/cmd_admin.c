/* cmd_admin: administration and the connection: MODEL INFO and RELOAD, PING,
 * ECHO, QUIT, AUTH, SELECT, CONFIG GET (CLIENT and HELLO: cmd_client.c).
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "util.h"
#include "version.h"

/* MODEL INFO: the model's provenance, then its hyper-parameters, then each
 * META line as "meta.<key>" (inputs, kind weights, and the evaluation
 * figures `starling eval -o` stores). */
void cmd_model_info(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    const st_model_header *h = &m->h;
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)h->fingerprint);
    uint64_t jid, jseq;
    st_overlay_lineage(sv->ov, &jid, &jseq);
    char jids[32];
    snprintf(jids, sizeof jids, "%016llx", (unsigned long long)jid);
    int64_t nmeta = 0;
    for (size_t i = 0; i < m->meta_len; i++)
        nmeta += m->meta[i] == '\n' || (i + 1 == m->meta_len);
    int calibrated = (h->flags & ST_MODEL_CALIBRATED) != 0;
    resp_map(c->out, 14 + 14 + 2 + 2 * calibrated + nmeta);
    st_cmd_kv_str(c->out, "path", sv->path);
    st_cmd_kv_int(c->out, "generation", (int64_t)sv->generation);
    st_cmd_kv_int(c->out, "loaded_at", (int64_t)sv->loaded_at);
    st_cmd_kv_int(c->out, "users", m->users);
    st_cmd_kv_int(c->out, "segments", m->segments);
    st_cmd_kv_int(c->out, "factors", m->k);
    st_cmd_kv_int(c->out, "nnz", (int64_t)h->nnz);
    st_cmd_kv_int(c->out, "events", (int64_t)h->events);
    st_cmd_kv_int(c->out, "iterations", h->iterations);
    st_cmd_kv_num(c->out, "final_loss", h->final_loss);
    st_cmd_kv_str(c->out, "fingerprint", fp);
    st_cmd_kv_int(c->out, "created", h->created);
    st_cmd_kv_int(c->out, "calibrated", calibrated);
    st_cmd_kv_int(c->out, "file_bytes", (int64_t)h->file_bytes);
    st_cmd_kv_str(c->out, "journal_id", jid ? jids : "");
    st_cmd_kv_int(c->out, "journal_seq", (int64_t)jseq);
    st_cmd_kv_int(c->out, "iterations_asked", h->iterations_asked);
    st_cmd_kv_str(c->out, "user_factors", (h->flags & ST_MODEL_INT8) ? "int8" : "float32");
    st_cmd_kv_str(c->out, "solver", st_solver_name((st_solver)h->solver));
    st_cmd_kv_int(c->out, "cg_steps", h->cg_steps);
    st_cmd_kv_str(c->out, "confidence", st_conf_name((st_conf_scheme)h->confidence));
    st_cmd_kv_num(c->out, "alpha", h->alpha);
    st_cmd_kv_num(c->out, "eps", h->eps);
    st_cmd_kv_num(c->out, "lambda", h->lambda);
    st_cmd_kv_str(c->out, "regularization", st_reg_name((st_reg_scheme)h->regularization));
    st_cmd_kv_num(c->out, "unobserved_weight", h->unobserved_weight > 0 ? h->unobserved_weight : 1);
    st_cmd_kv_int(c->out, "seed", (int64_t)h->seed);
    st_cmd_kv_num(c->out, "half_life", h->half_life);
    st_cmd_kv_num(c->out, "prior_weight", h->prior_weight);
    st_cmd_kv_int(c->out, "threads", h->threads);
    if (calibrated) {
        st_cmd_kv_num(c->out, "calib_a", h->calib_a);
        st_cmd_kv_num(c->out, "calib_b", h->calib_b);
    }
    /* META is key=value lines; a line without '=' is a key with an empty value. */
    const char *p = m->meta, *end = m->meta + m->meta_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(le - p));
        const char *ke = eq ? eq : le;
        char key[160];
        int kn = snprintf(key, sizeof key, "meta.%.*s", (int)(ke - p > 150 ? 150 : ke - p), p);
        resp_bulk(c->out, key, (size_t)(kn < (int)sizeof key ? kn : (int)sizeof key - 1));
        if (eq) resp_bulk(c->out, eq + 1, (size_t)(le - eq - 1));
        else resp_bulk(c->out, "", 0);
        p = le + 1;
    }
}

void cmd_model_reload(st_ctx *c)
{
    const char *path = NULL;
    if (c->argc > 3) {
        resp_error(c->out, "ERR wrong number of arguments for 'model|reload' command");
        return;
    }
    if (c->argc == 3) {
        if (!c->cfg->allow_reload_path) {
            resp_error(c->out, "ERR MODEL RELOAD with a path is disabled; the server reloads its own model file "
                               "unless started with --allow-reload-path");
            return;
        }
        path = c->argv[2].ptr;
        if (strlen(path) != c->argv[2].len) {
            resp_error(c->out, "ERR the path contains a NUL byte");
            return;
        }
    }
    char err[ST_ERRLEN];
    if (c->ops->reload(c->srv, path, err) != 0) {
        /* A file the client named: the reason stays in the server's log, so
         * that the reply never tells whether some path exists or is readable. */
        if (path) resp_error(c->out, "ERR reload failed, still serving the previous model: the file named is not a "
                                     "model this server can load (the reason is in the server's log)");
        else resp_error(c->out, "ERR reload failed, still serving the previous model: %s", err);
    } else {
        resp_simple(c->out, "OK");
    }
}

/* ---- connection -------------------------------------------------------------------- */

void cmd_ping(st_ctx *c)
{
    if (c->argc > 2) resp_error(c->out, "ERR wrong number of arguments for 'ping' command");
    else if (c->argc == 2) resp_bulk(c->out, c->argv[1].ptr, c->argv[1].len);
    else resp_raw(c->out, "+PONG\r\n", 7);
}

void cmd_echo(st_ctx *c) { resp_bulk(c->out, c->argv[1].ptr, c->argv[1].len); }

void cmd_quit(st_ctx *c)
{
    resp_simple(c->out, "OK");
    if (c->session) c->session->close_after_reply = 1;
}

void cmd_auth(st_ctx *c)
{
    if (c->argc > 3) {
        resp_error(c->out, "ERR syntax error");
        return;
    }
    if (st_cmd_check_auth(c, c->argc == 3 ? &c->argv[1] : NULL, &c->argv[c->argc - 1]) == 0) resp_simple(c->out, "OK");
}

void cmd_select(st_ctx *c)
{
    int64_t db;
    if (st_cmd_arg_i64(c, &c->argv[1], &db) != 0) return;
    if (db != 0) resp_error(c->out, "ERR DB index is out of range");
    else resp_simple(c->out, "OK");
}

void cmd_config_get(st_ctx *c)
{
    const st_server_config *f = c->cfg;
    char port[16], maxclients[32], timeout[32], maxreq[32], maxargs[32], outlim[32], maxcount[32], threads[16],
        heavy[16], shut[32], minaud[32], minseeds[32], cminb[32], cpct[32], fdelay[32], http_port[16], http_rate[32],
        http_burst[32], reqto[32], httpmax[32];
    st_server_info si;
    c->ops->get_info(c->srv, &si);
    snprintf(port, sizeof port, "%d", si.tcp_addr ? si.tcp_port : f->port); /* the bound port, for --port 0 */
    snprintf(maxclients, sizeof maxclients, "%llu", (unsigned long long)f->maxclients);
    snprintf(timeout, sizeof timeout, "%g", f->timeout);
    snprintf(maxreq, sizeof maxreq, "%llu", (unsigned long long)f->max_request);
    snprintf(maxargs, sizeof maxargs, "%llu", (unsigned long long)f->max_args);
    snprintf(outlim, sizeof outlim, "%llu", (unsigned long long)f->output_limit);
    snprintf(maxcount, sizeof maxcount, "%llu", (unsigned long long)f->max_count);
    snprintf(threads, sizeof threads, "%d", f->threads);
    snprintf(heavy, sizeof heavy, "%d", f->heavy_threads);
    snprintf(shut, sizeof shut, "%g", f->shutdown_timeout);
    snprintf(minaud, sizeof minaud, "%llu", (unsigned long long)f->min_audience);
    snprintf(minseeds, sizeof minseeds, "%llu", (unsigned long long)f->min_seeds);
    snprintf(cminb, sizeof cminb, "%llu", (unsigned long long)f->compact_min_bytes);
    snprintf(cpct, sizeof cpct, "%llu", (unsigned long long)f->compact_percentage);
    snprintf(fdelay, sizeof fdelay, "%g", f->forget_compact_delay);
    snprintf(http_port, sizeof http_port, "%d", si.http_addr ? si.http_port : f->http_port);
    snprintf(http_rate, sizeof http_rate, "%g", f->http_rate);
    snprintf(http_burst, sizeof http_burst, "%g", f->http_burst > 0 ? f->http_burst : f->http_rate);
    snprintf(reqto, sizeof reqto, "%g", f->request_timeout);
    snprintf(httpmax, sizeof httpmax, "%llu", (unsigned long long)f->http_maxclients);
    static const char *levels[] = {"debug", "verbose", "notice", "warning"};
    /* requirepass is never shown. save, appendonly and appendfsync answer
     * the tools (redis-benchmark) that ask about persistence. */
    const char *params[][2] = {
        {"bind", f->bind},
        {"port", port},
        {"unixsocket", f->unixsocket ? f->unixsocket : ""},
        {"maxclients", maxclients},
        {"timeout", timeout},
        {"max-request", maxreq},
        {"max-args", maxargs},
        {"output-limit", outlim},
        {"max-count", maxcount},
        {"threads", threads},
        {"heavy-threads", heavy},
        {"shutdown-timeout", shut},
        {"allow-reload-path", f->allow_reload_path ? "yes" : "no"},
        {"loglevel", levels[f->loglevel & 3]},
        {"model", f->model_path},
        {"http-port", http_port},
        {"http-bind", f->http_bind ? f->http_bind : ""},
        {"http-rate", http_rate},
        {"http-burst", http_burst},
        {"databases", "1"},
        {"save", ""},
        {"appendonly", f->journal ? "yes" : "no"},
        {"appendfsync", st_appendfsync_name(f->appendfsync)},
        {"journal", f->journal ? f->journal : ""},
        {"compact-min-bytes", cminb},
        {"compact-percentage", cpct},
        {"forget-compact-delay", fdelay},
        {"min-audience", minaud},
        {"min-seeds", minseeds},
        {"enable-debug-command", f->enable_debug ? "yes" : "no"},
        {"protected-mode", f->protected_mode ? "yes" : "no"},
        {"request-timeout", reqto},
        {"http-maxclients", httpmax},
    };
    size_t np = sizeof params / sizeof params[0];
    int64_t n = 0;
    for (size_t p = 0; p < np; p++)
        for (int i = 2; i < c->argc; i++)
            if (fnmatch(c->argv[i].ptr, params[p][0], FNM_CASEFOLD) == 0) {
                n++;
                break;
            }
    resp_map(c->out, n);
    for (size_t p = 0; p < np; p++)
        for (int i = 2; i < c->argc; i++)
            if (fnmatch(c->argv[i].ptr, params[p][0], FNM_CASEFOLD) == 0) {
                st_cmd_kv_str(c->out, params[p][0], params[p][1]);
                break;
            }
}
