/* A timed-out collective names the ranks that had not arrived, and only
 * those: run under `mpirun -np 3`.
 *
 * Ranks 0 and 1 enter an all-reduce ("op A") under a bound; rank 2 is
 * elsewhere, in a bounded receive ("op B") that rank 0 completes later.
 * Rank 0's bound is 1 s, rank 1's and rank 2's 30 s, so when rank 0 gives
 * up and calls the roll, rank 1 answers from inside op A (arrived) and rank
 * 2 from inside op B (not arrived). Rank 0's error must name rank 2 with
 * its operation and step, and not rank 1. Then rank 0 releases rank 2,
 * which joins the all-reduce, so every request completes before the end.
 * The failure counts are all-reduced (mpi_check.h): exit status 0 only
 * when every rank passed. */
#include <stdio.h>
#include <string.h>

#include "ballast.h"
#include "mpi_check.h"
#include "runtime_impl.h"
#include "wait.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.blas_threads = 1;
    bl_runtime_t *rt = NULL;
    if (bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) != BL_OK || rt->size != 3) {
        printf("FAILED: needs a runtime on 3 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int rank = rt->rank;
    rt->wait_step = 5;
    rt->wait_timeout_s = rank == 0 ? 1.0 : 30.0;
    int one = 1, sum = 0;
    if (rank == 2) {
        int token = 0;
        MPI_Request req = MPI_REQUEST_NULL;
        MPI_Irecv(&token, 1, MPI_INT, 0, 99, rt->comm, &req);
        check(bl_wait_bounded(rt, &req, "op B", 0) == BL_OK && token == 7,
              "op B completes once rank 0 sends");
        check(bl_allreduce_bounded(rt, &one, &sum, 1, MPI_INT, MPI_SUM, rt->comm, "op A") == BL_OK,
              "rank 2 completes op A");
    } else {
        bl_status_t st =
            bl_allreduce_bounded(rt, &one, &sum, 1, MPI_INT, MPI_SUM, rt->comm, "op A");
        if (rank == 0) {
            const char *msg = bl_last_error(rt);
            printf("rank 0: %s\n", msg);
            check(st == BL_ERR_TIMEOUT, "op A times out on rank 0");
            check(strstr(msg, "step 5: op A did not complete within 1 s") != NULL,
                  "the message names the step, the operation and the bound");
            check(strstr(msg, "ranks that had not arrived: 2 (waiting in op B at step 5)") != NULL,
                  "rank 2 is named with its operation and step");
            check(strstr(msg, " 1 (") == NULL, "rank 1, which arrived, is not named");
            check(rt->gave_up == 1, "the runtime knows it gave up");
            int token = 7;
            MPI_Send(&token, 1, MPI_INT, 2, 99, rt->comm);
        } else {
            check(st == BL_OK && sum == 3, "op A completes on rank 1 with every rank's 1");
        }
    }
    /* Rank 0's timed-out all-reduce was left pending; MPI completes it
     * while rank 0 takes part in this one. */
    int all = check_total();
    if (rank == 0) {
        printf("ok: %d failures\n", all);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return all == 0 ? 0 : 1;
}
