/* The shard policy's insides, shared by the files that implement
 * policy.h: policy.c (creation, the decision and the checkpoint walk),
 * policy_check.c (the checks of a configuration and of a window) and
 * policy_learn.c (the bandit's and rl's priors and choices). The struct
 * and the action numbers are defined here once, so that the files cannot
 * disagree on them. Internal to partition/: no caller outside these files
 * includes it. */
#ifndef BL_PARTITION_POLICY_IMPL_H
#define BL_PARTITION_POLICY_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "capacity.h"
#include "policy.h"
#include "tuner.h"

/* The actions of static and proportional: keep the plan, take the
 * estimated optimum (the proportional plan of the estimates), or the even
 * split. bandit and rl act by running one of the tuner's settings
 * (tuner.h) instead. */
enum { BL_SHARD_HOLD, BL_SHARD_TARGET, BL_SHARD_EVEN };

struct bl_policy {
    bl_part_allocator_t a;
    bl_policy_kind_t kind;
    int ranks;
    long batch;
    double deadband;
    long *lo; /* copies of the bounds, or NULL */
    long *hi;
    /* The least shard of each rank in the adaptive kinds' plans: lo, but at
     * least 1 where hi allows it and the batch has room (a probe: a rank
     * given no samples would never be measured again), or NULL. */
    long *floor;
    bl_estimator_t *est;
    double *speed; /* estimated speeds, unknown ones the mean (samples/s) */
    double *rem;   /* rounding scratch */
    long *target;  /* the proportional plan of the estimates */
    long *cand;    /* the plan being decided */
    long *even;    /* the even split (within the bounds) */
    /* bandit and rl */
    bl_part_tuner_t *tuner;
    double score[BL_TUNE_SETTINGS]; /* the last window's score of each setting */
    int chosen;                     /* the setting running now */
    /* The learners' statistics (policy_learn.c): states ×
     * BL_RL_STATE_DOUBLES values, one state for the bandit, BL_RL_STATES
     * for rl; and the state in which the running setting was chosen (-1:
     * none yet). */
    double *table;
    int states;
    int prev_state;
    /* CPU budgets (capacity.h; NULL without a rank under a quota): each
     * rank's budget, its last BL_BUDGET_HISTORY windows' compute seconds
     * per sample (newest at hist_at; 0: none), the unconstrained ranks'
     * seconds per step beyond compute (an EMA; < 0: none yet), the caps,
     * and the bounds with the caps in them. */
    bl_cpu_budget_t *budget;
    double *per_sample_hist;
    int hist_at;
    double overhead_s;
    long *cap;
    long *capped_hi;
};

/* The windows over which a quota rank's least compute seconds per sample
 * stand for its full speed: some windows of a rank that runs in bursts
 * miss the stalls, and the least of 8 finds one. */
enum { BL_BUDGET_HISTORY = 8 };

/* ---- policy_check.c ---------------------------------------------------- */

/* Checks everything in a configuration but memory: 0, or -1 with a message
 * in err that names the field at fault. */
int bl_part_policy_check_config(const bl_policy_config_t *c, char *err, size_t errlen);

/* What is wrong with a window's inputs, as a static string naming the
 * field, or NULL when they are fine. */
const char *bl_part_policy_check_window(const bl_policy_t *p, const bl_rank_obs_t *obs,
                                        double step_s, const long *current);

/* ---- policy_learn.c ---------------------------------------------------- */

/* Starts the learners: the anchor setting (proportional) runs, and the table is
 * q_init's copy (rl, BL_RL_TABLE_DOUBLES values) or empty (no evidence). */
void bl_part_policy_priors(bl_policy_t *p, const double *q_init);

/* bandit and rl: feeds the window to the tuner and chooses the setting
 * whose plan runs next (p->chosen). threshold is the proportional rule's
 * least relative gain worth a move (policy.c's move_threshold), which the
 * dead-band settings use. */
void bl_part_policy_learn(bl_policy_t *p, const bl_rank_obs_t *obs, double threshold);

/* Whether a learners' table (states × BL_RL_STATE_DOUBLES values, loaded
 * from a checkpoint) is usable: finite, weights and squares >= 0. */
int bl_part_policy_table_valid(const double *table, int states);

/* ---- policy_budget.c --------------------------------------------------- */

/* Adds a window to the quota ranks' budgets (nothing without quotas). */
void bl_part_budget_observe(bl_policy_t *p, const bl_rank_obs_t *obs);

/* The plans' upper bounds: the policy's own (p->hi, maybe NULL), or with
 * the quota ranks' caps in them (p->capped_hi) once their budgets are
 * known and the caps can hold the batch. Reads p->speed (filled). */
const long *bl_part_budget_bounds(bl_policy_t *p);

/* Whether plan puts more on a rank than bounds (from
 * bl_part_budget_bounds) allow; 0 when bounds are the policy's own. */
int bl_part_budget_exceeded(const bl_policy_t *p, const long *bounds, const long *plan);

/* Frees the budgets (bl_policy_destroy). */
void bl_part_budget_free(bl_policy_t *p);

#endif /* BL_PARTITION_POLICY_IMPL_H */
