/* interactions: events -> distinct (user, segment, r) -> CSR and CSC.
 *
 * The builder appends (key = user << 32 | segment, value) to two parallel
 * arrays. When they fill up it sorts them in place and merges duplicates;
 * if that frees less than half, the arrays grow by half. At the end one more
 * compaction leaves the distinct pairs sorted by user then segment, which is
 * already the CSR order: the low halves of the keys are packed down into the
 * index array in place and the values become the data array. No second copy
 * of the pairs ever exists.
 *
 * Time decay relative to the newest event (no --now) is computed without
 * storing timestamps: values are kept relative to a reference time tref, an
 * event at t contributes w * 2^((t - tref) / h), and when that factor grows
 * past 2^32 every value is rescaled and tref moves forward. At the end all
 * values are scaled by 2^((tref - tmax) / h).
 */
#include "interactions.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util.h"

void st_weighting_default(st_weighting *w)
{
    memset(w, 0, sizeof *w);
    w->default_kind_weight = 1.0;
    w->now = NAN;
}

void st_weighting_free(st_weighting *w)
{
    for (int i = 0; i < w->nkinds; i++) st_free(w->kind_names[i]);
    st_free(w->kind_names);
    st_free(w->kind_weights);
    w->kind_names = NULL;
    w->kind_weights = NULL;
    w->nkinds = 0;
}

int st_weighting_parse_kinds(st_weighting *w, const char *spec, char *err)
{
    st_weighting_free(w);
    char *copy = st_strdup(spec);
    if (!copy) return st_seterr(err, "out of memory");
    int n = 1;
    for (const char *p = spec; *p; p++) n += *p == ',';
    w->kind_names = st_calloc((size_t)n, sizeof *w->kind_names);
    w->kind_weights = st_calloc((size_t)n, sizeof *w->kind_weights);
    if (!w->kind_names || !w->kind_weights) {
        st_free(copy);
        st_weighting_free(w);
        return st_seterr(err, "out of memory");
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        double v;
        if (!eq || eq == tok) {
            rc = st_seterr(err, "bad kind weight '%s' (expected KIND=WEIGHT)", tok);
            break;
        }
        *eq = '\0';
        if (st_parse_double(eq + 1, &v) != 0 || v < 0) {
            rc = st_seterr(err, "bad weight for kind '%s': '%s' (a finite number >= 0)", tok, eq + 1);
            break;
        }
        if (strcmp(tok, "*") == 0) {
            w->default_kind_weight = v;
            continue;
        }
        w->kind_names[w->nkinds] = st_strdup(tok);
        if (!w->kind_names[w->nkinds]) {
            rc = st_seterr(err, "out of memory");
            break;
        }
        w->kind_weights[w->nkinds++] = v;
    }
    st_free(copy);
    if (rc) st_weighting_free(w);
    return rc;
}

double st_weighting_kind(const st_weighting *w, const char *kind, size_t len)
{
    if (kind) {
        for (int i = 0; i < w->nkinds; i++)
            if (strlen(w->kind_names[i]) == len && memcmp(w->kind_names[i], kind, len) == 0)
                return w->kind_weights[i];
    }
    return w->default_kind_weight;
}

struct st_builder {
    st_weighting w;       /* shallow copy; kind arrays owned by the caller */
    st_interactions x;
    uint64_t *keys;
    float *vals;
    size_t n, cap;
    double tref, tmax;     /* decay bookkeeping (relative mode) */
    int have_t;
};

#define INITIAL_CAP (1u << 12)

st_builder *st_builder_new(const st_weighting *w, char *err)
{
    st_builder *b = st_calloc(1, sizeof *b);
    if (!b) {
        st_seterr(err, "out of memory");
        return NULL;
    }
    b->w = *w;
    st_idmap_init(&b->x.users);
    st_idmap_init(&b->x.segments);
    b->keys = st_malloc(INITIAL_CAP * sizeof *b->keys);
    b->vals = st_malloc(INITIAL_CAP * sizeof *b->vals);
    if (!b->keys || !b->vals) {
        st_seterr(err, "out of memory");
        st_builder_free(b);
        return NULL;
    }
    b->cap = INITIAL_CAP;
    return b;
}

void st_builder_free(st_builder *b)
{
    if (!b) return;
    st_free(b->keys);
    st_free(b->vals);
    st_interactions_free(&b->x);
    st_free(b);
}

/* In-place sort of parallel (key, value) arrays: introsort (quicksort with a
 * median of three, insertion sort for short runs, heapsort past a depth
 * limit), so no temporary copy of the pairs is needed. */
static inline void swap2(uint64_t *k, float *v, size_t i, size_t j)
{
    uint64_t tk = k[i];
    k[i] = k[j];
    k[j] = tk;
    float tv = v[i];
    v[i] = v[j];
    v[j] = tv;
}

static void sift_down(uint64_t *k, float *v, size_t start, size_t n)
{
    size_t root = start;
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && k[child + 1] > k[child]) child++;
        if (k[root] >= k[child]) return;
        swap2(k, v, root, child);
        root = child;
    }
}

static void heap_sort(uint64_t *k, float *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;) sift_down(k, v, i, n);
    for (size_t end = n; end-- > 1;) {
        swap2(k, v, 0, end);
        sift_down(k, v, 0, end);
    }
}

static void intro_sort(uint64_t *k, float *v, size_t n, int depth)
{
    while (n > 24) {
        if (depth-- == 0) {
            heap_sort(k, v, n);
            return;
        }
        size_t mid = n / 2;
        if (k[mid] < k[0]) swap2(k, v, mid, 0);
        if (k[n - 1] < k[0]) swap2(k, v, n - 1, 0);
        if (k[n - 1] < k[mid]) swap2(k, v, n - 1, mid);
        uint64_t pivot = k[mid];
        size_t i = 0, j = n - 1;
        for (;;) {
            while (k[i] < pivot) i++;
            while (k[j] > pivot) j--;
            if (i >= j) break;
            swap2(k, v, i, j);
            i++;
            j--;
        }
        /* [0, j] <= pivot <= [j+1, n): recurse on the smaller side. */
        size_t left = j + 1;
        if (left < n - left) {
            intro_sort(k, v, left, depth);
            k += left;
            v += left;
            n -= left;
        } else {
            intro_sort(k + left, v + left, n - left, depth);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        uint64_t key = k[i];
        float val = v[i];
        size_t j = i;
        while (j > 0 && k[j - 1] > key) {
            k[j] = k[j - 1];
            v[j] = v[j - 1];
            j--;
        }
        k[j] = key;
        v[j] = val;
    }
}

size_t st_pairs_sort_merge(uint64_t *keys, float *vals, size_t n)
{
    if (n == 0) return 0;
    int depth = 2;
    for (size_t s = n; s > 1; s >>= 1) depth += 2;
    intro_sort(keys, vals, n, depth);
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        uint64_t key = keys[i];
        double sum = 0;
        while (i < n && keys[i] == key) sum += vals[i++];
        keys[w] = key;
        vals[w] = (float)sum;
        w++;
    }
    return w;
}

/* Sorts and merges duplicates, keeping zero sums for now (a later event may
 * make them non-zero). */
static void compact(st_builder *b) { b->n = st_pairs_sort_merge(b->keys, b->vals, b->n); }

int st_builder_newest(const st_builder *b, double *t)
{
    if (!b->have_t) return 0;
    *t = b->tmax;
    return 1;
}

void st_builder_set_newest(st_builder *b, double t)
{
    if (b->have_t && t > b->tmax) b->tmax = t;
}

static int grow(st_builder *b, char *err)
{
    compact(b);
    if (b->n <= b->cap / 2) return 0;
    size_t cap = b->cap + b->cap / 2;
    uint64_t *k = st_realloc(b->keys, cap * sizeof *k);
    if (!k) return st_seterr(err, "out of memory (%zu distinct pairs)", b->n);
    b->keys = k;
    float *v = st_realloc(b->vals, cap * sizeof *v);
    if (!v) return st_seterr(err, "out of memory (%zu distinct pairs)", b->n);
    b->vals = v;
    b->cap = cap;
    return 0;
}

int st_builder_add(st_builder *b, const st_event *ev, char *err)
{
    double w = ev->weight * st_weighting_kind(&b->w, ev->kind, ev->kind_len);
    if (b->w.half_life > 0) {
        if (!ev->has_ts)
            return st_seterr(err, "%s:%llu: no timestamp, but time decay (--half-life) needs one", ev->file,
                             (unsigned long long)ev->line);
        double h = b->w.half_life;
        if (b->w.has_now) {
            double age = b->w.now - ev->ts;
            w *= age <= 0 ? 1.0 : exp2(-age / h);
        } else {
            if (!b->have_t) {
                b->tref = b->tmax = ev->ts;
                b->have_t = 1;
            }
            if (ev->ts > b->tmax) b->tmax = ev->ts;
            double e = (ev->ts - b->tref) / h;
            if (e > 32) {
                /* Move the reference forward: rescale everything stored. */
                double s = exp2(-(b->tmax - b->tref) / h);
                for (size_t i = 0; i < b->n; i++) b->vals[i] = (float)(b->vals[i] * s);
                b->tref = b->tmax;
                e = (ev->ts - b->tref) / h;
            }
            w *= exp2(e);
        }
    }
    uint32_t u, s;
    if (st_idmap_intern(&b->x.users, ev->user, ev->user_len, &u, NULL, err) != 0) return -1;
    if (st_idmap_intern(&b->x.segments, ev->segment, ev->segment_len, &s, NULL, err) != 0) return -1;
    if (b->n == b->cap && grow(b, err) != 0) return -1;
    b->keys[b->n] = (uint64_t)u << 32 | s;
    b->vals[b->n] = (float)w;
    b->n++;
    b->x.events++;
    return 0;
}

int st_builder_add_cb(const st_event *ev, void *ctx, char *err) { return st_builder_add(ctx, ev, err); }

void st_csr_free(st_csr *a)
{
    st_free(a->indptr);
    st_free(a->indices);
    st_free(a->data);
    memset(a, 0, sizeof *a);
}

void st_interactions_free(st_interactions *x)
{
    st_idmap_free(&x->users);
    st_idmap_free(&x->segments);
    st_csr_free(&x->by_user);
    st_csr_free(&x->by_segment);
}

int st_csr_transpose(const st_csr *a, st_csr *out, int with_data, char *err)
{
    memset(out, 0, sizeof *out);
    out->rows = a->cols;
    out->cols = a->rows;
    out->nnz = a->nnz;
    out->indptr = st_calloc((size_t)a->cols + 1, sizeof *out->indptr);
    out->indices = st_malloc(a->nnz * sizeof *out->indices);
    out->data = with_data ? st_malloc(a->nnz * sizeof *out->data) : NULL;
    if (!out->indptr || !out->indices || (with_data && !out->data)) {
        st_csr_free(out);
        return st_seterr(err, "out of memory transposing %llu nonzeros", (unsigned long long)a->nnz);
    }
    for (uint64_t i = 0; i < a->nnz; i++) out->indptr[a->indices[i] + 1]++;
    for (uint32_t c = 0; c < a->cols; c++) out->indptr[c + 1] += out->indptr[c];
    /* indptr[c] is used as the write cursor, then shifted back. */
    for (uint32_t r = 0; r < a->rows; r++) {
        for (uint64_t p = a->indptr[r]; p < a->indptr[r + 1]; p++) {
            uint32_t c = a->indices[p];
            uint64_t dst = out->indptr[c]++;
            out->indices[dst] = r;
            if (with_data) out->data[dst] = a->data[p];
        }
    }
    for (uint32_t c = a->cols; c > 0; c--) out->indptr[c] = out->indptr[c - 1];
    out->indptr[0] = 0;
    return 0;
}

static int finish(st_builder *b, st_interactions *out, int allow_empty, char *err);

int st_builder_finish(st_builder *b, st_interactions *out, char *err) { return finish(b, out, 0, err); }

int st_builder_finish_any(st_builder *b, st_interactions *out, char *err) { return finish(b, out, 1, err); }

static int finish(st_builder *b, st_interactions *out, int allow_empty, char *err)
{
    memset(out, 0, sizeof *out);
    if (b->x.events == 0 && !allow_empty) {
        st_builder_free(b);
        return st_seterr(err, "no events");
    }
    compact(b);
    if (b->w.half_life > 0 && !b->w.has_now && b->have_t) {
        double s = exp2(-(b->tmax - b->tref) / b->w.half_life);
        for (size_t i = 0; i < b->n; i++) b->vals[i] = (float)(b->vals[i] * s);
        b->x.newest = b->tmax;
        b->x.has_newest = 1;
    }
    /* Drop zero values; pack the segment halves of the keys into a u32 array
     * written over the start of the key array (write position <= read). */
    st_interactions *x = &b->x;
    uint32_t m = x->users.count, n = x->segments.count;
    uint64_t *indptr = st_calloc((size_t)m + 1, sizeof *indptr);
    if (!indptr) {
        st_builder_free(b);
        return st_seterr(err, "out of memory");
    }
    uint32_t *idx = (uint32_t *)b->keys;
    size_t w = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!(b->vals[i] > 0)) continue;
        uint64_t key = b->keys[i];
        indptr[(key >> 32) + 1]++;
        idx[w] = (uint32_t)key;
        b->vals[w] = b->vals[i];
        w++;
    }
    if (w == 0 && !allow_empty) {
        st_free(indptr);
        st_builder_free(b);
        return st_seterr(err, "every event has zero weight");
    }
    for (uint32_t u = 0; u < m; u++) indptr[u + 1] += indptr[u];
    uint32_t *indices = st_realloc(b->keys, w * sizeof *indices);
    if (indices) b->keys = (uint64_t *)indices; /* a failed shrink keeps the larger block */
    float *data = st_realloc(b->vals, w * sizeof *data);
    if (data) b->vals = data;
    x->by_user.rows = m;
    x->by_user.cols = n;
    x->by_user.nnz = w;
    x->by_user.indptr = indptr;
    x->by_user.indices = (uint32_t *)b->keys;
    x->by_user.data = b->vals;
    b->keys = NULL;
    b->vals = NULL;
    if (st_csr_transpose(&x->by_user, &x->by_segment, 0, err) != 0) {
        st_builder_free(b);
        return -1;
    }
    *out = *x;
    memset(x, 0, sizeof *x);
    st_builder_free(b);
    return 0;
}

uint64_t st_interactions_fingerprint(const st_interactions *x)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    const st_csr *a = &x->by_user;
    XXH3_64bits_update(&st, &a->rows, sizeof a->rows);
    XXH3_64bits_update(&st, &a->cols, sizeof a->cols);
    XXH3_64bits_update(&st, a->indptr, ((size_t)a->rows + 1) * sizeof *a->indptr);
    XXH3_64bits_update(&st, a->indices, a->nnz * sizeof *a->indices);
    XXH3_64bits_update(&st, a->data, a->nnz * sizeof *a->data);
    XXH3_64bits_update(&st, x->users.bytes, x->users.offsets[x->users.count]);
    XXH3_64bits_update(&st, x->segments.bytes, x->segments.offsets[x->segments.count]);
    return XXH3_64bits_digest(&st);
}

int st_interactions_read(char **paths, int npaths, const st_read_opts *o, const st_weighting *w,
                         st_interactions *x, st_read_stats *stats, char *err)
{
    memset(x, 0, sizeof *x);
    st_builder *b = st_builder_new(w, err);
    if (!b) return -1;
    for (int i = 0; i < npaths; i++) {
        if (st_events_read(paths[i], o, st_builder_add_cb, b, stats, err) != 0) {
            st_builder_free(b);
            return -1;
        }
    }
    char why[ST_ERRLEN];
    if (st_builder_finish(b, x, why) != 0) {
        if (npaths == 1)
            return st_seterr(err, "%s: %s", strcmp(paths[0], "-") == 0 ? "<stdin>" : paths[0], why);
        return st_seterr(err, "%s in %d input files", why, npaths);
    }
    return 0;
}
