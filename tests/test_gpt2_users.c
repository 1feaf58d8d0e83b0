/* Tests of user layers in a GPT-2's residual stream (runtime/model/
 * gpt2_users.c) on a tiny config: the gradient of a model with a token
 * shift after the embedding, a mixing layer and an adapter after block 1,
 * an adapter after the last block and a mixing layer inside it (between its
 * attention and its MLP) against central finite differences,
 * for the layers' parameters and the GPT-2 tensors around them; a layer
 * that is the identity changing nothing, bit for bit; the mirror device
 * giving the CPU's numbers bit for bit; the parameter ranges, the decay
 * and the stream pointers; and every bad layer and failing pass refused
 * with a message that names the layer.
 *
 * The adapter and the token shift are ballast-train's (tools/lm_layers.c);
 * the mixing layer, y = x · M^T with M (C × C), is this file's: it uses
 * bl_math_gemm only, so that it runs on the mirror device as well. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "gpt2_fixture.h"
#include "lm_layers.h"

#define FD_H   1e-2f /* the finite-difference step */
#define FD_ABS 2e-3  /* |fd − analytic| <= FD_ABS + FD_REL · |analytic| */
#define FD_REL 1e-2

static bl_device_t cpu = {.kernels = &bl_cpu_kernels, .name = "cpu"};
static bl_device_t mirror = {
    .kernels = &bl_cpu_kernels, .memory = &bl_mirror_memory, .name = "mirror"};

/* ---- The mixing layer: y = x · M^T, dM += dy^T · x, dx = dy · M --------- */

static bl_status_t mix_shape(void *state, int in, int *out, size_t *count)
{
    (void)state;
    *out = in;
    *count = (size_t)in * (size_t)in;
    return BL_OK;
}

/* M = I: the layer is the identity, exactly (a product with 1 and sums
 * with 0 are exact in float). */
static bl_status_t mix_init(void *state, int in, int out, float *params, uint64_t seed)
{
    (void)state;
    (void)out;
    (void)seed;
    memset(params, 0, (size_t)in * (size_t)in * sizeof(float));
    for (int i = 0; i < in; i++) {
        params[(size_t)i * in + i] = 1.0f;
    }
    return BL_OK;
}

static bl_status_t mix_forward(const bl_layer_call_t *c)
{
    const int n = c->batch, C = c->in_features;
    return bl_math_gemm(c->device, 0, 1, n, C, C, 1.0f, c->x, C, c->params, C, 0.0f, c->y, C);
}

static bl_status_t mix_backward(const bl_layer_call_t *c)
{
    const int n = c->batch, C = c->in_features;
    bl_status_t st = bl_math_gemm(c->device, 1, 0, C, C, n, 1.0f, c->dy, C, c->x, C,
                                  c->accumulate ? 1.0f : 0.0f, c->grads, C);
    return st == BL_OK ? bl_math_gemm(c->device, 0, 0, n, C, C, 1.0f, c->dy, C, c->params, C, 0.0f,
                                      c->dx, C)
                       : st;
}

static const bl_layer_ops_t mix_ops = {.name = "mix",
                                       .shape = mix_shape,
                                       .init = mix_init,
                                       .forward = mix_forward,
                                       .backward = mix_backward};

/* A pass that fails, for the error tests. */
static bl_status_t failing_pass(const bl_layer_call_t *c)
{
    (void)c;
    return BL_ERR_IO;
}

/* ---- Set-up and teardown ------------------------------------------------ */

static lm_adapter_t adapters[2];

static int release_all(void **state)
{
    (void)state;
    gpt2_release_held();
    lm_adapter_free(&adapters[0]);
    lm_adapter_free(&adapters[1]);
    return 0;
}

/* A model on memory (NULL: the host) with `count` user layers (none when
 * layers is NULL), its parameters from GPT-2's initialisation with seed,
 * and activations for B sequences in *acts. */
static bl_gpt2_t *make_model(const bl_device_memory_t *memory, const bl_lm_layer_t *layers,
                             int count, bl_gpt2_acts_t **acts)
{
    bl_gpt2_t *g = NULL;
    bl_error_t err = {0};
    if (bl_gpt2_create(&CFG, &bl_cpu_kernels, memory, NULL, &err, &g) != BL_OK) {
        fail_msg("bl_gpt2_create: %s", err.msg);
    }
    gpt2_hold(g);
    if (layers != NULL &&
        bl_gpt2_add_layers(g, layers, count, memory != NULL ? &mirror : &cpu, &err) != BL_OK) {
        fail_msg("bl_gpt2_add_layers: %s", err.msg);
    }
    if (bl_gpt2_init_params(g, 5, &err) != BL_OK) {
        fail_msg("bl_gpt2_init_params: %s", err.msg);
    }
    *acts = gpt2_make_acts(g, B);
    return g;
}

/* The loss sum of the batch; with grads, g->grads is zeroed and receives
 * the batch's gradient. */
static double loss_of(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int grads)
{
    bl_error_t err = {0};
    double loss = 0.0;
    if (grads) {
        assert_int_equal(bl_gpt2_zero_grads(g, &err), BL_OK);
    }
    if (bl_gpt2_forward(g, acts, TOKENS, TARGETS, &loss, &err) != BL_OK ||
        (grads && bl_gpt2_backward(g, acts, &err) != BL_OK)) {
        fail_msg("a pass failed: %s", err.msg);
    }
    return loss;
}

/* The five layers of the gradient test: a shift after the embedding, a mix
 * and an adapter of width 3 after block 1, an adapter of width 2 after the
 * last block, and a mix inside the last block (between its attention and
 * its MLP). */
static int stream_layers(bl_lm_layer_t *l)
{
    adapters[0] = (lm_adapter_t){.rank = 3};
    adapters[1] = (lm_adapter_t){.rank = 2};
    l[0] = (bl_lm_layer_t){.after = 0, .ops = lm_token_shift_ops};
    l[1] = (bl_lm_layer_t){.after = 1, .ops = mix_ops, .decay = 1};
    l[2] = (bl_lm_layer_t){.after = 1, .ops = lm_adapter_ops, .state = &adapters[0], .decay = 1};
    l[3] = (bl_lm_layer_t){.after = 2, .ops = lm_adapter_ops, .state = &adapters[1], .decay = 1};
    l[4] = (bl_lm_layer_t){.after = 2, .ops = mix_ops, .inside = 1};
    return 5;
}

/* ---- Tests ---------------------------------------------------------------- */

/* Checks parameter i's gradient against a central difference. */
static void check_fd(bl_gpt2_t *g, bl_gpt2_acts_t *acts, const float *analytic, size_t i,
                     const char *name)
{
    const float w = g->params[i];
    g->params[i] = w + FD_H;
    const double up = loss_of(g, acts, 0);
    g->params[i] = w - FD_H;
    const double down = loss_of(g, acts, 0);
    g->params[i] = w;
    const double fd = (up - down) / ((double)(w + FD_H) - (double)(w - FD_H));
    if (!(fabs(fd - analytic[i]) <= FD_ABS + FD_REL * fabs(analytic[i]))) {
        fail_msg("%s: parameter %zu: finite difference %.6g, backward %.6g", name, i, fd,
                 (double)analytic[i]);
    }
}

static void test_gradient_through_layers_matches_finite_differences(void **state)
{
    (void)state;
    bl_lm_layer_t layers[5];
    const int n = stream_layers(layers);
    bl_gpt2_acts_t *acts = NULL;
    bl_gpt2_t *g = make_model(NULL, layers, n, &acts);
    /* Every parameter of order 0.3 (the mix near the identity), so every
     * path carries a gradient well above the loss's float rounding. */
    bl_rng_t r;
    bl_rng_init(&r, 9);
    for (size_t i = 0; i < g->param_count; i++) {
        g->params[i] += 0.6f * bl_rng_float(&r) - 0.3f;
    }
    loss_of(g, acts, 1);
    float *analytic = fbuf(g->param_count);
    memcpy(analytic, g->grads, g->param_count * sizeof(float));
    bl_rng_init(&r, 10);
    for (int k = 0; k < g->user_count; k++) {
        for (int s = 0; s < 8; s++) {
            const size_t i = g->users[k].offset + bl_rng_below(&r, g->users[k].count);
            check_fd(g, acts, analytic, i, g->users[k].layer.ops.name);
        }
    }
    /* The tensors before, between and after the layers. */
    const int ids[] = {BL_GPT2_WPE, BL_GPT2_LN1W, BL_GPT2_QKVW, BL_GPT2_FCPROJW, BL_GPT2_LNFW};
    for (size_t t = 0; t < sizeof ids / sizeof ids[0]; t++) {
        const bl_gpt2_tensor_t *x = &g->tensors[ids[t]];
        const size_t count = ids[t] == BL_GPT2_WPE ? (size_t)T * CFG.channels : x->count;
        for (int s = 0; s < 6; s++) {
            check_fd(g, acts, analytic, x->offset + bl_rng_below(&r, count), x->name);
        }
    }
    /* Every layer's gradient is there (the adapters' Bm from the start). */
    for (int k = 0; k < g->user_count; k++) {
        double sum = 0.0;
        for (size_t i = 0; i < g->users[k].count; i++) {
            sum += fabs(analytic[g->users[k].offset + i]);
        }
        assert_true(sum > 0.0);
    }
}

/* A mix layer initialised to the identity, after the embedding, after
 * block 1 and inside block 2: the loss and the GPT-2 tensors' gradients are
 * those of the model without it, bit for bit. */
static void test_identity_layer_changes_nothing(void **state)
{
    (void)state;
    const bl_lm_layer_t layers[3] = {{.after = 0, .ops = mix_ops},
                                     {.after = 1, .ops = mix_ops},
                                     {.after = 2, .ops = mix_ops, .inside = 1}};
    bl_gpt2_acts_t *with_acts = NULL, *plain_acts = NULL;
    bl_gpt2_t *with = make_model(NULL, layers, 3, &with_acts);
    bl_gpt2_t *plain = make_model(NULL, NULL, 0, &plain_acts);
    assert_int_equal(with->gpt_param_count, plain->param_count);
    assert_int_equal(with->param_count, plain->param_count + 3 * 64);
    assert_memory_equal(with->params, plain->params, plain->param_count * sizeof(float));
    const double a = loss_of(with, with_acts, 1), b = loss_of(plain, plain_acts, 1);
    assert_true(a == b);
    assert_memory_equal(with->grads, plain->grads, plain->param_count * sizeof(float));
}

/* The mirror device computes the CPU's loss and gradients bit for bit, its
 * user layers' passes on device memory included: ballast-train's adapter
 * too, whose scratch then lives in the mirror's memory (each model its own
 * adapter state). */
static void test_layers_on_the_mirror_device(void **state)
{
    (void)state;
    adapters[0] = (lm_adapter_t){.rank = 2};
    adapters[1] = (lm_adapter_t){.rank = 2};
    bl_lm_layer_t layers[2][4];
    for (int d = 0; d < 2; d++) {
        layers[d][0] = (bl_lm_layer_t){.after = 1, .ops = mix_ops};
        layers[d][1] = (bl_lm_layer_t){.after = 2, .ops = mix_ops};
        layers[d][2] = (bl_lm_layer_t){.after = 1, .ops = mix_ops, .inside = 1};
        layers[d][3] =
            (bl_lm_layer_t){.after = 2, .ops = lm_adapter_ops, .state = &adapters[d], .decay = 1};
    }
    bl_gpt2_acts_t *host_acts = NULL, *dev_acts = NULL;
    bl_gpt2_t *host = make_model(NULL, layers[0], 4, &host_acts);
    bl_gpt2_t *dev = make_model(&bl_mirror_memory, layers[1], 4, &dev_acts);
    /* Perturb M so that the layers are not the identity, on both. */
    float *p = fbuf(host->param_count);
    memcpy(p, host->params, host->param_count * sizeof(float));
    for (size_t i = host->gpt_param_count; i < host->param_count; i++) {
        p[i] += 0.01f * (float)(i % 7) - 0.03f;
    }
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_upload(host, p, &err), BL_OK);
    assert_int_equal(bl_gpt2_upload(dev, p, &err), BL_OK);
    const double a = loss_of(host, host_acts, 1), b = loss_of(dev, dev_acts, 1);
    assert_true(a == b);
    float *got = fbuf(host->param_count);
    assert_int_equal(bl_gpt2_download(dev, dev->grads, got, &err), BL_OK);
    assert_memory_equal(got, host->grads, host->param_count * sizeof(float));
    assert_ptr_equal(adapters[1].device, &mirror); /* the adapter's scratch is the mirror's */
}

/* The layers' ranges belong to the units they follow; the decay is each
 * layer's own; the stream after a unit is its last layer's output. */
static void test_ranges_decay_and_stream(void **state)
{
    (void)state;
    bl_lm_layer_t layers[5];
    const int n = stream_layers(layers);
    bl_gpt2_acts_t *acts = NULL;
    bl_gpt2_t *g = make_model(NULL, layers, n, &acts);
    const int units = CFG.num_layers + 2;
    size_t covered = 0;
    for (int u = 0; u < units; u++) {
        bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
        const int count = bl_gpt2_unit_ranges(g, u, u + 1, r);
        int users = 0;
        for (int i = 0; i < count; i++) {
            if (r[i].tensor >= BL_GPT2_TENSOR_COUNT) {
                const bl_gpt2_user_t *user = &g->users[r[i].tensor - BL_GPT2_TENSOR_COUNT];
                assert_int_equal(user->layer.after, u);
                assert_int_equal(r[i].offset, user->offset);
                assert_int_equal(r[i].count, user->count);
                users++;
            }
            covered += r[i].count;
        }
        assert_int_equal(users, u == 0 ? 1 : u == 1 || u == 2 ? 2 : 0);
    }
    /* wte is in both the embedding's and the head's ranges. */
    assert_int_equal(covered, g->param_count + g->tensors[BL_GPT2_WTE].count);
    assert_int_equal(bl_gpt2_range_decays(g, BL_GPT2_TENSOR_COUNT + 0), 0);
    assert_int_equal(bl_gpt2_range_decays(g, BL_GPT2_TENSOR_COUNT + 1), 1);
    assert_int_equal(bl_gpt2_range_decays(g, BL_GPT2_TENSOR_COUNT + 5), 0); /* no such layer */
    assert_int_equal(bl_gpt2_range_decays(g, BL_GPT2_QKVW), 1);
    assert_int_equal(bl_gpt2_range_decays(g, BL_GPT2_QKVB), 0);
    assert_ptr_equal(bl_gpt2_stream(g, acts, 0), acts->user_out[0]);
    assert_ptr_equal(bl_gpt2_stream(g, acts, 1), acts->user_out[2]);
    assert_ptr_equal(bl_gpt2_stream(g, acts, 2), acts->user_out[3]);
    assert_ptr_equal(bl_gpt2_mid_stream(g, acts, 0), acts->layers[0].res2);
    assert_ptr_equal(bl_gpt2_mid_stream(g, acts, 1), acts->user_out[4]);
    assert_int_equal(bl_gpt2_range_decays(g, BL_GPT2_TENSOR_COUNT + 4), 0);
    /* A unit's cost counts its layers' hints: the adapter's 2 r C. */
    assert_true(bl_gpt2_layers_cost(g, 2) == 2.0 * 2 * CFG.channels);
    assert_true(bl_gpt2_layers_cost(g, 3) == 0.0);
}

/* Adds one bad layer to a fresh model and checks the error's status and
 * words. */
static void expect_refused(const bl_lm_layer_t *l, int count, bl_status_t want, const char *words)
{
    bl_gpt2_t *g = NULL;
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_create(&CFG, &bl_cpu_kernels, NULL, NULL, &err, &g), BL_OK);
    const size_t before = g->param_count;
    const bl_status_t got = bl_gpt2_add_layers(g, l, count, &cpu, &err);
    const size_t after = g->param_count;
    const int users = g->user_count;
    bl_gpt2_destroy(g);
    assert_int_equal(got, want);
    if (strstr(err.msg, words) == NULL) {
        fail_msg("'%s' does not say '%s'", err.msg, words);
    }
    assert_int_equal(after, before);
    assert_int_equal(users, 0);
}

static bl_status_t wide_shape(void *state, int in, int *out, size_t *count)
{
    (void)state;
    *out = in + 1;
    *count = 0;
    return BL_OK;
}

static void test_bad_layers_are_refused(void **state)
{
    (void)state;
    bl_lm_layer_t l = {.after = 3, .ops = mix_ops};
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "user layer 0 (mix): after = 3 must name a unit");
    l.after = -1;
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "after = -1");
    l = (bl_lm_layer_t){.after = 0, .ops = mix_ops, .inside = 1};
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "inside = 1 with after = 0: a layer inside a block");
    l = (bl_lm_layer_t){.after = 1, .ops = mix_ops, .inside = 2};
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "inside = 2 with after = 1");
    l = (bl_lm_layer_t){.after = 1, .ops = mix_ops};
    l.ops.forward = NULL;
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "must provide shape, forward and backward");
    l = (bl_lm_layer_t){.after = 1, .ops = mix_ops};
    l.ops.shape = wide_shape;
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "must keep its width C = 8");
    l = (bl_lm_layer_t){.after = 1, .ops = mix_ops};
    l.ops.init = NULL;
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "64 parameters but no init()");
    lm_adapter_t zero = {.rank = 0};
    l = (bl_lm_layer_t){.after = 1, .ops = lm_adapter_ops, .state = &zero};
    expect_refused(&l, 1, BL_ERR_INVALID_ARG, "user layer 0 (adapter): shape() failed");
    bl_lm_layer_t many[BL_LM_MAX_LAYERS + 1];
    for (int k = 0; k <= BL_LM_MAX_LAYERS; k++) {
        many[k] = (bl_lm_layer_t){.after = 1, .ops = mix_ops};
    }
    expect_refused(many, BL_LM_MAX_LAYERS + 1, BL_ERR_INVALID_ARG, "takes 0 .. 16");

    /* Layers are added once. */
    bl_gpt2_acts_t *acts = NULL;
    l = (bl_lm_layer_t){.after = 1, .ops = mix_ops};
    bl_gpt2_t *g = make_model(NULL, &l, 1, &acts);
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_add_layers(g, &l, 1, &cpu, &err), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "already added"));
}

/* A pass that fails stops the model's pass with its status and a message
 * naming the layer, its unit and the pass. */
static void test_failing_passes_name_the_layer(void **state)
{
    (void)state;
    bl_lm_layer_t l[2] = {{.after = 0, .ops = mix_ops}, {.after = 2, .ops = mix_ops}};
    l[1].ops.name = "broken";
    l[1].ops.forward = failing_pass;
    bl_gpt2_acts_t *acts = NULL;
    bl_gpt2_t *g = make_model(NULL, l, 2, &acts);
    bl_error_t err = {0};
    double loss = 0.0;
    assert_int_equal(bl_gpt2_forward(g, acts, TOKENS, TARGETS, &loss, &err), BL_ERR_IO);
    assert_non_null(strstr(err.msg, "user layer 1 (broken, after unit 2): forward() failed"));

    /* Inside a block too: the pass stops between the block's halves. */
    l[1].inside = 1;
    g = make_model(NULL, l, 2, &acts);
    assert_int_equal(bl_gpt2_forward(g, acts, TOKENS, TARGETS, &loss, &err), BL_ERR_IO);
    assert_non_null(strstr(err.msg, "user layer 1 (broken, inside unit 2): forward() failed"));
    l[1].inside = 0;

    l[1].ops.forward = mix_forward;
    l[1].ops.backward = failing_pass;
    g = make_model(NULL, l, 2, &acts);
    assert_int_equal(bl_gpt2_forward(g, acts, TOKENS, TARGETS, &loss, &err), BL_OK);
    assert_int_equal(bl_gpt2_backward(g, acts, &err), BL_ERR_IO);
    assert_non_null(strstr(err.msg, "user layer 1 (broken, after unit 2): backward() failed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_gradient_through_layers_matches_finite_differences,
                                  release_all),
        cmocka_unit_test_teardown(test_identity_layer_changes_nothing, release_all),
        cmocka_unit_test_teardown(test_layers_on_the_mirror_device, release_all),
        cmocka_unit_test_teardown(test_ranges_decay_and_stream, release_all),
        cmocka_unit_test_teardown(test_bad_layers_are_refused, release_all),
        cmocka_unit_test_teardown(test_failing_passes_name_the_layer, release_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
