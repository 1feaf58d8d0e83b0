/* Bounded waits: hang detection for a step's communication. */
#include <time.h>

#include "runtime_impl.h"

/* Polls until done or the bound passes: spins on MPI_Test for the first
 * millisecond (a step's messages usually arrive within it), then sleeps
 * 50 µs between tests. Returns 1 when done, 0 on timeout; *rc is MPI's. */
static int poll(bl_runtime_t *rt, int n, MPI_Request *reqs, int *index, int *rc)
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
        if (waited > rt->wait_timeout_s) {
            return 0;
        }
        if (waited > 1e-3) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static bl_status_t timed_out(bl_runtime_t *rt, const char *op, int peer)
{
    if (peer >= 0) {
        return bl_fail(rt, BL_ERR_TIMEOUT,
                       "step %ld: %s did not complete within %g s: rank %d had not arrived",
                       rt->wait_step, op, rt->wait_timeout_s, peer);
    }
    return bl_fail(rt, BL_ERR_TIMEOUT,
                   "step %ld: %s did not complete within %g s: at least one rank of the "
                   "collective had not arrived (a collective does not say which; their own "
                   "messages name the operations they are in)",
                   rt->wait_step, op, rt->wait_timeout_s);
}

bl_status_t bl_wait_bounded(bl_runtime_t *rt, MPI_Request *req, const char *op, int peer)
{
    int rc;
    if (rt->wait_timeout_s <= 0.0) {
        rc = MPI_Wait(req, MPI_STATUS_IGNORE);
    } else if (!poll(rt, -1, req, NULL, &rc)) {
        return timed_out(rt, op, peer);
    }
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, op);
}

bl_status_t bl_waitany_bounded(bl_runtime_t *rt, int n, MPI_Request *reqs, int *index,
                               const char *op)
{
    int rc;
    *index = MPI_UNDEFINED;
    if (rt->wait_timeout_s <= 0.0) {
        rc = MPI_Waitany(n, reqs, index, MPI_STATUS_IGNORE);
    } else if (!poll(rt, n, reqs, index, &rc)) {
        return timed_out(rt, op, -1);
    }
    if (rc == MPI_SUCCESS && *index == MPI_UNDEFINED) {
        rc = MPI_ERR_REQUEST;
    }
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, op);
}
