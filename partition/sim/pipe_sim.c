/* The pipeline simulator: seeded layers, stages whose speeds follow a
 * scenario of sim.h, and the run loop that drives a stage-map policy of
 * restage.h the way rank 0's restager does in a job. Pure: the only clock
 * is the caller's. The model is described in pipe_sim.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pipeline.h"
#include "pipe_sim.h"
#include "restage.h"

/* ---- Random numbers ---------------------------------------------------------- */

/* Streams of the model, each a counter hashed with the seed, so that one
 * layer's draws do not depend on how many others there are. */
enum { STREAM_COST = 1, STREAM_ANCHOR, STREAM_WIDTH };

/* Uniform in [0, 1): draw i of stream on seed. */
static double draw(uint64_t seed, int stream, int i)
{
    uint64_t key = bl_part_mix64(seed ^ (0x6a09e667f3bcc909ULL * (uint64_t)stream));
    return (double)(bl_part_mix64(key + 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)) >> 11) *
           0x1.0p-53;
}

/* exp of a uniform in [ln lo, ln hi). */
static double log_uniform(double u, double lo, double hi)
{
    return lo * exp(u * log(hi / lo));
}

/* ---- The model ------------------------------------------------------------------ */

typedef struct model {
    int layers, stages;
    double *cost;        /* (L) true seconds per step at nominal speed */
    double *prefix;      /* (L + 1) Σ cost[0..i) */
    double *anchor;      /* (L) what the policy is told: cost × (1 ± 30 %) */
    double *layer_bytes; /* (L) migration bytes */
    double *edge_bytes;  /* (L) bytes per step across the cut before layer i; [0] = 0 */
    double *boundary_s;  /* (L) edge_bytes / the true bandwidth */
    double bubble;       /* (M + S − 1) / M */
} model_t;

static void model_fill(model_t *m, uint64_t seed, double bandwidth)
{
    m->prefix[0] = 0.0;
    for (int i = 0; i < m->layers; i++) {
        double unit = (i % 4 == 3) ? BL_PIPE_SIM_ACT_COST
                                   : log_uniform(draw(seed, STREAM_COST, i), 0.25, 4.0);
        double err = BL_PIPE_SIM_ANCHOR_ERROR * (2.0 * draw(seed, STREAM_ANCHOR, i) - 1.0);
        m->cost[i] = BL_PIPE_SIM_BASE_LAYER_S * unit;
        m->prefix[i + 1] = m->prefix[i] + m->cost[i];
        m->anchor[i] = m->cost[i] * (1.0 + err);
        m->layer_bytes[i] = (i % 4 == 3) ? 0.0 : BL_PIPE_SIM_BYTES_PER_BASE * unit;
        double width = log_uniform(draw(seed, STREAM_WIDTH, i), 256.0, 4096.0);
        m->edge_bytes[i] = i == 0 ? 0.0 : 2.0 * 4.0 * BL_PIPE_SIM_SAMPLES * floor(width);
        m->boundary_s[i] = m->edge_bytes[i] / bandwidth;
    }
}

/* Stage times of map first on relative speeds rel and noise factors (NULL:
 * none) into T (S values, or NULL); returns the slowest. */
static double stage_times(const model_t *m, const int *first, const double *rel,
                          const double *noise, double *T)
{
    int S = m->stages;
    double slowest = 0.0;
    for (int s = 0; s < S; s++) {
        int i = first[s], j = first[s + 1];
        double t = (m->prefix[j] - m->prefix[i]) / rel[s] * (noise != NULL ? noise[s] : 1.0);
        if (s > 0) {
            t += m->boundary_s[i];
        }
        if (s < S - 1) {
            t += m->boundary_s[j];
        }
        if (T != NULL) {
            T[s] = t;
        }
        slowest = t > slowest ? t : slowest;
    }
    return slowest;
}

/* Slowest over mean of the stage times in T. */
static double max_over_mean(const double *T, int stages)
{
    double sum = 0.0, most = 0.0;
    for (int s = 0; s < stages; s++) {
        sum += T[s];
        most = T[s] > most ? T[s] : most;
    }
    return sum > 0.0 ? most * (double)stages / sum : 1.0;
}

/* ---- Configuration ---------------------------------------------------------------- */

static int check_config(const bl_pipe_sim_config_t *c, char *err, size_t errlen)
{
    if ((int)c->scenario < 0 || c->scenario >= BL_SCENARIO_COUNT) {
        return bl_part_fail(err, errlen, "scenario: unknown kind %d", (int)c->scenario);
    }
    if (c->layers < 1 || c->layers > BL_PIPE_SIM_MAX_LAYERS) {
        return bl_part_fail(err, errlen, "layers: %d, must be in [1, %d]", c->layers,
                            BL_PIPE_SIM_MAX_LAYERS);
    }
    if (c->stages < 1 || c->stages > c->layers) {
        return bl_part_fail(err, errlen, "stages: %d, must be in [1, layers = %d]", c->stages,
                            c->layers);
    }
    if (c->steps < 1) {
        return bl_part_fail(err, errlen, "steps: %ld, must be at least 1", c->steps);
    }
    if (c->rebalance_every < 1) {
        return bl_part_fail(err, errlen, "rebalance_every: %d, must be at least 1",
                            c->rebalance_every);
    }
    if (c->policy < 0 || c->policy >= (int)BL_POLICY_COUNT) {
        return bl_part_fail(err, errlen, "policy: unknown kind %d", c->policy);
    }
    if (c->micro_batches < 1) {
        return bl_part_fail(err, errlen, "micro_batches: %d, must be at least 1", c->micro_batches);
    }
    if (!(c->horizon_steps > 0.0) || !isfinite(c->horizon_steps)) {
        return bl_part_fail(err, errlen, "horizon_steps: %g, must be positive and finite",
                            c->horizon_steps);
    }
    if (!(c->threshold >= 0.0) || !(c->threshold < 1.0)) {
        return bl_part_fail(err, errlen, "threshold: %g, must be in [0, 1)", c->threshold);
    }
    if (!(c->bandwidth > 0.0) || !isfinite(c->bandwidth)) {
        return bl_part_fail(err, errlen, "bandwidth: %g, must be positive and finite",
                            c->bandwidth);
    }
    if (!(c->latency_s >= 0.0) || !isfinite(c->latency_s)) {
        return bl_part_fail(err, errlen, "latency_s: %g, must be finite and >= 0", c->latency_s);
    }
    if (!(c->policy_bandwidth >= 0.0) || !isfinite(c->policy_bandwidth)) {
        return bl_part_fail(err, errlen,
                            "policy_bandwidth: %g, must be finite and >= 0 (0: the true one)",
                            c->policy_bandwidth);
    }
    return 0;
}

static double read_clock(const bl_pipe_sim_config_t *c)
{
    return c->clock != NULL ? c->clock(c->clock_ctx) : 0.0;
}

static int compare_doubles(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* ---- A run ---------------------------------------------------------------------- */

/* A migration still being judged: the map it left, the map it made, the
 * steps [start, end) over which it must pay back, and the gain so far. */
typedef struct open_move {
    int *from, *to; /* (S + 1) each, views into run_state_t.move_maps */
    long start, end;
    double gain_s, cost_s;
} open_move_t;

typedef struct run_state {
    model_t m;
    double *speeds;      /* (S) this step's true speeds, samples/s (the scenario's unit) */
    double *prev_speeds; /* (S) the speeds the oracle map was solved for */
    double *rel;         /* (S) speeds / BL_SIM_BASE_SPEED */
    double *noise;       /* (S) this step's noise factors */
    double *T;           /* (S) stage times */
    double *layer_sum;   /* (L) the window's Σ measured layer seconds */
    double *decide_ms;   /* (steps / K) each decision's wall time */
    int *cur, *next, *initial, *opt; /* (S + 1) maps */
    int *move_maps;                  /* (2 · moves_cap · (S + 1)) */
    open_move_t *moves;              /* (moves_cap) a ring */
} run_state_t;

static void run_state_free(const bl_part_allocator_t *a, run_state_t *r)
{
    bl_part_free(a, r->m.cost);
    bl_part_free(a, r->m.prefix);
    bl_part_free(a, r->m.anchor);
    bl_part_free(a, r->m.layer_bytes);
    bl_part_free(a, r->m.edge_bytes);
    bl_part_free(a, r->m.boundary_s);
    bl_part_free(a, r->speeds);
    bl_part_free(a, r->prev_speeds);
    bl_part_free(a, r->rel);
    bl_part_free(a, r->noise);
    bl_part_free(a, r->T);
    bl_part_free(a, r->layer_sum);
    bl_part_free(a, r->decide_ms);
    bl_part_free(a, r->cur);
    bl_part_free(a, r->next);
    bl_part_free(a, r->initial);
    bl_part_free(a, r->opt);
    bl_part_free(a, r->move_maps);
    bl_part_free(a, r->moves);
}

int bl_pipe_sim_run(const bl_pipe_sim_config_t *c, const bl_part_allocator_t *a,
                    bl_pipe_sim_result_t *out, char *err, size_t errlen)
{
    run_state_t r;
    memset(&r, 0, sizeof r);
    bl_scenario_t *scenario = NULL;
    bl_restage_t *policy = NULL;
    int rc = -1;
    if (c == NULL || out == NULL) {
        return bl_part_fail(err, errlen, "config and result must not be NULL");
    }
    memset(out, 0, sizeof *out);
    if (check_config(c, err, errlen) != 0) {
        return -1;
    }
    const int L = c->layers, S = c->stages, K = c->rebalance_every;
    const long steps = c->steps;
    const size_t nl = (size_t)L, ns = (size_t)S, map_bytes = (ns + 1) * sizeof(int);
    /* A move is judged over at most judge steps; moves come at most one a
     * window, so no more than judge / K + 1 are open at once. */
    const long judge = c->horizon_steps < (double)steps ? (long)ceil(c->horizon_steps) : steps;
    const long max_decisions = steps / K;
    long moves_cap = judge / K + 2;
    if (moves_cap > max_decisions + 1) {
        moves_cap = max_decisions + 1;
    }

    r.m.layers = L;
    r.m.stages = S;
    r.m.bubble = (double)(c->micro_batches + S - 1) / (double)c->micro_batches;
    r.m.cost = bl_part_alloc(a, nl, sizeof(double));
    r.m.prefix = bl_part_alloc(a, nl + 1, sizeof(double));
    r.m.anchor = bl_part_alloc(a, nl, sizeof(double));
    r.m.layer_bytes = bl_part_alloc(a, nl, sizeof(double));
    r.m.edge_bytes = bl_part_alloc(a, nl, sizeof(double));
    r.m.boundary_s = bl_part_alloc(a, nl, sizeof(double));
    r.speeds = bl_part_alloc(a, ns, sizeof(double));
    r.prev_speeds = bl_part_alloc(a, ns, sizeof(double));
    r.rel = bl_part_alloc(a, ns, sizeof(double));
    r.noise = bl_part_alloc(a, ns, sizeof(double));
    r.T = bl_part_alloc(a, ns, sizeof(double));
    r.layer_sum = bl_part_alloc(a, nl, sizeof(double));
    r.decide_ms = bl_part_alloc(a, (size_t)max_decisions, sizeof(double));
    r.cur = bl_part_alloc(a, ns + 1, sizeof(int));
    r.next = bl_part_alloc(a, ns + 1, sizeof(int));
    r.initial = bl_part_alloc(a, ns + 1, sizeof(int));
    r.opt = bl_part_alloc(a, ns + 1, sizeof(int));
    r.move_maps = bl_part_alloc(a, 2 * (size_t)moves_cap * (ns + 1), sizeof(int));
    r.moves = bl_part_alloc(a, (size_t)moves_cap, sizeof(open_move_t));
    if (r.m.cost == NULL || r.m.prefix == NULL || r.m.anchor == NULL || r.m.layer_bytes == NULL ||
        r.m.edge_bytes == NULL || r.m.boundary_s == NULL || r.speeds == NULL ||
        r.prev_speeds == NULL || r.rel == NULL || r.noise == NULL || r.T == NULL ||
        r.layer_sum == NULL || r.decide_ms == NULL || r.cur == NULL || r.next == NULL ||
        r.initial == NULL || r.opt == NULL || r.move_maps == NULL || r.moves == NULL) {
        bl_part_fail(err, errlen, "out of memory for %d layers, %d stages and %ld steps", L, S,
                     steps);
        goto done;
    }
    for (long k = 0; k < moves_cap; k++) {
        r.moves[k].from = r.move_maps + (size_t)(2 * k) * (ns + 1);
        r.moves[k].to = r.move_maps + (size_t)(2 * k + 1) * (ns + 1);
    }
    model_fill(&r.m, c->seed, c->bandwidth);

    if (bl_scenario_create(c->scenario, S, steps, c->seed, a, &scenario) != 0) {
        bl_part_fail(err, errlen, "scenario: out of memory for %d stages", S);
        goto done;
    }
    bl_restage_config_t pc = {
        .kind = (bl_policy_kind_t)c->policy,
        .layers = L,
        .stages = S,
        .anchor = r.m.anchor,
        .layer_bytes = r.m.layer_bytes,
        .edge_bytes = r.m.edge_bytes,
        .bandwidth = c->policy_bandwidth > 0.0 ? c->policy_bandwidth : c->bandwidth,
        .latency_s = c->latency_s,
        .horizon_steps = c->horizon_steps,
        .threshold = c->threshold,
        .seed = c->seed,
        .estimator = BL_ESTIMATOR_PARAMS_DEFAULT,
    };
    char perr[256] = "";
    if (bl_restage_create(&pc, a, &policy, perr, sizeof perr) != 0) {
        bl_part_fail(err, errlen, "policy %s: %s", bl_policy_name((bl_policy_kind_t)c->policy),
                     perr);
        goto done;
    }
    /* The initial map: even by anchors, as a job starts before it has
     * measured anything. */
    bl_pipe_problem_t even = {
        .layers = L, .cost = r.m.anchor, .stages = S, .speed = NULL, .boundary = NULL};
    if (bl_pipe_partition_solve(&even, r.initial, a) != 0) {
        bl_part_fail(err, errlen, "initial map: bl_pipe_partition_solve failed");
        goto done;
    }
    memcpy(r.cur, r.initial, map_bytes);

    const long half = steps / 2; /* the steady state: steps [T/2, T) */
    const double bubble = r.m.bubble;
    double sum_step = 0.0, sum_oracle = 0.0, sum_static = 0.0;
    double half_step = 0.0, half_oracle = 0.0;
    double window_step = 0.0, migrated_bytes = 0.0, migration_s = 0.0;
    long decisions = 0, migrations = 0, unpaid = 0;
    long open_first = 0, open_count = 0; /* the ring of moves being judged */
    int in_window = 0;
    memset(r.layer_sum, 0, nl * sizeof *r.layer_sum);

    for (long t = 0; t < steps; t++) {
        bl_scenario_next(scenario, r.speeds, r.noise);
        for (int s = 0; s < S; s++) {
            r.rel[s] = r.speeds[s] / BL_SIM_BASE_SPEED;
        }
        /* The oracle re-solves whenever the true speeds move. */
        if (t == 0 || memcmp(r.speeds, r.prev_speeds, ns * sizeof *r.speeds) != 0) {
            bl_pipe_problem_t p = {.layers = L,
                                   .cost = r.m.cost,
                                   .stages = S,
                                   .speed = r.rel,
                                   .boundary = r.m.boundary_s};
            if (bl_pipe_partition_solve(&p, r.opt, a) != 0) {
                bl_part_fail(err, errlen, "oracle: bl_pipe_partition_solve failed at step %ld", t);
                goto done;
            }
            memcpy(r.prev_speeds, r.speeds, ns * sizeof *r.speeds);
        }
        double step = bubble * stage_times(&r.m, r.cur, r.rel, r.noise, NULL);
        double oracle = bubble * stage_times(&r.m, r.opt, r.rel, r.noise, NULL);
        sum_step += step;
        sum_oracle += oracle;
        sum_static += bubble * stage_times(&r.m, r.initial, r.rel, r.noise, NULL);
        if (t >= half) {
            half_step += step;
            half_oracle += oracle;
        }
        /* Every open move: what its old map would have taken this step,
         * against its new map; closed after its horizon. */
        for (long k = 0; k < open_count; k++) {
            open_move_t *mv = &r.moves[(open_first + k) % moves_cap];
            mv->gain_s += bubble * (stage_times(&r.m, mv->from, r.rel, r.noise, NULL) -
                                    stage_times(&r.m, mv->to, r.rel, r.noise, NULL));
        }
        while (open_count > 0 && r.moves[open_first].end <= t + 1) {
            open_move_t *mv = &r.moves[open_first];
            unpaid += mv->gain_s < mv->cost_s;
            open_first = (open_first + 1) % moves_cap;
            open_count--;
        }
        /* What the job measures: every layer's seconds on its stage. */
        for (int s = 0; s < S; s++) {
            double per = r.noise[s] / r.rel[s];
            for (int i = r.cur[s]; i < r.cur[s + 1]; i++) {
                r.layer_sum[i] += r.m.cost[i] * per;
            }
        }
        window_step += step;
        if (++in_window < K) {
            continue;
        }
        /* End of a window: decide on its means; a new map runs from the
         * next step, after its migration. */
        for (int i = 0; i < L; i++) {
            r.layer_sum[i] /= (double)K;
        }
        bl_restage_obs_t obs = {
            .first = r.cur, .layer_s = r.layer_sum, .step_s = window_step / (double)K};
        bl_restage_decision_t d;
        double t0 = read_clock(c);
        int status = bl_restage_decide(policy, &obs, r.next, &d);
        r.decide_ms[decisions++] = (read_clock(c) - t0) * 1e3;
        if (status != 0) {
            bl_part_fail(err, errlen, "policy %s: bl_restage_decide failed at step %ld: %s",
                         bl_policy_name((bl_policy_kind_t)c->policy), t, d.action);
            goto done;
        }
        if (memcmp(r.next, r.cur, map_bytes) != 0) {
            double bytes = bl_restage_move_bytes(policy, r.cur, r.next);
            double secs = bytes / c->bandwidth + c->latency_s;
            bl_restage_migrated(policy, bytes, secs);
            migrations++;
            migrated_bytes += bytes;
            migration_s += secs;
            sum_step += secs;
            if (t >= half) {
                half_step += secs;
            }
            /* Judge it over the steps from the next one; the ring cannot
             * overflow (see moves_cap), but a full ring closes its oldest. */
            if (open_count == moves_cap) {
                unpaid += r.moves[open_first].gain_s < r.moves[open_first].cost_s;
                open_first = (open_first + 1) % moves_cap;
                open_count--;
            }
            open_move_t *mv = &r.moves[(open_first + open_count) % moves_cap];
            memcpy(mv->from, r.cur, map_bytes);
            memcpy(mv->to, r.next, map_bytes);
            mv->start = t + 1;
            mv->end = t + 1 + judge;
            mv->gain_s = 0.0;
            mv->cost_s = secs;
            open_count++;
            memcpy(r.cur, r.next, map_bytes);
        }
        memset(r.layer_sum, 0, nl * sizeof *r.layer_sum);
        window_step = 0.0;
        in_window = 0;
    }
    /* Moves whose horizon runs past the end are judged on what they had. */
    for (long k = 0; k < open_count; k++) {
        open_move_t *mv = &r.moves[(open_first + k) % moves_cap];
        unpaid += mv->gain_s < mv->cost_s;
    }

    /* The end state: the last step's true speeds, without noise. */
    double slowest = stage_times(&r.m, r.cur, r.rel, NULL, r.T);
    out->max_over_mean = max_over_mean(r.T, S);
    double opt_slowest = stage_times(&r.m, r.opt, r.rel, NULL, r.T);
    out->opt_max_over_mean = max_over_mean(r.T, S);
    out->gap = opt_slowest > 0.0 ? slowest / opt_slowest : 1.0;
    out->mean_step_s = sum_step / (double)steps;
    out->oracle_step_s = sum_oracle / (double)steps;
    out->static_step_s = sum_static / (double)steps;
    out->steady_over_oracle = half_oracle > 0.0 ? half_step / half_oracle : 1.0;
    out->decisions = decisions;
    out->migrations = migrations;
    out->migrated_bytes = migrated_bytes;
    out->migration_s = migration_s;
    out->unpaid = unpaid;
    out->bubble = bubble;
    if (decisions > 0) {
        qsort(r.decide_ms, (size_t)decisions, sizeof *r.decide_ms, compare_doubles);
        long mid = decisions / 2;
        out->decision_ms_median =
            decisions % 2 ? r.decide_ms[mid] : 0.5 * (r.decide_ms[mid - 1] + r.decide_ms[mid]);
        out->decision_ms_max = r.decide_ms[decisions - 1];
    }
    rc = 0;
done:
    bl_restage_destroy(policy);
    bl_scenario_destroy(scenario);
    run_state_free(a, &r);
    return rc;
}
