/* Data-parallel training on a GPU against the CPU, through the public API
 * (label gpu). An MPI program; ctest runs it on one rank. Exits 77 (ctest:
 * skipped) with the reason when the rank sees no GPU, or when this ballast
 * has no CUDA backend.
 *
 * A process computes on one device at a time (the CUDA backend's context
 * is process-wide), so the program first makes a CUDA runtime and trains
 * each model there, destroys it, then trains the same models, from the
 * same seeds on the same data, on a CPU runtime:
 *  - a 64-32-16-4 ReLU MLP of built-in layers;
 *  - the same MLP with its middle layer a user layer ("linear_relu",
 *    y = relu(x · W^T)) whose passes use only bl_math_gemm and
 *    bl_math_relu(_backward), given to the GPU with bl_model_set_device_ops;
 * each for STEPS steps of SGD with momentum and weight decay. The final
 * parameters and momentum must agree element by element, the last step's
 * loss and the evaluation loss within the same tolerance, and the
 * evaluation accuracy within one sample. Last, on the CUDA runtime, a
 * model with a user layer that has no device passes must be refused by
 * bl_trainer_create with BL_ERR_UNSUPPORTED and a message naming the
 * layer.
 *
 * Tolerance: |gpu − cpu| <= ATOL + RTOL·|cpu|, RTOL 1e-3, ATOL 1e-5. The
 * math is the same; what differs is rounding. cuBLAS sums a length-k
 * product in another order than OpenBLAS, with FMAs, and the GPU's expf
 * and logf differ from libm's by a few ulps, so each forward and backward
 * value carries a relative error of about k·2^-24 (k <= 64 here: ~4e-6 in
 * the worst case, ~1e-7 typically). Over STEPS steps these errors feed
 * into the next step's parameters; with lr 0.05 and momentum 0.9 (an
 * effective step of lr / (1 − μ) = 0.5) they grow, but stay small: the
 * data-parallel tests, whose shard splits change the summation order in
 * the same way, end 25 steps of this MLP within 6e-8 absolute (1-2 ulps
 * of parameters near 0.5) of the one-process run. RTOL 1e-3 leaves more
 * than 100 times that, for the FMA and cuBLAS differences the CPU tests do
 * not see; ATOL 1e-5 covers parameters and momentum near zero, where a
 * relative bound means nothing. A ReLU unit whose input rounds to the
 * other side of 0 on one device would change one row's gradient by
 * O(1/B); with inputs spread over ~0.3 and errors of ~1e-7 that happens
 * with probability ~1e-7 per unit and sample, under 1e-2 over the run's
 * 20 · 64 · 48 unit evaluations (and cuBLAS is deterministic, so a run
 * that passes keeps passing on the same GPU).
 * Real faults are far above the bound: a skipped or doubled step, a stale
 * upload, a bucket not reduced or momentum not carried moves parameters by
 * lr·|g| ~ 5e-4 and more. Accuracy counts samples whose argmax agrees, so
 * a logit tie broken differently costs at most one sample: within 1/N.
 *
 * `test_cuda_train --device mirror` runs the same program on the mirror
 * test device instead (no GPU needed): it runs the CPU kernels on memory
 * of its own, so there every figure must be bit-identical to the CPU's,
 * and a user layer without device passes is accepted (the mirror runs its
 * host passes). That checks this program, and the mirror's data
 * movement, on machines without a GPU.
 *
 * Every rank counts its failures; the counts are summed over MPI before
 * the exit status is chosen, so no rank passes while another fails. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "ballast.h"
#include "mpi_check.h"

enum {
    SKIP = 77,
    FEATURES = 64,
    CLASSES = 4,
    SAMPLES = 512,
    BATCH = 64, /* 8 steps an epoch: the run crosses two epoch boundaries */
    STEPS = 20,
    HIDDEN1 = 32,
    HIDDEN2 = 16
};

#define RTOL 1e-3
#define ATOL 1e-5

static int world_rank;

/* ---- Logging: lines to stderr, the first error kept --------------------- */

/* bl_runtime_create leaves no runtime to ask bl_last_error on failure: the
 * reason is the error line it logged. */
typedef struct log_capture {
    char first_error[512];
} log_capture_t;

static void capture_log(bl_log_level_t level, int rank, const char *line, void *arg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    log_capture_t *c = arg;
    fprintf(stderr, "ballast[%d] %s: %s\n", rank,
            level >= BL_LOG_ERROR && level <= BL_LOG_DEBUG ? names[level] : "log", line);
    if (level == BL_LOG_ERROR && c->first_error[0] == '\0') {
        snprintf(c->first_error, sizeof c->first_error, "%s", line);
    }
}

static bl_status_t make_runtime(int device, log_capture_t *log, bl_runtime_t **out)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_WARN;
    cfg.log_fn = capture_log;
    cfg.log_arg = log;
    cfg.blas_threads = 1;
    cfg.device = device;
    log->first_error[0] = '\0';
    return bl_runtime_create(MPI_COMM_WORLD, &cfg, out);
}

/* ---- The data: seeded random labels and inputs ------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

/* xorshift64: uniform in [0, 1) with 24 random bits. */
static float uniform01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * 0x1.0p-24);
}

/* y: random classes; x (SAMPLES, FEATURES): noise in [0, 0.3), except the
 * block of FEATURES / CLASSES features of the sample's class, in [0.6, 1).
 * Learnable within the run, so the parameters move well away from their
 * start (the evaluation loss falls from ln 4 ≈ 1.39 to 0.4-0.8) and the
 * comparison is not one of barely trained models. */
static void make_data(float *x, int *y)
{
    const int block = FEATURES / CLASSES;
    for (int s = 0; s < SAMPLES; s++) {
        y[s] = (int)(uniform01() * CLASSES) % CLASSES;
        float *row = x + (size_t)s * FEATURES;
        for (int j = 0; j < FEATURES; j++) {
            float noise = uniform01();
            row[j] = j / block == y[s] ? 0.6f + 0.4f * noise : 0.3f * noise;
        }
    }
}

/* ---- A user layer of bl_math_* calls only: y = relu(x · W^T) ------------ */

/* state: the output width (an int). W is (out, in); no bias, which would
 * need a device vector of ones the public API has no way to allocate. */
static bl_status_t linear_relu_shape(void *state, int in_features, int *out_features,
                                     size_t *param_count)
{
    int out = *(const int *)state;
    *out_features = out;
    *param_count = (size_t)out * (size_t)in_features;
    return BL_OK;
}

static bl_status_t linear_relu_init(void *state, int in_features, int out_features, float *params,
                                    uint64_t rng_seed)
{
    (void)state;
    float bound = 1.0f / sqrtf((float)in_features);
    bl_fill_uniform(params, (size_t)out_features * (size_t)in_features, -bound, bound, rng_seed);
    return BL_OK;
}

/* The same function serves the host and the device: bl_math_* run where
 * call->device says, and nothing here touches the pointers itself. */
static bl_status_t linear_relu_forward(const bl_layer_call_t *c)
{
    /* (batch, out) = (batch, in) · W^T, W (out, in) */
    bl_status_t st =
        bl_math_gemm(c->device, 0, 1, c->batch, c->out_features, c->in_features, 1.0f, c->x,
                     c->in_features, c->params, c->in_features, 0.0f, c->y, c->out_features);
    if (st == BL_OK) {
        st = bl_math_relu(c->device, (size_t)c->batch * (size_t)c->out_features, c->y, c->y);
    }
    return st;
}

static bl_status_t linear_relu_backward(const bl_layer_call_t *c)
{
    /* dz = dy where y > 0, in place: dy is scratch after the call. */
    float *dz = c->dy;
    bl_status_t st = bl_math_relu_backward(c->device, (size_t)c->batch * (size_t)c->out_features,
                                           c->y, c->dy, dz);
    /* dW (out, in) (+)= dz^T (out, batch) · x (batch, in); with batch 0 the
     * product is empty and the GEMM leaves beta · dW: zero, or dW kept. */
    if (st == BL_OK) {
        st = bl_math_gemm(c->device, 1, 0, c->out_features, c->in_features, c->batch, 1.0f, dz,
                          c->out_features, c->x, c->in_features, c->accumulate ? 1.0f : 0.0f,
                          c->grads, c->in_features);
    }
    /* dx (batch, in) = dz (batch, out) · W (out, in) */
    if (st == BL_OK && c->dx != NULL) {
        st = bl_math_gemm(c->device, 0, 0, c->batch, c->in_features, c->out_features, 1.0f, dz,
                          c->out_features, c->params, c->in_features, 0.0f, c->dx, c->in_features);
    }
    return st;
}

static double linear_relu_cost(void *state, int in_features, int out_features)
{
    (void)state;
    return (double)in_features * (double)out_features;
}

static const bl_layer_ops_t linear_relu_ops = {.name = "linear_relu",
                                               .shape = linear_relu_shape,
                                               .init = linear_relu_init,
                                               .forward = linear_relu_forward,
                                               .backward = linear_relu_backward,
                                               .cost_hint = linear_relu_cost};

/* The same layer under another name, added without device passes: the
 * name the refusal must carry. */
static const bl_layer_ops_t host_only_ops = {.name = "host_only_linear_relu",
                                             .shape = linear_relu_shape,
                                             .init = linear_relu_init,
                                             .forward = linear_relu_forward,
                                             .backward = linear_relu_backward,
                                             .cost_hint = linear_relu_cost};

static int hidden2_width = HIDDEN2;

/* ---- One training run --------------------------------------------------- */

typedef enum {
    MODEL_BUILTIN,     /* dense 32, relu, dense 16, relu, dense 4 */
    MODEL_USER_DEVICE, /* dense 32, relu, linear_relu 16 (device passes set), dense 4 */
    MODEL_USER_HOST    /* dense 32, relu, host_only_linear_relu 16 (none set), dense 4 */
} model_kind_t;

static const char *const model_names[] = {"built-in MLP", "MLP with a bl_math user layer",
                                          "MLP with a host-only user layer"};

typedef struct result {
    size_t count; /* parameters */
    float *params;
    float *momentum;
    double last_loss; /* the mean loss of the last step's batch */
    double eval_loss; /* over the whole training set after the run */
    double eval_accuracy;
} result_t;

static void result_free(result_t *r)
{
    free(r->params);
    free(r->momentum);
    memset(r, 0, sizeof *r);
}

static int keep_last_loss(const bl_step_info_t *info, void *arg)
{
    *(double *)arg = info->loss;
    return 0;
}

static bl_status_t make_model(bl_runtime_t *rt, model_kind_t kind, bl_model_t **out)
{
    bl_model_t *m = NULL;
    bl_status_t st = bl_model_create(rt, FEATURES, &m);
    if (st == BL_OK) {
        st = bl_model_add_dense(m, HIDDEN1);
    }
    if (st == BL_OK) {
        st = bl_model_add_relu(m);
    }
    if (st == BL_OK && kind == MODEL_BUILTIN) {
        st = bl_model_add_dense(m, HIDDEN2);
        if (st == BL_OK) {
            st = bl_model_add_relu(m);
        }
    } else if (st == BL_OK) {
        /* The state is static: no destroy callback, the caller keeps it. */
        st = bl_model_add_layer(m, kind == MODEL_USER_DEVICE ? &linear_relu_ops : &host_only_ops,
                                &hidden2_width);
        if (st == BL_OK && kind == MODEL_USER_DEVICE) {
            /* Layer 2. The host passes serve unchanged: they call only
             * bl_math_* helpers. */
            st = bl_model_set_device_ops(m, 2, linear_relu_forward, linear_relu_backward);
        }
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(m, CLASSES);
    }
    if (st == BL_OK) {
        st = bl_model_build(m, 7);
    }
    if (st == BL_OK && bl_model_params(m) == NULL) {
        st = BL_ERR_NO_MEM; /* every layer is held, for the checks that read them */
    }
    if (st != BL_OK) {
        bl_model_destroy(m);
        m = NULL;
    }
    *out = m;
    return st;
}

static bl_train_config_t train_config(void)
{
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = BATCH;
    cfg.optimizer.lr = 0.05f;
    cfg.optimizer.momentum = 0.9f;
    cfg.optimizer.weight_decay = 1e-4f;
    cfg.seed = 3;
    cfg.diagnostics.timeout_s = 120.0; /* a hang fails the test instead of stalling ctest */
    return cfg;
}

/* Trains a `kind` model for STEPS steps on rt's device into *out (which
 * the caller frees with result_free). */
static bl_status_t train_model(bl_runtime_t *rt, model_kind_t kind, const float *x, const int *y,
                               result_t *out)
{
    bl_dataset_t *d = NULL;
    bl_model_t *m = NULL;
    bl_trainer_t *t = NULL;
    memset(out, 0, sizeof *out);
    bl_status_t st = bl_dataset_from_memory(rt, SAMPLES, FEATURES, CLASSES, x, y, &d);
    if (st == BL_OK) {
        st = make_model(rt, kind, &m);
    }
    bl_train_config_t cfg = train_config();
    if (st == BL_OK) {
        st = bl_trainer_create(rt, m, d, &cfg, &t);
    }
    if (st == BL_OK) {
        st = bl_trainer_run(t, STEPS, keep_last_loss, &out->last_loss);
    }
    if (st == BL_OK) {
        st = bl_trainer_evaluate(t, d, &out->eval_loss, &out->eval_accuracy);
    }
    if (st != BL_OK) {
        goto fail;
    }
    check(bl_trainer_step(t) == STEPS, "%s: the trainer is at step %ld after %d steps",
          model_names[kind], bl_trainer_step(t), STEPS);
    size_t momentum_count = 0;
    const float *momentum = bl_trainer_momentum(t, &momentum_count);
    out->count = bl_model_param_count(m);
    check(momentum != NULL && momentum_count == out->count,
          "%s: bl_trainer_momentum gave %zu floats for %zu parameters", model_names[kind],
          momentum_count, out->count);
    out->params = malloc(out->count * sizeof(float));
    out->momentum = malloc(out->count * sizeof(float));
    if (out->params == NULL || out->momentum == NULL) {
        st = BL_ERR_NO_MEM;
        goto fail;
    }
    /* Read after the run: it leaves the host copies current. */
    memcpy(out->params, bl_model_params(m), out->count * sizeof(float));
    if (momentum != NULL && momentum_count == out->count) {
        memcpy(out->momentum, momentum, out->count * sizeof(float));
    } else {
        memset(out->momentum, 0, out->count * sizeof(float));
    }
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(d);
    return BL_OK;
fail:
    check(0, "%s: %s: %s", model_names[kind], bl_status_string(st), bl_last_error(rt));
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(d);
    result_free(out);
    return st;
}

/* On a CUDA rank a user layer without device passes cannot run: the
 * trainer must refuse it by name, before any step. On the mirror the host
 * passes run, so the trainer is made. */
static void check_host_only_layer(bl_runtime_t *rt, int device, const float *x, const int *y)
{
    bl_dataset_t *d = NULL;
    bl_model_t *m = NULL;
    bl_trainer_t *t = NULL;
    bl_status_t st = bl_dataset_from_memory(rt, SAMPLES, FEATURES, CLASSES, x, y, &d);
    if (st == BL_OK) {
        st = make_model(rt, MODEL_USER_HOST, &m);
    }
    if (st != BL_OK) {
        check(0, "%s: set-up: %s: %s", model_names[MODEL_USER_HOST], bl_status_string(st),
              bl_last_error(rt));
        goto done;
    }
    bl_train_config_t cfg = train_config();
    st = bl_trainer_create(rt, m, d, &cfg, &t);
    if (device == BL_DEVICE_CUDA) {
        const char *why = bl_last_error(rt);
        check(st == BL_ERR_UNSUPPORTED && t == NULL,
              "a user layer without device passes on a GPU: bl_trainer_create gave %s, not %s",
              bl_status_string(st), bl_status_string(BL_ERR_UNSUPPORTED));
        check(strstr(why, host_only_ops.name) != NULL &&
                  strstr(why, "bl_model_set_device_ops") != NULL,
              "the refusal does not name the layer '%s' and bl_model_set_device_ops: '%s'",
              host_only_ops.name, why);
        if (world_rank == 0) {
            printf("refused as it should be: %s\n", why);
        }
    } else {
        check(st == BL_OK && t != NULL,
              "a user layer without device passes on the mirror: bl_trainer_create gave %s: %s",
              bl_status_string(st), bl_last_error(rt));
        if (st == BL_OK) {
            st = bl_trainer_run(t, 2, NULL, NULL);
            check(st == BL_OK, "host passes on the mirror: %s: %s", bl_status_string(st),
                  bl_last_error(rt));
        }
    }
done:
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(d);
}

/* ---- Comparisons -------------------------------------------------------- */

static int within(double got, double ref, double atol, double rtol)
{
    return fabs(got - ref) <= atol + rtol * fabs(ref);
}

/* Every element of got against ref; one line with the worst element. */
static void compare_arrays(const char *model, const char *what, const float *got, const float *ref,
                           size_t count, double atol, double rtol)
{
    size_t bad = 0, worst = 0;
    double worst_excess = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        double excess =
            fabs((double)got[i] - (double)ref[i]) - (atol + rtol * fabs((double)ref[i]));
        if (!(excess <= 0.0)) {
            bad++;
        }
        if (isnan(excess) || excess > worst_excess) {
            worst_excess = isnan(excess) ? INFINITY : excess;
            worst = i;
        }
    }
    if (world_rank == 0) {
        printf("%s, %s: %zu of %zu outside %g + %g|cpu|; worst element %zu: %.9g vs cpu %.9g\n",
               model, what, bad, count, atol, rtol, worst, count > 0 ? (double)got[worst] : 0.0,
               count > 0 ? (double)ref[worst] : 0.0);
    }
    check(bad == 0, "%s, %s: %zu elements outside the tolerance", model, what, bad);
}

static void compare_results(model_kind_t kind, const result_t *dev, const result_t *cpu,
                            double atol, double rtol)
{
    const char *model = model_names[kind];
    if (dev->count != cpu->count) {
        check(0, "%s: %zu parameters on the device, %zu on the CPU", model, dev->count, cpu->count);
        return;
    }
    compare_arrays(model, "parameters", dev->params, cpu->params, cpu->count, atol, rtol);
    compare_arrays(model, "momentum", dev->momentum, cpu->momentum, cpu->count, atol, rtol);
    check(within(dev->last_loss, cpu->last_loss, atol, rtol),
          "%s: last step's loss %.9g vs cpu %.9g", model, dev->last_loss, cpu->last_loss);
    check(within(dev->eval_loss, cpu->eval_loss, atol, rtol),
          "%s: evaluation loss %.9g vs cpu %.9g", model, dev->eval_loss, cpu->eval_loss);
    /* One sample's worth (plus rounding of the two quotients); 0 when the
     * runs must be bit-identical. */
    double one_sample = rtol > 0.0 ? 1.0 / SAMPLES + 1e-12 : 0.0;
    check(fabs(dev->eval_accuracy - cpu->eval_accuracy) <= one_sample,
          "%s: evaluation accuracy %.6f vs cpu %.6f (more than one sample apart)", model,
          dev->eval_accuracy, cpu->eval_accuracy);
    if (world_rank == 0) {
        printf("%s: loss %.6f (cpu %.6f), evaluation loss %.6f (cpu %.6f), accuracy %.4f (cpu "
               "%.4f)\n",
               model, dev->last_loss, cpu->last_loss, dev->eval_loss, cpu->eval_loss,
               dev->eval_accuracy, cpu->eval_accuracy);
    }
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);

    int device = BL_DEVICE_CUDA;
    if (argc == 3 && strcmp(argv[1], "--device") == 0 && strcmp(argv[2], "mirror") == 0) {
        device = BL_DEVICE_MIRROR;
    } else if (argc != 1) {
        if (world_rank == 0) {
            fprintf(stderr, "usage: test_cuda_train [--device mirror]\n");
        }
        MPI_Finalize();
        return 2;
    }
    /* Bit-identical on the mirror (the CPU's kernels, in the CPU's order). */
    double atol = device == BL_DEVICE_MIRROR ? 0.0 : ATOL;
    double rtol = device == BL_DEVICE_MIRROR ? 0.0 : RTOL;

    float *x = malloc((size_t)SAMPLES * FEATURES * sizeof *x);
    int *y = malloc((size_t)SAMPLES * sizeof *y);
    if (x == NULL || y == NULL) {
        printf("test_cuda_train FAILED: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    make_data(x, y);

    log_capture_t log;
    bl_runtime_t *rt = NULL;
    bl_status_t st = make_runtime(device, &log, &rt);
    if (device == BL_DEVICE_CUDA && (st == BL_ERR_CUDA || st == BL_ERR_UNSUPPORTED)) {
        /* Every rank fails when one does, so every rank skips. */
        if (world_rank == 0) {
            printf("test_cuda_train skipped: no GPU visible: %s\n",
                   log.first_error[0] != '\0' ? log.first_error : bl_status_string(st));
        }
        free(x);
        free(y);
        MPI_Finalize();
        return SKIP;
    }
    result_t dev[2] = {{0}}, cpu[2] = {{0}};
    if (st != BL_OK) {
        check(0, "bl_runtime_create on the device: %s: %s", bl_status_string(st), log.first_error);
        goto finish;
    }
    char name[128];
    bl_device_kind_t kind = bl_runtime_device(rt, name, sizeof name);
    check((int)kind == device, "bl_runtime_device is %d (%s), not %d", (int)kind, name, device);
    if (world_rank == 0) {
        printf("device: %s; %d steps of %d samples of %d\n", name, STEPS, BATCH, SAMPLES);
    }
    for (int k = MODEL_BUILTIN; k <= MODEL_USER_DEVICE; k++) {
        train_model(rt, (model_kind_t)k, x, y, &dev[k]);
    }
    check_host_only_layer(rt, device, x, y);
    bl_runtime_destroy(rt);
    rt = NULL;

    st = make_runtime(BL_DEVICE_CPU, &log, &rt);
    if (st != BL_OK) {
        check(0, "bl_runtime_create on the CPU: %s: %s", bl_status_string(st), log.first_error);
        goto finish;
    }
    for (int k = MODEL_BUILTIN; k <= MODEL_USER_DEVICE; k++) {
        train_model(rt, (model_kind_t)k, x, y, &cpu[k]);
        if (dev[k].params != NULL && cpu[k].params != NULL) {
            compare_results((model_kind_t)k, &dev[k], &cpu[k], atol, rtol);
        }
    }
    bl_runtime_destroy(rt);
    rt = NULL;

finish:
    for (int k = 0; k < 2; k++) {
        result_free(&dev[k]);
        result_free(&cpu[k]);
    }
    free(x);
    free(y);
    int total = check_total();
    if (world_rank == 0) {
        printf("test_cuda_train: %d failure(s)\n", total);
    }
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
