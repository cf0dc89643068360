/* cmd_util: what every handler uses: arguments (words, counts, numbers),
 * users looked up wherever they live (the overlay of users changed online
 * first, then the model file: a forgotten user is unknown to every command),
 * segments, the replies that name them, and the password check.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "util.h"

/* ---- argument helpers ------------------------------------------------------- */

int st_cmd_is_word(const resp_arg *a, const char *w)
{
    size_t n = strlen(w);
    return a->len == n && strncasecmp(a->ptr, w, n) == 0;
}

/* Parses a whole integer argument; replies Redis's error and returns -1. */
int st_cmd_arg_i64(st_ctx *c, const resp_arg *a, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(a->ptr, &end, 10);
    if (a->len == 0 || errno || end != a->ptr + a->len || isspace((unsigned char)a->ptr[0])) {
        resp_error(c->out, "ERR value is not an integer or out of range");
        return -1;
    }
    *out = v;
    return 0;
}

/* A COUNT value: 0..limit. */
int st_cmd_arg_count(st_ctx *c, const resp_arg *a, uint64_t limit, uint32_t *out)
{
    uint64_t v;
    if (st_parse_u64(a->ptr, &v) != 0 || strlen(a->ptr) != a->len) {
        resp_error(c->out, "ERR COUNT must be a whole number >= 0");
        return -1;
    }
    if (v > limit) {
        resp_error(c->out, "ERR COUNT %llu is over the limit of %llu (--max-count)", (unsigned long long)v,
                   (unsigned long long)limit);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int st_cmd_arg_float(st_ctx *c, const resp_arg *a, const char *what, double *out)
{
    if (strlen(a->ptr) != a->len || st_parse_double(a->ptr, out) != 0) {
        resp_error(c->out, "ERR %s is not a valid number", what);
        return -1;
    }
    return 0;
}

user_view st_cmd_find_user(st_ctx *c, const char *id, size_t len)
{
    user_view v = {.model_u = ST_NOT_FOUND, .slot = UINT32_MAX};
    const st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    int where = st_overlay_find(sv->ov, id, len, sc->ux, sc->hseg, sc->hr, &v.hist_n, &v.slot);
    if (where == ST_OV_FORGOTTEN) return v;
    if (where == ST_OV_LIVE) {
        v.known = v.online = 1;
        v.x = sc->ux;
        v.hist_seg = sc->hseg;
        v.hist_r = sc->hr;
        return v;
    }
    const st_model *m = &sv->m;
    uint32_t u = st_idmap_find(&m->user_ids, id, len);
    if (u == ST_NOT_FOUND) return v;
    v.known = 1;
    v.model_u = u;
    v.x = st_model_user(m, u, sc->user); /* int8 models: dequantized into the scratch */
    uint64_t h0 = m->hist_ptr[u];
    v.hist_seg = m->hist_idx + h0;
    v.hist_r = m->hist_val + h0;
    v.hist_n = (uint32_t)(m->hist_ptr[u + 1] - h0);
    return v;
}

const char *st_cmd_user_source(const user_view *u) { return u->online ? "online" : u->known ? "model" : "prior"; }

uint32_t st_cmd_find_segment(const st_served *sv, const resp_arg *a)
{
    return st_idmap_find(&sv->m.segment_ids, a->ptr, a->len);
}

void st_cmd_bulk_segment(st_ctx *c, uint32_t s)
{
    size_t n;
    const char *name = st_cmd_segment_name(c->model, s, &n);
    resp_bulk(c->out, name, n);
}

/* Users in a scan: the model's rows, then the overlay's users (the copy in
 * the thread's scratch view). */
const char *st_cmd_scan_user_name(const void *vctx, uint32_t i, size_t *len)
{
    const st_ctx *c = vctx;
    const st_model *m = &c->model->m;
    if (i < m->users) return st_idmap_name(&m->user_ids, i, len);
    const st_overlay_view *v = &c->scratch->view;
    *len = v->lens[i - m->users];
    return v->ids[i - m->users];
}

void st_cmd_bulk_user(st_ctx *c, uint32_t u)
{
    size_t n;
    const char *name = st_cmd_scan_user_name(c, u, &n);
    resp_bulk(c->out, name, n);
}

/* In-place heap sort of indices, with their values moved alongside when vals
 * is not NULL (qsort may allocate; the hot path must not). */
void st_cmd_sort_idx(uint32_t *a, float *vals, uint32_t n)
{
    for (uint32_t start = n / 2; n > 1;) {
        uint32_t root;
        if (start > 0) {
            root = --start;
        } else {
            n--;
            uint32_t t = a[0];
            a[0] = a[n];
            a[n] = t;
            if (vals) {
                float tv = vals[0];
                vals[0] = vals[n];
                vals[n] = tv;
            }
            root = 0;
        }
        for (;;) {
            uint32_t child = 2 * root + 1;
            if (child >= n) break;
            if (child + 1 < n && a[child + 1] > a[child]) child++;
            if (a[root] >= a[child]) break;
            uint32_t t = a[root];
            a[root] = a[child];
            a[child] = t;
            if (vals) {
                float tv = vals[root];
                vals[root] = vals[child];
                vals[child] = tv;
            }
            root = child;
        }
    }
}

/* Replies [seg, score, ...] for the selection idx/top. */
void st_cmd_reply_segment_pairs(st_ctx *c, const uint32_t *idx, const float *top, uint32_t n)
{
    resp_array(c->out, 2 * (int64_t)n);
    for (uint32_t i = 0; i < n; i++) {
        st_cmd_bulk_segment(c, idx[i]);
        resp_score(c->out, top[i]);
    }
}

int st_cmd_need_segment(st_ctx *c, const resp_arg *a, uint32_t *s)
{
    *s = st_cmd_find_segment(c->model, a);
    if (*s != ST_NOT_FOUND) return 0;
    resp_error(c->out, "ERR unknown segment '%.*s'", (int)(a->len > 128 ? 128 : a->len), a->ptr);
    return -1;
}

void st_cmd_kv_str(resp_out *o, const char *k, const char *v)
{
    resp_bulk_str(o, k);
    resp_bulk_str(o, v);
}

void st_cmd_kv_int(resp_out *o, const char *k, int64_t v)
{
    resp_bulk_str(o, k);
    resp_int(o, v);
}

void st_cmd_kv_num(resp_out *o, const char *k, double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.17g", v);
    st_cmd_kv_str(o, k, b);
}

/* Checks AUTH's [user] password and signs the connection in; replies the
 * error and returns -1 on failure. The ST_AUTH_MAX_FAILURES-th failure on
 * one connection closes it: guessing then costs a new connection (and a TCP
 * handshake) per few tries instead of running at the speed of a pipeline. */
int st_cmd_check_auth(st_ctx *c, const resp_arg *user, const resp_arg *pass)
{
    if (!st_acl_required(c->cfg->acl) || (!user && !c->cfg->requirepass)) {
        resp_error(c->out, "ERR AUTH <password> called without any password configured for the default user. Are you "
                           "sure your configuration is correct?");
        return -1;
    }
    unsigned r = st_acl_check(c->cfg->acl, user ? user->ptr : NULL, user ? user->len : 0, pass->ptr, pass->len);
    if (!r) {
        if (c->stats) st_stat_bump(&c->stats->auth_failures, 1);
        if (++c->session->auth_failures >= ST_AUTH_MAX_FAILURES) {
            resp_error(c->out, "WRONGPASS invalid username-password pair or user is disabled; %d failed attempts: "
                               "closing the connection",
                       ST_AUTH_MAX_FAILURES);
            c->session->close_after_reply = 1;
        } else {
            resp_error(c->out, "WRONGPASS invalid username-password pair or user is disabled.");
        }
        return -1;
    }
    c->session->rights = r;
    /* CLIENT LIST on another loop reads the name under the client lock. */
    if (c->ops) c->ops->lock_clients(c->srv, 1);
    snprintf(c->session->user, sizeof c->session->user, "%.*s", user ? (int)user->len : 7,
             user ? user->ptr : "default");
    if (c->ops) c->ops->lock_clients(c->srv, 0);
    return 0;
}

void st_text_printf(st_text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *b = st_realloc(t->buf, cap);
        if (!b) return;
        t->buf = b;
        t->cap = cap;
    }
}
