/* Tests of the pipeline simulator (partition/sim/pipe_sim.c): runs are
 * deterministic per seed; proportional learns a fixed 2x heterogeneity to
 * within 5 % of the optimal slowest stage and beats the static map; static
 * never migrates; noise alone moves little; unpaid migrations are counted
 * when the policy is misled about the bandwidth; decision times come from
 * the caller's clock; bad configurations are refused naming the field;
 * the largest size runs; every allocation is released, also on failure. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipe_sim.h"
#include "policy.h"
#include "sim.h"

static bl_pipe_sim_config_t config(bl_scenario_kind_t scenario, int policy)
{
    bl_pipe_sim_config_t c = BL_PIPE_SIM_CONFIG_DEFAULT;
    c.scenario = scenario;
    c.policy = policy;
    return c;
}

static bl_pipe_sim_result_t run(const bl_pipe_sim_config_t *c)
{
    bl_pipe_sim_result_t r;
    char err[256] = "";
    if (bl_pipe_sim_run(c, NULL, &r, err, sizeof err) != 0) {
        fail_msg("bl_pipe_sim_run: %s", err);
    }
    return r;
}

static void test_deterministic_per_seed(void **state)
{
    (void)state;
    for (int p = 0; p < BL_POLICY_COUNT; p++) {
        bl_pipe_sim_config_t c = config(BL_SCENARIO_DRIFT, p);
        c.steps = 200;
        bl_pipe_sim_result_t a = run(&c), b = run(&c);
        assert_memory_equal(&a, &b, sizeof a);
        c.seed = 2;
        bl_pipe_sim_result_t other = run(&c);
        assert_true(other.oracle_step_s != a.oracle_step_s);
    }
}

static void test_proportional_learns_fixed_2x(void **state)
{
    (void)state;
    bl_pipe_sim_config_t c = config(BL_SCENARIO_FIXED_2X, BL_POLICY_PROPORTIONAL);
    c.layers = 40;
    c.stages = 4;
    bl_pipe_sim_result_t r = run(&c);
    assert_true(r.gap >= 1.0 - 1e-12);
    if (!(r.gap <= 1.05)) {
        fail_msg("gap %.4f to the optimal slowest stage, want <= 1.05", r.gap);
    }
    if (!(r.mean_step_s < r.static_step_s)) {
        fail_msg("mean step %.6g s does not beat static's %.6g s", r.mean_step_s, r.static_step_s);
    }
    /* Without noise the oracle is a floor for every map. */
    assert_true(r.oracle_step_s <= r.mean_step_s);
    assert_true(r.oracle_step_s <= r.static_step_s);
    assert_true(r.migrations >= 1);
    assert_true(r.migrated_bytes > 0.0 && r.migration_s > 0.0);
    assert_true(r.decisions == c.steps / c.rebalance_every);
    assert_true(r.opt_max_over_mean >= 1.0 && r.max_over_mean >= 1.0);
    assert_true(fabs(r.bubble - (double)(16 + 4 - 1) / 16.0) < 1e-12);
}

static void test_static_never_migrates(void **state)
{
    (void)state;
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        bl_pipe_sim_config_t c = config((bl_scenario_kind_t)k, BL_POLICY_STATIC);
        c.steps = 200;
        bl_pipe_sim_result_t r = run(&c);
        assert_int_equal(r.migrations, 0);
        assert_int_equal(r.unpaid, 0);
        assert_true(r.migration_s == 0.0 && r.migrated_bytes == 0.0);
        /* Its map is the initial one throughout. */
        assert_true(fabs(r.mean_step_s - r.static_step_s) <= 1e-12 * r.static_step_s);
    }
}

/* Equal speeds under noise: the initial map is off the optimum only by the
 * anchors' error, learnt in the first windows (a move or two); after that
 * the noise must not make the policies chase it. */
#define NOISE_MAX_MIGRATIONS 3

static void test_noise_moves_little(void **state)
{
    (void)state;
    char report[512] = "";
    size_t used = 0;
    for (int p = BL_POLICY_PROPORTIONAL; p < BL_POLICY_COUNT; p++) {
        bl_pipe_sim_config_t c = config(BL_SCENARIO_NOISE, p);
        bl_pipe_sim_result_t r = run(&c);
        assert_true(r.unpaid <= r.migrations);
        if (r.migrations > NOISE_MAX_MIGRATIONS && used < sizeof report) {
            used += (size_t)snprintf(report + used, sizeof report - used,
                                     " %s: %ld migrations (%ld unpaid);",
                                     bl_policy_name((bl_policy_kind_t)p), r.migrations, r.unpaid);
        }
    }
    if (used > 0) {
        fail_msg("noise, 40 layers over 4 stages, 400 steps: more than %d migrations:%s",
                 NOISE_MAX_MIGRATIONS, report);
    }
}

/* The policy believes the link 1,000x faster than it is: its first move
 * costs far more than it thought and cannot pay back; the simulator says
 * so. */
static void test_unpaid_counted(void **state)
{
    (void)state;
    bl_pipe_sim_config_t c = config(BL_SCENARIO_FIXED_4X, BL_POLICY_PROPORTIONAL);
    c.bandwidth = 1e7;
    c.policy_bandwidth = 1e10;
    bl_pipe_sim_result_t r = run(&c);
    assert_true(r.migrations >= 1);
    assert_true(r.unpaid >= 1);
    assert_true(r.migration_s > r.migrated_bytes / 1e7);
    /* Told the truth, it makes no move that does not pay. */
    c.policy_bandwidth = 0.0;
    r = run(&c);
    assert_int_equal(r.unpaid, 0);
}

/* A clock that advances 1 ms at every read: every decision reads 1 ms. */
static double fake_clock(void *ctx)
{
    double *now = ctx;
    *now += 1e-3;
    return *now;
}

static void test_decisions_timed_by_the_callers_clock(void **state)
{
    (void)state;
    double now = 0.0;
    bl_pipe_sim_config_t c = config(BL_SCENARIO_FIXED_2X, BL_POLICY_BANDIT);
    c.steps = 100;
    c.clock = fake_clock;
    c.clock_ctx = &now;
    bl_pipe_sim_result_t r = run(&c);
    assert_int_equal(r.decisions, 20);
    assert_true(fabs(r.decision_ms_median - 1.0) < 1e-9);
    assert_true(fabs(r.decision_ms_max - 1.0) < 1e-9);
    assert_true(fabs(now - 2.0 * 20 * 1e-3) < 1e-12); /* two reads per decision, no others */
    c.clock = NULL;
    r = run(&c);
    assert_true(r.decision_ms_median == 0.0 && r.decision_ms_max == 0.0);
}

/* One bad field at a time; the message names it. */
static void test_bad_config(void **state)
{
    (void)state;
    struct {
        const char *field;
        bl_pipe_sim_config_t c;
    } cases[20];
    int n = 0;
#define BAD(member, value)                                                                         \
    do {                                                                                           \
        cases[n].field = #member;                                                                  \
        cases[n].c = config(BL_SCENARIO_FIXED_2X, BL_POLICY_PROPORTIONAL);                         \
        cases[n].c.member = (value);                                                               \
        n++;                                                                                       \
    } while (0)
    BAD(scenario, BL_SCENARIO_COUNT);
    BAD(layers, 0);
    BAD(layers, BL_PIPE_SIM_MAX_LAYERS + 1);
    BAD(stages, 0);
    BAD(stages, 41); /* more than the 40 layers */
    BAD(steps, 0);
    BAD(rebalance_every, 0);
    BAD(policy, BL_POLICY_COUNT);
    BAD(micro_batches, 0);
    BAD(horizon_steps, 0.0);
    BAD(horizon_steps, INFINITY);
    BAD(threshold, 1.0);
    BAD(threshold, NAN);
    BAD(bandwidth, 0.0);
    BAD(bandwidth, -1.0);
    BAD(latency_s, -1e-3);
    BAD(policy_bandwidth, NAN);
#undef BAD
    for (int k = 0; k < n; k++) {
        bl_pipe_sim_result_t r;
        char err[256] = "";
        assert_int_equal(bl_pipe_sim_run(&cases[k].c, NULL, &r, err, sizeof err), -1);
        size_t len = strlen(cases[k].field);
        if (strncmp(err, cases[k].field, len) != 0 || err[len] != ':') {
            fail_msg("case %d: message '%s' does not start with '%s:'", k, err, cases[k].field);
        }
    }
    char err[64] = "";
    bl_pipe_sim_result_t r;
    assert_int_equal(bl_pipe_sim_run(NULL, NULL, &r, err, sizeof err), -1);
    bl_pipe_sim_config_t c = config(BL_SCENARIO_FIXED_2X, BL_POLICY_PROPORTIONAL);
    assert_int_equal(bl_pipe_sim_run(&c, NULL, NULL, err, sizeof err), -1);
}

static void test_large_runs(void **state)
{
    (void)state;
    bl_pipe_sim_config_t c = config(BL_SCENARIO_FIXED_2X, BL_POLICY_PROPORTIONAL);
    c.layers = 200;
    c.stages = 64;
    c.micro_batches = 256;
    c.steps = 100;
    bl_pipe_sim_result_t r = run(&c);
    assert_true(isfinite(r.mean_step_s) && r.mean_step_s > 0.0);
    assert_true(r.gap >= 1.0 - 1e-12 && isfinite(r.gap));
    assert_true(r.mean_step_s < r.static_step_s);
    c.stages = 200; /* one layer each: the map cannot change */
    r = run(&c);
    assert_int_equal(r.migrations, 0);
    assert_true(fabs(r.gap - 1.0) < 1e-12);
}

/* ---- Allocation ------------------------------------------------------------------ */

typedef struct counting {
    long live, calls, fail_at; /* fail the fail_at-th call (1-based); 0: never */
} counting_t;

static void *counting_alloc(size_t nbytes, void *ctx)
{
    counting_t *k = ctx;
    k->calls++;
    if (k->fail_at > 0 && k->calls == k->fail_at) {
        return NULL;
    }
    void *p = malloc(nbytes);
    k->live += p != NULL;
    return p;
}

static void counting_release(void *ptr, void *ctx)
{
    counting_t *k = ctx;
    k->live--;
    free(ptr);
}

static void test_allocations_released(void **state)
{
    (void)state;
    bl_pipe_sim_config_t c = config(BL_SCENARIO_SPIKES, BL_POLICY_RL);
    c.steps = 50;
    counting_t k = {0};
    bl_part_allocator_t a = {counting_alloc, counting_release, &k};
    bl_pipe_sim_result_t r;
    char err[256] = "";
    assert_int_equal(bl_pipe_sim_run(&c, &a, &r, err, sizeof err), 0);
    assert_int_equal(k.live, 0);
    long total = k.calls;
    assert_true(total > 10);
    /* Every allocation failing in turn: the run fails with a message, or,
     * where the policy's solver falls back to the current map (restage.c),
     * goes on; either way nothing leaks. */
    long failed = 0;
    for (long n = 1; n <= total; n++) {
        counting_t f = {.fail_at = n};
        bl_part_allocator_t fa = {counting_alloc, counting_release, &f};
        err[0] = '\0';
        int rc = bl_pipe_sim_run(&c, &fa, &r, err, sizeof err);
        if (rc != 0) {
            assert_int_equal(rc, -1);
            assert_true(err[0] != '\0');
            failed++;
        }
        assert_int_equal(f.live, 0);
    }
    assert_true(failed >= 20); /* at least the run's own arrays */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_per_seed),
        cmocka_unit_test(test_proportional_learns_fixed_2x),
        cmocka_unit_test(test_static_never_migrates),
        cmocka_unit_test(test_noise_moves_little),
        cmocka_unit_test(test_unpaid_counted),
        cmocka_unit_test(test_decisions_timed_by_the_callers_clock),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_large_runs),
        cmocka_unit_test(test_allocations_released),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
