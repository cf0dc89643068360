/* rng: explicit random-number state (xoshiro256**, seeded by splitmix64).
 *
 * Every random choice in starling draws from an st_rng passed in by the
 * caller, seeded from --seed, so a run can be repeated bit for bit. There is
 * no global generator. st_rng_for(seed, stream) derives an independent
 * generator for a sub-stream (a user, a thread, a fold) without sharing state.
 */
#ifndef STARLING_RNG_H
#define STARLING_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} st_rng;

static inline uint64_t st_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void st_rng_seed(st_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = st_splitmix64(&x);
}

/* A generator for sub-stream `stream` of `seed`. */
static inline st_rng st_rng_for(uint64_t seed, uint64_t stream)
{
    st_rng r;
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x632be59bd9b4e019ULL);
    st_rng_seed(&r, st_splitmix64(&x));
    return r;
}

static inline uint64_t st_rng_next(st_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform double in [0, 1). */
static inline double st_rng_uniform(st_rng *r) { return (double)(st_rng_next(r) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for n < 2^32). */
static inline uint64_t st_rng_below(st_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)st_rng_next(r) * n) >> 64);
}

/* Standard normal (Box-Muller; one value per call keeps the state simple). */
static inline double st_rng_normal(st_rng *r)
{
    double u1 = st_rng_uniform(r), u2 = st_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Exponential with mean 1. */
static inline double st_rng_exp(st_rng *r) { return -log(1.0 - st_rng_uniform(r)); }

#endif
