/* The trainer's parameter file (bl_trainer_save_params) under mpirun: run as
 * `test_params_file STAGES DIR` on P ranks (P / STAGES pipelines), writing its
 * files into DIR. A 16-32-16-4 MLP (layers 0 dense, 1 ReLU, 2 dense, 3 ReLU,
 * 4 dense) is trained by the job, and the file must hold the bytes that
 * bl_model_save_params writes for the whole model:
 *
 * - before any step, those of a one-process model built with the same seed;
 * - after a few steps, those of the job's own model made whole
 *   (bl_trainer_sync_params) and saved by rank 0;
 * - after the same steps under pipeline.stage_local, the same bytes again,
 *   also from a model that no one made whole first, which is then cut down
 *   for good: its whole-model save and a second trainer are refused.
 *
 * Before each whole-memory save, every rank overwrites the parameters that it
 * must not read with a poison value: a rank of pipeline 0 those outside its
 * stage, a rank of another pipeline all of them. A save that read or wrote
 * any of them would differ from the reference. (The node-local reduction is
 * off, since it shares one parameter array between a node's replicas.)
 *
 * Failures must fail every rank with BL_ERR_IO and a message naming the path,
 * leave an existing file at the path as it was and leave no temporary file
 * behind: a path in a missing directory, a path under a regular file, rank 0
 * unable to size the temporary file, and a stage's writer unable to write
 * (both from a file size limit, RLIMIT_FSIZE, on that rank). NULL arguments
 * are refused. The failure counts are all-reduced (mpi_check.h), so the exit
 * status is 0 only when every rank passed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h> /* test_support.h's runner; this program checks by hand */

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ballast.h"
#include "mpi_check.h"
#include "file_test_support.h"
#include "test_support.h"

enum { FEATURES = 16, CLASSES = 4, SAMPLES = 640, BATCH = 32, STEPS = 6, SEED = 5 };
static const int widths[] = {32, 16};
#define POISON (-12345.0f)

typedef struct job {
    bl_runtime_t *rt;
    bl_dataset_t *train;
    int rank, stages;
    const char *dir;
} job_t;

/* Returns the offset of layer `layer`'s parameters in the model (layers
 * 0..4: dense, ReLU, dense, ReLU, dense; a ReLU has none). */
static size_t layer_offset(int layer)
{
    const int ins[] = {FEATURES, 32, 32, 16, 16}, outs[] = {32, 32, 16, 16, CLASSES};
    size_t offset = 0;
    for (int i = 0; i < layer; i++) {
        offset += i % 2 == 0 ? (size_t)outs[i] * (size_t)ins[i] + (size_t)outs[i] : 0;
    }
    return offset;
}

static void path_in(const job_t *j, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", j->dir, name);
}

/* The test's trainer config on the job's layout. The node-local reduction is
 * off, since it shares one parameter array between a node's replicas. */
static bl_train_config_t job_config(const job_t *j, int stage_local)
{
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = BATCH;
    cfg.seed = 3;
    cfg.pipeline.stages = j->stages;
    cfg.pipeline.micro_batches = j->stages > 1 ? 2 : 1;
    cfg.pipeline.stage_local = stage_local;
    cfg.transport.node_reduce = 0;
    return cfg;
}

/* A model of the test's shape with the test's seed, and a trainer for it on
 * the job's layout. Returns the trainer, or NULL (with the model destroyed)
 * after a failed check. */
static bl_trainer_t *make_trainer(const job_t *j, int stage_local, bl_model_t **m)
{
    bl_status_t st = test_mlp(j->rt, FEATURES, widths, 2, CLASSES, SEED, m);
    check(st == BL_OK, "model: %s", bl_last_error(j->rt));
    if (st != BL_OK) {
        return NULL;
    }
    bl_train_config_t cfg = job_config(j, stage_local);
    bl_trainer_t *t = NULL;
    st = bl_trainer_create(j->rt, *m, j->train, &cfg, &t);
    check(st == BL_OK, "trainer (stage_local %d): %s", stage_local, bl_last_error(j->rt));
    if (st != BL_OK) {
        bl_model_destroy(*m);
        *m = NULL;
    }
    return t;
}

/* Overwrites the parameters that this rank must not read in a save. */
static void poison_others(bl_trainer_t *t, bl_model_t *m)
{
    bl_layout_info_t info;
    check(bl_trainer_layout(t, &info) == BL_OK, "layout");
    size_t lo = info.replica == 0 ? layer_offset(info.first_layer) : 0;
    size_t hi = info.replica == 0 ? layer_offset(info.last_layer) : 0;
    float *p = bl_model_params(m);
    for (size_t i = 0; i < bl_model_param_count(m); i++) {
        if (i < lo || i >= hi) {
            p[i] = POISON;
        }
    }
}

/* Saves through the trainer and checks that every rank succeeded and that
 * the file equals the reference file ref (rank 0 compares). */
static void save_equals(const job_t *j, bl_trainer_t *t, const char *path, const char *ref,
                        const char *what)
{
    bl_status_t st = bl_trainer_save_params(t, path);
    check(st == BL_OK, "%s: save: %s", what, bl_last_error(j->rt));
    if (j->rank == 0) {
        check(same_bytes(path, ref, -1), "%s: %s holds the bytes of %s", what, path, ref);
        check(hidden_entries(j->dir) == 0, "%s: no temporary file is left in %s", what, j->dir);
    }
}

/* Before any step: the file equals a one-process model's of the same seed. */
static void initial_params(const job_t *j)
{
    char ref[4096], path[4096];
    path_in(j, "initial-ref.bin", ref, sizeof ref);
    path_in(j, "initial.bin", path, sizeof path);
    if (j->rank == 0) {
        bl_runtime_t *solo = test_runtime(NULL);
        bl_model_t *one = NULL;
        check(solo != NULL && test_mlp(solo, FEATURES, widths, 2, CLASSES, SEED, &one) == BL_OK &&
                  bl_model_save_params(one, ref) == BL_OK,
              "the one-process reference");
        bl_model_destroy(one);
        bl_runtime_destroy(solo);
    }
    bl_model_t *m = NULL;
    bl_trainer_t *t = make_trainer(j, 0, &m);
    if (t != NULL) {
        poison_others(t, m);
        save_equals(j, t, path, ref, "the initial parameters");
    }
    bl_trainer_destroy(t);
    bl_model_destroy(m);
}

/* A failing save to path: every rank fails with BL_ERR_IO and a message that
 * names the path (and, on rank `culprit`, contains `cause`); the file `kept`
 * still equals ref, and no temporary file is left. */
static void save_fails(const job_t *j, bl_trainer_t *t, const char *path, int culprit,
                       const char *cause, const char *kept, const char *ref, const char *what)
{
    bl_status_t st = bl_trainer_save_params(t, path);
    const char *msg = bl_last_error(j->rt);
    check(st == BL_ERR_IO, "%s: status %s", what, bl_status_string(st));
    check(strstr(msg, path) != NULL, "%s: the message names %s: %s", what, path, msg);
    if (j->rank == culprit) {
        check(strstr(msg, cause) != NULL, "%s: the message says '%s': %s", what, cause, msg);
    } else {
        check(strstr(msg, "failed on rank") != NULL, "%s: the message says another rank failed: %s",
              what, msg);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (j->rank == 0) {
        check(same_bytes(kept, ref, -1), "%s: %s is left intact", what, kept);
        check(hidden_entries(j->dir) == 0, "%s: no temporary file is left in %s", what, j->dir);
    }
}

/* A model that no one made whole before a stage-local trainer (built and
 * handed over, as a user does) is cut down to the rank's stage for good: the
 * whole-model file calls refuse it on every rank of a pipeline, naming the
 * layers it holds, and so does a second trainer; the trainer's own save
 * still writes the reference's bytes. */
static void cut_model_refused(const job_t *j, const char *ref)
{
    bl_model_t *m = NULL;
    bl_status_t st = bl_model_create(j->rt, FEATURES, &m);
    for (int i = 0; st == BL_OK && i < 2; i++) {
        st = bl_model_add_dense(m, widths[i]);
        st = st == BL_OK ? bl_model_add_relu(m) : st;
    }
    st = st == BL_OK ? bl_model_add_dense(m, CLASSES) : st;
    st = st == BL_OK ? bl_model_build(m, SEED) : st;
    check(st == BL_OK, "model: %s", bl_last_error(j->rt));
    bl_train_config_t cfg = job_config(j, 1);
    bl_trainer_t *t = NULL;
    st = st == BL_OK ? bl_trainer_create(j->rt, m, j->train, &cfg, &t) : st;
    check(st == BL_OK, "trainer on a fresh model: %s", bl_last_error(j->rt));
    if (st == BL_OK) {
        st = bl_trainer_run(t, STEPS, NULL, NULL);
        check(st == BL_OK, "run: %s", bl_last_error(j->rt));
        char path[4096];
        snprintf(path, sizeof path, "%s/cut.bin", j->dir);
        save_equals(j, t, path, ref, "a fresh model's stage-local parameters");
        bl_trainer_destroy(t);
        t = NULL;
        if (j->stages > 1) {
            snprintf(path, sizeof path, "%s/cut-model.bin", j->dir);
            st = bl_model_save_params(m, path);
            check(st == BL_ERR_INVALID_ARG &&
                      strstr(bl_last_error(j->rt), "(stage-local memory)") != NULL,
                  "a cut model's whole-model save is refused: %s", bl_last_error(j->rt));
            check(access(path, F_OK) != 0, "no file is written for a cut model");
            st = bl_trainer_create(j->rt, m, j->train, &cfg, &t);
            check(st == BL_ERR_INVALID_ARG && t == NULL &&
                      strstr(bl_last_error(j->rt), "cut down by an earlier trainer") != NULL,
                  "a second trainer on a cut model is refused: %s", bl_last_error(j->rt));
        }
    }
    bl_trainer_destroy(t);
    bl_model_destroy(m);
}

/* After STEPS steps: the file equals the job's whole model saved by rank 0,
 * and the failures leave that file intact. Then a stage-local job trained the
 * same way writes the same bytes. */
static void trained_params(const job_t *j)
{
    char ref[4096], path[4096], local[4096];
    path_in(j, "trained-ref.bin", ref, sizeof ref);
    path_in(j, "trained.bin", path, sizeof path);
    path_in(j, "stage-local.bin", local, sizeof local);
    bl_model_t *m = NULL;
    bl_trainer_t *t = make_trainer(j, 0, &m);
    if (t == NULL) {
        return;
    }
    bl_status_t st = bl_trainer_run(t, STEPS, NULL, NULL);
    check(st == BL_OK, "run: %s", bl_last_error(j->rt));
    check(bl_trainer_sync_params(t) == BL_OK, "sync: %s", bl_last_error(j->rt));
    if (j->rank == 0) {
        check(bl_model_save_params(m, ref) == BL_OK, "the whole model's file: %s",
              bl_last_error(j->rt));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    poison_others(t, m);
    save_equals(j, t, path, ref, "the trained parameters");

    /* Failures, each with an existing file at (or beside) the path. */
    char missing[4096], under_file[4096 + 16];
    path_in(j, "missing/params.bin", missing, sizeof missing);
    snprintf(under_file, sizeof under_file, "%s/params.bin", path);
    save_fails(j, t, missing, 0, "No such file or directory", path, ref, "a missing directory");
    if (j->rank == 0) {
        char dir[4096];
        path_in(j, "missing", dir, sizeof dir);
        check(access(dir, F_OK) != 0, "the missing directory is not created");
    }
    save_fails(j, t, under_file, 0, "Not a directory", path, ref, "a path under a regular file");

    /* A file size limit below the model's bytes (on rank 0 it fails the
     * temporary file's sizing) and below the last stage's offset (on that
     * stage's writer it fails the write). */
    signal(SIGXFSZ, SIG_IGN);
    if (j->rank == 0) {
        limit_file_size(64);
    }
    save_fails(j, t, path, 0, "File too large", path, ref, "rank 0 cannot size the file");
    if (j->rank == 0) {
        limit_file_size(RLIM_INFINITY);
    }
    if (j->stages > 1) {
        int writer = j->stages - 1; /* stage S - 1 of pipeline 0 */
        if (j->rank == writer) {
            limit_file_size(64);
        }
        char cause[64];
        snprintf(cause, sizeof cause, "writing stage %d's", writer);
        save_fails(j, t, path, writer, cause, path, ref, "a stage's write fails");
        if (j->rank == writer) {
            check(strstr(bl_last_error(j->rt), "File too large") != NULL,
                  "the write's cause is named: %s", bl_last_error(j->rt));
            limit_file_size(RLIM_INFINITY);
        }
    }
    signal(SIGXFSZ, SIG_DFL);

    check(bl_trainer_save_params(NULL, path) == BL_ERR_INVALID_ARG, "a NULL trainer is refused");
    check(bl_trainer_save_params(t, NULL) == BL_ERR_INVALID_ARG &&
              strstr(bl_last_error(j->rt), "NULL path") != NULL,
          "a NULL path is refused: %s", bl_last_error(j->rt));
    bl_trainer_destroy(t);
    bl_model_destroy(m);

    /* The same steps under stage-local memory: no rank can read another
     * stage's layers, and the file holds the same bytes. */
    t = make_trainer(j, 1, &m);
    if (t != NULL) {
        st = bl_trainer_run(t, STEPS, NULL, NULL);
        check(st == BL_OK, "stage-local run: %s", bl_last_error(j->rt));
        save_equals(j, t, local, ref, "the stage-local job's parameters");
    }
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    cut_model_refused(j, ref);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    job_t j = {.stages = argc == 3 ? atoi(argv[1]) : 0, .dir = argc == 3 ? argv[2] : NULL};
    int size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &j.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (j.stages < 1 || size % j.stages != 0) {
        if (j.rank == 0) {
            printf("usage: mpirun -np P test_params_file STAGES DIR (STAGES divides P)\n");
        }
        MPI_Finalize();
        return 2;
    }
    if (j.rank == 0) {
        fresh_dir(j.dir);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    bl_config_t rcfg = BL_CONFIG_INIT;
    rcfg.log_level = BL_LOG_ERROR;
    rcfg.blas_threads = 1;
    if (bl_runtime_create(MPI_COMM_WORLD, &rcfg, &j.rt) != BL_OK) {
        printf("rank %d: FAILED: bl_runtime_create\n", j.rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    j.train = make_separable_dataset(j.rt, SAMPLES, FEATURES, CLASSES, 3);
    check(j.train != NULL, "dataset");
    if (j.train != NULL) {
        initial_params(&j);
        trained_params(&j);
    }
    bl_dataset_destroy(j.train);
    bl_runtime_destroy(j.rt);
    return check_finish("params_file");
}
