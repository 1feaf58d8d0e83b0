/* Controller settings scored on every window: the learning core of the
 * bandit and rl shard policies (policy.h). Internal to partition/.
 *
 * A *setting* is a whole rule for the next plan: a speed predictor and a
 * dead-band. The tuner runs every setting side by side on the same
 * windows. Each setting keeps the plan it would be running now (its own
 * "current" plan, which may differ from the plan that actually ran), and
 * after each window it is scored by the step compute time its plan would
 * have taken at the window's measured speeds, over the least that any plan
 * could have taken (so a score is >= 1, and 1 is perfect).
 *
 * Why the scores are fair: a shard move costs nothing, and a rank's speed
 * (samples per second of compute) does not depend on how many samples it
 * was given, so one measured window scores every setting, not only the
 * one that ran. The learners therefore get full feedback: they explore for
 * nothing, and a setting is judged on exactly the windows that would have
 * followed its own plans.
 *
 * What the settings differ in is what the fixed rule (proportional) gets
 * wrong in one regime or another: how much a window's speeds are trusted
 * (all of it on a smooth drift, little of it under noise), whether a
 * one-window deviation is a transient (the median of three windows holds
 * through it) or a shift, whether a trend goes on (a rank that degrades
 * gradually), whether to move at all (the even split), and how to average
 * a bursty rank: a rank throttled in bursts (a CPU quota: full speed, then
 * stopped) computes some windows fast and some slowly, and the mean of its
 * speeds overstates it (fast windows count as much as slow ones, although
 * they hold less time); the ratio of its mean samples to its mean compute
 * seconds is its throughput. And how much of the ranks' differences is
 * real: the shrink setting treats each rank's estimate as its true speed
 * plus estimation noise and keeps only the part of the spread between
 * ranks that the noise does not explain (an empirical-Bayes shrinkage), so
 * equal ranks under heavy noise keep the even split, while ranks that
 * truly differ move at once. */
#ifndef BL_PARTITION_TUNER_H
#define BL_PARTITION_TUNER_H

#include <stddef.h>

#include "policy.h"
#include "state.h"

/* The settings, in the order ties are broken (the earlier wins). */
enum {
    BL_TUNE_PROPORTIONAL, /* the proportional policy's own rule: the shared estimator, dead-band */
    BL_TUNE_EVEN,         /* the even split, never moved */
    BL_TUNE_LAST,         /* the last window's speeds, no dead-band */
    BL_TUNE_MEDIAN3,      /* each rank's median of the last three windows, no dead-band */
    BL_TUNE_EMA50,        /* an EMA of weight 0.5, no dead-band */
    BL_TUNE_SLOW,         /* an EMA of weight 0.1, with the dead-band */
    BL_TUNE_TREND,        /* the last window plus its change from the one before */
    BL_TUNE_RATIO,        /* EMAs of samples and of compute seconds, their ratio, dead-band */
    BL_TUNE_SPARSE,       /* median3, but only the differences that noise cannot explain */
    BL_TUNE_SETTINGS
};

typedef struct bl_part_tuner bl_part_tuner_t;

/* What the tuner needs from the policy at each window. */
typedef struct bl_part_tune_input {
    const bl_rank_obs_t *obs;   /* the window's observations, ranks of them */
    const double *fallback;     /* speeds for ranks the window did not measure (shard 0) */
    const double *proportional; /* the shared estimator's speeds, unknown ones filled */
    const double *noise;        /* each rank's relative sigma of a window's speed (0: unknown) */
    double threshold;           /* the least relative gain worth a move, dead-band settings */
} bl_part_tune_input_t;

/* A tuner for ranks ranks and a batch of batch samples, whose plans keep
 * within [lo, hi] (either may be NULL: 0 and batch) and start at even (the
 * policy's even split, within the bounds). NULL when out of memory. */
bl_part_tuner_t *bl_part_tuner_create(int ranks, long batch, const long *lo, const long *hi,
                                      const long *even, const bl_part_allocator_t *a);
void bl_part_tuner_destroy(bl_part_tuner_t *t);

/* One window: scores every setting's plan on the window's measured speeds
 * (writing the scores into score, BL_TUNE_SETTINGS values, each >= 1),
 * then updates the predictors and makes every setting's next plan. */
void bl_part_tuner_observe(bl_part_tuner_t *t, const bl_part_tune_input_t *in, double *score);

/* The plan setting k would run next (ranks values). */
const long *bl_part_tuner_plan(const bl_part_tuner_t *t, int k);

/* The setting's name for telemetry ("proportional", "even", "last",
 * "median3", "ema0.5", "slow", "trend", "ratio", "shrink"). */
const char *bl_part_tuner_name(int k);

/* The tuner's state for checkpoints (state.h), and whether loaded values
 * are usable. */
int bl_part_tuner_walk(bl_part_tuner_t *t, bl_part_state_t *s);
int bl_part_tuner_valid(const bl_part_tuner_t *t);

#endif /* BL_PARTITION_TUNER_H */
