/* Products with bfloat16 operands and fp32 accumulation (ops_bf16.h): the
 * arithmetic of kernels.h's bl_cpu_bf16_kernels on the tensor cores. A
 * kernel rounds each operand to bf16 with bf16_round.h's bl_bf16_bits,
 * the function the CPU twin rounds with, so both sides multiply the same
 * values; the copies are contiguous (the row and batch strides dropped)
 * and live in the context's bf16 scratch, A's copy first, B's after it.
 * cuBLAS then multiplies them with CUBLAS_COMPUTE_32F into the fp32 C: a
 * product of two bf16 values is exact in fp32, so only the accumulation
 * rounds, in an order of cuBLAS's own.
 *
 * cuBLAS is column-major: a row-major C (m, n) is the column-major C^T
 * (n, m) = op(B)^T · op(A)^T, so every call swaps the operands and m with
 * n, as dense.cu does. A row-major matrix of `cols` columns is a
 * column-major one of leading dimension `cols`: A stored (m, k), or (k, m)
 * when transposed, copies into leading dimension k (m); B stored (k, n),
 * or (n, k), into n (k).
 *
 * The conversion is bit operations only (no arithmetic to fuse), so this
 * file needs no -fmad=false. The scratch is grown by bl_cuda_grow, which
 * waits for the stream before freeing the old buffer, so a product queued
 * earlier never reads a freed copy; a copy overwritten by the next
 * product's conversion is one the earlier product, queued before it on
 * the same stream, has finished reading. */
#include <limits.h>
#include <stdint.h>

#include "bf16_round.h"
#include "context.h"
#include "ops.h"
#include "ops_bf16.h"

/* Where B's copy starts in the scratch: past A's, rounded up to 256
 * bytes (cudaMalloc's alignment), which the tensor cores' loads like. */
enum { COPY_ALIGN = 256 };

/* dst (count, rows, cols), contiguous, = the bf16 bits of count matrices
 * (rows, cols) of src, matrix z at src + z·stride and row r of it at
 * + r·ld; n = count·rows·cols. Threads walk dst in order, so writes
 * coalesce and reads go in runs of cols. */
__global__ static void round_copy_kernel(size_t n, size_t rows, size_t cols, size_t ld,
                                         size_t stride, const float *src, uint16_t *dst)
{
    const size_t per = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t z = i / per, at = i % per;
        const size_t r = at / cols, c = at % cols;
        dst[i] = bl_bf16_bits(src[z * stride + r * ld + c]);
    }
}

/* Queues the bf16 copy of count matrices (rows, cols) of src (row stride
 * ld, matrix stride `stride`) into dst. */
static void round_copy(size_t count, int rows, int cols, const float *src, int ld, long long stride,
                       uint16_t *dst)
{
    const size_t n = count * (size_t)rows * (size_t)cols;
    round_copy_kernel<<<bl_cuda_blocks(n), BL_CUDA_THREADS, 0, bl_cuda_ctx.stream>>>(
        n, (size_t)rows, (size_t)cols, (size_t)ld, (size_t)stride, src, dst);
}

/* The scratch holding count·a_per then count·b_per bf16 values (count,
 * a_per, b_per >= 1): *a16 and *b16 point at the two copies. 1, or 0 on
 * failure (recorded), sizes whose bytes overflow a size_t included. */
static int operand_scratch(size_t count, size_t a_per, size_t b_per, uint16_t **a16, uint16_t **b16)
{
    /* Each copy's bytes, padded, below half of SIZE_MAX: their sum fits. */
    const size_t limit = (SIZE_MAX / 2 - COPY_ALIGN) / sizeof(uint16_t);
    if (a_per > limit / count || b_per > limit / count) {
        bl_cuda_ok(cudaErrorInvalidValue, "bf16 product (operands too large)");
        return 0;
    }
    const size_t a_count = count * a_per, b_count = count * b_per;
    const size_t a_bytes =
        (a_count * sizeof(uint16_t) + COPY_ALIGN - 1) / COPY_ALIGN * (size_t)COPY_ALIGN;
    if (!bl_cuda_grow(&bl_cuda_ctx.bf16_scratch, &bl_cuda_ctx.bf16_bytes,
                      a_bytes + b_count * sizeof(uint16_t),
                      "growing the bf16 products' operand scratch")) {
        return 0;
    }
    *a16 = (uint16_t *)bl_cuda_ctx.bf16_scratch;
    *b16 = (uint16_t *)((char *)bl_cuda_ctx.bf16_scratch + a_bytes);
    return 1;
}

void bl_cuda_gemm_bf16_batched(int trans_a, int trans_b, int m, int n, int k, float alpha,
                               const float *a, int lda, long long stride_a, const float *b, int ldb,
                               long long stride_b, float beta, float *c, int ldc,
                               long long stride_c, long count, const char *what)
{
    /* The stored shapes of A and B (row-major), which their copies keep. */
    const int a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const int b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    const long long a_per = (long long)a_rows * a_cols, b_per = (long long)b_rows * b_cols;
    /* The copies drop the strides, so cuBLAS never sees lda and ldb: a
     * leading dimension too small is reported here, as Sgemm would. */
    if (lda < a_cols || ldb < b_cols) {
        bl_cublas_ok(CUBLAS_STATUS_INVALID_VALUE, what);
        return;
    }
    uint16_t *a16 = NULL, *b16 = NULL;
    if (!operand_scratch((size_t)count, (size_t)a_per, (size_t)b_per, &a16, &b16)) {
        return;
    }
    round_copy((size_t)count, a_rows, a_cols, a, lda, stride_a, a16);
    round_copy((size_t)count, b_rows, b_cols, b, ldb, stride_b, b16);
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (count == 1) {
        bl_cublas_ok(cublasGemmEx(bl_cuda_ctx.blas, op_b, op_a, n, m, k, &alpha, b16, CUDA_R_16BF,
                                  b_cols, a16, CUDA_R_16BF, a_cols, &beta, c, CUDA_R_32F, ldc,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     what);
        return;
    }
    /* cuBLAS takes an int count, so a larger one goes in pieces. */
    for (long z = 0; z < count; z += INT_MAX) {
        const int chunk = count - z < INT_MAX ? (int)(count - z) : INT_MAX;
        if (!bl_cublas_ok(cublasGemmStridedBatchedEx(
                              bl_cuda_ctx.blas, op_b, op_a, n, m, k, &alpha, b16 + z * b_per,
                              CUDA_R_16BF, b_cols, b_per, a16 + z * a_per, CUDA_R_16BF, a_cols,
                              a_per, &beta, c + z * stride_c, CUDA_R_32F, ldc, stride_c, chunk,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                          what)) {
            return;
        }
    }
}

void bl_cuda_gemm_bf16(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0 || k <= 0) {
        /* Nothing to round: C = beta · C, or nothing at all. */
        bl_cuda_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    bl_cuda_gemm_bf16_batched(trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc,
                              0, 1, "cublasGemmEx (bf16 operands)");
}
