/* The language-model trainer's public pieces on one process: the
 * learning-rate schedules against their formulas, the trainer's config and
 * input checks (each bad value fails with its status and a message naming
 * it), a short run whose loss falls, evaluation, the model file (its
 * errors, and a saved model starting a new trainer), determinism, and a
 * trainer on the mirror device equal to the CPU's bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ballast.h"
#include "test_support.h"

static bl_runtime_t *rt;

/* A deterministic token stream below vocab. */
static uint16_t stream[4096];

static void make_stream(int vocab)
{
    lcg_t g;
    lcg_seed(&g, 7);
    for (size_t i = 0; i < sizeof stream / sizeof stream[0]; i++) {
        /* A repeating pattern with noise, so there is something to learn. */
        stream[i] = (uint16_t)((i % 11 + (lcg_next(&g) % 3 == 0 ? lcg_next(&g) % 5 : 0)) % vocab);
    }
}

/* A small model: L 1, NH 2, C 16, V 32, T 8, batch 4. */
static bl_lm_config_t small_config(void)
{
    bl_lm_config_t c = BL_LM_CONFIG_INIT;
    c.model = (bl_gpt2_config_t){.max_seq_len = 8,
                                 .vocab_size = 32,
                                 .num_layers = 1,
                                 .num_heads = 2,
                                 .channels = 16,
                                 .padded_vocab_size = 32};
    c.seq_len = 8;
    c.batch = 4;
    c.adamw.lr = 1e-2f;
    return c;
}

static void test_lr_schedules(void **state)
{
    (void)state;
    bl_lr_schedule_t constant = {.kind = BL_LR_CONSTANT, .warmup_steps = 4};
    assert_true(close_enough(bl_lr_at(&constant, 1.0f, 0), 0.25, 0, 1e-12));
    assert_true(close_enough(bl_lr_at(&constant, 1.0f, 3), 1.0, 0, 1e-12));
    assert_true(close_enough(bl_lr_at(&constant, 1.0f, 1000), 1.0, 0, 1e-12));
    bl_lr_schedule_t cosine = {
        .kind = BL_LR_COSINE, .warmup_steps = 10, .decay_steps = 110, .lr_min = 0.1f};
    assert_true(close_enough(bl_lr_at(&cosine, 1.0f, 4), 0.5, 0, 1e-12));
    assert_true(close_enough(bl_lr_at(&cosine, 1.0f, 10), 1.0, 0, 1e-7));
    /* Halfway through the decay: the mean of lr and lr_min. */
    assert_true(close_enough(bl_lr_at(&cosine, 1.0f, 60), 0.55, 0, 1e-7));
    double quarter = 0.1 + 0.5 * (1.0 + cos(3.14159265358979323846 * 0.25)) * 0.9;
    assert_true(close_enough(bl_lr_at(&cosine, 1.0f, 35), quarter, 0, 1e-7));
    assert_true(close_enough(bl_lr_at(&cosine, 1.0f, 110), 0.1, 0, 1e-7));
    assert_true(close_enough(bl_lr_at(&cosine, 1.0f, 5000), 0.1, 0, 1e-7));
}

/* Creating a trainer from c must fail with status and a message holding
 * `needle`. */
static void expect_refused(const bl_lm_config_t *c, const uint16_t *tokens, long count,
                           bl_status_t status, const char *needle)
{
    bl_lm_trainer_t *t = (bl_lm_trainer_t *)&t; /* set to NULL on failure */
    assert_int_equal(bl_lm_trainer_create(rt, c, tokens, count, &t), status);
    assert_null(t);
    if (strstr(bl_last_error(rt), needle) == NULL) {
        fail_msg("message '%s' lacks '%s'", bl_last_error(rt), needle);
    }
}

static void test_bad_configs(void **state)
{
    (void)state;
    const long n = sizeof stream / sizeof stream[0];
    bl_lm_config_t c = small_config();
    c.version = 99;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "config version 99");
    c = small_config();
    c.batch = 0;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "batch 0");
    c = small_config();
    c.adamw.lr = -1.0f;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "lr -1");
    c = small_config();
    c.adamw.beta2 = 1.0f;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "betas");
    c = small_config();
    c.adamw.eps = 0.0f;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "eps 0");
    c = small_config();
    c.adamw.clip_grad_norm = -1.0f;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "clip -1");
    c = small_config();
    c.schedule = (bl_lr_schedule_t){.kind = BL_LR_COSINE, .warmup_steps = 5, .decay_steps = 5};
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "decay steps 5 must exceed");
    c = small_config();
    c.schedule = (bl_lr_schedule_t){.kind = BL_LR_COSINE, .decay_steps = 5, .lr_min = 1.0f};
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "lr_min 1 must be in");
    c = small_config();
    c.schedule.kind = (bl_lr_kind_t)7;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "lr schedule 7");
    c = small_config();
    const int first[] = {0, 2};
    c.plan.stage_first = first;
    c.plan.stage_count = 2;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "the stage map has 2 stages");
    c = small_config();
    c.pipeline.stages = 2;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "whole number of pipelines");
    c = small_config();
    c.precision = 7;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "precision 7 is neither");
    c = small_config();
    const long plan_steps[] = {5};
    c.balance.stage_plan_steps = plan_steps;
    c.balance.stage_plan_first = first;
    c.balance.stage_plan_count = 1;
    expect_refused(&c, stream, n, BL_ERR_UNSUPPORTED, "a scripted stage plan");
    c = small_config();
    c.model.num_heads = 3;
    expect_refused(&c, stream, n, BL_ERR_FORMAT, "NH");
    c = small_config();
    c.seq_len = 9;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "T = 9 exceeds");
    c = small_config();
    expect_refused(&c, stream, 20, BL_ERR_INVALID_ARG, "fewer than the batch of 4");
    const int shards[] = {3};
    c.plan.shards = shards;
    c.plan.shard_count = 1;
    expect_refused(&c, stream, n, BL_ERR_INVALID_ARG, "sum");
    c = small_config();
    uint16_t high[64];
    memcpy(high, stream, sizeof high);
    high[40] = 32;
    expect_refused(&c, high, 64, BL_ERR_INVALID_ARG, "token 40 is 32");
    c.init_from = "/nonexistent/model.bin";
    expect_refused(&c, stream, n, BL_ERR_IO, "/nonexistent/model.bin");
}

/* A run learns: the loss of the last steps is below the first's, every
 * step reports its tokens, lr and norm, and the run ends where it should. */
static int record_loss(const bl_step_info_t *info, void *arg)
{
    double *losses = arg;
    losses[info->step] = info->loss;
    assert_int_equal(info->tokens, 4 * 8);
    assert_true(info->lr > 0.0 && info->grad_norm > 0.0);
    return 0;
}

static void test_run_evaluate_save(void **state)
{
    (void)state;
    bl_lm_config_t c = small_config();
    bl_lm_trainer_t *t = NULL;
    const long n = sizeof stream / sizeof stream[0];
    assert_int_equal(bl_lm_trainer_create(rt, &c, stream, n, &t), BL_OK);
    assert_int_equal(bl_lm_trainer_local_batch(t), 4);
    assert_int_equal(bl_lm_trainer_steps_per_epoch(t), (n - 1) / 8 / 4);
    double before = 0.0, after = 0.0;
    assert_int_equal(bl_lm_trainer_evaluate(t, stream, n, 32, &before), BL_OK);
    double losses[60];
    assert_int_equal(bl_lm_trainer_run(t, 60, record_loss, losses), BL_OK);
    assert_int_equal(bl_lm_trainer_step(t), 60);
    assert_int_equal(bl_lm_trainer_evaluate(t, stream, n, 32, &after), BL_OK);
    assert_true(after < before - 0.5);
    assert_true(losses[59] < losses[0]);
    /* A freshly initialised model predicts about uniformly: ln(32). */
    assert_true(fabs(before - log(32.0)) < 0.2);
    double loss = 0.0;
    assert_int_equal(bl_lm_trainer_evaluate(t, stream, 8, 0, &loss), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "fewer than one sequence"));
    uint16_t high[16] = {0};
    high[3] = 40;
    assert_int_equal(bl_lm_trainer_evaluate(t, high, 16, 0, &loss), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "evaluation tokens: token 3 is 40"));
    assert_int_equal(bl_lm_trainer_save_model(t, "/nonexistent/dir/model.bin"), BL_ERR_IO);
    assert_non_null(strstr(bl_last_error(rt), "/nonexistent/dir/model.bin"));
    /* The saved model starts a new trainer at the same loss. */
    char path[] = "/tmp/ballast_test_lm_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(bl_lm_trainer_save_model(t, path), BL_OK);
    bl_lm_trainer_t *u = NULL;
    c.init_from = path;
    c.model.num_layers = 7; /* the file's shape wins */
    assert_int_equal(bl_lm_trainer_create(rt, &c, stream, n, &u), BL_OK);
    assert_int_equal(bl_lm_trainer_evaluate(u, stream, n, 32, &loss), BL_OK);
    assert_true(loss == after);
    size_t count = 0, count_u = 0;
    const float *p = bl_lm_trainer_params(t, &count);
    const float *q = bl_lm_trainer_params(u, &count_u);
    assert_int_equal(count, count_u);
    assert_memory_equal(p, q, count * sizeof(float));
    bl_lm_trainer_destroy(u);
    bl_lm_trainer_destroy(t);
    unlink(path);
}

/* The same config and tokens give the same parameters, bit for bit; the
 * same run without clipping gives others, so clipping acts. */
static void test_deterministic_and_clipped(void **state)
{
    (void)state;
    const long n = sizeof stream / sizeof stream[0];
    float *params[3] = {NULL, NULL, NULL};
    size_t count = 0;
    for (int run = 0; run < 3; run++) {
        bl_lm_config_t c = small_config();
        c.adamw.clip_grad_norm = run < 2 ? 0.1f : 0.0f;
        bl_lm_trainer_t *t = NULL;
        assert_int_equal(bl_lm_trainer_create(rt, &c, stream, n, &t), BL_OK);
        assert_int_equal(bl_lm_trainer_run(t, 5, NULL, NULL), BL_OK);
        const float *p = bl_lm_trainer_params(t, &count);
        params[run] = malloc(count * sizeof(float));
        assert_non_null(params[run]);
        memcpy(params[run], p, count * sizeof(float));
        bl_lm_trainer_destroy(t);
    }
    assert_memory_equal(params[0], params[1], count * sizeof(float));
    assert_memory_not_equal(params[0], params[2], count * sizeof(float));
    for (int run = 0; run < 3; run++) {
        free(params[run]);
    }
}

/* The info lines a runtime logged, one after another. */
static char logged[8192];

static void keep_line(bl_log_level_t level, int rank, const char *line, void *arg)
{
    (void)level;
    (void)rank;
    (void)arg;
    size_t used = strlen(logged);
    snprintf(logged + used, sizeof logged - used, "%s\n", line);
}

/* A runtime on MPI_COMM_SELF computing on `device`, whose info lines go to
 * `logged` (which the caller clears). */
static bl_runtime_t *logging_runtime(bl_device_kind_t device)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_INFO;
    cfg.blas_threads = 1;
    cfg.device = device;
    cfg.log_fn = keep_line;
    bl_runtime_t *r = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_OK);
    return r;
}

/* A trainer on the mirror device (its model, user layers' calls and steps
 * in the device's memory: the log says so) trains, evaluates and saves the
 * CPU's model bit for bit. */
static void test_mirror_device_equals_cpu(void **state)
{
    (void)state;
    const long n = sizeof stream / sizeof stream[0];
    logged[0] = '\0';
    bl_runtime_t *mirror = logging_runtime(BL_DEVICE_MIRROR);
    bl_runtime_t *rts[2] = {rt, mirror};
    bl_lm_trainer_t *t[2] = {NULL, NULL};
    double loss[2] = {0.0, 0.0};
    for (int d = 0; d < 2; d++) {
        bl_lm_config_t c = small_config();
        c.adamw.clip_grad_norm = 0.1f;
        assert_int_equal(bl_lm_trainer_create(rts[d], &c, stream, n, &t[d]), BL_OK);
        assert_int_equal(bl_lm_trainer_run(t[d], 5, NULL, NULL), BL_OK);
        assert_int_equal(bl_lm_trainer_evaluate(t[d], stream, n, 32, &loss[d]), BL_OK);
    }
    if (strstr(logged, "GPT-2: the model lives in a device's memory on 1 of 1 rank(s) (0 on "
                       "GPUs, 1 on other devices; rank 0: mirror)") == NULL) {
        fail_msg("the mirror runtime's log does not place the model on the device:\n%s", logged);
    }
    size_t count = 0, count_m = 0;
    const float *p = bl_lm_trainer_params(t[0], &count);
    const float *q = bl_lm_trainer_params(t[1], &count_m);
    assert_int_equal(count, count_m);
    assert_memory_equal(p, q, count * sizeof(float));
    assert_true(loss[0] == loss[1]);
    bl_lm_trainer_destroy(t[0]);
    bl_lm_trainer_destroy(t[1]);
    bl_runtime_destroy(mirror);
}

/* bf16 autocast: on the mirror device the products take bf16 operands, so
 * the model stays close to the fp32 CPU run's (AdamW over 5 steps, within
 * 2e-2 in relative norm) without equalling it, and the log says where bf16
 * applies; on the CPU the same config computes in fp32, bit for bit the
 * fp32 run, and the log warns that no rank uses bf16. */
static void test_bf16_mirror_and_cpu(void **state)
{
    (void)state;
    const long n = sizeof stream / sizeof stream[0];
    logged[0] = '\0';
    bl_runtime_t *cpu = logging_runtime(BL_DEVICE_CPU), *mirror = logging_runtime(BL_DEVICE_MIRROR);
    /* fp32 on the CPU, bf16 asked for on the CPU, bf16 on the mirror. */
    bl_runtime_t *rts[3] = {rt, cpu, mirror};
    bl_lm_trainer_t *t[3] = {NULL, NULL, NULL};
    const float *p[3] = {NULL, NULL, NULL};
    size_t count[3] = {0, 0, 0};
    for (int d = 0; d < 3; d++) {
        bl_lm_config_t c = small_config();
        c.precision = d == 0 ? BL_PRECISION_FP32 : BL_PRECISION_BF16;
        assert_int_equal(bl_lm_trainer_create(rts[d], &c, stream, n, &t[d]), BL_OK);
        assert_int_equal(bl_lm_trainer_run(t[d], 5, NULL, NULL), BL_OK);
        p[d] = bl_lm_trainer_params(t[d], &count[d]);
        assert_int_equal(count[d], count[0]);
    }
    assert_memory_equal(p[0], p[1], count[0] * sizeof(float));
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < count[0]; i++) {
        diff += ((double)p[2][i] - p[0][i]) * ((double)p[2][i] - p[0][i]);
        norm += (double)p[0][i] * p[0][i];
    }
    assert_true(diff > 0.0);
    if (!(sqrt(diff / norm) < 2e-2)) {
        fail_msg("bf16 on the mirror is %.3g from fp32 in relative norm", sqrt(diff / norm));
    }
    const char *want[] = {
        "precision bf16: 0 of 1 rank(s) run their products with bf16 operands and fp32 "
        "accumulation (master weights, AdamW and the loss in fp32); no rank computes on a device",
        "precision bf16: 1 of 1 rank(s) run their products with bf16 operands and fp32 "
        "accumulation (master weights, AdamW and the loss in fp32)\n",
    };
    for (int i = 0; i < 2; i++) {
        if (strstr(logged, want[i]) == NULL) {
            fail_msg("the log lacks '%s':\n%s", want[i], logged);
        }
    }
    for (int d = 0; d < 3; d++) {
        bl_lm_trainer_destroy(t[d]);
    }
    bl_runtime_destroy(cpu);
    bl_runtime_destroy(mirror);
}

int main(void)
{
    make_stream(32);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lr_schedules),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_run_evaluate_save),
        cmocka_unit_test(test_deterministic_and_clipped),
        cmocka_unit_test(test_mirror_device_equals_cpu),
        cmocka_unit_test(test_bf16_mirror_and_cpu),
    };
    return run_tests_with_runtime("lm", tests, sizeof tests / sizeof tests[0], &rt);
}
