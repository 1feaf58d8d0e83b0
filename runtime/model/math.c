/* The bl_math_* helpers that user layers call. They run on the layer's
 * device through its kernel table: OpenBLAS on the CPU, and cuBLAS and
 * ballast's kernels on a GPU, where they are queued on ballast's stream. */
#include <stdio.h>

#include "runtime_impl.h"
#include "device.h"

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

bl_status_t bl_math_relu(const bl_device_t *dev, size_t count, const float *x, float *y)
{
    if (dev == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    dev->kernels->relu_forward(count, x, y);
    return BL_OK;
}

bl_status_t bl_math_relu_backward(const bl_device_t *dev, size_t count, const float *y,
                                  const float *dy, float *dx)
{
    if (dev == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    dev->kernels->relu_backward(count, y, dy, dx);
    return BL_OK;
}

int bl_device_has_memory(const bl_device_t *dev)
{
    return dev != NULL && dev->memory != NULL;
}

bl_status_t bl_device_sync(const bl_device_t *dev)
{
    if (dev == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (dev->memory == NULL) {
        return BL_OK;
    }
    if (dev->rt != NULL) {
        return bl_device_check(dev->rt, dev, "bl_device_sync");
    }
    char err[8];
    return dev->memory->finish(err, sizeof err) == 0 ? BL_OK : BL_ERR_CUDA;
}
