/* segoverlay: added segments as entries in a growable array, found by name
 * through an id map, behind one reader-writer lock for what readers see
 * (names, vectors, blends) and a mutex for what only writers read (members
 * and their values).
 *
 * Why re-solve from every member rather than keep running sums: the solve
 * is then the training code's own (st_als_foldin), a member's online vector
 * is the one it has now, and bm25's idf, which depends on the member count,
 * is right for every member. Its cost is one pass over the members' vectors,
 * O(nm k^2), outside every lock the server holds.
 */
#include "segoverlay.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "als.h"
#include "lookalike.h"
#include "score.h"
#include "util.h"

typedef struct {
    char *name;
    uint32_t len;
    st_idmap members;
    float *vals;       /* by member index */
    uint32_t vcap;
    uint64_t version;  /* +1 per commit */
    uint32_t pos;      /* visible position, or ST_NOT_FOUND */
    uint8_t added;     /* SEGMENT ADD or SET: visible whatever its member count */
    uint8_t fixed;     /* the vector is SEGMENT SET's: events and FORGETs do not re-solve it */
    uint8_t dirty;     /* replay: to solve */
    uint32_t solved_n; /* members when it was last solved */
} entry_t;

struct st_segov {
    const st_model *m;
    uint32_t k, min_users;
    double pop_top;    /* the model's largest popularity, for a new segment's prior */
    pthread_rwlock_t lock;   /* names, vis, Y, q, nmem */
    pthread_mutex_t mlock;   /* entries' members and values; the Gram matrix */
    st_idmap names;          /* entry by name */
    entry_t *e;
    uint32_t ne, ecap;
    uint32_t *vis;           /* position -> entry */
    float *Y, *q;            /* by position: vectors (k each), popularity priors */
    uint32_t *nmem;
    uint32_t vcap;
    atomic_uint count;
    const float *GU;         /* U^T U: lent (st_segov_lend_gram), or GU_own once computed */
    float *GU_own;
};

st_segov *st_segov_new(const st_model *m, char *err)
{
    st_segov *g = st_calloc(1, sizeof *g);
    if (!g) {
        st_seterr(err, "out of memory");
        return NULL;
    }
    g->m = m;
    g->k = m->k;
    g->min_users = ST_SEGMENT_MIN_USERS;
    g->pop_top = st_score_prior_top(m);
    st_idmap_init(&g->names);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&g->lock, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&g->mlock, NULL);
    atomic_init(&g->count, 0);
    return g;
}

void st_segov_free(st_segov *g)
{
    if (!g) return;
    for (uint32_t i = 0; i < g->ne; i++) {
        st_free(g->e[i].name);
        st_idmap_free(&g->e[i].members);
        st_free(g->e[i].vals);
    }
    st_free(g->e);
    st_idmap_free(&g->names);
    st_free(g->vis);
    st_free(g->Y);
    st_free(g->q);
    st_free(g->nmem);
    st_free(g->GU_own);
    pthread_rwlock_destroy(&g->lock);
    pthread_mutex_destroy(&g->mlock);
    st_free(g);
}

void st_segov_set_min_users(st_segov *g, uint32_t n) { g->min_users = n ? n : 1; }
uint32_t st_segov_min_users(const st_segov *g) { return g->min_users; }

/* ---- readers ---------------------------------------------------------------- */

uint32_t st_segov_count(st_segov *g) { return atomic_load(&g->count); }

uint32_t st_segov_find(st_segov *g, const char *name, size_t len)
{
    if (atomic_load(&g->count) == 0) return ST_NOT_FOUND;
    pthread_rwlock_rdlock(&g->lock);
    uint32_t i = st_idmap_find(&g->names, name, len);
    uint32_t pos = i == ST_NOT_FOUND ? ST_NOT_FOUND : g->e[i].pos;
    pthread_rwlock_unlock(&g->lock);
    return pos;
}

const char *st_segov_name(st_segov *g, uint32_t j, size_t *len)
{
    pthread_rwlock_rdlock(&g->lock);
    const entry_t *e = &g->e[g->vis[j]];
    const char *name = e->name;
    *len = e->len;
    pthread_rwlock_unlock(&g->lock);
    return name;
}

float st_segov_vector(st_segov *g, uint32_t j, float *y, uint32_t *members)
{
    pthread_rwlock_rdlock(&g->lock);
    if (y) memcpy(y, g->Y + (size_t)j * g->k, g->k * sizeof *y);
    float q = g->q[j];
    if (members) *members = g->nmem[j];
    pthread_rwlock_unlock(&g->lock);
    return q;
}

uint32_t st_segov_scores(st_segov *g, const float *x, float *scores, uint32_t cap)
{
    if (atomic_load(&g->count) == 0) return 0;
    pthread_rwlock_rdlock(&g->lock);
    uint32_t n = atomic_load(&g->count);
    if (n > cap) n = cap;
    float w = (float)g->m->h.prior_weight;
    for (uint32_t j = 0; j < n; j++) scores[j] = x ? st_dot(x, g->Y + (size_t)j * g->k, g->k) + w * g->q[j] : g->q[j];
    pthread_rwlock_unlock(&g->lock);
    return n;
}

/* ---- the solve ----------------------------------------------------------------- */

int st_segov_user_gram(const st_model *m, float *GU, char *err)
{
    /* The same U^T U LOOKALIKE solves against (lookalike.h). */
    if (st_lookalike_gram(m, GU) != 0) return st_seterr(err, "out of memory for the user Gram matrix");
    return 0;
}

int st_segov_solve_vector(const st_model *m, const float *GU, const float *X, const float *r,
                          const double *rowsum, uint32_t nm, uint32_t members, float *y, char *err)
{
    uint32_t k = m->k;
    st_als_params p;
    st_model_params(&m->h, &p);
    float *cm1 = st_malloc(((size_t)nm + 1) * sizeof *cm1);
    uint32_t *idx = st_malloc(((size_t)nm + 1) * sizeof *idx);
    float *scratch = st_malloc(st_als_foldin_scratch(k) * sizeof *scratch);
    if (!cm1 || !idx || !scratch) {
        st_free(cm1);
        st_free(idx);
        st_free(scratch);
        return st_seterr(err, "out of memory for the segment's solve");
    }
    /* As st_als_confidence weighs a pair in training: bm25's idf from the
     * segment's user count, its length norm from the user's activity. */
    double idf = log((double)m->users) - log1p((double)members);
    double mean = m->h.bm25_mean_rowsum > 0 ? m->h.bm25_mean_rowsum : 1.0;
    for (uint32_t i = 0; i < nm; i++) {
        double norm = (1.0 - p.bm25_b) + p.bm25_b * rowsum[i] / mean;
        cm1[i] = st_als_conf1(&p, r[i], idf, norm);
        idx[i] = i;
    }
    double lambda = st_als_row_lambda(&p, nm, m->users);
    int rc = st_als_foldin(k, X, GU, lambda, idx, cm1, nm, y, scratch);
    st_free(cm1);
    st_free(idx);
    st_free(scratch);
    if (rc != 0) return st_seterr(err, "the segment's system is not positive definite");
    return 0;
}

void st_segov_lend_gram(st_segov *g, const float *GU) { g->GU = GU; }

/* The Gram matrix: the one lent, or computed at the first solve (under mlock). */
static int need_gram(st_segov *g, char *err)
{
    if (g->GU) return 0;
    float *GU = st_malloc((size_t)g->k * g->k * sizeof *GU);
    if (!GU) return st_seterr(err, "out of memory for the user Gram matrix");
    if (st_segov_user_gram(g->m, GU, err) != 0) {
        st_free(GU);
        return -1;
    }
    g->GU = g->GU_own = GU;
    return 0;
}

/* Members (ids packed as a SEGMENT record packs them, with values), looked
 * up and solved: y, and how many members were used. */
typedef struct {
    const char *ids;
    uint64_t bytes;
    const float *vals;
    uint32_t n;
} member_list;

static int solve_members(st_segov *g, const member_list *ml, st_segov_user_fn users, void *ctx, float *y,
                         uint32_t *used, char *err)
{
    uint32_t k = g->k;
    float *X = st_malloc(((size_t)ml->n + 1) * k * sizeof *X), *r = st_malloc(((size_t)ml->n + 1) * sizeof *r);
    double *rowsum = st_malloc(((size_t)ml->n + 1) * sizeof *rowsum);
    if (!X || !r || !rowsum) {
        st_free(X);
        st_free(r);
        st_free(rowsum);
        return st_seterr(err, "out of memory for the segment's members");
    }
    st_jrecord pk = {.members = ml->ids, .members_len = (uint32_t)ml->bytes};
    uint32_t off = 0, len, i = 0, nu = 0;
    const char *s;
    while (st_jrecord_member(&pk, &off, &s, &len)) {
        if (users(ctx, s, len, X + (size_t)nu * k, &rowsum[nu])) r[nu++] = ml->vals[i];
        i++;
    }
    *used = nu;
    int rc = nu == 0 ? 0 : st_segov_solve_vector(g->m, g->GU, X, r, rowsum, nu, ml->n, y, err);
    st_free(X);
    st_free(r);
    st_free(rowsum);
    return rc;
}

int st_segov_partial(st_segov *g, const char *ids, uint64_t bytes, st_segov_user_fn users, void *ctx, double *A,
                     double *b, uint32_t *members, uint32_t *used, char *err)
{
    uint32_t k = g->k;
    pthread_mutex_lock(&g->mlock);
    int rc = need_gram(g, err);
    pthread_mutex_unlock(&g->mlock);
    st_idmap seen;
    st_idmap_init(&seen);
    float *x = st_malloc(k * sizeof *x);
    if (rc != 0 || !x) {
        st_free(x);
        return rc != 0 ? -1 : st_seterr(err, "out of memory");
    }
    /* The distinct members first: bm25's idf counts them. */
    st_jrecord pk = {.members = ids, .members_len = (uint32_t)bytes};
    uint32_t off = 0, len, ix;
    const char *s;
    while (rc == 0 && st_jrecord_member(&pk, &off, &s, &len)) rc = st_idmap_intern(&seen, s, len, &ix, NULL, err);
    *members = seen.count;
    *used = 0;
    st_als_params p;
    st_model_params(&g->m->h, &p);
    double idf = log((double)g->m->users) - log1p((double)seen.count);
    double mean = g->m->h.bm25_mean_rowsum > 0 ? g->m->h.bm25_mean_rowsum : 1.0;
    for (size_t i = 0; i < (size_t)k * k; i++) A[i] = g->GU[i];
    memset(b, 0, k * sizeof *b);
    for (uint32_t i = 0; rc == 0 && i < seen.count; i++) {
        size_t n;
        const char *id = st_idmap_name(&seen, i, &n);
        double rowsum = 0;
        if (!users(ctx, id, (uint32_t)n, x, &rowsum)) continue;
        double c = st_als_conf1(&p, 1.0, idf, (1.0 - p.bm25_b) + p.bm25_b * rowsum / mean);
        for (uint32_t a = 0; a < k; a++) {
            b[a] += (1.0 + c) * x[a];
            for (uint32_t d = 0; d < k; d++) A[(size_t)a * k + d] += c * x[a] * x[d];
        }
        (*used)++;
    }
    st_idmap_free(&seen);
    st_free(x);
    return rc;
}

/* ---- writers ------------------------------------------------------------------- */

void st_segov_discard(st_segov_change *chg)
{
    st_free(chg->name);
    st_free(chg->new_ids);
    st_free(chg->new_vals);
    st_free(chg->y);
    st_free(chg->re_entry);
    st_free(chg->re_version);
    st_free(chg->re_y);
    memset(chg, 0, sizeof *chg);
}

/* Appends a packed member with its value to a growing list. */
static int list_put(member_list *ml, uint64_t *cap_bytes, uint32_t *cap_n, const char *s, uint32_t len, float v)
{
    uint64_t need = ml->bytes + 4 + len;
    if (need > *cap_bytes) {
        uint64_t c = *cap_bytes ? *cap_bytes * 2 : 256;
        while (c < need) c *= 2;
        char *p = st_realloc((char *)ml->ids, c);
        if (!p) return -1;
        ml->ids = p;
        *cap_bytes = c;
    }
    if (ml->n == *cap_n) {
        uint32_t c = *cap_n ? *cap_n * 2 : 16;
        float *p = st_realloc((float *)ml->vals, (size_t)c * sizeof *p);
        if (!p) return -1;
        ml->vals = p;
        *cap_n = c;
    }
    st_jrecord_pack((char *)ml->ids + ml->bytes, s, len);
    ((float *)ml->vals)[ml->n++] = v;
    ml->bytes = need;
    return 0;
}

/* The members after the change, under mlock: the entry's (with an EVENT's
 * value added to its user) then the new ones, which also go to chg. */
static int build_members(const entry_t *e, const st_jrecord *r, double v, st_segov_change *chg,
                         member_list *all, char *err)
{
    uint64_t cap_all = 0, cap_new = 0;
    uint32_t cap_all_n = 0, cap_new_n = 0;
    member_list nw = {0};
    st_idmap seen;
    st_idmap_init(&seen);
    int rc = 0;
    chg->upd_member = ST_NOT_FOUND;
    for (uint32_t i = 0; e && i < e->members.count && rc == 0; i++) {
        size_t len;
        const char *s = st_idmap_name(&e->members, i, &len);
        rc = list_put(all, &cap_all, &cap_all_n, s, (uint32_t)len, e->vals[i]);
    }
    if (r->type == ST_JREC_EVENT && rc == 0) {
        uint32_t i = e ? st_idmap_find(&e->members, r->user, r->user_len) : ST_NOT_FOUND;
        if (i != ST_NOT_FOUND) {
            chg->upd_member = i;
            chg->upd_val = (float)v;
            ((float *)all->vals)[i] += (float)v;
        } else {
            rc = list_put(&nw, &cap_new, &cap_new_n, r->user, r->user_len, (float)v);
        }
    }
    uint32_t off = 0, len;
    const char *s;
    while (r->type == ST_JREC_SEGMENT && rc == 0 && st_jrecord_member(r, &off, &s, &len)) {
        int added = 0;
        uint32_t ix;
        if (e && st_idmap_find(&e->members, s, len) != ST_NOT_FOUND) continue;
        rc = st_idmap_intern(&seen, s, len, &ix, &added, err);
        if (rc == 0 && added) rc = list_put(&nw, &cap_new, &cap_new_n, s, len, 1.0f);
    }
    st_idmap_free(&seen);
    for (uint32_t i = 0, o2 = 0; rc == 0 && i < nw.n; i++) {
        st_jrecord pk = {.members = nw.ids, .members_len = (uint32_t)nw.bytes};
        st_jrecord_member(&pk, &o2, &s, &len);
        rc = list_put(all, &cap_all, &cap_all_n, s, len, nw.vals[i]);
    }
    chg->new_ids = (char *)nw.ids;
    chg->new_bytes = nw.bytes;
    chg->new_vals = (float *)nw.vals;
    chg->nnew = nw.n;
    if (rc != 0 && err[0] == '\0') st_seterr(err, "out of memory for the segment's members");
    return rc;
}

static int prepare_vector(st_segov *g, const st_jrecord *r, st_segov_change *chg, char *err)
{
    if (r->k != g->k)
        return st_seterr(err, "the vector has %u values; the model's rank is %u", r->k, g->k);
    chg->y = st_malloc(g->k * sizeof *chg->y);
    if (!chg->y) return st_seterr(err, "out of memory");
    memcpy(chg->y, r->vector, g->k * sizeof *chg->y);
    chg->visible = chg->apply = 1;
    return 0;
}

int st_segov_prepare(st_segov *g, const st_jrecord *r, double v, st_segov_user_fn users, void *ctx,
                     st_segov_change *chg, char *err)
{
    memset(chg, 0, sizeof *chg);
    err[0] = '\0';
    member_list all = {0};
    pthread_mutex_lock(&g->mlock);
    chg->entry = st_idmap_find(&g->names, r->segment, r->segment_len);
    const entry_t *e = chg->entry == ST_NOT_FOUND ? NULL : &g->e[chg->entry];
    chg->version = e ? e->version : 0;
    /* SEGMENT ADD always solves; an EVENT when the segment reaches
     * min_users, and then each time its member count has doubled since it
     * was last solved (a solve costs O(nm k^2): amortised O(k^2) a member);
     * never over a SEGMENT SET's vector. */
    int solve = r->type == ST_JREC_SEGMENT;
    if (r->type == ST_JREC_EVENT && !(e && e->fixed)) {
        uint64_t n = (e ? e->members.count : 0) + 1;
        solve = e && e->pos != ST_NOT_FOUND ? n >= 2ull * e->solved_n : n >= g->min_users;
    }
    chg->added = r->type != ST_JREC_EVENT;
    chg->kind = r->type;
    int rc = r->type == ST_JREC_SEGVEC ? prepare_vector(g, r, chg, err) : build_members(e, r, v, chg, &all, err);
    if (rc == 0 && r->type != ST_JREC_SEGVEC) rc = need_gram(g, err);
    pthread_mutex_unlock(&g->mlock);
    if (rc == 0 && chg->entry == ST_NOT_FOUND) {
        chg->name = st_malloc((size_t)r->segment_len + 1);
        if (!chg->name) rc = st_seterr(err, "out of memory");
        else {
            memcpy(chg->name, r->segment, r->segment_len);
            chg->name[r->segment_len] = '\0';
            chg->name_len = r->segment_len;
        }
    }
    if (rc == 0 && r->type != ST_JREC_SEGVEC) {
        chg->apply = 1;
        chg->members = all.n;
        if (solve && all.n >= (r->type == ST_JREC_EVENT ? g->min_users : 1)) {
            chg->y = st_malloc(g->k * sizeof *chg->y);
            if (!chg->y) rc = st_seterr(err, "out of memory");
            if (rc == 0) rc = solve_members(g, &all, users, ctx, chg->y, &chg->used, err);
            chg->unknown = all.n - chg->used;
            chg->visible = rc == 0 && chg->used > 0;
        }
    }
    st_free((char *)all.ids);
    st_free((float *)all.vals);
    return rc;
}

/* Room for one more entry and one more visible segment. */
static int reserve(st_segov *g, char *err)
{
    if (g->ne == g->ecap) {
        /* Both locks: writers preparing read entries under mlock, readers
         * under the read lock. */
        uint32_t c = g->ecap ? g->ecap * 2 : 16;
        pthread_mutex_lock(&g->mlock);
        pthread_rwlock_wrlock(&g->lock);
        entry_t *p = st_realloc(g->e, (size_t)c * sizeof *p);
        if (p) {
            g->e = p;
            g->ecap = c;
        }
        pthread_rwlock_unlock(&g->lock);
        pthread_mutex_unlock(&g->mlock);
        if (!p) return st_seterr(err, "out of memory");
    }
    if (atomic_load(&g->count) == g->vcap) {
        uint32_t c = g->vcap ? g->vcap * 2 : 16;
        pthread_rwlock_wrlock(&g->lock);
        uint32_t *vis = st_realloc(g->vis, (size_t)c * sizeof *vis);
        if (vis) g->vis = vis;
        float *Y = vis ? st_realloc(g->Y, (size_t)c * g->k * sizeof *Y) : NULL;
        if (Y) g->Y = Y;
        float *q = Y ? st_realloc(g->q, (size_t)c * sizeof *q) : NULL;
        if (q) g->q = q;
        uint32_t *nmem = q ? st_realloc(g->nmem, (size_t)c * sizeof *nmem) : NULL;
        if (nmem) {
            g->nmem = nmem;
            g->vcap = c;
        }
        pthread_rwlock_unlock(&g->lock);
        if (!nmem) return st_seterr(err, "out of memory");
    }
    return 0;
}

int st_segov_check(st_segov *g, st_segov_change *chg, char *err)
{
    for (uint32_t i = 0; i < chg->nre; i++)
        if (g->e[chg->re_entry[i]].version != chg->re_version[i]) return 0;
    if (!chg->apply) return 1;
    if (chg->entry == ST_NOT_FOUND) {
        if (st_idmap_find(&g->names, chg->name, chg->name_len) != ST_NOT_FOUND) return 0;
    } else if (g->e[chg->entry].version != chg->version) {
        return 0;
    }
    return reserve(g, err) == 0 ? 1 : -1;
}

/* Members of a change into entry e (under mlock); -1 on out-of-memory. */
static int add_members(entry_t *e, const char *ids, uint64_t bytes, const float *vals, uint32_t n)
{
    char err[ST_ERRLEN];
    st_jrecord pk = {.members = ids, .members_len = (uint32_t)bytes};
    uint32_t off = 0, len;
    const char *s;
    for (uint32_t i = 0; i < n && st_jrecord_member(&pk, &off, &s, &len); i++) {
        uint32_t ix;
        if (st_idmap_intern(&e->members, s, len, &ix, NULL, err) != 0) return -1;
        if (ix >= e->vcap) {
            uint32_t c = e->vcap ? e->vcap * 2 : 16;
            while (c <= ix) c *= 2;
            float *p = st_realloc(e->vals, (size_t)c * sizeof *p);
            if (!p) return -1;
            e->vals = p;
            e->vcap = c;
        }
        e->vals[ix] = vals[i];
    }
    return 0;
}

/* The entry of a change, created when new (names interned under the write
 * lock); ST_NOT_FOUND on out-of-memory. */
static uint32_t entry_of(st_segov *g, uint32_t entry, const char *name, uint32_t len)
{
    if (entry != ST_NOT_FOUND) return entry;
    char err[ST_ERRLEN];
    uint32_t i;
    pthread_rwlock_wrlock(&g->lock);
    int rc = st_idmap_intern(&g->names, name, len, &i, NULL, err);
    if (rc == 0) {
        entry_t *e = &g->e[i];
        memset(e, 0, sizeof *e);
        e->name = st_malloc((size_t)len + 1);
        if (e->name) {
            memcpy(e->name, name, len);
            e->name[len] = '\0';
        }
        e->len = len;
        e->pos = ST_NOT_FOUND;
        st_idmap_init(&e->members);
        g->ne = i + 1;
    }
    pthread_rwlock_unlock(&g->lock);
    return rc == 0 ? i : ST_NOT_FOUND;
}

/* Makes e visible with vector y (under the write lock). */
static void publish(st_segov *g, uint32_t i, const float *y)
{
    entry_t *e = &g->e[i];
    pthread_rwlock_wrlock(&g->lock);
    if (e->pos == ST_NOT_FOUND) {
        e->pos = atomic_load(&g->count);
        g->vis[e->pos] = i;
        atomic_store(&g->count, e->pos + 1);
    }
    memcpy(g->Y + (size_t)e->pos * g->k, y, g->k * sizeof *y);
    uint32_t n = e->members.count;
    g->nmem[e->pos] = n;
    g->q[e->pos] = st_score_prior_of(n, g->pop_top, (g->m->h.flags & ST_MODEL_PRIOR_LINEAR) != 0);
    pthread_rwlock_unlock(&g->lock);
}

void st_segov_commit(st_segov *g, st_segov_change *chg)
{
    pthread_mutex_lock(&g->mlock);
    for (uint32_t i = 0; i < chg->nre; i++) {
        g->e[chg->re_entry[i]].version++;
        publish(g, chg->re_entry[i], chg->re_y + (size_t)i * g->k);
    }
    if (!chg->apply) {
        pthread_mutex_unlock(&g->mlock);
        st_segov_discard(chg);
        return;
    }
    uint32_t i = entry_of(g, chg->entry, chg->name, chg->name_len);
    if (i != ST_NOT_FOUND) {
        entry_t *e = &g->e[i];
        e->version++;
        e->added |= (uint8_t)chg->added;
        if (chg->kind != ST_JREC_EVENT) e->fixed = chg->kind == ST_JREC_SEGVEC;
        if (chg->upd_member != ST_NOT_FOUND && chg->upd_member < e->members.count) e->vals[chg->upd_member] += chg->upd_val;
        add_members(e, chg->new_ids, chg->new_bytes, chg->new_vals, chg->nnew);
        if (chg->visible) {
            publish(g, i, chg->y);
            e->solved_n = e->members.count;
        }
    }
    pthread_mutex_unlock(&g->mlock);
    st_segov_discard(chg);
}

/* Entry e's members packed in index order, with its values (ml->vals
 * points into e); -1 on out-of-memory. */
static int pack_entry(const entry_t *e, member_list *ml)
{
    uint64_t bytes = 0;
    for (uint32_t j = 0; j < e->members.count; j++) {
        size_t len;
        st_idmap_name(&e->members, j, &len);
        bytes += 4 + len;
    }
    char *ids = st_malloc(bytes + 1), *p = ids;
    if (!ids) return -1;
    for (uint32_t j = 0; j < e->members.count; j++) {
        size_t len;
        const char *s = st_idmap_name(&e->members, j, &len);
        p = st_jrecord_pack(p, s, (uint32_t)len);
    }
    *ml = (member_list){.ids = ids, .bytes = bytes, .vals = e->vals, .n = e->members.count};
    return 0;
}

/* The caller's lookup, less one user (the one being forgotten). */
typedef struct {
    st_segov_user_fn users;
    void *ctx;
    const char *id;
    uint32_t len;
} excluding;

static int lookup_excluding(void *vctx, const char *id, uint32_t len, float *x, double *rowsum)
{
    const excluding *ex = vctx;
    if (len == ex->len && memcmp(id, ex->id, len) == 0) return 0;
    return ex->users(ex->ctx, id, len, x, rowsum);
}

int st_segov_prepare_forget(st_segov *g, const char *user, uint32_t len, st_segov_user_fn users, void *ctx,
                            st_segov_change *chg, char *err)
{
    memset(chg, 0, sizeof *chg);
    if (atomic_load(&g->count) == 0) return 0;
    pthread_mutex_lock(&g->mlock);
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->ne; i++)
        n += g->e[i].pos != ST_NOT_FOUND && !g->e[i].fixed && st_idmap_find(&g->e[i].members, user, len) != ST_NOT_FOUND;
    member_list *lists = n ? st_calloc(n, sizeof *lists) : NULL;
    chg->re_entry = n ? st_malloc(n * sizeof *chg->re_entry) : NULL;
    chg->re_version = n ? st_malloc(n * sizeof *chg->re_version) : NULL;
    chg->re_y = n ? st_malloc((size_t)n * g->k * sizeof *chg->re_y) : NULL;
    float **vals = n ? st_calloc(n, sizeof *vals) : NULL;
    int rc = n && (!lists || !chg->re_entry || !chg->re_version || !chg->re_y || !vals) ? -1 : 0;
    for (uint32_t i = 0; i < g->ne && rc == 0; i++) {
        const entry_t *e = &g->e[i];
        if (e->pos == ST_NOT_FOUND || e->fixed || st_idmap_find(&e->members, user, len) == ST_NOT_FOUND) continue;
        chg->re_entry[chg->nre] = i;
        chg->re_version[chg->nre] = e->version;
        /* The values are copied: a commit may grow them meanwhile. */
        vals[chg->nre] = st_malloc(((size_t)e->members.count + 1) * sizeof **vals);
        rc = vals[chg->nre] && pack_entry(e, &lists[chg->nre]) == 0 ? 0 : -1;
        if (rc == 0) {
            memcpy(vals[chg->nre], e->vals, e->members.count * sizeof **vals);
            lists[chg->nre].vals = vals[chg->nre];
        }
        chg->nre++;
    }
    pthread_mutex_unlock(&g->mlock);
    if (rc != 0) st_seterr(err, "out of memory");
    excluding ex = {users, ctx, user, len};
    for (uint32_t i = 0; i < chg->nre && rc == 0; i++) {
        float *y = chg->re_y + (size_t)i * g->k;
        uint32_t used = 0;
        rc = solve_members(g, &lists[i], lookup_excluding, &ex, y, &used, err);
        if (rc == 0 && used == 0) memset(y, 0, g->k * sizeof *y); /* no member left to solve from */
    }
    for (uint32_t i = 0; i < n; i++) {
        st_free((char *)(lists ? lists[i].ids : NULL));
        st_free(vals ? vals[i] : NULL);
    }
    st_free(lists);
    st_free(vals);
    return rc;
}

/* ---- replay ----------------------------------------------------------------------- */

int st_segov_replay(st_segov *g, const st_jrecord *r, double v, char *err)
{
    if (reserve(g, err) != 0) return -1;
    uint32_t i = entry_of(g, st_idmap_find(&g->names, r->segment, r->segment_len), r->segment, r->segment_len);
    if (i == ST_NOT_FOUND) return st_seterr(err, "out of memory");
    entry_t *e = &g->e[i];
    if (r->type == ST_JREC_SEGVEC) {
        if (r->k != g->k) return st_seterr(err, "a SEGVEC record of segment '%.*s' has %u values; the model's rank "
                                                "is %u", (int)(r->segment_len > 64 ? 64 : r->segment_len), r->segment,
                                           r->k, g->k);
        float *y = st_malloc(g->k * sizeof *y);
        if (!y) return st_seterr(err, "out of memory");
        memcpy(y, r->vector, g->k * sizeof *y);
        e->added = e->fixed = 1;
        e->dirty = 0;
        publish(g, i, y);
        st_free(y);
        return 0;
    }
    if (r->type == ST_JREC_SEGMENT) {
        e->added = 1;
        e->fixed = 0;
    }
    e->dirty = !e->fixed;
    uint32_t off = 0, len;
    const char *s;
    float fv = (float)v;
    while (r->type == ST_JREC_SEGMENT && st_jrecord_member(r, &off, &s, &len)) {
        if (st_idmap_find(&e->members, s, len) != ST_NOT_FOUND) continue;
        float one = 1.0f;
        char *buf = st_malloc((size_t)len + 4);
        if (!buf) return st_seterr(err, "out of memory");
        st_jrecord_pack(buf, s, len);
        int rc = add_members(e, buf, (uint64_t)len + 4, &one, 1);
        st_free(buf);
        if (rc != 0) return st_seterr(err, "out of memory");
    }
    if (r->type == ST_JREC_EVENT) {
        uint32_t ix = st_idmap_find(&e->members, r->user, r->user_len);
        if (ix != ST_NOT_FOUND) {
            e->vals[ix] += fv;
        } else {
            char *buf = st_malloc((size_t)r->user_len + 4);
            if (!buf) return st_seterr(err, "out of memory");
            st_jrecord_pack(buf, r->user, r->user_len);
            int rc = add_members(e, buf, (uint64_t)r->user_len + 4, &fv, 1);
            st_free(buf);
            if (rc != 0) return st_seterr(err, "out of memory");
        }
    }
    return 0;
}

int st_segov_solve(st_segov *g, st_segov_user_fn users, void *ctx, char *err)
{
    for (uint32_t i = 0; i < g->ne; i++) {
        entry_t *e = &g->e[i];
        if (!e->dirty) continue;
        e->dirty = 0;
        if (e->fixed || !(e->added || e->pos != ST_NOT_FOUND || e->members.count >= g->min_users)) continue;
        if (need_gram(g, err) != 0) return -1;
        member_list ml;
        float *y = st_malloc(g->k * sizeof *y);
        if (!y || pack_entry(e, &ml) != 0) {
            st_free(y);
            return st_seterr(err, "out of memory");
        }
        uint32_t used = 0;
        int rc = solve_members(g, &ml, users, ctx, y, &used, err);
        if (rc == 0 && used > 0 && (rc = reserve(g, err)) == 0) {
            publish(g, i, y);
            e->solved_n = e->members.count;
        }
        st_free((char *)ml.ids);
        st_free(y);
        if (rc != 0) return -1;
    }
    return 0;
}

void st_segov_get_stats(st_segov *g, st_segov_stats *s)
{
    pthread_mutex_lock(&g->mlock);
    s->visible = atomic_load(&g->count);
    s->pending = g->ne - s->visible;
    s->members = 0;
    for (uint32_t i = 0; i < g->ne; i++) s->members += g->e[i].members.count;
    pthread_mutex_unlock(&g->mlock);
}
