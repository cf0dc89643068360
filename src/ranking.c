/* ranking: the ranking pass over an evaluation set, the metrics, their
 * summaries, the popularity-prior fit and calibration (ranking.h).
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
#include "ranking.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "rng.h"
#include "score.h"
#include "util.h"

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

/* Ascending order of a few hundred segment indices (insertion sort). */
static void sort_segments(uint32_t *a, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && a[j - 1] > a[j]; j--) {
            uint32_t t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
}

/* One prior of the grid pass: its q, the grid_m segments with the highest q
 * (in segment order), the grid_m-th highest q (-inf when there are fewer
 * segments), and where the metric goes (validation users x grid). */
typedef struct {
    const float *prior;
    const uint32_t *psorted; /* the np segments with the highest prior, in segment order */
    uint32_t np;
    float qm;
    double *values;
    double *values2; /* NULL, or the metric at ks[0] when the pass has two cut-offs */
} grid_prior;

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
     * at ks[grid_ki] for every weight of each of ngp priors (gp[i].values:
     * e x ngrid). */
    const double *grid;
    uint32_t ngrid, grid_ki;
    int grid_metric;
    uint32_t grid_m;         /* candidates per user from each side (grid_user) */
    grid_prior gp[2];
    uint32_t ngp;
    const uint32_t *grid_rank; /* e: the row of user e in the grid's values (validation users only) */
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
 * the user's best M by the model (mc, na of them, in segment order; a_m the
 * M-th best score, or -inf when there were fewer) and the M segments with
 * the highest prior (gp->psorted, in segment order), merged in segment order
 * so ties break as a full pass breaks them: any other segment scores at most
 * a_m + w q_M (q_M the M-th highest prior, float rounding being monotone), so
 * when that is below the K-th best candidate the candidates' top K is the
 * full top K; otherwise the full pass runs. mark: n bytes, zero on entry and
 * return; cand: 2M entries. */
static void grid_user(const pass_ctx *c, const grid_prior *gp, uint32_t e, const float *row, const uint32_t *seen,
                      uint64_t ns, const uint32_t *test, uint32_t nt, uint8_t *mark, float *sc, uint32_t *topi,
                      float *topsc, const uint32_t *mc, uint32_t na, float a_m, uint32_t *cand)
{
    uint32_t n = c->n, kmax = c->kmax, nc = 0, i = 0, j = 0;
    const float *prior = gp->prior;
    for (uint64_t q = 0; q < ns; q++) mark[seen[q]] = 4;
    while (i < na || j < gp->np) { /* merge, the prior's side without the seen */
        uint32_t a = i < na ? mc[i] : UINT32_MAX, b = j < gp->np ? gp->psorted[j] : UINT32_MAX;
        if (b < a && mark[b]) {
            j++;
            continue;
        }
        cand[nc++] = a <= b ? a : b;
        i += a <= b;
        j += b <= a;
    }
    for (uint64_t q = 0; q < ns; q++) mark[seen[q]] = 0;
    double m[ST_EVAL_MAXK * ST_NMETRICS];
    for (uint32_t q = 0; q < nt; q++) mark[test[q]] = 1;
    for (uint32_t g = 0; g < c->ngrid; g++) {
        float w = (float)c->grid[g];
        for (uint32_t q = 0; q < nc; q++) sc[q] = w != 0 ? row[cand[q]] + w * prior[cand[q]] : row[cand[q]];
        uint32_t got = st_topk(sc, nc, kmax, NULL, 0, topi, topsc);
        float bound = w != 0 ? a_m + w * gp->qm : a_m;
        if (got == kmax && bound < topsc[kmax - 1]) {
            for (uint32_t q = 0; q < got; q++) topi[q] = cand[topi[q]];
        } else {
            for (uint32_t q = 0; q < n; q++) sc[q] = w != 0 ? row[q] + w * prior[q] : row[q];
            got = st_topk(sc, n, kmax, seen, ns, topi, topsc);
        }
        st_eval_metrics(topi, got, mark, nt, c->ks, c->nk, m);
        size_t at = (size_t)c->grid_rank[e] * c->ngrid + g;
        gp->values[at] = m[c->grid_ki * ST_NMETRICS + c->grid_metric];
        if (gp->values2) gp->values2[at] = m[c->grid_metric];
    }
    for (uint32_t q = 0; q < nt; q++) mark[test[q]] = 0;
}

/* The user's best grid_m segments by the model, seen excluded, in segment
 * order (mc), for every prior's grid_user; how many; *a_m the grid_m-th best
 * score (-inf when there were fewer: every unseen segment is a candidate).
 * best: grid_m floats of scratch. */
static uint32_t grid_model_cands(const pass_ctx *c, const float *row, const uint32_t *seen, uint64_t ns,
                                 uint32_t *mc, float *best, float *a_m)
{
    uint32_t M = c->grid_m, na = st_topk(row, c->n, M, seen, ns, mc, best);
    *a_m = na == M ? best[M - 1] : -INFINITY;
    sort_segments(mc, na);
    return na;
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
            /* after the mark bytes: the model's candidates (M), their scores
             * (M), the merged candidates (2M) */
            uint32_t *mc = (uint32_t *)(mark + st_align_up(n, 4)), *cand = mc + 2 * c->grid_m;
            float a_m;
            uint32_t na = grid_model_cands(c, row, seen, ns, mc, (float *)(mc + c->grid_m), &a_m);
            for (uint32_t g = 0; g < c->ngp; g++)
                grid_user(c, &c->gp[g], e, row, seen, ns, test, nt, mark, aucs, topi, topsc, mc, na, a_m, cand);
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
    /* after the mark bytes: the grid's candidates (M model ones, their M
     * scores, 2M merged) */
    size_t grid = c->grid ? st_align_up(c->n, 4) - c->n + (size_t)c->grid_m * 16 : 0;
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

/* The validation users: vidx (ascending) and each one's row in it (rank,
 * indexed by user); how many. */
static uint32_t validation_rows(const st_eval_set *s, uint32_t *vidx, uint32_t *rank)
{
    uint32_t nv = 0;
    for (uint32_t e = 0; e < s->users; e++) {
        rank[e] = s->validation[e] ? nv : UINT32_MAX;
        if (s->validation[e]) vidx[nv++] = e;
    }
    return nv;
}

/* The metric of every validation user (row rank[e]) at every grid weight of
 * each of the nq priors q[i] (gv[i], nv x grid, NaN where a user has none),
 * from one scoring of each user; with gv2 (may be NULL) and k2 < ks[ki], also
 * at cut-off k2 (gv2[i]). */
static int prior_grid(const st_eval_set *s, const st_ranker *r, const float *const *q, uint32_t nq, uint32_t n,
                      const uint32_t *ks, uint32_t ki, int metric, int threads, const uint32_t *rank, uint32_t nv,
                      double *const *gv, double *const *gv2, uint32_t k2, char *err)
{
    uint32_t ng = st_prior_grid_len;
    int two = gv2 && k2 > 0 && k2 < ks[ki];
    for (uint32_t i = 0; i < nq; i++)
        for (size_t j = 0; j < (size_t)nv * ng; j++) {
            gv[i][j] = NAN;
            if (gv2) gv2[i][j] = NAN;
        }
    /* One scoring of every validation user; the weights only add w q. */
    st_ranker rr = *r;
    rr.prior_weight = 0;
    rr.prior = NULL;
    uint8_t one = 1;
    uint32_t k1 = ks[ki], kk[2] = {two ? k2 : k1, k1}; /* the metric's cut-off (and k2) */
    pass_ctx c = {.s = s, .r = &rr, .n = n, .nk = two ? 2 : 1, .kmax = k1, .ks = two ? kk : kk + 1,
                  .grid = st_prior_grid, .ngrid = ng, .grid_ki = two ? 1 : 0, .grid_metric = metric, .ngp = nq,
                  .grid_rank = rank};
    if (nq < 1 || nq > 2) return st_seterr(err, "no prior to fit a weight for");
    for (uint32_t i = 0; i < nq; i++)
        if (!q[i]) return st_seterr(err, "no prior to fit a weight for");
    /* grid_user's candidates: M from each side, a few times K */
    c.grid_m = 4 * k1 < 64 ? 64 : 4 * k1;
    if (c.grid_m > n) c.grid_m = n;
    uint32_t *pidx = st_malloc(((size_t)c.grid_m * nq + 1) * sizeof *pidx);
    float *pq = st_malloc(((size_t)c.grid_m + 1) * sizeof *pq);
    if (!pidx || !pq) {
        st_free(pidx);
        st_free(pq);
        return st_seterr(err, "out of memory");
    }
    for (uint32_t i = 0; i < nq; i++) {
        grid_prior *g = &c.gp[i];
        uint32_t *pi = pidx + (size_t)i * c.grid_m;
        g->prior = q[i];
        g->values = gv[i];
        g->values2 = two ? gv2[i] : NULL;
        g->np = st_topk(q[i], n, c.grid_m, NULL, 0, pi, pq);
        g->qm = g->np == c.grid_m && c.grid_m < n ? pq[c.grid_m - 1] : -INFINITY;
        sort_segments(pi, g->np);
        g->psorted = pi;
    }
    int rc = run_pass(&c, &one, threads, err);
    st_free(pidx);
    st_free(pq);
    return rc;
}

/* The group of user e: the user it is a copy of (st_eval_set.origin), else
 * itself. Halves of the users are the groups' index parities, so a copy is
 * always in its original's half. */
static uint32_t group_of(const st_eval_set *s, uint32_t e) { return s->origin ? s->origin[e] : e; }

/* The best grid weight of gv (nv x grid, row i the validation user vidx[i])
 * by the mean over the users of one half (parity of their group; 2: every
 * user), NaN skipped, ties the smaller; its index. values (may be NULL): each
 * weight's mean (NaN without users). */
static uint32_t grid_best(const st_eval_set *s, const uint32_t *vidx, uint32_t nv, const double *gv,
                          uint32_t parity, double *values)
{
    uint32_t ng = st_prior_grid_len, bg = 0;
    double best = -INFINITY;
    for (uint32_t g = 0; g < ng; g++) {
        double sum = 0;
        uint64_t cnt = 0;
        for (uint32_t i = 0; i < nv; i++) {
            double v = gv[(size_t)i * ng + g];
            if ((parity < 2 && (group_of(s, vidx[i]) & 1) != parity) || isnan(v)) continue;
            sum += v;
            cnt++;
        }
        if (values) values[g] = cnt ? sum / (double)cnt : NAN;
        double mean = cnt ? sum / (double)cnt : -INFINITY;
        if (mean > best) {
            best = mean;
            bg = g;
        }
    }
    return bg;
}

int st_eval_fit_prior(const st_eval_set *s, const st_ranker *r, uint32_t n, const uint32_t *ks, uint32_t nk,
                      uint32_t ki, int metric, int threads, double *best, double *values, char *err)
{
    *best = 0;
    if (check_ks(ks, nk, err) != 0) return -1;
    uint32_t *vidx = st_malloc(((size_t)s->users * 2 + 1) * sizeof *vidx), *rank = vidx + s->users;
    if (!vidx) return st_seterr(err, "out of memory");
    uint32_t nv = validation_rows(s, vidx, rank);
    double *gv = st_malloc(((size_t)nv * st_prior_grid_len + 1) * sizeof *gv);
    if (!gv) {
        st_free(vidx);
        return st_seterr(err, "out of memory");
    }
    const float *q = r->prior;
    int rc = prior_grid(s, r, &q, 1, n, ks, ki, metric, threads, rank, nv, &gv, NULL, 0, err);
    if (rc == 0) *best = st_prior_grid[grid_best(s, vidx, nv, gv, 2, values)];
    st_free(gv);
    st_free(vidx);
    return rc;
}

/* The cross-fitted paired difference of gl over gv (nv x grid, row i the
 * validation user vidx[i]): each half of the users compared at the weights
 * the other half chose on ga and gb (the metric the weight is fitted to), so
 * the comparison is not flattered by the choice of the weights. Its mean over
 * users and the standard error of that mean, clustered by group (a user and
 * its copies share their held-out segments, so they are one observation of
 * the noise); *groups: how many groups took part. gsum, gcnt: scratch of
 * s->users. */
static void shape_gain(const st_eval_set *s, const uint32_t *vidx, uint32_t nv, const double *ga, const double *gb,
                       const double *gv, const double *gl, double *gsum, uint32_t *gcnt, double *mean, double *se,
                       uint64_t *groups)
{
    uint32_t ng = st_prior_grid_len;
    memset(gsum, 0, (size_t)s->users * sizeof *gsum);
    memset(gcnt, 0, (size_t)s->users * sizeof *gcnt);
    double sum = 0;
    uint64_t n = 0, G = 0;
    for (uint32_t h = 0; h < 2; h++) {
        uint32_t wl = grid_best(s, vidx, nv, ga, 1 - h, NULL), wn = grid_best(s, vidx, nv, gb, 1 - h, NULL);
        for (uint32_t i = 0; i < nv; i++) {
            uint32_t g = group_of(s, vidx[i]);
            double a = gv[(size_t)i * ng + wl], b = gl[(size_t)i * ng + wn];
            if ((g & 1) != h || isnan(a) || isnan(b)) continue;
            gsum[g] += b - a;
            G += gcnt[g]++ == 0;
            sum += b - a;
            n++;
        }
    }
    *mean = n ? sum / (double)n : 0;
    double ss = 0;
    for (uint32_t g = 0; g < s->users; g++)
        if (gcnt[g]) ss += (gsum[g] - gcnt[g] * *mean) * (gsum[g] - gcnt[g] * *mean);
    *se = G > 1 ? sqrt(ss * (double)G / (double)(G - 1)) / (double)n : 0;
    *groups = G;
}

int st_eval_fit_prior_shape(const st_eval_set *s, const st_ranker *r, const float *q_log, const float *q_linear,
                            uint32_t n, const uint32_t *ks, uint32_t nk, uint32_t ki, int metric, int threads,
                            int *linear, double *best, double *values, st_shape_evidence *ev, char *err)
{
    *best = 0;
    *linear = 0;
    memset(ev, 0, sizeof *ev);
    if (check_ks(ks, nk, err) != 0) return -1;
    uint32_t ng = st_prior_grid_len, k2 = ks[0] < ks[ki] ? ks[0] : 0;
    double *gain = ev->gain, *se = ev->se;
    /* vidx, rank and gcnt (users each), then the four grids and gsum */
    uint32_t *vidx = st_malloc(((size_t)s->users * 3 + 1) * sizeof *vidx), *rank = vidx + s->users;
    uint32_t *gcnt = rank + s->users;
    if (!vidx) return st_seterr(err, "out of memory");
    uint32_t nv = validation_rows(s, vidx, rank);
    size_t one = (size_t)nv * ng;
    double *gv = st_malloc((one * 4 + s->users + 1) * sizeof *gv);
    if (!gv) {
        st_free(vidx);
        return st_seterr(err, "out of memory");
    }
    double *g[4] = {gv, gv + one, gv + 2 * one, gv + 3 * one}, *gsum = gv + 4 * one, vl[64], vn[64];
    const float *q[2] = {q_log, q_linear};
    if (prior_grid(s, r, q, 2, n, ks, ki, metric, threads, rank, nv, g, g + 2, k2, err) != 0) {
        st_free(gv);
        st_free(vidx);
        return -1;
    }
    uint32_t gl0 = grid_best(s, vidx, nv, g[0], 2, vl), gn0 = grid_best(s, vidx, nv, g[1], 2, vn);
    /* The linear prior wins only when the mean of its gains at the two
     * cut-offs (the fitted one, and the smaller one when there is one) is
     * beyond twice its standard error and it loses at neither, over enough
     * independent users for a standard error to mean something. */
    uint64_t groups;
    shape_gain(s, vidx, nv, g[0], g[1], g[0], g[1], gsum, gcnt, &gain[0], &se[0], &groups);
    gain[2] = gain[0];
    se[2] = se[0];
    if (k2) {
        shape_gain(s, vidx, nv, g[0], g[1], g[2], g[3], gsum, gcnt, &gain[1], &se[1], &groups);
        for (size_t i = 0; i < one; i++) { /* each user's mean of the two cut-offs */
            g[2][i] = (g[0][i] + g[2][i]) / 2;
            g[3][i] = (g[1][i] + g[3][i]) / 2;
        }
        shape_gain(s, vidx, nv, g[0], g[1], g[2], g[3], gsum, gcnt, &gain[2], &se[2], &groups);
    }
    *linear = groups >= ST_SHAPE_MIN_USERS && gain[2] > 2 * se[2] && gain[0] > 0 && (!k2 || gain[1] > 0);
    ev->k[0] = ks[ki];
    ev->k[1] = k2;
    *best = st_prior_grid[*linear ? gn0 : gl0];
    if (values) memcpy(values, *linear ? vn : vl, ng * sizeof *values);
    st_free(gv);
    st_free(vidx);
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
