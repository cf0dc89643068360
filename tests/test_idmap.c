/* Tests of the id map: interning, lookup, growth, views and their checks. */
#include "idmap.h"
#include "tap.h"
#include "util.h"

/* Interning gives dense indices in order; lookup is exact. */
static void test_intern_and_find(st_idmap *m)
{
    char err[ST_ERRLEN] = "";
    uint32_t idx;
    int added;
    ok(st_idmap_intern(m, "alice", 5, &idx, &added, err) == 0 && idx == 0 && added, "first id gets 0");
    ok(st_idmap_intern(m, "bob", 3, &idx, &added, err) == 0 && idx == 1 && added, "second id gets 1");
    ok(st_idmap_intern(m, "alice", 5, &idx, &added, err) == 0 && idx == 0 && !added, "existing id found");
    ok(st_idmap_find(m, "bob", 3) == 1, "find");
    ok(st_idmap_find(m, "bo", 2) == ST_NOT_FOUND, "prefix is not a match");
    ok(st_idmap_find(m, "carol", 5) == ST_NOT_FOUND, "absent id");
    /* Ids with NUL-free arbitrary bytes and the empty-looking ones. */
    ok(st_idmap_intern(m, "\xff\xfe", 2, &idx, &added, err) == 0 && idx == 2, "binary id");
    size_t len;
    const char *name = st_idmap_name(m, 2, &len);
    ok(len == 2 && memcmp(name, "\xff\xfe", 2) == 0 && name[2] == '\0', "name is NUL-terminated");
}

/* Growth through many rehashes keeps every id (m holds the 3 ids above). */
static void test_growth(st_idmap *m)
{
    char buf[32], err[ST_ERRLEN];
    uint32_t idx;
    int all = 1;
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(buf, sizeof buf, "user-%d", i);
        if (st_idmap_intern(m, buf, (size_t)n, &idx, NULL, err) != 0 || idx != (uint32_t)(i + 3)) all = 0;
    }
    ok(all, "100000 ids interned in order");
    all = 1;
    for (int i = 0; i < 100000; i += 7) {
        int n = snprintf(buf, sizeof buf, "user-%d", i);
        if (st_idmap_find(m, buf, (size_t)n) != (uint32_t)(i + 3)) all = 0;
    }
    ok(all, "every id found after growth");
    ok(m->nslots >= 2 * (uint64_t)m->count, "load factor at most 1/2");
}

/* A view over the same arrays answers identically and refuses to grow. */
static void test_view(const st_idmap *m)
{
    char err[ST_ERRLEN] = "";
    uint32_t idx;
    st_idmap v;
    ok(st_idmap_view(&v, m->count, m->offsets, m->bytes, m->offsets[m->count], m->slots, m->nslots, err) == 0, "view");
    ok(st_idmap_find(&v, "user-99999", 10) == 100002, "view finds");
    ok(st_idmap_intern(&v, "new", 3, &idx, NULL, err) != 0 && strstr(err, "read-only"), "view is read-only");
}

/* Views reject inconsistent arrays. */
static void test_view_checks(void)
{
    char err[ST_ERRLEN] = "";
    st_idmap v;
    uint64_t offs[3] = {0, 2, 9};
    char bytes[4] = {'a', '\0', 'b', 'c'};
    uint32_t slots[16] = {0};
    ok(st_idmap_view(&v, 2, offs, bytes, 4, slots, 16, err) != 0, "offset past the blob rejected (%s)", err);
    uint64_t offs2[3] = {0, 2, 4};
    ok(st_idmap_view(&v, 2, offs2, bytes, 4, slots, 16, err) != 0, "unterminated id rejected (%s)", err);
    ok(st_idmap_view(&v, 2, offs2, bytes, 4, slots, 3, err) != 0, "slot count not a power of two rejected");
    /* A view whose slots point past count answers not-found, never reads out of bounds. */
    char bytes2[4] = {'a', '\0', 'b', '\0'};
    uint32_t bad[16];
    for (int i = 0; i < 16; i++) bad[i] = 1000;
    ok(st_idmap_view(&v, 2, offs2, bytes2, 4, bad, 16, err) == 0 && st_idmap_find(&v, "a", 1) == ST_NOT_FOUND,
       "out-of-range slots are ignored");
}

/* Allocation failure while interning is a clean error. */
static void test_out_of_memory(void)
{
    char err[ST_ERRLEN] = "";
    uint32_t idx;
    st_idmap f;
    st_idmap_init(&f);
    st_alloc_fail_at(1);
    ok(st_idmap_intern(&f, "x", 1, &idx, NULL, err) != 0 && strstr(err, "out of memory"), "oom is an error");
    st_alloc_fail_at(0);
    ok(st_idmap_intern(&f, "x", 1, &idx, NULL, err) == 0 && idx == 0, "works again after the failure");
    st_idmap_free(&f);
}

/* Ids of every length from 1 to 40, and for each, the same id with one
 * byte changed at every position: found exactly, never each other (the
 * short-id comparison reads each end in fixed-size pieces). */
static void test_lengths(void)
{
    st_idmap m;
    st_idmap_init(&m);
    char id[41], other[41], err[ST_ERRLEN];
    uint32_t idx;
    int all = 1;
    for (size_t n = 1; n <= 40; n++) {
        for (size_t i = 0; i < n; i++) id[i] = (char)('a' + (i * 5 + n) % 26);
        if (st_idmap_intern(&m, id, n, &idx, NULL, err) != 0) all = 0;
    }
    for (size_t n = 1; n <= 40 && all; n++) {
        for (size_t i = 0; i < n; i++) id[i] = (char)('a' + (i * 5 + n) % 26);
        all &= st_idmap_find(&m, id, n) == (uint32_t)(n - 1);
        for (size_t pos = 0; pos < n; pos++) {
            memcpy(other, id, n);
            other[pos] = (char)(other[pos] ^ 0x20);
            all &= st_idmap_find(&m, other, n) == ST_NOT_FOUND;
        }
    }
    ok(all, "ids of 1 to 40 bytes: each found, none matched by the same id with any one byte changed");
    st_idmap_free(&m);
}

/* The staged prefetches read only the map: each stage names the index at
 * the id's first slot (the id itself where nothing collided before it),
 * never one past the map, and nothing for an empty map or an absent id's
 * empty slot. */
static void test_prefetch(const st_idmap *m)
{
    char buf[32];
    int all = 1, direct = 0;
    for (int i = 0; i < 100000; i += 3) {
        int n = snprintf(buf, sizeof buf, "user-%d", i);
        uint64_t slot = st_idmap_prefetch(m, buf, (size_t)n);
        uint32_t a = st_idmap_prefetch_stage(m, slot, 1), b = st_idmap_prefetch_stage(m, slot, 2);
        all &= slot < m->nslots && a == b && a < m->count;
        direct += a == st_idmap_find(m, buf, (size_t)n);
    }
    ok(all, "a present id's prefetch stages name an index of the map, the same at both stages");
    ok(direct > 25000, "and mostly the id's own (%d of 33334 at a load of at most 1/2: the others collided)", direct);
    st_idmap e;
    st_idmap_init(&e);
    ok(st_idmap_prefetch_stage(&e, st_idmap_prefetch(&e, "x", 1), 1) == ST_NOT_FOUND, "an empty map: nothing");
    ok(st_idmap_prefetch_stage(m, m->nslots, 2) == ST_NOT_FOUND, "a slot past the map: nothing");
    int absent = 1;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(buf, sizeof buf, "absent-%d", i);
        uint64_t slot = st_idmap_prefetch(m, buf, (size_t)n);
        uint32_t a = st_idmap_prefetch_stage(m, slot, 1);
        absent &= a == ST_NOT_FOUND || a < m->count;
    }
    ok(absent, "absent ids: nothing or an index of the map");
    st_idmap_free(&e);
}

int main(void)
{
    st_idmap m;
    st_idmap_init(&m);
    test_intern_and_find(&m);
    test_growth(&m);
    test_view(&m);
    test_prefetch(&m);
    test_view_checks();
    test_out_of_memory();
    test_lengths();
    st_idmap_free(&m);
    return tap_done();
}
