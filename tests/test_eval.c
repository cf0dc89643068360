/* Tests of the evaluation metrics: hand-made rankings against values
 * computed by hand, the fast kernels against their naive references on
 * random rankings, AUC with ties, confidence intervals, the calibration fit,
 * and the splits on a small hand-made event table. */
#include <math.h>
#include <string.h>

#include "ranking.h"
#include "rng.h"
#include "score.h"
#include "tap.h"
#include "util.h"

static const double L3 = 0.6309297535714575; /* 1 / log2(3) */
static const double L6 = 0.3868528072345416; /* 1 / log2(6) */

static void check_row(const double *got, double p, double r, double ndcg, double ap, double hit, const char *what)
{
    is_near(got[ST_M_PRECISION], p, 1e-12, "%s: precision", what);
    is_near(got[ST_M_RECALL], r, 1e-12, "%s: recall", what);
    is_near(got[ST_M_NDCG], ndcg, 1e-12, "%s: NDCG", what);
    is_near(got[ST_M_MAP], ap, 1e-12, "%s: AP", what);
    is_near(got[ST_M_HIT], hit, 0, "%s: hit", what);
}

static void hand_made(void)
{
    /* Candidates ranked 3, 1, 4, 0, 2; held out {1, 2}: hits at ranks 2 and 5. */
    uint32_t ranked[5] = {3, 1, 4, 0, 2}, test[2] = {1, 2}, ks[3] = {1, 3, 5};
    double ref[3 * ST_NMETRICS], fast[3 * ST_NMETRICS];
    uint8_t is_test[5] = {0, 1, 1, 0, 0};
    st_eval_metrics_ref(ranked, 5, test, 2, ks, 3, ref);
    st_eval_metrics(ranked, 5, is_test, 2, ks, 3, fast);
    for (int v = 0; v < 2; v++) {
        const double *o = v ? fast : ref;
        const char *name = v ? "fast" : "reference";
        char what[64];
        snprintf(what, sizeof what, "%s K=1", name);
        check_row(o, 0, 0, 0, 0, 0, what);
        /* K=3: one hit at rank 2; recall over min(3, 2) = 2; IDCG = 1 + 1/log2(3). */
        snprintf(what, sizeof what, "%s K=3", name);
        check_row(o + ST_NMETRICS, 1.0 / 3, 0.5, L3 / (1 + L3), 0.5 / 2, 1, what);
        /* K=5: hits at 2 and 5: AP = (1/2 + 2/5) / 2. */
        snprintf(what, sizeof what, "%s K=5", name);
        check_row(o + 2 * ST_NMETRICS, 0.4, 1.0, (L3 + L6) / (1 + L3), 0.45, 1, what);
    }
    /* K larger than the candidates: precision still divides by K. */
    uint32_t k10[1] = {10};
    st_eval_metrics(ranked, 5, is_test, 2, k10, 1, fast);
    is_near(fast[ST_M_PRECISION], 0.2, 1e-12, "K=10 over 5 candidates: precision 2/10");
    is_near(fast[ST_M_RECALL], 1.0, 1e-12, "K=10: recall 2/min(10,2)");
    /* Perfect ranking: every metric 1 (precision |T|/K). */
    uint32_t perfect[4] = {1, 2, 0, 3};
    uint32_t k2[1] = {2};
    st_eval_metrics(perfect, 4, is_test, 2, k2, 1, fast);
    check_row(fast, 1, 1, 1, 1, 1, "perfect ranking K=2");
}

static void auc_hand(void)
{
    /* Segment 0 seen; held out 1 (0.5) and 2 (0.1); others 3 (0.7), 4 (0.5).
     * Pairs: 1>3 no, 1=4 half, 2>3 no, 2>4 no: AUC = 0.5 / 4. */
    float s[5] = {0.9f, 0.5f, 0.1f, 0.7f, 0.5f};
    uint32_t seen[1] = {0}, test[2] = {1, 2};
    uint8_t mark[5] = {0};
    float scratch[5]; /* room for every held-out score */
    is_near(st_eval_auc_ref(s, 5, seen, 1, test, 2), 0.125, 1e-12, "AUC reference, hand-computed with a tie");
    is_near(st_eval_auc(s, 5, seen, 1, test, 2, mark, scratch), 0.125, 1e-12, "AUC fast, hand-computed with a tie");
    int clean = 1;
    for (int i = 0; i < 5; i++) clean &= mark[i] == 0;
    ok(clean, "AUC leaves its scratch marks at zero");
    ok(isnan(st_eval_auc(s, 5, seen, 1, test, 0, mark, scratch)), "AUC without held-out segments is NaN");
    uint32_t all[4] = {1, 2, 3, 4};
    ok(isnan(st_eval_auc(s, 5, seen, 1, all, 4, mark, scratch)), "AUC without other candidates is NaN");
}

/* The naive ranking: the n segments but the excluded ones (ns of them), by
 * score s descending, ties by index, into order; how many. */
static uint32_t naive_ranking(const float *s, uint32_t n, const uint32_t *excl, uint64_t ns, uint32_t *order)
{
    uint32_t nc = 0;
    for (uint32_t i = 0; i < n; i++) {
        int excluded = 0;
        for (uint64_t q = 0; q < ns; q++) excluded |= excl[q] == i;
        if (!excluded) order[nc++] = i;
    }
    for (uint32_t i = 1; i < nc; i++)
        for (uint32_t j = i; j > 0 && (s[order[j]] > s[order[j - 1]] ||
                                      (s[order[j]] == s[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            uint32_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return nc;
}

static void random_cases(void)
{
    st_rng r;
    st_rng_seed(&r, 11);
    int metrics_ok = 1, auc_ok = 1;
    for (int trial = 0; trial < 300; trial++) {
        uint32_t n = 2 + (uint32_t)st_rng_below(&r, 60);
        float s[64];
        uint32_t order[64], test[64], seen[64], ntest = 0, nseen = 0;
        uint8_t is_test[64] = {0}, mark[64] = {0};
        for (uint32_t i = 0; i < n; i++) {
            s[i] = (float)st_rng_below(&r, 8); /* ties are common */
            double u = st_rng_uniform(&r);
            if (u < 0.2) seen[nseen++] = i;
            else if (u < 0.4) {
                test[ntest++] = i;
                is_test[i] = 1;
            }
        }
        uint32_t nc = naive_ranking(s, n, seen, nseen, order);
        uint32_t ks[4] = {1, 3, 10, 40};
        double a[4 * ST_NMETRICS], b[4 * ST_NMETRICS];
        if (ntest == 0) continue;
        st_eval_metrics_ref(order, nc, test, ntest, ks, 4, a);
        st_eval_metrics(order, nc, is_test, ntest, ks, 4, b);
        for (int q = 0; q < 4 * ST_NMETRICS; q++) metrics_ok &= fabs(a[q] - b[q]) < 1e-12;
        float scratch[64];
        double x = st_eval_auc_ref(s, n, seen, nseen, test, ntest), y = st_eval_auc(s, n, seen, nseen, test, ntest, mark,
                                                                                    scratch);
        auc_ok &= (isnan(x) && isnan(y)) || fabs(x - y) < 1e-12;
    }
    ok(metrics_ok, "fast metrics equal the naive reference on 300 random rankings with ties");
    ok(auc_ok, "fast AUC equals the all-pairs reference on 300 random score vectors with ties");
}

static void stats(void)
{
    double x[4] = {0, 1, 1, 0};
    st_stat s = st_stat_of(x, 4, 1, NULL, 0);
    is_near(s.mean, 0.5, 1e-12, "mean");
    /* 1.96 * sqrt(1/3) / sqrt(4), computed by hand */
    is_near(s.half, 0.5657928670380858, 1e-9, "95%% interval half-width");
    uint8_t sel[4] = {1, 0, 1, 1};
    s = st_stat_of(x, 4, 1, sel, 1);
    is_int(s.count, 3, "selection counts only the selected");
    is_near(s.mean, 1.0 / 3, 1e-12, "selected mean");
    double y[3] = {NAN, 2, NAN};
    s = st_stat_of(y, 3, 1, NULL, 0);
    ok(s.count == 1 && s.mean == 2 && s.half == 0, "NaN skipped; one value has no interval");
}

static void calibration(void)
{
    /* Scores uniform in [-2, 2], labels from p = sigmoid(2 s - 1): the fit
     * must find a = 2, b = -1. */
    st_eval_samples x;
    uint64_t n = 200000;
    x.count = x.cap = n;
    x.score = malloc(n * sizeof *x.score);
    x.label = malloc(n);
    x.weight = malloc(n * sizeof *x.weight);
    st_rng r;
    st_rng_seed(&r, 5);
    for (uint64_t i = 0; i < n; i++) {
        double s = 4 * st_rng_uniform(&r) - 2;
        x.score[i] = (float)s;
        x.label[i] = st_rng_uniform(&r) < 1 / (1 + exp(-(2 * s - 1)));
        x.weight[i] = 1;
    }
    double a, b;
    char err[ST_ERRLEN] = "";
    ok(st_calib_fit(&x, &a, &b, err) == 0, "calibration fit runs");
    is_near(a, 2, 0.05, "fitted slope");
    is_near(b, -1, 0.05, "fitted intercept");
    st_reliability rel;
    ok(st_calib_reliability(&x, a, b, &rel, err) == 0, "reliability table");
    ok(rel.ece < 0.01, "a well-specified fit is calibrated (ECE %.4f)", rel.ece);
    double w = 0;
    for (uint32_t q = 0; q < rel.bins; q++) w += rel.weight[q];
    is_near(w, (double)n, 1e-6, "bins hold every sample");
    ok(fabs(rel.weight[0] - n / 10.0) < n / 100.0, "bins have equal weight");
    /* Hand-made: one bin's worth, predicted 0.5 for all, observed 1/4. */
    for (uint64_t i = 0; i < 4; i++) {
        x.score[i] = 0;
        x.label[i] = i == 0;
        x.weight[i] = 1;
    }
    x.count = 4;
    st_calib_reliability(&x, 1, 0, &rel, err);
    is_near(rel.ece, 0.25, 1e-12, "ECE of predicting 1/2 where 1/4 happens");
    x.count = 2;
    x.label[0] = x.label[1] = 0;
    ok(st_calib_fit(&x, &a, &b, err) != 0, "no positives: the fit refuses");
    free(x.score);
    free(x.label);
    free(x.weight);
}

static void add(st_event_table *t, const char *u, const char *s, double ts)
{
    st_event ev;
    memset(&ev, 0, sizeof ev);
    ev.user = u;
    ev.user_len = strlen(u);
    ev.segment = s;
    ev.segment_len = strlen(s);
    ev.weight = 1;
    ev.ts = ts;
    ev.has_ts = 1;
    if (t->count == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->user = realloc(t->user, t->cap * 4);
        t->segment = realloc(t->segment, t->cap * 4);
        t->kind = realloc(t->kind, t->cap * 4);
        t->weight = realloc(t->weight, t->cap * 8);
        t->ts = realloc(t->ts, t->cap * 8);
    }
    st_idmap_intern(&t->users, u, strlen(u), &t->user[t->count], NULL, NULL);
    st_idmap_intern(&t->segments, s, strlen(s), &t->segment[t->count], NULL, NULL);
    t->kind[t->count] = ST_NOT_FOUND;
    t->weight[t->count] = 1;
    t->ts[t->count] = ts;
    t->count++;
}

static void splits(void)
{
    st_event_table t;
    memset(&t, 0, sizeof t);
    st_idmap_init(&t.users);
    st_idmap_init(&t.segments);
    st_idmap_init(&t.kinds);
    char u[16], s[16];
    /* 20 users with 10 segments each at times 0..9, and a repeat of each first pair. */
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < 10; j++) {
            snprintf(u, sizeof u, "u%d", i);
            snprintf(s, sizeof s, "s%d", (i + j) % 15);
            add(&t, u, s, j);
            if (j == 0) add(&t, u, s, 20);
        }
    add(&t, "u0", "late", 15); /* the one pair first seen after the middle of the range */
    uint8_t role[512];
    double cut;
    char err[ST_ERRLEN] = "";
    st_split sp;
    memset(&sp, 0, sizeof sp);
    sp.seed = 3;
    sp.min_events = 1;
    sp.fold_in = 0.8;
    ok(st_split_parse("holdout:0.2", &sp, err) == 0 && st_split_assign(&t, &sp, role, &cut, err) == 0, "holdout");
    int pairs_ok = 1, count_ok = 1;
    for (int i = 0; i < 20; i++) {
        int held = 0;
        for (uint64_t e = 0; e < t.count; e++) {
            if (t.user[e] != (uint32_t)i) continue;
            held += role[e] == ST_ROLE_TEST;
            /* both events of a pair share its role */
            for (uint64_t f = 0; f < t.count; f++)
                if (t.user[f] == t.user[e] && t.segment[f] == t.segment[e] && role[f] != role[e]) pairs_ok = 0;
        }
        /* 2 of 10 segments held out: 2 events, or 3 if the repeated pair is one */
        count_ok &= held == 2 || held == 3;
    }
    ok(pairs_ok, "holdout: all events of a pair share a role");
    ok(count_ok, "holdout: 20%% of each user's segments");
    ok(st_split_parse("leave:1", &sp, err) == 0 && st_split_assign(&t, &sp, role, &cut, err) == 0, "leave:1");
    int latest_ok = 1;
    for (uint64_t e = 0; e < t.count; e++)
        if (role[e] == ST_ROLE_TEST) latest_ok &= t.ts[e] == 20 || t.ts[e] == 0; /* the repeated pair is newest */
    ok(latest_ok, "leave:1 holds out each user's most recent segment");
    ok(st_split_parse("time:0.5", &sp, err) == 0 && st_split_assign(&t, &sp, role, &cut, err) == 0, "time:0.5");
    is_near(cut, 10, 1e-12, "time cut at half the range");
    int time_ok = 1;
    for (uint64_t e = 0; e < t.count; e++) {
        if (t.ts[e] < 10) time_ok &= role[e] == ST_ROLE_TRAIN;
        else if (t.ts[e] == 15) time_ok &= role[e] == ST_ROLE_TEST;
        else time_ok &= role[e] == ST_ROLE_DROP; /* a late repeat of an early pair */
    }
    ok(time_ok, "time: early events train, a new late pair is tested, a late repeat of a known pair dropped");
    ok(st_split_parse("users:0.5", &sp, err) == 0 && st_split_assign(&t, &sp, role, &cut, err) == 0, "users:0.5");
    int users_ok = 1, held_users = 0;
    for (int i = 0; i < 20; i++) {
        int tr = 0, fo = 0, te = 0;
        for (uint64_t e = 0; e < t.count; e++) {
            if (t.user[e] != (uint32_t)i) continue;
            tr += role[e] == ST_ROLE_TRAIN;
            fo += role[e] == ST_ROLE_FOLDIN;
            te += role[e] == ST_ROLE_TEST;
        }
        if (fo || te) held_users++;
        users_ok &= (tr && !fo && !te) || (!tr && fo && te);
    }
    ok(users_ok, "users: a user is either all training or folded in and tested");
    ok(held_users >= 5 && held_users <= 15, "users:0.5 holds out about half the users (%d of 20)", held_users);
    sp.fold_max = 3;
    st_split_assign(&t, &sp, role, &cut, err);
    int max_ok = 1;
    for (int i = 0; i < 20; i++) {
        uint32_t segs[16];
        int nf = 0;
        for (uint64_t e = 0; e < t.count; e++)
            if (t.user[e] == (uint32_t)i && role[e] == ST_ROLE_FOLDIN) {
                int dup = 0;
                for (int q = 0; q < nf; q++) dup |= segs[q] == t.segment[e];
                if (!dup) segs[nf++] = t.segment[e];
            }
        max_ok &= nf <= 3;
    }
    ok(max_ok, "--fold-in-max 3 folds in at most 3 segments per user");
    ok(st_split_parse("holdout:2", &sp, err) != 0 && strstr(err, "between 0 and 1"), "bad fraction refused");
    ok(st_split_parse("bogus:1", &sp, err) != 0 && strstr(err, "unknown split"), "unknown split refused");
    ok(st_split_parse("leave:x", &sp, err) != 0, "bad leave refused");
    st_event_table_free(&t);
}

/* Recall at ks (nk of them) of set user e by a full ranking of row + w q:
 * every unseen segment, by score then index. sc, cand: n each. */
static void full_recall(const st_eval_set *set, uint32_t e, const float *row, const float *q, float w, uint32_t n,
                        const uint32_t *ks, uint32_t nk, float *sc, uint32_t *cand, double *recall)
{
    for (uint32_t j = 0; j < n; j++) sc[j] = w != 0 ? row[j] + w * q[j] : row[j];
    uint64_t ns = set->seen_ptr[e + 1] - set->seen_ptr[e];
    uint32_t nc = naive_ranking(sc, n, set->seen + set->seen_ptr[e], ns, cand);
    double mt[ST_EVAL_MAXK * ST_NMETRICS];
    uint32_t nt = (uint32_t)(set->test_ptr[e + 1] - set->test_ptr[e]);
    st_eval_metrics_ref(cand, nc, set->test + set->test_ptr[e], nt, ks, nk, mt);
    for (uint32_t i = 0; i < nk; i++) recall[i] = mt[i * ST_NMETRICS + ST_M_RECALL];
}

/* The best grid weight by the mean of v (users x grid) over the validation
 * users whose group (origin) has the given parity (2: every one); ties the
 * smaller. */
static uint32_t naive_best(const st_eval_set *set, const double *v, int parity)
{
    uint32_t ng = st_prior_grid_len, bg = 0;
    double best = -INFINITY;
    for (uint32_t g = 0; g < ng; g++) {
        double sum = 0;
        uint32_t cnt = 0;
        for (uint32_t e = 0; e < set->users; e++)
            if (set->validation[e] && (parity == 2 || (int)(set->origin[e] & 1) == parity)) {
                sum += v[(size_t)e * ng + g];
                cnt++;
            }
        if (sum / cnt > best) {
            best = sum / cnt;
            bg = g;
        }
    }
    return bg;
}

/* The prior's shape (st_eval_fit_prior_shape) against the definition
 * computed the obvious way: every validation user's recall at 10 and 5 by a
 * full ranking at every weight of both priors; each half of them (by their
 * group's parity, origin) compared at the weights the other half chose at 10;
 * the mean gain at 10, at 5 and of the two's mean, with standard errors
 * clustered by group; linear only beyond 2 of them, a loss at neither cut-off
 * and at least 20 groups. *raw: the rule's answer without the 20-group floor.
 * Returns the fit's answer. */
static int prior_shape(const char *label, const st_eval_set *set, const st_ranker *r, const float *rows,
                       const float *q, const float *ql, uint32_t n, int *raw)
{
    char err[ST_ERRLEN] = "";
    uint32_t ng = st_prior_grid_len, U = set->users, ks[2] = {5, 10}, G = 0;
    double *v = malloc((size_t)4 * U * ng * sizeof *v); /* log@10, lin@10, log@5, lin@5 */
    float *sc = malloc(n * 4);
    uint32_t *cand = malloc(n * 4);
    for (uint32_t e = 0; e < U; e++)
        for (uint32_t g = 0; g < ng; g++)
            for (int s = 0; s < 2; s++) {
                double rc[2];
                full_recall(set, e, rows + (size_t)e * n, s ? ql : q, (float)st_prior_grid[g], n, ks, 2, sc, cand, rc);
                v[(size_t)s * U * ng + (size_t)e * ng + g] = rc[1];
                v[(size_t)(2 + s) * U * ng + (size_t)e * ng + g] = rc[0];
            }
    const double *l10 = v, *n10 = v + (size_t)U * ng, *l5 = v + (size_t)2 * U * ng, *n5 = v + (size_t)3 * U * ng;
    double gain[3], se[3];
    for (int c = 0; c < 3; c++) {
        double sum = 0, *gs = calloc(U, sizeof *gs);
        uint32_t *gc = calloc(U, sizeof *gc), N = 0;
        G = 0;
        for (int h = 0; h < 2; h++) {
            uint32_t wl = naive_best(set, l10, 1 - h), wn = naive_best(set, n10, 1 - h);
            for (uint32_t e = 0; e < U; e++) {
                if (!set->validation[e] || (int)(set->origin[e] & 1) != h) continue;
                size_t il = (size_t)e * ng + wl, in = (size_t)e * ng + wn;
                double d10 = n10[in] - l10[il], d5 = n5[in] - l5[il];
                double d = c == 0 ? d10 : c == 1 ? d5 : (d10 + d5) / 2;
                gs[set->origin[e]] += d;
                G += gc[set->origin[e]]++ == 0;
                sum += d;
                N++;
            }
        }
        gain[c] = sum / N;
        double ss = 0;
        for (uint32_t g = 0; g < U; g++)
            if (gc[g]) ss += (gs[g] - gc[g] * gain[c]) * (gs[g] - gc[g] * gain[c]);
        se[c] = sqrt(ss * G / (G - 1)) / N;
        free(gs);
        free(gc);
    }
    *raw = gain[2] > 2 * se[2] && gain[0] > 0 && gain[1] > 0;
    int linear = *raw && G >= 20;
    uint32_t bl = naive_best(set, l10, 2), bn = naive_best(set, n10, 2);
    double best, values[64];
    st_shape_evidence ev;
    int flin = -1;
    ok(st_eval_fit_prior_shape(set, r, q, ql, n, ks, 2, 1, ST_M_RECALL, 2, &flin, &best, values, &ev, err) == 0 &&
           ev.k[0] == 10 && ev.k[1] == 5,
       "%s: the shape fit runs, its evidence at 10 and 5 (%s)", label, err);
    const double *fgain = ev.gain, *fse = ev.se;
    double worst = 0;
    for (int c = 0; c < 3; c++) {
        worst = fabs(fgain[c] - gain[c]) > worst ? fabs(fgain[c] - gain[c]) : worst;
        worst = fabs(fse[c] - se[c]) > worst ? fabs(fse[c] - se[c]) : worst;
    }
    ok(worst < 1e-12 && se[2] > 0,
       "%s: the linear prior's gains at 10, 5 and their mean (%+.4f, %+.4f, %+.4f) and standard errors (%.4f, %.4f, "
       "%.4f) over %u groups are the definition's (largest difference %.2g)", label, gain[0], gain[1], gain[2], se[0],
       se[1], se[2], G, worst);
    ok(flin == linear && best == st_prior_grid[linear ? bn : bl],
       "%s: the shape (%s) and its weight (%g) are the rule's", label, flin ? "linear" : "log", best);
    free(v);
    free(sc);
    free(cand);
    return flin;
}

/* A set over model m's users (validation users all of them) whose held-out
 * segments both the factors and the prior predict: per user one of its best
 * `best` by U.V, then ones drawn with probability growing as (pop + 1)^p. Its
 * model scores into rows (users x n). */
static void shape_set(st_eval_set *s2, st_model *m, const float *pop, double p, uint32_t best, st_rng *g,
                      const st_ranker *r0, float *rows)
{
    char err[ST_ERRLEN] = "";
    uint32_t n = m->segments, k = m->k;
    double cum = 0, *cdf = malloc(n * sizeof *cdf);
    float *sc = malloc(n * 4);
    for (uint32_t j = 0; j < n; j++) cdf[j] = cum += pow(pop[j] + 1, p);
    st_eval_set_init(s2, k);
    for (uint32_t u = 0; u < m->users; u++) {
        uint32_t test[6], top20[20];
        float t20[20];
        for (uint32_t j = 0; j < n; j++) {
            double d = 0;
            for (uint32_t i = 0; i < k; i++) d += (double)m->U[(size_t)u * k + i] * m->V[(size_t)j * k + i];
            sc[j] = (float)d;
        }
        st_topk(sc, n, 20, NULL, 0, top20, t20);
        test[0] = top20[st_rng_below(g, best)];
        for (int t = 1; t < 6; t++) {
            double x = st_rng_uniform(g) * cum;
            uint32_t j = 0;
            while (j + 1 < n && cdf[j] <= x) j++;
            test[t] = j;
        }
        st_eval_set_add_known(s2, m, u, test, 6, err);
    }
    for (uint32_t e = 0; e < s2->users; e++) s2->validation[e] = 1;
    s2->origin = st_malloc(s2->users * sizeof *s2->origin);
    st_eval_scores(s2, r0, n, NULL, 1, rows, err);
    free(cdf);
    free(sc);
}

/* The prior-weight grid (st_eval_fit_prior, which ranks only a few
 * candidates per weight when that is provably the full ranking) against the
 * obvious computation: every weight, every segment, a full selection. Prior
 * values with ties and users with long histories exercise both paths. */
static void prior_grid(void)
{
    st_rng g;
    st_rng_seed(&g, 21);
    uint32_t mu = 120, n = 400, k = 6;
    float *U = malloc((size_t)mu * k * 4), *V = malloc((size_t)n * k * 4), *pop = malloc(n * 4), *q = malloc(n * 4);
    uint64_t *hp = calloc(mu + 1, 8);
    uint32_t *hi = malloc((size_t)mu * n * 4);
    float *hv = malloc((size_t)mu * n * 4);
    for (size_t i = 0; i < (size_t)mu * k; i++) U[i] = (float)(st_rng_uniform(&g) - 0.5);
    for (size_t i = 0; i < (size_t)n * k; i++) V[i] = (float)(st_rng_uniform(&g) - 0.5);
    for (uint32_t j = 0; j < n; j++) pop[j] = (float)st_rng_below(&g, 30); /* many ties */
    float top = 0;
    for (uint32_t j = 0; j < n; j++) top = pop[j] > top ? pop[j] : top;
    for (uint32_t j = 0; j < n; j++) q[j] = (float)(log1p(pop[j]) / log1p(top));
    st_model m;
    memset(&m, 0, sizeof m);
    m.users = mu;
    m.segments = n;
    m.k = k;
    m.U = U;
    m.V = V;
    st_idmap_init(&m.user_ids);
    char err[ST_ERRLEN] = "";
    for (uint32_t u = 0; u < mu; u++) {
        char name[16];
        uint32_t idx;
        int added;
        snprintf(name, sizeof name, "u%u", u);
        st_idmap_intern(&m.user_ids, name, strlen(name), &idx, &added, err);
        uint32_t len = u % 4 == 0 ? 150 + (uint32_t)st_rng_below(&g, 100) : (uint32_t)st_rng_below(&g, 12);
        hp[u + 1] = hp[u];
        for (uint32_t j = 0; j < n && hp[u + 1] - hp[u] < len; j++)
            if (st_rng_uniform(&g) < 0.5) {
                hi[hp[u + 1]] = j;
                hv[hp[u + 1]++] = 1;
            }
    }
    m.hist_ptr = hp;
    m.hist_idx = hi;
    m.hist_val = hv;
    st_eval_set set;
    st_eval_set_init(&set, k);
    for (uint32_t u = 0; u < mu; u++) {
        uint32_t test[5];
        for (int t = 0; t < 5; t++) test[t] = (uint32_t)st_rng_below(&g, n);
        st_eval_set_add_known(&set, &m, u, test, 5, err);
    }
    for (uint32_t e = 0; e < set.users; e++) set.validation[e] = 1;
    uint32_t ks[1] = {10};
    st_ranker r = {.kind = ST_RANK_MODEL, .V = V, .prior = q};
    double best, values[64];
    ok(st_eval_fit_prior(&set, &r, n, ks, 1, 0, ST_M_RECALL, 2, &best, values, err) == 0, "the prior grid runs");
    double worst = 0;
    float *sc = malloc(n * 4);
    uint32_t *cand = malloc(n * 4);
    /* Exact rows: st_eval_scores gives the scores the grid starts from. */
    float *rows = malloc((size_t)set.users * n * 4);
    st_ranker r0 = r;
    r0.prior_weight = 0;
    st_eval_scores(&set, &r0, n, NULL, 1, rows, err);
    for (uint32_t gi = 0; gi < st_prior_grid_len; gi++) {
        float w = (float)st_prior_grid[gi];
        double sum = 0;
        for (uint32_t e = 0; e < set.users; e++) {
            double rc;
            full_recall(&set, e, rows + (size_t)e * n, q, w, n, ks, 1, sc, cand, &rc);
            sum += rc;
        }
        double d = fabs(sum / set.users - values[gi]);
        if (d > worst) worst = d;
    }
    ok(worst < 1e-12, "every grid weight's recall@10 equals a full ranking's (largest difference %.2g)", worst);
    /* The shape. Copies as train makes them: users 60-119 stand for copies
     * of users 0-59, the partner an odd step away (so halves by the user's
     * index would differ from halves by its group). */
    float *ql = malloc(n * 4), *rows2 = malloc((size_t)mu * n * 4);
    for (uint32_t j = 0; j < n; j++) ql[j] = (float)(pop[j] / top);
    st_eval_set s2;
    int raw;
    shape_set(&s2, &m, pop, 3, 20, &g, &r0, rows2);
    for (uint32_t e = 0; e < s2.users; e++) s2.origin[e] = e < 60 ? e : (e - 59) % 60;
    prior_shape("copies", &s2, &r, rows2, q, ql, n, &raw);
    /* A third of the users left out of the fit (test users): rows by rank. */
    for (uint32_t e = 0; e < s2.users; e++) s2.validation[e] = e % 3 != 1;
    prior_shape("a third test users", &s2, &r, rows2, q, ql, n, &raw);
    st_eval_set_free(&s2);
    /* Held-out segments the linear prior predicts better: a Zipf popularity
     * whose few head segments the users hold beside their own best ones (the
     * linear prior lifts those few and leaves the rest to the factors; the
     * log one lifts the middle too): the linear shape chosen. Then the same
     * users in 15 groups: too few, the log shape. */
    float *zpop = malloc(n * 4), *zq = malloc(n * 4), *zql = malloc(n * 4);
    for (uint32_t j = 0; j < n; j++) zpop[j] = (float)floor(2000.0 / (j + 1));
    for (uint32_t j = 0; j < n; j++) {
        zq[j] = (float)(log1p(zpop[j]) / log1p(zpop[0]));
        zql[j] = (float)(zpop[j] / zpop[0]);
    }
    shape_set(&s2, &m, zpop, 4, 1, &g, &r0, rows2);
    for (uint32_t e = 0; e < s2.users; e++) s2.origin[e] = e;
    ok(prior_shape("Zipf head", &s2, &r, rows2, zq, zql, n, &raw) == 1, "Zipf head: the linear prior wins");
    for (uint32_t e = 0; e < s2.users; e++) s2.origin[e] = e % 15;
    ok(prior_shape("15 groups", &s2, &r, rows2, zq, zql, n, &raw) == 0 && raw == 1,
       "15 groups: the log prior, though the gain alone would take the linear one");
    st_eval_set_free(&s2);
    free(zpop);
    free(zq);
    free(zql);
    free(rows2);
    free(ql);
    free(rows);
    free(sc);
    free(cand);
    st_eval_set_free(&set);
    st_idmap_free(&m.user_ids);
    free(U);
    free(V);
    free(pop);
    free(q);
    free(hp);
    free(hi);
    free(hv);
}

int main(void)
{
    prior_grid();
    hand_made();
    auc_hand();
    random_cases();
    stats();
    calibration();
    splits();
    return tap_done();
}
