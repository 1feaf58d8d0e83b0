/* Tests of the speed estimator and the proportional plans
 * (partition/estimator.c, plan.c) on synthetic clusters
 * (partition_test.h): a rank with true speed s (samples/s) computes its
 * shard b in b / s seconds, times a seeded noise factor where a test asks
 * for noise. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "partition_test.h"
#include "policy.h"

#define MAX_RANKS 64

/* ---- Plans ------------------------------------------------------------- */

static void test_plan_examples(void **state)
{
    (void)state;
    long s[8];
    const double hetero[] = {1000.0, 1000.0, 2000.0, 4000.0};
    assert_int_equal(bl_plan_proportional(256, 4, hetero, NULL, NULL, s), 0);
    assert_plan(s, (const long[]){32, 32, 64, 128}, 4);
    assert_near(bl_plan_step_time(4, s, hetero), 0.032, 1e-15);
    /* an unknown speed (0) takes the mean of the known: 1000, 2000, 3000 */
    assert_int_equal(
        bl_plan_proportional(300, 3, (const double[]){1000.0, 0.0, 3000.0}, NULL, NULL, s), 0);
    assert_plan(s, (const long[]){50, 100, 150}, 3);
    /* none known: the even split, extra units to the lower ranks */
    assert_int_equal(bl_plan_proportional(10, 3, (const double[]){0.0, 0.0, 0.0}, NULL, NULL, s),
                     0);
    assert_plan(s, (const long[]){4, 3, 3}, 3);
    assert_int_equal(bl_plan_proportional(0, 2, hetero, NULL, NULL, s), 0);
    assert_plan(s, (const long[]){0, 0}, 2);
    /* a cap: rank 3 holds 100, the rest share 156 as 1:1:2 */
    const long cap[] = {100, 100, 100, 100};
    assert_int_equal(bl_plan_proportional(256, 4, hetero, NULL, cap, s), 0);
    assert_plan(s, (const long[]){39, 39, 78, 100}, 4);
    /* a floor: rank 0 needs 60, the rest share 196 as 1:2:4 */
    const long floor_[] = {60, 0, 0, 0};
    assert_int_equal(bl_plan_proportional(256, 4, hetero, floor_, NULL, s), 0);
    assert_plan(s, (const long[]){60, 28, 56, 112}, 4);
    /* both, binding on both sides at once */
    assert_int_equal(bl_plan_proportional(256, 4, hetero, floor_, cap, s), 0);
    assert_plan(s, (const long[]){60, 32, 64, 100}, 4);
}

static void test_plan_invalid(void **state)
{
    (void)state;
    long s[4];
    const double v[] = {1.0, 2.0, 3.0, 4.0};
    assert_int_equal(bl_plan_proportional(10, 4, v, (const long[]){3, 3, 3, 2}, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(10, 4, v, NULL, (const long[]){2, 2, 2, 3}, s), -1);
    assert_int_equal(bl_plan_proportional(10, 4, v, (const long[]){0, 3, 0, 0},
                                          (const long[]){10, 2, 10, 10}, s),
                     -1);
    assert_int_equal(bl_plan_proportional(10, 4, v, (const long[]){-1, 0, 0, 0}, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(-1, 4, v, NULL, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(10, 0, v, NULL, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(10, 4, NULL, NULL, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(10, 4, v, NULL, NULL, NULL), -1);
    assert_int_equal(bl_plan_proportional(10, 2, (const double[]){1.0, -1.0}, NULL, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(10, 2, (const double[]){1.0, NAN}, NULL, NULL, s), -1);
    assert_int_equal(bl_plan_proportional(10, 2, (const double[]){1.0, INFINITY}, NULL, NULL, s),
                     -1);
    /* the bounds exactly fill the batch: feasible, and forced */
    assert_int_equal(
        bl_plan_proportional(10, 4, v, (const long[]){1, 2, 3, 4}, (const long[]){1, 2, 3, 4}, s),
        0);
    assert_plan(s, (const long[]){1, 2, 3, 4}, 4);
}

static void test_step_time(void **state)
{
    (void)state;
    const double v[] = {100.0, 0.0, 50.0};
    assert_near(bl_plan_step_time(3, (const long[]){10, 0, 10}, v), 0.2, 1e-15);
    assert_true(isinf(bl_plan_step_time(3, (const long[]){10, 1, 10}, v)));
    assert_near(bl_plan_step_time(3, (const long[]){0, 0, 0}, v), 0.0, 0.0);
    assert_true(isnan(bl_plan_step_time(0, (const long[]){1}, v)));
}

/* Random speeds (some unknown, over six decades) and random feasible
 * bounds: every plan sums to the batch and keeps its bounds, and it is
 * proportional where the bounds allow: no rank below its cap could take a
 * unit and still finish before a rank above its floor finishes with one
 * unit less (a lambda exists between them). Without bounds it is exactly
 * bl_split_proportional's split. */
static void test_plan_random(void **state)
{
    (void)state;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    double v[MAX_RANKS], w[MAX_RANKS];
    long lo[MAX_RANKS], hi[MAX_RANKS], s[MAX_RANKS], ref[MAX_RANKS];
    for (int trial = 0; trial < 4000; trial++) {
        int n = 1 + (int)(next_random(&rng) % MAX_RANKS);
        long batch = (long)(next_random(&rng) % 5000);
        int any = 0;
        double sum = 0.0;
        for (int r = 0; r < n; r++) {
            v[r] = next_random(&rng) % 8 == 0 ? 0.0 : pow(10.0, 6.0 * uniform(&rng) - 3.0);
            any |= v[r] > 0.0;
            sum += v[r];
        }
        /* the weights the plan uses: unknown speeds at the mean known */
        int known = 0;
        for (int r = 0; r < n; r++) {
            known += v[r] > 0.0;
        }
        for (int r = 0; r < n; r++) {
            w[r] = v[r] > 0.0 ? v[r] : (any ? sum / known : 1.0);
        }
        assert_int_equal(bl_plan_proportional(batch, n, v, NULL, NULL, s), 0);
        assert_int_equal(plan_sum(n, s), batch);
        if (any && known == n) {
            assert_int_equal(bl_split_proportional(batch, n, v, ref), 0);
            assert_plan(s, ref, n);
        }
        /* bounds around an even share, feasible by construction */
        long share = batch / n;
        long sum_lo = 0, sum_hi = 0;
        for (int r = 0; r < n; r++) {
            lo[r] = (long)(next_random(&rng) % (unsigned long)(share + 1));
            hi[r] = share + (long)(next_random(&rng) % (unsigned long)(share + 2));
            sum_lo += lo[r];
            sum_hi += hi[r];
        }
        for (int r = 0; sum_hi < batch; r = (r + 1) % n) {
            hi[r]++;
            sum_hi++;
        }
        assert_true(sum_lo <= batch);
        assert_int_equal(bl_plan_proportional(batch, n, v, lo, hi, s), 0);
        assert_int_equal(plan_sum(n, s), batch);
        double below = INFINITY, above = 0.0;
        for (int r = 0; r < n; r++) {
            if (s[r] < lo[r] || s[r] > hi[r]) {
                fail_msg("trial %d: shard %d = %ld outside [%ld, %ld]", trial, r, s[r], lo[r],
                         hi[r]);
            }
            if (s[r] < hi[r]) {
                below = fmin(below, (double)(s[r] + 1) / w[r]);
            }
            if (s[r] > lo[r]) {
                above = fmax(above, (double)(s[r] - 1) / w[r]);
            }
        }
        if (above > below * (1.0 + 1e-9)) {
            fail_msg("trial %d: not proportional within the bounds (%g > %g)", trial, above, below);
        }
        /* and infeasible bounds are refused */
        if (sum_lo > 0) {
            assert_int_equal(bl_plan_proportional(sum_lo - 1, n, v, lo, NULL, s), -1);
        }
        assert_int_equal(bl_plan_proportional(sum_hi + 1, n, v, NULL, hi, s), -1);
    }
}

/* Many ranks: still the exact largest-remainder split (checked against
 * bl_split_proportional), and bounded plans keep their caps. */
static void test_plan_many_ranks(void **state)
{
    (void)state;
    enum { N = 4096 };
    static double v[N];
    static long s[N], ref[N], cap[N];
    uint64_t rng = 7;
    for (int r = 0; r < N; r++) {
        v[r] = 500.0 + 1500.0 * uniform(&rng);
        cap[r] = 80;
    }
    long batch = 64L * N + 1234;
    assert_int_equal(bl_plan_proportional(batch, N, v, NULL, NULL, s), 0);
    assert_int_equal(bl_split_proportional(batch, N, v, ref), 0);
    assert_plan(s, ref, N);
    assert_int_equal(bl_plan_proportional(batch, N, v, NULL, cap, s), 0);
    assert_int_equal(plan_sum(N, s), batch);
    for (int r = 0; r < N; r++) {
        assert_true(s[r] <= 80);
    }
}

/* ---- Estimator --------------------------------------------------------- */

static bl_rank_obs_t obs_at(double samples, double speed)
{
    bl_rank_obs_t o = {.samples = samples, .compute_s = samples / speed};
    return o;
}

static void test_estimator_basics(void **state)
{
    (void)state;
    bl_estimator_t *e = NULL;
    bl_estimator_params_t params = BL_ESTIMATOR_PARAMS_DEFAULT;
    assert_int_equal(bl_estimator_create(3, &params, NULL, &e), 0);
    const double *sp = bl_estimator_speeds(e);
    assert_near(sp[0], 0.0, 0.0);
    /* the first observation initialises; a rank with no samples keeps 0 */
    bl_rank_obs_t o[3] = {obs_at(100, 1000.0), obs_at(100, 2000.0), obs_at(0, 1.0)};
    assert_int_equal(bl_estimator_update(e, o, NULL, 0), 0);
    assert_near(sp[0], 1000.0, 1e-9);
    assert_near(sp[1], 2000.0, 1e-9);
    assert_near(sp[2], 0.0, 0.0);
    /* in band (5% < 4 · 2% floor): the EMAs of samples and seconds move by
     * alpha, and the speed is their ratio */
    const double moved = 100.0 / (0.1 + 0.3 * (100.0 / 1050.0 - 0.1));
    o[0] = obs_at(100, 1050.0);
    o[1] = obs_at(0, 1.0); /* no samples: rank 1 keeps its estimate */
    assert_int_equal(bl_estimator_update(e, o, NULL, 0), 0);
    assert_near(sp[0], moved, 1e-9);
    assert_near(sp[1], 2000.0, 1e-9);
    /* invalid observations: -1, nothing changes */
    o[0] = obs_at(100, 500.0);
    o[2].compute_s = -1.0;
    assert_int_equal(bl_estimator_update(e, o, NULL, 0), -1);
    assert_near(sp[0], moved, 1e-9);
    o[2].compute_s = NAN;
    assert_int_equal(bl_estimator_update(e, o, NULL, 0), -1);
    assert_int_equal(bl_estimator_update(e, NULL, NULL, 0), -1);
    bl_estimator_destroy(e);
    bl_estimator_destroy(NULL);
    /* invalid parameters */
    bl_estimator_params_t bad = params;
    bad.alpha = 0.0;
    assert_int_equal(bl_estimator_create(3, &bad, NULL, &e), -1);
    bad = params;
    bad.alpha = 1.5;
    assert_int_equal(bl_estimator_create(3, &bad, NULL, &e), -1);
    bad = params;
    bad.change_sigma = 0.0;
    assert_int_equal(bl_estimator_create(3, &bad, NULL, &e), -1);
    bad = params;
    bad.change_windows = 0;
    assert_int_equal(bl_estimator_create(3, &bad, NULL, &e), -1);
    assert_int_equal(bl_estimator_create(0, &params, NULL, &e), -1);
    assert_null(e);
}

static void test_estimator_changes(void **state)
{
    (void)state;
    bl_estimator_t *e = NULL;
    bl_estimator_params_t params = BL_ESTIMATOR_PARAMS_DEFAULT;
    assert_int_equal(bl_estimator_create(2, &params, NULL, &e), 0);
    const double *sp = bl_estimator_speeds(e);
    bl_rank_obs_t o[2];
    bl_speed_change_t ch[4];
    /* 1e-12 jitter on noise-free input is not a change */
    for (int w = 0; w < 50; w++) {
        double j = w % 2 == 0 ? 1.0 + 1e-12 : 1.0 - 1e-12;
        o[0] = obs_at(64, 1000.0 * j);
        o[1] = obs_at(64, 2000.0 / j);
        assert_int_equal(bl_estimator_update(e, o, ch, 4), 0);
    }
    /* one outlier window (rank 1 at half speed) then back: no change, and
     * the EMAs moved by alpha only (the seconds' EMA from 0.032 s toward
     * 0.064 s) */
    o[0] = obs_at(64, 1000.0);
    o[1] = obs_at(64, 1000.0);
    assert_int_equal(bl_estimator_update(e, o, ch, 4), 0);
    assert_near(sp[1], 64.0 / (0.032 + 0.3 * (0.064 - 0.032)), 1e-6);
    o[1] = obs_at(64, 2000.0);
    assert_int_equal(bl_estimator_update(e, o, ch, 4), 0);
    /* a real halving: two windows out of band, then the change */
    for (int w = 0; w < 20; w++) {
        assert_int_equal(bl_estimator_update(e, o, NULL, 0), 0);
    }
    o[1] = obs_at(64, 1000.0);
    assert_int_equal(bl_estimator_update(e, o, ch, 4), 0);
    assert_int_equal(bl_estimator_update(e, o, ch, 4), 1);
    assert_int_equal(ch[0].rank, 1);
    assert_near(ch[0].factor, 0.5, 1e-3);
    assert_near(sp[1], 1000.0, 1e-3);
    /* reported again by last_changes; max 0 still counts */
    memset(ch, 0, sizeof ch);
    assert_int_equal(bl_estimator_last_changes(e, ch, 4), 1);
    assert_int_equal(ch[0].rank, 1);
    assert_int_equal(bl_estimator_last_changes(e, NULL, 0), 1);
    /* a recovery is a change with factor 2 */
    o[1] = obs_at(64, 2000.0);
    assert_int_equal(bl_estimator_update(e, o, NULL, 0), 0);
    assert_int_equal(bl_estimator_update(e, o, ch, 0), 1);
    assert_int_equal(bl_estimator_last_changes(e, ch, 4), 1);
    assert_near(ch[0].factor, 2.0, 2e-3);
    assert_int_equal(bl_estimator_update(e, o, ch, 4), 0);
    assert_int_equal(bl_estimator_last_changes(e, ch, 4), 0);
    bl_estimator_destroy(e);
}

/* ±5% noise: no false changes in 500 windows; then a real halving of rank
 * 2 is reported within 3 windows with a factor near 0.5. */
static void test_estimator_noise(void **state)
{
    (void)state;
    bl_estimator_t *e = NULL;
    assert_int_equal(bl_estimator_create(4, NULL, NULL, &e), 0);
    double v[4] = {1000.0, 1000.0, 1000.0, 1000.0};
    const long plan[4] = {64, 64, 64, 64};
    bl_rank_obs_t o[4];
    bl_speed_change_t ch[4];
    uint64_t rng = 42;
    for (int w = 0; w < 500; w++) {
        run_window(4, v, plan, 0.05, &rng, o);
        if (bl_estimator_update(e, o, ch, 4) != 0) {
            fail_msg("window %d: a false change on rank %d (factor %g)", w, ch[0].rank,
                     ch[0].factor);
        }
    }
    v[2] = 500.0;
    int found = -1;
    for (int w = 0; w < 3 && found < 0; w++) {
        run_window(4, v, plan, 0.05, &rng, o);
        int n = bl_estimator_update(e, o, ch, 4);
        if (n > 0) {
            assert_int_equal(n, 1);
            assert_int_equal(ch[0].rank, 2);
            assert_true(ch[0].factor > 0.45 && ch[0].factor < 0.55);
            found = w;
        }
    }
    assert_true(found >= 0);
    bl_estimator_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_examples),     cmocka_unit_test(test_plan_invalid),
        cmocka_unit_test(test_step_time),         cmocka_unit_test(test_plan_random),
        cmocka_unit_test(test_plan_many_ranks),   cmocka_unit_test(test_estimator_basics),
        cmocka_unit_test(test_estimator_changes), cmocka_unit_test(test_estimator_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
