/* Layer normalisation on the GPU (kernels.h's layernorm_forward and
 * layernorm_backward), with the CPU's arithmetic (kernels/layernorm.c):
 * a row's statistics are sums in double in BL_CPU_LANES partial sums, lane
 * k summing the elements j ≡ k (mod BL_CPU_LANES) in order, then the lanes
 * added in order. Here a group of BL_CPU_LANES threads takes a row, thread
 * k being the CPU's lane k, so the sums, and with them out, mean, rstd and
 * dinp, are the CPU's bits. This file is built with -fmad=false (nvcc
 * would otherwise fuse d · d + q and the like into FMAs, which the CPU
 * does not do). dweight and dbias are column sums over the rows, done in
 * a fixed two-level order (not the CPU's): deterministic, within the
 * float summation bound of the CPU's. */
#include "context.h"
#include "cpu_kernels.h"
#include "ops_transformer.h"

#define LN_EPS 1e-5

/* Threads per row: the CPU's lanes. */
enum { LANES = BL_CPU_LANES };
static_assert(BL_CUDA_THREADS % 32 == 0 && 32 % LANES == 0 && LANES < 32,
              "a row's group of threads must lie within one warp");

/* Column sums: a block of COL_TILE columns × COL_SPLIT threads takes
 * COL_CHUNK rows, thread (c, s) summing rows s, s + COL_SPLIT, ... of the
 * chunk in order; the COL_SPLIT sums are added in order into a partial
 * per (chunk, column), and the partials in chunk order into the result. */
enum { COL_TILE = 32, COL_SPLIT = 8, COL_CHUNK = 128 };

/* The mask of the group of LANES threads (within a warp) that holds this
 * thread, for the shuffles that add up the group's lanes. */
__device__ static unsigned int group_mask(void)
{
    return ((1u << LANES) - 1u) << (threadIdx.x % 32 / LANES * LANES);
}

/* The group's lanes 0, 1, ..., LANES − 1 added in order, starting from
 * 0.0, as the CPU adds its lanes; every thread of the group gets it. */
__device__ static double lanes_sum(unsigned int mask, double v)
{
    double sum = 0.0;
    for (int l = 0; l < LANES; l++) {
        sum += __shfl_sync(mask, v, l, LANES);
    }
    return sum;
}

/* A group of LANES threads per row (rows step by the grid's groups, so a
 * group's threads always share a row): the CPU's statistics of the row
 * x − x[0] (shifted, so a large mean does not cancel), then the row. */
__global__ static void layernorm_forward_kernel(int rows, int C, const float *inp,
                                                const float *weight, const float *bias, float *out,
                                                float *mean, float *rstd)
{
    const int k = (int)(threadIdx.x % LANES);
    const unsigned int mask = group_mask();
    for (long r = (blockIdx.x * (long)blockDim.x + threadIdx.x) / LANES; r < rows;
         r += (long)gridDim.x * blockDim.x / LANES) {
        const float *x = inp + (size_t)r * (size_t)C;
        float *y = out + (size_t)r * (size_t)C;
        const double shift = (double)x[0];
        double s = 0.0, q = 0.0;
        for (int j = k; j < C; j += LANES) {
            const double d = (double)x[j] - shift;
            s += d;
            q += d * d;
        }
        const double st = lanes_sum(mask, s), qt = lanes_sum(mask, q);
        const double dm = st / C;
        const double var = qt / C - dm * dm; /* biased, as PyTorch */
        const float mu = (float)(shift + dm);
        const float rs = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + LN_EPS));
        for (int j = k; j < C; j += LANES) {
            y[j] = (x[j] - mu) * rs * weight[j] + bias[j];
        }
        if (k == 0 && mean != NULL) {
            mean[r] = mu;
        }
        if (k == 0 && rstd != NULL) {
            rstd[r] = rs;
        }
    }
}

/* dinp, a group of LANES threads per row as in the forward. With norm =
 * (x − mean) · rstd and dnorm = w · dy, the row's two means (CPU's sums),
 * then dx = g, or dx += g with acc, where g = (dnorm − mean(dnorm) −
 * norm · mean(dnorm · norm)) · rstd. A select, so an overwritten dx is
 * never used (NaN there does not leak). */
__global__ static void layernorm_dinp_kernel(int rows, int C, const float *dout, const float *inp,
                                             const float *weight, const float *mean,
                                             const float *rstd, float *dinp, int acc)
{
    const int k = (int)(threadIdx.x % LANES);
    const unsigned int mask = group_mask();
    for (long r = (blockIdx.x * (long)blockDim.x + threadIdx.x) / LANES; r < rows;
         r += (long)gridDim.x * blockDim.x / LANES) {
        const size_t at = (size_t)r * (size_t)C;
        const float *x = inp + at, *dy = dout + at;
        float *dx = dinp + at;
        const float mu = mean[r], rs = rstd[r];
        double a = 0.0, c = 0.0;
        for (int j = k; j < C; j += LANES) {
            const float norm = (x[j] - mu) * rs;
            const float dnorm = weight[j] * dy[j];
            a += (double)dnorm;
            c += (double)dnorm * (double)norm;
        }
        const double sa = lanes_sum(mask, a), sc = lanes_sum(mask, c);
        const float ma = (float)(sa / C), mc = (float)(sc / C);
        for (int j = k; j < C; j += LANES) {
            const float norm = (x[j] - mu) * rs;
            const float g = (weight[j] * dy[j] - ma - norm * mc) * rs;
            dx[j] = acc ? dx[j] + g : g;
        }
    }
}

/* The first level of dweight's and dbias's column sums: block (COL_TILE,
 * COL_SPLIT) at (tile, chunk) writes partial[chunk, c] (dweight's, (chunks,
 * C)) and partial[chunks + chunk, c] (dbias's) for its COL_TILE columns.
 * Consecutive threads read consecutive floats of a row. Chunks step by the
 * grid's height, the same for the whole block, so __syncthreads is reached
 * by every thread. */
__global__ static void layernorm_colsum_kernel(int rows, int C, long chunks, const float *dout,
                                               const float *inp, const float *mean,
                                               const float *rstd, float *partial)
{
    __shared__ float sw[COL_SPLIT][COL_TILE];
    __shared__ float sb[COL_SPLIT][COL_TILE];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const long c = (long)blockIdx.x * COL_TILE + tx;
    for (long chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
        const long first = chunk * COL_CHUNK;
        const long end = first + COL_CHUNK < rows ? first + COL_CHUNK : rows;
        float w = 0.0f, b = 0.0f;
        if (c < C) {
            for (long r = first + ty; r < end; r += COL_SPLIT) {
                const size_t at = (size_t)r * (size_t)C + (size_t)c;
                const float dy = dout[at];
                const float norm = (inp[at] - mean[r]) * rstd[r];
                b += dy;
                w += norm * dy;
            }
        }
        sw[ty][tx] = w;
        sb[ty][tx] = b;
        __syncthreads();
        if (ty == 0 && c < C) {
            for (int s = 1; s < COL_SPLIT; s++) {
                w += sw[s][tx];
                b += sb[s][tx];
            }
            partial[(size_t)chunk * (size_t)C + (size_t)c] = w;
            partial[(size_t)(chunks + chunk) * (size_t)C + (size_t)c] = b;
        }
        __syncthreads(); /* before the next chunk overwrites sw and sb */
    }
}

/* The second level: dweight[c] and dbias[c] add their chunks' partials in
 * chunk order, a thread per column. */
__global__ static void layernorm_colsum_final_kernel(int C, long chunks, const float *partial,
                                                     float *dweight, float *dbias)
{
    for (long c = blockIdx.x * (long)blockDim.x + threadIdx.x; c < C;
         c += (long)gridDim.x * blockDim.x) {
        float w = dweight[c], b = dbias[c];
        for (long chunk = 0; chunk < chunks; chunk++) {
            w += partial[(size_t)chunk * (size_t)C + (size_t)c];
            b += partial[(size_t)(chunks + chunk) * (size_t)C + (size_t)c];
        }
        dweight[c] = w;
        dbias[c] = b;
    }
}

void bl_cuda_layernorm_forward(int rows, int C, const float *inp, const float *weight,
                               const float *bias, float *out, float *mean, float *rstd)
{
    if (rows <= 0 || C <= 0) {
        return;
    }
    layernorm_forward_kernel<<<bl_cuda_blocks((size_t)rows * LANES), BL_CUDA_THREADS, 0,
                               bl_cuda_ctx.stream>>>(rows, C, inp, weight, bias, out, mean, rstd);
}

void bl_cuda_layernorm_backward(int rows, int C, const float *dout, const float *inp,
                                const float *weight, const float *mean, const float *rstd,
                                float *dinp, float *dweight, float *dbias, int accumulate)
{
    if (rows <= 0 || C <= 0) {
        return;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    layernorm_dinp_kernel<<<bl_cuda_blocks((size_t)rows * LANES), BL_CUDA_THREADS, 0, st>>>(
        rows, C, dout, inp, weight, mean, rstd, dinp, accumulate);
    const long chunks = ((long)rows + COL_CHUNK - 1) / COL_CHUNK;
    if (!bl_cuda_grow(&bl_cuda_ctx.colsum_scratch, &bl_cuda_ctx.colsum_bytes,
                      2 * (size_t)chunks * (size_t)C * sizeof(float),
                      "allocating layernorm_backward's column scratch")) {
        return;
    }
    float *partial = (float *)bl_cuda_ctx.colsum_scratch;
    const dim3 grid((unsigned int)(((long)C + COL_TILE - 1) / COL_TILE),
                    (unsigned int)(chunks < 65535 ? chunks : 65535));
    layernorm_colsum_kernel<<<grid, dim3(COL_TILE, COL_SPLIT), 0, st>>>(rows, C, chunks, dout, inp,
                                                                        mean, rstd, partial);
    layernorm_colsum_final_kernel<<<bl_cuda_blocks((size_t)C), BL_CUDA_THREADS, 0, st>>>(
        C, chunks, partial, dweight, dbias);
}
