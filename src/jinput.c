/* jinput: the journal's rules for the offline tools (jinput.h): the forgotten set, training input, a model
 * beside its journal as the server serves it, and a model without the forgotten users. */
#include "jinput.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "score.h"
#include "util.h"

static int collect_forget(const st_jrecord *r, void *ctx, char *err)
{
    st_forgotten *f = ctx;
    if (r->type != ST_JREC_FORGET) return 0;
    uint32_t u;
    if (st_idmap_intern(&f->users, r->user, r->user_len, &u, NULL, err) != 0) return -1;
    if (u >= f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 256;
        uint64_t *q = st_realloc(f->seq, (size_t)cap * sizeof *q);
        if (!q) return st_seterr(err, "out of memory");
        f->seq = q;
        f->cap = cap;
    }
    f->seq[u] = r->seq;
    return 0;
}

void st_jinput_forgotten_free(st_forgotten *f)
{
    st_idmap_free(&f->users);
    st_free(f->seq);
    memset(f, 0, sizeof *f);
}

int st_jinput_is_forgotten(const st_forgotten *f, const char *user, size_t len)
{
    return st_idmap_find(&f->users, user, len) != ST_NOT_FOUND;
}

static void note_info(st_jinput_use *use, const st_journal_info *info, uint64_t forgotten)
{
    use->id = info->id;
    use->last_seq = info->last_seq;
    use->events = info->events;
    use->forgets = info->forgets;
    use->torn_bytes = info->torn_bytes;
    use->forgotten = forgotten;
}

int st_jinput_forgotten(const char *path, st_forgotten *f, st_jinput_use *use, char *err)
{
    memset(f, 0, sizeof *f);
    st_idmap_init(&f->users);
    st_journal_info info;
    if (st_journal_read(path, 0, 0, collect_forget, f, &info, err) != 0) {
        st_jinput_forgotten_free(f);
        return -1;
    }
    if (use) {
        memset(use, 0, sizeof *use);
        note_info(use, &info, f->users.count);
    }
    return 0;
}

typedef struct {
    st_builder *b;
    const st_forgotten *f;
    st_jinput_use *use;
    const char *path;
} feed;

/* An input event is dropped when the journal forgot its user. */
static int add_input_event(const st_event *ev, void *ctx, char *err)
{
    feed *jf = ctx;
    if (st_jinput_is_forgotten(jf->f, ev->user, ev->user_len)) {
        jf->use->dropped++;
        return 0;
    }
    return st_builder_add(jf->b, ev, err);
}

static int add_journal_event(const st_jrecord *r, void *ctx, char *err);

/* A SEGMENT record: each member an event of weight 1 on the segment at the
 * record's time (what SEGMENT ADD solved the segment with), under the rule
 * of events. SEGVEC records carry no users: nothing to learn. */
static int add_journal_segment(const st_jrecord *r, void *ctx, char *err)
{
    uint32_t off = 0, len;
    const char *s;
    while (st_jrecord_member(r, &off, &s, &len)) {
        st_jrecord ev = {.seq = r->seq, .type = ST_JREC_EVENT, .user = s, .user_len = len, .segment = r->segment,
                         .segment_len = r->segment_len, .weight = 1, .ts = r->ts};
        if (add_journal_event(&ev, ctx, err) != 0) return -1;
    }
    return 0;
}

/* A journal event counts unless a later FORGET of its user erased it. */
static int add_journal_event(const st_jrecord *r, void *ctx, char *err)
{
    feed *jf = ctx;
    if (r->type == ST_JREC_SEGMENT) return add_journal_segment(r, ctx, err);
    if (r->type != ST_JREC_EVENT) return 0;
    uint32_t u = st_idmap_find(&jf->f->users, r->user, r->user_len);
    if (u != ST_NOT_FOUND && r->seq < jf->f->seq[u]) {
        jf->use->erased++;
        return 0;
    }
    st_event ev = {.user = r->user,
                   .user_len = r->user_len,
                   .segment = r->segment,
                   .segment_len = r->segment_len,
                   .weight = r->weight,
                   .kind = r->kind,
                   .kind_len = r->kind ? r->kind_len : 0,
                   .ts = r->ts,
                   .has_ts = 1,
                   .file = jf->path,
                   .line = r->seq};
    jf->use->added++;
    return st_builder_add(jf->b, &ev, err);
}

int st_jinput_interactions(const char *journal, char **files, int nfiles, const st_read_opts *ro, const st_weighting *w,
                           st_interactions *x, st_read_stats *stats, st_jinput_use *use, char *err)
{
    memset(x, 0, sizeof *x);
    memset(use, 0, sizeof *use);
    st_forgotten f = {0};
    st_idmap_init(&f.users);
    st_builder *b = NULL;
    int rc = -1;
    int fd = open(journal, O_RDONLY | O_CLOEXEC);
    st_journal_info info, again;
    if (fd < 0) {
        st_seterr(err, "--journal %s: %s", journal, strerror(errno));
        goto done;
    }
    if (st_journal_read_fd(fd, journal, 0, 0, collect_forget, &f, &info, err) != 0) goto done;
    note_info(use, &info, f.users.count);
    b = st_builder_new(w, err);
    if (!b) goto done;
    feed jf = {b, &f, use, journal};
    for (int i = 0; i < nfiles; i++)
        if (st_events_read(files[i], ro, add_input_event, &jf, stats, err) != 0) goto done;
    if (st_journal_read_fd(fd, journal, 0, info.end, add_journal_event, &jf, &again, err) != 0) goto done;
    char why[ST_ERRLEN];
    st_builder *bb = b;
    b = NULL;
    if (st_builder_finish(bb, x, why) != 0) {
        st_seterr(err, "%s (event files and journal together)", why);
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0) close(fd);
    st_builder_free(b);
    st_jinput_forgotten_free(&f);
    return rc;
}

typedef struct {
    st_overlay *ov;
    const st_journal_info *info; /* its id is read before the first record */
    st_jrecord_fn check;
    void *check_ctx;
} replay_feed;

static int replay_record(const st_jrecord *r, void *ctx, char *err)
{
    replay_feed *rf = ctx;
    if (rf->check && rf->check(r, rf->check_ctx, err) != 0) return -1;
    return st_overlay_replay(rf->ov, rf->info->id, r, err);
}

int st_jinput_overlay(const char *path, st_overlay *ov, st_jrecord_fn check, void *check_ctx, st_jinput_use *use,
                      char *err)
{
    st_journal_info info;
    replay_feed rf = {ov, &info, check, check_ctx};
    if (st_journal_read(path, 0, 0, replay_record, &rf, &info, err) != 0) return -1;
    char why[ST_ERRLEN];
    if (st_overlay_solve(ov, why) != 0) return st_seterr(err, "%s: %s", path, why);
    if (use) {
        st_overlay_stats os;
        st_overlay_get_stats(ov, &os);
        memset(use, 0, sizeof *use);
        note_info(use, &info, os.forgotten);
    }
    return 0;
}

/* ---- a model beside its journal --------------------------------------------- */

int st_jmodel_load(const char *path, st_jmodel *jm, char *err)
{
    memset(jm, 0, sizeof *jm);
    if (st_model_load(path, &jm->m, err) != 0) return -1;
    jm->loaded = 1;
    const st_model *m = &jm->m;
    jm->prior = st_malloc(((size_t)m->segments + 1) * sizeof *jm->prior);
    jm->xbuf = st_malloc(((size_t)m->k + 1) * sizeof *jm->xbuf);
    if (!jm->prior || !jm->xbuf) return st_seterr(err, "out of memory");
    st_score_prior(m, jm->prior);
    return 0;
}

int st_jmodel_replay(st_jmodel *jm, const char *journal, st_jrecord_fn check, void *check_ctx, st_jinput_use *use,
                     char *err)
{
    const st_model *m = &jm->m;
    uint32_t n = m->segments, k = m->k;
    /* What st_served_load derives for the overlay, the same way. */
    jm->G = st_aligned_alloc(64, ((size_t)k * k + 1) * sizeof *jm->G);
    jm->ux = st_malloc(((size_t)k + 1) * sizeof *jm->ux);
    jm->hseg = st_malloc(((size_t)n + 1) * sizeof *jm->hseg);
    jm->hr = st_malloc(((size_t)n + 1) * sizeof *jm->hr);
    if (!jm->G || !jm->ux || !jm->hseg || !jm->hr) return st_seterr(err, "out of memory");
    if (st_model_gram(m, jm->G) != 0) return st_seterr(err, "out of memory");
    jm->ov = st_overlay_new(m, jm->G, jm->prior, err);
    if (!jm->ov) return -1;
    if (st_jinput_overlay(journal, jm->ov, check, check_ctx, use, err) != 0) return -1;
    if (st_overlay_snapshot(jm->ov, &jm->view) != 0) return st_seterr(err, "out of memory");
    return 0;
}

void st_jmodel_free(st_jmodel *jm)
{
    st_overlay_view_free(&jm->view);
    st_overlay_free(jm->ov);
    st_free(jm->G);
    st_free(jm->prior);
    st_free(jm->xbuf);
    st_free(jm->ux);
    st_free(jm->hseg);
    st_free(jm->hr);
    if (jm->loaded) st_model_free(&jm->m);
    memset(jm, 0, sizeof *jm);
}

void st_jmodel_user(st_jmodel *jm, const char *id, size_t len, st_juser *u)
{
    memset(u, 0, sizeof *u);
    u->pos = UINT64_MAX;
    const st_model *m = &jm->m;
    uint32_t slot = 0;
    int where = jm->ov ? st_overlay_find(jm->ov, id, len, jm->ux, jm->hseg, jm->hr, &u->hist_n, &slot) : ST_OV_ABSENT;
    if (where == ST_OV_FORGOTTEN) {
        u->forgotten = 1;
        return;
    }
    if (where == ST_OV_LIVE) {
        u->known = 1;
        u->x = jm->ux;
        u->hist_seg = jm->hseg;
        /* Its place in a scan: after the model's rows, by slot. */
        const st_overlay_view *v = &jm->view;
        uint32_t lo = 0, hi = v->n;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (v->slots[mid] < slot) lo = mid + 1;
            else hi = mid;
        }
        if (lo < v->n && v->slots[lo] == slot) u->pos = (uint64_t)m->users + lo;
        return;
    }
    uint32_t r = st_idmap_find(&m->user_ids, id, len);
    if (r == ST_NOT_FOUND) return;
    u->known = 1;
    u->pos = r;
    u->x = st_model_user(m, r, jm->xbuf);
    u->hist_seg = m->hist_idx + m->hist_ptr[r];
    u->hist_n = (uint32_t)(m->hist_ptr[r + 1] - m->hist_ptr[r]);
}

uint64_t st_jmodel_rows(const st_jmodel *jm) { return (uint64_t)jm->m.users + jm->view.n; }

const char *st_jmodel_row_name(const st_jmodel *jm, uint64_t i)
{
    if (i < jm->m.users) return st_idmap_name(&jm->m.user_ids, (uint32_t)i, NULL);
    return jm->view.ids[i - jm->m.users];
}

/* NaN for the model rows the journal changed or forgot. */
static void hide_rows(const st_jmodel *jm, float *out)
{
    const uint8_t *hidden = jm->view.hidden;
    if (!hidden) return;
    for (uint32_t u = 0; u < jm->m.users; u++)
        if (hidden[u]) out[u] = NAN;
}

void st_jmodel_segment_scores(const st_jmodel *jm, uint32_t s, float *out)
{
    const st_model *m = &jm->m;
    st_score_segment_users(m, jm->prior, s, out);
    hide_rows(jm, out);
    for (uint32_t i = 0; i < jm->view.n; i++)
        out[m->users + i] = st_score_one(m, jm->prior, jm->view.X + (size_t)i * m->k, s);
}

/* ---- a model less the users a journal forgot ------------------------------- */

/* Copies row u of src (factors and history) to row r of e; q: history written so far. */
static void copy_row(st_jerased *e, const st_model *src, uint32_t u, uint64_t r, uint64_t *q)
{
    uint32_t k = src->k;
    if (src->Uq) {
        memcpy(e->Uq + r * k, src->Uq + (size_t)u * k, k);
        e->Usc[r] = src->Uscale[u];
    } else {
        memcpy(e->U + r * k, src->U + (size_t)u * k, k * sizeof *e->U);
    }
    uint64_t h0 = src->hist_ptr[u], hn = src->hist_ptr[u + 1] - h0;
    memcpy(e->hi + *q, src->hist_idx + h0, hn * sizeof *e->hi);
    memcpy(e->hv + *q, src->hist_val + h0, hn * sizeof *e->hv);
    *q += hn;
    e->hp[r + 1] = *q;
}

int st_jinput_erase(const st_model *src, const st_forgotten *f, st_jerased *e, char *err)
{
    memset(e, 0, sizeof *e);
    st_idmap_init(&e->ids);
    e->has_ids = 1;
    uint32_t k = src->k, mu = 0;
    uint64_t nnz = 0;
    uint8_t *drop = st_calloc((size_t)src->users + 1, 1);
    if (!drop) return st_seterr(err, "out of memory");
    for (uint32_t u = 0; u < src->users; u++) {
        size_t len;
        const char *id = st_idmap_name(&src->user_ids, u, &len);
        drop[u] = (uint8_t)st_jinput_is_forgotten(f, id, len);
        if (!drop[u]) {
            mu++;
            nnz += src->hist_ptr[u + 1] - src->hist_ptr[u];
        }
    }
    e->U = src->Uq ? NULL : st_aligned_alloc(64, ((size_t)mu * k + 1) * sizeof *e->U);
    e->Uq = src->Uq ? st_malloc((size_t)mu * k + 1) : NULL;
    e->Usc = src->Uq ? st_malloc(((size_t)mu + 1) * sizeof *e->Usc) : NULL;
    e->hp = st_malloc(((size_t)mu + 1) * sizeof *e->hp);
    e->hi = st_malloc((nnz + 1) * sizeof *e->hi);
    e->hv = st_malloc((nnz + 1) * sizeof *e->hv);
    int rc = (src->Uq ? !e->Uq || !e->Usc : !e->U) || !e->hp || !e->hi || !e->hv ? st_seterr(err, "out of memory") : 0;
    uint64_t q = 0, r = 0;
    if (rc == 0) e->hp[0] = 0;
    for (uint32_t u = 0; u < src->users && rc == 0; u++) {
        if (drop[u]) continue;
        size_t len;
        const char *id = st_idmap_name(&src->user_ids, u, &len);
        uint32_t idx;
        if (st_idmap_intern(&e->ids, id, len, &idx, NULL, err) != 0) rc = -1;
        else copy_row(e, src, u, r++, &q);
    }
    st_free(drop);
    e->dropped = src->users - mu;
    e->m = *src;
    e->m.map = NULL;
    e->m.users = mu;
    e->m.U = e->U;
    e->m.Uq = e->Uq;
    e->m.Uscale = e->Usc;
    e->m.user_ids = e->ids;
    e->m.hist_ptr = e->hp;
    e->m.hist_idx = e->hi;
    e->m.hist_val = e->hv;
    return rc;
}

void st_jerased_free(st_jerased *e)
{
    if (e->has_ids) st_idmap_free(&e->ids);
    st_free(e->U);
    st_free(e->Uq);
    st_free(e->Usc);
    st_free(e->hp);
    st_free(e->hi);
    st_free(e->hv);
    memset(e, 0, sizeof *e);
}
