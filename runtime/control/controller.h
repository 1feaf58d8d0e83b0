/* The rank-0 controller: it sums the gathered telemetry of a control window
 * into per-rank observations, asks the policy (partition/, pure) for the next
 * shard plan every K steps, raises straggler alerts from the estimator's
 * detected speed changes, and broadcasts the shards, so that every rank applies
 * the same plan at the same step boundary (one decider). */
#ifndef BL_CONTROLLER_H
#define BL_CONTROLLER_H

#include "policy.h"
#include "telemetry.h"

#define BL_HOST_CHARS 64

/* The steps at the start of a run, and after a resume with measured times,
 * whose times neither the shard controller nor the stage controller
 * observes: they pay for first touches, page faults, cold caches and the
 * BLAS library's thread start-up, which are not the hardware's speed, so
 * they would raise straggler alerts and move samples for nothing. Three
 * steps cover what was measured here (the first step after a resume ran
 * 2.1x slower, the second and third within a few percent of steady
 * state), and cost a 60-step run 5% of its observations. */
#define BL_CONTROL_WARMUP_STEPS 3

typedef struct bl_controller {
    bl_runtime_t *rt;
    int every; /* K: the steps per control window */
    long batch;
    bl_policy_t *policy;   /* rank 0 */
    bl_rank_obs_t *window; /* rank 0: the per-rank sums over the window */
    double window_step_s;  /* rank 0: the sum of the window's step times */
    int window_steps;
    long *current, *next; /* rank 0: the plans as the policy sees them */
    long *message;        /* (1 + P) the broadcast: the changed flag, then the shards */
    char *hosts;          /* rank 0: P × BL_HOST_CHARS host names, for alerts */
    double *quotas;       /* rank 0: P, each rank's CPU quota in cores (0: none) */
    long warm_until;      /* rank 0: the steps before this one are not observed
                             (the warm-up, see BL_CONTROL_WARMUP_STEPS) */
    bl_decision_t last;   /* rank 0: the latest decision */
    int decided;          /* rank 0: a decision was made at the last boundary */
    long decided_at;      /* the step after which it was made */
    char events[512];     /* rank 0: the JSON array members of this window's alerts */
} bl_controller_t;

/* Sets up the controller for the policy `policy_name` (static, proportional,
 * bandit or rl) with a window of `every` steps. q_init is an rl table to start
 * from, or NULL; shard_min and shard_max are per-rank caps (P each, checked by
 * the caller), or NULL. Collective: every rank fails when rank 0 cannot set up
 * (BL_ERR_INVALID_ARG for an unknown policy or a bad setting; BL_ERR_NO_MEM). */
bl_status_t bl_controller_init(bl_controller_t *c, bl_runtime_t *rt, const char *policy_name,
                               int every, long batch, uint64_t seed, const double *q_init,
                               const long *shard_min, const long *shard_max);
void bl_controller_free(bl_controller_t *c);

/* Rank 0: adds one step's gathered records to the window. The records of the
 * warm-up (the steps before warm_until, see bl_controller_t) are left out. */
void bl_controller_observe(bl_controller_t *c, const bl_step_record_t *records);

/* Rank 0: the window in progress as doubles, for checkpoints: for each of the P
 * ranks its samples and its compute, comm, wait and CPU seconds (the CPU
 * seconds since checkpoints of 2026-12; an older window, of 4 doubles a rank,
 * does not fit and the resumed window starts empty), then the window's summed
 * step time and its step count. bl_controller_window_save writes them into
 * out. */
#define BL_CONTROLLER_RANK_DOUBLES      5
#define BL_CONTROLLER_WINDOW_DOUBLES(P) (BL_CONTROLLER_RANK_DOUBLES * (size_t)(P) + 2)
void bl_controller_window_save(const bl_controller_t *c, double *out);
/* Rank 0: replaces the window in progress with a saved one and returns 1.
 * Returns 0 when the values are not a window (negative, not finite, or too many
 * steps), and then leaves the window as it was. */
int bl_controller_window_load(bl_controller_t *c, const double *in);

/* Called after step `step` (0-based) has finished; collective. When a window
 * ends there, rank 0 decides from `shards` (P: the plan the window ran) and
 * broadcasts its decision; when the shards change, every rank writes the shards
 * to run from the next step into next (P) and sets *changed. Otherwise nothing
 * happens and *changed is 0. */
bl_status_t bl_controller_boundary(bl_controller_t *c, long step, const long *shards, long *next,
                                   int *changed);

/* Rank 0: writes the decision made at the last boundary into out (n bytes) as
 * JSON members ("decision":{...},"events":[...]), or "" when there is none. */
void bl_controller_describe(const bl_controller_t *c, char *out, size_t n);

#endif /* BL_CONTROLLER_H */
