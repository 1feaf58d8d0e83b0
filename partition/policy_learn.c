/* The learning half of the shard policy (policy.h): bandit and rl choose
 * which of the tuner's controller settings (tuner.h) runs, from the
 * scores every setting earns on every window.
 *
 * Rationale. The fixed rule (proportional) trusts one speed model with one
 * smoothing and one dead-band. Each is right in some regimes and wrong in
 * others: smoothing lags a drift, no smoothing chases noise, a dead-band
 * holds a stale plan, reacting to a one-window spike moves samples off a
 * rank that has already recovered. The settings are those alternatives,
 * and since every window scores all of them (tuner.h says why that is
 * fair), learning which one to trust costs no exploration.
 *
 * The anchor. With no evidence yet, and whenever no other setting is
 * clearly better, proportional's own rule runs. (The sparse setting,
 * tuner.h, would be the better anchor in the simulator: as the anchor it
 * cut the cold start under noise and heavy-tailed noise to within 15
 * steps on 125 of 126 runs. But on a real rank held by a CPU quota, whose
 * windows are bursty, it keeps the even split, and the counterfactual
 * scores, which assume a rank's speed does not depend on its shard, do not
 * show what under-loading that rank gains: bandit and rl fell to static's
 * throughput there. Proportional's throughput estimate does not.)
 *
 * What is learnt is the log of each setting's score over the anchor's in
 * the same window (negative: better than the anchor; the log makes a
 * window whose steps a heavy-tailed delay stretched tenfold count by its
 * relative difference, not ten times over). Both learners keep, per
 * state, discounted sums of these differences and of their squares, so
 * they know a mean and how sure it is. A setting other than the anchor
 * may run only while its mean is below 0 by more than SIGNIFICANCE
 * standard errors: a setting that wins only by the luck of a few windows
 * (heavy-tailed noise makes any setting look best for a while) is not
 * trusted, and the policy stays with the anchor. Among the settings that
 * may run, the one with the least mean runs, and the one running now stays
 * while it is within SWITCH_MARGIN of the least.
 *
 * - bandit: one state, a discount of BANDIT_GAMMA per window: it follows
 *   the regime it is in, and changes when another regime makes another
 *   setting better.
 * - rl: BL_RL_STATES states (the estimator's noise level × how far the
 *   slow setting's plan was from the best in the last window), each
 *   updated with the window that followed a choice made in it, so rl can
 *   learn, for example, to follow the last window in calm drift and to
 *   hold through a burst. Its table is warm-started from the simulator
 *   (ballast-sim --save-policy).
 *
 * Neither draws random numbers: a decision is a pure function of the
 * windows seen. */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "policy_impl.h"

_Static_assert(BL_RL_ACTIONS == BL_TUNE_SETTINGS, "rl's actions are the tuner's settings");

/* The discount per window the statistics of a state see: a memory of
 * 1/(1 − 0.95) = 20 windows, long enough to remember which setting did
 * well in the last burst through the calm windows between bursts (calm
 * windows score every setting alike, so they add nothing to a mean). */
#define GAMMA 0.98
/* The setting that runs unless another is clearly better (see the top). */
#define ANCHOR BL_TUNE_PROPORTIONAL
/* A setting must beat the anchor by this many standard errors. */
#define SIGNIFICANCE 1.0
/* ... on this many windows' worth of evidence at least. (With the sparse
 * setting as the anchor, 15 windows kept heavy-tailed noise from unseating
 * it by chance; with proportional as the anchor, that delay costs more on
 * plain noise than it saves, bench/sim_sweep.sh.) */
#define MIN_EVIDENCE 3.0
/* The margin, in log score, by which another setting must beat the running
 * one, so two settings that score alike do not take turns. */
#define SWITCH_MARGIN 0.005
/* rl's state bins: the estimator's noise (relative sigma of a window) and
 * the slow setting's last score minus 1 (how far a long-memory plan was
 * from the best: small when calm, large after a shift or in a burst). */
#define RL_NOISE_LOW  0.02
#define RL_NOISE_HIGH 0.08
#define RL_MISS_LOW   0.02
#define RL_MISS_HIGH  0.10

/* One state's statistics (BL_RL_STATE_DOUBLES values): w1, w2, then the
 * sums of the differences, then the sums of their squares. */
enum { W1, W2, SUM, SQUARES = SUM + BL_TUNE_SETTINGS };

void bl_part_policy_priors(bl_policy_t *p, const double *q_init)
{
    p->chosen = ANCHOR;
    p->prev_state = -1;
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        p->score[k] = 1.0;
    }
    if (p->table == NULL) {
        return;
    }
    size_t n = (size_t)p->states * BL_RL_STATE_DOUBLES;
    if (q_init != NULL && p->kind == BL_POLICY_RL) {
        memcpy(p->table, q_init, n * sizeof *p->table);
    } else {
        memset(p->table, 0, n * sizeof *p->table);
    }
}

int bl_part_policy_table_valid(const double *table, int states)
{
    for (int s = 0; s < states; s++) {
        const double *t = table + (size_t)s * BL_RL_STATE_DOUBLES;
        if (!(t[W1] >= 0.0) || !(t[W2] >= 0.0) || !isfinite(t[W1]) || !isfinite(t[W2])) {
            return 0;
        }
        for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
            if (!isfinite(t[SUM + k]) || !isfinite(t[SQUARES + k]) || !(t[SQUARES + k] >= 0.0)) {
                return 0;
            }
        }
    }
    return 1;
}

/* Adds a window's differences to one state's statistics. */
static void learn(double *t, const double *score)
{
    t[W1] = GAMMA * t[W1] + 1.0;
    t[W2] = GAMMA * GAMMA * t[W2] + 1.0;
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        double d = log(score[k] / score[ANCHOR]);
        t[SUM + k] = GAMMA * t[SUM + k] + d;
        t[SQUARES + k] = GAMMA * t[SQUARES + k] + d * d;
    }
}

/* The setting to run from a state's statistics (see the top). */
static int choose(const double *t, int running)
{
    double mean[BL_TUNE_SETTINGS];
    int allowed[BL_TUNE_SETTINGS];
    /* The effective number of windows behind the discounted means. */
    double evidence = t[W2] > 0.0 ? t[W1] * t[W1] / t[W2] : 0.0;
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        mean[k] = t[W1] > 0.0 ? t[SUM + k] / t[W1] : 0.0;
        double var = t[W1] > 0.0 ? t[SQUARES + k] / t[W1] - mean[k] * mean[k] : 0.0;
        double se = evidence > 0.0 && var > 0.0 ? sqrt(var / evidence) : 0.0;
        allowed[k] = k == ANCHOR || (evidence >= MIN_EVIDENCE && mean[k] + SIGNIFICANCE * se < 0.0);
    }
    int best = ANCHOR;
    for (int k = 0; k < BL_TUNE_SETTINGS; k++) {
        if (allowed[k] && mean[k] < mean[best]) {
            best = k;
        }
    }
    return allowed[running] && mean[running] <= mean[best] + SWITCH_MARGIN ? running : best;
}

static int rl_state(const bl_policy_t *p)
{
    double noise = bl_part_estimator_noise(p->est);
    int nbin = noise < RL_NOISE_LOW ? 0 : (noise <= RL_NOISE_HIGH ? 1 : 2);
    double miss = p->score[BL_TUNE_SLOW] - 1.0;
    int mbin = miss < RL_MISS_LOW ? 0 : (miss <= RL_MISS_HIGH ? 1 : 2);
    return nbin * 3 + mbin;
}

void bl_part_policy_learn(bl_policy_t *p, const bl_rank_obs_t *obs, double threshold)
{
    /* The ranks' window noise goes in the rounding scratch, free until
     * the tuner is done with it. */
    bl_part_estimator_rank_noise(p->est, p->rem);
    bl_part_tune_input_t in = {.obs = obs,
                               .fallback = p->speed,
                               .proportional = p->speed,
                               .noise = p->rem,
                               .threshold = threshold};
    bl_part_tuner_observe(p->tuner, &in, p->score);
    /* The window just scored followed the choice made in prev_state. */
    if (p->prev_state >= 0) {
        learn(p->table + (size_t)p->prev_state * BL_RL_STATE_DOUBLES, p->score);
    }
    int s = p->states > 1 ? rl_state(p) : 0;
    p->chosen = choose(p->table + (size_t)s * BL_RL_STATE_DOUBLES, p->chosen);
    p->prev_state = s;
}
