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
 * (EPOLLEXCLUSIVE on the shared listening sockets), read into its input
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
#include "net.h"
#include "privacy.h"
#include "score.h"
#include "server_impl.h"
#include "util.h"

static void loop_refresh_model(st_loop *l);

void st_server_config_default(st_server_config *c)
{
    memset(c, 0, sizeof *c);
    c->bind = "127.0.0.1";
    c->port = 6400;
    c->unixsocket_perm = 0700;
    c->threads = 0;
    c->heavy_threads = 1;
    c->maxclients = 10000;
    c->max_request = 1u << 20;
    c->max_args = 65536;
    c->output_limit = 64u << 20;
    c->max_count = 100000;
    c->timeout = 0;
    c->shutdown_timeout = 10;
    c->loglevel = ST_LOG_NOTICE;
    c->appendfsync = ST_APPENDFSYNC_EVERYSEC;
    c->compact_min_bytes = 64u << 20;
    c->compact_percentage = 100;
    c->forget_compact_delay = 3600;
    c->min_audience = ST_PRIVACY_MIN_AUDIENCE;
    c->min_seeds = ST_PRIVACY_MIN_SEEDS;
    c->http_bind = "127.0.0.1";
    c->http_port = -1;
    c->http_rate = 0;
    c->http_burst = 0;
}



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
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    l->closed++;
    if (c->prev) c->prev->next = c->next;
    else l->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    l->nclients--;
    atomic_fetch_sub(&l->srv->nclients, 1);
    if (c->is_http) atomic_fetch_sub(&l->srv->nclients_http, 1);
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

/* process_input for a connection on the HTTP port: each request is parsed
 * by http.c and handed to api.c, which answers it or names a command; the
 * command runs through st_call exactly as a RESP request's does (deferred to
 * the heavy pool when it is heavy), and its reply goes back to api.c to
 * become JSON. */
static int process_http(st_client *c)
{
    st_loop *l = c->loop;
    st_server *srv = l->srv;
    while (!c->blocked && !c->sess.close_after_reply && c->in_start < c->in_len) {
        if (pending(c) >= out_soft(c)) return 1;
        size_t consumed = 0;
        http_status st = http_parse(&c->http, c->in + c->in_start, c->in_len - c->in_start, &consumed);
        if (st == HTTP_NEED_MORE) {
            if (c->http.continue_due) {
                http_continue(&c->out);
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
                          .stats = &l->stats};
        if (st_api_request(&env, &c->http, &c->call, &c->out) == ST_API_RUN) {
            c->sess.authed = 1; /* api.c checked the bearer token */
            l->http_reply.len = 0;
            l->http_reply.overflow = 0;
            st_ctx ctx = {.srv = srv,
                          .ops = &st_srv_ops,
                          .cfg = &srv->cfg,
                          .session = &c->sess,
                          .model = l->model,
                          .scratch = &l->scratch,
                          .out = &l->http_reply,
                          .argc = c->call.argc,
                          .argv = c->call.argv};
            const st_command *cmd = NULL;
            uint64_t t0 = 0;
            st_stat_bump(&l->stats.commands, 1);
            if (st_call(&ctx, &l->stats, &cmd, &t0) == ST_CALL_DEFER) {
                if (defer(c, &ctx, cmd, t0) != 0) {
                    st_api_call_free(&c->call);
                    st_api_error(&l->stats, &c->out, 503, "out of memory", c->http.keep_alive);
                }
            } else {
                st_api_reply(&l->stats, &c->call, l->http_reply.buf, l->http_reply.len, l->http_reply.overflow,
                             &c->out);
            }
        }
        if (!c->http.keep_alive) c->sess.close_after_reply = 1;
        c->in_start += consumed;
        http_parser_reset(&c->http);
    }
    if (c->in_start == c->in_len) c->in_start = c->in_len = 0;
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
    while (!c->blocked && !c->sess.close_after_reply && c->in_start < c->in_len) {
        if (pending(c) >= out_soft(c)) return 1;
        size_t consumed = 0;
        resp_status st = resp_parse(&c->parser, c->in + c->in_start, c->in_len - c->in_start, &consumed);
        if (st == RESP_NEED_MORE) break;
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
        if (c->parser.argc > 0) {
            /* A reload swapped models: take the new one (and its overlay)
             * before this request, so that nothing acknowledged on another
             * loop after the swap is missing from this reply. */
            if (atomic_load(&srv->model_gen) != l->model_gen) loop_refresh_model(l);
            st_ctx ctx = {.srv = srv,
                          .ops = &st_srv_ops,
                          .cfg = &srv->cfg,
                          .session = &c->sess,
                          .model = l->model,
                          .scratch = &l->scratch,
                          .out = &c->out,
                          .argc = (int)c->parser.argc,
                          .argv = c->parser.argv};
            const st_command *cmd = NULL;
            uint64_t t0 = 0;
            st_stat_bump(&l->stats.commands, 1);
            if (st_call(&ctx, &l->stats, &cmd, &t0) == ST_CALL_DEFER && defer(c, &ctx, cmd, t0) != 0)
                resp_error(&c->out, "ERR out of memory");
        }
        c->in_start += consumed;
        resp_parser_reset(&c->parser);
    }
    if (c->in_start == c->in_len) c->in_start = c->in_len = 0;
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
    set_events(c);
}

static void client_read(st_client *c)
{
    st_server *srv = c->loop->srv;
    if (c->in_cap - c->in_len < READ_CHUNK) {
        if (c->in_start > 0) {
            memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
            c->in_len -= c->in_start;
            c->in_start = 0;
        }
        /* The parser refuses any request longer than max-request long before
         * the buffer grows past this bound. */
        size_t limit = srv->cfg.max_request + 2 * READ_CHUNK + 64;
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
        if (atomic_fetch_add(&srv->nclients, 1) >= srv->cfg.maxclients) {
            atomic_fetch_sub(&srv->nclients, 1);
            static const char full[] = "-ERR max number of clients reached\r\n";
            if (ls->is_http) {
                resp_out o;
                resp_out_init(&o, 4096);
                st_api_error(&l->stats, &o, 429, "max number of clients reached (maxclients)", 0);
                if (o.len && write(fd, o.buf, o.len) < 0) { /* as below */
                }
                resp_out_free(&o);
            } else if (write(fd, full, sizeof full - 1) < 0) { /* the client is going away either way */
            }
            close(fd);
            st_stat_bump(&l->stats.rejected_connections, 1);
            continue;
        }
        st_client *c = st_calloc(1, sizeof *c);
        char *in = st_malloc(READ_CHUNK * 2);
        if (!c || !in) {
            st_free(c);
            st_free(in);
            close(fd);
            atomic_fetch_sub(&srv->nclients, 1);
            continue;
        }
        if (!ls->is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            char host[INET6_ADDRSTRLEN] = "?";
            int port = 0;
            if (sa.ss_family == AF_INET) {
                struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
                inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
                port = ntohs(s4->sin_port);
            } else if (sa.ss_family == AF_INET6) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
                inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
                port = ntohs(s6->sin6_port);
            }
            snprintf(c->sess.addr, sizeof c->sess.addr, "%s:%d", host, port);
        } else {
            snprintf(c->sess.addr, sizeof c->sess.addr, "%s:0", srv->cfg.unixsocket);
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
        c->in_cap = READ_CHUNK * 2;
        resp_limits lim;
        resp_limits_default(&lim);
        lim.max_args = (uint32_t)srv->cfg.max_args;
        lim.max_request = srv->cfg.max_request;
        if (lim.max_inline > srv->cfg.max_request) lim.max_inline = (uint32_t)srv->cfg.max_request;
        resp_parser_init(&c->parser, &lim);
        resp_out_init(&c->out, srv->cfg.output_limit);
        c->sess.id = atomic_fetch_add(&srv->next_client_id, 1) + 1;
        c->sess.authed = srv->cfg.requirepass == NULL;
        c->sess.created = st_now();
        c->last_active = l->now;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            client_free(c);
            atomic_fetch_sub(&srv->nclients, 1);
            continue;
        }
        c->next = l->clients;
        if (l->clients) l->clients->prev = c;
        l->clients = c;
        l->nclients++;
        st_stat_bump(&l->stats.connections, 1);
        if (c->is_http) {
            atomic_fetch_add(&srv->nclients_http, 1);
            st_stat_bump(&l->stats.http_connections, 1);
        }
        st_log(ST_LOG_DEBUG, "client %llu connected from %s", (unsigned long long)c->sess.id, c->sess.addr);
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

static void finish_jobs(st_loop *l)
{
    pthread_mutex_lock(&l->done_lock);
    st_job *j = l->done;
    l->done = NULL;
    pthread_mutex_unlock(&l->done_lock);
    while (j) {
        st_job *next = j->next;
        st_client *c = j->c;
        st_call_finish(&l->stats, j->cmd, j->t0, j->out.len ? j->out.buf[0] : '-');
        atomic_fetch_sub(&l->srv->blocked, 1);
        c->blocked = 0;
        if (c->dead) {
            client_free(c);
        } else {
            if (c->is_http) st_api_reply(&l->stats, &c->call, j->out.buf, j->out.len, j->out.overflow, &c->out);
            else if (j->out.overflow) c->out.overflow = 1;
            else resp_raw(&c->out, j->out.buf, j->out.len);
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
        if (rc != 0)
            st_log(ST_LOG_WARNING, "journal: %s; replies that waited for it were not sent (their connections are "
                                   "closed) and writes are refused until restart",
                   err);
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
    /* Requests already received are answered: what sits in each socket's
     * buffer is read once more, then nothing else is read. */
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        if (!c->blocked && c->in_cap > c->in_len) {
            ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
            if (n == 0) {
                client_close(c, "connection closed by the client");
                continue;
            }
            if (n > 0) c->in_len += (size_t)n;
        }
        client_service(c);
    }
    loop_commit(l);
}

static void sweep_idle(st_loop *l, double now)
{
    double t = l->srv->cfg.timeout;
    if (t <= 0) return;
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        if (!c->blocked && now - c->last_active > t) {
            st_stat_bump(&l->stats.idle_closed, 1);
            client_close(c, "idle timeout");
        }
    }
}

static void *loop_main(void *arg)
{
    st_loop *l = arg;
    st_server *srv = l->srv;
    struct epoll_event ev[MAX_EVENTS];
    l->now = loop_time();
    double last_sweep = l->now;
    for (;;) {
        if (atomic_load(&srv->model_gen) != l->model_gen) loop_refresh_model(l);
        if (atomic_load(&srv->stopping) && !l->draining) loop_start_drain(l);
        if (l->draining && (l->nclients == 0 || st_now() > l->drain_deadline)) break;
        int n = epoll_wait(l->epfd, ev, MAX_EVENTS, l->draining ? 50 : 1000);
        l->now = loop_time();
        for (int i = 0; i < n; i++) {
            int kind = *(int *)ev[i].data.ptr;
            if (kind == H_LISTENER) {
                if (!l->draining) accept_clients(l, ev[i].data.ptr);
            } else if (kind == H_WAKE) {
                uint64_t v;
                if (read(l->evfd, &v, sizeof v) < 0) { /* EAGAIN: another wake-up already read it */
                }
                finish_jobs(l);
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
    int left = 0;
    for (st_client *c = l->clients, *next; c; c = next) {
        next = c->next;
        left++;
        client_close(c, "shutdown timeout");
    }
    if (left) st_log(ST_LOG_WARNING, "loop %d: closed %d connections still busy at the shutdown timeout", l->id, left);
    return NULL;
}

/* ---- the heavy pool ------------------------------------------------------- */

typedef struct {
    st_server *srv;
    st_scratch scratch;
} heavy_arg;

static void *heavy_main(void *arg)
{
    heavy_arg *h = arg;
    st_server *srv = h->srv;
    for (;;) {
        pthread_mutex_lock(&srv->q_lock);
        while (!srv->q_head && !srv->q_stop) pthread_cond_wait(&srv->q_cond, &srv->q_lock);
        st_job *j = srv->q_head;
        if (!j) {
            pthread_mutex_unlock(&srv->q_lock);
            break;
        }
        srv->q_head = j->next;
        if (!srv->q_head) srv->q_tail = NULL;
        srv->q_len--;
        pthread_mutex_unlock(&srv->q_lock);
        j->next = NULL;
        if (st_scratch_fit(&h->scratch, &j->model->m, 1, srv->cfg.max_args) != 0) {
            resp_error(&j->out, "ERR out of memory for this command");
        } else {
            st_ctx ctx = {.srv = srv,
                          .ops = &st_srv_ops,
                          .cfg = &srv->cfg,
                          .session = NULL,
                          .model = j->model,
                          .scratch = &h->scratch,
                          .out = &j->out,
                          .argc = j->argc,
                          .argv = j->argv};
            st_call_heavy(&ctx, j->cmd);
        }
        st_loop *l = j->loop;
        pthread_mutex_lock(&l->done_lock);
        j->next = l->done;
        l->done = j;
        pthread_mutex_unlock(&l->done_lock);
        uint64_t one = 1;
        if (write(l->evfd, &one, sizeof one) < 0) { /* a saturated counter still wakes the loop */
        }
    }
    st_scratch_free(&h->scratch);
    return NULL;
}

/* ---- sockets ---------------------------------------------------------------- */

/* Listens on bind:port (port -1: not at all); the address and port bound
 * (the port chosen for port 0) go to addr and *bound. */
static int listen_tcp(st_listener *ls, const char *bind_addr, int port, const char *what, char *addr, size_t addrcap,
                      int *bound, char *err)
{
    ls->fd = -1;
    if (port < 0) return 0;
    return st_net_listen_tcp(bind_addr, port, what, addr, addrcap, bound, &ls->fd, err);
}

static int listen_unix(st_server *srv, char *err)
{
    const st_server_config *cfg = &srv->cfg;
    srv->unx.fd = -1;
    srv->unx.is_unix = 1;
    if (!cfg->unixsocket) return 0;
    return st_net_listen_unix(cfg->unixsocket, cfg->unixsocket_perm, &srv->unx.fd, err);
}

/* ---- start and stop ------------------------------------------------------- */

static int loop_init(st_server *srv, st_loop *l, int id, char *err)
{
    l->kind = H_WAKE;
    l->id = id;
    l->srv = srv;
    pthread_mutex_init(&l->done_lock, NULL);
    resp_out_init(&l->http_reply, srv->cfg.output_limit);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->evfd < 0) return st_seterr(err, "epoll/eventfd: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) return st_seterr(err, "epoll_ctl: %s", strerror(errno));
    /* Every loop waits on the shared listeners; EPOLLEXCLUSIVE wakes one
     * loop per connection instead of all of them. */
    st_listener *ls[3] = {&srv->tcp, &srv->unx, &srv->http};
    for (int i = 0; i < 3; i++) {
        if (ls[i]->fd < 0) continue;
        struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = ls[i]};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, ls[i]->fd, &le) != 0)
            return st_seterr(err, "epoll_ctl: %s", strerror(errno));
    }
    /* No model yet: the loop takes it up when the first load publishes it. */
    l->model = st_srv_model_acquire(srv);
    l->model_gen = l->model ? l->model->generation : 0;
    if (l->model && st_scratch_fit(&l->scratch, &l->model->m, 0, srv->cfg.max_args) != 0)
        return st_seterr(err, "out of memory");
    return 0;
}

static void loop_destroy(st_loop *l)
{
    finish_jobs(l);
    if (l->epfd >= 0) close(l->epfd);
    if (l->evfd >= 0) close(l->evfd);
    st_served_release(l->model);
    st_scratch_free(&l->scratch);
    resp_out_free(&l->http_reply);
    pthread_mutex_destroy(&l->done_lock);
}

/* Loads the first model while the loops already answer (health checks,
 * and -LOADING or 503 for what needs a model), then publishes it. The
 * environment variable STARLING_TEST_LOAD_DELAY (seconds, at most 60) delays
 * the load, so that tests can see the server before its model is ready. */
static int load_first_model(st_server *srv, char *err)
{
    const char *delay = getenv("STARLING_TEST_LOAD_DELAY");
    double d = delay ? atof(delay) : 0;
    if (d > 0 && d <= 60) {
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    st_served *s = st_served_load(srv->cfg.model_path, err);
    if (!s) return -1;
    s->generation = 1;
    /* The journal is replayed into the model's overlay before either is
     * visible: until then every command that needs a model, writes
     * included, answers -LOADING. */
    const st_server_config *cfg = &srv->cfg;
    if (cfg->journal) {
        double t0 = st_now();
        replay_ctx rc_ctx = {.ov = s->ov, .info = &srv->start_info};
        srv->journal = st_journal_open(cfg->journal, cfg->appendfsync, st_srv_replay_record, &rc_ctx, &srv->start_info, err);
        if (!srv->journal) {
            st_served_release(s);
            return -1;
        }
        char why[ST_ERRLEN];
        if (st_overlay_solve(s->ov, why) != 0) {
            st_seterr(err, "%s: %s", cfg->journal, why);
            st_served_release(s);
            return -1;
        }
        srv->start_seconds = st_now() - t0;
        const st_journal_info *ji = &srv->start_info;
        st_overlay_stats os;
        st_overlay_get_stats(s->ov, &os);
        st_log(ST_LOG_NOTICE, "journal %s (%016llx, appendfsync %s): %llu records replayed in %.3f s (%llu events, "
                              "%llu forgets; %llu already in the model); %llu users online, %llu forgotten",
               cfg->journal, (unsigned long long)ji->id, st_appendfsync_name(cfg->appendfsync),
               (unsigned long long)ji->records, srv->start_seconds, (unsigned long long)ji->events,
               (unsigned long long)ji->forgets, (unsigned long long)os.skipped_in_model, (unsigned long long)os.live,
               (unsigned long long)os.forgotten);
        if (ji->torn_bytes)
            st_log(ST_LOG_WARNING, "journal %s: the last record was torn (a write cut short by a crash): dropped %llu "
                                   "bytes at byte %llu; it was never acknowledged under appendfsync always",
                   cfg->journal, (unsigned long long)ji->torn_bytes, (unsigned long long)ji->torn_at);
        st_srv_check_lineage(srv, s);
        srv->compact_base = ji->end;
        if (pthread_create(&srv->maint, NULL, st_srv_maint_main, srv) != 0) {
            st_seterr(err, "cannot start the journal's maintenance thread");
            st_served_release(s);
            return -1;
        }
        srv->maint_started = 1;
    }
    pthread_mutex_lock(&srv->model_lock);
    srv->model = s;
    atomic_store(&srv->model_gen, 1);
    pthread_mutex_unlock(&srv->model_lock);
    st_srv_wake_all(srv);
    return 0;
}

/* A server for cfg, its locks made, nothing started. */
static st_server *server_new(const st_server_config *cfg)
{
    st_server *srv = st_calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->cfg = *cfg;
    if (srv->cfg.threads <= 0) srv->cfg.threads = st_cpu_count();
    if (srv->cfg.heavy_threads <= 0) srv->cfg.heavy_threads = 1;
    srv->tcp.kind = srv->unx.kind = srv->http.kind = H_LISTENER;
    srv->tcp.fd = srv->unx.fd = srv->http.fd = -1;
    srv->http.is_http = 1;
    st_ratelimit_init(&srv->limit, cfg->http_rate, cfg->http_burst > 0 ? cfg->http_burst : cfg->http_rate);
    pthread_mutex_init(&srv->model_lock, NULL);
    pthread_mutex_init(&srv->reload_lock, NULL);
    pthread_mutex_init(&srv->q_lock, NULL);
    pthread_cond_init(&srv->q_cond, NULL);
    pthread_mutex_init(&srv->write_lock, NULL);
    pthread_mutex_init(&srv->maint_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->maint_cond, &ca);
    pthread_condattr_destroy(&ca);
    srv->started = st_now();
    srv->started_unix = (double)time(NULL);
    return srv;
}

/* Stops the maintenance thread, closes the journal and the sockets, and
 * frees the server (the loops and workers have stopped). */
static void server_free(st_server *srv)
{
    if (srv->maint_started) {
        pthread_mutex_lock(&srv->maint_lock);
        srv->maint_stop = 1;
        pthread_cond_signal(&srv->maint_cond);
        pthread_mutex_unlock(&srv->maint_lock);
        pthread_join(srv->maint, NULL);
    }
    if (srv->journal) {
        char why[ST_ERRLEN];
        if (st_journal_close(srv->journal, why) != 0) st_log(ST_LOG_WARNING, "journal: %s", why);
    }
    if (srv->tcp.fd >= 0) close(srv->tcp.fd);
    if (srv->http.fd >= 0) close(srv->http.fd);
    if (srv->unx.fd >= 0) {
        close(srv->unx.fd);
        unlink(srv->cfg.unixsocket);
    }
    st_served_release(srv->model);
    st_free(srv->loops);
    st_free(srv->heavy);
    pthread_mutex_destroy(&srv->model_lock);
    pthread_mutex_destroy(&srv->reload_lock);
    pthread_mutex_destroy(&srv->q_lock);
    pthread_cond_destroy(&srv->q_cond);
    pthread_mutex_destroy(&srv->write_lock);
    pthread_mutex_destroy(&srv->maint_lock);
    pthread_cond_destroy(&srv->maint_cond);
    st_ratelimit_destroy(&srv->limit);
    st_free(srv);
}

/* Sockets first, the model last: the port answers health checks while a
 * large model loads (load_first_model). */
static int open_listeners(st_server *srv, char *err)
{
    const st_server_config *cfg = &srv->cfg;
    if (listen_tcp(&srv->tcp, cfg->bind, cfg->port, "--bind", srv->tcp_addr, sizeof srv->tcp_addr, &srv->tcp_port,
                   err) != 0 ||
        listen_unix(srv, err) != 0 ||
        listen_tcp(&srv->http, cfg->http_bind, cfg->http_port, "--http-bind", srv->http_addr, sizeof srv->http_addr,
                   &srv->http_port, err) != 0)
        return -1;
    if (srv->tcp.fd < 0 && srv->unx.fd < 0 && srv->http.fd < 0)
        return st_seterr(err, "nothing to listen on: give a --port, a --unixsocket or an --http-port");
    return 0;
}

/* "host:port" in URL form ([v6]:port). */
static void url_host(char *out, size_t len, const char *addr, int port)
{
    int bracket = strchr(addr, ':') != NULL;
    snprintf(out, len, "%s%s%s:%d", bracket ? "[" : "", addr, bracket ? "]" : "", port);
}

/* Loads the first model (the sockets answering meanwhile) and logs where the
 * server listens. */
static int load_and_announce(st_server *srv, char *err)
{
    const st_server_config *cfg = &srv->cfg;
    char where[256] = "", host[160];
    if (srv->tcp.fd >= 0) snprintf(where, sizeof where, "; until then RESP port %d answers -LOADING", srv->tcp_port);
    if (srv->http.fd >= 0) {
        size_t n = strlen(where);
        url_host(host, sizeof host, srv->http_addr, srv->http_port);
        snprintf(where + n, sizeof where - n, "%s http://%s/readyz says loading", n ? " and" : "; until then", host);
    }
    st_log(ST_LOG_NOTICE, "loading the model %s%s", cfg->model_path, where);
    if (load_first_model(srv, err) != 0) return -1;
    if (srv->tcp.fd >= 0)
        st_log(ST_LOG_NOTICE, "ready to accept connections on tcp %s:%d", srv->tcp_addr, srv->tcp_port);
    if (srv->unx.fd >= 0) st_log(ST_LOG_NOTICE, "ready to accept connections on unix %s", cfg->unixsocket);
    if (srv->http.fd >= 0) {
        url_host(host, sizeof host, srv->http_addr, srv->http_port);
        st_log(ST_LOG_NOTICE, "ready to accept HTTP connections on http://%s/", host);
    }
    st_log(ST_LOG_NOTICE, "%d event loops, %d heavy workers, pid %d", srv->nloops, srv->nheavy, (int)getpid());
    return 0;
}

/* The main thread's life once serving: SIGHUP reloads, SIGTERM and SIGINT end it. */
static void wait_for_signals(st_server *srv, const sigset_t *sigs)
{
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(sigs, &si);
        if (sig == SIGHUP) {
            char why[ST_ERRLEN];
            st_log(ST_LOG_NOTICE, "SIGHUP: reloading the model");
            st_srv_reload(srv, NULL, why);
        } else if (sig == SIGTERM || sig == SIGINT) {
            st_log(ST_LOG_NOTICE, "%s: finishing in-flight requests (at most %g s), then exiting",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT", srv->cfg.shutdown_timeout);
            return;
        }
    }
}

/* The loops and the heavy workers, started; how many of each in *loops and *heavy. */
static int start_threads(st_server *srv, heavy_arg *hargs, int *heavy, int *loops, char *err)
{
    *heavy = *loops = 0;
    for (int i = 0; i < srv->nheavy; i++) {
        hargs[i].srv = srv;
        if (pthread_create(&srv->heavy[i], NULL, heavy_main, &hargs[i]) != 0) break;
        (*heavy)++;
    }
    for (int i = 0; i < srv->nloops && *heavy == srv->nheavy; i++) {
        if (pthread_create(&srv->loops[i].tid, NULL, loop_main, &srv->loops[i]) != 0) break;
        (*loops)++;
    }
    if (*loops < srv->nloops) return st_seterr(err, "cannot start threads");
    return 0;
}

static void stop_threads(st_server *srv, int heavy, int loops)
{
    for (int i = 0; i < loops; i++) pthread_join(srv->loops[i].tid, NULL);
    pthread_mutex_lock(&srv->q_lock);
    srv->q_stop = 1;
    pthread_cond_broadcast(&srv->q_cond);
    pthread_mutex_unlock(&srv->q_lock);
    for (int i = 0; i < heavy; i++) pthread_join(srv->heavy[i], NULL);
}

int st_serve(const st_server_config *cfg, char *err)
{
    if (st_log_open(cfg->loglevel, cfg->logfile, err) != 0) return -1;
    /* BLAS inside a request must not start threads of its own: the loops
     * and workers are the parallelism. */
    openblas_set_num_threads(1);
    st_commands_init();
    st_server *srv = server_new(cfg);
    if (!srv) {
        st_log_close();
        return st_seterr(err, "out of memory");
    }
    int rc = -1;
    if (open_listeners(srv, err) != 0) goto out;
    /* Signals go to the main thread only: block them before any thread
     * starts (threads inherit the mask), then wait for them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    srv->nloops = srv->cfg.threads;
    srv->loops = st_calloc((size_t)srv->nloops, sizeof *srv->loops);
    srv->nheavy = srv->cfg.heavy_threads;
    srv->heavy = st_calloc((size_t)srv->nheavy, sizeof *srv->heavy);
    heavy_arg *hargs = st_calloc((size_t)srv->nheavy, sizeof *hargs);
    if (!srv->loops || !srv->heavy || !hargs) {
        st_free(hargs);
        st_seterr(err, "out of memory");
        goto out;
    }
    for (int i = 0; i < srv->nloops; i++) srv->loops[i].epfd = srv->loops[i].evfd = -1;
    int ok = 1;
    for (int i = 0; i < srv->nloops && ok; i++) ok = loop_init(srv, &srv->loops[i], i, err) == 0;
    if (ok) {
        int heavy, loops;
        if (start_threads(srv, hargs, &heavy, &loops, err) == 0 && load_and_announce(srv, err) == 0) {
            rc = 0;
            wait_for_signals(srv, &sigs);
        }
        atomic_store(&srv->stopping, 1);
        st_srv_wake_all(srv);
        stop_threads(srv, heavy, loops);
    }
    st_free(hargs);
    for (int i = 0; i < srv->nloops; i++)
        if (srv->loops[i].srv) loop_destroy(&srv->loops[i]);
out:
    server_free(srv);
    if (rc == 0) st_log(ST_LOG_NOTICE, "bye");
    st_log_close();
    return rc;
}
