/* Token and position embeddings on the GPU (kernels.h's embedding_forward
 * and embedding_backward), with the CPU's bits (kernels/embedding.c): the
 * forward is one addition per element, and the backward adds each row of
 * the tables' gradients in the CPU's (b, t) order. For dwte that order
 * comes from a stable sort of the tokens (CUB's radix sort): the positions
 * of each token, in order, then lie side by side, and a thread per
 * (token, channel) adds them one after another. No atomics, so the same
 * input always gives the same bits. */
#include <climits>

#include <cub/device/device_radix_sort.cuh>

#include "context.h"
#include "ops_transformer.h"

/* out (B·T, C): out[bt, c] = wte[tokens[bt], c] + wpe[t, c], one thread
 * per element, so consecutive threads read consecutive floats of a row. */
__global__ static void embedding_forward_kernel(size_t n, int T, int C, const int32_t *tokens,
                                                const float *wte, const float *wpe, float *out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t bt = i / (size_t)C, c = i % (size_t)C, t = bt % (size_t)T;
        out[i] = wte[(size_t)tokens[bt] * (size_t)C + c] + wpe[t * (size_t)C + c];
    }
}

/* a[i] = i: the positions the sort carries along with the tokens. */
__global__ static void iota_kernel(int n, int *a)
{
    /* long: i + stride stays exact for any int n */
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x) {
        a[i] = (int)i;
    }
}

/* dwte after the sort: keys (N) are the tokens in ascending order and
 * pos (N) their positions bt, ascending within each token (the sort is
 * stable). Thread (i, c) of N·C, where i begins a run of equal tokens,
 * adds the run's rows of dout, in order, to dwte[token, c]; the other
 * threads have nothing to do. Each (token, c) has one thread, so nothing
 * is shared. A token that occurs k times makes its threads loop k times. */
__global__ static void dwte_kernel(size_t n, int N, int C, const int32_t *keys, const int *pos,
                                   const float *dout, float *dwte)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / (size_t)C, c = i % (size_t)C;
        const int32_t token = keys[r];
        if (r > 0 && keys[r - 1] == token) {
            continue;
        }
        float *d = dwte + (size_t)token * (size_t)C + c;
        float acc = *d;
        for (size_t j = r; j < (size_t)N && keys[j] == token; j++) {
            acc += dout[(size_t)pos[j] * (size_t)C + c];
        }
        *d = acc;
    }
}

/* dwpe (T, C): thread (t, c) adds dout[b, t, c] for b = 0, 1, ... in
 * order, as the CPU does. */
__global__ static void dwpe_kernel(size_t n, int B, int T, int C, const float *dout, float *dwpe)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t t = i / (size_t)C, c = i % (size_t)C;
        float acc = dwpe[i];
        for (int b = 0; b < B; b++) {
            acc += dout[((size_t)b * (size_t)T + t) * (size_t)C + c];
        }
        dwpe[i] = acc;
    }
}

void bl_cuda_embedding_forward(int B, int T, int C, const int32_t *tokens, const float *wte,
                               const float *wpe, float *out)
{
    if (B <= 0 || T <= 0 || C <= 0) {
        return;
    }
    const size_t n = (size_t)B * (size_t)T * (size_t)C;
    embedding_forward_kernel<<<bl_cuda_blocks(n), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
        n, T, C, tokens, wte, wpe, out);
}

/* Bytes rounded up to 256, so every piece of the scratch is aligned as
 * cudaMalloc's memory is. */
static size_t aligned(size_t nbytes)
{
    return (nbytes + 255) & ~(size_t)255;
}

void bl_cuda_embedding_backward(int B, int T, int C, const int32_t *tokens, const float *dout,
                                float *dwte, float *dwpe)
{
    if (B <= 0 || T <= 0 || C <= 0) {
        return;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    /* dwpe first: it needs no sort. */
    const size_t npos = (size_t)T * (size_t)C;
    dwpe_kernel<<<bl_cuda_blocks(npos), BL_CUDA_THREADS, 0, st>>>(npos, B, T, C, dout, dwpe);

    /* CUB counts items in int. */
    if ((size_t)B * (size_t)T > (size_t)INT_MAX) {
        bl_cuda_ok(cudaErrorInvalidValue, "embedding_backward of more than INT_MAX tokens");
        return;
    }
    const int N = B * T;
    /* The scratch: sorted tokens (N), positions (N), sorted positions (N),
     * then CUB's temporary storage (asking for its size launches nothing). */
    size_t temp_bytes = 0;
    if (!bl_cuda_ok(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, tokens, (int32_t *)NULL,
                                                    (const int *)NULL, (int *)NULL, N, 0, 32, st),
                    "sizing embedding_backward's token sort")) {
        return;
    }
    const size_t part = aligned((size_t)N * sizeof(int32_t));
    if (!bl_cuda_grow(&bl_cuda_ctx.sort_scratch, &bl_cuda_ctx.sort_bytes, 3 * part + temp_bytes,
                      "allocating embedding_backward's sort scratch")) {
        return;
    }
    char *base = (char *)bl_cuda_ctx.sort_scratch;
    int32_t *keys = (int32_t *)base;
    int *pos_in = (int *)(base + part);
    int *pos = (int *)(base + 2 * part);
    void *temp = base + 3 * part;
    iota_kernel<<<bl_cuda_blocks((size_t)N), BL_CUDA_THREADS, 0, st>>>(N, pos_in);
    /* All 32 bits: the tokens' range (Vp) is not an argument. */
    if (!bl_cuda_ok(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, keys, pos_in, pos, N,
                                                    0, 32, st),
                    "embedding_backward's token sort")) {
        return;
    }
    const size_t n = (size_t)N * (size_t)C;
    dwte_kernel<<<bl_cuda_blocks(n), BL_CUDA_THREADS, 0, st>>>(n, N, C, keys, pos, dout, dwte);
}
