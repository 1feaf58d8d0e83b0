/* The simulator's scenarios (scenario.h): seeded speed traces and noise
 * factors. Pure: every value is a function of the kind, the rank count,
 * the run length, the seed and the step. */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "scenario.h"

/* ---- Random numbers ---------------------------------------------------------- */

/* Uniform in [0, 1) with 53 random bits. */
static double to_unit(uint64_t bits)
{
    return (double)(bits >> 11) * 0x1.0p-53;
}

static double next_unit(uint64_t *state)
{
    return to_unit(bl_part_next_random(state));
}

/* Uniform integer in [0, n), n ≥ 1 (the bias of scaling 53 bits is below
 * 2^-37 for n ≤ 65,536·256: irrelevant here). */
static long next_below(uint64_t *state, long n)
{
    long k = (long)(next_unit(state) * (double)n);
    return k < n ? k : n - 1;
}

/* The uniform in [0, 1) that key assigns to counter: a hash, so a step's
 * values do not depend on which earlier steps were asked for. */
static double hashed_unit(uint64_t key, uint64_t counter)
{
    return to_unit(bl_part_mix64(key + BL_PART_SPLITMIX_GAMMA * counter));
}

/* Two independent standard normals from two uniforms (Box-Muller); u1 is
 * moved into (0, 1] so the logarithm is finite. */
static void box_muller(double u1, double u2, double *z0, double *z1)
{
    const double two_pi = 6.283185307179586;
    double radius = sqrt(-2.0 * log(1.0 - u1));
    *z0 = radius * cos(two_pi * u2);
    *z1 = radius * sin(two_pi * u2);
}

/* ---- The scenario ------------------------------------------------------------ */

#define SPIKES_MAX 4 /* at most one spike starts per step and lasts ≤ 3 steps */

struct bl_scenario {
    bl_scenario_kind_t kind;
    int ranks;
    long t;             /* the step the next bl_scenario_next writes */
    long change_step;   /* see bl_scenario_change_step; -1 when none */
    int change_rank;    /* step-change, fail-slow, recovery: the one rank that changes */
    int first_rank;     /* node-slow: the slow node is ranks [first_rank, */
    int rank_count;     /* first_rank + rank_count) */
    long from;          /* node-slow: the slow steps are [from, until); fail-slow: */
    long until;         /* the fall starts at from and reaches base/4 at until */
    long period_offset; /* periodic: the first window's start */
    /* fixed-*: each rank's speed; periodic: each rank's speed inside a
     * window; NULL for the other kinds. */
    double *fixed;
    double *log_walk; /* drift: each rank's log speed relative to base; else NULL */
    int spike_rank[SPIKES_MAX];
    long spike_end[SPIKES_MAX]; /* first step the spike is over */
    int spikes;
    uint64_t walk_state; /* the sequential stream: drift steps, spike starts */
    uint64_t noise_key;  /* noise, heavy-noise: hashed with (step, rank) */
    uint64_t tail_key;   /* heavy-noise: the tail's draws, hashed likewise */
    bl_part_allocator_t alloc;
};

static const char *const scenario_names[BL_SCENARIO_COUNT] = {
    "fixed-1.5x", "fixed-2x",    "fixed-4x", "step-change", "drift",     "spikes",
    "noise",      "heavy-noise", "periodic", "node-slow",   "fail-slow", "recovery",
};

static const char *const scenario_summaries[BL_SCENARIO_COUNT] = {
    "half the ranks (a seeded subset) 1.5x slower, fixed",
    "half the ranks (a seeded subset) 2x slower, fixed",
    "half the ranks (a seeded subset) 4x slower, fixed",
    "equal ranks; one seeded rank 2x slower from step T/2",
    "every rank's speed a seeded random walk, ~1%/step, within [1/2, 2]x",
    "equal ranks; 5% of steps start a 1-3 step 3x slowdown on a random rank",
    "equal ranks; every compute time times log-normal noise, sigma 0.1",
    "noise, and 2% of rank-steps also times a Pareto(1.5) draw capped at 10",
    "every 50 steps (seeded offset) a seeded 1/8 of the ranks 2x slower for 10 steps",
    "one seeded node of 8 consecutive ranks 2x slower from step T/4 to 3T/4",
    "one seeded rank slows geometrically from base at T/4 to base/4 at 3T/4",
    "one seeded rank 3x slower until step T/2, then equal",
};

const char *bl_scenario_name(bl_scenario_kind_t kind)
{
    if ((int)kind < 0 || kind >= BL_SCENARIO_COUNT) {
        return NULL;
    }
    return scenario_names[kind];
}

const char *bl_scenario_summary(bl_scenario_kind_t kind)
{
    if ((int)kind < 0 || kind >= BL_SCENARIO_COUNT) {
        return NULL;
    }
    return scenario_summaries[kind];
}

int bl_scenario_parse(const char *name)
{
    if (name == NULL) {
        return -1;
    }
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        if (strcmp(name, scenario_names[k]) == 0) {
            return k;
        }
    }
    return -1;
}

static double fixed_ratio(bl_scenario_kind_t kind)
{
    switch (kind) {
    case BL_SCENARIO_FIXED_1_5X:
        return 1.5;
    case BL_SCENARIO_FIXED_2X:
        return 2.0;
    case BL_SCENARIO_FIXED_4X:
        return 4.0;
    default:
        return 0.0;
    }
}

/* Fills s->fixed (allocated here) with base everywhere but on count ranks,
 * the first count places of a seeded partial Fisher-Yates shuffle, which
 * get slow. Returns 0, or -1 when out of memory. */
static int seeded_subset(bl_scenario_t *s, uint64_t *setup, int count, double slow)
{
    const bl_part_allocator_t *a = &s->alloc;
    int n = s->ranks;
    int *order = bl_part_alloc(a, (size_t)n, sizeof *order);
    s->fixed = bl_part_alloc(a, (size_t)n, sizeof *s->fixed);
    if (s->fixed == NULL || order == NULL) {
        bl_part_free(a, order);
        return -1;
    }
    for (int r = 0; r < n; r++) {
        order[r] = r;
        s->fixed[r] = BL_SIM_BASE_SPEED;
    }
    for (int i = 0; i < count; i++) {
        int j = i + (int)next_below(setup, n - i);
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
        s->fixed[order[i]] = slow;
    }
    bl_part_free(a, order);
    return 0;
}

/* floor(3T/4), without the overflow of 3T. */
static long three_quarters(long steps)
{
    return 3 * (steps / 4) + 3 * (steps % 4) / 4;
}

int bl_scenario_create(bl_scenario_kind_t kind, int ranks, long steps, uint64_t seed,
                       const bl_part_allocator_t *a, bl_scenario_t **out)
{
    bl_scenario_t *s = NULL;
    if (out == NULL) {
        return -1;
    }
    *out = NULL;
    if ((int)kind < 0 || kind >= BL_SCENARIO_COUNT || ranks < 1 || steps < 1) {
        return -1;
    }
    s = bl_part_alloc(a, 1, sizeof *s);
    if (s == NULL) {
        return -1;
    }
    memset(s, 0, sizeof *s);
    if (a != NULL) {
        s->alloc = *a;
    }
    s->kind = kind;
    s->ranks = ranks;
    s->change_step = -1;
    /* Four streams from one seed: set-up choices, the per-step walk, the
     * noise key and the tail key (drawn in this order, so adding a stream
     * at the end left the older scenarios' traces as they were). */
    uint64_t root = seed;
    uint64_t setup = bl_part_next_random(&root);
    s->walk_state = bl_part_next_random(&root);
    s->noise_key = bl_part_next_random(&root);
    s->tail_key = bl_part_next_random(&root);

    switch (kind) {
    case BL_SCENARIO_FIXED_1_5X:
    case BL_SCENARIO_FIXED_2X:
    case BL_SCENARIO_FIXED_4X:
        if (seeded_subset(s, &setup, ranks / 2, BL_SIM_BASE_SPEED / fixed_ratio(kind)) != 0) {
            goto fail;
        }
        break;
    case BL_SCENARIO_STEP_CHANGE:
        s->change_step = steps / 2;
        s->change_rank = (int)next_below(&setup, ranks);
        break;
    case BL_SCENARIO_DRIFT:
        s->log_walk = bl_part_alloc(a, (size_t)ranks, sizeof *s->log_walk);
        if (s->log_walk == NULL) {
            goto fail;
        }
        for (int r = 0; r < ranks; r++) {
            s->log_walk[r] = 0.0;
        }
        break;
    case BL_SCENARIO_PERIODIC: {
        int count = ranks / BL_SIM_PERIOD_SHARE > 0 ? ranks / BL_SIM_PERIOD_SHARE : 1;
        s->period_offset = next_below(&setup, BL_SIM_PERIOD_STEPS);
        if (seeded_subset(s, &setup, count, BL_SIM_BASE_SPEED / BL_SIM_PERIOD_FACTOR) != 0) {
            goto fail;
        }
        break;
    }
    case BL_SCENARIO_NODE_SLOW: {
        int nodes = (ranks + BL_SIM_NODE_RANKS - 1) / BL_SIM_NODE_RANKS;
        s->first_rank = (int)next_below(&setup, nodes) * BL_SIM_NODE_RANKS;
        s->rank_count =
            ranks - s->first_rank < BL_SIM_NODE_RANKS ? ranks - s->first_rank : BL_SIM_NODE_RANKS;
        s->from = steps / 4;
        s->until = three_quarters(steps);
        s->change_step = s->from;
        break;
    }
    case BL_SCENARIO_FAIL_SLOW:
        s->change_rank = (int)next_below(&setup, ranks);
        s->from = steps / 4;
        s->until = three_quarters(steps);
        break;
    case BL_SCENARIO_RECOVERY:
        s->change_rank = (int)next_below(&setup, ranks);
        s->change_step = steps / 2;
        break;
    default:
        break; /* spikes, noise, heavy-noise: nothing to set up */
    }
    *out = s;
    return 0;
fail:
    bl_scenario_destroy(s);
    return -1;
}

void bl_scenario_destroy(bl_scenario_t *s)
{
    if (s == NULL) {
        return;
    }
    bl_part_allocator_t a = s->alloc;
    bl_part_free(&a, s->fixed);
    bl_part_free(&a, s->log_walk);
    bl_part_free(&a, s);
}

long bl_scenario_change_step(const bl_scenario_t *s)
{
    return s == NULL ? -1 : s->change_step;
}

/* ---- Speeds ------------------------------------------------------------------- */

static void fill_base(int n, double *speeds)
{
    for (int r = 0; r < n; r++) {
        speeds[r] = BL_SIM_BASE_SPEED;
    }
}

/* Reflects x into [-bound, bound] (one reflection suffices: a step is far
 * smaller than the interval). */
static double reflect(double x, double bound)
{
    if (x > bound) {
        return 2.0 * bound - x;
    }
    if (x < -bound) {
        return -2.0 * bound - x;
    }
    return x;
}

/* drift: one Gaussian step of every rank's log speed (not at step 0, where
 * every rank is at base). */
static void drift_step(bl_scenario_t *s, double *speeds)
{
    const double bound = log(2.0);
    int n = s->ranks;
    if (s->t > 0) {
        for (int r = 0; r < n; r += 2) {
            double z0 = 0.0;
            double z1 = 0.0;
            double u1 = next_unit(&s->walk_state);
            double u2 = next_unit(&s->walk_state);
            box_muller(u1, u2, &z0, &z1);
            s->log_walk[r] = reflect(s->log_walk[r] + BL_SIM_DRIFT_SIGMA * z0, bound);
            if (r + 1 < n) {
                s->log_walk[r + 1] = reflect(s->log_walk[r + 1] + BL_SIM_DRIFT_SIGMA * z1, bound);
            }
        }
    }
    for (int r = 0; r < n; r++) {
        speeds[r] = BL_SIM_BASE_SPEED * exp(s->log_walk[r]);
    }
}

/* spikes: ends the spikes that are over, perhaps starts one, and slows the
 * spiking ranks. */
static void spikes_step(bl_scenario_t *s, double *speeds)
{
    long t = s->t;
    int kept = 0;
    for (int i = 0; i < s->spikes; i++) {
        if (s->spike_end[i] > t) {
            s->spike_rank[kept] = s->spike_rank[i];
            s->spike_end[kept] = s->spike_end[i];
            kept++;
        }
    }
    s->spikes = kept;
    if (next_unit(&s->walk_state) < BL_SIM_SPIKE_RATE) {
        int rank = (int)next_below(&s->walk_state, s->ranks);
        long end = t + 1 + next_below(&s->walk_state, 3); /* lasts 1, 2 or 3 steps */
        int i = 0;
        while (i < s->spikes && s->spike_rank[i] != rank) {
            i++;
        }
        if (i < s->spikes) {
            /* already spiking: the longer of the two */
            s->spike_end[i] = end > s->spike_end[i] ? end : s->spike_end[i];
        } else if (s->spikes < SPIKES_MAX) {
            s->spike_rank[s->spikes] = rank;
            s->spike_end[s->spikes] = end;
            s->spikes++;
        }
    }
    fill_base(s->ranks, speeds);
    for (int i = 0; i < s->spikes; i++) {
        speeds[s->spike_rank[i]] = BL_SIM_BASE_SPEED / BL_SIM_SPIKE_FACTOR;
    }
}

/* periodic: whether step t lies in a window of the co-located job. */
static int in_period_window(const bl_scenario_t *s, long t)
{
    return t >= s->period_offset &&
           (t - s->period_offset) % BL_SIM_PERIOD_STEPS < BL_SIM_PERIOD_LENGTH;
}

/* fail-slow: the degrading rank's speed at step t. */
static double fail_slow_speed(const bl_scenario_t *s, long t)
{
    if (t < s->from) {
        return BL_SIM_BASE_SPEED;
    }
    if (t >= s->until) {
        return BL_SIM_BASE_SPEED / 4.0;
    }
    double progress = (double)(t - s->from) / (double)(s->until - s->from); /* [0, 1) */
    return BL_SIM_BASE_SPEED * pow(0.25, progress);
}

/* ---- Noise ----------------------------------------------------------------------- */

/* noise, heavy-noise: log-normal factors of mean 1, hashed from (key,
 * step, rank) so a step's factors do not depend on which earlier steps
 * asked for them. The counters of step t are t·(N + 1) + j: two uniforms
 * per pair of ranks, never shared between steps. */
static void noise_factors(const bl_scenario_t *s, double *noise)
{
    const double sigma = BL_SIM_NOISE_SIGMA;
    const double shift = -0.5 * sigma * sigma; /* E[exp(σz − σ²/2)] = 1 */
    int n = s->ranks;
    uint64_t base = (uint64_t)s->t * ((uint64_t)n + 1);
    for (int r = 0; r < n; r += 2) {
        double z0 = 0.0;
        double z1 = 0.0;
        double u1 = hashed_unit(s->noise_key, base + (uint64_t)r);
        double u2 = hashed_unit(s->noise_key, base + (uint64_t)r + 1);
        box_muller(u1, u2, &z0, &z1);
        noise[r] = exp(sigma * z0 + shift);
        if (r + 1 < n) {
            noise[r + 1] = exp(sigma * z1 + shift);
        }
    }
}

/* heavy-noise: multiplies each rank's factor, with probability
 * BL_SIM_TAIL_RATE, by min(cap, (1 − v)^(−1/shape)), a Pareto draw of
 * scale 1 (inverse transform of a uniform v). Rank r of step t hashes the
 * counters 2(tN + r) (the coin) and 2(tN + r) + 1 (v) with the tail key. */
static void tail_factors(const bl_scenario_t *s, double *noise)
{
    const double exponent = -1.0 / BL_SIM_TAIL_SHAPE;
    int n = s->ranks;
    uint64_t base = (uint64_t)s->t * (uint64_t)n;
    for (int r = 0; r < n; r++) {
        uint64_t counter = 2 * (base + (uint64_t)r);
        if (hashed_unit(s->tail_key, counter) >= BL_SIM_TAIL_RATE) {
            continue;
        }
        double v = hashed_unit(s->tail_key, counter + 1);
        double draw = pow(1.0 - v, exponent);
        noise[r] *= draw < BL_SIM_TAIL_CAP ? draw : BL_SIM_TAIL_CAP;
    }
}

long bl_scenario_next(bl_scenario_t *s, double *speeds, double *noise)
{
    if (s == NULL || speeds == NULL) {
        return -1;
    }
    long t = s->t;
    int n = s->ranks;
    switch (s->kind) {
    case BL_SCENARIO_FIXED_1_5X:
    case BL_SCENARIO_FIXED_2X:
    case BL_SCENARIO_FIXED_4X:
        memcpy(speeds, s->fixed, (size_t)n * sizeof *speeds);
        break;
    case BL_SCENARIO_STEP_CHANGE:
        fill_base(n, speeds);
        if (t >= s->change_step) {
            speeds[s->change_rank] = BL_SIM_BASE_SPEED / 2.0;
        }
        break;
    case BL_SCENARIO_DRIFT:
        drift_step(s, speeds);
        break;
    case BL_SCENARIO_SPIKES:
        spikes_step(s, speeds);
        break;
    case BL_SCENARIO_PERIODIC:
        if (in_period_window(s, t)) {
            memcpy(speeds, s->fixed, (size_t)n * sizeof *speeds);
        } else {
            fill_base(n, speeds);
        }
        break;
    case BL_SCENARIO_NODE_SLOW:
        fill_base(n, speeds);
        if (t >= s->from && t < s->until) {
            for (int r = s->first_rank; r < s->first_rank + s->rank_count; r++) {
                speeds[r] = BL_SIM_BASE_SPEED / 2.0;
            }
        }
        break;
    case BL_SCENARIO_FAIL_SLOW:
        fill_base(n, speeds);
        speeds[s->change_rank] = fail_slow_speed(s, t);
        break;
    case BL_SCENARIO_RECOVERY:
        fill_base(n, speeds);
        if (t < s->change_step) {
            speeds[s->change_rank] = BL_SIM_BASE_SPEED / 3.0;
        }
        break;
    case BL_SCENARIO_NOISE:
    case BL_SCENARIO_HEAVY_NOISE:
    default:
        fill_base(n, speeds);
        break;
    }
    if (noise != NULL) {
        if (s->kind == BL_SCENARIO_NOISE || s->kind == BL_SCENARIO_HEAVY_NOISE) {
            noise_factors(s, noise);
        } else {
            for (int r = 0; r < n; r++) {
                noise[r] = 1.0;
            }
        }
        if (s->kind == BL_SCENARIO_HEAVY_NOISE) {
            tail_factors(s, noise);
        }
    }
    s->t++;
    return t;
}
