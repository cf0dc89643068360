/* cmd_write: online writes: EVENT, FORGET and their Redis names ZINCRBY, DEL
 * and UNLINK, applied through the server's write operation (journaled before
 * they are visible), the online-quality counters, JOURNAL COMPACT and the
 * DEBUG failure injections.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "util.h"

/* ---- online writes ------------------------------------------------------------------ */

/* An id a write may store: not empty, no NUL byte, and short enough for one
 * journal record. Replies the error and returns -1 otherwise. */
static int arg_id(st_ctx *c, const resp_arg *a, const char *what)
{
    if (a->len == 0 || memchr(a->ptr, '\0', a->len)) {
        resp_error(c->out, "ERR the %s id must not be empty or contain a NUL byte", what);
        return -1;
    }
    if (a->len > ST_JOURNAL_MAX_RECORD / 4) {
        resp_error(c->out, "ERR the %s id is longer than %u bytes", what, ST_JOURNAL_MAX_RECORD / 4);
        return -1;
    }
    return 0;
}

/* An event's weight: a finite number >= 0, as in an event log. */
static int arg_weight(st_ctx *c, const resp_arg *a, double *w)
{
    if (strlen(a->ptr) != a->len || st_parse_double(a->ptr, w) != 0 || *w < 0) {
        resp_error(c->out, "ERR weight '%.*s' is not a number >= 0 (engagement only adds up; FORGET erases)",
                   (int)(a->len > 32 ? 32 : a->len), a->ptr);
        return -1;
    }
    return 0;
}

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Applies and journals r. On success the connection's replies from here
 * on wait for r's record to be durable (under appendfsync always); on
 * failure the error is replied. */
static int do_write(st_ctx *c, st_jrecord *r, st_write_result *res)
{
    char err[ST_ERRLEN];
    if (c->ops->write(c->srv, r, c->scratch, res, err) != 0) {
        resp_error(c->out, "%s", err);
        return -1;
    }
    if (c->session && res->seq > c->session->journal_wait) c->session->journal_wait = res->seq;
    return 0;
}

static st_jrecord event_record(const resp_arg *user, const resp_arg *seg, double weight, const resp_arg *kind,
                               double ts)
{
    st_jrecord r = {.type = ST_JREC_EVENT,
                    .user = user->ptr,
                    .user_len = (uint32_t)user->len,
                    .segment = seg->ptr,
                    .segment_len = (uint32_t)seg->len,
                    .kind = kind && kind->len ? kind->ptr : NULL,
                    .kind_len = kind ? (uint32_t)kind->len : 0,
                    .weight = weight,
                    .ts = ts};
    return r;
}

/* Before an EVENT is applied: was its segment among the user's best 10 and
 * 50 segments not yet engaged with, as SEGMENTS ... UNSEEN ranks them, and
 * among the 10 and 50 most popular of those? Counted on the served model
 * (INFO quality, /metrics): how well the rankings predicted what happened. */
static void online_quality(st_ctx *c, const resp_arg *user, const resp_arg *seg)
{
    st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    uint32_t s = st_cmd_find_segment(sv, seg);
    if (s == ST_NOT_FOUND) return;
    user_view u = st_cmd_find_user(c, user->ptr, user->len);
    for (uint32_t h = 0; h < u.hist_n; h++)
        if (u.hist_seg[h] == s) {
            atomic_fetch_add_explicit(&sv->q_repeat, 1, memory_order_relaxed);
            return;
        }
    for (uint32_t h = 0; h < u.hist_n; h++) sc->skip[u.hist_seg[h]] = 1;
    /* Popularity (the prior's order), and the model's ranking: the same for
     * a user answered from the prior. */
    uint32_t pop = UINT32_MAX, mod = UINT32_MAX, ahead = 0;
    for (uint32_t p = 0; p < sv->m.segments && ahead < 50; p++) {
        uint32_t t = sv->prior_rank[p];
        if (t == s) {
            pop = ahead;
            break;
        }
        ahead += !sc->skip[t];
    }
    if (!u.known) {
        mod = pop;
    } else {
        uint32_t got = st_score_topk_segments(&sv->seg_index, u.x, 50, -INFINITY, sc->skip, sc->idx, sc->top, NULL);
        for (uint32_t i = 0; i < got; i++)
            if (sc->idx[i] == s) mod = i;
    }
    for (uint32_t h = 0; h < u.hist_n; h++) sc->skip[u.hist_seg[h]] = 0;
    atomic_fetch_add_explicit(&sv->q_new, 1, memory_order_relaxed);
    if (mod < 10) atomic_fetch_add_explicit(&sv->q_hit10, 1, memory_order_relaxed);
    if (mod < 50) atomic_fetch_add_explicit(&sv->q_hit50, 1, memory_order_relaxed);
    if (pop < 10) atomic_fetch_add_explicit(&sv->q_pop10, 1, memory_order_relaxed);
    if (pop < 50) atomic_fetch_add_explicit(&sv->q_pop50, 1, memory_order_relaxed);
}

void cmd_event(st_ctx *c)
{
    double weight, ts = NAN;
    const resp_arg *kind = NULL;
    if (arg_id(c, &c->argv[1], "user") != 0 || arg_id(c, &c->argv[2], "segment") != 0 ||
        arg_weight(c, &c->argv[3], &weight) != 0)
        return;
    for (int i = 4; i < c->argc; i += 2) {
        const resp_arg *a = &c->argv[i];
        if (i + 1 < c->argc && st_cmd_is_word(a, "KIND")) {
            kind = &c->argv[i + 1];
            if (kind->len && arg_id(c, kind, "kind") != 0) return;
        } else if (i + 1 < c->argc && st_cmd_is_word(a, "TS")) {
            if (st_parse_timestamp(c->argv[i + 1].ptr, c->argv[i + 1].len, &ts) != 0) {
                resp_error(c->out, "ERR TS '%.*s' is not a time (unix seconds or ISO 8601)",
                           (int)(c->argv[i + 1].len > 40 ? 40 : c->argv[i + 1].len), c->argv[i + 1].ptr);
                return;
            }
        } else {
            resp_error(c->out, "ERR syntax error at '%.*s': EVENT user seg weight [KIND kind] [TS time]",
                       (int)(a->len > 64 ? 64 : a->len), a->ptr);
            return;
        }
    }
    /* The time of receipt when none is given: training with a half-life
     * needs one, and replay must weigh the event as it was weighed now. */
    if (isnan(ts)) ts = unix_now();
    if (weight > 0) online_quality(c, &c->argv[1], &c->argv[2]);
    st_jrecord r = event_record(&c->argv[1], &c->argv[2], weight, kind, ts);
    st_write_result res;
    if (do_write(c, &r, &res) == 0) resp_simple(c->out, "OK");
}

void cmd_zincrby(st_ctx *c)
{
    const resp_arg *key = &c->argv[1];
    if (key->len < 2 || key->ptr[0] != 'u' || key->ptr[1] != ':') {
        resp_error(c->out, "ERR ZINCRBY takes u:<user> keys (the users of s:<segment> change through their own "
                           "events)");
        return;
    }
    resp_arg user = {key->ptr + 2, key->len - 2};
    double weight;
    if (strlen(c->argv[2].ptr) != c->argv[2].len || st_parse_double(c->argv[2].ptr, &weight) != 0) {
        resp_error(c->out, "ERR value is not a valid float");
        return;
    }
    if (arg_id(c, &user, "user") != 0 || arg_id(c, &c->argv[3], "segment") != 0 ||
        arg_weight(c, &c->argv[2], &weight) != 0)
        return;
    st_jrecord r = event_record(&user, &c->argv[3], weight, NULL, unix_now());
    st_write_result res;
    if (do_write(c, &r, &res) != 0) return;
    uint32_t s = st_cmd_find_segment(c->model, &c->argv[3]);
    if (!isnan(res.score)) {
        resp_score(c->out, res.score);
    } else if (s != ST_NOT_FOUND) { /* a zero increment: the score as it is */
        user_view u = st_cmd_find_user(c, user.ptr, user.len);
        resp_score(c->out, u.known ? st_score_one(&c->model->m, c->model->prior, u.x, s) : c->model->prior[s]);
    } else {
        resp_null(c->out); /* journaled for the next training; this model has no such segment */
    }
}

void cmd_forget(st_ctx *c)
{
    if (arg_id(c, &c->argv[1], "user") != 0) return;
    st_jrecord r = {.type = ST_JREC_FORGET, .user = c->argv[1].ptr, .user_len = (uint32_t)c->argv[1].len};
    st_write_result res;
    if (do_write(c, &r, &res) == 0) resp_simple(c->out, "OK");
}

/* DEL and UNLINK: FORGET for every u:<user> key; the reply counts the users
 * that appeared in replies before. Other keys do not exist, as in Redis,
 * except s:<segment>, which a client cannot delete. */
void cmd_del(st_ctx *c)
{
    for (int i = 1; i < c->argc; i++) {
        const resp_arg *k = &c->argv[i];
        if (k->len >= 2 && k->ptr[0] == 's' && k->ptr[1] == ':') {
            resp_error(c->out, "ERR s:<segment> keys cannot be deleted: segments come from the model");
            return;
        }
        resp_arg user = {k->ptr + 2, k->len - 2};
        if (k->len >= 2 && k->ptr[0] == 'u' && k->ptr[1] == ':' && arg_id(c, &user, "user") != 0) return;
    }
    int64_t existed = 0, done = 0;
    for (int i = 1; i < c->argc; i++) {
        const resp_arg *k = &c->argv[i];
        if (k->len < 2 || k->ptr[0] != 'u' || k->ptr[1] != ':') continue;
        st_jrecord r = {.type = ST_JREC_FORGET, .user = k->ptr + 2, .user_len = (uint32_t)k->len - 2};
        st_write_result res;
        char err[ST_ERRLEN];
        if (c->ops->write(c->srv, &r, c->scratch, &res, err) != 0) {
            if (done) resp_error(c->out, "%s (the %lld keys before it were deleted)", err, (long long)done);
            else resp_error(c->out, "%s", err);
            return;
        }
        if (c->session && res.seq > c->session->journal_wait) c->session->journal_wait = res.seq;
        existed += res.existed;
        done++;
    }
    resp_int(c->out, existed);
}

void cmd_journal_compact(st_ctx *c)
{
    char err[ST_ERRLEN];
    if (c->ops->compact(c->srv, err) != 0) resp_error(c->out, "%s", err);
    else resp_simple(c->out, "Background journal compaction started");
}

/* ---- DEBUG: failure injection for tests ------------------------------------------ */

static int debug_allowed(st_ctx *c)
{
    if (c->cfg->enable_debug) return 1;
    resp_error(c->out, "ERR DEBUG command not allowed: start the server with --enable-debug-command (it can make "
                       "writes fail; for tests only)");
    return 0;
}

void cmd_debug_io_fail_after(st_ctx *c)
{
    int64_t n;
    if (!debug_allowed(c) || st_cmd_arg_i64(c, &c->argv[2], &n) != 0) return;
    st_io_fail_after(n < 0 ? -1 : n);
    resp_simple(c->out, "OK");
}

void cmd_debug_fsync_delay(st_ctx *c)
{
    int64_t ms;
    if (!debug_allowed(c) || st_cmd_arg_i64(c, &c->argv[2], &ms) != 0) return;
    st_io_delay_fsync(ms);
    resp_simple(c->out, "OK");
}

void cmd_debug_fsync_fail(st_ctx *c)
{
    int64_t on;
    if (!debug_allowed(c) || st_cmd_arg_i64(c, &c->argv[2], &on) != 0) return;
    st_io_fail_fsync(on != 0);
    resp_simple(c->out, "OK");
}

/* ---- segments from lists of users ----------------------------------------------- */

/* argv[from..] as the members of a SEGMENT record, packed into a new buffer
 * (*bytes long); NULL after replying the error. */
static char *pack_members(st_ctx *c, int from, uint64_t *bytes)
{
    uint64_t n = 0;
    for (int i = from; i < c->argc; i++) {
        if (arg_id(c, &c->argv[i], "user") != 0) return NULL;
        n += c->argv[i].len;
    }
    *bytes = st_jrecord_pack_size((uint64_t)(c->argc - from), n);
    if (*bytes + c->argv[2].len + 64 > ST_JOURNAL_MAX_RECORD) {
        resp_error(c->out, "ERR the list takes %llu bytes, more than one journal record holds (%u): add it in parts "
                           "(each SEGMENT ADD adds to the segment)",
                   (unsigned long long)*bytes, ST_JOURNAL_MAX_RECORD);
        return NULL;
    }
    char *packed = st_malloc(*bytes + 1), *p = packed;
    if (!packed) {
        resp_error(c->out, "ERR out of memory");
        return NULL;
    }
    for (int i = from; i < c->argc; i++) p = st_jrecord_pack(p, c->argv[i].ptr, (uint32_t)c->argv[i].len);
    return packed;
}

void cmd_segment_add(st_ctx *c)
{
    uint64_t bytes;
    if (arg_id(c, &c->argv[2], "segment") != 0) return;
    char *packed = pack_members(c, 3, &bytes);
    if (!packed) return;
    st_jrecord r = {.type = ST_JREC_SEGMENT,
                    .segment = c->argv[2].ptr,
                    .segment_len = (uint32_t)c->argv[2].len,
                    .members = packed,
                    .members_len = (uint32_t)bytes,
                    .nmembers = (uint32_t)(c->argc - 3),
                    .ts = unix_now()};
    st_write_result res;
    int rc = do_write(c, &r, &res);
    st_free(packed);
    if (rc != 0) return;
    resp_map(c->out, 3);
    st_cmd_kv_int(c->out, "members", res.seg_members);
    st_cmd_kv_int(c->out, "solved_from", res.seg_used);
    st_cmd_kv_int(c->out, "without_vector", (int64_t)res.seg_members - res.seg_used);
}

void cmd_segment_set(st_ctx *c)
{
    uint32_t k = c->model->m.k;
    if (arg_id(c, &c->argv[2], "segment") != 0) return;
    if ((uint32_t)(c->argc - 3) != k) {
        resp_error(c->out, "ERR SEGMENT SET needs %u values (the model's rank), got %d", k, c->argc - 3);
        return;
    }
    float *y = st_malloc(k * sizeof *y);
    if (!y) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    for (uint32_t i = 0; i < k; i++) {
        double v;
        const resp_arg *a = &c->argv[3 + i];
        if (strlen(a->ptr) != a->len || st_parse_double(a->ptr, &v) != 0 || !isfinite((float)v)) {
            resp_error(c->out, "ERR value %u '%.*s' is not a finite number", i + 1, (int)(a->len > 32 ? 32 : a->len),
                       a->ptr);
            st_free(y);
            return;
        }
        y[i] = (float)v;
    }
    st_jrecord r = {.type = ST_JREC_SEGVEC,
                    .segment = c->argv[2].ptr,
                    .segment_len = (uint32_t)c->argv[2].len,
                    .vector = y,
                    .k = k};
    st_write_result res;
    int rc = do_write(c, &r, &res);
    st_free(y);
    if (rc == 0) resp_simple(c->out, "OK");
}

void cmd_segment_partial(st_ctx *c)
{
    const st_model *m = &c->model->m;
    uint32_t k = m->k, members = 0, used = 0;
    uint64_t bytes;
    char err[ST_ERRLEN];
    if (arg_id(c, &c->argv[2], "segment") != 0) return;
    char *packed = pack_members(c, 3, &bytes);
    double *A = packed ? st_malloc(((size_t)k * k + k) * sizeof *A) : NULL;
    if (!A) {
        if (packed) resp_error(c->out, "ERR out of memory");
        st_free(packed);
        return;
    }
    int rc = st_overlay_segment_partial(c->model->ov, packed, bytes, A, A + (size_t)k * k, &members, &used, err);
    st_free(packed);
    if (rc != 0) {
        resp_error(c->out, "ERR %s", err);
        st_free(A);
        return;
    }
    st_als_params p;
    st_model_params(&m->h, &p);
    resp_map(c->out, 11);
    st_cmd_kv_int(c->out, "members", members);
    st_cmd_kv_int(c->out, "used", used);
    st_cmd_kv_int(c->out, "users", m->users);
    st_cmd_kv_int(c->out, "k", k);
    st_cmd_kv_num(c->out, "lambda", p.lambda);
    st_cmd_kv_str(c->out, "regularization", st_reg_name(p.regularization));
    st_cmd_kv_num(c->out, "reg_alpha0", p.reg_alpha0);
    st_cmd_kv_num(c->out, "reg_nu", p.reg_nu);
    st_cmd_kv_num(c->out, "unobserved", p.unobserved);
    resp_bulk(c->out, "gram", 4);
    resp_array(c->out, (int64_t)k * k);
    for (size_t i = 0; i < (size_t)k * k; i++) resp_double(c->out, A[i]);
    resp_bulk(c->out, "rhs", 3);
    resp_array(c->out, k);
    for (uint32_t i = 0; i < k; i++) resp_double(c->out, A[(size_t)k * k + i]);
    st_free(A);
}
