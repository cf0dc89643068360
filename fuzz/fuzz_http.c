/* fuzz_http: the HTTP request parser and the API's translation of requests
 * into commands, as server.c drives them.
 *
 * The input is a byte stream from a client. It is parsed request by request,
 * once whole and once fed in pieces (the piece sizes come from the input
 * itself), with small limits so that the limit paths are reached too. Both
 * feedings must agree. Every complete request must lie inside the buffer and
 * is translated by st_api_translate: a command's arguments must be
 * NUL-terminated and within --max-args, and the input itself is then fed to
 * st_api_reply as the command's RESP reply, which must not crash whatever
 * it holds. httpguard.c judges every request too: its verdict must be one
 * of its statuses, with header lines that fit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "httpguard.h"

typedef struct {
    int status;        /* the last status: HTTP_OK when the stream ran out cleanly */
    int error_status;  /* the HTTP status of an error */
    uint32_t requests; /* complete requests parsed */
    uint64_t bytes;    /* sum of method, target and body lengths */
    uint32_t commands; /* requests that became commands */
} outcome;

static void inside(const char *p, size_t n, const char *lo, const char *hi)
{
    if (n && (p < lo || p + n > hi)) abort();
}

/* httpguard's verdict on p, under allow lists that hold a name, an origin and `*`. */
static void judge(const http_parser *p)
{
    static const char *hosts[] = {"api.example.test"}, *origins[] = {"https://a.example", "*"};
    st_server_config cfg = {.http_bind = "box.internal", .http_allow_host = hosts, .n_http_allow_host = 1,
                            .http_allow_origin = origins, .n_http_allow_origin = p->body.len & 1 ? 2 : 1};
    st_guard_verdict v;
    st_guard_check(&cfg, p, &v);
    if (v.status != 0 && v.status != 204 && v.status != 403 && v.status != 415 && v.status != 421) abort();
    if (v.status && v.status != 204 && !v.error) abort();
    if (!memchr(v.headers, '\0', sizeof v.headers) || !memchr(v.msg, '\0', sizeof v.msg)) abort();
}

static outcome run(const uint8_t *data, size_t size, const uint8_t *steps, size_t nsteps, int translate)
{
    http_limits lim = {.max_head = 512, .max_headers = 16, .max_body = 2048};
    http_parser p;
    http_parser_init(&p, &lim);
    char *buf = malloc(size + 1);
    outcome o = {HTTP_OK, 0, 0, 0, 0};
    size_t have = 0, start = 0, fed = 0;
    while (start < size) {
        size_t step = nsteps ? 1 + steps[fed % nsteps] % 64 : size;
        fed++;
        size_t more = size - have < step ? size - have : step;
        memcpy(buf + have, data + have, more);
        have += more;
        size_t used = 0;
        http_status st = http_parse(&p, buf + start, have - start, &used);
        while (st == HTTP_OK) {
            const char *lo = buf + start, *hi = buf + start + used;
            if (used == 0 || used > have - start) abort();
            inside(p.method.ptr, p.method.len, lo, hi);
            inside(p.target.ptr, p.target.len, lo, hi);
            inside(p.body.ptr, p.body.len, lo, hi);
            inside(p.authorization.ptr, p.authorization.len, lo, hi);
            inside(p.host.ptr, p.host.len, lo, hi);
            inside(p.origin.ptr, p.origin.len, lo, hi);
            inside(p.content_type.ptr, p.content_type.len, lo, hi);
            judge(&p);
            o.bytes += p.method.len + p.target.len + p.body.len;
            o.requests++;
            if (translate) {
                st_api_call call;
                int status = 0;
                const char *msg = NULL;
                char msgbuf[256];
                if (st_api_translate(&p, 32, &call, &status, &msg, msgbuf, sizeof msgbuf) == ST_API_RUN) {
                    if (call.argc < 1 || call.argc > 32) abort();
                    for (int i = 0; i < call.argc; i++)
                        if (call.argv[i].ptr[call.argv[i].len] != '\0') abort();
                    o.commands++;
                    resp_out out;
                    resp_out_init(&out, 1 << 20);
                    st_api_reply(NULL, &call, (const char *)data, size, 0, &out);
                    resp_out_free(&out);
                } else if (!msg || status < 400) {
                    abort();
                }
            }
            start += used;
            http_parser_reset(&p);
            st = start < have ? http_parse(&p, buf + start, have - start, &used) : HTTP_NEED_MORE;
        }
        if (st == HTTP_ERROR) {
            if (!p.error || p.error_status < 400) abort();
            o.status = HTTP_ERROR;
            o.error_status = p.error_status;
            break;
        }
        o.status = HTTP_NEED_MORE;
        if (have == size) break;
    }
    if (o.status != HTTP_ERROR && start == size) o.status = HTTP_OK;
    free(buf);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    outcome whole = run(data, size, NULL, 0, 1);
    outcome pieces = run(data, size, data, size < 16 ? size : 16, 0);
    /* Fed in pieces or at once, a stream parses the same way. */
    if (whole.status != pieces.status || whole.requests != pieces.requests || whole.bytes != pieces.bytes ||
        whole.error_status != pieces.error_status)
        abort();
    return 0;
}
