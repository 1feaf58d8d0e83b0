/* The learning half of the shard policy (policy.h): the bandit's and rl's
 * constants, their priors, and their choice of an action for a window.
 * Each choice first credits the action taken before with the reward of
 * the window that followed it, optimal_step_s over the measured step
 * time, and then picks the next action; policy.c turns the action into a
 * plan. The only randomness is rl's own seeded stream, so a policy run
 * twice on the same inputs decides the same. */
#include <string.h>

#include "alloc.h"
#include "policy_impl.h"

/* ---- Bandit constants -------------------------------------------------- */

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
static const double bandit_offset[BL_SHARD_ARMS] = {-0.3, -0.2, -0.1, 0.0};
/* UCB ties go to the larger move (the arm order searched). */
static const int bandit_order[BL_SHARD_ARMS] = {BL_SHARD_MOVE_100, BL_SHARD_MOVE_50,
                                                BL_SHARD_MOVE_25, BL_SHARD_HOLD};

/* ---- RL constants ------------------------------------------------------ */

#define RL_LR 0.2 /* learning rate: a Q value averages ~5 recent rewards */
/* Discount: a plan's effect shows in the next window, and later windows
 * depend mostly on later decisions, so a short horizon (≈ 2 windows)
 * learns fast and values stay near reward / (1 − 0.5). */
#define RL_GAMMA 0.5
/* ε-greedy: ε_t = RL_EPS0 / (1 + t / RL_EPS_TAU) over decisions t, 10% at
 * first and 2% after 200 windows; drawn only in windows that want a move
 * (see bl_part_policy_rl_decide), so a settled plan is never disturbed by exploration. */
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

void bl_part_policy_priors(bl_policy_t *p, const double *q_init)
{
    for (int i = 0; i < BL_SHARD_ARMS; i++) {
        p->arm_n[i] = 1.0;
        p->arm_s[i] = 1.0 + bandit_offset[i];
    }
    if (p->q != NULL) {
        if (q_init != NULL) {
            memcpy(p->q, q_init, BL_RL_STATES * BL_RL_ACTIONS * sizeof *p->q);
        } else {
            default_q(p->q, 1.0);
            p->q_default = 1;
        }
    }
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
int bl_part_policy_bandit_decide(bl_policy_t *p, double step_s, double optimal_s, int must,
                                 int want)
{
    if (p->prev_arm >= 0 && step_s > 0.0) {
        double r = reward_of(optimal_s, step_s);
        if (!p->rebased) {
            for (int i = 0; i < BL_SHARD_ARMS; i++) {
                p->arm_s[i] = p->arm_n[i] * (r + bandit_offset[i]);
            }
            p->rebased = 1;
        }
        for (int i = 0; i < BL_SHARD_ARMS; i++) {
            p->arm_n[i] *= BANDIT_GAMMA;
            p->arm_s[i] *= BANDIT_GAMMA;
        }
        p->arm_n[p->prev_arm] += 1.0;
        p->arm_s[p->prev_arm] += r;
    }
    p->prev_arm = -1;
    if (must) {
        return BL_SHARD_MOVE_100; /* the bounds are broken: no choice to learn from */
    }
    if (!want) {
        return BL_SHARD_HOLD; /* within the dead-band: nothing to choose */
    }
    int best = bl_part_ucb_pick(p->arm_n, p->arm_s, bandit_order, BL_SHARD_ARMS, BANDIT_C);
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
int bl_part_policy_rl_decide(bl_policy_t *p, double step_s, double predicted_s, double optimal_s,
                             int must, int want)
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
        return BL_SHARD_MOVE_100;
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
    if (!want && a != BL_SHARD_EVEN) {
        a = BL_SHARD_HOLD;
    }
    p->prev_state = s;
    p->prev_action = a;
    return a;
}
