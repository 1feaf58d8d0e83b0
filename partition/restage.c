/* Layer reassignment across pipeline stages.
 *
 * Estimation. A layer's time is its cost over its stage's speed, t_is =
 * c_i / v_s, and measured times alone cannot tell a slow stage from
 * costly layers: the units come from the anchors (the layers' a priori
 * costs), and what links the stages is a layer measured on more than one
 * of them. So the policy keeps, per layer and stage, the EMA of the layer's
 * seconds there (t_is; 0 where never measured) and fits costs and speeds
 * to all of them by alternating least squares: v_s = Σ_i c_i / Σ_i t_is
 * over the layers measured on s, then c_i = the mean over its stages of
 * t_is · v_s, rescaled so Σ c = Σ anchor, from the previous fit (at first
 * the anchors). With only the current map measured this keeps each
 * stage's anchored total and splits it by the clock; once a migration has
 * timed a layer on two stages, their speed ratio is measured rather than
 * assumed. A stage's speed change (the estimator's change detection on
 * its windows, as for shard policies) drops what its other layers measured
 * there before the change. A stage whose window strays from the fit by
 * more than change_sigma noise sigmas without a detected change (a spike)
 * is left out of that window, and the window proposes no move.
 *
 * Decision. With costs c, speeds v and a boundary cost (bytes crossing a
 * cut / bandwidth) the exact contiguous min-max partition
 * (bl_pipe_partition_solve) is the best map; its predicted slowest stage
 * against the current map's gives the relative gain, scaled onto the
 * measured step time (the pipeline's bubble scales with its slowest
 * stage). The move costs the bytes of the layers whose stage changes over
 * the bandwidth estimate (which follows every measured migration) plus a
 * latency. A move is *admissible* when its predicted gain exceeds what
 * the estimates' error alone fakes, it pays back within the horizon, and
 * the previous window found the same map paying (so a spike or noise that
 * proposes a map once moves nothing), or the gain is strong: at least
 * BL_RESTAGE_STRONG_GAIN of the step and far beyond the noise floor, which
 * a persistent slowdown shows in one window.
 * The kinds differ only in whether an admissible move is made:
 *
 * - static: never.
 * - proportional: when the relative gain also exceeds the threshold.
 * - bandit: discounted UCB over two arms, hold and repartition, rewarded
 *   by the best predicted stage time over the step time measured in the
 *   window that followed, with the migration's measured seconds spread
 *   over the horizon.
 * - rl: Q-learning over 18 states (gain × payback × noise) and the same
 *   two actions, ε-greedy, with that reward.
 *
 * So no kind makes a move that does not pay back by its own estimates.
 *
 * This file holds creation, the decision and the checkpoint walk; the
 * checks of a configuration and of a window are in restage_check.c, the
 * estimation in restage_fit.c, the bandit's and rl's learning in
 * restage_learn.c, and the struct they share in restage_impl.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "state.h"
#include "pipeline.h"
#include "restage_impl.h"

static const char *const action_names[BL_STAGE_ACTIONS] = {"hold", "repartition"};

/* A strong gain's margin over the noise floor, in its units (sigmas of a
 * slowest-of-S prediction). */
#define STRONG_SIGMAS 4.0
/* The windows after a fast move in which returning to the map it left
 * shows a transient, and the windows the fast path then rests. */
#define UNDO_WINDOWS      3
#define FAST_REST_WINDOWS 50
#define REST_DOUBLINGS    6 /* the rest is at most 50 · 64 windows */

static double *copy_doubles(const bl_part_allocator_t *a, const double *src, int n)
{
    double *d = bl_part_alloc(a, (size_t)n, sizeof *d);
    if (d != NULL) {
        if (src != NULL) {
            memcpy(d, src, (size_t)n * sizeof *d);
        } else {
            memset(d, 0, (size_t)n * sizeof *d);
        }
    }
    return d;
}

int bl_restage_create(const bl_restage_config_t *config, const bl_part_allocator_t *a,
                      bl_restage_t **out, char *err, size_t errlen)
{
    if (out == NULL || config == NULL) {
        return bl_part_fail(err, errlen, "NULL config or out");
    }
    *out = NULL;
    if (bl_part_restage_check_config(config, err, errlen) != 0) {
        return -1;
    }
    bl_restage_t *r = bl_part_alloc(a, 1, sizeof *r);
    if (r == NULL) {
        return bl_part_fail(err, errlen, "out of memory");
    }
    memset(r, 0, sizeof *r);
    if (a != NULL) {
        r->a = *a;
    }
    r->c = *config;
    int L = config->layers, S = config->stages;
    r->cost = copy_doubles(&r->a, config->anchor, L);
    r->anchor = copy_doubles(&r->a, config->anchor, L);
    r->layer_bytes = copy_doubles(&r->a, config->layer_bytes, L);
    r->edge_bytes = copy_doubles(&r->a, config->edge_bytes, L);
    r->boundary = copy_doubles(&r->a, NULL, L);
    r->seen = copy_doubles(&r->a, NULL, L * S);
    r->speed = copy_doubles(&r->a, NULL, S);
    r->stage_obs = bl_part_alloc(&r->a, (size_t)S, sizeof *r->stage_obs);
    r->best = bl_part_alloc(&r->a, (size_t)S + 1, sizeof *r->best);
    r->proposed = bl_part_alloc(&r->a, (size_t)S + 1, sizeof *r->proposed);
    r->changes = bl_part_alloc(&r->a, (size_t)S, sizeof *r->changes);
    r->changed = bl_part_alloc(&r->a, (size_t)S, sizeof *r->changed);
    r->last_first = bl_part_alloc(&r->a, (size_t)S + 1, sizeof *r->last_first);
    r->undo = bl_part_alloc(&r->a, (size_t)S + 1, sizeof *r->undo);
    if (r->undo == NULL || r->cost == NULL || r->anchor == NULL || r->layer_bytes == NULL ||
        r->edge_bytes == NULL || r->boundary == NULL || r->stage_obs == NULL || r->best == NULL ||
        r->proposed == NULL || r->changes == NULL || r->changed == NULL || r->last_first == NULL ||
        r->seen == NULL || r->speed == NULL ||
        bl_estimator_create(S, &config->estimator, &r->a, &r->est) != 0) {
        bl_restage_destroy(r);
        return bl_part_fail(err, errlen, "out of memory, or invalid estimator parameters");
    }
    /* Zeroed so that a saved state never holds stray bytes. */
    memset(r->proposed, 0, ((size_t)S + 1) * sizeof *r->proposed);
    memset(r->last_first, 0, ((size_t)S + 1) * sizeof *r->last_first);
    memset(r->undo, 0, ((size_t)S + 1) * sizeof *r->undo);
    r->c.anchor = r->anchor;
    r->c.layer_bytes = r->layer_bytes;
    r->c.edge_bytes = r->edge_bytes;
    r->bandwidth = config->bandwidth;
    for (int i = 0; i < L; i++) {
        r->anchor_total += config->anchor[i];
    }
    r->prev_action = -1;
    bl_part_restage_priors(r);
    r->rng = config->seed ^ 0x5bd1e9955bd1e995ULL;
    *out = r;
    return 0;
}

void bl_restage_destroy(bl_restage_t *r)
{
    if (r == NULL) {
        return;
    }
    bl_estimator_destroy(r->est);
    bl_part_free(&r->a, r->cost);
    bl_part_free(&r->a, r->anchor);
    bl_part_free(&r->a, r->layer_bytes);
    bl_part_free(&r->a, r->edge_bytes);
    bl_part_free(&r->a, r->boundary);
    bl_part_free(&r->a, r->seen);
    bl_part_free(&r->a, r->speed);
    bl_part_free(&r->a, r->stage_obs);
    bl_part_free(&r->a, r->best);
    bl_part_free(&r->a, r->proposed);
    bl_part_free(&r->a, r->changes);
    bl_part_free(&r->a, r->changed);
    bl_part_free(&r->a, r->last_first);
    bl_part_free(&r->a, r->undo);
    bl_part_allocator_t a = r->a;
    bl_part_free(&a, r);
}

/* The stage owning layer i under map first. */
static int stage_of(const int *first, int stages, int i)
{
    int s = 0;
    while (s + 1 < stages && first[s + 1] <= i) {
        s++;
    }
    return s;
}

double bl_restage_move_bytes(const bl_restage_t *r, const int *from, const int *to)
{
    double bytes = 0.0;
    int S = r->c.stages;
    for (int i = 0; i < r->c.layers; i++) {
        if (stage_of(from, S, i) != stage_of(to, S, i)) {
            bytes += r->layer_bytes[i];
        }
    }
    return bytes;
}

int bl_restage_decide(bl_restage_t *r, const bl_restage_obs_t *obs, int *next,
                      bl_restage_decision_t *decision)
{
    bl_restage_decision_t d = {.action = "hold", .payback_steps = INFINITY};
    if (r == NULL || obs == NULL || next == NULL) {
        d.action = "invalid argument: NULL";
        if (decision != NULL) {
            *decision = d;
        }
        return -1;
    }
    int L = r->c.layers, S = r->c.stages;
    size_t map_bytes = (size_t)(S + 1) * sizeof *next;
    const char *bad = bl_part_restage_check_window(r, obs);
    if (bad != NULL) {
        if (obs->first != NULL) {
            memmove(next, obs->first, map_bytes);
        }
        d.action = bad;
        if (decision != NULL) {
            *decision = d;
        }
        return -1;
    }
    d.speed_changes = bl_part_restage_learn(r, obs);
    for (int i = 0; i < L; i++) {
        r->boundary[i] = r->edge_bytes[i] / r->bandwidth;
    }
    bl_pipe_problem_t p = {
        .layers = L, .cost = r->cost, .stages = S, .speed = r->speed, .boundary = r->boundary};
    for (int s = 0; s < S; s++) {
        if (!(p.speed[s] > 0.0)) {
            p.speed = NULL; /* a stage not yet measured: compare maps by work */
            break;
        }
    }
    d.current_s = bl_pipe_partition_time(&p, obs->first);
    if (bl_pipe_partition_solve(&p, r->best, &r->a) != 0) {
        memcpy(r->best, obs->first, map_bytes);
    }
    d.best_s = bl_pipe_partition_time(&p, r->best);
    double rel_gain = d.current_s > 0.0 ? (d.current_s - d.best_s) / d.current_s : 0.0;
    double step_s = obs->step_s > 0.0 ? obs->step_s : d.current_s;
    d.gain_s = rel_gain * step_s;
    d.move_bytes = bl_restage_move_bytes(r, obs->first, r->best);
    int differs = memcmp(r->best, obs->first, map_bytes) != 0;
    d.move_s = differs ? d.move_bytes / r->bandwidth + r->c.latency_s : 0.0;
    d.payback_steps = d.gain_s > 0.0 ? d.move_s / d.gain_s : (differs ? INFINITY : 0.0);
    /* The relative error of a slowest-of-S prediction that the estimates'
     * noise alone shows (as for shard plans). */
    double z = S > 1 ? sqrt(2.0 * log((double)S)) : 0.0;
    double noise_floor = z * bl_part_estimator_error(r->est);
    int pays = rel_gain > noise_floor && d.gain_s > 0.0 && d.payback_steps <= r->c.horizon_steps &&
               differs;
    /* A move must be the best for two windows in a row: a spike, or the
     * maximum of noisy stage estimates, proposes a map once; a real change
     * proposes the same map again. A gain far beyond what noise can fake
     * (at least BL_RESTAGE_STRONG_GAIN of the step and STRONG_SIGMAS times
     * the noise floor) needs no second window: a stage that became 2×
     * slower moves at the first window's end, about rebalance_every steps
     * after it appeared, not two windows later. */
    pays = pays && r->outliers == 0; /* a window with outliers proposes nothing */
    /* Which strong changes persist is learned: a fast move that the next
     * windows undo (the best map is again the one it left) chased a
     * transient, such as a co-located job every few windows, so the fast
     * path rests, FAST_REST_WINDOWS windows after the first such move and
     * twice as long after each next one. */
    if (r->undo_windows > 0) {
        r->undo_windows--;
        if (differs && memcmp(r->best, r->undo, map_bytes) == 0) {
            const int doublings = r->reversals < REST_DOUBLINGS ? r->reversals : REST_DOUBLINGS;
            r->fast_rest = FAST_REST_WINDOWS << doublings;
            r->reversals++;
            r->undo_windows = 0;
        }
    }
    const int strong = r->fast_rest == 0 && rel_gain >= BL_RESTAGE_STRONG_GAIN &&
                       rel_gain > STRONG_SIGMAS * noise_floor;
    r->fast_rest -= r->fast_rest > 0;
    const int confirmed = r->proposed_valid && memcmp(r->proposed, r->best, map_bytes) == 0;
    int admissible = pays && (strong || confirmed);
    r->proposed_valid = pays && !admissible;
    if (r->proposed_valid) {
        memcpy(r->proposed, r->best, map_bytes);
    }
    /* The window just measured is what the previous action led to. */
    double reward =
        bl_part_restage_reward(d.best_s, obs->step_s + r->migrated_s / r->c.horizon_steps);
    r->migrated_s = 0.0;
    int act = BL_STAGE_HOLD;
    switch (r->c.kind) {
    case BL_POLICY_PROPORTIONAL:
        act = admissible && rel_gain > r->c.threshold ? BL_STAGE_REPARTITION : BL_STAGE_HOLD;
        break;
    case BL_POLICY_BANDIT:
        act = bl_part_restage_bandit_pick(r, reward, admissible);
        break;
    case BL_POLICY_RL:
        act = bl_part_restage_rl_pick(r, reward, rel_gain, d.payback_steps, admissible);
        break;
    default:
        break;
    }
    d.action = action_names[act];
    d.changed = act == BL_STAGE_REPARTITION;
    if (d.changed && !confirmed) {
        /* A fast move: watch whether the next windows undo it. */
        memcpy(r->undo, obs->first, map_bytes);
        r->undo_windows = UNDO_WINDOWS;
    }
    if (d.changed) {
        memcpy(next, r->best, map_bytes);
    } else {
        memmove(next, obs->first, map_bytes);
    }
    if (decision != NULL) {
        *decision = d;
    }
    return 0;
}

void bl_restage_migrated(bl_restage_t *r, double bytes, double seconds)
{
    if (r == NULL || !(bytes > 0.0) || !(seconds > 0.0) || !isfinite(seconds)) {
        return;
    }
    /* The latency is part of what was measured; bandwidth is what is left. */
    double transfer = seconds - r->c.latency_s;
    double bw = bytes / (transfer > 0.1 * seconds ? transfer : 0.1 * seconds);
    r->bandwidth += 0.5 * (bw - r->bandwidth);
    r->migrated_s += seconds;
}

const double *bl_restage_stage_speeds(const bl_restage_t *r)
{
    return r != NULL ? r->speed : NULL;
}

const double *bl_restage_layer_costs(const bl_restage_t *r)
{
    return r != NULL ? r->cost : NULL;
}

double bl_restage_bandwidth(const bl_restage_t *r)
{
    return r != NULL ? r->bandwidth : 0.0;
}

/* ---- Learned state, for checkpoints ---------------------------------- */

static int restage_walk(void *obj, bl_part_state_t *s)
{
    bl_restage_t *r = obj;
    int L = r->c.layers, S = r->c.stages;
    if (!bl_part_state_check(s, (int)r->c.kind) || !bl_part_state_check(s, L) ||
        !bl_part_state_check(s, S) || !bl_part_estimator_walk(r->est, s)) {
        return 0;
    }
    bl_part_state_field(s, r->cost, (size_t)L * sizeof *r->cost);
    bl_part_state_field(s, r->seen, (size_t)L * (size_t)S * sizeof *r->seen);
    bl_part_state_field(s, r->speed, (size_t)S * sizeof *r->speed);
    bl_part_state_field(s, &r->anchor_total, sizeof r->anchor_total);
    bl_part_state_field(s, r->proposed, ((size_t)S + 1) * sizeof *r->proposed);
    bl_part_state_field(s, r->last_first, ((size_t)S + 1) * sizeof *r->last_first);
    bl_part_state_field(s, &r->seen_map, sizeof r->seen_map);
    bl_part_state_field(s, &r->proposed_valid, sizeof r->proposed_valid);
    bl_part_state_field(s, r->undo, ((size_t)S + 1) * sizeof *r->undo);
    bl_part_state_field(s, &r->undo_windows, sizeof r->undo_windows);
    bl_part_state_field(s, &r->fast_rest, sizeof r->fast_rest);
    bl_part_state_field(s, &r->reversals, sizeof r->reversals);
    bl_part_state_field(s, &r->bandwidth, sizeof r->bandwidth);
    bl_part_state_field(s, &r->migrated_s, sizeof r->migrated_s);
    bl_part_state_field(s, &r->prev_action, sizeof r->prev_action);
    bl_part_state_field(s, &r->prev_state, sizeof r->prev_state);
    bl_part_state_field(s, r->arm_n, sizeof r->arm_n);
    bl_part_state_field(s, r->arm_s, sizeof r->arm_s);
    bl_part_state_field(s, r->q, sizeof r->q);
    bl_part_state_field(s, &r->rng, sizeof r->rng);
    bl_part_state_field(s, &r->t, sizeof r->t);
    return 1;
}

/* Indices in range, times and speeds finite and not negative. */
static int restage_valid(const void *obj)
{
    const bl_restage_t *r = obj;
    int L = r->c.layers, S = r->c.stages;
    int ok = r->prev_action >= -1 && r->prev_action < BL_STAGE_ACTIONS && r->t >= 0 &&
             (r->prev_action < 0 || (r->prev_state >= 0 && r->prev_state < BL_STAGE_RL_STATES)) &&
             isfinite(r->bandwidth) && r->bandwidth > 0.0 && isfinite(r->migrated_s) &&
             isfinite(r->anchor_total) && r->undo_windows >= 0 && r->undo_windows <= UNDO_WINDOWS &&
             r->fast_rest >= 0 && r->fast_rest <= FAST_REST_WINDOWS << REST_DOUBLINGS &&
             r->reversals >= 0;
    for (size_t k = 0; k < (size_t)L * (size_t)S && ok; k++) {
        ok = isfinite(r->seen[k]) && r->seen[k] >= 0.0;
    }
    for (int i = 0; i < L && ok; i++) {
        ok = isfinite(r->cost[i]) && r->cost[i] >= 0.0;
    }
    for (int k = 0; k < S && ok; k++) {
        ok = isfinite(r->speed[k]) && r->speed[k] >= 0.0;
    }
    for (int k = 0; k < BL_STAGE_ACTIONS && ok; k++) {
        ok = isfinite(r->arm_n[k]) && r->arm_n[k] >= 0.0 && isfinite(r->arm_s[k]);
    }
    for (int k = 0; k < BL_STAGE_RL_STATES * BL_STAGE_ACTIONS && ok; k++) {
        ok = isfinite(r->q[k]);
    }
    return ok && bl_part_estimator_valid(r->est);
}

size_t bl_restage_state_bytes(const bl_restage_t *r)
{
    return r == NULL ? 0 : bl_part_state_bytes(restage_walk, r);
}

void bl_restage_state_save(const bl_restage_t *r, void *buf)
{
    if (r != NULL && buf != NULL) {
        bl_part_state_save(restage_walk, r, buf);
    }
}

int bl_restage_state_load(bl_restage_t *r, const void *buf, size_t n, char *err, size_t errlen)
{
    if (r == NULL) {
        return bl_part_fail(err, errlen, "stage policy state: no policy");
    }
    char self[96];
    snprintf(self, sizeof self, "%s, %d layers on %d stages", bl_policy_name(r->c.kind),
             r->c.layers, r->c.stages);
    return bl_part_state_load(restage_walk, restage_valid, r, buf, n, &r->a, "stage policy state",
                              self, err, errlen);
}
