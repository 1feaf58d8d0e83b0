/* The CUDA kernel table (kernels.h's interface on device memory). */
#include "cuda_kernels.h"
#include "ops.h"
#include "ops_attention.h"
#include "ops_bf16.h"
#include "ops_transformer.h"

extern "C" const bl_kernels_t bl_cuda_kernels = {
    "cuda",
    bl_cuda_gemm,
    bl_cuda_dense_forward,
    bl_cuda_dense_backward,
    bl_cuda_relu_forward,
    bl_cuda_relu_backward,
    bl_cuda_softmax_xent,
    bl_cuda_sgd_update,
    bl_cuda_gather_rows,
    /* The transformer's kernels (embedding.cu, layernorm.cu, gelu.cu,
     * attention.cu, vocab_xent.cu, adamw.cu, softmax_rows.cu). */
    bl_cuda_embedding_forward,
    bl_cuda_embedding_backward,
    bl_cuda_layernorm_forward,
    bl_cuda_layernorm_backward,
    bl_cuda_gelu_forward,
    bl_cuda_gelu_backward,
    bl_cuda_attention_forward,
    bl_cuda_attention_backward,
    bl_cuda_vocab_xent,
    bl_cuda_adamw_update,
    bl_cuda_sum_squares,
    bl_cuda_softmax_rows,
    bl_cuda_softmax_rows_backward,
};

/* bf16 autocast (ops_bf16.h): bl_cuda_kernels with the five members that
 * multiply matrices taking bf16 operands; every other member is the same
 * fp32 kernel. */
extern "C" const bl_kernels_t bl_cuda_bf16_kernels = {
    "cuda-bf16",
    bl_cuda_gemm_bf16,
    bl_cuda_dense_forward_bf16,
    bl_cuda_dense_backward_bf16,
    bl_cuda_relu_forward,
    bl_cuda_relu_backward,
    bl_cuda_softmax_xent,
    bl_cuda_sgd_update,
    bl_cuda_gather_rows,
    bl_cuda_embedding_forward,
    bl_cuda_embedding_backward,
    bl_cuda_layernorm_forward,
    bl_cuda_layernorm_backward,
    bl_cuda_gelu_forward,
    bl_cuda_gelu_backward,
    bl_cuda_attention_forward_bf16,
    bl_cuda_attention_backward_bf16,
    bl_cuda_vocab_xent,
    bl_cuda_adamw_update,
    bl_cuda_sum_squares,
    bl_cuda_softmax_rows,
    bl_cuda_softmax_rows_backward,
};
