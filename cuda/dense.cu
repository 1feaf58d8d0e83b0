/* Products on cuBLAS and the dense layer built from them. cuBLAS is
 * column-major: a row-major C (m, n) is the column-major C^T (n, m) =
 * op(B)^T · op(A)^T, so every call swaps the operands and m with n.
 * The dense layer is written once over the product it calls: fp32
 * (bl_cuda_gemm) for bl_cuda_kernels, bf16 operands (gemm_bf16.cu) for
 * bl_cuda_bf16_kernels; the bias, the mask and db stay fp32 in both. */
#include "context.h"
#include "ops.h"
#include "ops_bf16.h"

/* A row-major product with bl_cuda_gemm's contract. */
typedef void (*product_fn)(int trans_a, int trans_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc);

void bl_cuda_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) {
        return;
    }
    if (k <= 0) {
        /* An empty product: C = beta · C (cuBLAS wants leading dimensions
         * of at least 1 for the empty operands, so it is not asked). */
        if (beta == 0.0f) {
            bl_cuda_ok(cudaMemset2DAsync(c, (size_t)ldc * sizeof(float), 0,
                                         (size_t)n * sizeof(float), (size_t)m, bl_cuda_ctx.stream),
                       "clearing an empty product");
        } else {
            const float zero = 0.0f;
            bl_cublas_ok(cublasSgeam(bl_cuda_ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, &beta, c,
                                     ldc, &zero, c, ldc, c, ldc),
                         "cublasSgeam scaling an empty product");
        }
        return;
    }
    bl_cublas_ok(cublasSgemm(bl_cuda_ctx.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                             &beta, c, ldc),
                 "cublasSgemm");
}

static void dense_forward(product_fn product, int batch, int in, int out, const float *x,
                          const float *w, const float *b, float *y, int relu)
{
    if (batch <= 0 || out <= 0) {
        return;
    }
    /* y (batch, out) = x (batch, in) · W^T; an empty product is zero. */
    product(0, 1, batch, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    bl_cuda_bias(batch, out, y, b, relu);
}

static void dense_backward(product_fn product, int batch, int in, int out, const float *x,
                           const float *w, const float *y, float *dy, float *dx, float *dw,
                           float *db, int relu, int accumulate)
{
    cudaStream_t st = bl_cuda_ctx.stream;
    if (out <= 0) {
        /* No outputs: dW and db are empty and dx (batch, in) is zero. */
        if (dx != NULL && batch > 0 && in > 0) {
            bl_cuda_ok(cudaMemsetAsync(dx, 0, (size_t)batch * (size_t)in * sizeof(float), st),
                       "clearing dx");
        }
        return;
    }
    if (!accumulate) {
        bl_cuda_ok(cudaMemsetAsync(db, 0, (size_t)out * sizeof(float), st), "clearing db");
    }
    if (batch <= 0) {
        if (!accumulate && in > 0) {
            bl_cuda_ok(cudaMemsetAsync(dw, 0, (size_t)out * (size_t)in * sizeof(float), st),
                       "clearing dW");
        }
        return;
    }
    /* dy masked by y > 0 (with relu) and its column sums into db. */
    bl_cuda_mask_colsum(batch, out, relu ? y : NULL, dy, db);
    if (in <= 0) {
        return;
    }
    /* dW (out, in) (+)= dy^T (out, batch) · x (batch, in). */
    product(1, 0, out, in, batch, 1.0f, dy, out, x, in, accumulate ? 1.0f : 0.0f, dw, in);
    /* dx (batch, in) = dy (batch, out) · W (out, in). */
    if (dx != NULL) {
        product(0, 0, batch, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    }
}

void bl_cuda_dense_forward(int batch, int in, int out, const float *x, const float *w,
                           const float *b, float *y, int relu)
{
    dense_forward(bl_cuda_gemm, batch, in, out, x, w, b, y, relu);
}

void bl_cuda_dense_backward(int batch, int in, int out, const float *x, const float *w,
                            const float *y, float *dy, float *dx, float *dw, float *db, int relu,
                            int accumulate)
{
    dense_backward(bl_cuda_gemm, batch, in, out, x, w, y, dy, dx, dw, db, relu, accumulate);
}

void bl_cuda_dense_forward_bf16(int batch, int in, int out, const float *x, const float *w,
                                const float *b, float *y, int relu)
{
    dense_forward(bl_cuda_gemm_bf16, batch, in, out, x, w, b, y, relu);
}

void bl_cuda_dense_backward_bf16(int batch, int in, int out, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db,
                                 int relu, int accumulate)
{
    dense_backward(bl_cuda_gemm_bf16, batch, in, out, x, w, y, dy, dx, dw, db, relu, accumulate);
}
