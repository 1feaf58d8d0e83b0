/* Fully connected layer on OpenBLAS: the hot loop of an MLP step.
 * Each kernel is one or two products plus one pass over the (batch, out)
 * activations. The products are a bl_cpu_gemm_fn's: OpenBLAS's fp32 sgemm
 * (bl_cpu_gemm) for the fp32 table, bf16-rounded operands for bf16.c's. The passes go row by row;
 * each row runs in spans of BL_CPU_LANES through restrict-qualified loops that vectorise at -O2. */
#include <string.h>

#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* y (n) = max(y, 0). */
static void relu_span(int n, float *restrict y)
{
    for (int j = 0; j < n; j++) {
        y[j] = y[j] < 0.0f ? 0.0f : y[j]; /* NaN stays NaN, as in PyTorch */
    }
}

void bl_cpu_dense_forward_by(bl_cpu_gemm_fn *gemm, int batch, int in, int out, const float *x,
                             const float *w, const float *b, float *y, int relu)
{
    if (batch <= 0 || out <= 0) {
        return;
    }
    /* y starts as the bias in every row, and the product adds onto it
     * (beta 1), as torch.addmm does for nn.Linear: one write pass instead
     * of OpenBLAS zeroing y for beta 0 and a pass adding the bias after. */
    for (int i = 0; i < batch; i++) {
        memcpy(y + (size_t)i * (size_t)out, b, (size_t)out * sizeof(float));
    }
    /* y (batch, out) += x (batch, in) · W^T, W is (out, in). An empty
     * product (in == 0) leaves the bias. */
    if (in > 0) {
        gemm(0, 1, batch, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
    }
    if (!relu) {
        return;
    }
    for (int i = 0; i < batch; i++) {
        float *row = y + (size_t)i * (size_t)out;
        int j = 0;
        for (; j + L <= out; j += L) {
            relu_span(L, row + j);
        }
        relu_span(out - j, row + j);
    }
}

/* g (n) = g where y > 0, else 0 (in place); sum (n) += g. */
static void mask_colsum_span(int n, const float *restrict y, float *restrict g, float *restrict sum)
{
    for (int j = 0; j < n; j++) {
        const float v = y[j] > 0.0f ? g[j] : 0.0f;
        g[j] = v;
        sum[j] += v;
    }
}

/* sum (n) += g (n). */
static void colsum_span(int n, const float *restrict g, float *restrict sum)
{
    for (int j = 0; j < n; j++) {
        sum[j] += g[j];
    }
}

/* One row of the backward pass over dy: masked (when y != NULL) and summed
 * into db, in spans. */
static void dy_row(int n, const float *y, float *g, float *sum)
{
    int j = 0;
    if (y != NULL) {
        for (; j + L <= n; j += L) {
            mask_colsum_span(L, y + j, g + j, sum + j);
        }
        mask_colsum_span(n - j, y + j, g + j, sum + j);
    } else {
        for (; j + L <= n; j += L) {
            colsum_span(L, g + j, sum + j);
        }
        colsum_span(n - j, g + j, sum + j);
    }
}

void bl_cpu_dense_backward_by(bl_cpu_gemm_fn *gemm, int batch, int in, int out, const float *x,
                              const float *w, const float *y, float *dy, float *dx, float *dw,
                              float *db, int relu, int accumulate)
{
    if (out <= 0) {
        /* No outputs: dW and db are empty and dx (batch, in) is zero. */
        if (dx != NULL && batch > 0 && in > 0) {
            memset(dx, 0, (size_t)batch * (size_t)in * sizeof(float));
        }
        return;
    }
    if (!accumulate) {
        memset(db, 0, (size_t)out * sizeof(float));
    }
    if (batch <= 0) {
        /* Empty batch: the gradient is zero; only overwriting writes it. */
        if (!accumulate && in > 0) {
            memset(dw, 0, (size_t)out * (size_t)in * sizeof(float));
        }
        return;
    }
    /* One pass over dy (batch, out), rows outer so every access is
     * contiguous: mask by y > 0 in place (the sgemm calls below then read the
     * masked dy) and add the column sums into db (out). y is read only with
     * relu, so it may be NULL otherwise. */
    for (int i = 0; i < batch; i++) {
        const size_t row = (size_t)i * (size_t)out;
        dy_row(out, relu ? y + row : NULL, dy + row, db);
    }
    if (in <= 0) {
        return;
    }
    /* dW (out, in) (+)= dy^T (out, batch) · x (batch, in). */
    gemm(1, 0, out, in, batch, 1.0f, dy, out, x, in, accumulate ? 1.0f : 0.0f, dw, in);
    /* dx (batch, in) = dy (batch, out) · W (out, in). */
    if (dx != NULL) {
        gemm(0, 0, batch, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    }
}

void bl_cpu_dense_forward(int batch, int in, int out, const float *x, const float *w,
                          const float *b, float *y, int relu)
{
    bl_cpu_dense_forward_by(bl_cpu_gemm, batch, in, out, x, w, b, y, relu);
}

void bl_cpu_dense_backward(int batch, int in, int out, const float *x, const float *w,
                           const float *y, float *dy, float *dx, float *dw, float *db, int relu,
                           int accumulate)
{
    bl_cpu_dense_backward_by(bl_cpu_gemm, batch, in, out, x, w, y, dy, dx, dw, db, relu,
                             accumulate);
}
