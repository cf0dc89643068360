/* test_http: http.c's request parser and api.c's translation of requests
 * into commands and of replies into JSON, without a server.
 *
 * The parser: a complete request, the same bytes fed one at a time, bare LF
 * line ends, leading empty lines, keep-alive by version and Connection,
 * Expect: 100-continue, and each malformed input with its own status. The
 * API: every command endpoint's arguments, the checks only HTTP has (query
 * parameters, body shapes, --max-args), and replies shaped into JSON.
 * httpguard.c: which Host values name the server, and its verdicts. */
#include <jansson.h>

#include "api.h"
#include "http.h"
#include "httpguard.h"
#include "tap.h"
#include "util.h"

static http_limits lim(void)
{
    http_limits l;
    http_limits_default(&l);
    l.max_body = 1000;
    return l;
}

/* Parses s whole; returns the status, with p filled. */
static http_status parse(http_parser *p, const char *s, size_t *used)
{
    http_limits l = lim();
    http_parser_init(p, &l);
    *used = 0;
    return http_parse(p, s, strlen(s), used);
}

static int is(http_str a, const char *s) { return a.len == strlen(s) && memcmp(a.ptr, s, a.len) == 0; }

static void test_parser(void)
{
    http_parser p;
    size_t used;
    const char *req = "POST /v1/foldin?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nAuthorization: Bearer t\r\n\r\nbodyNEXT";
    ok(parse(&p, req, &used) == HTTP_OK, "a complete request");
    ok(is(p.method, "POST") && is(p.path, "/v1/foldin") && is(p.query, "x=1") && is(p.body, "body") &&
           is(p.authorization, "Bearer t") && p.keep_alive && p.minor == 1,
       "method, path, query, body and headers");
    is_int(used, strlen(req) - 4, "consumed stops at the end of the body");

    /* Byte by byte: NEED_MORE until the last byte, then the same request. */
    http_limits l = lim();
    http_parser_init(&p, &l);
    size_t n = strlen(req) - 4;
    int need = 1;
    http_status st = HTTP_NEED_MORE;
    for (size_t i = 1; i <= n; i++) {
        st = http_parse(&p, req, i, &used);
        if (i < n && st != HTTP_NEED_MORE) need = 0;
    }
    ok(need && st == HTTP_OK && is(p.body, "body") && used == n, "fed one byte at a time: the same request");

    ok(parse(&p, "GET / HTTP/1.1\n\n", &used) == HTTP_OK && is(p.path, "/") && used == 16, "bare LF line ends");
    ok(parse(&p, "\r\n\r\nGET /x HTTP/1.1\r\n\r\n", &used) == HTTP_OK && is(p.path, "/x") && used == 23,
       "empty lines before the request line are skipped and counted");
    ok(parse(&p, "GET / HTTP/1.0\r\n\r\n", &used) == HTTP_OK && !p.keep_alive, "HTTP/1.0 closes by default");
    ok(parse(&p, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &used) == HTTP_OK && p.keep_alive,
       "HTTP/1.0 with Connection: keep-alive keeps it");
    ok(parse(&p, "GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n", &used) == HTTP_OK && !p.keep_alive,
       "HTTP/1.1 with close in the Connection list closes");
    ok(parse(&p, "GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", &used) == HTTP_OK,
       "two equal Content-Lengths are one");

    /* Expect: 100-continue: due while the body is missing, then the request. */
    http_parser_init(&p, &l);
    const char *ex = "POST /a HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc";
    st = http_parse(&p, ex, strlen(ex) - 3, &used);
    ok(st == HTTP_NEED_MORE && p.continue_due, "Expect: 100-continue, body missing: continue due");
    p.continue_due = 0;
    p.continue_done = 1;
    st = http_parse(&p, ex, strlen(ex) - 1, &used);
    ok(st == HTTP_NEED_MORE && !p.continue_due, "... and due only once");
    ok(http_parse(&p, ex, strlen(ex), &used) == HTTP_OK && is(p.body, "abc"), "... then the request");

    static const struct {
        const char *in;
        int status;
        const char *what;
    } bad[] = {
        {"GARBAGE\r\n\r\n", 400, "no target"},
        {"GET  / HTTP/1.1\r\n\r\n", 400, "two spaces"},
        {"GET / HTTP/1.1 \r\n\r\n", 400, "a trailing space"},
        {"G(T / HTTP/1.1\r\n\r\n", 400, "a method that is not a token"},
        {"GET / HTTX/1.1\r\n\r\n", 400, "not HTTP"},
        {"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0"},
        {"GET / HTTP/1.2\r\n\r\n", 505, "HTTP/1.2"},
        {"GET x HTTP/1.1\r\n\r\n", 400, "a target without '/'"},
        {"GET /a\x01 HTTP/1.1\r\n\r\n", 400, "a control character in the target"},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "a header without a colon"},
        {"GET / HTTP/1.1\r\n: v\r\n\r\n", 400, "an empty header name"},
        {"GET / HTTP/1.1\r\nA: 1\r\n b\r\n\r\n", 400, "obs-fold"},
        {"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n", 400, "DEL in a value"},
        {"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "Content-Length 1x"},
        {"GET / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400, "an empty Content-Length"},
        {"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "a 20-digit Content-Length"},
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "two Content-Lengths"},
        {"GET / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413, "a body over max_body"},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "Transfer-Encoding"},
        {"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, "another expectation"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = parse(&p, bad[i].in, &used);
        ok(st == HTTP_ERROR && p.error_status == bad[i].status && p.error && *p.error, "%s: %d (%s)", bad[i].what,
           bad[i].status, p.error ? p.error : "no message");
    }
    /* The head limit, with and without the end of the head in sight. */
    char big[20000];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    big[sizeof big - 1] = '\0';
    ok(parse(&p, big, &used) == HTTP_ERROR && p.error_status == 431, "a head over 16 KiB with no end: 431");
    memcpy(big + sizeof big - 5, "\r\n\r\n", 5);
    ok(parse(&p, big, &used) == HTTP_ERROR && p.error_status == 431, "a complete head over 16 KiB: 431");
    char many[4000] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 101; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "H%d: v\r\n", i);
    strcat(many, "\r\n");
    ok(parse(&p, many, &used) == HTTP_ERROR && p.error_status == 431, "101 header lines: 431");

    resp_out o;
    resp_out_init(&o, 0);
    http_head(&o, 404, "application/json", 12, 0, "X-A: b\r\n");
    resp_raw(&o, "", 1);
    ok(strncmp(o.buf, "HTTP/1.1 404 Not Found\r\n", 24) == 0 && strstr(o.buf, "Content-Length: 12\r\n") &&
           strstr(o.buf, "Connection: close\r\n") && strstr(o.buf, "X-A: b\r\n\r\n"),
       "http_head: status line, length, close, extra headers, blank line");
    resp_out_free(&o);
}

/* Translates method path body with --max-args max; returns the argv joined
 * by spaces ("" when not translated; *status then says why). */
static const char *translate(const char *method, const char *target, const char *body, uint64_t max, int *status)
{
    static char joined[4096];
    char req[8192];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", method, target, strlen(body), body);
    http_parser p;
    size_t used;
    joined[0] = '\0';
    *status = 0;
    if (parse(&p, req, &used) != HTTP_OK) {
        *status = p.error_status;
        return joined;
    }
    st_api_call call;
    const char *msg;
    char mb[256];
    if (st_api_translate(&p, max, &call, status, &msg, mb, sizeof mb) != ST_API_RUN) return joined;
    for (int i = 0; i < call.argc; i++) {
        size_t l = strlen(joined);
        snprintf(joined + l, sizeof joined - l, "%s%.*s", i ? " " : "", (int)call.argv[i].len, call.argv[i].ptr);
    }
    st_api_call_free(&call);
    return joined;
}

static void test_translate(void)
{
    int st;
    is_str(translate("GET", "/v1/users/u1/segments", "", 100, &st), "SEGMENTS u1", "segments, no query");
    is_str(translate("GET", "/v1/users/u%3A1/segments?k=5&min=0.5&unseen=1&calibrated=true", "", 100, &st),
           "SEGMENTS u:1 COUNT 5 MIN 0.5 UNSEEN CALIBRATED", "segments with every parameter, id decoded");
    is_str(translate("GET", "/v1/users/u1/segments?unseen=false", "", 100, &st), "SEGMENTS u1",
           "a false flag is left out");
    is_str(translate("POST", "/v1/users/u1/scores", "{\"segments\": [\"a\", \"b c\"]}", 100, &st), "SCORE u1 a b c",
           "scores");
    is_str(translate("POST", "/v1/foldin", "{\"engagement\": {\"a\": 3, \"b\": 0.5}, \"k\": 2}", 100, &st),
           "FOLDIN COUNT 2 a 3 b 0.5", "foldin");
    is_str(translate("GET", "/v1/segments/s%201/audience?n=7&min=-1", "", 100, &st), "AUDIENCE s 1 COUNT 7 MIN -1",
           "audience");
    is_str(translate("GET", "/v1/segments/s/audience", "", 100, &st), "AUDIENCE s COUNT 100", "audience: n 100");
    is_str(translate("GET", "/v1/segments/s/reach?min=0.25", "", 100, &st), "REACH s MIN 0.25", "reach");
    is_str(translate("POST", "/v1/lookalike", "{\"seeds\": [\"u1\", \"u2\"], \"n\": 3}", 100, &st),
           "LOOKALIKE COUNT 3 u1 u2", "lookalike");
    is_str(translate("POST", "/v1/events", "{\"user\": \"u\", \"segment\": \"s\", \"kind\": \"click\", \"ts\": 17}",
                     100, &st),
           "EVENT u s 1 KIND click TS 17", "events: weight 1 by default");
    is_str(translate("POST", "/v1/events",
                     "{\"user\": \"u\", \"segment\": \"s\", \"weight\": 2.5, \"ts\": \"2026-01-02T03:04:05Z\"}", 100, &st),
           "EVENT u s 2.5 TS 2026-01-02T03:04:05Z", "events: an ISO 8601 time");
    is_str(translate("DELETE", "/v1/users/u1", "", 100, &st), "FORGET u1", "delete a user");
    is_str(translate("GET", "/v1/model", "", 100, &st), "MODEL INFO", "model");
    is_str(translate("GET", "/v1/stats", "", 100, &st), "INFO all", "stats");

    static const struct {
        const char *method, *target, *body;
        int status;
        const char *what;
    } bad[] = {
        {"GET", "/v1/users/u1/segments?zz=1", "", 400, "an unknown parameter"},
        {"GET", "/v1/users/u1/segments?k=1&k=2", "", 400, "a repeated parameter"},
        {"GET", "/v1/users/u1/segments?unseen=maybe", "", 400, "a flag that is not true or false"},
        {"GET", "/v1/users/u%4/segments", "", 400, "a short escape"},
        {"GET", "/v1/users/u1/segments?k=%zz", "", 400, "a bad escape in the query"},
        {"GET", "/v1/segments/s/reach", "", 400, "reach without min"},
        {"POST", "/v1/lookalike", "", 400, "no body"},
        {"POST", "/v1/lookalike", "{", 400, "bad JSON"},
        {"POST", "/v1/lookalike", "[]", 400, "not an object"},
        {"POST", "/v1/lookalike", "{\"seeds\": []}", 400, "an empty seed list"},
        {"POST", "/v1/lookalike", "{\"seeds\": [\"a\"], \"n\": 1.5}", 400, "n not whole"},
        {"POST", "/v1/lookalike", "{\"seeds\": [\"a\"], \"x\": 1}", 400, "an unknown field"},
        {"POST", "/v1/foldin", "{\"engagement\": {}}", 400, "empty engagement"},
        {"POST", "/v1/foldin", "{\"engagement\": {\"a\": null}}", 400, "a weight that is not a number"},
        {"POST", "/v1/events", "{\"user\": \"u\"}", 400, "an event without a segment"},
        {"POST", "/v1/events", "{\"user\": \"u\", \"segment\": \"s\", \"weight\": \"1\"}", 400, "a weight as a string"},
        {"POST", "/v1/users/u1/scores", "{\"segments\": [1]}", 400, "a segment id that is not a string"},
        {"POST", "/v1/lookalike", "{\"seeds\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 413, "more than max-args"},
        {"GET", "/v1/nothing", "", 404, "an unknown path"},
        {"GET", "/v1/users//segments", "", 404, "an empty id"},
        {"PUT", "/v1/model", "", 405, "another method"},
        {"GET", "/", "", 404, "the page is no command"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *j = translate(bad[i].method, bad[i].target, bad[i].body, 6, &st);
        ok(!*j && st == bad[i].status, "%s: %d (got %d)", bad[i].what, bad[i].status, st);
    }
}

/* The JSON for reply to the command of method target body. */
static char *reply_json(const char *method, const char *target, const char *body, const char *reply, int *status)
{
    char req[4096];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", method, target, strlen(body), body);
    http_parser p;
    size_t used;
    parse(&p, req, &used);
    st_api_call call;
    const char *msg;
    char mb[256];
    st_api_translate(&p, 100, &call, status, &msg, mb, sizeof mb);
    resp_out o;
    resp_out_init(&o, 0);
    st_api_reply(NULL, &call, reply, strlen(reply), 0, &o);
    resp_raw(&o, "", 1);
    *status = atoi(o.buf + 9);
    char *b = strstr(o.buf, "\r\n\r\n");
    char *out = st_strdup(b ? b + 4 : "");
    resp_out_free(&o);
    size_t n = strlen(out);
    if (n && out[n - 1] == '\n') out[n - 1] = '\0';
    return out;
}

static void test_reply(void)
{
    int st;
    char *j = reply_json("GET", "/v1/users/u1/segments?k=2", "",
                         "*2\r\n+model\r\n*4\r\n$1\r\na\r\n$9\r\n0.8880086\r\n$1\r\nb\r\n$4\r\n-0.5\r\n", &st);
    is_str(j, "{\"user\":\"u1\",\"source\":\"model\",\"segments\":[{\"segment\":\"a\",\"score\":0.8880086},"
              "{\"segment\":\"b\",\"score\":-0.5}]}",
           "SEGMENTS' reply: scores as numbers with the digits sent");
    ok(st == 200, "200");
    st_free(j);
    j = reply_json("POST", "/v1/users/u1/scores", "{\"segments\": [\"a\", \"zz\"]}",
                   "*2\r\n+prior\r\n*2\r\n$3\r\n1.5\r\n$-1\r\n", &st);
    is_str(j, "{\"user\":\"u1\",\"source\":\"prior\",\"scores\":[{\"segment\":\"a\",\"score\":1.5},"
              "{\"segment\":\"zz\",\"score\":null}]}",
           "SCORE's reply: nil is null");
    st_free(j);
    j = reply_json("GET", "/v1/segments/s/reach?min=0.5", "", ":42\r\n", &st);
    is_str(j, "{\"segment\":\"s\",\"min\":0.5,\"reach\":42}", "REACH's reply");
    st_free(j);
    j = reply_json("GET", "/v1/segments/s/audience?n=1", "", "*2\r\n$2\r\nu\xff\r\n$1\r\n2\r\n", &st);
    is_str(j, "{\"segment\":\"s\",\"count\":1,\"users\":[{\"user\":\"u\xef\xbf\xbd\",\"score\":2.0}]}",
           "an id that is not UTF-8: U+FFFD for the bad byte");
    st_free(j);
    j = reply_json("GET", "/v1/segments/s/audience?n=1", "", "-ERR unknown segment 's'\r\n", &st);
    ok(st == 404 && strcmp(j, "{\"error\":\"unknown segment 's'\",\"status\":404}") == 0, "unknown segment: 404 (%s)",
       j);
    st_free(j);
    j = reply_json("POST", "/v1/events", "{\"user\": \"u\", \"segment\": \"s\"}",
                   "-ERR unknown command 'EVENT', with args beginning with: 'u' \r\n", &st);
    ok(st == 501 && strstr(j, "\"command\":\"EVENT\""), "a missing command: 501 naming it (%s)", j);
    st_free(j);
    j = reply_json("GET", "/v1/users/u1/segments?k=x", "", "-ERR COUNT must be a whole number >= 0\r\n", &st);
    ok(st == 400 && strstr(j, "\"COUNT must be a whole number >= 0\""), "an argument error: 400");
    st_free(j);
    j = reply_json("GET", "/v1/users/u1/segments", "", "-LOADING starling is loading the model in memory\r\n", &st);
    ok(st == 503, "LOADING: 503");
    st_free(j);
    j = reply_json("POST", "/v1/events", "{\"user\": \"u\", \"segment\": \"s\"}", "-MISCONF no journal\r\n", &st);
    ok(st == 503 && strstr(j, "\"MISCONF no journal\""), "MISCONF (writes refused): 503 (%s)", j);
    st_free(j);
    j = reply_json("POST", "/v1/events", "{\"user\": \"u\", \"segment\": \"s\"}", "+OK\r\n", &st);
    is_str(j, "{\"ok\":true}", "EVENT's +OK: {\"ok\": true}");
    st_free(j);
    j = reply_json("GET", "/v1/model", "",
                   "*8\r\n$5\r\nusers\r\n:3\r\n$6\r\nlambda\r\n$3\r\n0.1\r\n$11\r\nmeta.inputs\r\n$3\r\na.c\r\n"
                   "$16\r\nmeta.eval.recall\r\n$4\r\n0.25\r\n",
                   &st);
    is_str(j, "{\"users\":3,\"lambda\":0.1,\"meta\":{\"inputs\":\"a.c\"},\"evaluation\":{\"recall\":0.25}}",
           "MODEL INFO: numbers, meta, evaluation");
    st_free(j);
    j = reply_json("GET", "/v1/model", "", "*1\r\n$3\r\nabc", &st);
    ok(st == 500, "a reply that does not parse: 500");
    st_free(j);
}

static void test_ratelimit(void)
{
    st_ratelimit *r = st_malloc(sizeof *r);
    st_ratelimit_init(r, 2, 3);
    int got = 0;
    for (int i = 0; i < 5; i++) got += st_ratelimit_take(r, "10.0.0.1", 8, 100.0);
    is_int(got, 3, "a burst of 3: 3 of 5 requests pass at once");
    ok(st_ratelimit_take(r, "10.0.0.2", 8, 100.0), "another address has its own bucket");
    ok(!st_ratelimit_take(r, "10.0.0.1", 8, 100.2) && st_ratelimit_take(r, "10.0.0.1", 8, 100.6),
       "2 per second: a token after half a second");
    st_ratelimit_destroy(r);
    st_ratelimit_init(r, 0, 0);
    got = 0;
    for (int i = 0; i < 100; i++) got += st_ratelimit_take(r, "x", 1, 1.0);
    is_int(got, 100, "rate 0: no limit");
    st_ratelimit_destroy(r);
    st_free(r);
}

/* Every allocation of a translation made to fail in turn: a 503 or the
 * command, never a crash; make asan and make valgrind check nothing leaks. */
static void test_alloc_failures(void)
{
    int failed = 0, ran = 0, bad = 0;
    for (int which = 0; which < 2; which++) {
        for (long n = 1; n < 40; n++) {
            int status = 0;
            st_alloc_fail_at(n);
            const char *j = which ? translate("GET", "/v1/users/u%31/segments?k=3&min=0", "", 100, &status)
                                  : translate("POST", "/v1/lookalike", "{\"seeds\": [\"u1\", \"u2\", \"u3\"], \"n\": 3}",
                                              100, &status);
            st_alloc_fail_at(0);
            if (*j) ran++;
            else if (status == 503) failed++;
            else bad++;
        }
    }
    ok(bad == 0 && failed > 0 && ran > 0, "allocation failures in translation: 503 (%d), or the command once they pass (%d)",
       failed, ran);
}

/* The guard's verdict for a request of these headers (NULL: absent). */
static int guard_status(const st_server_config *cfg, const char *method, const char *path, const char *host,
                        const char *origin, const char *ctype, st_guard_verdict *v)
{
    char req[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\n%s%s%s%s%s%s%s%s%s\r\n", method, path, host ? "Host: " : "",
             host ? host : "", host ? "\r\n" : "", origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "",
             ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "");
    http_parser p;
    size_t used;
    if (parse(&p, req, &used) != HTTP_OK) return -1;
    st_guard_check(cfg, &p, v);
    return v->status;
}

static void test_guard(void)
{
    static const char *hosts[] = {"api.example.test"}, *origins[] = {"https://dash.example.test"};
    st_server_config cfg = {.http_bind = "box.internal", .http_allow_host = hosts, .n_http_allow_host = 1,
                            .http_allow_origin = origins, .n_http_allow_origin = 1};
    static const char *yes[] = {"localhost", "localhost:80", "LOCALHOST.", "a.b.localhost:1", "127.0.0.1",
                                "10.0.0.7:8080", "[::1]", "[::1]:8080", "[fe80::1]:1", "box.internal:9",
                                "api.example.test", "API.EXAMPLE.TEST:443"};
    static const char *no[] = {"", "evil.example", "localhost.evil.example", "xlocalhost", "::1", "[::1", "[::1]x",
                               "[::1]:", "[nothost]:80", "127.0.0.1:", "127.0.0.1:123456", "127.0.0.1:80:80",
                               "1.2.3.4.example", "api.example.test.evil", ".", ":80"};
    int bad = 0;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!st_guard_host_ok(&cfg, (http_str){yes[i], strlen(yes[i])})) bad++, printf("# refused: %s\n", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (st_guard_host_ok(&cfg, (http_str){no[i], strlen(no[i])})) bad++, printf("# taken: %s\n", no[i]);
    is_int(bad, 0, "Host: loopback names, IP literals, the bind name and listed names; nothing else");

    st_guard_verdict v;
    is_int(guard_status(&cfg, "GET", "/v1/model", "evil.example", NULL, NULL, &v), 421, "a foreign Host: 421");
    is_int(guard_status(&cfg, "GET", "/metrics", "evil.example", NULL, NULL, &v), 0, "/metrics is exempt");
    is_int(guard_status(&cfg, "GET", "/v1/model", NULL, NULL, NULL, &v), 0, "no Host: served");
    is_int(guard_status(&cfg, "POST", "/v1/events", "localhost:1", NULL, "text/plain", &v), 415, "text/plain write: 415");
    is_int(guard_status(&cfg, "POST", "/v1/events", "localhost:1", NULL, "application/json;charset=utf-8", &v), 0,
           "application/json with a parameter: taken");
    is_int(guard_status(&cfg, "POST", "/v1/events", "localhost:1", "http://localhost:1", "application/json", &v), 0,
           "the server's own origin");
    ok(v.headers[0] == '\0', "  gets no CORS header");
    is_int(guard_status(&cfg, "POST", "/v1/events", "localhost:1", "http://localhost:2", "application/json", &v), 403,
           "another port is another origin: 403");
    is_int(guard_status(&cfg, "OPTIONS", "/v1/events", "localhost:1", "https://dash.example.test", NULL, &v), 204,
           "a listed origin's preflight: 204");
    ok(strstr(v.headers, "Access-Control-Allow-Origin: https://dash.example.test\r\n") &&
           strstr(v.headers, "Access-Control-Allow-Headers: Content-Type, Authorization\r\n"),
       "  with its CORS headers");
}

int main(void)
{
    test_parser();
    test_guard();
    test_translate();
    test_reply();
    test_ratelimit();
    test_alloc_failures();
    ok(st_web_find("/", 1) && st_web_find("/app.js", 7) && !st_web_find("/nope", 5), "the page's files are compiled in");
    return tap_done();
}
