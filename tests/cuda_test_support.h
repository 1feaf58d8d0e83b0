/* What the gpu-labelled kernel tests (test_cuda_kernels.c,
 * test_cuda_transformer.c, test_cuda_attention.c) share: seeded inputs,
 * copies to and from the GPU, and the checks. Include after cmocka.h. */
#ifndef BL_CUDA_TEST_SUPPORT_H
#define BL_CUDA_TEST_SUPPORT_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
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

/* The main of a GPU test: exits 77 (a skip to ctest), saying why, when no
 * GPU is visible; else opens GPU 0, runs the tests (CUDA_TESTS(tests) passes
 * the array with its length) under `what` and shuts the GPU down. Returns
 * the exit status: 1 when the GPU cannot be opened, else the failures. */
static inline int run_on_gpu(const char *what, const struct CMUnitTest *tests, size_t count)
{
    char err[256] = "";
    if (bl_cuda_device_count(err, sizeof err) == 0) {
        printf("%s skipped: %s\n", what, err);
        return 77;
    }
    if (bl_cuda_init(0, err, sizeof err) != 0) {
        printf("%s FAILED: %s\n", what, err);
        return 1;
    }
    int failed = _cmocka_run_group_tests(what, tests, count, NULL, NULL);
    bl_cuda_shutdown();
    return failed;
}
#define CUDA_TESTS(tests) (tests), sizeof(tests) / sizeof((tests)[0])

/* Frees an array of host buffers (free) or of device buffers (cudaFree),
 * given as the array itself: FREE_HOSTS(bufs), FREE_DEVICES(dbufs). */
static inline void free_hosts(float **bufs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(bufs[i]);
    }
}
static inline void free_devices(float **bufs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cudaFree(bufs[i]);
    }
}
#define FREE_HOSTS(bufs)   free_hosts((bufs), sizeof(bufs) / sizeof((bufs)[0]))
#define FREE_DEVICES(bufs) free_devices((bufs), sizeof(bufs) / sizeof((bufs)[0]))

/* Runs one attention case per shape: B 1 .. max_batch, T 1, 7 and 64, NH 1,
 * 2 and 12, hs 1, 8 and 64 (C = NH·hs): one query, a few, and GPT-2's head
 * size, so that the context's scratch grows and is reused across them. */
static inline void for_attention_shapes(int max_batch, void (*run)(int B, int T, int NH, int hs))
{
    static const int Ts[] = {1, 7, 64}, NHs[] = {1, 2, 12}, hss[] = {1, 8, 64};
    for (int B = 1; B <= max_batch; B++) {
        for (int t = 0; t < 3; t++) {
            for (int h = 0; h < 3; h++) {
                for (int s = 0; s < 3; s++) {
                    run(B, Ts[t], NHs[h], hss[s]);
                }
            }
        }
    }
}

#endif /* BL_CUDA_TEST_SUPPORT_H */
