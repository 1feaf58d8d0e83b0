/* Rounding a float to bfloat16, shared by the CPU's bf16 products
 * (bf16.c, the mirror device's autocast twin) and the CUDA ones
 * (cuda/gemm_bf16.cu), so that both round every operand to the same value.
 *
 * bfloat16 is a float's top 16 bits: the sign, the 8-bit exponent and 7
 * bits of the significand. bl_bf16_round returns the bfloat16 nearest to x,
 * ties to even (what __float2bfloat16_rn does), as a float whose low 16
 * bits are 0, so an fp32 product of two rounded operands is exact (8-bit
 * significands multiply into 16 bits) and only the fp32 accumulation rounds:
 * the arithmetic of a tensor core's bf16 GEMM with fp32 accumulation.
 * Finite values beyond bfloat16's largest round to infinity; infinities
 * stay; a NaN stays a NaN (made quiet, its sign kept). */
#ifndef BL_BF16_ROUND_H
#define BL_BF16_ROUND_H

#include <stdint.h>
#include <string.h>

#include "host_device.h"

/* The 16 bits of x's nearest bfloat16 (ties to even). */
static inline BL_HOST_DEVICE uint16_t bl_bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x0040u); /* NaN: quiet, sign kept */
    }
    /* Adding 0x7fff plus the lowest kept bit carries into the kept bits
     * exactly when the dropped half is above one half, or equal to it with
     * the kept part odd. An overflow carries into the exponent: infinity. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* x rounded to the nearest bfloat16, as a float. */
static inline BL_HOST_DEVICE float bl_bf16_round(float x)
{
    const uint32_t u = (uint32_t)bl_bf16_bits(x) << 16;
    float y;
    memcpy(&y, &u, sizeof y);
    return y;
}

#endif /* BL_BF16_ROUND_H */
