/* The CUDA kernel table (kernels.h's interface on device memory). */
#include "cuda_kernels.h"
#include "ops.h"

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
    /* The transformer's kernels: NULL where no CUDA twin exists yet (the
     * runtime refuses them on a GPU; bl_math_* say BL_ERR_UNSUPPORTED). */
    NULL, /* embedding_forward */
    NULL, /* embedding_backward */
    NULL, /* layernorm_forward */
    NULL, /* layernorm_backward */
    NULL, /* gelu_forward */
    NULL, /* gelu_backward */
    NULL, /* attention_forward */
    NULL, /* attention_backward */
    NULL, /* vocab_xent */
    NULL, /* adamw_update */
    NULL, /* sum_squares */
    NULL, /* softmax_rows */
    NULL, /* softmax_rows_backward */
};
