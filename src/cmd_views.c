/* cmd_views: the sorted-set views: u:<user> (segments by affinity) and
 * s:<segment> (users), answered as Redis's t_zset.c answers a sorted set: the
 * same reply shapes, errors in the same order of checks, ties ordered by
 * member name.
 */
#include <math.h>
#include <stdlib.h>

#include "cmd.h"

/* ---- sorted-set views -------------------------------------------------------------- */

typedef struct {
    char kind; /* 'u', 's', or 0 for a key that does not exist */
    uint32_t idx;
    user_view u;
} view_key;

static view_key parse_key(st_ctx *c, const resp_arg *k)
{
    view_key v = {0};
    if (k->len < 2 || k->ptr[1] != ':') return v;
    if (k->ptr[0] == 'u') {
        v.u = st_cmd_find_user(c, k->ptr + 2, k->len - 2);
        if (v.u.known) v.kind = 'u';
    } else if (k->ptr[0] == 's') {
        resp_arg name = {k->ptr + 2, k->len - 2};
        v.idx = st_cmd_find_any_segment(c->model, &name);
        if (v.idx != ST_NOT_FOUND) v.kind = 's';
    }
    return v;
}

/* Members of the view: segments, or every user (the model's and online). */
static uint64_t view_card(st_ctx *c, const view_key *k)
{
    return k->kind == 'u' ? c->model->m.segments : k->kind == 's' ? st_overlay_users(c->model->ov) : 0;
}

static const char *segment_name(const void *ctx, uint32_t i, size_t *len)
{
    return st_idmap_name(ctx, i, len);
}

/* Every member's score into scratch->scores, NaN for positions that are no
 * member; returns the number of positions, or -1 (replied). s: keys run on
 * the heavy pool (HEAVY_SKEY), which may allocate for the scan. */
static int64_t view_scores(st_ctx *c, const view_key *k)
{
    const st_served *sv = c->model;
    if (k->kind == 'u') {
        st_score_blend(&sv->m, sv->prior, k->u.x, c->scratch->scores);
        return sv->m.segments;
    }
    return st_cmd_scan_segment_users(c, k->idx);
}

static uint32_t view_topk(st_ctx *c, const view_key *k, uint32_t n, uint32_t want, int rev)
{
    st_scratch *sc = c->scratch;
    if (k->kind == 'u')
        return st_topk_members(sc->scores, n, want, rev, segment_name, &c->model->m.segment_ids, sc->idx, sc->top);
    return st_topk_members(sc->scores, n, want, rev, st_cmd_scan_user_name, c, sc->idx, sc->top);
}

/* The score of one member, or 0 when the member is not in the view. */
static int view_score(st_ctx *c, const view_key *k, const resp_arg *member, float *score)
{
    const st_served *sv = c->model;
    const st_model *m = &sv->m;
    if (k->kind == 'u') {
        uint32_t s = st_idmap_find(&m->segment_ids, member->ptr, member->len);
        if (s == ST_NOT_FOUND) return 0;
        *score = st_score_one(m, sv->prior, k->u.x, s);
        return 1;
    }
    if (k->kind == 's') {
        user_view u = st_cmd_find_user(c, member->ptr, member->len);
        if (!u.known) return 0;
        *score = st_cmd_segment_score(c, u.x, k->idx);
        return 1;
    }
    return 0;
}

/* A score bound as Redis parses it: "(x" is exclusive, inf and -inf work. */
typedef struct {
    double min, max;
    int minex, maxex;
} score_range;

static int parse_bound(const resp_arg *a, double *v, int *ex)
{
    const char *p = a->ptr;
    *ex = 0;
    if (*p == '(') {
        *ex = 1;
        p++;
    }
    /* strtod's grammar, as Redis uses it: "(" alone is an exclusive 0. */
    char *end;
    double d = strtod(p, &end);
    if (end != a->ptr + a->len || isnan(d)) return -1;
    *v = d;
    return 0;
}

/* Compares in float: a bound copied from a reply (the shortest text that
 * reads back as the score's float) then selects exactly that score, as the
 * same text does in Redis, which stores the text's double. */
/* Parses a [min, max] pair; replies Redis's error and returns -1. */
static int parse_range(st_ctx *c, const resp_arg *lo, const resp_arg *hi, score_range *r)
{
    if (parse_bound(lo, &r->min, &r->minex) == 0 && parse_bound(hi, &r->max, &r->maxex) == 0) return 0;
    resp_error(c->out, "ERR min or max is not a float");
    return -1;
}

static int in_range(const score_range *r, float v)
{
    float lo = (float)r->min, hi = (float)r->max;
    if (r->minex ? !(v > lo) : !(v >= lo)) return 0;
    if (r->maxex ? !(v < hi) : !(v <= hi)) return 0;
    return 1;
}

/* Replies members idx[from..to) with their scores when withscores. */
static void reply_members(st_ctx *c, const view_key *k, const uint32_t *idx, const float *top, uint32_t from,
                          uint32_t to, int withscores)
{
    /* RESP3, as Redis 7: WITHSCORES gives [member, score] pairs. */
    int pairs = withscores && c->out->proto == 3;
    resp_array(c->out, (int64_t)(to - from) * (withscores && !pairs ? 2 : 1));
    for (uint32_t i = from; i < to; i++) {
        size_t n;
        const char *name =
            k->kind == 'u' ? st_idmap_name(&c->model->m.segment_ids, idx[i], &n) : st_cmd_scan_user_name(c, idx[i], &n);
        if (pairs) resp_array(c->out, 2);
        resp_bulk(c->out, name, n);
        if (withscores) resp_score(c->out, top[i]);
    }
}

static int too_many(st_ctx *c, uint64_t want)
{
    if (want <= c->cfg->max_count) return 0;
    resp_error(c->out, "ERR the range holds %llu members, more than one reply may (%llu, --max-count)",
               (unsigned long long)want, (unsigned long long)c->cfg->max_count);
    return 1;
}

enum { BY_RANK, BY_SCORE, BY_LEX };

/* The shared body of ZRANGE, ZREVRANGE, ZRANGEBYSCORE and ZREVRANGEBYSCORE:
 * key at argv[1], the two range arguments at argv[2..3], options from
 * argv[4]. `by` and `rev` come from the command, or from ZRANGE's options.
 * The users of s:<segment> are an audience: the privacy floor applies to
 * all of them (by rank) or to those in the score range. */
static void zrange_generic(st_ctx *c, int by, int rev, int zrange_syntax)
{
    int withscores = 0, have_limit = 0;
    int64_t offset = 0, limit = -1;
    for (int i = 4; i < c->argc; i++) {
        const resp_arg *a = &c->argv[i];
        int left = c->argc - i - 1;
        if (st_cmd_is_word(a, "WITHSCORES")) withscores = 1;
        else if (st_cmd_is_word(a, "LIMIT") && left >= 2) {
            if (st_cmd_arg_i64(c, &c->argv[i + 1], &offset) != 0 || st_cmd_arg_i64(c, &c->argv[i + 2], &limit) != 0) return;
            have_limit = 1;
            i += 2;
        } else if (zrange_syntax && st_cmd_is_word(a, "BYSCORE")) by = BY_SCORE;
        else if (zrange_syntax && st_cmd_is_word(a, "BYLEX")) by = BY_LEX;
        else if (zrange_syntax && st_cmd_is_word(a, "REV")) rev = 1;
        else {
            resp_error(c->out, "ERR syntax error");
            return;
        }
    }
    if (have_limit && by == BY_RANK) {
        resp_error(c->out, "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
        return;
    }
    if (withscores && by == BY_LEX) {
        resp_error(c->out, "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return;
    }
    if (by == BY_LEX) {
        resp_error(c->out, "ERR BYLEX is not supported: these sorted sets are ordered by score");
        return;
    }
    int64_t start = 0, stop = 0;
    score_range r = {0};
    if (by == BY_RANK) {
        if (st_cmd_arg_i64(c, &c->argv[2], &start) != 0 || st_cmd_arg_i64(c, &c->argv[3], &stop) != 0) return;
    } else {
        /* Reversed score ranges are written max first. */
        if (parse_range(c, rev ? &c->argv[3] : &c->argv[2], rev ? &c->argv[2] : &c->argv[3], &r) != 0) return;
    }
    view_key k = parse_key(c, &c->argv[1]);
    if (!k.kind) {
        resp_array(c->out, 0);
        return;
    }
    st_scratch *sc = c->scratch;
    int64_t n = view_scores(c, &k);
    if (n < 0) return;
    float *scores = sc->scores;
    uint32_t npos = (uint32_t)n;
    if (by == BY_RANK) {
        int64_t card = (int64_t)st_cmd_select_min(scores, npos, -INFINITY);
        if (k.kind == 's' && st_cmd_below_floor(c, (uint64_t)card)) return;
        /* Redis's index arithmetic, exactly. */
        if (start < 0) start += card;
        if (stop < 0) stop += card;
        if (start < 0) start = 0;
        if (start > stop || start >= card) {
            resp_array(c->out, 0);
            return;
        }
        if (stop >= card) stop = card - 1;
        if (too_many(c, (uint64_t)(stop - start + 1))) return;
        uint32_t got = view_topk(c, &k, npos, (uint32_t)stop + 1, rev);
        reply_members(c, &k, sc->idx, sc->top, (uint32_t)start, got, withscores);
        return;
    }
    uint32_t matching = 0;
    for (uint32_t i = 0; i < npos; i++) {
        if (in_range(&r, scores[i])) matching++;
        else scores[i] = NAN;
    }
    if (k.kind == 's' && st_cmd_below_floor(c, matching)) return;
    /* A negative offset gives nothing and a negative count everything, as
     * in Redis. */
    if (offset < 0 || limit == 0 || (uint64_t)offset >= matching) {
        resp_array(c->out, 0);
        return;
    }
    uint64_t want = matching;
    if (limit > 0 && (uint64_t)offset + (uint64_t)limit < want) want = (uint64_t)offset + (uint64_t)limit;
    if (too_many(c, want - (uint64_t)offset)) return;
    uint32_t got = view_topk(c, &k, npos, (uint32_t)want, rev);
    reply_members(c, &k, sc->idx, sc->top, (uint32_t)offset, got, withscores);
}

void cmd_zrange(st_ctx *c) { zrange_generic(c, BY_RANK, 0, 1); }

void cmd_zrevrange(st_ctx *c) { zrange_generic(c, BY_RANK, 1, 0); }

void cmd_zrangebyscore(st_ctx *c) { zrange_generic(c, BY_SCORE, 0, 0); }

void cmd_zrevrangebyscore(st_ctx *c) { zrange_generic(c, BY_SCORE, 1, 0); }

void cmd_zscore(st_ctx *c)
{
    view_key k = parse_key(c, &c->argv[1]);
    float s;
    if (k.kind && view_score(c, &k, &c->argv[2], &s)) resp_score(c->out, s);
    else resp_null(c->out);
}

void cmd_zmscore(st_ctx *c)
{
    view_key k = parse_key(c, &c->argv[1]);
    resp_array(c->out, c->argc - 2);
    for (int i = 2; i < c->argc; i++) {
        float s;
        if (k.kind && view_score(c, &k, &c->argv[i], &s)) resp_score(c->out, s);
        else resp_null(c->out);
    }
}

void cmd_zcount(st_ctx *c)
{
    score_range r;
    if (parse_range(c, &c->argv[2], &c->argv[3], &r) != 0) return;
    view_key k = parse_key(c, &c->argv[1]);
    if (!k.kind) {
        resp_int(c->out, 0);
        return;
    }
    int64_t npos = view_scores(c, &k);
    if (npos < 0) return;
    int64_t n = 0;
    for (int64_t i = 0; i < npos; i++) n += in_range(&r, c->scratch->scores[i]);
    if (k.kind == 's' && st_cmd_below_floor(c, (uint64_t)n)) return;
    resp_int(c->out, n);
}

void cmd_zcard(st_ctx *c)
{
    view_key k = parse_key(c, &c->argv[1]);
    resp_int(c->out, (int64_t)view_card(c, &k));
}

void cmd_exists(st_ctx *c)
{
    int64_t n = 0;
    for (int i = 1; i < c->argc; i++) n += parse_key(c, &c->argv[i]).kind != 0;
    resp_int(c->out, n);
}

void cmd_type(st_ctx *c) { resp_simple(c->out, parse_key(c, &c->argv[1]).kind ? "zset" : "none"); }
