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

#include "policy.h"

/* The actions of the adaptive kinds. The first four are the bandit's arms
 * (hold, or move 0.25, 0.5 or 1.0 of the way to the target); rl has all
 * five. */
enum { BL_SHARD_HOLD, BL_SHARD_MOVE_25, BL_SHARD_MOVE_50, BL_SHARD_MOVE_100, BL_SHARD_EVEN };

#define BL_SHARD_ARMS 4 /* the bandit's arms: the action indices before BL_SHARD_EVEN */

struct bl_policy {
    bl_part_allocator_t a;
    bl_policy_kind_t kind;
    int ranks;
    long batch;
    double deadband;
    long *lo; /* copies of the bounds, or NULL */
    long *hi;
    bl_estimator_t *est;
    double *speed; /* estimated speeds, unknown ones the mean (samples/s) */
    double *rem;   /* rounding scratch */
    long *target;  /* the proportional plan of the estimates */
    long *cand;    /* the plan being decided */
    long *even;    /* the even split (within the bounds) */
    /* bandit: discounted pulls and reward sums per arm; the arm whose
     * window is measured next (-1: none) */
    double arm_n[BL_SHARD_ARMS];
    double arm_s[BL_SHARD_ARMS];
    int prev_arm;
    int rebased; /* bandit: the priors are on the measured reward scale */
    /* rl */
    double *q; /* BL_RL_STATES × BL_RL_ACTIONS, row-major by state */
    int prev_state;
    int prev_action; /* -1: none to credit */
    double prev_step_s;
    int q_default; /* rl: the default table, still to rebase at the first reward */
    uint64_t rng;  /* splitmix64 state */
    long t;        /* decisions made, for ε */
};

/* ---- policy_check.c ---------------------------------------------------- */

/* Checks everything in a configuration but memory: 0, or -1 with a message
 * in err that names the field at fault. */
int bl_part_policy_check_config(const bl_policy_config_t *c, char *err, size_t errlen);

/* What is wrong with a window's inputs, as a static string naming the
 * field, or NULL when they are fine. */
const char *bl_part_policy_check_window(const bl_policy_t *p, const bl_rank_obs_t *obs,
                                        double step_s, const long *current);

/* ---- policy_learn.c ---------------------------------------------------- */

/* Sets the bandit's priors (one pseudo-pull per arm) and, when p has a
 * Q-table, fills it from q_init (BL_RL_STATES × BL_RL_ACTIONS values) or,
 * with q_init NULL, with the default table, marked to be rebased at the
 * first measured reward. */
void bl_part_policy_priors(bl_policy_t *p, const double *q_init);

/* The bandit's action for this window: credits the previous arm with the
 * window's step time against optimal_s, then BL_SHARD_MOVE_100 when the
 * bounds are broken (must), BL_SHARD_HOLD when no move is wanted, else
 * the discounted-UCB arm. */
int bl_part_policy_bandit_decide(bl_policy_t *p, double step_s, double optimal_s, int must,
                                 int want);

/* rl's action for this window: credits the previous (state, action), then
 * chooses ε-greedily; BL_SHARD_MOVE_100 when the bounds are broken, and
 * only a hold or "even" when no move is wanted. Draws twice from p's
 * stream every call. */
int bl_part_policy_rl_decide(bl_policy_t *p, double step_s, double predicted_s, double optimal_s,
                             int must, int want);

#endif /* BL_PARTITION_POLICY_IMPL_H */
