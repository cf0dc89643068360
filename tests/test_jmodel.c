/* Tests of a model beside its journal (jinput.h: st_jmodel, st_jinput_erase),
 * on a small model and a journal written here with st_journal_append:
 *   - replay: a forgotten user is unknown; a user with an EVENT is online,
 *     with the vector st_score_foldin gives the model's history plus the
 *     event's value (computed here, independently of the overlay); a new
 *     user is online; a user forgotten and then back starts from nothing;
 *   - scans: the rows of changed and forgotten users are NaN, the online
 *     users follow the model's rows with st_score_one of their vectors,
 *     every other row is the model's own score;
 *   - a torn last record is left out and the file left as it was; a check
 *     that refuses a record stops the replay with its message;
 *   - erasure: the model less the forgotten users keeps every other row,
 *     id and history as they were (float and int8 factors), and saves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jinput.h"
#include "journal.h"
#include "score.h"
#include "small_model.h"
#include "tap.h"
#include "util.h"

static st_model M;
static char jpath[512];
static const char *known, *gone, *back, *seg;

static st_jrecord rec(int type, const char *user, const char *segment, double w)
{
    return (st_jrecord){.type = type, .user = user, .user_len = (uint32_t)strlen(user), .segment = segment,
                        .segment_len = segment ? (uint32_t)strlen(segment) : 0, .weight = w, .ts = 1e12};
}

static int write_journal(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j = st_journal_open(jpath, ST_APPENDFSYNC_NO, NULL, NULL, &info, err);
    if (!j) return -1;
    st_jrecord r[] = {rec(ST_JREC_EVENT, known, seg, 2.0), rec(ST_JREC_EVENT, "newcomer", seg, 1.0),
                      rec(ST_JREC_FORGET, gone, NULL, 0), rec(ST_JREC_FORGET, back, NULL, 0),
                      rec(ST_JREC_EVENT, back, seg, 3.0)};
    int good = 1;
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) good &= st_journal_append(j, &r[i], err) == 0;
    return st_journal_close(j, err) == 0 && good ? 0 : -1;
}

static double max_diff(const float *a, const float *b, uint32_t k)
{
    double d = 0;
    for (uint32_t i = 0; i < k; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* The reference vector of user row u after one event of value v on segment s. */
static void reference(const st_jmodel *jm, uint32_t u, uint32_t s, double v, float *x)
{
    uint32_t n = 0, hs[128];
    float hr[128];
    int merged = 0;
    for (uint64_t q = M.hist_ptr[u]; q < M.hist_ptr[u + 1] && n < 127; q++, n++) {
        hs[n] = M.hist_idx[q];
        hr[n] = M.hist_idx[q] == s ? (float)((double)M.hist_val[q] + v) : M.hist_val[q];
        merged |= M.hist_idx[q] == s;
    }
    if (!merged) {
        uint32_t at = 0;
        while (at < n && hs[at] < s) at++;
        memmove(hs + at + 1, hs + at, (n - at) * sizeof *hs);
        memmove(hr + at + 1, hr + at, (n - at) * sizeof *hr);
        hs[at] = s;
        hr[at] = (float)v;
        n++;
    }
    float *scratch = malloc(st_score_foldin_scratch(&M, n) * sizeof *scratch);
    st_score_foldin(&M, jm->G, hs, hr, n, x, scratch);
    free(scratch);
}

static void test_replay(void)
{
    char err[ST_ERRLEN] = "";
    st_jmodel jm;
    st_jinput_use use;
    ok(st_jmodel_load(jpath, &jm, err) != 0, "a journal is not a model (%s)", err);
    st_jmodel_free(&jm);
    char mpath[600];
    snprintf(mpath, sizeof mpath, "%s/m.model", tap_tmpdir());
    int rc = st_jmodel_load(mpath, &jm, err) == 0 ? st_jmodel_replay(&jm, jpath, NULL, NULL, &use, err) : -1;
    if (!ok(rc == 0, "model loaded and journal replayed (%s)", rc == 0 ? "ok" : err)) {
        st_jmodel_free(&jm);
        return;
    }
    is_int(use.events, 3, "three EVENTs read");
    is_int(use.forgotten, 2, "two users forgotten (one came back later)");
    uint32_t k = M.k, s = st_idmap_find(&M.segment_ids, seg, strlen(seg));
    uint32_t ku = st_idmap_find(&M.user_ids, known, strlen(known)), gu = st_idmap_find(&M.user_ids, gone, strlen(gone));
    uint32_t bu = st_idmap_find(&M.user_ids, back, strlen(back));
    st_juser u;
    st_jmodel_user(&jm, gone, strlen(gone), &u);
    ok(!u.known && u.forgotten && u.pos == UINT64_MAX, "the forgotten user is unknown");
    float ref[64], x[64];
    double value = st_overlay_event_value(jm.ov, 2.0, NULL, 0, 1e12);
    reference(&jm, ku, s, value, ref);
    st_jmodel_user(&jm, known, strlen(known), &u);
    ok(u.known && u.pos >= M.users && max_diff(u.x, ref, k) < 1e-6,
       "a user with an EVENT is online, with the fold-in of the model's history plus the event (max diff %.2g)",
       u.known ? max_diff(u.x, ref, k) : -1.0);
    memcpy(x, u.x, k * sizeof *x);
    uint64_t known_pos = u.pos;
    st_jmodel_user(&jm, "newcomer", 8, &u);
    ok(u.known && u.pos >= M.users && u.hist_n == 1 && u.hist_seg[0] == s, "a new user is online with its one event");
    st_jmodel_user(&jm, back, strlen(back), &u);
    ok(u.known && u.pos >= M.users && u.hist_n == 1, "a user forgotten and back has only the later event");
    uint64_t rows = st_jmodel_rows(&jm);
    is_int(rows, M.users + 3, "a scan covers the model's rows and three online users");
    float *out = malloc(rows * sizeof *out);
    st_jmodel_segment_scores(&jm, s, out);
    ok(isnan(out[ku]) && isnan(out[gu]) && isnan(out[bu]), "the rows of changed and forgotten users are hidden");
    float xb[64];
    ok(out[0] == st_score_one(&M, jm.prior, st_model_user(&M, 0, xb), s), "row 0, untouched, scores as the model");
    ok(fabsf(out[known_pos] - st_score_one(&M, jm.prior, x, s)) == 0 &&
           strcmp(st_jmodel_row_name(&jm, known_pos), known) == 0,
       "the online user's place holds their new score and their id");
    free(out);
    st_jmodel_free(&jm);
}

static int refuse(const st_jrecord *r, void *ctx, char *err)
{
    (void)ctx;
    if (r->type != ST_JREC_FORGET) return 0;
    return st_seterr(err, "refused a FORGET");
}

static void test_torn_and_check(void)
{
    char err[ST_ERRLEN], torn[600], mpath[600];
    snprintf(torn, sizeof torn, "%s/torn.journal", tap_tmpdir());
    snprintf(mpath, sizeof mpath, "%s/m.model", tap_tmpdir());
    FILE *in = fopen(jpath, "rb"), *out = fopen(torn, "wb");
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n, out);
    fwrite("\x10\x20\x30\x40\x40\x00\x00\x00\x01\x02", 1, 10, out); /* the first bytes of a record */
    fclose(in);
    fclose(out);
    st_jmodel jm;
    st_jinput_use use;
    int rc = st_jmodel_load(mpath, &jm, err) == 0 ? st_jmodel_replay(&jm, torn, NULL, NULL, &use, err) : -1;
    struct stat sb;
    ok(rc == 0 && use.torn_bytes == 10 && use.events == 3, "a torn last record is left out, the rest replayed");
    ok(stat(torn, &sb) == 0 && (size_t)sb.st_size == n + 10, "and the file is left as it was");
    st_jmodel_free(&jm);
    rc = st_jmodel_load(mpath, &jm, err) == 0 ? st_jmodel_replay(&jm, jpath, refuse, NULL, &use, err) : 0;
    ok(rc == -1 && strstr(err, "refused a FORGET"), "a check that refuses stops the replay (%s)", err);
    st_jmodel_free(&jm);
}

/* Every row of e is src's row of the same id, with the same history. */
static int rows_kept(const st_model *src, const st_model *e)
{
    float a[64], b[64];
    for (uint32_t r = 0; r < e->users; r++) {
        size_t len;
        const char *id = st_idmap_name(&e->user_ids, r, &len);
        uint32_t u = st_idmap_find(&src->user_ids, id, len);
        if (u == ST_NOT_FOUND || max_diff(st_model_user(src, u, a), st_model_user(e, r, b), src->k) != 0) return 0;
        uint64_t n = src->hist_ptr[u + 1] - src->hist_ptr[u];
        if (e->hist_ptr[r + 1] - e->hist_ptr[r] != n ||
            memcmp(e->hist_idx + e->hist_ptr[r], src->hist_idx + src->hist_ptr[u], n * sizeof *e->hist_idx) ||
            memcmp(e->hist_val + e->hist_ptr[r], src->hist_val + src->hist_ptr[u], n * sizeof *e->hist_val))
            return 0;
    }
    return 1;
}

static void test_erase(void)
{
    char err[ST_ERRLEN], path[600];
    st_forgotten f;
    st_jerased e;
    ok(st_jinput_forgotten(jpath, &f, NULL, err) == 0, "the journal's forgotten set");
    ok(st_jinput_erase(&M, &f, &e, err) == 0, "the model less the users it forgot");
    is_int(e.dropped, 2, "both users the journal ever forgot are left out");
    ok(e.m.users == M.users - 2 && st_idmap_find(&e.m.user_ids, gone, strlen(gone)) == ST_NOT_FOUND &&
           st_idmap_find(&e.m.user_ids, back, strlen(back)) == ST_NOT_FOUND,
       "their ids are gone");
    ok(rows_kept(&M, &e.m), "every other row, id and history is the model's");
    snprintf(path, sizeof path, "%s/erased.model", tap_tmpdir());
    st_model saved;
    ok(st_model_save(path, &e.m, err) == 0 && st_model_load(path, &saved, err) == 0 && saved.users == M.users - 2 &&
           rows_kept(&M, &saved),
       "it saves and loads back the same");
    st_model_free(&saved);
    st_jerased_free(&e);
    /* The same over int8 user factors. */
    int8_t *q = malloc((size_t)M.users * M.k);
    float *scale = malloc(M.users * sizeof *scale);
    st_model_quantize(M.U, M.users, M.k, q, scale);
    st_model qm = M;
    qm.U = NULL;
    qm.Uq = q;
    qm.Uscale = scale;
    ok(st_jinput_erase(&qm, &f, &e, err) == 0 && e.m.Uq && !e.m.U && e.m.users == M.users - 2 && rows_kept(&qm, &e.m),
       "int8 factors: the same rows kept, with their scales");
    st_jerased_free(&e);
    free(q);
    free(scale);
    st_jinput_forgotten_free(&f);
}

int main(void)
{
    const char *dir = tap_tmpdir();
    if (!ok(small_model(dir, &M) == 0, "the test's model is made")) return tap_done();
    known = st_idmap_name(&M.user_ids, 7, NULL);
    gone = st_idmap_name(&M.user_ids, 11, NULL);
    back = st_idmap_name(&M.user_ids, 13, NULL);
    seg = st_idmap_name(&M.segment_ids, 3, NULL);
    snprintf(jpath, sizeof jpath, "%s/j.journal", dir);
    if (!ok(write_journal() == 0, "a journal of five records written")) return tap_done();
    test_replay();
    test_torn_and_check();
    test_erase();
    st_model_free(&M);
    return tap_done();
}
