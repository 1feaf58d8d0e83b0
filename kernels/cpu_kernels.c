/* The CPU kernel table (OpenBLAS) and the process-wide BLAS thread count. */
#include <string.h>

#include <cblas.h>

#include "kernels.h"
#include "cpu_kernels.h"

/* C (m, n) = alpha · op(A) · op(B) + beta · C, row-major. Empty products are
 * handled here, so BLAS never sees a zero dimension: with k == 0 the result
 * is beta · C (and exactly 0 for beta == 0, where C is not read, as in BLAS). */
void bl_cpu_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) {
        return;
    }
    if (k <= 0) {
        for (int i = 0; i < m; i++) {
            float *row = c + (size_t)i * (size_t)ldc;
            if (beta == 0.0f) {
                memset(row, 0, (size_t)n * sizeof(float));
            } else {
                for (int j = 0; j < n; j++) {
                    row[j] *= beta;
                }
            }
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

const bl_kernels_t bl_cpu_kernels = {
    .name = "cpu",
    .gemm = bl_cpu_gemm,
    .dense_forward = bl_cpu_dense_forward,
    .dense_backward = bl_cpu_dense_backward,
    .relu_forward = bl_cpu_relu_forward,
    .relu_backward = bl_cpu_relu_backward,
    .softmax_xent = bl_cpu_softmax_xent,
    .sgd_update = bl_cpu_sgd_update,
    .gather_rows = bl_cpu_gather_rows,
    .embedding_forward = bl_cpu_embedding_forward,
    .embedding_backward = bl_cpu_embedding_backward,
    .layernorm_forward = bl_cpu_layernorm_forward,
    .layernorm_backward = bl_cpu_layernorm_backward,
    .gelu_forward = bl_cpu_gelu_forward,
    .gelu_backward = bl_cpu_gelu_backward,
    .attention_forward = bl_cpu_attention_forward,
    .attention_backward = bl_cpu_attention_backward,
    .vocab_xent = bl_cpu_vocab_xent,
    .adamw_update = bl_cpu_adamw_update,
    .sum_squares = bl_cpu_sum_squares,
    .softmax_rows = bl_cpu_softmax_rows,
    .softmax_rows_backward = bl_cpu_softmax_rows_backward,
};

void bl_cpu_set_threads(int n)
{
    /* n <= 0 is ignored: OpenBLAS would otherwise pick its own default. */
    if (n > 0) {
        openblas_set_num_threads(n);
    }
}
