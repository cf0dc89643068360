/* cli_train: `starling train`.
 *
 * main_* style: parse options, read data, check, train, save, free. Progress
 * goes to stderr (a line per iteration, with an ETA on a terminal; nothing
 * with --quiet); the closing summary goes to stdout.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "evaluate.h"
#include "jinput.h"
#include "util.h"

/* ---- train ---------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once */
}

typedef struct {
    const char *out;
    const st_interactions *x;
    const char *meta;
    float *popularity;
    const st_weighting *w;
    int quiet, tty;
    int int8; /* quantize the user factors of the final model */
    const st_evaluation *fit; /* the validation fit applied to the final model, or NULL */
    int linear;               /* without a fit: the prior's shape asked for is linear (--prior-shape) */
} train_ctx;

static int save_trained(train_ctx *c, const st_trained *t, char *err)
{
    st_model m;
    st_train_model(c->x, t, c->meta, c->popularity, &m);
    m.h.half_life = c->w->half_life;
    m.h.decay_now = c->w->has_now ? c->w->now : NAN;
    if (c->fit) st_evaluation_apply(&m, c->fit);
    else if (c->linear) m.h.flags |= ST_MODEL_PRIOR_LINEAR;
    int8_t *q = NULL;
    float *scale = NULL;
    if (c->int8) {
        /* The final model only: checkpoints stay float32 so that training
         * can resume from them. */
        q = st_malloc((size_t)t->m * t->k + 1);
        scale = st_malloc(((size_t)t->m + 1) * sizeof *scale);
        if (!q || !scale) {
            st_free(q);
            st_free(scale);
            return st_seterr(err, "out of memory quantizing the user factors");
        }
        st_model_quantize(t->X, t->m, t->k, q, scale);
        m.U = NULL;
        m.Uq = q;
        m.Uscale = scale;
    }
    int rc = st_model_save(c->out, &m, err);
    st_free(q);
    st_free(scale);
    return rc;
}

static int on_checkpoint(void *vctx, const st_trained *t, char *err)
{
    train_ctx c = *(train_ctx *)vctx;
    c.int8 = 0;
    c.fit = NULL;
    if (save_trained(&c, t, err) != 0) return -1;
    if (!c.quiet) fprintf(stderr, "checkpoint: %s after iteration %u\n", c.out, t->iterations);
    return 0;
}

static int on_progress(void *vctx, const st_trained *t, double dt)
{
    train_ctx *c = vctx;
    if (!c->quiet) {
        uint32_t i = t->iterations, total = t->params.iterations;
        if (c->tty) {
            double eta = t->seconds / i * (total - i);
            fprintf(stderr, "iteration %3u/%u  loss %.6f  %6.2f s  eta %.1f s\n", i, total, t->loss[i - 1], dt, eta);
        } else {
            fprintf(stderr, "iteration %u/%u loss %.6f seconds %.3f\n", i, total, t->loss[i - 1], dt);
        }
    }
    return interrupted ? 1 : 0;
}

static int append_meta(char **meta, size_t *len, size_t *cap, const char *key, const char *val)
{
    size_t need = strlen(key) + strlen(val) + 2;
    if (*len + need + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 256) + need;
        char *p = st_realloc(*meta, nc);
        if (!p) return -1;
        *meta = p;
        *cap = nc;
    }
    /* Newlines would break the key=value lines: replace them. */
    size_t start = *len;
    *len += (size_t)sprintf(*meta + *len, "%s=%s\n", key, val);
    for (size_t i = start; i < *len - 1; i++)
        if ((*meta)[i] == '\n') (*meta)[i] = ' ';
    return 0;
}

typedef struct {
    st_als_params p;
    const st_weighting *w;
    const st_read_opts *ro;
    const char *out, *kinds, *half_life, *resume, *journal;
    char **files;
    int nfiles, quiet, threads, int8;
    int prior_shape; /* ST_PRIOR_SHAPE_*: the validation fit's */
    uint32_t checkpoint_every;
    st_holdout_opts hold;     /* the validation holdout (share 0 = none) */
    st_jinput_use ju;
    double x_newest; /* the newest event, when decay is relative to it */
    int x_newest_set;
} train_job;

static void print_read(const train_job *j, const st_interactions *x, const st_read_stats *stats, double secs,
                       int ranks)
{
    if (j->quiet) return;
    fprintf(stderr, "read %llu events in %.1f s", (unsigned long long)stats->events, secs);
    if (ranks > 1) fprintf(stderr, " on %d ranks", ranks);
    fprintf(stderr, ": %u users, %u segments, %llu distinct pairs\n", x->users.count, x->segments.count,
            (unsigned long long)x->by_user.nnz);
    if (stats->skipped) {
        fprintf(stderr, "skipped %llu malformed lines; the first:\n", (unsigned long long)stats->skipped);
        for (uint64_t i = 0; i < stats->skipped && i < ST_READ_KEEP_REASONS; i++)
            fprintf(stderr, "  %s\n", stats->reasons[i]);
    }
}

/* The key=value lines recorded in the model; NULL on out-of-memory. */
static char *build_meta(const train_job *j, const st_read_stats *stats, int ranks)
{
    char *meta = NULL;
    size_t mlen = 0, mcap = 0;
    char buf[4096], num[64], thr[32];
    size_t bl = 0;
    buf[0] = '\0';
    for (int i = 0; i < j->nfiles && bl < sizeof buf - 2; i++)
        bl += (size_t)snprintf(buf + bl, sizeof buf - bl, "%s%s", i ? "," : "", j->files[i]);
    snprintf(num, sizeof num, "%llu", (unsigned long long)stats->skipped);
    snprintf(thr, sizeof thr, "%d", j->threads > 0 ? j->threads : st_cpu_count());
    if (append_meta(&meta, &mlen, &mcap, "inputs", buf) || append_meta(&meta, &mlen, &mcap, "skipped_lines", num) ||
        append_meta(&meta, &mlen, &mcap, "kind_weights", j->kinds ? j->kinds : "") ||
        append_meta(&meta, &mlen, &mcap, "half_life", j->half_life ? j->half_life : "") ||
        append_meta(&meta, &mlen, &mcap, "threads_used", thr)) {
        st_free(meta);
        return NULL;
    }
    if (ranks > 1) {
        snprintf(num, sizeof num, "%d", ranks);
        if (append_meta(&meta, &mlen, &mcap, "mpi_ranks", num)) {
            st_free(meta);
            return NULL;
        }
    }
    /* The decay reference, so that the server weighs online events as this
     * run weighed the inputs; and the journal position this model holds, so
     * that the server does not apply those records a second time. */
    if (j->x_newest_set) {
        snprintf(num, sizeof num, "%.17g", j->x_newest);
        if (append_meta(&meta, &mlen, &mcap, "decay_reference", num)) {
            st_free(meta);
            return NULL;
        }
    }
    if (j->journal) {
        char id[32], seq[32], ev[32], fg[32], dr[32];
        snprintf(id, sizeof id, "%016llx", (unsigned long long)j->ju.id);
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)j->ju.last_seq);
        snprintf(ev, sizeof ev, "%llu", (unsigned long long)j->ju.added);
        snprintf(fg, sizeof fg, "%llu", (unsigned long long)j->ju.forgotten);
        snprintf(dr, sizeof dr, "%llu", (unsigned long long)j->ju.dropped);
        if (append_meta(&meta, &mlen, &mcap, "journal", j->journal) ||
            append_meta(&meta, &mlen, &mcap, "journal_id", id) || append_meta(&meta, &mlen, &mcap, "journal_seq", seq) ||
            append_meta(&meta, &mlen, &mcap, "journal_events", ev) ||
            append_meta(&meta, &mlen, &mcap, "journal_forgotten_users", fg) ||
            append_meta(&meta, &mlen, &mcap, "journal_dropped_input_events", dr)) {
            st_free(meta);
            return NULL;
        }
    }
    return meta;
}

static void print_trained(const train_job *j, const st_interactions *x, const st_trained *t)
{
    if (j->quiet) return;
    double bytes = (double)(x->by_user.nnz * 8 + x->by_segment.nnz * 8 + ((uint64_t)x->users.count + 1) * 8 +
                            ((uint64_t)x->segments.count + 1) * 8) +
                   (double)((uint64_t)x->users.count + x->segments.count) * t->k * 4;
    if (t->stopped) fprintf(stderr, "interrupted: saved the model after iteration %u\n", t->iterations);
    printf("trained %u users x %u segments, rank %u, %u iterations (%s) in %.2f s (%.3f s/iteration); "
           "loss %.6f\n",
           t->m, t->n, t->k, t->iterations, st_solver_name(t->params.solver), t->seconds,
           t->iterations ? t->seconds / t->iterations : 0.0, t->iterations ? t->loss[t->iterations - 1] : 0.0);
    printf("wrote %s; peak RSS %.1f MiB (%.2fx the %.1f MiB of CSR + CSC + factors)\n", j->out,
           (double)st_peak_rss() / 1048576.0, (double)st_peak_rss() / bytes, bytes / 1048576.0);
}

/* Loads a model to resume from into t (factors and loss history). */
static int load_resume(const train_job *j, const st_interactions *x, st_trained *t)
{
    char err[ST_ERRLEN];
    st_model rm;
    if (st_model_load(j->resume, &rm, err) != 0) return st_cli_fail("train", "--resume: %s", err);
    uint64_t fp = st_interactions_fingerprint(x);
    if (rm.h.fingerprint != fp || rm.users != x->users.count || rm.segments != x->segments.count) {
        st_cli_fail("train", "--resume: %s was trained on different data (fingerprint %016llx, these events "
                             "%016llx); resume with the same event files",
                    j->resume, (unsigned long long)rm.h.fingerprint, (unsigned long long)fp);
        st_model_free(&rm);
        return ST_EXIT_ERROR;
    }
    if (rm.Uq) {
        st_cli_fail("train", "--resume: %s has int8 user factors, which cannot be trained further; resume from the "
                             "float32 model it was quantized from",
                    j->resume);
        st_model_free(&rm);
        return ST_EXIT_ERROR;
    }
    st_model_params(&rm.h, &t->params);
    t->params.iterations = j->p.iterations;
    t->params.threads = j->threads;
    size_t xs = (size_t)rm.users * rm.k * sizeof(float), ys = (size_t)rm.segments * rm.k * sizeof(float);
    t->X = st_aligned_alloc(64, xs);
    t->Y = st_aligned_alloc(64, ys);
    t->loss = st_malloc(((size_t)rm.h.iterations + 1) * sizeof(double));
    if (!t->X || !t->Y || !t->loss) {
        st_model_free(&rm);
        return st_cli_fail("train", "out of memory");
    }
    memcpy(t->X, rm.U, xs);
    memcpy(t->Y, rm.V, ys);
    memcpy(t->loss, rm.loss, (size_t)rm.h.iterations * sizeof(double));
    t->iterations = rm.h.iterations;
    if (!j->quiet)
        fprintf(stderr, "resuming %s at iteration %u of %u\n", j->resume, t->iterations, t->params.iterations);
    st_model_free(&rm);
    return ST_EXIT_OK;
}

/* Saves and reports a finished run: the part both ways of training share. */
static int save_and_report(const train_job *j, const st_interactions *x, st_trained *t, const char *meta,
                           float *popularity, const st_evaluation *fit)
{
    char err[ST_ERRLEN];
    train_ctx c = {.out = j->out, .x = x, .meta = meta, .popularity = popularity, .w = j->w, .quiet = j->quiet,
                   .int8 = j->int8, .fit = fit, .linear = j->prior_shape == ST_PRIOR_SHAPE_LINEAR};
    if (save_trained(&c, t, err) != 0) return st_cli_fail("train", "%s", err);
    print_trained(j, x, t);
    return t->stopped ? 130 : ST_EXIT_OK;
}

/* ---- the journal of a server ------------------------------------------------ */

/* Reads the event files and the journal into x (jinput.h has the rules). */
static int read_with_journal(train_job *j, st_interactions *x, st_read_stats *stats, char *err)
{
    return st_jinput_interactions(j->journal, j->files, j->nfiles, j->ro, j->w, x, stats, &j->ju, err);
}

static void print_journal(const train_job *j)
{
    if (j->quiet || !j->journal) return;
    const st_jinput_use *u = &j->ju;
    fprintf(stderr, "journal %s (%016llx) up to seq %llu: %llu events added (%llu erased by a later FORGET); %llu users "
                    "forgotten, %llu input events of theirs dropped\n",
            j->journal, (unsigned long long)u->id, (unsigned long long)u->last_seq, (unsigned long long)u->added,
            (unsigned long long)u->erased, (unsigned long long)u->forgotten, (unsigned long long)u->dropped);
    if (u->torn_bytes)
        fprintf(stderr, "journal %s: its last %llu bytes are a record still being written or torn: left out\n",
                j->journal, (unsigned long long)u->torn_bytes);
}

/* Validation users fewer than this fit nothing: the figures would be noise. */
#define MIN_VALIDATION_USERS 20

/* The validation fit: the model trained on h->train is evaluated on the
 * validation users' held-out pairs (half of them fit the prior weight and
 * the calibration, half report), then every validation user is folded back
 * in with all its segments (its row of t->X). *meta gains the eval.* lines. */
static int validate(const train_job *j, const st_interactions *x, const st_holdout *h, st_trained *t, char **meta,
                    st_evaluation *r)
{
    char err[ST_ERRLEN];
    double t0 = st_now();
    float *pop = st_malloc(((size_t)x->segments.count + 1) * sizeof *pop);
    if (!pop) return st_cli_fail("train", "out of memory");
    st_model m;
    st_train_model(&h->train, t, *meta, pop, &m);
    st_eval_set set;
    st_evaluate_opts o = {.ks = {10, 20}, .nk = 2, .metric = ST_M_RECALL, .metric_ki = 1, .prior_mode = ST_PRIOR_FIT,
                          .prior_shape = j->prior_shape, .seed = j->hold.seed, .negatives = 100,
                          .threads = j->threads, .quick = 1};
    int code = ST_EXIT_ERROR;
    if (st_holdout_set(h, &m, &set, err) != 0) {
        st_free(pop);
        return st_cli_fail("train", "validation: %s", err);
    }
    char desc[256];
    snprintf(desc, sizeof desc, "train's validation holdout: %.0f%% of the segments of %u of %u users", 100 *
             j->hold.fraction, h->users, h->eligible);
    size_t len;
    st_model mm = {.meta = *meta, .meta_len = strlen(*meta)};
    char *nm = NULL;
    if (st_evaluate(&m, &set, &o, r, err) != 0 || st_holdout_restore(h, x, &m, t->X, err) != 0) {
        st_cli_fail("train", "validation: %s", err);
    } else if (!(nm = st_evaluation_meta(&mm, r, &o, desc, j->hold.seed, &len))) {
        st_cli_fail("train", "out of memory");
    } else {
        st_free(*meta);
        *meta = nm;
        code = ST_EXIT_OK;
        if (!j->quiet)
            fprintf(stderr, "validation: %u users in %.2f s; prior weight %g, calibration %s\n", h->users,
                    st_now() - t0, r->prior_weight, r->calibrated ? "fitted" : "not fitted");
    }
    st_eval_set_free(&set);
    st_free(pop);
    return code;
}

/* The summary line of the validation fit, on stdout. */
static void print_validation(const train_job *j, const st_holdout *h, const st_evaluation *r)
{
    if (j->quiet) return;
    if (!r) {
        if (j->hold.share > 0)
            printf("validation: %u users with %u or more segments, too few to fit the prior weight and the "
                   "calibration on (at least %d are needed)\n",
                   h->users, j->hold.min_segments, MIN_VALIDATION_USERS);
        return;
    }
    double mr = r->sum[ST_EV_MODEL].m[1][ST_M_RECALL].mean, pr = r->sum[ST_EV_POPULARITY].m[1][ST_M_RECALL].mean;
    uint32_t fit = h->users - r->test_users;
    printf("validation: %u users, %u fit the prior weight (%g), its shape (%s) and the calibration; on the other "
           "%u, recall@20 %.4f, popularity %.4f (%.2fx); the fit also used %u sparse copies of its users (at most %d "
           "segments each)\n",
           h->users, fit, r->prior_weight, st_prior_shape_name(r->prior_linear), r->test_users, mr, pr,
           pr > 0 ? mr / pr : 0.0, r->validation_users - fit,
           ST_HOLDOUT_SPARSE_MAX);
}

static int train_local(train_job *j)
{
    char err[ST_ERRLEN];
    st_interactions x;
    st_read_stats stats;
    memset(&stats, 0, sizeof stats);
    double t0 = st_now();
    if (j->journal) {
        if (read_with_journal(j, &x, &stats, err) != 0) return st_cli_fail("train", "%s", err);
    } else if (st_interactions_read(j->files, j->nfiles, j->ro, j->w, &x, &stats, err) != 0) {
        return st_cli_fail("train", "%s", err);
    }
    j->x_newest = x.newest;
    j->x_newest_set = x.has_newest;
    print_read(j, &x, &stats, st_now() - t0, 1);
    print_journal(j);
    st_trained t;
    memset(&t, 0, sizeof t);
    t.params = j->p;
    int code = ST_EXIT_ERROR;
    char *meta = NULL;
    float *popularity = NULL;
    st_holdout h;
    memset(&h, 0, sizeof h);
    st_evaluation fit;
    memset(&fit, 0, sizeof fit);
    int fitted = 0;
    if (j->resume && (code = load_resume(j, &x, &t)) != ST_EXIT_OK) goto done;
    code = ST_EXIT_ERROR;
    meta = build_meta(j, &stats, 1);
    popularity = st_malloc(((size_t)x.segments.count + 1) * sizeof *popularity);
    if (!meta || !popularity) {
        st_cli_fail("train", "out of memory");
        goto done;
    }
    /* Trained without the validation users' held-out pairs, when there are
     * enough of them; checkpoints and an interrupted run save over all of x. */
    const st_interactions *xt = &x;
    if (j->hold.share > 0) {
        if (st_holdout_make(&x, &j->hold, &h, err) != 0) {
            st_cli_fail("train", "validation: %s", err);
            goto done;
        }
        if (h.users >= MIN_VALIDATION_USERS) xt = &h.train;
    }
    train_ctx c = {.out = j->out, .x = &x, .meta = meta, .popularity = popularity, .w = j->w, .quiet = j->quiet,
                   .tty = isatty(STDERR_FILENO), .linear = j->prior_shape == ST_PRIOR_SHAPE_LINEAR};
    st_train_hooks hooks = {.progress = on_progress, .checkpoint = on_checkpoint,
                            .checkpoint_every = j->checkpoint_every, .ctx = &c};
    interrupted = 0;
    signal(SIGINT, on_sigint);
    int trc = st_train_run(xt, &t, &hooks, err);
    signal(SIGINT, SIG_DFL);
    if (trc != 0) {
        st_cli_fail("train", "%s", err);
        goto done;
    }
    if (xt != &x && !t.stopped) {
        if (validate(j, &x, &h, &t, &meta, &fit) != ST_EXIT_OK) goto done;
        fitted = 1;
    }
    code = save_and_report(j, &x, &t, meta, popularity, fitted ? &fit : NULL);
    if (code == ST_EXIT_OK) print_validation(j, &h, fitted ? &fit : NULL);
done:
    st_evaluation_free(&fit);
    st_holdout_free(&h);
    st_trained_free(&t);
    st_free(meta);
    st_free(popularity);
    st_interactions_free(&x);
    return code;
}

/* Under mpirun: every rank trains its part; rank 0 saves and reports. */
static int train_mpi(const train_job *j)
{
    char err[ST_ERRLEN] = "";
    if (!st_dist_compiled())
        return st_cli_fail("train", "started by mpirun, but this starling was built without MPI: install "
                                    "libopenmpi-dev, then `make clean && make`");
    st_interactions x;
    st_read_stats stats;
    memset(&stats, 0, sizeof stats);
    st_trained t;
    memset(&t, 0, sizeof t);
    t.params = j->p;
    if (t.params.threads == 0) {
        /* Ranks on one host share its CPUs. */
        const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        int per_host = local ? atoi(local) : 1;
        t.params.threads = st_cpu_count() / (per_host > 0 ? per_host : 1);
        if (t.params.threads < 1) t.params.threads = 1;
    }
    int is_root = 0;
    st_dist_info info;
    train_ctx c = {.quiet = 1, .tty = isatty(STDERR_FILENO)};
    st_train_hooks hooks = {.progress = on_progress, .ctx = &c};
    interrupted = 0;
    signal(SIGINT, on_sigint);
    double t0 = st_now();
    /* Progress lines come from rank 0 only. */
    const char *rank_env = getenv("OMPI_COMM_WORLD_RANK");
    c.quiet = j->quiet || (rank_env && atoi(rank_env) != 0);
    int rc = st_dist_train(j->files, j->nfiles, j->ro, j->w, &t, &x, &stats, &hooks, &is_root, &info, err);
    signal(SIGINT, SIG_DFL);
    int code = ST_EXIT_OK;
    if (rc != 0) {
        if (err[0]) st_cli_fail("train", "rank %d: %s", info.rank, err);
        code = ST_EXIT_ERROR;
    } else if (is_root) {
        print_read(j, &x, &stats, info.read_seconds, info.ranks);
        if (!j->quiet)
            fprintf(stderr, "MPI: %d ranks, set-up %.2f s; per iteration %.2f MiB of factor rows (formula %.2f MiB) "
                            "and %.1f KiB all-reduced\n",
                    info.ranks, info.setup_seconds, info.halo_bytes / 1048576.0, info.formula_bytes / 1048576.0,
                    info.allreduce_bytes / 1024.0);
        char *meta = build_meta(j, &stats, info.ranks);
        float *popularity = st_malloc(((size_t)x.segments.count + 1) * sizeof *popularity);
        if (!meta || !popularity) code = st_cli_fail("train", "out of memory");
        else code = save_and_report(j, &x, &t, meta, popularity, NULL);
        st_free(meta);
        st_free(popularity);
    } else if (t.stopped) {
        code = 130;
    }
    (void)t0;
    st_trained_free(&t);
    st_interactions_free(&x);
    st_dist_finalize();
    return code;
}

/* The training options, shared with `eval` and `tune` (cli.h). */
void st_train_cli_init(st_train_cli *c)
{
    memset(c, 0, sizeof *c);
    st_als_params_default(&c->p);
    c->conf = (int)c->p.confidence;
    c->solver = (int)c->p.solver;
    c->reg = (int)c->p.regularization;
    c->missing = (int)c->p.missing;
    c->factors = c->p.factors;
    c->iterations = c->p.iterations;
    c->cg_steps = c->p.cg_steps;
    c->max_line = 1u << 20;
}

void st_train_cli_opts(st_train_cli *c, st_opt *opts, int *n)
{
    const st_opt train_opts[] = {
        {"factors", 0, ST_OPT_U64, &c->factors, "K", "rank of the factor vectors", 0},
        {"iterations", 0, ST_OPT_U64, &c->iterations, "N", "ALS iterations (each: users, then segments)", 0},
        {"lambda", 0, ST_OPT_DOUBLE, &c->p.lambda, "L", "L2 regularisation", 0},
        {"alpha", 0, ST_OPT_DOUBLE, &c->p.alpha, "A", "confidence scale: c = 1 + alpha f(r)", 0},
        {"confidence", 0, ST_OPT_CHOICE, &c->conf, NULL,
         "f(r): linear r, log log(1 + r/eps), bm25 weighting", "linear|log|bm25"},
        {"eps", 0, ST_OPT_DOUBLE, &c->p.eps, "E",
         "scale of r in the log scheme (default 0: the median pair value, so any unit of weight gives the same "
         "model)",
         0},
        {"bm25-k1", 0, ST_OPT_DOUBLE, &c->p.bm25_k1, "K1", "bm25 saturation", 0},
        {"bm25-b", 0, ST_OPT_DOUBLE, &c->p.bm25_b, "B", "bm25 length normalisation (0..1)", 0},
        {"regularization", 0, ST_OPT_CHOICE, &c->reg, NULL,
         "plain lambda, or frequency-scaled lambda (n + alpha0 N)^nu", "plain|frequency"},
        {"reg-alpha0", 0, ST_OPT_DOUBLE, &c->p.reg_alpha0, "A0", "alpha0 of frequency-scaled regularisation", 0},
        {"reg-nu", 0, ST_OPT_DOUBLE, &c->p.reg_nu, "NU", "exponent nu of frequency-scaled regularisation", 0},
        {"unobserved-weight", 0, ST_OPT_DOUBLE, &c->p.unobserved, "W0",
         "weight of a pair never observed, against 1 + alpha f(r) for an observed one (0 < W0 <= 1)", 0},
        {"missing-weight", 0, ST_OPT_CHOICE, &c->missing, NULL,
         "unobserved pairs weigh W0 each, or W0 n f^E / sum f^E by their segment's share f of the users (eALS)",
         "uniform|popularity"},
        {"missing-exponent", 0, ST_OPT_DOUBLE, &c->p.missing_exponent, "E",
         "exponent E of the popularity weighting (0..2; 0 is uniform)", 0},
        {"solver", 0, ST_OPT_CHOICE, &c->solver, NULL, "per-row solver: conjugate gradient, or exact Cholesky",
         "cg|cholesky"},
        {"cg-steps", 0, ST_OPT_U64, &c->cg_steps, "N", "conjugate-gradient steps per row and half-step", 0},
        {"threads", 0, ST_OPT_INT, &c->threads, "T", "worker threads (0 = every CPU)", 0},
        {"seed", 0, ST_OPT_U64, &c->p.seed, "S", "random seed of the initial factors", 0},
        {"kind-weight", 0, ST_OPT_STRING, &c->kinds, "K=W,...",
         "weight per event kind, e.g. impression=0.1,click=1,conversion=20 (* = other kinds; default 1 each)", 0},
        {"half-life", 0, ST_OPT_STRING, &c->half_life, "DURATION",
         "exponential time decay of events (e.g. 7d, 12h; default none)", 0},
        {"now", 0, ST_OPT_STRING, &c->now, "TIME", "decay reference time (default: the newest event)", 0},
        {"on-error", 0, ST_OPT_CHOICE, &c->on_error, NULL, "a malformed input line stops the run, or is skipped",
         "stop|skip"},
        {"header", 0, ST_OPT_CHOICE, &c->header, NULL, "whether input files start with a header line", "auto|yes|no"},
        {"max-line", 0, ST_OPT_U64, &c->max_line, "BYTES", "longest input line accepted", 0},
    };
    _Static_assert(sizeof train_opts / sizeof train_opts[0] <= ST_TRAIN_CLI_NOPTS, "raise ST_TRAIN_CLI_NOPTS");
    for (size_t i = 0; i < sizeof train_opts / sizeof train_opts[0]; i++) opts[(*n)++] = train_opts[i];
}

int st_train_cli_finish(st_train_cli *c, const st_cmd_doc *doc, st_als_params *p, st_weighting *w,
                        st_read_opts *ro)
{
    *p = c->p;
    p->factors = c->factors > 100000 ? 0 : (uint32_t)c->factors;
    p->iterations = c->iterations > 1000000 ? 1000001 : (uint32_t)c->iterations;
    p->cg_steps = c->cg_steps > 100000 ? 0 : (uint32_t)c->cg_steps;
    p->confidence = (st_conf_scheme)c->conf;
    p->solver = (st_solver)c->solver;
    p->regularization = (st_reg_scheme)c->reg;
    p->missing = (st_missing_scheme)c->missing;
    p->threads = c->threads;
    const char *bad = st_als_check(p);
    if (bad) return st_cli_usage(doc, "%s", bad);
    char err[ST_ERRLEN];
    st_weighting_default(w);
    if (c->kinds && st_weighting_parse_kinds(w, c->kinds, err) != 0)
        return st_cli_usage(doc, "--kind-weight: %s", err);
    if (c->half_life && (st_parse_duration(c->half_life, &w->half_life) != 0 || w->half_life <= 0)) {
        st_weighting_free(w);
        return st_cli_usage(doc, "--half-life: '%s' is not a positive duration (e.g. 3600, 12h, 7d)", c->half_life);
    }
    if (c->now) {
        if (st_parse_timestamp(c->now, strlen(c->now), &w->now) != 0) {
            st_weighting_free(w);
            return st_cli_usage(doc, "--now: '%s' is not a time (unix seconds or ISO 8601)", c->now);
        }
        w->has_now = 1;
    }
    st_read_opts_default(ro);
    ro->skip_errors = c->on_error == 1;
    ro->header = c->header == 0 ? -1 : c->header == 1 ? 1 : 0;
    ro->max_line = (size_t)c->max_line;
    return ST_CLI_GO;
}

int cli_train(int argc, char **argv)
{
    st_train_cli tc;
    st_train_cli_init(&tc);
    const char *out = NULL, *resume = NULL, *journal = NULL;
    int quiet = 0, quantize = 0, prior_shape = ST_PRIOR_SHAPE_AUTO;
    uint64_t checkpoint_every = 0, validation_max = 0;
    st_holdout_opts hold;
    st_holdout_opts_default(&hold);
    validation_max = hold.cap;
    st_opt opts[ST_TRAIN_CLI_NOPTS + 12];
    int nopts = 0;
    opts[nopts++] = (st_opt){"output", 'o', ST_OPT_STRING, &out, "MODEL", "where to write the model (required)", 0};
    st_train_cli_opts(&tc, opts, &nopts);
    opts[nopts++] = (st_opt){"checkpoint-every", 0, ST_OPT_U64, &checkpoint_every, "N",
                             "save the model every N iterations (0 = never)", 0};
    opts[nopts++] = (st_opt){"resume", 0, ST_OPT_STRING, &resume, "MODEL",
                             "continue training from a saved model (same data; its hyper-parameters are kept)", 0};
    opts[nopts++] = (st_opt){"quantize", 0, ST_OPT_CHOICE, &quantize, NULL,
                             "store user factors as float32, or int8 with a scale per row (a quarter of the bytes)",
                             "none|int8"};
    opts[nopts++] = (st_opt){"journal", 'j', ST_OPT_STRING, &journal, "FILE",
                             "also learn from a server's journal (its EVENTs) and leave out the users it forgot", 0};
    opts[nopts++] = (st_opt){"validation", 0, ST_OPT_DOUBLE, &hold.share, "F",
                             "share of the users with 3 or more segments on whom the prior weight and the "
                             "calibration are fitted (0 = none)",
                             0};
    opts[nopts++] = (st_opt){"validation-max", 0, ST_OPT_U64, &validation_max, "N", "... and at most N of them", 0};
    opts[nopts++] = (st_opt){"prior-shape", 0, ST_OPT_CHOICE, &prior_shape, NULL,
                             "the popularity prior: fitted with its weight (the linear one only when the validation "
                             "users prefer it beyond their noise), log(1 + pop) / log(1 + max pop), or pop / max pop",
                             "auto|log|linear"};
    opts[nopts++] = (st_opt){"quiet", 'q', ST_OPT_FLAG, &quiet, NULL, "print nothing but errors", 0};
    opts[nopts] = (st_opt){0};
    const st_cmd_doc doc = {
        "train", "EVENTS... [--journal JOURNAL] -o MODEL [options]",
        "Train an implicit-feedback ALS model from event logs (CSV or TSV, gzip or\n"
        "not, - for stdin) of user, segment[, weight[, kind[, timestamp]]].",
        "Each (user, segment) pair's value r is the sum of its events' weight x kind\n"
        "weight x decay; its confidence is c = 1 + alpha f(r). Ctrl-C stops after the\n"
        "iteration in progress and saves a usable model. With --journal, the server's online\n"
        "events are added to the inputs, every event of a user it forgot is left out, and\n"
        "the model records the journal position it holds, so a server that loads it applies\n"
        "only the later records on top.\n\n"
        "Validation: 20% of the segments of the validation users are held out while\n"
        "training; half of those users fit the popularity-prior weight and the\n"
        "calibration the model is saved with, the other half measure it against\n"
        "popularity (the figures go into the model: `starling info`). Then every\n"
        "validation user is folded back in with all its segments, so the model has\n"
        "learned from every event. Not under mpirun (fit there with `starling eval -o`)."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos == 0 && !journal) return st_cli_usage(&doc, "no event files given");
    if (!out) return st_cli_usage(&doc, "-o MODEL is required");
    st_als_params p;
    st_weighting w;
    st_read_opts ro;
    if (!(hold.share >= 0 && hold.share <= 0.5)) return st_cli_usage(&doc, "--validation must be between 0 and 0.5");
    if (validation_max > UINT32_MAX) return st_cli_usage(&doc, "--validation-max must fit 32 bits");
    hold.cap = (uint32_t)validation_max;
    hold.seed = tc.p.seed;
    if ((rc = st_train_cli_finish(&tc, &doc, &p, &w, &ro)) != ST_CLI_GO) return rc;
    train_job job = {.p = p, .w = &w, .ro = &ro, .out = out, .files = pos, .nfiles = npos, .kinds = tc.kinds,
                     .half_life = tc.half_life, .resume = resume, .journal = journal, .quiet = quiet,
                     .checkpoint_every = (uint32_t)checkpoint_every, .threads = tc.threads,
                     .int8 = quantize == 1, .prior_shape = prior_shape, .hold = hold};
    int ranks = st_dist_launched(), code;
    if (ranks > 1) {
        if (resume || checkpoint_every || journal) {
            st_weighting_free(&w);
            return st_cli_usage(&doc, "--resume, --checkpoint-every and --journal are not supported under MPI");
        }
        if (p.missing == ST_MISSING_POPULARITY) {
            st_weighting_free(&w);
            return st_cli_usage(&doc, "--missing-weight popularity is not supported under MPI; train it in one "
                                      "process, or use --missing-weight uniform");
        }
        code = train_mpi(&job);
    } else {
        code = train_local(&job);
    }
    st_weighting_free(&w);
    return code;
}
