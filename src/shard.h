/* shard: split a model by user exactly as twemproxy (nutcracker) routes keys.
 *
 * twemproxy routes a Redis command by its key: starling's per-user keys are
 * `u:<user>` (the sorted-set view of a user, ZINCRBY and DEL for online
 * events and opt-outs). A user's shard is therefore the server twemproxy
 * picks for the key "u:<user>" under the pool's hash, hash_tag and
 * distribution. This module reimplements exactly that choice (tests check it
 * against a running nutcracker) and writes one model per shard, each with
 * its users and every segment, plus the nutcracker.yml that routes to them.
 *
 * Supported: hash fnv1a_64 (twemproxy's default), fnv1_64, fnv1a_32, fnv1_32,
 * md5, crc32a, one_at_a_time; distribution ketama (default) or modula, equal
 * weights; an optional two-character hash_tag. Not supported: random
 * distribution (not deterministic), the other hashes.
 * Owns: nothing between calls. Never: prints.
 */
#ifndef STARLING_SHARD_H
#define STARLING_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef enum { ST_DIST_KETAMA = 0, ST_DIST_MODULA = 1 } st_distribution;

typedef struct {
    uint32_t shards;
    int hash;                /* index into st_shard_hash_names */
    st_distribution dist;
    char hash_tag[3];        /* "" or two characters, e.g. "{}" */
    char names[64][32];      /* server names, which ketama hashes: shard0 ... */
} st_shard_spec;

/* NULL-terminated names of the supported hashes, in the order of `hash`. */
extern const char *const st_shard_hash_names[];

/* Fills spec for n shards named shard0..shard{n-1}, fnv1a_64, ketama.
 * Returns -1 with a reason when n is not between 1 and 64. */
int st_shard_spec_init(st_shard_spec *spec, uint32_t n, char *err);

/* The 32-bit key hash twemproxy computes with hash number h. */
uint32_t st_shard_hash(int h, const char *key, size_t len);

/* The server index twemproxy routes key to (hash_tag applied). The ketama
 * continuum is built on first use per spec (kept in the caller's ring). */
typedef struct {
    uint32_t npoints;
    uint32_t value[64 * 160];
    uint32_t index[64 * 160];
} st_ketama_ring;

void st_ketama_build(const st_shard_spec *spec, st_ketama_ring *ring);
uint32_t st_shard_route(const st_shard_spec *spec, const st_ketama_ring *ring, const char *key, size_t len);

/* The shard of a user: the route of "u:<user>". */
uint32_t st_shard_of_user(const st_shard_spec *spec, const st_ketama_ring *ring, const char *user, size_t len);

/* Splits m into DIR/shard-<i>.model for every shard and writes
 * DIR/nutcracker.yml listening on listen_port, with shard i at
 * 127.0.0.1:<port_base + i> (edit the addresses for other hosts: routing
 * depends on the names only). users_out (may be NULL) receives each shard's
 * user count; a shard may have none. */
int st_shard_write(const st_model *m, const st_shard_spec *spec, const char *dir, int listen_port, int port_base,
                   uint64_t *users_out, char *err);

#endif
