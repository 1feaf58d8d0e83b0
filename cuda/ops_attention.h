/* The transformer's attention and its loss on the GPU (kernels.h's
 * attention_forward, attention_backward and vocab_xent, with the same
 * contracts): attention.cu and vocab_xent.cu. Internal to cuda/; every
 * pointer is device memory and every call runs on bl_cuda_ctx.stream. */
#ifndef BL_CUDA_OPS_ATTENTION_H
#define BL_CUDA_OPS_ATTENTION_H

#include <stdint.h>

/* Causal multi-head self-attention, kernels.h's contract. Uses the
 * context's attention scratch (3·B·T·C floats, grown on demand). */
void bl_cuda_attention_forward(int B, int T, int C, int NH, const float *qkv, float *out,
                               float *att);
/* Its backward, kernels.h's contract, except that `scratch` (the
 * caller's T·T floats) is not used: every (batch, head) pair runs in one
 * batched product, so the context's attention scratch holds the products
 * instead (4·B·T·C + B·NH·T·T floats, grown on demand). */
void bl_cuda_attention_backward(int B, int T, int C, int NH, const float *dout, const float *qkv,
                                const float *att, float *dqkv, float *scratch);
/* Cross-entropy over a padded vocabulary, kernels.h's contract. Returns
 * the loss to the host, so it waits for the GPU (0.0 after a failure,
 * which is recorded). */
double bl_cuda_vocab_xent(int rows, int V, int Vp, const float *logits, const int32_t *targets,
                          float *dlogits);

#endif /* BL_CUDA_OPS_ATTENTION_H */
