/* cli_tune: `starling tune`: the split form of `eval` over a grid or random
 * draws of hyper-parameters (tune.c searches), each run stopped early on the
 * validation users' metric; the best is evaluated on the test users as
 * `eval` does and written with -o.
 */
#include <math.h>
#include <string.h>

#include "cli_eval.h"
#include "tune.h"
#include "util.h"

/* tune's own settings, beside the evaluation and training options. */
typedef struct {
    st_eval_cli o;
    st_train_cli tc;
    const char *lf, *ll, *la, *li, *lc; /* the lists, as given */
    int search;
    uint64_t trials, eval_every, patience;
} tune_args;

/* A comma-separated list of at most ST_TUNE_MAX_LIST items, each parsed by
 * fn into out[i]; 0 when every item parses and there is at least one. */
typedef int (*item_fn)(const char *tok, void *out, int i);

static int parse_list(const char *s, item_fn fn, void *out, int *n)
{
    *n = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= ST_TUNE_MAX_LIST || fn(tok, out, *n) != 0) return -1;
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
    const st_tune_config *x = a, *y = b;
    if (x->value != y->value) return x->value > y->value ? -1 : 1;
    return 0;
}

static const st_cmd_doc tune_doc = {
    "tune", "EVENTS... --split SPEC [--factors 32,64 --lambda 0.05,0.1 ...] [-o MODEL]",
    "Search hyper-parameters: train on the split's training part for every\n"
    "configuration (grid or random draws from the lists), stop each run early on the\n"
    "validation users' metric, print the configurations sorted by it, evaluate the\n"
    "best on the test users (as `starling eval`) and write it with -o.",
    "Lists default to the single `starling train` default. The validation users\n"
    "(--validation) choose; the test users only report, so the final figures are not\n"
    "selected on."};

/* The option table: tune's own, the evaluation's, and the training ones,
 * where the searched hyper-parameters take comma-separated lists instead. */
static int tune_opts(tune_args *a, st_opt *opts)
{
    int nopts = 0;
    opts[nopts++] = (st_opt){"split", 0, ST_OPT_STRING, &a->o.split_spec, "SPEC",
                             "how to hold data out: holdout:F, leave:K, time:WHEN|F, users:F (required)", 0};
    opts[nopts++] = (st_opt){"search", 0, ST_OPT_CHOICE, &a->search, NULL,
                             "every combination of the lists, or --trials random draws from them", "grid|random"};
    opts[nopts++] = (st_opt){"trials", 0, ST_OPT_U64, &a->trials, "N", "random draws; the most grid points allowed", 0};
    opts[nopts++] =
        (st_opt){"eval-every", 0, ST_OPT_U64, &a->eval_every, "N", "iterations between validation checks", 0};
    opts[nopts++] = (st_opt){"patience", 0, ST_OPT_U64, &a->patience, "N",
                             "stop a run after N checks without a better validation metric", 0};
    st_eval_cli_add(&a->o, opts, &nopts, 1);
    int first_train = nopts;
    st_train_cli_opts(&a->tc, opts, &nopts);
    for (int i = first_train; i < nopts; i++) {
        const char **dst = strcmp(opts[i].name, "factors") == 0      ? &a->lf
                           : strcmp(opts[i].name, "lambda") == 0     ? &a->ll
                           : strcmp(opts[i].name, "alpha") == 0      ? &a->la
                           : strcmp(opts[i].name, "iterations") == 0 ? &a->li
                           : strcmp(opts[i].name, "confidence") == 0 ? &a->lc
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
    return nopts;
}

/* The lists from the options (each defaulting to the train default). */
static int tune_lists(const tune_args *a, st_tune_lists *l)
{
    memset(l, 0, sizeof *l);
    l->factors[0] = a->tc.factors;
    l->iterations[0] = a->tc.iterations;
    l->lambda[0] = a->tc.p.lambda;
    l->alpha[0] = a->tc.p.alpha;
    l->confidence[0] = a->tc.conf;
    l->nf = l->ni = l->nl = l->na = l->nc = 1;
    if ((a->lf && parse_list(a->lf, item_u64, l->factors, &l->nf) != 0) ||
        (a->li && parse_list(a->li, item_u64, l->iterations, &l->ni) != 0))
        return st_cli_usage(&tune_doc, "--factors and --iterations take whole numbers: 32,64 (at most %d)",
                            ST_TUNE_MAX_LIST);
    if ((a->ll && parse_list(a->ll, item_double, l->lambda, &l->nl) != 0) ||
        (a->la && parse_list(a->la, item_double, l->alpha, &l->na) != 0))
        return st_cli_usage(&tune_doc, "--lambda and --alpha take numbers: 0.05,0.1 (at most %d)", ST_TUNE_MAX_LIST);
    if (a->lc && parse_list(a->lc, item_conf, l->confidence, &l->nc) != 0)
        return st_cli_usage(&tune_doc, "--confidence takes linear, log, bm25: log,bm25");
    return ST_CLI_GO;
}

static void on_config(void *ctx, uint32_t i, uint32_t n, const st_tune_config *c)
{
    const tune_args *a = ctx;
    if (a->o.quiet) return;
    fprintf(stderr, "configuration %u/%u: factors %u, lambda %g, alpha %g, %s confidence, at most %u iterations\n",
            i + 1, n, c->factors, c->lambda, c->alpha, st_conf_name(c->confidence), c->iterations);
}

static void on_check(void *ctx, const st_trained *t, double value)
{
    const tune_args *a = ctx;
    if (a->o.quiet) return;
    fprintf(stderr, "  iteration %u/%u loss %.6f validation %s %.4f\n", t->iterations, t->params.iterations,
            t->loss[t->iterations - 1], a->o.metric_spec, value);
}

/* The configurations best first, then the best one's evaluation. */
static void print_result(const tune_args *a, const st_tune_config *cfg, uint32_t ncfg, const st_facts *fa,
                         const st_evaluation *r, const st_evaluate_opts *eo, const st_model *m)
{
    const char *metric = a->o.metric_spec;
    if (a->o.json) {
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
        json_object_set_new(root, "metric", json_string(metric));
        json_object_set_new(root, "configurations", arr);
        json_object_set_new(root, "evaluation", st_evalout_json(fa, r, eo, m, m->loss, m->h.iterations));
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(root);
        return;
    }
    printf("configurations, best first by validation %s:\n", metric);
    printf("  %4s %8s %9s %8s %-10s %12s %12s %9s\n", "rank", "factors", "lambda", "alpha", "confidence",
           "best iter.", metric, "seconds");
    for (uint32_t i = 0; i < ncfg; i++)
        printf("  %4u %8u %9g %8g %-10s %5u of %-4u %12.4f %9.2f\n", i + 1, cfg[i].factors, cfg[i].lambda,
               cfg[i].alpha, st_conf_name(cfg[i].confidence), cfg[i].best_iteration, cfg[i].ran, cfg[i].value,
               cfg[i].seconds);
    printf("\nthe best configuration, on the test users:\n\n");
    st_evalout_table(stdout, fa, r, eo, m);
}

/* The best configuration's model, evaluated on the test users as eval
 * does, written with -o and printed. */
static int finish(const tune_args *a, char **pos, int npos, const st_split_data *d, const st_weighting *w,
                  st_trained *best, st_tune_config *cfg, uint32_t ncfg, uint32_t best_cfg, int threads)
{
    char err[ST_ERRLEN];
    int code = ST_EXIT_ERROR;
    float *popularity = st_malloc(((size_t)d->x.segments.count + 1) * sizeof *popularity);
    st_eval_set set;
    st_eval_set_init(&set, 1);
    st_evaluation r;
    memset(&r, 0, sizeof r);
    if (!popularity) return st_cli_fail("tune", "out of memory");
    st_model m;
    st_train_model(&d->x, best, "", popularity, &m);
    m.h.half_life = w->half_life;
    m.h.decay_now = w->has_now ? w->now : NAN;
    st_eval_set_init(&set, m.k);
    st_evaluate_opts eo = st_eval_cli_evaluate_opts(&a->o, threads);
    if (st_eval_set_from_roles(&set, &d->table, d->role, &m, w, err) != 0) {
        st_cli_fail("tune", "%s", err);
        goto done;
    }
    st_eval_set_partition(&set, a->o.validation < 0 ? 0.2 : a->o.validation, a->o.split_seed);
    if (st_evaluate(&m, &set, &eo, &r, err) != 0) {
        st_cli_fail("tune", "%s", err);
        goto done;
    }
    st_tune_config chosen = cfg[best_cfg];
    qsort(cfg, ncfg, sizeof *cfg, cmp_config);
    st_facts fa;
    memset(&fa, 0, sizeof fa);
    st_eval_cli_describe(&fa, pos, npos, &a->o, &m, &set, &r, d->cut, chosen.seconds, 1);
    st_facts_add(&fa, "search", "%s, %u configurations, chosen on validation %s (early stopping: %llu checks, every "
                                "%llu iterations)",
                 a->search == 0 ? "grid" : "random", ncfg, a->o.metric_spec, (unsigned long long)a->patience,
                 (unsigned long long)a->eval_every);
    if (a->o.out) {
        st_evaluation_apply(&m, &r);
        if (st_eval_cli_save(&m, &r, &a->o, a->o.out, err) != 0) {
            st_cli_fail("tune", "%s", err);
            goto done;
        }
        st_facts_add(&fa, "model written", "%s", a->o.out);
    }
    print_result(a, cfg, ncfg, &fa, &r, &eo, &m);
    code = ST_EXIT_OK;
done:
    st_evaluation_free(&r);
    st_eval_set_free(&set);
    st_free(popularity);
    return code;
}

int cli_tune(int argc, char **argv)
{
    tune_args a;
    memset(&a, 0, sizeof a);
    st_eval_cli_init(&a.o);
    st_train_cli_init(&a.tc);
    a.trials = 20;
    a.eval_every = 1;
    a.patience = 3;
    st_opt opts[ST_TRAIN_CLI_NOPTS + 48];
    tune_opts(&a, opts);
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&tune_doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos < 1) return st_cli_usage(&tune_doc, "no event files given");
    if (!a.o.split_spec) return st_cli_usage(&tune_doc, "--split SPEC is required");
    if ((rc = st_eval_cli_finish(&a.o, &tune_doc, 1)) != ST_CLI_GO) return rc;
    if (a.o.validation == 0) return st_cli_usage(&tune_doc, "--validation must be above 0: the validation users choose");
    if (a.trials < 1 || a.trials > ST_TUNE_MAX_CONFIGS)
        return st_cli_usage(&tune_doc, "--trials must be between 1 and %d", ST_TUNE_MAX_CONFIGS);
    if (a.eval_every < 1 || a.patience < 1)
        return st_cli_usage(&tune_doc, "--eval-every and --patience must be at least 1");
    st_tune_lists lists;
    if ((rc = tune_lists(&a, &lists)) != ST_CLI_GO) return rc;
    st_als_params base;
    st_weighting w;
    st_read_opts ro;
    if ((rc = st_train_cli_finish(&a.tc, &tune_doc, &base, &w, &ro)) != ST_CLI_GO) return rc;
    char err[ST_ERRLEN];
    st_tune_config *cfg;
    int ncfg = st_tune_configs(&lists, a.search, (uint32_t)a.trials, &base, base.seed, &cfg, err);
    if (ncfg < 0) {
        st_weighting_free(&w);
        return st_cli_usage(&tune_doc, "%s", err);
    }
    int threads = base.threads > 0 ? base.threads : st_cpu_count();
    st_split_data d;
    st_trained best;
    memset(&best, 0, sizeof best);
    uint32_t best_cfg;
    int code = st_split_data_read("tune", pos, npos, &ro, &w, &a.o, &d);
    if (code == ST_EXIT_OK) {
        st_evaluate_opts eo = st_eval_cli_evaluate_opts(&a.o, threads);
        st_tune_data td = {.table = &d.table, .role = d.role, .x = &d.x, .w = &w};
        st_tune_opts to = {.eo = &eo, .validation = a.o.validation < 0 ? 0.2 : a.o.validation,
                           .split_seed = a.o.split_seed, .eval_every = a.eval_every, .patience = a.patience,
                           .threads = threads, .on_config = on_config, .on_check = on_check, .ctx = &a};
        if (st_tune_run(&td, &base, cfg, (uint32_t)ncfg, &to, &best, &best_cfg, err) != 0)
            code = st_cli_fail("tune", "%s", err);
        else
            code = finish(&a, pos, npos, &d, &w, &best, cfg, (uint32_t)ncfg, best_cfg, threads);
    }
    st_trained_free(&best);
    st_split_data_free(&d);
    st_free(cfg);
    st_weighting_free(&w);
    return code;
}
