/* The language-model trainer's node-local reduction (lm_node.c), the GPT-2
 * counterpart of the layer trainer's (runtime/parallel/node_reduce.h). When
 * the job is data parallel only (one pipeline stage), has more than one rank
 * and every rank runs on one node, the ranks share their gradients, the
 * parameters and AdamW's moments through MPI-3 shared-memory windows instead
 * of all-reducing:
 *   - the parameters and both moments are one copy in rank 0's segment of a
 *     window, which every rank's model points into;
 *   - each rank's gradients stay its own, in its segment of a second window
 *     that the other ranks can read;
 *   - the parameter ranges are cut into P contiguous slices, one per rank
 *     (bl_lm_node_slice). After backward, each rank sums its slice of every
 *     rank's gradients (in rank order) into its own array, takes the sum of
 *     squares of that summed slice, and one gather gives every rank the same
 *     loss sum and global norm (both added in rank order). Each rank then
 *     takes AdamW's step (bl_gpt2_adamw_ranges, the clip scale the same on
 *     every rank) on its slice of the shared parameters and moments.
 * Barriers order the step: the gradients are complete before anyone sums,
 * and the parameters are complete before anyone's next forward. The math is
 * one process's: the same per-token sums, one norm over the whole summed
 * gradient, and AdamW element by element with each range's own decay. Every
 * wait is bounded by the runtime's timeout. */
#ifndef BL_LM_NODE_H
#define BL_LM_NODE_H

#include "gpt2.h"
#include "internal.h"

typedef struct bl_lm_node bl_lm_node_t;

/* Cuts the parameter ranges ranges[0 .. count) into `parts` slices and
 * writes slice `part` (0 <= part < parts) to out as sub-ranges, each with
 * its range's tensor, in the order of ranges; returns how many (at most
 * count, 0 for an empty slice). The ranges are taken end to end as one
 * sequence of N = Σ count floats; slice k is its elements
 * [cut(k), cut(k + 1)), with cut(k) = floor(N · k / parts) rounded down to
 * a multiple of 16 floats (a 64-byte cache line, so that neighbouring ranks'
 * stores do not share one), cut(0) = 0 and cut(parts) = N. The slices are
 * disjoint and together cover every range exactly once. Pure: no MPI, no
 * allocation. */
int bl_lm_node_slice(const bl_gpt2_range_t *ranges, int count, int part, int parts,
                     bl_gpt2_range_t *out);

/* Sets up the reduction for `model` over dp (the data-parallel group;
 * MPI_COMM_NULL with one replica) and sets *out to it, or to NULL when the
 * job does not qualify: `enabled` is 0 (the config's node_reduce), stages is
 * not 1, dp has fewer than 2 ranks, its ranks span several nodes, or a rank's
 * model lives in a device's memory. Rank 0 logs at info which path the
 * gradients take. While the reduction lives, model->params, ->adam_m and
 * ->adam_v point into the shared window and ->grads into this rank's segment
 * of the other; the model's own arrays keep their allocation, but their
 * pages go back to the system (bl_mem_release_pages) until the reduction
 * ends and copies the state back over them. Collective
 * over dp (every rank of the job with one stage); a failure anywhere fails
 * every member. Returns BL_OK, BL_ERR_NO_MEM, BL_ERR_MPI or BL_ERR_TIMEOUT;
 * on failure *out is NULL and the model is as it was. */
bl_status_t bl_lm_node_create(bl_runtime_t *rt, MPI_Comm dp, bl_gpt2_t *model, int enabled,
                              int stages, bl_lm_node_t **out);

/* Called after this rank's backward, in place of the all-reduces: sums this
 * rank's slice of the gradients over the group into model->grads, then sets
 * *loss_sum to the group's loss sum and *norm to the global gradient norm of
 * the mean (the summed gradient's norm / tokens), the same bits on every
 * rank. Only this rank's slice of model->grads holds the sums afterwards.
 * Collective over the group. */
bl_status_t bl_lm_node_reduce(bl_lm_node_t *n, long tokens, double *loss_sum, double *norm);

/* AdamW's step t over this rank's slice of the shared parameters and
 * moments (bl_gpt2_adamw_ranges with the gradients scaled by grad_scale),
 * then the barrier after which every rank may read the new parameters.
 * Collective over the group. */
bl_status_t bl_lm_node_update(bl_lm_node_t *n, const bl_gpt2_adamw_t *opt, float grad_scale,
                              long t);

/* A barrier after which every rank sees what any rank wrote to the shared
 * parameters and moments before it (a resume writes them on every rank).
 * Collective over the group; BL_OK at once when n is NULL. */
bl_status_t bl_lm_node_sync(bl_lm_node_t *n);

/* Records that a step failed on this rank, so that the group may never meet
 * in a collective again: destroy then frees the windows without one. NULL
 * is a no-op. */
void bl_lm_node_failed(bl_lm_node_t *n);

/* Copies the shared parameters and moments and this rank's gradients back
 * into the model's own arrays and points the model at them again, then
 * frees the windows: collectively (every member must call it), unless a
 * step failed or the runtime gave up on a wait, when they are left. NULL is
 * a no-op. */
void bl_lm_node_destroy(bl_lm_node_t *n);

#endif /* BL_LM_NODE_H */
