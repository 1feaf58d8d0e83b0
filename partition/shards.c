/* Integer shard sizes: even splits and largest-remainder proportional splits. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* The remainder quota − share of one part, as an unsigned key with the
 * order of the double (negative values below positive ones). */
static uint64_t remainder_key(long total, double weight, int exponent, double sum, long share)
{
    double rem = quota(total, ldexp(weight, -exponent), sum) - (double)share;
    uint64_t bits;
    memcpy(&bits, &rem, sizeof bits);
    return (bits >> 63) ? ~bits : bits | (1ULL << 63);
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
     * remainders (ties: lower index) — the same units as taking the
     * largest remainder one at a time, in O(parts · 64) rather than
     * O(parts²): find the k-th largest remainder by bisecting on the
     * order of its bits, then give a unit to every remainder above it and
     * to the lowest-indexed ones equal to it. */
    long k = total - given;
    if (k > 0) {
        uint64_t lo = 0, hi = UINT64_MAX; /* invariant: count(key >= lo) >= k */
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2 + 1;
            long at_least = 0;
            for (int i = 0; i < parts; i++) {
                at_least += remainder_key(total, weights[i], exponent, sum, shares[i]) >= mid;
            }
            if (at_least >= k) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        long above = 0;
        for (int i = 0; i < parts; i++) {
            above += remainder_key(total, weights[i], exponent, sum, shares[i]) > lo;
        }
        long ties = k - above; /* units for remainders equal to the k-th, lowest index first */
        for (int i = 0; i < parts; i++) {
            uint64_t key = remainder_key(total, weights[i], exponent, sum, shares[i]);
            if (key > lo || (key == lo && ties-- > 0)) {
                shares[i]++;
            }
        }
    }
    return 0;
}
