/* Softmax cross-entropy on the GPU: one thread per row runs the CPU's row
 * (kernels/xent_row.h), then one block sums the rows' losses and hits in a
 * fixed order, so the same input always gives the same bits. */
#include "context.h"
#include "ops.h"
#include "xent_row.h"

__global__ static void rows_kernel(int batch, int classes, const float *logits, const int *labels,
                                   float *dlogits, double *row_loss, int *row_hit)
{
    /* long: i + stride stays exact for any int batch */
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < batch;
         i += (long)gridDim.x * blockDim.x) {
        const size_t at = (size_t)i * (size_t)classes;
        row_loss[i] = bl_xent_row(classes, logits + at, labels[i],
                                  dlogits != NULL ? dlogits + at : NULL, &row_hit[i]);
    }
}

/* One block of BL_CUDA_THREADS: thread t sums rows t, t + T, ... in order,
 * then a fixed tree adds the threads' sums. totals = {loss, hits}. */
__global__ static void total_kernel(int batch, const double *row_loss, const int *row_hit,
                                    double *totals)
{
    __shared__ double loss[BL_CUDA_THREADS];
    __shared__ double hits[BL_CUDA_THREADS];
    const int t = threadIdx.x;
    double l = 0.0, h = 0.0;
    for (int i = t; i < batch; i += BL_CUDA_THREADS) {
        l += row_loss[i];
        h += row_hit[i];
    }
    loss[t] = l;
    hits[t] = h;
    __syncthreads();
    for (int half = BL_CUDA_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            loss[t] += loss[t + half];
            hits[t] += hits[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        totals[0] = loss[0];
        totals[1] = hits[0];
    }
}

double bl_cuda_softmax_xent(int batch, int classes, const float *logits, const int *labels,
                            float *dlogits, long *correct)
{
    if (batch <= 0 || classes <= 0 || !bl_cuda_row_scratch((size_t)batch)) {
        return 0.0;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    rows_kernel<<<bl_cuda_blocks((size_t)batch), BL_CUDA_THREADS, 0, st>>>(
        batch, classes, logits, labels, dlogits, bl_cuda_ctx.row_loss, bl_cuda_ctx.row_hit);
    total_kernel<<<1, BL_CUDA_THREADS, 0, st>>>(batch, bl_cuda_ctx.row_loss, bl_cuda_ctx.row_hit,
                                                bl_cuda_ctx.totals);
    if (!bl_cuda_ok(cudaGetLastError(), "launching the loss kernels")) {
        return 0.0; /* reported by bl_cuda_check */
    }
    double totals[2] = {0.0, 0.0};
    /* The loss goes back to the host: this call waits for the GPU. */
    if (!bl_cuda_ok(
            cudaMemcpyAsync(totals, bl_cuda_ctx.totals, sizeof totals, cudaMemcpyDeviceToHost, st),
            "copying the loss to the host") ||
        !bl_cuda_ok(cudaStreamSynchronize(st), "waiting for the loss")) {
        return 0.0;
    }
    if (correct != NULL) {
        *correct += (long)totals[1];
    }
    return totals[0];
}
