/* bl_replicas_check under mpirun (label mpi): replicas with the same
 * parameters and momentum pass; one value off by an ulp, on one rank, in
 * either array, fails on every rank with BL_ERR_MISMATCH naming that
 * rank, the step and the counts; a difference outside the compared range
 * is not looked at; a NaN on one side counts as an infinite difference;
 * MPI_COMM_NULL and one member pass. Arrays longer than one broadcast
 * chunk are compared in full.
 * Through the trainer: after one rank's parameters are nudged, the end of
 * a run and a checkpoint fail with BL_ERR_MISMATCH on every rank of the
 * job (also the stages whose replicas agree: none is left waiting), in
 * data parallelism and, on 4 ranks, in a grid of 2 pipelines x 2 stages.
 * Every rank counts its failures (mpi_check.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_check.h"
#include "replica_check.h"
#include "test_mlp.h"

#define COUNT 300001 /* more than one chunk of the comparison */

static float params[COUNT], velocity[COUNT];

static void fill(void)
{
    for (int i = 0; i < COUNT; i++) {
        params[i] = 0.001f * (float)(i % 977) - 0.3f;
        velocity[i] = 1e-4f * (float)(i % 131);
    }
}

/* Runs the check on [first, first + count) at step 42: the status, and
 * the message in msg when it failed. */
static bl_status_t run_check(bl_runtime_t *rt, size_t first, size_t count, char *msg, size_t n)
{
    bl_status_t st = bl_replicas_check(rt, rt->comm, 42, params, velocity, first, count);
    snprintf(msg, n, "%s", st == BL_OK ? "" : bl_last_error(rt));
    return st;
}

/* A 12-16-3 MLP on 256 made-up samples, trained 3 steps in S stages
 * (node-local reduction off: its parameters would be one shared copy);
 * then the last rank's parameters are nudged by one ulp, and one more
 * step, and a checkpoint, must fail on every rank. */
static void check_trainer(bl_runtime_t *rt, int stages)
{
    enum { N = 256, F = 12, K = 3 };
    static float x[N * F];
    static int y[N];
    for (int i = 0; i < N * F; i++) {
        x[i] = 0.01f * (float)(i % 97) - 0.4f;
    }
    for (int i = 0; i < N; i++) {
        y[i] = i % K;
    }
    bl_dataset_t *d = NULL;
    bl_model_t *m = NULL;
    bl_trainer_t *t = NULL;
    bl_status_t st = bl_dataset_from_memory(rt, N, F, K, x, y, &d);
    if (st == BL_OK) {
        st = test_mlp(rt, F, (const int[]){16}, 1, K, 7, &m);
    }
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 32;
    cfg.pipeline.stages = stages;
    cfg.pipeline.micro_batches = stages > 1 ? 2 : 1;
    cfg.transport.node_reduce = 0;
    cfg.diagnostics.timeout_s = 20; /* a rank left waiting fails the test, not the ctest timeout */
    if (st == BL_OK) {
        st = bl_trainer_create(rt, m, d, &cfg, &t);
    }
    if (st == BL_OK) {
        st = bl_trainer_run(t, 3, NULL, NULL);
    }
    check(st == BL_OK, "%d stages: 3 steps: %s", stages, bl_last_error(rt));
    if (st != BL_OK) {
        goto done;
    }
    if (rt->rank == rt->size - 1) {
        float *p = bl_model_params(m);
        for (size_t i = 0; i < bl_model_param_count(m); i++) {
            p[i] = nextafterf(p[i], INFINITY);
        }
    }
    /* The last rank's stage group finds it; every other rank learns. */
    int replicas = rt->size / stages;
    st = bl_trainer_run(t, 1, NULL, NULL);
    const char *msg = bl_last_error(rt);
    if (replicas == 1) {
        check(st == BL_OK, "%d stages, one replica: %s", stages, msg);
    } else {
        int in_group = rt->rank % stages == (rt->size - 1) % stages;
        const char *want = in_group ? "replicas diverged by step 4: rank "
                                    : "the replica check failed on another rank";
        check(st == BL_ERR_MISMATCH && strstr(msg, want) != NULL,
              "%d stages: the run after the nudge: status %s, message '%s'", stages,
              bl_status_string(st), msg);
        char dir[64];
        snprintf(dir, sizeof dir, "/tmp/ballast-replica-%ld", (long)getpid());
        st = bl_trainer_save_checkpoint(t, dir, 1, NULL, 0);
        check(st == BL_ERR_MISMATCH, "%d stages: the checkpoint after the nudge: status %s (%s)",
              stages, bl_status_string(st), bl_last_error(rt));
        check(access(dir, F_OK) != 0, "%d stages: %s was written", stages, dir);
    }
done:
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(d);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    bl_runtime_t *rt = NULL;
    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt);
    check(st == BL_OK, "runtime: %s", bl_status_string(st));
    int P = rt != NULL ? rt->size : 1;
    int odd = P - 1; /* the rank made to differ */
    char msg[1024], want[256];

    fill();
    st = run_check(rt, 0, COUNT, msg, sizeof msg);
    check(st == BL_OK, "equal replicas: %s", msg);

    /* One parameter one ulp up on the last rank, in the second chunk. */
    if (rt->rank == odd) {
        params[270000] = nextafterf(params[270000], 1.0f);
    }
    st = run_check(rt, 0, COUNT, msg, sizeof msg);
    if (P == 1) {
        check(st == BL_OK, "one member: %s", msg);
    } else {
        snprintf(want, sizeof want,
                 "replicas diverged by step 42: rank %d holds parameters or momentum that differ "
                 "from rank 0's, the first of its data-parallel group (1 of %d parameter values "
                 "and 0 momentum values differ in the group, by up to ",
                 odd, COUNT);
        check(st == BL_ERR_MISMATCH && strstr(msg, want) != NULL,
              "one parameter off: status %s, message '%s'", bl_status_string(st), msg);
        /* Outside the compared range, nobody looks. */
        st = run_check(rt, 0, 270000, msg, sizeof msg);
        check(st == BL_OK, "a difference past the range: %s", msg);
    }
    fill();

    /* Momentum only, on every rank but the first, with a NaN on one. */
    if (rt->rank > 0) {
        velocity[7] = -velocity[7] - 1.0f;
        velocity[8] = rt->rank == odd ? NAN : velocity[8];
    }
    st = run_check(rt, 0, COUNT, msg, sizeof msg);
    if (P > 1) {
        snprintf(want, sizeof want, "rank 1 holds parameters or momentum that differ");
        check(st == BL_ERR_MISMATCH && strstr(msg, want) != NULL,
              "momentum off: status %s, message '%s'", bl_status_string(st), msg);
        snprintf(want, sizeof want, "(0 of %d parameter values and %d momentum values differ",
                 COUNT, P); /* rank 1..P-1 at 7, the last also at 8 */
        check(strstr(msg, want) != NULL && strstr(msg, "by up to inf") != NULL,
              "momentum off: counts and NaN in '%s'", msg);
    }
    fill();

    /* No group, or the arrays equal again: nothing to say. */
    st = bl_replicas_check(rt, MPI_COMM_NULL, 42, params, velocity, 0, COUNT);
    check(st == BL_OK, "MPI_COMM_NULL: %s", bl_status_string(st));
    st = run_check(rt, 0, COUNT, msg, sizeof msg);
    check(st == BL_OK, "equal again: %s", msg);

    check_trainer(rt, 1);
    if (P % 2 == 0 && P >= 4) {
        check_trainer(rt, 2);
    }
    /* A range that starts past the first value is compared from there. */
    if (rt->rank == odd) {
        params[5] = -params[5] - 1.0f;
    }
    st = run_check(rt, 6, COUNT - 6, msg, sizeof msg);
    check(st == BL_OK, "a difference before the range: %s", msg);
    st = run_check(rt, 5, COUNT - 5, msg, sizeof msg);
    check(P == 1 || st == BL_ERR_MISMATCH, "a difference at the range's start: %s", msg);
    fill();

    bl_runtime_destroy(rt);
    int failures = check_total();
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        printf("test_replica_check: %d ranks, %d failures\n", P, failures);
    }
    MPI_Finalize();
    return failures == 0 ? 0 : 1;
}
