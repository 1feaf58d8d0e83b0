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
#include <stdlib.h>
#include <string.h>

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
    /* IN → 7 → ReLU → 4 → ReLU → CLASSES: each ReLU fused into its dense pass. */
    bl_model_t *m = NULL;
    assert_int_equal(test_mlp(rt, IN, (const int[]){7, 4}, 2, CLASSES, 21, &m), BL_OK);
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
    assert_non_null(bl_model_params(m)); /* hold every layer */
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
    assert_non_null(bl_model_params(m)); /* hold every layer */
    check_gradients(m);
    bl_model_destroy(m);
}

/* Runs the model as consecutive stages split at cut (layers [0, cut) and
 * [cut, L)), handing activations forward and input gradients back as a
 * pipeline does, and compares logits and gradients with the whole model. */
static void check_split_matches_whole(bl_model_t *m, int cut)
{
    const bl_allocator_t *a = bl_rt_allocator(m->rt);
    float x[BATCH * IN];
    int y[BATCH];
    for (int i = 0; i < BATCH * IN; i++) {
        x[i] = (float)(((i * 5347) % 19) - 9) / 6.0f;
    }
    for (int r = 0; r < BATCH; r++) {
        y[r] = (r + 1) % CLASSES;
    }
    long correct = 0;
    bl_workspace_t whole, head, tail;
    assert_int_equal(bl_workspace_init(m, BATCH, &whole), BL_OK);
    assert_int_equal(bl_workspace_init_range(m, 0, cut, BATCH, &head), BL_OK);
    assert_int_equal(bl_workspace_init_range(m, cut, m->layer_count, BATCH, &tail), BL_OK);
    const float *logits = NULL, *mid = NULL, *split_logits = NULL;
    assert_int_equal(bl_model_forward(m, &whole, BATCH, x, &logits), BL_OK);
    bl_cpu_kernels.softmax_xent(BATCH, CLASSES, logits, y, bl_model_dlogits(&whole), &correct);
    assert_int_equal(bl_model_backward(m, &whole, BATCH, x, 0, NULL, NULL), BL_OK);
    float *ref = malloc(m->param_count * sizeof(float));
    assert_non_null(ref);
    memcpy(ref, m->grads, m->param_count * sizeof(float));

    int mid_width = m->layers[cut - 1].out_features;
    float *dmid = malloc((size_t)BATCH * (size_t)mid_width * sizeof(float));
    float dlogits[BATCH * CLASSES];
    assert_non_null(dmid);
    assert_int_equal(bl_model_forward(m, &head, BATCH, x, &mid), BL_OK);
    assert_int_equal(bl_model_forward(m, &tail, BATCH, mid, &split_logits), BL_OK);
    for (int i = 0; i < BATCH * CLASSES; i++) {
        assert_true(close_enough(split_logits[i], logits[i], 1e-6, 1e-6));
    }
    bl_cpu_kernels.softmax_xent(BATCH, CLASSES, split_logits, y, dlogits, &correct);
    for (size_t i = 0; i < m->param_count; i++) {
        m->grads[i] = 1e6f; /* overwritten by both stages */
    }
    assert_int_equal(bl_model_backward_range(m, &tail, BATCH, mid, dlogits, dmid, 0, NULL, NULL),
                     BL_OK);
    assert_int_equal(bl_model_backward_range(m, &head, BATCH, x, dmid, NULL, 0, NULL, NULL), BL_OK);
    for (size_t i = 0; i < m->param_count; i++) {
        if (!close_enough(m->grads[i], ref[i], 1e-5, 1e-5)) {
            fail_msg("cut %d, parameter %zu: split %.7f, whole %.7f", cut, i, (double)m->grads[i],
                     (double)ref[i]);
        }
    }
    free(ref);
    free(dmid);
    bl_workspace_free(a, &whole);
    bl_workspace_free(a, &head);
    bl_workspace_free(a, &tail);
}

/* Every cut of a model with fused and unfused ReLUs and a user layer: a
 * cut between a dense layer and its ReLU unfuses them on both sides. */
static void test_stage_splits_match_whole_model(void **state)
{
    static int width = 5;
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, IN, &m), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    assert_int_equal(bl_model_add_dense(m, 8), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    assert_int_equal(bl_model_add_layer(m, &tanh_dense_ops, &width), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    assert_int_equal(bl_model_add_dense(m, CLASSES), BL_OK);
    assert_int_equal(bl_model_build(m, 13), BL_OK);
    assert_non_null(bl_model_params(m)); /* hold every layer */
    for (int cut = 1; cut < bl_model_layer_count(m); cut++) {
        check_split_matches_whole(m, cut);
    }
    bl_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_relu_dense),
        cmocka_unit_test(test_user_layer_and_unfused_relu),
        cmocka_unit_test(test_user_layer_first),
        cmocka_unit_test(test_stage_splits_match_whole_model),
    };
    return run_tests_with_runtime("test_gradcheck", tests, sizeof tests / sizeof tests[0], &rt);
}
