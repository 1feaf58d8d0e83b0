/* The node-local gradient reduction through shared memory (node_reduce.h). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "node_reduce.h"
#include "wait.h"

#define PRETEND_ENV "BALLAST_PRETEND_NODES"

/* Returns the value of BALLAST_PRETEND_NODES: 0 when it is unset or empty, -1
 * when it is not a whole number in [1, INT_MAX]. */
static int pretend_value(void)
{
    const char *text = getenv(PRETEND_ENV);
    if (text == NULL || *text == '\0') {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long k = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || k < 1 || k > INT_MAX) {
        return -1;
    }
    return (int)k;
}

bl_status_t bl_node_pretend(bl_runtime_t *rt, MPI_Comm dp, int *k)
{
    *k = 0;
    int size = 0;
    MPI_Comm_size(dp, &size);
    int mine = pretend_value();
    /* The largest value and the negated smallest, so that every rank learns
     * whether all of them agree. */
    int v[2] = {mine, -mine};
    bl_status_t st = bl_allreduce_bounded(rt, MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, dp,
                                          "reading " PRETEND_ENV " on every rank");
    if (st != BL_OK) {
        return st;
    }
    int hi = v[0], lo = -v[1];
    if (lo < 0) {
        return mine < 0 ? bl_fail(rt, BL_ERR_INVALID_ARG,
                                  PRETEND_ENV "='%s' is not a positive whole number of nodes",
                                  getenv(PRETEND_ENV))
                        : bl_fail(rt, BL_ERR_INVALID_ARG,
                                  PRETEND_ENV " is not a positive whole number on another rank");
    }
    if (lo != hi) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       PRETEND_ENV " differs between the ranks of the data-parallel group "
                                   "(from %d to %d; 0 is unset)",
                       lo, hi);
    }
    if (hi > 0 && size % hi != 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       PRETEND_ENV "=%d does not divide the %d ranks of the data-parallel group",
                       hi, size);
    }
    *k = hi;
    return BL_OK;
}

bl_status_t bl_node_split(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm *node, bl_node_split_t *out)
{
    memset(out, 0, sizeof *out);
    int size = 0, rank = 0, node_size = 0;
    MPI_Comm_size(dp, &size);
    MPI_Comm_rank(dp, &rank);
    bl_status_t st = bl_node_pretend(rt, dp, &out->pretend);
    if (st != BL_OK) {
        return st;
    }
    int rc;
    if (out->pretend > 0) {
        /* Consecutive ranges of P/k ranks, each a pretend node. */
        rc = MPI_Comm_split(dp, rank / (size / out->pretend), rank, node);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(rt, rc,
                               "MPI_Comm_split of the data-parallel group into pretend nodes");
        }
        bl_log(rt, BL_LOG_INFO,
               "%s=%d: the %d ranks of the data-parallel group are %d pretend nodes of %d "
               "consecutive ranks",
               PRETEND_ENV, out->pretend, size, out->pretend, size / out->pretend);
    } else {
        rc = MPI_Comm_split_type(dp, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, node);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(rt, rc, "MPI_Comm_split_type of the data-parallel group");
        }
    }
    MPI_Comm_size(*node, &node_size);
    /* The largest node and the negated smallest. */
    int v[2] = {node_size, -node_size};
    st = bl_allreduce_bounded(rt, MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, dp,
                              "choosing the gradient reduction");
    if (st != BL_OK) {
        return st;
    }
    out->max_size = v[0];
    out->min_size = -v[1];
    if (out->min_size == out->max_size) {
        out->node_size = node_size;
        out->nodes = size / node_size;
    } else {
        /* Counted once per node, by its first rank. */
        int mine = 0;
        MPI_Comm_rank(*node, &mine);
        int first = mine == 0;
        st = bl_allreduce_bounded(rt, &first, &out->nodes, 1, MPI_INT, MPI_SUM, dp,
                                  "counting the nodes");
    }
    return st;
}

bl_status_t bl_node_whole_group(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm *node, int *yes)
{
    bl_node_split_t split;
    bl_status_t st = bl_node_split(rt, dp, node, &split);
    *yes = st == BL_OK && split.nodes == 1;
    return st;
}

int bl_node_split_usable(const bl_node_split_t *s)
{
    /* Real nodes of one rank each gain nothing from shared memory, and the
     * flat all-reduce's buckets overlap backward (measured faster at np 2:
     * bench_dp.sh --pretend-nodes); pretend nodes of one rank still take
     * the path, so that its cross-node code runs on one machine. */
    return s->node_size > 0 && (s->nodes == 1 || s->node_size > 1 || s->pretend > 0);
}

bl_status_t bl_node_phase(bl_runtime_t *rt, MPI_Comm comm, MPI_Win win, const char *op)
{
    MPI_Win_sync(win);
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Ibarrier(comm, &req);
    bl_status_t st = bl_collective_posted(rt, rc, &req, op, comm);
    MPI_Win_sync(win);
    return st;
}

int bl_node_windows(MPI_Comm comm, int rank, int size, size_t count, size_t state_floats,
                    MPI_Win *grads_win, MPI_Win *state_win, float **mine, const float **bases,
                    float **state)
{
    int rc = MPI_Win_allocate_shared((MPI_Aint)(count * sizeof(float)), sizeof(float),
                                     MPI_INFO_NULL, comm, mine, grads_win);
    float *ignored = NULL;
    if (rc == MPI_SUCCESS) {
        const MPI_Aint bytes = rank == 0 ? (MPI_Aint)(state_floats * sizeof(float)) : 0;
        rc =
            MPI_Win_allocate_shared(bytes, sizeof(float), MPI_INFO_NULL, comm, &ignored, state_win);
    }
    for (int q = 0; rc == MPI_SUCCESS && q < size; q++) {
        MPI_Aint bytes;
        int unit;
        float *base = NULL;
        rc = MPI_Win_shared_query(*grads_win, q, &bytes, &unit, &base);
        bases[q] = base;
    }
    if (rc == MPI_SUCCESS) {
        MPI_Aint bytes;
        int unit;
        rc = MPI_Win_shared_query(*state_win, 0, &bytes, &unit, state);
    }
    return rc;
}

/* A phase over this node's ranks. */
static bl_status_t phase(bl_node_reduce_t *n, MPI_Win win, const char *op)
{
    return bl_node_phase(n->rt, n->comm, win, op);
}

bl_status_t bl_node_reduce_init(bl_node_reduce_t *n, bl_runtime_t *rt, MPI_Comm dp, bl_model_t *m,
                                float **velocity, int enabled)
{
    memset(n, 0, sizeof *n);
    n->rt = rt;
    n->comm = n->cross = n->wide = MPI_COMM_NULL;
    n->grads_win = n->state_win = MPI_WIN_NULL;
    int size = 0, dp_rank = 0;
    MPI_Comm_size(dp, &size);
    MPI_Comm_rank(dp, &dp_rank);
    if (size < 2) {
        return BL_OK;
    }
    if (!enabled || m->param_count == 0) {
        /* A bad override is refused even when the reduction is off. */
        int k = 0;
        return bl_node_pretend(rt, dp, &k);
    }
    bl_node_split_t split;
    bl_status_t st = bl_node_split(rt, dp, &n->comm, &split);
    if (st == BL_OK && split.node_size == 0) {
        bl_log(rt, BL_LOG_INFO,
               "gradient reduction: MPI all-reduce, since the %d ranks lie on %d nodes of unequal "
               "size (%d to %d ranks) and the node-then-network reduction needs equal ones",
               size, split.nodes, split.min_size, split.max_size);
    }
    const int single = st == BL_OK && split.node_size == 1 && !bl_node_split_usable(&split);
    if (single) {
        bl_log(rt, BL_LOG_INFO,
               "gradient reduction: MPI all-reduce, since the %d ranks lie on %d nodes of one "
               "rank each",
               size, split.nodes);
    }
    if (st != BL_OK || split.node_size == 0 || single) {
        if (n->comm != MPI_COMM_NULL) {
            MPI_Comm_free(&n->comm);
        }
        return st;
    }
    n->nodes = split.nodes;
    if (n->nodes > 1) {
        /* Rank j of every node, in node order, and a copy of the group, so
         * that the totals' reduction has a communicator of its own. */
        int local = 0;
        MPI_Comm_rank(n->comm, &local);
        int rc = MPI_Comm_split(dp, local, dp_rank, &n->cross);
        if (rc == MPI_SUCCESS) {
            rc = MPI_Comm_dup(dp, &n->wide);
        }
        if (rc != MPI_SUCCESS) {
            bl_node_reduce_free(n, 1);
            return bl_fail_mpi(rt, rc, "splitting the data-parallel group across nodes");
        }
        bl_log(rt, BL_LOG_INFO,
               "gradient reduction: shared memory within %d %snodes of %d ranks, then MPI across "
               "nodes",
               n->nodes, split.pretend > 0 ? "pretend " : "", split.node_size);
    }
    MPI_Comm_rank(n->comm, &n->rank);
    MPI_Comm_size(n->comm, &n->size);
    size_t count = m->param_count;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    n->lo = count * (size_t)n->rank / (size_t)n->size;
    n->hi = count * (size_t)(n->rank + 1) / (size_t)n->size;
    n->slices = bl_mem_array(a, (size_t)n->size, sizeof *n->slices);
    if (n->nodes > 1) {
        n->sum = bl_mem_array(a, n->hi > n->lo ? n->hi - n->lo : 1, sizeof *n->sum);
    }
    if (n->slices == NULL || (n->nodes > 1 && n->sum == NULL)) {
        bl_node_reduce_free(n, 1);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for the node's gradient pointers and sums");
    }
    /* Every rank's gradients go in its own segment; the parameters and the
     * momentum go in rank 0's. */
    float *mine = NULL;
    int rc = bl_node_windows(n->comm, n->rank, n->size, count, 2 * count, &n->grads_win,
                             &n->state_win, &mine, n->slices, &n->params);
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
    for (int q = 0; q < n->size; q++) {
        n->slices[q] = n->slices[q] + n->lo; /* each rank's gradients, from this slice on */
    }
    /* The model's own arrays are not read again until the end copies the
     * windows back over them, so their pages go back to the system while the
     * windows live: the rank holds the node's copy instead of two. */
    size_t released = bl_mem_release_pages(n->own_params, count * sizeof(float)) +
                      bl_mem_release_pages(n->own_grads, count * sizeof(float)) +
                      bl_mem_release_pages(n->own_velocity, count * sizeof(float));
    bl_log(rt, BL_LOG_DEBUG,
           "rank %d: %zu bytes of the model's own arrays given back while the node-local "
           "reduction lives",
           rt->rank, released);
    n->active = 1;
    return phase(n, n->state_win, "sharing the parameters on the node");
}

/* With several nodes: sums this rank's slice of the gradients over its node's
 * ranks, in node rank order, into n->sum, all-reduces n->sum with the same
 * slice's owners on the other nodes, and applies the update to the slice. The
 * caller has passed the barrier after which the node's gradients are complete. */
static bl_status_t cross_node_update(bl_node_reduce_t *n, float grad_scale, float lr,
                                     float momentum, float weight_decay)
{
    size_t count = n->hi - n->lo;
    memcpy(n->sum, n->slices[0], count * sizeof(float));
    for (int q = 1; q < n->size; q++) {
        const float *restrict g = n->slices[q];
        float *restrict sum = n->sum;
        for (size_t i = 0; i < count; i++) {
            sum[i] += g[i];
        }
    }
    /* MPI counts are ints, so a slice over INT_MAX floats goes in pieces. */
    enum { PIECE = 1 << 30 };
    bl_status_t st = BL_OK;
    for (size_t i = 0; st == BL_OK && i < count; i += PIECE) {
        int piece = count - i < PIECE ? (int)(count - i) : PIECE;
        st = bl_allreduce_bounded(n->rt, MPI_IN_PLACE, n->sum + i, piece, MPI_FLOAT, MPI_SUM,
                                  n->cross, "the all-reduce of a gradient slice across nodes");
    }
    if (st == BL_OK) {
        /* One array of sums: the update without a further sum. */
        const float *sums[1] = {n->sum};
        bl_cpu_sgd_update_summed(count, n->params + n->lo, n->velocity + n->lo, sums, 1, grad_scale,
                                 lr, momentum, weight_decay);
    }
    return st;
}

bl_status_t bl_node_reduce_step(bl_node_reduce_t *n, double *loss_sum, long *correct,
                                float grad_scale, float lr, float momentum, float weight_decay)
{
    /* The totals are summed over the whole group: the node's communicator is
     * the group when there is one node. */
    MPI_Comm group = n->nodes > 1 ? n->wide : n->comm;
    MPI_Request totals = MPI_REQUEST_NULL;
    if (loss_sum != NULL) {
        n->totals[0] = *loss_sum;
        n->totals[1] = (double)*correct;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, n->totals, 2, MPI_DOUBLE, MPI_SUM, group, &totals);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(n->rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
        }
    }
    bl_status_t st = phase(n, n->grads_win, "the barrier before the node's gradient sum");
    if (st == BL_OK && n->nodes > 1) {
        st = cross_node_update(n, grad_scale, lr, momentum, weight_decay);
    } else if (st == BL_OK) {
        bl_cpu_sgd_update_summed(n->hi - n->lo, n->params + n->lo, n->velocity + n->lo, n->slices,
                                 n->size, grad_scale, lr, momentum, weight_decay);
    }
    if (st == BL_OK) {
        st = phase(n, n->state_win, "the barrier after the node's update");
    }
    /* After a failure the totals are left pending, since the job is ending. */
    if (st == BL_OK && loss_sum != NULL) {
        st = bl_wait_collective(n->rt, &totals, "the loss and accuracy all-reduce", group);
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
        /* Each array goes back into the model's own, and this rank's view of
         * its window then lets its pages go (the node's shared memory stays
         * for the other ranks), so the rank never holds both copies of all
         * three at once. */
        size_t nbytes = n->model->param_count * sizeof(float);
        memcpy(n->own_params, n->params, nbytes);
        bl_mem_release_pages(n->params, nbytes);
        memcpy(n->own_velocity, n->velocity, nbytes);
        bl_mem_release_pages(n->velocity, nbytes);
        memcpy(n->own_grads, n->model->grads, nbytes);
        bl_mem_release_pages(n->model->grads, nbytes);
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
        MPI_Comm *comms[] = {&n->comm, &n->cross, &n->wide};
        for (size_t i = 0; i < sizeof comms / sizeof comms[0]; i++) {
            if (*comms[i] != MPI_COMM_NULL) {
                MPI_Comm_free(comms[i]);
            }
        }
    }
    bl_mem_free(bl_rt_allocator(n->rt), n->slices);
    bl_mem_free(bl_rt_allocator(n->rt), n->sum);
    memset(n, 0, sizeof *n);
}
