/* GELU, GPT-2's tanh approximation (kernels.h's gelu_forward and
 * gelu_backward):
 *   y = 0.5 · x · (1 + tanh(u)),  u = sqrt(2/π) · (x + 0.044715 · x³)
 *   y' = 0.5 · (1 + tanh(u)) + 0.5 · x · (1 − tanh²(u)) · sqrt(2/π) · (1 + 3 · 0.044715 · x²)
 * The per-element math is gelu_approx.h's (shared with cuda/gelu.cu). In
 * place is allowed, so in-place and out-of-place calls take separate
 * loops: restrict is promised only where the pointers really differ. */
#include <stdint.h>

#include "cpu_kernels.h"
#include "gelu_approx.h"

enum { L = BL_CPU_LANES };

static void gelu_span(size_t n, const float *restrict x, float *restrict y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = bl_gelu(x[i]);
    }
}

static void gelu_inplace_span(size_t n, float *restrict y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = bl_gelu(y[i]);
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
        dx[i] = dy[i] * bl_gelu_grad(x[i]);
    }
}

/* g = g · gelu'(x). */
static void grad_inplace_span(size_t n, const float *restrict x, float *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        g[i] *= bl_gelu_grad(x[i]);
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
