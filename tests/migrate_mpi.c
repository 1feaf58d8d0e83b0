/* Layer migration moves the optimizer state with the layer, bit for bit
 * (and, first, a shard plan outside its caps is refused):
 * run under `mpirun -np 2` (one pipeline of two stages). A 16-32-16-4 MLP
 * (layers 0 dense, 1 ReLU, 2 dense, 3 ReLU, 4 dense) starts with stage map
 * 0-1,2-4; a scripted stage plan moves layers 2-3 to stage 0 after step 5.
 *
 * Before the move, rank 0 never trained layer 2, so its copy of layer 2's
 * momentum is all zero while rank 1's is not. In the callback of step 5
 * (the move has happened at that boundary) rank 1, the old owner, sends its
 * copies of layer 2's parameters and momentum — what it held when the move
 * began, as it no longer updates them — and rank 0, the new owner, must
 * hold exactly those bytes. The map must be the scripted one. Training
 * then goes on for more steps and must stay finite. The failure counts are
 * all-reduced (mpi_check.h), so the exit status is 0 only when every rank
 * passed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h> /* test_support.h's runner; this program checks by hand */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballast.h"
#include "mpi_check.h"
#include "test_support.h"

enum { FEATURES = 16, CLASSES = 4, SAMPLES = 640, MOVE_AFTER = 5 };

/* Layer 2 (dense 32 -> 16) in the parameter layout: layer 0's W (32 x 16)
 * and b (32) come first; then W (16 x 32) and b (16). */
enum { LAYER2_OFFSET = 32 * FEATURES + 32, LAYER2_COUNT = 16 * 32 + 16 };

typedef struct watch {
    bl_trainer_t *t;
    bl_model_t *m;
    int rank;
    int checked;
} watch_t;

static int all_zero(const float *v, int n)
{
    for (int i = 0; i < n; i++) {
        if (v[i] != 0.0f) {
            return 0;
        }
    }
    return 1;
}

static int on_step(const bl_step_info_t *info, void *arg)
{
    watch_t *w = arg;
    size_t count = 0;
    const float *momentum = bl_trainer_momentum(w->t, &count);
    check(momentum != NULL && count == bl_model_param_count(w->m), "momentum buffer");
    if (info->step < MOVE_AFTER) {
        check(info->stages_moved == 0, "no layer moves before the scripted step");
        if (w->rank == 0) {
            check(all_zero(momentum + LAYER2_OFFSET, LAYER2_COUNT),
                  "stage 0 holds no momentum for layer 2 before it owns it");
        } else if (info->step > 0) {
            check(!all_zero(momentum + LAYER2_OFFSET, LAYER2_COUNT),
                  "stage 1 has momentum for layer 2 (the check below is not vacuous)");
        }
        return 0;
    }
    if (info->step != MOVE_AFTER) {
        return 0;
    }
    check(info->stages_moved == 2, "layers 2 and 3 moved after the scripted step");
    const int *map = bl_trainer_stage_map(w->t);
    check(map[0] == 0 && map[1] == 4 && map[2] == 5, "the map is 0-3,4-4");
    float *theirs = malloc(2 * LAYER2_COUNT * sizeof *theirs);
    float *mine = malloc(2 * LAYER2_COUNT * sizeof *mine);
    memcpy(mine, bl_model_params(w->m) + LAYER2_OFFSET, LAYER2_COUNT * sizeof *mine);
    memcpy(mine + LAYER2_COUNT, momentum + LAYER2_OFFSET, LAYER2_COUNT * sizeof *mine);
    if (w->rank == 1) {
        MPI_Send(mine, 2 * LAYER2_COUNT, MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
    } else {
        MPI_Recv(theirs, 2 * LAYER2_COUNT, MPI_FLOAT, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        check(memcmp(mine, theirs, LAYER2_COUNT * sizeof *mine) == 0,
              "layer 2's parameters on stage 0 equal stage 1's bit for bit");
        check(memcmp(mine + LAYER2_COUNT, theirs + LAYER2_COUNT, LAYER2_COUNT * sizeof *mine) == 0,
              "layer 2's momentum on stage 0 equals stage 1's bit for bit");
        check(!all_zero(mine + LAYER2_COUNT, LAYER2_COUNT), "the moved momentum is not zero");
    }
    w->checked = 1;
    free(theirs);
    free(mine);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        printf("run with mpirun -np 2 (got %d ranks)\n", size);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    bl_config_t rcfg = BL_CONFIG_INIT;
    bl_runtime_t *rt = NULL;
    if (bl_runtime_create(MPI_COMM_WORLD, &rcfg, &rt) != BL_OK) {
        printf("rank %d: FAILED: bl_runtime_create\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    bl_dataset_t *train = make_separable_dataset(rt, SAMPLES, FEATURES, CLASSES, 3);
    bl_model_t *m = NULL;
    check(train != NULL, "dataset");
    bl_status_t st = test_mlp(rt, FEATURES, (const int[]){32, 16}, 2, CLASSES, 5, &m);
    check(st == BL_OK, "model: %s", bl_last_error(rt));
    /* A shard plan outside its caps is refused by the library, naming the
     * rank (two ranks are needed for a plan that sums right but breaks a
     * cap). */
    {
        static const int plan[] = {30, 2}, caps[] = {20, 32};
        bl_train_config_t dp = BL_TRAIN_CONFIG_INIT;
        dp.batch = 32;
        dp.plan.shards = plan;
        dp.plan.shard_count = 2;
        dp.plan.shard_max = caps;
        dp.plan.shard_cap_count = 2;
        bl_trainer_t *none = NULL;
        check(bl_trainer_create(rt, m, train, &dp, &none) == BL_ERR_INVALID_ARG && none == NULL,
              "a plan outside its caps is refused");
        check(strstr(bl_last_error(rt), "shard of rank 0 is 30, outside its caps [0, 20]") != NULL,
              "the refusal names the rank: %s", bl_last_error(rt));
    }
    static const int start[] = {0, 2};
    static const long plan_steps[] = {MOVE_AFTER};
    static const int plan_first[] = {0, 4};
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 32;
    cfg.pipeline.stages = 2;
    cfg.pipeline.micro_batches = 2;
    cfg.plan.stage_first = start;
    cfg.plan.stage_count = 2;
    cfg.balance.stage_plan_steps = plan_steps;
    cfg.balance.stage_plan_first = plan_first;
    cfg.balance.stage_plan_count = 1;
    bl_trainer_t *t = NULL;
    st = bl_trainer_create(rt, m, train, &cfg, &t);
    check(st == BL_OK, "trainer: %s", bl_last_error(rt));
    if (st == BL_OK) {
        watch_t w = {.t = t, .m = m, .rank = rank};
        st = bl_trainer_run(t, 12, on_step, &w);
        check(st == BL_OK, "run: %s", bl_last_error(rt));
        check(w.checked, "the step of the move was seen");
        const float *p = bl_model_params(m);
        int finite = 1;
        for (size_t i = 0; i < bl_model_param_count(m); i++) {
            finite = finite && isfinite(p[i]);
        }
        check(finite, "parameters stay finite after the move");
    }
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(train);
    int total = check_total();
    if (rank == 0) {
        printf("%s: %d failure(s)\n", total == 0 ? "ok" : "FAILED", total);
    }
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
