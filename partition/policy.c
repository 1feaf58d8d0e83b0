/* The shard-rebalancing policies: static, proportional, bandit and rl.
 *
 * Every decision starts the same way: the window's observations update
 * the estimator, the proportional plan of the estimated speeds is the
 * target, and its predicted step time is the estimated optimum. The kinds
 * differ in how far they move toward the target:
 *
 * - static: never; the even split.
 * - proportional: all the way, when the target's predicted step time beats
 *   the current plan's by more than the dead-band.
 * - bandit: one of four arms — hold, or move 0.25, 0.5 or 1.0 of the way
 *   from the current plan to the target — by discounted UCB1, rewarded by
 *   optimal_step_s / the step time measured in the window that followed.
 * - rl: tabular Q-learning over 27 states (imbalance × trend × noise) and
 *   five actions (the four arms and "even"), ε-greedy with a seeded
 *   generator.
 *
 * The adaptive kinds share the dead-band: a move is made only when the
 * target improves the predicted step time by more than the dead-band plus
 * the improvement the estimates' own error fakes (see move_threshold) —
 * so a plan that close to the estimated optimum is left alone and noise
 * does not churn shards — and always when the current plan breaks the
 * min/max bounds. Shard moves are free (no state moves with a
 * sample), so nothing is charged for them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "state.h"
#include "partition.h"
#include "policy.h"

/* ---- Actions ----------------------------------------------------------- */

enum { ACT_HOLD, ACT_MOVE_25, ACT_MOVE_50, ACT_MOVE_100, ACT_EVEN };

static const char *const action_names[BL_RL_ACTIONS] = {"hold", "move 0.25", "move 0.5", "move 1.0",
                                                        "even"};
/* The fraction of the way to the target each action moves (even: n/a). */
static const double action_alpha[BL_RL_ACTIONS] = {0.0, 0.25, 0.5, 1.0, 0.0};

/* ---- Bandit constants -------------------------------------------------- */

#define BANDIT_ARMS 4 /* hold, move 0.25, move 0.5, move 1.0 (action indices) */
/* Discount per credited window: the arms' statistics have an effective
 * memory of 1/(1 − 0.9) = 10 pulls, so a drift in which arm is best is
 * followed within about ten decisions. */
#define BANDIT_GAMMA 0.9
/* Exploration weight of the UCB bonus. Rewards live in (0, 1] and the
 * differences that matter are a few percent to tens of percent, so the
 * textbook sqrt(2) would spend most windows exploring bad arms; with 0.1
 * an arm left alone is retried after several credited windows, as the
 * discount shrinks its count. */
#define BANDIT_C 0.1
/* Rewards are capped here: an estimate that is briefly off (or a window
 * measured far below the estimated optimum) must not make one arm look
 * unbeatable. */
#define REWARD_CAP 2.0

/* Each arm starts with one pseudo-pull. Before any reward is measured its
 * value is 1 + offset; at the first reward r every pseudo-pull is rebased
 * to r + offset, because rewards carry the step's communication share
 * (optimal_step_s is compute only), which no prior can know. The offsets
 * prefer larger moves: a cold start goes straight to the target, and a
 * smaller move is tried only when the big one has earned clearly less
 * (by more than BANDIT_C's bonus gap after one pull, about 0.04). */
static const double bandit_offset[BANDIT_ARMS] = {-0.3, -0.2, -0.1, 0.0};
/* UCB ties go to the larger move (the arm order searched). */
static const int bandit_order[BANDIT_ARMS] = {ACT_MOVE_100, ACT_MOVE_50, ACT_MOVE_25, ACT_HOLD};

/* ---- RL constants ------------------------------------------------------ */

#define RL_LR 0.2 /* learning rate: a Q value averages ~5 recent rewards */
/* Discount: a plan's effect shows in the next window, and later windows
 * depend mostly on later decisions, so a short horizon (≈ 2 windows)
 * learns fast and values stay near reward / (1 − 0.5). */
#define RL_GAMMA 0.5
/* ε-greedy: ε_t = RL_EPS0 / (1 + t / RL_EPS_TAU) over decisions t, 10% at
 * first and 2% after 200 windows; drawn only in windows that want a move
 * (see rl_decide), so a settled plan is never disturbed by exploration. */
#define RL_EPS0    0.1
#define RL_EPS_TAU 50.0
/* State bins. Imbalance: predicted step of the current plan over the
 * estimated optimum, minus 1. Trend: measured step time over the previous
 * window's. Noise: the estimator's mean relative sigma of a window. */
#define RL_IMB_LOW    0.02
#define RL_IMB_HIGH   0.10
#define RL_TREND_BAND 0.02
#define RL_NOISE_LOW  0.02
#define RL_NOISE_HIGH 0.08

/* ---- The policy -------------------------------------------------------- */

struct bl_policy {
    bl_part_allocator_t a;
    bl_policy_kind_t kind;
    int ranks;
    long batch;
    double deadband;
    long *lo; /* copies of the bounds, or NULL */
    long *hi;
    bl_estimator_t *est;
    double *speed; /* estimated speeds, unknown ones the mean (samples/s) */
    double *rem;   /* rounding scratch */
    long *target;  /* the proportional plan of the estimates */
    long *cand;    /* the plan being decided */
    long *even;    /* the even split (within the bounds) */
    /* bandit: discounted pulls and reward sums per arm; the arm whose
     * window is measured next (-1: none) */
    double arm_n[BANDIT_ARMS];
    double arm_s[BANDIT_ARMS];
    int prev_arm;
    int rebased; /* bandit: the priors are on the measured reward scale */
    /* rl */
    double *q; /* BL_RL_STATES × BL_RL_ACTIONS, row-major by state */
    int prev_state;
    int prev_action; /* -1: none to credit */
    double prev_step_s;
    int q_default; /* rl: the default table, still to rebase at the first reward */
    uint64_t rng;  /* splitmix64 state */
    long t;        /* decisions made, for ε */
};

const char *bl_policy_name(bl_policy_kind_t kind)
{
    static const char *const names[BL_POLICY_COUNT] = {"static", "proportional", "bandit", "rl"};
    return (int)kind >= 0 && kind < BL_POLICY_COUNT ? names[kind] : NULL;
}

int bl_policy_parse(const char *name)
{
    if (name == NULL) {
        return -1;
    }
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        if (strcmp(name, bl_policy_name((bl_policy_kind_t)k)) == 0) {
            return k;
        }
    }
    return -1;
}

/* Checks everything but memory; names the field at fault. */
static int check_config(const bl_policy_config_t *c, char *err, size_t errlen)
{
    if ((int)c->kind < 0 || c->kind >= BL_POLICY_COUNT) {
        return bl_part_fail(err, errlen, "kind %d is not a policy kind (0 .. %d)", (int)c->kind,
                            BL_POLICY_COUNT - 1);
    }
    if (c->ranks < 1) {
        return bl_part_fail(err, errlen, "ranks is %d; it must be at least 1", c->ranks);
    }
    if (c->batch < 0) {
        return bl_part_fail(err, errlen, "batch is %ld; it must not be negative", c->batch);
    }
    if (!(c->deadband >= 0.0) || !isfinite(c->deadband)) {
        return bl_part_fail(err, errlen, "deadband is %g; it must be finite and >= 0", c->deadband);
    }
    const bl_estimator_params_t *e = &c->estimator;
    if (!(e->alpha > 0.0 && e->alpha <= 1.0)) {
        return bl_part_fail(err, errlen, "estimator.alpha is %g; it must be in (0, 1]", e->alpha);
    }
    if (!(e->change_sigma > 0.0) || !isfinite(e->change_sigma)) {
        return bl_part_fail(err, errlen, "estimator.change_sigma is %g; it must be finite and > 0",
                            e->change_sigma);
    }
    if (e->change_windows < 1) {
        return bl_part_fail(err, errlen, "estimator.change_windows is %d; it must be at least 1",
                            e->change_windows);
    }
    long sum_lo = 0, sum_hi = 0;
    for (int r = 0; r < c->ranks; r++) {
        long lo = c->min_shard != NULL ? c->min_shard[r] : 0;
        long hi = c->max_shard != NULL ? c->max_shard[r] : c->batch;
        if (lo < 0) {
            return bl_part_fail(err, errlen, "min_shard[%d] is %ld; it must not be negative", r,
                                lo);
        }
        if (hi < lo) {
            return bl_part_fail(err, errlen, "max_shard[%d] is %ld, below min_shard[%d] = %ld", r,
                                hi, r, lo);
        }
        if (lo > c->batch - sum_lo) {
            return bl_part_fail(err, errlen, "min_shard: the minimums exceed batch %ld by rank %d",
                                c->batch, r);
        }
        sum_lo += lo;
        sum_hi += hi < c->batch ? hi : c->batch; /* clamped: no overflow */
    }
    if (sum_hi < c->batch) {
        return bl_part_fail(err, errlen, "max_shard: the maximums sum to %ld, less than batch %ld",
                            sum_hi, c->batch);
    }
    if (c->kind == BL_POLICY_RL && c->q_init != NULL) {
        for (int i = 0; i < BL_RL_STATES * BL_RL_ACTIONS; i++) {
            if (!isfinite(c->q_init[i])) {
                return bl_part_fail(err, errlen, "q_init[%d] is %g; Q values must be finite", i,
                                    c->q_init[i]);
            }
        }
    }
    return 0;
}

/* The default Q-table for reward r: every value starts at r / (1 −
 * RL_GAMMA), the value of earning r forever, plus an offset per action.
 * Until a reward is measured r = 1 (the estimated optimum); the first
 * measured reward rebases the table (rewards carry the communication
 * share, which no prior can know), so the offsets alone order the first
 * tries and learning moves values from there. When the plan is
 * imbalanced (≥ 2%): move 1.0 first (a cold start reaches the target in
 * one window), then 0.5, 0.25, hold. When it is balanced: hold first,
 * then the small moves. "even" comes last everywhere: it throws the
 * estimates away and is for when they mislead. */
static void default_q(double *q, double r)
{
    const double v = r / (1.0 - RL_GAMMA);
    static const double balanced[BL_RL_ACTIONS] = {0.0, -0.05, -0.1, -0.15, -0.4};
    static const double imbalanced[BL_RL_ACTIONS] = {-0.2, -0.1, -0.05, 0.0, -0.4};
    for (int s = 0; s < BL_RL_STATES; s++) {
        const double *off = s / 9 == 0 ? balanced : imbalanced; /* imbalance bin is s / 9 */
        for (int a = 0; a < BL_RL_ACTIONS; a++) {
            q[s * BL_RL_ACTIONS + a] = v + off[a];
        }
    }
}

static int bounds_ok(const bl_policy_t *p, const long *plan)
{
    for (int r = 0; r < p->ranks; r++) {
        if ((p->lo != NULL && plan[r] < p->lo[r]) || (p->hi != NULL && plan[r] > p->hi[r])) {
            return 0;
        }
    }
    return 1;
}

static long *copy_longs(const bl_part_allocator_t *a, const long *src, int n, int *failed)
{
    if (src == NULL) {
        return NULL;
    }
    long *dst = bl_part_alloc(a, (size_t)n, sizeof *dst);
    if (dst == NULL) {
        *failed = 1;
        return NULL;
    }
    memcpy(dst, src, (size_t)n * sizeof *dst);
    return dst;
}

int bl_policy_create(const bl_policy_config_t *config, const bl_part_allocator_t *a,
                     bl_policy_t **out, char *err, size_t errlen)
{
    if (out == NULL) {
        return bl_part_fail(err, errlen, "out must not be NULL");
    }
    *out = NULL;
    if (config == NULL) {
        return bl_part_fail(err, errlen, "config must not be NULL");
    }
    if (check_config(config, err, errlen) != 0) {
        return -1;
    }
    const int n = config->ranks;
    bl_policy_t *p = bl_part_alloc(a, 1, sizeof *p);
    if (p == NULL) {
        return bl_part_fail(err, errlen, "out of memory for the policy");
    }
    memset(p, 0, sizeof *p);
    if (a != NULL) {
        p->a = *a;
    }
    p->kind = config->kind;
    p->ranks = n;
    p->batch = config->batch;
    p->deadband = config->deadband;
    p->prev_arm = -1;
    p->prev_action = -1;
    p->rng = config->seed;
    int failed = 0;
    p->lo = copy_longs(a, config->min_shard, n, &failed);
    p->hi = copy_longs(a, config->max_shard, n, &failed);
    p->speed = bl_part_alloc(a, (size_t)n, sizeof *p->speed);
    p->rem = bl_part_alloc(a, (size_t)n, sizeof *p->rem);
    p->target = bl_part_alloc(a, (size_t)n, sizeof *p->target);
    p->cand = bl_part_alloc(a, (size_t)n, sizeof *p->cand);
    p->even = bl_part_alloc(a, (size_t)n, sizeof *p->even);
    if (config->kind == BL_POLICY_RL) {
        p->q = bl_part_alloc(a, BL_RL_STATES * BL_RL_ACTIONS, sizeof *p->q);
        failed |= p->q == NULL;
    }
    if (failed || p->speed == NULL || p->rem == NULL || p->target == NULL || p->cand == NULL ||
        p->even == NULL || bl_estimator_create(n, &config->estimator, a, &p->est) != 0) {
        bl_part_fail(err, errlen, "out of memory for a policy of %d ranks", n);
        goto fail;
    }
    /* The even split; under bounds it breaks, the equal-speed plan within
     * them (which is the even split wherever the bounds allow it). */
    bl_split_even(p->batch, n, p->even);
    if (!bounds_ok(p, p->even)) {
        for (int r = 0; r < n; r++) {
            p->speed[r] = 1.0;
        }
        bl_part_plan(p->batch, n, p->speed, p->lo, p->hi, p->even, p->rem);
    }
    for (int i = 0; i < BANDIT_ARMS; i++) {
        p->arm_n[i] = 1.0;
        p->arm_s[i] = 1.0 + bandit_offset[i];
    }
    if (p->q != NULL) {
        if (config->q_init != NULL) {
            memcpy(p->q, config->q_init, BL_RL_STATES * BL_RL_ACTIONS * sizeof *p->q);
        } else {
            default_q(p->q, 1.0);
            p->q_default = 1;
        }
    }
    *out = p;
    return 0;
fail:
    bl_policy_destroy(p);
    return -1;
}

void bl_policy_destroy(bl_policy_t *p)
{
    if (p == NULL) {
        return;
    }
    bl_part_allocator_t a = p->a;
    bl_estimator_destroy(p->est);
    bl_part_free(&a, p->lo);
    bl_part_free(&a, p->hi);
    bl_part_free(&a, p->speed);
    bl_part_free(&a, p->rem);
    bl_part_free(&a, p->target);
    bl_part_free(&a, p->cand);
    bl_part_free(&a, p->even);
    bl_part_free(&a, p->q);
    bl_part_free(&a, p);
}

const bl_estimator_t *bl_policy_estimator(const bl_policy_t *p)
{
    return p != NULL ? p->est : NULL;
}

const double *bl_policy_q_table(const bl_policy_t *p)
{
    return p != NULL && p->kind == BL_POLICY_RL ? p->q : NULL;
}

/* ---- Deciding ---------------------------------------------------------- */

/* What is wrong with the inputs, as a static string naming the field, or
 * NULL when they are fine. */
static const char *check_inputs(const bl_policy_t *p, const bl_rank_obs_t *obs, double step_s,
                                const long *current)
{
    if (!(step_s >= 0.0) || !isfinite(step_s)) {
        return "invalid step_s: negative or not finite";
    }
    for (int r = 0; r < p->ranks; r++) {
        const bl_rank_obs_t *o = &obs[r];
        if (!(o->samples >= 0.0) || !isfinite(o->samples)) {
            return "invalid obs.samples: negative or not finite";
        }
        if (!(o->compute_s >= 0.0) || !isfinite(o->compute_s)) {
            return "invalid obs.compute_s: negative or not finite";
        }
        if (!(o->comm_s >= 0.0) || !isfinite(o->comm_s)) {
            return "invalid obs.comm_s: negative or not finite";
        }
        if (!(o->wait_s >= 0.0) || !isfinite(o->wait_s)) {
            return "invalid obs.wait_s: negative or not finite";
        }
    }
    long sum = 0;
    for (int r = 0; r < p->ranks; r++) {
        if (current[r] < 0 || current[r] > p->batch) {
            return "invalid current: a shard is negative or above batch";
        }
        sum += current[r];
    }
    if (sum != p->batch) {
        return "invalid current: the shards do not sum to batch";
    }
    return NULL;
}

/* Estimated speeds with the unknown ones (0) at the mean of the known,
 * or all 1 when none is known (the even split is then the target). */
static void fill_speeds(bl_policy_t *p)
{
    const double *s = bl_estimator_speeds(p->est);
    double sum = 0.0;
    int known = 0;
    for (int r = 0; r < p->ranks; r++) {
        if (s[r] > 0.0) {
            sum += s[r] / (double)p->ranks;
            known++;
        }
    }
    double mean = known > 0 ? sum * ((double)p->ranks / (double)known) : 1.0;
    for (int r = 0; r < p->ranks; r++) {
        p->speed[r] = s[r] > 0.0 ? s[r] : mean;
    }
}

/* current + alpha·(target − current), per rank: exact in double for alpha
 * a multiple of 1/4, so the quotas sum to the batch exactly. */
typedef struct blend_ctx {
    const long *current;
    const long *target;
    double alpha;
} blend_ctx_t;

static double blend_quota(const void *vctx, int i)
{
    const blend_ctx_t *c = vctx;
    return (double)c->current[i] + c->alpha * (double)(c->target[i] - c->current[i]);
}

/* The least relative improvement worth a move: the dead-band, plus what
 * the estimates' error alone shows. The current plan's predicted step is a
 * max over P ranks, so relative errors of about ε in the speeds raise it
 * by about sqrt(2 ln P)·ε above the estimated optimum even when the plan
 * is right (the expected maximum of P normal errors). Exact estimates
 * (noise-free input, after a few windows) leave the dead-band alone. */
static double move_threshold(const bl_policy_t *p)
{
    double z = p->ranks > 1 ? sqrt(2.0 * log((double)p->ranks)) : 0.0;
    return p->deadband + z * bl_part_estimator_error(p->est);
}

static double reward_of(double optimal_s, double step_s)
{
    double r = optimal_s / step_s;
    return r < REWARD_CAP ? r : REWARD_CAP;
}

/* Discounted UCB1 (Garivier & Moulines): the previous arm is credited
 * with the window that followed it, every arm's statistics decay by
 * BANDIT_GAMMA at each credit, and the next arm maximises mean + C ·
 * sqrt(ln Σn / n). Decays only when an arm is credited, so long calm
 * stretches (no decision needed) keep what was learnt. */
static int bandit_decide(bl_policy_t *p, double step_s, double optimal_s, int must, int want)
{
    if (p->prev_arm >= 0 && step_s > 0.0) {
        double r = reward_of(optimal_s, step_s);
        if (!p->rebased) {
            for (int i = 0; i < BANDIT_ARMS; i++) {
                p->arm_s[i] = p->arm_n[i] * (r + bandit_offset[i]);
            }
            p->rebased = 1;
        }
        for (int i = 0; i < BANDIT_ARMS; i++) {
            p->arm_n[i] *= BANDIT_GAMMA;
            p->arm_s[i] *= BANDIT_GAMMA;
        }
        p->arm_n[p->prev_arm] += 1.0;
        p->arm_s[p->prev_arm] += r;
    }
    p->prev_arm = -1;
    if (must) {
        return ACT_MOVE_100; /* the bounds are broken: no choice to learn from */
    }
    if (!want) {
        return ACT_HOLD; /* within the dead-band: nothing to choose */
    }
    int best = bl_part_ucb_pick(p->arm_n, p->arm_s, bandit_order, BANDIT_ARMS, BANDIT_C);
    p->prev_arm = best;
    return best;
}

static int rl_state(const bl_policy_t *p, double predicted_s, double optimal_s, double step_s)
{
    double imbalance = optimal_s > 0.0 ? predicted_s / optimal_s - 1.0 : 0.0;
    int imb = imbalance < RL_IMB_LOW ? 0 : (imbalance <= RL_IMB_HIGH ? 1 : 2);
    int trend = 1; /* same: also the first window, with nothing to compare */
    if (p->prev_step_s > 0.0 && step_s > 0.0) {
        double ratio = step_s / p->prev_step_s;
        trend = ratio < 1.0 - RL_TREND_BAND ? 0 : (ratio > 1.0 + RL_TREND_BAND ? 2 : 1);
    }
    double noise = bl_part_estimator_noise(p->est);
    int nbin = noise < RL_NOISE_LOW ? 0 : (noise <= RL_NOISE_HIGH ? 1 : 2);
    return imb * 9 + trend * 3 + nbin;
}

/* Q-learning: the previous (state, action) is credited with the window
 * that followed and the best value of the state now; then ε-greedy. A move
 * within the dead-band is a hold, and is learnt as one. */
static int rl_decide(bl_policy_t *p, double step_s, double predicted_s, double optimal_s, int must,
                     int want)
{
    int s = rl_state(p, predicted_s, optimal_s, step_s);
    double *row = &p->q[s * BL_RL_ACTIONS];
    if (p->prev_action >= 0 && step_s > 0.0) {
        double r = reward_of(optimal_s, step_s);
        if (p->q_default) {
            default_q(p->q, r);
            p->q_default = 0;
        }
        double best = row[0];
        for (int a = 1; a < BL_RL_ACTIONS; a++) {
            best = row[a] > best ? row[a] : best;
        }
        double *q = &p->q[p->prev_state * BL_RL_ACTIONS + p->prev_action];
        *q += RL_LR * (r + RL_GAMMA * best - *q);
    }
    p->prev_step_s = step_s;
    p->prev_action = -1;
    double eps = RL_EPS0 / (1.0 + (double)p->t / RL_EPS_TAU);
    p->t++;
    /* Both draws every decision, so the stream does not depend on the
     * branch taken. */
    double u = (double)(bl_part_next_random(&p->rng) >> 11) * 0x1.0p-53;
    int random_action = (int)(bl_part_next_random(&p->rng) % BL_RL_ACTIONS);
    if (must) {
        return ACT_MOVE_100;
    }
    /* Random actions only where there is a move to choose: a balanced plan
     * has nothing to learn from a random "even" but its cost. */
    int a = 0;
    if (u < eps && want) {
        a = random_action;
    } else {
        for (int i = 1; i < BL_RL_ACTIONS; i++) {
            a = row[i] > row[a] ? i : a; /* ties: the lower action */
        }
    }
    if (!want && a != ACT_EVEN) {
        a = ACT_HOLD;
    }
    p->prev_state = s;
    p->prev_action = a;
    return a;
}

int bl_policy_decide(bl_policy_t *p, const bl_rank_obs_t *obs, double step_s, const long *current,
                     long *next, bl_decision_t *decision)
{
    bl_decision_t d = {.action = "hold"};
    if (p == NULL || obs == NULL || current == NULL || next == NULL) {
        d.action = "invalid argument: NULL";
        if (decision != NULL) {
            *decision = d;
        }
        return -1;
    }
    const int n = p->ranks;
    const size_t nbytes = (size_t)n * sizeof *next;
    const char *bad = check_inputs(p, obs, step_s, current);
    if (bad != NULL) {
        /* Nothing learnt from a bad window; the plan stays. The message
         * goes in the action: policy.h has no other channel for it. */
        memmove(next, current, nbytes);
        d.action = bad;
        if (decision != NULL) {
            *decision = d;
        }
        return -1;
    }
    d.speed_changes = bl_estimator_update(p->est, obs, NULL, 0);
    fill_speeds(p);
    /* Feasible (checked at create) and valid speeds: cannot fail. */
    bl_part_plan(p->batch, n, p->speed, p->lo, p->hi, p->target, p->rem);
    d.optimal_step_s = bl_plan_step_time(n, p->target, p->speed);
    double predicted = bl_plan_step_time(n, current, p->speed);
    double gain = predicted > 0.0 ? (predicted - d.optimal_step_s) / predicted : 0.0;
    int must = !bounds_ok(p, current);
    int want = gain > move_threshold(p);
    int act = ACT_HOLD;
    switch (p->kind) {
    case BL_POLICY_STATIC:
        act = ACT_EVEN;
        break;
    case BL_POLICY_PROPORTIONAL:
        act = must || want ? ACT_MOVE_100 : ACT_HOLD;
        break;
    case BL_POLICY_BANDIT:
        act = bandit_decide(p, step_s, d.optimal_step_s, must, want);
        break;
    case BL_POLICY_RL:
        act = rl_decide(p, step_s, predicted, d.optimal_step_s, must, want);
        break;
    default:
        break;
    }
    if (act == ACT_EVEN) {
        memcpy(p->cand, p->even, nbytes);
    } else if (act == ACT_MOVE_100) {
        memcpy(p->cand, p->target, nbytes);
    } else if (act == ACT_HOLD) {
        memcpy(p->cand, current, nbytes);
    } else {
        blend_ctx_t c = {current, p->target, action_alpha[act]};
        bl_part_round(p->batch, n, blend_quota, &c, p->rem, p->cand);
    }
    d.action = action_names[act];
    d.changed = memcmp(p->cand, current, nbytes) != 0;
    d.predicted_step_s = bl_plan_step_time(n, p->cand, p->speed);
    memcpy(next, p->cand, nbytes); /* after reading current: next may alias it */
    if (decision != NULL) {
        *decision = d;
    }
    return 0;
}

/* ---- Learned state, for checkpoints ---------------------------------- */

static int policy_walk(void *obj, bl_part_state_t *s)
{
    bl_policy_t *p = obj;
    if (!bl_part_state_check(s, (int)p->kind) || !bl_part_state_check(s, p->ranks) ||
        !bl_part_estimator_walk(p->est, s)) {
        return 0;
    }
    bl_part_state_field(s, p->arm_n, sizeof p->arm_n);
    bl_part_state_field(s, p->arm_s, sizeof p->arm_s);
    bl_part_state_field(s, &p->prev_arm, sizeof p->prev_arm);
    bl_part_state_field(s, &p->rebased, sizeof p->rebased);
    if (p->q != NULL) {
        bl_part_state_field(s, p->q, BL_RL_STATES * BL_RL_ACTIONS * sizeof *p->q);
    }
    bl_part_state_field(s, &p->prev_state, sizeof p->prev_state);
    bl_part_state_field(s, &p->prev_action, sizeof p->prev_action);
    bl_part_state_field(s, &p->prev_step_s, sizeof p->prev_step_s);
    bl_part_state_field(s, &p->q_default, sizeof p->q_default);
    bl_part_state_field(s, &p->rng, sizeof p->rng);
    bl_part_state_field(s, &p->t, sizeof p->t);
    return 1;
}

/* The fields used as indices must be in range; the rest must be finite. */
static int policy_valid(const void *obj)
{
    const bl_policy_t *p = obj;
    int ok = p->prev_arm >= -1 && p->prev_arm < BANDIT_ARMS && p->prev_action >= -1 &&
             p->prev_action < BL_RL_ACTIONS && p->t >= 0 && isfinite(p->prev_step_s) &&
             (p->prev_action < 0 || (p->prev_state >= 0 && p->prev_state < BL_RL_STATES));
    for (int k = 0; k < BANDIT_ARMS && ok; k++) {
        ok = isfinite(p->arm_n[k]) && isfinite(p->arm_s[k]) && p->arm_n[k] >= 0.0;
    }
    for (int k = 0; p->q != NULL && k < BL_RL_STATES * BL_RL_ACTIONS && ok; k++) {
        ok = isfinite(p->q[k]);
    }
    return ok && bl_part_estimator_valid(p->est);
}

size_t bl_policy_state_bytes(const bl_policy_t *p)
{
    return p == NULL ? 0 : bl_part_state_bytes(policy_walk, p);
}

void bl_policy_state_save(const bl_policy_t *p, void *buf)
{
    if (p != NULL && buf != NULL) {
        bl_part_state_save(policy_walk, p, buf);
    }
}

int bl_policy_state_load(bl_policy_t *p, const void *buf, size_t n, char *err, size_t errlen)
{
    if (p == NULL) {
        return bl_part_fail(err, errlen, "policy state: no policy");
    }
    char self[64];
    snprintf(self, sizeof self, "%s, %d ranks", bl_policy_name(p->kind), p->ranks);
    return bl_part_state_load(policy_walk, policy_valid, p, buf, n, &p->a, "policy state", self,
                              err, errlen);
}
