/* Standalone ReLU (dense layers fuse theirs; see dense.c). NaN propagates
 * through the forward (as in PyTorch), so divergence is not hidden; the
 * backward passes gradient only where y > 0. In place is
 * allowed, so in-place and out-of-place calls take separate loops: restrict
 * is promised only where the pointers really differ. Spans of BL_CPU_LANES
 * vectorise at -O2. */
#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* y = max(x, 0); x == y is handled by the caller. */
static void relu_span(size_t n, const float *restrict x, float *restrict y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
    }
}

static void relu_inplace_span(size_t n, float *restrict y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = y[i] < 0.0f ? 0.0f : y[i];
    }
}

void bl_cpu_relu_forward(size_t count, const float *x, float *y)
{
    size_t i = 0;
    if (x == y) {
        for (; i + L <= count; i += L) {
            relu_inplace_span(L, y + i);
        }
        relu_inplace_span(count - i, y + i);
    } else {
        for (; i + L <= count; i += L) {
            relu_span(L, x + i, y + i);
        }
        relu_span(count - i, x + i, y + i);
    }
}

/* dx = dy where y > 0, else 0; y, dy, dx distinct. */
static void mask_span(size_t n, const float *restrict y, const float *restrict dy,
                      float *restrict dx)
{
    for (size_t i = 0; i < n; i++) {
        const float g = dy[i]; /* loaded unconditionally: a branch-free select */
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

/* g = g where y > 0, else 0. */
static void mask_inplace_span(size_t n, const float *restrict y, float *restrict g)
{
    for (size_t i = 0; i < n; i++) {
        g[i] = y[i] > 0.0f ? g[i] : 0.0f;
    }
}

/* y (the forward output) never aliases dx; dy == dx is allowed. */
void bl_cpu_relu_backward(size_t count, const float *y, const float *dy, float *dx)
{
    size_t i = 0;
    if (dy == dx) {
        for (; i + L <= count; i += L) {
            mask_inplace_span(L, y + i, dx + i);
        }
        mask_inplace_span(count - i, y + i, dx + i);
    } else {
        for (; i + L <= count; i += L) {
            mask_span(L, y + i, dy + i, dx + i);
        }
        mask_span(count - i, y + i, dy + i, dx + i);
    }
}
