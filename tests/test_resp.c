/* Tests of the RESP parser and reply writers: well-formed requests whole,
 * pipelined and fed one byte at a time; every protocol error path; the
 * limits; out-of-memory while growing; and the score formatter's round trip,
 * byte for byte the text of the search it replaced. */
#include <float.h>

#include "resp.h"
#include "rng.h"
#include "score_text_ref.h"
#include "tap.h"
#include "util.h"

static resp_limits lim;

/* Parses the whole of s (a copy) as one request; returns the status and
 * leaves the parser for inspection. */
static resp_status parse_all(resp_parser *p, const char *s, size_t n, char *copy, size_t *consumed)
{
    memcpy(copy, s, n);
    resp_parser_reset(p);
    return resp_parse(p, copy, n, consumed);
}

/* Feeds s one byte at a time: every prefix must be NEED_MORE, the whole OK. */
static int bytewise(const char *s, size_t n, uint32_t want_argc, const char *first)
{
    resp_parser p;
    resp_parser_init(&p, &lim);
    char *buf = malloc(n + 1);
    int good = 1;
    size_t consumed = 0;
    for (size_t i = 1; i <= n; i++) {
        buf[i - 1] = s[i - 1];
        resp_status st = resp_parse(&p, buf, i, &consumed);
        if (i < n && st != RESP_NEED_MORE) good = 0;
        if (i == n && (st != RESP_OK || consumed != n || p.argc != want_argc ||
                       (first && strcmp(p.argv[0].ptr, first) != 0)))
            good = 0;
    }
    free(buf);
    resp_parser_free(&p);
    return good;
}

static void expect_error(const char *req, size_t n, const char *fragment, const char *desc)
{
    resp_parser p;
    resp_parser_init(&p, &lim);
    char buf[256];
    size_t c = 0;
    resp_status st = parse_all(&p, req, n, buf, &c);
    int good = st == RESP_ERROR && p.error && strstr(p.error, fragment);
    ok(good, "%s", desc);
    if (!good) printf("#   status %d, error '%s'\n", st, p.error ? p.error : "(none)");
    /* Sticky: the stream is not trusted again. */
    ok(resp_parse(&p, buf, n, &c) == RESP_ERROR, "%s: the error is sticky", desc);
    resp_parser_free(&p);
}

static void test_requests(void)
{
    resp_parser p;
    resp_parser_init(&p, &lim);
    char buf[512];
    size_t c;
    const char *r1 = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
    ok(parse_all(&p, r1, strlen(r1), buf, &c) == RESP_OK && c == strlen(r1), "an array of bulk strings");
    ok(p.argc == 3 && strcmp(p.argv[0].ptr, "SET") == 0 && p.argv[2].len == 5 && strcmp(p.argv[2].ptr, "value") == 0,
       "arguments, NUL-terminated");

    const char bin[] = "*2\r\n$4\r\necho\r\n$5\r\na\0\r\nb\r\n";
    ok(parse_all(&p, bin, sizeof bin - 1, buf, &c) == RESP_OK && p.argv[1].len == 5 &&
           memcmp(p.argv[1].ptr, "a\0\r\nb", 5) == 0,
       "binary-safe bulk (NUL and CRLF inside)");

    const char *two = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    memcpy(buf, two, strlen(two));
    resp_parser_reset(&p);
    ok(resp_parse(&p, buf, strlen(two), &c) == RESP_OK && c == 14 && p.argc == 1, "pipelined: first request");
    resp_parser_reset(&p);
    ok(resp_parse(&p, buf + c, strlen(two) - c, &c) == RESP_OK && p.argc == 2 && strcmp(p.argv[1].ptr, "hi") == 0,
       "pipelined: second request");

    ok(parse_all(&p, "*0\r\n", 4, buf, &c) == RESP_OK && p.argc == 0 && c == 4, "*0 is an empty request");
    ok(parse_all(&p, "*1\r\n$0\r\n\r\n", 10, buf, &c) == RESP_OK && p.argc == 1 && p.argv[0].len == 0,
       "an empty bulk string");

    ok(parse_all(&p, "PING\r\n", 6, buf, &c) == RESP_OK && p.argc == 1 && strcmp(p.argv[0].ptr, "PING") == 0 && c == 6,
       "inline command");
    ok(parse_all(&p, "  segments   u1  COUNT 3\n", 25, buf, &c) == RESP_OK && p.argc == 4 &&
           strcmp(p.argv[1].ptr, "u1") == 0 && strcmp(p.argv[3].ptr, "3") == 0,
       "inline: runs of spaces, bare LF");
    const char *q = "ECHO \"a b\\n\\x41\\\"\" 'it\\'s' x\r\n";
    ok(parse_all(&p, q, strlen(q), buf, &c) == RESP_OK && p.argc == 4 && strcmp(p.argv[1].ptr, "a b\nA\"") == 0 &&
           strcmp(p.argv[2].ptr, "it's") == 0 && strcmp(p.argv[3].ptr, "x") == 0,
       "inline: double and single quotes with escapes");
    ok(parse_all(&p, "\r\n", 2, buf, &c) == RESP_OK && p.argc == 0, "a blank inline line is an empty request");
    resp_parser_free(&p);

    ok(bytewise(r1, strlen(r1), 3, "SET"), "array fed one byte at a time");
    ok(bytewise("ECHO 'x y'\r\n", 12, 2, "ECHO"), "inline fed one byte at a time");
}

static void test_errors(void)
{
    expect_error("*-10\r\n", 6, "invalid multibulk length", "*-10");
    expect_error("*-1\r\n", 5, "invalid multibulk length", "*-1 (a null array is no request)");
    expect_error("*3000000000\r\n", 13, "too many arguments", "*3000000000");
    expect_error("*abc\r\n", 6, "invalid multibulk length", "*abc");
    expect_error("*\r\n", 3, "invalid multibulk length", "* without a count");
    expect_error("*1\n", 3, "too big mbulk count string", "array header without CR");
    expect_error("*11111111111111111111111111111111111", 36, "too big mbulk count string",
                 "array header longer than 32 bytes without a line end");
    expect_error("*1\r\n+PING\r\n", 11, "expected '$'", "array element that is not a bulk string");
    expect_error("*1\r\n\r\n", 6, "expected '$', got a line break", "empty line for an element");
    expect_error("*1\r\n$-5\r\n", 9, "invalid bulk length", "negative bulk length");
    expect_error("*1\r\n$x\r\n", 8, "invalid bulk length", "bulk length not a number");
    expect_error("*1\r\n$+4\r\n", 9, "invalid bulk length", "bulk length with a plus sign");
    expect_error("*1\r\n$99999999999\r\n", 18, "larger than the server's limit", "bulk length past the limit");
    expect_error("*1\r\n$999999999999999999999999999999999999", 40, "too big bulk count string",
                 "bulk header longer than 32 bytes");
    expect_error("*1\r\n$4\r\nPINGxx", 14, "not followed by CRLF", "bulk longer than announced");
    expect_error("ECHO \"abc\r\n", 11, "unbalanced quotes", "inline: unbalanced double quote");
    expect_error("ECHO 'abc\r\n", 11, "unbalanced quotes", "inline: unbalanced single quote");
    expect_error("ECHO \"a\"b\r\n", 11, "closing quote", "inline: text right after a closing quote");
}

static void test_limits(void)
{
    resp_limits small = {.max_args = 3, .max_request = 64, .max_inline = 16};
    resp_parser p;
    resp_parser_init(&p, &small);
    char buf[256];
    size_t c;
    const char *a3 = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
    memcpy(buf, a3, strlen(a3));
    ok(resp_parse(&p, buf, strlen(a3), &c) == RESP_OK && p.argc == 3, "exactly max_args arguments pass");
    resp_parser_reset(&p);
    memcpy(buf, "*4\r\n", 4);
    ok(resp_parse(&p, buf, 4, &c) == RESP_ERROR && strstr(p.error, "too many arguments"), "max_args + 1 refused");
    resp_parser_reset(&p);
    memcpy(buf, "a b c d\r\n", 9);
    ok(resp_parse(&p, buf, 9, &c) == RESP_ERROR && strstr(p.error, "too many arguments"),
       "inline: max_args + 1 refused");
    resp_parser_reset(&p);
    memset(buf, 'x', 20);
    ok(resp_parse(&p, buf, 20, &c) == RESP_ERROR && strstr(p.error, "too big inline"),
       "inline line longer than max_inline, before its end arrives");
    resp_parser_reset(&p);
    /* 2 x (bulk of 20) = framing 4 + 2 x (5 + 20 + 2) = 58 <= 64; three would not be. */
    const char *big = "*2\r\n$20\r\naaaaaaaaaaaaaaaaaaaa\r\n$30\r\n";
    memcpy(buf, big, strlen(big));
    ok(resp_parse(&p, buf, strlen(big), &c) == RESP_ERROR && strstr(p.error, "limit"),
       "a request growing past max_request is refused at the header that crosses it");
    resp_parser_free(&p);

    /* Out of memory while growing the argument table: an error, no crash. */
    resp_parser_init(&p, &lim);
    st_alloc_fail_at(1);
    memcpy(buf, a3, strlen(a3));
    ok(resp_parse(&p, buf, strlen(a3), &c) == RESP_ERROR && strstr(p.error, "out of memory"),
       "allocation failure gives a protocol error");
    st_alloc_fail_at(0);
    resp_parser_free(&p);
    for (long n = 1; n <= 3; n++) {
        resp_parser_init(&p, &lim);
        st_alloc_fail_at(n);
        memcpy(buf, a3, strlen(a3));
        resp_status st = resp_parse(&p, buf, strlen(a3), &c);
        st_alloc_fail_at(0);
        ok(st == RESP_ERROR, "allocation %ld of the argument table fails cleanly", n);
        resp_parser_free(&p);
    }
}

static void test_replies(void)
{
    resp_out o;
    resp_out_init(&o, 0);
    resp_simple(&o, "OK");
    resp_error(&o, "ERR bad\r\nthing %d", 7);
    resp_int(&o, -42);
    resp_bulk_str(&o, "hi");
    resp_null(&o);
    resp_null_array(&o);
    resp_array(&o, 2);
    resp_score(&o, 0.5f);
    const char *want = "+OK\r\n-ERR bad  thing 7\r\n:-42\r\n$2\r\nhi\r\n$-1\r\n*-1\r\n*2\r\n$3\r\n0.5\r\n";
    ok(o.len == strlen(want) && memcmp(o.buf, want, o.len) == 0, "reply encodings (CR/LF in errors become spaces)");
    resp_out_consume(&o, 5);
    ok(o.len == strlen(want) - 5 && o.buf[0] == '-', "consume drops the written prefix");
    resp_out_free(&o);

    /* Every length a bulk string's copy and header take apart (the short
     * copies, the one- to three-digit headers), each string distinct bytes
     * taken from the end of a buffer so that a read past it would show. */
    resp_out_init(&o, 0);
    char src[300], exp[400];
    int bulks = 1;
    for (size_t n = 0; n <= 300 && bulks; n++) {
        for (size_t i = 0; i < n; i++) src[sizeof src - n + i] = (char)('a' + (i * 7 + n) % 26);
        o.len = 0;
        resp_bulk(&o, src + sizeof src - n, n);
        int w = snprintf(exp, sizeof exp, "$%zu\r\n", n);
        memcpy(exp + w, src + sizeof src - n, n);
        memcpy(exp + w + n, "\r\n", 2);
        bulks = o.len == (size_t)w + n + 2 && memcmp(o.buf, exp, o.len) == 0;
        if (!bulks) printf("#   bulk string of %zu bytes differs\n", n);
    }
    ok(bulks, "bulk strings of 0 to 300 bytes: header and bytes exact");
    resp_out_free(&o);

    resp_out_init(&o, 10000);
    char big[6000];
    memset(big, 'z', sizeof big);
    resp_bulk(&o, big, sizeof big);
    ok(!o.overflow, "under the limit");
    resp_bulk(&o, big, sizeof big);
    ok(o.overflow && o.len < 10000, "past the limit: overflow set, nothing partial written");
    resp_out_free(&o);

    char b[40];
    struct {
        float v;
        const char *s;
    } cases[] = {{1.0f, "1"}, {0.1f, "0.1"}, {-2.5f, "-2.5"}, {123456.0f, "123456"}, {1e-7f, "1e-07"},
                 {3.0e20f, "3e+20"}, {0.0f, "0"}, {1.0092f, "1.0092"}, {100.0f, "100"}};
    int all = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp_format_score(b, cases[i].v);
        if (strcmp(b, cases[i].s) != 0) {
            all = 0;
            printf("#   %.9g -> '%s', want '%s'\n", (double)cases[i].v, b, cases[i].s);
        }
    }
    ok(all, "score text for simple values");
    st_rng r;
    st_rng_seed(&r, 11);
    int roundtrip = 1;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)st_rng_next(&r);
        float v;
        memcpy(&v, &bits, 4);
        if (!isfinite(v)) continue;
        if (i % 2) v = (float)(st_rng_uniform(&r) * 4 - 2); /* the range scores live in */
        resp_format_score(b, v);
        if ((float)strtod(b, NULL) != v) {
            if (roundtrip) printf("#   %.9g -> '%s'\n", (double)v, b);
            roundtrip = 0;
        }
    }
    ok(roundtrip, "score text reads back to the same float (200,000 random floats)");
}

/* The same replies, written under either protocol. */
static void write_sample(resp_out *o)
{
    resp_map(o, 1);
    resp_bulk_str(o, "k");
    resp_double(o, 0.25);
    resp_score(o, -1.5f);
    resp_null(o);
    resp_null_array(o);
    resp_array(o, 1);
    resp_int(o, 3);
}

/* RESP3 (a connection after HELLO 3): maps, doubles and nulls; the rest as RESP2. */
static void test_resp3(void)
{
    resp_out o;
    resp_out_init(&o, 0);
    write_sample(&o);
    const char *v2 = "*2\r\n$1\r\nk\r\n$4\r\n0.25\r\n$4\r\n-1.5\r\n$-1\r\n*-1\r\n*1\r\n:3\r\n";
    ok(o.len == strlen(v2) && memcmp(o.buf, v2, o.len) == 0, "RESP2: a map is a flat array, doubles bulk strings");
    resp_out_free(&o);
    resp_out_init(&o, 0);
    o.proto = 3;
    write_sample(&o);
    resp_double(&o, INFINITY);
    const char *v3 = "%1\r\n$1\r\nk\r\n,0.25\r\n,-1.5\r\n_\r\n_\r\n*1\r\n:3\r\n,inf\r\n";
    ok(o.len == strlen(v3) && memcmp(o.buf, v3, o.len) == 0, "RESP3: %% maps, , doubles, _ nulls");
    resp_out_free(&o);
}

/* Whether resp_format_score writes v as the full search of
 * score_text_ref.h does; prints the first difference. */
static int same_score_text(float v, int *printed)
{
    char a[48], b[48];
    int na = resp_format_score(a, v), nb = ref_format_score(b, v);
    if (na == nb && memcmp(a, b, (size_t)na) == 0) return 1;
    if (!(*printed)++) {
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        printf("#   bits %08x: '%s', the full search '%s'\n", (unsigned)bits, a, b);
    }
    return 0;
}

/* Neighbours either side of v, up to k steps away (signs and zero included). */
static int same_around(float v, int k, int *printed)
{
    int all = same_score_text(v, printed);
    float up = v, down = v;
    for (int i = 0; i < k; i++) {
        up = nextafterf(up, INFINITY);
        down = nextafterf(down, -INFINITY);
        all &= same_score_text(up, printed) & same_score_text(down, printed);
    }
    return all;
}

/* The filtered search in resp_format_score against the full one: the same
 * bytes for random bit patterns, scores of the range they live in, and the
 * edges where a shortcut would slip: zeros, subnormals, integers, powers of
 * ten and of two and their neighbours, the largest and smallest floats.
 * (bench/score_text_check.c runs the same comparison over every float.) */
static void test_score_text_same(void)
{
    int printed = 0, random_ok = 1, edge_ok = 1;
    st_rng r;
    st_rng_seed(&r, 29);
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)st_rng_next(&r);
        float v;
        memcpy(&v, &bits, sizeof v);
        random_ok &= same_score_text(v, &printed);
        random_ok &= same_score_text((float)(st_rng_uniform(&r) * 4 - 2), &printed);
    }
    ok(random_ok, "score text: the same bytes as the full search (2,000,000 bit patterns, 2,000,000 scores)");
    float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                        FLT_TRUE_MIN, -FLT_TRUE_MIN, FLT_EPSILON, 1.0f / 3, 2.0f / 3, 16777216.0f, 16777217.0f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) edge_ok &= same_around(specials[i], 64, &printed);
    for (uint32_t bits = 0; bits < 200000; bits++) { /* the smallest subnormals */
        float v;
        memcpy(&v, &bits, sizeof v);
        edge_ok &= same_score_text(v, &printed) & same_score_text(-v, &printed);
    }
    for (int i = -200000; i <= 200000; i++) edge_ok &= same_score_text((float)i, &printed);
    for (int e = -45; e <= 38; e++) {
        char t[16];
        snprintf(t, sizeof t, "1e%d", e);
        float p = strtof(t, NULL);
        edge_ok &= same_around(p, 16, &printed) & same_around(-p, 4, &printed);
        for (int k = 2; k <= 9; k++) edge_ok &= same_around(p * (float)k, 4, &printed);
    }
    for (int e = -149; e <= 127; e++) edge_ok &= same_around(ldexpf(1.0f, e), 16, &printed);
    /* Where a rounding to n digits is a tie or nearly (a decimal ending in
     * 5 one digit past n) and where the fewest digits are few (short
     * decimals): the floats nearest such decimals between 1e-5 and 20. */
    for (int i = 0; i < 200000; i++) {
        int n = 1 + (int)st_rng_below(&r, 9), e = -5 + (int)st_rng_below(&r, 7);
        double lead = 1 + (double)st_rng_below(&r, 9), tail = (double)st_rng_below(&r, 100000000);
        char t[64];
        snprintf(t, sizeof t, "%.0f%0*.0f5e%d", lead, n - 1 > 0 ? n - 1 : 1, n > 1 ? fmod(tail, pow(10, n - 1)) : 0,
                 e - n);
        edge_ok &= same_around(strtof(t, NULL), 2, &printed);
        snprintf(t, sizeof t, "%.0fe%d", lead * pow(10, n - 1) + fmod(tail, pow(10, n - 1)), e - n + 1);
        edge_ok &= same_around(strtof(t, NULL), 2, &printed);
    }
    ok(edge_ok, "score text: the same bytes at zeros, subnormals, integers, powers of ten and two, the extremes, "
                "ties of every rounding and short decimals");
}

int main(void)
{
    resp_limits_default(&lim);
    test_requests();
    test_errors();
    test_limits();
    test_replies();
    test_score_text_same();
    test_resp3();
    return tap_done();
}
