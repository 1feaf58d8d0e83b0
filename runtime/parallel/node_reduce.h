/* Node-local gradient reduction for data parallelism. When every rank of the
 * data-parallel group runs on one node (and there is no pipeline), the ranks
 * share their gradients, parameters and momentum through MPI-3 shared-memory
 * windows instead of all-reducing. After backward, each rank sums its slice of
 * the gradient over all ranks' arrays and applies the SGD update to that slice
 * of the one shared copy of the parameters, in a single pass over memory
 * (bl_cpu_sgd_update_summed). Two barriers order the step: the gradients are
 * complete before anyone sums, and the parameters are complete before anyone's
 * next forward. The math is the all-reduce's: the same per-sample sums, added
 * in rank order, and the same update formula.
 *
 * While the reduction is active, the model's params and grads and the trainer's
 * momentum point into the windows; bl_node_reduce_free copies the values back
 * into the model's own arrays and restores the pointers. */
#ifndef BL_NODE_REDUCE_H
#define BL_NODE_REDUCE_H

#include "model_impl.h"

typedef struct bl_node_reduce {
    bl_runtime_t *rt;
    int active;
    MPI_Comm comm; /* the data-parallel group, all of it on this node */
    int rank, size;
    MPI_Win grads_win, state_win;
    const float **slices; /* (size) every member's gradients, from this rank's slice on */
    float *params;        /* shared: the parameters, followed by the momentum */
    float *velocity;
    float *own_params, *own_grads, *own_velocity; /* the original arrays, restored at the end */
    float **velocity_ref;                         /* the trainer's pointer to the momentum */
    bl_model_t *model;
    size_t lo, hi; /* this rank's slice of the parameters, [lo, hi) */
    double totals[2];
} bl_node_reduce_t;

/* Sets *yes when every rank of dp is on this node, that is, when the group's
 * node-local part (*node, from MPI_Comm_split_type with MPI_COMM_TYPE_SHARED,
 * in dp's rank order) is the whole group on every member, agreed by a bounded
 * reduction. Collective over dp. The caller sets *node to MPI_COMM_NULL
 * before the call and frees it afterwards unless it is still MPI_COMM_NULL,
 * whatever *yes and the status say. Returns BL_OK, BL_ERR_MPI or
 * BL_ERR_TIMEOUT. The language-model trainer's node-local reduction
 * (runtime/lm/lm_node.h) decides with it too. */
bl_status_t bl_node_whole_group(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm *node, int *yes);

/* Sets n->active when the group qualifies (`enabled`, more than one rank, all
 * of them on one node, and a model with parameters), and then moves the
 * parameters, the gradients and *velocity (the trainer's momentum, one float
 * per parameter) into shared windows. Collective over dp. An inactive reduction
 * is not an error: the caller all-reduces as before. Returns BL_ERR_NO_MEM or
 * BL_ERR_MPI on failure. */
bl_status_t bl_node_reduce_init(bl_node_reduce_t *n, bl_runtime_t *rt, MPI_Comm dp, bl_model_t *m,
                                float **velocity, int enabled);

/* Called after this rank's backward: sums the loss and the correct count over
 * the group (unless loss_sum is NULL), then sums the gradients of this rank's
 * slice over the group and updates that slice of the shared parameters and
 * momentum. Collective over the group, with waits bounded by the runtime's
 * timeout (--timeout). */
bl_status_t bl_node_reduce_step(bl_node_reduce_t *n, double *loss_sum, long *correct,
                                float grad_scale, float lr, float momentum, float weight_decay);

/* Copies the shared values back into the model's and the trainer's own arrays
 * and restores the pointers. The windows are freed, collectively, only when
 * `collective` is set: after a failure the other ranks may never come, so the
 * windows are left. It is safe on a zeroed struct. */
void bl_node_reduce_free(bl_node_reduce_t *n, int collective);

#endif /* BL_NODE_REDUCE_H */
