/* Rows of a sample table by index on the GPU (kernels.h's gather_rows):
 * a GPU rank keeps its training set in device memory and cuts each
 * micro-batch out of it here, so a step uploads only the sample numbers. */
#include "context.h"
#include "ops.h"

/* dst (rows, cols) row r = src row idx[r]: one thread per element, so
 * consecutive threads read consecutive floats of a row. */
__global__ static void gather_rows_kernel(size_t n, int cols, const float *src, const int64_t *idx,
                                          float *dst)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / (size_t)cols, c = i % (size_t)cols;
        dst[i] = src[(size_t)idx[r] * (size_t)cols + c];
    }
}

__global__ static void gather_labels_kernel(int rows, const int *src, const int64_t *idx, int *dst)
{
    /* long: r + stride stays exact for any int rows */
    for (long r = blockIdx.x * (long)blockDim.x + threadIdx.x; r < rows;
         r += (long)gridDim.x * blockDim.x) {
        dst[r] = src[idx[r]];
    }
}

/* A launch failure shows at the next bl_cuda_check, as for every kernel. */
void bl_cuda_gather_rows(int rows, int cols, const float *src, const int64_t *idx, float *dst,
                         const int *labels_src, int *labels_dst)
{
    if (rows <= 0) {
        return;
    }
    if (src != NULL && dst != NULL && cols > 0) {
        size_t n = (size_t)rows * (size_t)cols;
        gather_rows_kernel<<<bl_cuda_blocks(n), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
            n, cols, src, idx, dst);
    }
    if (labels_src != NULL && labels_dst != NULL) {
        gather_labels_kernel<<<bl_cuda_blocks((size_t)rows), BL_CUDA_THREADS, 0,
                               bl_cuda_ctx.stream>>>(rows, labels_src, idx, labels_dst);
    }
}
