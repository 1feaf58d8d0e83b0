/* The language-model trainer's step and run (lm_impl.h). One step follows
 * DESIGN.md's data flow: every rank draws the global batch of B sequences,
 * and its pipeline takes its slice; the stages run their units' passes over
 * the slice's micro-batches (lm_pipe.h); the per-token gradient sums are
 * all-reduced over the job and the global norm taken; every rank takes the
 * same AdamW step on its stage's units (the sums scaled by 1 / (B · T),
 * clipped by the global norm); and the balancer records the step and may
 * emit new shards for the next one. */
#include <string.h>

#include "consistency.h"
#include "device.h"
#include "lm_impl.h"
#include "replica_check.h"
#include "wait.h"

/* Applies the balancer's decision: new shards move this rank's slice. */
static bl_status_t control(bl_lm_trainer_t *t, const bl_step_record_t *record, bl_step_info_t *info)
{
    int changed = 0;
    bl_status_t st =
        bl_balancer_after_step(&t->balancer, record, info, &t->plan, t->next.shards, &changed);
    if (st == BL_OK && changed) {
        memcpy(t->plan.shards, t->next.shards, (size_t)t->plan.groups * sizeof *t->plan.shards);
        t->offset = bl_plan_offset(&t->plan, t->grid.layout.replica);
        t->local = (int)t->plan.shards[t->grid.layout.replica];
        t->plan.version++;
    }
    info->plan_changed = changed;
    info->plan_version = t->plan.version;
    return st;
}

/* Runs global step t->step and fills *info. */
static bl_status_t train_step(bl_lm_trainer_t *t, bl_step_info_t *info)
{
    const bl_lm_config_t *c = &t->cfg;
    const long tokens = (long)c->batch * c->seq_len;
    bl_step_record_t record = {.step = (double)t->step,
                               .samples = t->local,
                               .start_s = bl_balancer_now(&t->balancer),
                               .plan = (double)t->plan.version};
    double start = bl_now_seconds(), cpu_start = bl_cpu_seconds();
    t->rt->wait_step = t->step;
    bl_sampler_batch(&t->sampler, t->step, t->indices);
    bl_error_t err = {0};
    bl_lm_passes_t passes = {0};
    bl_status_t st =
        bl_gpt2_zero_grads(t->model, &err) == BL_OK ? BL_OK : bl_fail_from(t->rt, &err);
    if (st == BL_OK) {
        st = bl_lm_grid_passes(&t->grid, t->model, &t->acts, t->train, t->indices + t->offset,
                               t->local, t->tokens, t->targets, t->step, &t->slowdowns, &passes);
    }
    record.compute_s = passes.compute_s;
    record.pipe_s = passes.pipe_s;
    double synced = bl_now_seconds(), loss_sum = passes.loss_sum, norm = 0.0;
    if (st == BL_OK) {
        /* A reduce-scatter under ZeRO-1 (lm_zero.h), through shared memory
         * on one node (lm_node.h), else all-reduces (on a device, of the
         * sums staged through the host twin). */
        float *staged = t->host != NULL ? t->host + t->model->param_count : NULL;
        if (t->zero != NULL) {
            st = bl_lm_zero_reduce(t->zero, tokens, &loss_sum, &norm);
        } else if (t->node != NULL) {
            st = bl_lm_node_reduce(t->node, tokens, &loss_sum, &norm);
        } else {
            st = bl_lm_grid_reduce(&t->grid, t->model, staged, tokens, &loss_sum, &norm);
        }
    }
    record.sync_s = bl_now_seconds() - synced;
    record.cpu_s = bl_cpu_seconds() - cpu_start;
    const bl_adamw_config_t *o = &c->adamw;
    bl_gpt2_adamw_t opt = {.lr = (float)bl_lr_at(&c->schedule, o->lr, t->step),
                           .beta1 = o->beta1,
                           .beta2 = o->beta2,
                           .eps = o->eps,
                           .weight_decay = o->weight_decay,
                           .max_grad_norm = o->clip_grad_norm};
    if (st == BL_OK) {
        /* Every rank updates its stage's units, with the same scale. */
        const float scale = (float)bl_gpt2_grad_scale(norm, tokens, o->clip_grad_norm);
        if (t->zero != NULL) {
            /* Each rank its slice with its moments, then the all-gather. */
            st = bl_lm_zero_update(t->zero, &opt, scale, ++t->model->adam_steps);
        } else if (t->node != NULL) {
            /* Each rank its slice of the one shared copy. */
            st = bl_lm_node_update(t->node, &opt, scale, ++t->model->adam_steps);
        } else {
            bl_gpt2_adamw_ranges(t->model, &opt, scale, ++t->model->adam_steps, t->grid.owned,
                                 t->grid.owned_count);
        }
    }
    if (st == BL_OK && t->host != NULL) {
        /* A device's kernels report their failures when it is waited for. */
        st = bl_device_check(t->rt, t->device, "the step's AdamW update");
    }
    if (st != BL_OK) {
        return st;
    }
    *info = (bl_step_info_t){.step = t->step,
                             .steps_per_epoch = t->sampler.steps_per_epoch,
                             .epoch = t->step / t->sampler.steps_per_epoch,
                             .loss = loss_sum / (double)tokens,
                             .seconds = bl_now_seconds() - start,
                             .tokens = tokens,
                             .lr = (double)opt.lr,
                             .grad_norm = norm};
    t->step++;
    st = control(t, &record, info);
    return st == BL_OK ? bl_lm_restager_after_step(t, info->seconds, info) : st;
}

bl_status_t bl_lm_make_whole(bl_lm_trainer_t *t)
{
    if (t->whole_at == t->step) {
        return BL_OK;
    }
    if (t->stage_local) {
        return bl_fail(t->rt, BL_ERR_UNSUPPORTED,
                       "rank %d: under stage-local memory no rank holds the whole model (each "
                       "stage writes its own part)",
                       t->rt->rank);
    }
    /* The stages send their units' moments with their parameters: under
     * ZeRO-1 the stage's moments gathered for the while (lm_restage.c). */
    bl_status_t st = bl_lm_lend_moments(t);
    if (st == BL_OK) {
        st = bl_agree(t->rt, bl_lm_grid_make_whole(&t->grid, t->model, t->plan.first),
                      BL_ERR_MISMATCH, "making every rank's model whole");
    }
    bl_lm_return_moments(t);
    if (st == BL_OK) {
        t->whole_at = t->step;
    }
    return st;
}

/* Under ZeRO-1 each stage's replicas hold other slices of its moments:
 * compares their parameters over each owned range, then the step count. */
static bl_status_t check_zero_stages(bl_lm_trainer_t *t, const char *when)
{
    const bl_gpt2_t *g = t->model;
    bl_status_t st = BL_OK;
    for (int r = 0; r < t->grid.owned_count && st == BL_OK; r++) {
        st = bl_replicas_check(t->rt, t->grid.layout.dp, t->step, g->params, NULL,
                               t->grid.owned[r].offset, t->grid.owned[r].count);
    }
    st = bl_agree(t->rt, st, BL_ERR_MISMATCH, when);
    const bl_check_field_t steps[] = {{"AdamW steps", BL_CHECK_INT, (uint64_t)g->adam_steps}};
    return st == BL_OK ? bl_check_same_on_all_ranks(t->rt, when, steps, 1) : st;
}

bl_status_t bl_lm_check_replicas(bl_lm_trainer_t *t, const char *when)
{
    const bl_gpt2_t *g = t->model;
    if (t->zero_on && (t->stage_local || (t->plan.stages > 1 && t->whole_at != t->step))) {
        return check_zero_stages(t, when);
    }
    if (t->stage_local || (t->plan.stages > 1 && t->whole_at != t->step)) {
        /* Each stage's replicas on its units, then the step count: a stage
         * holds no other units (stage-local memory), or holds stale ones
         * (a whole-memory pipeline inside a run). */
        bl_status_t st = bl_agree(t->rt, bl_lm_check_stage_replicas(t), BL_ERR_MISMATCH, when);
        const bl_check_field_t steps[] = {{"AdamW steps", BL_CHECK_INT, (uint64_t)g->adam_steps}};
        return st == BL_OK ? bl_check_same_on_all_ranks(t->rt, when, steps, 1) : st;
    }
    const size_t bytes = g->param_count * sizeof(float);
    bl_lm_state_t state; /* downloaded first from a device */
    bl_status_t st =
        bl_agree(t->rt, bl_lm_host_state(t, &state), BL_ERR_CUDA, "reading the replicas' state");
    if (st != BL_OK) {
        return st;
    }
    if (state.adam_m == NULL) {
        /* ZeRO-1: every rank holds another slice of the moments. */
        const bl_check_field_t sliced[] = {
            {"parameters", BL_CHECK_DIGEST, bl_digest(state.params, bytes)},
            {"AdamW steps", BL_CHECK_INT, (uint64_t)g->adam_steps},
        };
        return bl_check_same_on_all_ranks(t->rt, when, sliced, 2);
    }
    const bl_check_field_t fields[] = {
        {"parameters", BL_CHECK_DIGEST, bl_digest(state.params, bytes)},
        {"AdamW first moments", BL_CHECK_DIGEST, bl_digest(state.adam_m, bytes)},
        {"AdamW second moments", BL_CHECK_DIGEST, bl_digest(state.adam_v, bytes)},
        {"AdamW steps", BL_CHECK_INT, (uint64_t)g->adam_steps},
    };
    return bl_check_same_on_all_ranks(t->rt, when, fields, 4);
}

bl_status_t bl_lm_trainer_run(bl_lm_trainer_t *t, long steps, bl_step_cb cb, void *cb_arg)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (steps < 0) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG, "steps %ld must not be negative", steps);
    }
    /* A resume wrote the shared parameters on every rank. */
    bl_status_t synced = bl_lm_node_sync(t->node);
    if (synced != BL_OK) {
        return synced;
    }
    for (long i = 0; i < steps; i++) {
        bl_step_info_t info;
        bl_status_t st = train_step(t, &info);
        if (st != BL_OK) {
            bl_lm_node_failed(t->node);
            return st;
        }
        if (cb != NULL && cb(&info, cb_arg) != 0) {
            break;
        }
    }
    bl_status_t st =
        bl_agree(t->rt, bl_balancer_flush(&t->balancer), BL_ERR_IO, "writing the last telemetry");
    if (st == BL_OK && !t->stage_local) {
        st = bl_lm_make_whole(t);
    }
    return st == BL_OK ? bl_lm_check_replicas(t, "replicas after the run") : st;
}
