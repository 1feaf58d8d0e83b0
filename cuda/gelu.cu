/* GELU on the GPU (kernels.h's gelu_forward and gelu_backward): the CPU's
 * per-element math (kernels/gelu_approx.h) in a grid-stride loop. This file
 * is built with -fmad=false, so no product and sum is fused into an FMA and
 * the results are the CPU's bits. In place is allowed: each element is
 * read before it is written, by the same thread. */
#include "context.h"
#include "gelu_approx.h"
#include "ops_transformer.h"

__global__ static void gelu_forward_kernel(size_t n, const float *x, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        y[i] = bl_gelu(x[i]);
    }
}

/* dx = dy · gelu'(x) (the CPU's in-place g *= gelu'(x) is the same
 * product: multiplication commutes exactly). */
__global__ static void gelu_backward_kernel(size_t n, const float *x, const float *dy, float *dx)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        dx[i] = dy[i] * bl_gelu_grad(x[i]);
    }
}

void bl_cuda_gelu_forward(size_t count, const float *x, float *y)
{
    if (count > 0) {
        gelu_forward_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            count, x, y);
    }
}

void bl_cuda_gelu_backward(size_t count, const float *x, const float *dy, float *dx)
{
    if (count > 0) {
        gelu_backward_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            count, x, dy, dx);
    }
}
