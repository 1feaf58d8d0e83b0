/* The language-model trainer's model file (bl_lm_trainer_save_model) under
 * mpirun: run as `test_lm_model_file STAGES DIR` on P ranks (P / STAGES
 * pipelines), writing its files into DIR. The model is a GPT-2 of 3 blocks
 * (units 0 .. 4) with three user layers: a token shift after the embedding,
 * an adapter after block 2 and a token shift inside block 3; 2 stages split
 * the units at 2, 3 stages at 2 and 4 (the last stage is the head alone).
 * The saved llm.c file and its ".layers" file must hold:
 *
 * - before any step, the bytes that a one-process trainer of the same
 *   config and seed saves (rank 0 writes it after making it whole: the
 *   one-stage path);
 * - after a few steps, the bytes of the job's own model, made whole by the
 *   run's end, written by rank 0 with bl_gpt2_write and fwrite;
 * - with pipelines, the same two under pipeline.stage_local, where no rank
 *   holds another stage's units.
 *
 * Before each whole-memory save every rank overwrites the parameters that it
 * must not read with a poison value: a rank of pipeline 0 those outside its
 * stage's units (and the tied wte on every stage but the first, which alone
 * writes it), a rank of another pipeline all of them. A save that read any of
 * them would differ from the reference.
 *
 * Failures must fail every rank with BL_ERR_IO and a message naming the path
 * (and, on the other ranks, the rank that failed), leave the existing files
 * as they were and no temporary file behind: a path in a missing directory,
 * rank 0 unable to size the file, and the last stage's writer unable to
 * write (both from a file size limit, RLIMIT_FSIZE, on that rank). The
 * failure counts are all-reduced (mpi_check.h), so the exit status is 0 only
 * when every rank passed. */
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
#include "device.h"
#include "gpt2.h"
#include "lm_layers.h"
#include "mpi_check.h"
#include "file_test_support.h"
#include "test_support.h"

enum { LAYERS = 3, USERS = 3, STEPS = 3, TOKENS = 4096 };
#define POISON (-12345.0f)

/* The stage maps (first units) for 1, 2 and 3 stages. */
static const int maps[4][4] = {{0}, {0, LAYERS + 2}, {0, 2, LAYERS + 2}, {0, 2, 4, LAYERS + 2}};

typedef struct job {
    bl_runtime_t *rt;
    int rank, stages;
    const char *dir;
    uint16_t stream[TOKENS];
    lm_adapter_t adapter;
    bl_lm_layer_t layers[USERS];
} job_t;

static void path_in(const job_t *j, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", j->dir, name);
}

/* The trainer's config: a small GPT-2 (Vp above V, so the padding rows are
 * in the file) with the user layers, on `stages` stages. */
static bl_lm_config_t job_config(const job_t *j, int stages, int stage_local)
{
    bl_lm_config_t c = BL_LM_CONFIG_INIT;
    c.model = (bl_gpt2_config_t){.max_seq_len = 8,
                                 .vocab_size = 32,
                                 .num_layers = LAYERS,
                                 .num_heads = 2,
                                 .channels = 16,
                                 .padded_vocab_size = 40};
    c.seq_len = 8;
    c.batch = 4;
    c.seed = 11;
    c.adamw.lr = 1e-2f;
    c.pipeline.stages = stages;
    c.pipeline.micro_batches = stages > 1 ? 2 : 1;
    c.pipeline.stage_local = stage_local;
    if (stages > 1) {
        c.plan.stage_first = maps[stages];
        c.plan.stage_count = stages;
    }
    c.node_reduce = 0; /* it would share one parameter array between replicas */
    c.layers = j->layers;
    c.layer_count = USERS;
    return c;
}

static bl_lm_trainer_t *make_trainer(const job_t *j, bl_runtime_t *rt, int stages, int stage_local)
{
    bl_lm_config_t c = job_config(j, stages, stage_local);
    bl_lm_trainer_t *t = NULL;
    bl_status_t st = bl_lm_trainer_create(rt, &c, j->stream, TOKENS, &t);
    check(st == BL_OK, "trainer (%d stages, stage_local %d): %s", stages, stage_local,
          bl_last_error(rt));
    return st == BL_OK ? t : NULL;
}

/* Overwrites the parameters that this rank must not read in a save: on
 * pipeline 0 those outside its stage's units (bl_gpt2_unit_ranges of a
 * model of the same shape) and, but on stage 0, the tied wte; on the other
 * pipelines all of them. Rank r is stage r % S of pipeline r / S. */
static void poison_others(const job_t *j, bl_lm_trainer_t *t)
{
    const int stage = j->rank % j->stages, replica = j->rank / j->stages;
    size_t count = 0;
    float *p = (float *)bl_lm_trainer_params(t, &count); /* the test's licence */
    unsigned char *keep = calloc(count, 1);
    check(keep != NULL, "poison: no memory");
    if (keep == NULL) {
        return;
    }
    if (replica == 0) {
        static bl_device_t cpu = {.kernels = &bl_cpu_kernels, .name = "cpu"};
        const bl_lm_config_t c = job_config(j, j->stages, 0);
        bl_gpt2_t *g = NULL;
        bl_error_t err = {0};
        bl_status_t st = bl_gpt2_create(&c.model, &bl_cpu_kernels, NULL, NULL, &err, &g);
        st = st == BL_OK ? bl_gpt2_add_layers(g, j->layers, USERS, &cpu, &err) : st;
        check(st == BL_OK && g->param_count == count, "the shape's model: %s", err.msg);
        bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
        const int n = st == BL_OK ? bl_gpt2_unit_ranges(g, maps[j->stages][stage],
                                                        maps[j->stages][stage + 1], ranges)
                                  : 0;
        for (int r = 0; r < n; r++) {
            if (ranges[r].tensor != BL_GPT2_WTE || stage == 0) {
                memset(keep + ranges[r].offset, 1, ranges[r].count);
            }
        }
        bl_gpt2_destroy(g);
    }
    for (size_t i = 0; i < count; i++) {
        if (!keep[i]) {
            p[i] = POISON;
        }
    }
    free(keep);
}

/* Whether the model files at path and ref (each with its ".layers") hold
 * the same bytes, of the model's lengths. */
static int same_model(const job_t *j, const char *path, const char *ref)
{
    const bl_lm_config_t c = job_config(j, 1, 0);
    size_t gpt = 0;
    bl_gpt2_tensor_t tensors[BL_GPT2_TENSOR_COUNT];
    bl_error_t err = {0};
    check(bl_gpt2_tensors(&c.model, tensors, &gpt, &err) == BL_OK, "tensors: %s", err.msg);
    const long users = 16 + 2 * 2 * 16 + 16; /* the two shifts' C and the adapter's 2 · r · C */
    char a[4096 + 8], b[4096 + 8];
    snprintf(a, sizeof a, "%s.layers", path);
    snprintf(b, sizeof b, "%s.layers", ref);
    return same_bytes(path, ref, (long)(BL_GPT2_HEADER_BYTES + 4 * gpt)) &&
           same_bytes(a, b, 4 * users);
}

/* Saves through the trainer and checks that every rank succeeded and that
 * the files equal the reference ref's (rank 0 compares). */
static void save_equals(const job_t *j, bl_lm_trainer_t *t, const char *path, const char *ref,
                        const char *what)
{
    bl_status_t st = bl_lm_trainer_save_model(t, path);
    check(st == BL_OK, "%s: save: %s", what, bl_last_error(j->rt));
    MPI_Barrier(MPI_COMM_WORLD);
    if (j->rank == 0) {
        check(same_model(j, path, ref), "%s: %s and its .layers hold the bytes of %s's", what, path,
              ref);
        check(hidden_entries(j->dir) == 0, "%s: no temporary file is left in %s", what, j->dir);
    }
}

/* Before any step: the files equal a one-process trainer's of the same
 * config. */
static void initial_model(const job_t *j, const char *ref)
{
    char path[4096];
    path_in(j, "initial.bin", path, sizeof path);
    if (j->rank == 0) {
        bl_runtime_t *solo = test_runtime(NULL);
        check(solo != NULL, "a runtime of one process");
        bl_lm_trainer_t *one = solo != NULL ? make_trainer(j, solo, 1, 0) : NULL;
        check(one != NULL && bl_lm_trainer_save_model(one, ref) == BL_OK,
              "the one-process reference: %s", solo != NULL ? bl_last_error(solo) : "");
        bl_lm_trainer_destroy(one);
        bl_runtime_destroy(solo);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    bl_lm_trainer_t *t = make_trainer(j, j->rt, j->stages, 0);
    if (t != NULL) {
        poison_others(j, t);
        save_equals(j, t, path, ref, "the initial model");
    }
    bl_lm_trainer_destroy(t);
}

/* Rank 0 writes the whole model of t (current after a run) to ref with
 * bl_gpt2_write, and its user layers' floats to ref.layers with fwrite (the
 * test's hosts are little-endian). */
static void write_reference(const job_t *j, bl_lm_trainer_t *t, const char *ref)
{
    const bl_lm_config_t c = job_config(j, 1, 0);
    size_t count = 0;
    const float *p = bl_lm_trainer_params(t, &count);
    bl_gpt2_file_t file;
    memset(&file, 0, sizeof file);
    file.config = c.model;
    bl_gpt2_tensor_t tensors[BL_GPT2_TENSOR_COUNT];
    bl_error_t err = {0};
    bl_status_t st = bl_gpt2_tensors(&c.model, tensors, &file.param_count, &err);
    file.params = (float *)p;
    st = st == BL_OK ? bl_gpt2_write(ref, &file, &err) : st;
    check(st == BL_OK, "the trained reference: %s", err.msg);
    char layers[4096 + 8];
    snprintf(layers, sizeof layers, "%s.layers", ref);
    FILE *f = fopen(layers, "wb");
    const size_t users = count - file.param_count;
    check(f != NULL && fwrite(p + file.param_count, sizeof(float), users, f) == users,
          "the trained reference's layers");
    if (f != NULL) {
        fclose(f);
    }
}

/* A failing save to path: every rank fails with BL_ERR_IO and a message
 * that names path; rank `culprit`'s contains `cause`, every other rank's
 * says that it failed on rank `culprit`. The files at `kept` still equal
 * ref's, and no temporary file is left. */
static void save_fails(const job_t *j, bl_lm_trainer_t *t, const char *path, int culprit,
                       const char *cause, const char *kept, const char *ref, const char *what)
{
    bl_status_t st = bl_lm_trainer_save_model(t, path);
    const char *msg = bl_last_error(j->rt);
    check(st == BL_ERR_IO, "%s: status %s", what, bl_status_string(st));
    check(strstr(msg, path) != NULL, "%s: the message names %s: %s", what, path, msg);
    if (j->rank == culprit) {
        check(strstr(msg, cause) != NULL, "%s: the message says '%s': %s", what, cause, msg);
    } else {
        char on[32];
        snprintf(on, sizeof on, "failed on rank %d: ", culprit);
        check(strstr(msg, on) != NULL && strstr(msg, cause) != NULL,
              "%s: the message says '%s' and '%s': %s", what, on, cause, msg);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (j->rank == 0) {
        check(same_model(j, kept, ref), "%s: %s is left intact", what, kept);
        check(hidden_entries(j->dir) == 0, "%s: no temporary file is left in %s", what, j->dir);
    }
}

/* After STEPS steps: the files equal the job's whole model; the failures
 * leave them intact. */
static void trained_model(const job_t *j, const char *ref)
{
    char path[4096];
    path_in(j, "trained.bin", path, sizeof path);
    bl_lm_trainer_t *t = make_trainer(j, j->rt, j->stages, 0);
    if (t == NULL) {
        return;
    }
    bl_status_t st = bl_lm_trainer_run(t, STEPS, NULL, NULL);
    check(st == BL_OK, "run: %s", bl_last_error(j->rt));
    if (j->rank == 0) {
        write_reference(j, t, ref);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    poison_others(j, t);
    save_equals(j, t, path, ref, "the trained model");

    char missing[4096];
    path_in(j, "missing/model.bin", missing, sizeof missing);
    save_fails(j, t, missing, 0, "No such file or directory", path, ref, "a missing directory");
    if (j->rank == 0) {
        char dir[4096];
        path_in(j, "missing", dir, sizeof dir);
        check(access(dir, F_OK) != 0, "the missing directory is not created");
    }
    /* A file size limit below the model's bytes: on rank 0 it fails the
     * temporary file's sizing (or, with one stage, its write), and on the
     * last stage's writer (rank S - 1) the write of its units. */
    signal(SIGXFSZ, SIG_IGN);
    if (j->rank == 0) {
        limit_file_size(64);
    }
    save_fails(j, t, path, 0, "File too large", path, ref, "rank 0 cannot size the file");
    if (j->rank == 0) {
        limit_file_size(RLIM_INFINITY);
    }
    if (j->stages > 1) {
        const int writer = j->stages - 1;
        if (j->rank == writer) {
            limit_file_size(64);
        }
        char cause[64];
        snprintf(cause, sizeof cause, "rank %d (stage %d): writing tensor", writer, writer);
        save_fails(j, t, path, writer, cause, path, ref, "a stage's write fails");
        if (j->rank == writer) {
            check(strstr(bl_last_error(j->rt), "File too large") != NULL,
                  "the write's cause is named: %s", bl_last_error(j->rt));
            limit_file_size(RLIM_INFINITY);
        }
    }
    signal(SIGXFSZ, SIG_DFL);
    check(bl_lm_trainer_save_model(t, NULL) == BL_ERR_INVALID_ARG &&
              strstr(bl_last_error(j->rt), "NULL path") != NULL,
          "a NULL path is refused: %s", bl_last_error(j->rt));
    bl_lm_trainer_destroy(t);
}

/* With pipelines, under stage-local memory: the initial and the trained
 * model's files equal the references. */
static void stage_local_model(const job_t *j, const char *initial_ref, const char *trained_ref)
{
    char path[4096];
    path_in(j, "stage-local.bin", path, sizeof path);
    bl_lm_trainer_t *t = make_trainer(j, j->rt, j->stages, 1);
    if (t == NULL) {
        return;
    }
    save_equals(j, t, path, initial_ref, "the stage-local initial model");
    bl_status_t st = bl_lm_trainer_run(t, STEPS, NULL, NULL);
    check(st == BL_OK, "stage-local run: %s", bl_last_error(j->rt));
    save_equals(j, t, path, trained_ref, "the stage-local trained model");
    bl_lm_trainer_destroy(t);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    static job_t j;
    j.stages = argc == 3 ? atoi(argv[1]) : 0;
    j.dir = argc == 3 ? argv[2] : NULL;
    int size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &j.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (j.stages < 1 || j.stages > 3 || size % j.stages != 0) {
        if (j.rank == 0) {
            printf("usage: mpirun -np P test_lm_model_file STAGES DIR (STAGES 1..3 divides P)\n");
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
    lcg_t g;
    lcg_seed(&g, 7);
    for (int i = 0; i < TOKENS; i++) {
        j.stream[i] = (uint16_t)((i % 11 + lcg_next(&g) % 3) % 32);
    }
    j.adapter = (lm_adapter_t){.rank = 2};
    j.layers[0] = (bl_lm_layer_t){.after = 0, .ops = lm_token_shift_ops};
    j.layers[1] =
        (bl_lm_layer_t){.after = 2, .ops = lm_adapter_ops, .state = &j.adapter, .decay = 1};
    j.layers[2] = (bl_lm_layer_t){.after = 3, .ops = lm_token_shift_ops, .inside = 1};
    char initial_ref[4096], trained_ref[4096];
    path_in(&j, "initial-ref.bin", initial_ref, sizeof initial_ref);
    path_in(&j, "trained-ref.bin", trained_ref, sizeof trained_ref);
    initial_model(&j, initial_ref);
    trained_model(&j, trained_ref);
    if (j.stages > 1) {
        stage_local_model(&j, initial_ref, trained_ref);
    }
    lm_adapter_free(&j.adapter);
    bl_runtime_destroy(j.rt);
    return check_finish("lm_model_file");
}
