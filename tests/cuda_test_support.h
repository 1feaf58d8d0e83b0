/* What the gpu-labelled kernel tests (test_cuda_kernels.c,
 * test_cuda_transformer.c, test_cuda_attention.c) share: seeded inputs,
 * copies to and from the GPU, and the checks. Include after cmocka.h. */
#ifndef BL_CUDA_TEST_SUPPORT_H
#define BL_CUDA_TEST_SUPPORT_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "cuda_kernels.h"

/* The inputs' generator (xorshift64), the same sequence in every test. */
static uint64_t rng = 88172645463325252ULL;

static inline float uniform(float lo, float hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 40) * 0x1.0p-24);
}

/* n floats uniform in [lo, hi), host memory (free them). */
static inline float *host(size_t n, float lo, float hi)
{
    float *a = malloc((n == 0 ? 1 : n) * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < n; i++) {
        a[i] = uniform(lo, hi);
    }
    return a;
}

/* A device copy of n bytes of h. */
static inline void *up(const void *h, size_t n)
{
    void *d = NULL;
    assert_int_equal(cudaMalloc(&d, n == 0 ? 1 : n), cudaSuccess);
    if (n > 0) {
        assert_int_equal(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice), cudaSuccess);
    }
    return d;
}

/* Copies the device's n floats back into h, after the GPU is done. */
static inline void down(float *h, const void *d, size_t n)
{
    char err[256];
    assert_int_equal(bl_cuda_sync(err, sizeof err), 0);
    assert_int_equal(cudaMemcpy(h, d, n * sizeof *h, cudaMemcpyDeviceToHost), cudaSuccess);
}

static inline void no_failure(void)
{
    char err[256] = "";
    if (bl_cuda_check(err, sizeof err) != 0) {
        fail_msg("a CUDA call failed: %s", err);
    }
}

/* Fails naming `what` and the first element where gpu and cpu differ by
 * more than atol + rtol · |cpu|. */
static inline void check_close(const float *gpu, const float *cpu, size_t n, double atol,
                               double rtol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (!(d <= atol + rtol * fabs((double)cpu[i]))) {
            fail_msg("%s[%zu]: gpu %.9g, cpu %.9g, tolerance %.3g", what, i, (double)gpu[i],
                     (double)cpu[i], atol + rtol * fabs((double)cpu[i]));
        }
    }
}

#endif /* BL_CUDA_TEST_SUPPORT_H */
