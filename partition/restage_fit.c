/* The estimation half of the stage policy (restage.h; the method is
 * described at the top of restage.c). A window's per-layer times feed the
 * estimator's change detection on the stages' speeds and the table of the
 * seconds each layer took on each stage, and then costs and speeds are
 * fitted to that table by alternating least squares, in the anchors'
 * units. A stage whose window strays from the fit without a detected
 * change is left out of the table as an outlier. The window must have
 * passed bl_part_restage_check_window. */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "restage_impl.h"

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
int bl_part_restage_learn(bl_restage_t *r, const bl_restage_obs_t *o)
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
