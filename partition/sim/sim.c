/* The cluster simulator: the ring all-reduce model, the metrics, and the
 * run loop that drives a policy of policy.h the way rank 0's controller
 * does in a job, beside the oracle and the lag-1 oracle. The ranks' speeds
 * come from the scenarios (scenario.c). Pure: the only clock is the
 * caller's. */
#include <math.h>
#include <string.h>

#include "partition.h"
#include "policy.h"
#include "alloc.h"
#include "sim.h"

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
    long *lagged;        /* the lag-1 oracle's plan: the oracle's of the step before */
    bl_rank_obs_t *obs;  /* the window's observations, summed */
    double *own_steps;   /* step-time trace when the caller passed none */
    double *own_oracle;  /* oracle trace when the caller passed none */
} run_state_t;

static void run_state_free(const bl_part_allocator_t *a, run_state_t *m)
{
    bl_part_free(a, m->speeds);
    bl_part_free(a, m->prev_speeds);
    bl_part_free(a, m->noise);
    bl_part_free(a, m->plan);
    bl_part_free(a, m->next);
    bl_part_free(a, m->oracle);
    bl_part_free(a, m->lagged);
    bl_part_free(a, m->obs);
    bl_part_free(a, m->own_steps);
    bl_part_free(a, m->own_oracle);
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

    m.speeds = bl_part_alloc(a, nr, sizeof *m.speeds);
    m.prev_speeds = bl_part_alloc(a, nr, sizeof *m.prev_speeds);
    m.noise = bl_part_alloc(a, nr, sizeof *m.noise);
    m.plan = bl_part_alloc(a, nr, sizeof *m.plan);
    m.next = bl_part_alloc(a, nr, sizeof *m.next);
    m.oracle = bl_part_alloc(a, nr, sizeof *m.oracle);
    m.lagged = bl_part_alloc(a, nr, sizeof *m.lagged);
    m.obs = bl_part_alloc(a, nr, sizeof *m.obs);
    if (step_trace == NULL) {
        step_trace = m.own_steps = bl_part_alloc(a, (size_t)steps, sizeof *step_trace);
    }
    if (oracle_trace == NULL) {
        oracle_trace = m.own_oracle = bl_part_alloc(a, (size_t)steps, sizeof *oracle_trace);
    }
    if (m.speeds == NULL || m.prev_speeds == NULL || m.noise == NULL || m.plan == NULL ||
        m.next == NULL || m.oracle == NULL || m.lagged == NULL || m.obs == NULL ||
        step_trace == NULL || oracle_trace == NULL) {
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
    bl_split_even(batch, n, m.lagged);
    memset(m.obs, 0, nr * sizeof *m.obs);
    double sum_step = 0.0, sum_oracle = 0.0, sum_lagged = 0.0; /* Σ step times */
    double sum_cmax = 0.0, sum_oracle_cmax = 0.0;              /* Σ slowest computes */
    double half_step = 0.0, half_oracle = 0.0;                 /* Σ step times over [T/2, T) */
    double half_cmax = 0.0, half_oracle_cmax = 0.0; /* Σ slowest computes over [T/2, T) */
    double decide_s = 0.0, window_step = 0.0, churn = 0.0;
    long decisions = 0, changes = 0;
    int in_window = 0;
    int oracle_moved = 0; /* the oracle replanned at the step before */

    for (long t = 0; t < steps; t++) {
        bl_scenario_next(scenario, m.speeds, m.noise);
        /* The lag-1 oracle takes the plan the oracle ran at the step before
         * (copied only when that one changed: m.lagged holds it already
         * otherwise). */
        if (oracle_moved) {
            memcpy(m.lagged, m.oracle, nr * sizeof *m.lagged);
            oracle_moved = 0;
        }
        /* The oracle plans from the true speeds, again whenever they move. */
        if (t == 0 || memcmp(m.speeds, m.prev_speeds, nr * sizeof *m.speeds) != 0) {
            double t0 = is_oracle ? read_clock(c) : 0.0;
            if (bl_plan_proportional(batch, n, m.speeds, NULL, NULL, m.oracle) != 0) {
                bl_part_fail(err, errlen, "oracle: bl_plan_proportional failed at step %ld", t);
                goto done;
            }
            memcpy(m.prev_speeds, m.speeds, nr * sizeof *m.speeds);
            oracle_moved = 1;
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
        double cmax = 0.0, oracle_cmax = 0.0, lagged_cmax = 0.0;
        for (int r = 0; r < n; r++) {
            double own = (double)m.plan[r] / m.speeds[r] * m.noise[r];
            double ideal = (double)m.oracle[r] / m.speeds[r] * m.noise[r];
            double late = (double)m.lagged[r] / m.speeds[r] * m.noise[r];
            cmax = own > cmax ? own : cmax;
            oracle_cmax = ideal > oracle_cmax ? ideal : oracle_cmax;
            lagged_cmax = late > lagged_cmax ? late : lagged_cmax;
        }
        double step = cmax + comm;
        double oracle_step = oracle_cmax + comm;
        step_trace[t] = step;
        oracle_trace[t] = oracle_step;
        sum_step += step;
        sum_oracle += oracle_step;
        sum_lagged += lagged_cmax + comm;
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
    out->causal_vs_oracle = sum_oracle / sum_lagged;
    out->causal_regret_s = sum_lagged - sum_oracle;
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
        memcpy(c->q_out, bl_policy_q_table(policy), (size_t)BL_RL_TABLE_DOUBLES * sizeof(double));
    }
    rc = 0;
done:
    bl_policy_destroy(policy);
    bl_scenario_destroy(scenario);
    run_state_free(a, &m);
    return rc;
}
