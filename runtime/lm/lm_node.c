/* The language-model trainer's node-local reduction through shared memory
 * (lm_node.h). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lm_node.h"
#include "node_reduce.h"
#include "wait.h"

/* The user layers' ranges follow the GPT-2 tensors' (gpt2.h); a model
 * without them has one range per tensor. */
#ifndef BL_GPT2_MAX_RANGES
#define BL_GPT2_MAX_RANGES BL_GPT2_TENSOR_COUNT
#endif

struct bl_lm_node {
    bl_runtime_t *rt;
    bl_gpt2_t *model;
    MPI_Comm comm;       /* the group's ranks on this node (real or pretend), in rank order */
    MPI_Comm cross;      /* with several nodes: rank j of every node; else MPI_COMM_NULL */
    int rank, size;      /* this rank in comm, and comm's size n */
    int nodes;           /* the nodes the group spans, n ranks on each */
    MPI_Win grads_win;   /* every rank's segment: its gradients (param_count floats) */
    MPI_Win state_win;   /* rank 0's segment: the parameters, first and second moments */
    const float **grads; /* (size) every member's gradient array, whole */
    bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES]; /* this rank's part of the ranges */
    int slice_count;
    float *own_params, *own_grads, *own_m, *own_v; /* the model's arrays, restored at the end */
    int swapped;                                   /* the model points into the windows */
    int failed;       /* a step failed: the group may never meet again */
    double mine[2];   /* this rank's loss sum and its summed slice's sum of squares */
    double *gathered; /* (2 · size) every rank's pair, in rank order */
};

/* floor(total · k / parts) without overflow, rounded down to 16 floats;
 * the last cut is the end. */
static size_t cut_at(size_t total, int k, int parts)
{
    if (k >= parts) {
        return total;
    }
    const size_t p = (size_t)parts, q = (size_t)k;
    const size_t at = total / p * q + total % p * q / p;
    return at & ~(size_t)15;
}

int bl_lm_node_slice(const bl_gpt2_range_t *ranges, int count, int part, int parts,
                     bl_gpt2_range_t *out)
{
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        total += ranges[i].count;
    }
    const size_t lo = cut_at(total, part, parts), hi = cut_at(total, part + 1, parts);
    int n = 0;
    size_t at = 0; /* where range i starts in the end-to-end sequence */
    for (int i = 0; i < count; i++) {
        const size_t end = at + ranges[i].count;
        const size_t a = lo > at ? lo : at, b = hi < end ? hi : end;
        if (a < b) {
            out[n++] = (bl_gpt2_range_t){ranges[i].offset + (a - at), b - a, ranges[i].tensor};
        }
        at = end;
    }
    return n;
}

/* A phase over the node (bl_node_phase); a failure marks the reduction
 * failed, so that its windows are not freed collectively. */
static bl_status_t phase(bl_lm_node_t *n, MPI_Win win, const char *op)
{
    bl_status_t st = bl_node_phase(n->rt, n->comm, win, op);
    if (st != BL_OK) {
        n->failed = 1;
    }
    return st;
}

/* Logs on rank 0 which path the gradients take. */
static void log_path(bl_runtime_t *rt, const char *how)
{
    if (rt->size > 1) {
        bl_log(rt, BL_LOG_INFO, "gradient reduction: %s", how);
    }
}

/* Frees what create took; the windows and the communicator collectively
 * only when `collective` is set. */
static void release(bl_lm_node_t *n, int collective)
{
    if (n->swapped) {
        bl_gpt2_t *g = n->model;
        const size_t bytes = g->param_count * sizeof(float);
        memcpy(n->own_params, g->params, bytes);
        memcpy(n->own_m, g->adam_m, bytes);
        memcpy(n->own_v, g->adam_v, bytes);
        memcpy(n->own_grads, g->grads, bytes);
        g->params = n->own_params;
        g->grads = n->own_grads;
        g->adam_m = n->own_m;
        g->adam_v = n->own_v;
        MPI_Win_unlock_all(n->grads_win);
        MPI_Win_unlock_all(n->state_win);
        n->swapped = 0;
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
        if (n->cross != MPI_COMM_NULL) {
            MPI_Comm_free(&n->cross);
        }
    }
    const bl_allocator_t *a = bl_rt_allocator(n->rt);
    bl_mem_free(a, n->grads);
    bl_mem_free(a, n->gathered);
    bl_mem_free(a, n);
}

/* Allocates the windows and finds every member's segment. Collective. */
static bl_status_t open_windows(bl_lm_node_t *n, float **mine)
{
    const size_t count = n->model->param_count;
    float *state = NULL;
    int rc = bl_node_windows(n->comm, n->rank, n->size, count, 3 * count, &n->grads_win,
                             &n->state_win, mine, n->grads, &state);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(n->rt, rc, "allocating the node's shared gradients and parameters");
    }
    /* One passive epoch lasts the whole run: loads and stores are plain
     * memory accesses, ordered by MPI_Win_sync and the barriers. */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, n->grads_win);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, n->state_win);
    bl_gpt2_t *g = n->model;
    const size_t bytes = count * sizeof(float);
    if (n->rank == 0) {
        /* Every rank holds the same values (the start-up check compared the
         * parameters), so rank 0's go in. */
        memcpy(state, g->params, bytes);
        memcpy(state + count, g->adam_m, bytes);
        memcpy(state + 2 * count, g->adam_v, bytes);
    }
    memcpy(*mine, g->grads, bytes);
    n->own_params = g->params;
    n->own_grads = g->grads;
    n->own_m = g->adam_m;
    n->own_v = g->adam_v;
    g->params = state;
    g->adam_m = state + count;
    g->adam_v = state + 2 * count;
    g->grads = *mine;
    n->swapped = 1;
    /* The model's own arrays are dead until release() copies the state
     * back over them in full: their pages go back to the system, so the
     * rank does not hold the model twice while it trains. */
    size_t released = 0;
    float *const own[4] = {n->own_params, n->own_grads, n->own_m, n->own_v};
    for (int k = 0; k < 4; k++) {
        released += bl_mem_release_pages(own[k], bytes);
    }
    bl_log(n->rt, BL_LOG_DEBUG,
           "rank %d: %zu bytes of the model's own arrays given back while "
           "the node-local reduction lives",
           n->rt->rank, released);
    return BL_OK;
}

/* Whether every member's model is in host memory (a bounded reduction). */
static bl_status_t all_on_host(bl_runtime_t *rt, MPI_Comm comm, const bl_gpt2_t *model, int *yes)
{
    int mine = model->memory == NULL, all = 0;
    bl_status_t st = bl_allreduce_bounded(rt, &mine, &all, 1, MPI_INT, MPI_MIN, comm,
                                          "choosing the gradient reduction");
    *yes = st == BL_OK && all;
    return st;
}

bl_status_t bl_lm_node_create(bl_runtime_t *rt, MPI_Comm dp, bl_gpt2_t *model, int enabled,
                              int stages, bl_lm_node_t **out)
{
    *out = NULL;
    int size = 0;
    if (dp != MPI_COMM_NULL) {
        MPI_Comm_size(dp, &size);
    }
    if (!enabled || stages != 1 || size < 2 || model->param_count == 0) {
        log_path(rt, !enabled      ? "MPI all-reduce (the node-local reduction is off)"
                     : stages != 1 ? "MPI all-reduce (the node-local reduction needs one stage)"
                                   : "MPI all-reduce");
        return BL_OK;
    }
    /* The layout's rule is the layer trainer's (bl_node_split_usable). */
    MPI_Comm comm = MPI_COMM_NULL;
    bl_node_split_t split = {0};
    int host = 0;
    bl_status_t st = bl_node_split(rt, dp, &comm, &split);
    const int fits = st == BL_OK && bl_node_split_usable(&split);
    if (fits) {
        st = all_on_host(rt, dp, model, &host);
    }
    if (st != BL_OK || !fits || !host) {
        if (comm != MPI_COMM_NULL) {
            MPI_Comm_free(&comm);
        }
        if (st == BL_OK) {
            log_path(rt, !fits ? "MPI all-reduce (the ranks span nodes of unequal size, or of "
                                 "one rank each)"
                               : "MPI all-reduce (a model lives in a device's memory)");
        }
        return st;
    }
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_lm_node_t *n = bl_mem_alloc(a, sizeof *n);
    if (n != NULL) {
        memset(n, 0, sizeof *n);
        n->rt = rt;
        n->model = model;
        n->comm = comm;
        n->cross = MPI_COMM_NULL;
        n->nodes = split.nodes;
        n->grads_win = n->state_win = MPI_WIN_NULL;
        MPI_Comm_rank(comm, &n->rank);
        MPI_Comm_size(comm, &n->size);
        n->grads = bl_mem_array(a, (size_t)n->size, sizeof *n->grads);
        n->gathered = bl_mem_array(a, 2 * (size_t)n->size, sizeof *n->gathered);
    }
    st = n != NULL && n->grads != NULL && n->gathered != NULL
             ? BL_OK
             : bl_fail(rt, BL_ERR_NO_MEM, "no memory for the node-local reduction's state");
    /* The windows are collective: every member learns of a failure first. */
    st = bl_agree(rt, st, BL_ERR_NO_MEM, "setting up the node-local reduction");
    if (st == BL_OK && n->nodes > 1) {
        int dp_rank = 0;
        MPI_Comm_rank(dp, &dp_rank);
        const int rc = MPI_Comm_split(dp, n->rank, dp_rank, &n->cross);
        st = rc == MPI_SUCCESS
                 ? BL_OK
                 : bl_fail_mpi(rt, rc, "splitting the data-parallel group across nodes");
        st = bl_agree(rt, st, BL_ERR_MPI, "splitting the data-parallel group across nodes");
    }
    if (st != BL_OK) {
        if (n != NULL) {
            release(n, 1);
        } else {
            MPI_Comm_free(&comm);
        }
        return st;
    }
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    const int count = bl_gpt2_unit_ranges(model, 0, model->config.num_layers + 2, ranges);
    n->slice_count = bl_lm_node_slice(ranges, count, n->rank, n->size, n->slice);
    float *mine = NULL;
    st = open_windows(n, &mine);
    if (st == BL_OK) {
        st = phase(n, n->state_win, "sharing the parameters on the node");
    }
    if (st != BL_OK) {
        release(n, !rt->gave_up);
        return st;
    }
    char how[200];
    if (n->nodes > 1) {
        snprintf(how, sizeof how,
                 "shared memory within %d %snodes of %d ranks, then MPI across nodes (each "
                 "sums and updates its slice of the %zu parameters)",
                 n->nodes, split.pretend > 0 ? "pretend " : "", n->size, model->param_count);
    } else {
        snprintf(how, sizeof how,
                 "shared memory (%d ranks on one node, each sums and updates its slice of the %zu "
                 "parameters)",
                 n->size, model->param_count);
    }
    log_path(rt, how);
    *out = n;
    return BL_OK;
}

/* Sums this rank's slice of every member's gradients, in rank order, into
 * its own array, and returns the summed slice's sum of squares (the table's
 * sum_squares, block by block while the block is in cache). */
static double sum_slice(bl_lm_node_t *n)
{
    /* With several nodes the slice is summed across them afterwards, and
     * its squares are taken then (cross_sum). */
    const int squares_now = n->nodes == 1;
    enum { BLOCK = 512 };
    float sum[BLOCK];
    float *own = n->model->grads;
    const bl_kernels_t *k = n->model->kernels;
    double squares = 0.0;
    for (int r = 0; r < n->slice_count; r++) {
        const size_t at = n->slice[r].offset, count = n->slice[r].count;
        for (size_t i = 0; i < count; i += BLOCK) {
            const size_t m = count - i < BLOCK ? count - i : BLOCK;
            const float *g0 = n->grads[0] + at + i;
            for (size_t j = 0; j < m; j++) {
                sum[j] = g0[j];
            }
            for (int q = 1; q < n->size; q++) {
                const float *g = n->grads[q] + at + i;
                for (size_t j = 0; j < m; j++) {
                    sum[j] += g[j];
                }
            }
            /* Own's block was read above (as grads[rank]) before it is
             * written; no other rank reads this rank's slice. */
            memcpy(own + at + i, sum, m * sizeof(float));
            squares += squares_now ? k->sum_squares(m, sum) : 0.0;
        }
    }
    return squares;
}

/* With several nodes: all-reduces this rank's node-summed slice with rank j
 * of every other node, in place, and sets *squares to the whole slice's sum
 * of squares. Every node then holds the same summed slice j. */
static bl_status_t cross_sum(bl_lm_node_t *n, double *squares)
{
    float *own = n->model->grads;
    const bl_kernels_t *k = n->model->kernels;
    bl_status_t st = BL_OK;
    *squares = 0.0;
    for (int r = 0; r < n->slice_count && st == BL_OK; r++) {
        const size_t at = n->slice[r].offset, count = n->slice[r].count;
        const size_t piece = INT_MAX / 2;
        for (size_t i = 0; i < count && st == BL_OK; i += piece) {
            const size_t m = count - i < piece ? count - i : piece;
            st = bl_allreduce_bounded(n->rt, MPI_IN_PLACE, own + at + i, (int)m, MPI_FLOAT, MPI_SUM,
                                      n->cross, "the all-reduce of a slice across nodes");
        }
        *squares += st == BL_OK ? k->sum_squares(count, own + at) : 0.0;
    }
    return st;
}

bl_status_t bl_lm_node_reduce(bl_lm_node_t *n, long tokens, double *loss_sum, double *norm)
{
    bl_status_t st = phase(n, n->grads_win, "the barrier before the node's gradient sum");
    if (st != BL_OK) {
        return st;
    }
    n->mine[0] = *loss_sum;
    n->mine[1] = sum_slice(n);
    if (n->nodes > 1) {
        st = cross_sum(n, &n->mine[1]);
        if (st != BL_OK) {
            n->failed = 1;
            return st;
        }
    }
    /* A gather rather than an all-reduce: every rank adds the same values
     * in the same (rank) order, so the norm, and the clip scale made from
     * it, are the same bits everywhere. It also tells this rank that every
     * other has finished reading its gradients. */
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallgather(n->mine, 2, MPI_DOUBLE, n->gathered, 2, MPI_DOUBLE, n->comm, &req);
    st = bl_collective_posted(n->rt, rc, &req, "the gather of the loss and the gradient norm",
                              n->comm);
    if (st != BL_OK) {
        n->failed = 1;
        return st;
    }
    double loss = 0.0, squares = 0.0;
    for (int q = 0; q < n->size; q++) {
        loss += n->gathered[2 * q];
        squares += n->gathered[2 * q + 1];
    }
    /* Every node's slices together are the whole gradient, so the squares
     * are complete; the losses are this node's, summed over the nodes. */
    if (n->nodes > 1) {
        st = bl_allreduce_bounded(n->rt, MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, n->cross,
                                  "the all-reduce of the loss across nodes");
        if (st != BL_OK) {
            n->failed = 1;
            return st;
        }
    }
    *loss_sum = loss;
    *norm = sqrt(squares) / (double)tokens;
    return BL_OK;
}

bl_status_t bl_lm_node_update(bl_lm_node_t *n, const bl_gpt2_adamw_t *opt, float grad_scale, long t)
{
    /* The sub-ranges keep their tensor, so each gets its own decay. */
    bl_gpt2_adamw_ranges(n->model, opt, grad_scale, t, n->slice, n->slice_count);
    return phase(n, n->state_win, "the barrier after the node's AdamW step");
}

bl_status_t bl_lm_node_sync(bl_lm_node_t *n)
{
    return n != NULL ? phase(n, n->state_win, "the barrier before the node's next step") : BL_OK;
}

void bl_lm_node_failed(bl_lm_node_t *n)
{
    if (n != NULL) {
        n->failed = 1;
    }
}

void bl_lm_node_destroy(bl_lm_node_t *n)
{
    if (n != NULL) {
        release(n, !n->failed && !n->rt->gave_up);
    }
}
