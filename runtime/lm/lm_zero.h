/* ZeRO-1 for the language-model trainer (lm_zero.c, lm_zero_step.c,
 * lm_zero_moments.c): the optimizer state of a pipeline stage sharded over
 * the stage's replicas, its data-parallel group (bl_lm_config_t.zero). It
 * generalises the node-local reduction (lm_node.h) from shared memory to
 * messages, with the same slices and the same sums:
 *   - the stage's parameter ranges (those of its units [first, last),
 *     bl_gpt2_unit_ranges) are merged into runs, the maximal stretches that
 *     lie end to end in the arrays (with one stage, one run: the whole
 *     model), and each run is cut into D contiguous slices, one per rank of
 *     the group, by bl_lm_node_slice;
 *   - after backward, with pipelines, the first and the last stage of each
 *     pipeline swap their sums of the tied token table wte's gradient and
 *     each adds the other's (a + b: the same bits on both);
 *   - a reduce-scatter per run gives each rank its slice of the summed
 *     gradient: in rounds of at most `bucket` floats, every rank sends each
 *     other rank its piece of that rank's slice, and each rank adds the D
 *     pieces of its own slice in rank order (rank 0's first), so the sums
 *     are the node-local reduction's bit for bit, and the first and last
 *     stages' wte the same bits;
 *   - each rank takes the sum of squares of its summed slices (wte left
 *     out on the last of several stages, which stage 0 counts), one gather
 *     over the group adds the ranks' loss sums and squares in rank order,
 *     and with pipelines one gather over the pipeline adds the stages' in
 *     stage order, so the clip scale is the same bits on every rank of the
 *     job;
 *   - each rank takes AdamW's step on its slices with their moments, which
 *     are the only moments it holds (2 floats a parameter of its slices,
 *     about 1/D of the stage's: the model is made without its own, gpt2.h's
 *     BL_GPT2_NO_MOMENTS);
 *   - an all-gather per run gives every rank every slice's new parameters,
 *     so every replica holds the same parameters.
 * The extra memory is one bucket, which every run's exchange and the wte
 * swap share: the D − 1 other ranks' pieces of the largest slice, at most
 * `bucket` floats in all (and at most D − 1 slices, for a small stage).
 * Every wait is bounded by the runtime's timeout.
 *
 * Only a model in host memory is sharded: the trainer refuses the rest
 * (bl_lm_zero_check). When units move between stages (lm_restage.c) or a
 * resume adopts another stage map, the state is rebuilt for the stage's new
 * units (bl_lm_zero_restage). */
#ifndef BL_LM_ZERO_H
#define BL_LM_ZERO_H

#include "gpt2.h"
#include "internal.h"

/* The floats of the reduce-scatter's bucket that the trainer uses: 4 MiB. */
#define BL_LM_ZERO_BUCKET_FLOATS ((size_t)1 << 20)

typedef struct bl_lm_zero bl_lm_zero_t;

/* Checks the config's zero field for this job and sets *on to 1 when
 * ZeRO-1 runs: zero is 1 and the job has more than one data-parallel
 * replica (pipelines included). With one replica rank 0 logs at info that
 * it is a no-op. Refuses (BL_ERR_UNSUPPORTED, naming the flag, the rank and
 * the reason) a rank whose model lives in a device's memory (`device` has
 * memory of its own); BL_ERR_INVALID_ARG for a zero other than 0 or 1.
 * Local: every rank calls it before its model is made. */
bl_status_t bl_lm_zero_check(bl_runtime_t *rt, const bl_lm_config_t *c, const bl_device_t *device,
                             int *on);

/* Pure sizes, which the memory account reads before the state is made, of
 * the stage that owns units [first, last) of model on a group of `parts`
 * ranks:
 *   - bl_lm_zero_runs: how many runs its ranges make;
 *   - bl_lm_zero_slice_ranges: slice `part` of every run, as sub-ranges
 *     (each with its tensor, run after run), written to out
 *     (BL_GPT2_MAX_RANGES entries at most) with their count returned;
 *   - bl_lm_zero_slice_floats: their floats (the moments that rank holds,
 *     each twice);
 *   - bl_lm_zero_bucket_floats: the floats of the shared bucket for at most
 *     `bucket` floats a round, `tied` when the stage swaps wte's gradient
 *     (the first or last of several stages). */
int bl_lm_zero_runs(const bl_gpt2_t *model, int first, int last);
int bl_lm_zero_slice_ranges(const bl_gpt2_t *model, int first, int last, int part, int parts,
                            bl_gpt2_range_t *out);
size_t bl_lm_zero_slice_floats(const bl_gpt2_t *model, int first, int last, int part, int parts);
size_t bl_lm_zero_bucket_floats(const bl_gpt2_t *model, int first, int last, int parts, int tied,
                                size_t bucket);

/* Sets up ZeRO-1 for `model` (made with BL_GPT2_NO_MOMENTS, in host memory,
 * its user layers added) on the stage that owns units [first, last), over
 * dp, its data-parallel group (duplicated; its rank order is the slices'
 * order), and pipe, this rank's pipeline (duplicated; its rank order is
 * the stages'; MPI_COMM_NULL with one stage), and sets *out to it. The
 * reduce-scatter moves at most `bucket` floats a round
 * (BL_LM_ZERO_BUCKET_FLOATS) and no MPI message carries more than `piece`
 * floats (INT_MAX; smaller in tests). This rank's moments start at zero.
 * Rank 0 logs at info which path the gradients take, and with
 * `instead_of_node` that ZeRO-1 takes precedence over the node-local
 * reduction. Collective over the runtime's communicator (every rank of the
 * job); a failure anywhere fails every rank. Returns BL_OK, BL_ERR_NO_MEM,
 * BL_ERR_MPI, BL_ERR_UNSUPPORTED (a model with moments or in a device's
 * memory: an internal error) or BL_ERR_TIMEOUT; on failure *out is NULL. */
bl_status_t bl_lm_zero_create(bl_runtime_t *rt, MPI_Comm dp, MPI_Comm pipe, bl_gpt2_t *model,
                              int first, int last, int instead_of_node, size_t bucket, size_t piece,
                              bl_lm_zero_t **out);

/* Rebuilds the state for units [first, last), the stage's new units after a
 * move or under a resumed stage map: new runs and slices, and this rank's
 * moments of its new slices taken from adam_m and adam_v (arrays of
 * param_count floats, read at the slices' offsets only: the stage's whole
 * moments, as bl_lm_zero_gather_moments gives them to every rank), or
 * zeros when they are NULL (a resume then puts them,
 * bl_lm_zero_put_moments). Local; on failure (BL_ERR_NO_MEM, naming the
 * rank) the state is the old one. The caller agrees the result. */
bl_status_t bl_lm_zero_restage(bl_lm_zero_t *z, int first, int last, const float *adam_m,
                               const float *adam_v);

/* This rank's sub-ranges of the stage's parameters (its slice of every
 * run, as bl_lm_zero_slice_ranges): written to out (BL_GPT2_MAX_RANGES
 * entries at most), their count returned. */
int bl_lm_zero_ranges(const bl_lm_zero_t *z, bl_gpt2_range_t *out);

/* Called after this rank's backward, in place of the all-reduces: with
 * pipelines swaps wte's gradient between the first and last stages, sums
 * this rank's slices of the stage's gradients over the group into
 * model->grads (the reduce-scatters), then sets *loss_sum to the job's
 * loss sum (*loss_sum is this rank's on entry: 0 but on the last stage)
 * and *norm to the global gradient norm of the mean (the summed gradient's
 * norm / tokens), the same bits on every rank. Only this rank's slices of
 * model->grads hold the sums afterwards. Collective over the job. */
bl_status_t bl_lm_zero_reduce(bl_lm_zero_t *z, long tokens, double *loss_sum, double *norm);

/* AdamW's step t over this rank's slices of the stage's parameters with
 * their moments (bl_gpt2_adamw_ranges_at, the gradients scaled by
 * grad_scale), then the all-gathers after which every replica holds the
 * stage's new parameters. Collective over the group. */
bl_status_t bl_lm_zero_update(bl_lm_zero_t *z, const bl_gpt2_adamw_t *opt, float grad_scale,
                              long t);

/* Gathers the group's moment slices of the stage to `root` (a rank of the
 * group), or to every rank of it when root is -1, which receives in
 * *adam_m and *adam_v two new arrays of param_count floats each, written
 * over the stage's ranges only (address space for the whole model, of which
 * only those pages take memory, for as long as the caller keeps them; it
 * frees them with bl_mem_free and the runtime's allocator); the other ranks
 * get NULL. Collective over the group. Returns BL_OK, BL_ERR_NO_MEM (a
 * receiver's arrays, on every rank), BL_ERR_MPI or BL_ERR_TIMEOUT. */
bl_status_t bl_lm_zero_gather_moments(bl_lm_zero_t *z, int root, float **adam_m, float **adam_v);

/* Replaces this rank's moments with its slices of adam_m and adam_v, arrays
 * of param_count floats (read at the slices' offsets only, from bytes at
 * any alignment). Local: every rank takes its own slices. */
void bl_lm_zero_put_moments(bl_lm_zero_t *z, const void *adam_m, const void *adam_v);

/* Frees the state and its communicators; NULL is a no-op. */
void bl_lm_zero_destroy(bl_lm_zero_t *z);

#endif /* BL_LM_ZERO_H */
