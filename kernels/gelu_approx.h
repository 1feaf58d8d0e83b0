/* GELU's per-element math, GPT-2's tanh approximation, shared by the CPU
 * kernel (gelu.c) and the CUDA one (cuda/gelu.cu) so both compute the same
 * thing the same way:
 *   y = 0.5 · x · (1 + tanh(u)),  u = sqrt(2/π) · (x + 0.044715 · x³)
 *   y' = 0.5 · (1 + tanh(u)) + 0.5 · x · (1 − tanh²(u)) · sqrt(2/π) · (1 + 3 · 0.044715 · x²)
 * Every product and sum is rounded on its own: gelu.c is C11 (GCC does not
 * fuse there) and gelu.cu is built with -fmad=false, so the two give the
 * same bits. */
#ifndef BL_GELU_APPROX_H
#define BL_GELU_APPROX_H

#include <stdint.h>

#include "host_device.h"

#define BL_GELU_K 0.7978845608028654f /* sqrt(2/π) */
#define BL_GELU_A 0.044715f

/* e^x for x in [-87, 88], within about 2 ulp, written so that GCC
 * vectorises the loops that call it (libm's expf and tanhf are scalar
 * calls, which made GELU a third of a GPT-2 step): x = k·ln 2 + r with
 * |r| <= ln 2 / 2, e^r by its degree-6 Taylor polynomial (error below
 * 2e-8 there), and 2^k put into the exponent bits. Beyond the range the
 * argument is clamped: e^-87 is about 1e-38, and every caller adds 1. */
static inline BL_HOST_DEVICE float bl_exp_approx(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Rounds x / ln 2 to the nearest integer with the 1.5 · 2^23 trick. */
    const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
#ifdef __CUDA_ARCH__
    return p * __int_as_float(((int32_t)k + 127) << 23);
#else
    union {
        int32_t i;
        float f;
    } two_k;
    two_k.i = ((int32_t)k + 127) << 23;
    return p * two_k.f;
#endif
}

/* s = (1 + tanh(u)) / 2 = 1 / (1 + e^(−2u)): the form without the
 * cancellation of 1 + tanh(u) near −1. */
static inline BL_HOST_DEVICE float bl_half_one_plus_tanh(float u)
{
    return 1.0f / (1.0f + bl_exp_approx(-2.0f * u));
}

static inline BL_HOST_DEVICE float bl_gelu(float x)
{
    const float u = BL_GELU_K * (x + BL_GELU_A * x * x * x);
    return x * bl_half_one_plus_tanh(u);
}

/* With s as above, 0.5 · (1 − tanh²(u)) = 2 · s · (1 − s). */
static inline BL_HOST_DEVICE float bl_gelu_grad(float x)
{
    const float u = BL_GELU_K * (x + BL_GELU_A * x * x * x);
    const float s = bl_half_one_plus_tanh(u);
    const float du = BL_GELU_K * (1.0f + 3.0f * BL_GELU_A * x * x);
    return s + 2.0f * x * s * (1.0f - s) * du;
}

#endif /* BL_GELU_APPROX_H */
