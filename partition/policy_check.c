/* The checks of the shard policy's inputs (policy.h). A configuration is
 * checked once, when a policy is created, and the message names the field
 * at fault with its value. A window's observations and plan are checked
 * before every decision, and the message is a static string, because the
 * decision's action is the only channel policy.h has for it. Neither check
 * changes anything; both are pure. */
#include <math.h>

#include "alloc.h"
#include "plan.h"
#include "policy_impl.h"

/* Checks everything but memory; names the field at fault. */
int bl_part_policy_check_config(const bl_policy_config_t *c, char *err, size_t errlen)
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
    /* The caps, by the plan's one check of them. */
    if (bl_caps_check(c->ranks, c->batch, c->min_shard, c->max_shard, "rank", err, errlen) != 0) {
        return -1;
    }
    if (c->kind == BL_POLICY_RL && c->q_init != NULL) {
        for (int i = 0; i < BL_RL_TABLE_DOUBLES; i++) {
            if (!isfinite(c->q_init[i])) {
                return bl_part_fail(err, errlen, "q_init[%d] is %g; Q values must be finite", i,
                                    c->q_init[i]);
            }
        }
    }
    return 0;
}

/* What is wrong with the inputs, as a static string naming the field, or
 * NULL when they are fine. */
const char *bl_part_policy_check_window(const bl_policy_t *p, const bl_rank_obs_t *obs,
                                        double step_s, const long *current)
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
        if (!(o->cpu_s >= 0.0) || !isfinite(o->cpu_s)) {
            return "invalid obs.cpu_s: negative or not finite";
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
