/* The backend's host entry points: element-wise passes (elementwise.cu),
 * products and the dense layer (dense.cu), the loss (softmax_xent.cu).
 * Internal to cuda/; every pointer is device memory. */
#ifndef BL_CUDA_OPS_H
#define BL_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

void bl_cuda_relu_forward(size_t count, const float *x, float *y);
void bl_cuda_relu_backward(size_t count, const float *y, const float *dy, float *dx);
/* y (rows, cols) += b by column, then ReLU when relu is set. */
void bl_cuda_bias(int rows, int cols, float *y, const float *b, int relu);
/* g (rows, cols) masked by y > 0 when y is not NULL; sum (cols) += column
 * sums of g (a cuBLAS product with a vector of ones). */
void bl_cuda_mask_colsum(int rows, int cols, const float *y, float *g, float *sum);
void bl_cuda_sgd_update(size_t count, float *w, float *v, const float *grad, float grad_scale,
                        float lr, float momentum, float weight_decay);
/* C (m, n) = alpha · op(A) · op(B) + beta · C, row-major (dense.cu). */
void bl_cuda_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc);
void bl_cuda_dense_forward(int batch, int in, int out, const float *x, const float *w,
                           const float *b, float *y, int relu);
void bl_cuda_dense_backward(int batch, int in, int out, const float *x, const float *w,
                            const float *y, float *dy, float *dx, float *dw, float *db, int relu,
                            int accumulate);
/* kernels.h's gather_rows on device memory (gather.cu). */
void bl_cuda_gather_rows(int rows, int cols, const float *src, const int64_t *idx, float *dst,
                         const int *labels_src, int *labels_dst);
double bl_cuda_softmax_xent(int batch, int classes, const float *logits, const int *labels,
                            float *dlogits, long *correct);

#endif /* BL_CUDA_OPS_H */
