/* SplitMix64 (Steele, Lea and Flood, 2014). The generator keeps one 64-bit
 * word of state, is strong enough for shuffles and initial weights, and is
 * trivially reproducible. The mix and the stream come from
 * partition/splitmix.h, the one copy that the partition policies use too. */
#include <math.h>

#include "internal.h"
#include "splitmix.h"

uint64_t bl_seed_mix(uint64_t a, uint64_t b)
{
    return bl_part_mix64(bl_part_mix64(a) ^ (b + BL_PART_SPLITMIX_GAMMA));
}

void bl_rng_init(bl_rng_t *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t bl_rng_next(bl_rng_t *r)
{
    return bl_part_next_random(&r->state);
}

float bl_rng_float(bl_rng_t *r)
{
    return (float)(bl_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t bl_rng_below(bl_rng_t *r, uint64_t n)
{
    /* Rejection sampling: the generator draws until the value falls below
     * the largest multiple of n. */
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
        out[i] = v < hi ? v : nextafterf(hi, lo); /* the rounding must not reach hi */
    }
}
