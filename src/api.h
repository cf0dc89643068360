/* api: the HTTP side of `starling serve`: the JSON API, /metrics, the health
 * endpoints and the page, over the same commands the Redis protocol runs.
 *
 * Mirror, do not duplicate: each /v1 endpoint is translated into the command
 * a RESP client would send (GET /v1/users/u1/segments?k=5 is SEGMENTS u1
 * COUNT 5), which server.c runs through the one call() path (st_call: the
 * same table, arity checks, statistics, limits and heavy pool), and the
 * RESP reply is translated back into JSON. No handler exists twice.
 *
 * The flow, for server.c: http.c parses a request; st_api_request either
 * answers it at once (a file of the page, /metrics, /healthz, an error) or
 * fills an st_api_call with a command; server.c runs that command and hands
 * its RESP reply to st_api_reply, now or, for a heavy command, when the
 * reply comes back from the pool.
 *
 * Owns: the route table, request-to-command and reply-to-JSON translation,
 * the per-address request-rate limiter, the compiled-in page files.
 * Never: reads or writes a socket, runs a command, blocks (the rate limiter
 * takes a short lock). docs/PROTOCOL.md ("HTTP") documents every endpoint.
 */
#ifndef STARLING_API_H
#define STARLING_API_H

#include <pthread.h>
#include <stdint.h>

#include "http.h"
#include "httpguard.h"
#include "resp.h"
#include "service.h"


/* A request-rate limit per client address: a token bucket of `burst`
 * requests refilled at `rate` per second, for each of up to ST_RATE_SLOTS
 * addresses (an address seen when every slot is taken replaces the one in
 * its slot, starting with a full bucket). rate 0 = no limit. */
#define ST_RATE_SLOTS 4096
typedef struct {
    double rate, burst;
    pthread_mutex_t lock;
    struct {
        uint64_t key;
        double tokens, at;
    } slot[ST_RATE_SLOTS];
} st_ratelimit;

void st_ratelimit_init(st_ratelimit *r, double rate, double burst);
void st_ratelimit_destroy(st_ratelimit *r);
/* Takes one request's token for address (without its port) at monotonic
 * time now; 1 when allowed, 0 when over the limit. */
int st_ratelimit_take(st_ratelimit *r, const char *addr, size_t len, double now);

/* The command a request became, and what its reply needs. */
typedef struct {
    int route;      /* row of the route table */
    int keep_alive;
    unsigned rights;          /* of the bearer token's user (acl.h), for the command's check */
    char user[ST_ACL_NAME_MAX + 1];
    char cors[ST_GUARD_HEADERS_MAX]; /* header lines httpguard.c gave the request, for its reply */
    int argc;
    resp_arg *argv; /* into mem; NUL-terminated, binary-safe */
    char *mem;      /* owned; st_api_call_free */
} st_api_call;

void st_api_call_free(st_api_call *call);

typedef enum { ST_API_RESPONDED = 0, ST_API_RUN = 1 } st_api_action;

/* What a request may need from the server. */
typedef struct {
    st_server *srv;               /* for /metrics and /readyz; NULL: answered as not ready */
    const st_server_ops *ops;     /* srv's services (its figures, for /metrics) */
    const st_server_config *cfg;  /* requirepass, max-args */
    st_served *model;             /* NULL before a model is loaded */
    st_ratelimit *limit;          /* NULL = none */
    const char *addr;             /* the client, "host:port" */
    st_stats *stats;              /* the calling loop's: responses are counted here */
    uint32_t *auth_failures;      /* the connection's wrong bearer tokens; NULL = not counted */
} st_api_env;

/* Decides what the parsed request req is, after httpguard.c's checks of its
 * Host, Origin and Content-Type (a refusal or an OPTIONS preflight is
 * answered here). ST_API_RESPONDED: the whole response is in out (call is
 * empty). ST_API_RUN: call holds the command to
 * run; pass its reply to st_api_reply. Allocates (the call's arguments, JSON
 * trees); out of memory is a 503. */
st_api_action st_api_request(const st_api_env *env, const http_parser *req, st_api_call *call, resp_out *out);

/* For a connection allowed nothing but the probes (past http-maxclients, or
 * refused by protected mode): /healthz and /readyz answered as ever, any
 * other request status with msg; the response closes the connection.
 * Returns 1 when the request was refused, 0 when a probe was answered. */
int st_api_probe(const st_api_env *env, const http_parser *req, int status, const char *msg, resp_out *out);

/* Translates the RESP reply[0..len) of call's command into the JSON
 * response, appended to out, and frees the call. overflow: the reply was
 * lost to the output limit (a 500). */
void st_api_reply(st_stats *stats, st_api_call *call, const char *reply, size_t len, int overflow, resp_out *out);

/* An error response on its own (a request the parser refused, a client
 * over maxclients): {"error": msg, "status": status}. */
void st_api_error(st_stats *stats, resp_out *out, int status, const char *msg, int keep_alive);

/* Translation alone, for the fuzz target and the unit tests: the command
 * for a request to a /v1 endpoint that runs one. ST_API_RUN with call
 * filled, or ST_API_RESPONDED with status and msg (a static or msgbuf
 * string) set. */
st_api_action st_api_translate(const http_parser *req, uint64_t max_args, st_api_call *call, int *status,
                               const char **msg, char *msgbuf, size_t msgcap);


/* The page's files (web/, compiled in by the Makefile): the file for a
 * path, or NULL. */
typedef struct {
    const char *path; /* "/", "/app.js" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} st_web_file;
const st_web_file *st_web_find(const char *path, size_t len);

#endif
