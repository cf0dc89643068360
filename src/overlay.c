/* overlay: online users as slots in a growable array, found through an
 * open-addressing hash index, behind one reader-writer lock.
 *
 * Why a lock and not RCU: a reader holds it for the copy of one vector (k
 * floats) and, when asked, one history; a writer for a few pointer stores.
 * The lock prefers writers, so a stream of SEGMENTS cannot starve EVENT, and
 * an overlay that was never written is skipped without touching the lock
 * (st_overlay_size is an atomic). Readers copy; nothing they hold can be
 * freed under them.
 *
 * A history is always sorted by segment and its values are accumulated in
 * the order events arrived, each addition rounded to float as it is made,
 * both when an EVENT is applied and when the journal is replayed: a user's
 * vector is the same float for float after a restart.
 */
#include "overlay.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "interactions.h"
#include "score.h"
#include "util.h"

typedef struct {
    char *id;
    uint32_t len;
    uint32_t model_u; /* row in the model, or ST_NOT_FOUND */
    uint64_t version; /* +1 per commit: a prepared change checks it */
    uint32_t hist_n;
    uint32_t *hist_seg;
    float *hist_r;
    uint8_t live, forgotten, dirty;
    /* replay only: events not yet merged, in arrival order */
    uint32_t pend_n, pend_cap;
    uint32_t *pend_seg;
    double *pend_v;
} slot_t;

struct st_overlay {
    const st_model *m;
    const float *G, *prior;
    uint32_t k;
    st_weighting w;
    double half_life, decay_ref;
    int has_ref;
    uint64_t lineage_id, lineage_seq;
    pthread_rwlock_t lock;
    slot_t *slots;
    uint32_t n, cap;
    float *X;           /* cap x k */
    uint32_t *index;    /* slot + 1, 0 = empty */
    uint64_t nindex;    /* a power of two, at least twice n */
    uint8_t *hidden;    /* m */
    uint32_t nhidden, nlive, nforgotten;
    atomic_uint_fast64_t size;
    float *work;        /* fold-in scratch for replay */
    st_segov *segs;     /* segments added online */
    atomic_uint_fast64_t replayed, skipped, unknown_segment;
};

/* ---- set-up ------------------------------------------------------------------ */

static void read_meta(st_overlay *o)
{
    const st_model *m = o->m;
    char buf[4096], why[ST_ERRLEN];
    st_weighting_default(&o->w);
    if (st_model_meta(m, "kind_weights", buf, sizeof buf) == 0 && buf[0] &&
        st_weighting_parse_kinds(&o->w, buf, why) != 0)
        st_weighting_default(&o->w);
    o->half_life = m->h.half_life > 0 ? m->h.half_life : 0;
    if (isfinite(m->h.decay_now)) {
        o->decay_ref = m->h.decay_now;
        o->has_ref = 1;
    } else if (st_model_meta(m, "decay_reference", buf, sizeof buf) == 0 && st_parse_double(buf, &o->decay_ref) == 0) {
        o->has_ref = 1;
    }
    if (st_model_meta(m, "journal_id", buf, sizeof buf) == 0) {
        char *end;
        unsigned long long id = strtoull(buf, &end, 16);
        if (*end == '\0' && st_model_meta(m, "journal_seq", buf, sizeof buf) == 0) {
            uint64_t seq;
            if (st_parse_u64(buf, &seq) == 0) {
                o->lineage_id = id;
                o->lineage_seq = seq;
            }
        }
    }
}

st_overlay *st_overlay_new(const st_model *m, const float *G, const float *prior, char *err)
{
    st_overlay *o = st_calloc(1, sizeof *o);
    if (!o) {
        st_seterr(err, "out of memory");
        return NULL;
    }
    o->m = m;
    o->G = G;
    o->prior = prior;
    o->k = m->k;
    o->nindex = 64;
    o->index = st_calloc(o->nindex, sizeof *o->index);
    o->hidden = st_calloc((size_t)m->users + 1, 1);
    o->work = st_malloc(st_score_foldin_scratch(m, m->segments) * sizeof *o->work);
    o->segs = st_segov_new(m, err);
    if (!o->index || !o->hidden || !o->work || !o->segs) {
        st_overlay_free(o);
        st_seterr(err, "out of memory for the online users' tables");
        return NULL;
    }
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&o->lock, &a);
    pthread_rwlockattr_destroy(&a);
    atomic_init(&o->size, 0);
    read_meta(o);
    return o;
}

static void slot_free(slot_t *s)
{
    st_free(s->id);
    st_free(s->hist_seg);
    st_free(s->hist_r);
    st_free(s->pend_seg);
    st_free(s->pend_v);
}

void st_overlay_free(st_overlay *o)
{
    if (!o) return;
    for (uint32_t i = 0; i < o->n; i++) slot_free(&o->slots[i]);
    if (o->index && o->hidden && o->work) pthread_rwlock_destroy(&o->lock);
    st_free(o->slots);
    st_free(o->X);
    st_free(o->index);
    st_free(o->hidden);
    st_free(o->work);
    st_segov_free(o->segs);
    st_weighting_free(&o->w);
    st_free(o);
}

void st_overlay_lineage(const st_overlay *o, uint64_t *id, uint64_t *seq)
{
    *id = o->lineage_id;
    *seq = o->lineage_seq;
}

double st_overlay_event_value(const st_overlay *o, double weight, const char *kind, uint32_t kind_len, double ts)
{
    double v = weight * st_weighting_kind(&o->w, kind, kind ? kind_len : 0);
    if (o->half_life > 0 && o->has_ref) {
        double age = o->decay_ref - ts;
        if (age > 0) v *= exp2(-age / o->half_life);
    }
    return v;
}

/* ---- the index ------------------------------------------------------------------ */

static uint32_t lookup(const st_overlay *o, const char *id, size_t len)
{
    uint64_t mask = o->nindex - 1, h = st_idmap_hash(id, len) & mask;
    for (;;) {
        uint32_t e = o->index[h];
        if (!e) return UINT32_MAX;
        const slot_t *s = &o->slots[e - 1];
        if (s->len == len && memcmp(s->id, id, len) == 0) return e - 1;
        h = (h + 1) & mask;
    }
}

static void index_put(uint32_t *index, uint64_t nindex, const slot_t *s, uint32_t slot)
{
    uint64_t mask = nindex - 1, h = st_idmap_hash(s->id, s->len) & mask;
    while (index[h]) h = (h + 1) & mask;
    index[h] = slot + 1;
}

/* Room for one more slot, taken under the write lock (readers may be
 * walking the arrays). Nothing visible changes. */
static int reserve(st_overlay *o, char *err)
{
    if (o->n < o->cap && (uint64_t)(o->n + 1) * 2 <= o->nindex) return 0;
    int rc = 0;
    pthread_rwlock_wrlock(&o->lock);
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 64;
        slot_t *s = st_realloc(o->slots, (size_t)cap * sizeof *s);
        if (s) o->slots = s;
        float *X = s ? st_realloc(o->X, (size_t)cap * o->k * sizeof *X) : NULL;
        if (X) o->X = X;
        if (!s || !X) rc = st_seterr(err, "out of memory for online users");
        else o->cap = cap;
    }
    if (rc == 0 && (uint64_t)(o->n + 1) * 2 > o->nindex) {
        uint64_t nindex = o->nindex * 2;
        uint32_t *index = st_calloc(nindex, sizeof *index);
        if (!index) {
            rc = st_seterr(err, "out of memory for online users");
        } else {
            for (uint32_t i = 0; i < o->n; i++) index_put(index, nindex, &o->slots[i], i);
            st_free(o->index);
            o->index = index;
            o->nindex = nindex;
        }
    }
    pthread_rwlock_unlock(&o->lock);
    return rc;
}

/* Appends a slot (capacity reserved); call under the write lock, or before
 * the overlay is visible. id is taken over. */
static uint32_t add_slot(st_overlay *o, char *id, uint32_t len, uint32_t model_u)
{
    uint32_t i = o->n++;
    slot_t *s = &o->slots[i];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->len = len;
    s->model_u = model_u;
    index_put(o->index, o->nindex, s, i);
    if (model_u != ST_NOT_FOUND && !o->hidden[model_u]) {
        o->hidden[model_u] = 1;
        o->nhidden++;
    }
    atomic_store(&o->size, o->n);
    return i;
}

/* ---- readers ------------------------------------------------------------------- */

uint64_t st_overlay_size(const st_overlay *o) { return atomic_load(&o->size); }

int st_overlay_find(st_overlay *o, const char *id, size_t len, float *x, uint32_t *seg, float *r, uint32_t *hist_n,
                    uint32_t *slot)
{
    if (atomic_load(&o->size) == 0) return ST_OV_ABSENT;
    pthread_rwlock_rdlock(&o->lock);
    uint32_t i = lookup(o, id, len);
    int rc = ST_OV_ABSENT;
    if (i != UINT32_MAX) {
        const slot_t *s = &o->slots[i];
        if (!s->live) {
            rc = ST_OV_FORGOTTEN;
        } else {
            rc = ST_OV_LIVE;
            memcpy(x, o->X + (size_t)i * o->k, o->k * sizeof *x);
            if (seg) {
                memcpy(seg, s->hist_seg, s->hist_n * sizeof *seg);
                memcpy(r, s->hist_r, s->hist_n * sizeof *r);
                *hist_n = s->hist_n;
            }
            if (slot) *slot = i;
        }
    }
    pthread_rwlock_unlock(&o->lock);
    return rc;
}

int st_overlay_slot(st_overlay *o, uint32_t i, const char **id, uint32_t *len, uint32_t *model_u)
{
    if (atomic_load(&o->size) == 0) return -1;
    pthread_rwlock_rdlock(&o->lock);
    int rc = -1;
    if (i < o->n) {
        const slot_t *s = &o->slots[i];
        *id = s->id;
        *len = s->len;
        *model_u = s->model_u;
        rc = s->live ? ST_OV_LIVE : ST_OV_FORGOTTEN;
    }
    pthread_rwlock_unlock(&o->lock);
    return rc;
}

uint64_t st_overlay_users(st_overlay *o)
{
    pthread_rwlock_rdlock(&o->lock);
    uint64_t n = (uint64_t)o->m->users - o->nhidden + o->nlive;
    pthread_rwlock_unlock(&o->lock);
    return n;
}

int st_overlay_snapshot(st_overlay *o, st_overlay_view *v)
{
    uint32_t k = o->k, m = o->m->users;
    v->m = m;
    v->k = k;
    pthread_rwlock_rdlock(&o->lock);
    int rc = 0;
    uint64_t n = o->nlive;
    if (n > v->cap) {
        float *X = st_realloc(v->X, (size_t)n * k * sizeof *X);
        if (X) v->X = X;
        const char **ids = st_realloc(v->ids, (size_t)n * sizeof *ids);
        if (ids) v->ids = ids;
        uint32_t *lens = st_realloc(v->lens, (size_t)n * sizeof *lens);
        if (lens) v->lens = lens;
        uint32_t *slots = st_realloc(v->slots, (size_t)n * sizeof *slots);
        if (slots) v->slots = slots;
        if (X && ids && lens && slots) v->cap = n;
        else rc = -1;
    }
    uint8_t *hidden = NULL;
    if (rc == 0 && o->nhidden) {
        if (m > v->cap_m || !v->hidden) {
            uint8_t *h = st_realloc(v->hidden, (size_t)m + 1);
            if (h) {
                v->hidden = h;
                v->cap_m = m;
            } else {
                rc = -1;
            }
        }
        if (rc == 0) {
            memcpy(v->hidden, o->hidden, m);
            hidden = v->hidden;
        }
    }
    uint32_t w = 0;
    for (uint32_t i = 0; rc == 0 && i < o->n; i++) {
        const slot_t *s = &o->slots[i];
        if (!s->live) continue;
        memcpy(v->X + (size_t)w * k, o->X + (size_t)i * k, k * sizeof *v->X);
        v->ids[w] = s->id;
        v->lens[w] = s->len;
        v->slots[w] = i;
        w++;
    }
    pthread_rwlock_unlock(&o->lock);
    /* The view's own pointer stays allocated; NULL says no row is hidden. */
    v->n = rc == 0 ? w : 0;
    if (rc == 0 && !hidden && v->hidden) {
        uint8_t *keep = v->hidden;
        v->hidden = NULL;
        st_free(keep);
        v->cap_m = 0;
    }
    return rc;
}

void st_overlay_view_free(st_overlay_view *v)
{
    st_free(v->hidden);
    st_free(v->X);
    st_free(v->ids);
    st_free(v->lens);
    st_free(v->slots);
    memset(v, 0, sizeof *v);
}

/* ---- histories ------------------------------------------------------------------- */

/* The history a user starts from: theirs in the overlay, else the model's
 * row (none for a forgotten user or one the model has never seen). */
static void base_history(const st_overlay *o, const slot_t *s, uint32_t model_u, const uint32_t **seg,
                         const float **r, uint32_t *n)
{
    *seg = NULL;
    *r = NULL;
    *n = 0;
    if (s && (s->live || s->forgotten)) {
        *seg = s->hist_seg;
        *r = s->hist_r;
        *n = s->hist_n;
    } else if (model_u != ST_NOT_FOUND) {
        const st_model *m = o->m;
        uint64_t h0 = m->hist_ptr[model_u];
        *seg = m->hist_idx + h0;
        *r = m->hist_val + h0;
        *n = (uint32_t)(m->hist_ptr[model_u + 1] - h0);
    }
}

/* Copies a history into new arrays with room for one more entry. */
static int history_copy(const uint32_t *seg, const float *r, uint32_t n, uint32_t **oseg, float **or_)
{
    *oseg = st_malloc(((size_t)n + 1) * sizeof **oseg);
    *or_ = st_malloc(((size_t)n + 1) * sizeof **or_);
    if (!*oseg || !*or_) {
        st_free(*oseg);
        st_free(*or_);
        *oseg = NULL;
        *or_ = NULL;
        return -1;
    }
    if (n) {
        memcpy(*oseg, seg, n * sizeof **oseg);
        memcpy(*or_, r, n * sizeof **or_);
    }
    return 0;
}

/* Adds v to segment s of a sorted history with room for one more entry:
 * the one place an event's value meets a history. */
static void history_add(uint32_t *seg, float *r, uint32_t *n, uint32_t s, double v)
{
    uint32_t lo = 0, hi = *n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (seg[mid] < s) lo = mid + 1;
        else hi = mid;
    }
    if (lo < *n && seg[lo] == s) {
        r[lo] = (float)((double)r[lo] + v);
        return;
    }
    memmove(seg + lo + 1, seg + lo, (*n - lo) * sizeof *seg);
    memmove(r + lo + 1, r + lo, (*n - lo) * sizeof *r);
    seg[lo] = s;
    r[lo] = (float)v;
    (*n)++;
}

/* ---- writers --------------------------------------------------------------------- */

void st_overlay_discard(st_overlay_change *chg)
{
    st_free(chg->id);
    st_free(chg->hist_seg);
    st_free(chg->hist_r);
    st_free(chg->x);
    st_segov_discard(&chg->segchg);
    memset(chg, 0, sizeof *chg);
}

st_segov *st_overlay_segments(st_overlay *o) { return o->segs; }

/* A member's vector for a segment's solve (st_segov_user_fn): an online
 * user's, else the model's row; none for forgotten and unknown users. The
 * activity bm25 weighs by is the model's history of the user. */
static int member_vector(void *ctx, const char *id, uint32_t len, float *x, double *rowsum)
{
    st_overlay *o = ctx;
    const st_model *m = o->m;
    int st = st_overlay_find(o, id, len, x, NULL, NULL, NULL, NULL);
    if (st == ST_OV_FORGOTTEN) return 0;
    uint32_t u = st_idmap_find(&m->user_ids, id, len);
    if (st == ST_OV_ABSENT) {
        if (u == ST_NOT_FOUND) return 0;
        const float *row = st_model_user(m, u, x);
        if (row != x) memcpy(x, row, o->k * sizeof *x);
    }
    double sum = 0;
    for (uint64_t q = u == ST_NOT_FOUND ? 0 : m->hist_ptr[u]; u != ST_NOT_FOUND && q < m->hist_ptr[u + 1]; q++)
        sum += m->hist_val[q];
    *rowsum = sum;
    return 1;
}

int st_overlay_segment_partial(st_overlay *o, const char *ids, uint64_t bytes, double *A, double *b,
                               uint32_t *members, uint32_t *used, char *err)
{
    return st_segov_partial(o->segs, ids, bytes, member_vector, o, A, b, members, used, err);
}

/* A SEGMENT or SEGVEC record's change, or an EVENT's (value v) on a
 * segment the model does not know. */
static int prepare_segment(st_overlay *o, const st_jrecord *r, double v, st_overlay_change *chg, char *err)
{
    if (r->type != ST_JREC_EVENT && st_idmap_find(&o->m->segment_ids, r->segment, r->segment_len) != ST_NOT_FOUND)
        return st_seterr(err, "segment '%.*s' is in the model: SEGMENT ADD and SET make new segments only",
                         (int)(r->segment_len > 64 ? 64 : r->segment_len), r->segment);
    if (st_segov_prepare(o->segs, r, v, member_vector, o, &chg->segchg, err) != 0) return -1;
    if (r->type == ST_JREC_SEGMENT && !chg->segchg.visible)
        return st_seterr(err, "none of the %u users listed is known to the model (or each was forgotten): "
                              "segment '%.*s' has no vector to solve",
                         chg->segchg.members, (int)(r->segment_len > 64 ? 64 : r->segment_len), r->segment);
    return 0;
}

uint64_t st_overlay_work(const st_overlay *o) { return st_score_foldin_scratch(o->m, o->m->segments); }

int st_overlay_prepare(st_overlay *o, const st_jrecord *r, float *work, st_overlay_change *chg, char *err)
{
    const st_model *m = o->m;
    memset(chg, 0, sizeof *chg);
    if (r->type == ST_JREC_SEGMENT || r->type == ST_JREC_SEGVEC) return prepare_segment(o, r, 0, chg, err);
    chg->user = r->user;
    chg->user_len = r->user_len;
    double v = 0;
    if (r->type == ST_JREC_EVENT) {
        chg->seg = st_idmap_find(&m->segment_ids, r->segment, r->segment_len);
        chg->known_segment = chg->seg != ST_NOT_FOUND;
        if (!chg->known_segment) atomic_fetch_add(&o->unknown_segment, 1);
        v = st_overlay_event_value(o, r->weight, r->kind, r->kind_len, r->ts);
    }
    int event = r->type == ST_JREC_EVENT && chg->known_segment && v > 0;
    /* The user's state now, copied under the read lock; a commit by another
     * writer after this is caught by st_overlay_check. */
    int rc = 0;
    pthread_rwlock_rdlock(&o->lock);
    chg->slot = lookup(o, r->user, r->user_len);
    const slot_t *s = chg->slot == UINT32_MAX ? NULL : &o->slots[chg->slot];
    chg->version = s ? s->version : 0;
    chg->model_u = s ? s->model_u : st_idmap_find(&m->user_ids, r->user, r->user_len);
    chg->existed = s ? s->live : chg->model_u != ST_NOT_FOUND;
    if (event) {
        const uint32_t *bseg;
        const float *br;
        uint32_t bn;
        base_history(o, s, chg->model_u, &bseg, &br, &bn);
        rc = history_copy(bseg, br, bn, &chg->hist_seg, &chg->hist_r);
        chg->hist_n = bn;
    }
    pthread_rwlock_unlock(&o->lock);
    if (rc != 0) return st_seterr(err, "out of memory");
    if (r->type == ST_JREC_EVENT && !chg->known_segment && v > 0) return prepare_segment(o, r, v, chg, err);
    if (r->type == ST_JREC_EVENT && !event) return 0; /* the journal keeps it; the model cannot use it */
    if (chg->slot == UINT32_MAX) {
        chg->id = st_malloc((size_t)r->user_len + 1);
        if (!chg->id) return st_seterr(err, "out of memory");
        memcpy(chg->id, r->user, r->user_len);
        chg->id[r->user_len] = '\0';
        chg->id_len = r->user_len;
    }
    chg->kind = r->type;
    if (r->type == ST_JREC_FORGET)
        return st_segov_prepare_forget(o->segs, r->user, r->user_len, member_vector, o, &chg->segchg, err);
    history_add(chg->hist_seg, chg->hist_r, &chg->hist_n, chg->seg, v);
    chg->x = st_malloc(o->k * sizeof *chg->x);
    if (!chg->x) return st_seterr(err, "out of memory");
    if (st_score_foldin(m, o->G, chg->hist_seg, chg->hist_r, chg->hist_n, chg->x, work) != 0)
        return st_seterr(err, "fold-in failed: the system is not positive definite");
    chg->score = st_score_one(m, o->prior, chg->x, chg->seg);
    return 0;
}

int st_overlay_check(st_overlay *o, st_overlay_change *chg, char *err)
{
    /* Only writers change slots, and the caller lets one at a time in:
     * reading without the lock is safe here. */
    if (!chg->user) return st_segov_check(o->segs, &chg->segchg, err);
    if (chg->segchg.apply || chg->segchg.nre) {
        int rc = st_segov_check(o->segs, &chg->segchg, err);
        if (rc != 1) return rc;
    }
    uint32_t slot = lookup(o, chg->user, chg->user_len);
    if (slot != chg->slot) return 0;
    if (slot != UINT32_MAX && o->slots[slot].version != chg->version) return 0;
    if (chg->kind && slot == UINT32_MAX && reserve(o, err) != 0) return -1;
    return 1;
}

/* Slot s no longer has a history (the caller frees the old one) and is
 * counted as forgotten, not live. */
static void mark_forgotten(st_overlay *o, slot_t *s)
{
    s->hist_seg = NULL;
    s->hist_r = NULL;
    s->hist_n = 0;
    if (s->live) {
        s->live = 0;
        o->nlive--;
    }
    if (!s->forgotten) {
        s->forgotten = 1;
        o->nforgotten++;
    }
}

void st_overlay_commit(st_overlay *o, st_overlay_change *chg)
{
    if (chg->segchg.apply || chg->segchg.nre) st_segov_commit(o->segs, &chg->segchg);
    if (!chg->kind) {
        st_overlay_discard(chg);
        return;
    }
    uint32_t *old_seg = NULL;
    float *old_r = NULL;
    pthread_rwlock_wrlock(&o->lock);
    uint32_t i = chg->slot;
    if (i == UINT32_MAX) {
        i = add_slot(o, chg->id, chg->id_len, chg->model_u);
        chg->id = NULL;
    }
    slot_t *s = &o->slots[i];
    old_seg = s->hist_seg;
    old_r = s->hist_r;
    s->version++;
    if (chg->kind == ST_JREC_EVENT) {
        s->hist_seg = chg->hist_seg;
        s->hist_r = chg->hist_r;
        s->hist_n = chg->hist_n;
        memcpy(o->X + (size_t)i * o->k, chg->x, o->k * sizeof *chg->x);
        chg->hist_seg = NULL;
        chg->hist_r = NULL;
        if (!s->live) {
            s->live = 1;
            o->nlive++;
        }
    } else {
        mark_forgotten(o, s); /* its history is freed below, outside the lock */
    }
    pthread_rwlock_unlock(&o->lock);
    st_free(old_seg);
    st_free(old_r);
    st_overlay_discard(chg);
}

/* ---- replay ---------------------------------------------------------------------- */

int st_overlay_replay(st_overlay *o, uint64_t journal_id, const st_jrecord *r, char *err)
{
    const st_model *m = o->m;
    /* A SEGVEC is never trained into a model (it names no users). */
    if (o->lineage_id && journal_id == o->lineage_id && r->seq <= o->lineage_seq && r->type != ST_JREC_SEGVEC) {
        atomic_fetch_add(&o->skipped, 1); /* trained into the model */
        return 0;
    }
    atomic_fetch_add(&o->replayed, 1);
    uint32_t seg = 0;
    double v = 0;
    if (r->type == ST_JREC_SEGMENT || r->type == ST_JREC_SEGVEC) {
        if (st_idmap_find(&m->segment_ids, r->segment, r->segment_len) != ST_NOT_FOUND) return 0;
        return st_segov_replay(o->segs, r, 0, err);
    }
    if (r->type == ST_JREC_EVENT) {
        seg = st_idmap_find(&m->segment_ids, r->segment, r->segment_len);
        if (seg == ST_NOT_FOUND) atomic_fetch_add(&o->unknown_segment, 1);
        v = st_overlay_event_value(o, r->weight, r->kind, r->kind_len, r->ts);
        if (seg == ST_NOT_FOUND && v > 0) return st_segov_replay(o->segs, r, v, err);
        if (seg == ST_NOT_FOUND || !(v > 0)) return 0;
    }
    uint32_t i = lookup(o, r->user, r->user_len);
    if (i == UINT32_MAX) {
        char *id = st_malloc((size_t)r->user_len + 1);
        if (!id) return st_seterr(err, "out of memory");
        memcpy(id, r->user, r->user_len);
        id[r->user_len] = '\0';
        if (reserve(o, err) != 0) {
            st_free(id);
            return -1;
        }
        i = add_slot(o, id, r->user_len, st_idmap_find(&m->user_ids, r->user, r->user_len));
    }
    slot_t *s = &o->slots[i];
    if (r->type == ST_JREC_FORGET) {
        s->pend_n = 0;
        s->dirty = 0;
        st_free(s->hist_seg);
        st_free(s->hist_r);
        mark_forgotten(o, s);
        return 0;
    }
    if (s->pend_n == s->pend_cap) {
        uint32_t cap = s->pend_cap ? s->pend_cap * 2 : 4;
        uint32_t *ps = st_realloc(s->pend_seg, (size_t)cap * sizeof *ps);
        if (ps) s->pend_seg = ps;
        double *pv = ps ? st_realloc(s->pend_v, (size_t)cap * sizeof *pv) : NULL;
        if (pv) s->pend_v = pv;
        if (!ps || !pv) return st_seterr(err, "out of memory");
        s->pend_cap = cap;
    }
    s->pend_seg[s->pend_n] = seg;
    s->pend_v[s->pend_n++] = v;
    s->dirty = 1;
    return 0;
}

int st_overlay_solve(st_overlay *o, char *err)
{
    const st_model *m = o->m;
    for (uint32_t i = 0; i < o->n; i++) {
        slot_t *s = &o->slots[i];
        if (!s->dirty) continue;
        const uint32_t *bseg;
        const float *br;
        uint32_t bn;
        base_history(o, s, s->model_u, &bseg, &br, &bn);
        /* Room for every pending segment, added one event at a time in the
         * order they arrived, exactly as EVENT adds them. */
        uint32_t *seg = st_malloc(((size_t)bn + s->pend_n + 1) * sizeof *seg);
        float *r = st_malloc(((size_t)bn + s->pend_n + 1) * sizeof *r);
        if (!seg || !r) {
            st_free(seg);
            st_free(r);
            return st_seterr(err, "out of memory");
        }
        if (bn) {
            memcpy(seg, bseg, bn * sizeof *seg);
            memcpy(r, br, bn * sizeof *r);
        }
        uint32_t n = bn;
        for (uint32_t p = 0; p < s->pend_n; p++) history_add(seg, r, &n, s->pend_seg[p], s->pend_v[p]);
        if (st_score_foldin(m, o->G, seg, r, n, o->X + (size_t)i * o->k, o->work) != 0) {
            st_free(seg);
            st_free(r);
            return st_seterr(err, "fold-in failed for user '%.*s': the system is not positive definite",
                             (int)(s->len > 64 ? 64 : s->len), s->id);
        }
        st_free(s->hist_seg);
        st_free(s->hist_r);
        s->hist_seg = seg;
        s->hist_r = r;
        s->hist_n = n;
        st_free(s->pend_seg);
        st_free(s->pend_v);
        s->pend_seg = NULL;
        s->pend_v = NULL;
        s->pend_n = s->pend_cap = 0;
        s->dirty = 0;
        if (!s->live) {
            s->live = 1;
            o->nlive++;
        }
    }
    /* Added segments last: their members' vectors are the replayed ones. */
    return st_segov_solve(o->segs, member_vector, o, err);
}

void st_overlay_get_stats(st_overlay *o, st_overlay_stats *s)
{
    pthread_rwlock_rdlock(&o->lock);
    s->slots = o->n;
    s->live = o->nlive;
    s->forgotten = o->nforgotten;
    s->hidden_rows = o->nhidden;
    s->replayed = atomic_load(&o->replayed);
    s->skipped_in_model = atomic_load(&o->skipped);
    s->unknown_segment = atomic_load(&o->unknown_segment);
    pthread_rwlock_unlock(&o->lock);
}
