/* The language-model trainer on a device with memory of its own (lm_impl.h):
 * a GPU, or the mirror test device. The model (its parameters, gradients,
 * AdamW moments and activations) lives in the device's memory and every
 * pass and AdamW step runs there, on the device's kernels. The host sees
 * the model through its twin, t->host, which is cut as the model's arrays
 * are:
 *   - every step, each rank's gradient sums are downloaded into the twin's
 *     grads, all-reduced there with MPI and the sums uploaded again
 *     (bl_lm_grid_reduce), so that CPU ranks and device ranks of one job
 *     sum the same floats in the same order (a job with a device rank
 *     all-reduces: the node-local reduction, lm_node.c, needs host
 *     gradients, and logs that it gives way);
 *   - the parameters and moments are downloaded into the twin only when the
 *     host reads them (the replica digests, checkpoints, the model file),
 *     at most once a step;
 *   - a resume writes the twin and uploads it.
 * Each step's tokens are cut into host buffers and uploaded
 * (bl_lm_grid_passes). Pipelines are refused on a device rank for now: the
 * activations and gradients between stages, and the units that move, would
 * have to be staged through the host as well. */
#include <string.h>

#include "device.h"
#include "lm_impl.h"
#include "wait.h"

bl_status_t bl_lm_device_check(bl_lm_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const int S = t->cfg.pipeline.stages;
    if (rt->device.memory != NULL && S > 1) {
        return bl_fail(rt, BL_ERR_UNSUPPORTED,
                       "rank %d computes on %s, but the language model's pipelines (%d stages) "
                       "run on CPU ranks only for now: give this rank --device cpu, or train "
                       "without --pp",
                       rt->rank, rt->device.name, S);
    }
    return BL_OK;
}

const bl_kernels_t *bl_lm_device_kernels(const bl_lm_trainer_t *t)
{
    const bl_device_t *d = t->device;
    if (t->cfg.precision == BL_PRECISION_BF16 && d->kernels_bf16 != NULL) {
        return d->kernels_bf16;
    }
    return d->kernels;
}

bl_status_t bl_lm_device_init(bl_lm_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const bl_gpt2_t *g = t->model;
    t->host_at = -1;
    if (g->memory == NULL) {
        return BL_OK;
    }
    t->host = bl_mem_array(bl_rt_allocator(rt), 4 * g->param_count, sizeof(float));
    if (t->host == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM,
                       "rank %d (%s): no host memory for the model's twin (4 x %zu floats: the "
                       "staged gradients and the downloaded state)",
                       rt->rank, t->device->name, g->param_count);
    }
    return BL_OK;
}

void bl_lm_device_free(bl_lm_trainer_t *t)
{
    bl_mem_free(bl_rt_allocator(t->rt), t->host);
    t->host = NULL;
}

bl_status_t bl_lm_device_report(bl_lm_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const bl_device_t *d = t->device;
    /* The ranks with memory of their own, of them the GPUs, and the ranks
     * whose products take bf16 operands. */
    const int bf16 = t->model->kernels != d->kernels;
    int counts[3] = {d->memory != NULL, d->kind == BL_DEVICE_CUDA, bf16};
    bl_status_t st = BL_OK;
    if (rt->size > 1) {
        st = bl_allreduce_bounded(rt, MPI_IN_PLACE, counts, 3, MPI_INT, MPI_SUM, rt->comm,
                                  "the count of the ranks' devices");
    }
    if (st != BL_OK) {
        return st;
    }
    if (t->cfg.precision == BL_PRECISION_BF16) {
        /* Rank 0 says where bf16 applies; with no device rank, nowhere. */
        bl_log(rt, counts[2] > 0 ? BL_LOG_INFO : BL_LOG_WARN,
               "GPT-2: precision bf16: %d of %d rank(s) run their products with bf16 operands "
               "and fp32 accumulation (master weights, AdamW and the loss in fp32)%s",
               counts[2], rt->size,
               counts[2] == rt->size ? ""
               : counts[2] > 0       ? "; the CPU ranks compute in fp32"
                                     : "; no rank computes on a device (--device cuda or "
                                       "mirror), so every rank computes in fp32");
    }
    if (counts[0] == 0) {
        return BL_OK;
    }
    bl_log(rt, BL_LOG_INFO,
           "GPT-2: the model lives in a device's memory on %d of %d rank(s) (%d on GPUs, %d on "
           "other devices; rank 0: %s)%s",
           counts[0], rt->size, counts[1], counts[0] - counts[1], d->name,
           rt->size > 1 ? "; their gradient sums go to the MPI all-reduces through host memory "
                          "(download, sum, upload)"
                        : "");
    return BL_OK;
}

/* The twin's array k: 0 the parameters, 1 the gradients, 2 and 3 the
 * moments, as in the model's allocation. */
static float *twin(const bl_lm_trainer_t *t, int k)
{
    return t->host + (size_t)k * t->model->param_count;
}

/* Returns err's failure on rt, naming the rank and its device. */
static bl_status_t device_failed(bl_lm_trainer_t *t, const bl_error_t *err)
{
    return bl_fail(t->rt, err->status, "rank %d (%s): %s", t->rt->rank, t->device->name, err->msg);
}

bl_status_t bl_lm_host_state(bl_lm_trainer_t *t, bl_lm_state_t *out)
{
    const bl_gpt2_t *g = t->model;
    if (t->host == NULL) {
        *out = (bl_lm_state_t){g->params, g->adam_m, g->adam_v};
        return BL_OK;
    }
    *out = (bl_lm_state_t){twin(t, 0), twin(t, 2), twin(t, 3)};
    if (t->host_at == t->step) {
        return BL_OK;
    }
    bl_error_t err = {0};
    const float *const src[3] = {g->params, g->adam_m, g->adam_v};
    const int to[3] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        if (bl_gpt2_download(g, src[k], twin(t, to[k]), &err) != BL_OK) {
            t->host_at = -1;
            return device_failed(t, &err);
        }
    }
    t->host_at = t->step;
    return BL_OK;
}

bl_status_t bl_lm_put_state(bl_lm_trainer_t *t, const void *params, const void *adam_m,
                            const void *adam_v)
{
    bl_gpt2_t *g = t->model;
    const size_t nbytes = g->param_count * sizeof(float);
    if (t->host == NULL) {
        memcpy(g->params, params, nbytes);
        memcpy(g->adam_m, adam_m, nbytes);
        memcpy(g->adam_v, adam_v, nbytes);
        return BL_OK;
    }
    /* Through the twin, whose floats are aligned, which then holds the
     * state of the step that the caller sets. */
    t->host_at = -1;
    memcpy(twin(t, 0), params, nbytes);
    memcpy(twin(t, 2), adam_m, nbytes);
    memcpy(twin(t, 3), adam_v, nbytes);
    float *const dst[3] = {g->params, g->adam_m, g->adam_v};
    const int from[3] = {0, 2, 3};
    bl_error_t err = {0};
    for (int k = 0; k < 3; k++) {
        if (bl_gpt2_put(g, dst[k], twin(t, from[k]), g->param_count, &err) != BL_OK) {
            return device_failed(t, &err);
        }
    }
    return BL_OK;
}
