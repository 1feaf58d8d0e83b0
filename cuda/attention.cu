/* Causal multi-head self-attention on the GPU (kernels.h's attention_forward
 * and attention_backward), the CPU's computation (kernels/attention.c) with
 * every (batch, head) pair in one batched product. qkv (B, T, 3C) is
 * [q | k | v] per token and head h owns channels [h·hs, (h+1)·hs) of each,
 * hs = C/NH. A head's rows are not a fixed stride apart from the next
 * pair's ((b, h) sits at b·T·3C + h·hs), so a kernel first cuts the heads
 * out into (B, NH, T, hs) arrays in the context's scratch; then each
 * product is one cublasSgemmStridedBatched over the B·NH pairs, and a
 * kernel puts the result's heads back side by side.
 *
 * The softmax and its backward run one warp per row of the (T, T) scores:
 * lane l takes columns l, l + 32, ..., and a fixed butterfly of shuffles
 * combines the lanes, so the same input gives the same bits on every run.
 * As on the CPU, the scale 1/sqrt(hs) is the products' alpha, exp is in
 * float and the sums are in double, and the entries above the diagonal are
 * written as exactly 0 (the products also fill them; the softmax then
 * zeroes them, which for GPT-2's sizes costs less than skipping them).
 *
 * Determinism of the products: cuBLAS gives the same bits run to run on one
 * GPU for a fixed configuration on one stream (its atomics are off by
 * default). context.cu never calls cublasSetMathMode, so cuBLAS keeps its
 * default math mode, plain FP32; that must stay so (no
 * CUBLAS_TF32_TENSOR_OP_MATH or FP32 emulation mode, and
 * NVIDIA_TF32_OVERRIDE unset), or the products round their inputs to
 * TF32 or BF16 and drift far from the CPU's and the tests' tolerances.
 *
 * bf16 autocast (ops_bf16.h) is the same computation with every product's
 * two operands rounded to bfloat16 (gemm_bf16.cu, into a scratch of its
 * own) and accumulated in fp32; the softmax, its backward, att and every
 * buffer here stay fp32. */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "context.h"
#include "ops_attention.h"
#include "ops_bf16.h"

enum { WARP = 32 };
static const unsigned int FULL_MASK = 0xffffffffu;

/* Up to three (B, NH, T, hs) arrays, the parts of a (B, T, parts·C) row
 * in order (q, k, v), passed by value to the kernels that cut them out of
 * such rows or put them back (picked by a select, not an index, so the
 * array stays in registers). */
typedef struct heads {
    float *part[3];
} heads_t;
typedef struct const_heads {
    const float *part[3];
} const_heads_t;

/* Where element (b, t, p·C + h·hs + d) of a (B, T, parts·C) row goes in
 * part p's (B, NH, T, hs) array, for element number i of the rows. */
__device__ static size_t head_index(size_t i, int T, int C, int NH, int parts, int *p)
{
    const int hs = C / NH;
    const size_t width = (size_t)parts * (size_t)C;
    const size_t bt = i / width; /* b·T + t */
    const int c3 = (int)(i % width);
    const int c = c3 % C, h = c / hs, d = c % hs;
    const size_t b = bt / (size_t)T, t = bt % (size_t)T;
    *p = c3 / C;
    return ((b * (size_t)NH + (size_t)h) * (size_t)T + t) * (size_t)hs + (size_t)d;
}

/* dst.part[p] (B, NH, T, hs) = the heads of part p of src (B, T, parts·C);
 * n = B·T·parts·C. Threads walk src in order, so reads coalesce and
 * writes go in runs of hs. C is a multiple of NH. */
__global__ static void split_heads_kernel(size_t n, int T, int C, int NH, int parts,
                                          const float *src, heads_t dst)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int p = 0;
        const size_t at = head_index(i, T, C, NH, parts, &p);
        float *part = p == 0 ? dst.part[0] : (p == 1 ? dst.part[1] : dst.part[2]);
        part[at] = src[i];
    }
}

/* The inverse: dst (B, T, parts·C), every element written, from the heads
 * in src.part[p] (B, NH, T, hs); n = B·T·parts·C. */
__global__ static void merge_heads_kernel(size_t n, int T, int C, int NH, int parts,
                                          const_heads_t src, float *dst)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int p = 0;
        const size_t at = head_index(i, T, C, NH, parts, &p);
        const float *part = p == 0 ? src.part[0] : (p == 1 ? src.part[1] : src.part[2]);
        dst[i] = part[at];
    }
}

/* Every row of att (rows, T) in place, rows = B·NH·T, row r being query
 * t = r mod T: the softmax of its first n = t + 1 entries computed as the
 * CPU's (xent_row.h's bl_softmax_row: the maximum subtracted, exp in
 * float, the sum in double, one reciprocal in float, then a product per
 * entry) and exactly 0 over the rest. One warp per row: the loop's row is
 * the same for the 32 lanes of a warp (blockDim is a multiple of 32), so
 * every lane takes part in each shuffle. */
__global__ static void causal_softmax_kernel(size_t rows, int T, float *att)
{
    const int lane = (int)(threadIdx.x % WARP);
    for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / WARP; r < rows;
         r += (size_t)gridDim.x * blockDim.x / WARP) {
        float *row = att + r * (size_t)T;
        const int n = (int)(r % (size_t)T) + 1;
        float m = -INFINITY;
        for (int j = lane; j < n; j += WARP) {
            m = row[j] > m ? row[j] : m;
        }
        for (int off = WARP / 2; off > 0; off /= 2) {
            const float o = __shfl_xor_sync(FULL_MASK, m, off);
            m = o > m ? o : m;
        }
        m = __shfl_sync(FULL_MASK, m, 0); /* one value for all lanes, even with NaNs */
        double sum = 0.0;
        for (int j = lane; j < n; j += WARP) {
            const float e = expf(row[j] - m);
            row[j] = e;
            sum += (double)e;
        }
        /* A butterfly: a + b == b + a, so every lane ends with the same sum. */
        for (int off = WARP / 2; off > 0; off /= 2) {
            sum += __shfl_xor_sync(FULL_MASK, sum, off);
        }
        const float inv = (float)(1.0 / sum); /* sum >= 1: the max gives exp(0) */
        for (int j = lane; j < T; j += WARP) {
            row[j] = j < n ? row[j] * inv : 0.0f; /* each lane rereads its own writes */
        }
    }
}

/* The softmax's backward, in place over d (rows, T): on entry the
 * gradient of the probabilities att, on return that of the (scaled)
 * scores. Row r (query t = r mod T), its first n = t + 1 entries: d[j] =
 * att[j] · (d[j] − Σ_k att[k] · d[k]), the sum in double as on the CPU
 * (a product of two floats is exact in double, so an FMA there rounds as
 * the CPU's multiply-then-add does); exactly 0 beyond. One warp per row,
 * as the forward. */
__global__ static void causal_softmax_backward_kernel(size_t rows, int T, const float *att,
                                                      float *d)
{
    const int lane = (int)(threadIdx.x % WARP);
    for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / WARP; r < rows;
         r += (size_t)gridDim.x * blockDim.x / WARP) {
        const float *p = att + r * (size_t)T;
        float *g = d + r * (size_t)T;
        const int n = (int)(r % (size_t)T) + 1;
        double dot = 0.0;
        for (int j = lane; j < n; j += WARP) {
            dot += (double)p[j] * (double)g[j];
        }
        for (int off = WARP / 2; off > 0; off /= 2) {
            dot += __shfl_xor_sync(FULL_MASK, dot, off);
        }
        const float s = (float)dot;
        for (int j = lane; j < T; j += WARP) {
            g[j] = j < n ? p[j] * (g[j] - s) : 0.0f;
        }
    }
}

/* The products' arithmetic: fp32 operands (bl_cuda_kernels) or operands
 * rounded to bf16 (bl_cuda_bf16_kernels). */
typedef enum precision { PRECISION_FP32, PRECISION_BF16 } precision_t;

/* C_z (m, n) = alpha · op(A_z) · op(B_z) for z in [0, count), row-major
 * as bl_cuda_gemm (cuBLAS is column-major: the operands swap), each
 * operand `stride_*` elements after the last, in the given precision.
 * m, n, k >= 1. cuBLAS takes an int count, so a larger one goes in
 * pieces. A failure is recorded naming the call and `product`. */
static void batched_gemm(precision_t precision, int trans_a, int trans_b, int m, int n, int k,
                         float alpha, const float *a, int lda, long long stride_a, const float *b,
                         int ldb, long long stride_b, float *c, int ldc, long long stride_c,
                         long count, const char *product)
{
    const float zero = 0.0f;
    char what[128];
    if (precision == PRECISION_BF16) {
        snprintf(what, sizeof what, "cuBLAS bf16 product of %s", product);
        bl_cuda_gemm_bf16_batched(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb,
                                  stride_b, 0.0f, c, ldc, stride_c, count, what);
        return;
    }
    snprintf(what, sizeof what, "cublasSgemmStridedBatched of %s", product);
    for (long z = 0; z < count; z += INT_MAX) {
        const int chunk = count - z < INT_MAX ? (int)(count - z) : INT_MAX;
        if (!bl_cublas_ok(
                cublasSgemmStridedBatched(bl_cuda_ctx.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
                                          b + z * stride_b, ldb, stride_b, a + z * stride_a, lda,
                                          stride_a, &zero, c + z * stride_c, ldc, stride_c, chunk),
                what)) {
            return;
        }
    }
}

/* The attention scratch holding at least `count` floats, or NULL on
 * failure (recorded). A growth asks for at least twice the old size (a
 * generation whose T grows by one grows it rarely), falling back to
 * `count` alone when that much is not free. Where the device has memory
 * pools (every GPU ballast runs on, barring some virtual ones), the old
 * buffer is freed and the new one taken in stream order: the free happens
 * once the kernels queued before it have run, and nothing waits for the
 * device. cudaFree would wait for all of it, NCCL's transfers in flight
 * included, and the first backward grows the scratch while a bucket's
 * all-reduce or a pipeline stage's receive may still be waiting for a
 * peer. Without pools, the stream is waited for and the buffer freed as
 * bl_cuda_row_scratch does. */
static float *attention_scratch(size_t count)
{
    if (count <= bl_cuda_ctx.attn_cap) {
        return bl_cuda_ctx.attn_scratch;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    /* A launch failure pending from before is recorded now, so clearing a
     * failed query or first try below cannot hide it. */
    bl_cuda_ok(cudaGetLastError(), "a kernel launch");
    int pools = 0;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, bl_cuda_ctx.device) !=
        cudaSuccess) {
        cudaGetLastError();
        pools = 0;
    }
    const size_t want = count > 2 * bl_cuda_ctx.attn_cap ? count : 2 * bl_cuda_ctx.attn_cap;
    if (bl_cuda_ctx.attn_scratch != NULL) {
        if (pools) {
            bl_cuda_ok(cudaFreeAsync(bl_cuda_ctx.attn_scratch, st),
                       "freeing the attention scratch");
        } else if (bl_cuda_ok(cudaStreamSynchronize(st), "growing the attention scratch")) {
            cudaFree(bl_cuda_ctx.attn_scratch);
        } else {
            return NULL; /* queued kernels may still read it: kept */
        }
    }
    bl_cuda_ctx.attn_scratch = NULL;
    bl_cuda_ctx.attn_cap = 0;
    float *p = NULL;
    size_t got = want;
    for (int tries = want > count ? 2 : 1; tries > 0; tries--) {
        got = tries == 2 ? want : count;
        const size_t nbytes = got * sizeof(float);
        const cudaError_t e =
            pools ? cudaMallocAsync((void **)&p, nbytes, st) : cudaMalloc((void **)&p, nbytes);
        if (e == cudaSuccess) {
            break;
        }
        p = NULL;
        if (tries == 1) {
            bl_cuda_ok(e, "allocating the attention scratch");
            return NULL;
        }
        cudaGetLastError(); /* answered here: not a later launch's failure */
    }
    bl_cuda_ctx.attn_scratch = p;
    bl_cuda_ctx.attn_cap = got;
    return p;
}

/* Whether the shapes leave anything to do: nothing for an empty batch,
 * sequence or head count (no launch, as the CPU returns); a C that is not
 * a multiple of NH is the caller's bug, recorded, and nothing is done. */
static int attention_shapes(int B, int T, int C, int NH, const char *what)
{
    if (B <= 0 || T <= 0 || NH <= 0 || C < NH) {
        return 0;
    }
    if (C % NH != 0) {
        bl_cuda_ok(cudaErrorInvalidValue, what);
        return 0;
    }
    return 1;
}

/* Blocks for one warp per row over `rows` rows. */
static unsigned int row_blocks(size_t rows)
{
    return bl_cuda_blocks(rows * WARP);
}

static void attention_forward(precision_t precision, int B, int T, int C, int NH, const float *qkv,
                              float *out, float *att)
{
    if (!attention_shapes(B, T, C, NH, "attention_forward (C is not a multiple of NH)")) {
        return;
    }
    const int hs = C / NH;
    const long pairs = (long)B * (long)NH;
    const size_t per = (size_t)B * (size_t)T * (size_t)C; /* one (B, NH, T, hs) array */
    const long long head = (long long)T * hs, scores = (long long)T * T;
    const float scale = (float)(1.0 / sqrt((double)hs)); /* the CPU's */
    float *s = attention_scratch(3 * per);
    if (s == NULL) {
        return;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    float *q = s, *k = s + per, *v = s + 2 * per;
    heads_t qkv_heads = {{q, k, v}};
    split_heads_kernel<<<bl_cuda_blocks(3 * per), BL_CUDA_THREADS, 0, st>>>(3 * per, T, C, NH, 3,
                                                                            qkv, qkv_heads);
    /* att_z (T, T) = scale · q_z (T, hs) · k_z^T. */
    batched_gemm(precision, 0, 1, T, T, hs, scale, q, hs, head, k, hs, head, att, T, scores, pairs,
                 "attention's scores");
    const size_t rows = (size_t)pairs * (size_t)T;
    causal_softmax_kernel<<<row_blocks(rows), BL_CUDA_THREADS, 0, st>>>(rows, T, att);
    /* o_z (T, hs) = att_z (T, T) · v_z (T, hs), into q's place (q is read
     * only by the scores' product, queued before). */
    batched_gemm(precision, 0, 0, T, hs, T, 1.0f, att, T, scores, v, hs, head, q, hs, head, pairs,
                 "attention's values");
    const_heads_t o_heads = {{q, NULL, NULL}};
    merge_heads_kernel<<<bl_cuda_blocks(per), BL_CUDA_THREADS, 0, st>>>(per, T, C, NH, 1, o_heads,
                                                                        out);
}

static void attention_backward(precision_t precision, int B, int T, int C, int NH,
                               const float *dout, const float *qkv, const float *att, float *dqkv)
{
    if (!attention_shapes(B, T, C, NH, "attention_backward (C is not a multiple of NH)")) {
        return;
    }
    const int hs = C / NH;
    const long pairs = (long)B * (long)NH;
    const size_t per = (size_t)B * (size_t)T * (size_t)C;
    const long long head = (long long)T * hs, scores = (long long)T * T;
    const float scale = (float)(1.0 / sqrt((double)hs));
    const size_t rows = (size_t)pairs * (size_t)T;
    float *s = attention_scratch(4 * per + rows * (size_t)T);
    if (s == NULL) {
        return;
    }
    cudaStream_t st = bl_cuda_ctx.stream;
    /* Four (B, NH, T, hs) slots, then the scores' gradient (B, NH, T, T).
     * The slots start as q, k, v and dout's heads and end as q, dk, dv and
     * dq: each product writes a slot whose last reader is queued before it. */
    float *q = s, *k = s + per, *v = s + 2 * per, *g = s + 3 * per, *datt = s + 4 * per;
    heads_t qkv_heads = {{q, k, v}};
    split_heads_kernel<<<bl_cuda_blocks(3 * per), BL_CUDA_THREADS, 0, st>>>(3 * per, T, C, NH, 3,
                                                                            qkv, qkv_heads);
    heads_t dout_heads = {{g, NULL, NULL}};
    split_heads_kernel<<<bl_cuda_blocks(per), BL_CUDA_THREADS, 0, st>>>(per, T, C, NH, 1, dout,
                                                                        dout_heads);
    /* datt_z (T, T) = dout_z (T, hs) · v_z^T. */
    batched_gemm(precision, 0, 1, T, T, hs, 1.0f, g, hs, head, v, hs, head, datt, T, scores, pairs,
                 "attention's dscores");
    /* dv_z (T, hs) = att_z^T (T, T) · dout_z (T, hs), into v's slot (v's
     * last reader is the product above). */
    batched_gemm(precision, 1, 0, T, hs, T, 1.0f, att, T, scores, g, hs, head, v, hs, head, pairs,
                 "attention's dv");
    /* datt becomes the gradient of the scaled scores, dS. */
    causal_softmax_backward_kernel<<<row_blocks(rows), BL_CUDA_THREADS, 0, st>>>(rows, T, att,
                                                                                 datt);
    /* scores = scale · q · k^T: dq = scale · dS · k, into dout's slot (read
     * last by the dv product); dk = scale · dS^T · q, into k's slot (read
     * last by the dq product). */
    batched_gemm(precision, 0, 0, T, hs, T, scale, datt, T, scores, k, hs, head, g, hs, head, pairs,
                 "attention's dq");
    batched_gemm(precision, 1, 0, T, hs, T, scale, datt, T, scores, q, hs, head, k, hs, head, pairs,
                 "attention's dk");
    /* dqkv (B, T, 3C) = [dq | dk | dv], every element written. */
    const_heads_t grads = {{g, k, v}};
    merge_heads_kernel<<<bl_cuda_blocks(3 * per), BL_CUDA_THREADS, 0, st>>>(3 * per, T, C, NH, 3,
                                                                            grads, dqkv);
}

void bl_cuda_attention_forward(int B, int T, int C, int NH, const float *qkv, float *out,
                               float *att)
{
    attention_forward(PRECISION_FP32, B, T, C, NH, qkv, out, att);
}

void bl_cuda_attention_backward(int B, int T, int C, int NH, const float *dout, const float *qkv,
                                const float *att, float *dqkv, float *scratch)
{
    (void)scratch; /* T·T floats: too few for all pairs at once (ops_attention.h) */
    attention_backward(PRECISION_FP32, B, T, C, NH, dout, qkv, att, dqkv);
}

void bl_cuda_attention_forward_bf16(int B, int T, int C, int NH, const float *qkv, float *out,
                                    float *att)
{
    attention_forward(PRECISION_BF16, B, T, C, NH, qkv, out, att);
}

void bl_cuda_attention_backward_bf16(int B, int T, int C, int NH, const float *dout,
                                     const float *qkv, const float *att, float *dqkv,
                                     float *scratch)
{
    (void)scratch; /* as bl_cuda_attention_backward's */
    attention_backward(PRECISION_BF16, B, T, C, NH, dout, qkv, att, dqkv);
}
