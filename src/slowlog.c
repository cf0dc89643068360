/* slowlog: a ring of the slowest commands' entries (slowlog.h).
 *
 * The ring holds pointers; an entry and its arguments are one allocation,
 * freed when the ring drops it (it is full, max-len shrank, or RESET).
 */
#include "slowlog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

void st_slowlog_init(st_slowlog *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
}

static void drop_oldest(st_slowlog *s)
{
    uint32_t oldest = (s->head + ST_SLOWLOG_CAP - s->len) % ST_SLOWLOG_CAP;
    st_free(s->ring[oldest]);
    s->ring[oldest] = NULL;
    s->len--;
}

static void clear(st_slowlog *s)
{
    while (s->len) drop_oldest(s);
    s->latest_ts = 0;
    s->latest_usec = s->max_usec = 0;
}

void st_slowlog_free(st_slowlog *s)
{
    clear(s);
    pthread_mutex_destroy(&s->lock);
}

/* One allocation: the entry, its argument pointers and lengths, the bytes. */
static st_slowlog_entry *make_entry(int argc, const resp_arg *argv)
{
    int keep = argc > ST_SLOWLOG_ARGS ? ST_SLOWLOG_ARGS : argc;
    size_t bytes = 0;
    for (int i = 0; i < keep; i++) bytes += (argv[i].len > ST_SLOWLOG_ARG_BYTES ? ST_SLOWLOG_ARG_BYTES + 32 : argv[i].len) + 1;
    bytes += 48; /* the "... (N more arguments)" marker */
    st_slowlog_entry *e = st_calloc(1, sizeof *e + (size_t)keep * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!e) return NULL;
    e->argv = (char **)(e + 1);
    e->lens = (size_t *)(e->argv + keep);
    char *p = (char *)(e->lens + keep);
    for (int i = 0; i < keep; i++) {
        e->argv[i] = p;
        if (i == ST_SLOWLOG_ARGS - 1 && argc > ST_SLOWLOG_ARGS) {
            e->lens[i] = (size_t)sprintf(p, "... (%d more arguments)", argc - ST_SLOWLOG_ARGS + 1);
        } else if (argv[i].len > ST_SLOWLOG_ARG_BYTES) {
            memcpy(p, argv[i].ptr, ST_SLOWLOG_ARG_BYTES);
            e->lens[i] = ST_SLOWLOG_ARG_BYTES +
                         (size_t)sprintf(p + ST_SLOWLOG_ARG_BYTES, "... (%zu more bytes)", argv[i].len - ST_SLOWLOG_ARG_BYTES);
        } else {
            memcpy(p, argv[i].ptr, argv[i].len);
            e->lens[i] = argv[i].len;
        }
        p += e->lens[i] + 1;
    }
    e->argc = keep;
    return e;
}

void st_slowlog_record(st_slowlog *s, double threshold, uint64_t max_len, uint64_t usec, int argc,
                       const resp_arg *argv, const char *addr, const char *name)
{
    if (threshold < 0 || (double)usec < threshold) return;
    st_slowlog_entry *e = max_len ? make_entry(argc, argv) : NULL;
    if (e) {
        e->usec = usec;
        e->ts = (int64_t)time(NULL);
        snprintf(e->addr, sizeof e->addr, "%s", addr);
        snprintf(e->name, sizeof e->name, "%s", name);
    }
    if (max_len > ST_SLOWLOG_CAP) max_len = ST_SLOWLOG_CAP;
    pthread_mutex_lock(&s->lock);
    s->latest_ts = (int64_t)time(NULL);
    s->latest_usec = usec;
    if (usec > s->max_usec) s->max_usec = usec;
    if (e) {
        e->id = s->next_id++;
        while (s->len >= max_len) drop_oldest(s);
        s->ring[s->head] = e;
        s->head = (s->head + 1) % ST_SLOWLOG_CAP;
        s->len++;
    }
    pthread_mutex_unlock(&s->lock);
}

void st_slowlog_reply(st_slowlog *s, int64_t n, resp_out *out)
{
    pthread_mutex_lock(&s->lock);
    uint32_t k = n < 0 || (uint64_t)n > s->len ? s->len : (uint32_t)n;
    resp_array(out, k);
    for (uint32_t i = 0; i < k; i++) {
        const st_slowlog_entry *e = s->ring[(s->head + 2 * ST_SLOWLOG_CAP - 1 - i) % ST_SLOWLOG_CAP];
        resp_array(out, 6);
        resp_int(out, (int64_t)e->id);
        resp_int(out, e->ts);
        resp_int(out, (int64_t)e->usec);
        resp_array(out, e->argc);
        for (int a = 0; a < e->argc; a++) resp_bulk(out, e->argv[a], e->lens[a]);
        resp_bulk_str(out, e->addr);
        resp_bulk_str(out, e->name);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t st_slowlog_len(st_slowlog *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->len;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void st_slowlog_reset(st_slowlog *s)
{
    pthread_mutex_lock(&s->lock);
    clear(s);
    pthread_mutex_unlock(&s->lock);
}

int st_slowlog_latest(st_slowlog *s, int64_t *ts, uint64_t *latest_usec, uint64_t *max_usec)
{
    pthread_mutex_lock(&s->lock);
    int any = s->latest_ts != 0;
    *ts = s->latest_ts;
    *latest_usec = s->latest_usec;
    *max_usec = s->max_usec;
    pthread_mutex_unlock(&s->lock);
    return any;
}
