/* The trainer: create, destroy, run and the step, for one process, for data
 * parallelism, for pipelines and for both together. One step follows
 * DESIGN.md's data flow. It samples the global batch (the same on every rank),
 * of which each pipeline takes its contiguous slice; it computes forward and
 * backward over the stage's micro-batches, with the reducer taking each
 * finished layer; it syncs the gradient sums over the stage's data-parallel
 * group and updates the stage's layers, identically on every replica
 * (reducer.h); it records the step's telemetry; and at a control window's end
 * it applies the next plan. The set-up, evaluation, checkpoints and layer moves
 * live in the other trainer files (trainer_impl.h). */
#include <math.h>
#include <string.h>

#include "consistency.h"
#include "modelled_time.h"
#include "trainer_impl.h"
#include "wait.h"
#include "device.h"

/* Logs "<what>: <how> (3 ranks: 1 on GPUs, 0 on other devices, 2 on CPUs)" for
 * a group of several ranks with a device among them. */
static void log_devices(const bl_trainer_t *t, const char *what, const char *members,
                        const bl_device_group_t *g, const char *how)
{
    if (g->device_members == 0 || g->members < 2) {
        return;
    }
    bl_log(t->rt, BL_LOG_INFO, "%s: %s (%d %s: %d on GPUs, %d on other devices, %d on CPUs)", what,
           how, g->members, members, g->cuda_members, g->device_members - g->cuda_members,
           g->members - g->device_members);
}

/* ---- Set-up, step by step ---------------------------------------------- */

/* Sets up the grid and the first plan (its shards, caps and stage map), with
 * local checks. */
static bl_status_t setup_plan(bl_trainer_t *t)
{
    bl_status_t st = bl_layout_init(&t->layout, t->rt, t->model, t->cfg.pipeline.stages);
    if (st != BL_OK) {
        return st;
    }
    t->stage_local = t->cfg.pipeline.stage_local && t->layout.stages > 1;
    /* ZeRO-1 shards the momentum of host ranks with replicas; a device rank's
     * reducer refuses it (reduce_zero.c). */
    t->zero = t->cfg.transport.zero && t->layout.replicas > 1 && t->rt->device.memory == NULL;
    t->user_map = t->cfg.plan.stage_first != NULL;
    t->cfg_shards_given = t->cfg.plan.shards != NULL;
    return bl_trainer_first_plan(t);
}

/* Sets up this rank's own state: the sampler, the (empty) emulated slowdowns
 * and the array of the batch's sample numbers. Local. */
static bl_status_t setup_own_state(bl_trainer_t *t)
{
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    int B = t->cfg.batch;
    bl_status_t st = bl_slowdowns_init(&t->slowdowns, t->rt, NULL, 0);
    if (st != BL_OK) {
        return st;
    }
    bl_error_t err = {0};
    if (bl_sampler_init(&t->sampler, t->data->count, B, t->cfg.seed, t->cfg.shuffle, a, &err) !=
        BL_OK) {
        return bl_fail_from(t->rt, &err);
    }
    t->indices = bl_mem_array(a, (size_t)B, sizeof *t->indices);
    return t->indices != NULL ? BL_OK
                              : bl_fail(t->rt, BL_ERR_NO_MEM, "no memory for a batch of %d", B);
}

/* Holds the memory of this rank's layers: their parameters and gradients
 * (whose first use initialises them, user layers' init() included) and the
 * momentum, a span like the model's arrays (model_hold.c); under ZeRO-1 the
 * rank keeps its slice of the stage's momentum only, from the start, so that
 * the memory account shows it. A model that an earlier stage-local trainer
 * cut down to one stage is refused: its other layers' values are gone. Local. */
static bl_status_t setup_layers(bl_trainer_t *t)
{
    const bl_model_t *m = t->model;
    if (m->dropped) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "trainer: rank %d's model holds only layers %d to %d of %d, cut down by an "
                       "earlier trainer with stage-local memory; build the model anew",
                       t->rt->rank, m->held_first, m->held_last - 1, m->layer_count);
    }
    size_t count = m->param_count;
    if (count > 0 && bl_span_reserve(&t->velocity_span, count * sizeof(float)) != 0) {
        return bl_fail(t->rt, BL_ERR_NO_MEM, "no address space for the momentum of %zu parameters",
                       count);
    }
    t->velocity = (float *)t->velocity_span.base;
    bl_status_t st = bl_trainer_hold_layers(t, t->plan.first, 0);
    return st != BL_OK ? st : bl_trainer_narrow_momentum(t);
}

/* The rank's state and layers (above). A stage's layers may fail where
 * others' do not (a user layer's init(), memory), so every rank agrees on
 * the outcome before the collectives that follow. Collective. */
static bl_status_t setup_state(bl_trainer_t *t)
{
    bl_status_t st = setup_own_state(t);
    if (st == BL_OK) {
        st = setup_layers(t);
    }
    return bl_agree(t->rt, st, BL_ERR_NO_MEM, "the trainer's state and the stage's layers");
}

/* Every rank arrives here with a plan. The device check and the start-up check
 * report a mismatch before any split, and then the grid's communicators are
 * split. Collective. */
static bl_status_t setup_agreement(bl_trainer_t *t)
{
    bl_status_t st = bl_device_train_check(t->rt, t->model);
    if (st == BL_OK) {
        st = bl_trainer_check_ranks_agree(t);
    }
    return st != BL_OK ? st : bl_layout_connect(&t->layout);
}

/* Learns what the data-parallel group and the pipeline are made of (collective
 * over each), then makes this rank's buffers. On a device the model's state
 * goes there before the stage's buffers are made, so that those are made there
 * too, and the training set goes last, into the memory that is left. The
 * buffers are this rank's own, and a GPU may run out of memory, so every rank
 * agrees on the outcome before the groups' collectives that follow. */
static bl_status_t setup_buffers(bl_trainer_t *t)
{
    bl_runtime_t *rt = t->rt;
    const bl_train_config_t *c = &t->cfg;
    const bl_layout_t *l = &t->layout;
    bl_status_t st = bl_device_group_learn(rt, l->dp, l->replicas, c->transport.nccl, &t->group);
    if (st == BL_OK) {
        st = bl_device_group_learn(rt, l->pipe, l->stages, c->transport.nccl, &t->pipe_group);
    }
    if (st == BL_OK && rt->device.memory != NULL) {
        st = bl_device_copies_init(&t->dev, rt, &rt->device, t->model, t->velocity);
    }
    if (st == BL_OK) {
        st = bl_trainer_init_stage(t);
    }
    if (st == BL_OK && rt->device.memory != NULL && c->transport.data_on_device) {
        /* Stage 0 reads the inputs, and the last stage reads the labels. */
        st = bl_device_data_init(&t->resident, rt, &rt->device, t->data, l->stage == 0,
                                 l->stage == l->stages - 1);
    }
    return bl_agree(rt, st, BL_ERR_MISMATCH, "the trainer's buffers");
}

/* Accounts this rank's memory now that its buffers exist, has rank 0 log
 * every rank's account, and refuses to go on when a rank exceeds its limit
 * (memory_account.h), before the communicators and the reduction are set
 * up. Collective. */
static bl_status_t setup_memory(bl_trainer_t *t)
{
    bl_mem_account_t mine;
    bl_trainer_account_memory(t, &mine);
    return bl_mem_account_check(t->rt, &mine, t->cfg.mem_limit_bytes, &t->memory_json);
}

/* Opens the pipeline's device communicator when its stages move device memory
 * directly. Collective over the pipeline, then agreed over the job: a pipeline
 * whose set-up failed must not leave the other pipelines waiting in their
 * data-parallel groups' set-up. */
static bl_status_t setup_transfers(bl_trainer_t *t)
{
    bl_status_t st = BL_OK;
    if (t->pipe_group.direct) {
        st = bl_device_comm_open(t->rt, t->layout.pipe, "pipeline", t->cfg.diagnostics.timeout_s,
                                 &t->pipe_comm);
    }
    st = bl_agree(t->rt, st, BL_ERR_MISMATCH, "the pipeline communicators' set-up");
    t->stage.direct = t->pipe_comm;
    if (st == BL_OK) {
        log_devices(t, "pipeline transfers of rank 0's pipeline", "stages", &t->pipe_group,
                    t->pipe_group.direct ? bl_device_comm_name(t->pipe_comm)
                                         : "MPI through host memory");
    }
    return st;
}

/* Sets up the gradient reduction of the stage's data-parallel group
 * (reducer.h): collective over the group (shared-memory windows, NCCL), then
 * agreed over the job. */
static bl_status_t setup_reducer(bl_trainer_t *t)
{
    const bl_train_config_t *c = &t->cfg;
    bl_reducer_setup_t setup = {.rt = t->rt,
                                .model = t->model,
                                .dp = t->layout.dp,
                                .replicas = t->layout.replicas,
                                .stages = t->layout.stages,
                                .first_layer = t->stage.first,
                                .last_layer = t->stage.last,
                                .bucket_bytes = (size_t)(c->transport.bucket_mb * 1024.0 * 1024.0),
                                .sgd = {.grad_scale = 1.0f / (float)c->batch,
                                        .lr = c->optimizer.lr,
                                        .momentum = c->optimizer.momentum,
                                        .weight_decay = c->optimizer.weight_decay},
                                .velocity = &t->velocity,
                                .dev = &t->dev,
                                .group = &t->group,
                                .node_reduce = c->transport.node_reduce,
                                .zero = c->transport.zero,
                                .timeout_s = c->diagnostics.timeout_s};
    bl_status_t st = bl_reducer_create(&setup, &t->reducer);
    st = bl_agree(t->rt, st, BL_ERR_MISMATCH, "the gradient reduction's set-up");
    if (st == BL_OK) {
        log_devices(t, "gradient reduction of rank 0's group", "ranks", &t->group,
                    bl_device_group_path_name(&t->group));
    }
    return st;
}

/* Sets up telemetry and the controllers. Collective. */
static bl_status_t setup_control(bl_trainer_t *t)
{
    bl_status_t st = bl_control_init(&t->control, t->rt, &t->cfg, t->model, &t->layout, &t->plan);
    /* The first step line carries the start-up memory report. */
    if (st == BL_OK) {
        bl_telemetry_attach_once(&t->control.balancer.tm, t->memory_json);
    }
    return st;
}

/* The set-up steps, in order. Every rank runs every step in this order (the
 * collective ones say so). */
static bl_status_t (*const setup_steps[])(bl_trainer_t *t) = {
    setup_plan,   setup_state,     setup_agreement, setup_buffers,
    setup_memory, setup_transfers, setup_reducer,   setup_control,
};

bl_status_t bl_trainer_create(bl_runtime_t *rt, bl_model_t *m, bl_dataset_t *train,
                              const bl_train_config_t *cfg, bl_trainer_t **out)
{
    if (out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (rt == NULL || m == NULL || train == NULL || cfg == NULL) {
        return rt == NULL ? BL_ERR_INVALID_ARG
                          : bl_fail(rt, BL_ERR_INVALID_ARG, "trainer: NULL model, data or config");
    }
    if (!m->built) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "trainer: call bl_model_build first");
    }
    bl_train_config_t c;
    bl_status_t st = bl_trainer_check_inputs(rt, m, train, cfg, &c);
    if (st != BL_OK) {
        return st;
    }
    bl_trainer_t *t = bl_mem_alloc(bl_rt_allocator(rt), sizeof *t);
    if (t == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a trainer");
    }
    memset(t, 0, sizeof *t);
    t->rt = rt;
    t->model = m;
    t->data = train;
    t->cfg = c;
    rt->wait_timeout_s = c.diagnostics.timeout_s;
    for (size_t i = 0; i < sizeof setup_steps / sizeof setup_steps[0] && st == BL_OK; i++) {
        st = setup_steps[i](t);
    }
    if (st != BL_OK) {
        bl_trainer_destroy(t);
        return st;
    }
    bl_trainer_log_layout(t);
    *out = t;
    return BL_OK;
}

void bl_trainer_destroy(bl_trainer_t *t)
{
    if (t == NULL) {
        return;
    }
    /* After a timeout, pending requests may still write into the trainer's
     * buffers (the gradients, the telemetry, ...), so they are all leaked. The
     * exception is the page-locking of the model's host gradients (which the
     * caller frees): it is undone once the device's own copies are over, since
     * nothing there waits for another rank. */
    if (t->rt->gave_up) {
        bl_device_copies_settle(&t->dev);
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    int healthy = !t->failed;
    bl_part_allocator_t pa = bl_rt_part_allocator(t->rt);
    bl_sampler_free(&t->sampler);
    bl_control_free(&t->control);
    bl_slowdowns_free(&t->slowdowns);
    bl_reducer_destroy(t->reducer, healthy);
    bl_device_comm_free(t->pipe_comm, healthy);
    bl_device_data_free(&t->resident);
    bl_device_copies_free(&t->dev);
    bl_stage_free(&t->stage);
    bl_layout_free(&t->layout);
    bl_plan_free(&t->plan, &pa);
    bl_plan_free(&t->next, &pa);
    bl_span_release(&t->velocity_span);
    bl_mem_free(a, t->indices);
    bl_mem_free(a, t->memory_json);
    bl_mem_free(a, t);
}

/* ---- The step ------------------------------------------------------------ */

/* Sums the step's loss and correct count over the job. They live on the last
 * stages (the other stages add zeros), and every rank gets the job's totals. */
static bl_status_t reduce_totals(bl_trainer_t *t, double *loss_sum, long *correct)
{
    double totals[2] = {*loss_sum, (double)*correct};
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, totals, 2, MPI_DOUBLE, MPI_SUM, t->rt->comm, &req);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(t->rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
    }
    bl_status_t st =
        bl_wait_collective(t->rt, &req, "the all-reduce of the step's loss", t->rt->comm);
    if (st != BL_OK) {
        return st;
    }
    *loss_sum = totals[0];
    *correct = (long)totals[1];
    return BL_OK;
}

/* Steps 3 and 4 of the data flow: the reducer sums the group's gradients and
 * updates the parameters, and every rank gets the job's loss and accuracy
 * totals (a pipeline's live on its last stage, so they are reduced over the
 * job). */
static bl_status_t sync_and_update(bl_trainer_t *t, bl_stage_result_t *r)
{
    int piped = t->layout.stages > 1;
    bl_status_t st =
        bl_reducer_finish(t->reducer, piped ? NULL : &r->loss_sum, piped ? NULL : &r->correct);
    if (st != BL_OK || !piped) {
        return st;
    }
    st = reduce_totals(t, &r->loss_sum, &r->correct);
    /* Without pipelining a device's update is left queued: the next step's host
     * work (its batch, the telemetry) overlaps it, and the next check (that
     * step's backward, or the download at the end of a run) reports a failure.
     * A pipeline stage times each layer, and the update must not land in its
     * first layer's clock, so it is waited for here. */
    return st != BL_OK ? st
                       : bl_device_check(t->rt, bl_model_device(t->model), "the optimizer step");
}

/* Sets the step's compute and pipeline seconds as the controllers see them: the
 * measured ones stay, unless modelled times (bl_trainer_emulate_timing) replace
 * them. */
static void step_times(bl_trainer_t *t, bl_stage_result_t *r)
{
    if (t->modelled_s_per_op > 0.0) {
        bl_modelled_stage_times(t->model, &t->stage, t->local, t->modelled_s_per_op,
                                bl_slowdowns_factor(&t->slowdowns, t->step), r);
    }
}

/* Steps 5 and 6: telemetry, and at a window's end the controllers' plan for the
 * next step, which is the same on every rank. New shards move this pipeline's
 * slice, and a new stage map moves layers between stages now. */
static bl_status_t control(bl_trainer_t *t, const bl_step_record_t *record, double step_s,
                           bl_step_info_t *info)
{
    int changed = 0;
    info->stages_moved = 0;
    bl_status_t st = bl_control_after_step(&t->control, record, &t->stage, step_s, &t->plan,
                                           &t->next, info, &changed);
    /* A new stage map moves layers now (restage makes it the plan's). */
    if (st == BL_OK && (changed & BL_CONTROL_MAP)) {
        st = bl_trainer_restage(t, info->step, t->next.first, &info->stages_moved);
    }
    if (st == BL_OK && (changed & BL_CONTROL_SHARDS)) {
        memcpy(t->plan.shards, t->next.shards, (size_t)t->plan.groups * sizeof *t->plan.shards);
        bl_trainer_locate_slice(t);
    }
    t->plan.version = t->next.version;
    return st;
}

/* Runs one training step on the global batch of t->step and fills *info. */
static bl_status_t train_step(bl_trainer_t *t, bl_step_info_t *info)
{
    int B = t->cfg.batch;
    int modelled = t->modelled_s_per_op > 0.0;
    bl_step_record_t record = {.step = (double)t->step,
                               .samples = t->local,
                               .start_s = bl_control_now(&t->control),
                               .plan = (double)t->plan.version};
    double start = bl_now_seconds(), cpu_start = bl_cpu_seconds();
    t->rt->wait_step = t->step; /* the step that a timed-out wait names */
    /* 1. Sample: every rank draws the whole global batch, and its pipeline
     *    takes a slice of it. */
    bl_sampler_batch(&t->sampler, t->step, t->indices);
    /* 2. Compute: forward and backward, with the reducer taking each layer. */
    bl_stage_step_t in = {.step = t->step,
                          .data = t->data,
                          .indices = t->indices + t->offset,
                          .count = t->local,
                          .done = bl_reducer_layer_done,
                          .done_arg = t->reducer,
                          .done_after_transfers = t->reducer->after_transfers,
                          .slowdown = modelled ? NULL : &t->slowdowns,
                          .resident = t->resident.device != NULL ? &t->resident : NULL};
    bl_stage_result_t r;
    bl_status_t st = bl_stage_run(&t->stage, &in, &r);
    double synced = bl_now_seconds();
    /* 3, 4. Sync and update. */
    if (st == BL_OK) {
        step_times(t, &r);
        st = sync_and_update(t, &r);
    }
    if (st != BL_OK) {
        return st;
    }
    record.compute_s = r.compute_s;
    record.pipe_s = r.pipe_s;
    record.sync_s = modelled ? 0.0 : bl_now_seconds() - synced;
    record.cpu_s = bl_cpu_seconds() - cpu_start;
    *info = (bl_step_info_t){.step = t->step,
                             .steps_per_epoch = t->sampler.steps_per_epoch,
                             .epoch = t->step / t->sampler.steps_per_epoch,
                             .loss = r.loss_sum / B,
                             .accuracy = (double)r.correct / B,
                             .seconds = bl_now_seconds() - start};
    t->step++;
    /* 5, 6. Telemetry and control. */
    return control(t, &record, modelled ? r.compute_s : info->seconds, info);
}

bl_status_t bl_trainer_run(bl_trainer_t *t, long steps, bl_step_cb cb, void *cb_arg)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (steps < 0) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG, "steps %ld must not be negative", steps);
    }
    /* Under ZeRO-1 a rank trains with its slice of the momentum only (a
     * checkpoint or a migration may have gathered it whole). */
    bl_status_t narrowed = bl_agree(t->rt, bl_trainer_narrow_momentum(t), BL_ERR_NO_MEM,
                                    "narrowing the momentum to its ZeRO-1 slice");
    if (narrowed != BL_OK) {
        return narrowed;
    }
    for (long i = 0; i < steps; i++) {
        bl_step_info_t info;
        bl_status_t st = train_step(t, &info);
        if (st != BL_OK) {
            t->failed = 1;
            return st;
        }
        if (cb != NULL && cb(&info, cb_arg) != 0) {
            break;
        }
    }
    /* The run ends with the last telemetry (rank 0's, agreed on before the
     * collectives), then makes the host arrays current everywhere and checks
     * that they are equal on a stage's replicas. Under ZeRO-1 the momentum
     * stays sliced (gathering it would hold the stage's whole momentum, the
     * memory that ZeRO-1 saves): a replica's own slice is current. */
    bl_status_t st =
        bl_agree(t->rt, bl_control_flush(&t->control), BL_ERR_IO, "writing the last telemetry");
    if (st == BL_OK) {
        st = bl_agree(t->rt, bl_trainer_sync_params(t), BL_ERR_MISMATCH, "ending the run");
    }
    return st == BL_OK ? bl_trainer_check_replicas(t) : st;
}

bl_status_t bl_trainer_layout(const bl_trainer_t *t, bl_layout_info_t *out)
{
    if (t == NULL || out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    const bl_layout_t *l = &t->layout;
    *out = (bl_layout_info_t){.data_parallel = l->replicas,
                              .stages = l->stages,
                              .replica = l->replica,
                              .stage = l->stage,
                              .first_layer = t->stage.first,
                              .last_layer = t->stage.last,
                              .micro_batches = t->stage.micro_batches,
                              .stash_capacity = t->stage.slot_count,
                              .peak_stashed = t->stage.peak_in_flight};
    return BL_OK;
}

const int *bl_trainer_stage_map(const bl_trainer_t *t)
{
    return t != NULL ? t->plan.first : NULL;
}

const float *bl_trainer_momentum(const bl_trainer_t *t, size_t *count)
{
    if (count != NULL) {
        *count = t != NULL ? t->model->param_count : 0;
    }
    return t != NULL ? t->velocity : NULL;
}

bl_status_t bl_trainer_emulate_slowdown(bl_trainer_t *t, const bl_slowdown_t *list, int count)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    return bl_slowdowns_replace(&t->slowdowns, t->rt, list, count);
}

bl_status_t bl_trainer_emulate_timing(bl_trainer_t *t, double seconds_per_op)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (!(seconds_per_op >= 0.0) || !isfinite(seconds_per_op)) {
        return bl_fail(t->rt, BL_ERR_INVALID_ARG,
                       "emulated timing: %g seconds per operation must be finite and >= 0",
                       seconds_per_op);
    }
    t->modelled_s_per_op = seconds_per_op;
    return BL_OK;
}

long bl_trainer_step(const bl_trainer_t *t)
{
    return t == NULL ? 0 : t->step;
}

long bl_trainer_steps_per_epoch(const bl_trainer_t *t)
{
    return t == NULL ? 0 : t->sampler.steps_per_epoch;
}
