/* Element-wise passes on the GPU: ReLU, its mask, bias and the SGD
 * update, each a grid-stride loop on the context's stream; column sums as
 * a cuBLAS product with a vector of ones. */
#include "context.h"
#include "ops.h"

/* y = max(x, 0); NaN stays NaN, as on the CPU (x < 0 is false for NaN). */
__global__ static void relu_forward_kernel(size_t n, const float *x, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
    }
}

__global__ static void relu_backward_kernel(size_t n, const float *y, const float *dy, float *dx)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

/* y (rows, cols) += b (cols) by column, then max(·, 0) when relu. */
__global__ static void bias_kernel(size_t n, int cols, float *y, const float *b, int relu)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float v = y[i] + b[i % (size_t)cols];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

/* g = g where y > 0, else 0 (the ReLU's mask, in place). */
__global__ static void mask_kernel(size_t n, const float *y, float *g)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        g[i] = y[i] > 0.0f ? g[i] : 0.0f;
    }
}

__global__ static void fill_kernel(size_t n, float *a, float value)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        a[i] = value;
    }
}

/* The CPU's update (kernels/sgd.c) operation for operation, each product
 * and sum rounded on its own: the _rn intrinsics are never contracted into
 * FMAs (nvcc contracts a * b + c by default), so a GPU replica and a CPU
 * replica of a mixed group, given the same summed gradients, keep the
 * same parameters bit for bit. */
__global__ static void sgd_kernel(size_t n, float *w, float *v, const float *grad, float grad_scale,
                                  float lr, float momentum, float weight_decay)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = __fadd_rn(__fmul_rn(grad_scale, grad[i]), __fmul_rn(weight_decay, w[i]));
        const float vi = __fadd_rn(__fmul_rn(momentum, v[i]), g);
        v[i] = vi;
        w[i] = __fsub_rn(w[i], __fmul_rn(lr, vi));
    }
}

void bl_cuda_relu_forward(size_t count, const float *x, float *y)
{
    if (count > 0) {
        relu_forward_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            count, x, y);
    }
}

void bl_cuda_relu_backward(size_t count, const float *y, const float *dy, float *dx)
{
    if (count > 0) {
        relu_backward_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            count, y, dy, dx);
    }
}

void bl_cuda_bias(int rows, int cols, float *y, const float *b, int relu)
{
    size_t n = (size_t)rows * (size_t)cols;
    if (n > 0) {
        bias_kernel<<<bl_cuda_blocks(n), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(n, cols, y, b,
                                                                                   relu);
    }
}

int bl_cuda_ones(size_t count)
{
    if (count <= bl_cuda_ctx.ones_cap) {
        return 1;
    }
    /* Grown rarely and never in small steps: bl_cuda_init makes
     * BL_CUDA_ROWS_AT_START, and a growth, which waits for the GPU and
     * frees, at least doubles. */
    count = count > 2 * bl_cuda_ctx.ones_cap ? count : 2 * bl_cuda_ctx.ones_cap;
    /* The old vector may still be read by queued products. */
    if (!bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.stream), "growing the ones vector")) {
        return 0;
    }
    cudaFree(bl_cuda_ctx.ones);
    bl_cuda_ctx.ones = NULL;
    bl_cuda_ctx.ones_cap = 0;
    if (!bl_cuda_ok(cudaMalloc((void **)&bl_cuda_ctx.ones, count * sizeof(float)),
                    "allocating the ones vector")) {
        bl_cuda_ctx.ones = NULL;
        return 0;
    }
    fill_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
        count, bl_cuda_ctx.ones, 1.0f);
    bl_cuda_ctx.ones_cap = count;
    return 1;
}

/* The column sums are a product, sum (cols) += g^T (cols, rows) · ones
 * (rows), on cuBLAS: every SM takes part, where a thread per column left
 * most idle and walked the rows one by one. cuBLAS's order of the sum is
 * not the CPU's (within the products' tolerance) but the same run to run. */
void bl_cuda_mask_colsum(int rows, int cols, const float *y, float *g, float *sum)
{
    if (rows <= 0 || cols <= 0) {
        return;
    }
    size_t n = (size_t)rows * (size_t)cols;
    if (y != NULL) {
        mask_kernel<<<bl_cuda_blocks(n), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(n, y, g);
    }
    if (!bl_cuda_ones((size_t)rows)) {
        return;
    }
    /* Row-major g (rows, cols) is column-major (cols, rows) with ld cols. */
    const float one = 1.0f;
    bl_cublas_ok(cublasSgemv(bl_cuda_ctx.blas, CUBLAS_OP_N, cols, rows, &one, g, cols,
                             bl_cuda_ctx.ones, 1, &one, sum, 1),
                 "cublasSgemv of column sums");
}

void bl_cuda_sgd_update(size_t count, float *w, float *v, const float *grad, float grad_scale,
                        float lr, float momentum, float weight_decay)
{
    if (count > 0) {
        sgd_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            count, w, v, grad, grad_scale, lr, momentum, weight_decay);
    }
}
