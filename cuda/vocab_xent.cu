/* Cross-entropy over a padded vocabulary on the GPU (kernels.h's
 * vocab_xent): rows of Vp logits whose first V columns are real. The CPU
 * (kernels/vocab_xent.c) runs xent_row.h's row one row at a time; a row
 * here is GPT-2's 50257 columns, too long for one thread, so one block
 * takes a row and computes the same thing in parallel: the maximum, exp(l
 * − m) in float, their sum in double (each thread's columns in order, then
 * a fixed tree over the threads), one reciprocal in float and a product
 * per entry. Then one block sums the rows' losses in a fixed order (as
 * softmax_xent.cu does), so the same input always gives the same bits. No
 * (rows, V) buffer is needed besides dlogits itself: the exponentials are
 * kept there between the two passes, as the CPU keeps them. */
#include <math.h>

#include "context.h"
#include "ops_attention.h"

/* Row r of logits (rows, Vp), for r = blockIdx.x, blockIdx.x + gridDim.x,
 * ...; blockDim.x == BL_CUDA_THREADS (the trees assume it). Writes
 * row_loss[r] = log Σ exp(l − m) − (l[target] − m) over the first V
 * columns and, when dlogits is not NULL, its row = softmax − onehot in
 * the first V columns and 0 in the padding. The padding of logits is
 * never read. */
__global__ static void vocab_rows_kernel(int rows, int V, int Vp, const float *logits,
                                         const int32_t *targets, float *dlogits, double *row_loss)
{
    __shared__ float part_max[BL_CUDA_THREADS];
    __shared__ double part_sum[BL_CUDA_THREADS];
    const int t = (int)threadIdx.x;
    /* The row is the same for the whole block, so every thread reaches
     * each barrier. */
    for (int r = (int)blockIdx.x; r < rows; r += (int)gridDim.x) {
        const size_t at = (size_t)r * (size_t)Vp;
        const float *x = logits + at;
        float *g = dlogits != NULL ? dlogits + at : NULL;
        const int target = (int)targets[r];

        float m = -INFINITY;
        for (int j = t; j < V; j += BL_CUDA_THREADS) {
            m = x[j] > m ? x[j] : m;
        }
        part_max[t] = m;
        __syncthreads();
        for (int half = BL_CUDA_THREADS / 2; half > 0; half /= 2) {
            if (t < half && part_max[t + half] > part_max[t]) {
                part_max[t] = part_max[t + half];
            }
            __syncthreads();
        }
        m = part_max[0];

        /* exp(l − m) in float (nothing overflows), kept in g, summed in
         * double. */
        double sum = 0.0;
        for (int j = t; j < V; j += BL_CUDA_THREADS) {
            const float e = expf(x[j] - m);
            if (g != NULL) {
                g[j] = e;
            }
            sum += (double)e;
        }
        part_sum[t] = sum;
        __syncthreads();
        for (int half = BL_CUDA_THREADS / 2; half > 0; half /= 2) {
            if (t < half) {
                part_sum[t] += part_sum[t + half];
            }
            __syncthreads();
        }
        sum = part_sum[0]; /* >= 1: the maximum gives exp(0) */

        if (g != NULL) {
            /* g = e · (1/sum), then − 1 at the target, rounded one by one
             * as on the CPU (the _rn intrinsics are never fused into an
             * FMA). A thread rereads only the columns it wrote. */
            const float inv = (float)(1.0 / sum);
            for (int j = t; j < Vp; j += BL_CUDA_THREADS) {
                float y = 0.0f;
                if (j < V) {
                    y = __fmul_rn(g[j], inv);
                    if (j == target) {
                        y = __fsub_rn(y, 1.0f);
                    }
                }
                g[j] = y;
            }
        }
        if (t == 0) {
            row_loss[r] = log(sum) - ((double)x[target] - (double)m);
        }
        /* part_max[0] and part_sum[0] are read before the next row writes
         * them. */
        __syncthreads();
    }
}

/* One block of BL_CUDA_THREADS: thread t sums rows t, t + T, ... in
 * order, then a fixed tree adds the threads' sums into *total. */
__global__ static void vocab_total_kernel(int rows, const double *row_loss, double *total)
{
    __shared__ double part[BL_CUDA_THREADS];
    const int t = (int)threadIdx.x;
    double l = 0.0;
    for (int i = t; i < rows; i += BL_CUDA_THREADS) {
        l += row_loss[i];
    }
    part[t] = l;
    __syncthreads();
    for (int half = BL_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            part[t] += part[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        *total = part[0];
    }
}

double bl_cuda_vocab_xent(int rows, int V, int Vp, const float *logits, const int32_t *targets,
                          float *dlogits)
{
    /* Nothing to do, no launch: no rows (the CPU's sum is 0), or shapes
     * outside the contract (V >= 1, Vp >= V). */
    if (rows <= 0 || V <= 0 || Vp < V || !bl_cuda_row_scratch((size_t)rows)) {
        return 0.0;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    const unsigned int blocks = rows < 65535 ? (unsigned int)rows : 65535u;
    vocab_rows_kernel<<<blocks, BL_CUDA_THREADS, 0, st>>>(rows, V, Vp, logits, targets, dlogits,
                                                          bl_cuda_ctx.row_loss);
    vocab_total_kernel<<<1, BL_CUDA_THREADS, 0, st>>>(rows, bl_cuda_ctx.row_loss,
                                                      bl_cuda_ctx.totals);
    if (!bl_cuda_ok(cudaGetLastError(), "launching the vocabulary loss kernels")) {
        return 0.0; /* reported by bl_cuda_check */
    }
    double total = 0.0;
    /* The loss goes back to the host: this call waits for the GPU. */
    if (!bl_cuda_ok(
            cudaMemcpyAsync(&total, bl_cuda_ctx.totals, sizeof total, cudaMemcpyDeviceToHost, st),
            "copying the vocabulary loss to the host") ||
        !bl_cuda_ok(cudaStreamSynchronize(st), "waiting for the vocabulary loss")) {
        return 0.0;
    }
    return total;
}
