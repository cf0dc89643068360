/* cmd_scan: scans: AUDIENCE, LOOKALIKE and REACH, which score every user on
 * the heavy pool (the model's rows, less those the overlay hides, plus the
 * overlay's users), and the privacy floors (privacy.c) every disclosure of an
 * audience passes. The three select or count in one pass split across
 * threads (scan.c); the s: views still score every user into the scratch
 * (st_cmd_scan_segment_users) and rank them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann.h"
#include "cmd.h"
#include "lookalike.h"
#include "privacy.h"
#include "scan.h"
#include "util.h"

/* ---- scans over every user ------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Copies the overlay into the thread's view and makes the scratch hold a
 * score per user (the model's rows, then the overlay's users) plus a
 * query vector. Returns the number of scan positions, or -1 (replied). Heavy
 * pool only: it allocates when the overlay grew. */
static int64_t scan_users(st_ctx *c)
{
    const st_model *m = &c->model->m;
    st_scratch *sc = c->scratch;
    if (st_overlay_snapshot(c->model->ov, &sc->view) != 0 ||
        st_scratch_rows(sc, (uint64_t)m->users + sc->view.n + m->k) != 0) {
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    return (int64_t)m->users + sc->view.n;
}

/* NaN for the model rows the overlay hides (changed or forgotten users). */
static void hide_rows(st_ctx *c, float *scores)
{
    const st_overlay_view *v = &c->scratch->view;
    if (!v->hidden) return;
    for (uint32_t u = 0; u < v->m; u++)
        if (v->hidden[u]) scores[u] = NAN;
}

/* Every user's blended score for segment s into scratch->scores (NaN for
 * positions that are no user); the count of positions, or -1 (replied). */
int64_t st_cmd_scan_segment_users(st_ctx *c, uint32_t s)
{
    const st_served *sv = c->model;
    const st_model *m = &sv->m;
    int64_t n = scan_users(c);
    if (n < 0) return -1;
    st_scratch *sc = c->scratch;
    if (s < m->segments) st_score_segment_users(m, sv->prior, s, sc->scores);
    else st_cmd_added_segment_users(c, s, sc->scores);
    hide_rows(c, sc->scores);
    const st_overlay_view *v = &sc->view;
    for (uint32_t i = 0; i < v->n; i++) sc->scores[m->users + i] = st_cmd_segment_score(c, v->X + (size_t)i * m->k, s);
    return n;
}

/* Turns the scores under min into NaN; returns how many users are left. */
uint64_t st_cmd_select_min(float *scores, uint64_t n, double min)
{
    uint64_t left = 0;
    float fmin = (float)min;
    int all = isinf(min) && min < 0;
    for (uint64_t i = 0; i < n; i++) {
        if (isnan(scores[i])) continue;
        if (all || scores[i] >= fmin) left++;
        else scores[i] = NAN;
    }
    return left;
}

/* The privacy floor on audiences: replies the error and returns 1 when
 * fewer than --min-audience users are selected. The count itself is not
 * disclosed: repeated queries could otherwise single users out. */
int st_cmd_below_floor(st_ctx *c, uint64_t users)
{
    char msg[256];
    if (st_privacy_audience(users, c->cfg->min_audience, msg, sizeof msg) == 0) return 0;
    resp_error(c->out, "ERR %s", msg);
    return 1;
}

/* The approximate index when this request uses it: asked for (how > 0:
 * APPROX) or the server's default (--approx on) unless refused (how < 0:
 * EXACT); NULL for the exact scan, also while the index is being built or,
 * by default, when its budget reads over a quarter of the users (counted
 * as fallbacks). */
static const st_ann *approx_index(st_ctx *c, int how)
{
    int mode = st_ann_mode();
    if (how < 0 || mode == ST_ANN_OFF || (how == 0 && mode != ST_ANN_ON)) {
        if (how > 0) atomic_fetch_add_explicit(&c->model->approx_fallbacks, 1, memory_order_relaxed);
        return NULL;
    }
    const st_ann *a = atomic_load(&c->model->ann);
    st_ann_stats st;
    if (a) st_ann_get_stats(a, &st);
    /* Under --approx on, a budget over a quarter of the users (factors
     * without clusters, as random ones) leaves the scans to the exact path,
     * which is then faster on every scan thread; APPROX itself is obeyed. */
    if (!a || (how == 0 && 4 * st.probe_rows > st.users)) {
        atomic_fetch_add_explicit(&c->model->approx_fallbacks, 1, memory_order_relaxed);
        return NULL;
    }
    return a;
}

/* The best `want` from the index into scratch idx/top: 0 answered, 1 when
 * the exact scan must answer instead because the users the index scored do
 * not show the privacy floor met (with count: fewer than --min-audience at
 * least min; without: fewer selected), -1 (replied). The exact scan then
 * decides, so the floor is never weaker than without the index. */
static int approx_best(st_ctx *c, const st_ann *a, const st_scan_query *q, st_scan_result *res)
{
    st_ann_result ar;
    if (st_ann_best(a, &c->model->m, q, 0, c->scratch->idx, c->scratch->top, &ar) != 0) {
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    if ((q->count ? ar.matching : ar.n) < c->cfg->min_audience) {
        atomic_fetch_add_explicit(&c->model->approx_fallbacks, 1, memory_order_relaxed);
        return 1;
    }
    atomic_fetch_add_explicit(&c->model->approx_queries, 1, memory_order_relaxed);
    if (ar.exact) atomic_fetch_add_explicit(&c->model->approx_exact, 1, memory_order_relaxed);
    memset(res, 0, sizeof *res);
    res->n = ar.n;
    res->matching = ar.matching;
    return 0;
}

/* One pass over every user (scan.c) for the query x + add, the overlay's
 * view taken by scan_users: the best `want` into scratch idx/top, and with
 * count the users scoring at least min; or, with the index a (approx_index),
 * its probe of the lists. 0, or -1 (replied). */
static int scan_best(st_ctx *c, const float *x, float add, double min, uint32_t want, int count,
                     const uint32_t *exclude, uint64_t nexclude, const st_ann *a, st_scan_result *res)
{
    const st_overlay_view *v = &c->scratch->view;
    st_scan_query q = {.x = x, .add = add, .min = (float)min, .want = want, .count = count, .skip = v->hidden,
                       .exclude = exclude, .nexclude = nexclude, .extra = v->X, .nextra = v->n};
    int rc = a ? approx_best(c, a, &q, res) : 1;
    if (rc <= 0) return rc;
    if (st_scan_best(&c->model->m, &q, c->scratch->idx, c->scratch->top, res) == 0) return 0;
    resp_error(c->out, "ERR out of memory");
    return -1;
}

/* APPROX (1) or EXACT (-1) at argv[i]; 0 for any other word. */
static int approx_word(const st_ctx *c, int i)
{
    if (i >= c->argc) return 0;
    return st_cmd_is_word(&c->argv[i], "APPROX") ? 1 : st_cmd_is_word(&c->argv[i], "EXACT") ? -1 : 0;
}

/* The query of segment s: its factors, and its blend w q[s] to add. */
static const float *segment_query(st_ctx *c, uint32_t s, float *add)
{
    return st_cmd_segment_vector(c, s, c->scratch->ux, add);
}

static void reply_user_pairs(st_ctx *c, const uint32_t *idx, const float *top, uint32_t n)
{
    resp_array(c->out, 2 * (int64_t)n);
    for (uint32_t i = 0; i < n; i++) {
        st_cmd_bulk_user(c, idx[i]);
        resp_score(c->out, top[i]);
    }
}

void cmd_audience(st_ctx *c)
{
    uint32_t s, count = 0;
    int have_count = 0, how = 0;
    double min = -INFINITY;
    if (st_cmd_need_any_segment(c, &c->argv[1], &s) != 0) return;
    for (int i = 2; i < c->argc;) {
        if (approx_word(c, i)) { /* a word alone; the others come in pairs */
            how = approx_word(c, i++);
            continue;
        }
        if (i + 1 >= c->argc) {
            resp_error(c->out, "ERR syntax error: AUDIENCE seg COUNT n [MIN score] [APPROX|EXACT]");
            return;
        }
        if (st_cmd_is_word(&c->argv[i], "COUNT")) {
            if (st_cmd_arg_count(c, &c->argv[i + 1], c->cfg->max_count, &count) != 0) return;
            have_count = 1;
        } else if (st_cmd_is_word(&c->argv[i], "MIN")) {
            if (st_cmd_arg_float(c, &c->argv[i + 1], "MIN", &min) != 0) return;
        } else {
            resp_error(c->out, "ERR syntax error: AUDIENCE seg COUNT n [MIN score] [APPROX|EXACT]");
            return;
        }
        i += 2;
    }
    if (!have_count) {
        resp_error(c->out, "ERR AUDIENCE needs COUNT n");
        return;
    }
    float add;
    const float *x = segment_query(c, s, &add);
    st_scan_result res;
    if (scan_users(c) < 0 || scan_best(c, x, add, min, count, 1, NULL, 0, approx_index(c, how), &res) != 0) return;
    if (st_cmd_below_floor(c, res.matching)) return;
    reply_user_pairs(c, c->scratch->idx, c->scratch->top, res.n);
}

/* The distinct known seeds (the arguments from argv[first]): their vectors into *rows_out (k floats each,
 * from the model or the overlay) and their places in the scan in
 * *keys_out, sorted: place << 20 | argument, where the place is the model
 * row, or users + the overlay slot. Returns how many, or -1 (replied). */
static int64_t gather_seeds(st_ctx *c, int first, float **rows_out, uint64_t **keys_out)
{
    const st_model *m = &c->model->m;
    uint32_t k = m->k, nargs = (uint32_t)(c->argc - first);
    uint64_t *keys = st_malloc(((size_t)nargs + 1) * sizeof *keys);
    float *xs = st_malloc(((size_t)nargs * k + 1) * sizeof *xs);
    if (!keys || !xs) {
        st_free(keys);
        st_free(xs);
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < nargs; i++) {
        user_view u = st_cmd_find_user(c, c->argv[first + i].ptr, c->argv[first + i].len);
        if (!u.known) continue;
        uint64_t place = u.online ? (uint64_t)m->users + u.slot : u.model_u;
        memcpy(xs + (size_t)i * k, u.x, k * sizeof *xs);
        keys[n++] = place << 20 | i;
    }
    qsort(keys, n, sizeof *keys, cmp_u64);
    uint32_t w = 0;
    for (uint32_t i = 0; i < n; i++)
        if (w == 0 || keys[w - 1] >> 20 != keys[i] >> 20) keys[w++] = keys[i];
    float *rows = st_malloc(((size_t)w * k + 1) * sizeof *rows);
    if (!rows) {
        st_free(keys);
        st_free(xs);
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < w; i++)
        memcpy(rows + (size_t)i * k, xs + (size_t)(keys[i] & 0xfffff) * k, k * sizeof *rows);
    st_free(xs);
    *rows_out = rows;
    *keys_out = keys;
    return w;
}

void cmd_lookalike(st_ctx *c)
{
    const st_model *m = &c->model->m;
    st_scratch *sc = c->scratch;
    uint32_t count;
    int how = approx_word(c, 1), at = how ? 2 : 1; /* LOOKALIKE [APPROX|EXACT] COUNT n user ... */
    if (c->argc < at + 3 || !st_cmd_is_word(&c->argv[at], "COUNT")) {
        resp_error(c->out, "ERR syntax error: LOOKALIKE [APPROX|EXACT] COUNT n user [user ...]");
        return;
    }
    if (st_cmd_arg_count(c, &c->argv[at + 1], c->cfg->max_count, &count) != 0) return;
    int first = at + 2;
    if (c->argc - first > (1 << 20)) {
        resp_error(c->out, "ERR too many seed users (at most 1048576)");
        return;
    }
    float *rows;
    uint64_t *keys;
    int64_t nseeds = gather_seeds(c, first, &rows, &keys);
    if (nseeds < 0) return;
    char msg[256];
    if (st_privacy_seeds((uint64_t)nseeds, (uint64_t)(c->argc - first), c->cfg->min_seeds, msg, sizeof msg) != 0) {
        resp_error(c->out, "ERR %s", msg);
        st_free(rows);
        st_free(keys);
        return;
    }
    int64_t n = scan_users(c);
    if (n < 0) {
        st_free(rows);
        st_free(keys);
        return;
    }
    /* The query: the seeds folded in as a segment (lookalike.h; their
     * centroid if that solve fails), every user's score against it; seeds
     * are not their own look-alikes: their scan positions (ascending, as
     * keys are) are excluded. */
    float *query = sc->scores + n;
    if (st_lookalike_query(m, m->users, c->model->GU, rows, (uint32_t)nseeds, query) < 0) {
        st_free(rows);
        st_free(keys);
        resp_error(c->out, "ERR out of memory");
        return;
    }
    const st_overlay_view *v = &sc->view;
    uint32_t *exclude = sc->segs, nexclude = 0;
    for (int64_t i = 0; i < nseeds; i++) {
        uint64_t place = keys[i] >> 20;
        if (place < m->users) {
            exclude[nexclude++] = (uint32_t)place;
            continue;
        }
        uint32_t slot = (uint32_t)(place - m->users), lo = 0, hi = v->n;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (v->slots[mid] < slot) lo = mid + 1;
            else hi = mid;
        }
        if (lo < v->n && v->slots[lo] == slot) exclude[nexclude++] = m->users + lo;
    }
    st_free(rows);
    st_free(keys);
    st_scan_result res;
    if (scan_best(c, query, -0.0f, -INFINITY, count, 0, exclude, nexclude, approx_index(c, how), &res) != 0) return;
    uint32_t got = res.n;
    if (got < c->cfg->min_audience) {
        resp_error(c->out, "ERR only %u look-alikes: below the privacy floor of %llu (--min-audience)", got,
                   (unsigned long long)c->cfg->min_audience);
        return;
    }
    reply_user_pairs(c, sc->idx, sc->top, got);
}

enum { CURVE_MAX = 1024 }; /* thresholds of one REACH CURVE */

/* REACH seg CURVE t1 [t2 ...]: the users scoring at least each threshold,
 * counted in one pass (st_scan_curve); a count under --min-audience is
 * withheld as REACH withholds it, and replied as a nil. */
static void reach_curve(st_ctx *c, uint32_t s)
{
    uint32_t nt = (uint32_t)(c->argc - 3);
    if (nt > CURVE_MAX) {
        resp_error(c->out, "ERR REACH CURVE takes at most %d thresholds", CURVE_MAX);
        return;
    }
    float *t = st_malloc((size_t)nt * sizeof *t);
    uint64_t *counts = st_malloc((size_t)nt * sizeof *counts);
    int rc = t && counts ? 0 : -1;
    if (rc != 0) resp_error(c->out, "ERR out of memory");
    for (uint32_t i = 0; i < nt && rc == 0; i++) {
        double v;
        rc = st_cmd_arg_float(c, &c->argv[3 + i], "a CURVE threshold", &v);
        t[i] = (float)v;
    }
    float add;
    const float *x = segment_query(c, s, &add);
    const st_overlay_view *v = &c->scratch->view;
    st_scan_result res;
    if (rc == 0 && scan_users(c) >= 0) {
        st_scan_query q = {.x = x, .add = add, .skip = v->hidden, .extra = v->X, .nextra = v->n};
        if (st_scan_curve(&c->model->m, &q, t, nt, counts, &res) == 0) {
            st_scan_withhold(counts, nt, c->cfg->min_audience);
            resp_array(c->out, nt);
            for (uint32_t i = 0; i < nt; i++) {
                if (counts[i] == ST_SCAN_WITHHELD) resp_null(c->out);
                else resp_int(c->out, (int64_t)counts[i]);
            }
        } else {
            resp_error(c->out, "ERR out of memory");
        }
    }
    st_free(t);
    st_free(counts);
}

void cmd_reach(st_ctx *c)
{
    uint32_t s;
    double min;
    if (st_cmd_need_any_segment(c, &c->argv[1], &s) != 0) return;
    if (st_cmd_is_word(&c->argv[2], "CURVE")) {
        reach_curve(c, s);
        return;
    }
    if (!st_cmd_is_word(&c->argv[2], "MIN") || c->argc != 4) {
        resp_error(c->out, "ERR syntax error: REACH seg MIN score | REACH seg CURVE t1 [t2 ...]");
        return;
    }
    if (st_cmd_arg_float(c, &c->argv[3], "MIN", &min) != 0) return;
    float add;
    const float *x = segment_query(c, s, &add);
    st_scan_result res;
    if (scan_users(c) < 0 || scan_best(c, x, add, min, 0, 1, NULL, 0, NULL, &res) != 0) return;
    if (st_cmd_below_floor(c, res.matching)) return;
    resp_int(c->out, (int64_t)res.matching);
}

void st_cmd_info_approx(st_text *t, const st_served *sv)
{
    int mode = st_ann_mode();
    const st_ann *a = sv ? atomic_load(&sv->ann) : NULL;
    st_ann_stats st = {0};
    if (a) st_ann_get_stats(a, &st);
    st_text_printf(t,
                   "# Approx\r\napprox_mode:%s\r\napprox_ready:%d\r\napprox_lists:%u\r\napprox_memory:%llu\r\n"
                   "approx_build_seconds:%.3f\r\napprox_recall_target:%.4f\r\napprox_recall:%.4f\r\n"
                   "approx_recall_at:%u\r\napprox_recall_queries:%u\r\napprox_probe_rows:%llu\r\n",
                   st_ann_mode_name(mode), a != NULL, st.lists, (unsigned long long)st.bytes, st.build_seconds,
                   st_ann_target(), st.recall, st.recall_at, st.recall_queries, (unsigned long long)st.probe_rows);
    st_text_printf(t, "approx_queries:%llu\r\napprox_exact:%llu\r\napprox_fallbacks:%llu\r\n\r\n",
                   sv ? (unsigned long long)atomic_load(&sv->approx_queries) : 0ull,
                   sv ? (unsigned long long)atomic_load(&sv->approx_exact) : 0ull,
                   sv ? (unsigned long long)atomic_load(&sv->approx_fallbacks) : 0ull);
}
