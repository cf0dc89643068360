/* segeval: LOOKALIKE and SIMILAR measured on engagement the model did not
 * train on (segeval.h has the definitions).
 *
 * Both questions are about segments, so the unit here is a segment, not a
 * user: a segment's training users come from the model's history, its
 * held-out users from the evaluation set's held-out pairs (LOOKALIKE: known
 * users only; SIMILAR: a cold user's fold-in pairs too). Segments are
 * evaluated on threads, one task each; every random choice is a hash of
 * (segment, user, seed), so the figures do not depend on the thread count.
 */
#include "segeval.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "als.h"
#include "lookalike.h"
#include "score.h"
#include "util.h"

void st_segeval_opts_default(st_segeval_opts *o)
{
    o->seed_share = 0.1;
    o->min_users = 20;
    o->min_targets = 5;
    o->max_segments = 200;
    o->seed = 42;
    o->threads = 0;
}

const char *st_lal_name(int r)
{
    static const char *names[ST_LAL_RANKERS] = {"model", "most active", "co-occurrence"};
    return r >= 0 && r < ST_LAL_RANKERS ? names[r] : "?";
}

const char *st_sim_name(int r)
{
    static const char *names[ST_SIM_RANKERS] = {"model", "factor cosine", "popularity"};
    return r >= 0 && r < ST_SIM_RANKERS ? names[r] : "?";
}

/* A CSR of one side's members per segment. */
typedef struct {
    uint64_t *ptr; /* n + 1 */
    uint32_t *idx;
} members;

static void members_free(members *x)
{
    st_free(x->ptr);
    st_free(x->idx);
}

/* From pairs (row r has cols idx[ptr[r]..ptr[r+1])) to segment -> rows. keep
 * filters rows (NULL: all). */
static int transpose_rows(uint32_t rows, uint32_t n, const uint64_t *ptr, const uint32_t *idx, const uint8_t *keep,
                          members *out, char *err)
{
    out->ptr = st_calloc((size_t)n + 2, sizeof *out->ptr);
    out->idx = st_malloc((ptr[rows] + 1) * sizeof *out->idx);
    if (!out->ptr || !out->idx) {
        members_free(out);
        return st_seterr(err, "out of memory");
    }
    for (uint32_t r = 0; r < rows; r++)
        if (!keep || keep[r])
            for (uint64_t q = ptr[r]; q < ptr[r + 1]; q++) out->ptr[idx[q] + 2]++;
    for (uint32_t s = 0; s < n; s++) out->ptr[s + 2] += out->ptr[s + 1];
    for (uint32_t r = 0; r < rows; r++)
        if (!keep || keep[r])
            for (uint64_t q = ptr[r]; q < ptr[r + 1]; q++) out->idx[out->ptr[idx[q] + 1]++] = r;
    return 0;
}

typedef struct {
    const st_model *m;
    const st_eval_set *set;
    const st_segeval_opts *o;
    members train;      /* segment -> model users with it in training */
    members held;       /* segment -> model users with it held out */
    uint64_t *unseen_ptr; /* set row -> the segments it engaged with that the model did not train on: */
    uint32_t *unseen;     /* a known user's held-out ones, a cold user's fold-in and held-out ones */
    members unseen_by;  /* segment -> rows of set with it in unseen */
    uint32_t *active_order; /* model users by training activity, most first */
    float *norms;       /* n */
    float *G;           /* k x k: V^T V, for SIMILAR's fold-in */
    float *GU;          /* k x k: U^T U, for LOOKALIKE's seed solve */
    float *q;           /* n: the prior */
    float *pop;         /* n: popularity, for SIMILAR's baseline */
    uint32_t *lal_seg, nlal, *sim_seg, nsim;
    double *lal_r1, *lal_r10; /* nlal x ST_LAL_RANKERS: held-out targets */
    double *lal_m1, *lal_m10; /* nlal x ST_LAL_RANKERS: the segment's other members */
    double *lal_nseeds, *lal_ntargets, *lal_nmembers;
    double *sim_ov;     /* nsim x ST_SIM_RANKERS */
    double *sim_diff;   /* nsim: the model's overlap minus one ranker's */
    char *scratch;
    size_t per_thread;
    atomic_int oom;     /* a seed solve ran out of memory: the run fails */
} seg_ctx;

/* Is user u a seed of segment s: a hash of (s, u, seed) below the share. */
static int is_seed(uint64_t seed, uint32_t s, uint32_t u, double share)
{
    uint64_t h = seed ^ ((uint64_t)s * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)u * 0xc2b2ae3d27d4eb4fULL);
    return (double)(st_splitmix64(&h) >> 11) * 0x1.0p-53 < share;
}

/* Recall of the first `want` of ranked among the targets (marked). */
static double recall_of(const uint32_t *ranked, uint32_t got, const uint8_t *target, uint32_t ntargets)
{
    uint32_t hits = 0;
    for (uint32_t i = 0; i < got; i++) hits += target[ranked[i]];
    return ntargets ? (double)hits / ntargets : NAN;
}

/* A look-alike task's buffers (per thread). */
typedef struct {
    float *score, *top, *seedcount;
    uint32_t *idx, *seeds;
    uint8_t *target, *excl;
} lal_scratch;

/* Ranks the candidates (excl[u] == 0) by the three rankers from the seeds
 * and writes each one's recall of the targets (target[u] == 1, ntargets of
 * them) at N = ntargets into r1 and N = 10 ntargets into r10. */
static void rank_lookalike(seg_ctx *c, const lal_scratch *x, uint32_t nseeds, uint32_t ntargets, double *r1,
                           double *r10)
{
    const st_model *m = c->m;
    uint32_t mu = m->users, want1 = ntargets, want10 = ntargets * 10 < mu ? ntargets * 10 : mu;
    /* model: LOOKALIKE as served, non-candidates masked out. */
    if (st_lookalike_scores(m, c->GU, x->seeds, nseeds, x->score) < 0) atomic_store(&c->oom, 1);
    for (uint32_t u = 0; u < mu; u++)
        if (x->excl[u]) x->score[u] = NAN;
    uint32_t got = st_topk(x->score, mu, want10, NULL, 0, x->idx, x->top);
    r1[ST_LAL_MODEL] = recall_of(x->idx, got < want1 ? got : want1, x->target, ntargets);
    r10[ST_LAL_MODEL] = recall_of(x->idx, got, x->target, ntargets);
    /* most active: one order for every segment, candidates only. */
    got = 0;
    uint32_t got1 = 0;
    for (uint32_t i = 0; i < mu && got < want10; i++) {
        uint32_t u = c->active_order[i];
        if (x->excl[u]) continue;
        x->idx[got++] = u;
        if (got == want1) got1 = got;
    }
    if (got < want1) got1 = got;
    r1[ST_LAL_ACTIVE] = recall_of(x->idx, got1, x->target, ntargets);
    r10[ST_LAL_ACTIVE] = recall_of(x->idx, got, x->target, ntargets);
    /* co-occurrence: the seeds holding each of a candidate's training
     * segments (the segment itself counted as 0), / sqrt(|H(u)|). */
    for (uint32_t u = 0; u < mu; u++) {
        if (x->excl[u]) {
            x->score[u] = NAN;
            continue;
        }
        double sum = 0;
        uint64_t a = m->hist_ptr[u], b = m->hist_ptr[u + 1];
        for (uint64_t q = a; q < b; q++) sum += x->seedcount[m->hist_idx[q]];
        x->score[u] = b > a ? (float)(sum / sqrt((double)(b - a))) : 0.0f;
    }
    got = st_topk(x->score, mu, want10, NULL, 0, x->idx, x->top);
    r1[ST_LAL_COOC] = recall_of(x->idx, got < want1 ? got : want1, x->target, ntargets);
    r10[ST_LAL_COOC] = recall_of(x->idx, got, x->target, ntargets);
}

/* One segment's look-alike figures, under both protocols (segeval.h). */
static void lookalike_task(seg_ctx *c, uint32_t li, int thread)
{
    const st_model *m = c->m;
    uint32_t mu = m->users, s = c->lal_seg[li];
    char *base = c->scratch + (size_t)thread * c->per_thread;
    lal_scratch x;
    x.score = (float *)base;
    x.idx = (uint32_t *)(x.score + mu + m->k);
    x.top = (float *)(x.idx + mu);
    x.seeds = (uint32_t *)(x.top + mu);
    x.seedcount = (float *)(x.seeds + mu);
    x.target = (uint8_t *)(x.seedcount + m->segments);
    x.excl = x.target + mu;
    const uint32_t *tr = c->train.idx + c->train.ptr[s];
    uint64_t ntr = c->train.ptr[s + 1] - c->train.ptr[s];
    uint32_t nseeds = 0;
    for (uint64_t q = 0; q < ntr; q++)
        if (is_seed(c->o->seed, s, tr[q], c->o->seed_share)) x.seeds[nseeds++] = tr[q];
    if (nseeds == 0) x.seeds[nseeds++] = tr[(size_t)(c->o->seed % ntr)];
    memset(x.seedcount, 0, (size_t)m->segments * sizeof *x.seedcount);
    for (uint32_t i = 0; i < nseeds; i++)
        for (uint64_t q = m->hist_ptr[x.seeds[i]]; q < m->hist_ptr[x.seeds[i] + 1]; q++)
            x.seedcount[m->hist_idx[q]] += 1;
    x.seedcount[s] = 0;
    /* Held out: the targets are the users who engaged with s in held-out
     * events only; the candidates, users without s in training. */
    uint32_t ntargets = 0;
    for (uint64_t q = c->held.ptr[s]; q < c->held.ptr[s + 1]; q++) {
        uint32_t u = c->held.idx[q];
        if (!x.target[u]) ntargets++;
        x.target[u] = 1;
    }
    for (uint64_t q = 0; q < ntr; q++) x.excl[tr[q]] = 1;
    rank_lookalike(c, &x, nseeds, ntargets, c->lal_r1 + (size_t)li * ST_LAL_RANKERS,
                   c->lal_r10 + (size_t)li * ST_LAL_RANKERS);
    for (uint64_t q = c->held.ptr[s]; q < c->held.ptr[s + 1]; q++) x.target[c->held.idx[q]] = 0;
    for (uint64_t q = 0; q < ntr; q++) x.excl[tr[q]] = 0;
    /* Members: the targets are the segment's other training users, every
     * user but the seeds a candidate (the model has seen the targets with s). */
    for (uint64_t q = 0; q < ntr; q++) x.target[tr[q]] = 1;
    for (uint32_t i = 0; i < nseeds; i++) {
        x.target[x.seeds[i]] = 0;
        x.excl[x.seeds[i]] = 1;
    }
    uint32_t nmembers = (uint32_t)ntr - nseeds;
    if (nmembers > 0)
        rank_lookalike(c, &x, nseeds, nmembers, c->lal_m1 + (size_t)li * ST_LAL_RANKERS,
                       c->lal_m10 + (size_t)li * ST_LAL_RANKERS);
    else
        for (int r = 0; r < ST_LAL_RANKERS; r++) c->lal_m1[(size_t)li * ST_LAL_RANKERS + r] = c->lal_m10[(size_t)li * ST_LAL_RANKERS + r] = NAN;
    for (uint64_t q = 0; q < ntr; q++) x.target[tr[q]] = 0;
    for (uint32_t i = 0; i < nseeds; i++) x.excl[x.seeds[i]] = 0;
    c->lal_nseeds[li] = nseeds;
    c->lal_ntargets[li] = ntargets;
    c->lal_nmembers[li] = nmembers;
}

/* The 10 segments most co-engaged with s in the engagement the model did not
 * train on (cosine of those user sets, at least 2 users in common; equal
 * cosines by segment index), into truth; how many. */
static uint32_t similar_truth(const seg_ctx *c, uint32_t s, float *co, uint32_t *touched, uint32_t *truth)
{
    uint32_t nt = 0, n = c->m->segments;
    for (uint64_t q = c->unseen_by.ptr[s]; q < c->unseen_by.ptr[s + 1]; q++) {
        uint32_t e = c->unseen_by.idx[q];
        for (uint64_t p = c->unseen_ptr[e]; p < c->unseen_ptr[e + 1]; p++) {
            uint32_t t = c->unseen[p];
            if (co[t] == 0) touched[nt++] = t;
            co[t] += 1;
        }
    }
    double ns = (double)(c->unseen_by.ptr[s + 1] - c->unseen_by.ptr[s]);
    /* Score the touched segments into a compact list in segment order (so
     * st_topk's lower index first is the lower segment), then the top 10. */
    qsort(touched, nt, sizeof *touched, st_cmp_u32);
    uint32_t keep = 0;
    for (uint32_t i = 0; i < nt; i++) {
        uint32_t t = touched[i];
        double nt2 = (double)(c->unseen_by.ptr[t + 1] - c->unseen_by.ptr[t]);
        float v = co[t] >= 2 && t != s ? (float)(co[t] / sqrt(ns * nt2)) : NAN;
        co[t] = 0;
        if (!isnan(v)) {
            touched[keep] = t;
            co[n + keep] = v; /* the values live past the n counters */
            keep++;
        }
    }
    float top[10];
    uint32_t got = st_topk(co + n, keep, 10, NULL, 0, truth, top);
    for (uint32_t i = 0; i < got; i++) truth[i] = touched[truth[i]];
    for (uint32_t i = 0; i < keep; i++) co[n + i] = 0;
    return got;
}

static double overlap(const uint32_t *a, uint32_t na, const uint32_t *truth, uint32_t nt)
{
    uint32_t hits = 0;
    for (uint32_t i = 0; i < na; i++)
        for (uint32_t j = 0; j < nt; j++) hits += a[i] == truth[j];
    return nt ? (double)hits / nt : NAN;
}

static void similar_task(seg_ctx *c, uint32_t si, int thread)
{
    const st_model *m = c->m;
    uint32_t n = m->segments, s = c->sim_seg[si];
    char *base = c->scratch + (size_t)thread * c->per_thread;
    float *co = (float *)base; /* 2n, zero between uses */
    uint32_t *touched = (uint32_t *)(co + 2 * (size_t)n);
    float *score = (float *)(touched + n);
    uint32_t truth[10], idx[10];
    float top[10];
    memset(co, 0, 2 * (size_t)n * sizeof *co); /* a look-alike task may have used the scratch */
    uint32_t nt = similar_truth(c, s, co, touched, truth);
    double *ov = c->sim_ov + (size_t)si * ST_SIM_RANKERS;
    if (nt == 0) {
        for (int r = 0; r < ST_SIM_RANKERS; r++) ov[r] = NAN;
        return;
    }
    uint32_t got = st_score_similar(m, c->G, c->q, s, 10, score, score + n, idx, top);
    ov[ST_SIM_MODEL] = overlap(idx, got, truth, nt);
    st_score_all_segments(m, m->V + (size_t)s * m->k, score);
    for (uint32_t t = 0; t < n; t++) {
        float d = c->norms[s] * c->norms[t];
        score[t] = d > 0 ? score[t] / d : 0.0f;
    }
    got = st_topk(score, n, 10, &s, 1, idx, top);
    ov[ST_SIM_COSINE] = overlap(idx, got, truth, nt);
    got = st_topk(c->pop, n, 10, &s, 1, idx, top);
    ov[ST_SIM_POPULARITY] = overlap(idx, got, truth, nt);
}

static void seg_task(void *vctx, uint64_t task, int thread)
{
    seg_ctx *c = vctx;
    if (task < c->nlal) lookalike_task(c, (uint32_t)task, thread);
    else similar_task(c, (uint32_t)(task - c->nlal), thread);
}

typedef struct {
    uint64_t key;
    uint32_t s;
} keyed;

static int cmp_keyed_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->s < y->s ? -1 : x->s > y->s;
}

/* The segments meeting the bounds (held: LOOKALIKE's held-out users or
 * SIMILAR's unseen_by), the most such users first, at most max. */
static uint32_t choose_segments(const seg_ctx *c, const members *held, int need_train, uint32_t *out)
{
    uint32_t n = c->m->segments, cnt = 0;
    keyed *k = st_malloc(((size_t)n + 1) * sizeof *k);
    if (!k) return 0;
    for (uint32_t s = 0; s < n; s++) {
        uint64_t ht = held->ptr[s + 1] - held->ptr[s], tt = c->train.ptr[s + 1] - c->train.ptr[s];
        if (ht < c->o->min_targets || (need_train && tt < c->o->min_users)) continue;
        k[cnt++] = (keyed){ht, s};
    }
    qsort(k, cnt, sizeof *k, cmp_keyed_desc);
    if (cnt > c->o->max_segments) cnt = c->o->max_segments;
    for (uint32_t i = 0; i < cnt; i++) out[i] = k[i].s;
    st_free(k);
    return cnt;
}

static int cmp_activity(const void *a, const void *b, void *ctx)
{
    const st_model *m = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uint64_t ax = m->hist_ptr[x + 1] - m->hist_ptr[x], ay = m->hist_ptr[y + 1] - m->hist_ptr[y];
    if (ax != ay) return ax > ay ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void ctx_free(seg_ctx *c)
{
    members_free(&c->train);
    members_free(&c->held);
    members_free(&c->unseen_by);
    st_free(c->unseen_ptr);
    st_free(c->unseen);
    st_free(c->active_order);
    st_free(c->norms);
    st_free(c->G);
    st_free(c->GU);
    st_free(c->q);
    st_free(c->pop);
    st_free(c->lal_seg);
    st_free(c->sim_seg);
    st_free(c->lal_r1);
    st_free(c->lal_r10);
    st_free(c->lal_m1);
    st_free(c->lal_m10);
    st_free(c->lal_nmembers);
    st_free(c->lal_nseeds);
    st_free(c->lal_ntargets);
    st_free(c->sim_ov);
    st_free(c->sim_diff);
    st_free(c->scratch);
}

/* The held-out pairs of known users as model-user rows: a CSR over model users. */
static int held_by_model_user(const st_eval_set *set, uint32_t mu, uint64_t **ptr, uint32_t **idx, char *err)
{
    *ptr = st_calloc((size_t)mu + 1, sizeof **ptr);
    *idx = st_malloc((set->test_ptr[set->users] + 1) * sizeof **idx);
    if (!*ptr || !*idx) return st_seterr(err, "out of memory");
    for (uint32_t e = 0; e < set->users; e++)
        if (set->model_user[e] != ST_NOT_FOUND) (*ptr)[set->model_user[e] + 1] += set->test_ptr[e + 1] - set->test_ptr[e];
    for (uint32_t u = 0; u < mu; u++) (*ptr)[u + 1] += (*ptr)[u];
    uint64_t *fill = st_malloc(((size_t)mu + 1) * sizeof *fill);
    if (!fill) return st_seterr(err, "out of memory");
    memcpy(fill, *ptr, (size_t)mu * sizeof *fill);
    for (uint32_t e = 0; e < set->users; e++) {
        uint32_t u = set->model_user[e];
        if (u == ST_NOT_FOUND) continue;
        for (uint64_t q = set->test_ptr[e]; q < set->test_ptr[e + 1]; q++) (*idx)[fill[u]++] = set->test[q];
    }
    st_free(fill);
    return 0;
}

/* Each row's engagement the model did not train on, as a CSR over the rows
 * of set: a known user's held-out segments; a cold user's fold-in segments
 * and held-out ones (the model has seen neither). */
static int unseen_rows(const st_eval_set *set, uint64_t **ptr, uint32_t **idx, char *err)
{
    uint64_t total = 0;
    for (uint32_t e = 0; e < set->users; e++) {
        total += set->test_ptr[e + 1] - set->test_ptr[e];
        if (set->model_user[e] == ST_NOT_FOUND) total += set->seen_ptr[e + 1] - set->seen_ptr[e];
    }
    *ptr = st_malloc(((size_t)set->users + 1) * sizeof **ptr);
    *idx = st_malloc((total + 1) * sizeof **idx);
    if (!*ptr || !*idx) return st_seterr(err, "out of memory");
    uint64_t at = 0;
    for (uint32_t e = 0; e < set->users; e++) {
        (*ptr)[e] = at;
        if (set->model_user[e] == ST_NOT_FOUND)
            for (uint64_t q = set->seen_ptr[e]; q < set->seen_ptr[e + 1]; q++) (*idx)[at++] = set->seen[q];
        for (uint64_t q = set->test_ptr[e]; q < set->test_ptr[e + 1]; q++) (*idx)[at++] = set->test[q];
    }
    (*ptr)[set->users] = at;
    return 0;
}

int st_segeval_why_empty(const st_segeval *g, int similar, char *out, size_t len)
{
    if ((similar ? g->sim_segments : g->lal_segments) > 0) return 0;
    if (similar)
        snprintf(out, len,
                 "no segment has %u users in the engagement the model did not train on and a segment with 2 of "
                 "them in common",
                 g->min_targets);
    else
        snprintf(out, len, "no segment has %u held-out users the model knows and %u training users%s", g->min_targets,
                 g->min_users,
                 g->sim_known_users ? ""
                                    : " (no known user has a held-out segment here: a users split holds out users "
                                      "the model never saw; a holdout split measures LOOKALIKE)");
    return 1;
}

static void summarise(seg_ctx *c, st_segeval *out)
{
    memset(out, 0, sizeof *out);
    out->min_users = c->o->min_users;
    out->min_targets = c->o->min_targets;
    out->lal_segments = c->nlal;
    out->sim_segments = c->nsim;
    for (int r = 0; r < ST_LAL_RANKERS; r++) {
        out->lal_recall[r] = st_stat_of(c->lal_r1 + r, c->nlal, ST_LAL_RANKERS, NULL, 0);
        out->lal_recall10[r] = st_stat_of(c->lal_r10 + r, c->nlal, ST_LAL_RANKERS, NULL, 0);
        out->lal_members[r] = st_stat_of(c->lal_m1 + r, c->nlal, ST_LAL_RANKERS, NULL, 0);
        out->lal_members10[r] = st_stat_of(c->lal_m10 + r, c->nlal, ST_LAL_RANKERS, NULL, 0);
    }
    for (uint32_t i = 0; i < c->nlal; i++) {
        out->lal_seeds += c->lal_nseeds[i] / c->nlal;
        out->lal_targets += c->lal_ntargets[i] / c->nlal;
        out->lal_members_n += c->lal_nmembers[i] / c->nlal;
    }
    for (int r = 0; r < ST_SIM_RANKERS; r++) {
        out->sim_overlap[r] = st_stat_of(c->sim_ov + r, c->nsim, ST_SIM_RANKERS, NULL, 0);
        for (uint32_t i = 0; i < c->nsim; i++)
            c->sim_diff[i] = c->sim_ov[(size_t)i * ST_SIM_RANKERS] - c->sim_ov[(size_t)i * ST_SIM_RANKERS + r];
        out->sim_gain[r] = st_stat_of(c->sim_diff, c->nsim, 1, NULL, 0);
    }
    for (uint32_t e = 0; e < c->set->users; e++)
        if (c->unseen_ptr[e + 1] > c->unseen_ptr[e]) {
            if (c->set->model_user[e] == ST_NOT_FOUND) out->sim_cold_users++;
            else out->sim_known_users++;
        }
    uint32_t with_truth = 0;
    for (uint32_t i = 0; i < c->nsim; i++) with_truth += !isnan(c->sim_ov[(size_t)i * ST_SIM_RANKERS]);
    out->sim_segments = with_truth;
}

int st_segeval_run(const st_model *m, const st_eval_set *set, const st_segeval_opts *o, st_segeval *out, char *err)
{
    seg_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.oom, 0);
    c.m = m;
    c.set = set;
    c.o = o;
    uint32_t mu = m->users, n = m->segments;
    int threads = o->threads > 0 ? o->threads : st_cpu_count();
    uint64_t *hptr = NULL;
    uint32_t *hidx = NULL;
    int rc = -1;
    if (transpose_rows(mu, n, m->hist_ptr, m->hist_idx, NULL, &c.train, err) != 0) goto done;
    if (held_by_model_user(set, mu, &hptr, &hidx, err) != 0) goto done;
    if (transpose_rows(mu, n, hptr, hidx, NULL, &c.held, err) != 0) goto done;
    if (unseen_rows(set, &c.unseen_ptr, &c.unseen, err) != 0) goto done;
    if (transpose_rows(set->users, n, c.unseen_ptr, c.unseen, NULL, &c.unseen_by, err) != 0) goto done;
    c.active_order = st_malloc(((size_t)mu + 1) * sizeof *c.active_order);
    c.norms = st_malloc(((size_t)n + 1) * sizeof *c.norms);
    c.G = st_malloc((size_t)m->k * m->k * sizeof *c.G);
    c.GU = st_malloc((size_t)m->k * m->k * sizeof *c.GU);
    c.q = st_malloc(((size_t)n + 1) * sizeof *c.q);
    c.pop = st_malloc(((size_t)n + 1) * sizeof *c.pop);
    c.lal_seg = st_malloc(((size_t)n + 1) * sizeof *c.lal_seg);
    c.sim_seg = st_malloc(((size_t)n + 1) * sizeof *c.sim_seg);
    if (!c.active_order || !c.norms || !c.G || !c.GU || !c.q || !c.pop || !c.lal_seg || !c.sim_seg ||
        st_lookalike_gram(m, c.GU) != 0) {
        st_seterr(err, "out of memory");
        goto done;
    }
    for (uint32_t u = 0; u < mu; u++) c.active_order[u] = u;
    qsort_r(c.active_order, mu, sizeof *c.active_order, cmp_activity, (void *)m);
    st_score_segment_norms(m, c.norms);
    if (st_model_gram(m, c.G) != 0) {
        st_seterr(err, "out of memory");
        goto done;
    }
    st_score_prior(m, c.q);
    for (uint32_t s = 0; s < n; s++) c.pop[s] = (float)(c.train.ptr[s + 1] - c.train.ptr[s]);
    c.nlal = choose_segments(&c, &c.held, 1, c.lal_seg);
    c.nsim = choose_segments(&c, &c.unseen_by, 0, c.sim_seg);
    c.lal_r1 = st_malloc(((size_t)c.nlal * ST_LAL_RANKERS + 1) * sizeof *c.lal_r1);
    c.lal_r10 = st_malloc(((size_t)c.nlal * ST_LAL_RANKERS + 1) * sizeof *c.lal_r10);
    c.lal_m1 = st_malloc(((size_t)c.nlal * ST_LAL_RANKERS + 1) * sizeof *c.lal_m1);
    c.lal_m10 = st_malloc(((size_t)c.nlal * ST_LAL_RANKERS + 1) * sizeof *c.lal_m10);
    c.lal_nmembers = st_malloc(((size_t)c.nlal + 1) * sizeof *c.lal_nmembers);
    c.lal_nseeds = st_malloc(((size_t)c.nlal + 1) * sizeof *c.lal_nseeds);
    c.lal_ntargets = st_malloc(((size_t)c.nlal + 1) * sizeof *c.lal_ntargets);
    c.sim_ov = st_malloc(((size_t)c.nsim * ST_SIM_RANKERS + 1) * sizeof *c.sim_ov);
    c.sim_diff = st_malloc(((size_t)c.nsim + 1) * sizeof *c.sim_diff);
    /* Per thread: look-alikes need score (m + k), idx, top, seeds (m each),
     * n seed counts, then target and excl bytes (m each); SIMILAR needs
     * 2n + n + n floats and the fold-in's work. */
    size_t lal = ((size_t)mu + m->k) * 4 + (size_t)mu * 12 + (size_t)n * 4 + 2 * (size_t)mu;
    size_t sim = (size_t)n * 16 + st_score_similar_scratch(m) * 4;
    c.per_thread = st_align_up(lal > sim ? lal : sim, 64);
    c.scratch = st_aligned_alloc(64, (size_t)threads * c.per_thread);
    if (!c.lal_r1 || !c.lal_r10 || !c.lal_m1 || !c.lal_m10 || !c.lal_nmembers || !c.lal_nseeds || !c.lal_ntargets || !c.sim_ov || !c.sim_diff ||
        !c.scratch) {
        st_seterr(err, "out of memory for the segment evaluation");
        goto done;
    }
    memset(c.scratch, 0, (size_t)threads * c.per_thread);
    st_parallel_run(threads, (uint64_t)c.nlal + c.nsim, seg_task, &c);
    if (atomic_load(&c.oom)) {
        st_seterr(err, "out of memory for LOOKALIKE's seed solve");
        goto done;
    }
    summarise(&c, out);
    if (out->lal_segments == 0 && out->sim_segments == 0) {
        st_seterr(err, "no segment has enough held-out users to evaluate LOOKALIKE or SIMILAR (at least %u held-out "
                       "and %u training users)",
                  o->min_targets, o->min_users);
        goto done;
    }
    rc = 0;
done:
    st_free(hptr);
    st_free(hidx);
    ctx_free(&c);
    return rc;
}
