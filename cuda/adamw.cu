/* AdamW and the sum of squares on the GPU (kernels.h's adamw_update and
 * sum_squares). The update is the CPU's (kernels/adamw.c): its scalars are
 * formed on the host by kernels/adamw_step.h's bl_adamw_consts (bias
 * corrections in double, once per call), and each parameter runs that
 * header's bl_adamw_step. This file is built with -fmad=false (and its
 * host code with -ffp-contract=off), so no product and sum is fused, as in
 * adamw.c, and the results are the CPU's bits; sqrtf and the division are
 * IEEE-rounded (nvcc's default, without --use_fast_math).
 *
 * The sum of squares is a fixed tree in double: a grid of at most
 * SUMSQ_BLOCKS blocks (a number that depends on count alone), each thread
 * adding its grid-stride elements in order, each block's threads added by
 * a tree, then one block adding the blocks' sums the same way. The same
 * input gives the same bits on every run and every GPU; the order is not
 * the CPU's, so the two agree to rounding in double. */
#include "adamw_step.h"
#include "context.h"
#include "ops_transformer.h"

constexpr unsigned int SUMSQ_BLOCKS = 1024;

__global__ static void adamw_kernel(size_t n, float *w, float *m, float *v, const float *grad,
                                    const bl_adamw_consts_t k)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float wi = w[i], mi = m[i], vi = v[i];
        bl_adamw_step(k, grad[i], &wi, &mi, &vi);
        w[i] = wi;
        m[i] = mi;
        v[i] = vi;
    }
}

/* s (BL_CUDA_THREADS, in shared memory) added by halves: s[0] = the sum.
 * Every thread of the block calls it. */
__device__ static void block_tree(double *s)
{
    const unsigned int t = threadIdx.x;
    __syncthreads();
    for (unsigned int half = BL_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            s[t] += s[t + half];
        }
        __syncthreads();
    }
}

/* partial[block] = the sum of x[i]² over the block's grid-stride elements. */
__global__ static void sumsq_blocks_kernel(size_t n, const float *x, double *partial)
{
    __shared__ double s[BL_CUDA_THREADS];
    double acc = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const double v = (double)x[i];
        acc += v * v;
    }
    s[threadIdx.x] = acc;
    block_tree(s);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = s[0];
    }
}

/* *total = the sum of partial[0 .. nblocks), one block. */
__global__ static void sumsq_total_kernel(unsigned int nblocks, const double *partial,
                                          double *total)
{
    __shared__ double s[BL_CUDA_THREADS];
    double acc = 0.0;
    for (unsigned int i = threadIdx.x; i < nblocks; i += BL_CUDA_THREADS) {
        acc += partial[i];
    }
    s[threadIdx.x] = acc;
    block_tree(s);
    if (threadIdx.x == 0) {
        *total = s[0];
    }
}

void bl_cuda_adamw_update(size_t count, float *w, float *m, float *v, const float *grad,
                          float grad_scale, float lr, float beta1, float beta2, float eps,
                          float weight_decay, long t)
{
    if (count == 0) {
        return;
    }
    const bl_adamw_consts_t k = bl_adamw_consts(grad_scale, lr, beta1, beta2, eps, weight_decay, t);
    adamw_kernel<<<bl_cuda_blocks(count), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(count, w, m, v,
                                                                                    grad, k);
}

double bl_cuda_sum_squares(size_t count, const float *x)
{
    if (count == 0) {
        return 0.0;
    }
    /* The block sums, then the total after them. */
    if (!bl_cuda_grow(&bl_cuda_ctx.sumsq_scratch, &bl_cuda_ctx.sumsq_bytes,
                      (SUMSQ_BLOCKS + 1) * sizeof(double), "allocating sum_squares's scratch")) {
        return 0.0;
    }
    double *partial = (double *)bl_cuda_ctx.sumsq_scratch;
    const size_t wanted = (count + BL_CUDA_THREADS - 1) / BL_CUDA_THREADS;
    const unsigned int nblocks = wanted < SUMSQ_BLOCKS ? (unsigned int)wanted : SUMSQ_BLOCKS;
    cudaStream_t st = bl_cuda_ctx.stream;
    sumsq_blocks_kernel<<<nblocks, BL_CUDA_THREADS, 0, st>>>(count, x, partial);
    sumsq_total_kernel<<<1, BL_CUDA_THREADS, 0, st>>>(nblocks, partial, partial + SUMSQ_BLOCKS);
    if (!bl_cuda_ok(cudaGetLastError(), "launching the sum_squares kernels")) {
        return 0.0; /* reported by bl_cuda_check */
    }
    double total = 0.0;
    /* The sum goes back to the host: this call waits for the GPU. */
    if (!bl_cuda_ok(cudaMemcpyAsync(&total, partial + SUMSQ_BLOCKS, sizeof total,
                                    cudaMemcpyDeviceToHost, st),
                    "copying the sum of squares to the host") ||
        !bl_cuda_ok(cudaStreamSynchronize(st), "waiting for the sum of squares")) {
        return 0.0;
    }
    return total;
}
