/* libFuzzer harness for the checkpoint reader (runtime/checkpoint_*.c): the
 * input is one checkpoint file — a manifest or a stage file, told apart by
 * its header — checked against a fixed small model (8 inputs, dense 6,
 * ReLU, dense 3) with bl_ckpt_check_file, which runs the parsers every
 * load runs on each file's bytes. It must never read outside the input, never crash,
 * and either accept the file or fail with BL_ERR_FORMAT or
 * BL_ERR_MISMATCH and a message naming the file. Seeds (corpus/
 * fuzz_checkpoint): a valid manifest and stage file of that model, as
 * bl_ckpt_save writes them (fuzz/README.md says how they were made). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ballast.h"
#include "checkpoint.h"
#include "fuzz_mpi.h"

static bl_runtime_t *g_rt;
static bl_model_t *g_model;

static void quiet(bl_log_level_t level, int rank, const char *line, void *arg)
{
    (void)level;
    (void)rank;
    (void)line;
    (void)arg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_mpi_init("fuzz_checkpoint");
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.log_fn = quiet;
    cfg.blas_threads = 1;
    if (bl_runtime_create(MPI_COMM_SELF, &cfg, &g_rt) != BL_OK ||
        bl_model_create(g_rt, 8, &g_model) != BL_OK || bl_model_add_dense(g_model, 6) != BL_OK ||
        bl_model_add_relu(g_model) != BL_OK || bl_model_add_dense(g_model, 3) != BL_OK ||
        bl_model_build(g_model, 1) != BL_OK) {
        fprintf(stderr, "fuzz_checkpoint: cannot set up the runtime and the model\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past it. */
    unsigned char *bytes = malloc(size > 0 ? size : 1);
    if (bytes == NULL) {
        return 0;
    }
    memcpy(bytes, data, size);
    bl_status_t st = bl_ckpt_check_file(g_rt, "input.bin", bytes, size, g_model);
    if (st != BL_OK && ((st != BL_ERR_FORMAT && st != BL_ERR_MISMATCH) ||
                        strstr(bl_last_error(g_rt), "input.bin") == NULL)) {
        fprintf(stderr, "fuzz_checkpoint: status %d without the file named: %s\n", (int)st,
                bl_last_error(g_rt));
        abort();
    }
    free(bytes);
    return 0;
}
