/* The shard-rebalancing policies: static, proportional, bandit and rl.
 *
 * Every decision starts the same way: the window's observations update
 * the estimator, the proportional plan of the estimated speeds is the
 * target, and its predicted step time is the estimated optimum. Then:
 *
 * - static: the even split, always.
 * - proportional: the target, when it beats the current plan's predicted
 *   step time by more than the dead-band plus the improvement the
 *   estimates' own error fakes (see move_threshold), so noise does not
 *   churn shards; and always when the current plan breaks the bounds.
 * - bandit and rl: the plan of one of the tuner's controller settings
 *   (tuner.h), chosen from the scores every setting earns on every window
 *   (policy_learn.c). Proportional's own rule is one of the settings.
 *
 * The adaptive kinds never give a rank fewer than one sample where the
 * bounds and the batch allow it (p->floor): a rank with no samples would
 * never be measured again, and a rank that recovers would stay idle.
 * Shard moves are free (no state moves with a sample), so nothing is
 * charged for them.
 *
 * This file holds creation, the decision and the checkpoint walk; the
 * checks of a configuration and of a window are in policy_check.c, the
 * bandit's and rl's learning in policy_learn.c, the settings in tuner.c,
 * and the struct they share in policy_impl.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "state.h"
#include "partition.h"
#include "policy_impl.h"

/* ---- Actions ----------------------------------------------------------- */

/* The actions of static and proportional (policy_impl.h) by name, for the
 * decision's telemetry; bandit and rl name the setting they run. */
static const char *const action_names[] = {"hold", "move", "even"};

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

static int bounds_ok(const bl_policy_t *p, const long *plan)
{
    for (int r = 0; r < p->ranks; r++) {
        if ((p->lo != NULL && plan[r] < p->lo[r]) || (p->hi != NULL && plan[r] > p->hi[r])) {
            return 0;
        }
    }
    return 1;
}

/* The probe floor (policy_impl.h): lo, raised to 1 where hi allows it,
 * when the raised floors still fit the batch; else lo itself. */
static void set_floor(bl_policy_t *p)
{
    long sum = 0;
    for (int r = 0; r < p->ranks; r++) {
        long lo = p->lo != NULL ? p->lo[r] : 0;
        long hi = p->hi != NULL ? p->hi[r] : p->batch;
        p->floor[r] = lo < 1 && hi >= 1 ? 1 : lo;
        sum += p->floor[r];
    }
    if (sum > p->batch) {
        for (int r = 0; r < p->ranks; r++) {
            p->floor[r] = p->lo != NULL ? p->lo[r] : 0;
        }
    }
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
    if (bl_part_policy_check_config(config, err, errlen) != 0) {
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
    int failed = 0;
    p->lo = copy_longs(a, config->min_shard, n, &failed);
    p->hi = copy_longs(a, config->max_shard, n, &failed);
    p->speed = bl_part_alloc(a, (size_t)n, sizeof *p->speed);
    p->rem = bl_part_alloc(a, (size_t)n, sizeof *p->rem);
    p->target = bl_part_alloc(a, (size_t)n, sizeof *p->target);
    p->cand = bl_part_alloc(a, (size_t)n, sizeof *p->cand);
    p->even = bl_part_alloc(a, (size_t)n, sizeof *p->even);
    if (config->kind == BL_POLICY_BANDIT || config->kind == BL_POLICY_RL) {
        p->states = config->kind == BL_POLICY_RL ? BL_RL_STATES : 1;
        p->table = bl_part_alloc(a, (size_t)p->states * BL_RL_STATE_DOUBLES, sizeof *p->table);
        failed |= p->table == NULL;
    }
    if (config->kind != BL_POLICY_STATIC) {
        p->floor = bl_part_alloc(a, (size_t)n, sizeof *p->floor);
        failed |= p->floor == NULL;
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
    if (p->floor != NULL) {
        set_floor(p);
    }
    if (config->kind == BL_POLICY_BANDIT || config->kind == BL_POLICY_RL) {
        p->tuner = bl_part_tuner_create(n, p->batch, p->floor, p->hi, p->even, a);
        if (p->tuner == NULL) {
            bl_part_fail(err, errlen, "out of memory for a policy of %d ranks", n);
            goto fail;
        }
    }
    bl_part_policy_priors(p, config->q_init);
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
    bl_part_free(&a, p->floor);
    bl_part_tuner_destroy(p->tuner);
    bl_part_budget_free(p);
    bl_part_free(&a, p->table);
    bl_part_free(&a, p);
}

const bl_estimator_t *bl_policy_estimator(const bl_policy_t *p)
{
    return p != NULL ? p->est : NULL;
}

const double *bl_policy_q_table(const bl_policy_t *p)
{
    return p != NULL && p->kind == BL_POLICY_RL ? p->table : NULL;
}

/* ---- Deciding ---------------------------------------------------------- */

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
    const char *bad = bl_part_policy_check_window(p, obs, step_s, current);
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
    bl_part_budget_observe(p, obs);
    /* The quota ranks' CPU budgets cap the plans (capacity.h). Feasible
     * (checked at create, or the caps are dropped) and valid speeds: the
     * plan cannot fail. */
    const long *hi = bl_part_budget_bounds(p);
    bl_part_plan(p->batch, n, p->speed, p->floor != NULL ? p->floor : p->lo, hi, p->target, p->rem);
    d.optimal_step_s = bl_plan_step_time(n, p->target, p->speed);
    double predicted = bl_plan_step_time(n, current, p->speed);
    double gain = predicted > 0.0 ? (predicted - d.optimal_step_s) / predicted : 0.0;
    int must = !bounds_ok(p, current) || bl_part_budget_exceeded(p, hi, current);
    int act = BL_SHARD_HOLD;
    if (p->kind == BL_POLICY_STATIC) {
        act = BL_SHARD_EVEN;
    } else if (p->kind == BL_POLICY_PROPORTIONAL) {
        act = must || gain > move_threshold(p) ? BL_SHARD_TARGET : BL_SHARD_HOLD;
    } else {
        bl_part_policy_learn(p, obs, move_threshold(p));
        memcpy(p->cand, bl_part_tuner_plan(p->tuner, p->chosen), nbytes);
        if (bl_part_budget_exceeded(p, hi, p->cand)) {
            /* The setting's plan overdraws a quota rank: the capped target. */
            memcpy(p->cand, p->target, nbytes);
        }
    }
    if (act == BL_SHARD_EVEN) {
        memcpy(p->cand, p->even, nbytes);
    } else if (act == BL_SHARD_TARGET) {
        memcpy(p->cand, p->target, nbytes);
    } else if (p->tuner == NULL) {
        memcpy(p->cand, current, nbytes);
    }
    d.action = p->tuner != NULL ? bl_part_tuner_name(p->chosen) : action_names[act];
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
    if (p->tuner != NULL && !bl_part_tuner_walk(p->tuner, s)) {
        return 0;
    }
    bl_part_state_field(s, p->score, sizeof p->score);
    bl_part_state_field(s, &p->chosen, sizeof p->chosen);
    if (p->table != NULL) {
        bl_part_state_field(s, p->table,
                            (size_t)p->states * BL_RL_STATE_DOUBLES * sizeof *p->table);
    }
    bl_part_state_field(s, &p->prev_state, sizeof p->prev_state);
    return 1;
}

/* The fields used as indices must be in range; the rest must be finite. */
static int policy_valid(const void *obj)
{
    const bl_policy_t *p = obj;
    /* prev_state indexes the learners' table: states rows (1 for bandit,
     * none for the kinds that do not learn, which keep -1). */
    int ok = p->chosen >= 0 && p->chosen < BL_TUNE_SETTINGS && p->prev_state >= -1 &&
             p->prev_state < p->states && (p->tuner == NULL || bl_part_tuner_valid(p->tuner));
    for (int k = 0; k < BL_TUNE_SETTINGS && ok; k++) {
        ok = isfinite(p->score[k]) && p->score[k] >= 1.0;
    }
    ok = ok && (p->table == NULL || bl_part_policy_table_valid(p->table, p->states));
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
