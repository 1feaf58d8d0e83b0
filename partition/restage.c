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
 * proposes a map once moves nothing).
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
 * So no kind makes a move that does not pay back by its own estimates. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "state.h"
#include "pipeline.h"
#include "restage.h"

enum { ACT_HOLD, ACT_REPARTITION, ACTIONS };
static const char *const action_names[ACTIONS] = {"hold", "repartition"};

#define BANDIT_GAMMA 0.9 /* discount per credited window: memory of ~10 pulls */
#define BANDIT_C     0.1 /* UCB bonus weight; rewards differ by percents */
#define REWARD_CAP   2.0

#define RL_STATES       18
#define RL_LR           0.2
#define RL_GAMMA        0.5
#define RL_EPS0         0.1
#define RL_EPS_TAU      50.0
#define RL_GAIN_HIGH    0.10 /* gain bins: below the threshold, to 10 %, above */
#define RL_PAYBACK_FAST 0.25 /* payback bins: within a quarter of the horizon, or later */
#define RL_NOISE_LOW    0.02
#define RL_NOISE_HIGH   0.08

struct bl_restage {
    bl_part_allocator_t a;
    bl_restage_config_t c; /* arrays below are the copies */
    bl_estimator_t *est;
    double *cost;  /* (L) learnt layer costs, anchor units */
    double *seen;  /* (L × S) EMA of layer i's seconds per step on stage s, 0: none */
    double *speed; /* (S) fitted stage speeds, anchor units per second */
    double anchor_total;
    double *boundary; /* (L) seconds a cut before layer i adds to each side */
    double *anchor, *layer_bytes, *edge_bytes;
    bl_rank_obs_t *stage_obs;   /* (S) */
    int *best;                  /* (S + 1) */
    int *proposed;              /* (S + 1) the map a window found paying, to confirm */
    bl_speed_change_t *changes; /* (S) the window's detected changes */
    int *changed;               /* (S) 1: stage s changed this window */
    int outliers;               /* stages whose window was left out as outliers */
    int *last_first;            /* (S + 1) the map of the previous window */
    int seen_map;
    int proposed_valid;
    double bandwidth;
    double migrated_s;     /* measured migration seconds since the last decision */
    int prev_action;       /* bandit and rl: the action to credit (-1: none) */
    int prev_state;        /* rl */
    double arm_n[ACTIONS]; /* bandit: discounted pulls */
    double arm_s[ACTIONS]; /* bandit: discounted reward sums */
    double q[RL_STATES * ACTIONS];
    uint64_t rng;
    long t; /* rl decisions so far */
};

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

static int check_config(const bl_restage_config_t *c, char *err, size_t errlen)
{
    if ((int)c->kind < 0 || (int)c->kind >= (int)BL_POLICY_COUNT) {
        return bl_part_fail(err, errlen, "kind %d is not a policy", (int)c->kind);
    }
    if (c->stages < 1 || c->layers < c->stages) {
        return bl_part_fail(err, errlen, "%d stages over %d layers: need 1 <= stages <= layers",
                            c->stages, c->layers);
    }
    if (c->anchor == NULL || c->layer_bytes == NULL) {
        return bl_part_fail(err, errlen, "anchor and layer_bytes are required");
    }
    for (int i = 0; i < c->layers; i++) {
        if (!(c->anchor[i] >= 0.0) || !isfinite(c->anchor[i])) {
            return bl_part_fail(err, errlen, "anchor[%d] = %g must be finite and >= 0", i,
                                c->anchor[i]);
        }
        if (!(c->layer_bytes[i] >= 0.0) || !isfinite(c->layer_bytes[i])) {
            return bl_part_fail(err, errlen, "layer_bytes[%d] = %g must be finite and >= 0", i,
                                c->layer_bytes[i]);
        }
        if (c->edge_bytes != NULL && (!(c->edge_bytes[i] >= 0.0) || !isfinite(c->edge_bytes[i]))) {
            return bl_part_fail(err, errlen, "edge_bytes[%d] = %g must be finite and >= 0", i,
                                c->edge_bytes[i]);
        }
    }
    if (!(c->bandwidth > 0.0) || !isfinite(c->bandwidth)) {
        return bl_part_fail(err, errlen, "bandwidth %g must be positive and finite", c->bandwidth);
    }
    if (!(c->latency_s >= 0.0) || !isfinite(c->latency_s)) {
        return bl_part_fail(err, errlen, "latency %g must be finite and >= 0", c->latency_s);
    }
    if (!(c->horizon_steps > 0.0) || !isfinite(c->horizon_steps)) {
        return bl_part_fail(err, errlen, "horizon %g steps must be positive and finite",
                            c->horizon_steps);
    }
    if (!(c->threshold >= 0.0) || !(c->threshold < 1.0)) {
        return bl_part_fail(err, errlen, "threshold %g must be in [0, 1)", c->threshold);
    }
    return 0;
}

int bl_restage_create(const bl_restage_config_t *config, const bl_part_allocator_t *a,
                      bl_restage_t **out, char *err, size_t errlen)
{
    if (out == NULL || config == NULL) {
        return bl_part_fail(err, errlen, "NULL config or out");
    }
    *out = NULL;
    if (check_config(config, err, errlen) != 0) {
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
    if (r->cost == NULL || r->anchor == NULL || r->layer_bytes == NULL || r->edge_bytes == NULL ||
        r->boundary == NULL || r->stage_obs == NULL || r->best == NULL || r->proposed == NULL ||
        r->changes == NULL || r->changed == NULL || r->last_first == NULL || r->seen == NULL ||
        r->speed == NULL || bl_estimator_create(S, &config->estimator, &r->a, &r->est) != 0) {
        bl_restage_destroy(r);
        return bl_part_fail(err, errlen, "out of memory, or invalid estimator parameters");
    }
    /* Zeroed so that a saved state never holds stray bytes. */
    memset(r->proposed, 0, ((size_t)S + 1) * sizeof *r->proposed);
    memset(r->last_first, 0, ((size_t)S + 1) * sizeof *r->last_first);
    r->c.anchor = r->anchor;
    r->c.layer_bytes = r->layer_bytes;
    r->c.edge_bytes = r->edge_bytes;
    r->bandwidth = config->bandwidth;
    for (int i = 0; i < L; i++) {
        r->anchor_total += config->anchor[i];
    }
    r->prev_action = -1;
    /* One pseudo-pull each; repartition looks better until measured, so an
     * admissible move is tried first. */
    r->arm_n[ACT_HOLD] = r->arm_n[ACT_REPARTITION] = 1.0;
    r->arm_s[ACT_HOLD] = 0.9;
    r->arm_s[ACT_REPARTITION] = 1.0;
    for (int s = 0; s < RL_STATES; s++) {
        r->q[s * ACTIONS + ACT_HOLD] = 1.8; /* reward ~0.9 / (1 − γ) */
        r->q[s * ACTIONS + ACT_REPARTITION] = 2.0;
    }
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

static const char *check_obs(const bl_restage_t *r, const bl_restage_obs_t *o)
{
    int L = r->c.layers, S = r->c.stages;
    if (o->first == NULL || o->layer_s == NULL) {
        return "invalid observation: NULL map or layer times";
    }
    if (o->first[0] != 0 || o->first[S] != L) {
        return "invalid observation: the map does not cover the layers";
    }
    for (int s = 0; s < S; s++) {
        if (o->first[s + 1] <= o->first[s]) {
            return "invalid observation: a stage of the map is empty or out of order";
        }
    }
    for (int i = 0; i < L; i++) {
        if (!(o->layer_s[i] >= 0.0) || !isfinite(o->layer_s[i])) {
            return "invalid observation: a layer time is negative or not finite";
        }
    }
    if (!(o->step_s >= 0.0) || !isfinite(o->step_s)) {
        return "invalid observation: the step time is negative or not finite";
    }
    return NULL;
}

/* The least relative noise a window's stage time is judged by. */
#define NOISE_FLOOR 0.02

#define FIT_ROUNDS 30 /* alternating rounds; a few suffice, the fit starts from the last one */

/* Alternating least squares of t_is = c_i / v_s over the seen table. */
static void fit(bl_restage_t *r)
{
    int L = r->c.layers, S = r->c.stages;
    for (int round = 0; round < FIT_ROUNDS; round++) {
        for (int s = 0; s < S; s++) {
            double work = 0.0, secs = 0.0;
            for (int i = 0; i < L; i++) {
                if (r->seen[i * S + s] > 0.0) {
                    work += r->cost[i];
                    secs += r->seen[i * S + s];
                }
            }
            r->speed[s] = secs > 0.0 && work > 0.0 ? work / secs : 0.0;
        }
        double total = 0.0;
        for (int i = 0; i < L; i++) {
            double sum = 0.0;
            int n = 0;
            for (int s = 0; s < S; s++) {
                if (r->seen[i * S + s] > 0.0 && r->speed[s] > 0.0) {
                    sum += r->seen[i * S + s] * r->speed[s];
                    n++;
                }
            }
            if (n > 0) {
                r->cost[i] = sum / n;
            }
            total += r->cost[i];
        }
        /* The anchors fix the units (the fit alone leaves a common scale free). */
        double scale = total > 0.0 ? r->anchor_total / total : 1.0;
        for (int i = 0; i < L; i++) {
            r->cost[i] *= scale;
        }
    }
}

/* Feeds the window: change detection on the stages' speeds, the seen
 * table, then the fit. Returns the estimator's detected changes. */
static int learn(bl_restage_t *r, const bl_restage_obs_t *o)
{
    int L = r->c.layers, S = r->c.stages;
    for (int s = 0; s < S; s++) {
        double work = 0.0, secs = 0.0;
        for (int i = o->first[s]; i < o->first[s + 1]; i++) {
            work += r->cost[i];
            secs += o->layer_s[i];
        }
        /* A stage with no measured time or no known work says nothing. */
        int useful = secs > 0.0 && work > 0.0;
        r->stage_obs[s] =
            (bl_rank_obs_t){.samples = useful ? work : 0.0, .compute_s = useful ? secs : 0.0};
    }
    int n = bl_estimator_update(r->est, r->stage_obs, r->changes, S);
    for (int s = 0; s < S; s++) {
        r->changed[s] = 0;
    }
    for (int k = 0; k < n && k < S; k++) {
        /* What other layers measured on a changed stage is out of date. */
        r->changed[r->changes[k].rank] = 1;
        for (int i = 0; i < L; i++) {
            r->seen[i * S + r->changes[k].rank] = 0.0;
        }
    }
    double alpha = r->c.estimator.alpha;
    double band = r->c.estimator.change_sigma * fmax(bl_part_estimator_noise(r->est), NOISE_FLOOR);
    r->outliers = 0;
    for (int s = 0; s < S; s++) {
        /* A stage far from what the fit predicts, without a confirmed
         * change, is an outlier (a spike): its window is left out, as
         * the estimator leaves such windows out of its speeds. */
        double expected = 0.0, observed = 0.0;
        for (int i = o->first[s]; i < o->first[s + 1]; i++) {
            expected += r->speed[s] > 0.0 ? r->cost[i] / r->speed[s] : 0.0;
            observed += o->layer_s[i];
        }
        /* A stage with new layers has nothing to be judged against yet. */
        int same_layers = r->seen_map && o->first[s] == r->last_first[s] &&
                          o->first[s + 1] == r->last_first[s + 1];
        if (same_layers && !r->changed[s] && expected > 0.0 &&
            fabs(observed / expected - 1.0) > band) {
            r->outliers++;
            continue;
        }
        for (int i = o->first[s]; i < o->first[s + 1]; i++) {
            double *t = &r->seen[i * S + s];
            *t = *t > 0.0 ? *t + alpha * (o->layer_s[i] - *t) : o->layer_s[i];
        }
    }
    fit(r);
    memcpy(r->last_first, o->first, (size_t)(S + 1) * sizeof *o->first);
    r->seen_map = 1;
    return n;
}

static double reward_of(double best_s, double step_s)
{
    double x = step_s > 0.0 ? best_s / step_s : 0.0;
    return x < REWARD_CAP ? x : REWARD_CAP;
}

/* Discounted UCB over hold and repartition (Garivier & Moulines). */
static int bandit_pick(bl_restage_t *r, double reward, int admissible)
{
    if (r->prev_action >= 0) {
        for (int k = 0; k < ACTIONS; k++) {
            r->arm_n[k] *= BANDIT_GAMMA;
            r->arm_s[k] *= BANDIT_GAMMA;
        }
        r->arm_n[r->prev_action] += 1.0;
        r->arm_s[r->prev_action] += reward;
    }
    r->prev_action = -1;
    if (!admissible) {
        return ACT_HOLD; /* nothing to choose */
    }
    static const int order[ACTIONS] = {ACT_REPARTITION, ACT_HOLD}; /* ties: repartition */
    int pick = bl_part_ucb_pick(r->arm_n, r->arm_s, order, ACTIONS, BANDIT_C);
    r->prev_action = pick;
    return pick;
}

static int rl_state(const bl_restage_t *r, double rel_gain, double payback)
{
    int g = rel_gain < r->c.threshold ? 0 : (rel_gain <= RL_GAIN_HIGH ? 1 : 2);
    int p = payback <= RL_PAYBACK_FAST * r->c.horizon_steps ? 0 : 1;
    double noise = bl_part_estimator_noise(r->est);
    int n = noise < RL_NOISE_LOW ? 0 : (noise <= RL_NOISE_HIGH ? 1 : 2);
    return (g * 2 + p) * 3 + n;
}

/* Q-learning: credit the previous (state, action), then ε-greedy among
 * the admissible actions. */
static int rl_pick(bl_restage_t *r, double reward, double rel_gain, double payback, int admissible)
{
    int s = rl_state(r, rel_gain, payback);
    double *row = &r->q[s * ACTIONS];
    if (r->prev_action >= 0) {
        double next_best = row[0] > row[1] ? row[0] : row[1];
        double *q = &r->q[r->prev_state * ACTIONS + r->prev_action];
        *q += RL_LR * (reward + RL_GAMMA * next_best - *q);
    }
    double eps = RL_EPS0 / (1.0 + (double)r->t / RL_EPS_TAU);
    r->t++;
    double u = (double)(bl_part_next_random(&r->rng) >> 11) * 0x1.0p-53;
    int coin = (int)(bl_part_next_random(&r->rng) & 1u);
    int a = row[ACT_REPARTITION] > row[ACT_HOLD] ? ACT_REPARTITION : ACT_HOLD;
    if (u < eps) {
        a = coin;
    }
    if (!admissible) {
        a = ACT_HOLD;
    }
    r->prev_state = s;
    r->prev_action = a;
    return a;
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
    const char *bad = check_obs(r, obs);
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
    d.speed_changes = learn(r, obs);
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
     * proposes the same map again. */
    pays = pays && r->outliers == 0; /* a window with outliers proposes nothing */
    int admissible = pays && r->proposed_valid && memcmp(r->proposed, r->best, map_bytes) == 0;
    r->proposed_valid = pays && !admissible;
    if (r->proposed_valid) {
        memcpy(r->proposed, r->best, map_bytes);
    }
    /* The window just measured is what the previous action led to. */
    double reward = reward_of(d.best_s, obs->step_s + r->migrated_s / r->c.horizon_steps);
    r->migrated_s = 0.0;
    int act = ACT_HOLD;
    switch (r->c.kind) {
    case BL_POLICY_PROPORTIONAL:
        act = admissible && rel_gain > r->c.threshold ? ACT_REPARTITION : ACT_HOLD;
        break;
    case BL_POLICY_BANDIT:
        act = bandit_pick(r, reward, admissible);
        break;
    case BL_POLICY_RL:
        act = rl_pick(r, reward, rel_gain, d.payback_steps, admissible);
        break;
    default:
        break;
    }
    d.action = action_names[act];
    d.changed = act == ACT_REPARTITION;
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
    int ok = r->prev_action >= -1 && r->prev_action < ACTIONS && r->t >= 0 &&
             (r->prev_action < 0 || (r->prev_state >= 0 && r->prev_state < RL_STATES)) &&
             isfinite(r->bandwidth) && r->bandwidth > 0.0 && isfinite(r->migrated_s) &&
             isfinite(r->anchor_total);
    for (size_t k = 0; k < (size_t)L * (size_t)S && ok; k++) {
        ok = isfinite(r->seen[k]) && r->seen[k] >= 0.0;
    }
    for (int i = 0; i < L && ok; i++) {
        ok = isfinite(r->cost[i]) && r->cost[i] >= 0.0;
    }
    for (int k = 0; k < S && ok; k++) {
        ok = isfinite(r->speed[k]) && r->speed[k] >= 0.0;
    }
    for (int k = 0; k < ACTIONS && ok; k++) {
        ok = isfinite(r->arm_n[k]) && r->arm_n[k] >= 0.0 && isfinite(r->arm_s[k]);
    }
    for (int k = 0; k < RL_STATES * ACTIONS && ok; k++) {
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
