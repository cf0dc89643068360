/* http: HTTP/1.1 requests in and response framing out, with no I/O.
 *
 * Requests: a request line, header lines and a body of Content-Length bytes
 * (RFC 9112). The parser is incremental and bounded like resp.c's: it is
 * handed the bytes of the current request received so far and returns
 * HTTP_NEED_MORE until the request is complete, HTTP_OK with the request, or
 * HTTP_ERROR with the HTTP status that fits (400, 413, 431, 501, 505) and a
 * message of its own for each kind of malformed input. The head (request
 * line and headers) is bounded by max_head bytes and max_headers lines; a
 * Content-Length over max_body is refused as soon as the head is read, before
 * any of the body is waited for. Transfer-Encoding (chunked bodies) is
 * refused: every client this API expects sends Content-Length. So are two
 * Host, Origin or Content-Type headers (httpguard.c decides on them). After an
 * HTTP_ERROR the caller answers with the status and closes the connection.
 *
 * Responses: http_head() writes a status line and the headers every response
 * carries into a resp_out, the growable byte buffer of resp.h.
 *
 * Owns: nothing but its state. Never: reads or writes a file descriptor,
 * allocates, blocks, prints.
 */
#ifndef STARLING_HTTP_H
#define STARLING_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "resp.h"

typedef enum { HTTP_NEED_MORE = 0, HTTP_OK = 1, HTTP_ERROR = -1 } http_status;

typedef struct {
    uint32_t max_head;    /* bytes of the request line and headers */
    uint32_t max_headers; /* header lines */
    uint64_t max_body;    /* bytes of the body */
} http_limits;

/* Defaults: 16 KiB of head, 100 header lines, 1 MiB of body. */
void http_limits_default(http_limits *l);

typedef struct {
    const char *ptr; /* into the request's bytes; not NUL-terminated */
    size_t len;
} http_str;

typedef struct {
    http_limits lim;
    /* The request in progress. */
    size_t scanned;   /* bytes already searched for the end of the head */
    size_t head_len;  /* 0 until the head is complete */
    int expect_continue; /* the head has Expect: 100-continue */
    int continue_due;    /* ... and the body is not all here: the caller sends http_continue
                            once, then sets continue_done */
    int continue_done;
    /* The request: set on HTTP_OK (pointers into the buffer given, valid
     * until it changes). */
    http_str method, target, path, query; /* path and query split at '?', still percent-encoded */
    http_str authorization, if_none_match, content_type;
    http_str host, origin; /* ptr NULL when the header is absent (httpguard.h checks them) */
    int minor;     /* HTTP/1.minor: 0 or 1 */
    int keep_alive;
    uint64_t content_length;
    http_str body;
    /* Set on HTTP_ERROR. */
    int error_status;
    const char *error; /* a static message */
} http_parser;

void http_parser_init(http_parser *p, const http_limits *lim);

/* Forgets the request in progress (call after HTTP_OK, before the next). */
void http_parser_reset(http_parser *p);

/* Parses one request from buf[0..len), the bytes from the start of the
 * current request (it may move between calls; the parser keeps no pointer
 * into it until HTTP_OK). HTTP_OK: the request's fields are set and
 * *consumed is its length, body included. HTTP_NEED_MORE: call again with
 * the same bytes and more after them. HTTP_ERROR: error_status and error
 * say what was wrong. Empty lines before a request line are skipped (and
 * counted in *consumed). */
http_status http_parse(http_parser *p, const char *buf, size_t len, size_t *consumed);

/* The reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *http_reason(int status);

/* Writes the status line and headers of a response whose body is body_len
 * bytes: Content-Type (when not NULL), Content-Length (not for a 204), Date, Connection
 * (close unless keep_alive), X-Content-Type-Options, and `extra` (complete
 * "Name: value\r\n" lines, or NULL), then the blank line. */
void http_head(resp_out *o, int status, const char *content_type, size_t body_len, int keep_alive,
               const char *extra);

/* The interim response a client waiting on Expect: 100-continue needs. */
void http_continue(resp_out *o);

/* Case-insensitive comparison of s with the NUL-terminated word w. */
int http_str_is(http_str s, const char *w);

#endif
