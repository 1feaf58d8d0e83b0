/* The NCCL kind of device communicator (device_comm.h), built on the
 * backend's NCCL calls (cuda/comm.h). */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "device_comm_impl.h"
#include "wait.h"

/* Returns the backend's functions (cuda/backend.h), which a GPU rank's
 * device holds; on other ranks it returns NULL. */
static const bl_cuda_backend_t *gpu(const bl_device_comm_t *c)
{
    return c->rt->device.cuda;
}

/* The smallest bound on NCCL's set-up, in seconds (a longer timeout raises
 * the bound). */
#define BL_NCCL_SETUP_S 120.0

static bl_status_t nccl_failed(bl_device_comm_t *c, bl_status_t status, const char *err)
{
    return bl_fail(c->rt, status, "rank %d (%s): %s", c->rt->rank, c->rt->device.name, err);
}

static bl_status_t timed_out_or(bl_device_comm_t *c, const char *err)
{
    if (strstr(err, "timed out") != NULL) {
        /* As after an MPI timeout, transfers may be pending for good. */
        c->rt->gave_up = 1;
        return nccl_failed(c, BL_ERR_TIMEOUT, err);
    }
    return nccl_failed(c, BL_ERR_NCCL, err);
}

/* Makes the rank's calls reach NCCL's one comm stream in the order posted,
 * on whichever communicator: another communicator's last call is settled
 * onto the stream before c posts, because NCCL orders the calls of one
 * communicator only. Afterwards c is the one to settle next. Returns BL_OK,
 * or the failure of the settling (BL_ERR_TIMEOUT or BL_ERR_NCCL). */
static bl_status_t settle_others(bl_device_comm_t *c)
{
    bl_device_comm_t *last = c->rt->device_in_flight;
    char err[512];
    c->rt->device_in_flight = c;
    if (last == NULL || last == c || last->nccl == NULL) {
        return BL_OK;
    }
    return gpu(c)->nccl_settle(last->nccl, err, sizeof err) == 0 ? BL_OK : timed_out_or(last, err);
}

static bl_status_t nccl_allreduce(bl_device_comm_t *c, float *buf, size_t count)
{
    char err[512];
    bl_status_t st = settle_others(c);
    if (st == BL_OK && gpu(c)->nccl_allreduce_sum(c->nccl, buf, count, err, sizeof err) != 0) {
        st = nccl_failed(c, BL_ERR_NCCL, err);
    }
    return st;
}

static bl_status_t nccl_exchange(bl_device_comm_t *c, const float *send, size_t send_count, int to,
                                 float *recv, size_t recv_count, int from)
{
    char err[512] = "", closing[512] = "";
    bl_status_t st = settle_others(c);
    if (st != BL_OK) {
        return st;
    }
    /* c's own last call is settled as well, before the group opens: NCCL
     * takes no new call on a communicator while one is in progress, and the
     * send and the receive would otherwise poll it from inside the group. */
    if (gpu(c)->nccl_settle(c->nccl, err, sizeof err) != 0) {
        return timed_out_or(c, err);
    }
    /* The send and the receive go in one group, so that they run together
     * (a stage sends its output while it receives its next input from the
     * same neighbour). The group is closed even after a failure inside it. */
    int failed = gpu(c)->nccl_group_start(err, sizeof err) != 0;
    if (failed) {
        return nccl_failed(c, BL_ERR_NCCL, err);
    }
    if (to >= 0) {
        failed = gpu(c)->nccl_send(c->nccl, send, send_count, to, err, sizeof err) != 0;
    }
    if (!failed && from >= 0) {
        failed = gpu(c)->nccl_recv(c->nccl, recv, recv_count, from, err, sizeof err) != 0;
    }
    if (gpu(c)->nccl_group_end(c->nccl, closing, sizeof closing) != 0 && !failed) {
        failed = 1;
        snprintf(err, sizeof err, "%s", closing);
    }
    return failed ? nccl_failed(c, BL_ERR_NCCL, err) : BL_OK;
}

static bl_status_t nccl_wait(bl_device_comm_t *c, const char *op)
{
    char err[512];
    char what[128];
    snprintf(what, sizeof what, "%s (step %ld)", op, c->rt->wait_step);
    /* Everything posted goes onto the stream first; the wait then settles
     * c's own last call. */
    bl_status_t st = settle_others(c);
    if (st != BL_OK) {
        return st;
    }
    c->rt->device_in_flight = NULL;
    return gpu(c)->nccl_wait(c->nccl, c->timeout_s, what, err, sizeof err) == 0
               ? BL_OK
               : timed_out_or(c, err);
}

static void nccl_release(bl_device_comm_t *c, int healthy)
{
    if (c->rt->device_in_flight == c) {
        c->rt->device_in_flight = NULL;
    }
    if (c->nccl != NULL && healthy) {
        gpu(c)->nccl_comm_destroy(c->nccl);
    } else if (c->nccl != NULL) {
        gpu(c)->nccl_comm_abort(c->nccl);
    }
    c->nccl = NULL;
}

static const bl_device_comm_ops_t nccl_ops = {
    .name = "NCCL",
    .allreduce = nccl_allreduce,
    .exchange = nccl_exchange,
    .wait = nccl_wait,
    .release = nccl_release,
};

bl_status_t bl_nccl_comm_open(bl_device_comm_t *c, MPI_Comm group)
{
    unsigned char id[BL_NCCL_ID_BYTES] = {0};
    char err[512] = "";
    bl_status_t st = BL_OK;
    /* The group's first rank makes the id, once. A rank that failed still
     * takes part in the broadcast (of zeros, when the first rank failed),
     * and then all members agree on the outcome. */
    if (gpu(c) == NULL) {
        /* device_group.c opens NCCL only for groups of GPU ranks */
        st = bl_fail(c->rt, BL_ERR_UNSUPPORTED, "rank %d (%s): NCCL needs a GPU rank", c->rt->rank,
                     c->rt->device.name);
    } else if (c->rank == 0 && gpu(c)->nccl_unique_id(id, err, sizeof err) != 0) {
        st = nccl_failed(c, BL_ERR_NCCL, err);
    }
    bl_status_t sent = bl_bcast_bounded(c->rt, id, BL_NCCL_ID_BYTES, MPI_BYTE, 0, group,
                                        "the broadcast of the NCCL unique id");
    if (sent != BL_OK) {
        return sent;
    }
    st = bl_agree_in(c->rt, group, st, BL_ERR_NCCL, "making the NCCL unique id");
    if (st != BL_OK) {
        return st;
    }
    /* The set-up takes seconds, and a member that failed before it never
     * comes, so the set-up is always bounded, by the step's bound or by
     * more. */
    double setup_s = c->timeout_s > BL_NCCL_SETUP_S ? c->timeout_s : BL_NCCL_SETUP_S;
    if (gpu(c)->nccl_comm_create(id, c->size, c->rank, setup_s, &c->nccl, err, sizeof err) != 0) {
        c->nccl = NULL;
        st = nccl_failed(c, strstr(err, "timed out") != NULL ? BL_ERR_TIMEOUT : BL_ERR_NCCL, err);
    }
    st = bl_agree_in(c->rt, group, st, BL_ERR_NCCL, "the NCCL communicator set-up");
    if (st == BL_OK) {
        char version[32];
        gpu(c)->nccl_version(version, sizeof version);
        bl_log(c->rt, BL_LOG_DEBUG, "NCCL %s %s communicator of %d GPUs", version, c->role,
               c->size);
        c->ops = &nccl_ops;
    } else if (c->nccl != NULL) {
        gpu(c)->nccl_comm_abort(c->nccl);
        c->nccl = NULL;
    }
    return st;
}
