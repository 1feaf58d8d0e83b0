/* The bf16 autocast products on the GPU (cuda_kernels.h's
 * bl_cuda_bf16_kernels, the twin of kernels.h's bl_cpu_bf16_kernels): the
 * kernel table's gemm, dense layer and attention with each product's two
 * operands rounded to bfloat16 (bf16_round.h, ties to even) and an fp32
 * accumulation on the tensor cores (cuBLAS, CUBLAS_COMPUTE_32F). Every
 * buffer stays fp32; the rounded copies live in the context's bf16
 * scratch (gemm_bf16.cu). The contracts are kernels.h's; internal to
 * cuda/; every pointer is device memory and every call runs on
 * bl_cuda_ctx.stream, in order. Failures are recorded (bl_cuda_check
 * reports them), the product's output then being unspecified. */
#ifndef BL_CUDA_OPS_BF16_H
#define BL_CUDA_OPS_BF16_H

/* C (m, n) = alpha · op(A) · op(B) + beta · C, row-major, with A and B
 * rounded to bf16 (gemm_bf16.cu). An empty product (m, n or k <= 0) is
 * bl_cuda_gemm's: nothing to round. */
void bl_cuda_gemm_bf16(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* C_z (m, n) = alpha · op(A_z) · op(B_z) + beta · C_z for z in [0, count),
 * row-major as bl_cuda_gemm_bf16, each operand `stride_*` elements after
 * the last (strides >= 0). m, n, k >= 1 and count >= 1. A failure is
 * recorded naming `what`. */
void bl_cuda_gemm_bf16_batched(int trans_a, int trans_b, int m, int n, int k, float alpha,
                               const float *a, int lda, long long stride_a, const float *b, int ldb,
                               long long stride_b, float beta, float *c, int ldc,
                               long long stride_c, long count, const char *what);

/* The dense layer with bf16 products (dense.cu): x and W for y (the bias
 * is added in fp32); dy and x for dW, dy and W for dx (db sums the fp32
 * dy, masked first as in fp32). */
void bl_cuda_dense_forward_bf16(int batch, int in, int out, const float *x, const float *w,
                                const float *b, float *y, int relu);
void bl_cuda_dense_backward_bf16(int batch, int in, int out, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db,
                                 int relu, int accumulate);

/* Attention with bf16 products (attention.cu), ops_attention.h's contracts
 * and scratch: q and k for the scores, att and v for out (att itself stays
 * the fp32 probabilities); att and dout for dv, dout and v for datt, the
 * scores' gradient and k (q) for dq (dk). */
void bl_cuda_attention_forward_bf16(int B, int T, int C, int NH, const float *qkv, float *out,
                                    float *att);
void bl_cuda_attention_backward_bf16(int B, int T, int C, int NH, const float *dout,
                                     const float *qkv, const float *att, float *dqkv,
                                     float *scratch);

#endif /* BL_CUDA_OPS_BF16_H */
