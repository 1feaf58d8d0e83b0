/* Integer shard sizes: even splits and largest-remainder proportional splits. */
#include <math.h>
#include <stddef.h>

#include "alloc.h"
#include "partition.h"

int bl_split_even(long total, int parts, long *shares)
{
    if (parts <= 0 || total < 0 || shares == NULL) {
        return -1;
    }
    for (int i = 0; i < parts; i++) {
        shares[i] = total / parts + (i < total % parts ? 1 : 0);
    }
    return 0;
}

/* The quotas of bl_split_proportional: total · w_i / Σw, the weights
 * scaled by a power of two (exact) so neither the sum nor the product can
 * overflow for any finite weights. */
typedef struct weights_ctx {
    long total;
    const double *weights;
    int exponent; /* weights scaled by 2^-exponent */
    double sum;   /* of the scaled weights, in [1, parts] */
} weights_ctx_t;

static double weight_quota(const void *ctx, int i)
{
    const weights_ctx_t *c = ctx;
    return (double)c->total * ldexp(c->weights[i], -c->exponent) / c->sum;
}

int bl_split_proportional(long total, int parts, const double *weights, long *shares)
{
    if (parts <= 0 || total < 0 || weights == NULL || shares == NULL) {
        return -1;
    }
    double largest = 0.0;
    for (int i = 0; i < parts; i++) {
        if (!(weights[i] >= 0.0) || !isfinite(weights[i])) {
            return -1;
        }
        largest = weights[i] > largest ? weights[i] : largest;
    }
    if (!(largest > 0.0)) {
        return -1;
    }
    /* largest = m·2^e with m in [0.5, 1): scaled, every weight is below 1. */
    weights_ctx_t c = {.total = total, .weights = weights, .sum = 0.0};
    frexp(largest, &c.exponent);
    for (int i = 0; i < parts; i++) {
        c.sum += ldexp(weights[i], -c.exponent);
    }
    /* Floors, then the units left to the largest remainders (ties to the
     * lower index), in O(parts): the one rounding rule of partition/. */
    bl_part_round(total, parts, weight_quota, &c, NULL, shares);
    return 0;
}
