/* train: the training loop shared by train, eval and tune. */
#include "train.h"

#include <string.h>
#include <time.h>

#include "util.h"

void st_trained_free(st_trained *t)
{
    st_free(t->X);
    st_free(t->Y);
    st_free(t->loss);
    st_free(t->missing);
    t->X = t->Y = NULL;
    t->loss = NULL;
    t->missing = NULL;
}

int st_train_run(const st_interactions *x, st_trained *t, const st_train_hooks *hooks, char *err)
{
    const st_als_params *p = &t->params;
    const char *bad = st_als_check(p);
    if (bad) return st_seterr(err, "%s", bad);
    if (t->params.eps == 0) {
        uint64_t *hist = st_calloc(ST_EPS_BUCKETS, sizeof *hist);
        if (!hist) return st_seterr(err, "out of memory");
        st_als_eps_histogram(x->by_user.data, x->by_user.nnz, hist);
        t->params.eps = st_als_eps_of(hist);
        st_free(hist);
    }
    uint32_t m = x->users.count, n = x->segments.count, k = p->factors;
    int resume = t->X && t->Y && t->iterations > 0;
    if (!resume) {
        size_t xs, ys;
        if (st_mul_size((size_t)m, k * sizeof(float), &xs) || st_mul_size((size_t)n, k * sizeof(float), &ys))
            return st_seterr(err, "factor matrices too large");
        st_free(t->X);
        st_free(t->Y);
        t->X = st_aligned_alloc(64, xs);
        t->Y = st_aligned_alloc(64, ys);
        if (!t->X || !t->Y) return st_seterr(err, "out of memory for the factors (%zu MiB)", (xs + ys) >> 20);
        st_als_init_ids(p, &x->users, &x->segments, t->X, t->Y);
        t->iterations = 0;
    }
    t->m = m;
    t->n = n;
    t->k = k;
    double *loss = st_realloc(t->loss, ((size_t)p->iterations + 1) * sizeof *loss);
    if (!loss) return st_seterr(err, "out of memory");
    t->loss = loss;
    st_als_data d;
    if (st_als_confidence(p, x, &d, err) != 0) return -1;
    int rc = 0;
    t->weight = st_als_weight(&d);
    /* The weights go with the model: the served fold-in needs the Gram
     * matrix the factors were trained against. */
    st_free(t->missing);
    t->missing = NULL;
    if (d.rho) {
        t->missing = st_malloc((size_t)n * sizeof *t->missing + 1);
        if (!t->missing) {
            st_als_data_free(&d);
            return st_seterr(err, "out of memory");
        }
        memcpy(t->missing, d.rho, (size_t)n * sizeof *t->missing);
    }
    while (t->iterations < p->iterations) {
        double t0 = st_now();
        double obj;
        if (st_als_iterate(p, &d, t->X, t->Y, &obj, err) != 0) {
            rc = -1;
            break;
        }
        double dt = st_now() - t0;
        t->seconds += dt;
        double w = t->weight;
        t->loss[t->iterations++] = obj / w;
        if (hooks && hooks->checkpoint && hooks->checkpoint_every &&
            t->iterations % hooks->checkpoint_every == 0 && t->iterations < p->iterations &&
            hooks->checkpoint(hooks->ctx, t, err) != 0) {
            rc = -1;
            break;
        }
        if (hooks && hooks->progress && hooks->progress(hooks->ctx, t, dt) != 0) {
            t->stopped = 1;
            break;
        }
    }
    st_als_data_free(&d);
    return rc;
}

void st_train_model(const st_interactions *x, const st_trained *t, const char *meta, float *popularity,
                    st_model *m)
{
    memset(m, 0, sizeof *m);
    st_model_header_from_params(&m->h, &t->params);
    m->h.iterations = t->iterations;
    m->h.events = x->events;
    m->h.fingerprint = st_interactions_fingerprint(x);
    m->h.created = (int64_t)time(NULL);
    m->h.final_loss = t->iterations ? t->loss[t->iterations - 1] : 0;
    double sum = 0;
    for (uint64_t q = 0; q < x->by_user.nnz; q++) sum += x->by_user.data[q];
    m->h.bm25_mean_rowsum = t->m ? sum / t->m : 0;
    m->users = t->m;
    m->segments = t->n;
    m->k = t->k;
    m->U = t->X;
    m->V = t->Y;
    m->user_ids = x->users;
    m->segment_ids = x->segments;
    m->hist_ptr = x->by_user.indptr;
    m->hist_idx = x->by_user.indices;
    m->hist_val = x->by_user.data;
    for (uint32_t s = 0; s < t->n; s++)
        popularity[s] = (float)(x->by_segment.indptr[s + 1] - x->by_segment.indptr[s]);
    m->popularity = popularity;
    m->missing = t->missing;
    m->loss = t->loss;
    m->meta = meta ? meta : "";
    m->meta_len = meta ? strlen(meta) : 0;
}
