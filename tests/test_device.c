/* The rank's device without a GPU: the mirror device (the CPU kernels on
 * memory of their own, moved as a GPU rank moves its memory) trains,
 * evaluates, checkpoints and resumes exactly like the CPU, bit for bit,
 * since its kernels are the CPU's; user layers' device passes are the
 * ones it calls; bad device requests fail with the documented status;
 * its memory keeps kernels.h's contract for overlapped downloads (held
 * back until asked about twice or finished; finish_compute leaves them
 * held). A singleton MPI job. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory_contract.h"
#include "test_support.h"

#define FEATURES 16
#define CLASSES  4
#define SAMPLES  256
#define STEPS    12

static bl_runtime_t *runtime_on(int device)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.blas_threads = 1;
    cfg.device = device;
    bl_runtime_t *rt = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_OK);
    return rt;
}

/* A linear user layer y = x · W^T (W (out, in)) whose passes use only the
 * bl_math_* helpers, so the same functions serve as its device passes;
 * calls counts every pass it runs, device_calls those run as device
 * passes. */
typedef struct linear_state {
    int out;
    int calls;
    int device_calls;
} linear_state_t;

static bl_status_t linear_shape(void *state, int in, int *out, size_t *params)
{
    const linear_state_t *s = state;
    *out = s->out;
    *params = (size_t)s->out * (size_t)in;
    return BL_OK;
}

static bl_status_t linear_init(void *state, int in, int out, float *params, uint64_t seed)
{
    bl_fill_uniform(params, (size_t)in * (size_t)out, -0.3f, 0.3f, seed);
    return BL_OK;
}

static bl_status_t linear_forward(const bl_layer_call_t *c)
{
    linear_state_t *s = c->state;
    s->calls++;
    /* (batch, out) = (batch, in) · W^T */
    return bl_math_gemm(c->device, 0, 1, c->batch, c->out_features, c->in_features, 1.0f, c->x,
                        c->in_features, c->params, c->in_features, 0.0f, c->y, c->out_features);
}

static bl_status_t linear_backward(const bl_layer_call_t *c)
{
    linear_state_t *s = c->state;
    s->calls++;
    /* dW (out, in) (+)= dy^T · x; dx (batch, in) = dy · W */
    bl_status_t st = bl_math_gemm(c->device, 1, 0, c->out_features, c->in_features, c->batch, 1.0f,
                                  c->dy, c->out_features, c->x, c->in_features,
                                  c->accumulate ? 1.0f : 0.0f, c->grads, c->in_features);
    if (st == BL_OK && c->dx != NULL) {
        st = bl_math_gemm(c->device, 0, 0, c->batch, c->in_features, c->out_features, 1.0f, c->dy,
                          c->out_features, c->params, c->in_features, 0.0f, c->dx, c->in_features);
    }
    return st;
}

static bl_status_t linear_forward_device(const bl_layer_call_t *c)
{
    ((linear_state_t *)c->state)->device_calls++;
    return linear_forward(c);
}

static bl_status_t linear_backward_device(const bl_layer_call_t *c)
{
    ((linear_state_t *)c->state)->device_calls++;
    return linear_backward(c);
}

static const bl_layer_ops_t linear_ops = {
    .name = "linear",
    .shape = linear_shape,
    .init = linear_init,
    .forward = linear_forward,
    .backward = linear_backward,
};

/* dense 24, relu, [linear 12 (user), relu,] dense CLASSES */
static bl_model_t *make_model(bl_runtime_t *rt, linear_state_t *user, int device_ops)
{
    bl_model_t *m = NULL;
    assert_int_equal(bl_model_create(rt, FEATURES, &m), BL_OK);
    assert_int_equal(bl_model_add_dense(m, 24), BL_OK);
    assert_int_equal(bl_model_add_relu(m), BL_OK);
    if (user != NULL) {
        assert_int_equal(bl_model_add_layer(m, &linear_ops, user), BL_OK);
        assert_int_equal(bl_model_add_relu(m), BL_OK);
        if (device_ops) {
            assert_int_equal(
                bl_model_set_device_ops(m, 2, linear_forward_device, linear_backward_device),
                BL_OK);
        }
    }
    assert_int_equal(bl_model_add_dense(m, CLASSES), BL_OK);
    assert_int_equal(bl_model_build(m, 7), BL_OK);
    assert_non_null(bl_model_params(m)); /* hold every layer */
    return m;
}

typedef struct run_result {
    float *params;
    float *momentum;
    size_t count;
    double loss, accuracy;
    double eval_loss, eval_accuracy;
} run_result_t;

/* The separable set served by callbacks, so it cannot be kept on a
 * device: the table it reads from. */
typedef struct callback_set {
    float x[SAMPLES * FEATURES];
    int y[SAMPLES];
} callback_set_t;

static bl_status_t callback_get(void *state, long index, float *x, int *label)
{
    const callback_set_t *c = state;
    memcpy(x, c->x + index * FEATURES, FEATURES * sizeof(float));
    *label = c->y[index];
    return BL_OK;
}

static bl_dataset_t *make_callback_dataset(bl_runtime_t *rt, callback_set_t *c)
{
    make_separable(SAMPLES, FEATURES, CLASSES, 3, c->x, c->y);
    bl_dataset_ops_t ops = {.get = callback_get};
    bl_dataset_t *d = NULL;
    assert_int_equal(bl_dataset_from_callbacks(rt, SAMPLES, FEATURES, CLASSES, &ops, c, &d), BL_OK);
    return d;
}

/* How a run reads its batches: the training set kept on the device (the
 * default), each batch uploaded, or a dataset of callbacks. */
enum { DATA_ON_DEVICE, DATA_UPLOADED, DATA_CALLBACKS };

/* STEPS steps of SGD with momentum and weight decay on `device`. */
static run_result_t train_with(int device, linear_state_t *user, int device_ops, int data)
{
    static callback_set_t table;
    bl_runtime_t *rt = runtime_on(device);
    bl_dataset_t *d = data == DATA_CALLBACKS
                          ? make_callback_dataset(rt, &table)
                          : make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    assert_non_null(d);
    bl_model_t *m = make_model(rt, user, device_ops);
    bl_train_config_t tc = BL_TRAIN_CONFIG_INIT;
    tc.batch = 32;
    tc.optimizer.weight_decay = 1e-4f;
    tc.transport.data_on_device = data == DATA_ON_DEVICE;
    bl_trainer_t *t = NULL;
    assert_int_equal(bl_trainer_create(rt, m, d, &tc, &t), BL_OK);
    assert_int_equal(bl_trainer_run(t, STEPS, NULL, NULL), BL_OK);
    run_result_t r = {0};
    r.count = bl_model_param_count(m);
    r.params = malloc(r.count * sizeof(float));
    r.momentum = malloc(r.count * sizeof(float));
    assert_non_null(r.params);
    assert_non_null(r.momentum);
    memcpy(r.params, bl_model_params(m), r.count * sizeof(float));
    size_t n = 0;
    memcpy(r.momentum, bl_trainer_momentum(t, &n), r.count * sizeof(float));
    assert_int_equal(n, r.count);
    assert_int_equal(bl_trainer_evaluate(t, d, &r.eval_loss, &r.eval_accuracy), BL_OK);
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(d);
    bl_runtime_destroy(rt);
    return r;
}

static run_result_t train_on(int device, linear_state_t *user, int device_ops)
{
    return train_with(device, user, device_ops, DATA_ON_DEVICE);
}

static void assert_same_run(const run_result_t *a, const run_result_t *b)
{
    assert_int_equal(a->count, b->count);
    assert_memory_equal(a->params, b->params, a->count * sizeof(float));
    assert_memory_equal(a->momentum, b->momentum, a->count * sizeof(float));
    assert_true(a->eval_loss == b->eval_loss);
    assert_true(a->eval_accuracy == b->eval_accuracy);
}

static void free_run(run_result_t *r)
{
    free(r->params);
    free(r->momentum);
}

static void test_device_names(void **state)
{
    (void)state;
    bl_runtime_t *rt = runtime_on(BL_DEVICE_MIRROR);
    char name[32];
    assert_int_equal(bl_runtime_device(rt, name, sizeof name), BL_DEVICE_MIRROR);
    assert_string_equal(name, "mirror");
    bl_runtime_destroy(rt);
    rt = runtime_on(BL_DEVICE_CPU);
    assert_int_equal(bl_runtime_device(rt, name, sizeof name), BL_DEVICE_CPU);
    assert_string_equal(name, "cpu");
    assert_int_equal(bl_runtime_device(rt, NULL, 0), BL_DEVICE_CPU);
    bl_runtime_destroy(rt);
    assert_int_equal(bl_runtime_device(NULL, NULL, 0), BL_DEVICE_CPU);
    assert_int_equal(bl_device_has_memory(NULL), 0);
    assert_int_equal(bl_device_sync(NULL), BL_ERR_INVALID_ARG);
}

/* The mirror device moves everything the GPU path moves; its kernels are
 * the CPU's, so every byte must match a CPU run, whether the training set
 * is kept on the device, each batch is uploaded, or it comes from
 * callbacks (which cannot be kept there). */
static void test_mirror_trains_like_cpu(void **state)
{
    (void)state;
    run_result_t cpu = train_on(BL_DEVICE_CPU, NULL, 0);
    run_result_t mirror = train_on(BL_DEVICE_MIRROR, NULL, 0);
    run_result_t uploaded = train_with(BL_DEVICE_MIRROR, NULL, 0, DATA_UPLOADED);
    run_result_t callbacks = train_with(BL_DEVICE_MIRROR, NULL, 0, DATA_CALLBACKS);
    assert_same_run(&cpu, &mirror);
    assert_same_run(&cpu, &uploaded);
    assert_same_run(&cpu, &callbacks);
    free_run(&cpu);
    free_run(&mirror);
    free_run(&uploaded);
    free_run(&callbacks);
}

/* A user layer's device passes run on a device with memory of its own;
 * the host passes run where it has none, and on the mirror without
 * device passes. The math is the same. */
static void test_user_layer_device_passes(void **state)
{
    (void)state;
    linear_state_t on_cpu = {.out = 12}, on_mirror = {.out = 12}, host_only = {.out = 12};
    run_result_t cpu = train_on(BL_DEVICE_CPU, &on_cpu, 1);
    run_result_t mirror = train_on(BL_DEVICE_MIRROR, &on_mirror, 1);
    run_result_t fallback = train_on(BL_DEVICE_MIRROR, &host_only, 0);
    assert_int_equal(on_cpu.device_calls, 0);
    assert_true(on_cpu.calls > 0);
    assert_int_equal(on_mirror.device_calls, on_mirror.calls);
    assert_true(on_mirror.device_calls > 0);
    assert_int_equal(host_only.device_calls, 0);
    assert_same_run(&cpu, &mirror);
    assert_same_run(&cpu, &fallback);
    free_run(&cpu);
    free_run(&mirror);
    free_run(&fallback);
}

static void test_set_device_ops_errors(void **state)
{
    (void)state;
    bl_runtime_t *rt = runtime_on(BL_DEVICE_CPU);
    linear_state_t user = {.out = 8};
    bl_model_t *m = make_model(rt, &user, 0);
    assert_int_equal(bl_model_set_device_ops(NULL, 2, linear_forward, linear_backward),
                     BL_ERR_INVALID_ARG);
    assert_int_equal(bl_model_set_device_ops(m, 0, linear_forward, linear_backward),
                     BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "no user layer there"));
    assert_int_equal(bl_model_set_device_ops(m, 9, linear_forward, linear_backward),
                     BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "layer 9"));
    assert_int_equal(bl_model_set_device_ops(m, 2, linear_forward, NULL), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "both forward and backward"));
    assert_int_equal(bl_model_set_device_ops(m, 2, linear_forward, linear_backward), BL_OK);
    bl_model_destroy(m);
    bl_runtime_destroy(rt);
}

/* A checkpoint of a mirror run holds the device's state (downloaded
 * first), and a mirror trainer resumed from it continues bit for bit. */
static void test_mirror_checkpoint_resume(void **state)
{
    (void)state;
    char dir[] = "/tmp/bl_test_device_XXXXXX";
    assert_non_null(mkdtemp(dir));
    run_result_t straight = train_on(BL_DEVICE_MIRROR, NULL, 0);

    bl_runtime_t *rt = runtime_on(BL_DEVICE_MIRROR);
    bl_dataset_t *d = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    bl_model_t *m = make_model(rt, NULL, 0);
    bl_train_config_t tc = BL_TRAIN_CONFIG_INIT;
    tc.batch = 32;
    tc.optimizer.weight_decay = 1e-4f;
    bl_trainer_t *t = NULL;
    assert_int_equal(bl_trainer_create(rt, m, d, &tc, &t), BL_OK);
    assert_int_equal(bl_trainer_run(t, STEPS / 2, NULL, NULL), BL_OK);
    assert_int_equal(bl_trainer_save_checkpoint(t, dir, 1, NULL, 0), BL_OK);
    bl_trainer_destroy(t);
    bl_model_destroy(m);

    /* A fresh model and trainer on the same device pick up where it was. */
    m = make_model(rt, NULL, 0);
    assert_int_equal(bl_trainer_create(rt, m, d, &tc, &t), BL_OK);
    int resumed = 0;
    assert_int_equal(bl_trainer_resume(t, dir, &resumed), BL_OK);
    assert_int_equal(resumed, 1);
    assert_int_equal(bl_trainer_step(t), STEPS / 2);
    assert_int_equal(bl_trainer_run(t, STEPS - STEPS / 2, NULL, NULL), BL_OK);
    assert_memory_equal(bl_model_params(m), straight.params, straight.count * sizeof(float));
    size_t n = 0;
    assert_memory_equal(bl_trainer_momentum(t, &n), straight.momentum,
                        straight.count * sizeof(float));
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(d);
    bl_runtime_destroy(rt);
    free_run(&straight);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A step callback that syncs the host's view sees the parameters of that
 * step, on the mirror as on the CPU. */
typedef struct snapshot {
    bl_trainer_t *trainer;
    bl_model_t *model;
    float *params; /* the parameters after step 4 */
} snapshot_t;

static int take_snapshot(const bl_step_info_t *info, void *arg)
{
    snapshot_t *s = arg;
    if (info->step == 4) {
        assert_int_equal(bl_trainer_sync_params(s->trainer), BL_OK);
        memcpy(s->params, bl_model_params(s->model),
               bl_model_param_count(s->model) * sizeof(float));
    }
    return 0;
}

static float *params_mid_run(int device)
{
    bl_runtime_t *rt = runtime_on(device);
    bl_dataset_t *d = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    snapshot_t s = {.model = make_model(rt, NULL, 0)};
    s.params = malloc(bl_model_param_count(s.model) * sizeof(float));
    assert_non_null(s.params);
    bl_train_config_t tc = BL_TRAIN_CONFIG_INIT;
    tc.batch = 32;
    assert_int_equal(bl_trainer_create(rt, s.model, d, &tc, &s.trainer), BL_OK);
    assert_int_equal(bl_trainer_run(s.trainer, STEPS, take_snapshot, &s), BL_OK);
    bl_trainer_destroy(s.trainer);
    bl_model_destroy(s.model);
    bl_dataset_destroy(d);
    bl_runtime_destroy(rt);
    return s.params;
}

static void test_sync_params_mid_run(void **state)
{
    (void)state;
    float *cpu = params_mid_run(BL_DEVICE_CPU);
    float *mirror = params_mid_run(BL_DEVICE_MIRROR);
    bl_runtime_t *rt = runtime_on(BL_DEVICE_CPU);
    bl_model_t *m = make_model(rt, NULL, 0);
    size_t n = bl_model_param_count(m);
    /* Not the initial parameters: the snapshot is of a trained step. */
    assert_memory_not_equal(cpu, bl_model_params(m), n * sizeof(float));
    assert_memory_equal(cpu, mirror, n * sizeof(float));
    assert_int_equal(bl_trainer_sync_params(NULL), BL_ERR_INVALID_ARG);
    bl_model_destroy(m);
    bl_runtime_destroy(rt);
    free(cpu);
    free(mirror);
}

/* Device requests that cannot be met fail before anything is made. */
static void test_device_requests_refused(void **state)
{
    (void)state;
    bl_runtime_t *rt = NULL;
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR + 0;
    cfg.device = 7;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_ERR_INVALID_ARG);
    assert_null(rt);
    cfg.device = -1;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_ERR_INVALID_ARG);
    /* A version-1 config has no device field: the CPU. */
    cfg = (bl_config_t)BL_CONFIG_INIT;
    cfg.version = 1;
    cfg.log_level = BL_LOG_ERROR;
    cfg.device = BL_DEVICE_MIRROR; /* past a version-1 struct's end: not read */
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_OK);
    assert_int_equal(bl_runtime_device(rt, NULL, 0), BL_DEVICE_CPU);
    bl_runtime_destroy(rt);
    /* Auto without a GPU computes on the CPU. This test runs where no
     * GPU is visible (ctest label unit); with one it would take it. */
    cfg = (bl_config_t)BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR + 0;
    cfg.device = BL_DEVICE_AUTO;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &rt), BL_OK);
    bl_device_kind_t kind = bl_runtime_device(rt, NULL, 0);
    bl_runtime_destroy(rt);
    if (kind == BL_DEVICE_CUDA) {
        return; /* a GPU is visible: the cuda refusal below cannot be shown */
    }
    assert_int_equal(kind, BL_DEVICE_CPU);
    cfg.device = BL_DEVICE_CUDA;
    bl_status_t st = bl_runtime_create(MPI_COMM_SELF, &cfg, &rt);
    assert_true(st == BL_ERR_CUDA || st == BL_ERR_UNSUPPORTED);
    assert_null(rt);
}

/* The mirror's memory table keeps the contract a GPU's keeps (the same
 * check runs in test_cuda_kernels). */
static void test_mirror_memory_contract(void **state)
{
    (void)state;
    check_memory_contract(&bl_mirror_memory);
}

/* finish_compute leaves the mirror's held-back downloads held (only
 * arrived and finish copy them), so a pipeline stage that waits for each
 * layer's kernels still reads stale bytes if it reads a download before
 * its arrival. */
static void test_mirror_finish_compute_holds_downloads(void **state)
{
    (void)state;
    const bl_device_memory_t *mem = &bl_mirror_memory;
    float src[4] = {1.0f, 2.0f, 3.0f, 4.0f}, dst[4] = {0};
    float *dev = mem->alloc(sizeof src);
    assert_non_null(dev);
    assert_int_equal(mem->to_device(dev, src, sizeof src), 0);
    long n = mem->to_host_start(dst, dev, sizeof src);
    assert_true(n >= 1);
    char err[64];
    assert_int_equal(mem->finish_compute(err, sizeof err), 0);
    assert_true(dst[0] == 0.0f && dst[3] == 0.0f);
    assert_int_equal(mem->arrived(n, 0), 0); /* not copied: the first ask says not yet */
    assert_int_equal(mem->arrived(n, 0), 1);
    assert_memory_equal(dst, src, sizeof src);
    mem->release(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_names),
        cmocka_unit_test(test_mirror_trains_like_cpu),
        cmocka_unit_test(test_user_layer_device_passes),
        cmocka_unit_test(test_set_device_ops_errors),
        cmocka_unit_test(test_mirror_checkpoint_resume),
        cmocka_unit_test(test_sync_params_mid_run),
        cmocka_unit_test(test_device_requests_refused),
        cmocka_unit_test(test_mirror_memory_contract),
        cmocka_unit_test(test_mirror_finish_compute_holds_downloads),
    };
    MPI_Init(NULL, NULL);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
