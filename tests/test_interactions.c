/* Tests of the interaction matrix: aggregation, kind weights, time decay,
 * compaction under many events, and the CSR/CSC pair, against hand and
 * brute-force computations. */
#include "interactions.h"
#include "rng.h"
#include "tap.h"
#include "util.h"

static st_event ev(const char *u, const char *s, double w, const char *kind, double ts)
{
    st_event e;
    memset(&e, 0, sizeof e);
    e.user = u;
    e.user_len = strlen(u);
    e.segment = s;
    e.segment_len = strlen(s);
    e.weight = w;
    e.kind = kind;
    e.kind_len = kind ? strlen(kind) : 0;
    e.ts = ts;
    e.has_ts = ts >= 0;
    e.file = "test";
    e.line = 7;
    return e;
}

/* Value of (user, segment) in x, -1 when absent. */
static double value(const st_interactions *x, const char *u, const char *s)
{
    uint32_t ui = st_idmap_find(&x->users, u, strlen(u)), si = st_idmap_find(&x->segments, s, strlen(s));
    if (ui == ST_NOT_FOUND || si == ST_NOT_FOUND) return -1;
    for (uint64_t q = x->by_user.indptr[ui]; q < x->by_user.indptr[ui + 1]; q++)
        if (x->by_user.indices[q] == si) return x->by_user.data[q];
    return -1;
}

/* Kind weights. */
static void test_kind_weights(void)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    ok(st_weighting_parse_kinds(&w, "click=1,conversion=20,*=0.5", err) == 0, "kind weights parse");
    is_near(st_weighting_kind(&w, "conversion", 10), 20, 0, "conversion weight");
    is_near(st_weighting_kind(&w, "impression", 10), 0.5, 0, "other kinds get *");
    is_near(st_weighting_kind(&w, NULL, 0), 0.5, 0, "no kind gets *");
    ok(st_weighting_parse_kinds(&w, "click", err) != 0 && strstr(err, "KIND=WEIGHT"), "missing = rejected");
    ok(st_weighting_parse_kinds(&w, "click=x", err) != 0, "bad weight rejected");
    ok(st_weighting_parse_kinds(&w, "click=-1", err) != 0, "negative weight rejected");
    st_weighting_free(&w);
}

/* Aggregation with kind weights, by hand. */
static uint64_t test_aggregation(void)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    st_weighting_parse_kinds(&w, "click=2,conversion=10", err);
    st_builder *b = st_builder_new(&w, err);
    st_event e;
    e = ev("u1", "s1", 1, "click", -1), st_builder_add(b, &e, err);
    e = ev("u1", "s1", 3, "conversion", -1), st_builder_add(b, &e, err);
    e = ev("u1", "s2", 1, "other", -1), st_builder_add(b, &e, err);
    e = ev("u2", "s2", 0, "click", -1), st_builder_add(b, &e, err);
    e = ev("u3", "s1", 0.5, NULL, -1), st_builder_add(b, &e, err);
    st_interactions x;
    ok(st_builder_finish(b, &x, err) == 0, "finish");
    is_near(value(&x, "u1", "s1"), 1 * 2 + 3 * 10, 1e-6, "duplicates summed with kind weights: 1x2 + 3x10");
    is_near(value(&x, "u1", "s2"), 1, 0, "unlisted kind weighs 1");
    is_near(value(&x, "u2", "s2"), -1, 0, "zero-valued pair dropped");
    is_near(value(&x, "u3", "s1"), 0.5, 0, "no kind weighs 1");
    is_int(x.by_user.nnz, 3, "three nonzeros");
    is_int(x.users.count, 3, "u2 is still a user (with no interactions)");
    is_int(x.events, 5, "five events accepted");
    /* CSC is the transpose. */
    uint32_t s1 = st_idmap_find(&x.segments, "s1", 2);
    is_int(x.by_segment.indptr[s1 + 1] - x.by_segment.indptr[s1], 2, "s1 has two users in the CSC");
    uint64_t fp = st_interactions_fingerprint(&x);
    st_interactions_free(&x);
    st_weighting_free(&w);
    return fp;
}

/* Decay relative to --now: one half-life old weighs 1/2; future events weigh 1. */
static void test_decay_now(void)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_builder *b;
    st_event e;
    st_interactions x;
    st_weighting_default(&w);
    w.half_life = 100;
    w.now = 1000;
    w.has_now = 1;
    b = st_builder_new(&w, err);
    e = ev("u", "old", 1, NULL, 900), st_builder_add(b, &e, err);
    e = ev("u", "older", 1, NULL, 800), st_builder_add(b, &e, err);
    e = ev("u", "future", 1, NULL, 1100), st_builder_add(b, &e, err);
    st_builder_finish(b, &x, err);
    is_near(value(&x, "u", "old"), 0.5, 1e-7, "one half-life: 0.5");
    is_near(value(&x, "u", "older"), 0.25, 1e-7, "two half-lives: 0.25");
    is_near(value(&x, "u", "future"), 1, 1e-7, "future events are not boosted");
    st_interactions_free(&x);
}

/* Decay relative to the newest event, across the rescaling of the
 * reference (events 80 half-lives apart, in increasing time). */
static void test_decay_newest(void)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_builder *b;
    st_event e;
    st_interactions x;
    st_weighting_default(&w);
    w.half_life = 1;
    b = st_builder_new(&w, err);
    for (int t = 0; t <= 80; t++) {
        e = ev("u", "a", 1, NULL, t), st_builder_add(b, &e, err);
    }
    e = ev("u", "b", 1, NULL, 79), st_builder_add(b, &e, err);
    e = ev("u", "b", 3, NULL, 78), st_builder_add(b, &e, err);
    st_builder_finish(b, &x, err);
    double expect_a = 0;
    for (int t = 0; t <= 80; t++) expect_a += exp2(-(80 - t));
    is_near(value(&x, "u", "a"), expect_a, 1e-6, "sum of 2^-(80-t) over t = 0..80");
    is_near(value(&x, "u", "b"), 0.5 + 3 * 0.25, 1e-6, "1 x 2^-1 + 3 x 2^-2");
    st_interactions_free(&x);

    /* Missing timestamp with decay on names the line. */
    b = st_builder_new(&w, err);
    e = ev("u", "a", 1, NULL, -1);
    ok(st_builder_add(b, &e, err) != 0 && strstr(err, "test:7: no timestamp"), "missing timestamp: %s", err);
    st_builder_free(b);
}

/* Many events: compaction and growth against a dense brute force. */
static void test_many_events(uint64_t fp)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_builder *b;
    st_event e;
    st_interactions x;
    st_weighting_default(&w);
    b = st_builder_new(&w, err);
    enum { U = 300, S = 500, N = 400000 };
    double *dense = calloc((size_t)U * S, sizeof *dense);
    st_rng r;
    st_rng_seed(&r, 3);
    char us[16], ss[16];
    int added_ok = 1;
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)st_rng_below(&r, U), s = (uint32_t)st_rng_below(&r, S);
        double wt = (double)st_rng_below(&r, 4); /* zeros included */
        snprintf(us, sizeof us, "u%u", u);
        snprintf(ss, sizeof ss, "s%u", s);
        e = ev(us, ss, wt, NULL, -1);
        if (st_builder_add(b, &e, err) != 0) added_ok = 0;
        dense[(size_t)u * S + s] += wt;
    }
    ok(added_ok, "400000 events added");
    ok(st_builder_finish(b, &x, err) == 0, "finish many");
    uint64_t nnz = 0;
    int match = 1;
    for (uint32_t u = 0; u < U; u++) {
        for (uint32_t s = 0; s < S; s++) {
            if (dense[(size_t)u * S + s] <= 0) continue;
            nnz++;
            snprintf(us, sizeof us, "u%u", u);
            snprintf(ss, sizeof ss, "s%u", s);
            if (fabs(value(&x, us, ss) - dense[(size_t)u * S + s]) > 1e-3) match = 0;
        }
    }
    is_int(x.by_user.nnz, nnz, "nonzero count equals the brute force");
    ok(match, "every value equals the brute-force sum");
    int sorted = 1;
    for (uint32_t u = 0; u < x.by_user.rows; u++)
        for (uint64_t q = x.by_user.indptr[u] + 1; q < x.by_user.indptr[u + 1]; q++)
            if (x.by_user.indices[q - 1] >= x.by_user.indices[q]) sorted = 0;
    ok(sorted, "indices strictly increasing within every row");
    /* CSC entries are exactly the CSR's nonzeros, users ascending. */
    int same = 1;
    uint64_t count = 0;
    for (uint32_t s = 0; s < x.by_segment.rows; s++)
        for (uint64_t q = x.by_segment.indptr[s]; q < x.by_segment.indptr[s + 1]; q++) {
            uint32_t u = x.by_segment.indices[q];
            const char *un = st_idmap_name(&x.users, u, NULL), *sn = st_idmap_name(&x.segments, s, NULL);
            if (value(&x, un, sn) <= 0) same = 0;
            if (q > x.by_segment.indptr[s] && x.by_segment.indices[q - 1] >= u) same = 0;
            count++;
        }
    ok(same && count == x.by_user.nnz && x.by_segment.data == NULL,
       "CSC is exactly the structure of the transpose (no values)");
    ok(st_interactions_fingerprint(&x) != fp, "different data, different fingerprint");
    st_interactions_free(&x);
    free(dense);
}

/* Only zero weights: an error, not an empty matrix. */
static void test_all_zero(void)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    st_builder *b = st_builder_new(&w, err);
    st_event e = ev("u", "a", 0, NULL, -1);
    st_builder_add(b, &e, err);
    st_interactions x;
    ok(st_builder_finish(b, &x, err) != 0 && strstr(err, "zero weight"), "all-zero input: %s", err);
}

/* Out-of-memory on every allocation of a small build: clean errors. */
static void test_out_of_memory(void)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    st_builder *b;
    st_event e;
    st_interactions x;
    char us[16], ss[16];
    int clean = 1;
    for (long n = 1; n < 40; n++) {
        st_alloc_fail_at(n);
        b = st_builder_new(&w, err);
        int rc = b ? 0 : -1;
        for (int i = 0; rc == 0 && i < 50; i++) {
            snprintf(us, sizeof us, "u%d", i % 7);
            snprintf(ss, sizeof ss, "s%d", i % 11);
            e = ev(us, ss, 1, NULL, -1);
            rc = st_builder_add(b, &e, err);
        }
        if (rc == 0) {
            rc = st_builder_finish(b, &x, err);
            if (rc == 0) st_interactions_free(&x);
        } else {
            st_builder_free(b);
        }
        if (rc != 0 && !strstr(err, "out of memory")) clean = 0;
    }
    st_alloc_fail_at(0);
    ok(clean, "every failed allocation gives an out-of-memory error");
}

int main(void)
{
    test_kind_weights();
    uint64_t fp = test_aggregation();
    test_decay_now();
    test_decay_newest();
    test_many_events(fp);
    test_all_zero();
    test_out_of_memory();
    return tap_done();
}
