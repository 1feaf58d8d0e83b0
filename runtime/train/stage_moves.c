/* Stage maps in motion (trainer_impl.h): every step of a layer migration
 * besides the transfers themselves (migration.h), the stage's rebuild for its
 * new layers, and making every rank's model whole and current. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "migration.h"
#include "replica_check.h"
#include "trainer_impl.h"
#include "wait.h"
#include "zero_exchange.h"

void bl_trainer_held_layers(const bl_trainer_t *t, int *first, int *last)
{
    *first = t->stage_local ? t->plan.first[t->layout.stage] : 0;
    *last = t->stage_local ? t->plan.first[t->layout.stage + 1] : t->model->layer_count;
}

bl_status_t bl_trainer_hold_layers(bl_trainer_t *t, const int *map, int keep)
{
    bl_model_t *m = t->model;
    int first = t->stage_local ? map[t->layout.stage] : 0;
    int last = t->stage_local ? map[t->layout.stage + 1] : m->layer_count;
    bl_status_t st =
        keep || !t->stage_local ? bl_model_widen(m, first, last) : bl_model_hold(m, first, last);
    if (st != BL_OK || m->param_count == 0) {
        return st;
    }
    /* The momentum follows the model's held parameters. */
    size_t lo, count;
    bl_model_held_params(m, &lo, &count);
    size_t a = lo * sizeof(float), b = (lo + count) * sizeof(float);
    int rc = keep || !t->stage_local ? bl_span_widen(&t->velocity_span, a, b)
                                     : bl_span_hold(&t->velocity_span, a, b);
    return rc == 0 ? BL_OK
                   : bl_fail(t->rt, BL_ERR_NO_MEM,
                             "rank %d: no memory for the momentum of %zu parameters: %s",
                             t->rt->rank, count, strerror(errno));
}

/* Sets [*first, *first + *count) to the parameters of stage `stage`'s layers. */
void bl_trainer_stage_params(const bl_trainer_t *t, int stage, size_t *first, size_t *count)
{
    const bl_model_t *m = t->model;
    const bl_layer_t *lo = &m->layers[t->plan.first[stage]];
    const bl_layer_t *hi = &m->layers[t->plan.first[stage + 1] - 1];
    *first = lo->param_offset;
    *count = hi->param_offset + hi->param_count - lo->param_offset;
}

void bl_trainer_momentum_slice(const bl_trainer_t *t, size_t *first, size_t *count)
{
    bl_trainer_stage_params(t, t->layout.stage, first, count);
    if (t->zero) {
        bl_zero_even_slice(*first, *count, t->layout.replica, t->layout.replicas, first, count);
    }
}

bl_status_t bl_trainer_narrow_momentum(bl_trainer_t *t)
{
    if (!t->zero || t->model->param_count == 0) {
        return BL_OK;
    }
    size_t first, count;
    bl_trainer_momentum_slice(t, &first, &count);
    if (bl_span_hold(&t->velocity_span, first * sizeof(float), (first + count) * sizeof(float)) !=
        0) {
        return bl_fail(t->rt, BL_ERR_NO_MEM,
                       "rank %d: cannot narrow the momentum to its ZeRO-1 slice of %zu "
                       "parameters: %s",
                       t->rt->rank, count, strerror(errno));
    }
    t->momentum_whole = 0;
    return BL_OK;
}

bl_status_t bl_trainer_gather_momentum(bl_trainer_t *t)
{
    if (!t->zero || t->momentum_whole) {
        return BL_OK;
    }
    size_t first, count;
    bl_trainer_stage_params(t, t->layout.stage, &first, &count);
    bl_status_t st = BL_OK;
    if (count > 0 && bl_span_widen(&t->velocity_span, first * sizeof(float),
                                   (first + count) * sizeof(float)) != 0) {
        st = bl_fail(t->rt, BL_ERR_NO_MEM,
                     "rank %d: no memory to gather the momentum of the stage's %zu parameters: %s",
                     t->rt->rank, count, strerror(errno));
    }
    /* Every replica takes part in the gather, or none does. */
    st = bl_agree_in(t->rt, t->layout.dp, st, BL_ERR_NO_MEM, "gathering the stage's momentum");
    if (st == BL_OK) {
        st = bl_reducer_gather_momentum(t->reducer);
    }
    t->momentum_whole = st == BL_OK;
    return st;
}

/* Checks that every replica of a stage holds the same arrays (replica_check.h).
 * The result is agreed over the job, since only the differing stage's group
 * learns of a difference. */
bl_status_t bl_trainer_check_replicas(const bl_trainer_t *t)
{
    size_t first, count;
    bl_trainer_stage_params(t, t->layout.stage, &first, &count);
    /* Under ZeRO-1 each replica holds its own slice of the momentum, unless it
     * was just gathered whole. */
    const float *momentum = t->zero && !t->momentum_whole ? NULL : t->velocity;
    return bl_agree(
        t->rt,
        bl_replicas_check(t->rt, t->layout.dp, t->step, t->model->params, momentum, first, count),
        BL_ERR_MISMATCH, "the replica check");
}

bl_status_t bl_trainer_init_stage(bl_trainer_t *t)
{
    const bl_train_config_t *c = &t->cfg;
    bl_status_t st = bl_stage_init(
        &t->stage, t->model, &t->layout, t->plan.first, c->batch, c->pipeline.micro_batches,
        c->pipeline.schedule == BL_SCHEDULE_GPIPE ? BL_PIPE_GPIPE : BL_PIPE_1F1B,
        t->pipe_group.direct);
    t->stage.direct = t->pipe_comm;
    return st;
}

bl_status_t bl_trainer_rebuild_stage(bl_trainer_t *t)
{
    /* Page-locked gradients cannot be given back: a stage-local rank unlocks
     * them around its change of layers and locks its new layers' after. */
    int pinned = t->stage_local && t->dev.pinned_grads != NULL;
    if (pinned) {
        bl_device_copies_settle(&t->dev);
    }
    bl_stage_free(&t->stage);
    bl_status_t st = bl_trainer_hold_layers(t, t->plan.first, 0);
    if (st == BL_OK) {
        st = bl_trainer_init_stage(t);
    }
    if (st == BL_OK) {
        st = bl_reducer_restage(t->reducer, t->stage.first, t->stage.last);
    }
    /* Under ZeRO-1 the rank keeps its new slice's momentum only. */
    if (st == BL_OK) {
        st = bl_trainer_narrow_momentum(t);
    }
    if (st == BL_OK && pinned) {
        bl_device_copies_pin_grads(&t->dev, t->rt);
    }
    return st;
}

/* Moves to stage map next at the boundary after step `step`, in every pipeline
 * at once: the layers that change stage send their parameters and momentum over
 * (migration.h), and then every rank rebuilds its stage (and its reducer's
 * buckets) for its new layers. All ranks agree on success before anyone trains
 * on, so a failure anywhere fails everywhere. Collective. */
bl_status_t bl_trainer_restage(bl_trainer_t *t, long step, const int *next, int *moved)
{
    bl_layout_t *l = &t->layout;
    double t0 = bl_now_seconds();
    bl_migration_t mig;
    /* Layers travel from the host arrays. A device rank brings them up to date
     * first, and its device copies afterwards, so that these hold the new
     * layers too. */
    bl_status_t down = bl_device_copies_download(&t->dev, t->rt, t->velocity);
    /* Under stage-local memory the stage holds its incoming layers beside its
     * own during the transfers, and gives back the outgoing ones afterwards
     * (bl_trainer_rebuild_stage). A rank that cannot hold them must not
     * receive, so the job agrees on it before any transfer. */
    /* Under ZeRO-1 every replica first gathers the stage's whole momentum,
     * which the outgoing layers carry; the new slices narrow it again
     * (bl_trainer_rebuild_stage). */
    bl_status_t st = bl_trainer_gather_momentum(t);
    st = bl_agree(t->rt, st == BL_OK ? bl_trainer_hold_layers(t, next, 1) : st, BL_ERR_NO_MEM,
                  "holding the incoming layers of a migration");
    if (st != BL_OK) {
        return st;
    }
    /* Every rank takes part in the transfers even after a failed download; the
     * agreement below then fails the move everywhere. */
    st = bl_migrate_layers(l, t->model, t->velocity, t->plan.first, next, &mig);
    if (st == BL_OK) {
        st = down;
    }
    if (st == BL_OK) {
        st = bl_device_copies_upload(&t->dev, t->rt, t->velocity);
    }
    if (st == BL_ERR_TIMEOUT) {
        return st; /* the job is ending, and an agreement would only wait again */
    }
    double agree[2] = {bl_now_seconds() - t0, st != BL_OK ? 1.0 : 0.0};
    bl_status_t agreed = bl_allreduce_bounded(t->rt, MPI_IN_PLACE, agree, 2, MPI_DOUBLE, MPI_MAX,
                                              t->rt->comm, "the agreement on a layer migration");
    if (st != BL_OK) {
        return st;
    }
    if (agreed != BL_OK) {
        return agreed;
    }
    if (agree[1] > 0.0) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "a layer migration after step %ld failed on another rank", step);
    }
    char from_map[512], to_map[512];
    bl_plan_format_map(t->plan.first, l->stages, from_map, sizeof from_map);
    bl_plan_format_map(next, l->stages, to_map, sizeof to_map);
    bl_log(t->rt, BL_LOG_INFO,
           "after step %ld: stage layers %s -> %s (%d layers moved, %.0f bytes per pipeline, "
           "%.3f ms)",
           step, from_map, to_map, mig.layers_moved, mig.pipeline_bytes, agree[0] * 1e3);
    bl_control_moved(&t->control, step, t->plan.first, next, &mig,
                     t->modelled_s_per_op > 0.0 ? bl_restager_nominal_move_s(mig.pipeline_bytes)
                                                : agree[0]);
    memcpy(t->plan.first, next, (size_t)(l->stages + 1) * sizeof *t->plan.first);
    *moved = mig.layers_moved;
    /* The new buffers (device memory may run out) are agreed on before the next
     * step. */
    return bl_agree(t->rt, bl_trainer_rebuild_stage(t), BL_ERR_MISMATCH, "rebuilding the stages");
}

/* In a pipelined job a rank's model is current only in its stage's layers once
 * a step has run. Without stage-local memory every stage sends its layers'
 * parameters to the rest of its pipeline, so that every rank's model is whole
 * and current for the caller (bl_model_save_params, inspection; evaluation and
 * the trainer's own files need none of it); there is nothing to do when it
 * already is. Under stage-local memory only the device copies come down.
 * Collective. */
bl_status_t bl_trainer_make_params_whole(bl_trainer_t *t)
{
    if (t->stage_local) {
        return bl_device_copies_download(&t->dev, t->rt, t->velocity);
    }
    if (t->layout.stages == 1 || t->whole_at == t->step) {
        return BL_OK;
    }
    /* A device rank's stage layers are current on the device, and afterwards
     * the device holds the whole model too (evaluation runs there). A rank
     * whose download failed still takes part in the broadcasts (the others wait
     * in them) and fails afterwards. */
    bl_status_t down = bl_device_copies_download(&t->dev, t->rt, t->velocity);
    bl_status_t st = BL_OK;
    for (int s = 0; s < t->layout.stages; s++) {
        size_t first, count;
        bl_trainer_stage_params(t, s, &first, &count);
        for (size_t done = 0; done < count;) {
            int n = count - done > (size_t)INT_MAX ? INT_MAX : (int)(count - done);
            st = bl_bcast_bounded(t->rt, t->model->params + first + done, n, MPI_FLOAT, s,
                                  t->layout.pipe, "the broadcast of a stage's parameters");
            if (st != BL_OK) {
                return st;
            }
            done += (size_t)n;
        }
    }
    /* Every rank learns of a failed download, whose layers went out stale. */
    st = bl_agree(t->rt, down, BL_ERR_MISMATCH, "downloading a stage's parameters");
    if (st != BL_OK) {
        return st;
    }
    t->whole_at = t->step;
    return bl_device_copies_upload(&t->dev, t->rt, t->velocity);
}

bl_status_t bl_trainer_sync_params(bl_trainer_t *t)
{
    if (t == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    /* A pipelined job downloads as part of making the model whole. */
    return t->layout.stages > 1 ? bl_trainer_make_params_whole(t)
                                : bl_device_copies_download(&t->dev, t->rt, t->velocity);
}
