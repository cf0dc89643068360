/* resp: the Redis protocol (RESP2), requests in and replies out, with no I/O.
 *
 * Requests: arrays of bulk strings (`*2\r\n$4\r\nPING\r\n...`) and inline
 * commands (`PING hello\r\n`, with Redis's quoting). The parser is
 * incremental and bounded: it is handed the bytes of the current request
 * received so far, returns RESP_NEED_MORE until the request is complete,
 * RESP_OK with the arguments, or RESP_ERROR with a message of its own for each
 * kind of malformed input. It checks every length against the limits before
 * using it, so no input can make it read past the buffer or ask for more
 * memory than the limits allow. After a RESP_ERROR the caller replies with
 * the message and closes the connection: the stream cannot be trusted again.
 *
 * Replies: resp_out is a growable output buffer with a hard limit; the
 * writers append one value each: RESP2, or with proto 3 (a connection that
 * sent HELLO 3) RESP3's own types where RESP3 has them: maps, doubles for
 * scores, `_` for nil. Everything else is the same in both.
 *
 * Owns: the parser's argument table (grown up to max_args, then reused), the
 * output buffer. Never: reads or writes a file descriptor, blocks, prints.
 */
#ifndef STARLING_RESP_H
#define STARLING_RESP_H

#include <stddef.h>
#include <stdint.h>

typedef enum { RESP_NEED_MORE = 0, RESP_OK = 1, RESP_ERROR = -1 } resp_status;

typedef struct {
    uint32_t max_args;   /* arguments in one request */
    uint64_t max_request; /* bytes in one request, framing included; also bounds any bulk length */
    uint32_t max_inline; /* bytes in one inline command line */
} resp_limits;

/* Defaults: 65536 arguments, 1 MiB per request, 64 KiB per inline line. */
void resp_limits_default(resp_limits *l);

typedef struct {
    const char *ptr; /* NUL-terminated (the parser writes the NUL into the buffer) */
    size_t len;      /* binary-safe length */
} resp_arg;

typedef struct {
    resp_limits lim;
    /* The request in progress: bytes already scanned, what comes next. */
    size_t pos;
    int64_t nargs;    /* arguments announced by the array header; -1 before it */
    int64_t bulk_len; /* length of the bulk string being read; -1 before its header */
    uint32_t argc;
    size_t *arg_off; /* offsets of the arguments from the start of the request */
    size_t *arg_len;
    uint32_t argcap;
    resp_arg *argv; /* filled on RESP_OK, argc entries */
    const char *error; /* set on RESP_ERROR: a static message */
    int cross_protocol; /* ... and the request was an HTTP request line or a Host: header:
                           the connection is closed without a reply */
} resp_parser;

void resp_parser_init(resp_parser *p, const resp_limits *lim);
void resp_parser_free(resp_parser *p);

/* Argument-table entries a parser keeps between requests: past this, reset
 * frees the table. */
#define RESP_KEEP_ARGS 256

/* Forgets the request in progress (call after RESP_OK, before the next);
 * frees an argument table grown past RESP_KEEP_ARGS. */
void resp_parser_reset(resp_parser *p);

/* Parses one request from buf[0..len), the bytes from the start of the
 * current request. buf must keep the bytes already seen between calls (it may
 * move: the parser keeps offsets, not pointers). The parser writes into buf:
 * a NUL after each argument and, for inline commands, the unquoted text.
 *
 * RESP_OK: p->argc, p->argv are set (pointers into buf, valid until buf
 * changes) and *consumed is the request's length in bytes. argc may be 0 for
 * an empty request (`*0\r\n`, a blank line), which the caller skips.
 * RESP_NEED_MORE: call again with the same bytes and more after them.
 * RESP_ERROR: p->error says what was wrong. Allocates only to grow the
 * argument table (at most max_args entries); running out of memory is a
 * RESP_ERROR. */
resp_status resp_parse(resp_parser *p, char *buf, size_t len, size_t *consumed);

/* ---- replies ------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
    size_t limit;   /* 0 = none; growing past it sets overflow */
    int overflow;   /* a write was dropped: out of memory or over the limit */
    int proto;      /* 3: RESP3 types (maps, doubles, nulls) after HELLO 3; otherwise RESP2 */
} resp_out;

void resp_out_init(resp_out *o, size_t limit);
void resp_out_free(resp_out *o);

/* Makes room for n more bytes; 0 on success, -1 (and overflow set) when it
 * cannot. Allocates only when the buffer must grow. */
int resp_out_reserve(resp_out *o, size_t n);

/* Drops the first n bytes (after they were written to the socket). */
void resp_out_consume(resp_out *o, size_t n);

/* Appends raw bytes (an already encoded reply). */
void resp_raw(resp_out *o, const void *p, size_t n);

/* One RESP2 value each. resp_error adds the `-` and the CRLF; the message
 * should start with an upper-case error code (ERR, WRONGTYPE, NOAUTH ...);
 * CR and LF in it are replaced by spaces. */
void resp_simple(resp_out *o, const char *s);
void resp_error(resp_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void resp_int(resp_out *o, int64_t v);
void resp_bulk(resp_out *o, const void *p, size_t n);
void resp_bulk_str(resp_out *o, const char *s);
void resp_null(resp_out *o);            /* $-1 */
void resp_null_array(resp_out *o);      /* *-1 */
void resp_array(resp_out *o, int64_t n); /* the header; n values follow */
/* A map of n pairs: `%n` in RESP3, a flat array of 2n values in RESP2. */
void resp_map(resp_out *o, int64_t n);
/* A double: `,` in RESP3, a bulk string of %.17g in RESP2. */
void resp_double(resp_out *o, double v);

/* A float score in the shortest decimal form that reads back to the same
 * float: a bulk string (as Redis sends sorted-set scores in RESP2), or a
 * RESP3 double with proto 3. */
void resp_score(resp_out *o, float v);
/* The same text, into buf (at least 32 bytes); returns its length. */
int resp_format_score(char *buf, float v);
/* The text of (negative ? -1 : 1) x m x 10^(e - digits(m) + 1), m in
 * [1, 10^9) with e the exponent of its leading digit, as resp_format_score
 * lays it out (trailing zeros dropped, an exponent outside [-5, 17)), into buf
 * (at least 32 bytes); returns its length. */
int resp_format_decimal(char *buf, int negative, int64_t m, int e);

#endif
