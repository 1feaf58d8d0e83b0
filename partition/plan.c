/* Proportional shard plans under per-rank bounds, their largest-remainder
 * rounding, and a plan's predicted step time. Units: speeds in samples per
 * second of compute, shards in samples, times in seconds. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "partition.h"
#include "policy.h"

/* ---- Largest-remainder rounding -------------------------------------- */

/* Non-negative doubles order like their bit patterns read as unsigned
 * integers, so a threshold among them can be selected exactly. */
static uint64_t order_bits(double x)
{
    uint64_t u = 0;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* quota(i) made safe to floor: NaN or negative → 0, at most total. */
static double safe_quota(long total, bl_part_quota_fn quota, const void *ctx, int i)
{
    double q = quota(ctx, i);
    if (!(q >= 0.0)) {
        return 0.0;
    }
    return q > (double)total ? (double)total : q;
}

static double remainder_at(long total, bl_part_quota_fn quota, const void *ctx, const double *rem,
                           int i)
{
    if (rem != NULL) {
        return rem[i];
    }
    double q = safe_quota(total, quota, ctx, i);
    return q - floor(q);
}

void bl_part_round(long total, int parts, bl_part_quota_fn quota, const void *ctx, double *rem,
                   long *shares)
{
    long given = 0;
    for (int i = 0; i < parts; i++) {
        double q = safe_quota(total, quota, ctx, i);
        double f = floor(q);
        shares[i] = (long)f;
        given += shares[i];
        if (rem != NULL) {
            rem[i] = q - f; /* in [0, 1), never -0.0 since q >= +0 */
        }
    }
    /* Floating-point rounding could overshoot by a unit: take it back from
     * the largest share (ties: lower index), as bl_split_proportional does.
     * Nothing is left to hand out afterwards. */
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
    long left = total - given;
    if (left <= 0) {
        return;
    }
    /* Exact arithmetic leaves fewer than parts units; a rounding surplus of
     * whole rounds goes to everyone (the remainders' order is unchanged). */
    if (left >= parts) {
        for (int i = 0; i < parts; i++) {
            shares[i] += left / parts;
        }
        left %= parts;
        if (left == 0) {
            return;
        }
    }
    /* The left-th largest remainder v, by radix selection on its bits, 11
     * bits a pass (6 passes): keep the prefix of v found so far, count the
     * next digit among remainders sharing it, and descend into the digit
     * that holds the need-th largest. */
    int need = (int)left;
    uint64_t v = 0, known = 0; /* v's bits under the mask known */
    for (int shift = 64; shift > 0;) {
        int width = shift >= 11 ? 11 : shift;
        shift -= width;
        unsigned digit_mask = (1u << width) - 1u;
        int count[1 << 11] = {0};
        for (int i = 0; i < parts; i++) {
            uint64_t b = order_bits(remainder_at(total, quota, ctx, rem, i));
            if ((b & known) == v) {
                count[(b >> shift) & digit_mask]++;
            }
        }
        int d = (int)digit_mask;
        while (need > count[d]) {
            need -= count[d];
            d--;
        }
        v |= (uint64_t)d << shift;
        known |= (uint64_t)digit_mask << shift;
    }
    /* Everything above v gets a unit, then the first need ties at v. */
    for (int i = 0; i < parts; i++) {
        uint64_t b = order_bits(remainder_at(total, quota, ctx, rem, i));
        if (b > v) {
            shares[i]++;
        } else if (b == v && need > 0) {
            shares[i]++;
            need--;
        }
    }
}

/* ---- Proportional plans ------------------------------------------------ */

/* The plan's quotas: weights are the speeds (unknown ones the mean)
 * scaled by 2^-exponent so every weight is below 1 and no sum overflows,
 * as in bl_split_proportional. A rank is at its max when lambda·w >= hi,
 * at its min when lambda·w <= lo, else free with (free_total · w /
 * free_weight): with no binding bound, free_total = batch and free_weight
 * = Σw, the very quota bl_split_proportional computes. */
typedef struct plan_ctx {
    const double *speeds;
    double fill;    /* the weight of a rank with speed 0: the mean known speed */
    int exponent;   /* weights scaled by 2^-exponent */
    double scale;   /* 2^-exponent when finite, else 0 (then ldexp) */
    const long *lo; /* NULL: 0 */
    const long *hi; /* NULL: batch */
    long batch;
    double lambda;      /* the classification point, in scaled-weight units */
    double free_total;  /* batch minus the bounds of clamped ranks */
    double free_weight; /* Σ w over free ranks */
} plan_ctx_t;

static double weight_of(const plan_ctx_t *c, int i)
{
    double s = c->speeds[i] > 0.0 ? c->speeds[i] : c->fill;
    /* A product by a power of two rounds like ldexp, and is cheaper. */
    return c->scale > 0.0 ? s * c->scale : ldexp(s, -c->exponent);
}

static long lo_of(const plan_ctx_t *c, int i)
{
    return c->lo != NULL ? c->lo[i] : 0;
}

/* A cap above the batch binds nothing; clamping it keeps sums in range. */
static long hi_of(const plan_ctx_t *c, int i)
{
    long h = c->hi != NULL ? c->hi[i] : c->batch;
    return h < c->batch ? h : c->batch;
}

static double plan_quota(const void *vctx, int i)
{
    const plan_ctx_t *c = vctx;
    double w = weight_of(c, i);
    double lo = (double)lo_of(c, i), hi = (double)hi_of(c, i);
    if (c->lo != NULL || c->hi != NULL) {
        double x = c->lambda * w;
        if (x >= hi) {
            return hi;
        }
        if (x <= lo) {
            return lo;
        }
    }
    if (!(c->free_weight > 0.0)) {
        return lo;
    }
    double q = c->free_total * w / c->free_weight;
    return q < lo ? lo : (q > hi ? hi : q);
}

/* At lambda, the bounds held by clamped ranks (samples) and the weight of
 * the free ones: Σ_i clamp(lambda·w_i, lo_i, hi_i) = *clamped + lambda ·
 * *free_weight, non-decreasing and continuous in lambda, Σlo at 0. */
static void classify(const plan_ctx_t *c, int ranks, double lambda, long *clamped,
                     double *free_weight)
{
    long held = 0;
    double wfree = 0.0;
    for (int i = 0; i < ranks; i++) {
        double w = weight_of(c, i);
        double x = lambda * w;
        if (x >= (double)hi_of(c, i)) {
            held += hi_of(c, i);
        } else if (x <= (double)lo_of(c, i)) {
            held += lo_of(c, i);
        } else {
            wfree += w;
        }
    }
    *clamped = held;
    *free_weight = wfree;
}

static double bits_midpoint(double lo, double hi)
{
    uint64_t a = order_bits(lo), b = order_bits(hi), m = a + (b - a) / 2;
    double mid = 0.0;
    memcpy(&mid, &m, sizeof mid);
    return mid;
}

/* Bounds given: lambda with Σ clamp(lambda·w) = batch, then the ranks it
 * clamps and the batch left to the free ones. Safeguarded Newton: the
 * sum is linear between breakpoints, so once lambda's segment holds the
 * root, (batch − clamped) / free weight is the root and the next pass
 * confirms it (typically 2–4 passes); a step that leaves the bracket
 * [lo, hi] with sum(lo) < batch <= sum(hi) bisects its bits instead (at
 * most 64 of those). */
static void solve_bounded(plan_ctx_t *c, int ranks)
{
    long clamped = 0;
    double wfree = 0.0, all = 0.0, top = 0.0; /* sum(top) = Σhi >= batch */
    for (int i = 0; i < ranks; i++) {
        double w = weight_of(c, i);
        double t = (double)hi_of(c, i) / w;
        top = t > top ? t : top;
        all += w;
    }
    double lambda = 0.0;
    classify(c, ranks, 0.0, &clamped, &wfree);
    if (clamped < c->batch) {
        double lo = 0.0, hi = top;
        lambda = (double)c->batch / all; /* the unbounded root: right when nothing binds */
        lambda = lambda > lo && lambda <= hi ? lambda : bits_midpoint(lo, hi);
        for (int pass = 0; pass < 256; pass++) {
            classify(c, ranks, lambda, &clamped, &wfree);
            if ((double)clamped + lambda * wfree >= (double)c->batch) {
                hi = lambda;
            } else {
                lo = lambda;
            }
            double root = wfree > 0.0 ? (double)(c->batch - clamped) / wfree : -1.0;
            if (root == lambda) {
                break;
            }
            if (nextafter(lo, hi) >= hi) {
                lambda = hi;
                break;
            }
            lambda = root > lo && root <= hi ? root : bits_midpoint(lo, hi);
        }
    }
    classify(c, ranks, lambda, &clamped, &wfree);
    c->lambda = lambda;
    c->free_total = (double)(c->batch - clamped);
    c->free_weight = wfree;
}

/* Moves units until every share is within its bounds (floating-point edge
 * cases only; the sum is kept): an excess goes to the rank with room whose
 * predicted time after it is least, a deficit comes from the rank with
 * slack whose predicted time is most. */
static void repair_bounds(const plan_ctx_t *c, int ranks, long *shards)
{
    long net = 0; /* units taken off over-cap ranks minus units added to under-min ones */
    for (int i = 0; i < ranks; i++) {
        if (shards[i] > hi_of(c, i)) {
            net += shards[i] - hi_of(c, i);
            shards[i] = hi_of(c, i);
        } else if (shards[i] < lo_of(c, i)) {
            net -= lo_of(c, i) - shards[i];
            shards[i] = lo_of(c, i);
        }
    }
    for (; net > 0; net--) {
        int best = -1;
        double best_t = INFINITY;
        for (int i = 0; i < ranks; i++) {
            double t = (double)(shards[i] + 1) / weight_of(c, i);
            if (shards[i] < hi_of(c, i) && t < best_t) {
                best = i;
                best_t = t;
            }
        }
        if (best < 0) {
            return;
        }
        shards[best]++;
    }
    for (; net < 0; net++) {
        int best = -1;
        double best_t = -1.0;
        for (int i = 0; i < ranks; i++) {
            double t = (double)shards[i] / weight_of(c, i);
            if (shards[i] > lo_of(c, i) && t > best_t) {
                best = i;
                best_t = t;
            }
        }
        if (best < 0) {
            return;
        }
        shards[best]--;
    }
}

int bl_part_plan(long batch, int ranks, const double *speeds, const long *min_shard,
                 const long *max_shard, long *shards, double *rem)
{
    if (batch < 0 || ranks < 1 || speeds == NULL || shards == NULL) {
        return -1;
    }
    plan_ctx_t c = {.speeds = speeds, .lo = min_shard, .hi = max_shard, .batch = batch};
    /* Unknown (0) speeds take the mean of the known ones; none known: all
     * equal, the even split. */
    double known = 0.0, largest = 0.0;
    int nknown = 0;
    for (int i = 0; i < ranks; i++) {
        if (!(speeds[i] >= 0.0) || !isfinite(speeds[i])) {
            return -1;
        }
        if (speeds[i] > 0.0) {
            known += speeds[i] / (double)ranks; /* divided first: no overflow */
            nknown++;
            largest = speeds[i] > largest ? speeds[i] : largest;
        }
    }
    c.fill = nknown > 0 ? known * ((double)ranks / (double)nknown) : 1.0;
    c.fill = c.fill > largest && nknown > 0 ? largest : c.fill;
    largest = largest > c.fill ? largest : c.fill;
    frexp(largest, &c.exponent);
    c.scale = ldexp(1.0, -c.exponent);
    c.scale = isfinite(c.scale) ? c.scale : 0.0;
    /* Bounds: 0 <= lo <= hi, Σlo <= batch <= Σhi (caps clamped to batch,
     * so the sums stay in range). */
    long sum_lo = 0, sum_hi = 0;
    for (int i = 0; i < ranks; i++) {
        long lo = lo_of(&c, i);
        long hi = max_shard != NULL ? max_shard[i] : batch;
        if (lo < 0 || hi < lo || lo > batch) {
            return -1;
        }
        sum_lo += lo;
        sum_hi += hi_of(&c, i);
        if (sum_lo > batch) {
            return -1;
        }
    }
    if (sum_hi < batch) {
        return -1;
    }
    if (min_shard == NULL && max_shard == NULL) {
        c.free_total = (double)batch;
        c.free_weight = 0.0;
        for (int i = 0; i < ranks; i++) {
            c.free_weight += weight_of(&c, i);
        }
    } else {
        solve_bounded(&c, ranks);
    }
    bl_part_round(batch, ranks, plan_quota, &c, rem, shards);
    if (min_shard != NULL || max_shard != NULL) {
        repair_bounds(&c, ranks, shards);
    }
    return 0;
}

int bl_plan_proportional(long batch, int ranks, const double *speeds, const long *min_shard,
                         const long *max_shard, long *shards)
{
    return bl_part_plan(batch, ranks, speeds, min_shard, max_shard, shards, NULL);
}

/* NaN on invalid input (ranks < 1, NULL arrays); +inf when a rank with a
 * shard has speed <= 0 (it never finishes). */
double bl_plan_step_time(int ranks, const long *shards, const double *speeds)
{
    if (ranks < 1 || shards == NULL || speeds == NULL) {
        return NAN;
    }
    double worst = 0.0;
    for (int i = 0; i < ranks; i++) {
        if (shards[i] <= 0) {
            continue;
        }
        double t = speeds[i] > 0.0 ? (double)shards[i] / speeds[i] : INFINITY;
        worst = t > worst ? t : worst;
    }
    return worst;
}

int bl_part_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}
