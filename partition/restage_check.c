/* The checks of the stage policy's inputs (restage.h). A configuration is
 * checked once, when a policy is created, and the message names the field
 * at fault with its value. A window's observation is checked before every
 * decision, and the message is a static string, because the decision's
 * action is the only channel restage.h has for it. Neither check changes
 * anything; both are pure. */
#include <math.h>

#include "alloc.h"
#include "restage_impl.h"

int bl_part_restage_check_config(const bl_restage_config_t *c, char *err, size_t errlen)
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

const char *bl_part_restage_check_window(const bl_restage_t *r, const bl_restage_obs_t *o)
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
