/* GELU, GPT-2's tanh approximation (kernels.h's gelu_forward and
 * gelu_backward):
 *   y = 0.5 · x · (1 + tanh(u)),  u = sqrt(2/π) · (x + 0.044715 · x³)
 *   y' = 0.5 · (1 + tanh(u)) + 0.5 · x · (1 − tanh²(u)) · sqrt(2/π) · (1 + 3 · 0.044715 · x²)
 * In place is allowed, so in-place and out-of-place calls take separate
 * loops: restrict is promised only where the pointers really differ. */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

#define GELU_K 0.7978845608028654f /* sqrt(2/π) */
#define GELU_A 0.044715f

/* e^x for x in [-87, 88], within about 2 ulp, written so that GCC
 * vectorises the loops that call it (libm's expf and tanhf are scalar
 * calls, which made GELU a third of a GPT-2 step): x = k·ln 2 + r with
 * |r| <= ln 2 / 2, e^r by its degree-6 Taylor polynomial (error below
 * 2e-8 there), and 2^k put into the exponent bits. Beyond the range the
 * argument is clamped: e^-87 is about 1e-38, and every caller adds 1. */
static inline float exp_approx(float x)
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
    union {
        int32_t i;
        float f;
    } two_k = {.i = ((int32_t)k + 127) << 23};
    return p * two_k.f;
}

/* s = (1 + tanh(u)) / 2 = 1 / (1 + e^(−2u)): the form without the
 * cancellation of 1 + tanh(u) near −1. */
static inline float half_one_plus_tanh(float u)
{
    return 1.0f / (1.0f + exp_approx(-2.0f * u));
}

static inline float gelu(float x)
{
    const float u = GELU_K * (x + GELU_A * x * x * x);
    return x * half_one_plus_tanh(u);
}

/* With s as above, 0.5 · (1 − tanh²(u)) = 2 · s · (1 − s). */
static inline float gelu_grad(float x)
{
    const float u = GELU_K * (x + GELU_A * x * x * x);
    const float s = half_one_plus_tanh(u);
    const float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
    return s + 2.0f * x * s * (1.0f - s) * du;
}

static void gelu_span(size_t n, const float *restrict x, float *restrict y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = gelu(x[i]);
    }
}

static void gelu_inplace_span(size_t n, float *restrict y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = gelu(y[i]);
    }
}

void bl_cpu_gelu_forward(size_t count, const float *x, float *y)
{
    size_t i = 0;
    if (x == y) {
        for (; i + L <= count; i += L) {
            gelu_inplace_span(L, y + i);
        }
        gelu_inplace_span(count - i, y + i);
    } else {
        for (; i + L <= count; i += L) {
            gelu_span(L, x + i, y + i);
        }
        gelu_span(count - i, x + i, y + i);
    }
}

/* dx = dy · gelu'(x); x, dy, dx distinct. */
static void grad_span(size_t n, const float *restrict x, const float *restrict dy,
                      float *restrict dx)
{
    for (size_t i = 0; i < n; i++) {
        dx[i] = dy[i] * gelu_grad(x[i]);
    }
}

/* g = g · gelu'(x). */
static void grad_inplace_span(size_t n, const float *restrict x, float *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        g[i] *= gelu_grad(x[i]);
    }
}

void bl_cpu_gelu_backward(size_t count, const float *x, const float *dy, float *dx)
{
    size_t i = 0;
    if (dy == dx) {
        for (; i + L <= count; i += L) {
            grad_inplace_span(L, x + i, dx + i);
        }
        grad_inplace_span(count - i, x + i, dx + i);
    } else {
        for (; i + L <= count; i += L) {
            grad_span(L, x + i, dy + i, dx + i);
        }
        grad_span(count - i, x + i, dy + i, dx + i);
    }
}
