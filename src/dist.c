/* dist: data-parallel ALS on MPI.
 *
 * What it is: the single-process trainer's per-row solves (st_als_solve_rows)
 * with the data partitioned by owner and the fixed factors each rank needs
 * fetched from their owners before every half-step. What it is not: a
 * cluster manager. mpirun starts the ranks, Open MPI moves the bytes.
 *
 * Phases, every rank in lock-step:
 *  1. read: rank r reads bytes [r T/R, (r+1) T/R) of the plain inputs (T their
 *     total size; a line belongs to the range of its first byte) and every
 *     R-th line of gzip inputs (which cannot be split by bytes), building a
 *     local matrix with local ids. Time decay agrees on the newest event.
 *  2. ids: all ranks all-gather every rank's ids and intern them in rank
 *     order, so all hold the same global id maps.
 *  3. ownership: users [ubeg[r], ubeg[r+1]) and segments [sbeg[r], sbeg[r+1])
 *     belong to rank r. Pairs go to their user's owner, which merges them into
 *     its rows and computes their confidence (bm25 statistics are all-reduced),
 *     then to their segment's owner, which builds its columns.
 *  4. halos: each rank lists the segments its users point at and the users
 *     its segments point at, asks their owners once, and rewrites its indices
 *     to positions in the halo buffers. Each half-step is then one
 *     MPI_Alltoallv of exactly those rows.
 *  5. iterations: exchange Y, solve users, all-reduce X^T X, exchange X, solve
 *     segments (adding up their share of the loss), all-reduce Y^T Y and the
 *     loss. Stopping (Ctrl-C on any rank) is agreed by an all-reduce.
 *  6. rank 0 gathers factors and history, in global order, for the caller.
 */
#include "dist.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "als.h"
#include "util.h"

int st_dist_launched(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v) v = getenv("PMI_SIZE");
    int n = v ? atoi(v) : 1;
    return n > 0 ? n : 1;
}

#ifndef STARLING_MPI

int st_dist_compiled(void) { return 0; }

int st_dist_train(char **paths, int npaths, const st_read_opts *o, const st_weighting *w, st_trained *t,
                  st_interactions *x, st_read_stats *stats, const st_train_hooks *hooks, int *is_root,
                  st_dist_info *info, char *err)
{
    (void)paths, (void)npaths, (void)o, (void)w, (void)t, (void)x, (void)stats, (void)hooks, (void)info;
    *is_root = 1;
    return st_seterr(err, "this starling was built without MPI: install libopenmpi-dev, then `make clean && make`");
}

int st_dist_any_failed(int rc) { return rc; }

void st_dist_finalize(void) {}

#else

#include <mpi.h>

int st_dist_compiled(void) { return 1; }

static int mpi_up;

static void ensure_mpi(void)
{
    if (mpi_up) return;
    int flag = 0, provided;
    MPI_Initialized(&flag);
    if (!flag) MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    mpi_up = 1;
}

void st_dist_finalize(void)
{
    if (!mpi_up) return;
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
    mpi_up = 0;
}

int st_dist_any_failed(int rc)
{
    ensure_mpi();
    int mine = rc != 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any ? (rc ? rc : -1) : 0;
}

/* Out of memory in the middle of a collective phase: the other ranks are
 * waiting in MPI calls, so the job must end as a whole. */
static void die(const char *what)
{
    fprintf(stderr, "starling train: out of memory (%s); stopping every rank\n", what);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void *xmalloc(size_t n, const char *what)
{
    void *p = st_malloc(n);
    if (!p) die(what);
    return p;
}

static void *xcalloc(size_t n, size_t sz, const char *what)
{
    void *p = st_calloc(n, sz);
    if (!p) die(what);
    return p;
}

static int fits_int(uint64_t n) { return n <= (uint64_t)INT_MAX; }

/* The rank owning global index g, for blocks beg[0..R]. */
static int owner_of(const uint64_t *beg, int R, uint64_t g)
{
    int lo = 0, hi = R - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (beg[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int is_gzip(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char b[2] = {0, 0};
    int gz = f && fread(b, 1, 2, f) == 2 && b[0] == 0x1f && b[1] == 0x8b;
    if (f) fclose(f);
    return gz;
}

/* Phase 1. */
static int read_part(char **paths, int npaths, const st_read_opts *o, const st_weighting *w, int rank, int R,
                     st_interactions *local, st_read_stats *stats, char *err)
{
    uint64_t total = 0;
    for (int i = 0; i < npaths; i++) {
        if (strcmp(paths[i], "-") == 0) return st_seterr(err, "stdin cannot be shared between MPI ranks: give files");
        struct stat sb;
        if (stat(paths[i], &sb) != 0) return st_seterr(err, "%s: cannot open: %s", paths[i], strerror(errno));
        if (!is_gzip(paths[i])) total += (uint64_t)sb.st_size;
    }
    uint64_t lo = total * (uint64_t)rank / (uint64_t)R, hi = total * (uint64_t)(rank + 1) / (uint64_t)R;
    st_builder *b = st_builder_new(w, err);
    if (!b) return -1;
    uint64_t offset = 0;
    int rc = 0;
    for (int i = 0; i < npaths && rc == 0; i++) {
        st_read_opts ro = *o;
        if (is_gzip(paths[i])) {
            ro.stride = (uint32_t)R;
            ro.phase = (uint32_t)rank;
            rc = st_events_read(paths[i], &ro, st_builder_add_cb, b, stats, err);
            continue;
        }
        struct stat sb;
        stat(paths[i], &sb);
        uint64_t size = (uint64_t)sb.st_size, a = offset > lo ? offset : lo,
                 z = offset + size < hi ? offset + size : hi;
        offset += size;
        if (size == 0 || a >= z) continue;
        ro.begin = a - (offset - size);
        ro.end = z - (offset - size);
        rc = st_events_read(paths[i], &ro, st_builder_add_cb, b, stats, err);
    }
    if (st_dist_any_failed(rc)) {
        st_builder_free(b);
        return -1;
    }
    if (w->half_life > 0 && !w->has_now) {
        double newest = -INFINITY, all;
        st_builder_newest(b, &newest);
        MPI_Allreduce(&newest, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        st_builder_set_newest(b, all);
    }
    rc = st_builder_finish_any(b, local, err);
    return st_dist_any_failed(rc) ? -1 : 0;
}

/* Phase 2: every rank's ids, interned in rank order into `global`; l2g maps
 * the local indices. */
static int gather_ids(const st_idmap *local, int R, st_idmap *global, uint32_t **l2g, char *err)
{
    uint64_t mine = local->count ? local->offsets[local->count] : 0;
    int ok = fits_int(mine);
    if (st_dist_any_failed(!ok)) return st_seterr(err, "ids of one rank exceed 2 GiB");
    int len = (int)mine, *lens = xmalloc((size_t)R * sizeof *lens, "ids"), *displs = xmalloc((size_t)R * sizeof *displs, "ids");
    MPI_Allgather(&len, 1, MPI_INT, lens, 1, MPI_INT, MPI_COMM_WORLD);
    uint64_t total = 0;
    for (int r = 0; r < R; r++) {
        displs[r] = (int)total;
        total += (uint64_t)lens[r];
    }
    if (!fits_int(total)) {
        st_free(lens);
        st_free(displs);
        return st_seterr(err, "all ids together exceed 2 GiB");
    }
    char *all = xmalloc(total + 1, "ids");
    MPI_Allgatherv(local->bytes, len, MPI_CHAR, all, lens, displs, MPI_CHAR, MPI_COMM_WORLD);
    st_idmap_init(global);
    for (uint64_t p = 0; p < total;) {
        size_t n = strlen(all + p);
        uint32_t idx;
        if (st_idmap_intern(global, all + p, n, &idx, NULL, err) != 0) die("global ids");
        p += n + 1;
    }
    *l2g = xmalloc(((size_t)local->count + 1) * sizeof **l2g, "ids");
    for (uint32_t i = 0; i < local->count; i++) {
        size_t n;
        const char *s = st_idmap_name(local, i, &n);
        (*l2g)[i] = st_idmap_find(global, s, n);
    }
    st_free(all);
    st_free(lens);
    st_free(displs);
    return 0;
}

typedef struct {
    uint32_t a, b;
    float v;
} rec_t;

/* An all-to-all of records: send[] grouped by destination with counts[]. */
static rec_t *exchange_recs(const rec_t *send, const int *counts, int R, uint64_t *nrecv, MPI_Datatype rt)
{
    int *rcounts = xmalloc((size_t)R * sizeof(int), "exchange"), *sd = xmalloc((size_t)R * sizeof(int), "exchange"),
        *rd = xmalloc((size_t)R * sizeof(int), "exchange");
    MPI_Alltoall(counts, 1, MPI_INT, rcounts, 1, MPI_INT, MPI_COMM_WORLD);
    uint64_t s = 0, r = 0;
    for (int i = 0; i < R; i++) {
        sd[i] = (int)s;
        rd[i] = (int)r;
        s += (uint64_t)counts[i];
        r += (uint64_t)rcounts[i];
    }
    if (!fits_int(r)) die("a rank receives more than 2^31 pairs");
    rec_t *recv = xmalloc((r + 1) * sizeof *recv, "exchange");
    MPI_Alltoallv(send, counts, sd, rt, recv, rcounts, rd, rt, MPI_COMM_WORLD);
    *nrecv = r;
    st_free(rcounts);
    st_free(sd);
    st_free(rd);
    return recv;
}

/* Sends every (a, b, v) to owner(a) (key side `by`: 0 = a, 1 = b) and returns
 * the received ones merged into rows: keys (row - beg) << 32 | column. */
static size_t to_owners(const rec_t *recs, uint64_t n, const uint64_t *beg, int R, int rank, int by,
                        uint64_t **keys_out, float **vals_out, MPI_Datatype rt)
{
    int *counts = xcalloc((size_t)R, sizeof(int), "exchange");
    for (uint64_t i = 0; i < n; i++) counts[owner_of(beg, R, by ? recs[i].b : recs[i].a)]++;
    int *pos = xmalloc((size_t)R * sizeof(int), "exchange");
    int acc = 0;
    for (int r = 0; r < R; r++) {
        pos[r] = acc;
        acc += counts[r];
    }
    rec_t *sorted = xmalloc((n + 1) * sizeof *sorted, "exchange");
    for (uint64_t i = 0; i < n; i++) sorted[pos[owner_of(beg, R, by ? recs[i].b : recs[i].a)]++] = recs[i];
    uint64_t nr;
    rec_t *recv = exchange_recs(sorted, counts, R, &nr, rt);
    st_free(sorted);
    st_free(pos);
    st_free(counts);
    uint64_t *keys = xmalloc((nr + 1) * sizeof *keys, "rows");
    float *vals = xmalloc((nr + 1) * sizeof *vals, "rows");
    for (uint64_t i = 0; i < nr; i++) {
        uint64_t row = (by ? recv[i].b : recv[i].a) - beg[rank], col = by ? recv[i].a : recv[i].b;
        keys[i] = row << 32 | col;
        vals[i] = recv[i].v;
    }
    st_free(recv);
    *keys_out = keys;
    *vals_out = vals;
    return st_pairs_sort_merge(keys, vals, nr);
}

/* Merged (row << 32 | col, value) pairs into a CSR of `rows` rows. */
static void pairs_to_csr(uint64_t *keys, float *vals, size_t n, uint32_t rows, uint32_t cols, st_csr *a)
{
    memset(a, 0, sizeof *a);
    a->rows = rows;
    a->cols = cols;
    a->nnz = n;
    a->indptr = xcalloc((size_t)rows + 1, sizeof *a->indptr, "rows");
    a->indices = xmalloc((n + 1) * sizeof *a->indices, "rows");
    for (size_t i = 0; i < n; i++) {
        a->indptr[(keys[i] >> 32) + 1]++;
        a->indices[i] = (uint32_t)keys[i];
    }
    for (uint32_t r = 0; r < rows; r++) a->indptr[r + 1] += a->indptr[r];
    a->data = vals;
    st_free(keys);
}

/* Phase 4: the rows of the other side this rank's nonzeros point at. */
typedef struct {
    uint32_t *need;    /* sorted global indices: the halo, in order */
    uint64_t nneed;
    int *rcounts, *rdispls;   /* rows received from each rank */
    uint32_t *send_rows;      /* own rows (local indices) to send, grouped by destination */
    int *scounts, *sdispls;   /* rows sent to each rank */
    uint64_t nsend, offrank;  /* rows sent in all, and to other ranks */
    float *sendbuf;
} halo_t;

static void halo_plan(st_csr *a, const uint64_t *beg, int R, int rank, uint32_t k, halo_t *h)
{
    memset(h, 0, sizeof *h);
    uint32_t *need = xmalloc((a->nnz + 1) * sizeof *need, "halo");
    memcpy(need, a->indices, a->nnz * sizeof *need);
    qsort(need, a->nnz, sizeof *need, st_cmp_u32);
    uint64_t n = 0;
    for (uint64_t i = 0; i < a->nnz; i++)
        if (n == 0 || need[n - 1] != need[i]) need[n++] = need[i];
    h->need = need;
    h->nneed = n;
    /* Rewrite the indices to halo positions. */
    for (uint64_t q = 0; q < a->nnz; q++) {
        uint32_t g = a->indices[q];
        uint64_t lo = 0, hi = n;
        while (lo < hi) {
            uint64_t mid = (lo + hi) / 2;
            if (need[mid] < g) lo = mid + 1;
            else hi = mid;
        }
        a->indices[q] = (uint32_t)lo;
    }
    h->rcounts = xcalloc((size_t)R, sizeof(int), "halo");
    h->rdispls = xmalloc((size_t)R * sizeof(int), "halo");
    h->scounts = xmalloc((size_t)R * sizeof(int), "halo");
    h->sdispls = xmalloc((size_t)R * sizeof(int), "halo");
    for (uint64_t i = 0; i < n; i++) h->rcounts[owner_of(beg, R, need[i])]++;
    MPI_Alltoall(h->rcounts, 1, MPI_INT, h->scounts, 1, MPI_INT, MPI_COMM_WORLD);
    uint64_t rs = 0, ss = 0;
    for (int r = 0; r < R; r++) {
        h->rdispls[r] = (int)rs;
        h->sdispls[r] = (int)ss;
        rs += (uint64_t)h->rcounts[r];
        ss += (uint64_t)h->scounts[r];
        if (r != rank) h->offrank += (uint64_t)h->scounts[r];
    }
    /* Tell each owner which of its rows this rank needs (the halo order). */
    h->nsend = ss;
    h->send_rows = xmalloc((ss + 1) * sizeof *h->send_rows, "halo");
    MPI_Alltoallv(need, h->rcounts, h->rdispls, MPI_UINT32_T, h->send_rows, h->scounts, h->sdispls, MPI_UINT32_T,
                  MPI_COMM_WORLD);
    for (uint64_t i = 0; i < ss; i++) h->send_rows[i] -= (uint32_t)beg[rank];
    h->sendbuf = xmalloc((ss * k + 1) * sizeof(float), "halo");
}

static void halo_exchange(halo_t *h, const float *own, float *halo, uint32_t k, MPI_Datatype rowtype)
{
    for (uint64_t i = 0; i < h->nsend; i++)
        memcpy(h->sendbuf + i * k, own + (size_t)h->send_rows[i] * k, k * sizeof(float));
    MPI_Alltoallv(h->sendbuf, h->scounts, h->sdispls, rowtype, halo, h->rcounts, h->rdispls, rowtype,
                  MPI_COMM_WORLD);
}

static void halo_free(halo_t *h)
{
    st_free(h->need);
    st_free(h->rcounts);
    st_free(h->rdispls);
    st_free(h->send_rows);
    st_free(h->scounts);
    st_free(h->sdispls);
    st_free(h->sendbuf);
}

static void allreduce_gram(const float *F, uint64_t rows, uint32_t k, float *G, float *tmp)
{
    st_als_gram(F, rows, k, tmp);
    MPI_Allreduce(tmp, G, (int)(k * k), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

/* Gathers rows (count x width of `type`) of every rank into root's out, in
 * rank order; beg gives each rank's first row. */
static void gather_rows(const void *mine, uint64_t count, const uint64_t *beg, int R, MPI_Datatype type, void *out)
{
    int *counts = xmalloc((size_t)R * sizeof(int), "gather"), *displs = xmalloc((size_t)R * sizeof(int), "gather");
    for (int r = 0; r < R; r++) {
        counts[r] = (int)(beg[r + 1] - beg[r]);
        displs[r] = (int)beg[r];
    }
    MPI_Gatherv(mine, (int)count, type, out, counts, displs, type, 0, MPI_COMM_WORLD);
    st_free(counts);
    st_free(displs);
}

/* The state of one distributed run, across its phases. */
typedef struct {
    int rank, R;
    uint32_t k, m, n, mu, ms;   /* rank, global users and segments, mine */
    st_idmap gu, gs;            /* global ids */
    uint64_t events_all;
    uint64_t *ubeg, *sbeg;      /* R + 1: each rank's first user / segment */
    MPI_Datatype rt, rowtype;
    st_csr A;                   /* my users' rows: global segment indices, raw values */
    st_csr B;                   /* my segments' columns: global user indices */
    float *cu, *cs;             /* c - 1 of A's and B's nonzeros */
    uint32_t *hist_idx;         /* A's global segment indices, kept for the history */
    double weight;              /* m n + sum (c - 1) */
    halo_t hy, hx;
    float *X, *Y, *Xh, *Yh, *GX, *GY, *Gtmp;
} dist_run;

/* 1. This rank's part of the input; the read statistics summed on rank 0. */
static int read_phase(dist_run *d, char **paths, int npaths, const st_read_opts *o, const st_weighting *w,
                      st_interactions *local, st_read_stats *stats, char *err)
{
    int rank = d->rank, R = d->R;
    st_read_stats mystats;
    memset(&mystats, 0, sizeof mystats);
    if (read_part(paths, npaths, o, w, rank, R, local, &mystats, err) != 0) return -1;
    uint64_t counts_in[3] = {mystats.lines, mystats.events, mystats.skipped}, counts[3];
    MPI_Reduce(counts_in, counts, 3, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    char *reasons = rank == 0 ? xmalloc((size_t)R * sizeof mystats.reasons, "stats") : NULL;
    MPI_Gather(mystats.reasons, (int)sizeof mystats.reasons, MPI_CHAR, reasons, (int)sizeof mystats.reasons, MPI_CHAR,
               0, MPI_COMM_WORLD);
    uint64_t skipped_each = mystats.skipped, *skipped_all = rank == 0 ? xmalloc((size_t)R * 8, "stats") : NULL;
    MPI_Gather(&skipped_each, 1, MPI_UINT64_T, skipped_all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        stats->lines += counts[0];
        stats->events += counts[1];
        /* The first skipped lines' reasons, rank by rank. */
        uint64_t kept = stats->skipped < ST_READ_KEEP_REASONS ? stats->skipped : ST_READ_KEEP_REASONS;
        for (int r = 0; r < R; r++)
            for (uint64_t i = 0; i < skipped_all[r] && i < ST_READ_KEEP_REASONS && kept < ST_READ_KEEP_REASONS; i++)
                memcpy(stats->reasons[kept++], reasons + (size_t)r * sizeof mystats.reasons + i * sizeof mystats.reasons[0],
                       sizeof mystats.reasons[0]);
        stats->skipped += counts[2];
    }
    st_free(reasons);
    st_free(skipped_all);
    return 0;
}

/* 2 and 3. Global ids, contiguous ownership blocks, and my users' rows (A)
 * moved to me from whichever rank read them. -1 with err when there is no
 * nonzero anywhere (local is freed either way). */
static int own_phase(dist_run *d, st_interactions *local, char *err)
{
    int R = d->R, rank = d->rank;
    uint32_t *lu2g, *ls2g;
    if (gather_ids(&local->users, R, &d->gu, &lu2g, err) != 0) return -1;
    if (gather_ids(&local->segments, R, &d->gs, &ls2g, err) != 0) return -1;
    d->m = d->gu.count;
    d->n = d->gs.count;
    uint64_t events_local = local->events, nnz_local = local->by_user.nnz, nnz_any = 0;
    MPI_Allreduce(&events_local, &d->events_all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&nnz_local, &nnz_any, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (nnz_any == 0) {
        st_interactions_free(local);
        st_free(lu2g);
        st_free(ls2g);
        return st_seterr(err, d->events_all ? "every event has zero weight" : "no events in the input");
    }
    d->ubeg = xmalloc(((size_t)R + 1) * 8, "ownership");
    d->sbeg = xmalloc(((size_t)R + 1) * 8, "ownership");
    for (int r = 0; r <= R; r++) {
        d->ubeg[r] = (uint64_t)d->m * (uint64_t)r / (uint64_t)R;
        d->sbeg[r] = (uint64_t)d->n * (uint64_t)r / (uint64_t)R;
    }
    d->mu = (uint32_t)(d->ubeg[rank + 1] - d->ubeg[rank]);
    d->ms = (uint32_t)(d->sbeg[rank + 1] - d->sbeg[rank]);
    MPI_Type_contiguous((int)sizeof(rec_t), MPI_BYTE, &d->rt);
    MPI_Type_commit(&d->rt);
    MPI_Type_contiguous((int)d->k, MPI_FLOAT, &d->rowtype);
    MPI_Type_commit(&d->rowtype);
    rec_t *recs = xmalloc((local->by_user.nnz + 1) * sizeof *recs, "pairs");
    for (uint32_t u = 0; u < local->by_user.rows; u++)
        for (uint64_t q = local->by_user.indptr[u]; q < local->by_user.indptr[u + 1]; q++)
            recs[q] = (rec_t){lu2g[u], ls2g[local->by_user.indices[q]], local->by_user.data[q]};
    uint64_t nrecs = local->by_user.nnz;
    st_interactions_free(local);
    st_free(lu2g);
    st_free(ls2g);
    uint64_t *keys;
    float *vals;
    size_t nown = to_owners(recs, nrecs, d->ubeg, R, rank, 0, &keys, &vals, d->rt);
    st_free(recs);
    pairs_to_csr(keys, vals, nown, d->mu, d->n, &d->A);
    return 0;
}

/* bm25's global statistics: idf per segment (n) and my users' row norms (mu). */
static void bm25_stats(const dist_run *d, const st_als_params *p, double **idf_out, double **norm_out)
{
    uint32_t n = d->n, mu = d->mu;
    uint32_t *df = xcalloc((size_t)n + 1, 4, "bm25"), *dfall = xcalloc((size_t)n + 1, 4, "bm25");
    double sums[2] = {0, 0}, sumall[2];
    double *norm = xmalloc(((size_t)mu + 1) * sizeof *norm, "bm25");
    for (uint32_t u = 0; u < mu; u++) {
        double rsum = 0;
        for (uint64_t q = d->A.indptr[u]; q < d->A.indptr[u + 1]; q++) {
            df[d->A.indices[q]]++;
            rsum += d->A.data[q];
        }
        norm[u] = rsum;
        sums[0] += rsum;
    }
    MPI_Allreduce(df, dfall, (int)n, MPI_UINT32_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(sums, sumall, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double mean = d->m ? sumall[0] / d->m : 1.0;
    if (mean <= 0) mean = 1.0;
    double *idf = xmalloc(((size_t)n + 1) * sizeof *idf, "bm25");
    for (uint32_t s = 0; s < n; s++) idf[s] = log((double)d->m) - log1p((double)dfall[s]);
    for (uint32_t u = 0; u < mu; u++) norm[u] = (1.0 - p->bm25_b) + p->bm25_b * norm[u] / mean;
    st_free(df);
    st_free(dfall);
    *idf_out = idf;
    *norm_out = norm;
}

/* eps (auto: from every rank's values), the confidences of my users'
 * nonzeros, the total weight, and my segments' columns (B) with the
 * confidences their user owners computed. */
static void confidence_phase(dist_run *d, st_trained *t)
{
    const st_als_params *p = &t->params;
    uint32_t mu = d->mu;
    if (p->eps == 0) {
        uint64_t *h = xcalloc(ST_EPS_BUCKETS, sizeof *h, "eps"), *hall = xcalloc(ST_EPS_BUCKETS, sizeof *h, "eps");
        st_als_eps_histogram(d->A.data, d->A.nnz, h);
        MPI_Allreduce(h, hall, ST_EPS_BUCKETS, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        t->params.eps = st_als_eps_of(hall);
        st_free(h);
        st_free(hall);
    }
    d->cu = xmalloc((d->A.nnz + 1) * sizeof *d->cu, "confidence");
    double *idf = NULL, *norm = NULL;
    if (p->confidence == ST_CONF_BM25) bm25_stats(d, p, &idf, &norm);
    double wlocal = 0;
    for (uint32_t u = 0; u < mu; u++)
        for (uint64_t q = d->A.indptr[u]; q < d->A.indptr[u + 1]; q++) {
            d->cu[q] = st_als_conf1(p, d->A.data[q], idf ? idf[d->A.indices[q]] : 0, norm ? norm[u] : 1);
            wlocal += d->cu[q];
        }
    st_free(idf);
    st_free(norm);
    MPI_Allreduce(&wlocal, &d->weight, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    d->weight += (double)d->m * d->n;
    rec_t *recs = xmalloc((d->A.nnz + 1) * sizeof *recs, "pairs");
    for (uint32_t u = 0; u < mu; u++)
        for (uint64_t q = d->A.indptr[u]; q < d->A.indptr[u + 1]; q++)
            recs[q] = (rec_t){(uint32_t)(d->ubeg[d->rank] + u), d->A.indices[q], d->cu[q]};
    uint64_t *keys;
    float *vals;
    size_t nown = to_owners(recs, d->A.nnz, d->sbeg, d->R, d->rank, 1, &keys, &vals, d->rt);
    st_free(recs);
    pairs_to_csr(keys, vals, nown, d->ms, d->m, &d->B);
    d->cs = d->B.data; /* data = c - 1 */
    d->B.data = NULL;
    /* Keep the global segment index of my users' nonzeros for the history:
     * the halo plan rewrites A.indices. */
    d->hist_idx = xmalloc((d->A.nnz + 1) * sizeof *d->hist_idx, "history");
    memcpy(d->hist_idx, d->A.indices, d->A.nnz * sizeof *d->hist_idx);
}

/* 4. Halos (which factor rows each rank fetches from whom) and my factors,
 * initialised from the ids as a single process would. */
static void halo_phase(dist_run *d, const st_als_params *p, st_dist_info *info)
{
    uint32_t k = d->k;
    halo_plan(&d->A, d->sbeg, d->R, d->rank, k, &d->hy);
    halo_plan(&d->B, d->ubeg, d->R, d->rank, k, &d->hx);
    d->X = st_aligned_alloc(64, ((size_t)d->mu + 1) * k * sizeof(float));
    d->Y = st_aligned_alloc(64, ((size_t)d->ms + 1) * k * sizeof(float));
    d->Yh = st_aligned_alloc(64, (d->hy.nneed + 1) * k * sizeof(float));
    d->Xh = st_aligned_alloc(64, (d->hx.nneed + 1) * k * sizeof(float));
    d->GX = st_aligned_alloc(64, (size_t)k * k * sizeof(float));
    d->GY = st_aligned_alloc(64, (size_t)k * k * sizeof(float));
    d->Gtmp = st_aligned_alloc(64, (size_t)k * k * sizeof(float));
    if (!d->X || !d->Y || !d->Yh || !d->Xh || !d->GX || !d->GY || !d->Gtmp) die("factors");
    for (uint32_t u = 0; u < d->mu; u++) {
        size_t len;
        const char *id = st_idmap_name(&d->gu, (uint32_t)(d->ubeg[d->rank] + u), &len);
        st_als_init_row(p, id, len, 0, d->X + (size_t)u * k);
    }
    for (uint32_t s = 0; s < d->ms; s++) {
        size_t len;
        const char *id = st_idmap_name(&d->gs, (uint32_t)(d->sbeg[d->rank] + s), &len);
        st_als_init_row(p, id, len, 1, d->Y + (size_t)s * k);
    }
    uint64_t off[2] = {d->hy.offrank, d->hx.offrank}, offall[2];
    MPI_Allreduce(off, offall, 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    info->halo_bytes = (offall[0] + offall[1]) * k * sizeof(float);
    /* Two k x k float Gram matrices and two doubles per iteration, all-reduced. */
    info->allreduce_bytes = 2 * (uint64_t)k * k * sizeof(float) + 2 * sizeof(double);
}

/* 5. The iterations: users, then segments, each with the halo rows it
 * needs; the loss summed across ranks. */
static int iterate_phase(dist_run *d, st_trained *t, const st_train_hooks *hooks, char *err)
{
    const st_als_params *p = &t->params;
    uint32_t k = d->k;
    double *loss = st_realloc(t->loss, ((size_t)p->iterations + 1) * sizeof *loss);
    if (!loss) die("loss history");
    t->loss = loss;
    t->iterations = 0;
    t->weight = d->weight;
    allreduce_gram(d->Y, d->ms, k, d->GY, d->Gtmp);
    int rc = 0;
    while (t->iterations < p->iterations) {
        double it0 = st_now(), seg_part = 0, local_loss, total;
        halo_exchange(&d->hy, d->Y, d->Yh, k, d->rowtype);
        rc = st_als_solve_rows(p, &d->A, d->cu, d->Yh, d->GY, d->X, NULL, err);
        if (st_dist_any_failed(rc)) break;
        allreduce_gram(d->X, d->mu, k, d->GX, d->Gtmp);
        halo_exchange(&d->hx, d->X, d->Xh, k, d->rowtype);
        rc = st_als_solve_rows(p, &d->B, d->cs, d->Xh, d->GX, d->Y, &seg_part, err);
        if (st_dist_any_failed(rc)) break;
        allreduce_gram(d->Y, d->ms, k, d->GY, d->Gtmp);
        local_loss = seg_part;
        for (uint32_t u = 0; u < d->mu; u++) {
            const float *xr = d->X + (size_t)u * k;
            double sq = 0;
            for (uint32_t i = 0; i < k; i++) sq += (double)xr[i] * xr[i];
            local_loss += st_als_row_lambda(p, d->A.indptr[u + 1] - d->A.indptr[u], d->n) * sq;
        }
        MPI_Allreduce(&local_loss, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        for (size_t i = 0; i < (size_t)k * k; i++) total += (double)d->GX[i] * d->GY[i];
        double dt = st_now() - it0;
        t->seconds += dt;
        t->loss[t->iterations++] = total / d->weight;
        int stop = hooks && hooks->progress ? hooks->progress(hooks->ctx, t, dt) != 0 : 0, any;
        MPI_Allreduce(&stop, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any) {
            t->stopped = 1;
            break;
        }
    }
    t->m = d->m;
    t->n = d->n;
    t->k = k;
    return rc;
}

/* 6. Rank 0 gathers the factors, and the history into x. */
static void gather_phase(dist_run *d, st_trained *t, st_interactions *x, char *err)
{
    int rank = d->rank, R = d->R;
    uint32_t m = d->m, n = d->n, k = d->k, mu = d->mu;
    if (!fits_int(m) || !fits_int(n)) die("more than 2^31 rows");
    if (rank == 0) {
        st_free(t->X);
        st_free(t->Y);
        t->X = st_aligned_alloc(64, ((size_t)m + 1) * k * sizeof(float));
        t->Y = st_aligned_alloc(64, ((size_t)n + 1) * k * sizeof(float));
        if (!t->X || !t->Y) die("gathered factors");
    }
    gather_rows(d->X, mu, d->ubeg, R, d->rowtype, t->X);
    gather_rows(d->Y, d->ms, d->sbeg, R, d->rowtype, t->Y);
    uint64_t *rowlen = xmalloc(((size_t)mu + 1) * 8, "history");
    for (uint32_t u = 0; u < mu; u++) rowlen[u] = d->A.indptr[u + 1] - d->A.indptr[u];
    uint64_t *lens = rank == 0 ? xmalloc(((size_t)m + 1) * 8, "history") : NULL;
    gather_rows(rowlen, mu, d->ubeg, R, MPI_UINT64_T, lens);
    st_free(rowlen);
    /* Nonzeros per rank, then the indices and values in rank order. */
    uint64_t mynnz = d->A.nnz, *nnzs = xmalloc(((size_t)R + 1) * 8, "history");
    MPI_Allgather(&mynnz, 1, MPI_UINT64_T, nnzs, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    uint64_t *nbeg = xmalloc(((size_t)R + 1) * 8, "history");
    nbeg[0] = 0;
    for (int r = 0; r < R; r++) nbeg[r + 1] = nbeg[r] + nnzs[r];
    if (!fits_int(nbeg[R])) die("more than 2^31 nonzeros to gather");
    if (rank == 0) {
        st_csr *h = &x->by_user;
        h->rows = m;
        h->cols = n;
        h->nnz = nbeg[R];
        h->indptr = xmalloc(((size_t)m + 1) * 8, "history");
        h->indices = xmalloc((nbeg[R] + 1) * 4, "history");
        h->data = xmalloc((nbeg[R] + 1) * 4, "history");
        h->indptr[0] = 0;
        for (uint32_t u = 0; u < m; u++) h->indptr[u + 1] = h->indptr[u] + lens[u];
    }
    gather_rows(d->hist_idx, d->A.nnz, nbeg, R, MPI_UINT32_T, rank == 0 ? x->by_user.indices : NULL);
    gather_rows(d->A.data, d->A.nnz, nbeg, R, MPI_FLOAT, rank == 0 ? x->by_user.data : NULL);
    st_free(lens);
    st_free(nnzs);
    st_free(nbeg);
    if (rank == 0) {
        x->users = d->gu;
        x->segments = d->gs;
        memset(&d->gu, 0, sizeof d->gu);
        memset(&d->gs, 0, sizeof d->gs);
        x->events = d->events_all;
        if (st_csr_transpose(&x->by_user, &x->by_segment, 0, err) != 0) die("segment index");
    }
}

static void dist_run_free(dist_run *d)
{
    if (d->ubeg) { /* the datatypes exist once ownership was decided */
        MPI_Type_free(&d->rt);
        MPI_Type_free(&d->rowtype);
    }
    halo_free(&d->hy);
    halo_free(&d->hx);
    st_free(d->X);
    st_free(d->Y);
    st_free(d->Xh);
    st_free(d->Yh);
    st_free(d->GX);
    st_free(d->GY);
    st_free(d->Gtmp);
    st_free(d->cu);
    st_free(d->cs);
    st_free(d->hist_idx);
    st_csr_free(&d->A);
    st_csr_free(&d->B);
    st_free(d->ubeg);
    st_free(d->sbeg);
    st_idmap_free(&d->gu);
    st_idmap_free(&d->gs);
}

int st_dist_train(char **paths, int npaths, const st_read_opts *o, const st_weighting *w, st_trained *t,
                  st_interactions *x, st_read_stats *stats, const st_train_hooks *hooks, int *is_root,
                  st_dist_info *info, char *err)
{
    ensure_mpi();
    dist_run d;
    memset(&d, 0, sizeof d);
    MPI_Comm_rank(MPI_COMM_WORLD, &d.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d.R);
    memset(info, 0, sizeof *info);
    memset(x, 0, sizeof *x);
    info->rank = d.rank;
    info->ranks = d.R;
    *is_root = d.rank == 0;
    d.k = t->params.factors;
    const char *bad = st_als_check(&t->params);
    if (bad) return st_seterr(err, "%s", bad);
    /* Every rank would need every segment's user count before its first
     * half-step, and the segment half-step a weight per row: not built. */
    if (t->params.missing == ST_MISSING_POPULARITY)
        return st_seterr(err, "--missing-weight popularity is not supported under mpirun; train it in one process, "
                              "or use --missing-weight uniform");
    double t0 = st_now();
    st_interactions local;
    if (read_phase(&d, paths, npaths, o, w, &local, stats, err) != 0) return -1;
    info->read_seconds = st_now() - t0;
    t0 = st_now();
    if (own_phase(&d, &local, err) != 0) {
        dist_run_free(&d);
        return -1;
    }
    confidence_phase(&d, t);
    halo_phase(&d, &t->params, info);
    info->setup_seconds = st_now() - t0;
    int rc = iterate_phase(&d, t, hooks, err);
    if (rc == 0) gather_phase(&d, t, x, err);
    /* The formula of docs/SCALING.md: each rank fetches the rows its
     * nonzeros point at, of which a fraction (R - 1) / R lives elsewhere when
     * ownership is independent of the data. */
    uint64_t needs[2] = {d.hy.nneed, d.hx.nneed}, needs_all[2];
    MPI_Allreduce(needs, needs_all, 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    info->formula_bytes =
        (uint64_t)((double)(needs_all[0] + needs_all[1]) * (d.R - 1) / d.R * d.k * sizeof(float));
    dist_run_free(&d);
    return rc != 0 ? -1 : 0;
}

#endif
