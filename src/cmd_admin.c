/* cmd_admin: administration and the connection: MODEL INFO and RELOAD, PING,
 * ECHO, QUIT, AUTH, SELECT (CLIENT and HELLO: cmd_client.c; CONFIG: cmd_config.c).
 */
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
    resp_map(c->out, 14 + 14 + 5 + 2 * calibrated + nmeta);
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
    st_cmd_kv_str(c->out, "missing_weight", st_missing_name((st_missing_scheme)h->missing_weight));
    st_cmd_kv_num(c->out, "missing_exponent", h->missing_exponent);
    st_cmd_kv_int(c->out, "seed", (int64_t)h->seed);
    st_cmd_kv_num(c->out, "half_life", h->half_life);
    st_cmd_kv_num(c->out, "prior_weight", h->prior_weight);
    st_cmd_kv_str(c->out, "prior_shape", st_prior_shape_name(h->flags & ST_MODEL_PRIOR_LINEAR));
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
