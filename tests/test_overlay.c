/* Tests of the overlay of users changed online (overlay.h), on a small
 * model made here: an EVENT re-solves a known user's vector from the
 * model's history plus the event (equal to st_score_foldin of that history),
 * hides the model's row and appears in scans; an unknown user gets a slot of
 * its own; FORGET hides a user everywhere and a later EVENT starts a new
 * history; a change prepared from a state another commit changed is refused
 * by the check; a segment the model does not know changes nothing; replay
 * plus one solve gives what the same records committed one by one give. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "overlay.h"
#include "score.h"
#include "small_model.h"
#include "tap.h"
#include "util.h"

static st_model M;
static float *G, *Q;

static int make_model(const char *dir)
{
    if (small_model(dir, &M) != 0) return -1;
    G = malloc((size_t)M.k * M.k * sizeof *G);
    Q = malloc(M.segments * sizeof *Q);
    st_als_gram(M.V, M.segments, M.k, G);
    st_score_prior(&M, Q);
    return 0;
}

static st_jrecord event(const char *user, const char *seg, double w)
{
    return (st_jrecord){.type = ST_JREC_EVENT, .user = user, .user_len = (uint32_t)strlen(user), .segment = seg,
                        .segment_len = (uint32_t)strlen(seg), .weight = w, .ts = 1e12};
}

static st_jrecord forget(const char *user)
{
    return (st_jrecord){.type = ST_JREC_FORGET, .user = user, .user_len = (uint32_t)strlen(user)};
}

/* prepare, check, commit: the change as the server applies it. */
static int apply(st_overlay *o, const st_jrecord *r, st_overlay_change *out)
{
    char err[ST_ERRLEN] = "";
    float *work = malloc(st_overlay_work(o) * sizeof *work);
    st_overlay_change c;
    int rc = st_overlay_prepare(o, r, work, &c, err);
    if (rc == 0 && c.kind && st_overlay_check(o, &c, err) == 1) {
        if (out) *out = c;
        st_overlay_commit(o, &c);
    } else {
        if (out) *out = c;
        st_overlay_discard(&c);
    }
    free(work);
    return rc;
}

/* The fold-in of a history, as the reference the overlay must equal. */
static void foldin(const uint32_t *seg, const float *r, uint32_t n, float *x)
{
    float *scratch = malloc(st_score_foldin_scratch(&M, n) * sizeof *scratch);
    st_score_foldin(&M, G, seg, r, n, x, scratch);
    free(scratch);
}

static double max_diff(const float *a, const float *b, uint32_t k)
{
    double d = 0;
    for (uint32_t i = 0; i < k; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

static void test_known_user(st_overlay *o)
{
    uint32_t k = M.k, n = M.segments;
    size_t len;
    const char *user = st_idmap_name(&M.user_ids, 7, &len);
    const char *seg = st_idmap_name(&M.segment_ids, 3, NULL);
    float *x = malloc(k * sizeof *x), *ref = malloc(k * sizeof *ref), *r = malloc(n * sizeof *r);
    uint32_t *hs = malloc(n * sizeof *hs), hn = 0, slot;
    ok(st_overlay_size(o) == 0 && st_overlay_find(o, user, len, x, NULL, NULL, NULL, NULL) == ST_OV_ABSENT,
       "an empty overlay: every user is the model's");
    uint64_t before = st_overlay_users(o);
    st_jrecord ev = event(user, seg, 2.0);
    st_overlay_change c;
    ok(apply(o, &ev, &c) == 0 && c.kind == ST_JREC_EVENT && c.existed && c.known_segment,
       "EVENT on a known user and segment is applied");
    ok(st_overlay_find(o, user, len, x, hs, r, &hn, &slot) == ST_OV_LIVE, "the user is live in the overlay");
    /* The reference: the model's history plus 2.0 on segment 3, folded in. */
    uint32_t hseg[512];
    float hr[512];
    uint32_t m = 0;
    int merged = 0;
    for (uint64_t q = M.hist_ptr[7]; q < M.hist_ptr[8]; q++) {
        hseg[m] = M.hist_idx[q];
        hr[m] = M.hist_val[q] + (M.hist_idx[q] == 3 ? 2.0f : 0.0f);
        merged |= M.hist_idx[q] == 3;
        m++;
    }
    if (!merged) {
        hseg[m] = 3;
        hr[m++] = 2.0f;
    }
    int hist_ok = hn == m;
    for (uint32_t i = 0; i < hn && hist_ok; i++) {
        int found = 0;
        for (uint32_t j = 0; j < m; j++) found |= hs[i] == hseg[j] && fabsf(r[i] - hr[j]) < 1e-6f;
        hist_ok = found;
    }
    ok(hist_ok, "its history is the model's plus the event's value");
    foldin(hs, r, hn, ref);
    ok(max_diff(x, ref, k) < 1e-6, "its vector is the fold-in of that history (max diff %.2g)", max_diff(x, ref, k));
    ok(fabsf(c.score - st_score_one(&M, Q, x, 3)) < 1e-5, "the change reports the new score for the segment");
    st_overlay_view v;
    memset(&v, 0, sizeof v);
    ok(st_overlay_snapshot(o, &v) == 0 && v.hidden && v.hidden[7] == 1 && v.n == 1 && v.lens[0] == len &&
           memcmp(v.ids[0], user, len) == 0 && max_diff(v.X, x, k) == 0,
       "a scan sees the model's row hidden and the user's new vector instead");
    ok(st_overlay_users(o) == before, "the user count is unchanged (one row hidden, one user live)");
    st_overlay_view_free(&v);
    free(x);
    free(ref);
    free(r);
    free(hs);
}

static void test_new_and_forgotten(st_overlay *o)
{
    uint32_t k = M.k;
    float *x = malloc(k * sizeof *x), *ref = malloc(k * sizeof *ref);
    const char *seg = st_idmap_name(&M.segment_ids, 5, NULL);
    uint64_t before = st_overlay_users(o);
    st_jrecord ev = event("newcomer", seg, 1.0);
    st_overlay_change c;
    ok(apply(o, &ev, &c) == 0 && c.kind == ST_JREC_EVENT && !c.existed, "EVENT on a user the model never saw");
    ok(st_overlay_find(o, "newcomer", 8, x, NULL, NULL, NULL, NULL) == ST_OV_LIVE, "gets a slot of its own");
    uint32_t s5 = 5;
    float r1 = (float)st_overlay_event_value(o, 1.0, NULL, 0, 1e12);
    foldin(&s5, &r1, 1, ref);
    ok(max_diff(x, ref, k) < 1e-6, "its vector is the fold-in of its one event");
    ok(st_overlay_users(o) == before + 1, "one more user in scans");
    size_t len;
    const char *user = st_idmap_name(&M.user_ids, 11, &len);
    st_jrecord fg = forget(user);
    ok(apply(o, &fg, &c) == 0 && c.kind == ST_JREC_FORGET && c.existed, "FORGET of a model user");
    ok(st_overlay_find(o, user, len, x, NULL, NULL, NULL, NULL) == ST_OV_FORGOTTEN, "the user is forgotten");
    ok(st_overlay_users(o) == before, "and gone from scans");
    st_jrecord again = event(user, seg, 1.0);
    uint32_t hs[8], hn = 0;
    float hr[8];
    ok(apply(o, &again, &c) == 0 && !c.existed && st_overlay_find(o, user, len, x, hs, hr, &hn, NULL) == ST_OV_LIVE &&
           hn == 1 && hs[0] == 5,
       "an EVENT after the FORGET starts a new history from nothing");
    st_jrecord unknown = event("someone", "no-such-segment", 1.0);
    ok(apply(o, &unknown, &c) == 0 && c.kind == 0 && !c.known_segment &&
           st_overlay_find(o, "someone", 7, x, NULL, NULL, NULL, NULL) == ST_OV_ABSENT,
       "an EVENT on a segment the model does not know changes nothing");
    free(x);
    free(ref);
}

static void test_conflict(st_overlay *o)
{
    char err[ST_ERRLEN] = "";
    const char *seg = st_idmap_name(&M.segment_ids, 2, NULL);
    st_jrecord a = event("racer", seg, 1.0), b = event("racer", seg, 3.0);
    float *w1 = malloc(st_overlay_work(o) * sizeof *w1), *w2 = malloc(st_overlay_work(o) * sizeof *w2);
    st_overlay_change c1, c2;
    ok(st_overlay_prepare(o, &a, w1, &c1, err) == 0 && st_overlay_prepare(o, &b, w2, &c2, err) == 0,
       "two changes of one user prepared at once");
    ok(st_overlay_check(o, &c1, err) == 1, "the first checks out");
    st_overlay_commit(o, &c1);
    ok(st_overlay_check(o, &c2, err) == 0, "the second, prepared from the state before, is refused");
    st_overlay_discard(&c2);
    free(w1);
    free(w2);
}

/* The same records replayed into a fresh overlay and solved once equal the
 * overlay they were committed into one by one. */
static void test_replay(void)
{
    char err[ST_ERRLEN] = "";
    st_overlay *a = st_overlay_new(&M, G, Q, err), *b = st_overlay_new(&M, G, Q, err);
    const char *s1 = st_idmap_name(&M.segment_ids, 1, NULL), *s9 = st_idmap_name(&M.segment_ids, 9, NULL);
    const char *u3 = st_idmap_name(&M.user_ids, 3, NULL), *u4 = st_idmap_name(&M.user_ids, 4, NULL);
    st_jrecord recs[] = {event(u3, s1, 1), event(u4, s9, 2), forget(u4), event("x", s9, 1), event(u3, s9, 0.5)};
    int good = a && b;
    for (size_t i = 0; i < sizeof recs / sizeof recs[0] && good; i++) {
        recs[i].seq = i + 1;
        good = apply(a, &recs[i], NULL) == 0 && st_overlay_replay(b, 99, &recs[i], err) == 0;
    }
    ok(good && st_overlay_solve(b, err) == 0, "five records committed into one overlay, replayed into another");
    float xa[64], xb[64];
    const char *who[] = {u3, u4, "x"};
    int same = 1;
    for (int i = 0; i < 3; i++) {
        int ka = st_overlay_find(a, who[i], strlen(who[i]), xa, NULL, NULL, NULL, NULL);
        int kb = st_overlay_find(b, who[i], strlen(who[i]), xb, NULL, NULL, NULL, NULL);
        same &= ka == kb && (ka != ST_OV_LIVE || max_diff(xa, xb, M.k) < 1e-6);
    }
    ok(same, "every user is in the same state with the same vector");
    st_overlay_stats st;
    st_overlay_get_stats(b, &st);
    ok(st.replayed == 5 && st.forgotten == 1 && st.live == 2, "replay's figures: 5 records, 1 forgotten, 2 live");
    st_overlay_free(a);
    st_overlay_free(b);
}

int main(void)
{
    const char *dir = tap_tmpdir();
    if (!ok(make_model(dir) == 0, "the test's model is made")) return tap_done();
    char err[ST_ERRLEN] = "";
    st_overlay *o = st_overlay_new(&M, G, Q, err);
    ok(o != NULL, "an overlay for it");
    test_known_user(o);
    test_new_and_forgotten(o);
    test_conflict(o);
    st_overlay_free(o);
    test_replay();
    st_model_free(&M);
    free(G);
    free(Q);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return tap_done();
}
