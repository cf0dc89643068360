/* evaluate: one model's evaluation end to end, and the holdout of `train`
 * (evaluate.h says what each piece does).
 */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "rng.h"
#include "score.h"
#include "util.h"

const st_rank_kind st_ev_kind[ST_EV_RANKERS] = {ST_RANK_MODEL, ST_RANK_POPULARITY, ST_RANK_RANDOM, ST_RANK_KNN,
                                                 ST_RANK_EASE};

void st_evaluate_opts_baselines(st_evaluate_opts *o)
{
    o->baselines = ST_BASELINE_KNN | ST_BASELINE_EASE;
    o->knn_neighbours = ST_KNN_NEIGHBOURS;
    o->knn_shrink = ST_KNN_SHRINK;
    o->ease_lambda = 0;
    o->ease_max_segments = ST_EASE_MAX_SEGMENTS;
}

void st_evaluation_free(st_evaluation *r)
{
    for (int i = 0; i < ST_EV_RANKERS; i++) st_eval_run_free(&r->run[i]);
    st_free(r->prior);
    memset(r, 0, sizeof *r);
}

double st_evaluate_metric(const st_eval_summary *s, const st_evaluate_opts *o)
{
    return o->metric == ST_NMETRICS ? s->auc.mean : s->m[o->metric_ki][o->metric].mean;
}

/* The weighted histogram of test-user sample scores, held-out and other. */
static void score_histogram(const st_eval_samples *x, st_evaluation *r)
{
    double lo = INFINITY, hi = -INFINITY, wp = 0, wn = 0;
    for (uint64_t i = 0; i < x->count; i++) {
        if (x->weight[i] == 0) continue;
        if (x->score[i] < lo) lo = x->score[i];
        if (x->score[i] > hi) hi = x->score[i];
    }
    if (!(hi > lo)) hi = lo + 1;
    r->hist_lo = lo;
    r->hist_hi = hi;
    for (uint64_t i = 0; i < x->count; i++) {
        if (x->weight[i] == 0) continue;
        int b = (int)((x->score[i] - lo) / (hi - lo) * ST_REPORT_HIST_BINS);
        if (b >= ST_REPORT_HIST_BINS) b = ST_REPORT_HIST_BINS - 1;
        if (b < 0) b = 0;
        if (x->label[i]) {
            r->hist_pos[b] += 1;
            wp += 1;
        } else {
            r->hist_neg[b] += x->weight[i];
            wn += x->weight[i];
        }
    }
    for (int b = 0; b < ST_REPORT_HIST_BINS; b++) {
        r->hist_pos[b] = wp > 0 ? r->hist_pos[b] / wp : 0;
        r->hist_neg[b] = wn > 0 ? r->hist_neg[b] / wn : 0;
    }
}

/* Fits the strong baselines o asks for on m's training history and ranks the
 * test users with them. A baseline that cannot be fitted (EASE over too many
 * segments) is left out with the reason in r->why; only running out of
 * memory while ranking fails the evaluation. */
static int rank_baselines(const st_model *m, const st_eval_set *set, const st_evaluate_opts *o, st_evaluation *r,
                          char *err)
{
    st_history h = {.users = m->users, .segments = m->segments, .ptr = m->hist_ptr, .idx = m->hist_idx};
    uint8_t test = 0;
    if (o->baselines & ST_BASELINE_KNN) {
        st_knn knn;
        double t0 = st_now();
        if (st_knn_build(&h, o->knn_neighbours, o->knn_shrink, o->threads, &knn, r->why[ST_EV_KNN]) == 0) {
            r->build_seconds[ST_EV_KNN] = st_now() - t0;
            st_ranker rk = {.kind = ST_RANK_KNN, .knn = &knn};
            int rc = st_eval_rank(set, &rk, m->segments, o->ks, o->nk, &test, o->threads, &r->run[ST_EV_KNN], err);
            st_knn_free(&knn);
            if (rc != 0) return -1;
            st_eval_summarize(set, &r->run[ST_EV_KNN], &test, &r->sum[ST_EV_KNN]);
            r->ranked[ST_EV_KNN] = 1;
        }
    }
    if (o->baselines & ST_BASELINE_EASE) {
        st_ease ease;
        double t0 = st_now();
        if (st_ease_build(&h, o->ease_lambda, o->ease_max_segments, o->threads, &ease, r->why[ST_EV_EASE]) == 0) {
            r->build_seconds[ST_EV_EASE] = st_now() - t0;
            r->ease_lambda = ease.lambda;
            r->ease_segments = ease.active;
            st_ranker rk = {.kind = ST_RANK_EASE, .ease = &ease};
            int rc =
                st_eval_rank(set, &rk, m->segments, o->ks, o->nk, &test, o->threads, &r->run[ST_EV_EASE], err);
            st_ease_free(&ease);
            if (rc != 0) return -1;
            st_eval_summarize(set, &r->run[ST_EV_EASE], &test, &r->sum[ST_EV_EASE]);
            r->ranked[ST_EV_EASE] = 1;
        }
    }
    return 0;
}

int st_evaluate_baseline_scores(const st_model *m, const st_eval_set *set, const st_evaluate_opts *o, int ranker,
                                float *out, char *err)
{
    st_history h = {.users = m->users, .segments = m->segments, .ptr = m->hist_ptr, .idx = m->hist_idx};
    uint8_t test = 0;
    st_knn knn;
    st_ease ease;
    st_ranker rk = {.kind = st_ev_kind[ranker]};
    if (ranker == ST_EV_KNN) {
        if (st_knn_build(&h, o->knn_neighbours, o->knn_shrink, o->threads, &knn, err) != 0) return -1;
        rk.knn = &knn;
    } else if (ranker == ST_EV_EASE) {
        if (st_ease_build(&h, o->ease_lambda, o->ease_max_segments, o->threads, &ease, err) != 0) return -1;
        rk.ease = &ease;
    } else {
        return st_seterr(err, "not a baseline ranker: %d", ranker);
    }
    int rc = st_eval_scores(set, &rk, m->segments, &test, o->threads, out, err);
    if (ranker == ST_EV_KNN) st_knn_free(&knn);
    else st_ease_free(&ease);
    return rc;
}

int st_evaluate(const st_model *m, const st_eval_set *set, const st_evaluate_opts *o, st_evaluation *r, char *err)
{
    int threads = o->threads;
    memset(r, 0, sizeof *r);
    uint32_t n = m->segments;
    for (uint32_t e = 0; e < set->users; e++) {
        if (set->validation[e]) r->validation_users++;
        else {
            r->test_users++;
            r->test_pairs += set->test_ptr[e + 1] - set->test_ptr[e];
        }
    }
    if (r->test_users == 0) return st_seterr(err, "no test users (every evaluated user is a validation user)");
    int fit = o->prior_mode == ST_PRIOR_FIT && r->validation_users > 0;
    int fit_shape = fit && o->prior_shape == ST_PRIOR_SHAPE_AUTO;
    /* The prior: the log one while the shape is fitted (the fit takes the
     * linear one beside it), else the model's or the one asked for. */
    r->prior_linear = o->prior_shape == ST_PRIOR_SHAPE_AUTO ? !fit_shape && (m->h.flags & ST_MODEL_PRIOR_LINEAR) != 0
                                                            : o->prior_shape == ST_PRIOR_SHAPE_LINEAR;
    r->shape_how = o->prior_shape == ST_PRIOR_SHAPE_AUTO ? "the model's" : "given";
    r->prior = st_malloc((size_t)n * sizeof *r->prior);
    if (!r->prior) return st_seterr(err, "out of memory");
    st_score_prior_shape(m, r->prior_linear, r->prior);
    st_ranker model = {.kind = ST_RANK_MODEL, .V = m->V, .prior = r->prior};
    if (fit) {
        int metric = o->metric == ST_NMETRICS ? ST_M_RECALL : o->metric;
        if (fit_shape) {
            /* The weight and the shape together: the linear prior only when
             * the validation users say so beyond their noise. */
            float *q_lin = st_malloc((size_t)n * sizeof *q_lin);
            if (!q_lin) return st_seterr(err, "out of memory");
            st_score_prior_shape(m, 1, q_lin);
            int rc = st_eval_fit_prior_shape(set, &model, r->prior, q_lin, n, o->ks, o->nk, o->metric_ki, metric,
                                             threads, &r->prior_linear, &r->prior_weight, r->prior_values, &r->shape,
                                             err);
            if (rc == 0 && r->prior_linear) memcpy(r->prior, q_lin, (size_t)n * sizeof *q_lin);
            st_free(q_lin);
            if (rc != 0) return -1;
            r->shape_how = "fitted on validation users";
        } else if (st_eval_fit_prior(set, &model, n, o->ks, o->nk, o->metric_ki, metric, threads, &r->prior_weight,
                                     r->prior_values, err) != 0) {
            return -1;
        }
        r->prior_how = "fitted on validation users";
    } else if (o->prior_mode == ST_PRIOR_FIT) {
        r->prior_weight = 0;
        r->prior_how = "none (no validation users to fit it on)";
    } else if (o->prior_mode == ST_PRIOR_MODEL) {
        r->prior_weight = m->h.prior_weight;
        r->prior_how = "the model's";
    } else {
        r->prior_weight = o->prior_fixed;
        r->prior_how = "given";
    }
    model.prior_weight = r->prior_weight;
    st_ranker pop = {.kind = ST_RANK_POPULARITY, .popularity = m->popularity};
    st_ranker rnd = {.kind = ST_RANK_RANDOM, .seed = o->seed};
    const st_ranker *rk[3] = {&model, &pop, &rnd};
    uint8_t test = 0;
    for (int i = 0; i < (o->quick ? 2 : 3); i++) {
        st_ranker r1 = *rk[i];
        r1.no_auc = o->quick;
        if (st_eval_rank(set, &r1, n, o->ks, o->nk, &test, threads, &r->run[i], err) != 0) return -1;
        st_eval_summarize(set, &r->run[i], &test, &r->sum[i]);
        r->ranked[i] = 1;
    }
    if (!o->quick && rank_baselines(m, set, o, r, err) != 0) return -1;
    /* Calibration: fitted on validation users, checked on test users. */
    if (r->validation_users > 0 && !(o->prior_mode == ST_PRIOR_MODEL && (m->h.flags & ST_MODEL_CALIBRATED))) {
        st_eval_samples v;
        uint8_t val = 1;
        if (st_eval_sample(set, &model, n, &val, o->negatives, o->seed ^ 0xca11b, threads, &v,
                           err) != 0)
            return -1;
        int rc = st_calib_fit(&v, &r->a, &r->b, err);
        st_eval_samples_free(&v);
        if (rc == 0) {
            r->calibrated = 1;
            r->calib_how = "fitted on validation users";
        }
    } else if (m->h.flags & ST_MODEL_CALIBRATED) {
        r->calibrated = 1;
        r->a = m->h.calib_a;
        r->b = m->h.calib_b;
        r->calib_how = "the model's";
    }
    st_eval_samples ts;
    if (st_eval_sample(set, &model, n, &test, o->negatives, o->seed ^ 0x7e57, threads, &ts, err) !=
        0)
        return -1;
    score_histogram(&ts, r);
    if (r->calibrated) {
        if (st_calib_reliability(&ts, r->a, r->b, &r->rel, err) != 0) {
            st_eval_samples_free(&ts);
            return -1;
        }
        r->have_rel = 1;
    }
    st_eval_samples_free(&ts);
    if (o->quick) return 0;
    uint32_t ki = o->metric == ST_NMETRICS ? 0 : o->metric_ki;
    r->nseg = st_eval_segment_recall(set, &r->run[0], &test, n, ki, o->segments, r->seg, r->seg_users,
                                     r->seg_recall, err);
    return 0;
}


void st_evaluation_apply(st_model *m, const st_evaluation *r)
{
    m->h.prior_weight = r->prior_weight;
    m->h.flags = r->prior_linear ? m->h.flags | ST_MODEL_PRIOR_LINEAR : m->h.flags & ~ST_MODEL_PRIOR_LINEAR;
    if (r->calibrated) {
        m->h.calib_a = r->a;
        m->h.calib_b = r->b;
        m->h.flags |= ST_MODEL_CALIBRATED;
    }
}

char *st_evaluation_meta(const st_model *m, const st_evaluation *r, const st_evaluate_opts *o, const char *split,
                         uint64_t seed, size_t *len)
{
    size_t cap = m->meta_len + 4096, w = 0;
    char *b = st_malloc(cap);
    if (!b) return NULL;
    const char *p = m->meta, *end = m->meta + m->meta_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (!((size_t)(le - p) >= 5 && memcmp(p, "eval.", 5) == 0)) {
            memcpy(b + w, p, (size_t)(le - p));
            w += (size_t)(le - p);
            b[w++] = '\n';
        }
        p = le + 1;
    }
#define LINE(...) w += (size_t)snprintf(b + w, cap - w, __VA_ARGS__)
    uint32_t k = o->ks[o->metric_ki];
    LINE("eval.split=%s\n", split);
    LINE("eval.split_seed=%llu\n", (unsigned long long)seed);
    LINE("eval.test_users=%u\n", r->test_users);
    static const char *names[ST_NMETRICS] = {"precision", "recall", "ndcg", "map", "hit_rate"};
    for (int mt = 0; mt < ST_NMETRICS; mt++)
        LINE("eval.%s@%u=%.4f\n", names[mt], k, r->sum[0].m[o->metric_ki][mt].mean);
    for (int i = ST_EV_POPULARITY; i < ST_EV_RANKERS; i++) {
        if (i == ST_EV_RANDOM || !r->ranked[i]) continue;
        const char *name = st_rank_name(st_ev_kind[i]);
        LINE("eval.recall@%u.%s=%.4f\n", k, name, r->sum[i].m[o->metric_ki][ST_M_RECALL].mean);
        LINE("eval.ndcg@%u.%s=%.4f\n", k, name, r->sum[i].m[o->metric_ki][ST_M_NDCG].mean);
        double base = r->sum[i].m[o->metric_ki][ST_M_RECALL].mean;
        if (base > 0)
            LINE("eval.lift.recall@%u.%s=%.4f\n", k, name, r->sum[0].m[o->metric_ki][ST_M_RECALL].mean / base);
    }
    if (!o->quick) {
        LINE("eval.auc=%.4f\n", r->sum[0].auc.mean);
        LINE("eval.auc.popularity=%.4f\n", r->sum[1].auc.mean);
    }
    LINE("eval.prior_weight=%g\n", r->prior_weight);
    LINE("eval.prior_shape=%s\n", st_prior_shape_name(r->prior_linear));
    /* When the shape was fitted: the evidence, at each cut-off and of their mean. */
    const st_shape_evidence *sh = &r->shape;
    for (int i = 0; i < 2; i++)
        if (sh->k[i])
            LINE("eval.prior_linear_gain@%u=%.5f\neval.prior_linear_gain@%u.se=%.5f\n", sh->k[i], sh->gain[i], sh->k[i],
                 sh->se[i]);
    if (sh->k[1]) LINE("eval.prior_linear_gain=%.5f\neval.prior_linear_gain.se=%.5f\n", sh->gain[2], sh->se[2]);
    if (r->have_rel) LINE("eval.calibration_ece=%.4f\n", r->rel.ece);
#undef LINE
    *len = w < cap ? w : cap - 1;
    return b;
}


/* ---- the validation holdout of `train` ---------------------------------------- */

void st_holdout_opts_default(st_holdout_opts *o)
{
    o->share = 0.2;
    o->cap = 5000;
    o->min_segments = 3;
    o->fraction = 0.2;
    o->seed = 42;
}

typedef struct {
    double key;
    uint32_t u;
} keyed_user;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed_user *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->u < y->u ? -1 : x->u > y->u;
}

static double user_key(const st_interactions *x, uint32_t u, uint64_t seed)
{
    size_t len;
    const char *name = st_idmap_name(&x->users, u, &len);
    uint64_t h = st_idmap_hash(name, len) ^ (seed * 0x9e3779b97f4a7c15ULL + 0x4a11d);
    return (double)(st_splitmix64(&h) >> 11) * 0x1.0p-53;
}

void st_holdout_free(st_holdout *h)
{
    st_csr_free(&h->train.by_user);
    st_csr_free(&h->train.by_segment);
    st_free(h->user);
    st_free(h->test_ptr);
    st_free(h->test);
    memset(h, 0, sizeof *h);
}

/* Chooses the validation users: eligible users whose key is below the
 * share, the `cap` smallest keys when there are more. */
static int choose_users(const st_interactions *x, const st_holdout_opts *o, st_holdout *h, char *err)
{
    const st_csr *a = &x->by_user;
    keyed_user *c = st_malloc(((size_t)a->rows + 1) * sizeof *c);
    if (!c) return st_seterr(err, "out of memory for the validation users");
    uint32_t nc = 0;
    for (uint32_t u = 0; u < a->rows; u++) {
        if (a->indptr[u + 1] - a->indptr[u] < o->min_segments) continue;
        h->eligible++;
        double key = user_key(x, u, o->seed);
        if (key < o->share) c[nc++] = (keyed_user){key, u};
    }
    /* By key: the cap keeps the smallest, and the evaluation set (so the
     * figures) does not depend on the order of the input. */
    qsort(c, nc, sizeof *c, cmp_keyed);
    if (nc > o->cap) nc = o->cap;
    h->user = st_malloc(((size_t)nc + 1) * sizeof *h->user);
    h->test_ptr = st_calloc((size_t)nc + 1, sizeof *h->test_ptr);
    if (!h->user || !h->test_ptr) {
        st_free(c);
        return st_seterr(err, "out of memory for the validation users");
    }
    for (uint32_t i = 0; i < nc; i++) h->user[i] = c[i].u;
    st_free(c);
    h->users = nc;
    return 0;
}

int st_holdout_make(const st_interactions *x, const st_holdout_opts *o, st_holdout *h, char *err)
{
    memset(h, 0, sizeof *h);
    const st_csr *a = &x->by_user;
    if (o->share > 0 && choose_users(x, o, h, err) != 0) {
        st_holdout_free(h);
        return -1;
    }
    /* Per validation user, the round(fraction x n) segments (at least 1,
     * at most n - 1) with the smallest hash of (user, segment, seed): the
     * choice does not depend on the order of the input either. */
    uint64_t most = 0;
    for (uint32_t i = 0; i < h->users; i++) {
        uint32_t u = h->user[i], n = (uint32_t)(a->indptr[u + 1] - a->indptr[u]);
        uint32_t t = (uint32_t)lround(o->fraction * n);
        if (t < 1) t = 1;
        if (t > n - 1) t = n - 1;
        h->test_ptr[i + 1] = h->test_ptr[i] + t;
        if (n > most) most = n;
    }
    h->pairs = h->test_ptr[h->users];
    uint8_t *drop = st_calloc(a->nnz + 1, 1);
    keyed_user *cand = st_malloc((most + 1) * sizeof *cand);
    h->test = st_malloc((h->pairs + 1) * sizeof *h->test);
    st_csr *b = &h->train.by_user;
    b->indptr = st_malloc(((size_t)a->rows + 1) * sizeof *b->indptr);
    b->indices = st_malloc((a->nnz - h->pairs + 1) * sizeof *b->indices);
    b->data = st_malloc((a->nnz - h->pairs + 1) * sizeof *b->data);
    if (!drop || !cand || !h->test || !b->indptr || !b->indices || !b->data) {
        st_free(drop);
        st_free(cand);
        st_holdout_free(h);
        return st_seterr(err, "out of memory for the validation holdout");
    }
    for (uint32_t i = 0; i < h->users; i++) {
        uint32_t u = h->user[i], n = (uint32_t)(a->indptr[u + 1] - a->indptr[u]);
        uint32_t t = (uint32_t)(h->test_ptr[i + 1] - h->test_ptr[i]);
        size_t ulen;
        const char *uname = st_idmap_name(&x->users, u, &ulen);
        uint64_t uh = st_idmap_hash(uname, ulen) ^ o->seed;
        for (uint32_t j = 0; j < n; j++) {
            size_t slen;
            const char *sname = st_idmap_name(&x->segments, a->indices[a->indptr[u] + j], &slen);
            uint64_t z = st_idmap_hash(sname, slen) ^ (uh * 0xbf58476d1ce4e5b9ULL);
            cand[j] = (keyed_user){(double)(st_splitmix64(&z) >> 11), j};
        }
        qsort(cand, n, sizeof *cand, cmp_keyed);
        uint32_t *dst = h->test + h->test_ptr[i];
        for (uint32_t j = 0; j < t; j++) {
            drop[a->indptr[u] + cand[j].u] = 1;
            dst[j] = a->indices[a->indptr[u] + cand[j].u];
        }
        qsort(dst, t, sizeof *dst, st_cmp_u32);
    }
    st_free(cand);
    /* The training matrix: x's rows without the dropped pairs. */
    uint64_t w = 0;
    b->rows = a->rows;
    b->cols = a->cols;
    b->indptr[0] = 0;
    for (uint32_t u = 0; u < a->rows; u++) {
        for (uint64_t p = a->indptr[u]; p < a->indptr[u + 1]; p++) {
            if (drop[p]) continue;
            b->indices[w] = a->indices[p];
            b->data[w++] = a->data[p];
        }
        b->indptr[u + 1] = w;
    }
    b->nnz = w;
    st_free(drop);
    if (st_csr_transpose(b, &h->train.by_segment, 0, err) != 0) {
        st_holdout_free(h);
        return -1;
    }
    h->train.users = x->users; /* borrowed: never freed through h */
    h->train.segments = x->segments;
    h->train.events = x->events;
    h->train.newest = x->newest;
    h->train.has_newest = x->has_newest;
    return 0;
}

/* Up to want of a validation user's training segments (ascending, with their
 * values), chosen by a hash of (segment, seed): a sparse user made of a dense
 * one. */
static uint64_t pick_key(const st_idmap *ids, uint32_t s, uint64_t seed)
{
    size_t len;
    const char *name = st_idmap_name(ids, s, &len);
    uint64_t x = seed ^ st_idmap_hash(name, len);
    return st_splitmix64(&x);
}

static uint32_t sparse_pick(const st_csr *a, const st_idmap *ids, uint32_t u, uint32_t want, uint64_t seed,
                            uint32_t *seg, float *val)
{
    uint64_t p0 = a->indptr[u], n = a->indptr[u + 1] - p0;
    if (n <= want) {
        memcpy(seg, a->indices + p0, n * sizeof *seg);
        memcpy(val, a->data + p0, n * sizeof *val);
        return (uint32_t)n;
    }
    /* The want smallest hashes of the segments' ids (so the choice does not
     * depend on the input's order), kept in index order. */
    uint64_t best[ST_HOLDOUT_SPARSE_MAX];
    uint32_t got = 0;
    for (uint64_t q = 0; q < n; q++) {
        uint64_t hv = pick_key(ids, a->indices[p0 + q], seed);
        if (got < want) best[got++] = hv;
        else {
            uint32_t worst = 0;
            for (uint32_t i = 1; i < got; i++)
                if (best[i] > best[worst]) worst = i;
            if (hv < best[worst]) best[worst] = hv;
        }
    }
    uint64_t cut = 0;
    for (uint32_t i = 0; i < got; i++)
        if (best[i] > cut) cut = best[i];
    uint32_t w = 0;
    for (uint64_t q = 0; q < n && w < want; q++) {
        if (pick_key(ids, a->indices[p0 + q], seed) <= cut) {
            seg[w] = a->indices[p0 + q];
            val[w++] = a->data[p0 + q];
        }
    }
    return w;
}

int st_holdout_set(const st_holdout *h, const st_model *m, st_eval_set *set, char *err)
{
    st_eval_set_init(set, m->k);
    for (uint32_t i = 0; i < h->users; i++) {
        const uint32_t *t = h->test + h->test_ptr[i];
        uint32_t nt = (uint32_t)(h->test_ptr[i + 1] - h->test_ptr[i]);
        if (st_eval_set_add_known(set, m, h->user[i], t, nt, err) != 0) {
            st_eval_set_free(set);
            return -1;
        }
    }
    st_eval_set_partition(set, 0.5, 0x5eed ^ (uint64_t)h->users);
    /* Every fitting user also stands for a sparse user: folded in from at
     * most ST_HOLDOUT_SPARSE_MAX of its training segments, tested on the
     * same held-out ones, so the prior weight fits users with a handful of
     * events (new users, most users of an ad platform) as well as known ones. */
    uint32_t dense = set->users;
    st_foldin_ctx f;
    if (st_foldin_ctx_init(&f, m, err) != 0) {
        st_eval_set_free(set);
        return -1;
    }
    uint32_t seg[ST_HOLDOUT_SPARSE_MAX];
    float val[ST_HOLDOUT_SPARSE_MAX];
    char name[600];
    uint32_t *t = NULL, tcap = 0;
    /* Each copy's original, so statistics over users count the two as one
     * (they share their held-out segments). */
    uint32_t *from = st_malloc(((size_t)dense + 1) * sizeof *from), ncopies = 0;
    int rc = from ? 0 : st_seterr(err, "out of memory");
    for (uint32_t e = 0; e < dense && rc == 0; e++) {
        if (!set->validation[e] || set->model_user[e] == ST_NOT_FOUND) continue;
        uint32_t u = set->model_user[e];
        /* seeded by the id, so the choice does not depend on the input's order */
        uint64_t seed = 0x5ba75e ^ st_idmap_hash(set->names[e], strlen(set->names[e]));
        uint32_t nf = sparse_pick(&h->train.by_user, &h->train.segments, u, ST_HOLDOUT_SPARSE_MAX, seed, seg, val);
        snprintf(name, sizeof name, "%s (sparse)", set->names[e]);
        /* A copy: adding to the set may move its test lists. */
        uint32_t nt = (uint32_t)(set->test_ptr[e + 1] - set->test_ptr[e]), before = set->users;
        if (nt > tcap) {
            uint32_t *p = st_realloc(t, nt * sizeof *t);
            if (!p) {
                rc = st_seterr(err, "out of memory");
                break;
            }
            t = p;
            tcap = nt;
        }
        memcpy(t, set->test + set->test_ptr[e], nt * sizeof *t);
        rc = st_eval_set_add_cold(set, &f, name, seg, val, nf, t, nt, err);
        if (rc == 0 && set->users > before) {
            set->validation[before] = 1;
            from[ncopies++] = e;
        }
    }
    if (rc == 0) {
        set->origin = st_malloc(((size_t)set->users + 1) * sizeof *set->origin);
        if (!set->origin) rc = st_seterr(err, "out of memory");
        else {
            for (uint32_t e = 0; e < set->users; e++) set->origin[e] = e;
            for (uint32_t i = 0; i < ncopies; i++) set->origin[dense + i] = from[i];
        }
    }
    st_free(from);
    st_free(t);
    st_foldin_ctx_free(&f);
    if (rc != 0) st_eval_set_free(set);
    return rc;
}

int st_holdout_restore(const st_holdout *h, const st_interactions *x, const st_model *m, float *U, char *err)
{
    if (h->users == 0) return 0;
    st_foldin_ctx f;
    if (st_foldin_ctx_init(&f, m, err) != 0) return -1;
    const st_csr *a = &x->by_user;
    for (uint32_t i = 0; i < h->users; i++) {
        uint32_t u = h->user[i];
        uint64_t p = a->indptr[u];
        if (st_foldin_user(&f, a->indices + p, a->data + p, (uint32_t)(a->indptr[u + 1] - p),
                           U + (size_t)u * m->k) != 0) {
            st_foldin_ctx_free(&f);
            return st_seterr(err, "folding validation user '%s' back in failed: its system is not positive definite",
                             st_idmap_name(&x->users, u, NULL));
        }
    }
    st_foldin_ctx_free(&f);
    return 0;
}
