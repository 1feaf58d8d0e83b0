/* The one controller (control.h): it turns the balancer's and the restager's
 * decisions after every step into the next plan, and carries the controllers'
 * state in checkpoints. */
#include <string.h>

#include "consistency.h"
#include "control.h"
#include "policy_state.h"
#include "wait.h"

static const char *restager_note(const void *restager, long step)
{
    return bl_restager_note(restager, step);
}

bl_status_t bl_control_init(bl_control_t *c, bl_runtime_t *rt, const bl_train_config_t *cfg,
                            const bl_model_t *m, const bl_layout_t *l, const bl_plan_t *plan)
{
    memset(c, 0, sizeof *c);
    c->rt = rt;
    bl_status_t st = bl_balancer_init(&c->balancer, rt, cfg, plan->shard_min, plan->shard_max);
    if (st == BL_OK) {
        st = bl_restager_init(&c->restager, rt, cfg, m, l);
    }
    if (st == BL_OK) {
        st = bl_balancer_track_pipeline(&c->balancer, l->stages, restager_note, &c->restager);
    }
    return st;
}

void bl_control_free(bl_control_t *c)
{
    if (c->rt == NULL) {
        return;
    }
    bl_balancer_free(&c->balancer);
    bl_restager_free(&c->restager);
    memset(c, 0, sizeof *c);
}

bl_status_t bl_control_after_step(bl_control_t *c, const bl_step_record_t *record,
                                  const bl_stage_t *stage, double step_s, const bl_plan_t *plan,
                                  bl_plan_t *next, bl_step_info_t *info, int *changed)
{
    *changed = 0;
    /* The shards (only without pipelining, when a shard is a rank's). */
    int shards = 0, map = 0;
    bl_status_t st =
        bl_balancer_after_step(&c->balancer, record, info, plan, next->shards, &shards);
    /* With pipelines: the stage map. */
    if (st == BL_OK && c->restager.on) {
        bl_restager_observe(&c->restager, stage, step_s);
        st = bl_restager_boundary(&c->restager, info->step, plan->first, next->first, &map);
        if (c->restager.last_action != NULL) {
            info->decision = c->restager.last_action;
        }
    }
    *changed = (shards ? BL_CONTROL_SHARDS : 0) | (map ? BL_CONTROL_MAP : 0);
    next->version = plan->version + (*changed != 0);
    info->plan_changed = shards;
    info->plan_version = next->version;
    return st;
}

double bl_control_now(const bl_control_t *c)
{
    return bl_balancer_now(&c->balancer);
}

void bl_control_moved(bl_control_t *c, long step, const int *from, const int *to,
                      const bl_migration_t *mig, double seconds)
{
    bl_restager_moved(&c->restager, step, from, to, mig, seconds);
}

bl_status_t bl_control_flush(bl_control_t *c)
{
    return bl_balancer_flush(&c->balancer);
}

/* Collects the controllers' state for a checkpoint into s on rank 0: the
 * telemetry in flight is settled into the shard controller's window, every
 * rank's stage-controller window is gathered, and rank 0 packs both policies'
 * learned state with the windows (policy_state.h). Collective. */
bl_status_t bl_control_save(bl_control_t *c, bl_ckpt_state_t *s)
{
    bl_runtime_t *rt = c->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    int P = rt->size, L = c->restager.layers;
    bl_control_windows_t w = {.ranks = P, .layers = L};
    double *shard = NULL, *stage = NULL;
    bl_status_t st = bl_balancer_settle(&c->balancer);
    if (st != BL_OK) {
        return st;
    }
    if (rt->rank == 0) {
        w.shard_count = c->balancer.controller_on ? BL_CONTROLLER_WINDOW_DOUBLES(P) : 0;
        w.stage_count = c->restager.on ? (size_t)P * BL_RESTAGER_WINDOW_DOUBLES(L) : 0;
        shard = w.shard_count > 0 ? bl_mem_array(a, w.shard_count, sizeof *shard) : NULL;
        stage = w.stage_count > 0 ? bl_mem_array(a, w.stage_count, sizeof *stage) : NULL;
        if ((w.shard_count > 0 && shard == NULL) || (w.stage_count > 0 && stage == NULL)) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for the control windows of %d ranks", P);
        }
    }
    st = bl_agree(rt, st, BL_ERR_NO_MEM, "saving the control windows");
    if (st == BL_OK) {
        st = bl_restager_gather_windows(&c->restager, stage);
    }
    if (st == BL_OK && rt->rank == 0) {
        if (shard != NULL) {
            bl_controller_window_save(&c->balancer.ctl, shard);
        }
        w.shard = shard;
        w.stage = stage;
        st = bl_policy_state_collect(rt, c->balancer.ctl.policy, c->restager.policy, &w,
                                     &s->control, &s->control_bytes);
    }
    bl_mem_free(a, shard);
    bl_mem_free(a, stage);
    return st;
}

/* On resume: rank 0 loads the policies' learned state and the shard
 * controller's window in progress, and every rank its stage-controller window,
 * when they were saved for this layout (the same ranks and layers). Collective.
 * With measured times the resumed process's first step is cold (caches, first
 * touches) and is not observed; with modelled times nothing is cold, and the
 * windows go on exactly as saved. */
bl_status_t bl_control_restore(bl_control_t *c, const bl_ckpt_state_t *s, const char *path,
                               int modelled)
{
    bl_runtime_t *rt = c->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    int P = rt->size, L = c->restager.layers;
    double *stage = NULL;
    int stage_fits = 0;
    if (rt->rank == 0) {
        bl_control_windows_t w;
        bl_policy_state_restore(rt, c->balancer.ctl.policy, c->restager.policy, s->control,
                                s->control_bytes, path, &w);
        size_t shard_count = BL_CONTROLLER_WINDOW_DOUBLES(P);
        size_t stage_count = (size_t)P * BL_RESTAGER_WINDOW_DOUBLES(L);
        int shard_fits = c->balancer.controller_on && w.ranks == P && w.shard_count == shard_count;
        stage_fits =
            c->restager.on && w.ranks == P && w.layers == L && w.stage_count == stage_count;
        double *shard = shard_fits ? bl_mem_array(a, shard_count, sizeof *shard) : NULL;
        stage = stage_fits ? bl_mem_array(a, stage_count, sizeof *stage) : NULL;
        shard_fits = shard != NULL;
        stage_fits = stage != NULL;
        if (shard != NULL) {
            memcpy(shard, w.shard, shard_count * sizeof *shard);
            shard_fits = bl_controller_window_load(&c->balancer.ctl, shard);
        }
        if (stage != NULL) {
            memcpy(stage, w.stage, stage_count * sizeof *stage);
        }
        bl_mem_free(a, shard);
        if ((w.shard_count > 0 && !shard_fits) || (w.stage_count > 0 && !stage_fits)) {
            bl_log(rt, BL_LOG_INFO,
                   "resume: %s's control windows in progress do not fit this run (%d ranks, %d "
                   "layers); they start empty",
                   path, P, L);
        }
    }
    bl_status_t st = bl_restager_scatter_windows(&c->restager, stage, stage_fits);
    bl_mem_free(a, stage);
    if (!modelled) {
        c->balancer.ctl.warm_until = s->step + BL_CONTROL_WARMUP_STEPS;
        c->restager.skip_next = BL_CONTROL_WARMUP_STEPS;
    }
    return st;
}
