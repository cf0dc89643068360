/* served: the served model and the handlers' scratch (served.h). */
#include "served.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "als.h"
#include "ann.h"
#include "log.h"
#include "lookalike.h"
#include "util.h"

/* ---- scratch ------------------------------------------------------------ */

static int grow(void **p, uint64_t want, size_t elem)
{
    void *q = st_realloc(*p, want * elem);
    if (!q) return -1;
    *p = q;
    return 0;
}

int st_scratch_work(st_scratch *s, uint64_t n)
{
    if (n <= s->cap_work) return 0;
    if (grow((void **)&s->work, n, sizeof(float)) != 0) return -1;
    s->cap_work = n;
    return 0;
}

int st_scratch_rows(st_scratch *s, uint64_t rows)
{
    if (rows <= s->cap_rows) return 0;
    if (grow((void **)&s->scores, rows, sizeof(float)) != 0 || grow((void **)&s->idx, rows, sizeof(uint32_t)) != 0 ||
        grow((void **)&s->top, rows, sizeof(float)) != 0)
        return -1;
    s->cap_rows = rows;
    return 0;
}

int st_scratch_fit(st_scratch *s, const st_model *m, int all_users, uint64_t max_args)
{
    uint64_t rows = m->segments;
    if (all_users && m->users > rows) rows = m->users;
    rows += m->k; /* look-alike keeps its query vector after the user scores */
    if (st_scratch_rows(s, rows) != 0) return -1;
    if (m->k > s->cap_ux) {
        if (grow((void **)&s->ux, m->k, sizeof(float)) != 0) return -1;
        s->cap_ux = m->k;
    }
    if (m->segments > s->cap_hist) {
        if (grow((void **)&s->hseg, m->segments, sizeof(uint32_t)) != 0 ||
            grow((void **)&s->hr, m->segments, sizeof(float)) != 0)
            return -1;
        s->cap_hist = m->segments;
    }
    uint64_t args = max_args + 1;
    if (args > s->cap_args) {
        if (grow((void **)&s->segs, args, sizeof(uint32_t)) != 0 ||
            grow((void **)&s->vals, args, sizeof(float)) != 0)
            return -1;
        s->cap_args = args;
    }
    if (m->segments > s->cap_skip) {
        uint8_t *p = st_realloc(s->skip, m->segments);
        if (!p) return -1;
        memset(p + s->cap_skip, 0, m->segments - s->cap_skip);
        s->skip = p;
        s->cap_skip = m->segments;
    }
    if (m->k > s->cap_user) {
        if (grow((void **)&s->user, m->k, sizeof(float)) != 0) return -1;
        s->cap_user = m->k;
    }
    /* Fold-in of a request's worth of segments, without allocating. */
    return st_scratch_work(s, st_score_foldin_scratch(m, (uint32_t)(max_args / 2 + 1)));
}

void st_scratch_free(st_scratch *s)
{
    st_free(s->scores);
    st_free(s->idx);
    st_free(s->top);
    st_free(s->work);
    st_free(s->segs);
    st_free(s->vals);
    st_free(s->skip);
    st_free(s->ux);
    st_free(s->hseg);
    st_free(s->hr);
    st_overlay_view_free(&s->view);
    st_free(s->user);
    st_free(s->seg_run);
    memset(s, 0, sizeof *s);
}

/* ---- the served model ---------------------------------------------------- */

static void served_free(st_served *s)
{
    st_ann_free(atomic_load(&s->ann));
    st_overlay_free(s->ov);
    st_free(s->G);
    st_free(s->GU);
    st_free(s->prior);
    st_free(s->prior_rank);
    st_free(s->seg_norms);
    st_segment_index_free(&s->seg_index);
    st_model_free(&s->m);
    st_free(s);
}

void st_served_release(st_served *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        st_log(ST_LOG_VERBOSE, "freed model %s (generation %llu)", s->path, (unsigned long long)s->generation);
        served_free(s);
    }
}

/* The approximate index's build, on its own thread, holding a reference:
 * a reload never waits for it, and until it is done APPROX is answered by
 * the exact scan. */
static void *ann_build_main(void *arg)
{
    st_served *s = arg;
    char err[ST_ERRLEN];
    st_ann *a = st_ann_build(&s->m, 0, st_ann_target(), s->m.h.fingerprint, 0, err);
    if (a) {
        st_ann_stats st;
        st_ann_get_stats(a, &st);
        st_log(ST_LOG_NOTICE, "approximate index of %s: %u lists, %.1f MiB, built in %.3f s; recall@%u %.4f reading "
                              "at most %llu rows",
               s->path, st.lists, (double)st.bytes / 1048576.0, st.build_seconds, st.recall_at, st.recall,
               (unsigned long long)st.probe_rows);
        atomic_store(&s->ann, a);
    } else {
        st_log(ST_LOG_WARNING, "approximate index of %s not built (APPROX is answered exactly): %s", s->path, err);
    }
    st_served_release(s);
    return NULL;
}

static void ann_build_start(st_served *s)
{
    pthread_t t;
    pthread_attr_t at;
    atomic_fetch_add(&s->refs, 1);
    int ok = pthread_attr_init(&at) == 0;
    if (ok) pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (!ok || pthread_create(&t, &at, ann_build_main, s) != 0) {
        atomic_fetch_sub(&s->refs, 1);
        st_log(ST_LOG_WARNING, "approximate index of %s not built: no thread to build it", s->path);
    }
    if (ok) pthread_attr_destroy(&at);
}

st_served *st_served_load(const char *path, char *err)
{
    double t0 = st_now();
    st_served *s = st_calloc(1, sizeof *s);
    if (!s) {
        st_seterr(err, "out of memory");
        return NULL;
    }
    if (st_model_read(path, &s->m, err) != 0) {
        st_free(s);
        return NULL;
    }
    const st_model *m = &s->m;
    if (m->users == 0 || m->segments == 0) {
        st_seterr(err, "%s: the model has no users or no segments", path);
        served_free(s);
        return NULL;
    }
    uint32_t n = m->segments, k = m->k;
    s->G = st_aligned_alloc(64, (size_t)k * k * sizeof *s->G);
    s->prior = st_malloc((size_t)n * sizeof *s->prior);
    s->prior_rank = st_malloc((size_t)n * sizeof *s->prior_rank);
    s->seg_norms = st_malloc((size_t)n * sizeof *s->seg_norms);
    float *tmp = st_malloc((size_t)n * sizeof *tmp);
    if (!s->G || !s->prior || !s->prior_rank || !s->seg_norms || !tmp) {
        st_free(tmp);
        served_free(s);
        st_seterr(err, "%s: out of memory for the model's derived tables", path);
        return NULL;
    }
    if (st_model_gram(m, s->G) != 0) {
        st_free(tmp);
        served_free(s);
        st_seterr(err, "%s: out of memory for the model's derived tables", path);
        return NULL;
    }
    st_score_prior(m, s->prior);
    st_topk(s->prior, n, n, NULL, 0, s->prior_rank, tmp);
    st_free(tmp);
    st_score_segment_norms(m, s->seg_norms);
    s->GU = st_aligned_alloc(64, (size_t)k * k * sizeof *s->GU);
    if (!s->GU || st_lookalike_gram(m, s->GU) != 0 || st_segment_index_build(m, s->prior, &s->seg_index) != 0) {
        served_free(s);
        st_seterr(err, "%s: out of memory for the segment index or the users' Gram matrix", path);
        return NULL;
    }
    s->ov = st_overlay_new(m, s->G, s->prior, err);
    if (!s->ov) {
        served_free(s);
        return NULL;
    }
    st_segov_lend_gram(st_overlay_segments(s->ov), s->GU); /* SEGMENT ADD solves against LOOKALIKE's U^T U */
    snprintf(s->path, sizeof s->path, "%s", path);
    s->loaded_at = (double)time(NULL);
    atomic_init(&s->refs, 1);
    st_log(ST_LOG_NOTICE, "model %s: %u users, %u segments, rank %u, loaded and verified in %.3f s", path, m->users,
           n, k, st_now() - t0);
    if (st_ann_mode() != ST_ANN_OFF) ann_build_start(s);
    return s;
}
