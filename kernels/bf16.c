/* The bf16 autocast table on the CPU (kernels.h's bl_cpu_bf16_kernels),
 * the mirror device's twin of the GPU's bf16 products: each product rounds
 * its two operands to bfloat16 (bf16_round.h) into heap copies and runs
 * OpenBLAS's fp32 sgemm on them. A product of two bf16 values is exact in
 * fp32, so the only rounding left is the fp32 accumulation's, as on a
 * tensor core. The dense layer and attention are the fp32 kernels' code
 * (dense.c, attention.c) with this product in place of sgemm; every other
 * member is the fp32 table's. The copies cost a pass over each operand per
 * product, which the mirror, a test device, can afford. */
#include <stdlib.h>

#include "bf16_round.h"
#include "cpu_kernels.h"
#include "kernels.h"

/* dst (rows, cols), contiguous, = src (rows, cols) with row stride ld, each
 * element rounded to bf16. */
static void round_copy(int rows, int cols, const float *src, int ld, float *dst)
{
    for (int i = 0; i < rows; i++) {
        const float *s = src + (size_t)i * (size_t)ld;
        float *d = dst + (size_t)i * (size_t)cols;
        for (int j = 0; j < cols; j++) {
            d[j] = bl_bf16_round(s[j]);
        }
    }
}

/* kernels.h's gemm with A and B rounded to bf16. A is stored as (m, k), or
 * (k, m) when trans_a is set, and B as (k, n), or (n, k); their copies keep
 * that layout without the stride padding. Empty products are the fp32
 * gemm's (nothing to round). */
static void bf16_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                      int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0 || k <= 0) {
        bl_cpu_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const int a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const int b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    const size_t a_count = (size_t)a_rows * (size_t)a_cols;
    float *copy = malloc((a_count + (size_t)b_rows * (size_t)b_cols) * sizeof(float));
    if (copy == NULL) {
        bl_mirror_record_failure("bf16 product: no memory for the operands' bf16 copies");
        return;
    }
    round_copy(a_rows, a_cols, a, lda, copy);
    round_copy(b_rows, b_cols, b, ldb, copy + a_count);
    bl_cpu_gemm(trans_a, trans_b, m, n, k, alpha, copy, a_cols, copy + a_count, b_cols, beta, c,
                ldc);
    free(copy);
}

static void bf16_dense_forward(int batch, int in, int out, const float *x, const float *w,
                               const float *b, float *y, int relu)
{
    bl_cpu_dense_forward_by(bf16_gemm, batch, in, out, x, w, b, y, relu);
}

static void bf16_dense_backward(int batch, int in, int out, const float *x, const float *w,
                                const float *y, float *dy, float *dx, float *dw, float *db,
                                int relu, int accumulate)
{
    bl_cpu_dense_backward_by(bf16_gemm, batch, in, out, x, w, y, dy, dx, dw, db, relu, accumulate);
}

static void bf16_attention_forward(int B, int T, int C, int NH, const float *qkv, float *out,
                                   float *att)
{
    bl_cpu_attention_forward_by(bf16_gemm, B, T, C, NH, qkv, out, att);
}

static void bf16_attention_backward(int B, int T, int C, int NH, const float *dout,
                                    const float *qkv, const float *att, float *dqkv, float *scratch)
{
    bl_cpu_attention_backward_by(bf16_gemm, B, T, C, NH, dout, qkv, att, dqkv, scratch);
}

const bl_kernels_t bl_cpu_bf16_kernels = {
    .name = "cpu-bf16",
    .gemm = bf16_gemm,
    .dense_forward = bf16_dense_forward,
    .dense_backward = bf16_dense_backward,
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
    .attention_forward = bf16_attention_forward,
    .attention_backward = bf16_attention_backward,
    .vocab_xent = bl_cpu_vocab_xent,
    .adamw_update = bl_cpu_adamw_update,
    .sum_squares = bl_cpu_sum_squares,
    .softmax_rows = bl_cpu_softmax_rows,
    .softmax_rows_backward = bl_cpu_softmax_rows_backward,
};
