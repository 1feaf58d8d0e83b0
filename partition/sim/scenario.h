/* The simulator's scenarios: each simulated rank's true speed, and the
 * noise on its compute time, at every step of a run. sim.h includes this
 * header; the cluster simulator (sim.c) and the pipeline simulator
 * (pipe_sim.c) both draw their ranks' speeds from it.
 *
 * Pure, like the rest of partition/: no clocks, no globals, no I/O. A
 * trace is a deterministic function of the kind, the rank count, the run
 * length and the seed. Speeds are in samples per second of compute. */
#ifndef BL_SIM_SCENARIO_H
#define BL_SIM_SCENARIO_H

#include <stdint.h>

#include "policy.h"

/* Every scenario starts from the same nominal speed, BL_SIM_BASE_SPEED, and
 * uses only the seed for its randomness. T is the run's length in steps,
 * and T/4, T/2 and 3T/4 use integer division.
 *
 * - fixed-1.5x, fixed-2x, fixed-4x: floor(N/2) ranks, a seeded random
 *   subset (partial Fisher-Yates), run at base / ratio for the whole run;
 *   the others at base. A seeded subset rather than "the upper half" so
 *   that no policy can profit from slow ranks sitting together.
 * - step-change: all ranks at base; one seeded rank runs at base / 2 from
 *   step T/2 to the end.
 * - drift: every rank's log speed takes a seeded Gaussian step of
 *   BL_SIM_DRIFT_SIGMA per step from 0, reflected at ±ln 2 (so every speed
 *   stays within [base/2, 2·base]).
 * - spikes: all ranks at base; at each step, with probability
 *   BL_SIM_SPIKE_RATE, a spike starts on a uniformly chosen rank and slows
 *   it to base / BL_SIM_SPIKE_FACTOR for 1, 2 or 3 steps (uniform). The rate
 *   is per cluster, not per rank, so the share of steps with a spike does
 *   not grow with N (with a per-rank rate, every step of a 65,536-rank run
 *   has a straggler, and no plan made before the step can help).
 * - noise: all ranks at base; each step every rank's compute time is
 *   multiplied by an independent log-normal factor exp(σz − σ²/2) (mean 1,
 *   σ = BL_SIM_NOISE_SIGMA). The noise is real (the step takes that long,
 *   for the oracle too) and unpredictable: the true speeds stay equal, so
 *   the best plan is the even split and a good policy holds still.
 * - heavy-noise: the noise scenario with a heavy tail. Each rank-step's
 *   log-normal factor is, with probability BL_SIM_TAIL_RATE, multiplied by
 *   a Pareto draw of shape BL_SIM_TAIL_SHAPE (scale 1, so at least 1)
 *   capped at BL_SIM_TAIL_CAP. The true speeds stay equal, so the best
 *   plan is still the even split; a policy that chases the tail loses.
 * - periodic: all ranks at base, except in the windows of a co-located
 *   job: from a seeded offset in [0, BL_SIM_PERIOD_STEPS), every
 *   BL_SIM_PERIOD_STEPS steps, a window of BL_SIM_PERIOD_LENGTH steps slows
 *   a seeded subset of max(1, floor(N / BL_SIM_PERIOD_SHARE)) ranks (the
 *   same ranks every window, drawn as in fixed-*) to base /
 *   BL_SIM_PERIOD_FACTOR. Windows start at offset + k·BL_SIM_PERIOD_STEPS,
 *   k ≥ 0; the steps before the offset are quiet.
 * - node-slow: the ranks form nodes of BL_SIM_NODE_RANKS consecutive ranks
 *   (the last node holds the remainder; one node when N ≤ 8). All ranks of
 *   one seeded node run at base / 2 from step T/4 to 3T/4 (exclusive): a
 *   correlated slowdown, such as a node's shared link or power cap. Then
 *   they recover.
 * - fail-slow: one seeded rank degrades gradually: base before step T/4,
 *   base · 4^−(t − T/4)/(3T/4 − T/4) between T/4 and 3T/4 (a geometric
 *   fall, the same factor every step), and exactly base / 4 from 3T/4 to
 *   the end.
 * - recovery: one seeded rank runs at base / 3 until step T/2 (exclusive),
 *   then at base like the others.
 *
 * The scenarios other than noise and heavy-noise have no noise (every
 * factor is 1). */
typedef enum {
    BL_SCENARIO_FIXED_1_5X,
    BL_SCENARIO_FIXED_2X,
    BL_SCENARIO_FIXED_4X,
    BL_SCENARIO_STEP_CHANGE,
    BL_SCENARIO_DRIFT,
    BL_SCENARIO_SPIKES,
    BL_SCENARIO_NOISE,
    BL_SCENARIO_HEAVY_NOISE,
    BL_SCENARIO_PERIODIC,
    BL_SCENARIO_NODE_SLOW,
    BL_SCENARIO_FAIL_SLOW,
    BL_SCENARIO_RECOVERY,
    BL_SCENARIO_COUNT
} bl_scenario_kind_t;

#define BL_SIM_BASE_SPEED    1000.0 /* samples/s of a nominal rank */
#define BL_SIM_DRIFT_SIGMA   0.01   /* drift: log-speed step per step (about 1%) */
#define BL_SIM_SPIKE_RATE    0.05   /* spikes: spike starts per step, whole cluster */
#define BL_SIM_SPIKE_FACTOR  3.0    /* spikes: a spiking rank is this many times slower */
#define BL_SIM_NOISE_SIGMA   0.1    /* noise, heavy-noise: σ of the log-normal factor */
#define BL_SIM_TAIL_RATE     0.02   /* heavy-noise: chance of a tail draw, per rank-step */
#define BL_SIM_TAIL_SHAPE    1.5    /* heavy-noise: the Pareto shape of a tail draw */
#define BL_SIM_TAIL_CAP      10.0   /* heavy-noise: a tail draw is at most this */
#define BL_SIM_PERIOD_STEPS  50     /* periodic: steps from one window's start to the next */
#define BL_SIM_PERIOD_LENGTH 10     /* periodic: steps in a window */
#define BL_SIM_PERIOD_SHARE  8      /* periodic: one rank in this many is slowed */
#define BL_SIM_PERIOD_FACTOR 2.0    /* periodic: a slowed rank is this many times slower */
#define BL_SIM_NODE_RANKS    8      /* node-slow: ranks per node */

/* "fixed-1.5x", "fixed-2x", "fixed-4x", "step-change", "drift", "spikes",
 * "noise", "heavy-noise", "periodic", "node-slow", "fail-slow",
 * "recovery"; NULL for unknown kinds. The string is static; do not free. */
const char *bl_scenario_name(bl_scenario_kind_t kind);
/* One line saying what the scenario does; NULL for unknown kinds. The
 * string is static; do not free. */
const char *bl_scenario_summary(bl_scenario_kind_t kind);
/* The kind named, or -1 (also for NULL). */
int bl_scenario_parse(const char *name);

typedef struct bl_scenario bl_scenario_t;

/* Creates a speed trace for ranks ranks over a run of steps steps (steps
 * places the scenarios' events at T/4, T/2 and 3T/4; the trace itself may
 * be read past it). Returns 0 and the scenario in *out, which the caller
 * frees with bl_scenario_destroy; or -1 with *out NULL on invalid input
 * (ranks < 1, steps < 1, unknown kind) or when out of memory. The
 * allocator may be NULL (malloc/free) and must outlive the scenario. */
int bl_scenario_create(bl_scenario_kind_t kind, int ranks, long steps, uint64_t seed,
                       const bl_part_allocator_t *a, bl_scenario_t **out);
/* Frees the scenario; NULL is a no-op. */
void bl_scenario_destroy(bl_scenario_t *s);
/* Advances to the next step (0 on the first call, then 1, 2, ...) and
 * writes its true speeds (ranks values, samples/s) and, when noise is not
 * NULL, its noise factors (ranks values: a rank's compute time that step
 * is shard / speed · factor). Speeds and factors come from separate random
 * streams, so passing NULL for noise does not change the speeds. Returns
 * the step written, or -1 when s or speeds is NULL. */
long bl_scenario_next(bl_scenario_t *s, double *speeds, double *noise);
/* The step of the scenario's one abrupt change, from which the recovery
 * figure counts: step-change T/2 (its rank slows), node-slow T/4 (the node
 * slows; it recovers at 3T/4, which the figure does not count), recovery
 * T/2 (the slow rank is back at base). -1 for the other scenarios, whose
 * changes are gradual, repeated or random, and for NULL. */
long bl_scenario_change_step(const bl_scenario_t *s);

#endif /* BL_SIM_SCENARIO_H */
