/* The node-local gradient reduction through shared memory (node_reduce.h). */
#include <string.h>

#include "kernels.h"
#include "node_reduce.h"
#include "wait.h"

bl_status_t bl_node_whole_group(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm *node, int *yes)
{
    int size = 0, node_size = 0;
    MPI_Comm_size(dp, &size);
    int rc = MPI_Comm_split_type(dp, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, node);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(rt, rc, "MPI_Comm_split_type of the data-parallel group");
    }
    MPI_Comm_size(*node, &node_size);
    int mine = node_size == size, all = 0;
    bl_status_t st = bl_allreduce_bounded(rt, &mine, &all, 1, MPI_INT, MPI_MIN, dp,
                                          "choosing the gradient reduction");
    *yes = st == BL_OK && all;
    return st;
}

/* A bounded barrier between a step's phases. The window syncs around it make
 * every rank's stores before it visible to every rank's loads after it. */
static bl_status_t phase(bl_node_reduce_t *n, MPI_Win win, const char *op)
{
    MPI_Win_sync(win);
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Ibarrier(n->comm, &req);
    bl_status_t st = bl_collective_posted(n->rt, rc, &req, op, n->comm);
    MPI_Win_sync(win);
    return st;
}

bl_status_t bl_node_reduce_init(bl_node_reduce_t *n, bl_runtime_t *rt, MPI_Comm dp, bl_model_t *m,
                                float **velocity, int enabled)
{
    memset(n, 0, sizeof *n);
    n->rt = rt;
    n->comm = MPI_COMM_NULL;
    n->grads_win = n->state_win = MPI_WIN_NULL;
    int size = 0;
    MPI_Comm_size(dp, &size);
    if (!enabled || size < 2 || m->param_count == 0) {
        return BL_OK;
    }
    int yes = 0;
    bl_status_t st = bl_node_whole_group(rt, dp, &n->comm, &yes);
    if (st != BL_OK || !yes) {
        if (n->comm != MPI_COMM_NULL) {
            MPI_Comm_free(&n->comm);
        }
        return st;
    }
    MPI_Comm_rank(n->comm, &n->rank);
    MPI_Comm_size(n->comm, &n->size);
    size_t count = m->param_count;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    n->slices = bl_mem_array(a, (size_t)n->size, sizeof *n->slices);
    if (n->slices == NULL) {
        MPI_Comm_free(&n->comm);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d gradient pointers", n->size);
    }
    /* Every rank's gradients go in its own segment; the parameters and the
     * momentum go in rank 0's. */
    float *mine = NULL, *state = NULL;
    int rc = MPI_Win_allocate_shared((MPI_Aint)(count * sizeof(float)), sizeof(float),
                                     MPI_INFO_NULL, n->comm, &mine, &n->grads_win);
    if (rc == MPI_SUCCESS) {
        MPI_Aint bytes = n->rank == 0 ? (MPI_Aint)(2 * count * sizeof(float)) : 0;
        rc = MPI_Win_allocate_shared(bytes, sizeof(float), MPI_INFO_NULL, n->comm, &state,
                                     &n->state_win);
    }
    for (int q = 0; rc == MPI_SUCCESS && q < n->size; q++) {
        MPI_Aint bytes;
        int unit;
        float *base = NULL;
        rc = MPI_Win_shared_query(n->grads_win, q, &bytes, &unit, &base);
        n->slices[q] = base;
    }
    if (rc == MPI_SUCCESS) {
        MPI_Aint bytes;
        int unit;
        rc = MPI_Win_shared_query(n->state_win, 0, &bytes, &unit, &n->params);
    }
    if (rc != MPI_SUCCESS) {
        bl_node_reduce_free(n, 1);
        return bl_fail_mpi(rt, rc, "allocating the node's shared gradients and parameters");
    }
    n->velocity = n->params + count;
    /* One passive epoch lasts the whole run: loads and stores are plain memory
     * accesses, ordered by MPI_Win_sync and the barriers. */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, n->grads_win);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, n->state_win);
    if (n->rank == 0) {
        /* Every rank holds the same values (the start-up check compared the
         * parameters), so rank 0's go in. */
        memcpy(n->params, m->params, count * sizeof(float));
        memcpy(n->velocity, *velocity, count * sizeof(float));
    }
    memcpy(mine, m->grads, count * sizeof(float));
    n->own_params = m->params;
    n->own_grads = m->grads;
    n->own_velocity = *velocity;
    n->velocity_ref = velocity;
    n->model = m;
    m->params = n->params;
    m->grads = mine;
    *velocity = n->velocity;
    n->lo = count * (size_t)n->rank / (size_t)n->size;
    n->hi = count * (size_t)(n->rank + 1) / (size_t)n->size;
    for (int q = 0; q < n->size; q++) {
        n->slices[q] = n->slices[q] + n->lo; /* each rank's gradients, from this slice on */
    }
    n->active = 1;
    return phase(n, n->state_win, "sharing the parameters on the node");
}

bl_status_t bl_node_reduce_step(bl_node_reduce_t *n, double *loss_sum, long *correct,
                                float grad_scale, float lr, float momentum, float weight_decay)
{
    MPI_Request totals = MPI_REQUEST_NULL;
    if (loss_sum != NULL) {
        n->totals[0] = *loss_sum;
        n->totals[1] = (double)*correct;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, n->totals, 2, MPI_DOUBLE, MPI_SUM, n->comm, &totals);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(n->rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
        }
    }
    bl_status_t st = phase(n, n->grads_win, "the barrier before the node's gradient sum");
    if (st == BL_OK) {
        bl_cpu_sgd_update_summed(n->hi - n->lo, n->params + n->lo, n->velocity + n->lo, n->slices,
                                 n->size, grad_scale, lr, momentum, weight_decay);
        st = phase(n, n->state_win, "the barrier after the node's update");
    }
    /* After a failure the totals are left pending, since the job is ending. */
    if (st == BL_OK && loss_sum != NULL) {
        st = bl_wait_collective(n->rt, &totals, "the loss and accuracy all-reduce", n->comm);
        if (st == BL_OK) {
            *loss_sum = n->totals[0];
            *correct = (long)n->totals[1];
        }
    }
    return st;
}

void bl_node_reduce_free(bl_node_reduce_t *n, int collective)
{
    if (n->rt == NULL) {
        return;
    }
    if (n->active) {
        size_t count = n->model->param_count;
        memcpy(n->own_params, n->params, count * sizeof(float));
        memcpy(n->own_velocity, n->velocity, count * sizeof(float));
        memcpy(n->own_grads, n->model->grads, count * sizeof(float));
        n->model->params = n->own_params;
        n->model->grads = n->own_grads;
        *n->velocity_ref = n->own_velocity;
        MPI_Win_unlock_all(n->grads_win);
        MPI_Win_unlock_all(n->state_win);
    }
    if (collective) {
        if (n->grads_win != MPI_WIN_NULL) {
            MPI_Win_free(&n->grads_win);
        }
        if (n->state_win != MPI_WIN_NULL) {
            MPI_Win_free(&n->state_win);
        }
        if (n->comm != MPI_COMM_NULL) {
            MPI_Comm_free(&n->comm);
        }
    }
    bl_mem_free(bl_rt_allocator(n->rt), n->slices);
    memset(n, 0, sizeof *n);
}
