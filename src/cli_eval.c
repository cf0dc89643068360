/* cli_eval: `starling eval`, and the evaluation options it shares with
 * `starling tune` (cli_eval.h).
 *
 * eval, two forms:
 *   eval MODEL TEST_EVENTS      an existing model on held-out events; users the
 *                               model does not know are folded in (--fold-in)
 *   eval EVENTS... --split SPEC split, train (the training options of `train`),
 *                               evaluate, and optionally write the model (-o)
 *
 * Both end in st_evaluate() (evaluate.h): fit the prior weight and the calibration on the
 * validation users, rank the test users with the model and the two
 * baselines, and summarise. The output (terminal table, --json, --csv,
 * --report DIR, --dump DIR) is written from the one result.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "baseline.h"
#include "cli_eval.h"
#include "rng.h"
#include "train.h"
#include "util.h"

/* ---- the options both commands share --------------------------------------- */

/* What st_evaluate needs of the options. */
st_evaluate_opts st_eval_cli_evaluate_opts(const st_eval_cli *o, int threads)
{
    st_evaluate_opts e = {.nk = o->nk, .metric = o->metric, .metric_ki = o->metric_ki, .prior_mode = o->prior_mode,
                          .prior_fixed = o->prior_fixed, .prior_shape = o->prior_shape, .seed = o->split_seed,
                          .negatives = (uint32_t)o->negatives, .segments = (uint32_t)o->segments, .threads = threads};
    memcpy(e.ks, o->ks, sizeof e.ks);
    e.baselines = o->baselines;
    e.knn_neighbours = (uint32_t)o->knn_neighbours;
    e.knn_shrink = o->knn_shrink;
    e.ease_lambda = o->ease_lambda;
    e.ease_max_segments = (uint32_t)o->ease_max;
    return e;
}

void st_eval_cli_init(st_eval_cli *o)
{
    memset(o, 0, sizeof *o);
    o->ks_spec = "5,10,20,50,100";
    o->metric_spec = NULL; /* recall at the cut-off asked for nearest 20: see st_eval_cli_finish */
    o->split_seed = 42;
    o->min_events = 1;
    o->negatives = 100;
    o->segments = 10;
    o->fold_in = 0.8;
    o->validation = -1; /* auto: see st_eval_cli_finish */
    o->baselines_spec = "item-knn,ease";
    o->seed_share = 0.1;
    o->knn_neighbours = ST_KNN_NEIGHBOURS;
    o->knn_shrink = ST_KNN_SHRINK;
    o->ease_max = ST_EASE_MAX_SEGMENTS;
}

void st_eval_cli_add(st_eval_cli *o, st_opt *opts, int *n, int tune)
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
        {"prior-shape", 0, ST_OPT_CHOICE, &o->prior_shape, NULL,
         "the prior's shape: fitted with the weight (linear only when the validation users prefer it beyond their "
         "noise), else the model's; or log(1 + pop) / log(1 + max pop); or pop / max pop",
         "auto|log|linear"},
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
         "the co-engagement the model did not train on: held-out segments, new users' every segment)",
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

int st_eval_cli_finish(st_eval_cli *o, const st_cmd_doc *doc, int split_form)
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

/* Writes every output o asks for. */
static int emit(const st_facts *fa, const st_evaluation *r, const st_eval_cli *o, const st_model *m,
                const st_eval_set *set, const double *loss, uint32_t iterations, int threads)
{
    char err[ST_ERRLEN];
    st_evaluate_opts eo = st_eval_cli_evaluate_opts(o, threads);
    json_t *j = st_evalout_json(fa, r, &eo, m, loss, iterations);
    int code = ST_EXIT_OK;
    if (o->json) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
    } else if (o->csv) {
        st_evalout_csv(stdout, r, &eo);
    } else {
        st_evalout_table(stdout, fa, r, &eo, m);
    }
    if (o->report) {
        if (st_evalout_report(o->report, fa, r, &eo, m, loss, iterations, err) != 0)
            code = st_cli_fail("eval", "%s", err);
        else if (!o->quiet)
            fprintf(stderr, "wrote the report %s/index.html\n", o->report);
    }
    if (o->dump && code == ST_EXIT_OK) {
        if (st_evalout_dump(o->dump, set, m, r, &eo, j, threads, err) != 0) code = st_cli_fail("eval", "%s", err);
        else if (!o->quiet) fprintf(stderr, "wrote the dump to %s/\n", o->dump);
    }
    json_decref(j);
    return code;
}

/* The facts shared by every output: data, split, model, users. */
void st_eval_cli_describe(st_facts *fa, char **inputs, int ninputs, const st_eval_cli *o, const st_model *m,
                     const st_eval_set *set, const st_evaluation *r, double cut, double train_seconds, int split_form)
{
    char buf[1024];
    size_t bl = 0;
    buf[0] = '\0';
    for (int i = 0; i < ninputs && bl < sizeof buf - 2; i++)
        bl += (size_t)snprintf(buf + bl, sizeof buf - bl, "%s%s", i ? ", " : "", inputs[i]);
    st_facts_add(fa, split_form ? "events" : "test events", "%s", buf);
    if (split_form) {
        char sp[64];
        st_split_describe(&o->split, sp, sizeof sp);
        if (!isnan(cut)) {
            time_t tt = (time_t)cut;
            struct tm tm;
            char ts[64] = "";
            if (gmtime_r(&tt, &tm)) strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
            st_facts_add(fa, "split", "%s (cut at %s), seed %llu", sp, ts, (unsigned long long)o->split_seed);
        } else if (o->split.kind == ST_SPLIT_USERS) {
            st_facts_add(fa, "split", "%s, seed %llu; held-out users fold in %g of their segments (at most %s)", sp,
                 (unsigned long long)o->split_seed, o->fold_in,
                 o->fold_max ? (snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->fold_max), buf) : "all");
        } else {
            st_facts_add(fa, "split", "%s, seed %llu", sp, (unsigned long long)o->split_seed);
        }
    } else {
        st_facts_add(fa, "unknown users", "folded in: %g of their segments, the rest tested (seed %llu)", o->fold_in,
             (unsigned long long)o->split_seed);
    }
    if (o->min_events > 1 || o->max_events)
        st_facts_add(fa, "eligible users", "%llu to %s distinct segments", (unsigned long long)o->min_events,
             o->max_events ? (snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->max_events), buf) : "any");
    const st_model_header *h = &m->h;
    st_facts_add(fa, "model", "%u users x %u segments, rank %u, %u iterations, %s confidence (alpha %g), lambda %g, seed %llu",
         m->users, m->segments, m->k, h->iterations, st_conf_name((st_conf_scheme)h->confidence), h->alpha, h->lambda,
         (unsigned long long)h->seed);
    if (split_form) st_facts_add(fa, "training", "%.2f s", train_seconds);
    uint32_t cold = 0;
    for (uint32_t e = 0; e < set->users; e++) cold += set->model_user[e] == ST_NOT_FOUND;
    st_facts_add(fa, "evaluated users", "%u: %u test, %u validation (%u folded in)", set->users, r->test_users,
         r->validation_users, cold);
    st_facts_add(fa, "held-out pairs", "%llu of test users; %llu dropped (segment unknown to the model, or seen)",
         (unsigned long long)r->test_pairs, (unsigned long long)set->dropped_pairs);
    if (set->cold_skipped)
        st_facts_add(fa, "skipped users", "%llu unknown users with too few segments to fold in and test",
             (unsigned long long)set->cold_skipped);
    st_facts_add(fa, "prior weight", "%g (%s); score = U.V + w %s", r->prior_weight, r->prior_how,
         r->prior_linear ? "pop/max pop" : "log(1+pop)/log(1+max pop)");
    if (r->shape.k[0])
        st_facts_add(fa, "prior shape", "%s (%s: the linear prior's gain %+.4f, standard error %.4f)",
             st_prior_shape_name(r->prior_linear), r->shape_how, r->shape.gain[2], r->shape.se[2]);
    else
        st_facts_add(fa, "prior shape", "%s (%s)", st_prior_shape_name(r->prior_linear), r->shape_how);
    double users_s = r->run[0].seconds > 0 ? r->run[0].ranked / r->run[0].seconds : 0;
    st_facts_add(fa, "ranking", "%u users x %u segments in %.3f s (%.0f users/s)", r->run[0].ranked, m->segments,
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
int st_eval_cli_save(st_model *m, const st_evaluation *r, const st_eval_cli *o, const char *path, char *err)
{
    size_t len;
    st_evaluate_opts e = st_eval_cli_evaluate_opts(o, 1);
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

void st_split_data_free(st_split_data *d)
{
    st_event_table_free(&d->table);
    st_free(d->role);
    if (d->have_x) st_interactions_free(&d->x);
    memset(d, 0, sizeof *d);
}

int st_split_data_read(const char *cmd, char **paths, int npaths, const st_read_opts *ro, const st_weighting *w,
                      const st_eval_cli *o, st_split_data *d)
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
    const st_eval_cli *o = ctx;
    if (!o->quiet)
        fprintf(stderr, "iteration %u/%u loss %.6f seconds %.3f\n", t->iterations, t->params.iterations,
                t->loss[t->iterations - 1], dt);
    return 0;
}

static double default_validation(const st_eval_cli *o, const st_model *m)
{
    if (o->validation >= 0) return o->validation;
    /* A calibrated model evaluated as it is needs nothing fitted. */
    if (o->prior_mode != 0 && (m->h.flags & ST_MODEL_CALIBRATED)) return 0;
    return 0.2;
}

/* ---- eval ------------------------------------------------------------------------------- */

static const st_cmd_doc eval_doc = {
    "eval", "MODEL TEST_EVENTS [options] | EVENTS... --split SPEC [options]",
    "Evaluate a model on held-out events against the popularity, item-kNN, EASE and\n"
    "random baselines: precision, recall, NDCG, MAP, hit rate at every K, AUC, catalogue\n"
    "coverage, per-segment recall, calibration; LOOKALIKE and SIMILAR with --lookalike.",
    "Two forms. `eval MODEL TEST_EVENTS`: users the model knows are ranked as they\n"
    "are; unknown users are folded in from a share (--fold-in) of their segments and\n"
    "tested on the rest. `eval EVENTS --split SPEC`: split, train with the training\n"
    "options (as `starling train`), evaluate. Every ranking excludes the user's\n"
    "training segments; recall@K is normalised by min(K, held-out segments). A share\n"
    "of the evaluated users (--validation) fits the popularity-prior weight and the\n"
    "calibration; the metrics are those of the other (test) users. docs/EVALUATION.md\n"
    "defines every number."};

/* One evaluation run: its data, model, set and result. */
typedef struct {
    st_eval_cli o;
    st_split_data d;      /* the split form's */
    st_trained t;
    st_model m;           /* trained (split form) or loaded */
    int loaded;
    float *popularity;
    st_event_table table; /* the model form's test events */
    uint8_t *role;
    st_weighting mw;      /* the model's weighting, for folding in */
    st_eval_set set;
    st_evaluation r;
} eval_job;

/* The split form: split, train, and the evaluation set of the held-out part. */
static int prepare_split(eval_job *j, char **pos, int npos, const st_read_opts *ro, const st_weighting *w,
                         const st_als_params *p)
{
    char err[ST_ERRLEN];
    int code = st_split_data_read("eval", pos, npos, ro, w, &j->o, &j->d);
    if (code != ST_EXIT_OK) return code;
    j->t.params = *p;
    st_train_hooks hooks = {.progress = on_progress_print, .ctx = &j->o};
    if (st_train_run(&j->d.x, &j->t, &hooks, err) != 0) return st_cli_fail("eval", "%s", err);
    j->popularity = st_malloc(((size_t)j->d.x.segments.count + 1) * sizeof *j->popularity);
    if (!j->popularity) return st_cli_fail("eval", "out of memory");
    st_train_model(&j->d.x, &j->t, "", j->popularity, &j->m);
    j->m.h.half_life = w->half_life;
    j->m.h.decay_now = w->has_now ? w->now : NAN;
    st_eval_set_init(&j->set, j->m.k);
    if (st_eval_set_from_roles(&j->set, &j->d.table, j->d.role, &j->m, w, err) != 0)
        return st_cli_fail("eval", "%s", err);
    return ST_EXIT_OK;
}

/* The model form: load the model, read the test events, fold unknown users in. */
static int prepare_model(eval_job *j, const char *model, char *test, const st_read_opts *ro)
{
    char err[ST_ERRLEN];
    if (st_model_load(model, &j->m, err) != 0) return st_cli_fail("eval", "%s", err);
    j->loaded = 1;
    st_read_stats stats;
    memset(&stats, 0, sizeof stats);
    char *paths[1] = {test};
    if (st_eval_events_read(paths, 1, ro, &j->table, &stats, err) != 0 || !(j->role = st_malloc(j->table.count + 1)) ||
        st_split_cold(&j->table, &j->m, j->o.fold_in, j->o.split.fold_max, j->o.split_seed, j->role, err) != 0 ||
        weighting_from_model(&j->m, &j->mw, err) != 0)
        return st_cli_fail("eval", "%s", j->role ? err : "out of memory");
    st_eval_set_init(&j->set, j->m.k);
    if (st_eval_set_from_roles(&j->set, &j->table, j->role, &j->m, &j->mw, err) != 0)
        return st_cli_fail("eval", "%s", err);
    return ST_EXIT_OK;
}

/* Fits, ranks and summarises (and --lookalike). */
static int evaluate(eval_job *j, int threads)
{
    char err[ST_ERRLEN];
    st_eval_set *set = &j->set;
    if (set->users == 0)
        return st_cli_fail("eval", "no user to evaluate: %llu held-out pairs were dropped (their segment is unknown "
                                   "to the model, or already in the user's training history: are the test events the "
                                   "training events?) and %llu unknown users had too few segments to fold in and test",
                           (unsigned long long)set->dropped_pairs, (unsigned long long)set->cold_skipped);
    st_eval_set_partition(set, default_validation(&j->o, &j->m), j->o.split_seed);
    st_evaluate_opts eo = st_eval_cli_evaluate_opts(&j->o, threads);
    if (st_evaluate(&j->m, set, &eo, &j->r, err) != 0) return st_cli_fail("eval", "%s", err);
    if (j->o.lookalike) {
        st_segeval_opts so;
        st_segeval_opts_default(&so);
        so.seed_share = j->o.seed_share;
        so.seed = j->o.split_seed;
        so.threads = threads;
        /* Too little held-out engagement for it is said, not fatal: the
         * ranking figures stand on their own. */
        if (st_segeval_run(&j->m, set, &so, &j->r.seg_eval, err) != 0)
            fprintf(stderr, "starling eval: --lookalike: %s\n", err);
        else
            j->r.have_seg_eval = 1;
    }
    return ST_EXIT_OK;
}

static void eval_job_free(eval_job *j)
{
    st_evaluation_free(&j->r);
    st_eval_set_free(&j->set);
    st_free(j->popularity);
    if (j->loaded) st_model_free(&j->m);
    st_trained_free(&j->t);
    st_split_data_free(&j->d);
    st_free(j->role);
    st_event_table_free(&j->table);
    st_weighting_free(&j->mw);
}

int cli_eval(int argc, char **argv)
{
    eval_job j;
    memset(&j, 0, sizeof j);
    st_eval_cli_init(&j.o);
    st_weighting_default(&j.mw);
    st_eval_set_init(&j.set, 1);
    st_train_cli tc;
    st_train_cli_init(&tc);
    st_opt opts[ST_TRAIN_CLI_NOPTS + 32];
    int nopts = 0;
    opts[nopts++] = (st_opt){"split", 0, ST_OPT_STRING, &j.o.split_spec, "SPEC",
                             "split EVENTS, train and evaluate: holdout:F, leave:K, time:WHEN|F, users:F", 0};
    st_eval_cli_add(&j.o, opts, &nopts, 0);
    st_train_cli_opts(&tc, opts, &nopts);
    opts[nopts] = (st_opt){0};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&eval_doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    int split_form = j.o.split_spec != NULL;
    if (split_form && npos < 1) return st_cli_usage(&eval_doc, "no event files given");
    if (!split_form && npos != 2)
        return st_cli_usage(&eval_doc, "expected MODEL and TEST_EVENTS (or EVENTS... --split SPEC), got %d arguments",
                            npos);
    if ((rc = st_eval_cli_finish(&j.o, &eval_doc, split_form)) != ST_CLI_GO) return rc;
    st_als_params p;
    st_weighting w;
    st_read_opts ro;
    if ((rc = st_train_cli_finish(&tc, &eval_doc, &p, &w, &ro)) != ST_CLI_GO) return rc;
    if (!split_form && j.o.out) {
        st_weighting_free(&w);
        return st_cli_usage(&eval_doc, "-o writes the model trained by the split form; eval MODEL does not train");
    }
    int threads = p.threads > 0 ? p.threads : st_cpu_count();
    int code = split_form ? prepare_split(&j, pos, npos, &ro, &w, &p) : prepare_model(&j, pos[0], pos[1], &ro);
    if (code == ST_EXIT_OK) code = evaluate(&j, threads);
    if (code == ST_EXIT_OK) {
        st_facts fa;
        memset(&fa, 0, sizeof fa);
        st_eval_cli_describe(&fa, split_form ? pos : pos + 1, split_form ? npos : 1, &j.o, &j.m, &j.set, &j.r,
                             j.d.cut, j.t.seconds, split_form);
        if (!split_form) st_facts_add(&fa, "model file", "%s", pos[0]);
        char err[ST_ERRLEN];
        if (j.o.out) {
            st_evaluation_apply(&j.m, &j.r);
            if (st_eval_cli_save(&j.m, &j.r, &j.o, j.o.out, err) != 0) code = st_cli_fail("eval", "%s", err);
            else st_facts_add(&fa, "model written", "%s", j.o.out);
        }
        if (code == ST_EXIT_OK) code = emit(&fa, &j.r, &j.o, &j.m, &j.set, j.m.loss, j.m.h.iterations, threads);
    }
    eval_job_free(&j);
    st_weighting_free(&w);
    return code;
}
