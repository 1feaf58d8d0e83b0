/* Shard-rebalancing policies and the speed estimator behind them.
 *
 * Pure: numbers in, plans out — no MPI, no clocks, no globals, no I/O. A
 * policy run twice on the same inputs and seed decides the same (DESIGN
 * invariant 4). The same code runs inside a job (rank 0's controller) and
 * inside the simulator (ballast-sim) against thousands of simulated ranks.
 *
 * Vocabulary: a *window* is the K steps between two decisions. For each
 * window the caller reports, per rank, the samples it processed and the
 * seconds it spent computing them, plus the window's measured mean step
 * time. A *plan* is the shard sizes: P non-negative integers summing to B. */
#ifndef BL_POLICY_H
#define BL_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* Optional allocation hooks (the runtime passes its own); NULL members:
 * malloc and free. */
typedef struct bl_part_allocator {
    void *(*alloc)(size_t nbytes, void *ctx);
    void (*release)(void *ptr, void *ctx);
    void *ctx;
} bl_part_allocator_t;

/* ---- Speed estimation ----------------------------------------------- */

/* What one rank did during one window. */
typedef struct bl_rank_obs {
    double samples;   /* samples computed (its shard × steps in the window) */
    double compute_s; /* seconds of forward + backward for them */
    double comm_s;    /* seconds in gradient communication (informative) */
    double wait_s;    /* seconds waiting for slower ranks (informative) */
    /* CPU seconds the rank's process used in the window's steps (0:
     * unknown). With a CPU quota set (bl_policy_set_cpu_quotas), they give
     * the rank's CPU budget (partition/capacity.h). */
    double cpu_s;
} bl_rank_obs_t;

typedef struct bl_estimator_params {
    double alpha;        /* EMA weight of a new observation, (0, 1]; e.g. 0.3 */
    double change_sigma; /* a deviation beyond this many noise sigmas... */
    int change_windows;  /* ...for this many windows in a row is a real change */
} bl_estimator_params_t;

#define BL_ESTIMATOR_PARAMS_DEFAULT                                                                \
    {                                                                                              \
        .alpha = 0.3, .change_sigma = 4.0, .change_windows = 2                                     \
    }

/* Per-rank speed (samples per second of compute) as the ratio of EMAs of
 * each window's samples and compute seconds (the rank's throughput, also
 * when it is throttled in bursts), with change detection: when a rank's observed speed stays beyond
 * change_sigma noise sigmas of the estimate for change_windows windows, the estimate jumps to the
 * recent observations (tracking a real shift within a few windows) and the event is reported;
 * isolated outliers move the EMAs only by alpha (noise is not chased). Ranks with samples == 0 keep
 * their estimate. */
typedef struct bl_estimator bl_estimator_t;

/* A detected change of one rank's speed. */
typedef struct bl_speed_change {
    int rank;
    double factor; /* new speed / old speed: < 1 slower, > 1 faster */
} bl_speed_change_t;

int bl_estimator_create(int ranks, const bl_estimator_params_t *params,
                        const bl_part_allocator_t *a, bl_estimator_t **out);
void bl_estimator_destroy(bl_estimator_t *e);
/* Feeds one window. Writes up to max_changes detected changes into changes
 * (may be NULL) and returns how many there were (may exceed max_changes). */
int bl_estimator_update(bl_estimator_t *e, const bl_rank_obs_t *obs, bl_speed_change_t *changes,
                        int max_changes);
/* The changes the most recent bl_estimator_update detected: up to max of
 * them into changes; returns how many there were. (The controller uses it
 * after bl_policy_decide, which updates the policy's estimator.) */
int bl_estimator_last_changes(const bl_estimator_t *e, bl_speed_change_t *changes, int max);

/* Estimated speeds (ranks values; 0 for a rank never observed). Belongs to
 * the estimator. */
const double *bl_estimator_speeds(const bl_estimator_t *e);

/* ---- Plans ------------------------------------------------------------ */

/* Shards proportional to speeds (largest-remainder rounding), clamped to
 * per-rank [min_shard, max_shard] (NULL: 0 and batch) with the excess or
 * deficit redistributed by speed. Ranks with speed 0 or unknown get the
 * mean speed. Returns 0, or -1 when the bounds cannot hold batch
 * (Σ min > batch or Σ max < batch) or an input is invalid. */
int bl_plan_proportional(long batch, int ranks, const double *speeds, const long *min_shard,
                         const long *max_shard, long *shards);

/* The predicted step compute time of a plan: max over ranks of
 * shards[r] / speeds[r]. */
double bl_plan_step_time(int ranks, const long *shards, const double *speeds);

/* ---- Policies --------------------------------------------------------- */

typedef enum {
    BL_POLICY_STATIC,       /* the even split, always */
    BL_POLICY_PROPORTIONAL, /* ∝ estimated speed, with a dead-band */
    BL_POLICY_BANDIT,       /* the controller setting with the best discounted score */
    BL_POLICY_RL,           /* the setting valued best in the current state */
    BL_POLICY_COUNT
} bl_policy_kind_t;

/* "static", "proportional", "bandit", "rl"; NULL for others. */
const char *bl_policy_name(bl_policy_kind_t kind);
/* The kind named, or -1. */
int bl_policy_parse(const char *name);

typedef struct bl_policy_config {
    bl_policy_kind_t kind;
    int ranks;
    long batch;
    const long *min_shard; /* per rank, or NULL (0); copied */
    const long *max_shard; /* per rank, or NULL (batch); copied */
    double deadband;       /* proportional: change the plan only when the predicted
                              step time improves by more than this fraction (e.g. 0.02) */
    uint64_t seed;         /* reserved: no shard policy draws random numbers (bandit
                              and rl learn from full feedback, see policy_learn.c) */
    bl_estimator_params_t estimator;
    const double *q_init; /* rl: a table to start from (BL_RL_TABLE_DOUBLES), or NULL */
} bl_policy_config_t;

/* What a policy did, for telemetry and logs. */
typedef struct bl_decision {
    const char *action;      /* static string: "hold", "move 0.5", ... */
    int changed;             /* the plan differs from the current one */
    double predicted_step_s; /* the chosen plan's predicted compute time per step */
    double optimal_step_s;   /* the proportional plan's (the estimated optimum) */
    int speed_changes;       /* changes the estimator detected this window */
} bl_decision_t;

typedef struct bl_policy bl_policy_t;

/* Returns 0, or -1 with a message in err (names the field). */
int bl_policy_create(const bl_policy_config_t *config, const bl_part_allocator_t *a,
                     bl_policy_t **out, char *err, size_t errlen);
void bl_policy_destroy(bl_policy_t *p);

/* One decision: feeds the window's observations (ranks of them) and its
 * measured mean step time, given the plan that ran (current), and writes
 * the next plan into next (may alias current). Returns 0 or -1 on invalid
 * input (next then equals current). */
int bl_policy_decide(bl_policy_t *p, const bl_rank_obs_t *obs, double step_s, const long *current,
                     long *next, bl_decision_t *decision);

/* Tells the policy each rank's CPU quota in cores (ranks values; 0: none),
 * as the ranks' cgroups set them. proportional, bandit and rl then cap a
 * rank with a quota at the shard its CPU budget can take per step without
 * stalling the others (partition/capacity.h), once a window with its CPU
 * seconds (obs.cpu_s) has measured that budget; static is not affected,
 * nor is any policy when no rank, or every rank, has a quota. The budgets
 * are measured again after a checkpoint's load. Returns 0, or -1 when out
 * of memory or a quota is negative or not finite (nothing changed). */
int bl_policy_set_cpu_quotas(bl_policy_t *p, const double *quota);

/* The policy's estimator (for straggler alerts and telemetry). */
const bl_estimator_t *bl_policy_estimator(const bl_policy_t *p);

/* The policy's learned state, for checkpoints: the estimator, the tuner's
 * predictors and plans, the scores, the bandit's sums and rl's table (not
 * the configuration, which the caller recreates). Bytes in host order.
 * bl_policy_state_load takes bytes saved by a policy of the same kind and
 * rank count, all or nothing: 0, or -1 with the reason in err (another
 * kind or rank count, values out of range, no memory), p unchanged. */
size_t bl_policy_state_bytes(const bl_policy_t *p);
void bl_policy_state_save(const bl_policy_t *p, void *buf);
int bl_policy_state_load(bl_policy_t *p, const void *buf, size_t n, char *err, size_t errlen);

/* rl: the learned table, to save as a policy file and to warm-start from
 * (bl_policy_config_t.q_init); NULL for other kinds. For each of the
 * BL_RL_STATES states, BL_RL_STATE_DOUBLES values: the discounted weight
 * of the windows seen there and of their squares, then, for each of the
 * BL_RL_ACTIONS controller settings (tuner.h), the discounted sum of its
 * log score over the anchor setting's, then the sum of their squares
 * (see policy_learn.c). BL_RL_TABLE_DOUBLES values in all. */
#define BL_RL_STATES        9
#define BL_RL_ACTIONS       9
#define BL_RL_STATE_DOUBLES (2 + 2 * BL_RL_ACTIONS)
#define BL_RL_TABLE_DOUBLES (BL_RL_STATES * BL_RL_STATE_DOUBLES)
const double *bl_policy_q_table(const bl_policy_t *p);

#endif /* BL_POLICY_H */
