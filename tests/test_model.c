/* Tests of the model file: a save/load round trip, every kind of damage, and
 * crash-safety of saves (a process killed mid-save leaves the old model). */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "interactions.h"
#include "model.h"
#include "rng.h"
#include "score.h"
#include "tap.h"
#include <stddef.h>
#define XXH_INLINE_ALL /* as src/model.c includes it */
#include <xxhash.h>
#include "train.h"
#include "util.h"

/* What every test below works on, made once by main: a small model trained
 * and saved at path (bad is where damaged copies go), loaded back into m. */
static char path[512], bad[512];
static st_interactions x;
static st_trained t;
static st_model mm, m;
static long size;

static void make_data(st_interactions *out, uint32_t users, uint64_t seed)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    st_builder *b = st_builder_new(&w, err);
    st_rng r;
    st_rng_seed(&r, seed);
    char us[32], ss[32];
    for (uint32_t i = 0; i < users * 8; i++) {
        snprintf(us, sizeof us, "user-%u", i % users);
        snprintf(ss, sizeof ss, "seg-%u", (uint32_t)st_rng_below(&r, 50));
        st_event e = {.user = us, .user_len = strlen(us), .segment = ss, .segment_len = strlen(ss), .weight = 1};
        st_builder_add(b, &e, err);
    }
    st_builder_finish(b, out, err);
}

static long file_size(const char *file)
{
    FILE *f = fopen(file, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_damaged(const char *src, const char *dst, long offset, int xor_byte, long truncate_to)
{
    FILE *f = fopen(src, "rb");
    long n = file_size(src);
    char *buf = malloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    if (offset >= 0) buf[offset] ^= (char)xor_byte;
    f = fopen(dst, "wb");
    fwrite(buf, 1, (size_t)(truncate_to >= 0 ? truncate_to : n), f);
    fclose(f);
    free(buf);
}

/* Both loaders, mapped and read, refuse file with the same error. */
static void expect_load_error(const char *file, const char *fragment, const char *what)
{
    st_model lm;
    char err[ST_ERRLEN] = "", err2[ST_ERRLEN] = "";
    int rc = st_model_load(file, &lm, err);
    ok(rc != 0 && strstr(err, fragment) != NULL, "%s: '%s' (got: %s)", what, fragment, err);
    if (rc == 0) st_model_free(&lm);
    rc = st_model_read(file, &lm, err2);
    ok(rc != 0 && strcmp(err, err2) == 0, "%s: st_model_read says the same", what);
    if (rc == 0) st_model_free(&lm);
}

/* The round trip: what was saved loads back bit for bit. */
static void test_round_trip(void)
{
    char err[ST_ERRLEN] = "";
    ok(st_model_load(path, &m, err) == 0, "loaded (%s)", err);
    ok(m.users == x.users.count && m.segments == x.segments.count && m.k == 8, "dimensions");
    ok(memcmp(m.U, t.X, (size_t)m.users * 8 * 4) == 0, "user factors bit-exact");
    ok(memcmp(m.V, t.Y, (size_t)m.segments * 8 * 4) == 0, "segment factors bit-exact");
    ok(((uintptr_t)m.U % 64) == 0 && ((uintptr_t)m.V % 64) == 0, "factor blocks 64-byte aligned in the mapping");
    ok(m.h.seed == 99 && m.h.iterations == 3 && m.h.factors == 8, "seed and hyper-parameters recorded");
    ok(m.h.fingerprint == st_interactions_fingerprint(&x), "fingerprint recorded");
    ok(m.h.nnz == x.by_user.nnz && memcmp(m.hist_idx, x.by_user.indices, x.by_user.nnz * 4) == 0 &&
           memcmp(m.hist_val, x.by_user.data, x.by_user.nnz * 4) == 0,
       "history equals the training matrix");
    ok(m.loss[2] == t.loss[2], "loss history kept");
    ok(st_idmap_find(&m.user_ids, "user-17", 7) == st_idmap_find(&x.users, "user-17", 7), "user ids map alike");
    ok(st_idmap_find(&m.segment_ids, "seg-3", 5) == st_idmap_find(&x.segments, "seg-3", 5), "segment ids map alike");
    char val[64];
    ok(st_model_meta(&m, "note", val, sizeof val) == 0 && strcmp(val, "hello") == 0, "metadata readable");
    ok(st_model_meta(&m, "missing", val, sizeof val) != 0, "absent metadata key");
    size = file_size(path);
    ok(size % 64 == 0 && (uint64_t)size == m.h.file_bytes, "file size recorded and aligned");
}

/* Damage of every kind: a clear error naming the file and what to do. */
static void test_damage(void)
{
    char err[ST_ERRLEN] = "";
    expect_load_error("/nonexistent/x.model", "cannot open", "missing file");
    expect_load_error(tap_tmpdir(), "not a regular file", "a directory");
    long cuts[] = {0, 100, 255, 256, 300, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        copy_damaged(path, bad, -1, 0, cuts[i]);
        st_model mb;
        int rc = st_model_load(bad, &mb, err);
        ok(rc != 0 && (strstr(err, "truncated") || strstr(err, "damaged")) && strstr(err, "re-train"),
           "truncated to %ld bytes: %s", cuts[i], err);
    }
    copy_damaged(path, bad, 0, 'x', -1);
    expect_load_error(bad, "not a starling model", "bad magic");
    {
        /* A valid header of another version: says which, and what to do. */
        st_model_header h;
        FILE *f = fopen(path, "rb");
        if (fread(&h, sizeof h, 1, f) != 1) exit(2);
        fclose(f);
        copy_damaged(path, bad, -1, 0, -1);
        h.version = 99;
        f = fopen(bad, "r+b");
        fwrite(&h, sizeof h, 1, f);
        fclose(f);
        expect_load_error(bad, "format version 99", "wrong version");
        expect_load_error(bad, "re-train", "wrong version hint");
    }
    copy_damaged(path, bad, 30, 1, -1);
    expect_load_error(bad, "header checksum mismatch", "flipped header byte");
}

/* The prior's shape: a model with the linear prior is written as format
 * version 4 and loads back with it, its q is popularity / max popularity (the
 * log one otherwise, both against a naive double computation); a header with
 * a flag this version does not know, or the linear flag in an older version,
 * is refused. */
static void test_prior_shape(void)
{
    char err[ST_ERRLEN] = "", lin[600];
    snprintf(lin, sizeof lin, "%s/linear.model", tap_tmpdir());
    st_model ml = mm;
    ml.h.flags |= ST_MODEL_PRIOR_LINEAR;
    ok(st_model_save(lin, &ml, err) == 0, "a linear-prior model saves (%s)", err);
    st_model l;
    ok(st_model_load(lin, &l, err) == 0 && l.h.version == 4 && (l.h.flags & ST_MODEL_PRIOR_LINEAR),
       "it loads back as format version 4 with the flag (%s)", err);
    ok(m.h.version == STARLING_FORMAT_UNIFORM && !(m.h.flags & ST_MODEL_PRIOR_LINEAR),
       "a log-prior model stays version 2, which older starlings read");
    uint32_t n = l.segments;
    float *q = malloc(n * sizeof *q), *q2 = malloc(n * sizeof *q2);
    double top = 0;
    for (uint32_t s = 0; s < n; s++) top = l.popularity[s] > top ? l.popularity[s] : top;
    st_score_prior(&l, q);
    st_score_prior_shape(&l, 0, q2);
    int lin_ok = 1, log_ok = 1;
    for (uint32_t s = 0; s < n; s++) {
        lin_ok &= q[s] == (float)(l.popularity[s] / top);
        log_ok &= q2[s] == (float)(log1p(l.popularity[s]) / log1p(top));
    }
    ok(top > 1 && lin_ok, "the linear prior is popularity / max popularity, to the bit");
    ok(log_ok, "the log prior of the same model, asked for, is log(1 + pop) / log(1 + max pop), to the bit");
    st_score_prior(&m, q2);
    ok(memcmp(q, q2, n * sizeof *q) != 0, "the two shapes differ");
    ok(st_score_prior_of(2 * top, top, 1) == 1.0f && st_score_prior_of(2 * top, top, 0) == 1.0f &&
           st_score_prior_of(top / 2, top, 1) == (float)0.5,
       "a segment beyond the model's largest popularity (one created online) has q at most 1");
    free(q);
    free(q2);
    st_model_free(&l);
    /* Flags the version does not have, in files that are otherwise whole
     * (their header checksums right): an unknown bit, saved as any model is;
     * the linear bit in a version 2 header, checksum recomputed. */
    ml.h.flags = mm.h.flags | 8u;
    ok(st_model_save(bad, &ml, err) == 0, "a model with an unknown flag bit saves (%s)", err);
    expect_load_error(bad, "flags 0x8 are not ones format version 2 has", "an unknown flag");
    copy_damaged(path, bad, -1, 0, -1);
    FILE *f = fopen(bad, "r+b");
    unsigned char head[256 + 64 * sizeof(st_section)];
    if (fread(head, 1, sizeof head, f) != sizeof head) exit(2);
    st_model_header h;
    memcpy(&h, head, sizeof h);
    h.flags |= ST_MODEL_PRIOR_LINEAR;
    memcpy(head, &h, sizeof h);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, head, offsetof(st_model_header, header_checksum));
    XXH3_64bits_update(&st, head + sizeof h, (size_t)h.nsections * sizeof(st_section));
    h.header_checksum = XXH3_64bits_digest(&st);
    rewind(f);
    fwrite(&h, sizeof h, 1, f);
    fclose(f);
    expect_load_error(bad, "flags 0x4 are not ones format version 2 has", "the linear flag in a version 2 file");
}

/* st_model_read: the same model as the mapping, in memory of its own, which
 * nothing done to the file afterwards reaches. */
static void test_read_owned(void)
{
    char err[ST_ERRLEN] = "";
    copy_damaged(path, bad, -1, 0, -1);
    st_model r;
    ok(st_model_read(bad, &r, err) == 0 && r.map_owned == 1, "st_model_read loads (%s)", err);
    ok(r.users == m.users && r.segments == m.segments && r.k == m.k &&
           memcmp(r.U, m.U, (size_t)m.users * m.k * 4) == 0 && memcmp(r.V, m.V, (size_t)m.segments * m.k * 4) == 0 &&
           memcmp(r.hist_idx, m.hist_idx, m.h.nnz * 4) == 0 && memcmp(r.hist_val, m.hist_val, m.h.nnz * 4) == 0,
       "st_model_read: the same factors and history as the mapping");
    ok(((uintptr_t)r.U % 64) == 0 && ((uintptr_t)r.V % 64) == 0 && r.U != m.U, "its own copy, 64-byte aligned");
    float u0 = r.U[0], vlast = r.V[(size_t)r.segments * r.k - 1];
    FILE *f = fopen(bad, "r+b");
    char junk[4096];
    memset(junk, 0x55, sizeof junk);
    for (long i = 0; i < size; i += (long)sizeof junk) fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    if (truncate(bad, size / 3) != 0) exit(2);
    ok(r.U[0] == u0 && r.V[(size_t)r.segments * r.k - 1] == vlast &&
           memcmp(r.U, m.U, (size_t)m.users * m.k * 4) == 0 && st_idmap_find(&r.user_ids, "user-17", 7) ==
           st_idmap_find(&m.user_ids, "user-17", 7),
       "the file overwritten in place and truncated: the read model is unchanged");
    st_model_free(&r);
    ok(r.map == NULL, "st_model_free releases it");
    copy_damaged(path, bad, -1, 0, -1);
    for (long n = 1; n <= 2; n++) {
        st_alloc_fail_at(n);
        int rc = st_model_read(bad, &r, err);
        st_alloc_fail_at(0);
        if (rc == 0) st_model_free(&r);
        ok(n > 1 ? rc == 0 : rc != 0 && strstr(err, "out of memory") != NULL, "allocation %ld fails: %s", n,
           rc ? err : "loaded");
    }
}

/* One flipped byte in each section. */
static void test_section_damage(void)
{
    for (uint32_t i = 0; i < m.h.nsections; i++) {
        st_section s;
        FILE *f = fopen(path, "rb");
        fseek(f, (long)(sizeof(st_model_header) + i * sizeof s), SEEK_SET);
        if (fread(&s, sizeof s, 1, f) != 1) exit(2);
        fclose(f);
        if (s.bytes == 0) continue;
        copy_damaged(path, bad, (long)(s.offset + s.bytes / 2), 0x10, -1);
        char want[64];
        snprintf(want, sizeof want, "section %.4s checksum mismatch", s.tag);
        expect_load_error(bad, want, "flipped byte in a section");
    }
}

/* Random garbage of model size never crashes the loader. */
static void test_random_garbage(void)
{
    char err[ST_ERRLEN] = "";
    st_rng r;
    st_rng_seed(&r, 5);
    int fine = 1;
    for (int trial = 0; trial < 200; trial++) {
        copy_damaged(path, bad, (long)st_rng_below(&r, (uint64_t)size), 1 + (int)st_rng_below(&r, 255), -1);
        st_model mb;
        if (st_model_load(bad, &mb, err) == 0) {
            fine = 0; /* every single-byte change must be detected */
            st_model_free(&mb);
        }
    }
    ok(fine, "200 random single-byte changes are all detected");
}

/* A crash mid-save leaves the old model or the new one, never a mix. */
static void test_crash_mid_save(void)
{
    char err[ST_ERRLEN] = "";
    st_trained t2;
    memset(&t2, 0, sizeof t2);
    st_interactions big;
    make_data(&big, 20000, 2);
    t2.params = t.params;
    t2.params.factors = 64;
    t2.params.iterations = 1;
    st_train_run(&big, &t2, NULL, err);
    float *pop2 = malloc(big.segments.count * sizeof *pop2);
    st_model m2;
    st_train_model(&big, &t2, NULL, pop2, &m2);
    int always_whole = 1, saw_old = 0;
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;) st_model_save(path, &m2, err);
        }
        usleep(2000 + 3000 * (useconds_t)round);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        st_model lm;
        if (st_model_load(path, &lm, err) != 0) {
            always_whole = 0;
            printf("# after kill %d: %s\n", round, err);
            continue;
        }
        if (lm.users == x.users.count) saw_old++;
        else if (lm.users != big.users.count) always_whole = 0;
        st_model_free(&lm);
    }
    ok(always_whole, "12 saves killed mid-write: the file always loads whole (%d still the old one)", saw_old);
    free(pop2);
    st_trained_free(&t2);
    st_interactions_free(&big);
}

/* Saving into a missing directory fails cleanly and names the path. */
static void test_unwritable(void)
{
    char err[ST_ERRLEN] = "";
    ok(st_model_save("/nonexistent/dir/m.model", &mm, err) != 0 && strstr(err, "/nonexistent/dir/m.model"),
       "unwritable path: %s", err);
}

int main(void)
{
    char err[ST_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/m.model", tap_tmpdir());
    snprintf(bad, sizeof bad, "%s/bad.model", tap_tmpdir());
    make_data(&x, 200, 1);
    memset(&t, 0, sizeof t);
    st_als_params_default(&t.params);
    t.params.factors = 8;
    t.params.iterations = 3;
    t.params.seed = 99;
    ok(st_train_run(&x, &t, NULL, err) == 0, "trained");
    float *pop = malloc(x.segments.count * sizeof *pop);
    st_train_model(&x, &t, "inputs=test\nnote=hello\n", pop, &mm);
    ok(st_model_save(path, &mm, err) == 0, "saved (%s)", err);
    test_round_trip();
    test_damage();
    test_prior_shape();
    test_read_owned();
    test_section_damage();
    test_random_garbage();
    test_crash_mid_save();
    test_unwritable();

    st_model_free(&m);
    free(pop);
    st_trained_free(&t);
    st_interactions_free(&x);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tap_tmpdir());
    if (system(cmd) != 0) return 1;
    return tap_done();
}
