/* The cluster simulator: speed scenarios, the ring all-reduce model, the
 * metrics, and the run loop that drives a policy of policy.h the way rank
 * 0's controller does in a job. Pure: the only clock is the caller's. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "policy.h"
#include "alloc.h"
#include "sim.h"

/* ---- Allocation ----------------------------------------------------------- */

/* Through the caller's hooks when given (each member independently), else
 * malloc/free. count·each is checked for overflow. */
static void *sim_alloc(const bl_part_allocator_t *a, size_t count, size_t each)
{
    if (count == 0) {
        count = 1; /* a zero-byte request may legitimately return NULL */
    }
    if (each != 0 && count > (size_t)-1 / each) {
        return NULL;
    }
    if (a != NULL && a->alloc != NULL) {
        return a->alloc(count * each, a->ctx);
    }
    return malloc(count * each);
}

static void sim_free(const bl_part_allocator_t *a, void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    if (a != NULL && a->release != NULL) {
        a->release(ptr, a->ctx);
    } else {
        free(ptr);
    }
}

/* ---- Random numbers --------------------------------------------------------- */

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

/* Two independent standard normals from two uniforms (Box-Muller); u1 is
 * moved into (0, 1] so the logarithm is finite. */
static void box_muller(double u1, double u2, double *z0, double *z1)
{
    const double two_pi = 6.283185307179586;
    double radius = sqrt(-2.0 * log(1.0 - u1));
    *z0 = radius * cos(two_pi * u2);
    *z1 = radius * sin(two_pi * u2);
}

/* ---- Scenarios ---------------------------------------------------------------- */

#define SPIKES_MAX 4 /* at most one spike starts per step and lasts ≤ 3 steps */

struct bl_scenario {
    bl_scenario_kind_t kind;
    int ranks;
    long t;           /* the step the next bl_scenario_next writes */
    long change_step; /* step-change: T/2; else -1 */
    int change_rank;  /* step-change: the rank that slows down */
    double *fixed;    /* fixed-*: each rank's speed; else NULL */
    double *log_walk; /* drift: each rank's log speed relative to base; else NULL */
    int spike_rank[SPIKES_MAX];
    long spike_end[SPIKES_MAX]; /* first step the spike is over */
    int spikes;
    uint64_t walk_state; /* the sequential stream: drift steps, spike starts */
    uint64_t noise_key;  /* noise: hashed with (step, rank), so random-access */
    bl_part_allocator_t alloc;
};

static const char *const scenario_names[BL_SCENARIO_COUNT] = {
    "fixed-1.5x", "fixed-2x", "fixed-4x", "step-change", "drift", "spikes", "noise",
};

static const char *const scenario_summaries[BL_SCENARIO_COUNT] = {
    "half the ranks (a seeded subset) 1.5x slower, fixed",
    "half the ranks (a seeded subset) 2x slower, fixed",
    "half the ranks (a seeded subset) 4x slower, fixed",
    "equal ranks; one seeded rank 2x slower from step T/2",
    "every rank's speed a seeded random walk, ~1%/step, within [1/2, 2]x",
    "equal ranks; 5% of steps start a 1-3 step 3x slowdown on a random rank",
    "equal ranks; every compute time times log-normal noise, sigma 0.1",
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

int bl_scenario_create(bl_scenario_kind_t kind, int ranks, long steps, uint64_t seed,
                       const bl_part_allocator_t *a, bl_scenario_t **out)
{
    bl_scenario_t *s = NULL;
    int *order = NULL;
    if (out == NULL) {
        return -1;
    }
    *out = NULL;
    if ((int)kind < 0 || kind >= BL_SCENARIO_COUNT || ranks < 1 || steps < 1) {
        return -1;
    }
    s = sim_alloc(a, 1, sizeof *s);
    if (s == NULL) {
        goto fail;
    }
    memset(s, 0, sizeof *s);
    if (a != NULL) {
        s->alloc = *a;
    }
    s->kind = kind;
    s->ranks = ranks;
    s->change_step = -1;
    /* Three streams from one seed: set-up choices, the per-step walk, the
     * noise key. */
    uint64_t root = seed;
    uint64_t setup = bl_part_next_random(&root);
    s->walk_state = bl_part_next_random(&root);
    s->noise_key = bl_part_next_random(&root);

    double ratio = fixed_ratio(kind);
    if (ratio > 0.0) {
        s->fixed = sim_alloc(a, (size_t)ranks, sizeof *s->fixed);
        order = sim_alloc(a, (size_t)ranks, sizeof *order);
        if (s->fixed == NULL || order == NULL) {
            goto fail;
        }
        /* The first floor(N/2) places of a seeded partial Fisher-Yates
         * shuffle are the slow ranks. */
        int slow = ranks / 2;
        for (int r = 0; r < ranks; r++) {
            order[r] = r;
            s->fixed[r] = BL_SIM_BASE_SPEED;
        }
        for (int i = 0; i < slow; i++) {
            int j = i + (int)next_below(&setup, ranks - i);
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
            s->fixed[order[i]] = BL_SIM_BASE_SPEED / ratio;
        }
        sim_free(a, order);
        order = NULL;
    } else if (kind == BL_SCENARIO_STEP_CHANGE) {
        s->change_step = steps / 2;
        s->change_rank = (int)next_below(&setup, ranks);
    } else if (kind == BL_SCENARIO_DRIFT) {
        s->log_walk = sim_alloc(a, (size_t)ranks, sizeof *s->log_walk);
        if (s->log_walk == NULL) {
            goto fail;
        }
        for (int r = 0; r < ranks; r++) {
            s->log_walk[r] = 0.0;
        }
    }
    *out = s;
    return 0;
fail:
    sim_free(a, order);
    bl_scenario_destroy(s);
    return -1;
}

void bl_scenario_destroy(bl_scenario_t *s)
{
    if (s == NULL) {
        return;
    }
    bl_part_allocator_t a = s->alloc;
    sim_free(&a, s->fixed);
    sim_free(&a, s->log_walk);
    sim_free(&a, s);
}

long bl_scenario_change_step(const bl_scenario_t *s)
{
    return s == NULL ? -1 : s->change_step;
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
    for (int r = 0; r < s->ranks; r++) {
        speeds[r] = BL_SIM_BASE_SPEED;
    }
    for (int i = 0; i < s->spikes; i++) {
        speeds[s->spike_rank[i]] = BL_SIM_BASE_SPEED / BL_SIM_SPIKE_FACTOR;
    }
}

/* noise: log-normal factors of mean 1, hashed from (key, step, rank) so a
 * step's factors do not depend on which earlier steps asked for them. The
 * counters of step t are t·(N + 1) + j: two uniforms per pair of ranks,
 * never shared between steps. */
static void noise_factors(const bl_scenario_t *s, double *noise)
{
    const double sigma = BL_SIM_NOISE_SIGMA;
    const double shift = -0.5 * sigma * sigma; /* E[exp(σz − σ²/2)] = 1 */
    int n = s->ranks;
    uint64_t base = (uint64_t)s->t * ((uint64_t)n + 1);
    for (int r = 0; r < n; r += 2) {
        double z0 = 0.0;
        double z1 = 0.0;
        double u1 =
            to_unit(bl_part_mix64(s->noise_key + 0x9e3779b97f4a7c15ULL * (base + (uint64_t)r)));
        double u2 =
            to_unit(bl_part_mix64(s->noise_key + 0x9e3779b97f4a7c15ULL * (base + (uint64_t)r + 1)));
        box_muller(u1, u2, &z0, &z1);
        noise[r] = exp(sigma * z0 + shift);
        if (r + 1 < n) {
            noise[r + 1] = exp(sigma * z1 + shift);
        }
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
        for (int r = 0; r < n; r++) {
            speeds[r] = BL_SIM_BASE_SPEED;
        }
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
    case BL_SCENARIO_NOISE:
    default:
        for (int r = 0; r < n; r++) {
            speeds[r] = BL_SIM_BASE_SPEED;
        }
        break;
    }
    if (noise != NULL) {
        if (s->kind == BL_SCENARIO_NOISE) {
            noise_factors(s, noise);
        } else {
            for (int r = 0; r < n; r++) {
                noise[r] = 1.0;
            }
        }
    }
    s->t++;
    return t;
}

/* ---- Communication -------------------------------------------------------------- */

double bl_sim_ring_allreduce_s(int ranks, double nbytes, double alpha_s, double beta_s_per_byte)
{
    if (ranks <= 1) {
        return 0.0;
    }
    double p = (double)ranks;
    return 2.0 * (p - 1.0) * (alpha_s + nbytes / p * beta_s_per_byte);
}

/* ---- Metrics ------------------------------------------------------------------ */

long bl_sim_settle_step(const double *step_s, const double *oracle_s, long steps, long from,
                        double within, long sustain)
{
    if (step_s == NULL || oracle_s == NULL || steps < 1 || from < 0 || from >= steps ||
        sustain < 1 || !(within >= 0.0)) {
        return -1;
    }
    /* One pass: start is where the current run of close steps began. The
     * first run that is sustain long, or that reaches the end, starts at
     * the answer; a shorter run that ends early holds no answer (every
     * later start in it is shorter still and does not reach the end). */
    long start = from;
    for (long u = from; u < steps; u++) {
        if (!(step_s[u] <= (1.0 + within) * oracle_s[u])) {
            start = u + 1;
        } else if (u - start + 1 >= sustain) {
            return start;
        }
    }
    return start < steps ? start : -1;
}

double bl_sim_churn(int ranks, long batch, const long *current, const long *next)
{
    if (batch <= 0 || ranks < 1 || current == NULL || next == NULL) {
        return 0.0;
    }
    long moved = 0;
    for (int r = 0; r < ranks; r++) {
        long d = next[r] - current[r];
        moved += d < 0 ? -d : d;
    }
    return (double)moved / (2.0 * (double)batch);
}

/* ---- Policies by name ------------------------------------------------------------- */

const char *bl_sim_policy_name(int policy)
{
    if (policy == BL_SIM_ORACLE) {
        return "oracle";
    }
    if (policy < 0 || policy > BL_SIM_ORACLE) {
        return NULL;
    }
    return bl_policy_name((bl_policy_kind_t)policy);
}

int bl_sim_policy_parse(const char *name)
{
    if (name == NULL) {
        return -1;
    }
    if (strcmp(name, "oracle") == 0) {
        return BL_SIM_ORACLE;
    }
    int k = bl_policy_parse(name);
    return k >= 0 && k < BL_POLICY_COUNT ? k : -1;
}

/* ---- A run ---------------------------------------------------------------------- */

static double read_clock(const bl_sim_config_t *c)
{
    return c->clock != NULL ? c->clock(c->clock_ctx) : 0.0;
}

/* Checks the configuration; resolves the default batch into *batch. */
static int check_config(const bl_sim_config_t *c, long *batch, char *err, size_t errlen)
{
    if (c->ranks < 1) {
        return bl_part_fail(err, errlen, "ranks: %d, must be at least 1", c->ranks);
    }
    if (c->steps < 1) {
        return bl_part_fail(err, errlen, "steps: %ld, must be at least 1", c->steps);
    }
    if (c->rebalance_every < 1) {
        return bl_part_fail(err, errlen, "rebalance_every: %d, must be at least 1",
                            c->rebalance_every);
    }
    if ((int)c->scenario < 0 || c->scenario >= BL_SCENARIO_COUNT) {
        return bl_part_fail(err, errlen, "scenario: unknown kind %d", (int)c->scenario);
    }
    if (c->policy < 0 || c->policy > BL_SIM_ORACLE) {
        return bl_part_fail(err, errlen, "policy: unknown kind %d", c->policy);
    }
    if (c->batch < 0) {
        return bl_part_fail(err, errlen, "batch: %ld, must be positive (or 0 for the default)",
                            c->batch);
    }
    if (!(c->nbytes >= 0.0) || !isfinite(c->nbytes)) {
        return bl_part_fail(err, errlen, "nbytes: %g, must be a finite number >= 0", c->nbytes);
    }
    if (!(c->alpha_s >= 0.0) || !isfinite(c->alpha_s)) {
        return bl_part_fail(err, errlen, "alpha_s: %g, must be a finite number >= 0", c->alpha_s);
    }
    if (!(c->beta_s_per_byte >= 0.0) || !isfinite(c->beta_s_per_byte)) {
        return bl_part_fail(err, errlen, "beta_s_per_byte: %g, must be a finite number >= 0",
                            c->beta_s_per_byte);
    }
    if (!(c->deadband >= 0.0) || !isfinite(c->deadband)) {
        return bl_part_fail(err, errlen, "deadband: %g, must be a finite number >= 0", c->deadband);
    }
    *batch = c->batch > 0 ? c->batch : (long)BL_SIM_SAMPLES_PER_RANK * c->ranks;
    return 0;
}

/* The run's working memory: per-rank arrays and, when the caller passes
 * none, the two traces. */
typedef struct run_state {
    double *speeds;      /* this step's true speeds */
    double *prev_speeds; /* the speeds the oracle plan was made for */
    double *noise;       /* this step's noise factors */
    long *plan;          /* the plan that runs this step */
    long *next;          /* the policy's next plan */
    long *oracle;        /* the oracle's plan */
    bl_rank_obs_t *obs;  /* the window's observations, summed */
    double *own_steps;   /* step-time trace when the caller passed none */
    double *own_oracle;  /* oracle trace when the caller passed none */
} run_state_t;

static void run_state_free(const bl_part_allocator_t *a, run_state_t *m)
{
    sim_free(a, m->speeds);
    sim_free(a, m->prev_speeds);
    sim_free(a, m->noise);
    sim_free(a, m->plan);
    sim_free(a, m->next);
    sim_free(a, m->oracle);
    sim_free(a, m->obs);
    sim_free(a, m->own_steps);
    sim_free(a, m->own_oracle);
}

int bl_sim_run(const bl_sim_config_t *c, const bl_part_allocator_t *a, bl_sim_result_t *out,
               double *step_trace, double *oracle_trace, char *err, size_t errlen)
{
    run_state_t m = {0};
    bl_scenario_t *scenario = NULL;
    bl_policy_t *policy = NULL;
    long batch = 0;
    int rc = -1;
    if (c == NULL || out == NULL) {
        return bl_part_fail(err, errlen, "config and result must not be NULL");
    }
    memset(out, 0, sizeof *out);
    if (check_config(c, &batch, err, errlen) != 0) {
        return -1;
    }
    const int n = c->ranks;
    const long steps = c->steps;
    const int k_every = c->rebalance_every;
    const int is_oracle = c->policy == BL_SIM_ORACLE;
    const size_t nr = (size_t)n;

    m.speeds = sim_alloc(a, nr, sizeof *m.speeds);
    m.prev_speeds = sim_alloc(a, nr, sizeof *m.prev_speeds);
    m.noise = sim_alloc(a, nr, sizeof *m.noise);
    m.plan = sim_alloc(a, nr, sizeof *m.plan);
    m.next = sim_alloc(a, nr, sizeof *m.next);
    m.oracle = sim_alloc(a, nr, sizeof *m.oracle);
    m.obs = sim_alloc(a, nr, sizeof *m.obs);
    if (step_trace == NULL) {
        step_trace = m.own_steps = sim_alloc(a, (size_t)steps, sizeof *step_trace);
    }
    if (oracle_trace == NULL) {
        oracle_trace = m.own_oracle = sim_alloc(a, (size_t)steps, sizeof *oracle_trace);
    }
    if (m.speeds == NULL || m.prev_speeds == NULL || m.noise == NULL || m.plan == NULL ||
        m.next == NULL || m.oracle == NULL || m.obs == NULL || step_trace == NULL ||
        oracle_trace == NULL) {
        bl_part_fail(err, errlen, "out of memory for %d ranks and %ld steps", n, steps);
        goto done;
    }
    if (bl_scenario_create(c->scenario, n, steps, c->seed, a, &scenario) != 0) {
        bl_part_fail(err, errlen, "scenario: out of memory for %d ranks", n);
        goto done;
    }
    if (!is_oracle) {
        bl_policy_config_t pc = {
            .kind = (bl_policy_kind_t)c->policy,
            .ranks = n,
            .batch = batch,
            .min_shard = NULL,
            .max_shard = NULL,
            .deadband = c->deadband,
            .seed = c->seed,
            .estimator = BL_ESTIMATOR_PARAMS_DEFAULT,
            .q_init = c->policy == BL_POLICY_RL ? c->q_init : NULL,
        };
        char perr[256] = "";
        if (bl_policy_create(&pc, a, &policy, perr, sizeof perr) != 0) {
            bl_part_fail(err, errlen, "policy %s: %s", bl_sim_policy_name(c->policy), perr);
            goto done;
        }
    }

    const double comm = bl_sim_ring_allreduce_s(n, c->nbytes, c->alpha_s, c->beta_s_per_byte);
    const long half = steps / 2; /* the steady state: steps [T/2, T) */
    bl_split_even(batch, n, m.plan);
    memset(m.obs, 0, nr * sizeof *m.obs);
    double sum_step = 0.0, sum_oracle = 0.0;        /* Σ step times */
    double sum_cmax = 0.0, sum_oracle_cmax = 0.0;   /* Σ slowest computes */
    double half_step = 0.0, half_oracle = 0.0;      /* Σ step times over [T/2, T) */
    double half_cmax = 0.0, half_oracle_cmax = 0.0; /* Σ slowest computes over [T/2, T) */
    double decide_s = 0.0, window_step = 0.0, churn = 0.0;
    long decisions = 0, changes = 0;
    int in_window = 0;

    for (long t = 0; t < steps; t++) {
        bl_scenario_next(scenario, m.speeds, m.noise);
        /* The oracle plans from the true speeds, again whenever they move. */
        if (t == 0 || memcmp(m.speeds, m.prev_speeds, nr * sizeof *m.speeds) != 0) {
            double t0 = is_oracle ? read_clock(c) : 0.0;
            if (bl_plan_proportional(batch, n, m.speeds, NULL, NULL, m.oracle) != 0) {
                bl_part_fail(err, errlen, "oracle: bl_plan_proportional failed at step %ld", t);
                goto done;
            }
            memcpy(m.prev_speeds, m.speeds, nr * sizeof *m.speeds);
            if (is_oracle) {
                decide_s += read_clock(c) - t0;
                decisions++;
                double moved = bl_sim_churn(n, batch, m.plan, m.oracle);
                changes += moved > 0.0;
                churn += moved;
                memcpy(m.plan, m.oracle, nr * sizeof *m.plan);
            }
        }
        /* Each rank's compute: shard / speed · noise; the step waits for
         * the slowest, then all-reduces. */
        double cmax = 0.0, oracle_cmax = 0.0;
        for (int r = 0; r < n; r++) {
            double own = (double)m.plan[r] / m.speeds[r] * m.noise[r];
            double ideal = (double)m.oracle[r] / m.speeds[r] * m.noise[r];
            cmax = own > cmax ? own : cmax;
            oracle_cmax = ideal > oracle_cmax ? ideal : oracle_cmax;
        }
        double step = cmax + comm;
        double oracle_step = oracle_cmax + comm;
        step_trace[t] = step;
        oracle_trace[t] = oracle_step;
        sum_step += step;
        sum_oracle += oracle_step;
        sum_cmax += cmax;
        sum_oracle_cmax += oracle_cmax;
        if (t >= half) {
            half_step += step;
            half_oracle += oracle_step;
            half_cmax += cmax;
            half_oracle_cmax += oracle_cmax;
        }
        if (is_oracle) {
            continue;
        }
        /* What every rank would report for this step. */
        for (int r = 0; r < n; r++) {
            double own = (double)m.plan[r] / m.speeds[r] * m.noise[r];
            m.obs[r].samples += (double)m.plan[r];
            m.obs[r].compute_s += own;
            m.obs[r].comm_s += comm;
            m.obs[r].wait_s += cmax - own;
        }
        window_step += step;
        if (++in_window < k_every) {
            continue;
        }
        /* End of a window: decide, as rank 0 would, on the window's sums
         * and its mean step time; the plan runs from the next step. */
        bl_decision_t decision;
        memset(&decision, 0, sizeof decision);
        double t0 = read_clock(c);
        int status = bl_policy_decide(policy, m.obs, window_step / (double)k_every, m.plan, m.next,
                                      &decision);
        decide_s += read_clock(c) - t0;
        decisions++;
        if (status != 0) {
            bl_part_fail(err, errlen, "policy %s: bl_policy_decide failed at step %ld",
                         bl_sim_policy_name(c->policy), t);
            goto done;
        }
        long total = 0;
        for (int r = 0; r < n; r++) {
            if (m.next[r] < 0) {
                bl_part_fail(err, errlen, "policy %s: negative shard %ld for rank %d at step %ld",
                             bl_sim_policy_name(c->policy), m.next[r], r, t);
                goto done;
            }
            total += m.next[r];
        }
        if (total != batch) {
            bl_part_fail(err, errlen,
                         "policy %s: the plan sums to %ld, not the batch %ld, at step %ld",
                         bl_sim_policy_name(c->policy), total, batch, t);
            goto done;
        }
        double moved = bl_sim_churn(n, batch, m.plan, m.next);
        changes += moved > 0.0;
        churn += moved;
        memcpy(m.plan, m.next, nr * sizeof *m.plan);
        memset(m.obs, 0, nr * sizeof *m.obs);
        window_step = 0.0;
        in_window = 0;
    }

    /* Σ samples is B every step for the policy and the oracle alike, so
     * the throughput ratio is the ratio of summed step times. */
    out->throughput_vs_oracle = sum_oracle / sum_step;
    out->steady_vs_oracle = half_oracle / half_step;
    out->compute_vs_oracle = sum_cmax > 0.0 ? sum_oracle_cmax / sum_cmax : 1.0;
    out->steady_compute_vs_oracle = half_cmax > 0.0 ? half_oracle_cmax / half_cmax : 1.0;
    out->cold_start_steps =
        bl_sim_settle_step(step_trace, oracle_trace, steps, 0, BL_SIM_WITHIN, BL_SIM_SUSTAIN);
    out->change_step = bl_scenario_change_step(scenario);
    if (out->change_step >= steps) {
        out->change_step = -1;
    }
    out->recovery_steps = -1;
    if (out->change_step >= 0) {
        long settled = bl_sim_settle_step(step_trace, oracle_trace, steps, out->change_step,
                                          BL_SIM_WITHIN, BL_SIM_SUSTAIN);
        out->recovery_steps = settled < 0 ? -1 : settled - out->change_step;
    }
    out->regret_s = sum_step - sum_oracle;
    out->churn = churn;
    out->decisions = decisions;
    out->plan_changes = changes;
    out->decision_us = decisions > 0 ? decide_s / (double)decisions * 1e6 : 0.0;
    out->controller_frac = decide_s / sum_step;
    out->mean_step_s = sum_step / (double)steps;
    out->oracle_step_s = sum_oracle / (double)steps;
    out->comm_s = comm;
    out->batch = batch;
    if (c->q_out != NULL && c->policy == BL_POLICY_RL && policy != NULL) {
        memcpy(c->q_out, bl_policy_q_table(policy),
               (size_t)BL_RL_STATES * BL_RL_ACTIONS * sizeof(double));
    }
    rc = 0;
done:
    bl_policy_destroy(policy);
    bl_scenario_destroy(scenario);
    run_state_free(a, &m);
    return rc;
}
