/* idmap: external string ids <-> dense indices 0..count-1.
 *
 * Owns: the id strings (one byte blob, each id followed by a NUL, located by a
 * u64 offset table) and an open-addressing hash index (u32 slots holding
 * index+1, 0 = empty; XXH3-64 of the id bytes, linear probing, power-of-two
 * size, load <= 1/2). The same three arrays are written to the model file as
 * they are, so a loaded model looks ids up straight from the mapping with no
 * rebuild (st_idmap_view). A view is read-only: interning into it fails.
 * Never: copies strings on lookup, allocates in st_idmap_find.
 *
 * Checklist: the hash function and probing are part of the model format;
 * change them only with STARLING_FORMAT_VERSION and docs/FORMAT.md.
 */
#ifndef STARLING_IDMAP_H
#define STARLING_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#define ST_NOT_FOUND UINT32_MAX
#define ST_IDMAP_MAX (UINT32_MAX - 1u)

typedef struct {
    uint32_t count;
    uint32_t cap;       /* capacity of offsets (owned maps) */
    uint64_t *offsets;  /* count+1 entries */
    char *bytes;        /* offsets[count] bytes used */
    uint64_t bytes_cap;
    uint32_t *slots;    /* nslots entries */
    uint64_t nslots;
    int owned;          /* 0 for a view into a model mapping */
} st_idmap;

void st_idmap_init(st_idmap *m);
void st_idmap_free(st_idmap *m);

/* Looks the id up, adding it when absent. *idx receives its index; *added is
 * set to 1 when it was new (added may be NULL). Fails on out-of-memory, on a
 * full map (ST_IDMAP_MAX ids) and on a view. */
int st_idmap_intern(st_idmap *m, const char *s, size_t len, uint32_t *idx, int *added, char *err);

/* Index of the id, or ST_NOT_FOUND. Never allocates. */
uint32_t st_idmap_find(const st_idmap *m, const char *s, size_t len);

/* Starts fetching what st_idmap_find(m, s, len) reads, for a run of
 * lookups, in three rounds over the run so that each round's misses
 * overlap: stage 0 the hash slot (returned: pass it to the later stages),
 * stage 1 the offsets of the id found there, stage 2 its bytes. Stages 1
 * and 2 return the index at that slot, the likely answer (ST_NOT_FOUND:
 * none), for the caller's own arrays. Reads only the map; a stage before
 * its predecessor landed only waits. */
uint64_t st_idmap_prefetch(const st_idmap *m, const char *s, size_t len);
uint32_t st_idmap_prefetch_stage(const st_idmap *m, uint64_t slot, int stage);

/* The NUL-terminated id of index i (i < count); *len may be NULL. Valid while
 * the map (or the model it views) lives. */
const char *st_idmap_name(const st_idmap *m, uint32_t i, size_t *len);

/* Hash-index size for n ids (power of two, >= 2n, >= 16). */
uint64_t st_idmap_slots_for(uint64_t n);

/* Makes m a read-only view over arrays owned elsewhere (a model mapping).
 * Checks that the offsets are monotonic and within bytes_len, that every id is
 * NUL-terminated and that nslots is a power of two able to hold count ids;
 * returns -1 with a reason otherwise. Slot contents are range-checked on use. */
int st_idmap_view(st_idmap *m, uint32_t count, const uint64_t *offsets, const char *bytes,
                  uint64_t bytes_len, const uint32_t *slots, uint64_t nslots, char *err);

/* The hash used by the index (exposed for tests and tools). */
uint64_t st_idmap_hash(const char *s, size_t len);

#endif
