/* The learning half of the stage policy (restage.h): the bandit's and rl's
 * constants, their priors, the reward, and their choice between hold and
 * repartition. Each choice first credits the action taken before with the
 * reward of the window that followed it, and then picks the next action
 * among the admissible ones; restage.c decides admissibility and makes the
 * move. The only randomness is rl's own seeded stream, so a policy run
 * twice on the same inputs decides the same. */
#include "alloc.h"
#include "restage_impl.h"

#define BANDIT_GAMMA 0.9 /* discount per credited window: memory of ~10 pulls */
#define BANDIT_C     0.1 /* UCB bonus weight; rewards differ by percents */
#define REWARD_CAP   2.0

#define RL_LR           0.2
#define RL_GAMMA        0.5
#define RL_EPS0         0.1
#define RL_EPS_TAU      50.0
#define RL_GAIN_HIGH    0.10 /* gain bins: below the threshold, to 10 %, above */
#define RL_PAYBACK_FAST 0.25 /* payback bins: within a quarter of the horizon, or later */
#define RL_NOISE_LOW    0.02
#define RL_NOISE_HIGH   0.08

void bl_part_restage_priors(bl_restage_t *r)
{
    /* One pseudo-pull each; repartition looks better until measured, so an
     * admissible move is tried first. */
    r->arm_n[BL_STAGE_HOLD] = r->arm_n[BL_STAGE_REPARTITION] = 1.0;
    r->arm_s[BL_STAGE_HOLD] = 0.9;
    r->arm_s[BL_STAGE_REPARTITION] = 1.0;
    for (int s = 0; s < BL_STAGE_RL_STATES; s++) {
        r->q[s * BL_STAGE_ACTIONS + BL_STAGE_HOLD] = 1.8; /* reward ~0.9 / (1 − γ) */
        r->q[s * BL_STAGE_ACTIONS + BL_STAGE_REPARTITION] = 2.0;
    }
}

double bl_part_restage_reward(double best_s, double step_s)
{
    double x = step_s > 0.0 ? best_s / step_s : 0.0;
    return x < REWARD_CAP ? x : REWARD_CAP;
}

/* Discounted UCB over hold and repartition (Garivier & Moulines). */
int bl_part_restage_bandit_pick(bl_restage_t *r, double reward, int admissible)
{
    if (r->prev_action >= 0) {
        for (int k = 0; k < BL_STAGE_ACTIONS; k++) {
            r->arm_n[k] *= BANDIT_GAMMA;
            r->arm_s[k] *= BANDIT_GAMMA;
        }
        r->arm_n[r->prev_action] += 1.0;
        r->arm_s[r->prev_action] += reward;
    }
    r->prev_action = -1;
    if (!admissible) {
        return BL_STAGE_HOLD; /* nothing to choose */
    }
    /* Ties go to repartition. */
    static const int order[BL_STAGE_ACTIONS] = {BL_STAGE_REPARTITION, BL_STAGE_HOLD};
    int pick = bl_part_ucb_pick(r->arm_n, r->arm_s, order, BL_STAGE_ACTIONS, BANDIT_C);
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
int bl_part_restage_rl_pick(bl_restage_t *r, double reward, double rel_gain, double payback,
                            int admissible)
{
    int s = rl_state(r, rel_gain, payback);
    double *row = &r->q[s * BL_STAGE_ACTIONS];
    if (r->prev_action >= 0) {
        double next_best = row[0] > row[1] ? row[0] : row[1];
        double *q = &r->q[r->prev_state * BL_STAGE_ACTIONS + r->prev_action];
        *q += RL_LR * (reward + RL_GAMMA * next_best - *q);
    }
    double eps = RL_EPS0 / (1.0 + (double)r->t / RL_EPS_TAU);
    r->t++;
    double u = (double)(bl_part_next_random(&r->rng) >> 11) * 0x1.0p-53;
    int coin = (int)(bl_part_next_random(&r->rng) & 1u);
    int a = row[BL_STAGE_REPARTITION] > row[BL_STAGE_HOLD] ? BL_STAGE_REPARTITION : BL_STAGE_HOLD;
    if (u < eps) {
        a = coin;
    }
    if (!admissible) {
        a = BL_STAGE_HOLD;
    }
    r->prev_state = s;
    r->prev_action = a;
    return a;
}
