/* SplitMix64 (Steele, Lea, Flood 2014): one 64-bit word of state, strong
 * enough for shuffles and initial weights, and trivially reproducible. */
#include <math.h>

#include "internal.h"

static uint64_t splitmix_finalize(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t bl_seed_mix(uint64_t a, uint64_t b)
{
    return splitmix_finalize(splitmix_finalize(a) ^ (b + 0x9e3779b97f4a7c15ULL));
}

void bl_rng_init(bl_rng_t *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t bl_rng_next(bl_rng_t *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    return splitmix_finalize(r->state);
}

float bl_rng_float(bl_rng_t *r)
{
    return (float)(bl_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t bl_rng_below(bl_rng_t *r, uint64_t n)
{
    /* Rejection: draw until the value falls below the largest multiple of n. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = bl_rng_next(r);
    } while (x >= limit);
    return x % n;
}

void bl_fill_uniform(float *out, size_t count, float lo, float hi, uint64_t seed)
{
    bl_rng_t r;
    bl_rng_init(&r, seed);
    for (size_t i = 0; i < count; i++) {
        float v = lo + (hi - lo) * bl_rng_float(&r);
        out[i] = v < hi ? v : nextafterf(hi, lo); /* rounding must not reach hi */
    }
}
