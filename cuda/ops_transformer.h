/* The transformer's element-wise kernels on the GPU (kernels.h's
 * embedding_forward .. softmax_rows_backward, with the same contracts):
 * embedding.cu, layernorm.cu, gelu.cu, softmax_rows.cu and adamw.cu.
 * Internal to cuda/; every pointer is device memory and every call runs
 * on bl_cuda_ctx.stream, in order. Only sum_squares waits for the GPU (it
 * returns its sum to the host). Failures are recorded (bl_cuda_check
 * reports them); sizes of 0 launch nothing. Each call gives the same bits
 * run to run: no float atomics, every sum in a fixed order. */
#ifndef BL_CUDA_OPS_TRANSFORMER_H
#define BL_CUDA_OPS_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

/* out[b, t] = wte[tokens[b, t]] + wpe[t]: the CPU's bits. */
void bl_cuda_embedding_forward(int B, int T, int C, const int32_t *tokens, const float *wte,
                               const float *wpe, float *out);
/* dwte[tokens[b, t]] += dout[b, t] and dwpe[t] += dout[b, t], each row of
 * the tables adding its rows in (b, t) order, as the CPU does (the CPU's
 * bits). Sorts the tokens (B·T of them) in the context's sort scratch. */
void bl_cuda_embedding_backward(int B, int T, int C, const int32_t *tokens, const float *dout,
                                float *dwte, float *dwpe);

/* Per row, mean and rstd summed in double in the CPU's order, so out,
 * mean and rstd are the CPU's bits. */
void bl_cuda_layernorm_forward(int rows, int C, const float *inp, const float *weight,
                               const float *bias, float *out, float *mean, float *rstd);
/* dinp: the CPU's bits. dweight and dbias: column sums in a fixed
 * two-level order (not the CPU's), through the context's column scratch
 * (2·C·ceil(rows / 128) floats). */
void bl_cuda_layernorm_backward(int rows, int C, const float *dout, const float *inp,
                                const float *weight, const float *mean, const float *rstd,
                                float *dinp, float *dweight, float *dbias, int accumulate);

/* kernels/gelu_approx.h per element: the CPU's bits. */
void bl_cuda_gelu_forward(size_t count, const float *x, float *y);
void bl_cuda_gelu_backward(size_t count, const float *x, const float *dy, float *dx);

/* kernels/adamw_step.h per element, its scalars formed on the host as the
 * CPU forms them: the CPU's bits. */
void bl_cuda_adamw_update(size_t count, float *w, float *m, float *v, const float *grad,
                          float grad_scale, float lr, float beta1, float beta2, float eps,
                          float weight_decay, long t);
/* The sum of squares in double, in a fixed tree that depends on count
 * only (not the CPU's order). Waits for the GPU; 0.0 for count 0 or after
 * a failure (recorded). */
double bl_cuda_sum_squares(size_t count, const float *x);

/* A warp per row: the max, exp in float and the sum in double as the
 * CPU's row (kernels/xent_row.h), the sum in a fixed tree instead of in
 * order. */
void bl_cuda_softmax_rows(int rows, int cols, const float *x, float *y);
void bl_cuda_softmax_rows_backward(int rows, int cols, const float *y, const float *dy, float *dx);

#endif /* BL_CUDA_OPS_TRANSFORMER_H */
