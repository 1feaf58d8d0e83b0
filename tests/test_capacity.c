/* Unit tests of the CPU budgets (partition/capacity.h) and of the shard
 * policies under a CPU quota (policy.h's bl_policy_set_cpu_quotas):
 *   - bl_part_cpu_caps on the figures measured on a real job (rank 1 at
 *     half a core: 0.000216 CPU s a sample, 0.0069 beyond them a step;
 *     rank 0 at 7766 samples/s with 0.0057 s a step beyond compute) gives
 *     rank 1 44 samples, the sweep's best split 212,44; no cap without a
 *     budget, nor when every rank has one; a budget that fits nothing
 *     caps at 0;
 *   - a simulated 2-rank job whose rank 1 stalls when its CPU demand per
 *     step exceeds its quota: proportional, bandit and rl, told the quota,
 *     settle within two samples of the split where rank 1's demand meets
 *     its quota (45), while proportional without the quota settles where
 *     rank 1 still stalls (its average speed), and static stays even;
 *   - bad quotas and a bad obs.cpu_s are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "capacity.h"
#include "partition_test.h"
#include "policy.h"

enum { B = 256 };

static void test_caps_measured(void **state)
{
    (void)state;
    const double speed[2] = {7766.0, 4000.0};
    const bl_cpu_budget_t budget[2] = {{0},
                                       {.quota = 0.5, .per_sample = 0.000216, .per_step = 0.0069}};
    long cap[2] = {0, 0};
    assert_int_equal(bl_part_cpu_caps(2, B, speed, budget, 0.0057, cap), 1);
    assert_int_equal(cap[0], B);
    assert_int_equal(cap[1], 44);
    /* A larger quota allows more, a larger overhead less. */
    bl_cpu_budget_t more[2] = {budget[0], budget[1]};
    more[1].quota = 0.8;
    assert_int_equal(bl_part_cpu_caps(2, B, speed, more, 0.0057, cap), 1);
    assert_true(cap[1] > 60);
    more[1] = budget[1];
    more[1].per_step = 0.02; /* more than half of any step: nothing fits */
    assert_int_equal(bl_part_cpu_caps(2, B, speed, more, 0.0057, cap), 1);
    assert_int_equal(cap[1], 0);
}

static void test_caps_none(void **state)
{
    (void)state;
    const double speed[3] = {1000.0, 1000.0, 1000.0};
    long cap[3];
    /* No budget known: a quota without a measured cost, or none at all. */
    const bl_cpu_budget_t unknown[3] = {{0.0, 0.0, 0.0}, {0.5, 0.0, 0.0}, {0.0, 0.0, 0.0}};
    assert_int_equal(bl_part_cpu_caps(3, B, speed, unknown, 0.0, cap), 0);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(cap[r], B);
    }
    /* Every rank under a quota: none sets the pace, nothing is capped. */
    const bl_cpu_budget_t all[3] = {{0.5, 1e-3, 0.0}, {0.5, 1e-3, 0.0}, {0.5, 1e-3, 0.0}};
    assert_int_equal(bl_part_cpu_caps(3, B, speed, all, 0.0, cap), 0);
}

/* The simulated job: rank 0 computes at V0 samples a second and spends
 * OVER0 CPU seconds a step beyond; rank 1 needs K1 CPU seconds a sample and
 * C1 a step beyond, and may use QUOTA of the step's wall time. When its
 * demand exceeds that, it stalls until the quota covers it, and rank 0
 * waits. One step per window. */
#define V0    7400.0
#define OVER0 0.005
#define K1    0.000216
#define C1    0.007
#define QUOTA 0.5

static double job_window(const long *plan, bl_rank_obs_t *obs)
{
    const double compute0 = (double)plan[0] / V0;
    const double pace = compute0 + OVER0; /* the step without rank 1's stalls */
    const double demand = C1 + K1 * (double)plan[1];
    const double stall = demand > QUOTA * pace ? demand / QUOTA - pace : 0.0;
    memset(obs, 0, 2 * sizeof *obs);
    obs[0] = (bl_rank_obs_t){.samples = (double)plan[0],
                             .compute_s = compute0,
                             .comm_s = OVER0 + stall,
                             .wait_s = stall,
                             .cpu_s = compute0 + OVER0};
    obs[1] = (bl_rank_obs_t){.samples = (double)plan[1],
                             .compute_s = K1 * (double)plan[1] + stall,
                             .comm_s = C1,
                             .cpu_s = demand};
    return pace + stall;
}

/* A policy of kind for the simulated job's 2 ranks and batch B. */
static bl_policy_t *two_rank_policy(bl_policy_kind_t kind)
{
    bl_policy_config_t c = {.kind = kind,
                            .ranks = 2,
                            .batch = B,
                            .deadband = 0.02,
                            .estimator = BL_ESTIMATOR_PARAMS_DEFAULT};
    bl_policy_t *p = NULL;
    char err[128];
    assert_int_equal(bl_policy_create(&c, NULL, &p, err, sizeof err), 0);
    return p;
}

/* Runs `windows` windows of a policy of kind from the even split, rank 1
 * under the quota when told, and returns rank 1's last shard. */
static long settle(bl_policy_kind_t kind, int told, int windows)
{
    bl_policy_t *p = two_rank_policy(kind);
    const double quotas[2] = {0.0, QUOTA};
    if (told) {
        assert_int_equal(bl_policy_set_cpu_quotas(p, quotas), 0);
    }
    long plan[2] = {B / 2, B / 2};
    for (int w = 0; w < windows; w++) {
        bl_rank_obs_t obs[2];
        double step_s = job_window(plan, obs);
        assert_int_equal(bl_policy_decide(p, obs, step_s, plan, plan, NULL), 0);
        assert_int_equal(plan[0] + plan[1], B);
    }
    bl_policy_destroy(p);
    return plan[1];
}

static void test_policies_under_quota(void **state)
{
    (void)state;
    /* Where rank 1's demand meets its quota: C1 + K1·b = QUOTA·((B − b)/V0
     * + OVER0), b = 45.1. */
    const double meet = (QUOTA * ((double)B / V0 + OVER0) - C1) / (K1 + QUOTA / V0);
    assert_true(meet > 44.0 && meet < 46.0);
    const bl_policy_kind_t kinds[] = {BL_POLICY_PROPORTIONAL, BL_POLICY_BANDIT, BL_POLICY_RL};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        long b1 = settle(kinds[i], 1, 60);
        if (!(fabs((double)b1 - meet) <= 2.0)) {
            fail_msg("%s with the quota: rank 1 settled at %ld, want %.1f within 2",
                     bl_policy_name(kinds[i]), b1, meet);
        }
    }
    /* Without the quota, proportional follows rank 1's average speed,
     * which keeps it stalling: well above the meeting point. */
    long blind = settle(BL_POLICY_PROPORTIONAL, 0, 60);
    if (!(blind > meet + 10.0)) {
        fail_msg("proportional without the quota settled at %ld, not above %.1f", blind, meet);
    }
    /* static never moves, quota or not. */
    assert_int_equal(settle(BL_POLICY_STATIC, 1, 20), B / 2);
}

static void test_bad_quotas(void **state)
{
    (void)state;
    bl_policy_t *p = two_rank_policy(BL_POLICY_PROPORTIONAL);
    const double negative[2] = {0.0, -0.5}, nan[2] = {NAN, 0.5}, none[2] = {0.0, 0.0};
    assert_int_equal(bl_policy_set_cpu_quotas(p, negative), -1);
    assert_int_equal(bl_policy_set_cpu_quotas(p, nan), -1);
    assert_int_equal(bl_policy_set_cpu_quotas(p, NULL), -1);
    assert_int_equal(bl_policy_set_cpu_quotas(NULL, none), -1);
    assert_int_equal(bl_policy_set_cpu_quotas(p, none), 0);
    /* A window whose CPU seconds are negative is refused, naming them. */
    long plan[2] = {B / 2, B / 2}, next[2];
    bl_rank_obs_t obs[2];
    double step_s = job_window(plan, obs);
    obs[1].cpu_s = -1.0;
    bl_decision_t d;
    assert_int_equal(bl_policy_decide(p, obs, step_s, plan, next, &d), -1);
    assert_string_equal(d.action, "invalid obs.cpu_s: negative or not finite");
    bl_policy_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps_measured),
        cmocka_unit_test(test_caps_none),
        cmocka_unit_test(test_policies_under_quota),
        cmocka_unit_test(test_bad_quotas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
