/* Tests of text generation from a GPT-2 checkpoint (bl_lm_generate,
 * runtime/lm/lm_generate.c) on tiny random models written here: one seed
 * gives one text and another seed another, the prompt comes first, texts
 * longer than max_seq_len slide their window, the mirror device draws the
 * CPU's text (its logits downloaded), a near-greedy draw (an
 * overwhelming argmax at temperature 1e-3) equals the argmax of a forward
 * run here over exactly each context (no padding), every bad argument and
 * file is refused with a message naming it, and nothing leaks, out of
 * memory at any allocation included.
 *
 * The files go to a fresh directory under /tmp (file_fixture.h); the
 * runtime is on MPI_COMM_SELF. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "file_fixture.h"
#include "gpt2.h"
#include "test_support.h"

/* maxT 16, V 256, L 2, NH 2, C 16, Vp 256. */
static const bl_gpt2_config_t CFG = {16, 256, 2, 2, 16, 256};
#define MAXT 16
#define V    256

static tmp_dir_t g_tmp;
static bl_runtime_t *g_rt;

/* A model of shape cfg with GPT-2's initialisation from seed, and wte
 * multiplied by wte_scale (a large scale makes the logits far apart, so
 * the argmax is overwhelming). The caller destroys it. */
static bl_gpt2_t *random_model(const bl_gpt2_config_t *cfg, uint64_t seed, float wte_scale)
{
    bl_gpt2_t *g = NULL;
    bl_error_t err = {0};
    if (bl_gpt2_create(cfg, &bl_cpu_kernels, NULL, NULL, &err, &g) != BL_OK ||
        bl_gpt2_init_params(g, seed, &err) != BL_OK) {
        fail_msg("random model: %s", err.msg);
    }
    float *wte = bl_gpt2_slice(g, g->params, BL_GPT2_WTE, 0);
    for (size_t i = 0; i < g->tensors[BL_GPT2_WTE].count; i++) {
        wte[i] *= wte_scale;
    }
    return g;
}

/* Writes g's parameters to name in the directory; returns the path. */
static const char *write_model(const bl_gpt2_t *g, const char *name)
{
    const char *path = tmp_path(&g_tmp, name);
    bl_gpt2_file_t file = {0};
    file.config = g->config;
    file.param_count = g->param_count;
    file.params = g->params; /* host memory: the model is on the CPU */
    bl_error_t err = {0};
    if (bl_gpt2_write(path, &file, &err) != BL_OK) {
        fail_msg("bl_gpt2_write: %s", err.msg);
    }
    return path;
}

/* The default test model, GPT-2's initialisation from seed 1. */
static const char *default_model(void)
{
    bl_gpt2_t *g = random_model(&CFG, 1, 1.0f);
    const char *path = write_model(g, "model.bin");
    bl_gpt2_destroy(g);
    return path;
}

static void check_generate_ok(bl_runtime_t *rt, const char *path, const uint16_t *prompt,
                              int prompt_count, int new_tokens, float temperature, uint64_t seed,
                              uint16_t *out)
{
    bl_status_t s =
        bl_lm_generate(rt, path, prompt, prompt_count, new_tokens, temperature, seed, out);
    if (s != BL_OK) {
        fail_msg("bl_lm_generate: %s: %s", bl_status_string(s), bl_last_error(rt));
    }
}

static void test_same_seed_same_text(void **state)
{
    (void)state;
    const char *path = default_model();
    const uint16_t prompt[3] = {10, 'a', 'b'};
    uint16_t a[33], b[33], c[33];
    memset(a, 0xff, sizeof a);
    check_generate_ok(g_rt, path, prompt, 3, 30, 1.0f, 7, a);
    check_generate_ok(g_rt, path, prompt, 3, 30, 1.0f, 7, b);
    check_generate_ok(g_rt, path, prompt, 3, 30, 1.0f, 8, c);
    assert_memory_equal(a, prompt, sizeof prompt); /* the prompt first */
    assert_memory_equal(a, b, sizeof a);
    /* GPT-2's initialisation gives nearly flat logits over 256 tokens: two
     * seeds giving the same 30 draws would be a broken generator. */
    assert_memory_not_equal(a + 3, c + 3, 30 * sizeof(uint16_t));
    for (int i = 0; i < 33; i++) {
        assert_true(a[i] < V && c[i] < V);
    }
}

/* On a runtime whose device is the mirror, the model runs in the device's
 * memory and each logits row is downloaded before the draw: the same text
 * as the CPU's, longer than max_seq_len too (the window slides). */
static void test_mirror_device_same_text(void **state)
{
    (void)state;
    const char *path = default_model();
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.blas_threads = 1;
    cfg.device = BL_DEVICE_MIRROR;
    bl_runtime_t *mirror = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &mirror), BL_OK);
    const uint16_t prompt[2] = {'h', 'i'};
    uint16_t a[2 + 40], b[2 + 40];
    check_generate_ok(g_rt, path, prompt, 2, 40, 0.9f, 3, a);
    check_generate_ok(mirror, path, prompt, 2, 40, 0.9f, 3, b);
    assert_memory_equal(a, b, sizeof a);
    bl_runtime_destroy(mirror);
}

static void test_longer_than_max_seq_len(void **state)
{
    (void)state;
    const char *path = default_model();
    const uint16_t prompt[3] = {1, 2, 3};
    uint16_t out[43];
    memset(out, 0xff, sizeof out);
    check_generate_ok(g_rt, path, prompt, 3, 40, 0.8f, 11, out);
    assert_memory_equal(out, prompt, sizeof prompt);
    int distinct = 0;
    for (int i = 0; i < 43; i++) {
        assert_true(out[i] < V);
        distinct += i > 0 && out[i] != out[i - 1];
    }
    assert_true(distinct > 10); /* flat logits: the draws vary */

    /* A prompt longer than the window works too; no new tokens copies it. */
    uint16_t long_prompt[40], again[50];
    for (int i = 0; i < 40; i++) {
        long_prompt[i] = (uint16_t)(i * 7 % V);
    }
    check_generate_ok(g_rt, path, long_prompt, 40, 10, 1.0f, 3, again);
    assert_memory_equal(again, long_prompt, sizeof long_prompt);
    memset(again, 0xff, sizeof again);
    check_generate_ok(g_rt, path, long_prompt, 40, 0, 1.0f, 3, again);
    assert_memory_equal(again, long_prompt, sizeof long_prompt);
    assert_int_equal(again[40], 0xffff); /* nothing written past the prompt */
}

/* The argmax over the V real tokens of the logits at the last position of
 * a forward over exactly ctx[0 .. n) (acts of T = n, no padding), and in
 * *gap how far the runner-up trails it. */
static int reference_argmax(bl_gpt2_t *g, const uint16_t *ctx, int n, float *gap)
{
    bl_gpt2_acts_t acts = {0};
    bl_error_t err = {0};
    int32_t tokens[MAXT];
    assert_true(n >= 1 && n <= MAXT);
    for (int t = 0; t < n; t++) {
        tokens[t] = ctx[t];
    }
    if (bl_gpt2_acts_init(g, 1, n, &acts, &err) != BL_OK ||
        bl_gpt2_forward(g, &acts, tokens, NULL, NULL, &err) != BL_OK) {
        fail_msg("reference forward: %s", err.msg);
    }
    const float *row = acts.logits + (size_t)(n - 1) * (size_t)g->config.padded_vocab_size;
    int best = 0;
    for (int v = 1; v < V; v++) {
        best = row[v] > row[best] ? v : best;
    }
    float second = -INFINITY;
    for (int v = 0; v < V; v++) {
        second = v != best && row[v] > second ? row[v] : second;
    }
    *gap = row[best] - second;
    bl_gpt2_acts_free(g, &acts);
    return best;
}

/* Checks out[prompt_count .. total) against the reference argmax over the
 * last min(n, maxT) tokens before each. */
static void check_greedy(bl_gpt2_t *g, const uint16_t *out, int prompt_count, int total)
{
    for (int n = prompt_count; n < total; n++) {
        const int len = n < MAXT ? n : MAXT;
        float gap = 0.0f;
        const int want = reference_argmax(g, out + n - len, len, &gap);
        /* A gap of 0.05 at temperature 1e-3 leaves the runner-up e^-50. */
        if (gap < 0.05f) {
            fail_msg("step %d: the top two logits are %g apart, too close for the test", n,
                     (double)gap);
        }
        if (out[n] != want) {
            fail_msg("token %d is %u, the reference argmax over %d tokens is %d", n,
                     (unsigned)out[n], len, want);
        }
    }
}

static void test_low_temperature_is_greedy(void **state)
{
    (void)state;
    bl_gpt2_t *g = random_model(&CFG, 5, 100.0f);
    const char *path = write_model(g, "sharp.bin");
    const uint16_t prompt[3] = {72, 105, 33};
    /* 20 new tokens: the window fills up (positions padded, T = maxT) and
     * then slides. */
    uint16_t out[23];
    check_generate_ok(g_rt, path, prompt, 3, 20, 1e-3f, 9, out);
    check_greedy(g, out, 3, 23);
    /* 5 new tokens: T = 7 (the longest context), shorter than maxT. */
    uint16_t short_out[8];
    check_generate_ok(g_rt, path, prompt, 3, 5, 1e-3f, 9, short_out);
    check_greedy(g, short_out, 3, 8);
    assert_memory_equal(short_out, out, sizeof short_out); /* greedy: a prefix of the long run */
    bl_gpt2_destroy(g);
}

/* bl_lm_generate with one bad argument returns BL_ERR_INVALID_ARG and a
 * message holding part. */
static void check_invalid(const char *path, const uint16_t *prompt, int prompt_count,
                          int new_tokens, float temperature, uint16_t *out, const char *part)
{
    bl_status_t s =
        bl_lm_generate(g_rt, path, prompt, prompt_count, new_tokens, temperature, 1, out);
    if (s != BL_ERR_INVALID_ARG) {
        fail_msg("status %s, expected BL_ERR_INVALID_ARG for '%s' (message \"%s\")",
                 bl_status_string(s), part, bl_last_error(g_rt));
    }
    assert_contains(bl_last_error(g_rt), part);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    const char *path = default_model();
    const uint16_t prompt[3] = {1, 2, 3};
    uint16_t out[8];
    assert_int_equal(bl_lm_generate(NULL, path, prompt, 3, 5, 1.0f, 1, out), BL_ERR_INVALID_ARG);
    check_invalid(NULL, prompt, 3, 5, 1.0f, out, "model_path");
    check_invalid(path, NULL, 3, 5, 1.0f, out, "prompt");
    check_invalid(path, prompt, 3, 5, 1.0f, NULL, "out");
    check_invalid(path, prompt, 0, 5, 1.0f, out, "prompt_count 0");
    check_invalid(path, prompt, -2, 5, 1.0f, out, "prompt_count -2");
    check_invalid(path, prompt, 3, -1, 1.0f, out, "new_tokens -1");
    check_invalid(path, prompt, 3, 5, 0.0f, out, "temperature 0");
    check_invalid(path, prompt, 3, 5, -1.0f, out, "temperature -1");
    check_invalid(path, prompt, 3, 5, NAN, out, "temperature");
    check_invalid(path, prompt, 3, 5, INFINITY, out, "temperature inf");
    /* A prompt token outside the vocabulary: named with its position. */
    const uint16_t outside[3] = {1, 256, 3};
    check_invalid(path, outside, 3, 5, 1.0f, out, "prompt token 256 at position 1");
    assert_contains(bl_last_error(g_rt), path);
    const uint16_t far[2] = {65535, 0};
    check_invalid(path, far, 2, 5, 1.0f, out, "prompt token 65535 at position 0");
}

static void test_file_errors(void **state)
{
    (void)state;
    const uint16_t prompt[1] = {10};
    uint16_t out[4];
    const char *missing = tmp_path(&g_tmp, "no-such-model.bin");
    bl_status_t s = bl_lm_generate(g_rt, missing, prompt, 1, 3, 1.0f, 1, out);
    check_failed_load(s, BL_ERR_IO, bl_last_error(g_rt), missing, NULL);

    const uint8_t junk[100] = {1, 2, 3};
    const char *bad = write_raw(&g_tmp, "junk.bin", junk, sizeof junk);
    s = bl_lm_generate(g_rt, bad, prompt, 1, 3, 1.0f, 1, out);
    check_failed_load(s, BL_ERR_FORMAT, bl_last_error(g_rt), bad, NULL);

    /* NaN parameters load (values are not checked) but give no
     * distribution to draw from. */
    bl_gpt2_t *g = random_model(&CFG, 1, 1.0f);
    bl_gpt2_slice(g, g->params, BL_GPT2_LNFW, 0)[0] = NAN;
    const char *nan_model = write_model(g, "nan.bin");
    bl_gpt2_destroy(g);
    s = bl_lm_generate(g_rt, nan_model, prompt, 1, 3, 1.0f, 1, out);
    check_failed_load(s, BL_ERR_FORMAT, bl_last_error(g_rt), nan_model, "not finite");
}

/* Every allocation of a generation fails in turn: each failure is
 * BL_ERR_NO_MEM, and every path frees what it took. */
static void test_allocation_failures(void **state)
{
    (void)state;
    const char *path = default_model();
    counting_t c = {0};
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.blas_threads = 1;
    cfg.allocator = counting_allocator(&c);
    bl_runtime_t *rt = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_OK);
    const uint16_t prompt[2] = {'h', 'i'};
    uint16_t want[22], out[22];
    check_generate_ok(g_rt, path, prompt, 2, 20, 1.0f, 4, want);
    for (long k = 1;; k++) {
        const long allocs = c.allocs, releases = c.releases;
        c.fail_at = allocs + k;
        bl_status_t s = bl_lm_generate(rt, path, prompt, 2, 20, 1.0f, 4, out);
        c.fail_at = 0;
        assert_int_equal(c.allocs - allocs, c.releases - releases);
        if (s == BL_OK) {
            assert_true(k > 4); /* the file, the model, the activations, the scratch */
            assert_memory_equal(out, want, sizeof out); /* the allocator changes nothing */
            break;
        }
        if (s != BL_ERR_NO_MEM) {
            fail_msg("allocation %ld failing: %s (%s)", k, bl_status_string(s), bl_last_error(rt));
        }
    }
    bl_runtime_destroy(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_text),
        cmocka_unit_test(test_mirror_device_same_text),
        cmocka_unit_test(test_longer_than_max_seq_len),
        cmocka_unit_test(test_low_temperature_is_greedy),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_allocation_failures),
    };
    MPI_Init(NULL, NULL);
    g_rt = test_runtime(NULL);
    int failed = g_rt == NULL
                     ? 1
                     : run_tests_in_tmp_dir("test_lm_generate", tests,
                                            sizeof tests / sizeof tests[0], &g_tmp, "generate");
    bl_runtime_destroy(g_rt);
    MPI_Finalize();
    return failed;
}
