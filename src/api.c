/* api: HTTP requests to commands, RESP replies to JSON, and the endpoints
 * answered without a command (/metrics, /healthz, /readyz, the page).
 *
 * One table, `routes` below, decides every endpoint: its method and path
 * pattern, the query parameters it takes, how a request becomes command
 * arguments (build_*) and how the command's RESP reply becomes JSON
 * (shape_*). A builder never checks what the command itself checks: numbers
 * from the query string go to the command as text (k=abc gets SEGMENTS'
 * own "COUNT must be a whole number" as a 400), so the two protocols cannot
 * drift apart. What only HTTP has is checked here: the path, the query
 * parameters, the JSON body's shape, and the number of arguments against
 * --max-args (the scratch buffers are sized for it).
 *
 * httpguard.c judges Host, Origin and Content-Type before routing (421,
 * 403, 415, OPTIONS); JSON responses carry Vary: Origin and its CORS lines.
 * Errors are JSON, {"error": "...", "status": N}, with the status that fits:
 * 400 a malformed request, 401 no or a wrong bearer token, 404 an unknown
 * path, segment or seed list, 405 a known path with another method, 413 a
 * body or argument list over the limits, 429 over the request rate, 501 a
 * command this server does not have, 503 no model loaded yet.
 *
 * Ids travel as JSON strings. The model's ids are opaque bytes; an id that
 * is not valid UTF-8 cannot be a JSON string, so in replies each byte of it
 * that is not part of valid UTF-8 becomes U+FFFD (the RESP port sends the
 * bytes as they are).
 */
#include "api.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apijson.h"
#include "commands.h"
#include "metrics.h"
#include "util.h"

/* ---- status codes and their counters --------------------------------------- */

static void count(st_stats *stats, int status)
{
    if (!stats) return;
    atomic_uint_fast64_t *a = &stats->http_codes[st_http_code_slot(status)];
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* ---- the rate limiter ---------------------------------------------------------- */

void st_ratelimit_init(st_ratelimit *r, double rate, double burst)
{
    memset(r, 0, sizeof *r);
    r->rate = rate;
    r->burst = burst >= 1 ? burst : 1;
    pthread_mutex_init(&r->lock, NULL);
}

void st_ratelimit_destroy(st_ratelimit *r) { pthread_mutex_destroy(&r->lock); }

int st_ratelimit_take(st_ratelimit *r, const char *addr, size_t len, double now)
{
    if (r->rate <= 0) return 1;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)addr[i]) * 1099511628211ull;
    h |= 1; /* 0 marks an empty slot */
    pthread_mutex_lock(&r->lock);
    __typeof__(r->slot[0]) *s = &r->slot[h % ST_RATE_SLOTS];
    if (s->key != h) {
        s->key = h;
        s->tokens = r->burst;
        s->at = now;
    }
    s->tokens += (now - s->at) * r->rate;
    if (s->tokens > r->burst) s->tokens = r->burst;
    s->at = now;
    int ok = s->tokens >= 1;
    if (ok) s->tokens -= 1;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

/* ---- JSON out ------------------------------------------------------------------- */

static void respond(st_stats *stats, resp_out *out, int status, const char *ctype, const char *body, size_t len,
                    int keep_alive, const char *extra, int head_only)
{
    count(stats, status);
    http_head(out, status, ctype, len, keep_alive, extra);
    if (!head_only && len) resp_raw(out, body, len);
}

/* Sends j (and drops the reference). */
static void respond_json(st_stats *stats, resp_out *out, int status, json_t *j, int keep_alive, const char *extra)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    if (!s) {
        static const char oom[] = "{\"error\":\"out of memory\",\"status\":503}\n";
        respond(stats, out, 503, "application/json", oom, sizeof oom - 1, keep_alive, "Cache-Control: no-store\r\n",
                0);
        return;
    }
    size_t n = strlen(s);
    s[n] = '\n'; /* overwrites the NUL: the body is sent by length */
    char hdr[ST_GUARD_HEADERS_MAX + 320];
    snprintf(hdr, sizeof hdr, "Cache-Control: no-store\r\nVary: Origin\r\n%s", extra ? extra : "");
    respond(stats, out, status, "application/json", s, n + 1, keep_alive, hdr, 0);
    free(s);
}

/* An error response with cors (httpguard's header lines, or NULL) among its headers. */
static void api_error(st_stats *stats, resp_out *out, int status, const char *msg, int keep_alive, const char *cors)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", st_apijson_str(msg, strlen(msg)));
    json_object_set_new(j, "status", json_integer(status));
    char extra[ST_GUARD_HEADERS_MAX + 256]; /* the 405 passes Allow and the CORS lines as cors */
    snprintf(extra, sizeof extra, "%s%s",
             status == 401 ? "WWW-Authenticate: Bearer realm=\"starling\"\r\n" : status == 429 ? "Retry-After: 1\r\n" : "",
             cors ? cors : "");
    respond_json(stats, out, status, j, keep_alive, extra);
}

void st_api_error(st_stats *stats, resp_out *out, int status, const char *msg, int keep_alive)
{ api_error(stats, out, status, msg, keep_alive, NULL); }

/* ---- requests to commands ---------------------------------------------------------- */

/* The arguments being built: bytes in one growing buffer, by offset. */
typedef struct {
    const http_parser *req;
    uint64_t max_args;
    size_t *off, *len;
    int argc, cap;
    char *buf;
    size_t used, bufcap;
    json_t *body;
    /* the query's parameters, decoded */
    int nq;
    struct {
        char name[16];
        size_t at, len; /* value, in qbuf */
    } q[8];
    char *qbuf;
    size_t qused;
    int status;
    const char *msg;
    char *msgbuf;
    size_t msgcap;
    int oom;
} builder;

static int bad(builder *b, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(builder *b, int status, const char *fmt, ...)
{
    b->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msgbuf, b->msgcap, fmt, ap);
    va_end(ap);
    b->msg = b->msgbuf;
    return -1;
}

/* Appends one argument of n bytes (s may be NULL: n zero bytes, filled by
 * the caller through the returned pointer). NULL when out of memory or over
 * --max-args (b->status set). */
static char *arg(builder *b, const char *s, size_t n)
{
    if ((uint64_t)b->argc + 1 > b->max_args) {
        bad(b, 413, "the request makes a command of more than %llu arguments (max-args)",
            (unsigned long long)b->max_args);
        return NULL;
    }
    if (b->argc == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        size_t *o = st_realloc(b->off, (size_t)cap * sizeof *o);
        if (o) b->off = o;
        size_t *l = o ? st_realloc(b->len, (size_t)cap * sizeof *l) : NULL;
        if (!o || !l) {
            b->oom = 1;
            bad(b, 503, "out of memory");
            return NULL;
        }
        b->len = l;
        b->cap = cap;
    }
    if (b->used + n + 1 > b->bufcap) {
        size_t cap = b->bufcap ? b->bufcap : 256;
        while (cap < b->used + n + 1) cap *= 2;
        char *p = st_realloc(b->buf, cap);
        if (!p) {
            b->oom = 1;
            bad(b, 503, "out of memory");
            return NULL;
        }
        b->buf = p;
        b->bufcap = cap;
    }
    char *d = b->buf + b->used;
    if (s) memcpy(d, s, n);
    d[n] = '\0';
    b->off[b->argc] = b->used;
    b->len[b->argc++] = n;
    b->used += n + 1;
    return d;
}

static int arg_str(builder *b, const char *s) { return arg(b, s, strlen(s)) ? 0 : -1; }

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s into d (room for s.len bytes); '+' is a space when
 * plus_space (query strings). Returns the length, or -1 on a bad escape. */
static long pct_decode(http_str s, char *d, int plus_space)
{
    size_t w = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '%') {
            if (s.len - i < 3) return -1;
            int hi = hexval((unsigned char)s.ptr[i + 1]), lo = hexval((unsigned char)s.ptr[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            d[w++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[w++] = plus_space && c == '+' ? ' ' : c;
        }
    }
    return (long)w;
}

/* The route table's path patterns: '*' is one path segment, an id. */
static int match_path(const char *pattern, http_str path, http_str *id)
{
    const char *p = pattern, *s = path.ptr, *end = path.ptr + path.len;
    id->ptr = NULL;
    id->len = 0;
    while (*p && s < end) {
        if (*p == '*') {
            const char *slash = memchr(s, '/', (size_t)(end - s));
            const char *e = slash ? slash : end;
            if (e == s) return 0;
            *id = (http_str){s, (size_t)(e - s)};
            s = e;
            p++;
        } else {
            if (*p != *s) return 0;
            p++;
            s++;
        }
    }
    return *p == '\0' && s == end;
}

static int add_id(builder *b, http_str id)
{
    char *d = arg(b, NULL, id.len);
    if (!d) return -1;
    long n = pct_decode(id, d, 0);
    if (n < 0) return bad(b, 400, "bad percent-encoding in the path");
    b->len[b->argc - 1] = (size_t)n;
    d[n] = '\0';
    b->used -= id.len - (size_t)n;
    return 0;
}

/* Splits and decodes the query string against the route's parameter list. */
static int parse_query(builder *b, const char *allowed, const char *what)
{
    http_str q = b->req->query;
    if (q.len == 0) return 0;
    b->qbuf = st_malloc(q.len + 1);
    if (!b->qbuf) {
        b->oom = 1;
        return bad(b, 503, "out of memory");
    }
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if (e > p) {
            const char *eq = memchr(p, '=', (size_t)(e - p));
            http_str name = {p, (size_t)((eq ? eq : e) - p)}, val = {eq ? eq + 1 : e, eq ? (size_t)(e - eq - 1) : 0};
            char nb[16];
            long nn = name.len < sizeof nb ? pct_decode(name, nb, 1) : -1;
            if (nn < 0 && name.len < sizeof nb) return bad(b, 400, "bad percent-encoding in the query string");
            int known = 0;
            if (nn >= 0) {
                nb[nn] = '\0';
                const char *a = allowed;
                size_t wl;
                while (*a) {
                    wl = strcspn(a, " ");
                    if (wl == (size_t)nn && memcmp(a, nb, wl) == 0) known = 1;
                    a += wl;
                    while (*a == ' ') a++;
                }
            }
            if (!known)
                return bad(b, 400, "unknown query parameter '%.*s' (%s takes: %s)", (int)(name.len > 32 ? 32 : name.len),
                           name.ptr, what, *allowed ? allowed : "none");
            for (int i = 0; i < b->nq; i++)
                if (strcmp(b->q[i].name, nb) == 0) return bad(b, 400, "query parameter '%s' given twice", nb);
            long vn = pct_decode(val, b->qbuf + b->qused, 1);
            if (vn < 0) return bad(b, 400, "bad percent-encoding in the query string");
            memcpy(b->q[b->nq].name, nb, (size_t)nn + 1);
            b->q[b->nq].at = b->qused;
            b->q[b->nq].len = (size_t)vn;
            b->qused += (size_t)vn;
            b->nq++;
        }
        p = e + 1;
    }
    return 0;
}

/* A query parameter's decoded value, or NULL. */
static const char *qget(builder *b, const char *name, size_t *len)
{
    for (int i = 0; i < b->nq; i++)
        if (strcmp(b->q[i].name, name) == 0) {
            *len = b->q[i].len;
            return b->qbuf + b->q[i].at;
        }
    return NULL;
}

/* A flag parameter: absent, empty, 1/true/yes or 0/false/no. */
static int qflag(builder *b, const char *name, int *on)
{
    size_t n = 0;
    const char *v = qget(b, name, &n);
    *on = 0;
    if (!v) return 0;
    if (n == 0 || (n == 1 && v[0] == '1') || (n == 4 && strncasecmp(v, "true", 4) == 0) ||
        (n == 3 && strncasecmp(v, "yes", 3) == 0))
        *on = 1;
    else if (!((n == 1 && v[0] == '0') || (n == 5 && strncasecmp(v, "false", 5) == 0) ||
               (n == 2 && strncasecmp(v, "no", 2) == 0)))
        return bad(b, 400, "query parameter '%s' takes true or false", name);
    return 0;
}

/* "KEYWORD value" from a query parameter, when given. */
static int q_keyword(builder *b, const char *name, const char *keyword)
{
    size_t n = 0;
    const char *v = qget(b, name, &n);
    if (!v) return 0;
    return arg_str(b, keyword) == 0 && arg(b, v, n) ? 0 : -1;
}

/* The JSON body: an object whose keys are all in `allowed`. */
static json_t *body_object(builder *b, const char *allowed, const char *what)
{
    if (b->req->body.len == 0) {
        bad(b, 400, "%s needs a JSON object body", what);
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(b->req->body.ptr, b->req->body.len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        bad(b, 400, "invalid JSON at line %d, column %d: %s", e.line, e.column, e.text);
        return NULL;
    }
    b->body = j;
    if (!json_is_object(j)) {
        bad(b, 400, "%s needs a JSON object body", what);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        size_t kl = strlen(key);
        int known = 0;
        for (const char *a = allowed; *a;) {
            size_t wl = strcspn(a, " ");
            if (wl == kl && memcmp(a, key, kl) == 0) known = 1;
            a += wl;
            while (*a == ' ') a++;
        }
        if (!known) {
            bad(b, 400, "unknown field '%.32s' (%s takes: %s)", key, what, allowed);
            return NULL;
        }
    }
    return j;
}

static int json_id_arg(builder *b, json_t *v, const char *field)
{
    if (!json_is_string(v)) return bad(b, 400, "'%s' must hold ids as strings", field);
    return arg(b, json_string_value(v), json_string_length(v)) ? 0 : -1;
}

/* A whole number >= 0 from the body, as "KEYWORD n"; dflt when absent (-1 = required). */
static int json_count_arg(builder *b, json_t *o, const char *field, const char *keyword, long long dflt)
{
    json_t *v = json_object_get(o, field);
    long long n = dflt;
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bad(b, 400, "'%s' must be a whole number >= 0", field);
        n = json_integer_value(v);
    } else if (dflt < 0) {
        return bad(b, 400, "'%s' is required", field);
    }
    char t[32];
    snprintf(t, sizeof t, "%lld", n);
    return arg_str(b, keyword) == 0 && arg_str(b, t) == 0 ? 0 : -1;
}

static int num_arg(builder *b, json_t *v)
{
    char t[40];
    if (json_is_integer(v)) snprintf(t, sizeof t, "%lld", (long long)json_integer_value(v));
    else snprintf(t, sizeof t, "%.17g", json_real_value(v));
    return arg_str(b, t);
}

/* A list of string ids from the body: at least one. */
static json_t *id_list(builder *b, json_t *o, const char *field)
{
    json_t *l = json_object_get(o, field);
    if (!json_is_array(l) || json_array_size(l) == 0) {
        bad(b, 400, "'%s' must be a non-empty list of ids", field);
        return NULL;
    }
    return l;
}

/* ---- the builders: one per command endpoint ---- */

static int build_segments(builder *b, http_str id)
{
    int unseen, calibrated;
    size_t n = 0;
    const char *k = qget(b, "k", &n);
    if (qflag(b, "unseen", &unseen) || qflag(b, "calibrated", &calibrated)) return -1;
    if (arg_str(b, "SEGMENTS") || add_id(b, id)) return -1;
    if (k && (arg_str(b, "COUNT") || !arg(b, k, n))) return -1;
    if (q_keyword(b, "min", "MIN")) return -1;
    if (unseen && arg_str(b, "UNSEEN")) return -1;
    if (calibrated && arg_str(b, "CALIBRATED")) return -1;
    return 0;
}

static int build_scores(builder *b, http_str id)
{
    json_t *o = body_object(b, "segments", "POST /v1/users/{id}/scores");
    json_t *l = o ? id_list(b, o, "segments") : NULL;
    if (!l || arg_str(b, "SCORE") || add_id(b, id)) return -1;
    size_t i;
    json_t *v;
    json_array_foreach(l, i, v) if (json_id_arg(b, v, "segments")) return -1;
    return 0;
}

static int build_foldin(builder *b, http_str id)
{
    (void)id;
    json_t *o = body_object(b, "engagement k", "POST /v1/foldin");
    if (!o || arg_str(b, "FOLDIN")) return -1;
    if (json_object_get(o, "k") && json_count_arg(b, o, "k", "COUNT", 10)) return -1;
    json_t *e = json_object_get(o, "engagement");
    if (!json_is_object(e) || json_object_size(e) == 0)
        return bad(b, 400, "'engagement' must be an object of segment ids and weights, e.g. {\"sports\": 3}");
    const char *key;
    json_t *v;
    json_object_foreach(e, key, v)
    {
        if (!json_is_number(v)) return bad(b, 400, "the weight of segment '%.64s' must be a number", key);
        if (arg_str(b, key) || num_arg(b, v)) return -1;
    }
    return 0;
}

static int build_audience(builder *b, http_str id)
{
    size_t n = 0;
    const char *c = qget(b, "n", &n);
    if (arg_str(b, "AUDIENCE") || add_id(b, id) || arg_str(b, "COUNT")) return -1;
    if (c ? !arg(b, c, n) : arg_str(b, "100")) return -1;
    return q_keyword(b, "min", "MIN");
}

static int build_lookalike(builder *b, http_str id)
{
    (void)id;
    json_t *o = body_object(b, "seeds n", "POST /v1/lookalike");
    json_t *l = o ? id_list(b, o, "seeds") : NULL;
    if (!l || arg_str(b, "LOOKALIKE") || json_count_arg(b, o, "n", "COUNT", 100)) return -1;
    size_t i;
    json_t *v;
    json_array_foreach(l, i, v) if (json_id_arg(b, v, "seeds")) return -1;
    return 0;
}

/* ?min=m is REACH id MIN m; ?curve=t1,t2,... is REACH id CURVE t1 t2 ...
 * (the thresholds go to the command as text, which checks them). */
static int build_reach(builder *b, http_str id)
{
    size_t n = 0, cn = 0;
    int has_min = qget(b, "min", &n) != NULL;
    const char *curve = qget(b, "curve", &cn);
    if (has_min == (curve != NULL))
        return bad(b, 400, "GET /v1/segments/{id}/reach needs ?min=score or ?curve=t1,t2,... (one of them)");
    if (arg_str(b, "REACH") || add_id(b, id)) return -1;
    if (has_min) return q_keyword(b, "min", "MIN");
    if (arg_str(b, "CURVE")) return -1;
    for (const char *p = curve, *end = curve + cn; p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (e == p) return bad(b, 400, "GET /v1/segments/{id}/reach: an empty threshold in ?curve=");
        if (!arg(b, p, (size_t)(e - p))) return -1;
        p = e + 1;
    }
    return 0;
}

static int build_event(builder *b, http_str id)
{
    (void)id;
    json_t *o = body_object(b, "user segment weight kind ts", "POST /v1/events");
    if (!o) return -1;
    json_t *u = json_object_get(o, "user"), *s = json_object_get(o, "segment"), *w = json_object_get(o, "weight");
    json_t *k = json_object_get(o, "kind"), *t = json_object_get(o, "ts");
    if (!json_is_string(u) || !json_is_string(s)) return bad(b, 400, "an event needs 'user' and 'segment' (strings)");
    if (w && !json_is_number(w)) return bad(b, 400, "'weight' must be a number");
    if (k && !json_is_string(k)) return bad(b, 400, "'kind' must be a string");
    if (t && !json_is_number(t) && !json_is_string(t))
        return bad(b, 400, "'ts' must be unix seconds or an ISO 8601 time");
    if (arg_str(b, "EVENT") || json_id_arg(b, u, "user") || json_id_arg(b, s, "segment")) return -1;
    if (w ? num_arg(b, w) : arg_str(b, "1")) return -1;
    if (k && (arg_str(b, "KIND") || json_id_arg(b, k, "kind"))) return -1;
    if (t && (arg_str(b, "TS") || (json_is_string(t) ? json_id_arg(b, t, "ts") : num_arg(b, t)))) return -1;
    return 0;
}

static int build_forget(builder *b, http_str id) { return arg_str(b, "FORGET") || add_id(b, id) ? -1 : 0; }

static int build_model(builder *b, http_str id)
{
    (void)id;
    return arg_str(b, "MODEL") || arg_str(b, "INFO") ? -1 : 0;
}

static int build_stats(builder *b, http_str id)
{
    (void)id;
    return arg_str(b, "INFO") || arg_str(b, "all") ? -1 : 0;
}

/* ---- the route table ---------------------------------------------------------------- */

enum { K_COMMAND, K_METRICS, K_HEALTH, K_READY, K_FILE };
enum { PUBLIC = 1u << 0 /* no bearer token needed */, NOLIMIT = 1u << 1 /* not rate-limited */ };

typedef struct {
    const char *method;
    const char *pattern; /* '*' = one path segment, an id */
    const char *query;   /* the query parameters it takes, space-separated */
    int kind;
    unsigned flags;
    int (*build)(builder *b, http_str id);
    json_t *(*shape)(const st_api_call *c, json_t *reply);
    const char *what; /* for messages */
} api_route;

/* The routes. Every /v1 row runs the command its builder writes; the rest
 * are answered here. Checklist: a new row needs its section under "HTTP" in
 * docs/PROTOCOL.md and a case in tests/test_http.py. */
static const api_route routes[] = {
    {"GET", "/v1/users/*/segments", "k min unseen calibrated", K_COMMAND, 0, build_segments, st_apijson_segments,
     "GET /v1/users/{id}/segments"},
    {"POST", "/v1/users/*/scores", "", K_COMMAND, 0, build_scores, st_apijson_scores, "POST /v1/users/{id}/scores"},
    {"DELETE", "/v1/users/*", "", K_COMMAND, 0, build_forget, st_apijson_ok, "DELETE /v1/users/{id}"},
    {"POST", "/v1/foldin", "", K_COMMAND, 0, build_foldin, st_apijson_segments, "POST /v1/foldin"},
    {"GET", "/v1/segments/*/audience", "n min", K_COMMAND, 0, build_audience, st_apijson_users,
     "GET /v1/segments/{id}/audience"},
    {"GET", "/v1/segments/*/reach", "min curve", K_COMMAND, 0, build_reach, st_apijson_reach, "GET /v1/segments/{id}/reach"},
    {"POST", "/v1/lookalike", "", K_COMMAND, 0, build_lookalike, st_apijson_users, "POST /v1/lookalike"},
    {"POST", "/v1/events", "", K_COMMAND, 0, build_event, st_apijson_ok, "POST /v1/events"},
    {"GET", "/v1/model", "", K_COMMAND, 0, build_model, st_apijson_model, "GET /v1/model"},
    {"GET", "/v1/stats", "", K_COMMAND, 0, build_stats, st_apijson_stats, "GET /v1/stats"},
    {"GET", "/metrics", "", K_METRICS, 0, NULL, NULL, "GET /metrics"},
    {"GET", "/healthz", "", K_HEALTH, PUBLIC | NOLIMIT, NULL, NULL, "GET /healthz"},
    {"GET", "/readyz", "", K_READY, PUBLIC | NOLIMIT, NULL, NULL, "GET /readyz"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* Finds the route for req: its row (or -1 for a file of the page, whose
 * st_web_file is *file), or a 404/405 in *status. */
static int find_route(const http_parser *req, http_str *id, const st_web_file **file, int *status, char *allow,
                      size_t allowcap)
{
    int path_known = 0;
    allow[0] = '\0';
    int head = http_str_is(req->method, "HEAD");
    for (size_t i = 0; i < NROUTES; i++) {
        http_str got;
        if (!match_path(routes[i].pattern, req->path, &got)) continue;
        /* HEAD works where GET does, except on the endpoints that run a command. */
        int get_like = strcmp(routes[i].method, "GET") == 0 && routes[i].kind != K_COMMAND;
        if (http_str_is(req->method, routes[i].method) || (head && get_like)) {
            *id = got;
            return (int)i;
        }
        path_known = 1;
        size_t l = strlen(allow);
        snprintf(allow + l, allowcap - l, "%s%s%s", l ? ", " : "", routes[i].method, get_like ? ", HEAD" : "");
    }
    if (!path_known) {
        *file = st_web_find(req->path.ptr, req->path.len);
        if (*file) {
            if (http_str_is(req->method, "GET") || head) return -1;
            snprintf(allow, allowcap, "GET, HEAD");
            path_known = 1;
        }
    }
    *status = path_known ? 405 : 404;
    return -2;
}

void st_api_call_free(st_api_call *call)
{
    st_free(call->mem);
    memset(call, 0, sizeof *call);
}

/* Runs route r's builder; on success moves the arguments into call. */
static st_api_action build(const http_parser *req, uint64_t max_args, int r, http_str id, st_api_call *call,
                           int *status, const char **msg, char *msgbuf, size_t msgcap)
{
    builder b;
    memset(&b, 0, sizeof b);
    b.req = req;
    b.max_args = max_args;
    b.msgbuf = msgbuf;
    b.msgcap = msgcap;
    int rc = parse_query(&b, routes[r].query, routes[r].what);
    if (rc == 0) rc = routes[r].build(&b, id);
    st_api_action act = ST_API_RESPONDED;
    if (rc == 0) {
        size_t table = (size_t)b.argc * sizeof(resp_arg);
        call->mem = st_malloc(table + b.used + 1);
        if (!call->mem) {
            bad(&b, 503, "out of memory");
        } else {
            call->argv = (resp_arg *)call->mem;
            char *text = call->mem + table;
            memcpy(text, b.buf, b.used);
            for (int i = 0; i < b.argc; i++) call->argv[i] = (resp_arg){text + b.off[i], b.len[i]};
            call->argc = b.argc;
            call->route = r;
            act = ST_API_RUN;
        }
    }
    if (act != ST_API_RUN) {
        *status = b.status ? b.status : 400;
        *msg = b.msg ? b.msg : "bad request";
    }
    json_decref(b.body);
    st_free(b.off);
    st_free(b.len);
    st_free(b.buf);
    st_free(b.qbuf);
    return act;
}

st_api_action st_api_translate(const http_parser *req, uint64_t max_args, st_api_call *call, int *status,
                               const char **msg, char *msgbuf, size_t msgcap)
{
    memset(call, 0, sizeof *call);
    http_str id;
    const st_web_file *file = NULL;
    char allow[128];
    int r = find_route(req, &id, &file, status, allow, sizeof allow);
    if (r < 0 || routes[r].kind != K_COMMAND) {
        if (r >= -1) *status = 404;
        *msg = *status == 405 ? "method not allowed" : "not found";
        return ST_API_RESPONDED;
    }
    return build(req, max_args, r, id, call, status, msg, msgbuf, msgcap);
}

/* /metrics: the server's figures, summed through its operations, formatted by metrics.c. */
static void metrics_body(const st_api_env *env, resp_out *body)
{
    st_stats *s = st_calloc(1, sizeof *s);
    if (!s) {
        body->overflow = 1;
        return;
    }
    st_server_info si;
    env->ops->sum_stats(env->srv, s);
    env->ops->get_info(env->srv, &si);
    st_metrics_snapshot snap = {.stats = s, .info = &si, .model = env->model, .ncommands = st_command_count(),
                                .command_name = st_command_name};
    st_metrics_text(&snap, body);
    st_free(s);
}

/* The rights of the request's bearer token (acl.h), with the user's name in
 * call: `Bearer <requirepass>` is the default user, `Bearer <user>:<password>`
 * any other. 0 when the token is missing or wrong. */
static unsigned bearer_rights(const st_api_env *env, const http_parser *req, st_api_call *call)
{
    const st_acl *acl = env->cfg->acl;
    snprintf(call->user, sizeof call->user, "default");
    if (!st_acl_required(acl)) return st_acl_initial_rights(acl);
    http_str a = req->authorization;
    if (a.len < 7 || strncasecmp(a.ptr, "Bearer ", 7) != 0) return 0;
    const char *t = a.ptr + 7;
    size_t n = a.len - 7;
    while (n && *t == ' ') t++, n--;
    unsigned r = acl->requirepass ? st_acl_check(acl, NULL, 0, t, n) : 0;
    const char *colon = memchr(t, ':', n);
    if (!r && colon) {
        size_t ul = (size_t)(colon - t);
        r = st_acl_check(acl, t, ul, colon + 1, n - ul - 1);
        if (r) snprintf(call->user, sizeof call->user, "%.*s", (int)ul, t);
    }
    return r;
}

static void respond_file(const st_api_env *env, const http_parser *req, const st_web_file *f, resp_out *out)
{
    char etag[80], extra[256];
    /* The files change only with the binary: a hash of the content is their ETag. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < f->len; i++) h = (h ^ f->data[i]) * 1099511628211ull;
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)h);
    snprintf(extra, sizeof extra,
             "ETag: %s\r\nCache-Control: no-cache\r\nContent-Security-Policy: default-src 'self'; img-src 'self' "
             "data:\r\nReferrer-Policy: no-referrer\r\n",
             etag);
    int head = http_str_is(req->method, "HEAD");
    if (req->if_none_match.len && memmem(req->if_none_match.ptr, req->if_none_match.len, etag, strlen(etag))) {
        respond(env->stats, out, 304, NULL, NULL, 0, req->keep_alive, extra, 1);
        return;
    }
    count(env->stats, 200);
    http_head(out, 200, f->content_type, f->len, req->keep_alive, extra);
    if (!head) resp_raw(out, f->data, f->len);
}

/* httpguard.c's checks: 1 when they answered the request (a refusal or a
 * preflight), else 0 with the verdict's header lines in g. */
static int guard(const st_api_env *env, const http_parser *req, st_guard_verdict *g, resp_out *out)
{
    st_guard_check(env->cfg, req, g);
    if (g->status == 0) return 0;
    if (g->status == 204) {
        char extra[ST_GUARD_HEADERS_MAX + 256]; /* the 405 passes Allow and the CORS lines as cors */
        snprintf(extra, sizeof extra, "Vary: Origin\r\nCache-Control: no-store\r\n%s", g->headers);
        respond(env->stats, out, 204, NULL, NULL, 0, req->keep_alive, extra, 1);
    } else {
        api_error(env->stats, out, g->status, g->error, req->keep_alive, g->headers);
    }
    return 1;
}

st_api_action st_api_request(const st_api_env *env, const http_parser *req, st_api_call *call, resp_out *out)
{
    memset(call, 0, sizeof *call);
    int keep = req->keep_alive;
    st_guard_verdict g;
    if (guard(env, req, &g, out)) return ST_API_RESPONDED;
    const char *cors = g.headers;
    http_str id;
    const st_web_file *file = NULL;
    char allow[128], msgbuf[512], extra[ST_GUARD_HEADERS_MAX + 160];
    int status = 0;
    int r = find_route(req, &id, &file, &status, allow, sizeof allow);
    if (r == -2) {
        if (status == 405) {
            snprintf(extra, sizeof extra, "Allow: %s\r\n%s", allow, cors);
            api_error(env->stats, out, 405, "method not allowed", keep, extra); /* Allow and the CORS lines */
        } else {
            api_error(env->stats, out, 404, "not found", keep, cors);
        }
        return ST_API_RESPONDED;
    }
    unsigned flags = r >= 0 ? routes[r].flags : PUBLIC;
    if (!(flags & NOLIMIT) && env->limit && env->addr) {
        const char *colon = strrchr(env->addr, ':');
        size_t n = colon ? (size_t)(colon - env->addr) : strlen(env->addr);
        if (!st_ratelimit_take(env->limit, env->addr, n, st_now())) {
            api_error(env->stats, out, 429, "too many requests from this address (http-rate)", keep, cors);
            return ST_API_RESPONDED;
        }
    }
    if (r < 0) {
        respond_file(env, req, file, out);
        return ST_API_RESPONDED;
    }
    if (!(flags & PUBLIC) && !(call->rights = bearer_rights(env, req, call))) {
        if (req->authorization.len) {
            st_stat_bump(&env->stats->auth_failures, 1);
            if (env->auth_failures && ++*env->auth_failures >= ST_AUTH_MAX_FAILURES) keep = 0;
        }
        api_error(env->stats, out, 401,
                  req->authorization.len ? "invalid bearer token"
                                         : "authentication required: send Authorization: Bearer <requirepass> "
                                           "or Bearer <user>:<password>",
                  keep, cors);
        return ST_API_RESPONDED;
    }
    int head = http_str_is(req->method, "HEAD");
    switch (routes[r].kind) {
    case K_HEALTH: {
        static const char okb[] = "{\"status\":\"ok\"}\n";
        respond(env->stats, out, 200, "application/json", okb, sizeof okb - 1, keep, "Cache-Control: no-store\r\n",
                head);
        return ST_API_RESPONDED;
    }
    case K_READY: {
        char b[128];
        int n = env->model ? snprintf(b, sizeof b, "{\"status\":\"ready\",\"generation\":%llu}\n",
                                      (unsigned long long)env->model->generation)
                           : snprintf(b, sizeof b, "{\"status\":\"loading\"}\n");
        respond(env->stats, out, env->model ? 200 : 503, "application/json", b, (size_t)n, keep,
                "Cache-Control: no-store\r\n", head);
        return ST_API_RESPONDED;
    }
    case K_METRICS: {
        resp_out body;
        resp_out_init(&body, 0);
        if (env->srv) metrics_body(env, &body);
        if (body.overflow) {
            api_error(env->stats, out, 503, "out of memory", keep, cors);
        } else {
            respond(env->stats, out, 200, "text/plain; version=0.0.4; charset=utf-8", body.buf, body.len, keep,
                    "Cache-Control: no-store\r\n", head);
        }
        resp_out_free(&body);
        return ST_API_RESPONDED;
    }
    default:
        break;
    }
    if (!env->model) {
        api_error(env->stats, out, 503, "no model is loaded yet", keep, cors);
        return ST_API_RESPONDED;
    }
    const char *msg = NULL;
    if (build(req, env->cfg->max_args, r, id, call, &status, &msg, msgbuf, sizeof msgbuf) != ST_API_RUN) {
        api_error(env->stats, out, status, msg, keep, cors);
        return ST_API_RESPONDED;
    }
    call->keep_alive = keep;
    snprintf(call->cors, sizeof call->cors, "%s", cors);
    return ST_API_RUN;
}

int st_api_probe(const st_api_env *env, const http_parser *req, int status, const char *msg, resp_out *out)
{
    http_parser r = *req;
    r.keep_alive = 0;
    http_str id;
    const st_web_file *file = NULL;
    char allow[128];
    int st = 0, i = find_route(&r, &id, &file, &st, allow, sizeof allow);
    if (i >= 0 && (routes[i].kind == K_HEALTH || routes[i].kind == K_READY)) {
        st_api_call call;
        st_api_request(env, &r, &call, out);
        return 0;
    }
    st_api_error(env->stats, out, status, msg, 0);
    return 1;
}

void st_api_reply(st_stats *stats, st_api_call *call, const char *reply, size_t len, int overflow, resp_out *out)
{
    int keep = call->keep_alive;
    if (overflow) {
        api_error(stats, out, 500, "the reply is larger than the server's output-limit", keep, call->cors);
    } else if (len && reply[0] == '-') {
        const char *crlf = memchr(reply, '\r', len);
        size_t n = crlf ? (size_t)(crlf - reply - 1) : len - 1;
        char m[600];
        snprintf(m, sizeof m, "%.*s", (int)(n > 500 ? 500 : n), reply + 1);
        int status = st_apijson_error_status(m);
        const char *text = strncmp(m, "ERR ", 4) == 0 ? m + 4 : m;
        if (status == 501) {
            char up[64];
            size_t i = 0;
            for (; i < call->argv[0].len && i + 1 < sizeof up; i++) up[i] = (char)toupper((unsigned char)call->argv[0].ptr[i]);
            up[i] = '\0';
            char t[160];
            snprintf(t, sizeof t, "this server has no %s command", up);
            json_t *j = json_object();
            json_object_set_new(j, "error", json_string(t));
            json_object_set_new(j, "command", json_string(up));
            json_object_set_new(j, "status", json_integer(501));
            respond_json(stats, out, 501, j, keep, call->cors);
        } else {
            api_error(stats, out, status, text, keep, call->cors);
        }
    } else {
        const char *p = reply;
        json_t *r = st_apijson_read(&p, reply + len, 0);
        json_t *j = r ? routes[call->route].shape(call, r) : NULL;
        json_decref(r);
        if (j) respond_json(stats, out, 200, j, keep, call->cors);
        else api_error(stats, out, 500, "could not translate the reply", keep, call->cors);
    }
    st_api_call_free(call);
}
