/* The NCCL gradient reduction of a group of GPUs (nccl_sync.h). */
#include <stdio.h>
#include <string.h>

#include "nccl_sync.h"

#ifdef BALLAST_HAVE_CUDA
#include "comm.h"

/* The least bound on NCCL's set-up, in seconds (--timeout may raise it). */
#define BL_NCCL_SETUP_S 120.0

/* Did any member of dp fail? Like bl_agree, over the group only: the
 * trainer agrees over the whole job afterwards. */
static bl_status_t agree_in_group(bl_runtime_t *rt, MPI_Comm dp, bl_status_t mine, const char *what)
{
    int failed = mine != BL_OK;
    bl_status_t st = bl_allreduce_bounded(rt, MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, dp, what);
    if (mine != BL_OK || st != BL_OK) {
        return mine != BL_OK ? mine : st;
    }
    return failed ? bl_fail(rt, BL_ERR_NCCL, "%s failed on another rank", what) : BL_OK;
}

static bl_status_t nccl_failed(bl_nccl_sync_t *n, bl_status_t status, const char *err)
{
    return bl_fail(n->rt, status, "rank %d (%s): %s", n->rt->rank, n->rt->device.name, err);
}

bl_status_t bl_nccl_sync_init(bl_nccl_sync_t *n, bl_runtime_t *rt, MPI_Comm dp, float *grads,
                              double timeout_s)
{
    memset(n, 0, sizeof *n);
    n->rt = rt;
    n->grads = grads;
    n->timeout_s = timeout_s;
    int rank = 0, size = 1;
    MPI_Comm_rank(dp, &rank);
    MPI_Comm_size(dp, &size);
    unsigned char id[BL_NCCL_ID_BYTES] = {0};
    char err[512] = "";
    bl_status_t st = BL_OK;
    /* The id is made once, by the group's first rank; a failure there
     * still takes part in the broadcast (of zeros), then all agree. */
    if (rank == 0 && bl_nccl_unique_id(id, err, sizeof err) != 0) {
        st = nccl_failed(n, BL_ERR_NCCL, err);
    }
    bl_status_t sent = bl_bcast_bounded(rt, id, BL_NCCL_ID_BYTES, MPI_BYTE, 0, dp,
                                        "the broadcast of the NCCL unique id");
    if (sent != BL_OK) {
        return sent;
    }
    st = agree_in_group(rt, dp, st, "making the NCCL unique id");
    if (st != BL_OK) {
        return st;
    }
    /* Set-up takes seconds and a member that failed before it never
     * comes: it is always bounded, by the step's bound or more. */
    double setup_s = timeout_s > BL_NCCL_SETUP_S ? timeout_s : BL_NCCL_SETUP_S;
    if (bl_nccl_comm_create(id, size, rank, setup_s, &n->comm, err, sizeof err) != 0) {
        n->comm = NULL;
        st = nccl_failed(n, strstr(err, "timed out") != NULL ? BL_ERR_TIMEOUT : BL_ERR_NCCL, err);
    }
    st = agree_in_group(rt, dp, st, "the NCCL communicator set-up");
    if (st == BL_OK) {
        char version[32];
        bl_nccl_version(version, sizeof version);
        bl_log(rt, BL_LOG_DEBUG, "NCCL %s communicator of %d GPUs", version, size);
    } else {
        bl_nccl_sync_free(n, 0);
    }
    return st;
}

/* A bucket: [first, first + count) of the gradients, summed in place. */
static bl_status_t post_bucket(size_t first, size_t count, void *arg)
{
    bl_nccl_sync_t *n = arg;
    char err[512];
    if (bl_nccl_allreduce_sum(n->comm, n->grads + first, count, err, sizeof err) != 0) {
        return nccl_failed(n, BL_ERR_NCCL, err);
    }
    return BL_OK;
}

static bl_status_t wait_buckets(void *arg)
{
    bl_nccl_sync_t *n = arg;
    char err[512];
    char op[96];
    snprintf(op, sizeof op, "all-reduce of the gradients (step %ld)", n->rt->wait_step);
    if (bl_nccl_wait(n->comm, n->timeout_s, op, err, sizeof err) == 0) {
        return BL_OK;
    }
    if (strstr(err, "timed out") != NULL) {
        /* Like an MPI timeout: requests may be pending for good. */
        n->rt->gave_up = 1;
        return nccl_failed(n, BL_ERR_TIMEOUT, err);
    }
    return nccl_failed(n, BL_ERR_NCCL, err);
}

bl_grad_device_t bl_nccl_sync_hooks(bl_nccl_sync_t *n)
{
    return (bl_grad_device_t){.post = post_bucket, .wait = wait_buckets, .arg = n};
}

void bl_nccl_sync_free(bl_nccl_sync_t *n, int healthy)
{
    if (n->comm != NULL && healthy) {
        bl_nccl_comm_destroy(n->comm);
    } else if (n->comm != NULL) {
        bl_nccl_comm_abort(n->comm);
    }
    memset(n, 0, sizeof *n);
}

#else /* no CUDA backend: no GPU rank can reach this */

bl_status_t bl_nccl_sync_init(bl_nccl_sync_t *n, bl_runtime_t *rt, MPI_Comm dp, float *grads,
                              double timeout_s)
{
    (void)dp;
    (void)grads;
    (void)timeout_s;
    memset(n, 0, sizeof *n);
    return bl_fail(rt, BL_ERR_UNSUPPORTED, "NCCL: this ballast was built without CUDA");
}

bl_grad_device_t bl_nccl_sync_hooks(bl_nccl_sync_t *n)
{
    (void)n;
    return (bl_grad_device_t){0};
}

void bl_nccl_sync_free(bl_nccl_sync_t *n, int healthy)
{
    (void)healthy;
    memset(n, 0, sizeof *n);
}

#endif
