/* eval: the data side of an offline evaluation: the event table, splits,
 * fold-in of held-out users, and the evaluation set a ranking is scored on
 * (eval.h). The ranking pass, the metrics, the prior fit and calibration are
 * ranking.c's.
 *
 * Legend: users m, segments n, rank k, evaluated users e; a user's seen
 * (excluded) segments E and held-out segments T. Every random choice (which
 * pairs or users are held out, which users validate) is a stream or a hash
 * seeded by the user's id and the split seed, so the same input in any
 * order gives the same split.
 */
#include "eval.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "score.h"
#include "util.h"

/* ---- the event table ----------------------------------------------------- */

void st_event_table_free(st_event_table *t)
{
    st_idmap_free(&t->users);
    st_idmap_free(&t->segments);
    st_idmap_free(&t->kinds);
    st_free(t->user);
    st_free(t->segment);
    st_free(t->kind);
    st_free(t->weight);
    st_free(t->ts);
    memset(t, 0, sizeof *t);
}

static int table_grow(st_event_table *t, char *err)
{
    uint64_t nc = t->cap ? t->cap + t->cap / 2 : 4096;
    uint32_t *u = st_realloc(t->user, nc * sizeof *u);
    if (u) t->user = u;
    uint32_t *s = st_realloc(t->segment, nc * sizeof *s);
    if (s) t->segment = s;
    uint32_t *k = st_realloc(t->kind, nc * sizeof *k);
    if (k) t->kind = k;
    double *w = st_realloc(t->weight, nc * sizeof *w);
    if (w) t->weight = w;
    double *ts = st_realloc(t->ts, nc * sizeof *ts);
    if (ts) t->ts = ts;
    if (!u || !s || !k || !w || !ts) return st_seterr(err, "out of memory for %llu events", (unsigned long long)nc);
    t->cap = nc;
    return 0;
}

static int table_add(const st_event *ev, void *ctx, char *err)
{
    st_event_table *t = ctx;
    if (ev->weight == 0) return 0; /* r = 0 is not an interaction */
    if (t->count == t->cap && table_grow(t, err) != 0) return -1;
    uint64_t i = t->count;
    if (st_idmap_intern(&t->users, ev->user, ev->user_len, &t->user[i], NULL, err) != 0 ||
        st_idmap_intern(&t->segments, ev->segment, ev->segment_len, &t->segment[i], NULL, err) != 0)
        return -1;
    t->kind[i] = ST_NOT_FOUND;
    if (ev->kind && st_idmap_intern(&t->kinds, ev->kind, ev->kind_len, &t->kind[i], NULL, err) != 0) return -1;
    t->weight[i] = ev->weight;
    t->ts[i] = ev->has_ts ? ev->ts : NAN;
    t->count++;
    return 0;
}

int st_eval_events_read(char **paths, int npaths, const st_read_opts *o, st_event_table *t, st_read_stats *stats,
                        char *err)
{
    memset(t, 0, sizeof *t);
    st_idmap_init(&t->users);
    st_idmap_init(&t->segments);
    st_idmap_init(&t->kinds);
    for (int i = 0; i < npaths; i++)
        if (st_events_read(paths[i], o, table_add, t, stats, err) != 0) return -1;
    if (t->count == 0) return st_seterr(err, "no events with a non-zero weight in the input");
    return 0;
}

/* ---- splits ---------------------------------------------------------------- */

int st_split_parse(const char *spec, st_split *s, char *err)
{
    const char *colon = strchr(spec, ':');
    if (!colon || !colon[1])
        return st_seterr(err, "'%s' is not a split; use holdout:F, leave:K, time:WHEN or users:F", spec);
    size_t nl = (size_t)(colon - spec);
    const char *v = colon + 1;
    double x;
    if (nl == 7 && strncmp(spec, "holdout", 7) == 0) {
        if (st_parse_double(v, &x) != 0 || !(x > 0 && x < 1))
            return st_seterr(err, "holdout:F needs a fraction between 0 and 1 (e.g. holdout:0.2), not '%s'", v);
        s->kind = ST_SPLIT_HOLDOUT;
        s->fraction = x;
    } else if (nl == 5 && strncmp(spec, "users", 5) == 0) {
        if (st_parse_double(v, &x) != 0 || !(x > 0 && x < 1))
            return st_seterr(err, "users:F needs a fraction between 0 and 1 (e.g. users:0.1), not '%s'", v);
        s->kind = ST_SPLIT_USERS;
        s->fraction = x;
    } else if (nl == 5 && strncmp(spec, "leave", 5) == 0) {
        uint64_t k;
        if (st_parse_u64(v, &k) != 0 || k < 1 || k > 1000000)
            return st_seterr(err, "leave:K needs a whole number of segments to leave out (e.g. leave:1), not '%s'", v);
        s->kind = ST_SPLIT_LEAVE;
        s->leave = (uint32_t)k;
    } else if (nl == 4 && strncmp(spec, "time", 4) == 0) {
        s->kind = ST_SPLIT_TIME;
        if (st_parse_double(v, &x) == 0 && x > 0 && x < 1) {
            s->time = x;
            s->time_is_fraction = 1;
        } else if (st_parse_timestamp(v, strlen(v), &x) == 0) {
            s->time = x;
            s->time_is_fraction = 0;
        } else {
            return st_seterr(err, "time:WHEN needs a time (2026-01-01, unix seconds) or a fraction of the time "
                                  "range (time:0.8), not '%s'", v);
        }
    } else {
        return st_seterr(err, "unknown split '%.*s'; use holdout:F, leave:K, time:WHEN or users:F", (int)nl, spec);
    }
    return 0;
}

void st_split_describe(const st_split *s, char *out, size_t len)
{
    switch (s->kind) {
    case ST_SPLIT_HOLDOUT: snprintf(out, len, "holdout:%g", s->fraction); break;
    case ST_SPLIT_USERS: snprintf(out, len, "users:%g", s->fraction); break;
    case ST_SPLIT_LEAVE: snprintf(out, len, "leave:%u", s->leave); break;
    case ST_SPLIT_TIME:
        if (s->time_is_fraction) snprintf(out, len, "time:%g", s->time);
        else snprintf(out, len, "time:%.0f", s->time);
        break;
    }
}

/* A user's own random stream and its place in [0, 1): from the hash of its
 * id, so neither depends on the order of the input. */
static uint64_t user_hash(const st_idmap *ids, uint32_t u, uint64_t seed)
{
    size_t len;
    const char *name = st_idmap_name(ids, u, &len);
    uint64_t x = st_idmap_hash(name, len) ^ seed;
    return st_splitmix64(&x);
}

static double user_fraction(const st_idmap *ids, uint32_t u, uint64_t seed)
{
    return (double)(user_hash(ids, u, seed ^ 0x5eed0f0fa11ULL) >> 11) * 0x1.0p-53;
}

/* The distinct (user, segment) pairs of a table, sorted by user then segment;
 * each pair lists its events through order[first .. first + nev). */
typedef struct {
    uint64_t count;
    uint64_t *order;   /* t->count event indices, grouped by pair */
    uint64_t *first;   /* count + 1 */
    uint64_t *uptr;    /* users + 1: each user's pairs */
} pair_index;

static void pair_index_free(pair_index *p)
{
    st_free(p->order);
    st_free(p->first);
    st_free(p->uptr);
    memset(p, 0, sizeof *p);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    uint64_t key, idx;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int pair_index_build(const st_event_table *t, pair_index *p, char *err)
{
    memset(p, 0, sizeof *p);
    uint32_t m = t->users.count;
    keyed *kv = st_malloc(t->count * sizeof *kv);
    p->order = st_malloc(t->count * sizeof *p->order);
    p->first = st_malloc((t->count + 1) * sizeof *p->first);
    p->uptr = st_calloc((size_t)m + 1, sizeof *p->uptr);
    if (!kv || !p->order || !p->first || !p->uptr) {
        st_free(kv);
        pair_index_free(p);
        return st_seterr(err, "out of memory indexing %llu events", (unsigned long long)t->count);
    }
    for (uint64_t i = 0; i < t->count; i++) {
        kv[i].key = (uint64_t)t->user[i] << 32 | t->segment[i];
        kv[i].idx = i;
    }
    qsort(kv, t->count, sizeof *kv, cmp_keyed);
    uint64_t np = 0;
    for (uint64_t i = 0; i < t->count; i++) {
        p->order[i] = kv[i].idx;
        if (i == 0 || kv[i].key != kv[i - 1].key) {
            p->first[np++] = i;
            p->uptr[(kv[i].key >> 32) + 1]++;
        }
    }
    p->first[np] = t->count;
    p->count = np;
    for (uint32_t u = 0; u < m; u++) p->uptr[u + 1] += p->uptr[u];
    st_free(kv);
    return 0;
}

static void set_pair_role(const pair_index *p, uint64_t pair, uint8_t *role, uint8_t r)
{
    for (uint64_t q = p->first[pair]; q < p->first[pair + 1]; q++) role[p->order[q]] = r;
}

/* Shuffles idx[0..n) in place (Fisher-Yates) from g. */
static void shuffle(uint64_t *idx, uint64_t n, st_rng *g)
{
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = st_rng_below(g, i);
        uint64_t tmp = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = tmp;
    }
}

/* A held-out user's n segments: how many are folded in (at least one, at
 * most fold_max when not 0, and at least one left to test). 0 when the user
 * cannot be split. */
static uint64_t foldin_count(uint64_t n, double fold_in, uint32_t fold_max)
{
    if (n < 2) return 0;
    uint64_t f = (uint64_t)floor(fold_in * (double)n);
    if (fold_max && f > fold_max) f = fold_max;
    if (f < 1) f = 1;
    if (f > n - 1) f = n - 1;
    return f;
}

/* Splits one user's pairs [p0, p1) into fold-in and test at random. */
static void split_user_pairs(const pair_index *p, uint64_t p0, uint64_t p1, double fold_in, uint32_t fold_max,
                             st_rng *g, uint64_t *scratch, uint8_t *role)
{
    uint64_t n = p1 - p0, f = foldin_count(n, fold_in, fold_max);
    for (uint64_t i = 0; i < n; i++) scratch[i] = p0 + i;
    shuffle(scratch, n, g);
    for (uint64_t i = 0; i < n; i++) set_pair_role(p, scratch[i], role, i < f ? ST_ROLE_FOLDIN : ST_ROLE_TEST);
}

typedef struct {
    double key;    /* the pair's latest event time (0 without times) */
    uint64_t draw; /* a random number: the order among equal times */
    uint64_t pair;
} pair_time;

static int cmp_pair_time_desc(const void *a, const void *b)
{
    const pair_time *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    if (x->draw != y->draw) return x->draw < y->draw ? -1 : 1;
    return x->pair < y->pair ? -1 : x->pair > y->pair;
}

int st_split_assign(const st_event_table *t, const st_split *s, uint8_t *role, double *cut, char *err)
{
    *cut = NAN;
    memset(role, ST_ROLE_TRAIN, t->count);
    if (s->kind == ST_SPLIT_TIME) {
        double lo = INFINITY, hi = -INFINITY;
        for (uint64_t i = 0; i < t->count; i++) {
            if (isnan(t->ts[i]))
                return st_seterr(err, "the time split needs a timestamp on every event; event %llu has none "
                                      "(use holdout:F or leave:K)", (unsigned long long)i + 1);
            if (t->ts[i] < lo) lo = t->ts[i];
            if (t->ts[i] > hi) hi = t->ts[i];
        }
        *cut = s->time_is_fraction ? lo + s->time * (hi - lo) : s->time;
    }
    pair_index p;
    if (pair_index_build(t, &p, err) != 0) return -1;
    uint64_t maxp = 0;
    for (uint32_t u = 0; u < t->users.count; u++)
        if (p.uptr[u + 1] - p.uptr[u] > maxp) maxp = p.uptr[u + 1] - p.uptr[u];
    uint64_t *scratch = st_malloc((maxp + 1) * sizeof *scratch);
    pair_time *pt = st_malloc((maxp + 1) * sizeof *pt);
    if (!scratch || !pt) {
        st_free(scratch);
        st_free(pt);
        pair_index_free(&p);
        return st_seterr(err, "out of memory splitting");
    }
    uint64_t held = 0;
    for (uint32_t u = 0; u < t->users.count; u++) {
        uint64_t p0 = p.uptr[u], p1 = p.uptr[u + 1], n = p1 - p0;
        int eligible = n >= s->min_events && (s->max_events == 0 || n <= s->max_events);
        st_rng g = st_rng_for(s->seed, user_hash(&t->users, u, s->seed));
        switch (s->kind) {
        case ST_SPLIT_HOLDOUT: {
            uint64_t nt = (uint64_t)floor(s->fraction * (double)n + 0.5);
            if (!eligible || nt == 0 || nt >= n) break;
            for (uint64_t i = 0; i < n; i++) scratch[i] = p0 + i;
            shuffle(scratch, n, &g);
            for (uint64_t i = 0; i < nt; i++) set_pair_role(&p, scratch[i], role, ST_ROLE_TEST);
            held += nt;
            break;
        }
        case ST_SPLIT_LEAVE: {
            if (!eligible || n <= s->leave) break;
            /* The most recent pairs when every event has a time, else random
             * ones; ties in time are broken at random too. */
            int timed = 1;
            for (uint64_t q = p.first[p0]; q < p.first[p1] && timed; q++) timed = !isnan(t->ts[p.order[q]]);
            for (uint64_t i = 0; i < n; i++) {
                double latest = -INFINITY;
                for (uint64_t q = p.first[p0 + i]; q < p.first[p0 + i + 1]; q++)
                    if (t->ts[p.order[q]] > latest) latest = t->ts[p.order[q]];
                pt[i].key = timed ? latest : 0;
                pt[i].pair = p0 + i;
                pt[i].draw = st_rng_next(&g);
            }
            qsort(pt, n, sizeof *pt, cmp_pair_time_desc);
            for (uint32_t i = 0; i < s->leave; i++) set_pair_role(&p, pt[i].pair, role, ST_ROLE_TEST);
            held += s->leave;
            break;
        }
        case ST_SPLIT_TIME: {
            int any_train = 0, any_test = 0;
            for (uint64_t pr = p0; pr < p1; pr++) {
                int before = 0;
                for (uint64_t q = p.first[pr]; q < p.first[pr + 1]; q++) before |= t->ts[p.order[q]] < *cut;
                for (uint64_t q = p.first[pr]; q < p.first[pr + 1]; q++) {
                    uint64_t e = p.order[q];
                    if (t->ts[e] < *cut) role[e] = ST_ROLE_TRAIN;
                    else role[e] = before || !eligible ? ST_ROLE_DROP : ST_ROLE_TEST;
                }
                any_train |= before;
                any_test |= !before && eligible;
            }
            if (!any_train) /* a user first seen after the cut: nothing to rank from */
                for (uint64_t q = p.first[p0]; q < p.first[p1]; q++) role[p.order[q]] = ST_ROLE_DROP;
            else if (any_test)
                held++;
            break;
        }
        case ST_SPLIT_USERS: {
            if (!eligible || n < 2 || user_fraction(&t->users, u, s->seed) >= s->fraction) break;
            split_user_pairs(&p, p0, p1, s->fold_in, s->fold_max, &g, scratch, role);
            held += n - foldin_count(n, s->fold_in, s->fold_max);
            break;
        }
        }
    }
    st_free(scratch);
    st_free(pt);
    pair_index_free(&p);
    if (held == 0)
        return st_seterr(err, "the split holds nothing out (too few events per user for it, or every user "
                              "outside --min-events/--max-events)");
    return 0;
}

int st_split_cold(const st_event_table *t, const st_model *m, double fold_in, uint32_t fold_max, uint64_t seed,
                  uint8_t *role, char *err)
{
    pair_index p;
    if (pair_index_build(t, &p, err) != 0) return -1;
    uint64_t maxp = 0;
    for (uint32_t u = 0; u < t->users.count; u++)
        if (p.uptr[u + 1] - p.uptr[u] > maxp) maxp = p.uptr[u + 1] - p.uptr[u];
    uint64_t *scratch = st_malloc((maxp + 1) * sizeof *scratch);
    if (!scratch) {
        pair_index_free(&p);
        return st_seterr(err, "out of memory splitting");
    }
    memset(role, ST_ROLE_TEST, t->count);
    for (uint32_t u = 0; u < t->users.count; u++) {
        size_t len;
        const char *name = st_idmap_name(&t->users, u, &len);
        if (st_idmap_find(&m->user_ids, name, len) != ST_NOT_FOUND) continue;
        uint64_t p0 = p.uptr[u], p1 = p.uptr[u + 1];
        if (p1 - p0 < 2) {
            for (uint64_t q = p.first[p0]; q < p.first[p1]; q++) role[p.order[q]] = ST_ROLE_DROP;
            continue;
        }
        st_rng g = st_rng_for(seed, user_hash(&t->users, u, seed));
        split_user_pairs(&p, p0, p1, fold_in, fold_max, &g, scratch, role);
    }
    st_free(scratch);
    pair_index_free(&p);
    return 0;
}

int st_eval_build(const st_event_table *t, const uint8_t *role, uint8_t which, const st_weighting *w,
                  st_interactions *x, char *err)
{
    st_builder *b = st_builder_new(w, err);
    if (!b) return -1;
    for (uint64_t i = 0; i < t->count; i++) {
        if (role[i] != which) continue;
        st_event ev;
        memset(&ev, 0, sizeof ev);
        ev.user = st_idmap_name(&t->users, t->user[i], &ev.user_len);
        ev.segment = st_idmap_name(&t->segments, t->segment[i], &ev.segment_len);
        if (t->kind[i] != ST_NOT_FOUND) ev.kind = st_idmap_name(&t->kinds, t->kind[i], &ev.kind_len);
        ev.weight = t->weight[i];
        ev.has_ts = !isnan(t->ts[i]);
        ev.ts = ev.has_ts ? t->ts[i] : 0;
        ev.file = "(split)";
        ev.line = i + 1;
        if (st_builder_add(b, &ev, err) != 0) {
            st_builder_free(b);
            return -1;
        }
    }
    return st_builder_finish(b, x, err);
}

/* ---- fold-in ---------------------------------------------------------------- */

int st_foldin_ctx_init(st_foldin_ctx *f, const st_model *m, char *err)
{
    memset(f, 0, sizeof *f);
    f->m = m;
    st_model_params(&m->h, &f->p);
    uint32_t k = m->k;
    f->G = st_aligned_alloc(64, (size_t)k * k * sizeof *f->G);
    f->scratch = st_aligned_alloc(64, st_als_foldin_scratch(k) * sizeof *f->scratch);
    f->cm1 = st_malloc(((size_t)m->segments + 1) * sizeof *f->cm1);
    if (!f->G || !f->scratch || !f->cm1) {
        st_foldin_ctx_free(f);
        return st_seterr(err, "out of memory for fold-in");
    }
    openblas_set_num_threads(1);
    if (st_model_gram(m, f->G) != 0) {
        st_foldin_ctx_free(f);
        return st_seterr(err, "out of memory for fold-in");
    }
    return 0;
}

void st_foldin_ctx_free(st_foldin_ctx *f)
{
    st_free(f->G);
    st_free(f->scratch);
    st_free(f->cm1);
    memset(f, 0, sizeof *f);
}

int st_foldin_user(st_foldin_ctx *f, const uint32_t *idx, const float *r, uint32_t nnz, float *x)
{
    const st_model *m = f->m;
    if (nnz > m->segments) return -1;
    /* The confidences and the row's lambda as the trainer computes them,
     * the same code the server's FOLDIN uses (score.h). */
    double lam = st_score_confidences(m, &f->p, idx, r, nnz, f->cm1);
    return st_als_foldin_weighted(m->k, m->V, f->G, m->missing, lam, idx, f->cm1, nnz, x, f->scratch);
}

/* ---- the evaluation set ---------------------------------------------------- */

void st_eval_set_init(st_eval_set *s, uint32_t k)
{
    memset(s, 0, sizeof *s);
    s->k = k;
}

void st_eval_set_free(st_eval_set *s)
{
    if (s->owned_names)
        for (uint32_t i = 0; i < s->users; i++) st_free(s->owned_names[i]);
    st_free(s->owned_names);
    st_free(s->names);
    st_free(s->model_user);
    st_free(s->X);
    st_free(s->activity);
    st_free(s->seen_ptr);
    st_free(s->seen);
    st_free(s->seen_r);
    st_free(s->test_ptr);
    st_free(s->test);
    st_free(s->validation);
    st_free(s->origin);
    uint32_t k = s->k;
    memset(s, 0, sizeof *s);
    s->k = k;
}

static int set_reserve(st_eval_set *s, uint64_t nseen, uint64_t ntest, char *err)
{
    if (s->users + 1 >= s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 256;
        const char **names = st_realloc(s->names, nc * sizeof *names);
        if (names) s->names = names;
        char **owned = st_realloc(s->owned_names, nc * sizeof *owned);
        if (owned) s->owned_names = owned;
        uint32_t *mu = st_realloc(s->model_user, nc * sizeof *mu);
        if (mu) s->model_user = mu;
        float *X = st_realloc(s->X, (size_t)nc * s->k * sizeof *X);
        if (X) s->X = X;
        uint32_t *act = st_realloc(s->activity, nc * sizeof *act);
        if (act) s->activity = act;
        uint64_t *sp = st_realloc(s->seen_ptr, ((size_t)nc + 1) * sizeof *sp);
        if (sp) s->seen_ptr = sp;
        uint64_t *tp = st_realloc(s->test_ptr, ((size_t)nc + 1) * sizeof *tp);
        if (tp) s->test_ptr = tp;
        uint8_t *v = st_realloc(s->validation, nc);
        if (v) s->validation = v;
        if (!names || !owned || !mu || !X || !act || !sp || !tp || !v) return st_seterr(err, "out of memory");
        if (s->cap == 0) s->seen_ptr[0] = s->test_ptr[0] = 0;
        s->cap = nc;
    }
    uint64_t su = s->seen_ptr[s->users] + nseen, tu = s->test_ptr[s->users] + ntest;
    if (su > s->seen_cap) {
        uint64_t nc = su + su / 2 + 1024;
        uint32_t *p = st_realloc(s->seen, nc * sizeof *p);
        if (p) s->seen = p;
        float *r = st_realloc(s->seen_r, nc * sizeof *r);
        if (r) s->seen_r = r;
        if (!p || !r) return st_seterr(err, "out of memory");
        s->seen_cap = nc;
    }
    if (tu > s->test_cap) {
        uint64_t nc = tu + tu / 2 + 1024;
        uint32_t *p = st_realloc(s->test, nc * sizeof *p);
        if (!p) return st_seterr(err, "out of memory");
        s->test = p;
        s->test_cap = nc;
    }
    return 0;
}

/* Appends test (sorted, deduplicated, without the sorted seen[0..nseen))
 * after the current user's test list; returns how many were kept. */
static uint32_t append_test(st_eval_set *s, const uint32_t *seen, uint64_t nseen, const uint32_t *test,
                            uint32_t ntest)
{
    uint32_t *out = s->test + s->test_ptr[s->users];
    memcpy(out, test, ntest * sizeof *out);
    qsort(out, ntest, sizeof *out, st_cmp_u32);
    uint32_t kept = 0;
    uint64_t e = 0;
    for (uint32_t i = 0; i < ntest; i++) {
        if (i > 0 && out[i] == out[i - 1]) continue;
        while (e < nseen && seen[e] < out[i]) e++;
        if (e < nseen && seen[e] == out[i]) {
            s->dropped_pairs++;
            continue;
        }
        out[kept++] = out[i];
    }
    return kept;
}

static void finish_user(st_eval_set *s, const char *name, char *owned, uint32_t model_user, uint32_t activity,
                        uint64_t nseen, uint32_t kept)
{
    uint32_t e = s->users;
    s->names[e] = name;
    s->owned_names[e] = owned;
    s->model_user[e] = model_user;
    s->activity[e] = activity;
    s->validation[e] = 0;
    s->seen_ptr[e + 1] = s->seen_ptr[e] + nseen;
    s->test_ptr[e + 1] = s->test_ptr[e] + kept;
    s->users++;
}

int st_eval_set_add_known(st_eval_set *s, const st_model *m, uint32_t u, const uint32_t *test, uint32_t ntest,
                          char *err)
{
    uint64_t h0 = m->hist_ptr[u], nseen = m->hist_ptr[u + 1] - h0;
    if (set_reserve(s, nseen, ntest, err) != 0) return -1;
    const uint32_t *seen = m->hist_idx + h0;
    uint32_t kept = append_test(s, seen, nseen, test, ntest);
    if (kept == 0) return 0;
    memcpy(s->seen + s->seen_ptr[s->users], seen, nseen * sizeof *seen);
    memcpy(s->seen_r + s->seen_ptr[s->users], m->hist_val + h0, nseen * sizeof(float));
    float *row = s->X + (size_t)s->users * s->k;
    memmove(row, st_model_user(m, u, row), s->k * sizeof(float));
    finish_user(s, st_idmap_name(&m->user_ids, u, NULL), NULL, u, (uint32_t)nseen, nseen, kept);
    return 0;
}

int st_eval_set_add_cold(st_eval_set *s, st_foldin_ctx *f, const char *name, const uint32_t *fold, const float *r,
                         uint32_t nfold, const uint32_t *test, uint32_t ntest, char *err)
{
    if (nfold == 0) {
        s->cold_skipped++;
        return 0;
    }
    if (set_reserve(s, nfold, ntest, err) != 0) return -1;
    uint32_t *seen = s->seen + s->seen_ptr[s->users];
    memcpy(seen, fold, nfold * sizeof *seen); /* fold is ascending (a CSR row) */
    uint32_t kept = append_test(s, seen, nfold, test, ntest);
    if (kept == 0) return 0;
    memcpy(s->seen_r + s->seen_ptr[s->users], r, nfold * sizeof *r);
    float *x = s->X + (size_t)s->users * s->k;
    if (st_foldin_user(f, fold, r, nfold, x) != 0)
        return st_seterr(err, "fold-in of user '%s' failed: its system is not positive definite", name);
    char *copy = st_strdup(name);
    if (!copy) return st_seterr(err, "out of memory");
    finish_user(s, copy, copy, ST_NOT_FOUND, nfold, nfold, kept);
    return 0;
}

/* Sorts a row's segments ascending with their values. */
static void sort_row(uint32_t *idx, float *val, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint32_t j = i, x = idx[i];
        float v = val[i];
        for (; j > 0 && idx[j - 1] > x; j--) {
            idx[j] = idx[j - 1];
            val[j] = val[j - 1];
        }
        idx[j] = x;
        val[j] = v;
    }
}

int st_eval_set_from_roles(st_eval_set *s, const st_event_table *t, const uint8_t *role, const st_model *m,
                           const st_weighting *w, char *err)
{
    int rc = -1;
    st_interactions fx;
    memset(&fx, 0, sizeof fx);
    st_foldin_ctx f;
    memset(&f, 0, sizeof f);
    int have_fold = 0;
    double newest_train = -INFINITY;
    for (uint64_t i = 0; i < t->count; i++) {
        have_fold |= role[i] == ST_ROLE_FOLDIN;
        if (role[i] == ST_ROLE_TRAIN && t->ts[i] > newest_train) newest_train = t->ts[i];
    }
    /* Test pairs grouped by user: the (user, segment) keys of TEST events. */
    uint64_t ntest = 0;
    for (uint64_t i = 0; i < t->count; i++) ntest += role[i] == ST_ROLE_TEST;
    uint64_t *keys = st_malloc((ntest + 1) * sizeof *keys);
    uint32_t *buf = NULL, *fold = NULL;
    float *fr = NULL;
    if (!keys) return st_seterr(err, "out of memory");
    ntest = 0;
    for (uint64_t i = 0; i < t->count; i++)
        if (role[i] == ST_ROLE_TEST) keys[ntest++] = (uint64_t)t->user[i] << 32 | t->segment[i];
    qsort(keys, ntest, sizeof *keys, cmp_u64);
    if (have_fold) {
        /* Fold-in values are weighted exactly as training weighs events, with
         * time decay relative to the newest training event. */
        st_weighting w2 = *w;
        if (w2.half_life > 0 && !w2.has_now && isfinite(newest_train)) {
            w2.now = newest_train;
            w2.has_now = 1;
        }
        if (st_eval_build(t, role, ST_ROLE_FOLDIN, &w2, &fx, err) != 0) goto out;
        if (st_foldin_ctx_init(&f, m, err) != 0) goto out;
    }
    buf = st_malloc((ntest + 1) * sizeof *buf);
    fold = st_malloc(((size_t)m->segments + 1) * sizeof *fold);
    fr = st_malloc(((size_t)m->segments + 1) * sizeof *fr);
    if (!buf || !fold || !fr) {
        st_seterr(err, "out of memory");
        goto out;
    }
    for (uint64_t a = 0; a < ntest;) {
        uint32_t u = (uint32_t)(keys[a] >> 32);
        uint64_t b = a;
        uint32_t nt = 0;
        size_t len;
        const char *name = st_idmap_name(&t->users, u, &len);
        uint32_t mu = st_idmap_find(&m->user_ids, name, len);
        for (; b < ntest && (uint32_t)(keys[b] >> 32) == u; b++) {
            if (b > a && keys[b] == keys[b - 1]) continue;
            size_t sl;
            const char *sn = st_idmap_name(&t->segments, (uint32_t)keys[b], &sl);
            uint32_t ms = st_idmap_find(&m->segment_ids, sn, sl);
            if (ms == ST_NOT_FOUND) s->dropped_pairs++;
            else buf[nt++] = ms;
        }
        a = b;
        if (nt == 0) continue;
        if (mu != ST_NOT_FOUND) {
            if (st_eval_set_add_known(s, m, mu, buf, nt, err) != 0) goto out;
            continue;
        }
        uint32_t fu = have_fold ? st_idmap_find(&fx.users, name, len) : ST_NOT_FOUND;
        if (fu == ST_NOT_FOUND) {
            s->cold_skipped++;
            continue;
        }
        /* The fold-in row in the model's segment indices, ascending. */
        uint32_t nf = 0;
        uint64_t q0 = fx.by_user.indptr[fu], q1 = fx.by_user.indptr[fu + 1];
        for (uint64_t q = q0; q < q1; q++) {
            size_t sl;
            const char *sn = st_idmap_name(&fx.segments, fx.by_user.indices[q], &sl);
            uint32_t ms = st_idmap_find(&m->segment_ids, sn, sl);
            if (ms == ST_NOT_FOUND) continue;
            fold[nf] = ms;
            fr[nf++] = fx.by_user.data[q];
        }
        sort_row(fold, fr, nf);
        if (st_eval_set_add_cold(s, &f, name, fold, fr, nf, buf, nt, err) != 0) goto out;
    }
    rc = 0;
out:
    st_free(keys);
    st_free(buf);
    st_free(fold);
    st_free(fr);
    st_foldin_ctx_free(&f);
    if (have_fold) st_interactions_free(&fx);
    return rc;
}

int st_eval_set_refresh(st_eval_set *s, const st_model *m, st_foldin_ctx *f, char *err)
{
    for (uint32_t e = 0; e < s->users; e++) {
        float *x = s->X + (size_t)e * s->k;
        if (s->model_user[e] != ST_NOT_FOUND) {
            memmove(x, st_model_user(m, s->model_user[e], x), s->k * sizeof *x);
            continue;
        }
        uint64_t q0 = s->seen_ptr[e];
        if (st_foldin_user(f, s->seen + q0, s->seen_r + q0, (uint32_t)(s->seen_ptr[e + 1] - q0), x) != 0)
            return st_seterr(err, "fold-in of user '%s' failed: its system is not positive definite", s->names[e]);
    }
    return 0;
}

void st_eval_set_partition(st_eval_set *s, double fraction, uint64_t seed)
{
    for (uint32_t e = 0; e < s->users; e++) {
        uint64_t x = st_idmap_hash(s->names[e], strlen(s->names[e])) ^ (seed * 0x9e3779b97f4a7c15ULL + 0x7a11d);
        double frac = (double)(st_splitmix64(&x) >> 11) * 0x1.0p-53;
        s->validation[e] = frac < fraction;
    }
}
