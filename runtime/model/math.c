/* The bl_math_* helpers that user layers call. They run on the layer's
 * device through its kernel table: OpenBLAS on the CPU, and cuBLAS and
 * ballast's kernels on a GPU, where they are queued on ballast's stream. */
#include <stdio.h>
#include <string.h>

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

void *bl_device_alloc(const bl_device_t *dev, size_t nbytes)
{
    if (dev == NULL) {
        return NULL;
    }
    if (dev->memory == NULL) {
        return bl_mem_alloc(dev->rt != NULL ? bl_rt_allocator(dev->rt) : NULL, nbytes);
    }
    return bl_buffer_alloc(dev->rt, dev, nbytes, 1);
}

void bl_device_free(const bl_device_t *dev, void *ptr)
{
    if (dev != NULL && ptr != NULL) {
        bl_buffer_free(dev->rt != NULL ? bl_rt_allocator(dev->rt) : NULL, dev, ptr);
    }
}

bl_status_t bl_math_copy(const bl_device_t *dev, size_t count, const float *x, float *y)
{
    if (dev == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    const size_t nbytes = count * sizeof(float);
    if (dev->memory == NULL) {
        if (nbytes > 0) {
            memcpy(y, x, nbytes);
        }
        return BL_OK;
    }
    if (dev->memory->copy(y, x, nbytes) == 0) {
        return BL_OK;
    }
    if (dev->rt != NULL) {
        return bl_device_check(dev->rt, dev, "bl_math_copy");
    }
    return BL_ERR_CUDA;
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

/* Returns BL_OK when the device's table has a kernel, else
 * BL_ERR_UNSUPPORTED naming the helper and the device (a table of another
 * backend may leave the transformer's kernels NULL). */
static bl_status_t have(const bl_device_t *dev, const void *kernel, const char *helper)
{
    if (kernel != NULL) {
        return BL_OK;
    }
    if (dev->rt != NULL) {
        return bl_fail(dev->rt, BL_ERR_UNSUPPORTED, "%s: device %s has no such kernel yet", helper,
                       dev->name);
    }
    return BL_ERR_UNSUPPORTED;
}

bl_status_t bl_math_gemm_batched(const bl_device_t *dev, int trans_a, int trans_b, int m, int n,
                                 int k, float alpha, const float *a, int lda, long stride_a,
                                 const float *b, int ldb, long stride_b, float beta, float *c,
                                 int ldc, long stride_c, int batch)
{
    if (dev == NULL || m < 0 || n < 0 || k < 0 || batch < 0) {
        return BL_ERR_INVALID_ARG;
    }
    for (int i = 0; i < batch; i++) {
        dev->kernels->gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda,
                           b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
    }
    return BL_OK;
}

bl_status_t bl_math_softmax(const bl_device_t *dev, int rows, int cols, const float *x, float *y)
{
    if (dev == NULL || rows < 0 || cols < 1) {
        return BL_ERR_INVALID_ARG;
    }
    bl_status_t st = have(dev, (const void *)dev->kernels->softmax_rows, "bl_math_softmax");
    if (st == BL_OK) {
        dev->kernels->softmax_rows(rows, cols, x, y);
    }
    return st;
}

bl_status_t bl_math_softmax_backward(const bl_device_t *dev, int rows, int cols, const float *y,
                                     const float *dy, float *dx)
{
    if (dev == NULL || rows < 0 || cols < 1) {
        return BL_ERR_INVALID_ARG;
    }
    bl_status_t st =
        have(dev, (const void *)dev->kernels->softmax_rows_backward, "bl_math_softmax_backward");
    if (st == BL_OK) {
        dev->kernels->softmax_rows_backward(rows, cols, y, dy, dx);
    }
    return st;
}

bl_status_t bl_math_layernorm(const bl_device_t *dev, int rows, int cols, const float *x,
                              const float *weight, const float *bias, float *y, float *mean,
                              float *rstd)
{
    if (dev == NULL || rows < 0 || cols < 1) {
        return BL_ERR_INVALID_ARG;
    }
    bl_status_t st = have(dev, (const void *)dev->kernels->layernorm_forward, "bl_math_layernorm");
    if (st == BL_OK) {
        dev->kernels->layernorm_forward(rows, cols, x, weight, bias, y, mean, rstd);
    }
    return st;
}

bl_status_t bl_math_layernorm_backward(const bl_device_t *dev, int rows, int cols, const float *dy,
                                       const float *x, const float *weight, const float *mean,
                                       const float *rstd, float *dx, float *dweight, float *dbias,
                                       int accumulate)
{
    if (dev == NULL || rows < 0 || cols < 1) {
        return BL_ERR_INVALID_ARG;
    }
    bl_status_t st =
        have(dev, (const void *)dev->kernels->layernorm_backward, "bl_math_layernorm_backward");
    if (st == BL_OK) {
        dev->kernels->layernorm_backward(rows, cols, dy, x, weight, mean, rstd, dx, dweight, dbias,
                                         accumulate);
    }
    return st;
}

bl_status_t bl_math_gelu(const bl_device_t *dev, size_t count, const float *x, float *y)
{
    if (dev == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_status_t st = have(dev, (const void *)dev->kernels->gelu_forward, "bl_math_gelu");
    if (st == BL_OK) {
        dev->kernels->gelu_forward(count, x, y);
    }
    return st;
}

bl_status_t bl_math_gelu_backward(const bl_device_t *dev, size_t count, const float *x,
                                  const float *dy, float *dx)
{
    if (dev == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_status_t st = have(dev, (const void *)dev->kernels->gelu_backward, "bl_math_gelu_backward");
    if (st == BL_OK) {
        dev->kernels->gelu_backward(count, x, dy, dx);
    }
    return st;
}
