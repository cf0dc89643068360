/* cmd_config: CONFIG GET, SET, RESETSTAT and REWRITE, from one table of
 * parameters.
 *
 * Each parameter has a name (the serve option's, as in the config file), a
 * kind that says how its value is shown and parsed, where it lives in
 * st_server_config, and whether it may change while serving. Settable are
 * the ones every loop reads afresh each time it needs them: the timeouts,
 * the client budgets, the HTTP rate, --max-count, the privacy floors, the
 * journal's fsync policy and compaction triggers, and the slow log's. The
 * sockets, threads, limits baked into each connection's buffers (max-request,
 * output-limit) and the model are not: CONFIG SET names them in its error.
 *
 * CONFIG SET with several pairs is all or nothing, as in Redis 7: every
 * value is parsed into a copy of the configuration first; only when all are
 * valid are they stored, in one step, by the server (ctx->ops->update_config),
 * which then re-derives what depends on them (the rate limiter, the
 * journal's policy). CONFIG REWRITE writes the changed values back into the
 * config file the server was started with, keeping every other line.
 */
#include <fnmatch.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ann.h"
#include "cmd.h"
#include "scan.h"
#include "util.h"

typedef enum {
    K_STR, K_U64, K_DBL, K_BOOL, K_FSYNC, K_LOGLEVEL, K_PORT, K_HTTP_PORT, K_BURST, K_FIXED, K_AOF, K_INT, K_ALLOW_HOST,
    K_ALLOW_ORIGIN, K_APPROX, K_APPROX_RECALL, K_SCAN_THREADS /* the last three: process-wide, set at start */
} kind;

typedef struct {
    const char *name;
    kind k;
    size_t off;     /* in st_server_config; unused for K_PORT, K_FIXED, K_AOF */
    int settable;
    double min;     /* the smallest value SET takes (numbers) */
    const char *fixed; /* K_FIXED's value */
} param;

#define F(x) offsetof(st_server_config, x)
/* requirepass is never shown. save, appendonly and appendfsync answer the
 * tools (redis-benchmark) that ask about persistence. Checklist: a new
 * settable parameter must be read by the server each time it is used
 * (never copied at start), and listed in docs/PROTOCOL.md. */
static const param params[] = {
    {"bind", K_STR, F(bind), 0, 0, NULL},
    {"port", K_PORT, 0, 0, 0, NULL},
    {"unixsocket", K_STR, F(unixsocket), 0, 0, NULL},
    {"maxclients", K_U64, F(maxclients), 1, 1, NULL},
    {"timeout", K_DBL, F(timeout), 1, 0, NULL},
    {"max-request", K_U64, F(max_request), 0, 0, NULL},
    {"max-args", K_U64, F(max_args), 0, 0, NULL},
    {"output-limit", K_U64, F(output_limit), 0, 0, NULL},
    {"max-count", K_U64, F(max_count), 1, 1, NULL},
    {"threads", K_INT, F(threads), 0, 0, NULL},
    {"heavy-threads", K_INT, F(heavy_threads), 0, 0, NULL},
    {"scan-threads", K_SCAN_THREADS, 0, 0, 0, NULL},
    {"shutdown-timeout", K_DBL, F(shutdown_timeout), 1, 0, NULL},
    {"allow-reload-path", K_BOOL, F(allow_reload_path), 0, 0, NULL},
    {"loglevel", K_LOGLEVEL, F(loglevel), 0, 0, NULL},
    {"model", K_STR, F(model_path), 0, 0, NULL},
    {"http-port", K_HTTP_PORT, 0, 0, 0, NULL},
    {"http-bind", K_STR, F(http_bind), 0, 0, NULL},
    {"http-rate", K_DBL, F(http_rate), 1, 0, NULL},
    {"http-burst", K_BURST, F(http_burst), 1, 0, NULL},
    {"databases", K_FIXED, 0, 0, 0, "1"},
    {"save", K_FIXED, 0, 0, 0, ""},
    {"appendonly", K_AOF, 0, 0, 0, NULL},
    {"appendfsync", K_FSYNC, F(appendfsync), 1, 0, NULL},
    {"journal", K_STR, F(journal), 0, 0, NULL},
    {"compact-min-bytes", K_U64, F(compact_min_bytes), 1, 0, NULL},
    {"compact-percentage", K_U64, F(compact_percentage), 1, 0, NULL},
    {"forget-compact-delay", K_DBL, F(forget_compact_delay), 1, 0, NULL},
    {"min-audience", K_U64, F(min_audience), 1, 0, NULL},
    {"min-seeds", K_U64, F(min_seeds), 1, 0, NULL},
    {"approx", K_APPROX, 0, 0, 0, NULL},
    {"approx-recall", K_APPROX_RECALL, 0, 0, 0, NULL},
    {"segment-min-users", K_U64, F(segment_min_users), 0, 0, NULL},
    {"enable-debug-command", K_BOOL, F(enable_debug), 0, 0, NULL},
    {"protected-mode", K_BOOL, F(protected_mode), 0, 0, NULL},
    {"request-timeout", K_DBL, F(request_timeout), 1, 0, NULL},
    {"http-maxclients", K_U64, F(http_maxclients), 1, 1, NULL},
    {"http-allow-host", K_ALLOW_HOST, 0, 0, 0, NULL},
    {"http-allow-origin", K_ALLOW_ORIGIN, 0, 0, 0, NULL},
    {"slowlog-log-slower-than", K_DBL, F(slowlog_slower_than), 1, -1, NULL},
    {"slowlog-max-len", K_U64, F(slowlog_max_len), 1, 0, NULL},
};
#define NPARAMS (sizeof params / sizeof params[0])
_Static_assert(NPARAMS <= 64, "config_changed is a 64-bit mask");

static const char *levels[] = {"debug", "verbose", "notice", "warning"};

#define AT(cfg, p, type) ((type *)((char *)(cfg) + (p)->off))
#define AT_R(cfg, p, type) ((const type *)((const char *)(cfg) + (p)->off))

/* A repeatable setting's values joined by spaces, as Redis shows `bind`;
 * ends in "..." when they do not fit in cap. */
static void join_list(char *out, size_t cap, const char *const *v, int n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? " " : "", v[i]);
        if (w < 0 || (size_t)w >= cap - used) {
            snprintf(out + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            return;
        }
        used += (size_t)w;
    }
}

#define SHOW_MAX 4096 /* the longest value shown: a list of allowed hosts */

/* The value of p in cfg as CONFIG GET shows it, into buf (SHOW_MAX bytes);
 * the returned string may be buf or a string of cfg's. */
static const char *show(const st_ctx *c, const st_server_config *cfg, const param *p, char *buf)
{
    st_server_info si;
    switch (p->k) {
    case K_STR: {
        const char *s = *AT_R(cfg, p, char *const);
        return s ? s : "";
    }
    case K_U64: snprintf(buf, 64, "%llu", (unsigned long long)*AT_R(cfg, p, uint64_t)); return buf;
    case K_INT: snprintf(buf, 64, "%d", *AT_R(cfg, p, int)); return buf;
    case K_DBL: snprintf(buf, 64, "%g", *AT_R(cfg, p, double)); return buf;
    case K_BOOL: return *AT_R(cfg, p, int) ? "yes" : "no";
    case K_FSYNC: return st_appendfsync_name(cfg->appendfsync);
    case K_LOGLEVEL: return levels[cfg->loglevel & 3];
    case K_BURST: snprintf(buf, 64, "%g", cfg->http_burst > 0 ? cfg->http_burst : cfg->http_rate); return buf;
    case K_FIXED: return p->fixed;
    case K_AOF: return cfg->journal ? "yes" : "no";
    case K_ALLOW_HOST: join_list(buf, SHOW_MAX, cfg->http_allow_host, cfg->n_http_allow_host); return buf;
    case K_ALLOW_ORIGIN: join_list(buf, SHOW_MAX, cfg->http_allow_origin, cfg->n_http_allow_origin); return buf;
    case K_APPROX: return st_ann_mode_name(st_ann_mode());
    case K_APPROX_RECALL: snprintf(buf, 64, "%g", st_ann_target()); return buf;
    case K_SCAN_THREADS: snprintf(buf, 64, "%d", st_scan_threads()); return buf;
    case K_PORT:
    case K_HTTP_PORT:
        /* the bound port, for --port 0 */
        c->ops->get_info(c->srv, &si);
        if (p->k == K_PORT) snprintf(buf, 64, "%d", si.tcp_addr ? si.tcp_port : cfg->port);
        else snprintf(buf, 64, "%d", si.http_addr ? si.http_port : cfg->http_port);
        return buf;
    }
    return "";
}

void cmd_config_get(st_ctx *c)
{
    int64_t n = 0;
    int hit[NPARAMS] = {0};
    for (size_t p = 0; p < NPARAMS; p++)
        for (int i = 2; i < c->argc && !hit[p]; i++) hit[p] = fnmatch(c->argv[i].ptr, params[p].name, FNM_CASEFOLD) == 0;
    for (size_t p = 0; p < NPARAMS; p++) n += hit[p];
    resp_map(c->out, n);
    for (size_t p = 0; p < NPARAMS; p++) {
        if (!hit[p]) continue;
        char buf[SHOW_MAX];
        st_cmd_kv_str(c->out, params[p].name, show(c, c->cfg, &params[p], buf));
    }
}

static const param *find_param(const resp_arg *a)
{
    for (size_t p = 0; p < NPARAMS; p++)
        if (st_cmd_is_word(a, params[p].name)) return &params[p];
    return NULL;
}

/* Parses v into p's place in cfg. 0, or -1 with why set. */
static int parse_value(st_server_config *cfg, const param *p, const char *v, const char **why)
{
    uint64_t u;
    double d;
    switch (p->k) {
    case K_U64:
        if (st_parse_u64(v, &u) != 0 || (double)u < p->min) break;
        *AT(cfg, p, uint64_t) = u;
        return 0;
    case K_DBL:
    case K_BURST:
        if (st_parse_double(v, &d) != 0 || d < p->min) break;
        *AT(cfg, p, double) = d;
        return 0;
    case K_FSYNC:
        for (int i = 0; i < 3; i++)
            if (strcasecmp(v, st_appendfsync_name((st_appendfsync)i)) == 0) {
                cfg->appendfsync = (st_appendfsync)i;
                return 0;
            }
        *why = "argument(s) must be one of the following: always, everysec, no";
        return -1;
    default:
        break;
    }
    *why = p->min > 0 ? "argument must be a number >= 1" : p->min < 0 ? "argument must be a number >= -1"
                                                                      : "argument must be a number >= 0";
    return -1;
}

typedef struct {
    const st_server_config *next;
    uint64_t mask; /* the params set */
} config_update;

/* Called by the server with its lock held: stores the params set. */
static void store(st_server_config *cfg, void *arg)
{
    const config_update *u = arg;
    for (size_t p = 0; p < NPARAMS; p++) {
        if (!(u->mask >> p & 1)) continue;
        size_t size = params[p].k == K_FSYNC ? sizeof cfg->appendfsync
                                             : params[p].k == K_U64 ? sizeof(uint64_t) : sizeof(double);
        memcpy((char *)cfg + params[p].off, (const char *)u->next + params[p].off, size);
    }
    cfg->config_changed |= u->mask;
}

/* CONFIG SET name value [name value ...]: all or nothing. */
void cmd_config_set(st_ctx *c)
{
    if (c->argc % 2 != 0) {
        resp_error(c->out, "ERR wrong number of arguments for 'config|set' command");
        return;
    }
    st_server_config next = *c->cfg;
    config_update u = {.next = &next};
    for (int i = 2; i < c->argc; i += 2) {
        const resp_arg *name = &c->argv[i];
        const param *p = find_param(name);
        int len = (int)(name->len > 64 ? 64 : name->len);
        if (!p) {
            resp_error(c->out, "ERR Unknown option or number of arguments for CONFIG SET - '%.*s'", len, name->ptr);
            return;
        }
        const char *why = NULL;
        uint64_t bit = UINT64_C(1) << (p - params);
        if (!p->settable) why = "can't set immutable config (restart with the new value)";
        else if (u.mask & bit) why = "duplicate parameter";
        else if (parse_value(&next, p, c->argv[i + 1].ptr, &why) == 0) why = NULL;
        if (why) {
            resp_error(c->out, "ERR CONFIG SET failed (possibly related to argument '%s') - %s", p->name, why);
            return;
        }
        u.mask |= bit;
    }
    c->ops->update_config(c->srv, store, &u);
    resp_simple(c->out, "OK");
}

void cmd_config_resetstat(st_ctx *c)
{
    c->ops->reset_stats(c->srv);
    resp_simple(c->out, "OK");
}

/* ---- REWRITE ----------------------------------------------------------------- */

typedef struct {
    const st_ctx *c;
    const char *text;
    size_t len;
    mode_t mode;
} rewrite_ctx;

/* The param a config line sets, when it is settable and was changed. */
static const param *line_param(const st_server_config *cfg, const char *line, size_t n)
{
    while (n && (*line == ' ' || *line == '\t')) line++, n--;
    size_t w = 0;
    while (w < n && line[w] != ' ' && line[w] != '\t' && line[w] != '\r') w++;
    resp_arg name = {line, w};
    const param *p = w ? find_param(&name) : NULL;
    return p && p->settable && (cfg->config_changed >> (p - params) & 1) ? p : NULL;
}

static int write_config(FILE *f, void *vctx, char *err)
{
    rewrite_ctx *x = vctx;
    const st_server_config *cfg = x->c->cfg;
    uint64_t written = 0;
    char buf[SHOW_MAX];
    if (fchmod(fileno(f), x->mode) != 0) return st_seterr(err, "cannot keep the file's mode");
    for (size_t i = 0; i < x->len;) {
        const char *nl = memchr(x->text + i, '\n', x->len - i);
        size_t n = nl ? (size_t)(nl - (x->text + i)) : x->len - i;
        const param *p = line_param(cfg, x->text + i, n);
        if (p) {
            fprintf(f, "%s %s\n", p->name, show(x->c, cfg, p, buf));
            written |= UINT64_C(1) << (p - params);
        } else {
            fwrite(x->text + i, 1, n, f);
            if (nl) fputc('\n', f);
        }
        i += n + (nl ? 1 : 0);
    }
    for (size_t p = 0; p < NPARAMS; p++)
        if ((cfg->config_changed >> p & 1) && !(written >> p & 1))
            fprintf(f, "%s %s\n", params[p].name, show(x->c, cfg, &params[p], buf));
    return ferror(f) ? st_seterr(err, "write error") : 0;
}

/* CONFIG REWRITE: the config file the server started with, each changed
 * setting's line updated (or added at the end), every other line kept. */
void cmd_config_rewrite(st_ctx *c)
{
    const char *path = c->cfg->config_file;
    if (!path) {
        resp_error(c->out, "ERR The server is running without a config file");
        return;
    }
    FILE *in = fopen(path, "rb");
    struct stat st;
    if (!in || fstat(fileno(in), &st) != 0) {
        if (in) fclose(in);
        resp_error(c->out, "ERR Rewriting config file: cannot read %s", path);
        return;
    }
    char *text = st_malloc((size_t)st.st_size + 1);
    size_t len = text ? fread(text, 1, (size_t)st.st_size, in) : 0;
    fclose(in);
    if (!text) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    rewrite_ctx x = {.c = c, .text = text, .len = len, .mode = st.st_mode & 07777};
    char err[ST_ERRLEN];
    if (st_write_atomic(path, write_config, &x, err) != 0) resp_error(c->out, "ERR Rewriting config file: %s", err);
    else resp_simple(c->out, "OK");
    st_free(text);
}
