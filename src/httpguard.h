/* httpguard: which HTTP requests a browser may have been tricked into
 * sending, refused before they are routed.
 *
 * Three checks, in this order, each on headers the parser captured (http.h):
 *   Host    must name this server, else 421 (DNS rebinding);
 *   Origin  when present, must be the server's own origin or listed, else
 *           403 (cross-origin requests; OPTIONS preflights are answered here);
 *   Content-Type of a write to /v1 must be application/json, else 415 (a
 *           cross-site "simple request" cannot send that type without a
 *           preflight).
 * The verdict also carries the header lines every API response to the
 * request must have (Access-Control-Allow-Origin for a listed origin).
 *
 * Owns: nothing. Never: allocates, blocks, prints, reads a socket.
 */
#ifndef STARLING_HTTPGUARD_H
#define STARLING_HTTPGUARD_H

#include "http.h"
#include "service.h"

/* The longest Origin header taken: longer ones are refused (403), so that
 * the one echoed back in Access-Control-Allow-Origin always fits. */
#define ST_GUARD_ORIGIN_MAX 256
/* Room for the header lines of a verdict (a preflight's are the longest). */
#define ST_GUARD_HEADERS_MAX 512

typedef struct {
    /* 0: route the request. 204: a preflight, answered with headers alone.
     * 403, 415, 421: refuse it with error. */
    int status;
    const char *error; /* static text, or msg */
    char msg[256];
    /* Complete "Name: value\r\n" lines for every API response to this
     * request (empty when none): Access-Control-Allow-Origin when the Origin
     * is listed in http-allow-origin; a preflight's Allow and
     * Access-Control-Allow-* lines. The caller adds Vary: Origin. */
    char headers[ST_GUARD_HEADERS_MAX];
} st_guard_verdict;

/* Judges the parsed request req against cfg's HTTP settings (http_bind,
 * http_allow_host, http_allow_origin) and fills v. Never fails. */
void st_guard_check(const st_server_config *cfg, const http_parser *req, st_guard_verdict *v);

/* 1 when host (a Host header's value, with or without a port) names this
 * server under cfg: a loopback name, an IP literal, the http-bind address
 * or a listed name; else 0. */
int st_guard_host_ok(const st_server_config *cfg, http_str host);

#endif
