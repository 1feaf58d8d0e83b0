/* Proportional shard plans under per-rank bounds, their largest-remainder
 * rounding, and a plan's predicted step time. Units: speeds in samples per
 * second of compute, shards in samples, times in seconds. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "partition.h"
#include "policy.h"

/* ---- Largest-remainder rounding -------------------------------------- */

/* Non-negative doubles order like their bit patterns read as unsigned
 * integers, so a threshold among them can be bisected exactly. */
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

/* How many remainders have bits >= threshold. */
static int count_at_least(long total, int parts, bl_part_quota_fn quota, const void *ctx,
                          const double *rem, uint64_t threshold)
{
    int n = 0;
    for (int i = 0; i < parts; i++) {
        n += order_bits(remainder_at(total, quota, ctx, rem, i)) >= threshold;
    }
    return n;
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
    /* The left-th largest remainder v: count(>= v) >= left > count(> v).
     * Invariant: count(>= lo) >= left (lo = 0 counts all), count(>= hi) <
     * left (no remainder reaches 1). */
    int k = (int)left;
    uint64_t lo = 0, hi = order_bits(1.0);
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (count_at_least(total, parts, quota, ctx, rem, mid) >= k) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    /* Everything above v gets a unit, then ties at v in index order. */
    int above = count_at_least(total, parts, quota, ctx, rem, lo + 1);
    int ties = k - above;
    for (int i = 0; i < parts; i++) {
        uint64_t b = order_bits(remainder_at(total, quota, ctx, rem, i));
        if (b > lo) {
            shares[i]++;
        } else if (b == lo && ties > 0) {
            shares[i]++;
            ties--;
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
    double fill;      /* the weight of a rank with speed 0: the mean known speed */
    int exponent;     /* weights scaled by 2^-exponent */
    const long *lo;   /* NULL: 0 */
    const long *hi;   /* NULL: batch */
    long batch;
    double lambda;    /* the classification point, in scaled-weight units */
    double free_total; /* batch minus the bounds of clamped ranks */
    double free_weight; /* Σ w over free ranks */
} plan_ctx_t;

static double weight_of(const plan_ctx_t *c, int i)
{
    return ldexp(c->speeds[i] > 0.0 ? c->speeds[i] : c->fill, -c->exponent);
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

/* Σ_i clamp(lambda·w_i, lo_i, hi_i): non-decreasing and continuous in
 * lambda, from Σlo at 0 to Σhi. */
static double clamped_sum(const plan_ctx_t *c, int ranks, double lambda)
{
    double s = 0.0;
    for (int i = 0; i < ranks; i++) {
        double x = lambda * weight_of(c, i);
        double lo = (double)lo_of(c, i), hi = (double)hi_of(c, i);
        s += x < lo ? lo : (x > hi ? hi : x);
    }
    return s;
}

/* Bounds given: the smallest lambda (to the last bit) with clamped_sum >=
 * batch, then the ranks it clamps and the batch left to the free ones. */
static void solve_bounded(plan_ctx_t *c, int ranks)
{
    double top = 0.0; /* clamped_sum(top) = Σhi >= batch */
    for (int i = 0; i < ranks; i++) {
        double t = (double)hi_of(c, i) / weight_of(c, i);
        top = t > top ? t : top;
    }
    double lambda = 0.0;
    if (clamped_sum(c, ranks, 0.0) < (double)c->batch) {
        uint64_t lo = 0, hi = order_bits(top);
        while (hi - lo > 1) {
            uint64_t mid = lo + (hi - lo) / 2;
            double m = 0.0;
            memcpy(&m, &mid, sizeof m);
            if (clamped_sum(c, ranks, m) >= (double)c->batch) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        memcpy(&lambda, &hi, sizeof lambda);
    }
    c->lambda = lambda;
    long clamped = 0;
    double wfree = 0.0;
    for (int i = 0; i < ranks; i++) {
        double w = weight_of(c, i);
        double x = lambda * w;
        if (x >= (double)hi_of(c, i)) {
            clamped += hi_of(c, i);
        } else if (x <= (double)lo_of(c, i)) {
            clamped += lo_of(c, i);
        } else {
            wfree += w;
        }
    }
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
