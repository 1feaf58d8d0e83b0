/* gpu_probe [--gpus N]: whether this process can train on a GPU, for the
 * gpu-labelled tests of ballast-train (tests/gpu_or_skip.sh runs it before
 * the real command). It asks the way ballast-train does, by making a
 * runtime with BL_DEVICE_CUDA (on MPI_COMM_SELF), so a skip means exactly
 * that the program under test would refuse --device cuda here; with
 * --gpus N it also wants N GPUs visible (a job of one rank per GPU).
 *
 * Exit status: 0 with the device's name; 77 (ctest: skipped) with
 * "skipped: no GPU visible: REASON" or "skipped: needs N GPUs, sees M";
 * 1 when making the runtime fails for another reason; 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <mpi.h>

#include "ballast.h"

enum { SKIP = 77 };

/* bl_runtime_create leaves no runtime to ask on failure: the reason is
 * the first error line it logs. */
static void keep_first_error(bl_log_level_t level, int rank, const char *line, void *arg)
{
    (void)rank;
    char *first = arg;
    if (level == BL_LOG_ERROR && first[0] == '\0') {
        snprintf(first, 512, "%s", line);
    }
}

int main(int argc, char **argv)
{
    long want = 1;
    if (argc == 3 && strcmp(argv[1], "--gpus") == 0) {
        char *end = NULL;
        want = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || want < 1 || want > 1024) {
            fprintf(stderr, "gpu_probe: --gpus: '%s' is not a count in [1, 1024]\n", argv[2]);
            return 2;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: gpu_probe [--gpus N]\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    char first_error[512] = "";
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.log_fn = keep_first_error;
    cfg.log_arg = first_error;
    cfg.blas_threads = 1;
    cfg.device = BL_DEVICE_CUDA;
    bl_runtime_t *rt = NULL;
    bl_status_t st = bl_runtime_create(MPI_COMM_SELF, &cfg, &rt);
    int code = 0;
    if (st == BL_ERR_CUDA || st == BL_ERR_UNSUPPORTED) {
        printf("skipped: no GPU visible: %s\n",
               first_error[0] != '\0' ? first_error : bl_status_string(st));
        code = SKIP;
    } else if (st != BL_OK) {
        printf("gpu_probe: making a CUDA runtime failed: %s: %s\n", bl_status_string(st),
               first_error);
        code = 1;
    } else {
        char name[128];
        bl_runtime_device(rt, name, sizeof name);
        bl_runtime_destroy(rt);
        /* The runtime opened GPU 0, so the count below cannot fail for a
         * reason the runtime did not already report. */
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess) {
            count = 0;
        }
        if (count < want) {
            printf("skipped: needs %ld GPUs, sees %d\n", want, count);
            code = SKIP;
        } else {
            printf("gpu_probe: %s, %d GPU(s) visible\n", name, count);
        }
    }
    MPI_Finalize();
    return code;
}
