/* ZeRO-1 for the language-model trainer (lm_zero.c): the optimizer state
 * sharded over the data-parallel group (bl_lm_config_t.zero). It
 * generalises the node-local reduction (lm_node.h) from shared memory to
 * messages, with the same slices and the same sums:
 *   - the parameter ranges are cut into D contiguous slices, one per rank
 *     of the group, by bl_lm_node_slice;
 *   - after backward, a reduce-scatter gives each rank its slice of the
 *     summed gradient: in rounds of at most `bucket` floats, every rank
 *     sends each other rank its piece of that rank's slice, and each rank
 *     adds the D pieces of its own slice in rank order (rank 0's first), so
 *     the sums are the node-local reduction's bit for bit;
 *   - each rank takes the sum of squares of its summed slice, and one
 *     gather gives every rank the loss sum and the global norm, both added
 *     in rank order, so the clip scale is the same bits everywhere;
 *   - each rank takes AdamW's step on its slice with its slice's moments,
 *     which are the only moments it holds (2 · slice floats instead of
 *     2 · param_count: the model is made without its own, gpt2.h's
 *     BL_GPT2_NO_MOMENTS);
 *   - an all-gather gives every rank every slice's new parameters, so every
 *     replica holds the same parameters.
 * The extra memory is the round's bucket: the D − 1 other ranks' pieces of
 * its slice, at most `bucket` floats in all (and at most D − 1 slices, for a
 * small model). Every wait is bounded by the runtime's timeout.
 *
 * Only a model in host memory, on a grid of one stage, is sharded: the
 * trainer refuses the rest (bl_lm_zero_check). The flat parameter array is
 * the ranges end to end, which is how bl_gpt2_unit_ranges lays out the
 * whole model. */
#ifndef BL_LM_ZERO_H
#define BL_LM_ZERO_H

#include "gpt2.h"
#include "internal.h"

/* The floats of the reduce-scatter's bucket that the trainer uses: 4 MiB. */
#define BL_LM_ZERO_BUCKET_FLOATS ((size_t)1 << 20)

typedef struct bl_lm_zero bl_lm_zero_t;

/* Checks the config's zero field for this job and sets *on to 1 when
 * ZeRO-1 runs: zero is 1 and the job has more than one data-parallel
 * replica. With one replica rank 0 logs at info that it is a no-op. Refuses
 * (BL_ERR_UNSUPPORTED, naming the flag and the reason) ZeRO-1 with
 * pipelines (stages > 1) and on a rank whose model lives in a device's
 * memory (`device` has memory of its own); BL_ERR_INVALID_ARG for a zero
 * other than 0 or 1. Local: every rank calls it before its model is made. */
bl_status_t bl_lm_zero_check(bl_runtime_t *rt, const bl_lm_config_t *c, const bl_device_t *device,
                             int *on);

/* Slice `part` of `parts` of model's parameters (the slice whose moments
 * that rank holds): its sub-ranges, written to out (BL_GPT2_MAX_RANGES
 * entries at most) with their count returned, and its floats; and the
 * floats of the reduce-scatter's bucket for `parts` ranks and at most
 * `bucket` floats. Pure: the memory account reads them before the state is
 * made. */
int bl_lm_zero_slice_ranges(const bl_gpt2_t *model, int part, int parts, bl_gpt2_range_t *out);
size_t bl_lm_zero_slice_floats(const bl_gpt2_t *model, int part, int parts);
size_t bl_lm_zero_bucket_floats(const bl_gpt2_t *model, int parts, size_t bucket);

/* Sets up ZeRO-1 for `model` (made with BL_GPT2_NO_MOMENTS, in host memory,
 * its user layers added) over dp, the data-parallel group (duplicated; its
 * rank order is the slices' order), and sets *out to it. The reduce-scatter
 * moves at most `bucket` floats a round (BL_LM_ZERO_BUCKET_FLOATS) and no
 * MPI message carries more than `piece` floats (INT_MAX; smaller in tests).
 * This rank's moments start at zero. Rank 0 logs at info which path the
 * gradients take, and with `instead_of_node` that ZeRO-1 takes precedence
 * over the node-local reduction. Collective over dp; a failure anywhere
 * fails every member. Returns BL_OK, BL_ERR_NO_MEM, BL_ERR_MPI,
 * BL_ERR_UNSUPPORTED (ranges that are not one contiguous array; an internal
 * error) or BL_ERR_TIMEOUT; on failure *out is NULL. */
bl_status_t bl_lm_zero_create(bl_runtime_t *rt, MPI_Comm dp, bl_gpt2_t *model, int instead_of_node,
                              size_t bucket, size_t piece, bl_lm_zero_t **out);

/* Called after this rank's backward, in place of the all-reduces: sums this
 * rank's slice of the gradients over the group into model->grads (the
 * reduce-scatter), then sets *loss_sum to the group's loss sum (*loss_sum
 * is this rank's on entry) and *norm to the global gradient norm of the
 * mean (the summed gradient's norm / tokens), the same bits on every rank.
 * Only this rank's slice of model->grads holds the sums afterwards.
 * Collective over the group. */
bl_status_t bl_lm_zero_reduce(bl_lm_zero_t *z, long tokens, double *loss_sum, double *norm);

/* AdamW's step t over this rank's slice of the parameters with its slice's
 * moments (bl_gpt2_adamw_ranges_at, the gradients scaled by grad_scale),
 * then the all-gather after which every rank holds every slice's new
 * parameters. Collective over the group. */
bl_status_t bl_lm_zero_update(bl_lm_zero_t *z, const bl_gpt2_adamw_t *opt, float grad_scale,
                              long t);

/* Gathers every rank's moment slices to `root` (a rank of the group), which
 * receives in *adam_m and *adam_v two new arrays of param_count floats each
 * (8 bytes a parameter, for as long as the caller keeps them; it frees them
 * with bl_mem_free and the runtime's allocator); the other ranks get NULL.
 * Collective over the group. Returns BL_OK, BL_ERR_NO_MEM (the root's
 * arrays, on every rank), BL_ERR_MPI or BL_ERR_TIMEOUT. */
bl_status_t bl_lm_zero_gather_moments(bl_lm_zero_t *z, int root, float **adam_m, float **adam_v);

/* Replaces the parameters with param_count floats at params and this
 * rank's moments with its slice of the whole arrays adam_m and adam_v
 * (param_count floats each), all read from bytes at any alignment (a
 * checkpoint file's). Local: every rank takes its own slice. */
void bl_lm_zero_put_state(bl_lm_zero_t *z, const void *params, const void *adam_m,
                          const void *adam_v);

/* Frees the state and its communicator; NULL is a no-op. */
void bl_lm_zero_destroy(bl_lm_zero_t *z);

#endif /* BL_LM_ZERO_H */
