/* Internal to kernels/: the CPU implementations behind bl_cpu_kernels.
 * Callers outside kernels/ go through the table in kernels.h; the contracts
 * (shapes, accumulate, conventions) are the ones stated there. */
#ifndef BL_CPU_KERNELS_H
#define BL_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Element-wise loops run in spans of BL_CPU_LANES plus one shorter tail
 * span. At -O2 (CMake's RelWithDebInfo) GCC 12 vectorises only loops whose
 * trip count is a known multiple of the vector width, so a span of fixed
 * length gets SIMD (SSE: two vectors, AVX: one) with no special flags. */
enum { BL_CPU_LANES = 8 };

/* A product as kernels.h's gemm computes it: C (m, n) = alpha · op(A) ·
 * op(B) + beta · C, row-major. The dense layer and attention take one, so
 * that the fp32 table (bl_cpu_gemm, cpu_kernels.c) and the bf16 one
 * (bf16.c) share their code and differ only in their products. */
typedef void bl_cpu_gemm_fn(int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta, float *c,
                            int ldc);
bl_cpu_gemm_fn bl_cpu_gemm;

/* dense.c: kernels.h's dense_forward and dense_backward, whose products are
 * `gemm`'s. */
void bl_cpu_dense_forward_by(bl_cpu_gemm_fn *gemm, int batch, int in, int out, const float *x,
                             const float *w, const float *b, float *y, int relu);
void bl_cpu_dense_backward_by(bl_cpu_gemm_fn *gemm, int batch, int in, int out, const float *x,
                              const float *w, const float *y, float *dy, float *dx, float *dw,
                              float *db, int relu, int accumulate);
void bl_cpu_dense_forward(int batch, int in, int out, const float *x, const float *w,
                          const float *b, float *y, int relu);
void bl_cpu_dense_backward(int batch, int in, int out, const float *x, const float *w,
                           const float *y, float *dy, float *dx, float *dw, float *db, int relu,
                           int accumulate);

/* elementwise.c */
void bl_cpu_relu_forward(size_t count, const float *x, float *y);
void bl_cpu_relu_backward(size_t count, const float *y, const float *dy, float *dx);

/* softmax_xent.c */
double bl_cpu_softmax_xent(int batch, int classes, const float *logits, const int *labels,
                           float *dlogits, long *correct);

/* gather.c */
void bl_cpu_gather_rows(int rows, int cols, const float *src, const int64_t *idx, float *dst,
                        const int *labels_src, int *labels_dst);

/* sgd.c */
void bl_cpu_sgd_update(size_t count, float *w, float *v, const float *grad, float grad_scale,
                       float lr, float momentum, float weight_decay);

/* embedding.c */
void bl_cpu_embedding_forward(int B, int T, int C, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out);
void bl_cpu_embedding_backward(int B, int T, int C, const int32_t *tokens, const float *dout,
                               float *dwte, float *dwpe);

/* layernorm.c */
void bl_cpu_layernorm_forward(int rows, int C, const float *inp, const float *weight,
                              const float *bias, float *out, float *mean, float *rstd);
void bl_cpu_layernorm_backward(int rows, int C, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd,
                               float *dinp, float *dweight, float *dbias, int accumulate);

/* gelu.c */
void bl_cpu_gelu_forward(size_t count, const float *x, float *y);
void bl_cpu_gelu_backward(size_t count, const float *x, const float *dy, float *dx);

/* attention.c: kernels.h's attention, whose products are `gemm`'s (the
 * _by forms) or OpenBLAS's fp32 ones. */
void bl_cpu_attention_forward_by(bl_cpu_gemm_fn *gemm, int B, int T, int C, int NH,
                                 const float *qkv, float *out, float *att);
void bl_cpu_attention_backward_by(bl_cpu_gemm_fn *gemm, int B, int T, int C, int NH,
                                  const float *dout, const float *qkv, const float *att,
                                  float *dqkv, float *scratch);
void bl_cpu_attention_forward(int B, int T, int C, int NH, const float *qkv, float *out,
                              float *att);
void bl_cpu_attention_backward(int B, int T, int C, int NH, const float *dout, const float *qkv,
                               const float *att, float *dqkv, float *scratch);

/* vocab_xent.c */
double bl_cpu_vocab_xent(int rows, int V, int Vp, const float *logits, const int32_t *targets,
                         float *dlogits);

/* softmax_rows.c */
void bl_cpu_softmax_rows(int rows, int cols, const float *x, float *y);
void bl_cpu_softmax_rows_backward(int rows, int cols, const float *y, const float *dy, float *dx);

/* adamw.c */
void bl_cpu_adamw_update(size_t count, float *w, float *m, float *v, const float *grad,
                         float grad_scale, float lr, float beta1, float beta2, float eps,
                         float weight_decay, long t);

/* sumsq.c */
double bl_cpu_sum_squares(size_t count, const float *x);

/* mirror_memory.c: records `what` as the mirror device's failure, if it is
 * the first since the last report (its finish reports it), for a kernel of
 * the mirror's tables that cannot complete (bf16.c's copies). */
void bl_mirror_record_failure(const char *what);

#endif /* BL_CPU_KERNELS_H */
