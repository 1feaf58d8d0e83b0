/* Node-local gradient reduction for data parallelism: when every rank of
 * the data-parallel group runs on one node (and there is no pipeline), the
 * ranks share their gradients, parameters and momentum through MPI-3
 * shared-memory windows instead of all-reducing. After backward each rank
 * sums its slice of the gradient over all ranks' arrays and applies the
 * SGD update to that slice of the one shared copy of the parameters, in a
 * single pass over memory (bl_cpu_sgd_update_summed); two barriers order
 * the step (gradients complete before anyone sums; parameters complete
 * before anyone's next forward). The math is the all-reduce's: the same
 * per-sample sums, added in rank order, the same update formula.
 *
 * While active, the model's params and grads and the trainer's momentum
 * point into the windows; bl_node_reduce_free copies the values back into
 * the model's own arrays and restores the pointers. */
#ifndef BL_NODE_REDUCE_H
#define BL_NODE_REDUCE_H

#include "model_impl.h"

typedef struct bl_node_reduce {
    bl_runtime_t *rt;
    int active;
    MPI_Comm comm; /* the data-parallel group, all on this node */
    int rank, size;
    MPI_Win grads_win, state_win;
    const float **slices; /* (size) every member's gradients from this rank's slice on */
    float *params;        /* shared: the parameters, then the momentum */
    float *velocity;
    float *own_params, *own_grads, *own_velocity; /* restored at the end */
    float **velocity_ref;                         /* the trainer's pointer to the momentum */
    bl_model_t *model;
    size_t lo, hi; /* this rank's slice of the parameters */
    double totals[2];
} bl_node_reduce_t;

/* Collective over dp. Sets n->active when the group qualifies (more than
 * one rank, all on one node, `enabled`); then moves the parameters, the
 * gradients and *velocity (the trainer's momentum, count floats) into the
 * windows. Inactive is not an error: the caller all-reduces as before. */
bl_status_t bl_node_reduce_init(bl_node_reduce_t *n, bl_runtime_t *rt, MPI_Comm dp, bl_model_t *m,
                                float **velocity, int enabled);

/* After this rank's backward: sums the loss and correct count over the
 * group (unless loss_sum is NULL), then the gradients of its slice, and
 * updates that slice. Collective over the group; bounded by --timeout. */
bl_status_t bl_node_reduce_step(bl_node_reduce_t *n, double *loss_sum, long *correct,
                                float grad_scale, float lr, float momentum, float weight_decay);

/* Copies the shared values back and restores the model's arrays. The
 * windows are freed (collectively) only when `collective` is set: after a
 * failure the other ranks may never come, and the windows are left. */
void bl_node_reduce_free(bl_node_reduce_t *n, int collective);

#endif /* BL_NODE_REDUCE_H */
