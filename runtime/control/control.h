/* The one controller of a job. After every step it takes the step's
 * telemetry — the per-step records gathered to rank 0 with the shard
 * controller's decisions (balancer.h), and the per-layer times with the
 * stage controller's decisions and scripted maps (restager.h) — and at a
 * control window's end it emits the plan for the next step: new shards
 * (data parallelism) or a new stage map (pipelines), the same on every
 * rank, with the plan's version one higher. Applying it (a new slice, a
 * layer migration) is the trainer's. The controllers' state travels in
 * checkpoints through here too. */
#ifndef BL_CONTROL_H
#define BL_CONTROL_H

#include "balancer.h"
#include "checkpoint.h"
#include "restager.h"

typedef struct bl_control {
    bl_runtime_t *rt;
    bl_balancer_t balancer; /* telemetry, the shard controller */
    bl_restager_t restager; /* per-layer times, the stage controller, scripted maps */
    int stages;             /* S: rank r runs pipeline r / S's shard */
    long *rank_shards;      /* (P) each rank's pipeline's shard, for telemetry */
} bl_control_t;

/* Collective. cfg is the trainer's validated config, l its grid and plan
 * its first plan (the shard controller plans within its caps). */
bl_status_t bl_control_init(bl_control_t *c, bl_runtime_t *rt, const bl_train_config_t *cfg,
                            const bl_model_t *m, const bl_layout_t *l, const bl_plan_t *plan);
void bl_control_free(bl_control_t *c);

/* Collective, after every step: record is the step's telemetry, stage the
 * stage that ran it (its per-layer times) and step_s the step's time as
 * the stage controller sees it. plan is the plan the step ran; next
 * receives the plan to run from the next step (plan itself when nothing
 * changes; one version higher when something does). *changed says what
 * changed: BL_CONTROL_SHARDS, BL_CONTROL_MAP, or 0. info gets the
 * telemetry's figures for progress displays and the latest decision. */
enum { BL_CONTROL_SHARDS = 1, BL_CONTROL_MAP = 2 };
bl_status_t bl_control_after_step(bl_control_t *c, const bl_step_record_t *record,
                                  const bl_stage_t *stage, double step_s, const bl_plan_t *plan,
                                  bl_plan_t *next, bl_step_info_t *info, int *changed);

/* The time origin of the step records. */
double bl_control_now(const bl_control_t *c);

/* A layer migration happened (the stage controller learns its cost):
 * `seconds` is the slowest rank's, or a modelled time. */
void bl_control_moved(bl_control_t *c, long step, const int *from, const int *to,
                      const bl_migration_t *mig, double seconds);

/* Collective: completes the telemetry in flight (end of a run); rank 0
 * logs what telemetry and control cost it. */
bl_status_t bl_control_flush(bl_control_t *c);

/* Collective: the controllers' state for a checkpoint into s (rank 0):
 * the telemetry in flight is settled into the shard controller's window,
 * every rank's stage-controller window is gathered, and rank 0 packs both
 * policies' learned state with the windows (policy_state.h). */
bl_status_t bl_control_save(bl_control_t *c, bl_ckpt_state_t *s);

/* Collective, on resume: rank 0 loads the policies' learned state and the
 * shard controller's window in progress, and every rank its
 * stage-controller window, when they were saved for this layout (the same
 * ranks and layers); `path` names the checkpoint in the log. With measured
 * times (modelled 0) the resumed process's first step is cold (caches,
 * first touches) and is not observed; with modelled times nothing is
 * cold, and the windows go on exactly as saved. */
bl_status_t bl_control_restore(bl_control_t *c, const bl_ckpt_state_t *s, const char *path,
                               int modelled);

#endif /* BL_CONTROL_H */
