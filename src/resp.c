/* resp: an incremental, bounded RESP2 request parser and the reply writers.
 *
 * What it is: the bytes-to-arguments and values-to-bytes halves of the Redis
 * protocol, so that every Redis client, proxy and tool can talk to starling.
 * What it is not: a connection. It never sees a socket; server.c feeds it the
 * bytes it read and writes out what the writers appended.
 *
 * The parser keeps its place between calls as offsets from the start of the
 * request (the caller's buffer may be reallocated or compacted in between),
 * so feeding a request one byte at a time costs no rescanning beyond the
 * current header line. Every number read from the wire is checked against a
 * limit before it sizes anything: the argument count against max_args, a bulk
 * length against what is left of max_request, header lines against a fixed
 * 32 bytes, inline lines against max_inline. Each malformed input gets its
 * own message, worded like Redis's where Redis has one.
 */
#include "resp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* The longest "*<count>\r\n" or "$<len>\r\n" line accepted: a sign and 19
 * digits fit comfortably. */
#define HEADER_MAX 32

void resp_limits_default(resp_limits *l)
{
    l->max_args = 65536;
    l->max_request = 1u << 20;
    l->max_inline = 64u << 10;
}

void resp_parser_init(resp_parser *p, const resp_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->lim = *lim;
    resp_parser_reset(p);
}

void resp_parser_free(resp_parser *p)
{
    st_free(p->arg_off);
    st_free(p->arg_len);
    st_free(p->argv);
    p->arg_off = p->arg_len = NULL;
    p->argv = NULL;
    p->argcap = 0;
}

void resp_parser_reset(resp_parser *p)
{
    p->pos = 0;
    p->nargs = -1;
    p->bulk_len = -1;
    p->argc = 0;
    p->error = NULL;
    p->cross_protocol = 0;
    /* After a request of many arguments the table goes back to nothing (the
     * next request grows it from 16), so an idle connection keeps no trace
     * of its largest request. */
    if (p->argcap > RESP_KEEP_ARGS) resp_parser_free(p);
}

static resp_status fail(resp_parser *p, const char *msg)
{
    p->error = msg;
    return RESP_ERROR;
}

/* Room for one more argument; the table grows geometrically up to max_args
 * and is then reused by every later request on the connection. */
static int grow_args(resp_parser *p)
{
    if (p->argc < p->argcap) return 0;
    /* Never sized from the announced count alone: a 10-byte header must not
     * make the server allocate for a million arguments that never come. */
    uint64_t cap = p->argcap ? (uint64_t)p->argcap * 2 : 16;
    if (cap > p->lim.max_args) cap = p->lim.max_args;
    if (cap <= p->argc) return -1;
    size_t *off = st_realloc(p->arg_off, cap * sizeof *off);
    if (!off) return -1;
    p->arg_off = off;
    size_t *len = st_realloc(p->arg_len, cap * sizeof *len);
    if (!len) return -1;
    p->arg_len = len;
    resp_arg *argv = st_realloc(p->argv, cap * sizeof *argv);
    if (!argv) return -1;
    p->argv = argv;
    p->argcap = (uint32_t)cap;
    return 0;
}

static void push_arg(resp_parser *p, size_t off, size_t len)
{
    p->arg_off[p->argc] = off;
    p->arg_len[p->argc] = len;
    p->argc++;
}

static void finish(resp_parser *p, char *buf)
{
    for (uint32_t i = 0; i < p->argc; i++) {
        p->argv[i].ptr = buf + p->arg_off[i];
        p->argv[i].len = p->arg_len[i];
    }
}

/* Parses the digits of a header line ("-?[0-9]+"), strictly: no sign but
 * '-', no spaces, no more than 18 digits. 0 on success. */
static int parse_len(const char *s, size_t n, int64_t *out)
{
    int neg = 0;
    if (n > 0 && s[0] == '-') {
        neg = 1;
        s++;
        n--;
    }
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* Finds the CRLF-terminated header line starting at buf[from] (the type byte).
 * Returns the offset of its '\n', 0 when the line is incomplete, or -1 when
 * it is too long or the '\n' has no '\r' before it. */
static int64_t header_line(const char *buf, size_t len, size_t from)
{
    size_t avail = len - from, scan = avail < HEADER_MAX ? avail : HEADER_MAX;
    const char *nl = memchr(buf + from, '\n', scan);
    if (!nl) return avail >= HEADER_MAX ? -1 : 0;
    size_t at = (size_t)(nl - buf);
    if (at < from + 2 || buf[at - 1] != '\r') return -1;
    return (int64_t)at;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Splits an inline line buf[0..end) into arguments in place, with Redis's
 * quoting: "..." with \n \r \t \b \a \\ \" \xHH escapes, '...' with \' only.
 * A closing quote must be followed by a space or the end of the line. The
 * unquoted text never grows, so writing it over the input is safe; each
 * argument is followed by a NUL written over its separator. */
static resp_status split_inline(resp_parser *p, char *buf, size_t end)
{
    size_t r = 0;
    while (r < end) {
        while (r < end && is_space(buf[r])) r++;
        if (r >= end) break;
        if (p->argc >= p->lim.max_args) return fail(p, "Protocol error: too many arguments in the inline request");
        if (grow_args(p) != 0) return fail(p, "Protocol error: out of memory for the request");
        size_t start = r, w = r;
        char q = buf[r];
        if (q == '"' || q == '\'') {
            r++;
            for (;;) {
                if (r >= end) return fail(p, "Protocol error: unbalanced quotes in request");
                char c = buf[r];
                if (c == q) {
                    r++;
                    if (r < end && !is_space(buf[r]))
                        return fail(p, "Protocol error: a closing quote must be followed by a space");
                    break;
                }
                if (c == '\\' && r + 1 < end) {
                    char e = buf[r + 1];
                    if (q == '\'') {
                        if (e == '\'') {
                            buf[w++] = '\'';
                            r += 2;
                            continue;
                        }
                    } else if (e == 'x' && r + 3 < end && hex_digit(buf[r + 2]) >= 0 && hex_digit(buf[r + 3]) >= 0) {
                        buf[w++] = (char)(hex_digit(buf[r + 2]) * 16 + hex_digit(buf[r + 3]));
                        r += 4;
                        continue;
                    } else {
                        switch (e) {
                        case 'n': c = '\n'; break;
                        case 'r': c = '\r'; break;
                        case 't': c = '\t'; break;
                        case 'b': c = '\b'; break;
                        case 'a': c = '\a'; break;
                        default: c = e; break;
                        }
                        buf[w++] = c;
                        r += 2;
                        continue;
                    }
                }
                buf[w++] = c;
                r++;
            }
        } else {
            while (r < end && !is_space(buf[r])) buf[w++] = buf[r++];
        }
        /* w <= r here, and buf[r] (if any) is the separator already passed. */
        buf[w] = '\0';
        push_arg(p, start, w - start);
        if (r < end) r++;
    }
    return RESP_OK;
}

/* 1 when the line buf[0..end) is an HTTP request line (`METHOD target
 * HTTP/1.1`) or a Host: header: what a browser or an SSRF-prone service sends
 * when it is made to POST to this port. No Redis command looks like either. */
static int looks_like_http(const char *buf, size_t end)
{
    if (end >= 5 && strncasecmp(buf, "host:", 5) == 0) return 1;
    size_t i = 0;
    while (i < end && buf[i] >= 'A' && buf[i] <= 'Z') i++;
    if (i == 0 || i >= end || buf[i] != ' ') return 0;
    size_t t = ++i;
    while (i < end && buf[i] != ' ' && buf[i] != '\t') i++;
    if (i == t || i >= end) return 0;
    i++;
    return end - i == 8 && memcmp(buf + i, "HTTP/", 5) == 0 && buf[i + 5] >= '0' && buf[i + 5] <= '9' &&
           buf[i + 6] == '.' && buf[i + 7] >= '0' && buf[i + 7] <= '9';
}

static resp_status parse_inline(resp_parser *p, char *buf, size_t len, size_t *consumed)
{
    /* p->pos remembers how far the line was already searched for its end. */
    const char *nl = memchr(buf + p->pos, '\n', len - p->pos);
    if (!nl) {
        if (len > p->lim.max_inline) return fail(p, "Protocol error: too big inline request");
        p->pos = len;
        return RESP_NEED_MORE;
    }
    size_t at = (size_t)(nl - buf);
    if (at > p->lim.max_inline) return fail(p, "Protocol error: too big inline request");
    size_t end = at > 0 && buf[at - 1] == '\r' ? at - 1 : at;
    if (looks_like_http(buf, end)) {
        p->cross_protocol = 1;
        return fail(p, "Possible SECURITY ATTACK detected: an HTTP request line or a Host: header on the Redis "
                       "protocol port (cross-protocol scripting)");
    }
    resp_status st = split_inline(p, buf, end);
    if (st != RESP_OK) return st;
    finish(p, buf);
    *consumed = at + 1;
    return RESP_OK;
}

resp_status resp_parse(resp_parser *p, char *buf, size_t len, size_t *consumed)
{
    if (p->error) return RESP_ERROR;
    if (len == 0) return RESP_NEED_MORE;
    if (buf[0] != '*') return parse_inline(p, buf, len, consumed);
    if (p->nargs < 0) {
        int64_t nl = header_line(buf, len, 0);
        if (nl == 0) return RESP_NEED_MORE;
        if (nl < 0) return fail(p, "Protocol error: too big mbulk count string");
        int64_t n;
        if (parse_len(buf + 1, (size_t)nl - 2, &n) != 0 || n < 0)
            return fail(p, "Protocol error: invalid multibulk length");
        if (n > p->lim.max_args) return fail(p, "Protocol error: too many arguments in the request");
        p->pos = (size_t)nl + 1;
        if (n == 0) {
            *consumed = p->pos;
            return RESP_OK;
        }
        p->nargs = n;
    }
    while (p->argc < p->nargs) {
        if (p->bulk_len < 0) {
            if (p->pos >= len) return RESP_NEED_MORE;
            if (buf[p->pos] != '$') {
                p->error = buf[p->pos] == '\r' || buf[p->pos] == '\n'
                               ? "Protocol error: expected '$', got a line break"
                               : "Protocol error: expected '$' before a bulk string";
                return RESP_ERROR;
            }
            int64_t nl = header_line(buf, len, p->pos);
            if (nl == 0) return RESP_NEED_MORE;
            if (nl < 0) return fail(p, "Protocol error: too big bulk count string");
            int64_t n;
            if (parse_len(buf + p->pos + 1, (size_t)nl - p->pos - 2, &n) != 0 || n < 0)
                return fail(p, "Protocol error: invalid bulk length");
            p->pos = (size_t)nl + 1;
            /* The whole request, this bulk and its CRLF included, must fit. */
            if ((uint64_t)n > p->lim.max_request || p->pos + (uint64_t)n + 2 > p->lim.max_request)
                return fail(p, "Protocol error: request larger than the server's limit (max-request)");
            p->bulk_len = n;
        }
        size_t need = p->pos + (size_t)p->bulk_len + 2;
        if (len < need) return RESP_NEED_MORE;
        if (buf[need - 2] != '\r' || buf[need - 1] != '\n')
            return fail(p, "Protocol error: bulk string not followed by CRLF");
        if (grow_args(p) != 0) return fail(p, "Protocol error: out of memory for the request");
        buf[need - 2] = '\0';
        push_arg(p, p->pos, (size_t)p->bulk_len);
        p->pos = need;
        p->bulk_len = -1;
    }
    finish(p, buf);
    *consumed = p->pos;
    return RESP_OK;
}

/* ---- replies ------------------------------------------------------------ */

void resp_out_init(resp_out *o, size_t limit)
{
    memset(o, 0, sizeof *o);
    o->limit = limit;
}

void resp_out_free(resp_out *o)
{
    st_free(o->buf);
    o->buf = NULL;
    o->len = o->cap = 0;
}

int resp_out_reserve(resp_out *o, size_t n)
{
    if (o->overflow) return -1;
    if (o->len + n <= o->cap) return 0;
    if (o->limit && o->len + n > o->limit) {
        o->overflow = 1;
        return -1;
    }
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n) cap *= 2;
    char *b = st_realloc(o->buf, cap);
    if (!b) {
        o->overflow = 1;
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

void resp_out_consume(resp_out *o, size_t n)
{
    if (n >= o->len) {
        o->len = 0;
        return;
    }
    memmove(o->buf, o->buf + n, o->len - n);
    o->len -= n;
}

void resp_raw(resp_out *o, const void *p, size_t n)
{
    if (resp_out_reserve(o, n) != 0) return;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* Writes the decimal digits of v at p; returns how many. */
static int fmt_i64(char *p, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    int w = 0;
    if (v < 0) p[w++] = '-';
    while (n) p[w++] = tmp[--n];
    return w;
}

static void header(resp_out *o, char type, int64_t n)
{
    if (resp_out_reserve(o, 24) != 0) return;
    char *p = o->buf + o->len;
    p[0] = type;
    int w = 1 + fmt_i64(p + 1, n);
    p[w++] = '\r';
    p[w++] = '\n';
    o->len += (size_t)w;
}

/* One line value: the type byte, n bytes of s, CRLF. */
static void line(resp_out *o, char type, const char *s, size_t n)
{
    if (resp_out_reserve(o, n + 3) != 0) return;
    char *p = o->buf + o->len;
    p[0] = type;
    memcpy(p + 1, s, n);
    p[n + 1] = '\r';
    p[n + 2] = '\n';
    o->len += n + 3;
}

void resp_simple(resp_out *o, const char *s) { line(o, '+', s, strlen(s)); }

void resp_error(resp_out *o, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
    /* An error is one line: a CR or LF from a client's argument would end it early. */
    for (int i = 0; i < n; i++)
        if (msg[i] == '\r' || msg[i] == '\n') msg[i] = ' ';
    line(o, '-', msg, (size_t)n);
}

void resp_int(resp_out *o, int64_t v) { header(o, ':', v); }
void resp_array(resp_out *o, int64_t n) { header(o, '*', n); }
void resp_null(resp_out *o)
{
    if (o->proto == 3) resp_raw(o, "_\r\n", 3);
    else resp_raw(o, "$-1\r\n", 5);
}

void resp_null_array(resp_out *o)
{
    if (o->proto == 3) resp_raw(o, "_\r\n", 3);
    else resp_raw(o, "*-1\r\n", 5);
}

void resp_map(resp_out *o, int64_t n)
{
    if (o->proto == 3) header(o, '%', n);
    else header(o, '*', 2 * n);
}

/* A RESP3 double line (`,text`), or the text as a bulk string. */
static void double_text(resp_out *o, const char *b, size_t n)
{
    if (o->proto != 3) {
        resp_bulk(o, b, n);
        return;
    }
    line(o, ',', b, n);
}

void resp_double(resp_out *o, double v)
{
    char b[40];
    int n = isnan(v) ? snprintf(b, sizeof b, "nan") : isinf(v) ? snprintf(b, sizeof b, v > 0 ? "inf" : "-inf")
                                                               : snprintf(b, sizeof b, "%.17g", v);
    double_text(o, b, (size_t)n);
}

/* memcpy for the short strings replies are mostly made of (segment names,
 * scores): up to 32 bytes as two overlapping copies of fixed size, which
 * the compiler inlines, reading nothing outside s; longer ones by memcpy.
 * SEGMENTS' replies are twenty such strings each. */
static inline void copy_short(char *d, const char *s, size_t n)
{
    if (n >= 16 && n <= 32) {
        memcpy(d, s, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8 && n < 16) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    } else {
        memcpy(d, s, n);
    }
}

void resp_bulk(resp_out *o, const void *s, size_t n)
{
    if (resp_out_reserve(o, n + 26) != 0) return;
    char *p = o->buf + o->len;
    p[0] = '$';
    int w;
    if (n < 10) {
        p[1] = (char)('0' + n);
        w = 2;
    } else if (n < 100) {
        p[1] = (char)('0' + n / 10);
        p[2] = (char)('0' + n % 10);
        w = 3;
    } else {
        w = 1 + fmt_i64(p + 1, (int64_t)n);
    }
    p[w++] = '\r';
    p[w++] = '\n';
    copy_short(p + w, s, n);
    w += (int)n;
    p[w++] = '\r';
    p[w++] = '\n';
    o->len += (size_t)w;
}

void resp_bulk_str(resp_out *o, const char *s) { resp_bulk(o, s, strlen(s)); }

static const double pow10_table[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* m x 10^e as a double, correctly rounded when |e| <= 22 and m is exact. */
static double scale10(double m, int e)
{
    if (e >= 0) return e <= 22 ? m * pow10_table[e] : m * pow(10, e);
    return -e <= 22 ? m / pow10_table[-e] : m / pow(10, -e);
}

/* floor(log10(av)) for a positive finite float: an estimate from the binary
 * exponent, corrected against the powers of ten (the same as
 * floor(log10(av)) for every float: bench/score_text_check.c compares them). */
static int decimal_exponent(float av)
{
    uint32_t bits;
    memcpy(&bits, &av, sizeof bits);
    int b = (int)(bits >> 23) - 127; /* av in [2^b, 2^(b+1)) when normal */
    if (b == -127) b = ilogbf(av);
    int e = (b * 1233) >> 12; /* floor(b log10(2)), or one less */
    double d = (double)av;
    if (scale10(1.0, e) > d) e--;
    while (scale10(1.0, e + 1) <= d) e++;
    return e;
}

/* v rounded to `digits` significant digits, m x 10^(*e - digits + 1), with e0
 * v's decimal exponent: the full search's arithmetic, step for step. */
static int64_t round_digits(double d, int e0, int digits, int *e)
{
    double x = scale10(d, digits - 1 - e0);
    double t = trunc(x);
    int64_t m = (int64_t)t + (x - t >= 0.5); /* llround for x >= 0 */
    *e = e0;
    if (m >= (int64_t)pow10_table[digits]) { /* rounding carried into a new digit */
        m /= 10;
        (*e)++;
    }
    return m;
}

/* The fewest significant digits, 1 to 9, whose rounding of av (positive,
 * finite) reads back as av; 9 always does for float32. Each trial rounding
 * is sorted first, without a branch: one further from av than twice the gap
 * to av's wider neighbour cannot read back as av (skipped); one nearer than
 * 0.49 times the narrower gap must (taken); only those in between get the
 * exact check, a division and a conversion. So the count is that of trying
 * 1, 2, ... with the exact check alone (bench/score_text_check.c compares
 * the two over every float), at a fraction of the cost. */
static int shortest_digits(float av, int e0)
{
    uint32_t bits;
    memcpy(&bits, &av, sizeof bits);
    uint32_t up_bits = bits + 1, down_bits = bits - 1;
    float up, down;
    memcpy(&up, &up_bits, sizeof up);
    memcpy(&down, &down_bits, sizeof down);
    double d = (double)av, gap_up = (double)up - d, gap_down = d - (double)down; /* up is inf past FLT_MAX */
    double hi = 2.0 * fmax(gap_up, gap_down) / d, lo = 0.49 * fmin(gap_up, gap_down) / d;
    unsigned maybe = 0, sure = 0;
    for (int digits = 1; digits <= 8; digits++) {
        double x = scale10(d, digits - 1 - e0);
        double t = trunc(x);
        double off = fabs(x - (t + (double)(x - t >= 0.5)));
        maybe |= (unsigned)(off <= x * hi) << digits;
        sure |= (unsigned)(off < x * lo) << digits;
    }
    for (; maybe; maybe &= maybe - 1) {
        int digits = __builtin_ctz(maybe), e;
        if (sure >> digits & 1) return digits;
        int64_t m = round_digits(d, e0, digits, &e);
        if ((float)scale10((double)m, e - digits + 1) == av) return digits;
    }
    return 9;
}

/* Writes the decimal digits of m (below 10^9) at p, two at a time; returns
 * how many. */
static int significand_digits(char *p, uint32_t m)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[10];
    int n = 10;
    while (m >= 100) {
        uint32_t q = m / 100, r = m - q * 100;
        tmp[--n] = pairs[2 * r + 1];
        tmp[--n] = pairs[2 * r];
        m = q;
    }
    if (m >= 10) {
        tmp[--n] = pairs[2 * m + 1];
        tmp[--n] = pairs[2 * m];
    } else {
        tmp[--n] = (char)('0' + m);
    }
    memcpy(p, tmp + n, (size_t)(10 - n));
    return 10 - n;
}

int resp_format_decimal(char *buf, int negative, int64_t m, int e)
{
    char dig[16];
    /* Trailing zeros carry no information. */
    uint32_t mm = (uint32_t)m;
    while (mm >= 10 && mm % 10 == 0) mm /= 10;
    int nd = significand_digits(dig, mm);
    int w = 0;
    if (negative) buf[w++] = '-';
    if (e >= -5 && e < 17) {
        if (e < 0) {
            memcpy(buf + w, "0.00000", (size_t)(1 - e)); /* "0." and -e - 1 zeros */
            w += 1 - e;
            memcpy(buf + w, dig, (size_t)nd);
            w += nd;
        } else if (nd > e + 1) {
            memcpy(buf + w, dig, (size_t)e + 1);
            buf[w + e + 1] = '.';
            memcpy(buf + w + e + 2, dig + e + 1, (size_t)(nd - e - 1));
            w += nd + 1;
        } else {
            memcpy(buf + w, dig, (size_t)nd);
            memset(buf + w + nd, '0', (size_t)(e + 1 - nd));
            w += e + 1;
        }
    } else {
        buf[w++] = dig[0];
        if (nd > 1) {
            buf[w++] = '.';
            for (int i = 1; i < nd; i++) buf[w++] = dig[i];
        }
        w += snprintf(buf + w, 12, "e%s%02d", e < 0 ? "-" : "+", e < 0 ? -e : e);
    }
    buf[w] = '\0';
    return w;
}

/* The digits resp_format_score chooses, for 1e-4 <= av < 10 (where most
 * scores are), from exact integers: av = M 2^-s, and N = M 10^(8-e0) makes
 * av 10^(8-e0) = N 2^-s = T9 + fr in units of av's ninth digit. Rounding to
 * n digits (half up, as the search below) is then T9 / 10^(9-n) and its
 * remainder, and whether that reads back as av is where it falls against
 * av's rounding interval (the gap to each neighbour, 10^(8-e0) 2^-s in the
 * same units): well inside, it does; well outside, it does not; within
 * 2^-20 of an edge, or where the search's double arithmetic might round the
 * other way, the search decides (0 is returned). A rounding that reads back
 * at n digits also does at n + 1 (the n-digit value is an (n + 1)-digit one,
 * and the nearest is no further) except where av's interval is lopsided
 * (M a power of two: left to the search), so the fewest digits are found
 * by a search over the count: 7 first (most scores need 7 or 8), then 6 or
 * 8, then bisection; two trials mostly, instead of eight. bench/score_text_check.c
 * compares every float with the search: the same bytes. */
typedef struct {
    uint64_t T9;       /* N's ninth-digit part */
    double fr, up4;    /* frac in ninth-digit units; twice the gap to a neighbour */
    int e0;            /* av's decimal exponent */
} digits_fast;

/* Rounds to n digits (1..8) into *m: 1 when that reads back as av, 0 when
 * not, -1 when the search must decide. */
static int try_digits(const digits_fast *f, int n, uint64_t *m)
{
    static const uint32_t p10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    uint32_t unit = p10[9 - n], t = (uint32_t)f->T9 / unit, r = (uint32_t)f->T9 - t * unit, h = unit / 2;
    *m = t + (r >= h);
    /* The search rounds the double nearest av 10^(n-1-e0), inexact past
     * 10^8 (within 2^-27 of it): that near one half, it decides. */
    double off = fabs((double)((int64_t)r - (int64_t)h) + f->fr);
    if (n - 1 - f->e0 > 8 && off <= (double)unit * 0x1p-26) return -1;
    double diff = (double)((int64_t)(*m * unit) - (int64_t)f->T9) - f->fr, g = f->up4;
    double four = 4 * fabs(diff);
    if (four < g * (1 - 0x1p-20)) return 1;
    return four > g * (1 + 0x1p-20) ? 0 : -1;
}

static int shortest_fast(float av, int64_t *m_out, int *e_out)
{
    double d = (double)av;
    if (!(d >= 1e-4 && d < 10.0)) return 0;
    uint32_t bits;
    memcpy(&bits, &av, sizeof bits);
    if ((bits & 0x7fffffu) == 0) return 0; /* a power of two: a lopsided interval */
    static const uint64_t p10[] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
                                   100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
                                   1000000000000ull};
    digits_fast f;
    f.e0 = d >= 1.0 ? 0 : d >= 0.1 ? -1 : d >= 0.01 ? -2 : d >= 0.001 ? -3 : -4;
    uint64_t M = (bits & 0x7fffffu) | 0x800000u;
    int s = 150 - (int)(bits >> 23), p9 = 8 - f.e0; /* s in [20, 37], p9 in [8, 12] */
    uint64_t N = M * p10[p9], half = 1ull << (s - 1);
    f.T9 = N >> s; /* below 10^9 */
    uint64_t frac = N & ((1ull << s) - 1);
    /* Nine digits: the search rounds the double nearest N 2^-s, which is
     * within 2^(s-23) of N in these units (N 2^-s is below 2^30) and is N
     * itself when N < 2^53 (so for s < 21): it may differ from the exact
     * rounding only when frac is that near one half (a margin of 4). */
    uint64_t near = s >= 21 ? (1ull << (s - 21)) + 1 : 1;
    if ((frac > half ? frac - half : half - frac) <= near) return 0;
    uint64_t scale_bits = (uint64_t)(1023 - s) << 52; /* 2^-s */
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    f.fr = (double)frac * scale;
    f.up4 = 2 * (double)p10[p9] * scale;
    int lo = 1, hi = 9;
    uint64_t m = f.T9 + (frac >= half), mt;
    /* Most scores need 7 or 8 digits: 7 is tried first, then 6 or 8, then
     * the bisection goes on over what is left (two trials, mostly). */
    for (int step = 0; lo < hi; step++) {
        int mid = step == 0 ? 7 : step == 1 ? (hi == 7 ? 6 : 8) : (lo + hi) / 2;
        if (mid < lo || mid >= hi) mid = (lo + hi) / 2;
        int c = try_digits(&f, mid, &mt);
        if (c < 0) return 0;
        if (c) {
            hi = mid;
            m = mt;
        } else {
            lo = mid + 1;
        }
    }
    int e = f.e0;
    if (m >= p10[lo]) { /* the rounding carried into a new digit */
        m /= 10;
        e++;
    }
    *m_out = (int64_t)m;
    *e_out = e;
    return 1;
}

int resp_format_score(char *buf, float v)
{
    if (isnan(v)) return snprintf(buf, 32, "nan");
    if (isinf(v)) return snprintf(buf, 32, v > 0 ? "inf" : "-inf");
    if (v == 0) return snprintf(buf, 32, signbit(v) ? "-0" : "0");
    /* The shortest of 1..9 significant digits that reads back as the same
     * float. Digits come from integer arithmetic. */
    float av = fabsf(v);
    int64_t m;
    int e;
    if (shortest_fast(av, &m, &e)) return resp_format_decimal(buf, v < 0, m, e);
    double d = (double)av;
    int e0 = decimal_exponent(av);
    m = round_digits(d, e0, shortest_digits(av, e0), &e);
    return resp_format_decimal(buf, v < 0, m, e);
}

void resp_score(resp_out *o, float v)
{
    char b[40];
    int n = resp_format_score(b, v);
    double_text(o, b, (size_t)n);
}
