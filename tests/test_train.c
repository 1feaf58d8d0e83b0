/* Training: convergence on a separable problem, determinism, the split
 * invariant (a batch's gradient is the sum of its parts'), callbacks, the
 * runtime and logger, and every bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "model_impl.h"
#include "test_support.h"

static bl_runtime_t *rt;

enum { FEATURES = 16, CLASSES = 4, SAMPLES = 800 };

/* A FEATURES → hidden → ReLU → CLASSES model. */
static bl_model_t *mlp(int hidden, uint64_t seed)
{
    bl_model_t *m = NULL;
    assert_int_equal(test_mlp(rt, FEATURES, &hidden, 1, CLASSES, seed, &m), BL_OK);
    return m;
}

static void test_separable_reaches_99_percent(void **state)
{
    bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 1);
    bl_dataset_t *test = make_separable_dataset(rt, 200, FEATURES, CLASSES, 2);
    bl_model_t *m = mlp(16, 1);
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 32;
    bl_trainer_t *t = NULL;
    assert_int_equal(bl_trainer_create(rt, m, train, &cfg, &t), BL_OK);
    double loss0 = 0.0, acc0 = 0.0, loss = 0.0, acc = 0.0;
    assert_int_equal(bl_trainer_evaluate(t, test, &loss0, &acc0), BL_OK);
    assert_int_equal(bl_trainer_run(t, 5 * bl_trainer_steps_per_epoch(t), NULL, NULL), BL_OK);
    assert_int_equal(bl_trainer_step(t), 5 * (SAMPLES / 32));
    assert_int_equal(bl_trainer_evaluate(t, test, &loss, &acc), BL_OK);
    assert_true(acc >= 0.99);
    assert_true(loss < 0.5 * loss0);
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
    bl_dataset_destroy(test);
}

/* Trains `steps` steps from seed and returns the parameters (caller frees). */
static float *train_params(int shuffle, float weight_decay, long steps, size_t *count)
{
    bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    bl_model_t *m = mlp(8, 9);
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 50;
    cfg.shuffle = shuffle;
    cfg.optimizer.weight_decay = weight_decay;
    bl_trainer_t *t = NULL;
    assert_int_equal(bl_trainer_create(rt, m, train, &cfg, &t), BL_OK);
    assert_int_equal(bl_trainer_run(t, steps, NULL, NULL), BL_OK);
    *count = bl_model_param_count(m);
    float *p = malloc(*count * sizeof *p);
    memcpy(p, bl_model_params(m), *count * sizeof *p);
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
    return p;
}

static void test_same_run_is_bitwise_identical(void **state)
{
    size_t n = 0;
    float *a = train_params(1, 1e-4f, 40, &n);
    float *b = train_params(1, 1e-4f, 40, &n);
    float *c = train_params(0, 1e-4f, 40, &n); /* file order: another run */
    float *d = train_params(1, 0.0f, 40, &n);  /* no weight decay: another run */
    assert_memory_equal(a, b, n * sizeof *a);
    assert_memory_not_equal(a, c, n * sizeof *a);
    assert_memory_not_equal(a, d, n * sizeof *a);
    free(a);
    free(b);
    free(c);
    free(d);
}

/* Micro-batches sum gradients over slices of the batch, so M never changes
 * the math beyond float32 summation order. */
static void test_micro_batches_keep_the_math(void **state)
{
    size_t n = 0;
    float *p[3];
    const int micro[3] = {1, 3, 64};
    for (int k = 0; k < 3; k++) {
        bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
        bl_model_t *m = mlp(8, 9);
        bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
        cfg.batch = 50;
        cfg.pipeline.micro_batches = micro[k]; /* 64 > 50: some are empty */
        cfg.pipeline.schedule = k == 2 ? BL_SCHEDULE_GPIPE : BL_SCHEDULE_1F1B;
        bl_trainer_t *t = NULL;
        assert_int_equal(bl_trainer_create(rt, m, train, &cfg, &t), BL_OK);
        bl_layout_info_t li;
        assert_int_equal(bl_trainer_layout(t, &li), BL_OK);
        assert_int_equal(li.stages, 1);
        assert_int_equal(li.data_parallel, 1);
        assert_int_equal(li.first_layer, 0);
        assert_int_equal(li.last_layer, bl_model_layer_count(m));
        assert_int_equal(bl_trainer_run(t, 20, NULL, NULL), BL_OK);
        assert_int_equal(bl_trainer_layout(t, &li), BL_OK);
        /* one stage: 1F1B holds one micro-batch at a time, GPipe all */
        assert_int_equal(li.peak_stashed, k == 2 ? 64 : 1);
        assert_int_equal(bl_trainer_layout(NULL, &li), BL_ERR_INVALID_ARG);
        assert_int_equal(bl_trainer_layout(t, NULL), BL_ERR_INVALID_ARG);
        n = bl_model_param_count(m);
        p[k] = malloc(n * sizeof(float));
        memcpy(p[k], bl_model_params(m), n * sizeof(float));
        bl_trainer_destroy(t);
        bl_model_destroy(m);
        bl_dataset_destroy(train);
    }
    for (int k = 1; k < 3; k++) {
        for (size_t i = 0; i < n; i++) {
            if (!close_enough(p[k][i], p[0][i], 1e-5, 1e-6)) {
                fail_msg("M = %d: parameter %zu is %.8g, M = 1 gives %.8g", micro[k], i,
                         (double)p[k][i], (double)p[0][i]);
            }
        }
    }
    for (int k = 0; k < 3; k++) {
        free(p[k]);
    }
}

/* A trainer of batch 50 over the separable set and the 8-9 MLP: the
 * fixture of the tests of the trainer's own calls. */
typedef struct trainer_fixture {
    bl_dataset_t *train;
    bl_model_t *m;
    bl_trainer_t *t;
} trainer_fixture_t;

static void fixture_up(trainer_fixture_t *f)
{
    f->train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    f->m = mlp(8, 9);
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 50;
    f->t = NULL;
    assert_int_equal(bl_trainer_create(rt, f->m, f->train, &cfg, &f->t), BL_OK);
}

static void fixture_down(trainer_fixture_t *f)
{
    bl_trainer_destroy(f->t);
    bl_model_destroy(f->m);
    bl_dataset_destroy(f->train);
}

/* The trainer's accessors answer for a default config (one stage) and for
 * NULL. */
static void test_accessors(void **state)
{
    size_t n = 0;
    float *want = train_params(1, 0.0f, 10, &n);
    trainer_fixture_t f;
    fixture_up(&f);
    bl_trainer_t *t = f.t;
    bl_model_t *m = f.m;
    assert_int_equal(bl_trainer_run(t, 10, NULL, NULL), BL_OK);
    assert_memory_equal(bl_model_params(m), want, n * sizeof(float));
    const int *map = bl_trainer_stage_map(t);
    assert_int_equal(map[0], 0);
    assert_int_equal(map[1], bl_model_layer_count(m));
    size_t count = 0;
    assert_non_null(bl_trainer_momentum(t, &count));
    assert_int_equal(count, n);
    assert_null(bl_trainer_momentum(NULL, &count));
    assert_int_equal(count, 0);
    assert_null(bl_trainer_stage_map(NULL));
    free(want);
    fixture_down(&f);
}

/* Emulated slowdowns are set by their own call: each bad one is refused
 * naming it and what is wrong; a good list, and none, are taken. */
static void test_emulate_slowdown(void **state)
{
    trainer_fixture_t f;
    fixture_up(&f);
    bl_trainer_t *t = f.t;
    const struct {
        bl_slowdown_t slowdown;
        const char *message;
    } bad[] = {
        {{.rank = 1, .factor = 2.0, .to_step = -1},
         "slowdown 0: rank 1 is outside the job's ranks 0..0"},
        {{.rank = 0, .factor = 0.5, .to_step = -1},
         "slowdown 0: factor 0.5 must be a finite number >= 1"},
        {{.rank = 0, .factor = 2.0, .from_step = 5, .to_step = 2},
         "slowdown 0: steps 5-2 are not a range from >= 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(bl_trainer_emulate_slowdown(t, &bad[i].slowdown, 1), BL_ERR_INVALID_ARG);
        assert_non_null(strstr(bl_last_error(rt), bad[i].message));
    }
    assert_int_equal(bl_trainer_emulate_slowdown(t, NULL, 2), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "slowdowns: 2 given with no array"));
    const bl_slowdown_t good = {.rank = 0, .factor = 1.5, .to_step = -1};
    assert_int_equal(bl_trainer_emulate_slowdown(t, &good, 1), BL_OK);
    assert_int_equal(bl_trainer_run(t, 2, NULL, NULL), BL_OK);
    assert_int_equal(bl_trainer_emulate_slowdown(t, NULL, 0), BL_OK);
    assert_int_equal(bl_trainer_emulate_slowdown(NULL, &good, 1), BL_ERR_INVALID_ARG);
    fixture_down(&f);
}

/* Versions 1 to 5 were ballast 0.1's flat config: refused by name. */
static void test_old_config_refused(void **state)
{
    bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    bl_model_t *m = mlp(8, 9);
    for (int version = 1; version < 6; version++) {
        bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
        cfg.version = version;
        bl_trainer_t *t = NULL;
        assert_int_equal(bl_trainer_create(rt, m, train, &cfg, &t), BL_ERR_INVALID_ARG);
        assert_null(t);
        char want[96];
        snprintf(want, sizeof want, "train config version %d is the flat layout of ballast 0.1",
                 version);
        assert_non_null(strstr(bl_last_error(rt), want));
    }
    bl_model_destroy(m);
    bl_dataset_destroy(train);
}

/* DESIGN invariant 1 at its root: gradients are per-sample sums, so the
 * gradient of a batch equals the sum of the gradients of any split of it. */
static void test_batch_gradient_is_sum_of_parts(void **state)
{
    enum { B = 24 };
    bl_model_t *m = mlp(12, 4);
    bl_workspace_t ws;
    assert_int_equal(bl_workspace_init(m, B, &ws), BL_OK);
    float x[B * FEATURES];
    int y[B];
    make_separable(B, FEATURES, CLASSES, 5, x, y);
    const bl_kernels_t *k = &bl_cpu_kernels;
    size_t n = bl_model_param_count(m);
    float *whole = malloc(n * sizeof *whole);

    const float *logits = NULL;
    long correct = 0;
    assert_int_equal(bl_model_forward(m, &ws, B, x, &logits), BL_OK);
    k->softmax_xent(B, CLASSES, logits, y, bl_model_dlogits(&ws), &correct);
    assert_int_equal(bl_model_backward(m, &ws, B, x, 0, NULL, NULL), BL_OK);
    memcpy(whole, m->grads, n * sizeof *whole);

    /* Uneven parts 0, 7, 17: the first part overwrites, the rest add. */
    const int cuts[] = {0, 0, 7, B};
    for (int part = 0; part < 3; part++) {
        int first = cuts[part], rows = cuts[part + 1] - cuts[part];
        const float *xp = x + first * FEATURES;
        assert_int_equal(bl_model_forward(m, &ws, rows, xp, &logits), BL_OK);
        k->softmax_xent(rows, CLASSES, logits, y + first, bl_model_dlogits(&ws), &correct);
        assert_int_equal(bl_model_backward(m, &ws, rows, xp, part > 0, NULL, NULL), BL_OK);
    }
    for (size_t i = 0; i < n; i++) {
        assert_true(close_enough(m->grads[i], whole[i], 1e-6, 1e-5));
    }
    free(whole);
    bl_workspace_free(bl_rt_allocator(m->rt), &ws);
    bl_model_destroy(m);
}

static int stop_at_three(const bl_step_info_t *info, void *arg)
{
    long *calls = arg;
    (*calls)++;
    assert_int_equal(info->steps_per_epoch, SAMPLES / 100);
    assert_int_equal(info->epoch, info->step / (SAMPLES / 100));
    assert_true(info->loss > 0.0);
    assert_true(info->accuracy >= 0.0 && info->accuracy <= 1.0);
    return info->step == 2;
}

static void test_callback_sees_steps_and_can_stop(void **state)
{
    bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 1);
    bl_model_t *m = mlp(8, 1);
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 100;
    bl_trainer_t *t = NULL;
    assert_int_equal(bl_trainer_create(rt, m, train, &cfg, &t), BL_OK);
    long calls = 0;
    assert_int_equal(bl_trainer_run(t, 50, stop_at_three, &calls), BL_OK);
    assert_int_equal(calls, 3);
    assert_int_equal(bl_trainer_step(t), 3);
    assert_int_equal(bl_trainer_run(t, -1, NULL, NULL), BL_ERR_INVALID_ARG);
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
}

/* ---- bad trainer input: a table of cases ---- */

/* What a case hands bl_trainer_create besides its config. */
typedef enum bad_input { ON_TRAIN, ON_WIDE, ON_MANY, ON_UNBUILT } bad_input_t;

/* One call of bl_trainer_create: set breaks the default config (NULL
 * leaves it), input picks the model and dataset. A refusal must give
 * want, no trainer, and a message (bl_last_error) containing phrase; the
 * BL_OK cases (phrase NULL) are shard caps that admit the plan. */
typedef struct bad_case {
    const char *name;
    void (*set)(bl_train_config_t *c);
    bad_input_t input;
    bl_status_t want;
    const char *phrase;
} bad_case_t;

/* The arrays the configs below point into (static: they outlive the call). */
static const int cap_lo[] = {5, 0}, cap_hi[] = {100, 200}, stage_first_1[] = {1};
static const int shards_128[] = {128}, shards_100[] = {100}, plan_first[] = {0};
static const long plan_steps[] = {3};

static void batch_over_dataset(bl_train_config_t *c)
{
    c->batch = SAMPLES + 1;
}

static void zero_lr(bl_train_config_t *c)
{
    c->optimizer.lr = 0.0f;
}

static void future_version(bl_train_config_t *c)
{
    c->version = 99;
}

static void two_stages(bl_train_config_t *c)
{
    c->pipeline.stages = 2;
}

static void zero_stages(bl_train_config_t *c)
{
    c->pipeline.stages = 0;
}

static void zero_micro_batches(bl_train_config_t *c)
{
    c->pipeline.micro_batches = 0;
}

static void unknown_schedule(bl_train_config_t *c)
{
    c->pipeline.schedule = (bl_schedule_t)7;
}

static void stage_count_without_map(bl_train_config_t *c)
{
    c->plan.stage_count = 1;
}

static void stage_map_from_layer_1(bl_train_config_t *c)
{
    c->plan.stage_count = 1;
    c->plan.stage_first = stage_first_1;
}

/* Shard caps: one rank here, so one cap each. */
static void caps_for_two_ranks(bl_train_config_t *c)
{
    c->plan.shard_min = cap_lo;
    c->plan.shard_cap_count = 2;
}

static void caps_below_batch(bl_train_config_t *c)
{
    c->plan.shard_min = cap_lo;
    c->plan.shard_max = cap_hi; /* [5, 100] for a batch of 128 */
    c->plan.shard_cap_count = 1;
}

static void cap_min_over_max(bl_train_config_t *c)
{
    c->plan.shard_min = cap_hi + 1; /* 200 > max 100 */
    c->plan.shard_max = cap_hi;
    c->plan.shard_cap_count = 1;
}

static void shard_over_cap(bl_train_config_t *c)
{
    c->plan.shards = shards_128;
    c->plan.shard_count = 1;
    c->plan.shard_max = cap_hi; /* 100 < 128: refused on the caps' sums first */
    c->plan.shard_cap_count = 1;
}

static void cap_pins_shard(bl_train_config_t *c)
{
    c->batch = 100;
    c->plan.shards = shards_100;
    c->plan.shard_count = 1;
    c->plan.shard_min = cap_hi; /* [100, 100] */
    c->plan.shard_max = cap_hi;
    c->plan.shard_cap_count = 1;
}

static void shard_under_cap(bl_train_config_t *c)
{
    c->plan.shards = shards_128;
    c->plan.shard_count = 1;
    c->plan.shard_max = cap_hi + 1; /* 128 <= 200 */
    c->plan.shard_cap_count = 1;
}

static void shard_within_caps(bl_train_config_t *c)
{
    shard_under_cap(c);
    c->plan.shard_min = cap_lo; /* [5, 200] */
}

static void negative_timeout(bl_train_config_t *c)
{
    c->diagnostics.timeout_s = -1.0;
}

static void stage_plan_without_pipeline(bl_train_config_t *c)
{
    c->balance.stage_plan_steps = plan_steps;
    c->balance.stage_plan_first = plan_first;
    c->balance.stage_plan_count = 1;
}

static void stage_plan_without_maps(bl_train_config_t *c)
{
    stage_plan_without_pipeline(c);
    c->balance.stage_plan_first = NULL;
}

static void zero_horizon(bl_train_config_t *c)
{
    c->balance.repartition_horizon = 0.0;
}

static void threshold_one(bl_train_config_t *c)
{
    c->balance.repartition_threshold = 1.0;
}

static void test_trainer_rejects_bad_input(void **state)
{
    static const bad_case_t cases[] = {
        {"batch", batch_over_dataset, ON_TRAIN, BL_ERR_INVALID_ARG,
         "batch size 801 is larger than the dataset"},
        {"lr", zero_lr, ON_TRAIN, BL_ERR_INVALID_ARG, "lr 0 must be positive"},
        {"version", future_version, ON_TRAIN, BL_ERR_INVALID_ARG, "train config version 99"},
        {"features", NULL, ON_WIDE, BL_ERR_MISMATCH,
         "32 features per sample but the model's input"},
        {"classes", NULL, ON_MANY, BL_ERR_MISMATCH, "8 classes but the model's last layer has 4"},
        {"2 stages", two_stages, ON_TRAIN, BL_ERR_INVALID_ARG,
         "2 pipeline stages: the job's 1 ranks"},
        {"0 stages", zero_stages, ON_TRAIN, BL_ERR_INVALID_ARG,
         "0 pipeline stages: the job's 1 ranks"},
        {"micro-batches", zero_micro_batches, ON_TRAIN, BL_ERR_INVALID_ARG, "0 micro-batches"},
        {"schedule", unknown_schedule, ON_TRAIN, BL_ERR_INVALID_ARG, "pipeline schedule 7"},
        {"stage count", stage_count_without_map, ON_TRAIN, BL_ERR_INVALID_ARG,
         "without a stage map"},
        {"stage map", stage_map_from_layer_1, ON_TRAIN, BL_ERR_INVALID_ARG,
         "must start at layer 0"},
        {"cap count", caps_for_two_ranks, ON_TRAIN, BL_ERR_INVALID_ARG,
         "shard caps: 2 given but the job has 1 ranks"},
        {"cap sums", caps_below_batch, ON_TRAIN, BL_ERR_INVALID_ARG,
         "the minimums sum to 5 and the maximums to 100; the global batch 128"},
        {"cap order", cap_min_over_max, ON_TRAIN, BL_ERR_INVALID_ARG,
         "min 200 and max 100 must satisfy"},
        {"shard over cap", shard_over_cap, ON_TRAIN, BL_ERR_INVALID_ARG,
         "the minimums sum to 0 and the maximums to 100; the global batch 128"},
        {"cap pins shard", cap_pins_shard, ON_TRAIN, BL_OK, NULL},
        {"shard under cap", shard_under_cap, ON_TRAIN, BL_OK, NULL},
        {"shard within caps", shard_within_caps, ON_TRAIN, BL_OK, NULL},
        {"timeout", negative_timeout, ON_TRAIN, BL_ERR_INVALID_ARG,
         "timeout -1 s must be finite and >= 0"},
        {"stage plan", stage_plan_without_pipeline, ON_TRAIN, BL_ERR_INVALID_ARG,
         "a stage plan needs a pipeline"},
        {"stage plan maps", stage_plan_without_maps, ON_TRAIN, BL_ERR_INVALID_ARG,
         "stage plan: 1 maps given with missing arrays"},
        {"horizon", zero_horizon, ON_TRAIN, BL_ERR_INVALID_ARG,
         "repartition horizon 0 steps must be positive"},
        {"threshold", threshold_one, ON_TRAIN, BL_ERR_INVALID_ARG,
         "repartition threshold 1 must be in [0, 1)"},
        {"unbuilt model", NULL, ON_UNBUILT, BL_ERR_INVALID_ARG, "bl_model_build first"},
    };
    bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 1);
    bl_dataset_t *wide = make_separable_dataset(rt, 100, FEATURES * 2, CLASSES, 1);
    bl_dataset_t *many = make_separable_dataset(rt, 100, FEATURES, 8, 1);
    bl_model_t *m = mlp(8, 1), *unbuilt = NULL;
    assert_int_equal(bl_model_create(rt, FEATURES, &unbuilt), BL_OK);
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const bad_case_t *c = &cases[k];
        bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
        if (c->set != NULL) {
            c->set(&cfg);
        }
        bl_dataset_t *data = c->input == ON_WIDE ? wide : c->input == ON_MANY ? many : train;
        bl_trainer_t *t = NULL;
        bl_status_t st =
            bl_trainer_create(rt, c->input == ON_UNBUILT ? unbuilt : m, data, &cfg, &t);
        const char *msg = st == BL_OK ? "" : bl_last_error(rt);
        if (st != c->want || (st == BL_OK) != (t != NULL) ||
            (c->phrase != NULL && strstr(msg, c->phrase) == NULL)) {
            print_error("%s: %s%s, message '%s'; expected %s with '%s'\n", c->name,
                        bl_status_string(st), t != NULL ? " with a trainer" : "", msg,
                        bl_status_string(c->want), c->phrase != NULL ? c->phrase : "");
            failed++;
        }
        bl_trainer_destroy(t);
    }
    assert_int_equal(failed, 0);

    /* A trainer evaluates only data of its model's shape. */
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    bl_trainer_t *t = NULL;
    assert_int_equal(bl_trainer_create(rt, m, train, &cfg, &t), BL_OK);
    double loss, acc;
    assert_int_equal(bl_trainer_evaluate(t, wide, &loss, &acc), BL_ERR_MISMATCH);
    assert_non_null(strstr(bl_last_error(rt), "32 features per sample but the model's input"));
    bl_trainer_destroy(t);
    bl_trainer_destroy(NULL);
    bl_model_destroy(unbuilt);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
    bl_dataset_destroy(wide);
    bl_dataset_destroy(many);
}

/* A dataset from callbacks: sample i is the separable sample i; a bad
 * label from the callback is an error naming the sample. */
typedef struct cb_data {
    float x[SAMPLES * FEATURES];
    int y[SAMPLES];
    long bad_index; /* this sample's label comes back out of range */
} cb_data_t;

static bl_status_t cb_get(void *state, long index, float *x, int *label)
{
    cb_data_t *d = state;
    memcpy(x, d->x + index * FEATURES, FEATURES * sizeof *x);
    *label = index == d->bad_index ? CLASSES + 3 : d->y[index];
    return BL_OK;
}

static void test_callback_dataset(void **state)
{
    static cb_data_t data;
    make_separable(SAMPLES, FEATURES, CLASSES, 1, data.x, data.y);
    data.bad_index = -1;
    bl_dataset_ops_t ops = {.get = cb_get};
    bl_dataset_t *d = NULL, *mem = NULL;
    assert_int_equal(bl_dataset_from_callbacks(rt, SAMPLES, FEATURES, CLASSES, &ops, &data, &d),
                     BL_OK);
    assert_int_equal(bl_dataset_count(d), SAMPLES);
    assert_int_equal(bl_dataset_features(d), FEATURES);
    assert_int_equal(bl_dataset_classes(d), CLASSES);
    assert_int_equal(bl_dataset_from_memory(rt, SAMPLES, FEATURES, CLASSES, data.x, data.y, &mem),
                     BL_OK);
    /* The same samples through callbacks and from memory train alike. */
    size_t n = 0;
    float *p[2];
    bl_dataset_t *sets[2] = {d, mem};
    for (int k = 0; k < 2; k++) {
        bl_model_t *m = mlp(8, 2);
        bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
        bl_trainer_t *t = NULL;
        assert_int_equal(bl_trainer_create(rt, m, sets[k], &cfg, &t), BL_OK);
        assert_int_equal(bl_trainer_run(t, 10, NULL, NULL), BL_OK);
        n = bl_model_param_count(m);
        p[k] = malloc(n * sizeof(float));
        memcpy(p[k], bl_model_params(m), n * sizeof(float));
        if (k == 0) {
            data.bad_index = 5; /* evaluation reads every sample */
            double loss, acc;
            assert_int_equal(bl_trainer_evaluate(t, d, &loss, &acc), BL_ERR_FORMAT);
            assert_non_null(strstr(bl_last_error(rt), "label 7 for sample 5, outside [0, 4)"));
        }
        bl_trainer_destroy(t);
        bl_model_destroy(m);
    }
    assert_memory_equal(p[0], p[1], n * sizeof(float));
    free(p[0]);
    free(p[1]);
    bl_dataset_destroy(d);
    bl_dataset_destroy(mem);
}

static void test_dataset_rejects_bad_input(void **state)
{
    float x[4] = {0};
    int y[2] = {0, 5};
    bl_dataset_t *d = NULL;
    assert_int_equal(bl_dataset_from_memory(rt, 2, 2, 3, x, y, &d), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "label 5 of sample 1 is outside [0, 3)"));
    y[1] = 1;
    assert_int_equal(bl_dataset_from_memory(rt, 0, 2, 3, x, y, &d), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_dataset_from_memory(rt, 2, 2, 3, NULL, y, &d), BL_ERR_INVALID_ARG);
    bl_dataset_ops_t ops = {0};
    assert_int_equal(bl_dataset_from_callbacks(rt, 2, 2, 3, &ops, NULL, &d), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "ops->get is required"));
    assert_null(d);
    assert_int_equal(bl_dataset_open_idx(rt, "/nonexistent/images", "/nonexistent/labels", 0, &d),
                     BL_ERR_IO);
    assert_non_null(strstr(bl_last_error(rt), "/nonexistent/images"));
    bl_dataset_destroy(NULL);
}

/* ---- runtime and logger ---- */

typedef struct captured {
    int lines;
    bl_log_level_t last_level;
    char last[256];
    char last_warning[256];
} captured_t;

static void capture(bl_log_level_t level, int rank, const char *line, void *arg)
{
    captured_t *c = arg;
    c->lines++;
    c->last_level = level;
    snprintf(c->last, sizeof c->last, "%s", line);
    if (level == BL_LOG_WARN) {
        snprintf(c->last_warning, sizeof c->last_warning, "%s", line);
    }
}

static void test_logger_levels(void **state)
{
    captured_t seen = {0};
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_WARN;
    cfg.log_fn = capture;
    cfg.log_arg = &seen;
    bl_runtime_t *r = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_OK);
    bl_log(r, BL_LOG_INFO, "hidden %d", 1);
    assert_int_equal(seen.lines, 0);
    bl_log(r, BL_LOG_WARN, "shown %d", 2);
    assert_int_equal(seen.lines, 1);
    assert_string_equal(seen.last, "shown 2");
    assert_int_equal(seen.last_level, BL_LOG_WARN);
    bl_runtime_destroy(r);

    /* $BALLAST_LOG applies when the config leaves the level at -1. */
    setenv("BALLAST_LOG", "debug", 1);
    cfg.log_level = -1;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_OK);
    int before = seen.lines; /* start-up lines (topology) come first */
    bl_log(r, BL_LOG_DEBUG, "debug line");
    assert_int_equal(seen.lines, before + 1);
    bl_runtime_destroy(r);
    /* An unknown value warns and falls back to info. */
    setenv("BALLAST_LOG", "chatty", 1);
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_OK);
    assert_non_null(strstr(seen.last_warning, "BALLAST_LOG='chatty'"));
    int lines = seen.lines;
    bl_log(r, BL_LOG_DEBUG, "not shown");
    assert_int_equal(seen.lines, lines);
    bl_runtime_destroy(r);
    unsetenv("BALLAST_LOG");
}

static void test_runtime_rejects_bad_config(void **state)
{
    bl_runtime_t *r = NULL;
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.version = 0;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_ERR_INVALID_ARG);
    assert_null(r);
    cfg = (bl_config_t)BL_CONFIG_INIT;
    cfg.allocator.alloc = counting_alloc; /* without a release hook */
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_ERR_INVALID_ARG);
    cfg = (bl_config_t)BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR + 0;
    cfg.blas_threads = -2;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_runtime_create(MPI_COMM_NULL, NULL, &r), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, NULL, NULL), BL_ERR_INVALID_ARG);
    assert_string_equal(bl_last_error(NULL), "");
    bl_runtime_destroy(NULL);

    /* The runtime works on a duplicate that returns MPI errors as codes. */
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, NULL, &r), BL_OK);
    assert_int_equal(bl_runtime_rank(r), 0);
    assert_int_equal(bl_runtime_size(r), 1);
    bl_runtime_destroy(r);
}

/* A whole training run through the allocator hooks: every allocation
 * failing in turn gives BL_ERR_NO_MEM and no leak. */
static void test_training_allocation_failures(void **state)
{
    static float x[100 * FEATURES];
    static int y[100];
    make_separable(100, FEATURES, CLASSES, 1, x, y);
    for (long fail_at = 1;; fail_at++) {
        counting_allocator_t counter = {0};
        bl_runtime_t *r = test_runtime(&counter);
        assert_non_null(r);
        counter.fail_at = counter.allocs + fail_at;
        bl_dataset_t *d = NULL;
        bl_model_t *m = NULL;
        bl_trainer_t *t = NULL;
        bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
        cfg.batch = 20;
        bl_status_t st = bl_dataset_from_memory(r, 100, FEATURES, CLASSES, x, y, &d);
        if (st == BL_OK) {
            st = test_mlp(r, FEATURES, NULL, 0, CLASSES, 1, &m);
        }
        if (st == BL_OK) {
            st = bl_trainer_create(r, m, d, &cfg, &t);
        }
        if (st == BL_OK) {
            st = bl_trainer_run(t, 3, NULL, NULL);
        }
        double loss, acc;
        if (st == BL_OK) {
            st = bl_trainer_evaluate(t, d, &loss, &acc);
        }
        bl_trainer_destroy(t);
        bl_model_destroy(m);
        bl_dataset_destroy(d);
        bl_runtime_destroy(r);
        assert_int_equal(counter.allocs, counter.releases);
        if (st == BL_OK) {
            assert_true(fail_at > 10);
            break;
        }
        assert_int_equal(st, BL_ERR_NO_MEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_separable_reaches_99_percent),
        cmocka_unit_test(test_same_run_is_bitwise_identical),
        cmocka_unit_test(test_micro_batches_keep_the_math),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_old_config_refused),
        cmocka_unit_test(test_emulate_slowdown),
        cmocka_unit_test(test_batch_gradient_is_sum_of_parts),
        cmocka_unit_test(test_callback_sees_steps_and_can_stop),
        cmocka_unit_test(test_trainer_rejects_bad_input),
        cmocka_unit_test(test_callback_dataset),
        cmocka_unit_test(test_dataset_rejects_bad_input),
        cmocka_unit_test(test_logger_levels),
        cmocka_unit_test(test_runtime_rejects_bad_config),
        cmocka_unit_test(test_training_allocation_failures),
    };
    return run_tests_with_runtime("test_train", tests, sizeof tests / sizeof tests[0], &rt);
}
