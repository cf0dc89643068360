/* httpguard: DNS rebinding and browser cross-origin writes, refused.
 *
 * The attacks. A web page the operator visits can make the browser send
 * requests to 127.0.0.1:PORT. (1) Cross-site "simple requests" (a POST with
 * Content-Type text/plain, form-urlencoded or multipart) are sent without a
 * preflight: the page cannot read the answer, but the write is done. (2)
 * DNS rebinding: the attacker's name first resolves to its own server, then
 * to 127.0.0.1; the page, still "same-origin" with that name, reads and
 * writes the API freely. Every such request carries the attacker's name in
 * Host, and a browser cannot forge Host, Origin or a non-simple
 * Content-Type without the server's consent (a preflight).
 *
 * So, before a request is routed:
 *   - Host must name this server: localhost and *.localhost (browsers never
 *     resolve these through DNS), an IP literal (rebinding needs a name),
 *     the http-bind address as given, or a name in http-allow-host (`*`:
 *     any, for a server behind a proxy that checks names itself). Else 421.
 *     /healthz, /readyz and /metrics are exempt: load balancers and
 *     scrapers send whatever address they dialled, and these disclose no
 *     user's data. No Host at all (HTTP/1.0, tools) is allowed: a browser
 *     always sends one.
 *   - Origin, when sent, must be this server's own (http:// or https:// and
 *     the Host header's value: the page itself, directly or behind a TLS
 *     proxy) or in http-allow-origin (`*`: any). Else 403. Only a listed
 *     origin gets Access-Control-Allow-Origin, so without the option no
 *     other site can read a reply. OPTIONS (a preflight) is answered here:
 *     204 for an allowed origin, 403 for another, never needing the token.
 *   - A write to /v1 (POST, or any method with a body) must say
 *     Content-Type: application/json (parameters such as charset allowed):
 *     else 415. No browser sends that type cross-site without a preflight.
 * api.c sends Vary: Origin with every JSON response, so a cache in between
 * never hands one origin's answer to another.
 */
#include "httpguard.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Methods and headers a listed origin may use (the API's), and how long a
 * browser may keep a preflight's answer. */
#define GUARD_METHODS "GET, POST, DELETE, OPTIONS"
#define GUARD_HEADERS "Content-Type, Authorization"
#define GUARD_MAX_AGE 600

static int str_eq(const char *a, size_t an, const char *b)
{
    return strlen(b) == an && strncasecmp(a, b, an) == 0;
}

/* Is s[0..n) the name w of a list, or is `*` in it? */
static int listed(const char *const *list, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], "*") == 0 || str_eq(s, len, list[i])) return 1;
    return 0;
}

static int all_digits(const char *s, size_t n, size_t maxn)
{
    if (n == 0 || n > maxn) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

int st_guard_host_ok(const st_server_config *cfg, http_str host)
{
    const char *h = host.ptr;
    size_t n = host.len;
    char buf[256];
    if (n == 0 || n >= sizeof buf) return 0;
    if (h[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(h, ']', n);
        if (!close) return 0;
        size_t rest = n - (size_t)(close + 1 - h);
        if (rest && (close[1] != ':' || !all_digits(close + 2, rest - 1, 5))) return 0;
        size_t al = (size_t)(close - h - 1);
        memcpy(buf, h + 1, al);
        buf[al] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, buf, &a6) == 1;
    }
    const char *colon = memchr(h, ':', n);
    if (colon) {
        if (!all_digits(colon + 1, n - (size_t)(colon + 1 - h), 5)) return 0; /* a bare v6, two colons */
        n = (size_t)(colon - h);
    }
    if (n && h[n - 1] == '.') n--; /* the absolute form of a name */
    if (n == 0) return 0;
    memcpy(buf, h, n);
    buf[n] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) return 1;
    if (strcasecmp(buf, "localhost") == 0 || (n > 10 && strcasecmp(buf + n - 10, ".localhost") == 0)) return 1;
    if (cfg->http_bind && strcasecmp(buf, cfg->http_bind) == 0) return 1;
    return listed(cfg->http_allow_host, cfg->n_http_allow_host, buf, n);
}

/* Is the path one of the probes, which any Host may ask? */
static int exempt_path(http_str path)
{
    return http_str_is(path, "/healthz") || http_str_is(path, "/readyz") || http_str_is(path, "/metrics");
}

/* Is origin this server's own: a scheme, "://", then exactly the Host header? */
static int own_origin(http_str origin, http_str host)
{
    if (!host.ptr || host.len == 0) return 0;
    static const char *const schemes[] = {"http://", "https://"};
    for (size_t i = 0; i < 2; i++) {
        size_t sl = strlen(schemes[i]);
        if (origin.len == sl + host.len && strncasecmp(origin.ptr, schemes[i], sl) == 0 &&
            strncasecmp(origin.ptr + sl, host.ptr, host.len) == 0)
            return 1;
    }
    return 0;
}

/* Is the media type application/json, with or without parameters? */
static int is_json_type(http_str ct)
{
    static const char want[] = "application/json";
    size_t wl = sizeof want - 1;
    if (ct.len < wl || strncasecmp(ct.ptr, want, wl) != 0) return 0;
    size_t i = wl;
    while (i < ct.len && (ct.ptr[i] == ' ' || ct.ptr[i] == '\t')) i++;
    return i == ct.len || ct.ptr[i] == ';';
}

static void refuse(st_guard_verdict *v, int status, const char *fmt, const char *what, size_t len)
{
    v->status = status;
    snprintf(v->msg, sizeof v->msg, fmt, (int)(len > 100 ? 100 : len), what);
    v->error = v->msg;
}

/* The Origin step: 0 to go on, with v->headers set; or the refusal. */
static int check_origin(const st_server_config *cfg, const http_parser *req, st_guard_verdict *v)
{
    http_str o = req->origin;
    if (!o.ptr) return 0;
    if (o.len > ST_GUARD_ORIGIN_MAX) {
        refuse(v, 403, "the Origin header is longer than the 256 bytes taken%.*s", "", 0);
        return -1;
    }
    if (listed(cfg->http_allow_origin, cfg->n_http_allow_origin, o.ptr, o.len)) {
        snprintf(v->headers, sizeof v->headers, "Access-Control-Allow-Origin: %.*s\r\n", (int)o.len, o.ptr);
        return 0;
    }
    if (own_origin(o, req->host)) return 0;
    refuse(v, 403,
           "cross-origin request from '%.*s' refused: start the server with --http-allow-origin ORIGIN "
           "(or an http-allow-origin line in its config) to allow that origin",
           o.ptr, o.len);
    return -1;
}

void st_guard_check(const st_server_config *cfg, const http_parser *req, st_guard_verdict *v)
{
    memset(v, 0, sizeof *v);
    if (req->host.ptr && req->host.len && !exempt_path(req->path) && !st_guard_host_ok(cfg, req->host)) {
        refuse(v, 421,
               "this server does not answer to the name '%.*s' (DNS rebinding is refused): if it is this "
               "server's name, start it with --http-allow-host NAME (or an http-allow-host line in its config)",
               req->host.ptr, req->host.len);
        return;
    }
    if (check_origin(cfg, req, v) != 0) return;
    if (http_str_is(req->method, "OPTIONS")) {
        size_t n = strlen(v->headers);
        if (n)
            snprintf(v->headers + n, sizeof v->headers - n,
                     "Access-Control-Allow-Methods: " GUARD_METHODS "\r\nAccess-Control-Allow-Headers: " GUARD_HEADERS
                     "\r\nAccess-Control-Max-Age: %d\r\nAllow: " GUARD_METHODS "\r\n",
                     GUARD_MAX_AGE);
        else
            snprintf(v->headers + n, sizeof v->headers - n, "Allow: " GUARD_METHODS "\r\n");
        v->status = 204;
        return;
    }
    int to_api = req->path.len >= 4 && memcmp(req->path.ptr, "/v1/", 4) == 0;
    int write = http_str_is(req->method, "POST") || req->content_length > 0;
    if (to_api && write && !is_json_type(req->content_type)) {
        if (req->content_type.ptr)
            refuse(v, 415, "writes to /v1 (POST, or a body) take Content-Type: application/json, not '%.*s'",
                   req->content_type.ptr, req->content_type.len);
        else
            refuse(v, 415, "writes to /v1 (POST, or a body) take Content-Type: application/json%.*s", "", 0);
    }
}
