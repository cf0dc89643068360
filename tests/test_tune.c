/* Tests of the hyper-parameter search (tune.h): the configurations of a
 * grid (every combination, the first list varying fastest) and of random
 * draws (seeded: the same draws for the same seed), refusals, and a search
 * on a small synthetic split: early stopping after `patience` checks
 * without improvement, and the best configuration's factors being those of
 * its best check (its validation metric measured again equals the one
 * reported). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ranking.h"
#include "synth.h"
#include "tap.h"
#include "tune.h"
#include "util.h"

static st_tune_lists lists(void)
{
    st_tune_lists l;
    memset(&l, 0, sizeof l);
    l.factors[0] = 4;
    l.factors[1] = 8;
    l.nf = 2;
    l.lambda[0] = 0.5;
    l.lambda[1] = 1;
    l.lambda[2] = 2;
    l.nl = 3;
    l.alpha[0] = 10;
    l.na = 1;
    l.iterations[0] = 6;
    l.ni = 1;
    l.confidence[0] = ST_CONF_LOG;
    l.nc = 1;
    return l;
}

static void test_configs(void)
{
    st_als_params base;
    st_als_params_default(&base);
    st_tune_lists l = lists();
    st_tune_config *cfg;
    char err[ST_ERRLEN] = "";
    int n = st_tune_configs(&l, 0, 100, &base, 1, &cfg, err);
    is_int(n, 6, "a grid of 2 x 3 has 6 configurations");
    int order = n == 6;
    for (int i = 0; i < n && order; i++)
        order = cfg[i].factors == l.factors[i % 2] && cfg[i].lambda == l.lambda[i / 2] && isinf(cfg[i].value);
    ok(order, "every combination, the first list varying fastest");
    st_free(cfg);
    ok(st_tune_configs(&l, 0, 5, &base, 1, &cfg, err) < 0 && strstr(err, "more than --trials 5"),
       "a grid larger than --trials is refused: %s", err);
    st_tune_config *a, *b;
    int na = st_tune_configs(&l, 1, 10, &base, 7, &a, err), nb = st_tune_configs(&l, 1, 10, &base, 7, &b, err);
    int same = na == 10 && nb == 10, varied = 0;
    for (int i = 0; i < 10 && same; i++) {
        same = a[i].factors == b[i].factors && a[i].lambda == b[i].lambda;
        varied |= a[i].factors != a[0].factors || a[i].lambda != a[0].lambda;
    }
    ok(same && varied, "random draws: 10, repeatable with the same seed, and not all alike");
    st_free(a);
    st_free(b);
    l.lambda[0] = -1;
    ok(st_tune_configs(&l, 0, 100, &base, 1, &cfg, err) < 0 && strstr(err, "lambda"),
       "a configuration train would refuse is refused: %s", err);
}

typedef struct {
    int checks;
    double values[256];
    uint32_t iters[256];
} checks_seen;

static void on_check(void *ctx, const st_trained *t, double value)
{
    checks_seen *c = ctx;
    if (c->checks < 256) {
        c->values[c->checks] = value;
        c->iters[c->checks] = t->iterations;
    }
    c->checks++;
}

static void test_search(void)
{
    char dir[] = "/tmp/test_tune.XXXXXX", path[64], err[ST_ERRLEN];
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/ev.csv", dir);
    st_synth_params sp;
    st_synth_params_default(&sp);
    sp.users = 1500;
    sp.segments = 100;
    sp.events = 30000;
    ok(st_synth_write(&sp, path, err) == 0, "a small synthetic log");
    st_read_opts ro;
    st_read_opts_default(&ro);
    st_weighting w;
    st_weighting_default(&w);
    st_event_table table;
    st_read_stats stats = {0};
    char *paths[1] = {path};
    ok(st_eval_events_read(paths, 1, &ro, &table, &stats, err) == 0, "read");
    uint8_t *role = malloc(table.count + 1);
    st_split split = {0};
    ok(st_split_parse("holdout:0.2", &split, err) == 0, "a holdout split");
    split.seed = 3;
    split.min_events = 3;
    double cut;
    ok(st_split_assign(&table, &split, role, &cut, err) == 0, "split");
    st_interactions x;
    ok(st_eval_build(&table, role, ST_ROLE_TRAIN, &w, &x, err) == 0, "the training part");
    st_evaluate_opts eo;
    memset(&eo, 0, sizeof eo);
    eo.ks[0] = 10;
    eo.nk = 1;
    eo.metric = ST_M_RECALL;
    eo.metric_ki = 0;
    st_als_params base;
    st_als_params_default(&base);
    base.threads = 2;
    st_tune_lists l = lists();
    l.nl = 2;
    l.iterations[0] = 12;
    st_tune_config *cfg;
    int n = st_tune_configs(&l, 0, 100, &base, 1, &cfg, err);
    checks_seen seen = {0};
    st_tune_data d = {.table = &table, .role = role, .x = &x, .w = &w};
    st_tune_opts o = {.eo = &eo, .validation = 0.3, .split_seed = 3, .eval_every = 1, .patience = 2, .threads = 2,
                      .on_check = on_check, .ctx = &seen};
    st_trained best;
    uint32_t best_cfg;
    int rc = st_tune_run(&d, &base, cfg, (uint32_t)n, &o, &best, &best_cfg, err);
    ok(rc == 0, "the search runs: %s", rc == 0 ? "ok" : err);
    if (rc == 0) {
        /* The checks come in configuration order, one per iteration
         * (eval_every 1): replay them and see each run stop exactly where
         * patience 2 says, with the best value and iteration it reports. */
        int stopped_right = 1, replayed = 1, early = 0;
        uint32_t at = 0;
        for (int i = 0; i < n && at + cfg[i].ran <= seen.checks && seen.checks <= 256; i++) {
            double bv = -INFINITY;
            uint32_t bi = 0, since = 0, stop = 0;
            for (uint32_t j = 0; j < cfg[i].ran; j++) {
                replayed &= seen.iters[at + j] == j + 1;
                if (seen.values[at + j] > bv) {
                    bv = seen.values[at + j];
                    bi = j + 1;
                    since = 0;
                } else if (++since >= 2 && !stop) {
                    stop = j + 1;
                }
            }
            at += cfg[i].ran;
            replayed &= bv == cfg[i].value && bi == cfg[i].best_iteration;
            stopped_right &= stop ? cfg[i].ran == stop && stop == bi + 2 : cfg[i].ran == 12;
            early += cfg[i].ran < 12;
        }
        ok(replayed && at == seen.checks, "every check is reported, and each run's best value and iteration are its "
                                          "checks' best (%u checks)", at);
        ok(stopped_right, "each run stops exactly 2 checks after its best, or at its last iteration");
        ok(early > 0, "early stopping cut at least one run short (%d of %d)", early, n);
        double top = -INFINITY;
        for (int i = 0; i < n; i++) top = cfg[i].value > top ? cfg[i].value : top;
        ok(cfg[best_cfg].value == top && best.iterations == cfg[best_cfg].best_iteration,
           "the best configuration is the one with the highest validation metric, at its best iteration");
        /* Measure the returned factors again: the same metric. */
        float *pop = malloc((x.segments.count + 1) * sizeof *pop);
        st_model m;
        st_train_model(&x, &best, "", pop, &m);
        st_eval_set set;
        st_eval_set_init(&set, m.k);
        st_eval_set_from_roles(&set, &table, role, &m, &w, err);
        st_eval_set_partition(&set, 0.3, 3);
        st_ranker r = {.kind = ST_RANK_MODEL, .V = m.V};
        st_eval_run run;
        uint8_t val = 1;
        st_eval_rank(&set, &r, m.segments, eo.ks, 1, &val, 2, &run, err);
        st_eval_summary sum;
        st_eval_summarize(&set, &run, &val, &sum);
        is_near(sum.m[0][ST_M_RECALL].mean, cfg[best_cfg].value, 1e-12,
                "the best factors measure the reported validation recall@10 again");
        st_eval_run_free(&run);
        st_eval_set_free(&set);
        free(pop);
        st_trained_free(&best);
    }
    st_free(cfg);
    st_interactions_free(&x);
    st_event_table_free(&table);
    free(role);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_configs();
    test_search();
    return tap_done();
}
