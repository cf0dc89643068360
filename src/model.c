/* model: write a model atomically, load it (by mmap, or into memory of its
 * own for the server), verify every byte.
 *
 * Layout: a 256-byte header, a table of 32-byte section entries, then each
 * section at a 64-byte aligned offset (so float rows can be used in place by
 * SIMD code and BLAS). The loader trusts nothing: it checks the magic, the
 * version, the header checksum, every section's bounds, alignment, size and
 * checksum, and the internal consistency of the id maps and the history
 * before any pointer into the mapping is handed out.
 *
 * Two ways in: st_model_load maps the file (batch tools: short-lived, and
 * processes reading the same model share its page cache); st_model_read
 * reads it into an allocation of its own (the server: whatever is later done
 * to the file, truncated or rewritten in place, cannot reach a model being
 * served; see docs/OPERATIONS.md, "Deploying a new model").
 */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util.h"

_Static_assert(sizeof(st_model_header) == 256, "the header is 256 bytes: see docs/FORMAT.md");
_Static_assert(sizeof(st_section) == 32, "a section entry is 32 bytes: see docs/FORMAT.md");

#define MAX_SECTIONS 64
#define RETRAIN_HINT "re-train with `starling train EVENTS -o MODEL`"

void st_model_header_from_params(st_model_header *h, const st_als_params *p)
{
    memcpy(h->magic, STARLING_MAGIC, 8);
    h->version = STARLING_FORMAT_VERSION;
    h->factors = p->factors;
    h->iterations_asked = p->iterations;
    h->seed = p->seed;
    h->threads = (uint32_t)p->threads;
    h->solver = p->solver;
    h->cg_steps = p->cg_steps;
    h->confidence = p->confidence;
    h->regularization = p->regularization;
    h->lambda = p->lambda;
    h->alpha = p->alpha;
    h->eps = p->eps;
    h->bm25_k1 = p->bm25_k1;
    h->bm25_b = p->bm25_b;
    h->reg_alpha0 = p->reg_alpha0;
    h->reg_nu = p->reg_nu;
    h->init_scale = p->init_scale;
    h->unobserved_weight = p->unobserved;
    h->missing_weight = p->missing;
    h->missing_exponent = p->missing == ST_MISSING_POPULARITY ? p->missing_exponent : 0;
}

void st_model_params(const st_model_header *h, st_als_params *p)
{
    st_als_params_default(p);
    p->factors = h->factors;
    p->iterations = h->iterations_asked;
    p->seed = h->seed;
    p->threads = (int)h->threads;
    p->solver = (st_solver)h->solver;
    p->cg_steps = h->cg_steps;
    p->confidence = (st_conf_scheme)h->confidence;
    p->regularization = (st_reg_scheme)h->regularization;
    p->lambda = h->lambda;
    p->alpha = h->alpha;
    p->eps = h->eps;
    p->bm25_k1 = h->bm25_k1;
    p->bm25_b = h->bm25_b;
    p->reg_alpha0 = h->reg_alpha0;
    p->reg_nu = h->reg_nu;
    p->init_scale = h->init_scale;
    p->unobserved = h->unobserved_weight > 0 ? h->unobserved_weight : 1.0;
    p->missing = h->missing_weight == ST_MISSING_POPULARITY ? ST_MISSING_POPULARITY : ST_MISSING_UNIFORM;
    if (p->missing == ST_MISSING_POPULARITY) p->missing_exponent = h->missing_exponent;
}

typedef struct {
    const char *tag;
    const void *ptr;
    uint64_t bytes;
} section_src;

typedef struct {
    st_model_header h;
    st_section table[MAX_SECTIONS];
    const section_src *src;
    uint32_t n;
} save_ctx;

static int write_zeros(FILE *f, uint64_t n)
{
    static const char zeros[ST_SECTION_ALIGN];
    while (n > 0) {
        size_t c = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, c, f) != c) return -1;
        n -= c;
    }
    return 0;
}

static int save_write(FILE *f, void *vctx, char *err)
{
    save_ctx *s = vctx;
    uint64_t pos = 0;
    if (fwrite(&s->h, sizeof s->h, 1, f) != 1) goto fail;
    if (fwrite(s->table, sizeof s->table[0], s->n, f) != s->n) goto fail;
    pos = sizeof s->h + (uint64_t)s->n * sizeof s->table[0];
    for (uint32_t i = 0; i < s->n; i++) {
        if (write_zeros(f, s->table[i].offset - pos) != 0) goto fail;
        pos = s->table[i].offset;
        /* fwrite in bounded pieces: a short write is then detected early. */
        const char *p = s->src[i].ptr;
        uint64_t left = s->src[i].bytes;
        while (left > 0) {
            size_t c = left < (1u << 24) ? (size_t)left : (1u << 24);
            if (fwrite(p, 1, c, f) != c) goto fail;
            p += c;
            left -= c;
        }
        pos += s->src[i].bytes;
    }
    if (write_zeros(f, s->h.file_bytes - pos) != 0) goto fail;
    return 0;
fail:
    return st_seterr(err, "write failed: %s", strerror(errno ? errno : EIO));
}

static uint64_t header_checksum(const st_model_header *h, const st_section *table, uint32_t n)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, offsetof(st_model_header, header_checksum));
    XXH3_64bits_update(&st, table, (size_t)n * sizeof *table);
    return XXH3_64bits_digest(&st);
}

int st_model_save(const char *path, const st_model *m, char *err)
{
    uint64_t m_users = m->users, n = m->segments, k = m->k, nnz = m->hist_ptr[m->users];
    /* A model without users (a shard that got none) has an empty id map,
     * which owns no arrays: write an empty table and a minimal index. */
    static const uint64_t no_offsets[1] = {0};
    static const uint32_t no_slots[16] = {0};
    int no_users = m_users == 0 || !m->user_ids.offsets;
    const uint64_t *uoff = no_users ? no_offsets : m->user_ids.offsets;
    const uint32_t *uslots = no_users ? no_slots : m->user_ids.slots;
    uint64_t unslots = no_users ? 16 : m->user_ids.nslots;
    int q8 = m->Uq != NULL;
    section_src src[] = {
        {q8 ? "UQ8 " : "UFAC", q8 ? (const void *)m->Uq : (const void *)m->U, m_users * k * (q8 ? 1 : sizeof(float))},
        {"SFAC", m->V, n * k * sizeof(float)},
        {"UIDO", uoff, (m_users + 1) * sizeof(uint64_t)},
        {"UIDB", no_users ? "" : m->user_ids.bytes, uoff[m_users]},
        {"UIDX", uslots, unslots * sizeof(uint32_t)},
        {"SIDO", m->segment_ids.offsets, (n + 1) * sizeof(uint64_t)},
        {"SIDB", m->segment_ids.bytes, m->segment_ids.offsets[n]},
        {"SIDX", m->segment_ids.slots, m->segment_ids.nslots * sizeof(uint32_t)},
        {"HPTR", m->hist_ptr, (m_users + 1) * sizeof(uint64_t)},
        {"HIDX", m->hist_idx, nnz * sizeof(uint32_t)},
        {"HVAL", m->hist_val, nnz * sizeof(float)},
        {"SPOP", m->popularity, n * sizeof(float)},
        {"LOSS", m->loss, (uint64_t)m->h.iterations * sizeof(double)},
        {"META", m->meta, m->meta_len},
        {"UQSC", m->Uscale, m_users * sizeof(float)}, /* int8 models only */
        {"SMIS", m->missing, n * sizeof(float)},      /* popularity-weighted models only */
    };
    /* The optional sections go last; the ones a model has not are left out. */
    if (!q8) src[sizeof src / sizeof src[0] - 2] = src[sizeof src / sizeof src[0] - 1];
    uint32_t nsrc = sizeof src / sizeof src[0] - (q8 ? 0 : 1) - (m->missing ? 0 : 1);
    save_ctx *s = st_calloc(1, sizeof *s);
    if (!s) return st_seterr(err, "%s: out of memory", path);
    s->h = m->h;
    memcpy(s->h.magic, STARLING_MAGIC, 8);
    s->h.version = m->h.flags & ST_MODEL_PRIOR_LINEAR ? STARLING_FORMAT_VERSION
                   : m->missing                      ? STARLING_FORMAT_MISSING
                                                     : STARLING_FORMAT_UNIFORM;
    s->h.missing_weight = m->missing ? ST_MISSING_POPULARITY : ST_MISSING_UNIFORM;
    if (!m->missing) s->h.missing_exponent = 0;
    s->h.users = m->users;
    s->h.segments = m->segments;
    s->h.factors = m->k;
    s->h.nnz = nnz;
    s->n = nsrc;
    s->h.flags = q8 ? s->h.flags | ST_MODEL_INT8 : s->h.flags & ~ST_MODEL_INT8;
    s->h.nsections = s->n;
    s->src = src;
    uint64_t pos = st_align_up(sizeof s->h + (uint64_t)s->n * sizeof(st_section), ST_SECTION_ALIGN);
    for (uint32_t i = 0; i < s->n; i++) {
        memcpy(s->table[i].tag, src[i].tag, 4);
        s->table[i].offset = pos;
        s->table[i].bytes = src[i].bytes;
        s->table[i].checksum = XXH3_64bits(src[i].ptr, src[i].bytes);
        pos = st_align_up(pos + src[i].bytes, ST_SECTION_ALIGN);
    }
    s->h.file_bytes = pos;
    s->h.header_checksum = header_checksum(&s->h, s->table, s->n);
    char why[ST_ERRLEN];
    int rc = st_write_atomic(path, save_write, s, why);
    if (rc != 0) st_seterr(err, "%s: cannot save the model: %s", path, why);
    st_free(s);
    return rc;
}

/* Drops a model's bytes, read or mapped. */
static void drop_bytes(void *p, size_t len, int owned)
{
    if (owned) st_free(p);
    else munmap(p, len);
}

void st_model_free(st_model *m)
{
    if (m->map) drop_bytes(m->map, m->map_len, m->map_owned);
    memset(m, 0, sizeof *m);
}

static const st_section *find_section(const st_section *table, uint32_t n, const char *tag)
{
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(table[i].tag, tag, 4) == 0) return &table[i];
    return NULL;
}

/* Finds a required section and checks its size. */
static int need(const char *path, const st_section *table, uint32_t n, const char *tag, uint64_t bytes,
                const char *base, const void **out, char *err)
{
    const st_section *s = find_section(table, n, tag);
    if (!s) return st_seterr(err, "%s: section %s is missing: the file is damaged; " RETRAIN_HINT, path, tag);
    if (bytes != UINT64_MAX && s->bytes != bytes)
        return st_seterr(err, "%s: section %s has %llu bytes, expected %llu: the file is damaged; " RETRAIN_HINT,
                         path, tag, (unsigned long long)s->bytes, (unsigned long long)bytes);
    *out = base + s->offset;
    return 0;
}

/* The header: magic, version, section table, its checksum, the size. */
static int check_header(const char *path, uint64_t size, const st_model_header *h, const st_section *table,
                        char *err)
{
    if (memcmp(h->magic, STARLING_MAGIC, 8) != 0)
        return st_seterr(err, "%s: not a starling model (bad magic number); train one with `starling train EVENTS "
                              "-o MODEL`",
                         path);
    if (h->version < STARLING_FORMAT_OLDEST || h->version > STARLING_FORMAT_VERSION)
        return st_seterr(err, "%s: model format version %u, but this starling reads versions %u to %u; " RETRAIN_HINT
                              " using this version, or serve it with the starling that wrote it",
                         path, h->version, STARLING_FORMAT_OLDEST, STARLING_FORMAT_VERSION);
    if (h->nsections == 0 || h->nsections > MAX_SECTIONS ||
        sizeof *h + (uint64_t)h->nsections * sizeof(st_section) > size)
        return st_seterr(err, "%s: header is damaged (section count %u); " RETRAIN_HINT, path, h->nsections);
    if (header_checksum(h, table, h->nsections) != h->header_checksum)
        return st_seterr(err, "%s: header checksum mismatch: the file is damaged; " RETRAIN_HINT, path);
    if ((h->flags & ~ST_MODEL_FLAGS) || ((h->flags & ST_MODEL_PRIOR_LINEAR) && h->version < 4))
        return st_seterr(err, "%s: model flags 0x%x are not ones format version %u has; " RETRAIN_HINT, path,
                         h->flags, h->version);
    if (h->file_bytes != size)
        return st_seterr(err, "%s: truncated: the header says %llu bytes but the file has %llu; " RETRAIN_HINT, path,
                         (unsigned long long)h->file_bytes, (unsigned long long)size);
    return 0;
}

/* Every section inside the file with its checksum right; no overlap, and
 * every byte outside the sections zero padding: so any change to any byte
 * of the file is detected. */
static int check_sections(const char *path, const char *base, uint64_t size, const st_model_header *h,
                          const st_section *table, char *err)
{
    for (uint32_t i = 0; i < h->nsections; i++) {
        const st_section *s = &table[i];
        if (s->offset % ST_SECTION_ALIGN || s->offset > size || s->bytes > size - s->offset)
            return st_seterr(err, "%s: section %.4s lies outside the file: the file is damaged; " RETRAIN_HINT, path,
                             s->tag);
        if (XXH3_64bits(base + s->offset, s->bytes) != s->checksum)
            return st_seterr(err, "%s: section %.4s checksum mismatch: the file is damaged; " RETRAIN_HINT, path,
                             s->tag);
    }
    uint32_t order[MAX_SECTIONS];
    for (uint32_t i = 0; i < h->nsections; i++) {
        uint32_t j = i;
        while (j > 0 && table[order[j - 1]].offset > table[i].offset) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    uint64_t pos = sizeof *h + (uint64_t)h->nsections * sizeof(st_section);
    for (uint32_t i = 0; i <= h->nsections; i++) {
        uint64_t next = i < h->nsections ? table[order[i]].offset : size;
        if (next < pos) return st_seterr(err, "%s: sections overlap: the file is damaged; " RETRAIN_HINT, path);
        for (uint64_t b = pos; b < next; b++)
            if (base[b] != 0)
                return st_seterr(err, "%s: non-zero padding at byte %llu: the file is damaged; " RETRAIN_HINT, path,
                                 (unsigned long long)b);
        if (i < h->nsections) pos = next + table[order[i]].bytes;
    }
    return 0;
}

/* The history's offsets increase within nnz and name known segments. */
static int check_history(const char *path, const uint64_t *hp, const uint32_t *hi, uint64_t mu, uint64_t n,
                         uint64_t nnz, char *err)
{
    if (hp[0] != 0 || hp[mu] != nnz)
        return st_seterr(err, "%s: history offsets are inconsistent; " RETRAIN_HINT, path);
    for (uint64_t u = 0; u < mu; u++)
        if (hp[u + 1] < hp[u] || hp[u + 1] > nnz)
            return st_seterr(err, "%s: history offsets are inconsistent at user %llu; " RETRAIN_HINT, path,
                             (unsigned long long)u);
    for (uint64_t q = 0; q < nnz; q++)
        if (hi[q] >= n)
            return st_seterr(err, "%s: history names segment %u of %llu; " RETRAIN_HINT, path, hi[q],
                             (unsigned long long)n);
    return 0;
}

/* Points m's arrays at their sections, each of the size the header implies. */
static int bind_sections(const char *path, const char *base, const st_model_header *h, const st_section *table,
                         st_model *m, char *err)
{
    uint64_t mu = h->users, n = h->segments, k = h->factors;
    if (k == 0 || k > 1024 || n == 0 || mu > ST_IDMAP_MAX || n > ST_IDMAP_MAX)
        return st_seterr(err, "%s: header has impossible dimensions (%llu users, %llu segments, rank %llu); "
                              RETRAIN_HINT,
                         path, (unsigned long long)mu, (unsigned long long)n, (unsigned long long)k);
    const void *p[14] = {0};
    uint32_t ns = h->nsections;
    const st_section *ub = find_section(table, ns, "UIDB"), *sb2 = find_section(table, ns, "SIDB");
    const st_section *ux = find_section(table, ns, "UIDX"), *sx = find_section(table, ns, "SIDX");
    const st_section *meta = find_section(table, ns, "META");
    int q8 = (h->flags & ST_MODEL_INT8) != 0;
    const void *qscale = NULL, *missing = NULL;
    if (h->missing_weight > ST_MISSING_POPULARITY)
        return st_seterr(err, "%s: header names missing-data weighting %u, which this starling does not know; "
                              RETRAIN_HINT, path, h->missing_weight);
    if (h->missing_weight == ST_MISSING_POPULARITY && need(path, table, ns, "SMIS", n * 4, base, &missing, err))
        return -1;
    if ((q8 ? need(path, table, ns, "UQ8 ", mu * k, base, &p[0], err) ||
                  need(path, table, ns, "UQSC", mu * 4, base, &qscale, err)
            : need(path, table, ns, "UFAC", mu * k * 4, base, &p[0], err)) ||
        need(path, table, ns, "SFAC", n * k * 4, base, &p[1], err) ||
        need(path, table, ns, "UIDO", (mu + 1) * 8, base, &p[2], err) ||
        need(path, table, ns, "UIDB", UINT64_MAX, base, &p[3], err) ||
        need(path, table, ns, "UIDX", UINT64_MAX, base, &p[4], err) ||
        need(path, table, ns, "SIDO", (n + 1) * 8, base, &p[5], err) ||
        need(path, table, ns, "SIDB", UINT64_MAX, base, &p[6], err) ||
        need(path, table, ns, "SIDX", UINT64_MAX, base, &p[7], err) ||
        need(path, table, ns, "HPTR", (mu + 1) * 8, base, &p[8], err) ||
        need(path, table, ns, "HIDX", h->nnz * 4, base, &p[9], err) ||
        need(path, table, ns, "HVAL", h->nnz * 4, base, &p[10], err) ||
        need(path, table, ns, "SPOP", n * 4, base, &p[11], err) ||
        need(path, table, ns, "LOSS", (uint64_t)h->iterations * 8, base, &p[12], err) ||
        need(path, table, ns, "META", UINT64_MAX, base, &p[13], err))
        return -1;
    char why[ST_ERRLEN];
    if (ux->bytes % 4 || sx->bytes % 4) return st_seterr(err, "%s: id index has a bad size; " RETRAIN_HINT, path);
    if (st_idmap_view(&m->user_ids, (uint32_t)mu, p[2], p[3], ub->bytes, p[4], ux->bytes / 4, why) != 0 ||
        st_idmap_view(&m->segment_ids, (uint32_t)n, p[5], p[6], sb2->bytes, p[7], sx->bytes / 4, why) != 0)
        return st_seterr(err, "%s: %s: the file is damaged; " RETRAIN_HINT, path, why);
    if (check_history(path, p[8], p[9], mu, n, h->nnz, err) != 0) return -1;
    m->h = *h;
    m->users = (uint32_t)mu;
    m->segments = (uint32_t)n;
    m->k = (uint32_t)k;
    m->U = q8 ? NULL : p[0];
    m->Uq = q8 ? p[0] : NULL;
    m->Uscale = q8 ? qscale : NULL;
    m->V = p[1];
    m->hist_ptr = p[8];
    m->hist_idx = p[9];
    m->hist_val = p[10];
    m->popularity = p[11];
    m->missing = missing;
    for (uint64_t s = 0; missing && s < n; s++)
        if (!(m->missing[s] >= 0 && isfinite(m->missing[s])))
            return st_seterr(err, "%s: missing-data weight of segment %llu is not a number >= 0; " RETRAIN_HINT, path,
                             (unsigned long long)s);
    m->loss = p[12];
    m->meta = p[13];
    m->meta_len = meta->bytes;
    return 0;
}

/* Opens path and checks it is a regular file at least a header long; the
 * size in *size. The descriptor, or -1 with err set. */
static int open_model(const char *path, uint64_t *size, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st_seterr(err, "%s: cannot open the model: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st_seterr(err, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return st_seterr(err, "%s: not a regular file", path);
    }
    *size = (uint64_t)sb.st_size;
    if (*size < sizeof(st_model_header)) {
        close(fd);
        return st_seterr(err, "%s: truncated or not a model (%llu bytes; a model has at least %zu); " RETRAIN_HINT,
                         path, (unsigned long long)*size, sizeof(st_model_header));
    }
    return fd;
}

/* Reads size bytes of fd into memory of its own, 64-byte aligned; NULL with
 * err set when the file ends early (it shrank meanwhile) or cannot be read. */
static void *read_model(const char *path, int fd, uint64_t size, char *err)
{
    char *buf = st_aligned_alloc(ST_SECTION_ALIGN, (size_t)st_align_up(size, ST_SECTION_ALIGN));
    if (!buf) {
        st_seterr(err, "%s: out of memory for the model (%llu bytes)", path, (unsigned long long)size);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)buf + pg - 1) & ~(pg - 1);
    uintptr_t hi = ((uintptr_t)buf + (uintptr_t)size) & ~(pg - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    uint64_t got = 0;
    while (got < size) {
        size_t want = size - got > (1u << 30) ? (1u << 30) : (size_t)(size - got);
        ssize_t r = pread(fd, buf + got, want, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r < 0) st_seterr(err, "%s: cannot read the model: %s", path, strerror(errno));
            else st_seterr(err, "%s: the file ended at byte %llu of %llu while being read (changed meanwhile?)",
                           path, (unsigned long long)got, (unsigned long long)size);
            st_free(buf);
            return NULL;
        }
        got += (uint64_t)r;
    }
    return buf;
}

/* Loads path by mmap (owned 0) or into memory of its own (owned 1), then
 * verifies it. */
static int load(const char *path, st_model *m, int owned, char *err)
{
    memset(m, 0, sizeof *m);
    uint64_t size = 0;
    int fd = open_model(path, &size, err);
    if (fd < 0) return -1;
    void *map;
    if (owned) {
        map = read_model(path, fd, size, err);
        close(fd);
        if (!map) return -1;
    } else {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (map == MAP_FAILED) return st_seterr(err, "%s: cannot map the model: %s", path, strerror(errno));
    }
    const char *base = map;
    st_model_header h;
    memcpy(&h, base, sizeof h);
    const st_section *table = (const st_section *)(base + sizeof h);
    if (check_header(path, size, &h, table, err) != 0 || check_sections(path, base, size, &h, table, err) != 0 ||
        bind_sections(path, base, &h, table, m, err) != 0) {
        drop_bytes(map, (size_t)size, owned);
        memset(m, 0, sizeof *m);
        return -1;
    }
    m->map = map;
    m->map_len = (size_t)size;
    m->map_owned = owned;
    return 0;
}

int st_model_load(const char *path, st_model *m, char *err) { return load(path, m, 0, err); }

int st_model_read(const char *path, st_model *m, char *err) { return load(path, m, 1, err); }

int st_model_gram(const st_model *m, float *G) { return st_als_gram_weighted(m->V, m->segments, m->k, m->missing, G); }

int st_model_meta(const st_model *m, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = m->meta, *end = m->meta + m->meta_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t n = (size_t)(le - p - klen - 1);
            if (n >= outlen) n = outlen - 1;
            memcpy(out, p + klen + 1, n);
            out[n] = '\0';
            return 0;
        }
        p = le + 1;
    }
    return -1;
}

const float *st_model_user(const st_model *m, uint32_t u, float *buf)
{
    if (!m->Uq) return m->U + (size_t)u * m->k;
    const int8_t *q = m->Uq + (size_t)u * m->k;
    float sc = m->Uscale[u];
    for (uint32_t i = 0; i < m->k; i++) buf[i] = (float)q[i] * sc;
    return buf;
}

void st_model_quantize(const float *X, uint64_t rows, uint32_t k, int8_t *q, float *scale)
{
    for (uint64_t r = 0; r < rows; r++) {
        const float *x = X + r * k;
        float top = 0;
        for (uint32_t i = 0; i < k; i++) top = fabsf(x[i]) > top ? fabsf(x[i]) : top;
        float sc = top > 0 ? top / 127.0f : 1.0f;
        for (uint32_t i = 0; i < k; i++) {
            long v = lrintf(x[i] / sc);
            q[r * k + i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        scale[r] = top > 0 ? sc : 0.0f;
    }
}
