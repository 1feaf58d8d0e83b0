/* The bl_math_* helpers that user layers call, on the CPU device, against
 * plain float64 references: the batched GEMM (strided operands, both
 * transposes), the row softmax and its backward (also against finite
 * differences), LayerNorm and GELU with their backwards through the kernel
 * table; a device whose table lacks a kernel (as the CUDA table lacks
 * the transformer's today): BL_ERR_UNSUPPORTED naming the helper and the
 * device, with nothing written; and a user layer's scratch
 * (bl_device_alloc) and copies (bl_math_copy) on the CPU and the mirror. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "device.h"
#include "test_support.h"

static bl_runtime_t *rt;

static void test_gemm_batched(void **state)
{
    (void)state;
    enum { BATCH = 3, M = 4, N = 5, K = 6 };
    lcg_t g;
    lcg_seed(&g, 3);
    /* A is stored (K, M) per batch for trans_a, with a row stride of M + 1
     * and a batch stride beyond the rows: the helper must honour both. */
    float a[BATCH * (K * (M + 1) + 7)], b[BATCH * N * K], c[BATCH * M * N];
    fill_uniform(&g, a, sizeof a / sizeof a[0], -1, 1);
    fill_uniform(&g, b, sizeof b / sizeof b[0], -1, 1);
    fill_value(c, sizeof c / sizeof c[0], 1.0f);
    const long sa = K * (M + 1) + 7, sb = N * K, sc = M * N;
    assert_int_equal(bl_math_gemm_batched(&bl_host_device, 1, 1, M, N, K, 2.0f, a, M + 1, sa, b, K,
                                          sb, 0.5f, c, N, sc, BATCH),
                     BL_OK);
    for (int i = 0; i < BATCH; i++) {
        double ref[M * N];
        for (int r = 0; r < M; r++) {
            for (int col = 0; col < N; col++) {
                double sum = 0.0;
                for (int k = 0; k < K; k++) {
                    sum += (double)a[i * sa + k * (M + 1) + r] * b[i * sb + col * K + k];
                }
                ref[r * N + col] = 2.0 * sum + 0.5;
            }
        }
        check_close_tol(c + i * sc, ref, M * N, 1e-5, 1e-5, "gemm_batched");
    }
    assert_int_equal(bl_math_gemm_batched(&bl_host_device, 0, 0, 1, 1, 1, 1.0f, a, 1, 0, b, 1, 0,
                                          0.0f, c, 1, 0, -1),
                     BL_ERR_INVALID_ARG);
}

static void softmax_ref(int cols, const float *x, double *y)
{
    double max = -INFINITY, sum = 0.0;
    for (int j = 0; j < cols; j++) {
        max = fmax(max, x[j]);
    }
    for (int j = 0; j < cols; j++) {
        y[j] = exp(x[j] - max);
        sum += y[j];
    }
    for (int j = 0; j < cols; j++) {
        y[j] /= sum;
    }
}

static void test_softmax(void **state)
{
    (void)state;
    enum { ROWS = 3, COLS = 7 };
    lcg_t g;
    lcg_seed(&g, 5);
    float x[ROWS * COLS], y[ROWS * COLS], dy[ROWS * COLS], dx[ROWS * COLS];
    fill_uniform(&g, x, ROWS * COLS, -4, 4);
    x[3] = 80.0f; /* a large entry: the maximum is subtracted, nothing overflows */
    fill_uniform(&g, dy, ROWS * COLS, -1, 1);
    assert_int_equal(bl_math_softmax(&bl_host_device, ROWS, COLS, x, y), BL_OK);
    double ref[ROWS * COLS];
    for (int r = 0; r < ROWS; r++) {
        softmax_ref(COLS, x + r * COLS, ref + r * COLS);
    }
    check_close_tol(y, ref, ROWS * COLS, 1e-7, 1e-6, "softmax");
    assert_int_equal(bl_math_softmax_backward(&bl_host_device, ROWS, COLS, y, dy, dx), BL_OK);
    /* d/dx_j of L = Σ dy · softmax(x), by central differences in float64. */
    for (int r = 0; r < ROWS; r++) {
        double fd[COLS];
        for (int j = 0; j < COLS; j++) {
            float xp[COLS], xm[COLS];
            memcpy(xp, x + r * COLS, sizeof xp);
            memcpy(xm, x + r * COLS, sizeof xm);
            const float h = 1e-2f;
            xp[j] += h;
            xm[j] -= h;
            double yp[COLS], ym[COLS], lp = 0.0, lm = 0.0;
            softmax_ref(COLS, xp, yp);
            softmax_ref(COLS, xm, ym);
            for (int q = 0; q < COLS; q++) {
                lp += dy[r * COLS + q] * yp[q];
                lm += dy[r * COLS + q] * ym[q];
            }
            fd[j] = (lp - lm) / (2.0 * h);
        }
        check_close_tol(dx + r * COLS, fd, COLS, 1e-4, 1e-3, "softmax backward");
    }
}

static void test_layernorm_and_gelu(void **state)
{
    (void)state;
    enum { ROWS = 2, C = 8 };
    lcg_t g;
    lcg_seed(&g, 9);
    float x[ROWS * C], w[C], b[C], y[ROWS * C], mean[ROWS], rstd[ROWS];
    fill_uniform(&g, x, ROWS * C, -2, 2);
    fill_uniform(&g, w, C, 0.5f, 1.5f);
    fill_uniform(&g, b, C, -0.5f, 0.5f);
    assert_int_equal(bl_math_layernorm(&bl_host_device, ROWS, C, x, w, b, y, mean, rstd), BL_OK);
    double ref[ROWS * C];
    for (int r = 0; r < ROWS; r++) {
        double m = 0.0, v = 0.0;
        for (int j = 0; j < C; j++) {
            m += x[r * C + j] / (double)C;
        }
        for (int j = 0; j < C; j++) {
            v += (x[r * C + j] - m) * (x[r * C + j] - m) / (double)C;
        }
        for (int j = 0; j < C; j++) {
            ref[r * C + j] = (x[r * C + j] - m) / sqrt(v + 1e-5) * w[j] + b[j];
        }
    }
    check_close_tol(y, ref, ROWS * C, 1e-5, 1e-5, "layernorm");
    float dy[ROWS * C], dx[ROWS * C], dw[C] = {0}, db[C] = {0};
    fill_uniform(&g, dy, ROWS * C, -1, 1);
    assert_int_equal(
        bl_math_layernorm_backward(&bl_host_device, ROWS, C, dy, x, w, mean, rstd, dx, dw, db, 0),
        BL_OK);
    double dbias[C] = {0};
    for (int r = 0; r < ROWS; r++) {
        for (int j = 0; j < C; j++) {
            dbias[j] += dy[r * C + j];
        }
    }
    check_close_tol(db, dbias, C, 1e-6, 1e-6, "layernorm dbias");
    float gx[4] = {-3.0f, -0.5f, 0.0f, 2.0f}, gy[4], gdx[4], ones[4] = {1, 1, 1, 1};
    assert_int_equal(bl_math_gelu(&bl_host_device, 4, gx, gy), BL_OK);
    assert_int_equal(bl_math_gelu_backward(&bl_host_device, 4, gx, ones, gdx), BL_OK);
    for (int i = 0; i < 4; i++) {
        const double u = 0.7978845608028654 * (gx[i] + 0.044715 * gx[i] * gx[i] * gx[i]);
        assert_true(close_enough(gy[i], 0.5 * gx[i] * (1.0 + tanh(u)), 1e-7, 1e-6));
        const double h = 1e-3;
        const double up = 0.7978845608028654 * ((gx[i] + h) + 0.044715 * pow(gx[i] + h, 3));
        const double um = 0.7978845608028654 * ((gx[i] - h) + 0.044715 * pow(gx[i] - h, 3));
        const double fd =
            (0.5 * (gx[i] + h) * (1.0 + tanh(up)) - 0.5 * (gx[i] - h) * (1.0 + tanh(um))) /
            (2.0 * h);
        assert_true(close_enough(gdx[i], fd, 1e-5, 1e-4));
    }
}

/* A device whose table has none of the transformer's kernels. */
static void test_missing_kernels(void **state)
{
    (void)state;
    bl_kernels_t partial = bl_cpu_kernels;
    partial.softmax_rows = NULL;
    partial.softmax_rows_backward = NULL;
    partial.layernorm_forward = NULL;
    partial.layernorm_backward = NULL;
    partial.gelu_forward = NULL;
    partial.gelu_backward = NULL;
    bl_device_t dev = {.kernels = &partial, .rt = rt};
    strcpy(dev.name, "cuda:0 test");
    float x[4] = {1, 2, 3, 4}, y[4] = {-7, -7, -7, -7};
    assert_int_equal(bl_math_softmax(&dev, 1, 4, x, y), BL_ERR_UNSUPPORTED);
    assert_non_null(strstr(bl_last_error(rt), "bl_math_softmax: device cuda:0 test"));
    assert_true(y[0] == -7.0f);
    assert_int_equal(bl_math_softmax_backward(&dev, 1, 4, x, x, y), BL_ERR_UNSUPPORTED);
    assert_int_equal(bl_math_layernorm(&dev, 1, 4, x, x, x, y, NULL, NULL), BL_ERR_UNSUPPORTED);
    assert_non_null(strstr(bl_last_error(rt), "bl_math_layernorm"));
    assert_int_equal(bl_math_layernorm_backward(&dev, 1, 4, x, x, x, x, x, y, y, y, 0),
                     BL_ERR_UNSUPPORTED);
    assert_int_equal(bl_math_gelu(&dev, 4, x, y), BL_ERR_UNSUPPORTED);
    assert_int_equal(bl_math_gelu_backward(&dev, 4, x, x, y), BL_ERR_UNSUPPORTED);
    assert_true(y[0] == -7.0f);
    assert_int_equal(bl_math_softmax(NULL, 1, 4, x, y), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_math_softmax(&bl_host_device, 1, 0, x, y), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_math_layernorm(&bl_host_device, -1, 4, x, x, x, y, NULL, NULL),
                     BL_ERR_INVALID_ARG);
}

/* A user layer's scratch and copies: on the CPU, host memory and memcpy;
 * on the mirror, the device's own memory, filled and read back only through
 * its copies. */
static void test_scratch_and_copy_on_the_cpu_and_the_mirror(void **state)
{
    (void)state;
    bl_device_t mirror = {.kernels = &bl_cpu_kernels, .memory = &bl_mirror_memory, .rt = rt};
    strcpy(mirror.name, "mirror");
    const bl_device_t *devices[2] = {&bl_host_device, &mirror};
    const float x[5] = {1.5f, -2.0f, 0.0f, 3.25f, -0.0f};
    for (int d = 0; d < 2; d++) {
        const bl_device_t *dev = devices[d];
        float *a = bl_device_alloc(dev, sizeof x), *b = bl_device_alloc(dev, sizeof x);
        assert_non_null(a);
        assert_non_null(b);
        float got[5] = {9, 9, 9, 9, 9};
        if (dev->memory != NULL) {
            assert_int_equal(dev->memory->to_device(a, x, sizeof x), 0);
        } else {
            memcpy(a, x, sizeof x);
        }
        assert_int_equal(bl_math_copy(dev, 5, a, b), BL_OK);
        assert_int_equal(bl_math_copy(dev, 0, a, b), BL_OK); /* nothing to copy */
        if (dev->memory != NULL) {
            assert_int_equal(dev->memory->to_host(got, b, sizeof got), 0);
        } else {
            memcpy(got, b, sizeof got);
        }
        assert_memory_equal(got, x, sizeof x); /* bit for bit, -0 included */
        bl_device_free(dev, a);
        bl_device_free(dev, b);
        void *empty = bl_device_alloc(dev, 0); /* a unique pointer */
        assert_non_null(empty);
        bl_device_free(dev, empty);
        bl_device_free(dev, NULL);
    }
    assert_null(bl_device_alloc(NULL, 4));
    bl_device_free(NULL, NULL);
    assert_int_equal(bl_math_copy(NULL, 1, x, NULL), BL_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_batched),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_layernorm_and_gelu),
        cmocka_unit_test(test_missing_kernels),
        cmocka_unit_test(test_scratch_and_copy_on_the_cpu_and_the_mirror),
    };
    return run_tests_with_runtime("math", tests, sizeof tests / sizeof tests[0], &rt);
}
