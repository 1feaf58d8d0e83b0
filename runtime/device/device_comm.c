/* Device communicators (device_comm.h): the code that both kinds share, and
 * the mirror's kind, which runs MPI on its memory in NCCL's order. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "device_comm_impl.h"
#include "wait.h"

static bl_status_t agree_in_group(bl_runtime_t *rt, MPI_Comm group, bl_status_t mine,
                                  const char *what)
{
    return bl_agree_in(rt, group, mine, BL_ERR_MISMATCH, what);
}

/* ---- The mirror: MPI in NCCL's order ---------------------------------- */

/* Completes the group of transfers in flight on the rank, whichever device
 * communicator posted it, so that the next group starts only after it, as
 * on NCCL's one comm stream. Returns BL_OK when nothing is in flight, else
 * the status of the bounded waits. */
static bl_status_t settle(bl_runtime_t *rt)
{
    bl_device_comm_t *c = rt->device_in_flight;
    bl_status_t st = BL_OK;
    if (c == NULL) {
        return BL_OK;
    }
    rt->device_in_flight = NULL;
    for (int i = 0; i < 2 && st == BL_OK; i++) {
        if (c->requests[i] == MPI_REQUEST_NULL) {
            continue;
        }
        st = c->peers[i] < 0
                 ? bl_wait_collective(rt, &c->requests[i], c->posted, c->mpi)
                 : bl_wait_bounded(rt, &c->requests[i], c->posted, c->job_ranks[c->peers[i]]);
    }
    return st;
}

static bl_status_t mirror_allreduce(bl_device_comm_t *c, float *buf, size_t count)
{
    bl_status_t st = settle(c->rt);
    if (st != BL_OK) {
        return st;
    }
    if (count > (size_t)INT_MAX) {
        return bl_fail(c->rt, BL_ERR_UNSUPPORTED,
                       "the %s all-reduce of %zu floats is more than one MPI call carries", c->role,
                       count);
    }
    snprintf(c->posted, sizeof c->posted, "the %s all-reduce of %zu floats (mirror)", c->role,
             count);
    c->peers[0] = -1;
    int rc =
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, c->mpi, &c->requests[0]);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(c->rt, rc, c->posted);
    }
    c->rt->device_in_flight = c;
    return BL_OK;
}

static bl_status_t mirror_exchange(bl_device_comm_t *c, const float *send, size_t send_count,
                                   int to, float *recv, size_t recv_count, int from)
{
    bl_status_t st = settle(c->rt);
    if (st != BL_OK) {
        return st;
    }
    if ((to >= 0 && send_count > (size_t)INT_MAX) || (from >= 0 && recv_count > (size_t)INT_MAX)) {
        return bl_fail(c->rt, BL_ERR_UNSUPPORTED,
                       "a %s transfer of %zu floats is more than one MPI call carries", c->role,
                       send_count > recv_count ? send_count : recv_count);
    }
    /* The message reads, e.g., "the pipeline transfers (mirror: 96 floats to
     * rank 1, 96 floats from rank 1)". */
    char part[2][48] = {"", ""};
    if (to >= 0) {
        snprintf(part[0], sizeof part[0], "%zu floats to rank %d", send_count, c->job_ranks[to]);
    }
    if (from >= 0) {
        snprintf(part[1], sizeof part[1], "%s%zu floats from rank %d", to >= 0 ? ", " : "",
                 recv_count, c->job_ranks[from]);
    }
    snprintf(c->posted, sizeof c->posted, "the %s transfers (mirror: %s%s)", c->role, part[0],
             part[1]);
    int rc = MPI_SUCCESS;
    if (from >= 0) {
        c->peers[0] = from;
        rc = MPI_Irecv(recv, (int)recv_count, MPI_FLOAT, from, 0, c->mpi, &c->requests[0]);
    }
    /* The send is synchronous: it completes only once the receiver has
     * matched it. */
    if (rc == MPI_SUCCESS && to >= 0) {
        c->peers[1] = to;
        rc = MPI_Issend(send, (int)send_count, MPI_FLOAT, to, 0, c->mpi, &c->requests[1]);
    }
    c->rt->device_in_flight = c;
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(c->rt, rc, c->posted);
}

static bl_status_t mirror_wait(bl_device_comm_t *c, const char *op)
{
    (void)op; /* the transfers name themselves in messages */
    return settle(c->rt);
}

static void mirror_release(bl_device_comm_t *c, int healthy)
{
    if (c->rt->device_in_flight == c) {
        if (healthy) {
            settle(c->rt);
        } else if (c->requests[0] != MPI_REQUEST_NULL) {
            /* The communicator is abandoned, and a receive must not land
             * in buffers that are freed next (a send only reads, so it
             * stays pending). */
            MPI_Cancel(&c->requests[0]);
            MPI_Wait(&c->requests[0], MPI_STATUS_IGNORE);
        }
        c->rt->device_in_flight = NULL;
    }
    if (c->mpi != MPI_COMM_NULL) {
        MPI_Comm_free(&c->mpi);
    }
}

static const bl_device_comm_ops_t mirror_ops = {
    .name = "MPI in NCCL's place (mirror)",
    .allreduce = mirror_allreduce,
    .exchange = mirror_exchange,
    .wait = mirror_wait,
    .release = mirror_release,
};

static bl_status_t mirror_open(bl_device_comm_t *c, MPI_Comm group)
{
    int rc = MPI_Comm_dup(group, &c->mpi);
    if (rc == MPI_SUCCESS) {
        rc = MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN);
    }
    bl_status_t st = BL_OK;
    c->ops = &mirror_ops; /* its release frees the duplicate, whatever happens next */
    if (rc != MPI_SUCCESS) {
        st = bl_fail_mpi(c->rt, rc, "duplicating a group for the mirror's transfers");
    }
    return agree_in_group(c->rt, group, st, "the mirror's device communicator");
}

/* ---- Both kinds ------------------------------------------------------- */

/* Learns each member's rank in the job (in rt->comm) into c->job_ranks,
 * for messages. Returns BL_OK, BL_ERR_NO_MEM or BL_ERR_MPI; it does not
 * communicate. */
static bl_status_t learn_job_ranks(bl_device_comm_t *c, MPI_Comm group)
{
    const bl_allocator_t *a = bl_rt_allocator(c->rt);
    int *mine = bl_mem_array(a, (size_t)c->size, sizeof *mine);
    c->job_ranks = bl_mem_array(a, (size_t)c->size, sizeof *c->job_ranks);
    bl_status_t st = BL_OK;
    if (mine == NULL || c->job_ranks == NULL) {
        st = bl_fail(c->rt, BL_ERR_NO_MEM, "no memory for a group of %d ranks", c->size);
    }
    MPI_Group from = MPI_GROUP_NULL, to = MPI_GROUP_NULL;
    if (st == BL_OK && (MPI_Comm_group(group, &from) != MPI_SUCCESS ||
                        MPI_Comm_group(c->rt->comm, &to) != MPI_SUCCESS)) {
        st = bl_fail(c->rt, BL_ERR_MPI, "MPI_Comm_group of a device communicator's group");
    }
    for (int i = 0; st == BL_OK && i < c->size; i++) {
        mine[i] = i;
    }
    if (st == BL_OK &&
        MPI_Group_translate_ranks(from, c->size, mine, to, c->job_ranks) != MPI_SUCCESS) {
        st = bl_fail(c->rt, BL_ERR_MPI, "MPI_Group_translate_ranks of a device communicator");
    }
    if (from != MPI_GROUP_NULL) {
        MPI_Group_free(&from);
    }
    if (to != MPI_GROUP_NULL) {
        MPI_Group_free(&to);
    }
    bl_mem_free(a, mine);
    return st;
}

bl_status_t bl_device_comm_open(bl_runtime_t *rt, MPI_Comm group, const char *role,
                                double timeout_s, bl_device_comm_t **out)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    *out = NULL;
    bl_device_comm_t *c = bl_mem_alloc(a, sizeof *c);
    if (c == NULL) {
        return agree_in_group(rt, group, bl_fail(rt, BL_ERR_NO_MEM, "no memory for a communicator"),
                              "opening a device communicator");
    }
    memset(c, 0, sizeof *c);
    c->rt = rt;
    c->mpi = MPI_COMM_NULL;
    c->requests[0] = c->requests[1] = MPI_REQUEST_NULL;
    c->timeout_s = timeout_s;
    snprintf(c->role, sizeof c->role, "%s", role);
    MPI_Comm_rank(group, &c->rank);
    MPI_Comm_size(group, &c->size);
    bl_status_t st = learn_job_ranks(c, group);
    st = agree_in_group(rt, group, st, "opening a device communicator");
    if (st == BL_OK) {
        switch (rt->device.kind) {
        case BL_DEVICE_MIRROR:
            st = mirror_open(c, group);
            break;
        case BL_DEVICE_CUDA:
            st = bl_nccl_comm_open(c, group);
            break;
        default:
            st = agree_in_group(rt, group,
                                bl_fail(rt, BL_ERR_UNSUPPORTED,
                                        "rank %d computes on %s: no device communicator", rt->rank,
                                        rt->device.name),
                                "opening a device communicator");
        }
    }
    if (st != BL_OK) {
        bl_device_comm_free(c, 0);
        return st;
    }
    *out = c;
    return BL_OK;
}

void bl_device_comm_free(bl_device_comm_t *c, int healthy)
{
    if (c == NULL) {
        return;
    }
    if (c->ops != NULL) {
        c->ops->release(c, healthy);
    }
    const bl_allocator_t *a = bl_rt_allocator(c->rt);
    bl_mem_free(a, c->job_ranks);
    bl_mem_free(a, c);
}

const char *bl_device_comm_name(const bl_device_comm_t *c)
{
    return c != NULL && c->ops != NULL ? c->ops->name : "none";
}

bl_status_t bl_device_comm_allreduce(bl_device_comm_t *c, float *buf, size_t count)
{
    return c->ops->allreduce(c, buf, count);
}

bl_status_t bl_device_comm_exchange(bl_device_comm_t *c, const float *send, size_t send_count,
                                    int to, float *recv, size_t recv_count, int from)
{
    if ((to >= c->size || from >= c->size) || (to >= 0 && send == NULL && send_count > 0) ||
        (from >= 0 && recv == NULL && recv_count > 0)) {
        return bl_fail(c->rt, BL_ERR_INVALID_ARG,
                       "internal: a %s exchange with members %d and %d of %d (buffers %s, %s)",
                       c->role, to, from, c->size, send != NULL ? "set" : "NULL",
                       recv != NULL ? "set" : "NULL");
    }
    /* An empty transfer is no transfer, on both sides alike (the peers'
     * counts agree). */
    to = send_count > 0 ? to : -1;
    from = recv_count > 0 ? from : -1;
    if (to < 0 && from < 0) {
        return BL_OK;
    }
    return c->ops->exchange(c, send, send_count, to, recv, recv_count, from);
}

bl_status_t bl_device_comm_wait(bl_device_comm_t *c, const char *op)
{
    return c->ops->wait(c, op);
}
