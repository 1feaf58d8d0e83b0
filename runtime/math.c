/* The bl_math_* helpers user layers call: they run on the layer's device. */
#include "runtime_impl.h"

bl_status_t bl_math_gemm(const bl_device_t *dev, int trans_a, int trans_b, int m, int n, int k,
                         float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc)
{
    if (dev == NULL || m < 0 || n < 0 || k < 0) {
        return BL_ERR_INVALID_ARG;
    }
    dev->kernels->gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return BL_OK;
}
