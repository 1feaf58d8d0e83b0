/* CPU budgets (capacity.h). */
#include <math.h>

#include "capacity.h"

static int known(const bl_cpu_budget_t *b)
{
    return b->quota > 0.0 && b->per_sample > 0.0;
}

/* The most samples budget b allows in a step of T seconds (>= 0, <= batch). */
static double fits(const bl_cpu_budget_t *b, double T, long batch)
{
    double x = (b->quota * T - b->per_step) / b->per_sample;
    return x < 0.0 ? 0.0 : (x > (double)batch ? (double)batch : x);
}

int bl_part_cpu_caps(int ranks, long batch, const double *speed, const bl_cpu_budget_t *budget,
                     double overhead_s, long *cap)
{
    double V = 0.0; /* the summed speed of the ranks without a known budget */
    int capped = 0;
    for (int r = 0; r < ranks; r++) {
        cap[r] = batch;
        if (known(&budget[r])) {
            capped++;
        } else {
            V += speed[r];
        }
    }
    if (capped == 0 || capped == ranks || !(V > 0.0)) {
        return 0;
    }
    const double s = overhead_s > 0.0 ? overhead_s : 0.0;
    /* g(T) = (B − Σ fits(T)) / V + s − T decreases in T; at T = s it is
     * >= 0 (the fits are at most B... with the rest on V), at T = s + B/V
     * it is <= 0. */
    double lo = s, hi = s + (double)batch / V;
    for (int it = 0; it < 60; it++) {
        double T = 0.5 * (lo + hi), taken = 0.0;
        for (int r = 0; r < ranks; r++) {
            if (known(&budget[r])) {
                taken += fits(&budget[r], T, batch);
            }
        }
        double g = ((double)batch - taken) / V + s - T;
        if (g > 0.0) {
            lo = T;
        } else {
            hi = T;
        }
    }
    for (int r = 0; r < ranks; r++) {
        if (known(&budget[r])) {
            cap[r] = (long)floor(fits(&budget[r], lo, batch));
        }
    }
    return capped;
}
