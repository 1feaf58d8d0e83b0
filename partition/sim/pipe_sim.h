/* The pipeline simulator behind ballast-sim's pipeline mode: the stage-map
 * policies of restage.h run against S simulated pipeline stages whose true
 * speeds follow a scenario of sim.h, over L layers of seeded true costs.
 *
 * Pure, like the rest of partition/: no MPI, no clocks, no globals, no I/O.
 * The only clock is the caller's (bl_pipe_sim_config_t.clock), used to time
 * the policy's decisions; without it decision times read 0. Everything
 * else is a deterministic function of the configuration and the seed.
 *
 * The model (units: seconds, bytes, bytes per second):
 *
 * - Layers. Layer i's true cost c_i is the seconds its forward and backward
 *   take over one whole step (all micro-batches) on a stage at nominal
 *   speed: BL_PIPE_SIM_BASE_LAYER_S · u_i with u_i log-uniform in
 *   [0.25, 4], except every 4th layer (i % 4 == 3), an activation such as
 *   a ReLU, which costs BL_PIPE_SIM_ACT_COST of the base and has no
 *   parameters. Layer i's migration bytes (parameters and optimizer state)
 *   are BL_PIPE_SIM_BYTES_PER_BASE · c_i / base, so proportional to its
 *   cost (0 for activations). The cut before layer i (i >= 1) carries
 *   edge_bytes[i] = 2 · 4 · BL_PIPE_SIM_SAMPLES · w_i bytes per step
 *   (float32 activations forward and their gradients back), w_i a seeded
 *   log-uniform activation width in [256, 4096].
 * - The policy is not told the truth: its anchors are c_i times a seeded
 *   factor uniform in [1 − BL_PIPE_SIM_ANCHOR_ERROR, 1 + ...] (±30 %).
 * - Stages. The scenario (bl_scenario_create with ranks = S) gives stage
 *   s's speed v_s(t) / BL_SIM_BASE_SPEED (1 = nominal) and, on noise, a
 *   log-normal factor n_s(t). Stage s owning [i, j) takes
 *   T_s = Σ c / v_s · n_s + e[i]/bw (s > 0) + e[j]/bw (s < S − 1): compute,
 *   then the boundary transfers at the true link bandwidth bw.
 * - Step. With M micro-batches each stage handles a micro-batch in T_s / M
 *   and the fill–drain pipeline (GPipe, or 1F1B: the same critical path)
 *   runs M + S − 1 slots of its slowest stage: step = ((M + S − 1) / M) ·
 *   max_s T_s. The factor is the bubble; it is the same for every map, so
 *   ratios between maps are ratios of slowest stages.
 * - Measurements. Each step the policy's window gets every layer's
 *   seconds on its stage, c_i / v_s · n_s (what a job times around the
 *   layer's forward and backward), and the step time; after every K steps
 *   bl_restage_decide gets the window's means. A changed map runs from the
 *   next step, after a migration of bl_restage_move_bytes bytes taking
 *   bytes / bw + latency seconds (added to the run's time, reported to the
 *   policy with bl_restage_migrated).
 * - Baselines, on the same speeds and noise. Static: the initial map, the
 *   even split by anchors (bl_pipe_partition_solve on the anchors, all
 *   speeds 1, no boundary cost), for the whole run. Oracle: each step the
 *   exact optimal map for that step's true speeds, true costs and true
 *   boundary costs (re-solved whenever the speeds move), with no migration
 *   cost. Without noise no map beats it; under noise it can be beaten by a
 *   little (it minimises the slowest stage's expected time, not the
 *   expected slowest stage), so ratios to it slightly below 1 are real. */
#ifndef BL_PIPE_SIM_H
#define BL_PIPE_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "sim.h"

#define BL_PIPE_SIM_BASE_LAYER_S 1e-3 /* a typical layer: 1 ms per step at nominal speed */
#define BL_PIPE_SIM_ACT_COST     0.01 /* an activation layer's cost, a fraction of the base */
#define BL_PIPE_SIM_BYTES_PER_BASE                                                                 \
    8e6                                /* bytes a base-cost layer migrates (1 M float32            \
                                          parameters + momentum) */
#define BL_PIPE_SIM_SAMPLES      256.0 /* samples per step, for the activation bytes */
#define BL_PIPE_SIM_ANCHOR_ERROR 0.3   /* the anchors' error: ±30 % of the true cost */
#define BL_PIPE_SIM_MAX_LAYERS   4096  /* the policy's DP is O(S · L²) per decision */

typedef struct bl_pipe_sim_config {
    bl_scenario_kind_t scenario;
    int layers;           /* L, 1 .. BL_PIPE_SIM_MAX_LAYERS */
    int stages;           /* S, 1 .. L */
    long steps;           /* steps T to simulate */
    int rebalance_every;  /* K: the policy decides after every K steps */
    int policy;           /* a bl_policy_kind_t (static, proportional, bandit, rl) */
    int micro_batches;    /* M >= 1 */
    uint64_t seed;        /* the model's, the scenario's and the policy's */
    double horizon_steps; /* a migration must pay back within this many steps (> 0) */
    double threshold;     /* proportional: least predicted relative gain, [0, 1) */
    double bandwidth;     /* true link bandwidth, bytes/s: migrations and boundary transfers */
    double latency_s;     /* true fixed seconds of a migration besides its bytes (>= 0) */
    /* The policy's first estimate of the bandwidth; 0: the true one. (A
     * wrong estimate shows what moves it then makes that do not pay.) */
    double policy_bandwidth;
    /* Optional: a monotonic clock in seconds, to time bl_restage_decide.
     * NULL: decision times read 0. */
    double (*clock)(void *ctx);
    void *clock_ctx;
} bl_pipe_sim_config_t;

#define BL_PIPE_SIM_CONFIG_DEFAULT                                                                 \
    {                                                                                              \
        .scenario = BL_SCENARIO_FIXED_2X, .layers = 40, .stages = 4, .steps = 400,                 \
        .rebalance_every = 5, .policy = BL_POLICY_PROPORTIONAL, .micro_batches = 16, .seed = 1,    \
        .horizon_steps = 100.0, .threshold = 0.02, .bandwidth = 1e10, .latency_s = 1e-3,           \
        .policy_bandwidth = 0.0, .clock = NULL, .clock_ctx = NULL                                  \
    }

typedef struct bl_pipe_sim_result {
    /* Mean step times over the run (seconds). */
    double mean_step_s;        /* the policy's, migration seconds included */
    double oracle_step_s;      /* the oracle's (optimal map every step, no migration cost) */
    double static_step_s;      /* the initial map held for the whole run */
    double steady_over_oracle; /* policy / oracle step time over the last half, steps
                                  [T/2, T), migrations in it included: 1 = the oracle */
    /* The map at the end, on the last step's true speeds (no noise). */
    double max_over_mean;     /* slowest stage time over the mean stage time */
    double opt_max_over_mean; /* the same for the optimal map: granularity's floor */
    double gap;               /* slowest stage over the optimal map's slowest (>= 1) */
    /* Migrations. */
    long decisions;        /* bl_restage_decide calls */
    long migrations;       /* decisions that changed the map */
    double migrated_bytes; /* Σ bytes moved */
    double migration_s;    /* Σ true migration seconds */
    /* Moves whose realised gain — Σ over the steps after the move, up to
     * horizon_steps of them or to the end of the run, of (step time the old
     * map would have taken − step time of the new map) on those steps' true
     * speeds and noise, each move judged alone — was below their true
     * seconds. A move made too near the end to pay back counts. */
    long unpaid;
    /* Decision wall time by the caller's clock, milliseconds (0 without). */
    double decision_ms_median;
    double decision_ms_max;
    double bubble; /* (M + S − 1) / M */
} bl_pipe_sim_result_t;

/* Simulates one run (the model is described at the top of this header).
 * Returns 0, or -1 with a message in err naming the field (invalid
 * configuration, out of memory, a policy that failed). The allocator may
 * be NULL (malloc/free). */
int bl_pipe_sim_run(const bl_pipe_sim_config_t *config, const bl_part_allocator_t *a,
                    bl_pipe_sim_result_t *out, char *err, size_t errlen);

#endif /* BL_PIPE_SIM_H */
