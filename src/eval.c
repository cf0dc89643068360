/* eval: splits, the evaluation set, the ranking pass, metrics, the prior
 * blend and calibration.
 *
 * Legend: users m, segments n, rank k, evaluated users e, cut-offs ks[0..nk)
 * ascending with the largest kmax, held-out segments of a user T, its seen
 * (excluded) segments E, its candidates C = all segments minus E.
 *
 * What it is: the numeric half of `starling eval` and `tune`. The ranking
 * pass takes the selected users in blocks of B: it gathers their vectors
 * (B x k), multiplies them by V^T in one sgemm (B x n scores), then for each
 * user selects its best kmax candidates with the bounded heap of score.c
 * (st_topk, which skips E) and computes every metric from that list. AUC
 * needs the whole ranking, so it is counted in one more pass over the n
 * scores against the user's held-out scores, sorted. Threads take blocks; a
 * block's results depend only on its users, so any thread count gives the
 * same bytes.
 *
 * What it is not: a place for I/O, or for cleverness the metrics do not need.
 * Each metric kernel has a naive reference beside it (st_eval_metrics_ref,
 * st_eval_auc_ref) that tests/test_eval.c compares with the fast one on
 * hand-made rankings whose values were computed by hand.
 *
 * Definitions (docs/EVALUATION.md has them in full), for one user with
 * ranking R of its candidates (score descending, ties by lower index) and
 * hits(K) = |R[1..K] & T|:
 *   precision@K = hits(K) / K
 *   recall@K    = hits(K) / min(K, |T|)           (normalised: 1 is reachable)
 *   NDCG@K      = sum_{i<=K, R_i in T} 1/log2(i+1) / sum_{i<=min(K,|T|)} 1/log2(i+1)
 *   AP@K        = sum_{i<=K, R_i in T} hits(i)/i / min(K, |T|)
 *   hit@K       = [hits(K) > 0]
 *   AUC         = P(score(t) > score(c)) over t in T, c in C \ T, ties 1/2
 * and over users: means with 95% confidence intervals (normal approximation),
 * catalogue coverage@K = |union of R[1..K]| / n.
 */
#include "eval.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "baseline.h"
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
    st_als_gram(m->V, m->segments, k, f->G);
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
    return st_als_foldin(m->k, m->V, f->G, lam, idx, f->cm1, nnz, x, f->scratch);
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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Appends test (sorted, deduplicated, without the sorted seen[0..nseen))
 * after the current user's test list; returns how many were kept. */
static uint32_t append_test(st_eval_set *s, const uint32_t *seen, uint64_t nseen, const uint32_t *test,
                            uint32_t ntest)
{
    uint32_t *out = s->test + s->test_ptr[s->users];
    memcpy(out, test, ntest * sizeof *out);
    qsort(out, ntest, sizeof *out, cmp_u32);
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

/* ---- metric kernels ----------------------------------------------------------- */

const char *st_metric_name(int metric)
{
    static const char *names[ST_NMETRICS] = {"precision", "recall", "ndcg", "map", "hit"};
    return metric >= 0 && metric < ST_NMETRICS ? names[metric] : "?";
}

const char *st_rank_name(st_rank_kind r)
{
    switch (r) {
    case ST_RANK_MODEL: return "model";
    case ST_RANK_POPULARITY: return "popularity";
    case ST_RANK_RANDOM: return "random";
    case ST_RANK_KNN: return "item-knn";
    case ST_RANK_EASE: return "ease";
    }
    return "?";
}

static int in_list(uint32_t x, const uint32_t *a, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (a[i] == x) return 1;
    return 0;
}

void st_eval_metrics_ref(const uint32_t *ranked, uint32_t ncand, const uint32_t *test, uint32_t ntest,
                         const uint32_t *ks, uint32_t nk, double *out)
{
    for (uint32_t j = 0; j < nk; j++) {
        uint32_t K = ks[j], top = K < ncand ? K : ncand, norm = K < ntest ? K : ntest;
        double hits = 0, dcg = 0, idcg = 0, ap = 0;
        for (uint32_t i = 0; i < top; i++) {
            if (!in_list(ranked[i], test, ntest)) continue;
            hits += 1;
            dcg += 1.0 / log2((double)i + 2.0);
            /* precision at this position, counted again from the start */
            double h = 0;
            for (uint32_t q = 0; q <= i; q++) h += in_list(ranked[q], test, ntest);
            ap += h / (i + 1);
        }
        for (uint32_t i = 0; i < norm; i++) idcg += 1.0 / log2((double)i + 2.0);
        double *o = out + (size_t)j * ST_NMETRICS;
        o[ST_M_PRECISION] = hits / K;
        o[ST_M_RECALL] = norm ? hits / norm : 0;
        o[ST_M_NDCG] = idcg > 0 ? dcg / idcg : 0;
        o[ST_M_MAP] = norm ? ap / norm : 0;
        o[ST_M_HIT] = hits > 0 ? 1 : 0;
    }
}

void st_eval_metrics(const uint32_t *top, uint32_t ntop, const uint8_t *is_test, uint32_t ntest, const uint32_t *ks,
                     uint32_t nk, double *out)
{
    double hits = 0, dcg = 0, ap = 0, idcg = 0;
    uint32_t j = 0, kmax = ks[nk - 1];
    for (uint32_t i = 0; i < kmax && j < nk; i++) {
        double disc = 1.0 / log2((double)i + 2.0);
        if (i < ntest) idcg += disc;
        if (i < ntop && is_test[top[i]]) {
            hits += 1;
            dcg += disc;
            ap += hits / (i + 1);
        }
        for (; j < nk && ks[j] == i + 1; j++) {
            uint32_t norm = ks[j] < ntest ? ks[j] : ntest;
            double *o = out + (size_t)j * ST_NMETRICS;
            o[ST_M_PRECISION] = hits / ks[j];
            o[ST_M_RECALL] = norm ? hits / norm : 0;
            o[ST_M_NDCG] = idcg > 0 ? dcg / idcg : 0;
            o[ST_M_MAP] = norm ? ap / norm : 0;
            o[ST_M_HIT] = hits > 0 ? 1 : 0;
        }
    }
}

double st_eval_auc_ref(const float *scores, uint32_t n, const uint32_t *seen, uint32_t nseen, const uint32_t *test,
                       uint32_t ntest)
{
    double wins = 0, pairs = 0;
    for (uint32_t a = 0; a < ntest; a++) {
        for (uint32_t c = 0; c < n; c++) {
            if (in_list(c, seen, nseen) || in_list(c, test, ntest)) continue;
            float st = scores[test[a]], sc = scores[c];
            wins += st > sc ? 1.0 : st == sc ? 0.5 : 0.0;
            pairs += 1;
        }
    }
    return pairs > 0 ? wins / pairs : NAN;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

double st_eval_auc(const float *scores, uint32_t n, const uint32_t *seen, uint32_t nseen, const uint32_t *test,
                   uint32_t ntest, uint8_t *mark, float *scratch)
{
    if (ntest == 0) return NAN;
    for (uint32_t i = 0; i < nseen; i++) mark[seen[i]] = 1;
    for (uint32_t i = 0; i < ntest; i++) {
        mark[test[i]] = 1;
        scratch[i] = scores[test[i]];
    }
    qsort(scratch, ntest, sizeof *scratch, cmp_float);
    /* For each other candidate with score v: held-out scores above v win,
     * equal ones tie. Binary searches in the sorted held-out scores. */
    double wins = 0;
    uint64_t negatives = 0;
    for (uint32_t c = 0; c < n; c++) {
        if (mark[c]) continue;
        float v = scores[c];
        uint32_t lo = 0, hi = ntest; /* first index with scratch > v */
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (scratch[mid] > v) hi = mid;
            else lo = mid + 1;
        }
        uint32_t above = ntest - lo, eq = 0;
        for (uint32_t q = lo; q-- > 0 && scratch[q] == v;) eq++;
        wins += above + 0.5 * eq;
        negatives++;
    }
    for (uint32_t i = 0; i < nseen; i++) mark[seen[i]] = 0;
    for (uint32_t i = 0; i < ntest; i++) mark[test[i]] = 0;
    return negatives ? wins / ((double)negatives * ntest) : NAN;
}

/* ---- the ranking pass ------------------------------------------------------- */

/* Users per block: one sgemm of B x k by k x n; B x n scores must stay small. */
static uint32_t block_users(uint32_t n)
{
    uint64_t b = (2u << 20) / (n ? n : 1);
    return b < 4 ? 4 : b > 64 ? 64 : (uint32_t)b;
}

typedef struct {
    const st_eval_set *s;
    const st_ranker *r;
    uint32_t n, nk, kmax, B;
    const uint32_t *ks;
    const uint32_t *sel;
    uint32_t nsel;
    st_eval_run *out;      /* NULL: score only */
    st_eval_samples *samples; /* sampling pass: not NULL */
    float *scores_out;     /* scores pass: not NULL, one row per selected user */
    const uint64_t *sample_off;
    uint32_t negatives;
    uint64_t seed;
    char *scratch;
    size_t per_thread;
    /* The prior-weight grid pass: each user's scores once, then the metric
     * at ks[grid_ki] for every weight (grid_values: e x ngrid). */
    const double *grid;
    uint32_t ngrid, grid_ki;
    int grid_metric;
    double *grid_values;
    uint32_t grid_m;         /* candidates per user from each side (grid_user) */
    const uint32_t *grid_pidx; /* the grid_np segments with the highest prior, best first */
    uint32_t grid_np;
    float grid_qm;           /* the grid_m-th highest prior, -inf when there are fewer segments */
} pass_ctx;

/* Fills S (b x n) with the ranker's scores of users sel[0..b). */
static void score_block(const pass_ctx *c, const uint32_t *sel, uint32_t b, float *Xb, float *S)
{
    const st_ranker *r = c->r;
    uint32_t n = c->n, k = c->s->k;
    switch (r->kind) {
    case ST_RANK_MODEL:
        for (uint32_t i = 0; i < b; i++) memcpy(Xb + (size_t)i * k, c->s->X + (size_t)sel[i] * k, k * sizeof *Xb);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)b, (blasint)n, (blasint)k, 1.0f, Xb,
                    (blasint)k, r->V, (blasint)k, 0.0f, S, (blasint)n);
        if (r->prior && r->prior_weight != 0) {
            float w = (float)r->prior_weight;
            for (uint32_t i = 0; i < b; i++) {
                float *row = S + (size_t)i * n;
                for (uint32_t s = 0; s < n; s++) row[s] += w * r->prior[s];
            }
        }
        break;
    case ST_RANK_POPULARITY:
        for (uint32_t i = 0; i < b; i++) memcpy(S + (size_t)i * n, r->popularity, n * sizeof *S);
        break;
    case ST_RANK_RANDOM:
        for (uint32_t i = 0; i < b; i++) {
            st_rng g = st_rng_for(r->seed, sel[i]);
            float *row = S + (size_t)i * n;
            for (uint32_t s = 0; s < n; s++) row[s] = (float)st_rng_uniform(&g);
        }
        break;
    case ST_RANK_KNN:
    case ST_RANK_EASE:
        /* The user's excluded segments are its history: the training
         * segments of a known user, the folded-in ones of a cold user. */
        for (uint32_t i = 0; i < b; i++) {
            const st_eval_set *s = c->s;
            const uint32_t *seen = s->seen + s->seen_ptr[sel[i]];
            uint64_t ns = s->seen_ptr[sel[i] + 1] - s->seen_ptr[sel[i]];
            float *row = S + (size_t)i * n;
            if (r->kind == ST_RANK_KNN) st_knn_score(r->knn, seen, ns, row);
            else st_ease_score(r->ease, seen, ns, row);
        }
        break;
    }
}

/* Draws up to c->negatives other candidates of user e into the sample. */
static void sample_user(const pass_ctx *c, uint32_t e, const float *row, uint8_t *mark)
{
    const st_eval_set *s = c->s;
    st_eval_samples *x = c->samples;
    uint64_t o = c->sample_off[e];
    const uint32_t *test = s->test + s->test_ptr[e], *seen = s->seen + s->seen_ptr[e];
    uint32_t nt = (uint32_t)(s->test_ptr[e + 1] - s->test_ptr[e]);
    uint64_t ns = s->seen_ptr[e + 1] - s->seen_ptr[e];
    for (uint32_t i = 0; i < nt; i++) {
        x->score[o] = row[test[i]];
        x->label[o] = 1;
        x->weight[o++] = 1.0;
        mark[test[i]] = 1;
    }
    for (uint64_t i = 0; i < ns; i++) mark[seen[i]] = 1;
    uint64_t cand = c->n - ns - nt, want = cand < c->negatives ? cand : c->negatives;
    double w = want ? (double)cand / (double)want : 0;
    st_rng g = st_rng_for(c->seed, e);
    if (want == cand) {
        for (uint32_t q = 0; q < c->n; q++) {
            if (mark[q]) continue;
            x->score[o] = row[q];
            x->label[o] = 0;
            x->weight[o++] = w;
        }
    } else {
        /* Rejection: at most half the candidates are ever drawn, so each try
         * succeeds with probability >= cand / (2 n); bounded by 64 n tries. */
        uint64_t got = 0;
        for (uint64_t tries = 0; got < want && tries < 64ull * c->n; tries++) {
            uint32_t q = (uint32_t)st_rng_below(&g, c->n);
            if (mark[q]) continue;
            mark[q] = 2;
            x->score[o] = row[q];
            x->label[o] = 0;
            x->weight[o++] = w;
            got++;
        }
        if (got < want) /* not with the bound above, but keep the weights honest */
            for (uint64_t i = c->sample_off[e] + nt; i < o; i++) x->weight[i] = (double)cand / (double)got;
        for (uint32_t q = 0; q < c->n && got > 0; q++)
            if (mark[q] == 2) {
                mark[q] = 0;
                got--;
            }
    }
    for (uint32_t i = 0; i < nt; i++) mark[test[i]] = 0;
    for (uint64_t i = 0; i < ns; i++) mark[seen[i]] = 0;
    /* Unused slots (none when the draw completed) keep weight 0. */
    for (; o < c->sample_off[e + 1]; o++) {
        x->score[o] = 0;
        x->label[o] = 0;
        x->weight[o] = 0;
    }
}

/* The prior-weight grid for one user: its metric at every weight, from its
 * scores row (seen excluded). The blend is added exactly as score_block adds
 * it. Rather than a pass over all n segments per weight, the candidates are
 * the user's best M by the model and the M segments with the highest prior
 * (in segment order, so ties break as a full pass breaks them): any other
 * segment scores at most a_M + w q_M (a_M, q_M the M-th best of each, float
 * rounding being monotone), so when that is below the K-th best candidate
 * the candidates' top K is the full top K; otherwise the full pass runs.
 * mark: n bytes, zero on entry and return; cand: 2M + M entries. */
static void grid_user(const pass_ctx *c, uint32_t e, const float *row, const uint32_t *seen, uint64_t ns,
                      const uint32_t *test, uint32_t nt, uint8_t *mark, float *sc, uint32_t *topi, float *topsc,
                      uint32_t *cand)
{
    uint32_t n = c->n, kmax = c->kmax, M = c->grid_m, nc = 0;
    const float *prior = c->r->prior;
    float *best = (float *)(cand + 2 * M);
    uint32_t na = st_topk(row, n, M, seen, ns, cand, best);
    float a_m = na == M ? best[M - 1] : -INFINITY; /* fewer: every unseen segment is a candidate */
    for (uint32_t i = 0; i < na; i++) mark[cand[i]] = 2;
    for (uint64_t i = 0; i < ns; i++) mark[seen[i]] |= 4;
    nc = na;
    for (uint32_t i = 0; i < c->grid_np; i++)
        if (!mark[c->grid_pidx[i]]) cand[nc++] = c->grid_pidx[i];
    for (uint64_t i = 0; i < ns; i++) mark[seen[i]] = 0;
    for (uint32_t i = 0; i < na; i++) mark[cand[i]] = 0;
    for (uint32_t i = 1; i < nc; i++) /* insertion sort: segment order */
        for (uint32_t j = i; j > 0 && cand[j - 1] > cand[j]; j--) {
            uint32_t t = cand[j];
            cand[j] = cand[j - 1];
            cand[j - 1] = t;
        }
    double m[ST_EVAL_MAXK * ST_NMETRICS];
    for (uint32_t q = 0; q < nt; q++) mark[test[q]] = 1;
    for (uint32_t g = 0; g < c->ngrid; g++) {
        float w = (float)c->grid[g];
        for (uint32_t i = 0; i < nc; i++) sc[i] = w != 0 ? row[cand[i]] + w * prior[cand[i]] : row[cand[i]];
        uint32_t got = st_topk(sc, nc, kmax, NULL, 0, topi, topsc);
        float bound = w != 0 ? a_m + w * c->grid_qm : a_m;
        if (got == kmax && bound < topsc[kmax - 1]) {
            for (uint32_t i = 0; i < got; i++) topi[i] = cand[topi[i]];
        } else {
            for (uint32_t q = 0; q < n; q++) sc[q] = w != 0 ? row[q] + w * prior[q] : row[q];
            got = st_topk(sc, n, kmax, seen, ns, topi, topsc);
        }
        st_eval_metrics(topi, got, mark, nt, c->ks, c->nk, m);
        c->grid_values[(size_t)e * c->ngrid + g] = m[c->grid_ki * ST_NMETRICS + c->grid_metric];
    }
    for (uint32_t q = 0; q < nt; q++) mark[test[q]] = 0;
}

static void pass_task(void *vctx, uint64_t task, int thread)
{
    const pass_ctx *c = vctx;
    const st_eval_set *s = c->s;
    uint32_t n = c->n, k = s->k, B = c->B, kmax = c->kmax;
    uint32_t i0 = (uint32_t)task * B, b = c->nsel - i0 < B ? c->nsel - i0 : B;
    char *base = c->scratch + (size_t)thread * c->per_thread;
    float *S = (float *)base;
    float *Xb = S + (size_t)B * n;
    float *topsc = Xb + (size_t)B * k;
    float *aucs = topsc + kmax;
    uint32_t *topi = (uint32_t *)(aucs + n);
    uint8_t *mark = (uint8_t *)(topi + kmax);
    const uint32_t *sel = c->sel + i0;
    score_block(c, sel, b, Xb, S);
    if (c->scores_out) {
        memcpy(c->scores_out + (size_t)i0 * n, S, (size_t)b * n * sizeof *S);
        return;
    }
    for (uint32_t i = 0; i < b; i++) {
        uint32_t e = sel[i];
        const float *row = S + (size_t)i * n;
        if (c->samples) {
            sample_user(c, e, row, mark);
            continue;
        }
        const uint32_t *seen = s->seen + s->seen_ptr[e], *test = s->test + s->test_ptr[e];
        uint64_t ns = s->seen_ptr[e + 1] - s->seen_ptr[e];
        uint32_t nt = (uint32_t)(s->test_ptr[e + 1] - s->test_ptr[e]);
        if (c->grid) {
            grid_user(c, e, row, seen, ns, test, nt, mark, aucs, topi, topsc, (uint32_t *)(mark + st_align_up(n, 4)));
            continue;
        }
        uint32_t got = st_topk(row, n, kmax, seen, ns, topi, topsc);
        if (!c->out) continue;
        st_eval_run *out = c->out;
        uint32_t *dst = out->top + (size_t)e * kmax;
        for (uint32_t q = 0; q < kmax; q++) dst[q] = q < got ? topi[q] : ST_NOT_FOUND;
        for (uint32_t q = 0; q < nt; q++) mark[test[q]] = 1;
        st_eval_metrics(topi, got, mark, nt, c->ks, c->nk, out->metric + (size_t)e * c->nk * ST_NMETRICS);
        for (uint32_t q = 0; q < nt; q++) mark[test[q]] = 0;
        out->auc[e] = c->r->no_auc ? NAN : st_eval_auc(row, n, seen, (uint32_t)ns, test, nt, mark, aucs);
    }
}

/* Runs the pass over the selected users. */
static int run_pass(pass_ctx *c, const uint8_t *mask, int threads, char *err)
{
    const st_eval_set *s = c->s;
    uint32_t *sel = st_malloc(((size_t)s->users + 1) * sizeof *sel), nsel = 0;
    if (!sel) return st_seterr(err, "out of memory");
    for (uint32_t e = 0; e < s->users; e++)
        if (!mask || s->validation[e] == *mask) sel[nsel++] = e;
    c->sel = sel;
    c->nsel = nsel;
    c->B = block_users(c->n);
    if (threads < 1) threads = st_cpu_count();
    size_t floats = (size_t)c->B * c->n + (size_t)c->B * s->k + c->kmax + c->n;
    /* after the mark bytes: the grid's candidates (2M indices, M scores) */
    size_t grid = c->grid ? st_align_up(c->n, 4) - c->n + (size_t)c->grid_m * 12 : 0;
    c->per_thread = st_align_up(floats * 4 + (size_t)c->kmax * 4 + c->n + grid, 64);
    c->scratch = st_aligned_alloc(64, (size_t)threads * c->per_thread);
    if (!c->scratch) {
        st_free(sel);
        return st_seterr(err, "out of memory for scoring scratch (%zu MiB)", (size_t)threads * c->per_thread >> 20);
    }
    /* mark bytes must start at zero; the rest is written before it is read */
    for (int t = 0; t < threads; t++)
        memset(c->scratch + (size_t)t * c->per_thread + floats * 4 + (size_t)c->kmax * 4, 0, c->n);
    openblas_set_num_threads(1);
    uint64_t tasks = (nsel + c->B - 1) / c->B;
    st_parallel_run(threads, tasks, pass_task, c);
    st_free(c->scratch);
    st_free(sel);
    c->scratch = NULL;
    c->sel = NULL;
    return 0;
}

static int check_ks(const uint32_t *ks, uint32_t nk, char *err)
{
    if (nk < 1 || nk > ST_EVAL_MAXK) return st_seterr(err, "between 1 and %d cut-offs K", ST_EVAL_MAXK);
    for (uint32_t j = 0; j < nk; j++)
        if (ks[j] < 1 || ks[j] > 100000 || (j > 0 && ks[j] <= ks[j - 1]))
            return st_seterr(err, "cut-offs K must be ascending whole numbers between 1 and 100000");
    return 0;
}

void st_eval_run_free(st_eval_run *run)
{
    st_free(run->metric);
    st_free(run->auc);
    st_free(run->top);
    memset(run, 0, sizeof *run);
}

int st_eval_rank(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint32_t *ks, uint32_t nk,
                 const uint8_t *mask, int threads, st_eval_run *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (check_ks(ks, nk, err) != 0) return -1;
    uint32_t e = s->users, kmax = ks[nk - 1];
    out->users = e;
    out->nk = nk;
    out->kmax = kmax;
    out->n = n;
    memcpy(out->ks, ks, nk * sizeof *ks);
    out->metric = st_malloc(((size_t)e * nk * ST_NMETRICS + 1) * sizeof *out->metric);
    out->auc = st_malloc(((size_t)e + 1) * sizeof *out->auc);
    out->top = st_malloc(((size_t)e * kmax + 1) * sizeof *out->top);
    if (!out->metric || !out->auc || !out->top) {
        st_eval_run_free(out);
        return st_seterr(err, "out of memory for the results of %u users", e);
    }
    for (size_t i = 0; i < (size_t)e * nk * ST_NMETRICS; i++) out->metric[i] = NAN;
    for (uint32_t i = 0; i < e; i++) out->auc[i] = NAN;
    for (size_t i = 0; i < (size_t)e * kmax; i++) out->top[i] = ST_NOT_FOUND;
    pass_ctx c = {.s = s, .r = r, .n = n, .nk = nk, .kmax = kmax, .ks = ks, .out = out};
    double t0 = st_now();
    if (run_pass(&c, mask, threads, err) != 0) {
        st_eval_run_free(out);
        return -1;
    }
    out->seconds = st_now() - t0;
    out->ranked = c.nsel;
    return 0;
}

int st_eval_scores(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint8_t *mask, int threads,
                   float *out, char *err)
{
    uint32_t one = 1;
    pass_ctx c = {.s = s, .r = r, .n = n, .nk = 1, .kmax = 1, .ks = &one, .scores_out = out};
    return run_pass(&c, mask, threads, err);
}

int st_eval_score_only(const st_eval_set *s, const st_ranker *r, uint32_t n, uint32_t kmax, int threads,
                       double *seconds, char *err)
{
    pass_ctx c = {.s = s, .r = r, .n = n, .nk = 1, .kmax = kmax ? kmax : 1, .ks = &kmax};
    double t0 = st_now();
    if (run_pass(&c, NULL, threads, err) != 0) return -1;
    *seconds = st_now() - t0;
    return 0;
}

/* ---- summaries ---------------------------------------------------------------- */

st_stat st_stat_of(const double *x, uint64_t count, uint64_t stride, const uint8_t *sel, uint8_t want)
{
    st_stat st = {0, 0, 0};
    double sum = 0;
    uint64_t n = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (sel && sel[i] != want) continue;
        double v = x[i * stride];
        if (isnan(v)) continue;
        sum += v;
        n++;
    }
    if (n == 0) {
        st.mean = NAN;
        return st;
    }
    double mean = sum / n, ss = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (sel && sel[i] != want) continue;
        double v = x[i * stride];
        if (!isnan(v)) ss += (v - mean) * (v - mean);
    }
    st.mean = mean;
    st.count = (uint32_t)n;
    st.half = n > 1 ? 1.959963984540054 * sqrt(ss / (n - 1)) / sqrt((double)n) : 0;
    return st;
}

void st_eval_summarize(const st_eval_set *s, const st_eval_run *run, const uint8_t *mask, st_eval_summary *out)
{
    memset(out, 0, sizeof *out);
    out->nk = run->nk;
    memcpy(out->ks, run->ks, run->nk * sizeof *run->ks);
    const uint8_t *sel = mask ? s->validation : NULL;
    uint8_t want = mask ? *mask : 0;
    for (uint32_t j = 0; j < run->nk; j++)
        for (int q = 0; q < ST_NMETRICS; q++)
            out->m[j][q] = st_stat_of(run->metric + (size_t)j * ST_NMETRICS + q, run->users,
                                      (uint64_t)run->nk * ST_NMETRICS, sel, want);
    out->auc = st_stat_of(run->auc, run->users, 1, sel, want);
    out->users = out->m[0][0].count;
    uint8_t *hit = st_calloc(run->n ? run->n : 1, 1);
    if (!hit) {
        for (uint32_t j = 0; j < run->nk; j++) out->coverage[j] = NAN;
        return;
    }
    /* Coverage grows with K: add positions K_{j-1}..K_j each round. */
    uint64_t distinct = 0;
    uint32_t from = 0;
    for (uint32_t j = 0; j < run->nk; j++) {
        for (uint32_t e = 0; e < run->users; e++) {
            if (sel && sel[e] != want) continue;
            const uint32_t *top = run->top + (size_t)e * run->kmax;
            for (uint32_t q = from; q < run->ks[j]; q++) {
                uint32_t sg = top[q];
                if (sg == ST_NOT_FOUND) break;
                if (!hit[sg]) {
                    hit[sg] = 1;
                    distinct++;
                }
            }
        }
        from = run->ks[j];
        out->coverage[j] = run->n ? (double)distinct / run->n : 0;
    }
    st_free(hit);
}

uint32_t st_eval_segment_recall(const st_eval_set *s, const st_eval_run *run, const uint8_t *mask, uint32_t n,
                                uint32_t ki, uint32_t want, uint32_t *seg, uint32_t *users, double *recall,
                                char *err)
{
    uint32_t *count = st_calloc(n ? n : 1, sizeof *count), *hits = st_calloc(n ? n : 1, sizeof *hits);
    if (!count || !hits) {
        st_free(count);
        st_free(hits);
        st_seterr(err, "out of memory");
        return 0;
    }
    uint32_t K = run->ks[ki];
    for (uint32_t e = 0; e < s->users; e++) {
        if (mask && s->validation[e] != *mask) continue;
        const uint32_t *top = run->top + (size_t)e * run->kmax;
        for (uint64_t q = s->test_ptr[e]; q < s->test_ptr[e + 1]; q++) {
            uint32_t sg = s->test[q];
            count[sg]++;
            for (uint32_t i = 0; i < K && top[i] != ST_NOT_FOUND; i++)
                if (top[i] == sg) {
                    hits[sg]++;
                    break;
                }
        }
    }
    /* The `want` largest counts, ties by index: a small selection sort. */
    uint32_t got = 0;
    for (; got < want; got++) {
        uint32_t best = ST_NOT_FOUND;
        for (uint32_t sg = 0; sg < n; sg++)
            if (count[sg] > 0 && (best == ST_NOT_FOUND || count[sg] > count[best])) best = sg;
        if (best == ST_NOT_FOUND) break;
        seg[got] = best;
        users[got] = count[best];
        recall[got] = (double)hits[best] / count[best];
        count[best] = 0;
    }
    st_free(count);
    st_free(hits);
    return got;
}

/* ---- the popularity prior ------------------------------------------------------- */

const double st_prior_grid[] = {0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100};
const uint32_t st_prior_grid_len = sizeof st_prior_grid / sizeof st_prior_grid[0];

int st_eval_fit_prior(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint32_t *ks, uint32_t nk,
                      uint32_t ki, int metric, int threads, double *best, double *values, char *err)
{
    *best = 0;
    if (check_ks(ks, nk, err) != 0) return -1;
    uint32_t ng = st_prior_grid_len;
    double *gv = st_malloc(((size_t)s->users * ng + 1) * sizeof *gv);
    if (!gv) return st_seterr(err, "out of memory");
    for (size_t i = 0; i < (size_t)s->users * ng; i++) gv[i] = NAN;
    /* One scoring of every validation user; the weights only add w q. */
    st_ranker rr = *r;
    rr.prior_weight = 0;
    uint8_t one = 1;
    uint32_t k1 = ks[ki]; /* the metric's cut-off alone */
    pass_ctx c = {.s = s, .r = &rr, .n = n, .nk = 1, .kmax = k1, .ks = &k1, .grid = st_prior_grid, .ngrid = ng,
                  .grid_ki = 0, .grid_metric = metric, .grid_values = gv};
    if (!r->prior) {
        st_free(gv);
        return st_seterr(err, "no prior to fit a weight for");
    }
    /* grid_user's candidates: M from each side, a few times K */
    c.grid_m = 4 * k1 < 64 ? 64 : 4 * k1;
    if (c.grid_m > n) c.grid_m = n;
    uint32_t *pidx = st_malloc(((size_t)c.grid_m + 1) * sizeof *pidx);
    float *pq = st_malloc(((size_t)c.grid_m + 1) * sizeof *pq);
    if (!pidx || !pq) {
        st_free(pidx);
        st_free(pq);
        st_free(gv);
        return st_seterr(err, "out of memory");
    }
    c.grid_np = st_topk(r->prior, n, c.grid_m, NULL, 0, pidx, pq);
    c.grid_pidx = pidx;
    c.grid_qm = c.grid_np == c.grid_m && c.grid_m < n ? pq[c.grid_m - 1] : -INFINITY;
    int rc = run_pass(&c, &one, threads, err);
    st_free(pidx);
    st_free(pq);
    if (rc != 0) {
        st_free(gv);
        return -1;
    }
    double best_v = -INFINITY;
    for (uint32_t g = 0; g < ng; g++) {
        st_stat st = st_stat_of(gv + g, s->users, ng, s->validation, 1);
        double v = isnan(st.mean) ? -INFINITY : st.mean;
        if (values) values[g] = st.mean;
        if (v > best_v) {
            best_v = v;
            *best = st_prior_grid[g];
        }
    }
    st_free(gv);
    return 0;
}

/* ---- calibration ---------------------------------------------------------------- */

void st_eval_samples_free(st_eval_samples *x)
{
    st_free(x->score);
    st_free(x->label);
    st_free(x->weight);
    memset(x, 0, sizeof *x);
}

int st_eval_sample(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint8_t *mask, uint32_t negatives,
                   uint64_t seed, int threads, st_eval_samples *out, char *err)
{
    memset(out, 0, sizeof *out);
    uint64_t *off = st_malloc(((size_t)s->users + 1) * sizeof *off);
    if (!off) return st_seterr(err, "out of memory");
    off[0] = 0;
    for (uint32_t e = 0; e < s->users; e++) {
        uint64_t nt = s->test_ptr[e + 1] - s->test_ptr[e], ns = s->seen_ptr[e + 1] - s->seen_ptr[e];
        uint64_t cand = n - ns - nt, c = 0;
        if (!mask || s->validation[e] == *mask) c = nt + (cand < negatives ? cand : negatives);
        off[e + 1] = off[e] + c;
    }
    uint64_t total = off[s->users];
    out->score = st_malloc((total + 1) * sizeof *out->score);
    out->label = st_malloc(total + 1);
    out->weight = st_malloc((total + 1) * sizeof *out->weight);
    if (!out->score || !out->label || !out->weight) {
        st_free(off);
        st_eval_samples_free(out);
        return st_seterr(err, "out of memory for %llu samples", (unsigned long long)total);
    }
    out->count = out->cap = total;
    uint32_t one = 1;
    pass_ctx c = {.s = s, .r = r, .n = n, .nk = 1, .kmax = 1, .ks = &one, .samples = out, .sample_off = off,
                  .negatives = negatives, .seed = seed};
    int rc = run_pass(&c, mask, threads, err);
    st_free(off);
    if (rc != 0) st_eval_samples_free(out);
    return rc;
}

static double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)); }

/* Weighted negative log-likelihood of (a, b). */
static double nll(const st_eval_samples *x, double a, double b)
{
    double l = 0;
    for (uint64_t i = 0; i < x->count; i++) {
        if (x->weight[i] == 0) continue;
        double z = a * x->score[i] + b;
        /* log(1 + e^z) - y z, stable for large |z| */
        double sp = z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
        l += x->weight[i] * (sp - (x->label[i] ? z : 0));
    }
    return l;
}

int st_calib_fit(const st_eval_samples *x, double *a, double *b, char *err)
{
    double wp = 0, wn = 0;
    for (uint64_t i = 0; i < x->count; i++) {
        if (x->label[i]) wp += x->weight[i];
        else wn += x->weight[i];
    }
    if (wp <= 0 || wn <= 0) return st_seterr(err, "calibration needs held-out pairs and other candidates");
    double A = 0, Bb = log(wp / wn), L = nll(x, A, Bb);
    for (int it = 0; it < 100; it++) {
        /* gradient and Hessian of the NLL */
        double g0 = 0, g1 = 0, h00 = 0, h01 = 0, h11 = 0;
        for (uint64_t i = 0; i < x->count; i++) {
            double w = x->weight[i];
            if (w == 0) continue;
            double sc = x->score[i], p = sigmoid(A * sc + Bb), d = p - x->label[i], v = w * p * (1 - p);
            g0 += w * d * sc;
            g1 += w * d;
            h00 += v * sc * sc;
            h01 += v * sc;
            h11 += v;
        }
        h00 += 1e-9 * (h00 + 1);
        h11 += 1e-9 * (h11 + 1);
        double det = h00 * h11 - h01 * h01;
        if (!(det > 0)) break;
        double da = (h11 * g0 - h01 * g1) / det, db = (h00 * g1 - h01 * g0) / det;
        /* Step halving keeps every step downhill. */
        double step = 1, Ln = L;
        int moved = 0;
        for (int h = 0; h < 40; h++, step *= 0.5) {
            Ln = nll(x, A - step * da, Bb - step * db);
            if (Ln <= L) {
                moved = 1;
                break;
            }
        }
        if (!moved) break;
        A -= step * da;
        Bb -= step * db;
        double gain = L - Ln;
        L = Ln;
        if (gain <= 1e-12 * (fabs(L) + 1)) break;
    }
    *a = A;
    *b = Bb;
    return 0;
}

typedef struct {
    double p, w;
    uint8_t y;
} pred;

static int cmp_pred(const void *a, const void *b)
{
    const pred *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

int st_calib_reliability(const st_eval_samples *x, double a, double b, st_reliability *out, char *err)
{
    memset(out, 0, sizeof *out);
    out->bins = ST_CALIB_BINS;
    pred *p = st_malloc((x->count + 1) * sizeof *p);
    if (!p) return st_seterr(err, "out of memory");
    uint64_t np = 0;
    double total = 0;
    for (uint64_t i = 0; i < x->count; i++) {
        if (x->weight[i] == 0) continue;
        p[np].p = sigmoid(a * x->score[i] + b);
        p[np].w = x->weight[i];
        p[np].y = x->label[i];
        total += p[np].w;
        np++;
    }
    qsort(p, np, sizeof *p, cmp_pred);
    double cum = 0, sp[ST_CALIB_BINS] = {0}, sy[ST_CALIB_BINS] = {0};
    for (uint32_t q = 0; q < ST_CALIB_BINS; q++) {
        out->lo[q] = NAN;
        out->hi[q] = NAN;
    }
    /* Equal-weight bins by predicted probability: a run of equal
     * predictions goes, whole, to the bin of its weight midpoint. */
    for (uint64_t i = 0; i < np;) {
        uint64_t j = i;
        double gw = 0;
        for (; j < np && p[j].p == p[i].p; j++) gw += p[j].w;
        uint32_t q = (uint32_t)((cum + 0.5 * gw) / total * ST_CALIB_BINS);
        if (q >= ST_CALIB_BINS) q = ST_CALIB_BINS - 1;
        cum += gw;
        for (; i < j; i++) {
            if (isnan(out->lo[q])) out->lo[q] = p[i].p;
            out->hi[q] = p[i].p;
            out->weight[q] += p[i].w;
            sp[q] += p[i].w * p[i].p;
            sy[q] += p[i].y ? p[i].w : 0;
            out->positives[q] += p[i].y;
        }
    }
    double ece = 0;
    for (uint32_t q = 0; q < ST_CALIB_BINS; q++) {
        if (out->weight[q] > 0) {
            out->predicted[q] = sp[q] / out->weight[q];
            out->observed[q] = sy[q] / out->weight[q];
            ece += out->weight[q] * fabs(out->observed[q] - out->predicted[q]);
        }
    }
    out->ece = total > 0 ? ece / total : NAN;
    st_free(p);
    return 0;
}
