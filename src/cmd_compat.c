/* cmd_compat: what Redis tools send beyond the targeting commands: TIME,
 * DBSIZE and SCAN over the sorted-set views (u:<user>, s:<segment>), and
 * the diagnostics SLOWLOG and LATENCY LATEST and RESET (from the slow log,
 * in Redis 7's layouts; LATENCY HISTOGRAM reads the command table's
 * statistics and lives in commands.c).
 *
 * The keyspace is what the views make exist: one u:<user> key per user
 * the server answers for (the model's users less the forgotten, plus the
 * users added online) and one s:<segment> key per segment of the model.
 * DBSIZE counts exactly the keys SCAN walks.
 *
 * SCAN's cursor is a position, not a hash-table bucket: the model's user
 * rows first, then the overlay's slots (users added online, in the order
 * they came: slots are never reused or reordered), then the model's
 * segments. Phase and position are packed as phase << 56 | position, so a
 * cursor stays valid while users are added online: every key that exists
 * for the whole scan is returned exactly once, a user added meanwhile is
 * returned if their slot lies ahead of the cursor, and a forgotten one is
 * skipped from then on. A MODEL RELOAD changes the rows, so a scan across
 * one may repeat or miss keys (redis-cli --scan and client libraries take
 * repeats in their stride; a new scan sees the new model).
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cmd.h"
#include "util.h"

void cmd_time(st_ctx *c)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char s[32], us[32];
    snprintf(s, sizeof s, "%lld", (long long)tv.tv_sec);
    snprintf(us, sizeof us, "%lld", (long long)tv.tv_usec);
    resp_array(c->out, 2);
    resp_bulk_str(c->out, s);
    resp_bulk_str(c->out, us);
}

void cmd_dbsize(st_ctx *c)
{
    resp_int(c->out, (int64_t)(st_overlay_users(c->model->ov) + c->model->m.segments));
}

enum { PH_ROWS = 0, PH_SLOTS = 1, PH_SEGMENTS = 2, PH_END = 3 };
#define CURSOR_SHIFT 56
#define CURSOR_POS ((UINT64_C(1) << CURSOR_SHIFT) - 1)
#define SCAN_KEY_MAX 1024 /* keys longer than this are matched on their first bytes only */

typedef struct {
    const char *id;
    uint32_t len;
    char kind; /* 'u' or 's' */
} scan_key;

typedef struct {
    const char *pattern; /* NULL = every key */
    int none;            /* TYPE other than zset */
    scan_key *keys;
    uint32_t n;
} scan_out;

static void scan_take(scan_out *o, char kind, const char *id, uint32_t len)
{
    if (o->none) return;
    if (o->pattern) {
        char key[SCAN_KEY_MAX + 3];
        uint32_t n = len > SCAN_KEY_MAX ? SCAN_KEY_MAX : len;
        key[0] = kind;
        key[1] = ':';
        memcpy(key + 2, id, n);
        key[n + 2] = '\0';
        if (fnmatch(o->pattern, key, 0) != 0) return;
    }
    o->keys[o->n++] = (scan_key){id, len, kind};
}

/* Visits one position of phase ph; 0 when the phase has no such position. */
static int scan_visit(st_ctx *c, int ph, uint64_t pos, scan_out *o)
{
    const st_model *m = &c->model->m;
    size_t len;
    if (ph == PH_ROWS) {
        if (pos >= m->users) return 0;
        const char *id = st_idmap_name(&m->user_ids, (uint32_t)pos, &len);
        if (st_cmd_find_user(c, id, len).known) scan_take(o, 'u', id, (uint32_t)len);
        return 1;
    }
    if (ph == PH_SLOTS) {
        const char *id;
        uint32_t ilen, model_u;
        int st = pos > UINT32_MAX ? -1 : st_overlay_slot(c->model->ov, (uint32_t)pos, &id, &ilen, &model_u);
        if (st < 0) return 0;
        /* A user the model has is visited with its row. */
        if (st == ST_OV_LIVE && model_u == ST_NOT_FOUND) scan_take(o, 'u', id, ilen);
        return 1;
    }
    if (pos >= m->segments) return 0;
    const char *id = st_idmap_name(&m->segment_ids, (uint32_t)pos, &len);
    scan_take(o, 's', id, (uint32_t)len);
    return 1;
}

static void bulk_key(resp_out *out, const scan_key *k)
{
    char head[32];
    char prefix[2] = {k->kind, ':'};
    int n = snprintf(head, sizeof head, "$%llu\r\n", (unsigned long long)k->len + 2);
    resp_raw(out, head, (size_t)n);
    resp_raw(out, prefix, 2);
    resp_raw(out, k->id, k->len);
    resp_raw(out, "\r\n", 2);
}

/* SCAN's options; replies the error and returns -1 on a bad one. */
static int scan_options(st_ctx *c, uint64_t *count, scan_out *o)
{
    for (int i = 2; i < c->argc; i += 2) {
        if (i + 1 >= c->argc) {
            resp_error(c->out, "ERR syntax error");
            return -1;
        }
        const resp_arg *v = &c->argv[i + 1];
        if (st_cmd_is_word(&c->argv[i], "COUNT")) {
            int64_t n;
            if (st_cmd_arg_i64(c, v, &n) != 0) return -1;
            if (n < 1) {
                resp_error(c->out, "ERR syntax error");
                return -1;
            }
            *count = (uint64_t)n;
        } else if (st_cmd_is_word(&c->argv[i], "MATCH")) {
            o->pattern = (v->len == 1 && v->ptr[0] == '*') ? NULL : v->ptr;
        } else if (st_cmd_is_word(&c->argv[i], "TYPE")) {
            o->none = !st_cmd_is_word(v, "zset");
        } else {
            resp_error(c->out, "ERR syntax error");
            return -1;
        }
    }
    return 0;
}

/* SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]: visits COUNT positions
 * (at most --max-count) from the cursor on; replies the next cursor (0 at
 * the end) and the keys among them that exist and match. */
void cmd_scan(st_ctx *c)
{
    char *end;
    const resp_arg *a = &c->argv[1];
    uint64_t cursor = strtoull(a->ptr, &end, 10);
    if (a->len == 0 || end != a->ptr + a->len || a->ptr[0] == '-') {
        resp_error(c->out, "ERR invalid cursor");
        return;
    }
    uint64_t count = 10;
    scan_out o = {0};
    if (scan_options(c, &count, &o) != 0) return;
    if (count > c->cfg->max_count) count = c->cfg->max_count;
    int ph = (int)(cursor >> CURSOR_SHIFT);
    uint64_t pos = cursor & CURSOR_POS;
    if (ph >= PH_END) ph = PH_END; /* a cursor from no scan of ours: nothing left */
    o.keys = st_malloc((size_t)(count ? count : 1) * sizeof *o.keys);
    if (!o.keys) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    for (uint64_t done = 0; done < count && ph < PH_END;) {
        if (scan_visit(c, ph, pos, &o)) {
            pos++;
            done++;
        } else {
            ph++;
            pos = 0;
        }
    }
    /* A phase that ended exactly here: look ahead so the last reply says 0. */
    while (ph < PH_END && !scan_visit(c, ph, pos, &(scan_out){.none = 1})) {
        ph++;
        pos = 0;
    }
    char next[32];
    snprintf(next, sizeof next, "%llu", ph >= PH_END ? 0ULL : (unsigned long long)((uint64_t)ph << CURSOR_SHIFT | pos));
    resp_array(c->out, 2);
    resp_bulk_str(c->out, next);
    resp_array(c->out, o.n);
    for (uint32_t i = 0; i < o.n; i++) bulk_key(c->out, &o.keys[i]);
    st_free(o.keys);
}

/* ---- SLOWLOG and LATENCY ------------------------------------------------------- */

/* SLOWLOG GET [n]: the n newest entries (10 by default, -1 for all), each
 * [id, unix time, microseconds, [args], client address, client name]. */
void cmd_slowlog_get(st_ctx *c)
{
    int64_t n = 10;
    if (c->argc > 3) {
        resp_error(c->out, "ERR wrong number of arguments for 'slowlog|get' command");
        return;
    }
    if (c->argc == 3 && (st_cmd_arg_i64(c, &c->argv[2], &n) != 0)) return;
    if (n < -1) {
        resp_error(c->out, "ERR count should be greater than or equal to -1");
        return;
    }
    if (c->slowlog) st_slowlog_reply(c->slowlog, n, c->out);
    else resp_array(c->out, 0);
}

void cmd_slowlog_len(st_ctx *c) { resp_int(c->out, c->slowlog ? (int64_t)st_slowlog_len(c->slowlog) : 0); }

void cmd_slowlog_reset(st_ctx *c)
{
    if (c->slowlog) st_slowlog_reset(c->slowlog);
    resp_simple(c->out, "OK");
}

/* LATENCY LATEST: one event, "command" (any command past
 * slowlog-log-slower-than): [name, unix time, latest ms, worst ms]. */
void cmd_latency_latest(st_ctx *c)
{
    int64_t ts;
    uint64_t latest, worst;
    if (!c->slowlog || !st_slowlog_latest(c->slowlog, &ts, &latest, &worst)) {
        resp_array(c->out, 0);
        return;
    }
    resp_array(c->out, 1);
    resp_array(c->out, 4);
    resp_bulk_str(c->out, "command");
    resp_int(c->out, ts);
    resp_int(c->out, (int64_t)(latest / 1000));
    resp_int(c->out, (int64_t)(worst / 1000));
}

void cmd_latency_reset(st_ctx *c)
{
    int64_t ts;
    uint64_t latest, worst;
    int had = c->slowlog && st_slowlog_latest(c->slowlog, &ts, &latest, &worst);
    if (had) st_slowlog_reset(c->slowlog);
    resp_int(c->out, had);
}
