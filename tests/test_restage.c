/* Tests of the stage-map policy (partition/restage.c): the estimates
 * recover stage speeds and layer costs from per-layer times; proportional
 * moves to the optimal map when the move pays back and holds when it would
 * not (horizon, threshold, noise); static never moves; bandit and rl never
 * make a move that does not pay back; migrations teach the bandwidth; every
 * bad config and observation is refused naming the field. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "restage.h"

enum { L = 8, S = 2 };

/* True per-step costs (seconds at speed 1) and the anchors the policy is
 * given: the truth times ±20 %, so it must learn. */
static const double true_cost[L] = {4e-3, 1e-4, 3e-3, 1e-4, 3e-3, 1e-4, 2e-3, 1e-4};
static const double anchor[L] = {4.8, 0.08, 2.4, 0.12, 3.6, 0.08, 1.6, 0.12};
static const double layer_bytes[L] = {4e5, 0, 3e5, 0, 3e5, 0, 2e5, 0};

static bl_restage_config_t config(bl_policy_kind_t kind)
{
    bl_restage_config_t c = {.kind = kind,
                             .layers = L,
                             .stages = S,
                             .anchor = anchor,
                             .layer_bytes = layer_bytes,
                             .edge_bytes = NULL,
                             .bandwidth = 1e9,
                             .latency_s = 1e-3,
                             .horizon_steps = 100.0,
                             .threshold = 0.03,
                             .seed = 7,
                             .estimator = (bl_estimator_params_t)BL_ESTIMATOR_PARAMS_DEFAULT};
    return c;
}

static bl_restage_t *create(const bl_restage_config_t *c)
{
    bl_restage_t *r = NULL;
    char err[256] = "";
    if (bl_restage_create(c, NULL, &r, err, sizeof err) != 0) {
        fail_msg("create: %s", err);
    }
    return r;
}

/* The window a map shows when stage s runs at speed[s]: each layer's time
 * on its stage; the step is the slowest stage. */
static void observe(const int *first, const double *speed, double *layer_s, double *step_s)
{
    *step_s = 0.0;
    for (int s = 0; s < S; s++) {
        double stage = 0.0;
        for (int i = first[s]; i < first[s + 1]; i++) {
            layer_s[i] = true_cost[i] / speed[s];
            stage += layer_s[i];
        }
        *step_s = stage > *step_s ? stage : *step_s;
    }
}

/* One decision on the window that map first shows at speeds speed; returns
 * whether it moved (first then holds the new map). A move pays back within
 * the horizon and is predicted faster; a hold leaves the map as it was. */
static int decide_once(bl_restage_t *r, int *first, const double *speed)
{
    double layer_s[L], step_s;
    observe(first, speed, layer_s, &step_s);
    bl_restage_obs_t obs = {.first = first, .layer_s = layer_s, .step_s = step_s};
    int next[S + 1];
    bl_restage_decision_t d;
    assert_int_equal(bl_restage_decide(r, &obs, next, &d), 0);
    if (d.changed) {
        assert_true(d.payback_steps <= 100.0);
        assert_true(d.best_s < d.current_s);
        bl_restage_migrated(r, bl_restage_move_bytes(r, first, next), d.move_s);
        memcpy(first, next, sizeof next);
    } else {
        assert_memory_equal(next, first, sizeof next);
    }
    return d.changed;
}

/* Runs windows until the policy settles; returns the moves made; the map
 * ends in first. */
static int run_windows(bl_restage_t *r, int *first, const double *speed, int windows)
{
    int moves = 0;
    for (int w = 0; w < windows; w++) {
        moves += decide_once(r, first, speed);
    }
    return moves;
}

/* The optimum for the true costs and speeds. */
static double optimum(const double *speed, int *best)
{
    bl_pipe_problem_t p = {.layers = L, .cost = true_cost, .stages = S, .speed = speed};
    assert_int_equal(bl_pipe_partition_solve(&p, best, NULL), 0);
    return bl_pipe_partition_time(&p, best);
}

static double time_of(const int *first, const double *speed)
{
    bl_pipe_problem_t p = {.layers = L, .cost = true_cost, .stages = S, .speed = speed};
    return bl_pipe_partition_time(&p, first);
}

static void test_proportional_moves_off_a_slow_stage(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    /* Stage 1 twice as slow and holding most layers: its 16.6 ms against
     * stage 0's 4.1 ms; the best map (0-4, 5-7) takes 10.2 ms. */
    const double speed[S] = {1.0, 0.5};
    int first[S + 1] = {0, 2, L};
    int moves = run_windows(r, first, speed, 12);
    int best[S + 1];
    double opt = optimum(speed, best);
    assert_true(moves >= 1 && moves <= 3); /* no churn once there */
    assert_true(time_of(first, speed) <= opt * 1.0 + 1e-12);
    assert_memory_equal(first, best, sizeof best);
    /* The learnt speeds have the true ratio, whatever the anchors' units. */
    const double *v = bl_restage_stage_speeds(r);
    assert_true(fabs(v[1] / v[0] - 0.5) < 0.02);
    bl_restage_destroy(r);
}

static void test_holds_when_balanced(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    const double speed[S] = {1.0, 1.0};
    int best[S + 1];
    optimum(speed, best);
    int first[S + 1];
    memcpy(first, best, sizeof first);
    assert_int_equal(run_windows(r, first, speed, 10), 0);
    bl_restage_destroy(r);
}

/* The windows until the policy moves (at most max; max + 1: never). */
static int windows_until_move(bl_restage_t *r, int *first, const double *speed, int max)
{
    for (int w = 1; w <= max; w++) {
        if (decide_once(r, first, speed)) {
            return w;
        }
    }
    return max + 1;
}

/* A strong imbalance (a stage twice as slow, a gain far above
 * BL_RESTAGE_STRONG_GAIN and the noise) moves at the first window's end; a
 * modest one (a gain of about 10 %) must show the same map twice. */
static void test_strong_gain_moves_at_once(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    const double slow[S] = {1.0, 0.5};
    int first[S + 1] = {0, 2, L};
    assert_int_equal(decide_once(r, first, slow), 1);
    bl_restage_destroy(r);

    /* Over a range of slowdowns from the even map: a first window whose
     * predicted gain is below the strong gain never moves; a strong one
     * does; and a modest one moves after more windows. */
    int strong_seen = 0, modest_moved = 0;
    for (double v = 0.95; v > 0.3; v -= 0.05) {
        r = create(&c);
        const double speed[S] = {1.0, v};
        int even[S + 1] = {0, 4, L};
        double layer_s[L], step_s;
        observe(even, speed, layer_s, &step_s);
        bl_restage_obs_t obs = {.first = even, .layer_s = layer_s, .step_s = step_s};
        int next[S + 1];
        bl_restage_decision_t d;
        assert_int_equal(bl_restage_decide(r, &obs, next, &d), 0);
        const double predicted = (d.current_s - d.best_s) / d.current_s;
        if (predicted < BL_RESTAGE_STRONG_GAIN) {
            assert_false(d.changed);
            if (predicted > 2.0 * c.threshold && windows_until_move(r, even, speed, 4) <= 4) {
                modest_moved = 1;
            }
        } else {
            strong_seen += d.changed;
        }
        bl_restage_destroy(r);
    }
    assert_true(strong_seen > 0);
    assert_true(modest_moved);
}

/* After a steady history a sudden slowdown's first window is an outlier
 * (a spike proposes nothing), so a strong change moves at the second
 * window. A fast move that the next windows undo (the slowdown lasted a
 * window or two) was a transient: the fast path rests, and the next strong
 * change must show its map twice more, a window later. */
static void test_undone_fast_move_rests_the_fast_path(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    const double equal[S] = {1.0, 1.0}, slow1[S] = {1.0, 0.4}, slow0[S] = {0.4, 1.0};
    int first[S + 1], even[S + 1];
    optimum(equal, even);
    memcpy(first, even, sizeof first);
    assert_int_equal(windows_until_move(r, first, equal, 3), 4);
    const int fast = windows_until_move(r, first, slow1, 4);
    assert_int_equal(fast, 2);
    assert_true(windows_until_move(r, first, equal, 4) <= 3); /* back, the slowdown gone */
    assert_memory_equal(first, even, sizeof even);
    assert_int_equal(windows_until_move(r, first, equal, 3), 4);
    assert_int_equal(windows_until_move(r, first, slow0, 5), fast + 1);
    bl_restage_destroy(r);
}

/* The moves policy c makes over `windows` windows from map 0-3,4-7 when
 * stage 1 runs at speed `slow` (stage 0 at 1). */
static int moves_from_even_map(bl_restage_config_t c, double slow, int windows)
{
    bl_restage_t *r = create(&c);
    const double speed[S] = {1.0, slow};
    int first[S + 1] = {0, 4, L};
    int moves = run_windows(r, first, speed, windows);
    bl_restage_destroy(r);
    return moves;
}

/* Moving 1.2 MB at 1 kB/s never pays back within 100 steps: every kind
 * holds, however slow a stage is. */
static void test_no_move_that_does_not_pay_back(void **state)
{
    for (int kind = BL_POLICY_STATIC; kind < BL_POLICY_COUNT; kind++) {
        bl_restage_config_t c = config((bl_policy_kind_t)kind);
        c.bandwidth = 1e3;
        assert_int_equal(moves_from_even_map(c, 0.25, 30), 0);
    }
}

/* A gain below the threshold is left alone by proportional; static never
 * moves at all. (With stage 1 at 0.25 the best map is about twice as fast.) */
static void test_threshold_and_static(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    assert_true(moves_from_even_map(c, 0.25, 10) >= 1); /* not vacuous */
    c.threshold = 0.9;
    assert_int_equal(moves_from_even_map(c, 0.25, 10), 0);
    assert_int_equal(moves_from_even_map(config(BL_POLICY_STATIC), 0.3, 10), 0);
}

/* bandit and rl reach the optimum on a fixed slow stage too (each makes
 * the admissible move at least once and settles). */
static void test_bandit_and_rl_reach_the_optimum(void **state)
{
    bl_policy_kind_t kinds[] = {BL_POLICY_BANDIT, BL_POLICY_RL};
    for (int k = 0; k < 2; k++) {
        bl_restage_config_t c = config(kinds[k]);
        bl_restage_t *r = create(&c);
        const double speed[S] = {0.5, 1.0};
        int first[S + 1] = {0, 4, L};
        int moves = run_windows(r, first, speed, 40);
        int best[S + 1];
        double opt = optimum(speed, best);
        assert_true(moves >= 1);
        assert_true(time_of(first, speed) <= opt * 1.02);
        bl_restage_destroy(r);
    }
}

static void test_migrations_teach_the_bandwidth(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    for (int i = 0; i < 20; i++) {
        bl_restage_migrated(r, 1e6, 1e-3 + 1e6 / 2e8); /* 200 MB/s plus the latency */
    }
    assert_true(fabs(bl_restage_bandwidth(r) / 2e8 - 1.0) < 0.01);
    bl_restage_migrated(r, 1e6, -1.0); /* ignored */
    bl_restage_migrated(r, 0.0, 1.0);
    assert_true(fabs(bl_restage_bandwidth(r) / 2e8 - 1.0) < 0.01);
    const int from[S + 1] = {0, 4, L}, to[S + 1] = {0, 2, L};
    assert_true(bl_restage_move_bytes(r, from, to) == layer_bytes[2] + layer_bytes[3]);
    assert_true(bl_restage_move_bytes(r, from, from) == 0.0);
    bl_restage_destroy(r);
}

/* One window on both policies, which must decide alike; a move is applied
 * to the shared map and its measured cost charged to both. */
static void decide_alike(bl_restage_t *a, bl_restage_t *b, int *first, const double *speed)
{
    double layer_s[L], step_s;
    observe(first, speed, layer_s, &step_s);
    bl_restage_obs_t obs = {.first = first, .layer_s = layer_s, .step_s = step_s};
    int na[S + 1], nb[S + 1];
    bl_restage_decision_t da, db;
    assert_int_equal(bl_restage_decide(a, &obs, na, &da), 0);
    assert_int_equal(bl_restage_decide(b, &obs, nb, &db), 0);
    assert_memory_equal(na, nb, sizeof na);
    assert_int_equal(da.changed, db.changed);
    if (da.changed) {
        double bytes = bl_restage_move_bytes(a, first, na);
        bl_restage_migrated(a, bytes, da.move_s);
        bl_restage_migrated(b, bytes, da.move_s);
        memcpy(first, na, sizeof na);
    }
}

/* Saved after 12 windows and loaded into a fresh policy, the stage policy
 * decides exactly as the original through a speed change, for every kind,
 * and both end with the same state. */
static void test_state_resumes_exactly(void **state)
{
    (void)state;
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        bl_restage_config_t c = config((bl_policy_kind_t)k);
        bl_restage_t *a = create(&c);
        int first[S + 1] = {0, 4, L};
        const double slow0[S] = {0.5, 1.0}, slow1[S] = {1.0, 0.4};
        run_windows(a, first, slow0, 12);
        size_t n = bl_restage_state_bytes(a);
        unsigned char *saved = malloc(n), *sa = malloc(n), *sb = malloc(n);
        assert_true(saved != NULL && sa != NULL && sb != NULL);
        bl_restage_state_save(a, saved);
        bl_restage_t *b = create(&c);
        char err[256] = "";
        assert_int_equal(bl_restage_state_load(b, saved, n, err, sizeof err), 0);
        for (int w = 0; w < 30; w++) {
            decide_alike(a, b, first, w < 3 ? slow0 : slow1);
        }
        bl_restage_state_save(a, sa);
        bl_restage_state_save(b, sb);
        assert_memory_equal(sa, sb, n);
        free(saved);
        free(sa);
        free(sb);
        bl_restage_destroy(a);
        bl_restage_destroy(b);
    }
}

/* Another kind, another stage count, a short buffer or NaN times are
 * refused with the reason, and the policy is left as it was. */
static void test_state_refused(void **state)
{
    (void)state;
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    int first[S + 1] = {0, 4, L};
    const double speed[S] = {0.5, 1.0};
    run_windows(r, first, speed, 5);
    size_t n = bl_restage_state_bytes(r);
    unsigned char *before = malloc(n), *after = malloc(n);
    assert_true(before != NULL && after != NULL);
    bl_restage_state_save(r, before);
    char err[256] = "";

    bl_restage_config_t c3 = config(BL_POLICY_PROPORTIONAL);
    c3.stages = 3;
    bl_restage_t *three = create(&c3);
    size_t n3 = bl_restage_state_bytes(three);
    unsigned char *other = malloc(n3 > n ? n3 : n);
    assert_non_null(other);
    bl_restage_state_save(three, other);
    assert_int_equal(bl_restage_state_load(r, other, n3, err, sizeof err), -1);
    assert_non_null(
        strstr(err, "not the state of this policy (proportional, 8 layers on 2 stages)"));

    bl_restage_config_t cb = config(BL_POLICY_BANDIT);
    bl_restage_t *bandit = create(&cb);
    bl_restage_state_save(bandit, other);
    assert_int_equal(bl_restage_state_load(r, other, n, err, sizeof err), -1);
    assert_non_null(strstr(err, "(proportional, 8 layers on 2 stages)"));

    assert_int_equal(bl_restage_state_load(r, before, n - 1, err, sizeof err), -1);

    /* The first learnt layer cost, after the headers (kind, L, S, the
     * estimator's S) and the estimator's 7 doubles and 2 ints per stage. */
    memcpy(other, before, n);
    size_t cost_at = 4 * sizeof(int) + S * (7 * sizeof(double) + 2 * sizeof(int));
    memset(other + cost_at, 0xff, sizeof(double));
    assert_int_equal(bl_restage_state_load(r, other, n, err, sizeof err), -1);
    assert_non_null(strstr(err, "values out of range"));

    bl_restage_state_save(r, after);
    assert_memory_equal(before, after, n);
    free(before);
    free(after);
    free(other);
    bl_restage_destroy(three);
    bl_restage_destroy(bandit);
    bl_restage_destroy(r);
}

static void expect_config_error(bl_restage_config_t c, const char *words)
{
    bl_restage_t *r = NULL;
    char err[256] = "";
    assert_int_equal(bl_restage_create(&c, NULL, &r, err, sizeof err), -1);
    assert_null(r);
    if (strstr(err, words) == NULL) {
        fail_msg("expected '%s' in '%s'", words, err);
    }
}

static void test_bad_configs(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    c.kind = BL_POLICY_COUNT;
    expect_config_error(c, "kind 4 is not a policy");
    c = config(BL_POLICY_PROPORTIONAL);
    c.stages = L + 1;
    expect_config_error(c, "9 stages over 8 layers");
    c.stages = 0;
    expect_config_error(c, "0 stages over 8 layers");
    c = config(BL_POLICY_PROPORTIONAL);
    c.anchor = NULL;
    expect_config_error(c, "anchor and layer_bytes are required");
    double bad[L];
    memcpy(bad, anchor, sizeof bad);
    bad[3] = NAN;
    c = config(BL_POLICY_PROPORTIONAL);
    c.anchor = bad;
    expect_config_error(c, "anchor[3]");
    c = config(BL_POLICY_PROPORTIONAL);
    bad[3] = -1.0;
    c.layer_bytes = bad;
    expect_config_error(c, "layer_bytes[3]");
    c = config(BL_POLICY_PROPORTIONAL);
    c.edge_bytes = bad;
    expect_config_error(c, "edge_bytes[3]");
    c = config(BL_POLICY_PROPORTIONAL);
    c.bandwidth = 0.0;
    expect_config_error(c, "bandwidth 0");
    c = config(BL_POLICY_PROPORTIONAL);
    c.latency_s = -1.0;
    expect_config_error(c, "latency -1");
    c = config(BL_POLICY_PROPORTIONAL);
    c.horizon_steps = INFINITY;
    expect_config_error(c, "horizon inf");
    c = config(BL_POLICY_PROPORTIONAL);
    c.threshold = 1.0;
    expect_config_error(c, "threshold 1");
    c = config(BL_POLICY_PROPORTIONAL);
    c.estimator.alpha = 0.0;
    expect_config_error(c, "estimator");
    char err[64];
    bl_restage_t *r = NULL;
    assert_int_equal(bl_restage_create(NULL, NULL, &r, err, sizeof err), -1);
}

static void expect_obs_error(bl_restage_t *r, const int *first, const double *layer_s,
                             double step_s, const char *words)
{
    bl_restage_obs_t obs = {.first = first, .layer_s = layer_s, .step_s = step_s};
    int next[S + 1] = {-1, -1, -1};
    bl_restage_decision_t d;
    assert_int_equal(bl_restage_decide(r, &obs, next, &d), -1);
    if (strstr(d.action, words) == NULL) {
        fail_msg("expected '%s' in '%s'", words, d.action);
    }
    if (first != NULL) {
        assert_memory_equal(next, first, sizeof next); /* the map stays */
    }
}

static void test_bad_observations(void **state)
{
    bl_restage_config_t c = config(BL_POLICY_PROPORTIONAL);
    bl_restage_t *r = create(&c);
    double layer_s[L] = {1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3};
    const int good[S + 1] = {0, 4, L}, empty[S + 1] = {0, 0, L}, short_map[S + 1] = {0, 4, L - 1};
    expect_obs_error(r, NULL, layer_s, 1.0, "NULL map");
    expect_obs_error(r, good, NULL, 1.0, "NULL map or layer times");
    expect_obs_error(r, empty, layer_s, 1.0, "empty or out of order");
    expect_obs_error(r, short_map, layer_s, 1.0, "does not cover the layers");
    layer_s[5] = -1.0;
    expect_obs_error(r, good, layer_s, 1.0, "layer time is negative");
    layer_s[5] = 1e-3;
    expect_obs_error(r, good, layer_s, NAN, "step time");
    bl_restage_decision_t d;
    int next[S + 1];
    assert_int_equal(bl_restage_decide(NULL, NULL, next, &d), -1);
    bl_restage_destroy(r);
    bl_restage_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proportional_moves_off_a_slow_stage),
        cmocka_unit_test(test_strong_gain_moves_at_once),
        cmocka_unit_test(test_undone_fast_move_rests_the_fast_path),
        cmocka_unit_test(test_holds_when_balanced),
        cmocka_unit_test(test_no_move_that_does_not_pay_back),
        cmocka_unit_test(test_threshold_and_static),
        cmocka_unit_test(test_bandit_and_rl_reach_the_optimum),
        cmocka_unit_test(test_migrations_teach_the_bandwidth),
        cmocka_unit_test(test_state_resumes_exactly),
        cmocka_unit_test(test_state_refused),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_observations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
