/* Finite-difference gradient checks of whole models through the runtime's
 * forward and backward: built-in dense (with fused and unfused ReLU), the
 * softmax cross-entropy loss, and the example user layer tanh_dense. Every
 * parameter is perturbed by ±h and the central difference of the summed
 * loss is compared with the analytic per-sample-sum gradient. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "model_impl.h"
#include "tanh_dense_layer.h"
#include "test_support.h"

static bl_runtime_t *rt;

enum { BATCH = 5, IN = 6, CLASSES = 3 };

/* The summed loss of the batch under the current parameters. */
static double batch_loss(bl_model_t *m, bl_workspace_t *ws, const float *x, const int *y)
{
    const float *logits = NULL;
    long correct = 0;
    assert_int_equal(bl_model_forward(m, ws, BATCH, x, &logits), BL_OK);
    return bl_cpu_kernels.softmax_xent(BATCH, CLASSES, logits, y, NULL, &correct);
}

static void check_gradients(bl_model_t *m)
{
    float x[BATCH * IN];
    int y[BATCH];
    for (int i = 0; i < BATCH * IN; i++) {
        x[i] = (float)(((i * 7919) % 23) - 11) / 8.0f;
    }
    for (int r = 0; r < BATCH; r++) {
        y[r] = (r * 2) % CLASSES;
    }
    bl_workspace_t ws;
    assert_int_equal(bl_workspace_init(m, BATCH, &ws), BL_OK);
    const float *logits = NULL;
    long correct = 0;
    assert_int_equal(bl_model_forward(m, &ws, BATCH, x, &logits), BL_OK);
    bl_cpu_kernels.softmax_xent(BATCH, CLASSES, logits, y, bl_model_dlogits(&ws), &correct);
    /* accumulate 1 onto poisoned gradients would be wrong: overwrite. */
    for (size_t i = 0; i < m->param_count; i++) {
        m->grads[i] = 1e6f;
    }
    assert_int_equal(bl_model_backward(m, &ws, BATCH, x, 0, NULL, NULL), BL_OK);

    const double h = 1e-3;
    int checked = 0, nonzero = 0;
    for (size_t i = 0; i < m->param_count; i++) {
        float saved = m->params[i];
        m->params[i] = saved + (float)h;
        double up = batch_loss(m, &ws, x, y);
        m->params[i] = saved - (float)h;
        double down = batch_loss(m, &ws, x, y);
        m->params[i] = saved;
        double numeric = (up - down) / (2.0 * h);
        if (!close_enough(m->grads[i], numeric, 2e-3, 2e-2)) {
            fail_msg("parameter %zu: analytic %.6f, numeric %.6f", i, (double)m->grads[i], numeric);
        }
        checked++;
        nonzero += fabs(numeric) > 1e-3;
    }
    assert_true(checked > 0);
    assert_true(nonzero > checked / 4); /* the check is not vacuous */
    bl_workspace_free(bl_rt_allocator(m->rt), &ws);
}

static void test_dense_relu_dense(void **state)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, IN, &m), BL_OK);
    assert_int_equal(bl_model_add_dense(m, 7), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK); /* fused into the dense pass */
    assert_int_equal(bl_model_add_dense(m, 4), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    assert_int_equal(bl_model_add_dense(m, CLASSES), BL_OK);
    assert_int_equal(bl_model_build(m, 21), BL_OK);
    check_gradients(m);
    bl_model_destroy(m);
}

static void test_user_layer_and_unfused_relu(void **state)
{
    static int width = 5;
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, IN, &m), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK); /* first: its own pass */
    assert_int_equal(bl_model_add_dense(m, 8), BL_OK);
    assert_int_equal(bl_model_add_layer(m, &tanh_dense_ops, &width), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK); /* after a user layer: its own pass */
    assert_int_equal(bl_model_add_dense(m, CLASSES), BL_OK);
    assert_int_equal(bl_model_build(m, 5), BL_OK);
    assert_false(m->layers[3].fused);
    check_gradients(m);
    bl_model_destroy(m);
}

static void test_user_layer_first(void **state)
{
    static int width = 4;
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, IN, &m), BL_OK);
    assert_int_equal(bl_model_add_layer(m, &tanh_dense_ops, &width), BL_OK); /* dx == NULL */
    assert_int_equal(bl_model_add_dense(m, CLASSES), BL_OK);
    assert_int_equal(bl_model_build(m, 8), BL_OK);
    check_gradients(m);
    bl_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_relu_dense),
        cmocka_unit_test(test_user_layer_and_unfused_relu),
        cmocka_unit_test(test_user_layer_first),
    };
    return run_tests_with_runtime("test_gradcheck", tests, sizeof tests / sizeof tests[0], &rt);
}
