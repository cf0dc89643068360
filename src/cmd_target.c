/* cmd_target: targeting: SEGMENTS, SCORE, FOLDIN, EXPLAIN, SIMILAR and
 * HISTORY, the questions the ad server asks per request (SEGMENTS and SCORE
 * are its hot path: no allocation, the thread's scratch only).
 *
 * Pipelined SEGMENTS: when the server hands a run of SEGMENTS requests read
 * in one go (ctx->run), the first one's handler scores every request of the
 * run that asks the pruned scan of a known user (st_score_topk_segments_many:
 * each block of segment rows read once for all of them) and keeps their
 * answers in the thread's scratch; each request then replies its own at its
 * turn, as it would have alone: the same segments, scores and order. The
 * rest (errors, ONLY, unknown users, COUNT past RUN_COUNT) are answered at
 * their turn as always. Nothing runs between the requests of a run, so
 * scoring them together changes nothing any of them can see.
 */
#include <math.h>
#include <string.h>

#include "cmd.h"
#include "util.h"

/* ---- targeting ------------------------------------------------------------------ */

static int is_segments_keyword(const resp_arg *a)
{
    return st_cmd_is_word(a, "COUNT") || st_cmd_is_word(a, "MIN") || st_cmd_is_word(a, "ONLY") || st_cmd_is_word(a, "EXCLUDE") ||
           st_cmd_is_word(a, "CALIBRATED") || st_cmd_is_word(a, "UNSEEN");
}

/* A SEGMENTS request's options: argv ranges for ONLY and EXCLUDE (0 = none). */
typedef struct {
    uint32_t count;
    double min;
    int calibrated, unseen, only_from, only_to, ex_from, ex_to;
} segments_req;

/* Parses argv[2..]; 0, or -1 after replying the error. */
static int parse_segments(st_ctx *c, uint32_t nseg, segments_req *r)
{
    *r = (segments_req){.count = 10, .min = -INFINITY};
    for (int i = 2; i < c->argc;) {
        const resp_arg *a = &c->argv[i];
        if (st_cmd_is_word(a, "COUNT") && i + 1 < c->argc) {
            if (st_cmd_arg_count(c, &c->argv[i + 1], nseg, &r->count) != 0) return -1;
            i += 2;
        } else if (st_cmd_is_word(a, "MIN") && i + 1 < c->argc) {
            if (st_cmd_arg_float(c, &c->argv[i + 1], "MIN", &r->min) != 0) return -1;
            i += 2;
        } else if (st_cmd_is_word(a, "CALIBRATED")) {
            r->calibrated = 1;
            i++;
        } else if (st_cmd_is_word(a, "UNSEEN")) {
            r->unseen = 1;
            i++;
        } else if (st_cmd_is_word(a, "ONLY") || st_cmd_is_word(a, "EXCLUDE")) {
            int only = st_cmd_is_word(a, "ONLY");
            if (only ? r->only_from : r->ex_from) {
                resp_error(c->out, "ERR syntax error: %s given twice", only ? "ONLY" : "EXCLUDE");
                return -1;
            }
            int j = i + 1;
            while (j < c->argc && !is_segments_keyword(&c->argv[j])) j++;
            if (only) {
                r->only_from = i + 1;
                r->only_to = j;
            } else {
                r->ex_from = i + 1;
                r->ex_to = j;
            }
            i = j;
        } else {
            resp_error(c->out, "ERR syntax error at '%.*s': SEGMENTS user [COUNT k] [MIN score] [ONLY seg ...] "
                               "[EXCLUDE seg ...] [UNSEEN] [CALIBRATED]",
                       (int)(a->len > 64 ? 64 : a->len), a->ptr);
            return -1;
        }
    }
    return 0;
}

/* ONLY: the segments listed, scored one by one (less EXCLUDE and, with
 * UNSEEN, the user's history). Best first into sc->idx / sc->top. */
static uint32_t rank_only(st_ctx *c, const segments_req *r, const user_view *u, float fmin)
{
    st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    float *scores = sc->scores;
    uint32_t *segs = sc->segs, ns = 0;
    for (int i = r->only_from; i < r->only_to; i++) {
        uint32_t s = st_cmd_find_segment(sv, &c->argv[i]);
        if (s != ST_NOT_FOUND) segs[ns++] = s;
    }
    st_cmd_sort_idx(segs, NULL, ns);
    uint32_t w = 0;
    for (uint32_t i = 0; i < ns; i++)
        if (w == 0 || segs[w - 1] != segs[i]) segs[w++] = segs[i];
    ns = w;
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t s = segs[i];
        scores[i] = u->known ? st_score_one(&sv->m, sv->prior, u->x, s) : sv->prior[s];
    }
    for (int i = r->ex_from; i && i < r->ex_to; i++) {
        uint32_t s = st_cmd_find_segment(sv, &c->argv[i]);
        for (uint32_t j = 0; j < ns && s != ST_NOT_FOUND; j++)
            if (segs[j] == s) scores[j] = NAN;
    }
    if (r->unseen)
        for (uint32_t h = 0; h < u->hist_n; h++)
            for (uint32_t j = 0; j < ns; j++)
                if (segs[j] == u->hist_seg[h]) scores[j] = NAN;
    if (!isinf(fmin))
        for (uint32_t j = 0; j < ns; j++)
            if (!(scores[j] >= fmin)) scores[j] = NAN;
    uint32_t got = st_topk(scores, ns, r->count, NULL, 0, sc->idx, sc->top);
    for (uint32_t i = 0; i < got; i++) sc->idx[i] = segs[sc->idx[i]];
    return got;
}

/* Every segment: the pruned index for a known user, the prior's fixed
 * ranking for an unknown one. EXCLUDE and UNSEEN mark the skip mask, which
 * is cleared again before returning. */
static uint32_t rank_all(st_ctx *c, const segments_req *r, const user_view *u, float fmin)
{
    st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    int any_skip = 0;
    for (int i = r->ex_from; i && i < r->ex_to; i++) {
        uint32_t s = st_cmd_find_segment(sv, &c->argv[i]);
        if (s != ST_NOT_FOUND) sc->skip[s] = any_skip = 1;
    }
    if (r->unseen)
        for (uint32_t h = 0; h < u->hist_n; h++) sc->skip[u->hist_seg[h]] = any_skip = 1;
    uint32_t got = 0;
    if (u->known) {
        got = st_score_topk_segments(&sv->seg_index, u->x, r->count, fmin, any_skip ? sc->skip : NULL, sc->idx,
                                     sc->top, NULL);
    } else {
        for (uint32_t p = 0; p < sv->m.segments && got < r->count; p++) {
            uint32_t s = sv->prior_rank[p];
            if (sv->prior[s] < fmin) break;
            if (sc->skip[s]) continue;
            sc->idx[got] = s;
            sc->top[got++] = sv->prior[s];
        }
    }
    for (int i = r->ex_from; i && i < r->ex_to; i++) {
        uint32_t s = st_cmd_find_segment(sv, &c->argv[i]);
        if (s != ST_NOT_FOUND) sc->skip[s] = 0;
    }
    if (r->unseen)
        for (uint32_t h = 0; h < u->hist_n; h++) sc->skip[u->hist_seg[h]] = 0;
    return got;
}

/* ---- SEGMENTS runs ------------------------------------------------------------- */

/* COUNT up to which a request of a run is answered with the run. */
#define RUN_COUNT 128

/* The answers of a run, kept in the thread's scratch until each request's
 * turn: one block (st_scratch_free frees it), allocated at the first run
 * and grown with the rank. */
struct st_seg_run {
    const st_served *model; /* the model the answers are of */
    uint64_t run_id;        /* and the run */
    uint32_t cap_k;
    struct {
        const resp_arg *argv; /* the request answered (NULL: none, or already replied) */
        uint32_t got;
        int online;
        const float *x; /* the user's vector, in X */
    } req[ST_RUN_MAX];
    uint32_t idx[ST_RUN_MAX][RUN_COUNT];
    float top[ST_RUN_MAX][RUN_COUNT];
    float X[]; /* ST_RUN_MAX x cap_k: the users' vectors */
};

static struct st_seg_run *run_state(st_scratch *sc, uint32_t k)
{
    if (sc->seg_run && sc->seg_run->cap_k >= k) return sc->seg_run;
    struct st_seg_run *b = st_malloc(sizeof *b + (size_t)ST_RUN_MAX * k * sizeof(float));
    if (!b) return NULL;
    st_free(sc->seg_run);
    b->cap_k = k;
    sc->seg_run = b;
    return b;
}

/* Marks with bit the segments request r leaves out (EXCLUDE, and with
 * UNSEEN the user's history) in the scratch's skip mask. */
static void mark_skip(st_ctx *c, const segments_req *r, const user_view *u, uint8_t bit)
{
    uint8_t *skip = c->scratch->skip;
    for (int i = r->ex_from; i && i < r->ex_to; i++) {
        uint32_t s = st_cmd_find_segment(c->model, &c->argv[i]);
        if (s != ST_NOT_FOUND) skip[s] |= bit;
    }
    if (r->unseen)
        for (uint32_t h = 0; h < u->hist_n; h++) skip[u->hist_seg[h]] |= bit;
}

/* The first request of a run: scores every request of it that the pruned
 * scan answers (a known user, no ONLY, COUNT up to RUN_COUNT; at most eight
 * of them with EXCLUDE or UNSEEN, one bit each of the skip mask) together,
 * and keeps the answers for their turns. Replies nothing: a request that
 * cannot be answered here (a syntax error included) replies at its turn. */
static void run_prepare(st_ctx *c)
{
    const st_run *run = c->run;
    st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    uint32_t k = sv->m.k;
    struct st_seg_run *b = run_state(sc, k);
    if (!b) return;
    b->model = sv;
    b->run_id = run->id;
    st_segment_query q[ST_RUN_MAX];
    const float *row[ST_RUN_MAX]; /* a model row still to copy into b->X (NULL: copied) */
    int who[ST_RUN_MAX], nq = 0, bits = 0;
    resp_out sink = {.overflow = 1}; /* what parsing would reply is dropped, unwritten */
    /* Each user's hash slot on its way while the others hash, then the
     * offsets found there (with the user's history pointer and float row),
     * then the id's bytes: three rounds of misses side by side instead of
     * several after each other a lookup (once per user: a run of one
     * user's requests hashes it once more, not n times). */
    const resp_arg *last = NULL;
    uint64_t slot[ST_RUN_MAX];
    int nslot = 0;
    for (int i = 0; i < run->n; i++) {
        if (run->argc[i] < 2) continue;
        const resp_arg *id = &run->argv[i][1];
        if (last && last->len == id->len && memcmp(last->ptr, id->ptr, id->len) == 0) continue;
        slot[nslot++] = st_idmap_prefetch(&sv->m.user_ids, id->ptr, id->len);
        last = id;
    }
    for (int j = 0; j < nslot; j++) {
        uint32_t u = st_idmap_prefetch_stage(&sv->m.user_ids, slot[j], 1);
        if (u >= sv->m.users) continue;
        if (sv->m.hist_ptr) __builtin_prefetch(sv->m.hist_ptr + u);
        if (sv->m.U)
            for (uint32_t j2 = 0; j2 < k; j2 += 16) __builtin_prefetch(sv->m.U + (size_t)u * k + j2);
    }
    for (int j = 0; j < nslot; j++) st_idmap_prefetch_stage(&sv->m.user_ids, slot[j], 2);
    for (int i = 0; i < run->n; i++) {
        b->req[i].argv = NULL;
        if (run->argc[i] < 2) continue; /* its arity error is replied at its turn */
        st_ctx ci = *c;
        ci.argc = run->argc[i];
        ci.argv = run->argv[i];
        ci.out = &sink;
        segments_req r;
        if (parse_segments(&ci, sv->m.segments, &r) != 0 || r.only_from || r.count > RUN_COUNT ||
            (r.calibrated && !(sv->m.h.flags & ST_MODEL_CALIBRATED)))
            continue;
        int skips = r.ex_from || r.unseen;
        if (skips && bits == 8) continue;
        user_view u = st_cmd_find_user(&ci, ci.argv[1].ptr, ci.argv[1].len);
        if (!u.known) continue;
        uint8_t bit = skips ? (uint8_t)(1u << bits++) : 0;
        if (bit) mark_skip(&ci, &r, &u, bit);
        /* An online user's vector, and an int8 model's row dequantized, are
         * in the scratch until the next lookup: copied now. A float model's
         * row is fetched while the other requests are looked up, and copied
         * after them (a random user's row is rarely in the cache). */
        int in_model = !u.online && !sv->m.Uq;
        row[nq] = in_model ? u.x : NULL;
        if (!in_model) memcpy(b->X + (size_t)nq * k, u.x, k * sizeof *b->X);
        else
            for (uint32_t j = 0; j < k; j += 16) __builtin_prefetch(u.x + j);
        q[nq] = (st_segment_query){.x = b->X + (size_t)nq * k, .want = r.count,
                                   .min = r.calibrated ? -INFINITY : (float)r.min, .skip = bit ? sc->skip : NULL,
                                   .skip_bit = bit, .out_idx = b->idx[i], .out_score = b->top[i]};
        b->req[i].online = u.online;
        b->req[i].x = b->X + (size_t)nq * k;
        who[nq++] = i;
    }
    for (int j = 0; j < nq; j++)
        if (row[j]) memcpy(b->X + (size_t)j * k, row[j], k * sizeof *b->X);
    st_score_topk_segments_many(&sv->seg_index, q, (uint32_t)nq);
    if (bits) memset(sc->skip, 0, sv->m.segments); /* all 0 between requests */
    for (int j = 0; j < nq; j++) {
        b->req[who[j]].argv = run->argv[who[j]];
        b->req[who[j]].got = q[j].got;
    }
}

/* This request's answer from its run, into sc->idx / sc->top: 1 when the
 * run had it (its source in *source, the user's vector in *x), 0 when it is
 * to be scored alone. */
static int run_answer(st_ctx *c, uint32_t *got, const char **source, const float **x)
{
    struct st_seg_run *b = c->scratch->seg_run;
    if (!c->run || !b || b->model != c->model || b->run_id != c->run->id) return 0;
    int i = c->run->at;
    if (b->req[i].argv != c->argv) return 0;
    b->req[i].argv = NULL; /* answered once */
    *got = b->req[i].got;
    memcpy(c->scratch->idx, b->idx[i], *got * sizeof *b->idx[i]);
    memcpy(c->scratch->top, b->top[i], *got * sizeof *b->top[i]);
    *source = b->req[i].online ? "online" : "model";
    *x = b->req[i].x;
    return 1;
}

void cmd_segments(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    st_scratch *sc = c->scratch;
    segments_req r;
    if (c->run && c->run->at == 0) run_prepare(c);
    if (parse_segments(c, m->segments, &r) != 0) return;
    if (r.calibrated && !(m->h.flags & ST_MODEL_CALIBRATED)) {
        resp_error(c->out, "ERR CALIBRATED: this model carries no calibration");
        return;
    }
    /* Calibration is monotone when a > 0: rank on raw scores, then map the
     * survivors; MIN then applies to the calibrated value. A user answered
     * from the prior gets the model's probability for a user with no
     * history: the calibration of the blend alone, w q[s]. */
    float fmin = r.calibrated ? -INFINITY : (float)r.min;
    uint32_t got;
    const char *source;
    int known = 1;
    const float *x = NULL;
    if (!run_answer(c, &got, &source, &x)) {
        user_view u = st_cmd_find_user(c, c->argv[1].ptr, c->argv[1].len);
        got = r.only_from ? rank_only(c, &r, &u, fmin) : rank_all(c, &r, &u, fmin);
        known = u.known;
        x = u.known ? u.x : NULL;
        source = st_cmd_user_source(&u);
    }
    /* segments added online (the run's batched scan knows only the model's) */
    got = st_cmd_merge_added(c, x, r.count, fmin, r.only_from, r.only_to, r.ex_from, r.ex_to, got);
    if (r.calibrated) {
        uint32_t w = 0;
        for (uint32_t i = 0; i < got; i++) {
            float base = known ? sc->top[i] : (float)m->h.prior_weight * st_cmd_segment_prior(c, sc->idx[i]);
            float p = (float)st_score_calibrated(m, base);
            if (p >= r.min) {
                sc->idx[w] = sc->idx[i];
                sc->top[w++] = p;
            }
        }
        got = w;
    }
    resp_array(c->out, 2);
    resp_simple(c->out, source);
    st_cmd_reply_segment_pairs(c, sc->idx, sc->top, got);
}

void cmd_score(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    /* A last argument CALIBRATED asks for probabilities, as SEGMENTS does
     * (a segment of that name is asked for anywhere but last). */
    int last = c->argc, calibrated = 0;
    if (c->argc >= 4 && st_cmd_is_word(&c->argv[c->argc - 1], "CALIBRATED")) {
        calibrated = 1;
        last--;
        if (!(m->h.flags & ST_MODEL_CALIBRATED)) {
            resp_error(c->out, "ERR CALIBRATED: this model carries no calibration");
            return;
        }
    }
    user_view u = st_cmd_find_user(c, c->argv[1].ptr, c->argv[1].len);
    resp_array(c->out, 2);
    resp_simple(c->out, st_cmd_user_source(&u));
    resp_array(c->out, last - 2);
    for (int i = 2; i < last; i++) {
        uint32_t s = st_cmd_find_any_segment(sv, &c->argv[i]);
        if (s == ST_NOT_FOUND) resp_null(c->out);
        else if (calibrated) /* a user answered from the prior: the blend alone, w q[s], as SEGMENTS */
            resp_score(c->out, (float)st_score_calibrated(m, u.known ? st_cmd_segment_score(c, u.x, s)
                                                                      : (float)m->h.prior_weight * st_cmd_segment_prior(c, s)));
        else resp_score(c->out, st_cmd_segment_score(c, u.known ? u.x : NULL, s));
    }
}

void cmd_foldin(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    st_scratch *sc = c->scratch;
    uint32_t count = 10;
    int first = 1;
    if (st_cmd_is_word(&c->argv[1], "COUNT") && (c->argc - 1) % 2 == 0) {
        if (st_cmd_arg_count(c, &c->argv[2], m->segments, &count) != 0) return;
        first = 3;
    }
    if (c->argc - first < 2 || (c->argc - first) % 2 != 0) {
        resp_error(c->out, "ERR FOLDIN needs segment weight pairs: FOLDIN [COUNT k] seg weight [seg weight ...]");
        return;
    }
    uint32_t *segs = sc->segs, ns = 0;
    float *r = sc->vals;
    for (int i = first; i < c->argc; i += 2) {
        double w;
        if (strlen(c->argv[i + 1].ptr) != c->argv[i + 1].len || st_parse_double(c->argv[i + 1].ptr, &w) != 0 ||
            w < 0) {
            resp_error(c->out, "ERR weight '%.*s' of segment '%.*s' is not a number >= 0",
                       (int)(c->argv[i + 1].len > 32 ? 32 : c->argv[i + 1].len), c->argv[i + 1].ptr,
                       (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len), c->argv[i].ptr);
            return;
        }
        uint32_t s = st_cmd_find_segment(sv, &c->argv[i]);
        if (s == ST_NOT_FOUND) continue; /* the model cannot use what it has not seen */
        segs[ns] = s;
        r[ns++] = (float)w;
    }
    /* Repeated segments add up, as repeated events do in training; zero
     * engagement is no interaction. */
    st_cmd_sort_idx(segs, r, ns);
    uint32_t w = 0;
    for (uint32_t i = 0; i < ns; i++) {
        if (w > 0 && segs[w - 1] == segs[i]) r[w - 1] += r[i];
        else {
            segs[w] = segs[i];
            r[w++] = r[i];
        }
    }
    ns = 0;
    for (uint32_t i = 0; i < w; i++)
        if (r[i] > 0) {
            segs[ns] = segs[i];
            r[ns++] = r[i];
        }
    float *scores = sc->scores;
    const char *source = "foldin";
    if (ns == 0) {
        memcpy(scores, sv->prior, (size_t)m->segments * sizeof *scores);
        source = "prior";
    } else {
        float *x = scores + m->segments; /* scratch rows hold n + k floats */
        if (st_score_foldin(m, sv->G, segs, r, ns, x, sc->work) != 0) {
            resp_error(c->out, "ERR fold-in failed: the system is not positive definite");
            return;
        }
    }
    uint32_t got = ns == 0 ? st_topk(scores, m->segments, count, NULL, 0, sc->idx, sc->top)
                           : st_score_topk_segments(&sv->seg_index, scores + m->segments, count, -INFINITY, NULL,
                                                    sc->idx, sc->top, NULL);
    resp_array(c->out, 2);
    resp_simple(c->out, source);
    st_cmd_reply_segment_pairs(c, sc->idx, sc->top, got);
}

void cmd_similar(st_ctx *c)
{
    uint32_t s, count;
    if (st_cmd_need_segment(c, &c->argv[1], &s) != 0) return;
    if (!st_cmd_is_word(&c->argv[2], "COUNT")) {
        resp_error(c->out, "ERR syntax error: SIMILAR seg COUNT n");
        return;
    }
    if (st_cmd_arg_count(c, &c->argv[3], c->model->m.segments, &count) != 0) return;
    st_scratch *sc = c->scratch;
    const st_served *sv = c->model;
    if (st_scratch_work(sc, st_score_similar_scratch(&sv->m)) != 0) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    uint32_t got = st_score_similar(&sv->m, sv->G, sv->prior, s, count, sc->scores, sc->work, sc->idx, sc->top);
    st_cmd_reply_segment_pairs(c, sc->idx, sc->top, got);
}

void cmd_explain(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    st_scratch *sc = c->scratch;
    uint32_t s, count = 10;
    if (c->argc != 3 && !(c->argc == 5 && st_cmd_is_word(&c->argv[3], "COUNT"))) {
        resp_error(c->out, "ERR syntax error: EXPLAIN user seg [COUNT n]");
        return;
    }
    if (c->argc == 5 && st_cmd_arg_count(c, &c->argv[4], m->segments, &count) != 0) return;
    user_view u = st_cmd_find_user(c, c->argv[1].ptr, c->argv[1].len);
    if (!u.known) {
        resp_error(c->out, "ERR unknown user '%.*s': no history to explain (its scores come from the prior)",
                   (int)(c->argv[1].len > 128 ? 128 : c->argv[1].len), c->argv[1].ptr);
        return;
    }
    if (st_cmd_need_segment(c, &c->argv[2], &s) != 0) return;
    if (st_scratch_work(sc, st_score_explain_scratch(m, u.hist_n)) != 0) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    float *contrib = sc->scores; /* history length <= segments <= scratch rows */
    if (st_score_explain(m, sv->G, u.hist_seg, u.hist_r, u.hist_n, s, contrib, sc->work) != 0) {
        resp_error(c->out, "ERR explanation failed: the system is not positive definite");
        return;
    }
    double total = 0;
    for (uint32_t i = 0; i < u.hist_n; i++) total += contrib[i];
    uint32_t got = st_topk(contrib, u.hist_n, count, NULL, 0, sc->idx, sc->top);
    for (uint32_t i = 0; i < got; i++) sc->idx[i] = u.hist_seg[sc->idx[i]];
    resp_array(c->out, 2);
    resp_score(c->out, (float)total);
    st_cmd_reply_segment_pairs(c, sc->idx, sc->top, got);
}

/* What the server holds about a user: the engagement by segment behind their
 * vector (the model's training history, plus what EVENT added). */
void cmd_history(st_ctx *c)
{
    user_view u = st_cmd_find_user(c, c->argv[1].ptr, c->argv[1].len);
    resp_array(c->out, 2);
    resp_simple(c->out, u.known ? st_cmd_user_source(&u) : "none");
    resp_array(c->out, 2 * (int64_t)u.hist_n);
    for (uint32_t i = 0; u.known && i < u.hist_n; i++) {
        st_cmd_bulk_segment(c, u.hist_seg[i]);
        resp_score(c->out, u.hist_r[i]);
    }
}
