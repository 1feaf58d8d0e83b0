/* Bounded waits (wait.h), which detect hangs in a step's communication. */
#include <stdio.h>
#include <time.h>

#include "runtime_impl.h"
#include "wait.h"
#include "rollcall.h"

/* The polling of a bounded wait: MPI_Test back to back for SPIN_S (a
 * step's messages usually arrive within it, and a wait that short costs
 * nothing in latency: with a spin of 200 µs a 2-ms step waiting ~1 ms for
 * a slower rank ran 2.7% slower), then naps between tests of a
 * sixteenth of the time waited so far, at least NAP_MIN_S and at most
 * NAP_MAX_S. So a wait ends at most a sixteenth (or 0.5 ms) after its request
 * completes, and a long wait costs the CPU a few dozen tests, not one every
 * 50 µs: a rank held to a CPU quota (a cgroup) that waits for a faster one
 * does not spend its quota on polling, which would throttle its compute
 * whatever share of the batch it is given. */
#define SPIN_S    1e-3
#define NAP_MIN_S 20e-6
#define NAP_MAX_S 500e-6

/* Polls one request (n < 0) or any of n requests until it is done or the
 * bound passes (no bound when rt->wait_timeout_s <= 0), answering roll
 * calls while it naps. Waits without a bound poll too, rather than calling
 * MPI_Wait, which spins at full speed for as long as it waits. Returns 1
 * when done (or when MPI failed) and 0 on a timeout; *rc is MPI's return
 * code. */
static int poll(bl_runtime_t *rt, int n, MPI_Request *reqs, int *index, int *rc, const char *op)
{
    double start = bl_now_seconds();
    for (;;) {
        int done = 0;
        *rc = n < 0 ? MPI_Test(reqs, &done, MPI_STATUS_IGNORE)
                    : MPI_Testany(n, reqs, index, &done, MPI_STATUS_IGNORE);
        if (*rc != MPI_SUCCESS || done) {
            return 1;
        }
        double waited = bl_now_seconds() - start;
        if (rt->wait_timeout_s > 0.0 && waited > rt->wait_timeout_s) {
            return 0;
        }
        if (waited > SPIN_S) {
            bl_rollcall_answer(rt, op);
            double nap = waited / 16.0;
            nap = nap < NAP_MIN_S ? NAP_MIN_S : (nap > NAP_MAX_S ? NAP_MAX_S : nap);
            struct timespec ts = {0, (long)(nap * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}

/* Records a timeout on rt, marks the runtime as given up and returns
 * BL_ERR_TIMEOUT. The message of a transfer names its peer; for a
 * collective, a roll call of comm's members names those that had not
 * arrived. */
static bl_status_t timed_out(bl_runtime_t *rt, const char *op, int peer, MPI_Comm comm)
{
    rt->gave_up = 1;
    if (peer >= 0) {
        return bl_fail(rt, BL_ERR_TIMEOUT,
                       "step %ld: %s did not complete within %g s: rank %d had not arrived",
                       rt->wait_step, op, rt->wait_timeout_s, peer);
    }
    char missing[768];
    bl_rollcall_take(rt, comm, op, missing, sizeof missing);
    return bl_fail(rt, BL_ERR_TIMEOUT, "step %ld: %s did not complete within %g s%s", rt->wait_step,
                   op, rt->wait_timeout_s, missing);
}

static bl_status_t wait_one(bl_runtime_t *rt, MPI_Request *req, const char *op, int peer,
                            MPI_Comm comm)
{
    int rc;
    if (!poll(rt, -1, req, NULL, &rc, op)) {
        return timed_out(rt, op, peer, comm);
    }
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, op);
}

bl_status_t bl_wait_bounded(bl_runtime_t *rt, MPI_Request *req, const char *op, int peer)
{
    return wait_one(rt, req, op, peer, rt->comm);
}

bl_status_t bl_wait_collective(bl_runtime_t *rt, MPI_Request *req, const char *op, MPI_Comm comm)
{
    return wait_one(rt, req, op, -1, comm);
}

bl_status_t bl_waitany_collective(bl_runtime_t *rt, int n, MPI_Request *reqs, int *index,
                                  const char *op, MPI_Comm comm)
{
    int rc;
    *index = MPI_UNDEFINED;
    if (!poll(rt, n, reqs, index, &rc, op)) {
        return timed_out(rt, op, -1, comm);
    }
    if (rc == MPI_SUCCESS && *index == MPI_UNDEFINED) {
        rc = MPI_ERR_REQUEST;
    }
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, op);
}

bl_status_t bl_collective_posted(bl_runtime_t *rt, int rc, MPI_Request *req, const char *op,
                                 MPI_Comm comm)
{
    return rc != MPI_SUCCESS ? bl_fail_mpi(rt, rc, op) : bl_wait_collective(rt, req, op, comm);
}

bl_status_t bl_bcast_bounded(bl_runtime_t *rt, void *buf, int count, MPI_Datatype type, int root,
                             MPI_Comm comm, const char *op)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Ibcast(buf, count, type, root, comm, &req);
    return bl_collective_posted(rt, rc, &req, op, comm);
}

bl_status_t bl_allreduce_bounded(bl_runtime_t *rt, const void *send, void *recv, int count,
                                 MPI_Datatype type, MPI_Op mpi_op, MPI_Comm comm, const char *op)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallreduce(send, recv, count, type, mpi_op, comm, &req);
    return bl_collective_posted(rt, rc, &req, op, comm);
}

bl_status_t bl_reduce_bounded(bl_runtime_t *rt, const void *send, void *recv, int count,
                              MPI_Datatype type, MPI_Op mpi_op, int root, MPI_Comm comm,
                              const char *op)
{
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Ireduce(send, recv, count, type, mpi_op, root, comm, &req);
    return bl_collective_posted(rt, rc, &req, op, comm);
}

bl_status_t bl_agree_in(bl_runtime_t *rt, MPI_Comm group, bl_status_t mine, bl_status_t elsewhere,
                        const char *what)
{
    int failed = mine != BL_OK;
    bl_status_t st =
        bl_allreduce_bounded(rt, MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, group, what);
    if (mine != BL_OK || st != BL_OK) {
        return mine != BL_OK ? mine : st;
    }
    return failed ? bl_fail(rt, elsewhere, "%s failed on another rank", what) : BL_OK;
}

bl_status_t bl_agree(bl_runtime_t *rt, bl_status_t mine, bl_status_t elsewhere, const char *what)
{
    return bl_agree_in(rt, rt->comm, mine, elsewhere, what);
}

bl_status_t bl_agree_step(bl_runtime_t *rt, bl_status_t mine, const char *path, const char *step)
{
    int worst[2] = {(int)mine, rt->rank}; /* MPI_MAXLOC: the lowest rank of the largest */
    bl_status_t st = bl_allreduce_bounded(rt, MPI_IN_PLACE, worst, 1, MPI_2INT, MPI_MAXLOC,
                                          rt->comm, "the agreement on a file's writing");
    if (st != BL_OK || worst[0] == (int)BL_OK) {
        return st;
    }
    char cause[1024] = "";
    if (rt->rank == worst[1]) {
        snprintf(cause, sizeof cause, "%s", bl_last_error(rt));
    }
    st = bl_bcast_bounded(rt, cause, (int)sizeof cause, MPI_CHAR, worst[1], rt->comm,
                          "the broadcast of a file's failure");
    if (st != BL_OK) {
        return st;
    }
    if (rt->rank == worst[1]) {
        return mine;
    }
    char own[1024] = "";
    if (mine != BL_OK) {
        snprintf(own, sizeof own, "%s; and ", bl_last_error(rt));
    }
    return bl_fail(rt, (bl_status_t)worst[0], "%s%s: %s failed on rank %d: %s", own, path, step,
                   worst[1], cause);
}
