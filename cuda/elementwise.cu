/* Element-wise passes on the GPU: ReLU, its mask, bias, column sums and
 * the SGD update, each a grid-stride loop on the context's stream. */
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

/* One thread per column j of g (rows, cols): masks g by y > 0 when y is
 * given, and adds the column's sum to sum[j]. Rows run in order, as the
 * CPU's pass does, so a column sums in the same order. */
__global__ static void mask_colsum_kernel(int rows, int cols, const float *y, float *g, float *sum)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += gridDim.x * blockDim.x) {
        float s = sum[j];
        for (int i = 0; i < rows; i++) {
            const size_t k = (size_t)i * (size_t)cols + (size_t)j;
            float v = g[k];
            if (y != NULL) {
                v = y[k] > 0.0f ? v : 0.0f;
                g[k] = v;
            }
            s += v;
        }
        sum[j] = s;
    }
}

__global__ static void sgd_kernel(size_t n, float *w, float *v, const float *grad, float grad_scale,
                                  float lr, float momentum, float weight_decay)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = grad_scale * grad[i] + weight_decay * w[i];
        const float vi = momentum * v[i] + g;
        v[i] = vi;
        w[i] = w[i] - lr * vi;
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

void bl_cuda_mask_colsum(int rows, int cols, const float *y, float *g, float *sum)
{
    if (rows > 0 && cols > 0) {
        mask_colsum_kernel<<<bl_cuda_blocks((size_t)cols), BL_CUDA_THREADS, 0,
                             bl_cuda_ctx.stream>>>(rows, cols, y, g, sum);
    }
}

void bl_cuda_sgd_update(size_t count, float *w, float *v, const float *grad, float grad_scale,
                        float lr, float momentum, float weight_decay)
{
    if (count > 0) {
        sgd_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            count, w, v, grad, grad_scale, lr, momentum, weight_decay);
    }
}
