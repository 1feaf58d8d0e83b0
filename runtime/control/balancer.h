/* The trainer's telemetry side, kept out of the step loop: the per-step records
 * gathered to rank 0, the files written from them, and the rank-0 controller
 * that rebalances the shards from them. */
#ifndef BL_BALANCER_H
#define BL_BALANCER_H

#include "controller.h"
#include "plan.h"
#include "telemetry.h"

typedef struct bl_balancer {
    bl_runtime_t *rt;
    int telemetry_on; /* records gathered every step (for a policy, or a file to write) */
    bl_telemetry_t tm;
    double t0;         /* the common time origin in seconds, taken after a barrier */
    int controller_on; /* 1 with a policy other than none and no pipelines */
    bl_controller_t ctl;
    /* Rank 0: what the telemetry line needs for the step whose records arrive
     * next (records arrive one step late). */
    bl_step_info_t prev_info;
    long *prev_shards; /* (P) each rank's pipeline's shard in that step */
    int have_prev;
    /* Pipelines (rank 0): the stage map that the previous step ran (S + 1
     * entries), and the stage controller's notes for a step's line. */
    int stages;
    int *prev_first;
    const char *(*note)(const void *arg, long step);
    const void *note_arg;
    /* What telemetry and control cost this rank: the seconds spent in
     * bl_balancer_after_step, against the steps' own seconds. */
    double spent_s;
    double step_s;
    long steps;
    double last_efficiency; /* rank 0: the efficiency of the latest records delivered */
    char *extra;            /* rank 0: a telemetry line's extra members, reused */
    size_t extra_cap;
} bl_balancer_t;

/* For pipelines: makes every telemetry line also carry the stage map its step
 * ran ("stage_first") and the JSON members of note(note_arg, step) when that is
 * not NULL. Rank 0 only; a no-op elsewhere, without telemetry or with one
 * stage. BL_ERR_NO_MEM on failure. */
bl_status_t bl_balancer_track_pipeline(bl_balancer_t *b, int stages,
                                       const char *(*note)(const void *arg, long step),
                                       const void *note_arg);

/* Validates the policy settings, opens the telemetry files (rank 0), loads the
 * rl policy file (rank 0) and sets up the shard controller within the shard
 * caps (P each, already checked; or NULL). Collective; on failure nothing stays
 * allocated. */
bl_status_t bl_balancer_init(bl_balancer_t *b, bl_runtime_t *rt, const bl_train_config_t *cfg,
                             const long *shard_min, const long *shard_max);
void bl_balancer_free(bl_balancer_t *b);

/* Returns a stable digest of the adaptive settings (the policy and its window),
 * for the start-up check. */
uint64_t bl_balancer_digest(const bl_train_config_t *cfg);

/* Returns the seconds since the common time origin. */
double bl_balancer_now(const bl_balancer_t *b);

/* Called after every step on every rank; collective. Hands the step's record to
 * telemetry with the plan the step ran (the line names each rank's
 * pipeline's shard and the stage map), and rank 0 writes the previous step's
 * line. At a window's end the shard controller then decides: when the
 * shards change, next_shards (P) receives them and *changed is set. info
 * receives rank 0's load-balance efficiency and latest decision. */
bl_status_t bl_balancer_after_step(bl_balancer_t *b, const bl_step_record_t *record,
                                   bl_step_info_t *info, const bl_plan_t *plan, long *next_shards,
                                   int *changed);

/* Completes the telemetry gather in flight, so that its records reach the
 * controller's window now (a checkpoint saves the window). Collective. */
bl_status_t bl_balancer_settle(bl_balancer_t *b);

/* Completes the telemetry in flight at the end of a run. Collective. Rank 0
 * logs at info level what telemetry and control cost it per step so far, and
 * which share of the step time that is. */
bl_status_t bl_balancer_flush(bl_balancer_t *b);

#endif /* BL_BALANCER_H */
