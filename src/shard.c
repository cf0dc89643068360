/* shard: twemproxy's key routing, reimplemented, and the split of a model.
 *
 * The routing follows twemproxy 0.5's hashkit: the key hashes (note that
 * fnv1a_64 there is a 32-bit hash seeded with the low half of the 64-bit FNV
 * offset basis, and that key bytes are sign-extended chars), the ketama
 * continuum (160 points per server of equal weight, four per MD5 of
 * "<name>-<i>", sorted; a key goes to the first point at or after its hash,
 * wrapping), modula (hash mod servers) and hash_tag (only the part between
 * the tag's two characters is hashed, when both are present and it is not
 * empty). tests/test_shard.py checks every choice against a running
 * nutcracker.
 */
#include "shard.h"

#include <errno.h>
#include <math.h>
#include <md5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "util.h"

const char *const st_shard_hash_names[] = {"fnv1a_64", "fnv1_64", "fnv1a_32", "fnv1_32", "md5", "crc32a",
                                           "one_at_a_time", NULL};

int st_shard_spec_init(st_shard_spec *spec, uint32_t n, char *err)
{
    memset(spec, 0, sizeof *spec);
    if (n < 1 || n > 64) return st_seterr(err, "--shards must be between 1 and 64");
    spec->shards = n;
    spec->hash = 0;
    spec->dist = ST_DIST_KETAMA;
    for (uint32_t i = 0; i < n; i++) snprintf(spec->names[i], sizeof spec->names[i], "shard%u", i);
    return 0;
}

static void md5(const void *data, size_t len, uint8_t out[16])
{
    MD5_CTX c;
    MD5Init(&c);
    MD5Update(&c, data, len);
    MD5Final(out, &c);
}

uint32_t st_shard_hash(int h, const char *key, size_t len)
{
    switch (h) {
    case 0: { /* fnv1a_64, as twemproxy computes it: in 32 bits */
        uint32_t x = (uint32_t)0xcbf29ce484222325ULL;
        for (size_t i = 0; i < len; i++) {
            x ^= (uint32_t)(int32_t)(signed char)key[i];
            x *= (uint32_t)0x100000001b3ULL;
        }
        return x;
    }
    case 1: { /* fnv1_64: a real 64-bit hash, truncated */
        uint64_t x = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < len; i++) {
            x *= 0x100000001b3ULL;
            x ^= (uint64_t)(int64_t)(signed char)key[i];
        }
        return (uint32_t)x;
    }
    case 2: { /* fnv1a_32 */
        uint32_t x = 2166136261u;
        for (size_t i = 0; i < len; i++) {
            x ^= (uint32_t)(int32_t)(signed char)key[i];
            x *= 16777619u;
        }
        return x;
    }
    case 3: { /* fnv1_32 */
        uint32_t x = 2166136261u;
        for (size_t i = 0; i < len; i++) {
            x *= 16777619u;
            x ^= (uint32_t)(int32_t)(signed char)key[i];
        }
        return x;
    }
    case 4: { /* md5: the first four bytes, little-endian */
        uint8_t d[16];
        md5(key, len, d);
        return (uint32_t)d[3] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[1] << 8 | d[0];
    }
    case 5: /* crc32a: the standard CRC-32 */
        return (uint32_t)crc32(0L, (const Bytef *)key, (uInt)len);
    case 6: { /* one_at_a_time */
        uint32_t x = 0;
        for (size_t i = 0; i < len; i++) {
            x += (uint32_t)(int32_t)(signed char)key[i];
            x += x << 10;
            x ^= x >> 6;
        }
        x += x << 3;
        x ^= x >> 11;
        x += x << 15;
        return x;
    }
    }
    return 0;
}

static int cmp_points(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return (*x >> 32) < (*y >> 32) ? -1 : (*x >> 32) > (*y >> 32);
}

void st_ketama_build(const st_shard_spec *spec, st_ketama_ring *ring)
{
    uint32_t n = spec->shards, count = 0;
    /* Points per server exactly as twemproxy computes it, in float. */
    float pct = 1.0f / (float)n;
    float scaled = pct * 160 / 4 * (float)n;
    uint32_t per_server = (uint32_t)floorf((float)(scaled + 0.0000000001)) * 4;
    uint64_t *pts = malloc((size_t)n * per_server * sizeof *pts);
    if (!pts) {
        ring->npoints = 0;
        return;
    }
    for (uint32_t s = 0; s < n; s++) {
        for (uint32_t p = 1; p <= per_server / 4; p++) {
            char host[96];
            int hl = snprintf(host, sizeof host, "%s-%u", spec->names[s], p - 1);
            uint8_t d[16];
            md5(host, (size_t)hl, d);
            for (uint32_t x = 0; x < 4; x++) {
                uint32_t v = (uint32_t)d[3 + x * 4] << 24 | (uint32_t)d[2 + x * 4] << 16 |
                             (uint32_t)d[1 + x * 4] << 8 | d[x * 4];
                pts[count++] = (uint64_t)v << 32 | s;
            }
        }
    }
    /* Sorted by value; equal values keep no particular order, as in qsort. */
    qsort(pts, count, sizeof *pts, cmp_points);
    for (uint32_t i = 0; i < count; i++) {
        ring->value[i] = (uint32_t)(pts[i] >> 32);
        ring->index[i] = (uint32_t)pts[i];
    }
    ring->npoints = count;
    free(pts);
}

uint32_t st_shard_route(const st_shard_spec *spec, const st_ketama_ring *ring, const char *key, size_t len)
{
    if (spec->hash_tag[0] && spec->hash_tag[1]) {
        const char *a = memchr(key, spec->hash_tag[0], len);
        if (a) {
            const char *b = memchr(a + 1, spec->hash_tag[1], len - (size_t)(a + 1 - key));
            if (b && b - a > 1) {
                key = a + 1;
                len = (size_t)(b - key);
            }
        }
    }
    uint32_t h = st_shard_hash(spec->hash, key, len);
    if (spec->dist == ST_DIST_MODULA) return h % spec->shards;
    if (ring->npoints == 0) return 0;
    uint32_t lo = 0, hi = ring->npoints;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ring->value[mid] < h) lo = mid + 1;
        else hi = mid;
    }
    return ring->index[hi == ring->npoints ? 0 : hi];
}

uint32_t st_shard_of_user(const st_shard_spec *spec, const st_ketama_ring *ring, const char *user, size_t len)
{
    char stack[256];
    char *key = len + 2 <= sizeof stack ? stack : malloc(len + 2);
    if (!key) return 0;
    key[0] = 'u';
    key[1] = ':';
    memcpy(key + 2, user, len);
    uint32_t s = st_shard_route(spec, ring, key, len + 2);
    if (key != stack) free(key);
    return s;
}

typedef struct {
    const st_shard_spec *spec;
    int listen_port, port_base;
} yml_ctx;

static int yml_write(FILE *f, void *vctx, char *err)
{
    const yml_ctx *c = vctx;
    const st_shard_spec *s = c->spec;
    fprintf(f, "# twemproxy (nutcracker) in front of the starling shards written beside this file.\n"
               "# Routing depends on hash, hash_tag, distribution and the server names only:\n"
               "# change the addresses freely, keep the names and their order.\n"
               "starling:\n"
               "  listen: 127.0.0.1:%d\n"
               "  hash: %s\n"
               "  distribution: %s\n",
            c->listen_port, st_shard_hash_names[s->hash], s->dist == ST_DIST_MODULA ? "modula" : "ketama");
    if (s->hash_tag[0]) fprintf(f, "  hash_tag: \"%s\"\n", s->hash_tag);
    fprintf(f, "  redis: true\n  auto_eject_hosts: false\n  timeout: 2000\n  servers:\n");
    for (uint32_t i = 0; i < s->shards; i++)
        fprintf(f, "   - 127.0.0.1:%d:1 %s\n", c->port_base + (int)i, s->names[i]);
    return ferror(f) ? st_seterr(err, "write failed: %s", strerror(errno)) : 0;
}

int st_shard_write(const st_model *m, const st_shard_spec *spec, const char *dir, int listen_port, int port_base,
                   uint64_t *users_out, char *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return st_seterr(err, "%s: cannot create: %s", dir, strerror(errno));
    st_ketama_ring *ring = st_malloc(sizeof *ring);
    uint32_t *shard_of = st_malloc(((size_t)m->users + 1) * sizeof *shard_of);
    uint64_t counts[64] = {0};
    if (!ring || !shard_of) {
        st_free(ring);
        st_free(shard_of);
        return st_seterr(err, "out of memory");
    }
    st_ketama_build(spec, ring);
    for (uint32_t u = 0; u < m->users; u++) {
        size_t len;
        const char *id = st_idmap_name(&m->user_ids, u, &len);
        shard_of[u] = st_shard_of_user(spec, ring, id, len);
        counts[shard_of[u]]++;
    }
    /* A shard may get no users (few users, or keys twemproxy's hash
     * clusters): it still answers every user from the prior. */
    int rc = 0;
    for (uint32_t s = 0; s < spec->shards && rc == 0; s++) {
        uint64_t mu = counts[s], nnz = 0;
        for (uint32_t u = 0; u < m->users; u++)
            if (shard_of[u] == s) nnz += m->hist_ptr[u + 1] - m->hist_ptr[u];
        float *U = m->Uq ? NULL : st_aligned_alloc(64, (mu * m->k + 1) * sizeof *U);
        int8_t *Uq = m->Uq ? st_malloc(mu * m->k + 1) : NULL;
        float *Usc = m->Uq ? st_malloc((mu + 1) * sizeof *Usc) : NULL;
        uint64_t *hp = st_malloc((mu + 1) * sizeof *hp);
        uint32_t *hi = st_malloc((nnz + 1) * sizeof *hi);
        float *hv = st_malloc((nnz + 1) * sizeof *hv);
        size_t mlen = m->meta_len + 96;
        char *meta = st_malloc(mlen);
        st_idmap ids;
        st_idmap_init(&ids);
        if ((m->Uq ? !Uq || !Usc : !U) || !hp || !hi || !hv || !meta) {
            rc = st_seterr(err, "out of memory for shard %u", s);
        } else {
            uint64_t r = 0, q = 0;
            hp[0] = 0;
            for (uint32_t u = 0; u < m->users && rc == 0; u++) {
                if (shard_of[u] != s) continue;
                size_t len;
                const char *id = st_idmap_name(&m->user_ids, u, &len);
                uint32_t idx;
                if (st_idmap_intern(&ids, id, len, &idx, NULL, err) != 0) {
                    rc = -1;
                    break;
                }
                if (m->Uq) {
                    memcpy(Uq + r * m->k, m->Uq + (size_t)u * m->k, m->k);
                    Usc[r] = m->Uscale[u];
                } else {
                    memcpy(U + r * m->k, m->U + (size_t)u * m->k, m->k * sizeof *U);
                }
                for (uint64_t p = m->hist_ptr[u]; p < m->hist_ptr[u + 1]; p++, q++) {
                    hi[q] = m->hist_idx[p];
                    hv[q] = m->hist_val[p];
                }
                hp[++r] = q;
            }
            if (rc == 0) {
                int ml = snprintf(meta, mlen, "%.*sshard=%u/%u\n", (int)m->meta_len, m->meta, s, spec->shards);
                st_model sm = *m;
                sm.map = NULL;
                sm.users = (uint32_t)mu;
                sm.U = U;
                sm.Uq = Uq;
                sm.Uscale = Usc;
                sm.user_ids = ids;
                sm.hist_ptr = hp;
                sm.hist_idx = hi;
                sm.hist_val = hv;
                sm.meta = meta;
                sm.meta_len = (size_t)ml;
                char path[4096];
                snprintf(path, sizeof path, "%s/shard-%u.model", dir, s);
                rc = st_model_save(path, &sm, err);
            }
        }
        st_idmap_free(&ids);
        st_free(U);
        st_free(Uq);
        st_free(Usc);
        st_free(hp);
        st_free(hi);
        st_free(hv);
        st_free(meta);
    }
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/nutcracker.yml", dir);
        yml_ctx c = {spec, listen_port, port_base};
        rc = st_write_atomic(path, yml_write, &c, err);
    }
    if (users_out)
        for (uint32_t s = 0; s < spec->shards; s++) users_out[s] = counts[s];
    st_free(ring);
    st_free(shard_of);
    return rc;
}
