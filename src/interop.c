/* interop: .npy and text factors in, .npy, text and JSON out.
 *
 * The .npy format (NumPy's own, version 1.0 written, 1.0 to 3.0 read): the
 * magic "\x93NUMPY", two version bytes, a little-endian header length, a
 * Python dict literal with 'descr', 'fortran_order' and 'shape', padded with
 * spaces to a multiple of 64 bytes, then the raw array.
 */
#include "interop.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "interactions.h"
#include "util.h"

/* ---- .npy ------------------------------------------------------------------ */

typedef struct {
    const float *data;
    uint64_t rows;
    uint32_t cols;
} npy_src;

static int npy_write_fn(FILE *f, void *ctx, char *err)
{
    const npy_src *s = ctx;
    char dict[160];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%llu, %u), }",
                      (unsigned long long)s->rows, s->cols);
    size_t total = st_align_up(10 + (size_t)dl + 1, 64);
    uint16_t hl = (uint16_t)(total - 10);
    char head[256];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (char)(hl & 0xff);
    head[9] = (char)(hl >> 8);
    memcpy(head + 10, dict, (size_t)dl);
    memset(head + 10 + dl, ' ', total - 10 - (size_t)dl - 1);
    head[total - 1] = '\n';
    if (fwrite(head, 1, total, f) != total) return st_seterr(err, "write failed: %s", strerror(errno));
    uint64_t n = s->rows * s->cols;
    if (n && fwrite(s->data, sizeof(float), n, f) != n) return st_seterr(err, "write failed: %s", strerror(errno));
    return 0;
}

int st_npy_write(const char *path, const float *data, uint64_t rows, uint32_t cols, char *err)
{
    npy_src s = {data, rows, cols};
    return st_write_atomic(path, npy_write_fn, &s, err);
}

/* Finds 'key': in a header dict and returns a pointer just past the colon. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(h, pat);
    }
    if (!p) return NULL;
    p = strchr(p + strlen(pat), ':');
    if (!p) return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

int st_npy_read(const char *path, float **data, uint64_t *rows, uint32_t *cols, char *err)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return st_seterr(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char pre[12];
    int rc = -1;
    char *h = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st_seterr(err, "%s: not a .npy file (bad magic)", path);
        goto out;
    }
    uint32_t hl;
    if (pre[6] == 1) {
        hl = pre[8] | (uint32_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) goto trunc;
        hl = pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    } else {
        st_seterr(err, "%s: .npy version %u.%u is not supported", path, pre[6], pre[7]);
        goto out;
    }
    if (hl > (1u << 20)) {
        st_seterr(err, "%s: .npy header too long (%u bytes)", path, hl);
        goto out;
    }
    h = st_malloc(hl + 1);
    if (!h) {
        st_seterr(err, "%s: out of memory", path);
        goto out;
    }
    if (fread(h, 1, hl, f) != hl) goto trunc;
    h[hl] = '\0';
    const char *descr = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order"), *shape = dict_value(h, "shape");
    if (!descr || !fo || !shape) {
        st_seterr(err, "%s: .npy header lacks descr, fortran_order or shape", path);
        goto out;
    }
    int f8;
    if (descr[0] != '\'' && descr[0] != '"') {
        st_seterr(err, "%s: .npy header has a malformed descr", path);
        goto out;
    }
    if (strncmp(descr + 1, "<f4", 3) == 0) f8 = 0;
    else if (strncmp(descr + 1, "<f8", 3) == 0) f8 = 1;
    else {
        st_seterr(err, "%s: .npy dtype %.8s is not supported (float32 or float64, little-endian)", path, descr);
        goto out;
    }
    int fortran = strncmp(fo, "True", 4) == 0;
    unsigned long long r, c;
    if (sscanf(shape, "(%llu, %llu)", &r, &c) != 2 || c == 0 || c > 1024) {
        st_seterr(err, "%s: expected a 2-D array of at most 1024 columns, shape is %.40s", path, shape);
        goto out;
    }
    size_t n, bytes;
    if (st_mul_size((size_t)r, (size_t)c, &n) || st_mul_size(n, f8 ? 8 : 4, &bytes)) {
        st_seterr(err, "%s: array too large", path);
        goto out;
    }
    /* The shape must fit in what the file holds before anything is
     * allocated for it: a forged shape must not ask for terabytes. */
    struct stat fst;
    long pos = ftell(f);
    if (fstat(fileno(f), &fst) != 0 || pos < 0) {
        st_seterr(err, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if ((uint64_t)fst.st_size < (uint64_t)pos || bytes > (uint64_t)fst.st_size - (uint64_t)pos) {
        st_seterr(err, "%s: truncated .npy file: shape (%llu, %llu) needs %zu bytes of data, the file holds %lld", path,
                  r, c, bytes, (long long)fst.st_size - (long long)pos);
        goto out;
    }
    void *raw = st_malloc(bytes ? bytes : 1);
    float *out = st_aligned_alloc(64, (n ? n : 1) * sizeof(float));
    if (!raw || !out) {
        st_free(raw);
        st_free(out);
        st_seterr(err, "%s: out of memory", path);
        goto out;
    }
    if (fread(raw, 1, bytes, f) != bytes) {
        st_free(raw);
        st_free(out);
        goto trunc;
    }
    for (size_t i = 0; i < r; i++)
        for (size_t j = 0; j < c; j++) {
            size_t src = fortran ? j * r + i : i * c + j;
            out[i * c + j] = f8 ? (float)((double *)raw)[src] : ((float *)raw)[src];
        }
    st_free(raw);
    *data = out;
    *rows = r;
    *cols = (uint32_t)c;
    rc = 0;
    goto out;
trunc:
    st_seterr(err, "%s: truncated .npy file", path);
out:
    st_free(h);
    fclose(f);
    return rc;
}

/* ---- export ------------------------------------------------------------------ */

typedef struct {
    const st_model *m;
    int which; /* 0 users, 1 segments, 2 history */
} text_src;

/* Writes an id as a CSV field, quoted when it needs to be. */
static int csv_field(FILE *f, const char *s, size_t n)
{
    int quote = n == 0 || s[0] == ' ' || s[n - 1] == ' ';
    for (size_t i = 0; i < n && !quote; i++) quote = s[i] == ',' || s[i] == '"' || s[i] == '\t' || s[i] == '\r';
    if (!quote) return fwrite(s, 1, n, f) == n ? 0 : -1;
    if (fputc('"', f) == EOF) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' && fputc('"', f) == EOF) return -1;
        if (fputc(s[i], f) == EOF) return -1;
    }
    return fputc('"', f) == EOF ? -1 : 0;
}

static int text_write_fn(FILE *f, void *ctx, char *err)
{
    const text_src *t = ctx;
    const st_model *m = t->m;
    size_t len;
    if (t->which < 2) {
        const st_idmap *ids = t->which == 0 ? &m->user_ids : &m->segment_ids;
        for (uint32_t i = 0; i < ids->count; i++) {
            const char *s = st_idmap_name(ids, i, &len);
            if (fwrite(s, 1, len, f) != len || fputc('\n', f) == EOF) return st_seterr(err, "write failed");
        }
        return 0;
    }
    if (fputs("user,segment,weight\n", f) == EOF) return st_seterr(err, "write failed");
    for (uint32_t u = 0; u < m->users; u++) {
        const char *us = st_idmap_name(&m->user_ids, u, &len);
        size_t ul = len;
        for (uint64_t q = m->hist_ptr[u]; q < m->hist_ptr[u + 1]; q++) {
            const char *ss = st_idmap_name(&m->segment_ids, m->hist_idx[q], &len);
            if (csv_field(f, us, ul) || fputc(',', f) == EOF || csv_field(f, ss, len) ||
                fprintf(f, ",%.9g\n", (double)m->hist_val[q]) < 0)
                return st_seterr(err, "write failed");
        }
    }
    return 0;
}

static int json_write_fn(FILE *f, void *ctx, char *err)
{
    const st_model *m = ctx;
    const st_model_header *h = &m->h;
    json_t *o = json_object(), *meta = json_object();
    json_object_set_new(o, "format", json_string("starling export"));
    json_object_set_new(o, "users", json_integer(h->users));
    json_object_set_new(o, "segments", json_integer(h->segments));
    json_object_set_new(o, "factors", json_integer(h->factors));
    json_object_set_new(o, "iterations", json_integer(h->iterations));
    json_object_set_new(o, "solver", json_string(st_solver_name((st_solver)h->solver)));
    json_object_set_new(o, "cg_steps", json_integer(h->cg_steps));
    json_object_set_new(o, "confidence", json_string(st_conf_name((st_conf_scheme)h->confidence)));
    json_object_set_new(o, "regularization", json_string(st_reg_name((st_reg_scheme)h->regularization)));
    json_object_set_new(o, "lambda", json_real(h->lambda));
    json_object_set_new(o, "alpha", json_real(h->alpha));
    json_object_set_new(o, "eps", json_real(h->eps));
    json_object_set_new(o, "bm25_k1", json_real(h->bm25_k1));
    json_object_set_new(o, "bm25_b", json_real(h->bm25_b));
    json_object_set_new(o, "reg_alpha0", json_real(h->reg_alpha0));
    json_object_set_new(o, "reg_nu", json_real(h->reg_nu));
    json_object_set_new(o, "unobserved_weight", json_real(h->unobserved_weight > 0 ? h->unobserved_weight : 1));
    json_object_set_new(o, "seed", json_integer((json_int_t)h->seed));
    json_object_set_new(o, "prior_weight", json_real(h->prior_weight));
    json_object_set_new(o, "prior_shape", json_string(st_prior_shape_name(h->flags & ST_MODEL_PRIOR_LINEAR)));
    if (h->flags & ST_MODEL_CALIBRATED) {
        json_object_set_new(o, "calib_a", json_real(h->calib_a));
        json_object_set_new(o, "calib_b", json_real(h->calib_b));
    }
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)h->fingerprint);
    json_object_set_new(o, "fingerprint", json_string(fp));
    const char *p = m->meta, *end = m->meta + m->meta_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end, *eq = memchr(p, '=', (size_t)(le - p));
        if (eq) {
            char key[256], val[4096];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            snprintf(val, sizeof val, "%.*s", (int)(le - eq - 1), eq + 1);
            json_object_set_new(meta, key, json_string(val));
        }
        p = le + 1;
    }
    json_object_set_new(o, "meta", meta);
    int rc = json_dumpf(o, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 && fputc('\n', f) != EOF ? 0 : -1;
    json_decref(o);
    return rc ? st_seterr(err, "write failed") : 0;
}

int st_export(const st_model *m, const char *dir, char *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return st_seterr(err, "%s: cannot create: %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/user_factors.npy", dir);
    if (m->Uq) {
        /* int8 user factors go out dequantized: the floats every score uses. */
        float *U = st_malloc(((size_t)m->users * m->k + 1) * sizeof *U);
        if (!U) return st_seterr(err, "out of memory");
        for (uint32_t u = 0; u < m->users; u++) st_model_user(m, u, U + (size_t)u * m->k);
        int rc = st_npy_write(path, U, m->users, m->k, err);
        st_free(U);
        if (rc != 0) return -1;
    } else if (st_npy_write(path, m->U, m->users, m->k, err) != 0) {
        return -1;
    }
    snprintf(path, sizeof path, "%s/segment_factors.npy", dir);
    if (st_npy_write(path, m->V, m->segments, m->k, err) != 0) return -1;
    const char *names[] = {"users.txt", "segments.txt", "history.csv"};
    for (int i = 0; i < 3; i++) {
        text_src t = {m, i};
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (st_write_atomic(path, text_write_fn, &t, err) != 0) return -1;
    }
    snprintf(path, sizeof path, "%s/model.json", dir);
    return st_write_atomic(path, json_write_fn, (void *)m, err);
}

/* ---- import ------------------------------------------------------------------ */

typedef struct {
    st_idmap ids;
    float *F; /* rows x k */
    uint64_t rows, cap;
    uint32_t k;
} factors_t;

static void factors_free(factors_t *f)
{
    st_idmap_free(&f->ids);
    st_free(f->F);
    memset(f, 0, sizeof *f);
}

static int add_row(factors_t *f, const char *path, uint64_t line, const char *id, size_t idlen, const float *v,
                   uint32_t k, char *err)
{
    if (f->k == 0) f->k = k;
    if (k != f->k)
        return st_seterr(err, "%s:%llu: %u values, but earlier rows have %u", path, (unsigned long long)line, k, f->k);
    uint32_t idx;
    int added;
    if (st_idmap_intern(&f->ids, id, idlen, &idx, &added, err) != 0) return -1;
    if (!added) return st_seterr(err, "%s:%llu: id '%.*s' appears twice", path, (unsigned long long)line, (int)idlen, id);
    if (f->rows == f->cap) {
        uint64_t cap = f->cap ? f->cap * 2 : 1024;
        float *nf = st_realloc(f->F, cap * k * sizeof(float));
        if (!nf) return st_seterr(err, "%s: out of memory", path);
        f->F = nf;
        f->cap = cap;
    }
    memcpy(f->F + f->rows * k, v, k * sizeof(float));
    f->rows++;
    return 0;
}

/* Text factors: `id<sep>v1<sep>v2...`, `id<sep>[v1, v2, ...]`, or JSON lines. */
static int read_text_factors(const char *path, factors_t *f, char *err)
{
    FILE *in = fopen(path, "r");
    if (!in) return st_seterr(err, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    float v[1024];
    int rc = 0;
    while ((n = getline(&line, &cap, in)) >= 0 && rc == 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) continue;
        if (*p == '{') {
            json_error_t je;
            json_t *o = json_loads(p, 0, &je), *id = o ? json_object_get(o, "id") : NULL,
                   *feat = o ? json_object_get(o, "features") : NULL;
            if (!o || !id || !json_is_array(feat)) {
                rc = st_seterr(err, "%s:%llu: expected {\"id\": ..., \"features\": [...]}", path,
                               (unsigned long long)lineno);
                json_decref(o);
                break;
            }
            char idbuf[64];
            const char *ids = idbuf;
            size_t idl;
            if (json_is_string(id)) {
                ids = json_string_value(id);
                idl = json_string_length(id);
            } else if (json_is_integer(id)) {
                idl = (size_t)snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(id));
            } else {
                rc = st_seterr(err, "%s:%llu: id must be a string or an integer", path, (unsigned long long)lineno);
                json_decref(o);
                break;
            }
            size_t k = json_array_size(feat);
            if (k == 0 || k > 1024) {
                rc = st_seterr(err, "%s:%llu: %zu features (1 to 1024)", path, (unsigned long long)lineno, k);
                json_decref(o);
                break;
            }
            for (size_t i = 0; i < k && rc == 0; i++) {
                json_t *x = json_array_get(feat, i);
                if (!json_is_number(x)) rc = st_seterr(err, "%s:%llu: feature %zu is not a number", path,
                                                        (unsigned long long)lineno, i + 1);
                else v[i] = (float)json_number_value(x);
            }
            if (rc == 0) rc = add_row(f, path, lineno, ids, idl, v, (uint32_t)k, err);
            json_decref(o);
            continue;
        }
        /* Delimited: the id up to the first tab or comma (or space). */
        size_t idl = strcspn(p, "\t,");
        if (p[idl] == '\0') idl = strcspn(p, " ");
        if (p[idl] == '\0') {
            rc = st_seterr(err, "%s:%llu: an id and at least one value expected", path, (unsigned long long)lineno);
            break;
        }
        char *id = p, *q = p + idl + 1;
        id[idl] = '\0';
        uint32_t k = 0;
        int bad = 0;
        while (*q) {
            while (*q == ' ' || *q == '\t' || *q == ',' || *q == '[' || *q == ']' || *q == '"') q++;
            if (!*q) break;
            char *end;
            errno = 0;
            double x = strtod(q, &end);
            if (end == q || !isfinite(x)) {
                bad = 1;
                break;
            }
            if (k == 1024) {
                rc = st_seterr(err, "%s:%llu: more than 1024 values", path, (unsigned long long)lineno);
                break;
            }
            v[k++] = (float)x;
            q = end;
        }
        if (rc) break;
        if (bad || k == 0) {
            if (lineno == 1 && f->rows == 0) continue; /* a header line */
            rc = st_seterr(err, "%s:%llu: values must be finite numbers", path, (unsigned long long)lineno);
            break;
        }
        rc = add_row(f, path, lineno, id, idl, v, k, err);
    }
    free(line);
    fclose(in);
    if (rc == 0 && f->rows == 0) rc = st_seterr(err, "%s: no factors", path);
    return rc;
}

int st_factors_check_text(const char *path, uint64_t *rows, uint32_t *k, char *err)
{
    factors_t f;
    memset(&f, 0, sizeof f);
    st_idmap_init(&f.ids);
    int rc = read_text_factors(path, &f, err);
    *rows = f.rows;
    *k = f.k;
    factors_free(&f);
    return rc;
}

static int read_id_list(const char *path, factors_t *f, uint64_t rows, char *err)
{
    FILE *in = fopen(path, "r");
    if (!in) return st_seterr(err, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
        if (lineno > rows) {
            rc = st_seterr(err, "%s: more ids than the %llu factor rows", path, (unsigned long long)rows);
            break;
        }
        uint32_t idx;
        int added;
        if (st_idmap_intern(&f->ids, line, (size_t)n, &idx, &added, err) != 0) {
            rc = -1;
            break;
        }
        if (!added) {
            rc = st_seterr(err, "%s:%llu: id '%s' appears twice", path, (unsigned long long)lineno, line);
            break;
        }
    }
    free(line);
    fclose(in);
    if (rc == 0 && lineno != rows)
        rc = st_seterr(err, "%s: %llu ids for %llu factor rows", path, (unsigned long long)lineno,
                       (unsigned long long)rows);
    return rc;
}

static int is_npy(const char *path)
{
    FILE *f = fopen(path, "rb");
    char b[6] = {0};
    int r = f && fread(b, 1, 6, f) == 6 && memcmp(b, "\x93NUMPY", 6) == 0;
    if (f) fclose(f);
    return r;
}

static int load_factors(const char *fpath, const char *idpath, const char *what, factors_t *f, char *err)
{
    memset(f, 0, sizeof *f);
    st_idmap_init(&f->ids);
    if (!fpath) return st_seterr(err, "no %s factors given", what);
    if (is_npy(fpath)) {
        if (!idpath) return st_seterr(err, "%s: .npy factors need an id list (--%s-ids FILE)", fpath, what);
        if (st_npy_read(fpath, &f->F, &f->rows, &f->k, err) != 0) return -1;
        return read_id_list(idpath, f, f->rows, err);
    }
    return read_text_factors(fpath, f, err);
}

/* History events mapped onto the factors' ids. */
typedef struct {
    const factors_t *u, *s;
    uint64_t *keys;
    float *vals;
    size_t n, cap;
} hist_t;

static int hist_add(const st_event *ev, void *ctx, char *err)
{
    hist_t *h = ctx;
    uint32_t u = st_idmap_find(&h->u->ids, ev->user, ev->user_len);
    uint32_t s = st_idmap_find(&h->s->ids, ev->segment, ev->segment_len);
    if (u == ST_NOT_FOUND)
        return st_seterr(err, "%s:%llu: user '%s' is not in the user factors", ev->file, (unsigned long long)ev->line,
                         ev->user);
    if (s == ST_NOT_FOUND)
        return st_seterr(err, "%s:%llu: segment '%s' is not in the segment factors", ev->file,
                         (unsigned long long)ev->line, ev->segment);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4096;
        uint64_t *k = st_realloc(h->keys, cap * sizeof *k);
        if (!k) return st_seterr(err, "out of memory");
        h->keys = k;
        float *v = st_realloc(h->vals, cap * sizeof *v);
        if (!v) return st_seterr(err, "out of memory");
        h->vals = v;
        h->cap = cap;
    }
    h->keys[h->n] = (uint64_t)u << 32 | s;
    h->vals[h->n++] = (float)ev->weight;
    return 0;
}

static double json_num(json_t *o, const char *key, double def)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

static int choice(json_t *o, const char *key, const char *a, const char *b, const char *c, int def)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (!v) return def;
    if (a && strcmp(v, a) == 0) return 0;
    if (b && strcmp(v, b) == 0) return 1;
    if (c && strcmp(v, c) == 0) return 2;
    return def;
}

/* Where the pieces of an import come from: the spec's paths, or a
 * directory's standard names (what `starling export` writes). */
typedef struct {
    char up[4096], sp[4096], uid[4096], sid[4096], hp[4096], jp[4096];
    const char *ufp, *sfp, *uidp, *sidp;
    char *hist_default[1];
    char **history;
    int nhistory;
} import_paths;

static int resolve_paths(const st_import_spec *spec, import_paths *ip, json_t **params, char *err)
{
    ip->ufp = spec->user_factors;
    ip->sfp = spec->segment_factors;
    ip->uidp = spec->user_ids;
    ip->sidp = spec->segment_ids;
    ip->history = spec->history;
    ip->nhistory = spec->nhistory;
    *params = NULL;
    if (!spec->dir) return 0;
    snprintf(ip->up, sizeof ip->up, "%s/user_factors.npy", spec->dir);
    snprintf(ip->sp, sizeof ip->sp, "%s/segment_factors.npy", spec->dir);
    snprintf(ip->uid, sizeof ip->uid, "%s/users.txt", spec->dir);
    snprintf(ip->sid, sizeof ip->sid, "%s/segments.txt", spec->dir);
    snprintf(ip->hp, sizeof ip->hp, "%s/history.csv", spec->dir);
    snprintf(ip->jp, sizeof ip->jp, "%s/model.json", spec->dir);
    ip->ufp = ip->ufp ? ip->ufp : ip->up;
    ip->sfp = ip->sfp ? ip->sfp : ip->sp;
    ip->uidp = ip->uidp ? ip->uidp : ip->uid;
    ip->sidp = ip->sidp ? ip->sidp : ip->sid;
    struct stat sb;
    if (!ip->history && stat(ip->hp, &sb) == 0) {
        ip->hist_default[0] = ip->hp;
        ip->history = ip->hist_default;
        ip->nhistory = 1;
    }
    if (stat(ip->jp, &sb) == 0) {
        json_error_t je;
        *params = json_load_file(ip->jp, 0, &je);
        if (!*params) return st_seterr(err, "%s:%d: %s", ip->jp, je.line, je.text);
    }
    return 0;
}

/* The hyper-parameters and the fitted prior and calibration of model.json
 * into the header; without one, those of classical implicit ALS (plain
 * lambda, unobserved pairs weighing 1), as other tools train. */
static void header_from_json(json_t *params, uint32_t k, st_model_header *h)
{
    st_als_params p;
    st_als_params_default(&p);
    p.factors = k;
    p.iterations = 0;
    if (!params) {
        p.regularization = ST_REG_PLAIN;
        p.lambda = 0.1;
        p.unobserved = 1;
    } else {
        p.lambda = json_num(params, "lambda", p.lambda);
        p.alpha = json_num(params, "alpha", p.alpha);
        p.eps = json_num(params, "eps", p.eps);
        p.bm25_k1 = json_num(params, "bm25_k1", p.bm25_k1);
        p.bm25_b = json_num(params, "bm25_b", p.bm25_b);
        p.reg_alpha0 = json_num(params, "reg_alpha0", p.reg_alpha0);
        p.reg_nu = json_num(params, "reg_nu", p.reg_nu);
        p.unobserved = json_num(params, "unobserved_weight", p.unobserved);
        p.seed = (uint64_t)json_num(params, "seed", (double)p.seed);
        p.cg_steps = (uint32_t)json_num(params, "cg_steps", p.cg_steps);
        p.confidence = (st_conf_scheme)choice(params, "confidence", "linear", "log", "bm25", (int)p.confidence);
        p.solver = (st_solver)choice(params, "solver", "cg", "cholesky", NULL, (int)p.solver);
        p.regularization = (st_reg_scheme)choice(params, "regularization", "plain", "frequency", NULL,
                                                 (int)p.regularization);
    }
    st_model_header_from_params(h, &p);
    if (params) {
        h->prior_weight = json_num(params, "prior_weight", 0);
        if (choice(params, "prior_shape", "log", "linear", NULL, 0) == 1) h->flags |= ST_MODEL_PRIOR_LINEAR;
        if (json_object_get(params, "calib_a")) {
            h->calib_a = json_num(params, "calib_a", 0);
            h->calib_b = json_num(params, "calib_b", 0);
            h->flags |= ST_MODEL_CALIBRATED;
        }
    }
}

/* The history's pairs (sorted, merged, positive) as a CSR over m users, and
 * the users per segment; h->vals is compacted to the kept values. */
static int history_csr(hist_t *h, uint32_t m, uint32_t n, uint64_t **indptr, uint32_t **indices, float **pop,
                       uint64_t *nnz, char *err)
{
    h->n = st_pairs_sort_merge(h->keys, h->vals, h->n);
    *indptr = st_calloc((size_t)m + 1, sizeof **indptr);
    *indices = st_malloc((h->n + 1) * sizeof **indices);
    *pop = st_calloc((size_t)n + 1, sizeof **pop);
    if (!*indptr || !*indices || !*pop) return st_seterr(err, "out of memory");
    uint64_t w = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (!(h->vals[i] > 0)) continue;
        (*indptr)[(h->keys[i] >> 32) + 1]++;
        (*indices)[w] = (uint32_t)h->keys[i];
        h->vals[w++] = h->vals[i];
        (*pop)[(uint32_t)h->keys[i]] += 1;
    }
    for (uint32_t u = 0; u < m; u++) (*indptr)[u + 1] += (*indptr)[u];
    *nnz = w;
    return 0;
}

int st_import(const st_import_spec *spec, const char *out, char *err)
{
    import_paths ip;
    json_t *params = NULL;
    if (resolve_paths(spec, &ip, &params, err) != 0) return -1;
    factors_t fu, fs;
    memset(&fs, 0, sizeof fs);
    st_idmap_init(&fs.ids);
    int rc = -1;
    float *pop = NULL;
    hist_t h = {0};
    uint64_t *indptr = NULL, nnz = 0;
    uint32_t *indices = NULL;
    if (load_factors(ip.ufp, ip.uidp, "user", &fu, err) != 0 || load_factors(ip.sfp, ip.sidp, "segment", &fs, err) != 0)
        goto out;
    if (fu.k != fs.k) {
        st_seterr(err, "user factors have %u columns but segment factors %u", fu.k, fs.k);
        goto out;
    }
    if (fu.rows > ST_IDMAP_MAX || fs.rows > ST_IDMAP_MAX) {
        st_seterr(err, "too many rows");
        goto out;
    }
    h.u = &fu;
    h.s = &fs;
    st_read_stats stats;
    memset(&stats, 0, sizeof stats);
    for (int i = 0; i < ip.nhistory; i++)
        if (st_events_read(ip.history[i], &spec->read, hist_add, &h, &stats, err) != 0) goto out;
    uint32_t m = (uint32_t)fu.rows, n = (uint32_t)fs.rows, k = fu.k;
    if (history_csr(&h, m, n, &indptr, &indices, &pop, &nnz, err) != 0) goto out;
    st_model mod;
    memset(&mod, 0, sizeof mod);
    header_from_json(params, k, &mod.h);
    st_interactions x;
    memset(&x, 0, sizeof x);
    x.users = fu.ids;
    x.segments = fs.ids;
    x.by_user = (st_csr){.rows = m, .cols = n, .nnz = nnz, .indptr = indptr, .indices = indices, .data = h.vals};
    mod.h.fingerprint = st_interactions_fingerprint(&x);
    mod.h.events = stats.events;
    mod.h.created = (int64_t)time(NULL);
    mod.users = m;
    mod.segments = n;
    mod.k = k;
    mod.U = fu.F;
    mod.V = fs.F;
    mod.user_ids = fu.ids;
    mod.segment_ids = fs.ids;
    mod.hist_ptr = indptr;
    mod.hist_idx = indices;
    mod.hist_val = h.vals ? h.vals : (float *)pop; /* any valid pointer when empty */
    mod.popularity = pop;
    char meta[4200];
    snprintf(meta, sizeof meta, "imported_from=%s\n", spec->dir ? spec->dir : ip.ufp);
    mod.meta = meta;
    mod.meta_len = strlen(meta);
    rc = st_model_save(out, &mod, err);
out:
    json_decref(params);
    factors_free(&fu);
    factors_free(&fs);
    st_free(h.keys);
    st_free(h.vals);
    st_free(indptr);
    st_free(indices);
    st_free(pop);
    return rc;
}
