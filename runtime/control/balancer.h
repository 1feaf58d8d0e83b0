/* The trainer's telemetry side, kept out of the step loop: per-step
 * records gathered to rank 0, the files written from them, and the rank-0
 * controller that rebalances shards from them. */
#ifndef BL_BALANCER_H
#define BL_BALANCER_H

#include "controller.h"
#include "telemetry.h"

typedef struct bl_balancer {
    bl_runtime_t *rt;
    int telemetry_on; /* records gathered every step (a policy, or a file to write) */
    bl_telemetry_t tm;
    double t0;         /* common time origin (after a barrier), seconds */
    int controller_on; /* a policy other than none */
    bl_controller_t ctl;
    /* rank 0: what the telemetry line of the step whose records arrive
     * next needs (records come one step late) */
    bl_step_info_t prev_info;
    long *prev_shards; /* (P) each rank's pipeline's shard in that step */
    int have_prev;
    /* pipelines (rank 0): the stage map the previous step ran (S + 1
     * entries), and the stage controller's notes for a step's line */
    int stages;
    int *prev_first;
    const char *(*note)(const void *arg, long step);
    const void *note_arg;
    /* what telemetry and control cost this rank: seconds in
     * bl_balancer_after_step, against the steps' own seconds */
    double spent_s;
    double step_s;
    long steps;
    double last_efficiency; /* rank 0: of the latest records delivered */
    char *extra;            /* rank 0: a telemetry line's extra members, reused */
    size_t extra_cap;
} bl_balancer_t;

/* Pipelines: every telemetry line also carries the stage map its step ran
 * ("stage_first") and note(note_arg, step)'s JSON members when not NULL. */
bl_status_t bl_balancer_track_pipeline(bl_balancer_t *b, int stages,
                                       const char *(*note)(const void *arg, long step),
                                       const void *note_arg);

/* Collective. Validates the policy settings, opens the telemetry
 * files (rank 0), loads the rl policy file (rank 0), sets up the shard
 * controller within the shard caps (P each, checked; or NULL). */
bl_status_t bl_balancer_init(bl_balancer_t *b, bl_runtime_t *rt, const bl_train_config_t *cfg,
                             const long *shard_min, const long *shard_max);
void bl_balancer_free(bl_balancer_t *b);

/* A stable digest of the adaptive settings, for the start-up check. */
uint64_t bl_balancer_digest(const bl_train_config_t *cfg);

/* Seconds since the common origin. */
double bl_balancer_now(const bl_balancer_t *b);

/* After every step, on every rank (collective): hands the step's record to
 * telemetry (rank 0 writes the previous step's line) with the plan the step
 * ran (rank_shards: each rank's pipeline's shard, P; first: the stage
 * map), then at a window's end lets the shard controller decide: when the
 * shards change, next_shards (P) receives them and *changed is set. */
bl_status_t bl_balancer_after_step(bl_balancer_t *b, const bl_step_record_t *record,
                                   bl_step_info_t *info, const long *rank_shards, const int *first,
                                   long *next_shards, int *changed);

/* Completes the telemetry gather in flight, so its records reach the
 * controller's window now (a checkpoint saves the window). Collective. */
bl_status_t bl_balancer_settle(bl_balancer_t *b);

/* Completes the telemetry in flight (end of a run). Collective. Rank 0
 * logs (info) what telemetry and control cost it per step so far, and the
 * share of the step time that is. */
bl_status_t bl_balancer_flush(bl_balancer_t *b);

#endif /* BL_BALANCER_H */
