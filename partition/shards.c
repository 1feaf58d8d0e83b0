/* Integer shard sizes: even splits and largest-remainder proportional splits. */
#include <math.h>
#include <stddef.h>

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

/* total · w_i / Σw for weights already scaled by a power of two (exact),
 * so the result is the unscaled one whenever that does not overflow. */
static double quota(long total, double weight, double sum)
{
    double q = (double)total * weight / sum;
    return q > (double)total ? (double)total : q;
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
    /* Scale by 2^-e with largest = m·2^e, m in [0.5, 1): exact, and then
     * every weight is below 1, so neither Σw nor total·w can overflow. */
    int exponent = 0;
    frexp(largest, &exponent);
    double sum = 0.0;
    for (int i = 0; i < parts; i++) {
        sum += ldexp(weights[i], -exponent);
    }
    long given = 0;
    for (int i = 0; i < parts; i++) {
        shares[i] = (long)floor(quota(total, ldexp(weights[i], -exponent), sum));
        given += shares[i];
    }
    /* Floating-point rounding could overshoot by a unit: take it back from
     * the largest share. */
    while (given > total) {
        int big = 0;
        for (int i = 1; i < parts; i++) {
            if (shares[i] > shares[big]) {
                big = i;
            }
        }
        shares[big]--;
        given--;
    }
    /* Hand out what rounding down left, one unit each, to the largest
     * remainders first (ties: lower index). Fewer than parts units remain,
     * and every remainder is > -1, so best is always found. */
    while (given < total) {
        int best = 0;
        double best_rem = -2.0;
        for (int i = 0; i < parts; i++) {
            double rem = quota(total, ldexp(weights[i], -exponent), sum) - (double)shares[i];
            if (rem > best_rem) {
                best_rem = rem;
                best = i;
            }
        }
        shares[best]++;
        given++;
    }
    return 0;
}
