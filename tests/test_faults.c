/* Fault injection, SQLite style: make the n-th allocation fail for n = 1, 2,
 * ... over reading events, building the matrix, training set-up and saving;
 * make writes fail (a full disk) at every point of a model save. Every time:
 * a clean error, no crash, no leak (under make asan), and the model file on
 * disk either the old one or the new one, never a mix, with no temp file
 * left behind. */
#include <dirent.h>

#include "interactions.h"
#include "interop.h"
#include "model.h"
#include "tap.h"
#include "train.h"
#include "util.h"

static const char *write_events(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/ev.csv", tap_tmpdir());
    FILE *f = fopen(path, "w");
    fprintf(f, "user,segment,weight,kind,timestamp\n");
    for (int i = 0; i < 400; i++) fprintf(f, "u%d,s%d,%d,click,%d\n", i % 37, (i * 7) % 23, 1 + i % 5, 1700000000 + i);
    fclose(f);
    return path;
}

static int temp_files_left(void)
{
    DIR *d = opendir(tap_tmpdir());
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

/* What the tests below share, each made by the one before: the interactions
 * read, the model trained on them, and that model as saved and loaded. */
static st_interactions x;
static st_trained t;
static st_model old;

/* Reading and building: every allocation, until one run succeeds. */
static void test_read(void)
{
    char err[ST_ERRLEN] = "";
    const char *ev = write_events();
    char *paths[1] = {(char *)ev};
    st_read_opts o;
    st_read_opts_default(&o);
    st_weighting w;
    st_weighting_default(&w);
    st_weighting_parse_kinds(&w, "click=2", err);
    w.half_life = 3600;
    int clean = 1, n;
    for (n = 1; n < 10000; n++) {
        st_read_stats st;
        memset(&st, 0, sizeof st);
        err[0] = '\0';
        st_alloc_fail_at(n);
        int rc = st_interactions_read(paths, 1, &o, &w, &x, &st, err);
        st_alloc_fail_at(0);
        if (rc == 0) break;
        if (!strstr(err, "out of memory")) {
            clean = 0;
            printf("# allocation %d: %s\n", n, err);
        }
    }
    ok(clean && n > 5, "reading events: each of the first %d allocations failing gives 'out of memory'", n - 1);
    ok(x.by_user.nnz > 0, "and the run after them succeeds");
    st_weighting_free(&w);
}

/* Training set-up and iterations. */
static void test_train(void)
{
    char err[ST_ERRLEN] = "";
    int clean = 1, n;
    for (n = 1; n < 10000; n++) {
        memset(&t, 0, sizeof t);
        st_als_params_default(&t.params);
        t.params.factors = 8;
        t.params.iterations = 2;
        t.params.threads = 2;
        err[0] = '\0';
        st_alloc_fail_at(n);
        int rc = st_train_run(&x, &t, NULL, err);
        st_alloc_fail_at(0);
        if (rc == 0) break;
        if (!strstr(err, "out of memory")) {
            clean = 0;
            printf("# allocation %d: %s\n", n, err);
        }
        st_trained_free(&t);
    }
    ok(clean && n > 3, "training: each of the first %d allocations failing gives 'out of memory'", n - 1);
}

/* Saving: allocation failures, then a full disk at every point. */
static void test_save(void)
{
    char err[ST_ERRLEN] = "";
    char path[512];
    snprintf(path, sizeof path, "%s/m.model", tap_tmpdir());
    float *pop = malloc(x.segments.count * sizeof *pop);
    st_model m;
    st_train_model(&x, &t, "k=v\n", pop, &m);
    int clean = 1, n;
    for (n = 1; n < 100; n++) {
        st_alloc_fail_at(n);
        int rc = st_model_save(path, &m, err);
        st_alloc_fail_at(0);
        if (rc == 0) break;
        if (!strstr(err, "out of memory")) clean = 0;
    }
    ok(clean, "saving: allocation failures give 'out of memory' (%d tried)", n - 1);
    ok(st_model_load(path, &old, err) == 0, "the saved model loads");
    uint64_t size = old.h.file_bytes;
    /* A different model to write over it. */
    st_trained t2 = t;
    t2.X = malloc((size_t)t.m * t.k * 4);
    for (size_t i = 0; i < (size_t)t.m * t.k; i++) t2.X[i] = t.X[i] + 1.0f;
    st_model m2;
    st_train_model(&x, &t2, "k=v\n", pop, &m2);
    int intact = 1, messages = 1;
    long long budgets[] = {0, 1, 255, 256, 257, 4096, (long long)size / 2, (long long)size - 1};
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        st_io_fail_after(budgets[i]);
        int rc = st_model_save(path, &m2, err);
        st_io_fail_after(-1);
        if (rc == 0 || !strstr(err, "No space left on device")) messages = 0;
        st_model now;
        if (st_model_load(path, &now, err) != 0 || memcmp(now.U, t.X, (size_t)t.m * t.k * 4) != 0) intact = 0;
        else st_model_free(&now);
    }
    ok(messages, "a full disk at every point of a save is reported as 'No space left on device'");
    ok(intact, "and the model on disk is still the old one, whole");
    ok(temp_files_left() == 0, "with no temporary file left behind");
    ok(st_model_save(path, &m2, err) == 0, "with room again, the save succeeds");
    st_model now;
    ok(st_model_load(path, &now, err) == 0 && memcmp(now.U, t2.X, (size_t)t.m * t.k * 4) == 0,
       "and the new model replaced the old one");
    st_model_free(&now);
    free(t2.X);
    free(pop);
}

/* Export on a full disk: an error, no partial .npy. */
static void test_export(void)
{
    char err[ST_ERRLEN] = "";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/exp", tap_tmpdir());
    st_io_fail_after(100);
    int rc = st_export(&old, dir, err);
    st_io_fail_after(-1);
    ok(rc != 0 && strstr(err, "No space left on device"), "export on a full disk fails cleanly (%s)", err);
}

int main(void)
{
    test_read();
    test_train();
    test_save();
    test_export();
    st_model_free(&old);
    st_trained_free(&t);
    st_interactions_free(&x);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tap_tmpdir());
    if (system(cmd) != 0) return 1;
    return tap_done();
}
