/* The cluster simulator behind ballast-sim: the policies of policy.h run
 * against N simulated data-parallel ranks whose true speeds follow a
 * scenario, with an alpha-beta ring all-reduce for communication.
 *
 * Pure, like the rest of partition/: no MPI, no clocks, no globals, no I/O.
 * The only clock is the caller's (bl_sim_config_t.clock), used to time the
 * policy's decisions; without it decision times read 0. Everything else is
 * a deterministic function of the configuration and the seed.
 *
 * Units: speeds in samples per second of compute, times in seconds, the
 * gradient in bytes. The scenarios (the ranks' true speeds) are declared
 * in scenario.h, which this header includes. */
#ifndef BL_SIM_H
#define BL_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "scenario.h" /* the scenarios: each rank's true speed at step t */

/* ---- Communication ------------------------------------------------------ */

#define BL_SIM_ALPHA_S      5e-6  /* per-message latency: 5 µs */
#define BL_SIM_BETA_S_PER_B 1e-10 /* inverse bandwidth: 10 GB/s */
/* The gradient of the benchmarks' MLP (784 → 1024 → 1024 → 1024 → 10,
 * 2,913,290 float32 parameters). */
#define BL_SIM_GRADIENT_BYTES 11653160.0

/* Seconds of a ring all-reduce of nbytes over ranks ranks:
 * 2(P − 1)·(α + (nbytes / P)·β) — P − 1 reduce-scatter and P − 1
 * all-gather steps, each one message of a P-th of the buffer. 0 for one
 * rank. */
double bl_sim_ring_allreduce_s(int ranks, double nbytes, double alpha_s, double beta_s_per_byte);

/* ---- Metrics on a trace ------------------------------------------------- */

#define BL_SIM_WITHIN  0.05 /* "close to the oracle": step ≤ (1 + 5%) · oracle step */
#define BL_SIM_SUSTAIN 20   /* ... for this many steps in a row (or to the end) */

/* The first step t ≥ from such that every step u in [t, min(t + sustain,
 * steps)) has step_s[u] ≤ (1 + within)·oracle_s[u]; -1 when there is none
 * (or on invalid input). Cold start is this from step 0; recovery is this
 * from the change step, minus the change step. */
long bl_sim_settle_step(const double *step_s, const double *oracle_s, long steps, long from,
                        double within, long sustain);

/* The fraction of the batch a plan change moves: Σ_r |next[r] − current[r]|
 * / (2·batch) (every moved sample leaves one rank and joins another, hence
 * the 2). 0 for batch ≤ 0. */
double bl_sim_churn(int ranks, long batch, const long *current, const long *next);

/* ---- A run ---------------------------------------------------------------- */

/* The oracle as a pseudo-policy, after the real ones: each step, the
 * proportional plan of that step's true speeds (bl_plan_proportional, no
 * bounds). Its ratio to the oracle is 1 by construction.
 *
 * Every run also computes a second reference beside the oracle, the lag-1
 * oracle: each step t ≥ 1 it runs the oracle's plan of step t − 1 (step 0:
 * the even split, as the policies start). It decides every step, with
 * perfect knowledge of the true speeds, one step late: clairvoyant about
 * the past but causal. On changes that nobody can foresee (drift, spikes,
 * the starts of periodic's windows) it shows what deciding from the past
 * can reach: a policy that tracks cannot beat it, and only one that learns
 * a pattern (periodic's period) may. It is not a policy and costs no
 * decision time. */
#define BL_SIM_ORACLE ((int)BL_POLICY_COUNT)

typedef struct bl_sim_config {
    int ranks;           /* simulated data-parallel ranks, 1 .. 65,536 or more */
    long batch;          /* global batch B (samples per step); 0: 64 per rank */
    long steps;          /* steps T to simulate */
    int rebalance_every; /* K: the policy decides after every K steps */
    bl_scenario_kind_t scenario;
    int policy;             /* a bl_policy_kind_t, or BL_SIM_ORACLE */
    uint64_t seed;          /* the scenario's and the policy's */
    double nbytes;          /* gradient bytes all-reduced every step */
    double alpha_s;         /* ring model: per-message latency, seconds */
    double beta_s_per_byte; /* ring model: seconds per byte */
    double deadband;        /* the policy's dead-band (see bl_policy_config_t) */
    /* Optional: a monotonic clock in seconds, to time bl_policy_decide (and
     * the oracle's plan). The simulator calls nothing else of the outside
     * world; NULL: decision times read 0. */
    double (*clock)(void *ctx);
    void *clock_ctx;
    /* rl only (ignored otherwise): the Q-table to start from, or NULL; and
     * where to copy the learned table after the run, or NULL. Each is
     * BL_RL_TABLE_DOUBLES doubles; they may be the same array. */
    const double *q_init;
    double *q_out;
} bl_sim_config_t;

#define BL_SIM_CONFIG_DEFAULT                                                                      \
    {                                                                                              \
        .ranks = 64, .batch = 0, .steps = 400, .rebalance_every = 5,                               \
        .scenario = BL_SCENARIO_FIXED_2X, .policy = BL_POLICY_PROPORTIONAL, .seed = 1,             \
        .nbytes = BL_SIM_GRADIENT_BYTES, .alpha_s = BL_SIM_ALPHA_S,                                \
        .beta_s_per_byte = BL_SIM_BETA_S_PER_B, .deadband = 0.02, .clock = NULL,                   \
        .clock_ctx = NULL, .q_init = NULL, .q_out = NULL                                           \
    }

/* Samples per rank of the default batch (batch = 0): integral shards, and
 * enough of them that a rank at a quarter of the speed still gets ~16. */
#define BL_SIM_SAMPLES_PER_RANK 64

typedef struct bl_sim_result {
    /* The figures of the "sim:" line. */
    double throughput_vs_oracle; /* (Σ samples / Σ step time) / the oracle's; all steps */
    long cold_start_steps;       /* bl_sim_settle_step from 0; -1: never */
    long recovery_steps;         /* from the change step (step-change, node-slow,
                                    recovery); -1: never or not applicable (see
                                    change_step) */
    double regret_s;             /* Σ_t (step_t − oracle step_t), seconds */
    double churn;                /* Σ over decisions of bl_sim_churn */
    double decision_us;          /* mean wall time of one decision, µs (0 without a clock) */
    /* More detail. */
    double causal_vs_oracle;         /* the lag-1 oracle's throughput over the oracle's */
    double causal_regret_s;          /* the lag-1 oracle's Σ_t (step_t − oracle step_t), s */
    double steady_vs_oracle;         /* the throughput ratio over the last half, steps [T/2, T) */
    double compute_vs_oracle;        /* Σ oracle step compute / Σ step compute (comm left out) */
    double steady_compute_vs_oracle; /* the same over the last half, steps [T/2, T) */
    double controller_frac;          /* decision time / simulated time: the controller's cost */
    long change_step;                /* bl_scenario_change_step, or -1 (no recovery figure) */
    long decisions;                  /* bl_policy_decide calls (oracle: plans computed) */
    long plan_changes;               /* decisions that changed the plan */
    double mean_step_s;              /* mean simulated step time */
    double oracle_step_s;            /* the oracle's mean step time */
    double comm_s;                   /* the ring all-reduce time of every step */
    long batch;                      /* the batch used (the default resolved) */
} bl_sim_result_t;

/* Simulates one run: each step t, every rank r computes plan[r] samples in
 * plan[r] / speed_r(t) · noise_r(t) seconds, the step takes the slowest
 * rank's compute plus the all-reduce, and the oracle's and the lag-1
 * oracle's steps are computed alongside on the same speeds, noise and
 * communication. After every K
 * steps the policy gets the window's observations summed per rank
 * (samples, compute, comm, wait = the step's slowest compute − own) and the
 * window's mean step time, as a real job's controller would, and its plan
 * runs from the next step. The plan starts as the even split.
 *
 * Optional traces (may be NULL, else config->steps values each): the step
 * time and the oracle's step time of every step. Returns 0, or -1 with a
 * message in err naming the field (invalid configuration, out of memory, a
 * policy that failed). The allocator may be NULL (malloc/free). */
int bl_sim_run(const bl_sim_config_t *config, const bl_part_allocator_t *a, bl_sim_result_t *out,
               double *step_trace, double *oracle_trace, char *err, size_t errlen);

/* "oracle" for BL_SIM_ORACLE, else bl_policy_name. */
const char *bl_sim_policy_name(int policy);
/* bl_policy_parse, plus "oracle" → BL_SIM_ORACLE; -1 when unknown. */
int bl_sim_policy_parse(const char *name);

#endif /* BL_SIM_H */
