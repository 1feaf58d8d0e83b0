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
 * When the group spans several nodes with the same number of ranks n on each,
 * the reduction runs node then network: every node has its own windows and its
 * own shared copy of the parameters, cut into the same n slices on every node.
 * Rank j of a node sums slice j over its node's ranks, all-reduces that sum
 * with rank j of every other node (the "cross" communicator), and updates
 * slice j of its node's copy. That is a reduce-scatter inside each node, an
 * all-reduce of slices across nodes, and the shared copy as the distribution.
 * Nodes of unequal size fall back to the MPI all-reduce of the whole group,
 * and so do real nodes of one rank each, where shared memory gains nothing
 * and the all-reduce's buckets overlap backward (pretend nodes of one rank
 * still take the path, so that it is tested).
 *
 * A node is what MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) says it is, unless
 * the environment sets BALLAST_PRETEND_NODES=k: then the group's ranks, in
 * order, are cut into k pretend nodes of P/k consecutive ranks each, so that the
 * cross-node path runs on one machine (tests, benchmarks). k must divide P.
 * A pretend node must be on one real node (its windows are shared memory).
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
    MPI_Comm comm;  /* the group's ranks on this node (real or pretend) */
    MPI_Comm cross; /* with several nodes: this node rank's peers, one per node */
    MPI_Comm wide;  /* with several nodes: a copy of the group, for the totals */
    int rank, size; /* in comm */
    int nodes;      /* the nodes that the group spans */
    MPI_Win grads_win, state_win;
    const float **slices; /* (size) every member's gradients, from this rank's slice on */
    float *params;        /* shared: the parameters, followed by the momentum */
    float *velocity;
    float *own_params, *own_grads, *own_velocity; /* the original arrays, restored at the end */
    float **velocity_ref;                         /* the trainer's pointer to the momentum */
    bl_model_t *model;
    size_t lo, hi; /* this rank's slice of the parameters, [lo, hi) */
    float *sum;    /* with several nodes: (hi - lo) the slice's gradient sums */
    double totals[2];
} bl_node_reduce_t;

/* How the data-parallel group lies on nodes (bl_node_split). */
typedef struct bl_node_split {
    int nodes;     /* the nodes that the group spans */
    int node_size; /* the ranks on each node, or 0 when the nodes differ */
    int min_size, max_size;
    int pretend; /* k from BALLAST_PRETEND_NODES, or 0 when the nodes are real */
} bl_node_split_t;

/* Reads BALLAST_PRETEND_NODES on every rank of dp and sets *k to its value, or
 * to 0 when it is unset. Collective over dp (one bounded reduction, so that all
 * ranks agree). Fails with BL_ERR_INVALID_ARG, and a message naming the
 * variable, when it is not a positive whole number on some rank, differs
 * between ranks or does not divide dp's size; BL_ERR_MPI or BL_ERR_TIMEOUT when
 * the reduction fails. */
bl_status_t bl_node_pretend(bl_runtime_t *rt, MPI_Comm dp, int *k);

/* A bounded barrier over comm between a step's phases (`op` names it in a
 * timeout's message). The window syncs around it make every rank's stores
 * to win before it visible to every rank's loads after it. Collective. */
bl_status_t bl_node_phase(bl_runtime_t *rt, MPI_Comm comm, MPI_Win win, const char *op);

/* Allocates a node reduction's two shared windows over comm (this rank is
 * `rank` of `size`): every rank's segment of `count` gradient floats (*mine
 * this rank's, bases[q] rank q's) and rank 0's `state_floats` floats of
 * shared state (*state, as every rank sees it). Returns MPI's code; on
 * failure the windows made so far are left for the caller to free.
 * Collective over comm. */
int bl_node_windows(MPI_Comm comm, int rank, int size, size_t count, size_t state_floats,
                    MPI_Win *grads_win, MPI_Win *state_win, float **mine, const float **bases,
                    float **state);

/* Splits dp into its nodes: *node (in dp's rank order) gets this rank's node,
 * from MPI_Comm_split_type with MPI_COMM_TYPE_SHARED or, under
 * BALLAST_PRETEND_NODES=k, from ranks [j·P/k, (j+1)·P/k) of dp for pretend node
 * j (logged at info level). *out says how the nodes came out, agreed by a
 * bounded reduction. Collective over dp. The caller sets *node to
 * MPI_COMM_NULL before the call and frees it afterwards unless it is still
 * MPI_COMM_NULL, whatever the status says. Returns BL_OK, BL_ERR_INVALID_ARG
 * (bl_node_pretend), BL_ERR_MPI or BL_ERR_TIMEOUT. */
bl_status_t bl_node_split(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm *node, bl_node_split_t *out);

/* Whether a split takes the shared-memory path (node-local, or node then
 * network): one node, or nodes of the same n >= 2 ranks, or pretend nodes of
 * any equal size. Both trainers' reductions decide with it. */
int bl_node_split_usable(const bl_node_split_t *s);

/* Sets *yes when every rank of dp is on this node, that is, when the group's
 * node-local part (*node, from bl_node_split, so pretend nodes count) is the
 * whole group on every member. Collective over dp. The caller sets *node to
 * MPI_COMM_NULL before the call and frees it afterwards unless it is still
 * MPI_COMM_NULL, whatever *yes and the status say. Returns BL_OK,
 * BL_ERR_INVALID_ARG, BL_ERR_MPI or BL_ERR_TIMEOUT. The language-model
 * trainer's node-local reduction (runtime/lm/lm_node.h) decides with it too. */
bl_status_t bl_node_whole_group(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm *node, int *yes);

/* Sets n->active when the group qualifies (`enabled`, more than one rank, on
 * one node or on nodes of equal size, and a model with parameters), and then
 * moves the parameters, the gradients and *velocity (the trainer's momentum,
 * one float per parameter) into shared windows, one set per node. Collective
 * over dp. An inactive reduction is not an error: the caller all-reduces as
 * before. BALLAST_PRETEND_NODES is checked whenever the group has more than
 * one rank, even when the reduction is off. Returns BL_ERR_INVALID_ARG (a bad
 * BALLAST_PRETEND_NODES), BL_ERR_NO_MEM, BL_ERR_MPI or BL_ERR_TIMEOUT on
 * failure. */
bl_status_t bl_node_reduce_init(bl_node_reduce_t *n, bl_runtime_t *rt, MPI_Comm dp, bl_model_t *m,
                                float **velocity, int enabled);

/* Called after this rank's backward: sums the loss and the correct count over
 * the group (unless loss_sum is NULL), then sums the gradients of this rank's
 * slice over the node, and over the nodes when there are several, and updates
 * that slice of the node's shared parameters and momentum. Collective over the group, with waits
 * bounded by the runtime's timeout (--timeout). */
bl_status_t bl_node_reduce_step(bl_node_reduce_t *n, double *loss_sum, long *correct,
                                float grad_scale, float lr, float momentum, float weight_decay);

/* Copies the shared values back into the model's and the trainer's own arrays
 * and restores the pointers. The windows are freed, collectively, only when
 * `collective` is set: after a failure the other ranks may never come, so the
 * windows are left. It is safe on a zeroed struct. */
void bl_node_reduce_free(bl_node_reduce_t *n, int collective);

#endif /* BL_NODE_REDUCE_H */
