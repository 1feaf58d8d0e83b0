/* The stage policy's insides, shared by the files that implement
 * restage.h: restage.c (creation, the decision and the checkpoint walk),
 * restage_check.c (the checks of a configuration and of a window),
 * restage_fit.c (the estimation of layer costs and stage speeds) and
 * restage_learn.c (the bandit's and rl's priors and choices). The struct
 * and the action numbers are defined here once, so that the files cannot
 * disagree on them. Internal to partition/: no caller outside these files
 * includes it. */
#ifndef BL_PARTITION_RESTAGE_IMPL_H
#define BL_PARTITION_RESTAGE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "restage.h"

/* The actions of every kind: keep the map, or move to the best one. */
enum { BL_STAGE_HOLD, BL_STAGE_REPARTITION, BL_STAGE_ACTIONS };

#define BL_STAGE_RL_STATES 18 /* rl's states: gain (3) × payback (2) × noise (3) */

struct bl_restage {
    bl_part_allocator_t a;
    bl_restage_config_t c; /* arrays below are the copies */
    bl_estimator_t *est;
    double *cost;  /* (L) learnt layer costs, anchor units */
    double *seen;  /* (L × S) EMA of layer i's seconds per step on stage s, 0: none */
    double *speed; /* (S) fitted stage speeds, anchor units per second */
    double anchor_total;
    double *boundary; /* (L) seconds a cut before layer i adds to each side */
    double *anchor, *layer_bytes, *edge_bytes;
    bl_rank_obs_t *stage_obs;   /* (S) */
    int *best;                  /* (S + 1) */
    int *proposed;              /* (S + 1) the map a window found paying, to confirm */
    bl_speed_change_t *changes; /* (S) the window's detected changes */
    int *changed;               /* (S) 1: stage s changed this window */
    int outliers;               /* stages whose window was left out as outliers */
    int *last_first;            /* (S + 1) the map of the previous window */
    int seen_map;
    int proposed_valid;
    int *undo;        /* (S + 1) the map the last fast move left */
    int undo_windows; /* windows left in which a return to undo shows a transient */
    int fast_rest;    /* windows left in which strong gains still need confirming */
    int reversals;    /* fast moves undone so far */
    double bandwidth;
    double migrated_s;              /* measured migration seconds since the last decision */
    int prev_action;                /* bandit and rl: the action to credit (-1: none) */
    int prev_state;                 /* rl */
    double arm_n[BL_STAGE_ACTIONS]; /* bandit: discounted pulls */
    double arm_s[BL_STAGE_ACTIONS]; /* bandit: discounted reward sums */
    double q[BL_STAGE_RL_STATES * BL_STAGE_ACTIONS];
    uint64_t rng;
    long t; /* rl decisions so far */
};

/* ---- restage_check.c --------------------------------------------------- */

/* Checks everything in a configuration but memory: 0, or -1 with a message
 * in err that names the field at fault. */
int bl_part_restage_check_config(const bl_restage_config_t *c, char *err, size_t errlen);

/* What is wrong with a window's observation, as a static string, or NULL
 * when it is fine. */
const char *bl_part_restage_check_window(const bl_restage_t *r, const bl_restage_obs_t *o);

/* ---- restage_fit.c ----------------------------------------------------- */

/* Feeds a valid window to r's estimates: change detection on the stages'
 * speeds, the seen table (outlier stages left out, r->outliers counts
 * them), then the fit of costs and speeds. Returns the estimator's
 * detected changes. */
int bl_part_restage_learn(bl_restage_t *r, const bl_restage_obs_t *o);

/* ---- restage_learn.c --------------------------------------------------- */

/* Sets the bandit's priors (one pseudo-pull per arm) and rl's starting
 * Q-table; both favour repartition until it is measured. */
void bl_part_restage_priors(bl_restage_t *r);

/* The reward of a window: best_s over the step time measured (migration
 * seconds included), capped; 0 for a step time of 0. */
double bl_part_restage_reward(double best_s, double step_s);

/* The bandit's action: credits the previous action with reward, then
 * BL_STAGE_HOLD when no move is admissible, else the discounted-UCB
 * choice. */
int bl_part_restage_bandit_pick(bl_restage_t *r, double reward, int admissible);

/* rl's action: credits the previous (state, action) with reward, then
 * chooses ε-greedily; BL_STAGE_HOLD when no move is admissible. Draws
 * twice from r's stream every call. */
int bl_part_restage_rl_pick(bl_restage_t *r, double reward, double rel_gain, double payback,
                            int admissible);

#endif /* BL_PARTITION_RESTAGE_IMPL_H */
