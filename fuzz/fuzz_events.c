/* fuzz_events: the event-log reader, whole files (any bytes, gzip or not)
 * in stop and skip mode, byte ranges, and single lines with each separator. */
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "interactions.h"
#include "memfile.h"
#include "util.h"

static int count(const st_event *ev, void *ctx, char *err)
{
    (void)err;
    /* Touch what the reader hands out. */
    size_t *n = ctx;
    *n += ev->user_len + ev->segment_len + (ev->kind ? ev->kind_len : 0) + (ev->weight > 0) + (size_t)ev->has_ts;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[ST_ERRLEN];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    st_read_opts o;
    st_read_opts_default(&o);
    o.max_line = 4096;
    st_read_stats st;
    size_t n = 0;
    for (int skip = 0; skip < 2; skip++) {
        memset(&st, 0, sizeof st);
        o.skip_errors = skip;
        st_events_read(path, &o, count, &n, &st, err);
    }
    if (size > 2) {
        o.begin = data[0] % size;
        o.end = o.begin + data[1] % (size - o.begin + 1);
        memset(&st, 0, sizeof st);
        st_events_read(path, &o, count, &n, &st, err);
    }
    /* The whole pipeline into a matrix. */
    st_read_opts_default(&o);
    o.skip_errors = 1;
    o.max_line = 4096;
    st_weighting w;
    st_weighting_default(&w);
    st_interactions x;
    char *paths[1] = {path};
    memset(&st, 0, sizeof st);
    if (st_interactions_read(paths, 1, &o, &w, &x, &st, err) == 0) st_interactions_free(&x);
    close(fd);
    /* Lines parsed directly, with each separator. */
    char *line = malloc(size + 1);
    if (line) {
        static const char seps[3] = {',', '\t', ' '};
        for (int i = 0; i < 3; i++) {
            memcpy(line, data, size);
            line[size] = '\0';
            st_event ev;
            char why[200];
            st_events_parse_line(line, size, seps[i], &ev, why, sizeof why);
        }
        double t;
        st_parse_timestamp((const char *)data, size < 64 ? size : 64, &t);
        free(line);
    }
    return 0;
}
