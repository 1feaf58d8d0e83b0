/* SplitMix64 (Steele, Lea, Flood 2014), the one copy in the library. This
 * header gives the finaliser, a bijective 64-bit mix that hashes a counter
 * into an independent-looking value, and the stream whose whole state is
 * one word. The policies of partition/ draw their exploration from it, the
 * simulator hashes its noise with it, and runtime/core/rng.c builds the
 * runtime's generator on it, so that every one of them produces the
 * reference outputs of Vigna's splitmix64.c (tests/test_rng.c checks them).
 * The functions are static inline and pure, so the header adds no link
 * dependency and partition/ stays free of runtime/. Internal to the
 * library. */
#ifndef BL_PARTITION_SPLITMIX_H
#define BL_PARTITION_SPLITMIX_H

#include <stdint.h>

/* The stream's increment (the odd integer nearest 2^64 / φ). */
#define BL_PART_SPLITMIX_GAMMA 0x9e3779b97f4a7c15ULL

/* The finaliser: a bijection of 64-bit words. */
static inline uint64_t bl_part_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The next draw of the stream whose state is *state (advanced by one). */
static inline uint64_t bl_part_next_random(uint64_t *state)
{
    return bl_part_mix64(*state += BL_PART_SPLITMIX_GAMMA);
}

#endif /* BL_PARTITION_SPLITMIX_H */
