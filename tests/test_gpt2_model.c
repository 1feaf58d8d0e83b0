/* Tests of the GPT-2 model (runtime/model/gpt2*.c) on a tiny config: the
 * whole model's gradient against central finite differences of its loss
 * for a sample of every tensor's entries, the tied embedding's two shares,
 * a batch split in two halves summing to the whole (losses and gradients),
 * the mirror device giving the CPU's numbers bit for bit, AdamW's weight-
 * decay mask and clipping, GPT-2's initialisation, and the errors.
 *
 * The finite differences run the float model with parameters of order 0.3
 * (not GPT-2's 0.02), so every path carries a gradient well above the
 * float rounding of the loss, which is summed in double. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2_fixture.h"

#define FD_H             1e-2f /* the finite-difference step */
#define FD_ABS           2e-3  /* the check: |fd − analytic| <= FD_ABS + FD_REL · |analytic| */
#define FD_REL           1e-2
#define PER_TENSOR_LAYER 4 /* sampled entries of each tensor's layer slice */

/* Deterministic inputs from the runtime's generator. */
static bl_rng_t rng;

static float uniform(float lo, float hi)
{
    return lo + (hi - lo) * bl_rng_float(&rng);
}

/* Parameters of order 0.3 around GPT-2's structure: LayerNorm weights near
 * 1, everything else (the biases and wte's padding rows too) uniform. */
static void random_params(const bl_gpt2_t *g, float *p, uint64_t seed)
{
    bl_rng_init(&rng, seed);
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        const int ln_weight = id == BL_GPT2_LN1W || id == BL_GPT2_LN2W || id == BL_GPT2_LNFW;
        float *w = p + g->tensors[id].offset;
        for (size_t i = 0; i < g->tensors[id].count; i++) {
            w[i] = ln_weight ? uniform(0.7f, 1.3f) : uniform(-0.4f, 0.4f);
        }
    }
}

static bl_gpt2_t *make_model(const bl_device_memory_t *memory)
{
    bl_gpt2_t *g = NULL;
    bl_error_t err = {0};
    if (bl_gpt2_create(&CFG, &bl_cpu_kernels, memory, NULL, &err, &g) != BL_OK) {
        fail_msg("bl_gpt2_create: %s", err.msg);
    }
    return gpt2_hold(g);
}

static bl_gpt2_acts_t *make_acts(const bl_gpt2_t *g, int batch)
{
    return gpt2_make_acts(g, batch);
}

static int release_all(void **state)
{
    (void)state;
    gpt2_release_held();
    return 0;
}

/* The loss sum of a forward over the acts->B sequences of TOKENS and
 * TARGETS from sequence first_seq on; with grads, the backward adds the
 * batch's gradient into g->grads. */
static double loss_of(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int first_seq, int grads)
{
    bl_error_t err = {0};
    double loss = 0.0;
    const size_t at = (size_t)first_seq * T;
    assert_int_equal(bl_gpt2_forward(g, acts, TOKENS + at, TARGETS + at, &loss, &err), BL_OK);
    if (grads) {
        assert_int_equal(bl_gpt2_backward(g, acts, &err), BL_OK);
    }
    return loss;
}

/* A new model on memory with random_params(seed) whose grads hold the
 * whole batch's gradient; *acts gets its activations, *loss the loss. */
static bl_gpt2_t *model_with_grads(const bl_device_memory_t *memory, uint64_t seed,
                                   bl_gpt2_acts_t **acts, double *loss)
{
    bl_gpt2_t *g = make_model(memory);
    float *params = fbuf(g->param_count);
    random_params(g, params, seed);
    bl_error_t err = {0};
    *acts = make_acts(g, B);
    assert_int_equal(bl_gpt2_upload(g, params, &err), BL_OK);
    assert_int_equal(bl_gpt2_zero_grads(g, &err), BL_OK);
    *loss = loss_of(g, *acts, 0, 1);
    return g;
}

/* Checks parameter i's gradient against a central difference and returns
 * the error as a fraction of the tolerance. */
static double check_fd(bl_gpt2_t *g, bl_gpt2_acts_t *acts, const float *analytic, size_t i,
                       const char *name)
{
    const float w = g->params[i];
    g->params[i] = w + FD_H;
    const double up = loss_of(g, acts, 0, 0);
    g->params[i] = w - FD_H;
    const double down = loss_of(g, acts, 0, 0);
    g->params[i] = w;
    /* The step actually taken, in float. */
    const double h2 = (double)(w + FD_H) - (double)(w - FD_H);
    const double fd = (up - down) / h2, an = analytic[i];
    const double ratio = fabs(fd - an) / (FD_ABS + FD_REL * fabs(an));
    if (!(ratio <= 1.0)) {
        fail_msg("%s: parameter %zu: finite difference %.6g, backward %.6g", name, i, fd, an);
    }
    return ratio;
}

static void test_gradient_matches_finite_differences(void **state)
{
    (void)state;
    bl_gpt2_acts_t *acts = NULL;
    double loss = 0.0;
    bl_gpt2_t *g = model_with_grads(NULL, 1, &acts, &loss);
    float *analytic = fbuf(g->param_count);
    memcpy(analytic, g->grads, g->param_count * sizeof(float));

    double worst = 0.0;
    int checked = 0;
    bl_rng_init(&rng, 2);
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        const bl_gpt2_tensor_t *t = &g->tensors[id];
        /* Each layer's slice; the real rows of wte and the first T of wpe. */
        size_t slice = t->count / (size_t)t->layers;
        slice = id == BL_GPT2_WTE   ? (size_t)CFG.vocab_size * CFG.channels
                : id == BL_GPT2_WPE ? (size_t)T * CFG.channels
                                    : slice;
        for (int l = 0; l < t->layers; l++) {
            for (int s = 0; s < PER_TENSOR_LAYER; s++) {
                const size_t i = t->offset + (size_t)l * slice + bl_rng_below(&rng, slice);
                worst = fmax(worst, check_fd(g, acts, analytic, i, t->name));
                checked++;
            }
        }
    }
    /* The tied rows: tokens 3 and 10 are inputs and targets; 7 only a target. */
    const int rows[] = {3, 10, 7};
    for (int r = 0; r < 3; r++) {
        for (int j = 0; j < CFG.channels; j++) {
            const size_t i = (size_t)rows[r] * CFG.channels + j;
            worst = fmax(worst, check_fd(g, acts, analytic, i, "wte (tied)"));
            checked++;
        }
    }
    /* What the loss does not read has a gradient of exactly 0: wte's padding
     * rows and the positions at or past T. */
    const bl_gpt2_tensor_t *wte = &g->tensors[BL_GPT2_WTE], *wpe = &g->tensors[BL_GPT2_WPE];
    for (size_t i = (size_t)CFG.vocab_size * CFG.channels; i < wte->count; i++) {
        assert_true(analytic[wte->offset + i] == 0.0f);
    }
    for (size_t i = (size_t)T * CFG.channels; i < wpe->count; i++) {
        assert_true(analytic[wpe->offset + i] == 0.0f);
    }
    print_message("finite differences: %d entries, the largest error %.2f of the tolerance\n",
                  checked, worst);
}

/* wte's gradient is the head's share (dlogits^T · lnf) plus the
 * embedding's (the rows of d loss / d encoded at each token's positions). */
static void test_tied_embedding_gets_both_shares(void **state)
{
    (void)state;
    bl_gpt2_t *g = make_model(NULL);
    bl_gpt2_acts_t *acts = make_acts(g, B);
    random_params(g, g->params, 3);
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_zero_grads(g, &err), BL_OK);
    loss_of(g, acts, 0, 0);
    bl_gpt2_head_backward(g, acts);
    const size_t nwte = g->tensors[BL_GPT2_WTE].count;
    float *head = fbuf(nwte);
    memcpy(head, g->grads, nwte * sizeof(float));
    for (int l = CFG.num_layers - 1; l >= 0; l--) {
        bl_gpt2_block_backward(g, acts, l);
    }
    bl_gpt2_embedding_backward(g, acts);

    const int C = CFG.channels;
    for (size_t i = 0; i < nwte; i++) {
        const int v = (int)(i / (size_t)C);
        double emb = 0.0;
        int occurs = 0;
        for (int r = 0; r < NROWS; r++) {
            if (TOKENS[r] == v) {
                emb += acts->dres[(size_t)r * C + i % (size_t)C];
                occurs = 1;
            }
        }
        const double got = (double)g->grads[i] - head[i];
        assert_true(fabs(got - emb) <= 1e-6 + 1e-5 * fabs(emb));
        assert_true(occurs || got == 0.0);
        /* Each real row has a head share; the padding rows none. */
        assert_true((head[i] != 0.0f) == (v < CFG.vocab_size));
    }
}

/* Two halves (B = 1 each) sum to the whole batch, losses and gradients:
 * what lets data parallelism split a batch across ranks. The mirror
 * device gives the CPU's loss and gradients bit for bit. */
static void test_split_batch_sums_to_whole(void **state)
{
    (void)state;
    bl_gpt2_acts_t *acts = NULL;
    double all = 0.0, mirrored = 0.0;
    bl_gpt2_t *g = model_with_grads(NULL, 4, &acts, &all);
    const size_t P = g->param_count;
    float *want = fbuf(P), *got = fbuf(P);
    memcpy(want, g->grads, P * sizeof(float));

    bl_gpt2_acts_t *half = make_acts(g, 1);
    bl_error_t err = {0};
    assert_int_equal(bl_gpt2_zero_grads(g, &err), BL_OK);
    const double first = loss_of(g, half, 0, 1);
    const double second = loss_of(g, half, 1, 1);
    assert_true(first > 0.0 && second > 0.0);
    assert_true(fabs(first + second - all) <= 1e-6 * fabs(all));
    for (size_t i = 0; i < P; i++) {
        if (!(fabsf(g->grads[i] - want[i]) <= 1e-6f + 1e-5f * fabsf(want[i]))) {
            fail_msg("gradient %zu: halves %.9g, whole %.9g", i, g->grads[i], want[i]);
        }
    }

    bl_gpt2_t *m = model_with_grads(&bl_mirror_memory, 4, &acts, &mirrored);
    assert_true(mirrored == all);
    assert_int_equal(bl_gpt2_download(m, m->grads, got, &err), BL_OK);
    assert_memory_equal(got, want, P * sizeof(float));
}

/* The parameter ranges of a stage's units, for every stage map of the
 * tiny model's 4 units (the embedding, 2 blocks, the head) over 1 to 4
 * stages: together the stages cover every parameter exactly once, except
 * wte, which both the first stage (the embedding) and the last (the tied
 * head) hold; and the clipping scale follows torch's rule. */
static void test_unit_ranges_cover_the_model(void **state)
{
    (void)state;
    bl_gpt2_t *g = make_model(NULL);
    const size_t P = g->param_count;
    const bl_gpt2_tensor_t *wte = &g->tensors[BL_GPT2_WTE];
    int *seen = calloc(P, sizeof *seen);
    assert_non_null(seen);
    /* A map of 4 units is a subset of the cuts {1, 2, 3}. */
    for (int cuts = 0; cuts < 8; cuts++) {
        int first[5] = {0}, S = 0;
        for (int u = 1; u < 4; u++) {
            if (cuts & (1 << (u - 1))) {
                first[++S] = u;
            }
        }
        first[++S] = 4;
        memset(seen, 0, P * sizeof *seen);
        for (int s = 0; s < S; s++) {
            bl_gpt2_range_t r[BL_GPT2_TENSOR_COUNT];
            const int n = bl_gpt2_unit_ranges(g, first[s], first[s + 1], r);
            for (int k = 0; k < n; k++) {
                for (size_t i = r[k].offset; i < r[k].offset + r[k].count; i++) {
                    seen[i]++;
                }
            }
        }
        for (size_t i = 0; i < P; i++) {
            const int in_wte = i >= wte->offset && i < wte->offset + wte->count;
            const int want = in_wte && S > 1 ? 2 : 1;
            if (seen[i] != want) {
                fail_msg("map of %d stages (cuts %d): parameter %zu held %d times, not %d", S, cuts,
                         i, seen[i], want);
            }
        }
    }
    free(seen);
    assert_true(fabs(bl_gpt2_grad_scale(2.0, 100, 1.0f) - 0.01 * 1.0 / (2.0 + 1e-6)) < 1e-15);
    assert_true(bl_gpt2_grad_scale(0.5, 100, 1.0f) == 0.01);
    assert_true(bl_gpt2_grad_scale(5.0, 4, 0.0f) == 0.25);
}

/* Weight decay only on wte, wpe, qkvw, attprojw, fcw and fcprojw: with a
 * zero gradient, AdamW's step is the decay alone, so the decayed tensors
 * are w · (1 − lr · wd) exactly and the others unchanged. */
static void test_adamw_decay_mask(void **state)
{
    (void)state;
    const int decays[BL_GPT2_TENSOR_COUNT] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0};
    for (int id = -1; id <= BL_GPT2_TENSOR_COUNT; id++) {
        const int in_table = id >= 0 && id < BL_GPT2_TENSOR_COUNT;
        assert_int_equal(bl_gpt2_decays(id), in_table ? decays[id] : 0);
    }
    bl_gpt2_t *g = make_model(NULL);
    random_params(g, g->params, 5);
    float *before = fbuf(g->param_count);
    memcpy(before, g->params, g->param_count * sizeof(float));
    bl_error_t err = {0};
    bl_gpt2_adamw_t opt = BL_GPT2_ADAMW_INIT;
    opt.lr = 0.01f;
    opt.weight_decay = 0.1f;
    assert_int_equal(bl_gpt2_zero_grads(g, &err), BL_OK);
    assert_int_equal(bl_gpt2_adamw_step(g, &opt, NROWS, NULL, &err), BL_OK);
    assert_int_equal(g->adam_steps, 1);
    const float decay = (float)(1.0 - (double)opt.lr * (double)opt.weight_decay);
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        const bl_gpt2_tensor_t *t = &g->tensors[id];
        for (size_t i = t->offset; i < t->offset + t->count; i++) {
            const float want = decays[id] ? before[i] * decay : before[i];
            if (g->params[i] != want) {
                fail_msg("%s[%zu]: %.9g after the step, want %.9g", t->name, i - t->offset,
                         g->params[i], want);
            }
        }
    }
}

/* The gradient's scale: 1 / tokens, times max / (norm + 1e-6) when that
 * clips, as AdamW's first moment after one step shows (m = 0.1 · g). */
static void test_adamw_scale_and_clipping(void **state)
{
    (void)state;
    for (int clip = 0; clip < 2; clip++) {
        bl_gpt2_t *g = make_model(NULL);
        bl_rng_init(&rng, 6);
        double sq = 0.0;
        for (size_t i = 0; i < g->param_count; i++) {
            g->grads[i] = uniform(-1.0f, 1.0f);
            sq += (double)g->grads[i] * g->grads[i];
        }
        const long tokens = 4;
        const double norm = sqrt(sq) / tokens;
        bl_gpt2_adamw_t opt = BL_GPT2_ADAMW_INIT;
        opt.max_grad_norm = clip ? (float)(norm / 8.0) : 0.0f;
        double got_norm = 0.0;
        bl_error_t err = {0};
        assert_int_equal(bl_gpt2_adamw_step(g, &opt, tokens, &got_norm, &err), BL_OK);
        assert_true(fabs(got_norm - norm) <= 1e-9 * norm);
        const double scale = (clip ? opt.max_grad_norm / (norm + 1e-6) : 1.0) / tokens;
        for (size_t i = 0; i < g->param_count; i++) {
            const double want = 0.1 * scale * g->grads[i];
            assert_true(fabs(g->adam_m[i] - want) <= 1e-6 * fabs(want) + 1e-12);
        }
    }
}

/* GPT-2's initialisation: seeded, the same on the mirror device, LayerNorm
 * weights 1, biases and wte's padding rows 0, standard deviations 0.02 and
 * 0.02 / sqrt(2L) for the projections. */
static void test_init_params(void **state)
{
    (void)state;
    bl_gpt2_t *g = make_model(NULL), *m = make_model(&bl_mirror_memory);
    bl_error_t err = {0};
    const size_t nbytes = g->param_count * sizeof(float);
    float *mp = fbuf(g->param_count);
    assert_int_equal(bl_gpt2_init_params(g, 42, &err), BL_OK);
    assert_int_equal(bl_gpt2_init_params(m, 42, &err), BL_OK);
    assert_int_equal(bl_gpt2_download(m, m->params, mp, &err), BL_OK);
    assert_memory_equal(mp, g->params, nbytes);
    assert_int_equal(bl_gpt2_init_params(m, 43, &err), BL_OK);
    assert_int_equal(bl_gpt2_download(m, m->params, mp, &err), BL_OK);
    assert_memory_not_equal(mp, g->params, nbytes);

    const double w = 0.02, p = 0.02 / sqrt(2.0 * CFG.num_layers);
    const double stds[BL_GPT2_TENSOR_COUNT] = {w, w, 0, 0, w, 0, p, 0, 0, 0, w, 0, p, 0, 0, 0};
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        const bl_gpt2_tensor_t *t = &g->tensors[id];
        const int ln = id == BL_GPT2_LN1W || id == BL_GPT2_LN2W || id == BL_GPT2_LNFW;
        const size_t real = id == BL_GPT2_WTE ? (size_t)CFG.vocab_size * CFG.channels : t->count;
        double sq = 0.0;
        for (size_t i = 0; i < t->count; i++) {
            const float v = g->params[t->offset + i];
            sq += (double)v * v;
            if (i >= real || stds[id] == 0.0) {
                assert_true(v == (ln ? 1.0f : 0.0f));
            }
        }
        const double std = sqrt(sq / (double)real); /* about the mean 0 */
        if (stds[id] > 0.0 && fabs(std - stds[id]) > 0.2 * stds[id]) {
            fail_msg("%s: standard deviation %.4g, want %.4g", t->name, std, stds[id]);
        }
    }
}

static void expect_error(bl_status_t got, bl_status_t want, const bl_error_t *err,
                         const char *needle)
{
    assert_int_equal(got, want);
    if (strstr(err->msg, needle) == NULL) {
        fail_msg("message '%s' does not name '%s'", err->msg, needle);
    }
}

/* Heads not dividing C, a kernel table without the transformer members, T
 * above maxT, tokens or targets outside [0, V), backward without targets,
 * AdamW over no tokens. */
static void test_errors_name_the_field(void **state)
{
    (void)state;
    bl_error_t err = {0};
    bl_gpt2_t *g = NULL;
    bl_gpt2_config_t bad = CFG;
    bad.num_heads = 3;
    expect_error(bl_gpt2_create(&bad, &bl_cpu_kernels, NULL, NULL, &err, &g), BL_ERR_FORMAT, &err,
                 "num_heads NH = 3 does not divide channels C = 8");
    assert_null(g);
    bl_kernels_t partial = bl_cpu_kernels;
    partial.attention_backward = NULL;
    expect_error(bl_gpt2_create(&CFG, &partial, NULL, NULL, &err, &g), BL_ERR_INVALID_ARG, &err,
                 "no attention_backward kernel");
    bl_gpt2_destroy(NULL);

    g = make_model(NULL);
    bl_gpt2_acts_t none;
    expect_error(bl_gpt2_acts_init(g, B, 9, &none, &err), BL_ERR_INVALID_ARG, &err,
                 "sequence length T = 9 exceeds max_seq_len maxT = 8");
    assert_null(none.layers);
    bl_gpt2_acts_t *acts = make_acts(g, B);
    int32_t tokens[NROWS], targets[NROWS];
    memcpy(tokens, TOKENS, sizeof tokens);
    memcpy(targets, TARGETS, sizeof targets);
    tokens[7] = CFG.vocab_size;
    double loss = -1.0;
    expect_error(bl_gpt2_forward(g, acts, tokens, targets, &loss, &err), BL_ERR_INVALID_ARG, &err,
                 "tokens[1, 2] = 11 is outside the vocabulary [0, vocab_size V = 11)");
    assert_true(loss == 0.0);
    tokens[7] = TOKENS[7];
    targets[0] = -1;
    expect_error(bl_gpt2_forward(g, acts, tokens, targets, &loss, &err), BL_ERR_INVALID_ARG, &err,
                 "targets[0, 0] = -1");
    assert_int_equal(bl_gpt2_forward(g, acts, tokens, NULL, &loss, &err), BL_OK);
    expect_error(bl_gpt2_backward(g, acts, &err), BL_ERR_INVALID_ARG, &err, "no targets");
    bl_gpt2_adamw_t opt = BL_GPT2_ADAMW_INIT;
    expect_error(bl_gpt2_adamw_step(g, &opt, 0, NULL, &err), BL_ERR_INVALID_ARG, &err,
                 "tokens = 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_gradient_matches_finite_differences, release_all),
        cmocka_unit_test_teardown(test_tied_embedding_gets_both_shares, release_all),
        cmocka_unit_test_teardown(test_split_batch_sums_to_whole, release_all),
        cmocka_unit_test_teardown(test_unit_ranges_cover_the_model, release_all),
        cmocka_unit_test_teardown(test_adamw_decay_mask, release_all),
        cmocka_unit_test_teardown(test_adamw_scale_and_clipping, release_all),
        cmocka_unit_test_teardown(test_init_params, release_all),
        cmocka_unit_test_teardown(test_errors_name_the_field, release_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
