/* cli_eval: `starling eval` and `starling tune`.
 *
 * eval, two forms:
 *   eval MODEL TEST_EVENTS      an existing model on held-out events; users the
 *                               model does not know are folded in (--fold-in)
 *   eval EVENTS... --split SPEC split, train (the training options of `train`),
 *                               evaluate, and optionally write the model (-o)
 * tune: the split form over a grid or random sample of hyper-parameters, each
 * run stopped early on the validation metric; writes the best model.
 *
 * Both end in st_evaluate() (evaluate.h): fit the prior weight and the calibration on the
 * validation users, rank the test users with the model and the two
 * baselines, and summarise. The output (terminal table, --json, --csv,
 * --report DIR, --dump DIR) is written from the one result.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "baseline.h"
#include "cli.h"
#include "ranking.h"
#include "evaluate.h"
#include "model.h"
#include "report.h"
#include "segeval.h"
#include "rng.h"
#include "score.h"
#include "train.h"
#include "util.h"


/* ---- the options both commands share --------------------------------------- */

typedef struct {
    const char *ks_spec, *split_spec, *prior_spec, *metric_spec, *report, *dump, *out, *baselines_spec;
    uint64_t split_seed, min_events, max_events, fold_max, negatives, segments, knn_neighbours, ease_max;
    double fold_in, validation, knn_shrink, ease_lambda;
    unsigned baselines;
    int json, csv, quiet, lookalike;
    double seed_share;
    /* parsed */
    st_split split;
    uint32_t ks[ST_EVAL_MAXK], nk, metric_ki;
    int metric;           /* ST_M_*, or ST_NMETRICS for AUC */
    int prior_mode;       /* 0 fit on validation users, 1 the model's, 2 fixed */
    double prior_fixed;
} eval_opts;

/* What st_evaluate needs of the options. */
static st_evaluate_opts evaluate_opts(const eval_opts *o, int threads)
{
    st_evaluate_opts e = {.nk = o->nk, .metric = o->metric, .metric_ki = o->metric_ki, .prior_mode = o->prior_mode,
                          .prior_fixed = o->prior_fixed, .seed = o->split_seed, .negatives = (uint32_t)o->negatives,
                          .segments = (uint32_t)o->segments, .threads = threads};
    memcpy(e.ks, o->ks, sizeof e.ks);
    e.baselines = o->baselines;
    e.knn_neighbours = (uint32_t)o->knn_neighbours;
    e.knn_shrink = o->knn_shrink;
    e.ease_lambda = o->ease_lambda;
    e.ease_max_segments = (uint32_t)o->ease_max;
    return e;
}

static void eval_opts_init(eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->ks_spec = "5,10,20,50,100";
    o->metric_spec = NULL; /* recall at the cut-off asked for nearest 20: see eval_opts_finish */
    o->split_seed = 42;
    o->min_events = 1;
    o->negatives = 100;
    o->segments = 10;
    o->fold_in = 0.8;
    o->validation = -1; /* auto: see eval_opts_finish */
    o->baselines_spec = "item-knn,ease";
    o->seed_share = 0.1;
    o->knn_neighbours = ST_KNN_NEIGHBOURS;
    o->knn_shrink = ST_KNN_SHRINK;
    o->ease_max = ST_EASE_MAX_SEGMENTS;
}

static void eval_opts_add(eval_opts *o, st_opt *opts, int *n, int tune)
{
    const st_opt common[] = {
        {"k", 'k', ST_OPT_STRING, &o->ks_spec, "K,...", "cut-offs K of every metric", 0},
        {"metric", 0, ST_OPT_STRING, &o->metric_spec, "NAME@K",
         tune ? "what to select and stop on: recall|ndcg|precision|map|hit@K, or auc (default recall@20, or "
                "recall at the -k nearest 20; a K not in -k joins it)"
              : "what the prior weight is fitted to: recall|ndcg|precision|map|hit@K, or auc (default recall@20, or "
                "recall at the -k nearest 20; a K not in -k joins it)",
         0},
        {"split-seed", 0, ST_OPT_U64, &o->split_seed, "S", "seed of the split and of the validation users", 0},
        {"min-events", 0, ST_OPT_U64, &o->min_events, "N", "evaluate only users with at least N distinct segments", 0},
        {"max-events", 0, ST_OPT_U64, &o->max_events, "N", "... and at most N (0 = no limit)", 0},
        {"fold-in", 0, ST_OPT_DOUBLE, &o->fold_in, "F",
         "share of an unknown (held-out) user's segments folded in; the rest is tested", 0},
        {"fold-in-max", 0, ST_OPT_U64, &o->fold_max, "N",
         "fold in at most N segments of an unknown user (0 = no limit): makes sparse users of dense ones", 0},
        {"validation", 0, ST_OPT_DOUBLE, &o->validation, "F",
         "share of evaluated users that fit the prior weight and calibration (default 0.2; 0 for a calibrated "
         "model evaluated as it is)",
         0},
        {"prior-weight", 0, ST_OPT_STRING, &o->prior_spec, "fit|model|W",
         "popularity-prior weight: fitted on validation users, the model's, or W (default: fit; model for eval "
         "MODEL)",
         0},
        {"baselines", 0, ST_OPT_STRING, &o->baselines_spec, "LIST",
         "strong baselines ranked beside popularity and random: item-knn, ease, both, or none", 0},
        {"knn-neighbours", 0, ST_OPT_U64, &o->knn_neighbours, "N", "item-kNN: neighbours kept per segment", 0},
        {"knn-shrink", 0, ST_OPT_DOUBLE, &o->knn_shrink, "S", "item-kNN: shrinkage of the cosine", 0},
        {"ease-lambda", 0, ST_OPT_DOUBLE, &o->ease_lambda, "L",
         "EASE: L2 regularisation (default 0: 10 x the mean users per segment)", 0},
        {"ease-max-segments", 0, ST_OPT_U64, &o->ease_max, "N",
         "EASE: skipped above N segments with training users (its N x N matrix: 20,000 is 1.6 GB)", 0},
        {"lookalike", 0, ST_OPT_FLAG, &o->lookalike, NULL,
         "also measure LOOKALIKE (seed lists of a segment expanded to its held-out users) and SIMILAR (against "
         "held-out co-engagement)",
         0},
        {"seed-share", 0, ST_OPT_DOUBLE, &o->seed_share, "F", "--lookalike: share of a segment's users in its seed list",
         0},
        {"negatives", 0, ST_OPT_U64, &o->negatives, "N", "other segments sampled per user for calibration", 0},
        {"segments", 0, ST_OPT_U64, &o->segments, "N", "rows of the per-segment recall table", 0},
        {"output", 'o', ST_OPT_STRING, &o->out, "MODEL",
         tune ? "write the best model (with its prior weight and calibration)"
              : "write the trained model, with its prior weight and calibration (split form)",
         0},
        {"json", 0, ST_OPT_FLAG, &o->json, NULL, "print the results as JSON", 0},
        {"csv", 0, ST_OPT_FLAG, &o->csv, NULL, "print the metrics as CSV", 0},
        {"report", 0, ST_OPT_STRING, &o->report, "DIR", "write an HTML report with plots to DIR/index.html", 0},
        {"dump", 0, ST_OPT_STRING, &o->dump, "DIR",
         "write the test users, their held-out and excluded segments and the exact scores ranked (for checks)", 0},
        {"quiet", 'q', ST_OPT_FLAG, &o->quiet, NULL, "no progress on stderr", 0},
    };
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) opts[(*n)++] = common[i];
}

static int parse_ks(const char *spec, uint32_t *ks, uint32_t *nk)
{
    *nk = 0;
    const char *p = spec;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || errno || v < 1 || v > 100000 || *nk >= ST_EVAL_MAXK) return -1;
        if (*nk > 0 && v <= ks[*nk - 1]) return -1;
        ks[(*nk)++] = (uint32_t)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return *nk ? 0 : -1;
}

static int parse_metric(const char *spec, const uint32_t *ks, uint32_t nk, int *metric, uint32_t *ki)
{
    if (strcmp(spec, "auc") == 0) {
        *metric = ST_NMETRICS;
        *ki = 0;
        return 0;
    }
    const char *at = strchr(spec, '@');
    if (!at) return -1;
    *metric = -1;
    for (int q = 0; q < ST_NMETRICS; q++)
        if (strlen(st_metric_name(q)) == (size_t)(at - spec) && strncmp(spec, st_metric_name(q), at - spec) == 0)
            *metric = q;
    uint64_t K;
    if (*metric < 0 || st_parse_u64(at + 1, &K) != 0) return -1;
    for (uint32_t j = 0; j < nk; j++)
        if (ks[j] == K) {
            *ki = j;
            return 0;
        }
    return -2;
}

static int eval_opts_finish(eval_opts *o, const st_cmd_doc *doc, int split_form)
{
    if (parse_ks(o->ks_spec, o->ks, &o->nk) != 0)
        return st_cli_usage(doc, "-k: '%s' is not a list of ascending cut-offs (1..100000, at most %d)", o->ks_spec,
                            ST_EVAL_MAXK);
    if (!o->metric_spec) {
        /* recall at 20 when 20 is asked for, else at the nearest K asked for
         * (the smaller of two as near): never a K the user did not ask for. */
        static char spec[32];
        uint32_t best = o->ks[0];
        for (uint32_t j = 1; j < o->nk; j++) {
            uint32_t d = o->ks[j] > 20 ? o->ks[j] - 20 : 20 - o->ks[j], db = best > 20 ? best - 20 : 20 - best;
            if (d < db) best = o->ks[j];
        }
        snprintf(spec, sizeof spec, "recall@%u", best);
        o->metric_spec = spec;
    }
    int rc = parse_metric(o->metric_spec, o->ks, o->nk, &o->metric, &o->metric_ki);
    if (rc == -1) return st_cli_usage(doc, "--metric: '%s' is not NAME@K (recall@20, ndcg@10, ...) or auc", o->metric_spec);
    if (rc == -2) {
        /* A metric at a K not listed: that K joins the cut-offs. */
        uint64_t K = strtoull(strchr(o->metric_spec, '@') + 1, NULL, 10);
        if (o->nk >= ST_EVAL_MAXK || K < 1 || K > 100000)
            return st_cli_usage(doc, "--metric: the K of '%s' is not among -k %s, and cannot be added", o->metric_spec,
                                o->ks_spec);
        uint32_t j = o->nk;
        while (j > 0 && o->ks[j - 1] > K) {
            o->ks[j] = o->ks[j - 1];
            j--;
        }
        o->ks[j] = (uint32_t)K;
        o->nk++;
        parse_metric(o->metric_spec, o->ks, o->nk, &o->metric, &o->metric_ki);
    }
    if (!(o->fold_in > 0 && o->fold_in < 1)) return st_cli_usage(doc, "--fold-in must be between 0 and 1");
    if (o->validation != -1 && !(o->validation >= 0 && o->validation < 1))
        return st_cli_usage(doc, "--validation must be at least 0 and below 1");
    if (o->negatives < 1 || o->negatives > 100000) return st_cli_usage(doc, "--negatives must be between 1 and 100000");
    if (o->segments > ST_EVALUATE_SEGMENT_ROWS) return st_cli_usage(doc, "--segments must be at most %d", ST_EVALUATE_SEGMENT_ROWS);
    if (o->min_events > UINT32_MAX || o->max_events > UINT32_MAX)
        return st_cli_usage(doc, "--min-events and --max-events must fit 32 bits");
    if (o->max_events && o->max_events < o->min_events)
        return st_cli_usage(doc, "--max-events is below --min-events");
    o->prior_mode = split_form ? 0 : 1;
    if (o->prior_spec) {
        if (strcmp(o->prior_spec, "fit") == 0) o->prior_mode = 0;
        else if (strcmp(o->prior_spec, "model") == 0) o->prior_mode = 1;
        else if (st_parse_double(o->prior_spec, &o->prior_fixed) == 0 && o->prior_fixed >= 0) o->prior_mode = 2;
        else return st_cli_usage(doc, "--prior-weight: '%s' is not fit, model or a number >= 0", o->prior_spec);
        if (split_form && o->prior_mode == 1)
            return st_cli_usage(doc, "--prior-weight model needs a model: use eval MODEL TEST_EVENTS");
    }
    o->baselines = 0;
    if (strcmp(o->baselines_spec, "none") != 0) {
        char buf[128], *save = NULL;
        snprintf(buf, sizeof buf, "%s", o->baselines_spec);
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (strcmp(tok, "item-knn") == 0 || strcmp(tok, "knn") == 0) o->baselines |= ST_BASELINE_KNN;
            else if (strcmp(tok, "ease") == 0) o->baselines |= ST_BASELINE_EASE;
            else
                return st_cli_usage(doc, "--baselines: '%s' is not item-knn, ease, a list of both, or none", tok);
        }
    }
    if (o->knn_neighbours < 1 || o->knn_neighbours > 100000)
        return st_cli_usage(doc, "--knn-neighbours must be between 1 and 100000");
    if (!(o->knn_shrink >= 0)) return st_cli_usage(doc, "--knn-shrink must be >= 0");
    if (!(o->ease_lambda >= 0)) return st_cli_usage(doc, "--ease-lambda must be >= 0 (0: the default)");
    if (o->ease_max > 100000) return st_cli_usage(doc, "--ease-max-segments must be at most 100000");
    o->split.seed = o->split_seed;
    o->split.min_events = (uint32_t)o->min_events;
    o->split.max_events = (uint32_t)o->max_events;
    o->split.fold_in = o->fold_in;
    if (o->fold_max > 100000) return st_cli_usage(doc, "--fold-in-max must be at most 100000");
    o->split.fold_max = (uint32_t)o->fold_max;
    if (split_form) {
        char err[ST_ERRLEN];
        if (st_split_parse(o->split_spec, &o->split, err) != 0) return st_cli_usage(doc, "--split: %s", err);
    }
    return ST_CLI_GO;
}

/* ---- output ----------------------------------------------------------------------------- */

#define MAX_FACTS 40

typedef struct {
    const char *kv[2 * MAX_FACTS + 1];
    char buf[MAX_FACTS][2][256];
    int n;
} facts;

__attribute__((format(printf, 3, 4))) static void fact(facts *f, const char *key, const char *fmt, ...)
{
    if (f->n >= MAX_FACTS) return;
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

/* The rankers in the order the outputs show them, and the baselines the
 * model's lift is shown over. */
static const int show_order[] = {ST_EV_MODEL, ST_EV_POPULARITY, ST_EV_KNN, ST_EV_EASE, ST_EV_RANDOM};
static const int lift_over[] = {ST_EV_POPULARITY, ST_EV_KNN, ST_EV_EASE};
static const char *lift_label[ST_EV_RANKERS] = {"", "lift/pop", "", "lift/knn", "lift/ease"};
#define NSHOW ((int)(sizeof show_order / sizeof show_order[0]))
#define NLIFT ((int)(sizeof lift_over / sizeof lift_over[0]))

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

/* LOOKALIKE and SIMILAR, as two small tables. */
static void print_segeval(FILE *f, const st_segeval *g)
{
    char a[64], b[64], c[64];
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
    fprintf(f, "\nSIMILAR over %u segments: overlap@10 with the 10 segments most co-engaged with each in held-out\n"
               "engagement (cosine of their held-out user sets)\n",
            g->sim_segments);
    fprintf(f, "  %-16s  %-18s  %9s\n", "ranker", "overlap@10", "lift");
    for (int i = 0; i < ST_SIM_RANKERS; i++) {
        ci_text(a, sizeof a, g->sim_overlap[i]);
        char l[32] = "";
        if (i != ST_SIM_MODEL) lift_text(l, sizeof l, g->sim_overlap[ST_SIM_MODEL].mean, g->sim_overlap[i].mean);
        fprintf(f, "  %-16s  %-19s  %9s\n", st_sim_name(i), a, l);
    }
}

static void print_table(FILE *f, const facts *fa, const st_evaluation *r, const eval_opts *o, const st_model *m)
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
    if (r->have_seg_eval) print_segeval(f, &r->seg_eval);
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
    json_object_set_new(la, "segments", json_integer(g->lal_segments));
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
    for (int i = 0; i < ST_SIM_RANKERS; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "overlap_at_10", stat_json(g->sim_overlap[i]));
        double b = g->sim_overlap[i].mean;
        if (i != ST_SIM_MODEL && b > 0) json_object_set_new(x, "model_lift", json_real(g->sim_overlap[0].mean / b));
        json_object_set_new(sr, st_sim_name(i), x);
    }
    json_object_set_new(si, "rankers", sr);
    json_object_set_new(root, "similar", si);
}

static json_t *result_json(const facts *fa, const st_evaluation *r, const eval_opts *o, const st_model *m,
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
    json_t *prior = json_object();
    json_object_set_new(prior, "weight", json_real(r->prior_weight));
    json_object_set_new(prior, "how", json_string(r->prior_how));
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
    json_object_set_new(root, "prior", prior);
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

static void print_csv(FILE *f, const st_evaluation *r, const eval_opts *o)
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
    for (int i = 0; i < ST_LAL_RANKERS; i++) {
        st_stat a = g->lal_recall[i], b = g->lal_recall10[i];
        fprintf(f, "lookalike:%s,recall_at_held_out,,%.9g,%.9g,%u\n", st_lal_name(i), a.mean, a.half, a.count);
        fprintf(f, "lookalike:%s,recall_at_10x_held_out,,%.9g,%.9g,%u\n", st_lal_name(i), b.mean, b.half, b.count);
        st_stat mm = g->lal_members[i];
        fprintf(f, "lookalike:%s,members_recall,,%.9g,%.9g,%u\n", st_lal_name(i), mm.mean, mm.half, mm.count);
    }
    for (int i = 0; i < ST_SIM_RANKERS; i++) {
        st_stat a = g->sim_overlap[i];
        fprintf(f, "similar:%s,overlap,10,%.9g,%.9g,%u\n", st_sim_name(i), a.mean, a.half, a.count);
    }
}

static int write_report(const char *dir, const facts *fa, const st_evaluation *r, const eval_opts *o, const st_model *m,
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
static int dump_run(const char *dir, const st_eval_set *set, const st_model *m, const st_evaluation *r,
                    const eval_opts *o, json_t *metrics, int threads, char *err)
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
    st_evaluate_opts eo = evaluate_opts(o, threads);
    for (int i = ST_EV_KNN; i < ST_EV_RANKERS; i++) {
        if (!r->ranked[i]) continue;
        if (st_evaluate_baseline_scores(m, set, &eo, i, scores, err) != 0) goto out;
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

/* Writes every output o asks for. */
static int emit(const facts *fa, const st_evaluation *r, const eval_opts *o, const st_model *m, const st_eval_set *set,
                const double *loss, uint32_t iterations, int threads)
{
    char err[ST_ERRLEN];
    json_t *j = result_json(fa, r, o, m, loss, iterations);
    int code = ST_EXIT_OK;
    if (o->json) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
    } else if (o->csv) {
        print_csv(stdout, r, o);
    } else {
        print_table(stdout, fa, r, o, m);
    }
    if (o->report) {
        if (write_report(o->report, fa, r, o, m, loss, iterations, err) != 0) code = st_cli_fail("eval", "%s", err);
        else if (!o->quiet) fprintf(stderr, "wrote the report %s/index.html\n", o->report);
    }
    if (o->dump && code == ST_EXIT_OK) {
        if (dump_run(o->dump, set, m, r, o, j, threads, err) != 0) code = st_cli_fail("eval", "%s", err);
        else if (!o->quiet) fprintf(stderr, "wrote the dump to %s/\n", o->dump);
    }
    json_decref(j);
    return code;
}

/* The facts shared by every output: data, split, model, users. */
static void describe(facts *fa, char **inputs, int ninputs, const eval_opts *o, const st_model *m,
                     const st_eval_set *set, const st_evaluation *r, double cut, double train_seconds, int split_form)
{
    char buf[1024];
    size_t bl = 0;
    buf[0] = '\0';
    for (int i = 0; i < ninputs && bl < sizeof buf - 2; i++)
        bl += (size_t)snprintf(buf + bl, sizeof buf - bl, "%s%s", i ? ", " : "", inputs[i]);
    fact(fa, split_form ? "events" : "test events", "%s", buf);
    if (split_form) {
        char sp[64];
        st_split_describe(&o->split, sp, sizeof sp);
        if (!isnan(cut)) {
            time_t tt = (time_t)cut;
            struct tm tm;
            char ts[64] = "";
            if (gmtime_r(&tt, &tm)) strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
            fact(fa, "split", "%s (cut at %s), seed %llu", sp, ts, (unsigned long long)o->split_seed);
        } else if (o->split.kind == ST_SPLIT_USERS) {
            fact(fa, "split", "%s, seed %llu; held-out users fold in %g of their segments (at most %s)", sp,
                 (unsigned long long)o->split_seed, o->fold_in,
                 o->fold_max ? (snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->fold_max), buf) : "all");
        } else {
            fact(fa, "split", "%s, seed %llu", sp, (unsigned long long)o->split_seed);
        }
    } else {
        fact(fa, "unknown users", "folded in: %g of their segments, the rest tested (seed %llu)", o->fold_in,
             (unsigned long long)o->split_seed);
    }
    if (o->min_events > 1 || o->max_events)
        fact(fa, "eligible users", "%llu to %s distinct segments", (unsigned long long)o->min_events,
             o->max_events ? (snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->max_events), buf) : "any");
    const st_model_header *h = &m->h;
    fact(fa, "model", "%u users x %u segments, rank %u, %u iterations, %s confidence (alpha %g), lambda %g, seed %llu",
         m->users, m->segments, m->k, h->iterations, st_conf_name((st_conf_scheme)h->confidence), h->alpha, h->lambda,
         (unsigned long long)h->seed);
    if (split_form) fact(fa, "training", "%.2f s", train_seconds);
    uint32_t cold = 0;
    for (uint32_t e = 0; e < set->users; e++) cold += set->model_user[e] == ST_NOT_FOUND;
    fact(fa, "evaluated users", "%u: %u test, %u validation (%u folded in)", set->users, r->test_users,
         r->validation_users, cold);
    fact(fa, "held-out pairs", "%llu of test users; %llu dropped (segment unknown to the model, or seen)",
         (unsigned long long)r->test_pairs, (unsigned long long)set->dropped_pairs);
    if (set->cold_skipped)
        fact(fa, "skipped users", "%llu unknown users with too few segments to fold in and test",
             (unsigned long long)set->cold_skipped);
    fact(fa, "prior weight", "%g (%s); score = U.V + w log(1+pop)/log(1+max pop)", r->prior_weight, r->prior_how);
    double users_s = r->run[0].seconds > 0 ? r->run[0].ranked / r->run[0].seconds : 0;
    fact(fa, "ranking", "%u users x %u segments in %.3f s (%.0f users/s)", r->run[0].ranked, m->segments,
         r->run[0].seconds, users_s);
}

static int weighting_from_model(const st_model *m, st_weighting *w, char *err)
{
    st_weighting_default(w);
    char kinds[4096];
    if (st_model_meta(m, "kind_weights", kinds, sizeof kinds) == 0 && kinds[0] &&
        st_weighting_parse_kinds(w, kinds, err) != 0)
        return -1;
    w->half_life = m->h.half_life;
    if (!isnan(m->h.decay_now)) {
        w->now = m->h.decay_now;
        w->has_now = 1;
    }
    return 0;
}

/* Saves m to path with the evaluation's figures in its META. */
static int save_evaluated(st_model *m, const st_evaluation *r, const eval_opts *o, const char *path, char *err)
{
    size_t len;
    st_evaluate_opts e = evaluate_opts(o, 1);
    char *meta = st_evaluation_meta(m, r, &e, o->split_spec ? o->split_spec : "model form (cold users folded in)",
                                    o->split_seed, &len);
    if (!meta) return st_seterr(err, "out of memory");
    const char *old = m->meta;
    size_t old_len = m->meta_len;
    m->meta = meta;
    m->meta_len = len;
    int rc = st_model_save(path, m, err);
    m->meta = old;
    m->meta_len = old_len;
    st_free(meta);
    return rc;
}

/* ---- the split form's pieces, shared with tune --------------------------------------- */

typedef struct {
    st_event_table table;
    uint8_t *role;
    double cut;
    st_interactions x;
    int have_x;
} split_data;

static void split_data_free(split_data *d)
{
    st_event_table_free(&d->table);
    st_free(d->role);
    if (d->have_x) st_interactions_free(&d->x);
    memset(d, 0, sizeof *d);
}

static int split_read(const char *cmd, char **paths, int npaths, const st_read_opts *ro, const st_weighting *w,
                      const eval_opts *o, split_data *d)
{
    char err[ST_ERRLEN];
    memset(d, 0, sizeof *d);
    st_read_stats stats;
    memset(&stats, 0, sizeof stats);
    double t0 = st_now();
    if (st_eval_events_read(paths, npaths, ro, &d->table, &stats, err) != 0) return st_cli_fail(cmd, "%s", err);
    d->role = st_malloc(d->table.count + 1);
    if (!d->role) return st_cli_fail(cmd, "out of memory");
    if (st_split_assign(&d->table, &o->split, d->role, &d->cut, err) != 0) return st_cli_fail(cmd, "%s", err);
    if (st_eval_build(&d->table, d->role, ST_ROLE_TRAIN, w, &d->x, err) != 0) return st_cli_fail(cmd, "%s", err);
    d->have_x = 1;
    if (!o->quiet) {
        uint64_t held = 0;
        for (uint64_t i = 0; i < d->table.count; i++) held += d->role[i] != ST_ROLE_TRAIN;
        fprintf(stderr, "read %llu events in %.1f s; training on %llu (%u users, %u segments), %llu held out\n",
                (unsigned long long)d->table.count, st_now() - t0, (unsigned long long)d->x.events,
                d->x.users.count, d->x.segments.count, (unsigned long long)held);
    }
    return ST_EXIT_OK;
}

static int on_progress_print(void *ctx, const st_trained *t, double dt)
{
    const eval_opts *o = ctx;
    if (!o->quiet)
        fprintf(stderr, "iteration %u/%u loss %.6f seconds %.3f\n", t->iterations, t->params.iterations,
                t->loss[t->iterations - 1], dt);
    return 0;
}

static double default_validation(const eval_opts *o, const st_model *m)
{
    if (o->validation >= 0) return o->validation;
    /* A calibrated model evaluated as it is needs nothing fitted. */
    if (o->prior_mode != 0 && (m->h.flags & ST_MODEL_CALIBRATED)) return 0;
    return 0.2;
}

/* ---- eval ------------------------------------------------------------------------------- */

int cli_eval(int argc, char **argv)
{
    eval_opts o;
    eval_opts_init(&o);
    st_train_cli tc;
    st_train_cli_init(&tc);
    st_opt opts[ST_TRAIN_CLI_NOPTS + 32];
    int nopts = 0;
    opts[nopts++] = (st_opt){"split", 0, ST_OPT_STRING, &o.split_spec, "SPEC",
                             "split EVENTS, train and evaluate: holdout:F, leave:K, time:WHEN|F, users:F", 0};
    eval_opts_add(&o, opts, &nopts, 0);
    st_train_cli_opts(&tc, opts, &nopts);
    opts[nopts] = (st_opt){0};
    const st_cmd_doc doc = {
        "eval", "MODEL TEST_EVENTS [options] | EVENTS... --split SPEC [options]",
        "Evaluate a model on held-out events against the popularity and random\n"
        "baselines: precision, recall, NDCG, MAP, hit rate at every K, AUC, catalogue\n"
        "coverage, per-segment recall, calibration.",
        "Two forms. `eval MODEL TEST_EVENTS`: users the model knows are ranked as they\n"
        "are; unknown users are folded in from a share (--fold-in) of their segments and\n"
        "tested on the rest. `eval EVENTS --split SPEC`: split, train with the training\n"
        "options (as `starling train`), evaluate. Every ranking excludes the user's\n"
        "training segments; recall@K is normalised by min(K, held-out segments). A share\n"
        "of the evaluated users (--validation) fits the popularity-prior weight and the\n"
        "calibration; the metrics are those of the other (test) users. docs/EVALUATION.md\n"
        "defines every number."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    int split_form = o.split_spec != NULL;
    if (split_form && npos < 1) return st_cli_usage(&doc, "no event files given");
    if (!split_form && npos != 2)
        return st_cli_usage(&doc, "expected MODEL and TEST_EVENTS (or EVENTS... --split SPEC), got %d arguments",
                            npos);
    if ((rc = eval_opts_finish(&o, &doc, split_form)) != ST_CLI_GO) return rc;
    st_als_params p;
    st_weighting w;
    st_read_opts ro;
    if ((rc = st_train_cli_finish(&tc, &doc, &p, &w, &ro)) != ST_CLI_GO) return rc;
    if (!split_form && o.out) {
        st_weighting_free(&w);
        return st_cli_usage(&doc, "-o writes the model trained by the split form; eval MODEL does not train");
    }
    int threads = p.threads > 0 ? p.threads : st_cpu_count();
    char err[ST_ERRLEN];
    int code = ST_EXIT_ERROR;
    split_data d;
    memset(&d, 0, sizeof d);
    st_trained t;
    memset(&t, 0, sizeof t);
    st_model m;
    memset(&m, 0, sizeof m);
    st_eval_set set;
    st_eval_set_init(&set, 1);
    st_evaluation r;
    memset(&r, 0, sizeof r);
    float *popularity = NULL;
    uint8_t *role = NULL;
    st_event_table table;
    memset(&table, 0, sizeof table);
    st_weighting mw;
    st_weighting_default(&mw);
    facts fa;
    memset(&fa, 0, sizeof fa);
    if (split_form) {
        if ((code = split_read("eval", pos, npos, &ro, &w, &o, &d)) != ST_EXIT_OK) goto done;
        code = ST_EXIT_ERROR;
        t.params = p;
        st_train_hooks hooks = {.progress = on_progress_print, .ctx = &o};
        if (st_train_run(&d.x, &t, &hooks, err) != 0) {
            st_cli_fail("eval", "%s", err);
            goto done;
        }
        popularity = st_malloc(((size_t)d.x.segments.count + 1) * sizeof *popularity);
        if (!popularity) {
            st_cli_fail("eval", "out of memory");
            goto done;
        }
        st_train_model(&d.x, &t, "", popularity, &m);
        m.h.half_life = w.half_life;
        m.h.decay_now = w.has_now ? w.now : NAN;
        st_eval_set_init(&set, m.k);
        if (st_eval_set_from_roles(&set, &d.table, d.role, &m, &w, err) != 0) {
            st_cli_fail("eval", "%s", err);
            goto done;
        }
    } else {
        if (st_model_load(pos[0], &m, err) != 0) {
            st_cli_fail("eval", "%s", err);
            goto done;
        }
        st_read_stats stats;
        memset(&stats, 0, sizeof stats);
        if (st_eval_events_read(pos + 1, 1, &ro, &table, &stats, err) != 0 ||
            !(role = st_malloc(table.count + 1)) ||
            st_split_cold(&table, &m, o.fold_in, o.split.fold_max, o.split_seed, role, err) != 0 ||
            weighting_from_model(&m, &mw, err) != 0) {
            st_cli_fail("eval", "%s", role ? err : "out of memory");
            goto done;
        }
        st_eval_set_init(&set, m.k);
        if (st_eval_set_from_roles(&set, &table, role, &m, &mw, err) != 0) {
            st_cli_fail("eval", "%s", err);
            goto done;
        }
    }
    if (set.users == 0) {
        st_cli_fail("eval", "no user to evaluate: %llu held-out pairs were dropped (their segment is unknown to the "
                            "model, or already in the user's training history: are the test events the training "
                            "events?) and %llu unknown users had too few segments to fold in and test",
                    (unsigned long long)set.dropped_pairs, (unsigned long long)set.cold_skipped);
        goto done;
    }
    st_eval_set_partition(&set, default_validation(&o, &m), o.split_seed);
    st_evaluate_opts eo = evaluate_opts(&o, threads);
    if (st_evaluate(&m, &set, &eo, &r, err) != 0) {
        st_cli_fail("eval", "%s", err);
        goto done;
    }
    if (o.lookalike) {
        st_segeval_opts so;
        st_segeval_opts_default(&so);
        so.seed_share = o.seed_share;
        so.seed = o.split_seed;
        so.threads = threads;
        /* Too little held-out engagement for it is said, not fatal: the
         * ranking figures stand on their own. */
        if (st_segeval_run(&m, &set, &so, &r.seg_eval, err) != 0)
            fprintf(stderr, "starling eval: --lookalike: %s\n", err);
        else
            r.have_seg_eval = 1;
    }
    describe(&fa, split_form ? pos : pos + 1, split_form ? npos : 1, &o, &m, &set, &r, d.cut, t.seconds, split_form);
    if (!split_form) fact(&fa, "model file", "%s", pos[0]);
    if (o.out) {
        st_evaluation_apply(&m, &r);
        if (save_evaluated(&m, &r, &o, o.out, err) != 0) {
            st_cli_fail("eval", "%s", err);
            goto done;
        }
        fact(&fa, "model written", "%s", o.out);
    }
    code = emit(&fa, &r, &o, &m, &set, m.loss, m.h.iterations, threads);
done:
    st_evaluation_free(&r);
    st_eval_set_free(&set);
    if (split_form) st_free(popularity);
    else st_model_free(&m);
    st_trained_free(&t);
    split_data_free(&d);
    st_free(role);
    st_event_table_free(&table);
    st_weighting_free(&w);
    st_weighting_free(&mw);
    return code;
}

/* ---- tune -------------------------------------------------------------------------------- */

#define MAX_LIST 16
#define MAX_CONFIGS 1000

typedef struct {
    uint32_t factors, iterations;
    double lambda, alpha;
    st_conf_scheme confidence;
    /* results */
    uint32_t best_iteration, ran;
    double value, seconds;
} tune_config;

typedef struct {
    const eval_opts *o;
    const split_data *d;
    const st_weighting *w;
    uint64_t eval_every, patience;
    int threads;
    st_eval_set set;
    int built;
    float *popularity;
    double best;
    uint32_t best_iteration, since_best;
    float *bestX, *bestY;
    size_t xs, ys;
    char err[ST_ERRLEN];
    int failed;
} tune_ctx;

/* The validation metric of the factors in t. */
static int tune_measure(tune_ctx *c, const st_trained *t, double *value)
{
    st_model m;
    st_train_model(&c->d->x, t, "", c->popularity, &m);
    if (!c->built) {
        st_eval_set_free(&c->set);
        st_eval_set_init(&c->set, m.k);
        if (st_eval_set_from_roles(&c->set, &c->d->table, c->d->role, &m, c->w, c->err) != 0) return -1;
        st_eval_set_partition(&c->set, c->o->validation < 0 ? 0.2 : c->o->validation, c->o->split_seed);
        c->built = 1;
    } else {
        st_foldin_ctx f;
        if (st_foldin_ctx_init(&f, &m, c->err) != 0) return -1;
        int rc = st_eval_set_refresh(&c->set, &m, &f, c->err);
        st_foldin_ctx_free(&f);
        if (rc != 0) return -1;
    }
    st_ranker r = {.kind = ST_RANK_MODEL, .V = m.V};
    st_eval_run run;
    uint8_t val = 1;
    if (st_eval_rank(&c->set, &r, m.segments, c->o->ks, c->o->nk, &val, c->threads, &run, c->err) != 0) return -1;
    st_eval_summary sum;
    st_eval_summarize(&c->set, &run, &val, &sum);
    st_eval_run_free(&run);
    if (sum.users == 0) return st_seterr(c->err, "no validation users: raise --validation");
    st_evaluate_opts eo = evaluate_opts(c->o, c->threads);
    *value = st_evaluate_metric(&sum, &eo);
    return 0;
}

static int tune_progress(void *vctx, const st_trained *t, double dt)
{
    (void)dt;
    tune_ctx *c = vctx;
    if (t->iterations % c->eval_every != 0 && t->iterations < t->params.iterations) return 0;
    double v;
    if (tune_measure(c, t, &v) != 0) {
        c->failed = 1;
        return 1;
    }
    if (!c->o->quiet)
        fprintf(stderr, "  iteration %u/%u loss %.6f validation %s %.4f\n", t->iterations, t->params.iterations,
                t->loss[t->iterations - 1], c->o->metric_spec, v);
    if (v > c->best) {
        c->best = v;
        c->best_iteration = t->iterations;
        c->since_best = 0;
        memcpy(c->bestX, t->X, c->xs);
        memcpy(c->bestY, t->Y, c->ys);
        return 0;
    }
    return ++c->since_best >= c->patience;
}

/* A comma-separated list of at most MAX_LIST items, each parsed by fn into
 * out[i]; 0 when every item parses and there is at least one. */
typedef int (*item_fn)(const char *tok, void *out, int i);

static int parse_list(const char *s, item_fn fn, void *out, int *n)
{
    *n = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= MAX_LIST || fn(tok, out, *n) != 0) return -1;
        (*n)++;
    }
    return *n ? 0 : -1;
}

static int item_u64(const char *tok, void *out, int i) { return st_parse_u64(tok, (uint64_t *)out + i); }

static int item_double(const char *tok, void *out, int i) { return st_parse_double(tok, (double *)out + i); }

static int item_conf(const char *tok, void *out, int i)
{
    int c = strcmp(tok, "linear") == 0 ? ST_CONF_LINEAR
            : strcmp(tok, "log") == 0  ? ST_CONF_LOG
            : strcmp(tok, "bm25") == 0 ? ST_CONF_BM25
                                       : -1;
    ((int *)out)[i] = c;
    return c < 0 ? -1 : 0;
}

static int cmp_config(const void *a, const void *b)
{
    const tune_config *x = a, *y = b;
    if (x->value != y->value) return x->value > y->value ? -1 : 1;
    return 0;
}

int cli_tune(int argc, char **argv)
{
    eval_opts o;
    eval_opts_init(&o);
    st_train_cli tc;
    st_train_cli_init(&tc);
    const char *lf = NULL, *ll = NULL, *la = NULL, *li = NULL, *lc = NULL;
    int search = 0;
    uint64_t trials = 20, eval_every = 1, patience = 3;
    st_opt opts[ST_TRAIN_CLI_NOPTS + 48];
    int nopts = 0;
    opts[nopts++] = (st_opt){"split", 0, ST_OPT_STRING, &o.split_spec, "SPEC",
                             "how to hold data out: holdout:F, leave:K, time:WHEN|F, users:F (required)", 0};
    opts[nopts++] = (st_opt){"search", 0, ST_OPT_CHOICE, &search, NULL,
                             "every combination of the lists, or --trials random draws from them", "grid|random"};
    opts[nopts++] = (st_opt){"trials", 0, ST_OPT_U64, &trials, "N", "random draws; the most grid points allowed", 0};
    opts[nopts++] = (st_opt){"eval-every", 0, ST_OPT_U64, &eval_every, "N", "iterations between validation checks", 0};
    opts[nopts++] = (st_opt){"patience", 0, ST_OPT_U64, &patience, "N",
                             "stop a run after N checks without a better validation metric", 0};
    eval_opts_add(&o, opts, &nopts, 1);
    int first_train = nopts;
    st_train_cli_opts(&tc, opts, &nopts);
    /* The searched hyper-parameters take comma-separated lists instead. */
    for (int i = first_train; i < nopts; i++) {
        const char **dst = strcmp(opts[i].name, "factors") == 0      ? &lf
                           : strcmp(opts[i].name, "lambda") == 0     ? &ll
                           : strcmp(opts[i].name, "alpha") == 0      ? &la
                           : strcmp(opts[i].name, "iterations") == 0 ? &li
                           : strcmp(opts[i].name, "confidence") == 0 ? &lc
                                                                     : NULL;
        if (!dst) continue;
        opts[i].type = ST_OPT_STRING;
        opts[i].dest = (void *)dst;
        opts[i].metavar = "V,...";
        opts[i].choices = NULL;
        opts[i].help = strcmp(opts[i].name, "iterations") == 0 ? "most iterations per run (early stopping may use fewer)"
                                                               : "values to try";
    }
    opts[nopts] = (st_opt){0};
    const st_cmd_doc doc = {
        "tune", "EVENTS... --split SPEC [--factors 32,64 --lambda 0.05,0.1 ...] [-o MODEL]",
        "Search hyper-parameters: train on the split's training part for every\n"
        "configuration (grid or random draws from the lists), stop each run early on the\n"
        "validation users' metric, print the configurations sorted by it, evaluate the\n"
        "best on the test users (as `starling eval`) and write it with -o.",
        "Lists default to the single `starling train` default. The validation users\n"
        "(--validation) choose; the test users only report, so the final figures are not\n"
        "selected on."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos < 1) return st_cli_usage(&doc, "no event files given");
    if (!o.split_spec) return st_cli_usage(&doc, "--split SPEC is required");
    if ((rc = eval_opts_finish(&o, &doc, 1)) != ST_CLI_GO) return rc;
    if (o.validation == 0) return st_cli_usage(&doc, "--validation must be above 0: the validation users choose");
    if (trials < 1 || trials > MAX_CONFIGS) return st_cli_usage(&doc, "--trials must be between 1 and %d", MAX_CONFIGS);
    if (eval_every < 1 || patience < 1) return st_cli_usage(&doc, "--eval-every and --patience must be at least 1");
    uint64_t fv[MAX_LIST] = {tc.factors}, iv[MAX_LIST] = {tc.iterations};
    double lv[MAX_LIST] = {tc.p.lambda}, av[MAX_LIST] = {tc.p.alpha};
    int cv[MAX_LIST] = {tc.conf}, nf = 1, nl = 1, na = 1, ni = 1, nc = 1;
    if ((lf && parse_list(lf, item_u64, fv, &nf) != 0) || (li && parse_list(li, item_u64, iv, &ni) != 0))
        return st_cli_usage(&doc, "--factors and --iterations take whole numbers: 32,64 (at most %d)", MAX_LIST);
    if ((ll && parse_list(ll, item_double, lv, &nl) != 0) || (la && parse_list(la, item_double, av, &na) != 0))
        return st_cli_usage(&doc, "--lambda and --alpha take numbers: 0.05,0.1 (at most %d)", MAX_LIST);
    if (lc && parse_list(lc, item_conf, cv, &nc) != 0)
        return st_cli_usage(&doc, "--confidence takes linear, log, bm25: log,bm25");
    st_als_params base;
    st_weighting w;
    st_read_opts ro;
    if ((rc = st_train_cli_finish(&tc, &doc, &base, &w, &ro)) != ST_CLI_GO) return rc;
    /* The configurations. */
    uint64_t grid = (uint64_t)nf * nl * na * ni * nc;
    if (search == 0 && grid > trials) {
        st_weighting_free(&w);
        return st_cli_usage(&doc, "the grid has %llu configurations, more than --trials %llu; shrink the lists or "
                                  "raise --trials",
                            (unsigned long long)grid, (unsigned long long)trials);
    }
    uint32_t ncfg = search == 0 ? (uint32_t)grid : (uint32_t)trials;
    tune_config *cfg = st_calloc(ncfg, sizeof *cfg);
    if (!cfg) {
        st_weighting_free(&w);
        return st_cli_fail("tune", "out of memory");
    }
    st_rng g = st_rng_for(base.seed, 0x70e);
    for (uint32_t i = 0; i < ncfg; i++) {
        uint64_t q = i;
        int a = search == 0 ? (int)(q % nf) : (int)st_rng_below(&g, nf);
        q /= nf;
        int b = search == 0 ? (int)(q % nl) : (int)st_rng_below(&g, nl);
        q /= nl;
        int c = search == 0 ? (int)(q % na) : (int)st_rng_below(&g, na);
        q /= na;
        int d = search == 0 ? (int)(q % ni) : (int)st_rng_below(&g, ni);
        q /= ni;
        int e = search == 0 ? (int)(q % nc) : (int)st_rng_below(&g, nc);
        cfg[i] = (tune_config){.factors = fv[a] > 100000 ? 0 : (uint32_t)fv[a], .lambda = lv[b], .alpha = av[c],
                               .iterations = iv[d] > 1000000 ? 1000001 : (uint32_t)iv[d],
                               .confidence = (st_conf_scheme)cv[e], .value = -INFINITY};
        st_als_params p = base;
        p.factors = cfg[i].factors;
        p.lambda = cfg[i].lambda;
        p.alpha = cfg[i].alpha;
        p.iterations = cfg[i].iterations;
        p.confidence = cfg[i].confidence;
        const char *bad = st_als_check(&p);
        if (bad) {
            st_free(cfg);
            st_weighting_free(&w);
            return st_cli_usage(&doc, "%s", bad);
        }
    }
    int threads = base.threads > 0 ? base.threads : st_cpu_count();
    int code = ST_EXIT_ERROR;
    char err[ST_ERRLEN];
    split_data d;
    tune_ctx c;
    memset(&c, 0, sizeof c);
    st_eval_set_init(&c.set, 1);
    st_trained best;
    memset(&best, 0, sizeof best);
    uint32_t best_cfg = ST_NOT_FOUND;
    double best_value = -INFINITY;
    st_evaluation r;
    memset(&r, 0, sizeof r);
    st_eval_set set;
    st_eval_set_init(&set, 1);
    if ((code = split_read("tune", pos, npos, &ro, &w, &o, &d)) != ST_EXIT_OK) goto done;
    code = ST_EXIT_ERROR;
    c.popularity = st_malloc(((size_t)d.x.segments.count + 1) * sizeof *c.popularity);
    if (!c.popularity) {
        st_cli_fail("tune", "out of memory");
        goto done;
    }
    c.o = &o;
    c.d = &d;
    c.w = &w;
    c.eval_every = eval_every;
    c.patience = patience;
    c.threads = threads;
    for (uint32_t i = 0; i < ncfg; i++) {
        st_trained t;
        memset(&t, 0, sizeof t);
        t.params = base;
        t.params.factors = cfg[i].factors;
        t.params.lambda = cfg[i].lambda;
        t.params.alpha = cfg[i].alpha;
        t.params.iterations = cfg[i].iterations;
        t.params.confidence = cfg[i].confidence;
        c.xs = (size_t)d.x.users.count * t.params.factors * sizeof(float);
        c.ys = (size_t)d.x.segments.count * t.params.factors * sizeof(float);
        st_free(c.bestX);
        st_free(c.bestY);
        c.bestX = st_malloc(c.xs);
        c.bestY = st_malloc(c.ys);
        c.built = 0; /* the rank may change: the set is rebuilt */
        c.best = -INFINITY;
        c.best_iteration = 0;
        c.since_best = 0;
        if (!c.bestX || !c.bestY) {
            st_cli_fail("tune", "out of memory");
            goto done;
        }
        if (!o.quiet)
            fprintf(stderr, "configuration %u/%u: factors %u, lambda %g, alpha %g, %s confidence, at most %u "
                            "iterations\n",
                    i + 1, ncfg, cfg[i].factors, cfg[i].lambda, cfg[i].alpha, st_conf_name(cfg[i].confidence),
                    cfg[i].iterations);
        st_train_hooks hooks = {.progress = tune_progress, .ctx = &c};
        double t0 = st_now();
        int trc = st_train_run(&d.x, &t, &hooks, err);
        cfg[i].seconds = st_now() - t0;
        if (trc != 0 || c.failed) {
            st_cli_fail("tune", "%s", trc != 0 ? err : c.err);
            st_trained_free(&t);
            goto done;
        }
        cfg[i].ran = t.iterations;
        cfg[i].best_iteration = c.best_iteration;
        cfg[i].value = c.best;
        if (c.best > best_value) {
            /* Keep this run's best factors as the overall best. */
            best_value = c.best;
            best_cfg = i;
            st_trained_free(&best);
            best = t;
            memcpy(best.X, c.bestX, c.xs);
            memcpy(best.Y, c.bestY, c.ys);
            best.iterations = c.best_iteration;
        } else {
            st_trained_free(&t);
        }
    }
    if (best_cfg == ST_NOT_FOUND) {
        st_cli_fail("tune", "no configuration produced a validation metric");
        goto done;
    }
    /* The best, evaluated as `eval` does, on the test users. */
    st_model m;
    st_train_model(&d.x, &best, "", c.popularity, &m);
    m.h.half_life = w.half_life;
    m.h.decay_now = w.has_now ? w.now : NAN;
    st_eval_set_init(&set, m.k);
    if (st_eval_set_from_roles(&set, &d.table, d.role, &m, &w, err) != 0) {
        st_cli_fail("tune", "%s", err);
        goto done;
    }
    st_eval_set_partition(&set, o.validation < 0 ? 0.2 : o.validation, o.split_seed);
    st_evaluate_opts eo = evaluate_opts(&o, threads);
    if (st_evaluate(&m, &set, &eo, &r, err) != 0) {
        st_cli_fail("tune", "%s", err);
        goto done;
    }
    tune_config chosen = cfg[best_cfg];
    qsort(cfg, ncfg, sizeof *cfg, cmp_config);
    facts fa;
    memset(&fa, 0, sizeof fa);
    describe(&fa, pos, npos, &o, &m, &set, &r, d.cut, chosen.seconds, 1);
    fact(&fa, "search", "%s, %u configurations, chosen on validation %s (early stopping: %llu checks, every %llu "
                        "iterations)",
         search == 0 ? "grid" : "random", ncfg, o.metric_spec, (unsigned long long)patience,
         (unsigned long long)eval_every);
    if (o.out) {
        st_evaluation_apply(&m, &r);
        if (save_evaluated(&m, &r, &o, o.out, err) != 0) {
            st_cli_fail("tune", "%s", err);
            goto done;
        }
        fact(&fa, "model written", "%s", o.out);
    }
    if (o.json) {
        json_t *root = json_object(), *arr = json_array();
        for (uint32_t i = 0; i < ncfg; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "factors", json_integer(cfg[i].factors));
            json_object_set_new(e, "lambda", json_real(cfg[i].lambda));
            json_object_set_new(e, "alpha", json_real(cfg[i].alpha));
            json_object_set_new(e, "confidence", json_string(st_conf_name(cfg[i].confidence)));
            json_object_set_new(e, "iterations", json_integer(cfg[i].iterations));
            json_object_set_new(e, "iterations_run", json_integer(cfg[i].ran));
            json_object_set_new(e, "best_iteration", json_integer(cfg[i].best_iteration));
            json_object_set_new(e, "validation_metric", json_real(cfg[i].value));
            json_object_set_new(e, "seconds", json_real(cfg[i].seconds));
            json_array_append_new(arr, e);
        }
        json_object_set_new(root, "metric", json_string(o.metric_spec));
        json_object_set_new(root, "configurations", arr);
        json_object_set_new(root, "evaluation", result_json(&fa, &r, &o, &m, m.loss, m.h.iterations));
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(root);
    } else {
        printf("configurations, best first by validation %s:\n", o.metric_spec);
        printf("  %4s %8s %9s %8s %-10s %12s %12s %9s\n", "rank", "factors", "lambda", "alpha", "confidence",
               "best iter.", o.metric_spec, "seconds");
        for (uint32_t i = 0; i < ncfg; i++)
            printf("  %4u %8u %9g %8g %-10s %5u of %-4u %12.4f %9.2f\n", i + 1, cfg[i].factors, cfg[i].lambda,
                   cfg[i].alpha, st_conf_name(cfg[i].confidence), cfg[i].best_iteration, cfg[i].ran, cfg[i].value,
                   cfg[i].seconds);
        printf("\nthe best configuration, on the test users:\n\n");
        print_table(stdout, &fa, &r, &o, &m);
    }
    code = ST_EXIT_OK;
done:
    st_evaluation_free(&r);
    st_eval_set_free(&set);
    st_eval_set_free(&c.set);
    st_free(c.bestX);
    st_free(c.bestY);
    st_free(c.popularity);
    st_trained_free(&best);
    split_data_free(&d);
    st_free(cfg);
    st_weighting_free(&w);
    return code;
}
