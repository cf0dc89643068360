/* evalout: the outputs of an evaluation (evalout.h): the terminal table,
 * JSON, CSV, the HTML report (report.c draws it) and the dump for checks.
 */
#include "evalout.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

void st_facts_add(st_facts *f, const char *key, const char *fmt, ...)
{
    if (f->n >= ST_MAX_FACTS) return;
    va_list ap;
    va_start(ap, fmt);
    snprintf(f->buf[f->n][0], sizeof f->buf[f->n][0], "%s", key);
    vsnprintf(f->buf[f->n][1], sizeof f->buf[f->n][1], fmt, ap);
    va_end(ap);
    f->kv[2 * f->n] = f->buf[f->n][0];
    f->kv[2 * f->n + 1] = f->buf[f->n][1];
    f->n++;
    f->kv[2 * f->n] = NULL;
}

static const int metric_order[] = {ST_M_RECALL, ST_M_NDCG, ST_M_PRECISION, ST_M_MAP, ST_M_HIT};
static const char *metric_label[] = {"precision", "recall", "NDCG", "MAP", "hit rate"};

/* The rankers in the order the outputs show them, and the baselines the
 * model's lift is shown over. */
static const int show_order[] = {ST_EV_MODEL, ST_EV_POPULARITY, ST_EV_KNN, ST_EV_EASE, ST_EV_RANDOM};
static const int lift_over[] = {ST_EV_POPULARITY, ST_EV_KNN, ST_EV_EASE};
static const char *lift_label[ST_EV_RANKERS] = {"", "lift/pop", "", "lift/knn", "lift/ease"};
#define NSHOW ((int)(sizeof show_order / sizeof show_order[0]))
#define NLIFT ((int)(sizeof lift_over / sizeof lift_over[0]))

static void ci_text(char *out, size_t n, st_stat s)
{
    if (isnan(s.mean)) snprintf(out, n, "-");
    else snprintf(out, n, "%.4f ± %.4f", s.mean, s.half);
}

static void lift_text(char *out, size_t n, double a, double b)
{
    if (!(b > 0) || isnan(a)) snprintf(out, n, "-");
    else snprintf(out, n, "%.2fx", a / b);
}

/* One row of the table: each ranked ranker's value, then the lifts. */
static void table_row(FILE *f, const st_evaluation *r, const char *label, const char *k, int j, int mt)
{
    char a[64];
    fprintf(f, "%-10s %5s", label, k);
    for (int q = 0; q < NSHOW; q++) {
        int i = show_order[q];
        if (!r->ranked[i]) continue;
        st_stat v = mt < 0 ? r->sum[i].auc : r->sum[i].m[j][mt];
        if (mt == -2) snprintf(a, sizeof a, "%.4f", r->sum[i].coverage[j]);
        else ci_text(a, sizeof a, v);
        fprintf(f, "  %-*s", mt == -2 ? 17 : 18, a); /* "±" is 2 bytes but one column */
    }
    for (int q = 0; q < NLIFT && mt != -2; q++) {
        int i = lift_over[q];
        if (!r->ranked[i]) continue;
        double x = mt < 0 ? r->sum[0].auc.mean : r->sum[0].m[j][mt].mean;
        double y = mt < 0 ? r->sum[i].auc.mean : r->sum[i].m[j][mt].mean;
        lift_text(a, sizeof a, x, y);
        fprintf(f, "  %9s", a);
    }
    fprintf(f, "\n");
}

/* A paired gain as "+0.0123 ± 0.0045" (a zero is never "-0.0000"). */
static void gain_text(char *out, size_t n, st_stat g)
{
    snprintf(out, n, "%+.4f ± %.4f", fabs(g.mean) < 5e-5 ? 0.0 : g.mean, g.half);
}

/* Why LOOKALIKE (similar 0) or SIMILAR has no table, when it has none: 1. */
static int print_why_empty(FILE *f, const st_segeval *g, int similar)
{
    char why[256];
    if (!st_segeval_why_empty(g, similar, why, sizeof why)) return 0;
    fprintf(f, "\n%s: %s\n", similar ? "SIMILAR" : "LOOKALIKE", why);
    return 1;
}

/* LOOKALIKE's table, or why it has none. */
static void print_lookalike(FILE *f, const st_segeval *g)
{
    char a[64], b[64], c[64];
    if (print_why_empty(f, g, 0)) return;
    fprintf(f, "\nLOOKALIKE over %u segments: a seed list of %.1f users (on average) from each segment's training users\n"
               "expanded to N users: held out, recall of its %.1f held-out users among users without the segment;\n"
               "members, recall of its %.1f other training users among all users but the seeds (offline, on the\n"
               "owner's own data: the serving privacy floors do not apply)\n",
            g->lal_segments, g->lal_seeds, g->lal_targets, g->lal_members_n);
    fprintf(f, "  %-16s  %-18s  %-18s  %9s  %-18s  %9s\n", "ranker", "held out, N=|held|", "N=10|held|", "lift",
            "members, N=|mem|", "lift");
    for (int i = 0; i < ST_LAL_RANKERS; i++) {
        ci_text(a, sizeof a, g->lal_recall[i]);
        ci_text(b, sizeof b, g->lal_recall10[i]);
        ci_text(c, sizeof c, g->lal_members[i]);
        char l[32] = "", lm[32] = "";
        if (i != ST_LAL_MODEL) {
            lift_text(l, sizeof l, g->lal_recall[ST_LAL_MODEL].mean, g->lal_recall[i].mean);
            lift_text(lm, sizeof lm, g->lal_members[ST_LAL_MODEL].mean, g->lal_members[i].mean);
        }
        fprintf(f, "  %-16s  %-19s  %-19s  %9s  %-19s  %9s\n", st_lal_name(i), a, b, l, c, lm);
    }
}

/* SIMILAR's table, or why it has none. */
static void print_similar(FILE *f, const st_segeval *g)
{
    char a[64], b[64];
    if (print_why_empty(f, g, 1)) return;
    fprintf(f, "\nSIMILAR over %u segments: overlap@10 with the 10 segments most co-engaged with each in the\n"
               "engagement the model did not train on (cosine of those user sets: %u known users' held-out\n"
               "segments, %u cold users' every segment); the gain is the model's minus the ranker's, per segment\n",
            g->sim_segments, g->sim_known_users, g->sim_cold_users);
    fprintf(f, "  %-16s  %-18s  %9s  %-18s\n", "ranker", "overlap@10", "lift", "model's gain");
    for (int i = 0; i < ST_SIM_RANKERS; i++) {
        ci_text(a, sizeof a, g->sim_overlap[i]);
        char l[32] = "";
        b[0] = 0;
        if (i != ST_SIM_MODEL) {
            lift_text(l, sizeof l, g->sim_overlap[ST_SIM_MODEL].mean, g->sim_overlap[i].mean);
            gain_text(b, sizeof b, g->sim_gain[i]);
        }
        fprintf(f, "  %-16s  %-19s  %9s  %s\n", st_sim_name(i), a, l, b);
    }
}

void st_evalout_table(FILE *f, const st_facts *fa, const st_evaluation *r, const st_evaluate_opts *o, const st_model *m)
{
    for (int i = 0; i < fa->n; i++) fprintf(f, "%-16s %s\n", fa->kv[2 * i], fa->kv[2 * i + 1]);
    fprintf(f, "\nmetrics over %u test users: mean ± 95%% confidence interval; recall@K is normalised by\n"
               "min(K, held-out segments); a user's training segments are excluded from its ranking\n\n",
            r->test_users);
    fprintf(f, "%-10s %5s", "metric", "K");
    for (int q = 0; q < NSHOW; q++)
        if (r->ranked[show_order[q]]) fprintf(f, "  %-17s", st_rank_name(st_ev_kind[show_order[q]]));
    for (int q = 0; q < NLIFT; q++)
        if (r->ranked[lift_over[q]]) fprintf(f, "  %9s", lift_label[lift_over[q]]);
    fprintf(f, "\n");
    char k[16];
    for (size_t q = 0; q < sizeof metric_order / sizeof metric_order[0]; q++) {
        int mt = metric_order[q];
        for (uint32_t j = 0; j < o->nk; j++) {
            snprintf(k, sizeof k, "%u", o->ks[j]);
            table_row(f, r, j == 0 ? metric_label[mt] : "", k, (int)j, mt);
        }
    }
    table_row(f, r, "AUC", "all", 0, -1);
    for (uint32_t j = 0; j < o->nk; j++) {
        snprintf(k, sizeof k, "%u", o->ks[j]);
        table_row(f, r, j == 0 ? "coverage" : "", k, (int)j, -2);
    }
    for (int i = ST_EV_KNN; i < ST_EV_RANKERS; i++) {
        if (r->ranked[i])
            fprintf(f, "%s: fitted in %.2f s", st_rank_name(st_ev_kind[i]), r->build_seconds[i]);
        if (r->ranked[i] && i == ST_EV_EASE)
            fprintf(f, " on %u segments, lambda %g", r->ease_segments, r->ease_lambda);
        if (r->ranked[i]) fprintf(f, "\n");
        else if (r->why[i][0]) fprintf(f, "%s: not ranked: %s\n", st_rank_name(st_ev_kind[i]), r->why[i]);
    }
    if (r->have_seg_eval) {
        print_lookalike(f, &r->seg_eval);
        print_similar(f, &r->seg_eval);
    }
    if (r->nseg) {
        uint32_t K = o->ks[o->metric == ST_NMETRICS ? 0 : o->metric_ki];
        fprintf(f, "\nrecall@%u of the %u segments held out by the most test users (share of them whose top %u "
                   "has it)\n",
                K, r->nseg, K);
        fprintf(f, "  %-32s %8s %8s\n", "segment", "users", "recall");
        for (uint32_t i = 0; i < r->nseg; i++)
            fprintf(f, "  %-32s %8u %8.4f\n", st_idmap_name(&m->segment_ids, r->seg[i], NULL), r->seg_users[i],
                    r->seg_recall[i]);
    }
    if (r->have_rel) {
        fprintf(f, "\ncalibration: p = 1 / (1 + exp(-(%.6g score %+.6g))), %s; on test users:\n", r->a, r->b,
                r->calib_how);
        fprintf(f, "  expected calibration error %.6f (%u bins of equal weight)\n", r->rel.ece, r->rel.bins);
        fprintf(f, "  %-4s %-23s %11s %11s %14s %10s\n", "bin", "predicted range", "predicted", "observed", "pairs",
                "held out");
        for (uint32_t q = 0; q < r->rel.bins; q++) {
            if (r->rel.weight[q] <= 0) continue;
            char rng[64];
            snprintf(rng, sizeof rng, "%.2e .. %.2e", r->rel.lo[q], r->rel.hi[q]);
            fprintf(f, "  %-4u %-23s %11.6f %11.6f %14.0f %10llu\n", q + 1, rng, r->rel.predicted[q],
                    r->rel.observed[q], r->rel.weight[q], (unsigned long long)r->rel.positives[q]);
        }
    }
}

static json_t *stat_json(st_stat s)
{
    json_t *o = json_object();
    json_object_set_new(o, "mean", isnan(s.mean) ? json_null() : json_real(s.mean));
    json_object_set_new(o, "ci95", json_real(s.half));
    json_object_set_new(o, "users", json_integer(s.count));
    return o;
}

/* "lookalike" and "similar" objects: per ranker its figures and, beside
 * every baseline, the model's lift over it. */
static void segeval_json(json_t *root, const st_segeval *g)
{
    json_t *la = json_object(), *lr = json_object();
    char why[256];
    json_object_set_new(la, "segments", json_integer(g->lal_segments));
    if (st_segeval_why_empty(g, 0, why, sizeof why)) json_object_set_new(la, "skipped", json_string(why));
    json_object_set_new(la, "mean_seeds", json_real(g->lal_seeds));
    json_object_set_new(la, "mean_held_out_users", json_real(g->lal_targets));
    json_object_set_new(la, "mean_other_members", json_real(g->lal_members_n));
    json_object_set_new(la, "note", json_string("offline, on the owner's own data: serving privacy floors do not apply"));
    for (int i = 0; i < ST_LAL_RANKERS; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "recall_at_held_out", stat_json(g->lal_recall[i]));
        json_object_set_new(x, "recall_at_10x_held_out", stat_json(g->lal_recall10[i]));
        json_object_set_new(x, "members_recall", stat_json(g->lal_members[i]));
        json_object_set_new(x, "members_recall_at_10x", stat_json(g->lal_members10[i]));
        double b = g->lal_recall[i].mean, bm = g->lal_members[i].mean;
        if (i != ST_LAL_MODEL && b > 0) json_object_set_new(x, "model_lift", json_real(g->lal_recall[0].mean / b));
        if (i != ST_LAL_MODEL && bm > 0)
            json_object_set_new(x, "members_model_lift", json_real(g->lal_members[0].mean / bm));
        json_object_set_new(lr, st_lal_name(i), x);
    }
    json_object_set_new(la, "rankers", lr);
    json_object_set_new(root, "lookalike", la);
    json_t *si = json_object(), *sr = json_object();
    json_object_set_new(si, "segments", json_integer(g->sim_segments));
    if (st_segeval_why_empty(g, 1, why, sizeof why)) json_object_set_new(si, "skipped", json_string(why));
    json_object_set_new(si, "truth_known_users", json_integer(g->sim_known_users));
    json_object_set_new(si, "truth_cold_users", json_integer(g->sim_cold_users));
    for (int i = 0; i < ST_SIM_RANKERS; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "overlap_at_10", stat_json(g->sim_overlap[i]));
        double b = g->sim_overlap[i].mean;
        if (i != ST_SIM_MODEL && b > 0) json_object_set_new(x, "model_lift", json_real(g->sim_overlap[0].mean / b));
        if (i != ST_SIM_MODEL) json_object_set_new(x, "model_gain", stat_json(g->sim_gain[i]));
        json_object_set_new(sr, st_sim_name(i), x);
    }
    json_object_set_new(si, "rankers", sr);
    json_object_set_new(root, "similar", si);
}

/* The "prior" object: the weight and shape, how they came about, the shape's
 * evidence and the weight grid when they were fitted. */
static json_t *prior_json(const st_evaluation *r, const st_evaluate_opts *o)
{
    json_t *prior = json_object();
    json_object_set_new(prior, "weight", json_real(r->prior_weight));
    json_object_set_new(prior, "how", json_string(r->prior_how));
    json_object_set_new(prior, "shape", json_string(st_prior_shape_name(r->prior_linear)));
    json_object_set_new(prior, "shape_how", json_string(r->shape_how ? r->shape_how : ""));
    const st_shape_evidence *sh = &r->shape;
    if (sh->k[0]) {
        json_t *ev = json_array();
        for (int i = 0; i < 2 && sh->k[i]; i++) {
            json_t *x = json_object();
            json_object_set_new(x, "k", json_integer(sh->k[i]));
            json_object_set_new(x, "linear_gain", json_real(sh->gain[i]));
            json_object_set_new(x, "se", json_real(sh->se[i]));
            json_array_append_new(ev, x);
        }
        json_object_set_new(prior, "shape_evidence", ev);
        json_object_set_new(prior, "linear_gain", json_real(sh->gain[2]));
        json_object_set_new(prior, "linear_gain_se", json_real(sh->se[2]));
    }
    if (o->prior_mode == 0 && r->validation_users > 0) {
        json_t *grid = json_array();
        for (uint32_t g = 0; g < st_prior_grid_len; g++) {
            json_t *p = json_object();
            json_object_set_new(p, "weight", json_real(st_prior_grid[g]));
            json_object_set_new(p, "validation_metric", json_real(r->prior_values[g]));
            json_array_append_new(grid, p);
        }
        json_object_set_new(prior, "grid", grid);
    }
    return prior;
}

json_t *st_evalout_json(const st_facts *fa, const st_evaluation *r, const st_evaluate_opts *o, const st_model *m,
                           const double *loss, uint32_t iterations)
{
    json_t *root = json_object(), *info = json_object();
    for (int i = 0; i < fa->n; i++) json_object_set_new(info, fa->kv[2 * i], json_string(fa->kv[2 * i + 1]));
    json_object_set_new(root, "run", info);
    json_object_set_new(root, "recall_normalisation", json_string("hits / min(K, held-out segments)"));
    json_object_set_new(root, "test_users", json_integer(r->test_users));
    json_object_set_new(root, "validation_users", json_integer(r->validation_users));
    json_t *ks = json_array();
    for (uint32_t j = 0; j < o->nk; j++) json_array_append_new(ks, json_integer(o->ks[j]));
    json_object_set_new(root, "k", ks);
    json_t *rankers = json_object(), *skipped = json_object();
    for (int sq = 0; sq < NSHOW; sq++) {
        int i = show_order[sq];
        if (!r->ranked[i]) {
            if (r->why[i][0]) json_object_set_new(skipped, st_rank_name(st_ev_kind[i]), json_string(r->why[i]));
            continue;
        }
        json_t *rk = json_object();
        for (int q = 0; q < ST_NMETRICS; q++) {
            json_t *arr = json_array();
            for (uint32_t j = 0; j < o->nk; j++) json_array_append_new(arr, stat_json(r->sum[i].m[j][q]));
            json_object_set_new(rk, st_metric_name(q), arr);
        }
        json_object_set_new(rk, "auc", stat_json(r->sum[i].auc));
        json_t *cov = json_array();
        for (uint32_t j = 0; j < o->nk; j++) json_array_append_new(cov, json_real(r->sum[i].coverage[j]));
        json_object_set_new(rk, "coverage", cov);
        if (i >= ST_EV_KNN) json_object_set_new(rk, "fit_seconds", json_real(r->build_seconds[i]));
        if (i == ST_EV_EASE) {
            json_object_set_new(rk, "lambda", json_real(r->ease_lambda));
            json_object_set_new(rk, "segments", json_integer(r->ease_segments));
        }
        json_object_set_new(rankers, st_rank_name(st_ev_kind[i]), rk);
    }
    json_object_set_new(root, "rankers", rankers);
    json_object_set_new(root, "not_ranked", skipped);
    json_t *lift = json_object();
    for (int i = 1; i < ST_EV_RANKERS; i++) {
        if (!r->ranked[i]) continue;
        json_t *l = json_object();
        for (int q = 0; q < ST_NMETRICS; q++) {
            json_t *arr = json_array();
            for (uint32_t j = 0; j < o->nk; j++) {
                double b = r->sum[i].m[j][q].mean, a = r->sum[0].m[j][q].mean;
                json_array_append_new(arr, b > 0 ? json_real(a / b) : json_null());
            }
            json_object_set_new(l, st_metric_name(q), arr);
        }
        json_object_set_new(lift, st_rank_name(st_ev_kind[i]), l);
    }
    json_object_set_new(root, "lift", lift);
    json_object_set_new(root, "prior", prior_json(r, o));
    if (r->have_rel) {
        json_t *c = json_object(), *bins = json_array();
        json_object_set_new(c, "a", json_real(r->a));
        json_object_set_new(c, "b", json_real(r->b));
        json_object_set_new(c, "how", json_string(r->calib_how));
        json_object_set_new(c, "ece", json_real(r->rel.ece));
        for (uint32_t q = 0; q < r->rel.bins; q++) {
            if (r->rel.weight[q] <= 0) continue;
            json_t *b = json_object();
            json_object_set_new(b, "lo", json_real(r->rel.lo[q]));
            json_object_set_new(b, "hi", json_real(r->rel.hi[q]));
            json_object_set_new(b, "predicted", json_real(r->rel.predicted[q]));
            json_object_set_new(b, "observed", json_real(r->rel.observed[q]));
            json_object_set_new(b, "pairs", json_real(r->rel.weight[q]));
            json_object_set_new(b, "held_out", json_integer((json_int_t)r->rel.positives[q]));
            json_array_append_new(bins, b);
        }
        json_object_set_new(c, "reliability", bins);
        json_object_set_new(root, "calibration", c);
    }
    json_t *segs = json_array();
    for (uint32_t i = 0; i < r->nseg; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "segment", json_string(st_idmap_name(&m->segment_ids, r->seg[i], NULL)));
        json_object_set_new(s, "users", json_integer(r->seg_users[i]));
        json_object_set_new(s, "recall", json_real(r->seg_recall[i]));
        json_array_append_new(segs, s);
    }
    json_object_set_new(root, "segment_recall_k", json_integer(o->ks[o->metric == ST_NMETRICS ? 0 : o->metric_ki]));
    json_object_set_new(root, "segment_recall", segs);
    json_t *ls = json_array();
    for (uint32_t i = 0; loss && i < iterations; i++) json_array_append_new(ls, json_real(loss[i]));
    json_object_set_new(root, "loss", ls);
    if (r->have_seg_eval) segeval_json(root, &r->seg_eval);
    return root;
}

void st_evalout_csv(FILE *f, const st_evaluation *r, const st_evaluate_opts *o)
{
    fprintf(f, "ranker,metric,k,mean,ci95,users\n");
    for (int sq = 0; sq < NSHOW; sq++) {
        int i = show_order[sq];
        if (!r->ranked[i]) continue;
        const char *name = st_rank_name(st_ev_kind[i]);
        for (int q = 0; q < ST_NMETRICS; q++)
            for (uint32_t j = 0; j < o->nk; j++) {
                st_stat s = r->sum[i].m[j][q];
                fprintf(f, "%s,%s,%u,%.9g,%.9g,%u\n", name, st_metric_name(q), o->ks[j], s.mean, s.half, s.count);
            }
        fprintf(f, "%s,auc,,%.9g,%.9g,%u\n", name, r->sum[i].auc.mean, r->sum[i].auc.half, r->sum[i].auc.count);
        for (uint32_t j = 0; j < o->nk; j++)
            fprintf(f, "%s,coverage,%u,%.9g,,%u\n", name, o->ks[j], r->sum[i].coverage[j], r->sum[i].users);
    }
    if (!r->have_seg_eval) return;
    const st_segeval *g = &r->seg_eval;
    for (int i = 0; i < ST_LAL_RANKERS && g->lal_segments; i++) {
        st_stat a = g->lal_recall[i], b = g->lal_recall10[i];
        fprintf(f, "lookalike:%s,recall_at_held_out,,%.9g,%.9g,%u\n", st_lal_name(i), a.mean, a.half, a.count);
        fprintf(f, "lookalike:%s,recall_at_10x_held_out,,%.9g,%.9g,%u\n", st_lal_name(i), b.mean, b.half, b.count);
        st_stat mm = g->lal_members[i];
        fprintf(f, "lookalike:%s,members_recall,,%.9g,%.9g,%u\n", st_lal_name(i), mm.mean, mm.half, mm.count);
    }
    for (int i = 0; i < ST_SIM_RANKERS && g->sim_segments; i++) {
        st_stat a = g->sim_overlap[i];
        fprintf(f, "similar:%s,overlap,10,%.9g,%.9g,%u\n", st_sim_name(i), a.mean, a.half, a.count);
        st_stat d = g->sim_gain[i];
        if (i != ST_SIM_MODEL) fprintf(f, "similar:%s,model_gain,10,%.9g,%.9g,%u\n", st_sim_name(i), d.mean, d.half, d.count);
    }
}

int st_evalout_report(const char *dir, const st_facts *fa, const st_evaluation *r, const st_evaluate_opts *o, const st_model *m,
                        const double *loss, uint32_t iterations, char *err)
{
    const char *names[ST_EVALUATE_SEGMENT_ROWS];
    for (uint32_t i = 0; i < r->nseg; i++) names[i] = st_idmap_name(&m->segment_ids, r->seg[i], NULL);
    char notes[600] = "";
    size_t nl = 0;
    for (int i = ST_EV_KNN; i < ST_EV_RANKERS; i++)
        if (!r->ranked[i] && r->why[i][0] && nl < sizeof notes)
            nl += (size_t)snprintf(notes + nl, sizeof notes - nl, "%s%s not ranked: %s.", nl ? " " : "",
                                   st_rank_name(st_ev_kind[i]), r->why[i]);
    st_report rep = {
        .title = "starling eval",
        .facts = fa->kv,
        .notes = notes[0] ? notes : NULL,
        .loss = loss,
        .iterations = iterations,
        .rel = r->have_rel ? &r->rel : NULL,
        .calib_a = r->a,
        .calib_b = r->b,
        .hist_lo = r->hist_lo,
        .hist_hi = r->hist_hi,
        .nseg = r->nseg,
        .seg_k = o->ks[o->metric == ST_NMETRICS ? 0 : o->metric_ki],
        .seg_names = names,
        .seg_users = r->seg_users,
        .seg_recall = r->seg_recall,
        .seg_eval = r->have_seg_eval ? &r->seg_eval : NULL,
    };
    for (int q = 0, slot = 0; q < NSHOW; q++) {
        int i = show_order[q];
        if (!r->ranked[i]) continue;
        rep.sum[slot] = &r->sum[i];
        rep.names[slot++] = st_rank_name(st_ev_kind[i]);
    }
    memcpy(rep.hist_pos, r->hist_pos, sizeof rep.hist_pos);
    memcpy(rep.hist_neg, r->hist_neg, sizeof rep.hist_neg);
    return st_report_write(dir, &rep, err);
}

/* --dump DIR: what an independent check needs to recompute every metric:
 * users.tsv (test users in ranking order: id, model row or -1, activity),
 * seen.tsv and test.tsv (user, segment), segments.tsv (the model's segment
 * order), scores.f32 (test users x n float32, little-endian: exactly the
 * scores the model ranking used), item-knn.f32 and ease.f32 (the same for
 * each baseline ranked), metrics.json (the --json output). */
int st_evalout_dump(const char *dir, const st_eval_set *set, const st_model *m, const st_evaluation *r,
                    const st_evaluate_opts *o, json_t *metrics, int threads, char *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return st_seterr(err, "%s: cannot create: %s", dir, strerror(errno));
    char path[4096];
    FILE *fu, *fs, *ft, *fg, *fsc;
    snprintf(path, sizeof path, "%s/users.tsv", dir);
    fu = fopen(path, "w");
    snprintf(path, sizeof path, "%s/seen.tsv", dir);
    fs = fopen(path, "w");
    snprintf(path, sizeof path, "%s/test.tsv", dir);
    ft = fopen(path, "w");
    snprintf(path, sizeof path, "%s/segments.tsv", dir);
    fg = fopen(path, "w");
    snprintf(path, sizeof path, "%s/scores.f32", dir);
    fsc = fopen(path, "wb");
    int rc = -1;
    float *scores = st_malloc((size_t)r->test_users * m->segments * sizeof *scores + 1);
    if (!fu || !fs || !ft || !fg || !fsc || !scores) {
        st_seterr(err, "%s: cannot write the dump: %s", dir, strerror(errno));
        goto out;
    }
    for (uint32_t s = 0; s < m->segments; s++) fprintf(fg, "%s\n", st_idmap_name(&m->segment_ids, s, NULL));
    for (uint32_t e = 0; e < set->users; e++) {
        if (set->validation[e]) continue;
        const char *u = set->names[e];
        fprintf(fu, "%s\t%lld\t%u\n", u, set->model_user[e] == ST_NOT_FOUND ? -1LL : (long long)set->model_user[e],
                set->activity[e]);
        for (uint64_t q = set->seen_ptr[e]; q < set->seen_ptr[e + 1]; q++)
            fprintf(fs, "%s\t%s\n", u, st_idmap_name(&m->segment_ids, set->seen[q], NULL));
        for (uint64_t q = set->test_ptr[e]; q < set->test_ptr[e + 1]; q++)
            fprintf(ft, "%s\t%s\n", u, st_idmap_name(&m->segment_ids, set->test[q], NULL));
    }
    /* The scores exactly as the ranking pass computed them (same blocks). */
    uint8_t test = 0;
    st_ranker model = {.kind = ST_RANK_MODEL, .V = m->V, .prior = r->prior, .prior_weight = r->prior_weight};
    if (st_eval_scores(set, &model, m->segments, &test, threads, scores, err) != 0) goto out;
    if (fwrite(scores, sizeof *scores * m->segments, r->test_users, fsc) != r->test_users) {
        st_seterr(err, "%s/scores.f32: write failed", dir);
        goto out;
    }
    /* The baselines' scores likewise, one file each. */
    for (int i = ST_EV_KNN; i < ST_EV_RANKERS; i++) {
        if (!r->ranked[i]) continue;
        if (st_evaluate_baseline_scores(m, set, o, i, scores, err) != 0) goto out;
        snprintf(path, sizeof path, "%s/%s.f32", dir, st_rank_name(st_ev_kind[i]));
        FILE *fb = fopen(path, "wb");
        size_t wrote = fb ? fwrite(scores, sizeof *scores * m->segments, r->test_users, fb) : 0;
        if (!fb || fclose(fb) != 0 || wrote != r->test_users) {
            st_seterr(err, "%s: write failed", path);
            goto out;
        }
    }
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    if (json_dump_file(metrics, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0) {
        st_seterr(err, "%s: cannot write", path);
        goto out;
    }
    rc = 0;
out:
    if (fu) fclose(fu);
    if (fs) fclose(fs);
    if (ft) fclose(ft);
    if (fg) fclose(fg);
    if (fsc && fclose(fsc) != 0 && rc == 0) rc = st_seterr(err, "%s: write failed", dir);
    st_free(scores);
    return rc;
}
