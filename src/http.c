/* http: the HTTP/1.1 request parser and the response head writer.
 *
 * What it accepts (RFC 9112, strictly where leniency lets a request be read
 * two ways): a request line `METHOD SP target SP HTTP/1.x`, header lines
 * `name: value` with CRLF or bare LF line ends, and a body of exactly
 * Content-Length bytes. What it refuses, each with its own message:
 * control characters, a header line folded onto the previous one, a target
 * that is not a path (origin form), two different Content-Lengths, two
 * Host, Origin or Content-Type headers,
 * Transfer-Encoding of any kind (a request with it and a Content-Length is
 * the classic request-smuggling shape), an expectation other than
 * 100-continue, and HTTP versions other than 1.0 and 1.1.
 *
 * The head is found by scanning for an empty line, resuming where the last
 * call stopped, so a head trickling in byte by byte costs O(length) in all.
 * Once found it is parsed, and parsed again when the body is complete: the
 * caller's buffer may have moved in between, and a head is at most a few
 * kilobytes.
 */
#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void http_limits_default(http_limits *l)
{
    l->max_head = 16u << 10;
    l->max_headers = 100;
    l->max_body = 1u << 20;
}

void http_parser_init(http_parser *p, const http_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->lim = *lim;
}

void http_parser_reset(http_parser *p)
{
    http_limits lim = p->lim;
    http_parser_init(p, &lim);
}

int http_str_is(http_str s, const char *w)
{
    size_t n = strlen(w);
    return s.len == n && strncasecmp(s.ptr, w, n) == 0;
}

static http_status fail(http_parser *p, int status, const char *msg)
{
    p->error_status = status;
    p->error = msg;
    return HTTP_ERROR;
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value's bytes: visible ASCII, space, tab and obs-text. */
static int is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

/* The end of the line starting at s (pointing at its '\n'); lines end in
 * LF, the CR before it is dropped by the callers. */
static const char *line_end(const char *s, const char *end) { return memchr(s, '\n', (size_t)(end - s)); }

static http_str trim(const char *a, const char *b)
{
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    return (http_str){a, (size_t)(b - a)};
}

/* Does the comma-separated list s hold the token w? */
static int list_has(http_str s, const char *w)
{
    const char *p = s.ptr, *end = s.ptr + s.len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        if (!c) c = end;
        if (http_str_is(trim(p, c), w)) return 1;
        p = c + 1;
    }
    return 0;
}

/* Parses the head buf[0..head_len) (request line, headers, the empty line). */
static http_status parse_head(http_parser *p, const char *buf, size_t head_len)
{
    const char *s = buf, *end = buf + head_len;
    const char *eol = line_end(s, end);
    const char *le = eol > s && eol[-1] == '\r' ? eol - 1 : eol;
    /* Request line. */
    const char *q = s;
    while (q < le && is_tchar((unsigned char)*q)) q++;
    if (q == s || q == le || *q != ' ') return fail(p, 400, "malformed request line: expected METHOD SP target SP HTTP/1.1");
    p->method = (http_str){s, (size_t)(q - s)};
    const char *t = ++q;
    while (q < le && *q != ' ') {
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return fail(p, 400, "the request target holds a control character, a space or a non-ASCII byte");
        q++;
    }
    if (q == t || q == le) return fail(p, 400, "malformed request line: expected METHOD SP target SP HTTP/1.1");
    p->target = (http_str){t, (size_t)(q - t)};
    q++;
    if ((size_t)(le - q) != 8 || memcmp(q, "HTTP/", 5) != 0 || !isdigit((unsigned char)q[5]) || q[6] != '.' ||
        !isdigit((unsigned char)q[7]))
        return fail(p, 400, "malformed request line: expected METHOD SP target SP HTTP/1.1");
    if (q[5] != '1' || (q[7] != '0' && q[7] != '1')) return fail(p, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    p->minor = q[7] - '0';
    if (t[0] != '/')
        return fail(p, 400, "the request target must be a path starting with '/' (origin form)");
    const char *qm = memchr(t, '?', p->target.len);
    p->path = (http_str){t, qm ? (size_t)(qm - t) : p->target.len};
    p->query = qm ? (http_str){qm + 1, p->target.len - p->path.len - 1} : (http_str){t + p->target.len, 0};
    /* Headers. */
    int have_length = 0, saw_close = 0, saw_keep = 0;
    uint32_t nheaders = 0;
    p->content_length = 0;
    p->authorization = p->if_none_match = p->content_type = p->host = p->origin = (http_str){NULL, 0};
    p->expect_continue = 0;
    for (s = eol + 1; s < end;) {
        eol = line_end(s, end);
        le = eol > s && eol[-1] == '\r' ? eol - 1 : eol;
        if (le == s) break; /* the empty line */
        if (++nheaders > p->lim.max_headers) return fail(p, 431, "too many header lines");
        if (*s == ' ' || *s == '\t') return fail(p, 400, "a header line folded onto the previous one (obs-fold)");
        const char *c = s;
        while (c < le && is_tchar((unsigned char)*c)) c++;
        if (c == s || c == le || *c != ':') return fail(p, 400, "malformed header line: expected name: value");
        for (const char *v = c + 1; v < le; v++)
            if (!is_value_char((unsigned char)*v)) return fail(p, 400, "a header value holds a control character");
        http_str name = {s, (size_t)(c - s)}, value = trim(c + 1, le);
        if (http_str_is(name, "content-length")) {
            uint64_t n = 0;
            if (value.len == 0 || value.len > 19) return fail(p, 400, "invalid Content-Length");
            for (size_t i = 0; i < value.len; i++) {
                if (!isdigit((unsigned char)value.ptr[i])) return fail(p, 400, "invalid Content-Length");
                n = n * 10 + (uint64_t)(value.ptr[i] - '0');
            }
            if (have_length && n != p->content_length) return fail(p, 400, "two different Content-Length headers");
            p->content_length = n;
            have_length = 1;
        } else if (http_str_is(name, "transfer-encoding")) {
            return fail(p, 501, "Transfer-Encoding is not supported: send the body with a Content-Length");
        } else if (http_str_is(name, "connection")) {
            if (list_has(value, "close")) saw_close = 1;
            if (list_has(value, "keep-alive")) saw_keep = 1;
        } else if (http_str_is(name, "expect")) {
            if (!http_str_is(value, "100-continue")) return fail(p, 417, "the only expectation supported is 100-continue");
            p->expect_continue = p->minor == 1;
        } else if (http_str_is(name, "authorization")) {
            p->authorization = value;
        } else if (http_str_is(name, "if-none-match")) {
            p->if_none_match = value;
        } else if (http_str_is(name, "content-type")) {
            if (p->content_type.ptr) return fail(p, 400, "two Content-Type headers");
            p->content_type = value;
        } else if (http_str_is(name, "host")) {
            /* Two would let a check and a proxy read different names. */
            if (p->host.ptr) return fail(p, 400, "two Host headers");
            p->host = value;
        } else if (http_str_is(name, "origin")) {
            if (p->origin.ptr) return fail(p, 400, "two Origin headers");
            p->origin = value;
        }
        s = eol + 1;
    }
    /* HTTP/1.1 keeps the connection unless told to close; 1.0 closes it
     * unless told to keep it. */
    p->keep_alive = p->minor == 1 ? !saw_close : saw_keep && !saw_close;
    if (p->content_length > p->lim.max_body) return fail(p, 413, "request body larger than the server's limit (max-request)");
    return HTTP_OK;
}

http_status http_parse(http_parser *p, const char *buf, size_t len, size_t *consumed)
{
    /* Empty lines before the request line are skipped (RFC 9112 2.2). */
    size_t lead = 0;
    while (lead < len && (buf[lead] == '\r' || buf[lead] == '\n')) {
        if (lead >= p->lim.max_head) return fail(p, 431, "request head larger than the server's limit");
        lead++;
    }
    const char *b = buf + lead;
    size_t n = len - lead;
    if (p->head_len == 0) {
        /* Find the empty line: "\n\n" or "\n\r\n". */
        size_t i = p->scanned;
        size_t head = 0;
        for (; i < n; i++) {
            if (b[i] != '\n') continue;
            if (i + 1 < n && b[i + 1] == '\n') {
                head = i + 2;
                break;
            }
            if (i + 2 < n && b[i + 1] == '\r' && b[i + 2] == '\n') {
                head = i + 3;
                break;
            }
            if (i + 2 >= n) break; /* look at this newline again once more bytes come */
        }
        if (!head) {
            p->scanned = i;
            if (n > p->lim.max_head) return fail(p, 431, "request head larger than the server's limit");
            return HTTP_NEED_MORE;
        }
        if (head > p->lim.max_head) return fail(p, 431, "request head larger than the server's limit");
        if (parse_head(p, b, head) != HTTP_OK) return HTTP_ERROR;
        p->head_len = head;
    }
    if (n - p->head_len < p->content_length) {
        /* A client that sent Expect: 100-continue waits for a go-ahead. */
        if (p->expect_continue && !p->continue_done) p->continue_due = 1;
        return HTTP_NEED_MORE;
    }
    /* Complete: parse the head again for pointers into this buffer. */
    p->continue_due = 0;
    if (parse_head(p, b, p->head_len) != HTTP_OK) return HTTP_ERROR;
    p->body = (http_str){b + p->head_len, (size_t)p->content_length};
    *consumed = lead + p->head_len + (size_t)p->content_length;
    return HTTP_OK;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void http_head(resp_out *o, int status, const char *content_type, size_t body_len, int keep_alive,
               const char *extra)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char h[512];
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d %s\r\nServer: starling\r\nDate: %s\r\n", status, http_reason(status), date);
    resp_raw(o, h, (size_t)n);
    if (content_type) {
        n = snprintf(h, sizeof h, "Content-Type: %s\r\n", content_type);
        resp_raw(o, h, (size_t)n);
    }
    if (status != 204) { /* RFC 9110 8.6: a 204 has no Content-Length */
        n = snprintf(h, sizeof h, "Content-Length: %zu\r\n", body_len);
        resp_raw(o, h, (size_t)n);
    }
    n = snprintf(h, sizeof h, "X-Content-Type-Options: nosniff\r\n%s", keep_alive ? "" : "Connection: close\r\n");
    resp_raw(o, h, (size_t)n);
    if (extra) resp_raw(o, extra, strlen(extra));
    resp_raw(o, "\r\n", 2);
}

void http_continue(resp_out *o) { resp_raw(o, "HTTP/1.1 100 Continue\r\n\r\n", 25); }
