/* The one controller of a job. After every step it takes the step's telemetry:
 * the per-step records gathered to rank 0, with the shard controller's
 * decisions (balancer.h), and the per-layer times, with the stage controller's
 * decisions and scripted maps (restager.h). At a control window's end it emits
 * the plan for the next step, the same on every rank and with the plan's
 * version one higher: new shards (data parallelism) or a new stage map
 * (pipelines). The trainer applies the plan (a new slice, or a layer
 * migration). The controllers' state also travels in checkpoints through here. */
#ifndef BL_CONTROL_H
#define BL_CONTROL_H

#include "balancer.h"
#include "checkpoint.h"
#include "restager.h"

typedef struct bl_control {
    bl_runtime_t *rt;
    bl_balancer_t balancer; /* telemetry and the shard controller */
    bl_restager_t restager; /* per-layer times, the stage controller and the scripted maps */
} bl_control_t;

/* Sets up telemetry and both controllers. cfg is the trainer's validated
 * config, l its grid, and plan its first plan, within whose caps the shard
 * controller plans. Collective. */
bl_status_t bl_control_init(bl_control_t *c, bl_runtime_t *rt, const bl_train_config_t *cfg,
                            const bl_model_t *m, const bl_layout_t *l, const bl_plan_t *plan);
void bl_control_free(bl_control_t *c);

/* Called after every step; collective. record is the step's telemetry, stage is
 * the stage that ran it (for its per-layer times), and step_s is the step's
 * time as the stage controller sees it. plan is the plan that the step ran.
 * *changed says what changes for the next step: BL_CONTROL_SHARDS (then
 * next->shards holds the new shards), BL_CONTROL_MAP (next->first holds the
 * new stage map), both, or 0; next->version is the next step's plan version
 * (one higher when anything changes). Nothing else of next is written, so
 * the per-step cost does not grow with the plan. info receives the
 * telemetry's figures for progress displays, the latest decision and the next
 * plan's version. */
enum { BL_CONTROL_SHARDS = 1, BL_CONTROL_MAP = 2 };
bl_status_t bl_control_after_step(bl_control_t *c, const bl_step_record_t *record,
                                  const bl_stage_t *stage, double step_s, const bl_plan_t *plan,
                                  bl_plan_t *next, bl_step_info_t *info, int *changed);

/* Returns the time on the step records' clock: the seconds since their common
 * origin. */
double bl_control_now(const bl_control_t *c);

/* Reports a layer migration after step `step` from map `from` to map `to`, so
 * that the stage controller learns its cost; `seconds` is the slowest rank's
 * time, or a modelled one. */
void bl_control_moved(bl_control_t *c, long step, const int *from, const int *to,
                      const bl_migration_t *mig, double seconds);

/* Completes the telemetry in flight at the end of a run; rank 0 logs what
 * telemetry and control cost it. Collective. */
bl_status_t bl_control_flush(bl_control_t *c);

/* Collects the controllers' state for a checkpoint into s on rank 0
 * (s->control, which the caller frees with bl_mem_free). The telemetry in
 * flight is settled into the shard controller's window, every rank's
 * stage-controller window is gathered, and rank 0 packs both policies' learned
 * state with the windows (policy_state.h). Collective. */
bl_status_t bl_control_save(bl_control_t *c, bl_ckpt_state_t *s);

/* On resume: rank 0 loads the policies' learned state and the shard
 * controller's window in progress, and every rank its stage-controller window,
 * when they were saved for this layout (the same ranks and layers); `path`
 * names the checkpoint in the log. Collective. With measured times (modelled 0)
 * the resumed process's first step is cold (caches, first touches) and is not
 * observed; with modelled times nothing is cold, and the windows go on exactly
 * as saved. */
bl_status_t bl_control_restore(bl_control_t *c, const bl_ckpt_state_t *s, const char *path,
                               int modelled);

#endif /* BL_CONTROL_H */
