/* idmap: string ids to dense indices with one byte blob and one u32 hash index.
 *
 * Why this layout: the ids of 100M users must cost little more than their
 * bytes, and a server must look them up from an mmapped model without
 * rebuilding anything. A u32 slot per 2 ids plus a u64 offset per id is 16
 * bytes of overhead per id; the blob holds the bytes themselves.
 */
#include "idmap.h"

#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util.h"

uint64_t st_idmap_hash(const char *s, size_t len) { return XXH3_64bits(s, len); }

uint64_t st_idmap_slots_for(uint64_t n)
{
    uint64_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

void st_idmap_init(st_idmap *m)
{
    memset(m, 0, sizeof *m);
    m->owned = 1;
}

void st_idmap_free(st_idmap *m)
{
    if (m->owned) {
        st_free(m->offsets);
        st_free(m->bytes);
        st_free(m->slots);
    }
    memset(m, 0, sizeof *m);
}

const char *st_idmap_name(const st_idmap *m, uint32_t i, size_t *len)
{
    uint64_t a = m->offsets[i], b = m->offsets[i + 1];
    if (len) *len = (size_t)(b - a - 1);
    return m->bytes + a;
}

/* memcmp(a, b, n) == 0, inline for the short ids most are: up to 16
 * bytes as two overlapping fixed-size compares, reading nothing past n. */
static inline int same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t x, y, z, w;
    if (n >= 8 && n <= 16) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        memcpy(&z, a + n - 8, 8);
        memcpy(&w, b + n - 8, 8);
        return ((x ^ y) | (z ^ w)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t p, q, r, t;
        memcpy(&p, a, 4);
        memcpy(&q, b, 4);
        memcpy(&r, a + n - 4, 4);
        memcpy(&t, b + n - 4, 4);
        return ((p ^ q) | (r ^ t)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

uint64_t st_idmap_prefetch(const st_idmap *m, const char *s, size_t len)
{
    if (m->nslots == 0) return 0;
    uint64_t h = st_idmap_hash(s, len) & (m->nslots - 1);
    __builtin_prefetch(m->slots + h);
    return h;
}

uint32_t st_idmap_prefetch_stage(const st_idmap *m, uint64_t slot, int stage)
{
    if (slot >= m->nslots) return ST_NOT_FOUND;
    uint32_t v = m->slots[slot];
    if (v == 0 || v - 1 >= m->count) return ST_NOT_FOUND;
    if (stage == 1) __builtin_prefetch(m->offsets + (v - 1));
    else __builtin_prefetch(m->bytes + m->offsets[v - 1]);
    return v - 1;
}

uint32_t st_idmap_find(const st_idmap *m, const char *s, size_t len)
{
    if (m->nslots == 0) return ST_NOT_FOUND;
    uint64_t mask = m->nslots - 1;
    uint64_t h = st_idmap_hash(s, len) & mask;
    for (uint64_t probe = 0; probe < m->nslots; probe++) {
        uint32_t v = m->slots[h];
        if (v == 0) return ST_NOT_FOUND;
        uint32_t i = v - 1;
        if (i < m->count) {
            uint64_t a = m->offsets[i], b = m->offsets[i + 1];
            if (b - a - 1 == len && same_bytes(m->bytes + a, s, len)) return i;
        }
        h = (h + 1) & mask;
    }
    return ST_NOT_FOUND;
}

/* Re-inserts every id into a new index of nslots slots. */
static int rehash(st_idmap *m, uint64_t nslots)
{
    uint32_t *slots = st_calloc(nslots, sizeof *slots);
    if (!slots) return -1;
    uint64_t mask = nslots - 1;
    for (uint32_t i = 0; i < m->count; i++) {
        size_t len;
        const char *s = st_idmap_name(m, i, &len);
        uint64_t h = st_idmap_hash(s, len) & mask;
        while (slots[h]) h = (h + 1) & mask;
        slots[h] = i + 1;
    }
    st_free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    return 0;
}

int st_idmap_intern(st_idmap *m, const char *s, size_t len, uint32_t *idx, int *added, char *err)
{
    if (added) *added = 0;
    uint32_t found = st_idmap_find(m, s, len);
    if (found != ST_NOT_FOUND) {
        *idx = found;
        return 0;
    }
    if (!m->owned) return st_seterr(err, "id map is read-only");
    if (m->count >= ST_IDMAP_MAX) return st_seterr(err, "too many distinct ids (limit %u)", ST_IDMAP_MAX);
    if (m->count + 1 >= m->cap || !m->offsets) {
        uint32_t cap = m->cap ? (m->cap > UINT32_MAX / 2 ? UINT32_MAX : m->cap * 2) : 1024;
        uint64_t *o = st_realloc(m->offsets, (size_t)cap * sizeof *o);
        if (!o) return st_seterr(err, "out of memory growing the id map");
        if (!m->offsets) o[0] = 0;
        m->offsets = o;
        m->cap = cap;
    }
    uint64_t used = m->offsets[m->count];
    if (used + len + 1 > m->bytes_cap) {
        uint64_t cap = m->bytes_cap ? m->bytes_cap : 4096;
        while (cap < used + len + 1) cap *= 2;
        char *b = st_realloc(m->bytes, cap);
        if (!b) return st_seterr(err, "out of memory growing the id map");
        m->bytes = b;
        m->bytes_cap = cap;
    }
    if (2 * ((uint64_t)m->count + 1) > m->nslots) {
        if (rehash(m, st_idmap_slots_for((uint64_t)m->count + 1)) != 0)
            return st_seterr(err, "out of memory growing the id index");
    }
    memcpy(m->bytes + used, s, len);
    m->bytes[used + len] = '\0';
    uint32_t i = m->count;
    m->offsets[i + 1] = used + len + 1;
    m->count++;
    uint64_t mask = m->nslots - 1;
    uint64_t h = st_idmap_hash(s, len) & mask;
    while (m->slots[h]) h = (h + 1) & mask;
    m->slots[h] = i + 1;
    *idx = i;
    if (added) *added = 1;
    return 0;
}

int st_idmap_view(st_idmap *m, uint32_t count, const uint64_t *offsets, const char *bytes,
                  uint64_t bytes_len, const uint32_t *slots, uint64_t nslots, char *err)
{
    if (count > ST_IDMAP_MAX) return st_seterr(err, "id count %u too large", count);
    if (nslots == 0 || (nslots & (nslots - 1)) || nslots < 2 * (uint64_t)count)
        return st_seterr(err, "id index has a bad size (%llu slots for %u ids)", (unsigned long long)nslots, count);
    if (offsets[0] != 0 || offsets[count] != bytes_len)
        return st_seterr(err, "id table does not span its byte blob");
    for (uint32_t i = 0; i < count; i++) {
        if (offsets[i + 1] <= offsets[i] || offsets[i + 1] > bytes_len)
            return st_seterr(err, "id %u has a bad offset", i);
        if (bytes[offsets[i + 1] - 1] != '\0') return st_seterr(err, "id %u is not terminated", i);
    }
    memset(m, 0, sizeof *m);
    m->count = count;
    m->offsets = (uint64_t *)offsets;
    m->bytes = (char *)bytes;
    m->bytes_cap = bytes_len;
    m->slots = (uint32_t *)slots;
    m->nslots = nslots;
    m->owned = 0;
    return 0;
}
