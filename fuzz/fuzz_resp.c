/* fuzz_resp: the RESP request parser, as the server drives it.
 *
 * The input is a byte stream from a client. It is parsed request by
 * request, as server.c does, once whole and once fed in pieces (the piece
 * sizes come from the input itself), with small limits so that the limit
 * paths are reached too. Both feedings must agree, every argument must lie
 * inside the buffer and be NUL-terminated, and each reply must encode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

typedef struct {
    int status;        /* the last status: RESP_OK when the stream ran out cleanly */
    uint32_t requests; /* complete requests parsed */
    uint64_t argbytes; /* sum of argument lengths */
} outcome;

/* Parses data[0..size) handing the parser at most `step(i)` new bytes at a
 * time (0 = everything at once). */
static outcome run(const uint8_t *data, size_t size, const uint8_t *steps, size_t nsteps)
{
    resp_limits lim = {.max_args = 64, .max_request = 4096, .max_inline = 1024};
    resp_parser p;
    resp_parser_init(&p, &lim);
    resp_out out;
    resp_out_init(&out, 1 << 16);
    char *buf = malloc(size + 1);
    outcome o = {RESP_OK, 0, 0};
    size_t have = 0, start = 0, fed = 0;
    while (start < size) {
        size_t step = nsteps ? 1 + steps[fed % nsteps] % 64 : size;
        fed++;
        size_t more = size - have < step ? size - have : step;
        memcpy(buf + have, data + have, more);
        have += more;
        size_t used = 0;
        resp_status st = resp_parse(&p, buf + start, have - start, &used);
        while (st == RESP_OK) {
            if (used == 0 || used > have - start) abort();
            for (uint32_t i = 0; i < p.argc; i++) {
                const char *a = p.argv[i].ptr;
                if (a < buf + start || a + p.argv[i].len > buf + start + used || a[p.argv[i].len] != '\0') abort();
                o.argbytes += p.argv[i].len;
                resp_bulk(&out, a, p.argv[i].len);
            }
            o.requests++;
            start += used;
            resp_parser_reset(&p);
            out.len = 0;
            st = start < have ? resp_parse(&p, buf + start, have - start, &used) : RESP_NEED_MORE;
        }
        if (st == RESP_ERROR) {
            if (!p.error) abort();
            resp_error(&out, "ERR %s", p.error);
            o.status = RESP_ERROR;
            break;
        }
        o.status = RESP_NEED_MORE;
        if (have == size) break;
    }
    if (o.status != RESP_ERROR && start == size) o.status = RESP_OK;
    free(buf);
    resp_out_free(&out);
    resp_parser_free(&p);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    outcome whole = run(data, size, NULL, 0);
    outcome pieces = run(data, size, data, size < 16 ? size : 16);
    /* Fed in pieces or at once, a stream parses the same way. */
    if (whole.status != pieces.status || whole.requests != pieces.requests || whole.argbytes != pieces.argbytes)
        abort();
    return 0;
}
