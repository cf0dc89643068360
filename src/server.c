/* server: the event loops, connections, limits, the heavy pool and reloads.
 *
 * Why a small epoll loop and not libuv: each loop here needs four things,
 * level-triggered readiness on a few hundred sockets, one eventfd for
 * wake-ups, a periodic sweep, and precise control of when a connection stops
 * being read (a heavy command in flight, replies piling up, draining). epoll
 * gives each of those in one system call with no callbacks or request
 * objects between the socket and the protocol; with libuv the same needs a
 * uv_write_t per write with the buffer pinned until its callback, an
 * alloc_cb per read, and a uv_async_t per loop. bench/serve.sh measures this
 * loop against a libuv server built from the same parser (bench/uv_ping.c);
 * bench/README.md has the figures.
 *
 * A connection's life: accepted by whichever loop epoll wakes
 * (EPOLLEXCLUSIVE on the shared listening sockets) and served by the loop
 * serving fewest connections (handed over through its eventfd when that is
 * another: one wake-up can accept a whole pool's backlog), read into its input
 * buffer, parsed request by request, each request run to completion by
 * st_call before the next is parsed (so replies are in request order, which
 * pipelining needs), replies appended to its output buffer and written at
 * once. A heavy command pauses the connection (no reading, no parsing) until
 * its reply comes back from the pool through the loop's eventfd. While more
 * than out_soft() bytes of replies wait for the socket, parsing pauses too, so
 * a client that pipelines without reading cannot make the server buffer
 * without bound; past --output-limit (one huge reply) it is dropped.
 *
 * HTTP connections live the same life (process_http instead of the RESP
 * parse), which is why HTTP is served here and not by libmicrohttpd: with
 * its own threads, a request for a heavy command would need a second way to
 * reach the pool and back (MHD_suspend_connection, a resume from the worker),
 * and its own copies of maxclients, idle timeouts, output limits, draining
 * on SIGTERM and the statistics that the loops already have. Here an HTTP
 * request is one more kind of input on a connection; what it costs is
 * http.c, a bounded parser of about 250 lines, fuzzed like the RESP one.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <cblas.h>
#include <time.h>
#include <unistd.h>

#include "als.h"
#include "httpguard.h"
#include "net.h"
#include "privacy.h"
#include "score.h"
#include "server_impl.h"
#include "util.h"

static void loop_refresh_model(st_loop *l);

static const char st_protected_message[] =
    "DENIED starling is running in protected mode: it listens beyond loopback and no password is set, so only "
    "loopback clients are served. Either set a password (requirepass, or users in the config file or an aclfile: "
    "docs/SECURITY.md) and connect with it, or, if every host that can reach this address may use the server, "
    "start it with --protected-mode no (protected-mode no in the config file).";




/* ---- connections ---------------------------------------------------------- */

/* The loop's clock for idle accounting: CLOCK_MONOTONIC_COARSE (a few
 * milliseconds of resolution, a few nanoseconds to read), once per wake-up
 * rather than a full clock read for every read and write. */
static double loop_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void client_free(st_client *c)
{
    st_api_call_free(&c->call);
    st_free(c->in);
    resp_parser_free(&c->parser);
    resp_out_free(&c->out);
    st_free(c);
}

static void sync_wait_remove(st_client *c)
{
    if (!c->syncing) return;
    if (c->sync_prev) c->sync_prev->sync_next = c->sync_next;
    else c->loop->sync_wait = c->sync_next;
    if (c->sync_next) c->sync_next->sync_prev = c->sync_prev;
    c->sync_prev = c->sync_next = NULL;
    c->syncing = 0;
}

static void client_close(st_client *c, const char *why)
{
    st_loop *l = c->loop;
    sync_wait_remove(c);
    st_log(ST_LOG_VERBOSE, "client %llu (%s) closed: %s", (unsigned long long)c->sess.id, c->sess.addr, why);
    int fd = c->fd;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->closed++;
    pthread_mutex_lock(&l->srv->clients_lock);
    c->fd = -1;
    if (c->prev) c->prev->next = c->next;
    else l->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&l->srv->clients_lock);
    l->nclients--;
    atomic_fetch_sub(&l->assigned, 1);
    atomic_fetch_sub(&l->srv->nclients, 1);
    atomic_fetch_sub(c->is_http ? &l->srv->nclients_http : &l->srv->nclients_resp, 1);
    /* Closed last: whoever sees the connection end no longer finds it in CLIENT LIST or KILL,
     * nor in the counts. */
    close(fd);
    if (c->blocked) c->dead = 1; /* the job still points here */
    else client_free(c);
}

static size_t pending(const st_client *c) { return c->out.len - c->out_pos; }

/* Replies waiting past which a connection's requests stop being parsed:
 * OUT_SOFT, or half the output limit when that is smaller, so that a client
 * pipelining without reading is paused long before it could be dropped. */
static size_t out_soft(const st_client *c)
{
    size_t half = (size_t)(c->loop->srv->cfg.output_limit / 2);
    return half < OUT_SOFT ? half : OUT_SOFT;
}

static void set_events(st_client *c)
{
    st_loop *l = c->loop;
    uint32_t want = 0;
    if (!c->blocked && !c->sess.close_after_reply && !l->draining && pending(c) < out_soft(c)) want |= EPOLLIN;
    if (pending(c) > 0 && !c->syncing) want |= EPOLLOUT;
    if (want == c->events) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

/* Hands a heavy command to the pool: copies its arguments (the input buffer
 * moves on) and a reference to the model. */
static int defer(st_client *c, st_ctx *ctx, const st_command *cmd, uint64_t t0)
{
    st_loop *l = c->loop;
    st_server *srv = l->srv;
    size_t bytes = 0;
    for (int i = 0; i < ctx->argc; i++) bytes += ctx->argv[i].len + 1;
    st_job *j = st_calloc(1, sizeof *j + (size_t)ctx->argc * sizeof(resp_arg) + bytes);
    if (!j) return -1;
    j->argv = (resp_arg *)(j + 1);
    char *p = (char *)(j->argv + ctx->argc);
    for (int i = 0; i < ctx->argc; i++) {
        memcpy(p, ctx->argv[i].ptr, ctx->argv[i].len);
        p[ctx->argv[i].len] = '\0';
        j->argv[i].ptr = p;
        j->argv[i].len = ctx->argv[i].len;
        p += ctx->argv[i].len + 1;
    }
    j->argc = ctx->argc;
    j->c = c;
    j->loop = l;
    j->cmd = cmd;
    j->t0 = t0;
    atomic_fetch_add(&l->model->refs, 1);
    j->model = l->model;
    resp_out_init(&j->out, srv->cfg.output_limit);
    j->out.proto = c->out.proto;
    c->blocked = 1;
    atomic_fetch_add(&srv->blocked, 1);
    pthread_mutex_lock(&srv->q_lock);
    if (srv->q_tail) srv->q_tail->next = j;
    else srv->q_head = j;
    srv->q_tail = j;
    srv->q_len++;
    pthread_cond_signal(&srv->q_cond);
    pthread_mutex_unlock(&srv->q_lock);
    return 0;
}

/* Under appendfsync always, a reply leaves only once every write it may have
 * seen is durable: the connection's replies wait for the last record
 * appended when the command ran (loop_commit's fdatasync covers it). A
 * reply computed from a model tainted by a failed fdatasync (writes applied
 * that are not durable and never will be) waits forever, which closes the
 * connection without it, until the model rebuilt without them is served. */
static void reply_saw_journal(st_client *c, const st_served *model)
{
    st_server *srv = c->loop->srv;
    if (!model || !srv->journal || st_journal_policy(srv->journal) != ST_APPENDFSYNC_ALWAYS) return;
    uint64_t seen = st_journal_last_seq(srv->journal);
    uint64_t tainted = atomic_load(&srv->tainted_gen);
    if (tainted && model->generation <= tainted) seen = UINT64_MAX;
    if (seen > c->sess.journal_wait) c->sess.journal_wait = seen;
}

/* After a pass over the input: forgets what was consumed, gives a buffer
 * grown by a large request back, and times the request still incomplete
 * (from its first byte, or from the last request completed: a client
 * pipelining at full speed always has a partial request in its buffer). */
static void input_consumed(st_client *c, int progressed)
{
    if (c->in_start == c->in_len) {
        c->in_start = c->in_len = 0;
        c->req_started = 0;
        if (c->in_cap > IN_KEEP) {
            char *p = st_realloc(c->in, IN_KEEP);
            if (p) {
                c->in = p;
                c->in_cap = IN_KEEP;
            }
        }
    } else if (progressed || !c->req_started) {
        c->req_started = c->loop->now;
    }
}

/* The context a request of c with argc arguments at argv runs in, its
 * reply going to out. */
static st_ctx request_ctx(st_client *c, resp_out *out, int argc, resp_arg *argv)
{
    st_loop *l = c->loop;
    st_server *srv = l->srv;
    return (st_ctx){.srv = srv,
                    .ops = &st_srv_ops,
                    .cfg = &srv->cfg,
                    .session = &c->sess,
                    .model = l->model,
                    .scratch = &l->scratch,
                    .out = out,
                    .argc = argc,
                    .argv = argv,
                    .stats = &l->stats,
                    .slowlog = &srv->slowlog};
}

/* process_input for a connection on the HTTP port: each request is parsed
 * by http.c and handed to api.c, which answers it or names a command; the
 * command runs through st_call exactly as a RESP request's does (deferred to
 * the heavy pool when it is heavy), and its reply goes back to api.c to
 * become JSON. */
static int process_http(st_client *c)
{
    st_loop *l = c->loop;
    st_server *srv = l->srv;
    int progressed = 0;
    while (!c->blocked && !c->sess.close_after_reply && c->in_start < c->in_len) {
        if (pending(c) >= out_soft(c)) return 1;
        size_t consumed = 0;
        http_status st = http_parse(&c->http, c->in + c->in_start, c->in_len - c->in_start, &consumed);
        if (st == HTTP_NEED_MORE) {
            if (c->http.continue_due) {
                /* A request httpguard will refuse is not asked for its body:
                 * the refusal follows once the client sends it anyway. */
                st_guard_verdict g;
                st_guard_check(&srv->cfg, &c->http, &g);
                if (g.status == 0 || g.status == 204) http_continue(&c->out);
                c->http.continue_due = 0;
                c->http.continue_done = 1;
            }
            break;
        }
        if (st == HTTP_ERROR) {
            st_stat_bump(&l->stats.protocol_errors, 1);
            st_log(ST_LOG_VERBOSE, "client %llu (%s): HTTP %d: %s", (unsigned long long)c->sess.id, c->sess.addr,
                   c->http.error_status, c->http.error);
            st_api_error(&l->stats, &c->out, c->http.error_status, c->http.error, 0);
            c->sess.close_after_reply = 1;
            c->in_start = c->in_len;
            break;
        }
        c->last_active = l->now; /* a complete request is activity, as in process_input */
        st_api_env env = {.srv = srv,
                          .ops = &st_srv_ops,
                          .cfg = &srv->cfg,
                          .model = l->model,
                          .limit = &srv->limit,
                          .addr = c->sess.addr,
                          .stats = &l->stats,
                          .auth_failures = &c->sess.auth_failures};
        if (c->probes_only) {
            int full = c->probes_only == PROBES_FULL;
            if (st_api_probe(&env, &c->http, full ? 429 : 403,
                             full ? "max number of HTTP clients reached (http-maxclients)" : st_protected_message,
                             &c->out) &&
                !full)
                st_stat_bump(&l->stats.protected_refused, 1);
            c->sess.close_after_reply = 1;
            c->in_start = c->in_len;
            break;
        }
        if (st_api_request(&env, &c->http, &c->call, &c->out) == ST_API_RUN) {
            /* api.c checked the bearer token: its user's rights hold for this request */
            c->sess.rights = c->call.rights;
            snprintf(c->sess.user, sizeof c->sess.user, "%s", c->call.user);
            l->http_reply.len = 0;
            l->http_reply.overflow = 0;
            l->http_reply.proto = 2; /* api.c reads RESP2 whatever HELLO said */
            st_ctx ctx = request_ctx(c, &l->http_reply, c->call.argc, c->call.argv);
            const st_command *cmd = NULL;
            uint64_t t0 = 0;
            st_stat_bump(&l->stats.commands, 1);
            if (st_call(&ctx, &l->stats, &cmd, &t0) == ST_CALL_DEFER) {
                if (defer(c, &ctx, cmd, t0) != 0) {
                    st_api_call_free(&c->call);
                    st_api_error(&l->stats, &c->out, 503, "out of memory", c->http.keep_alive);
                }
            } else {
                reply_saw_journal(c, l->model);
                st_api_reply(&l->stats, &c->call, l->http_reply.buf, l->http_reply.len, l->http_reply.overflow,
                             &c->out);
            }
        }
        if (!c->http.keep_alive || c->sess.auth_failures >= ST_AUTH_MAX_FAILURES) c->sess.close_after_reply = 1;
        c->in_start += consumed;
        progressed = 1;
        http_parser_reset(&c->http);
    }
    input_consumed(c, progressed);
    return 0;
}

/* Runs one parsed request (argc > 0) on c through st_call, as request
 * run->at of run (NULL: alone): on the loop, or handed to the heavy pool. */
static void run_request(st_client *c, int argc, resp_arg *argv, const st_run *run)
{
    st_loop *l = c->loop;
    st_ctx ctx = request_ctx(c, &c->out, argc, argv);
    ctx.run = run;
    const st_command *cmd = NULL;
    uint64_t t0 = 0;
    st_stat_bump(&l->stats.commands, 1);
    /* CLIENT REPLY OFF and SKIP: the reply is made (and timed) as always,
     * then dropped. */
    size_t before = c->out.len;
    int skip = c->sess.reply_skip;
    c->sess.reply_skip = 0;
    if (st_call(&ctx, &l->stats, &cmd, &t0) == ST_CALL_DEFER) {
        if (defer(c, &ctx, cmd, t0) != 0) resp_error(&c->out, "ERR out of memory");
        else c->discard_reply = skip || c->sess.reply_off;
    } else {
        reply_saw_journal(c, l->model);
        if (skip || c->sess.reply_off) c->out.len = before;
    }
    if (c->sess.reply_skip_next) {
        c->sess.reply_skip_next = 0;
        c->sess.reply_skip = 1;
    }
}

/* ---- runs of pipelined SEGMENTS ------------------------------------------- */

/* Requests that a connection pipelines are normally parsed and run one at
 * a time. A run of SEGMENTS requests already complete in the input is
 * parsed first and run together (st_run: the first request's handler
 * scores all of them at once, each still runs through st_call and replies
 * in order). Only consecutive SEGMENTS requests make a run, so every
 * command before or after one sees and is seen exactly as when run one at
 * a time, and the replies of a run go out in the one write that follows. */

static int is_segments(const resp_arg *a) { return a->len == 8 && strncasecmp(a->ptr, "segments", 8) == 0; }

/* The number of arguments of the RESP array that buf (len bytes) starts
 * with when its first argument is SEGMENTS (any case), else 0. Reads only:
 * whether it is complete is resp_parse's to say. */
static uint32_t peek_segments(const char *buf, size_t len)
{
    if (len < 2 || buf[0] != '*') return 0;
    size_t i = 1;
    uint32_t n = 0;
    for (; i < len && i < 8 && buf[i] >= '0' && buf[i] <= '9'; i++) n = n * 10 + (uint32_t)(buf[i] - '0');
    if (i == 1 || i + 16 > len) return 0;
    if (memcmp(buf + i, "\r\n$8\r\n", 6) != 0 || strncasecmp(buf + i + 6, "segments", 8) != 0 ||
        memcmp(buf + i + 14, "\r\n", 2) != 0)
        return 0;
    return n;
}

/* The parser wrote a NUL over the CR after each argument of the RESP
 * arrays it read (resp.h); putting the CRs back leaves the bytes as they
 * came, to be parsed again. */
static void unparse(resp_arg *argv, int argc)
{
    for (int i = 0; i < argc; i++) ((char *)argv[i].ptr)[argv[i].len] = '\r';
}

/* c has just run l->run's first request (whose arguments are in l->run_args,
 * the input past it): reads on, into the run, the complete SEGMENTS requests
 * that follow in the input, up to ST_RUN_MAX requests and ST_RUN_ARGS
 * arguments. Every request read is a RESP array (so unparse can give it
 * back); the parser may be left in the middle of the request after them. */
static void gather_run(st_client *c)
{
    st_loop *l = c->loop;
    st_run *run = &l->run;
    uint32_t used = (uint32_t)run->argc[0];
    while (run->n < ST_RUN_MAX && c->in_start < c->in_len) {
        uint32_t nargs = peek_segments(c->in + c->in_start, c->in_len - c->in_start);
        if (nargs == 0 || used + nargs > ST_RUN_ARGS) break;
        size_t consumed = 0;
        if (resp_parse(&c->parser, c->in + c->in_start, c->in_len - c->in_start, &consumed) != RESP_OK) break;
        resp_arg *a = l->run_args + used;
        memcpy(a, c->parser.argv, c->parser.argc * sizeof *a);
        used += c->parser.argc;
        l->run_off[run->n] = c->in_start;
        run->argc[run->n] = (int)c->parser.argc;
        run->argv[run->n++] = a;
        c->in_start += consumed;
        resp_parser_reset(&c->parser);
    }
}

/* Stops a run before its request `from` (replies piling up): that request
 * and those after it, and the one the parser is in the middle of, go back
 * to the input unread. */
static void rewind_run(st_client *c, int from)
{
    st_loop *l = c->loop;
    resp_parser *p = &c->parser;
    for (uint32_t i = 0; i < p->argc; i++) c->in[c->in_start + p->arg_off[i] + p->arg_len[i]] = '\r';
    resp_parser_reset(p);
    for (int i = from; i < l->run.n; i++) unparse(l->run.argv[i], l->run.argc[i]);
    c->in_start = l->run_off[from];
}

/* c's request of argc arguments at argv (consumed bytes at in_start) is a
 * SEGMENTS: gathers the run it starts and runs it. 1 when replies piled up
 * before the end of the run (the rest is left in the input), else 0. */
static int serve_run(st_client *c, int argc, resp_arg *argv, size_t consumed)
{
    st_loop *l = c->loop;
    st_run *run = &l->run;
    if (argc > ST_RUN_ARGS) {
        run_request(c, argc, argv, NULL);
        c->in_start += consumed;
        resp_parser_reset(&c->parser);
        return 0;
    }
    run->id++;
    run->n = 1;
    run->argc[0] = argc;
    run->argv[0] = l->run_args;
    memcpy(l->run_args, argv, (size_t)argc * sizeof *argv);
    l->run_off[0] = c->in_start;
    c->in_start += consumed;
    resp_parser_reset(&c->parser);
    gather_run(c);
    for (run->at = 0; run->at < run->n; run->at++) {
        if (run->at > 0 && (pending(c) >= out_soft(c) || c->blocked || c->sess.close_after_reply)) {
            rewind_run(c, run->at);
            return 1;
        }
        run_request(c, run->argc[run->at], run->argv[run->at], run->n > 1 ? run : NULL);
    }
    return 0;
}

/* Parses and runs complete requests until the input runs out, a heavy
 * command is in flight, the connection is to close, or replies pile up.
 * Returns 1 when it stopped only because of piled-up replies. */
static int process_input(st_client *c)
{
    st_loop *l = c->loop;
    st_server *srv = l->srv;
    if (c->is_http) return process_http(c);
    int progressed = 0;
    while (!c->blocked && !c->sess.close_after_reply && c->in_start < c->in_len) {
        if (pending(c) >= out_soft(c)) return 1;
        size_t consumed = 0;
        /* Before AUTH, requests are held to a few small arguments (AUTH,
         * HELLO, PING, QUIT need no more): a client without the password
         * cannot make the server buffer a large request. */
        c->parser.lim = (c->sess.rights & ST_RIGHT_AUTHED) ? srv->lim : srv->lim_preauth;
        resp_status st = resp_parse(&c->parser, c->in + c->in_start, c->in_len - c->in_start, &consumed);
        if (st == RESP_NEED_MORE) break;
        if (st == RESP_ERROR && c->parser.cross_protocol) {
            st_stat_bump(&l->stats.cross_protocol, 1);
            st_log(ST_LOG_WARNING, "client %llu (%s): possible SECURITY ATTACK detected: it sent an HTTP request line "
                                   "or a Host: header to the Redis protocol port (cross-protocol scripting, e.g. a "
                                   "browser made to POST here); connection closed, nothing it sent was run",
                   (unsigned long long)c->sess.id, c->sess.addr);
            client_close(c, "cross-protocol request");
            return -1;
        }
        if (st == RESP_ERROR) {
            st_stat_bump(&l->stats.protocol_errors, 1);
            st_log(ST_LOG_VERBOSE, "client %llu (%s): %s", (unsigned long long)c->sess.id, c->sess.addr,
                   c->parser.error);
            resp_error(&c->out, "ERR %s", c->parser.error);
            c->sess.close_after_reply = 1;
            c->in_start = c->in_len;
            break;
        }
        /* A complete request is activity; bytes of an unfinished one are not,
         * so a client that trickles a request a byte at a time is still cut
         * by the idle timeout. */
        c->last_active = l->now;
        progressed = 1;
        if (c->parser.argc > 0) {
            /* A reload swapped models: take the new one (and its overlay)
             * before this request, so that nothing acknowledged on another
             * loop after the swap is missing from this reply. */
            if (atomic_load(&srv->model_gen) != l->model_gen) loop_refresh_model(l);
            if (is_segments(&c->parser.argv[0])) {
                if (serve_run(c, (int)c->parser.argc, c->parser.argv, consumed) != 0) return 1;
                continue;
            }
            run_request(c, (int)c->parser.argc, c->parser.argv, NULL);
        }
        c->in_start += consumed;
        resp_parser_reset(&c->parser);
    }
    input_consumed(c, progressed);
    return 0;
}

/* Writes what it can. Returns -1 when the client was closed. */
static int flush_out(st_client *c)
{
    st_loop *l = c->loop;
    if (c->out.overflow) {
        st_stat_bump(&l->stats.dropped_output, 1);
        st_log(ST_LOG_WARNING, "client %llu (%s) dropped: replies over the output limit of %llu bytes",
               (unsigned long long)c->sess.id, c->sess.addr, (unsigned long long)l->srv->cfg.output_limit);
        client_close(c, "output limit");
        return -1;
    }
    while (pending(c) > 0) {
        ssize_t n = write(c->fd, c->out.buf + c->out_pos, pending(c));
        if (n > 0) {
            c->out_pos += (size_t)n;
            st_stat_bump(&l->stats.net_out, (uint64_t)n);
            /* A client still reading a long reply is not idle. */
            c->last_active = l->now;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        client_close(c, "write error");
        return -1;
    }
    if (c->out_pos == c->out.len) {
        c->out.len = c->out_pos = 0;
        if (c->out.cap > OUT_KEEP) resp_out_free(&c->out); /* a large reply's buffer goes back */
    } else if (c->out_pos > c->out.len / 2) {
        resp_out_consume(&c->out, c->out_pos);
        c->out_pos = 0;
    }
    return 0;
}

/* 1 when the connection's replies include writes the journal has not made
 * durable yet under appendfsync always: they wait for loop_commit. */
static int replies_wait_for_sync(const st_client *c)
{
    st_journal *j = c->loop->srv->journal;
    return j && c->sess.journal_wait && st_journal_policy(j) == ST_APPENDFSYNC_ALWAYS &&
           c->sess.journal_wait > st_journal_durable_seq(j);
}

/* Everything a connection needs after new input or a finished job. */
static void client_service(st_client *c)
{
    for (;;) {
        int piled = process_input(c);
        if (piled < 0) return; /* closed */
        if (replies_wait_for_sync(c)) {
            /* Held, not sent: the loop fdatasyncs once for every connection
             * in this state at the end of its iteration (loop_commit). */
            if (!c->syncing) {
                c->syncing = 1;
                c->sync_prev = NULL;
                c->sync_next = c->loop->sync_wait;
                if (c->loop->sync_wait) c->loop->sync_wait->sync_prev = c;
                c->loop->sync_wait = c;
            }
            break;
        }
        if (flush_out(c) != 0) return;
        if (piled && pending(c) < out_soft(c)) continue;
        break;
    }
    if (!c->blocked && pending(c) == 0 && (c->sess.close_after_reply || c->loop->draining)) {
        client_close(c, c->sess.close_after_reply ? "closed after reply" : "server shutting down");
        return;
    }
    st_srv_client_publish(c);
    set_events(c);
}

static void client_read(st_client *c)
{
    if (c->in_cap - c->in_len < READ_CHUNK) {
        if (c->in_start > 0) {
            memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
            c->in_len -= c->in_start;
            c->in_start = 0;
        }
        /* The parser refuses any request longer than max-request long before
         * the buffer grows past this bound. */
        size_t limit = c->parser.lim.max_request + 2 * READ_CHUNK + 64;
        if (c->in_cap - c->in_len < READ_CHUNK && c->in_cap < limit) {
            size_t cap = c->in_cap * 2;
            if (cap > limit) cap = limit;
            char *p = st_realloc(c->in, cap);
            if (!p) {
                client_close(c, "out of memory for input");
                return;
            }
            c->in = p;
            c->in_cap = cap;
        }
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n == 0) {
        client_close(c, "connection closed by the client");
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        client_close(c, strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    st_stat_bump(&c->loop->stats.net_in, (uint64_t)n);
    client_service(c);
}


/* The peer's "host:port" into addr; 1 when it is a loopback address. */
static int peer_name(const struct sockaddr_storage *sa, char *addr, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0, loop = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        loop = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        loop = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) || (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && s6->sin6_addr.s6_addr[12] == 127);
    }
    snprintf(addr, cap, "%s:%d", host, port);
    return loop;
}

/* Refuses fd with a last word (an error reply, or an HTTP response). */
static void refuse(st_loop *l, int fd, int http, int status, const char *msg)
{
    if (http) {
        resp_out o;
        resp_out_init(&o, 4096);
        st_api_error(&l->stats, &o, status, msg, 0);
        if (o.len && write(fd, o.buf, o.len) < 0) { /* the client is going away either way */
        }
        resp_out_free(&o);
    } else {
        char line[1024];
        int n = snprintf(line, sizeof line, "-%s\r\n", msg);
        if (n > 0 && write(fd, line, (size_t)n) < 0) { /* as above */
        }
    }
    close(fd);
}

/* Whether a new connection is let in, by its protocol's budget and, in
 * protected mode, its address: 0 in full, PROBES_* to ask /healthz and
 * /readyz alone, -1 refused (fd closed, the budget given back). */
static int admit(st_loop *l, const st_listener *ls, int fd, int loopback)
{
    st_server *srv = l->srv;
    if (srv->protected_mode && !ls->is_unix && !loopback && !ls->is_http) {
        st_stat_bump(&l->stats.protected_refused, 1);
        refuse(l, fd, 0, 0, st_protected_message);
        return -1;
    }
    if (ls->is_http) {
        uint64_t n = atomic_fetch_add(&srv->nclients_http, 1);
        if (n < srv->cfg.http_maxclients)
            return srv->protected_mode && !loopback ? PROBES_PROTECTED : 0;
        if (n < srv->cfg.http_maxclients + HTTP_PROBE_SLOTS) return PROBES_FULL;
        atomic_fetch_sub(&srv->nclients_http, 1);
        st_stat_bump(&l->stats.rejected_connections, 1);
        refuse(l, fd, 1, 429, "max number of HTTP clients reached (http-maxclients)");
        return -1;
    }
    if (atomic_fetch_add(&srv->nclients_resp, 1) < srv->cfg.maxclients) return 0;
    atomic_fetch_sub(&srv->nclients_resp, 1);
    st_stat_bump(&l->stats.rejected_connections, 1);
    refuse(l, fd, 0, 0, "ERR max number of clients reached");
    return -1;
}

/* A connection's state, from its first byte on. NULL when out of memory. */
static st_client *client_new(st_loop *l, const st_listener *ls, int fd)
{
    st_server *srv = l->srv;
    st_client *c = st_calloc(1, sizeof *c);
    char *in = st_malloc(IN_KEEP);
    if (!c || !in) {
        st_free(c);
        st_free(in);
        return NULL;
    }
    c->kind = H_CLIENT;
    c->fd = fd;
    c->loop = l;
    if (ls->is_http) {
        http_limits hl;
        http_limits_default(&hl);
        hl.max_body = srv->cfg.max_request;
        http_parser_init(&c->http, &hl);
        c->is_http = 1;
    }
    c->in = in;
    c->in_cap = IN_KEEP;
    resp_parser_init(&c->parser, &srv->lim_preauth);
    resp_out_init(&c->out, srv->cfg.output_limit);
    c->sess.id = atomic_fetch_add(&srv->next_client_id, 1) + 1;
    c->sess.rights = st_acl_initial_rights(srv->cfg.acl);
    snprintf(c->sess.user, sizeof c->sess.user, "default");
    c->sess.created = st_now();
    c->sess.resp = 2;
    c->last_active = l->now;
    c->events = EPOLLIN;
    return c;
}

/* Closes an accepted connection loop l was to serve, and uncounts it. */
static void drop_accepted(st_loop *l, const st_listener *ls, int fd)
{
    close(fd);
    atomic_fetch_sub(ls->is_http ? &l->srv->nclients_http : &l->srv->nclients_resp, 1);
    atomic_fetch_sub(&l->assigned, 1);
}

/* Takes up an accepted connection (admitted, its peer's address in addr)
 * on loop l; NULL when it could not (closed and uncounted). */
static st_client *adopt_client(st_loop *l, st_listener *ls, int fd, int probes, const char *addr)
{
    st_server *srv = l->srv;
    st_client *c = client_new(l, ls, fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (!c || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (c) client_free(c);
        drop_accepted(l, ls, fd);
        return NULL;
    }
    if (!ls->is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    snprintf(c->sess.addr, sizeof c->sess.addr, "%s", addr);
    if (ls->is_unix) snprintf(c->sess.laddr, sizeof c->sess.laddr, "%s:0", srv->cfg.unixsocket);
    else snprintf(c->sess.laddr, sizeof c->sess.laddr, "%.48s:%d", ls->is_http ? srv->http_addr : srv->tcp_addr,
                  ls->is_http ? srv->http_port : srv->tcp_port);
    c->probes_only = probes;
    st_srv_client_publish(c);
    pthread_mutex_lock(&srv->clients_lock);
    c->next = l->clients;
    if (l->clients) l->clients->prev = c;
    l->clients = c;
    pthread_mutex_unlock(&srv->clients_lock);
    l->nclients++;
    atomic_fetch_add(&srv->nclients, 1);
    st_stat_bump(&l->stats.connections, 1);
    if (c->is_http) st_stat_bump(&l->stats.http_connections, 1);
    st_log(ST_LOG_DEBUG, "client %llu connected from %s", (unsigned long long)c->sess.id, c->sess.addr);
    return c;
}

/* A connection of a loop that has begun to drain: what sits in its
 * socket's buffer is read once more and answered; nothing else is read. */
static void drain_one(st_client *c)
{
    if (!c->blocked && c->in_cap > c->in_len) {
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0) {
            client_close(c, "connection closed by the client");
            return;
        }
        if (n > 0) c->in_len += (size_t)n;
    }
    client_service(c);
}

/* The loop serving fewest connections (l itself on a tie): whichever loop
 * epoll wakes accepts everything waiting, and clients that open their
 * pool at once would otherwise all land on it. */
static st_loop *least_loaded(st_loop *l)
{
    st_server *srv = l->srv;
    st_loop *best = l;
    uint64_t least = atomic_load_explicit(&l->assigned, memory_order_relaxed);
    for (int i = 0; i < srv->nloops; i++) {
        uint64_t a = atomic_load_explicit(&srv->loops[i].assigned, memory_order_relaxed);
        if (a < least) {
            least = a;
            best = &srv->loops[i];
        }
    }
    return best;
}

/* Gives an accepted connection to loop t (counted as t's, t woken through
 * its eventfd); 0 when t takes no more (shutting down, or its queue full). */
static int hand_off(st_loop *t, st_listener *ls, int fd, int probes, const char *addr)
{
    pthread_mutex_lock(&t->handoff_lock);
    int ok = !t->handoff_closed && t->nhandoff < ST_HANDOFF_MAX;
    if (ok) {
        struct st_handoff *h = &t->handoff[t->nhandoff++];
        h->fd = fd;
        h->probes = probes;
        h->ls = ls;
        snprintf(h->addr, sizeof h->addr, "%s", addr);
        atomic_fetch_add(&t->assigned, 1);
    }
    pthread_mutex_unlock(&t->handoff_lock);
    if (ok) {
        uint64_t one = 1;
        if (write(t->evfd, &one, sizeof one) < 0) { /* a saturated counter still wakes the loop */
        }
    }
    return ok;
}

/* Takes up the connections given to l (a draining loop answers what they
 * already sent, as it does its own); with close_all (the loop is gone or
 * going), closes them instead, and takes no more. */
void st_srv_take_handoffs(st_loop *l, int close_all)
{
    struct st_handoff h[ST_HANDOFF_MAX];
    pthread_mutex_lock(&l->handoff_lock);
    int n = l->nhandoff;
    memcpy(h, l->handoff, (size_t)n * sizeof *h);
    l->nhandoff = 0;
    if (close_all) l->handoff_closed = 1;
    pthread_mutex_unlock(&l->handoff_lock);
    for (int i = 0; i < n; i++) {
        if (!close_all) {
            st_client *c = adopt_client(l, h[i].ls, h[i].fd, h[i].probes, h[i].addr);
            if (c && l->draining) drain_one(c);
            continue;
        }
        drop_accepted(l, h[i].ls, h[i].fd);
    }
}

static void accept_clients(st_loop *l, st_listener *ls)
{
    st_server *srv = l->srv;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        int fd = accept4(ls->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE)
                st_log(ST_LOG_WARNING, "accept: %s (raise the file limit or lower --maxclients)", strerror(errno));
            return;
        }
        char addr[64];
        int loopback = 1;
        if (ls->is_unix) snprintf(addr, sizeof addr, "%s:0", srv->cfg.unixsocket);
        else loopback = peer_name(&sa, addr, sizeof addr);
        int probes = admit(l, ls, fd, loopback);
        if (probes < 0) continue;
        st_loop *t = least_loaded(l);
        if (t != l && hand_off(t, ls, fd, probes, addr)) continue;
        atomic_fetch_add(&l->assigned, 1);
        adopt_client(l, ls, fd, probes, addr);
    }
}

/* ---- the loops ------------------------------------------------------------ */

static void loop_refresh_model(st_loop *l)
{
    st_served *s = st_srv_model_acquire(l->srv);
    if (!s) return;
    if (st_scratch_fit(&l->scratch, &s->m, 0, l->srv->cfg.max_args) != 0) {
        /* Keep serving the model this loop has; try again next time round. */
        st_log(ST_LOG_WARNING, "loop %d: out of memory sizing scratch for the new model", l->id);
        st_served_release(s);
        return;
    }
    st_served_release(l->model);
    l->model = s;
    l->model_gen = s->generation;
}

void st_srv_reap_killed(st_loop *l)
{
    atomic_store(&l->kills, 0);
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        if (atomic_load(&c->kill)) client_close(c, "killed by CLIENT KILL");
    }
}

void st_srv_finish_jobs(st_loop *l)
{
    pthread_mutex_lock(&l->done_lock);
    st_job *j = l->done;
    l->done = NULL;
    pthread_mutex_unlock(&l->done_lock);
    while (j) {
        st_job *next = j->next;
        st_client *c = j->c;
        st_ctx fctx = {.cfg = &l->srv->cfg, .session = c->dead ? NULL : &c->sess, .argc = j->argc, .argv = j->argv,
                       .slowlog = &l->srv->slowlog};
        st_call_finish(&fctx, &l->stats, j->cmd, j->t0, j->out.buf, j->out.len);
        atomic_fetch_sub(&l->srv->blocked, 1);
        c->blocked = 0;
        if (c->dead) {
            client_free(c);
        } else {
            if (c->is_http) st_api_reply(&l->stats, &c->call, j->out.buf, j->out.len, j->out.overflow, &c->out);
            else if (c->discard_reply) c->discard_reply = 0;
            else if (j->out.overflow) c->out.overflow = 1;
            else resp_raw(&c->out, j->out.buf, j->out.len);
            reply_saw_journal(c, j->model);
            if (c->req_started) c->req_started = l->now; /* the rest of its pipeline waited for us, not for it */
            client_service(c);
        }
        resp_out_free(&j->out);
        st_served_release(j->model);
        st_free(j);
        j = next;
    }
}

/* Group commit for appendfsync always: one fdatasync covers the records of
 * every connection of this iteration whose replies wait for it, then those
 * replies go out (and their pipelines resume, which may write again). If
 * the fdatasync fails nothing they wait for can be called durable: the
 * connections are closed without their replies (their clients cannot tell
 * whether the writes took effect, as after a crash) and the journal refuses
 * writes from then on; reads go on. */
static void loop_commit(st_loop *l)
{
    for (int round = 0; l->sync_wait && round < 64; round++) {
        uint64_t want = 0;
        for (st_client *c = l->sync_wait; c; c = c->sync_next)
            if (c->sess.journal_wait > want) want = c->sess.journal_wait;
        char err[ST_ERRLEN];
        int rc = st_journal_sync(l->srv->journal, want, err);
        st_client *list = l->sync_wait;
        l->sync_wait = NULL;
        for (st_client *c = list, *next; c; c = next) {
            next = c->sync_next;
            c->syncing = 0;
            c->sync_prev = c->sync_next = NULL;
            if (rc != 0) {
                c->out.len = c->out_pos = 0;
                client_close(c, "journal fsync failed: replies withheld");
            } else {
                client_service(c);
            }
        }
        if (rc != 0) {
            if (!atomic_load(&l->srv->tainted_gen))
                st_log(ST_LOG_WARNING, "journal: %s; replies that waited for it were not sent (their connections are "
                                       "closed), the writes it lost are being undone and writes are refused until "
                                       "restart",
                       err);
            st_srv_lost_writes(l->srv);
        }
    }
}

static void loop_start_drain(st_loop *l)
{
    st_server *srv = l->srv;
    l->draining = 1;
    l->drain_deadline = st_now() + srv->cfg.shutdown_timeout;
    if (srv->tcp.fd >= 0) epoll_ctl(l->epfd, EPOLL_CTL_DEL, srv->tcp.fd, NULL);
    if (srv->unx.fd >= 0) epoll_ctl(l->epfd, EPOLL_CTL_DEL, srv->unx.fd, NULL);
    if (srv->http.fd >= 0) epoll_ctl(l->epfd, EPOLL_CTL_DEL, srv->http.fd, NULL);
    /* Requests already received are answered (drain_one). */
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        drain_one(c);
    }
    loop_commit(l);
}

/* Once a second: closes connections idle past --timeout, and cuts those
 * whose started request has not completed within --request-timeout (a
 * client trickling bytes holds a connection slot without ever asking
 * anything). A request waiting on us (a heavy command in flight, replies
 * the client has not read, a held reply) is not the client's delay. */
static void sweep_idle(st_loop *l, double now)
{
    double t = l->srv->cfg.timeout, rt = l->srv->cfg.request_timeout;
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        if (c->blocked) continue;
        if (t > 0 && now - c->last_active > t) {
            st_stat_bump(&l->stats.idle_closed, 1);
            client_close(c, "idle timeout");
        } else if (rt > 0 && c->req_started && now - c->req_started > rt && !c->syncing && pending(c) < out_soft(c)) {
            st_stat_bump(&l->stats.request_timeouts, 1);
            st_log(ST_LOG_VERBOSE, "client %llu (%s): request not complete after %g s (request-timeout): closed",
                   (unsigned long long)c->sess.id, c->sess.addr, rt);
            client_close(c, "request timeout");
        }
    }
}

/* 1 when a draining loop may end: nothing left to answer (no connection,
 * none handed over and not yet taken up) or the drain deadline passed.
 * Decided under the hand-off lock, which then refuses more hand-offs (the
 * accepting loop keeps such a connection itself). */
static int loop_may_exit(st_loop *l)
{
    pthread_mutex_lock(&l->handoff_lock);
    int done = (l->nclients == 0 && l->nhandoff == 0) || st_now() > l->drain_deadline;
    if (done) l->handoff_closed = 1;
    pthread_mutex_unlock(&l->handoff_lock);
    return done;
}

void *st_srv_loop_main(void *arg)
{
    st_loop *l = arg;
    st_server *srv = l->srv;
    struct epoll_event ev[MAX_EVENTS];
    l->now = loop_time();
    double last_sweep = l->now;
    for (;;) {
        if (atomic_load(&srv->model_gen) != l->model_gen) loop_refresh_model(l);
        if (atomic_load(&srv->stopping) && !l->draining) loop_start_drain(l);
        if (l->draining) {
            st_srv_take_handoffs(l, 0);
            if (loop_may_exit(l)) break;
        }
        int n = epoll_wait(l->epfd, ev, MAX_EVENTS, l->draining ? 50 : 1000);
        l->now = loop_time();
        int woken = 0;
        for (int i = 0; i < n; i++) {
            int kind = *(int *)ev[i].data.ptr;
            if (kind == H_LISTENER) {
                if (!l->draining) accept_clients(l, ev[i].data.ptr);
            } else if (kind == H_WAKE) {
                woken = 1; /* after the connections' events: what it does may close one of them */
            } else {
                st_client *c = ev[i].data.ptr;
                if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    if (c->events & EPOLLIN) client_read(c);
                    else if (ev[i].events & (EPOLLHUP | EPOLLERR)) client_close(c, "connection reset");
                } else if (ev[i].events & EPOLLOUT) {
                    client_service(c);
                }
            }
        }
        /* The wake-up last: finishing a heavy job, a CLIENT KILL or a
         * hand-over can close and free a connection whose own event may
         * still be later in this batch. */
        if (woken) {
            uint64_t v;
            if (read(l->evfd, &v, sizeof v) < 0) { /* EAGAIN: another wake-up already read it */
            }
            st_srv_take_handoffs(l, 0);
            st_srv_finish_jobs(l);
            if (atomic_load(&l->kills)) st_srv_reap_killed(l);
        }
        loop_commit(l);
        if (l->now - last_sweep >= 1.0) {
            sweep_idle(l, l->now);
            last_sweep = l->now;
            /* Connections come and go: give the allocator's free pages back
             * to the system once a second, or the buffers of clients long
             * gone stay resident and RSS creeps under connection churn. */
            if (l->closed != l->trimmed_at) {
                l->trimmed_at = l->closed;
                st_trim_free_memory(); /* a no-op unless glibc's allocator is in use */
            }
        }
    }
    st_srv_take_handoffs(l, 1);
    int left = 0;
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        left++;
        client_close(c, "shutdown timeout");
    }
    if (left) st_log(ST_LOG_WARNING, "loop %d: closed %d connections still busy at the shutdown timeout", l->id, left);
    return NULL;
}

