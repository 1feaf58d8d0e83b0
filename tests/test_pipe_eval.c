/* Evaluation through the pipeline (runtime/train/trainer_eval.c), under
 * mpirun: a pipelined job's bl_trainer_evaluate must equal the one-process
 * evaluation of the same parameters (the loss within 1e-6 relative, the
 * accuracy exactly), using no rank's copy of another stage's layers.
 *
 *   test_pipe_eval STAGES DEVICE [MAP]
 *     The job's P ranks form P / STAGES pipelines of STAGES stages. DEVICE is
 *     cpu, mirror (every rank on the mirror test device, whose memory is its
 *     own) or mixed (the mirror on the even ranks, the CPU on the odd ones).
 *     MAP is a stage map as first layers ("0,1,2": layer 1, a ReLU, is a
 *     stage without parameters).
 *   test_pipe_eval hang
 *     On 2 ranks, one pipeline: stage 0 stalls in a dataset callback longer
 *     than the job's timeout, and stage 1 gives up with BL_ERR_TIMEOUT naming
 *     the transfer instead of hanging.
 *
 * The model is a 16-32-16-4 MLP (layers 0 dense, 1 ReLU, 2 dense, 3 ReLU,
 * 4 dense) with a batch of 32. The evaluation sets have 203 samples (neither
 * a multiple of the batch nor of 2 pipelines), 1 sample (a pipeline without
 * samples when there are several) and 64 (whole chunks), in memory, and 203
 * served by callbacks. They are evaluated
 *   - before training (every rank holds the initial parameters),
 *   - in a step callback in the middle of a run, where a rank's copies of
 *     other stages' layers are stale (the reference takes the parameters made
 *     whole afterwards),
 *   - after the run, with every other stage's layers overwritten with NaN on
 *     each CPU rank (so a rank that used them would give a NaN loss).
 * A callback set whose sample 40 fails to load fails the evaluation on every
 * rank (only stage 0 of pipeline 0 reads it, so exactly one rank fails), and
 * the next evaluation is right again. The failure counts are all-reduced
 * (mpi_check.h), so the exit status is 0 only when every rank passed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h> /* test_support.h's runner; this program checks by hand */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ballast.h"
#include "mpi_check.h"
#include "test_support.h"

enum { FEATURES = 16, CLASSES = 4, TRAIN = 640, BATCH = 32, SEED = 5, MID_STEP = 3, STEPS = 6 };
enum { SETS = 4, FAIL_AT = 40 };
static const int hidden[] = {32, 16};
static const long set_sizes[SETS] = {203, 1, 64, 203}; /* the last one from callbacks */

/* A callback dataset over arrays of the test's own: get() copies a sample,
 * fails for sample fail_at (>= 0) and sleeps sleep_s before sample 0. */
typedef struct served {
    float *x;
    int *y;
    long fail_at;
    double sleep_s;
} served_t;

static bl_status_t served_get(void *state, long index, float *x, int *label)
{
    served_t *s = state;
    if (index == s->fail_at) {
        return BL_ERR_IO;
    }
    if (index == 0 && s->sleep_s > 0.0) {
        struct timespec ts = {(time_t)s->sleep_s,
                              (long)((s->sleep_s - (double)(time_t)s->sleep_s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    memcpy(x, s->x + (size_t)index * FEATURES, FEATURES * sizeof *x);
    *label = s->y[index];
    return BL_OK;
}

static void served_destroy(void *state)
{
    served_t *s = state;
    free(s->x);
    free(s->y);
    free(s);
}

/* count separable samples (seed) served by callbacks; NULL on failure. */
static bl_dataset_t *served_dataset(bl_runtime_t *rt, long count, unsigned seed, long fail_at,
                                    double sleep_s)
{
    served_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->x = malloc((size_t)count * FEATURES * sizeof *s->x);
    s->y = malloc((size_t)count * sizeof *s->y);
    s->fail_at = fail_at;
    s->sleep_s = sleep_s;
    if (s->x == NULL || s->y == NULL) {
        served_destroy(s);
        return NULL;
    }
    make_separable(count, FEATURES, CLASSES, seed, s->x, s->y);
    const bl_dataset_ops_t ops = {served_get, served_destroy};
    bl_dataset_t *d = NULL;
    if (bl_dataset_from_callbacks(rt, count, FEATURES, CLASSES, &ops, s, &d) != BL_OK) {
        served_destroy(s);
        return NULL;
    }
    return d;
}

/* The evaluation sets, made alike on the job's runtime (job) and on this
 * process's own (self), for the reference. */
typedef struct sets {
    bl_dataset_t *job[SETS];
    bl_dataset_t *self[SETS];
    bl_dataset_t *self_train;
} sets_t;

static int make_sets(bl_runtime_t *rt, bl_runtime_t *self, sets_t *s)
{
    int ok = 1;
    for (int i = 0; i < SETS; i++) {
        unsigned seed = 11u + (unsigned)i;
        int from_callbacks = i == SETS - 1;
        s->job[i] = from_callbacks
                        ? served_dataset(rt, set_sizes[i], seed, -1, 0.0)
                        : make_separable_dataset(rt, set_sizes[i], FEATURES, CLASSES, seed);
        s->self[i] = make_separable_dataset(self, set_sizes[i], FEATURES, CLASSES, seed);
        ok = ok && s->job[i] != NULL && s->self[i] != NULL;
    }
    s->self_train = make_separable_dataset(self, TRAIN, FEATURES, CLASSES, 3);
    return ok && s->self_train != NULL;
}

static void free_sets(sets_t *s)
{
    for (int i = 0; i < SETS; i++) {
        bl_dataset_destroy(s->job[i]);
        bl_dataset_destroy(s->self[i]);
    }
    bl_dataset_destroy(s->self_train);
}

/* The one-process evaluation of parameters `params` over set i: the same
 * model on this process's own runtime, one stage, the same batch. */
static int reference(bl_runtime_t *self, const sets_t *s, int i, const float *params, double *loss,
                     double *accuracy)
{
    bl_model_t *m = NULL;
    bl_trainer_t *t = NULL;
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = BATCH;
    bl_status_t st = test_mlp(self, FEATURES, hidden, 2, CLASSES, SEED, &m);
    if (st == BL_OK) {
        memcpy(bl_model_params(m), params, bl_model_param_count(m) * sizeof *params);
        st = bl_trainer_create(self, m, s->self_train, &cfg, &t);
    }
    if (st == BL_OK) {
        st = bl_trainer_evaluate(t, s->self[i], loss, accuracy);
    }
    check(st == BL_OK, "the reference evaluation of set %d: %s", i, bl_last_error(self));
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    return st == BL_OK;
}

/* Checks an evaluation of set i against the one-process one of params. */
static void compare(bl_runtime_t *self, const sets_t *s, int i, const float *params, double loss,
                    double accuracy, const char *when)
{
    double ref_loss = 0.0, ref_accuracy = 0.0;
    if (!reference(self, s, i, params, &ref_loss, &ref_accuracy)) {
        return;
    }
    check(close_enough(loss, ref_loss, 0.0, 1e-6),
          "%s, set %d (%ld samples): loss %.9g, the one-process evaluation's %.9g", when, i,
          set_sizes[i], loss, ref_loss);
    check(accuracy == ref_accuracy,
          "%s, set %d (%ld samples): accuracy %.9g, the one-process evaluation's %.9g", when, i,
          set_sizes[i], accuracy, ref_accuracy);
}

/* Evaluates every set and checks each against the one-process evaluation. */
static void evaluate_all(bl_runtime_t *rt, bl_runtime_t *self, bl_trainer_t *t, const sets_t *s,
                         const float *params, const char *when)
{
    for (int i = 0; i < SETS; i++) {
        double loss = 0.0, accuracy = 0.0;
        bl_status_t st = bl_trainer_evaluate(t, s->job[i], &loss, &accuracy);
        check(st == BL_OK, "%s, set %d: %s", when, i, bl_last_error(rt));
        if (st == BL_OK) {
            compare(self, s, i, params, loss, accuracy, when);
        }
    }
}

/* The step callback: at MID_STEP it evaluates every set first (a rank's
 * copies of other stages' layers are stale then), and only then makes every
 * rank's model whole and keeps the parameters, for the references. */
typedef struct midway {
    bl_runtime_t *rt;
    bl_trainer_t *t;
    bl_model_t *m;
    const sets_t *sets;
    double loss[SETS], accuracy[SETS];
    float *params;
    int seen;
} midway_t;

static int on_step(const bl_step_info_t *info, void *arg)
{
    midway_t *w = arg;
    if (info->step != MID_STEP) {
        return 0;
    }
    for (int i = 0; i < SETS; i++) {
        bl_status_t st = bl_trainer_evaluate(w->t, w->sets->job[i], &w->loss[i], &w->accuracy[i]);
        check(st == BL_OK, "in the middle of the run, set %d: %s", i, bl_last_error(w->rt));
    }
    bl_status_t st = bl_trainer_sync_params(w->t);
    check(st == BL_OK, "sync_params: %s", bl_last_error(w->rt));
    memcpy(w->params, bl_model_params(w->m), bl_model_param_count(w->m) * sizeof *w->params);
    w->seen = 1;
    return 0;
}

/* Overwrites, in the host's view of the model, every layer outside this
 * rank's stage with NaN, and returns the parameters overwritten. */
static size_t poison_other_stages(bl_trainer_t *t, bl_model_t *m)
{
    bl_layout_info_t info;
    if (bl_trainer_layout(t, &info) != BL_OK) {
        return 0;
    }
    /* The layers' parameter counts: dense (out × in + out), ReLU none. */
    int in = FEATURES, outs[] = {hidden[0], hidden[0], hidden[1], hidden[1], CLASSES};
    float *p = bl_model_params(m);
    size_t offset = 0, poisoned = 0;
    for (int layer = 0; layer < 5; layer++) {
        int dense = layer % 2 == 0;
        size_t count = dense ? (size_t)outs[layer] * (size_t)in + (size_t)outs[layer] : 0;
        if (layer < info.first_layer || layer >= info.last_layer) {
            for (size_t k = 0; k < count; k++) {
                p[offset + k] = NAN;
            }
            poisoned += count;
        }
        offset += count;
        in = outs[layer];
    }
    return poisoned;
}

static int parse_map(const char *text, int *first, int stages)
{
    int count = 0;
    for (const char *c = text; *c != '\0' && count < stages; count++) {
        char *end = NULL;
        first[count] = (int)strtol(c, &end, 10);
        c = *end == ',' ? end + 1 : end;
    }
    return count;
}

static bl_runtime_t *job_runtime(int rank, const char *device)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.blas_threads = 1;
    int mirror = strcmp(device, "mirror") == 0 || (strcmp(device, "mixed") == 0 && rank % 2 == 0);
    cfg.device = mirror ? BL_DEVICE_MIRROR : BL_DEVICE_CPU;
    bl_runtime_t *rt = NULL;
    return bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) == BL_OK ? rt : NULL;
}

/* The equivalence cases (see the top). */
static void run_cases(int rank, int stages, const char *device, const char *map)
{
    bl_runtime_t *rt = job_runtime(rank, device);
    bl_runtime_t *self = test_runtime(NULL);
    check(rt != NULL && self != NULL, "runtimes");
    if (rt == NULL || self == NULL) {
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    sets_t s = {0};
    check(make_sets(rt, self, &s), "datasets");
    bl_dataset_t *train = make_separable_dataset(rt, TRAIN, FEATURES, CLASSES, 3);
    bl_dataset_t *failing = served_dataset(rt, 203, 11u, FAIL_AT, 0.0);
    bl_model_t *m = NULL;
    check(train != NULL && failing != NULL, "datasets");
    bl_status_t st = test_mlp(rt, FEATURES, hidden, 2, CLASSES, SEED, &m);
    check(st == BL_OK, "model: %s", bl_last_error(rt));
    int first[8] = {0};
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = BATCH;
    cfg.pipeline.stages = stages;
    cfg.pipeline.micro_batches = 2;
    cfg.diagnostics.timeout_s = 60.0; /* a hang fails the test instead of stalling it */
    if (map != NULL) {
        cfg.plan.stage_first = first;
        cfg.plan.stage_count = parse_map(map, first, stages);
    }
    bl_trainer_t *t = NULL;
    if (st == BL_OK) {
        st = bl_trainer_create(rt, m, train, &cfg, &t);
        check(st == BL_OK, "trainer: %s", bl_last_error(rt));
    }
    size_t n = st == BL_OK ? bl_model_param_count(m) : 0;
    float *params = malloc((n > 0 ? n : 1) * sizeof *params);
    if (st == BL_OK && params != NULL) {
        /* Before training every rank holds the same initial parameters. */
        memcpy(params, bl_model_params(m), n * sizeof *params);
        evaluate_all(rt, self, t, &s, params, "before training");

        midway_t w = {.rt = rt, .t = t, .m = m, .sets = &s, .params = params};
        st = bl_trainer_run(t, STEPS, on_step, &w);
        check(st == BL_OK, "run: %s", bl_last_error(rt));
        check(w.seen, "the callback of step %d ran", MID_STEP);
        for (int i = 0; i < SETS && w.seen; i++) {
            compare(self, &s, i, params, w.loss[i], w.accuracy[i], "in the middle of the run");
        }

        /* After the run every rank's model is whole: keep it for the
         * references, then make other stages' layers unusable on CPU ranks. */
        memcpy(params, bl_model_params(m), n * sizeof *params);
        size_t poisoned = 0;
        if (bl_runtime_device(rt, NULL, 0) == BL_DEVICE_CPU) {
            poisoned = poison_other_stages(t, m);
        }
        unsigned long long total = poisoned;
        MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        check(strcmp(device, "mirror") == 0 || total > 0,
              "some CPU rank had other stages' layers to overwrite");
        evaluate_all(rt, self, t, &s, params, "after the run, other stages' layers NaN");

        /* A sample that fails to load fails every rank, and the pipeline is
         * left clean for the next evaluation. */
        double loss = 0.0, accuracy = 0.0;
        st = bl_trainer_evaluate(t, failing, &loss, &accuracy);
        check(st != BL_OK, "an evaluation whose sample %d fails to load fails", FAIL_AT);
        int reads_it = rank == 0; /* stage 0 of pipeline 0, whose share holds the sample */
        const char *said = bl_last_error(rt);
        check(reads_it ? strstr(said, "dataset callback get(40) failed") != NULL
                       : strstr(said, "evaluation failed on 1 other rank(s)") != NULL,
              "the failure is named: %s", said);
        evaluate_all(rt, self, t, &s, params, "after a failed evaluation");
    }
    free(params);
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
    bl_dataset_destroy(failing);
    free_sets(&s);
    bl_runtime_destroy(self);
    bl_runtime_destroy(rt);
}

/* The bound: stage 0 stalls for 3 s in sample 0's callback and the timeout
 * is 2 s, so stage 1 gives up on the first chunk's verdict after 2 s, and
 * stage 0 arrives in the final reduction a second later, well within stage
 * 1's bound there. */
static void run_hang(int rank)
{
    bl_runtime_t *rt = job_runtime(rank, "cpu");
    check(rt != NULL, "runtime");
    if (rt == NULL) {
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    bl_dataset_t *train = make_separable_dataset(rt, TRAIN, FEATURES, CLASSES, 3);
    bl_dataset_t *slow = served_dataset(rt, 1, 11u, -1, 3.0);
    bl_model_t *m = NULL;
    bl_status_t st = test_mlp(rt, FEATURES, hidden, 2, CLASSES, SEED, &m);
    check(train != NULL && slow != NULL && st == BL_OK, "set-up: %s", bl_last_error(rt));
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = BATCH;
    cfg.pipeline.stages = 2;
    cfg.diagnostics.timeout_s = 2.0;
    bl_trainer_t *t = NULL;
    if (st == BL_OK) {
        st = bl_trainer_create(rt, m, train, &cfg, &t);
        check(st == BL_OK, "trainer: %s", bl_last_error(rt));
    }
    if (st == BL_OK) {
        double loss = 0.0, accuracy = 0.0;
        st = bl_trainer_evaluate(t, slow, &loss, &accuracy);
        const char *said = bl_last_error(rt);
        if (rank == 1) {
            check(st == BL_ERR_TIMEOUT, "stage 1 times out (status %d)", (int)st);
            check(strstr(said, "stage 1 receiving the verdict of evaluation chunk 0 from stage 0 "
                               "did not complete within 2 s: rank 0 had not arrived") != NULL,
                  "the timeout names the transfer and the rank: %s", said);
        } else {
            check(st != BL_OK && strstr(said, "evaluation failed on 1 other rank(s)") != NULL,
                  "stage 0 learns of stage 1's failure: %s", said);
        }
    }
    /* After a timeout the teardown leaks what may still be in flight. */
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
    bl_dataset_destroy(slow);
    bl_runtime_destroy(rt);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int hang = argc == 2 && strcmp(argv[1], "hang") == 0;
    int stages = argc >= 3 ? atoi(argv[1]) : 0;
    if (!(hang && size == 2) && !(stages > 1 && stages <= 7 && size % stages == 0)) {
        if (rank == 0) {
            printf("usage: mpirun -np P test_pipe_eval STAGES cpu|mirror|mixed [MAP], or "
                   "mpirun -np 2 test_pipe_eval hang\n");
        }
        MPI_Finalize();
        return 2;
    }
    if (hang) {
        run_hang(rank);
    } else {
        run_cases(rank, stages, argv[2], argc >= 4 ? argv[3] : NULL);
    }
    return check_finish("test_pipe_eval");
}
