/* tune: configurations and the search with early stopping (tune.h). */
#include "tune.h"

#include <math.h>
#include <string.h>

#include "rng.h"
#include "util.h"

int st_tune_configs(const st_tune_lists *l, int random, uint32_t trials, const st_als_params *base, uint64_t seed,
                    st_tune_config **out, char *err)
{
    *out = NULL;
    uint64_t grid = (uint64_t)l->nf * l->nl * l->na * l->ni * l->nc;
    if (!random && grid > trials)
        return st_seterr(err, "the grid has %llu configurations, more than --trials %llu; shrink the lists or raise "
                              "--trials",
                         (unsigned long long)grid, (unsigned long long)trials);
    uint32_t n = random ? trials : (uint32_t)grid;
    st_tune_config *cfg = st_calloc(n ? n : 1, sizeof *cfg);
    if (!cfg) return st_seterr(err, "out of memory");
    st_rng g = st_rng_for(seed, 0x70e);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t q = i;
        int a = !random ? (int)(q % l->nf) : (int)st_rng_below(&g, l->nf);
        q /= l->nf;
        int b = !random ? (int)(q % l->nl) : (int)st_rng_below(&g, l->nl);
        q /= l->nl;
        int c = !random ? (int)(q % l->na) : (int)st_rng_below(&g, l->na);
        q /= l->na;
        int d = !random ? (int)(q % l->ni) : (int)st_rng_below(&g, l->ni);
        q /= l->ni;
        int e = !random ? (int)(q % l->nc) : (int)st_rng_below(&g, l->nc);
        cfg[i] = (st_tune_config){.factors = l->factors[a] > 100000 ? 0 : (uint32_t)l->factors[a],
                                  .lambda = l->lambda[b],
                                  .alpha = l->alpha[c],
                                  .iterations = l->iterations[d] > 1000000 ? 1000001 : (uint32_t)l->iterations[d],
                                  .confidence = (st_conf_scheme)l->confidence[e],
                                  .value = -INFINITY};
        st_als_params p = *base;
        p.factors = cfg[i].factors;
        p.lambda = cfg[i].lambda;
        p.alpha = cfg[i].alpha;
        p.iterations = cfg[i].iterations;
        p.confidence = cfg[i].confidence;
        const char *bad = st_als_check(&p);
        if (bad) {
            st_free(cfg);
            return st_seterr(err, "%s", bad);
        }
    }
    *out = cfg;
    return (int)n;
}

/* One run's state, across its checks. */
typedef struct {
    const st_tune_data *d;
    const st_tune_opts *o;
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
static int measure(tune_ctx *c, const st_trained *t, double *value)
{
    st_model m;
    st_train_model(c->d->x, t, "", c->popularity, &m);
    if (!c->built) {
        st_eval_set_free(&c->set);
        st_eval_set_init(&c->set, m.k);
        if (st_eval_set_from_roles(&c->set, c->d->table, c->d->role, &m, c->d->w, c->err) != 0) return -1;
        st_eval_set_partition(&c->set, c->o->validation, c->o->split_seed);
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
    const st_evaluate_opts *eo = c->o->eo;
    if (st_eval_rank(&c->set, &r, m.segments, eo->ks, eo->nk, &val, c->o->threads, &run, c->err) != 0) return -1;
    st_eval_summary sum;
    st_eval_summarize(&c->set, &run, &val, &sum);
    st_eval_run_free(&run);
    if (sum.users == 0) return st_seterr(c->err, "no validation users: raise --validation");
    *value = st_evaluate_metric(&sum, eo);
    return 0;
}

static int on_progress(void *vctx, const st_trained *t, double dt)
{
    (void)dt;
    tune_ctx *c = vctx;
    if (t->iterations % c->o->eval_every != 0 && t->iterations < t->params.iterations) return 0;
    double v;
    if (measure(c, t, &v) != 0) {
        c->failed = 1;
        return 1;
    }
    if (c->o->on_check) c->o->on_check(c->o->ctx, t, v);
    if (v > c->best) {
        c->best = v;
        c->best_iteration = t->iterations;
        c->since_best = 0;
        memcpy(c->bestX, t->X, c->xs);
        memcpy(c->bestY, t->Y, c->ys);
        return 0;
    }
    return ++c->since_best >= c->o->patience;
}

/* Trains configuration cf; its best factors stay in c->bestX, bestY. */
static int run_one(tune_ctx *c, const st_als_params *base, st_tune_config *cf, st_trained *t, char *err)
{
    memset(t, 0, sizeof *t);
    t->params = *base;
    t->params.factors = cf->factors;
    t->params.lambda = cf->lambda;
    t->params.alpha = cf->alpha;
    t->params.iterations = cf->iterations;
    t->params.confidence = cf->confidence;
    c->xs = (size_t)c->d->x->users.count * t->params.factors * sizeof(float);
    c->ys = (size_t)c->d->x->segments.count * t->params.factors * sizeof(float);
    st_free(c->bestX);
    st_free(c->bestY);
    c->bestX = st_malloc(c->xs + 1);
    c->bestY = st_malloc(c->ys + 1);
    c->built = 0; /* the rank may change: the set is rebuilt */
    c->best = -INFINITY;
    c->best_iteration = 0;
    c->since_best = 0;
    if (!c->bestX || !c->bestY) return st_seterr(err, "out of memory");
    st_train_hooks hooks = {.progress = on_progress, .ctx = c};
    double t0 = st_now();
    int trc = st_train_run(c->d->x, t, &hooks, err);
    cf->seconds = st_now() - t0;
    if (trc != 0 || c->failed) {
        if (trc == 0) st_seterr(err, "%s", c->err);
        st_trained_free(t);
        return -1;
    }
    cf->ran = t->iterations;
    cf->best_iteration = c->best_iteration;
    cf->value = c->best;
    return 0;
}

int st_tune_run(const st_tune_data *d, const st_als_params *base, st_tune_config *cfg, uint32_t ncfg,
                const st_tune_opts *o, st_trained *best, uint32_t *best_cfg, char *err)
{
    memset(best, 0, sizeof *best);
    *best_cfg = UINT32_MAX;
    tune_ctx c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.o = o;
    st_eval_set_init(&c.set, 1);
    c.popularity = st_malloc(((size_t)d->x->segments.count + 1) * sizeof *c.popularity);
    int rc = -1;
    if (!c.popularity) {
        st_seterr(err, "out of memory");
        goto done;
    }
    double best_value = -INFINITY;
    for (uint32_t i = 0; i < ncfg; i++) {
        if (o->on_config) o->on_config(o->ctx, i, ncfg, &cfg[i]);
        st_trained t;
        if (run_one(&c, base, &cfg[i], &t, err) != 0) goto done;
        if (c.best > best_value) {
            /* This run's best factors become the overall best. */
            best_value = c.best;
            *best_cfg = i;
            st_trained_free(best);
            *best = t;
            memcpy(best->X, c.bestX, c.xs);
            memcpy(best->Y, c.bestY, c.ys);
            best->iterations = c.best_iteration;
        } else {
            st_trained_free(&t);
        }
    }
    if (*best_cfg == UINT32_MAX) {
        st_seterr(err, "no configuration produced a validation metric");
        goto done;
    }
    rc = 0;
done:
    st_eval_set_free(&c.set);
    st_free(c.bestX);
    st_free(c.bestY);
    st_free(c.popularity);
    if (rc != 0) st_trained_free(best);
    return rc;
}
