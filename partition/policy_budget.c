/* The shard policy's CPU budgets (policy.h's bl_policy_set_cpu_quotas,
 * capacity.h's model): what a window says about each quota rank's budget,
 * and the upper bounds that the budgets put on the plans. */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "policy_impl.h"

/* The EMA weight of a window's per-step CPU overheads. */
#define BUDGET_ALPHA 0.3

static void budget_free(bl_policy_t *p)
{
    bl_part_free(&p->a, p->budget);
    bl_part_free(&p->a, p->per_sample_hist);
    bl_part_free(&p->a, p->cap);
    bl_part_free(&p->a, p->capped_hi);
    p->budget = NULL;
    p->per_sample_hist = NULL;
    p->cap = NULL;
    p->capped_hi = NULL;
}

int bl_policy_set_cpu_quotas(bl_policy_t *p, const double *quota)
{
    if (p == NULL || quota == NULL) {
        return -1;
    }
    const int n = p->ranks;
    int any = 0;
    for (int r = 0; r < n; r++) {
        if (!(quota[r] >= 0.0) || !isfinite(quota[r])) {
            return -1;
        }
        any |= quota[r] > 0.0;
    }
    budget_free(p);
    if (!any || p->kind == BL_POLICY_STATIC) {
        return 0;
    }
    const bl_part_allocator_t *a = &p->a;
    p->budget = bl_part_alloc(a, (size_t)n, sizeof *p->budget);
    p->per_sample_hist = bl_part_alloc(a, (size_t)n * BL_BUDGET_HISTORY, sizeof(double));
    p->cap = bl_part_alloc(a, (size_t)n, sizeof *p->cap);
    p->capped_hi = bl_part_alloc(a, (size_t)n, sizeof *p->capped_hi);
    if (p->budget == NULL || p->per_sample_hist == NULL || p->cap == NULL || p->capped_hi == NULL) {
        budget_free(p);
        return -1;
    }
    for (int r = 0; r < n; r++) {
        p->budget[r] = (bl_cpu_budget_t){.quota = quota[r]};
    }
    memset(p->per_sample_hist, 0, (size_t)n * BL_BUDGET_HISTORY * sizeof(double));
    p->hist_at = 0;
    p->overhead_s = -1.0;
    return 0;
}

void bl_part_budget_free(bl_policy_t *p)
{
    budget_free(p);
}

static double ema(double old, double x)
{
    return old < 0.0 ? x : (1.0 - BUDGET_ALPHA) * old + BUDGET_ALPHA * x;
}

void bl_part_budget_observe(bl_policy_t *p, const bl_rank_obs_t *obs)
{
    if (p->budget == NULL) {
        return;
    }
    const int n = p->ranks;
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        total += obs[r].samples;
    }
    const double steps = total / (double)p->batch; /* every step computes the whole batch */
    if (!(steps > 0.0)) {
        return;
    }
    p->hist_at = (p->hist_at + 1) % BL_BUDGET_HISTORY;
    /* The unconstrained ranks' seconds per step beyond compute: the CPU
     * seconds they spend beyond it (reductions, the update), not their wall
     * seconds, which hold their waits for the quota ranks' stalls (a cap
     * that counted those as the step's length would allow the stalls). */
    double beyond_max = -1.0;
    for (int r = 0; r < n; r++) {
        const bl_rank_obs_t *o = &obs[r];
        bl_cpu_budget_t *b = &p->budget[r];
        double *hist = p->per_sample_hist + (size_t)r * BL_BUDGET_HISTORY;
        if (b->quota == 0.0) {
            if (o->cpu_s > 0.0) {
                double beyond = (o->cpu_s - o->compute_s) / steps;
                beyond_max = beyond > beyond_max ? beyond : beyond_max;
            }
            continue;
        }
        hist[p->hist_at] = o->samples > 0.0 && o->cpu_s > 0.0 ? o->compute_s / o->samples : 0.0;
        double least = 0.0;
        for (int h = 0; h < BL_BUDGET_HISTORY; h++) {
            least = hist[h] > 0.0 && (least == 0.0 || hist[h] < least) ? hist[h] : least;
        }
        if (least > 0.0 && o->cpu_s > 0.0) {
            const double beyond = (o->cpu_s - least * o->samples) / steps;
            b->per_step = b->per_sample > 0.0 ? ema(b->per_step, beyond > 0.0 ? beyond : 0.0)
                                              : (beyond > 0.0 ? beyond : 0.0);
            b->per_sample = least;
        }
    }
    if (beyond_max >= 0.0) {
        p->overhead_s = ema(p->overhead_s, beyond_max);
    }
}

const long *bl_part_budget_bounds(bl_policy_t *p)
{
    if (p->budget == NULL ||
        bl_part_cpu_caps(p->ranks, p->batch, p->speed, p->budget, p->overhead_s, p->cap) == 0) {
        return p->hi;
    }
    const long *lo = p->floor != NULL ? p->floor : p->lo;
    long room = 0;
    for (int r = 0; r < p->ranks; r++) {
        long hi = p->hi != NULL ? p->hi[r] : p->batch;
        long least = lo != NULL ? lo[r] : 0;
        long c = p->cap[r] < least ? least : p->cap[r]; /* a floor wins over a cap */
        p->capped_hi[r] = c < hi ? c : hi;
        room += p->capped_hi[r];
    }
    /* Caps that cannot hold the batch (every rank short of CPU): none. */
    return room >= p->batch ? p->capped_hi : p->hi;
}

int bl_part_budget_exceeded(const bl_policy_t *p, const long *bounds, const long *plan)
{
    if (bounds == NULL || bounds == p->hi) {
        return 0;
    }
    for (int r = 0; r < p->ranks; r++) {
        if (plan[r] > bounds[r]) {
            return 1;
        }
    }
    return 0;
}
