/* Softmax over the rows of a matrix and its backward on the GPU (kernels.h's
 * softmax_rows and softmax_rows_backward), the CPU's arithmetic (kernels/
 * xent_row.h's bl_softmax_row, kernels/softmax_rows.c) spread over a warp
 * per row: the maximum, exp(x − max) in float, the sum of the exps (and
 * the backward's Σ y · dy) in double. The double sums run in a fixed tree
 * of the warp's lanes instead of in order, so they may differ from the
 * CPU's in their last bits (and the device's expf from libm's by an ulp
 * or two); the same input always gives the same bits. */
#include "context.h"
#include "ops_transformer.h"

/* The sum over the warp's lanes by butterfly: each step adds a lane's
 * value and its partner's, the same two numbers either way round, so
 * every lane ends with the same bits. */
__device__ static double warp_sum(double v)
{
    for (int off = 16; off > 0; off /= 2) {
        v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
    }
    return v;
}

__device__ static float warp_max(float v)
{
    for (int off = 16; off > 0; off /= 2) {
        const float o = __shfl_xor_sync(0xFFFFFFFFu, v, off);
        v = o > v ? o : v;
    }
    return v;
}

/* Warp w of the grid takes rows w, w + warps, ...: a warp's lanes always
 * share a row, so the full-mask shuffles see all 32. Lane l takes the
 * columns l, l + 32, ... In place is allowed: every x of the row is read
 * (for the max) before the shuffles, which no lane passes before all have
 * reached them, and each later pass reads and writes only its own
 * columns. */
__global__ static void softmax_rows_kernel(int rows, int cols, const float *x, float *y)
{
    const int lane = (int)(threadIdx.x % 32);
    for (long r = (blockIdx.x * (long)blockDim.x + threadIdx.x) / 32; r < rows;
         r += (long)gridDim.x * blockDim.x / 32) {
        const float *xr = x + (size_t)r * (size_t)cols;
        float *yr = y + (size_t)r * (size_t)cols;
        float m = xr[0];
        for (int j = lane; j < cols; j += 32) {
            m = xr[j] > m ? xr[j] : m;
        }
        m = warp_max(m);
        double sum = 0.0;
        for (int j = lane; j < cols; j += 32) {
            const float e = expf(xr[j] - m);
            yr[j] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / warp_sum(sum)); /* sum >= 1: the max gives exp(0) */
        for (int j = lane; j < cols; j += 32) {
            yr[j] *= inv;
        }
    }
}

/* dx = y · (dy − Σ_j y_j · dy_j) per row, a warp per row as above. dy ==
 * dx is allowed: the dot reads every dy of the row before the shuffles. */
__global__ static void softmax_rows_backward_kernel(int rows, int cols, const float *y,
                                                    const float *dy, float *dx)
{
    const int lane = (int)(threadIdx.x % 32);
    for (long r = (blockIdx.x * (long)blockDim.x + threadIdx.x) / 32; r < rows;
         r += (long)gridDim.x * blockDim.x / 32) {
        const size_t at = (size_t)r * (size_t)cols;
        const float *yr = y + at, *dyr = dy + at;
        float *dxr = dx + at;
        double dot = 0.0;
        for (int j = lane; j < cols; j += 32) {
            dot += (double)yr[j] * (double)dyr[j];
        }
        const float d = (float)warp_sum(dot);
        for (int j = lane; j < cols; j += 32) {
            dxr[j] = yr[j] * (dyr[j] - d);
        }
    }
}

void bl_cuda_softmax_rows(int rows, int cols, const float *x, float *y)
{
    if (rows > 0 && cols > 0) {
        softmax_rows_kernel<<<bl_cuda_blocks((size_t)rows * 32), BL_CUDA_THREADS, 0,
                              bl_cuda_ctx.stream>>>(rows, cols, x, y);
    }
}

void bl_cuda_softmax_rows_backward(int rows, int cols, const float *y, const float *dy, float *dx)
{
    if (rows > 0 && cols > 0) {
        softmax_rows_backward_kernel<<<bl_cuda_blocks((size_t)rows * 32), BL_CUDA_THREADS, 0,
                                       bl_cuda_ctx.stream>>>(rows, cols, y, dy, dx);
    }
}
