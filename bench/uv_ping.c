/* uv_ping: the comparison point for starling's own event loop.
 *
 * A libuv server with one loop that runs requests exactly as `starling
 * serve` does, through the same RESP parser, the same st_call (command
 * table, arity and auth checks, timing into the statistics) and the same
 * reply writer: parse every complete request in the read buffer, append the
 * replies, write them at once. It serves the commands that need no model
 * (PING and ECHO). bench/serve.sh measures it and `starling serve
 * --threads 1` under the same redis-benchmark load, so the difference is
 * the event loop alone.
 *
 * usage: uv_ping PORT      (listens on 127.0.0.1; SIGTERM or SIGINT stops it)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "commands.h"
#include "resp.h"

typedef struct {
    uv_tcp_t tcp;
    char *in;
    size_t len, cap;
    resp_parser parser;
    resp_out out;
} conn;

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} pending_write;

static uv_loop_t *loop;
static resp_limits limits;
static st_stats stats;
static st_server_config config;
static st_session session = {.rights = ST_RIGHT_ALL | ST_RIGHT_AUTHED};

static void on_close(uv_handle_t *h)
{
    conn *c = (conn *)h;
    free(c->in);
    resp_parser_free(&c->parser);
    resp_out_free(&c->out);
    free(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = (conn *)h;
    (void)suggested;
    if (c->cap - c->len < 16384) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->in = realloc(c->in, c->cap);
    }
    *buf = uv_buf_init(c->in + c->len, (unsigned)(c->cap - c->len));
}

static void on_written(uv_write_t *req, int status)
{
    pending_write *w = (pending_write *)req;
    (void)status;
    free(w->buf.base);
    free(w);
}

/* libuv needs the bytes of an unfinished write to stay put until its
 * callback, so whatever uv_try_write leaves is copied into a request. */
static void flush(conn *c)
{
    if (c->out.len == 0) return;
    uv_buf_t b = uv_buf_init(c->out.buf, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    size_t done = n > 0 ? (size_t)n : 0;
    if (done < c->out.len) {
        pending_write *w = malloc(sizeof *w);
        w->buf = uv_buf_init(malloc(c->out.len - done), (unsigned)(c->out.len - done));
        memcpy(w->buf.base, c->out.buf + done, c->out.len - done);
        uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written);
    }
    c->out.len = 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = (conn *)s;
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    c->len += (size_t)n;
    size_t start = 0;
    while (start < c->len) {
        size_t used;
        resp_status st = resp_parse(&c->parser, c->in + start, c->len - start, &used);
        if (st == RESP_NEED_MORE) break;
        if (st == RESP_ERROR) {
            resp_error(&c->out, "ERR %s", c->parser.error);
            flush(c);
            uv_close((uv_handle_t *)s, on_close);
            return;
        }
        if (c->parser.argc > 0 && (strcasecmp(c->parser.argv[0].ptr, "PING") == 0 ||
                                   strcasecmp(c->parser.argv[0].ptr, "ECHO") == 0)) {
            st_ctx ctx = {.cfg = &config, .session = &session, .out = &c->out, .argc = (int)c->parser.argc,
                          .argv = c->parser.argv};
            const st_command *cmd;
            uint64_t t0;
            st_call(&ctx, &stats, &cmd, &t0);
        } else if (c->parser.argc > 0) {
            /* Everything else needs a model or a server (redis-benchmark
             * asks CONFIG GET first, and copes with an error). */
            resp_error(&c->out, "ERR not served here");
        }
        start += used;
        resp_parser_reset(&c->parser);
    }
    memmove(c->in, c->in + start, c->len - start);
    c->len -= start;
    flush(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    conn *c = calloc(1, sizeof *c);
    uv_tcp_init(loop, &c->tcp);
    resp_parser_init(&c->parser, &limits);
    resp_out_init(&c->out, 0);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *h, int sig)
{
    (void)sig;
    uv_stop(h->loop);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uv_ping PORT\n");
        return 2;
    }
    resp_limits_default(&limits);
    st_server_config_default(&config);
    st_commands_init();
    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, 511, on_connection) != 0) {
        fprintf(stderr, "uv_ping: cannot listen on port %s\n", argv[1]);
        return 1;
    }
    uv_signal_t term, intr;
    uv_signal_init(loop, &term);
    uv_signal_start(&term, on_signal, SIGTERM);
    uv_signal_init(loop, &intr);
    uv_signal_start(&intr, on_signal, SIGINT);
    fprintf(stderr, "uv_ping: listening on 127.0.0.1:%s\n", argv[1]);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
