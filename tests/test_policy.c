/* Tests of the four rebalancing policies (partition/policy.c,
 * policy_learn.c, tuner.c) on synthetic clusters (partition_test.h): a
 * rank with true speed s (samples/s) computes its shard b in b / s
 * seconds, times a seeded noise factor where a test asks for noise, and a
 * window's measured step time is the slowest rank's. The estimator and
 * the proportional plans are tested in test_estimator.c.
 *
 * The figures the policies reach (windows to converge from the even
 * split, windows to recover after a step change, churn under noise) are
 * printed, so a run of this test reports them. */
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

#define Q_COUNT BL_RL_TABLE_DOUBLES

/* The true optimum's step time: the proportional plan of the true speeds. */
static double optimum_s(int ranks, long batch, const double *speeds)
{
    long plan[MAX_RANKS];
    assert_int_equal(bl_plan_proportional(batch, ranks, speeds, NULL, NULL, plan), 0);
    return bl_plan_step_time(ranks, plan, speeds);
}

static bl_policy_config_t config_of(bl_policy_kind_t kind, int ranks, long batch, uint64_t seed)
{
    bl_policy_config_t c = {.kind = kind,
                            .ranks = ranks,
                            .batch = batch,
                            .min_shard = NULL,
                            .max_shard = NULL,
                            .deadband = 0.02,
                            .seed = seed,
                            .estimator = BL_ESTIMATOR_PARAMS_DEFAULT,
                            .q_init = NULL};
    return c;
}

static bl_policy_t *make_policy(const bl_policy_config_t *c)
{
    bl_policy_t *p = NULL;
    char err[256] = "";
    if (bl_policy_create(c, NULL, &p, err, sizeof err) != 0) {
        fail_msg("bl_policy_create(%s): %s", bl_policy_name(c->kind), err);
    }
    return p;
}

static int within_one(int ranks, const long *a, const long *b)
{
    for (int r = 0; r < ranks; r++) {
        if (labs(a[r] - b[r]) > 1) {
            return 0;
        }
    }
    return 1;
}

/* ---- Names ------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    const char *names[] = {"static", "proportional", "bandit", "rl"};
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        assert_string_equal(bl_policy_name((bl_policy_kind_t)k), names[k]);
        assert_int_equal(bl_policy_parse(names[k]), k);
    }
    assert_null(bl_policy_name(BL_POLICY_COUNT));
    assert_null(bl_policy_name((bl_policy_kind_t)-1));
    assert_int_equal(bl_policy_parse("oracle"), -1);
    assert_int_equal(bl_policy_parse("Static"), -1);
    assert_int_equal(bl_policy_parse(""), -1);
    assert_int_equal(bl_policy_parse(NULL), -1);
}

/* ---- Policies: convergence and tracking -------------------------------- */

/* From the even split on speeds 1, 1, 2, 4 (×1000 samples/s), B = 256:
 * the windows until the plan is within one sample per rank of the
 * proportional split (32, 32, 64, 128) or its true step time within 3% of
 * the optimum; it must stay there. Then rank 2 halves its speed: the
 * windows until the true step time is within 5% of the new optimum, and
 * the estimator's report of the change. */
static void converge_and_track(bl_policy_kind_t kind, uint64_t seed, int *converge_out,
                               int *recover_out)
{
    enum { P = 4 };
    const long batch = 256;
    double v[P] = {1000.0, 1000.0, 2000.0, 4000.0};
    const long ideal[P] = {32, 32, 64, 128};
    bl_policy_config_t c = config_of(kind, P, batch, seed);
    bl_policy_t *p = make_policy(&c);
    long plan[P];
    bl_rank_obs_t o[P];
    bl_decision_t d;
    uint64_t rng = 1;
    bl_split_even(batch, P, plan);
    double opt = optimum_s(P, batch, v);
    int converged = -1;
    for (int w = 1; w <= 40; w++) {
        double step = run_window(P, v, plan, 0.0, &rng, o);
        assert_int_equal(bl_policy_decide(p, o, step, plan, plan, &d), 0);
        assert_int_equal(plan_sum(P, plan), batch);
        assert_near(d.optimal_step_s, opt, 1e-12);
        assert_near(d.predicted_step_s, bl_plan_step_time(P, plan, v), 1e-12);
        int close = within_one(P, plan, ideal) || bl_plan_step_time(P, plan, v) <= 1.03 * opt;
        if (close && converged < 0) {
            converged = w;
        } else if (!close && converged >= 0) {
            fail_msg("%s: left the optimum at window %d (action %s)", bl_policy_name(kind), w,
                     d.action);
        }
    }
    if (converged < 0 || converged > 15) {
        fail_msg("%s: converged at window %d, not within 15", bl_policy_name(kind), converged);
    }
    /* rank 2 becomes 2× slower */
    v[2] = 1000.0;
    opt = optimum_s(P, batch, v);
    int recovered = -1, reported = 0;
    for (int w = 1; w <= 30; w++) {
        double step = run_window(P, v, plan, 0.0, &rng, o);
        assert_int_equal(bl_policy_decide(p, o, step, plan, plan, &d), 0);
        if (d.speed_changes > 0) {
            bl_speed_change_t ch[P];
            int n = bl_estimator_last_changes(bl_policy_estimator(p), ch, P);
            assert_int_equal(n, d.speed_changes);
            assert_int_equal(n, 1);
            assert_int_equal(ch[0].rank, 2);
            assert_near(ch[0].factor, 0.5, 0.01);
            reported++;
        }
        int close = bl_plan_step_time(P, plan, v) <= 1.05 * opt;
        if (close && recovered < 0) {
            recovered = w;
        } else if (!close && recovered >= 0) {
            fail_msg("%s: left the new optimum at window %d", bl_policy_name(kind), w);
        }
    }
    assert_int_equal(reported, 1);
    if (recovered < 0 || recovered > 10) {
        fail_msg("%s: recovered at window %d, not within 10", bl_policy_name(kind), recovered);
    }
    print_message("%-12s converged in %d window(s) from even, recovered in %d after rank 2 "
                  "halved\n",
                  bl_policy_name(kind), converged, recovered);
    *converge_out = converged;
    *recover_out = recovered;
    bl_policy_destroy(p);
}

static void test_converge_proportional(void **state)
{
    (void)state;
    int c = 0, r = 0;
    converge_and_track(BL_POLICY_PROPORTIONAL, 1, &c, &r);
    /* noise-free estimates: one window to the target, two to confirm a change */
    assert_int_equal(c, 1);
    assert_true(r <= 2);
}

static void test_converge_bandit(void **state)
{
    (void)state;
    int c = 0, r = 0;
    converge_and_track(BL_POLICY_BANDIT, 1, &c, &r);
}

static void test_converge_rl(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        int c = 0, r = 0;
        converge_and_track(BL_POLICY_RL, seed, &c, &r);
    }
}

static void test_static_stays_even(void **state)
{
    (void)state;
    enum { P = 4 };
    double v[P] = {1000.0, 1000.0, 2000.0, 4000.0};
    bl_policy_config_t c = config_of(BL_POLICY_STATIC, P, 258, 1);
    bl_policy_t *p = make_policy(&c);
    assert_null(bl_policy_q_table(p));
    long plan[P] = {100, 100, 29, 29}, even[P];
    bl_split_even(258, P, even);
    bl_rank_obs_t o[P];
    bl_decision_t d;
    uint64_t rng = 3;
    for (int w = 0; w < 30; w++) {
        if (w == 15) {
            v[2] = 500.0;
        }
        double step = run_window(P, v, plan, 0.05, &rng, o);
        assert_int_equal(bl_policy_decide(p, o, step, plan, plan, &d), 0);
        assert_plan(plan, even, P);
        assert_string_equal(d.action, "even");
        assert_int_equal(d.changed, w == 0);
        assert_true(d.optimal_step_s < d.predicted_step_s);
    }
    bl_policy_destroy(p);
}

/* ---- Policies: pure noise ---------------------------------------------- */

/* Equal speeds with ±5% multiplicative noise: the best plan is the even
 * split and every move chases noise. Returns the samples moved over the
 * windows after a 10-window warm-up and the windows that held; *chasing
 * gets what following the estimates would have moved: the proportional
 * plan of the estimated speeds, re-made every window. */
static long noise_churn(bl_policy_kind_t kind, uint64_t seed, int *held, long *chasing)
{
    enum { P = 4, WINDOWS = 110, WARMUP = 10 };
    const double v[P] = {1000.0, 1000.0, 1000.0, 1000.0};
    bl_policy_config_t c = config_of(kind, P, 256, seed);
    bl_policy_t *p = make_policy(&c);
    long plan[P], next[P], target[P], last_target[P];
    bl_split_even(256, P, plan);
    memcpy(last_target, plan, sizeof plan);
    bl_rank_obs_t o[P];
    bl_decision_t d;
    uint64_t rng = seed * 7919;
    long total = 0;
    *held = 0;
    *chasing = 0;
    for (int w = 0; w < WINDOWS; w++) {
        double step = run_window(P, v, plan, 0.05, &rng, o);
        assert_int_equal(bl_policy_decide(p, o, step, plan, next, &d), 0);
        assert_int_equal(d.speed_changes, 0); /* noise is no change */
        const double *est = bl_estimator_speeds(bl_policy_estimator(p));
        assert_int_equal(bl_plan_proportional(256, P, est, NULL, NULL, target), 0);
        if (w >= WARMUP) {
            total += moved(P, plan, next);
            *held += !d.changed;
            *chasing += moved(P, last_target, target);
        }
        memcpy(plan, next, sizeof plan);
        memcpy(last_target, target, sizeof target);
    }
    bl_policy_destroy(p);
    return total;
}

/* Proportional holds for at least 90 of 100 windows. Bandit and rl move
 * at most a quarter of what chasing the estimates moves, and at most 0.5%
 * of the batch per window on average (128 samples over 100 windows). */
static void test_noise_holds_still(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        int held = 0, held_bandit = 0, held_rl = 0;
        long chasing = 0;
        long prop = noise_churn(BL_POLICY_PROPORTIONAL, seed, &held, &chasing);
        if (held < 90) {
            fail_msg("seed %llu: proportional held only %d of 100 windows",
                     (unsigned long long)seed, held);
        }
        long bandit = noise_churn(BL_POLICY_BANDIT, seed, &held_bandit, &chasing);
        long rl = noise_churn(BL_POLICY_RL, seed, &held_rl, &chasing);
        long bound = chasing / 4 < 128 ? chasing / 4 : 128;
        print_message("noise seed %llu: samples moved in 100 windows: following the estimates "
                      "%ld, proportional %ld (held %d), bandit %ld (held %d), rl %ld (held %d); "
                      "bound %ld\n",
                      (unsigned long long)seed, chasing, prop, held, bandit, held_bandit, rl,
                      held_rl, bound);
        assert_true(chasing >= 40); /* the control does chase: the bound means something */
        assert_true(bandit <= bound);
        assert_true(rl <= bound);
    }
}

/* ---- Policies: bounds ---------------------------------------------------- */

static void test_policy_bounds(void **state)
{
    (void)state;
    enum { P = 4 };
    double v[P] = {1000.0, 1000.0, 2000.0, 4000.0};
    const long lo[P] = {0, 0, 0, 90};
    const long hi[P] = {100, 100, 100, 100};
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        bl_policy_config_t c = config_of((bl_policy_kind_t)k, P, 256, 5);
        c.min_shard = lo;
        c.max_shard = hi;
        bl_policy_t *p = make_policy(&c);
        long plan[P];
        bl_split_even(256, P, plan); /* 64 on rank 3 breaks its floor */
        bl_rank_obs_t o[P];
        bl_decision_t d;
        uint64_t rng = 11;
        for (int w = 0; w < 40; w++) {
            if (w == 20) {
                v[3] = 1000.0;
            }
            double step = run_window(P, v, plan, 0.03, &rng, o);
            assert_int_equal(bl_policy_decide(p, o, step, plan, plan, &d), 0);
            assert_int_equal(plan_sum(P, plan), 256);
            for (int r = 0; r < P; r++) {
                if (plan[r] < lo[r] || plan[r] > hi[r]) {
                    fail_msg("%s window %d: shard %d = %ld outside [%ld, %ld]",
                             bl_policy_name((bl_policy_kind_t)k), w, r, plan[r], lo[r], hi[r]);
                }
            }
        }
        bl_policy_destroy(p);
    }
}

/* ---- Determinism --------------------------------------------------------- */

static void test_determinism(void **state)
{
    (void)state;
    enum { P = 6, WINDOWS = 200 };
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        bl_policy_config_t c = config_of((bl_policy_kind_t)k, P, 300, 1234);
        bl_policy_t *a = make_policy(&c);
        bl_policy_t *b = make_policy(&c);
        double v[P] = {1000.0, 1500.0, 2000.0, 800.0, 1200.0, 3000.0};
        long pa[P], pb[P];
        bl_split_even(300, P, pa);
        memcpy(pb, pa, sizeof pa);
        bl_rank_obs_t o[P];
        bl_decision_t da, db;
        uint64_t rng = 99;
        int changes = 0;
        for (int w = 0; w < WINDOWS; w++) {
            if (w == 60) {
                v[1] = 600.0; /* a step change */
            }
            if (w == 120) {
                v[4] = 2400.0;
            }
            double step = run_window(P, v, pa, 0.1, &rng, o);
            assert_int_equal(bl_policy_decide(a, o, step, pa, pa, &da), 0);
            assert_int_equal(bl_policy_decide(b, o, step, pb, pb, &db), 0);
            assert_plan(pb, pa, P);
            assert_string_equal(da.action, db.action);
            assert_int_equal(da.changed, db.changed);
            assert_memory_equal(&da.predicted_step_s, &db.predicted_step_s, sizeof(double));
            assert_memory_equal(&da.optimal_step_s, &db.optimal_step_s, sizeof(double));
            assert_int_equal(da.speed_changes, db.speed_changes);
            changes += da.changed;
        }
        if (k == BL_POLICY_RL) {
            assert_memory_equal(bl_policy_q_table(a), bl_policy_q_table(b),
                                Q_COUNT * sizeof(double));
        }
        /* the adaptive kinds did decide something over these 200 windows */
        assert_true(k == BL_POLICY_STATIC || changes >= 2);
        bl_policy_destroy(a);
        bl_policy_destroy(b);
    }
}

/* ---- Learned state (checkpoints) ------------------------------------------ */

/* A policy saved after 80 windows and loaded into a fresh one of the same
 * config then decides exactly as the original over 80 more windows (with
 * a step change after the save), for every kind: nothing it learned is
 * left out of the state. */
static void test_state_resumes_exactly(void **state)
{
    (void)state;
    enum { P = 5, BEFORE = 80, AFTER = 80 };
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        bl_policy_config_t c = config_of((bl_policy_kind_t)k, P, 250, 77);
        bl_policy_t *a = make_policy(&c);
        double v[P] = {1000.0, 1800.0, 700.0, 1200.0, 2500.0};
        long pa[P], pb[P];
        bl_split_even(250, P, pa);
        bl_rank_obs_t o[P];
        bl_decision_t da, db;
        uint64_t rng = 5;
        for (int w = 0; w < BEFORE; w++) {
            double step = run_window(P, v, pa, 0.1, &rng, o);
            assert_int_equal(bl_policy_decide(a, o, step, pa, pa, &da), 0);
        }
        size_t n = bl_policy_state_bytes(a);
        assert_true(n > 0);
        unsigned char *saved = malloc(n);
        assert_non_null(saved);
        bl_policy_state_save(a, saved);
        bl_policy_t *b = make_policy(&c);
        char err[256] = "";
        assert_int_equal(bl_policy_state_load(b, saved, n, err, sizeof err), 0);
        memcpy(pb, pa, sizeof pa);
        v[2] = 1400.0; /* a change after the resume */
        int changes = 0;
        for (int w = 0; w < AFTER; w++) {
            double step = run_window(P, v, pa, 0.1, &rng, o);
            assert_int_equal(bl_policy_decide(a, o, step, pa, pa, &da), 0);
            assert_int_equal(bl_policy_decide(b, o, step, pb, pb, &db), 0);
            assert_plan(pb, pa, P);
            assert_string_equal(da.action, db.action);
            assert_memory_equal(&da.predicted_step_s, &db.predicted_step_s, sizeof(double));
            changes += da.changed;
        }
        assert_true(k == BL_POLICY_STATIC || changes >= 1);
        /* and the two hold the same state at the end */
        unsigned char *sa = malloc(n), *sb = malloc(n);
        assert_true(sa != NULL && sb != NULL);
        bl_policy_state_save(a, sa);
        bl_policy_state_save(b, sb);
        assert_memory_equal(sa, sb, n);
        free(sa);
        free(sb);
        free(saved);
        bl_policy_destroy(a);
        bl_policy_destroy(b);
    }
}

/* State that is not this policy's (another kind, rank count, length) or
 * holds values out of range is refused, naming why, and leaves the policy
 * exactly as it was. */
static void test_state_refused(void **state)
{
    (void)state;
    bl_policy_config_t c = config_of(BL_POLICY_BANDIT, 4, 200, 3);
    bl_policy_t *p = make_policy(&c);
    size_t n = bl_policy_state_bytes(p);
    unsigned char *before = malloc(n), *after = malloc(n), *bytes = malloc(n + 8);
    assert_true(before != NULL && after != NULL && bytes != NULL);
    bl_policy_state_save(p, before);
    char err[256] = "";

    bl_policy_config_t c3 = config_of(BL_POLICY_BANDIT, 3, 200, 3);
    bl_policy_t *three = make_policy(&c3);
    bl_policy_state_save(three, bytes);
    assert_int_equal(bl_policy_state_load(p, bytes, bl_policy_state_bytes(three), err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "not the state of this policy (bandit, 4 ranks)"));

    bl_policy_config_t crl = config_of(BL_POLICY_RL, 4, 200, 3);
    bl_policy_t *rl = make_policy(&crl);
    unsigned char *rl_bytes = malloc(bl_policy_state_bytes(rl));
    assert_non_null(rl_bytes);
    bl_policy_state_save(rl, rl_bytes);
    assert_int_equal(bl_policy_state_load(p, rl_bytes, bl_policy_state_bytes(rl), err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "not the state of this policy (bandit"));

    memcpy(bytes, before, n);
    assert_int_equal(bl_policy_state_load(p, bytes, n - 1, err, sizeof err), -1);
    assert_int_equal(bl_policy_state_load(p, bytes, 0, err, sizeof err), -1);

    /* After the headers (kind, ranks; the estimator's rank count) comes
     * the first estimated speed: NaN bytes there are out of range. */
    memset(bytes + 3 * sizeof(int), 0xff, sizeof(double));
    assert_int_equal(bl_policy_state_load(p, bytes, n, err, sizeof err), -1);
    assert_non_null(strstr(err, "values out of range"));
    /* A run of out-of-band windows as long as INT_MIN (the estimator's
     * run[0], after the headers, its 9 doubles per rank and nnoise), with
     * a valid reference (ref[0], after speed, num, den and var): no update
     * makes such a run, and loading it would overflow the next update. */
    memcpy(bytes, before, n);
    double ref = 32.0;
    memcpy(bytes + 3 * sizeof(int) + 4 * 4 * sizeof(double), &ref, sizeof ref);
    int bad_run = INT_MIN;
    memcpy(bytes + 3 * sizeof(int) + 4 * (9 * sizeof(double) + sizeof(int)), &bad_run,
           sizeof bad_run);
    assert_int_equal(bl_policy_state_load(p, bytes, n, err, sizeof err), -1);
    assert_non_null(strstr(err, "values out of range"));

    /* After all those refusals the policy is as it was. */
    bl_policy_state_save(p, after);
    assert_memory_equal(before, after, n);

    assert_int_equal(bl_policy_state_load(p, NULL, n, err, sizeof err), -1);
    bl_policy_state_save(p, after);
    assert_memory_equal(before, after, n);
    free(rl_bytes);
    free(before);
    free(after);
    free(bytes);
    bl_policy_destroy(rl);
    bl_policy_destroy(three);
    bl_policy_destroy(p);
}

/* ---- RL tables --------------------------------------------------------------- */

static void test_rl_tables(void **state)
{
    (void)state;
    bl_policy_config_t c = config_of(BL_POLICY_RL, 4, 256, 1);
    bl_policy_t *p = make_policy(&c);
    const double *q = bl_policy_q_table(p);
    assert_non_null(q);
    /* default: every state values the proportional setting (action 0) best,
     * so an unvisited state runs the fixed rule */
    for (int s = 0; s < BL_RL_STATES; s++) {
        int best = 0;
        for (int a = 1; a < BL_RL_ACTIONS; a++) {
            best = q[s * BL_RL_ACTIONS + a] < q[s * BL_RL_ACTIONS + best] ? a : best;
        }
        assert_int_equal(best, 0);
    }
    bl_policy_destroy(p);
    /* a warm start: the table is copied, and a table whose every state
     * holds 20 windows' evidence that the even split (setting 1) scores
     * 0.5 below proportional, every time, keeps the even split on an
     * imbalanced cluster. A state's values: w1, w2, the sums of the
     * settings' differences, then the sums of their squares. */
    enum { W1, W2, SUM, SQUARES = SUM + BL_RL_ACTIONS };
    double table[Q_COUNT];
    for (int s = 0; s < BL_RL_STATES; s++) {
        double *t = &table[s * BL_RL_STATE_DOUBLES];
        for (int i = 0; i < BL_RL_STATE_DOUBLES; i++) {
            t[i] = 0.0;
        }
        t[W1] = 10.0;
        t[W2] = 5.0; /* evidence w1² / w2 = 20 windows */
        t[SUM + 1] = -5.0;
        t[SQUARES + 1] = 2.5;
    }
    c.q_init = table;
    p = make_policy(&c);
    table[0] = -7.0; /* copied, not referenced */
    q = bl_policy_q_table(p);
    assert_near(q[W1], 10.0, 0.0);
    assert_near(q[SUM + 1], -5.0, 0.0);
    const double v[4] = {1000.0, 1000.0, 2000.0, 4000.0};
    long plan[4] = {64, 64, 64, 64};
    bl_rank_obs_t o[4];
    bl_decision_t d;
    uint64_t rng = 1;
    for (int w = 0; w < 3; w++) {
        double step = run_window(4, v, plan, 0.0, &rng, o);
        assert_int_equal(bl_policy_decide(p, o, step, plan, plan, &d), 0);
        assert_string_equal(d.action, "even");
        assert_int_equal(d.changed, 0);
    }
    /* learning: here the even split scores worse than proportional, so the
     * mean difference of the even split rises above its prior -0.5 in the
     * states the choices were made in */
    q = bl_policy_q_table(p);
    int raised = 0;
    for (int s = 0; s < BL_RL_STATES; s++) {
        const double *t = &q[s * BL_RL_STATE_DOUBLES];
        raised += t[SUM + 1] / t[W1] > -0.5 + 1e-9;
    }
    assert_true(raised >= 1);
    bl_policy_destroy(p);
    /* q_init of another kind is ignored (not even read) */
    c.kind = BL_POLICY_BANDIT;
    table[3] = NAN;
    p = make_policy(&c);
    assert_null(bl_policy_q_table(p));
    bl_policy_destroy(p);
    assert_null(bl_policy_q_table(NULL));
}

/* ---- Bad input ------------------------------------------------------------ */

static void expect_config_error(const bl_policy_config_t *c, const char *field)
{
    bl_policy_t *p = (bl_policy_t *)(uintptr_t)1; /* not NULL: create must reset it */
    char err[256] = "";
    assert_int_equal(bl_policy_create(c, NULL, &p, err, sizeof err), -1);
    assert_null(p);
    if (strstr(err, field) == NULL) {
        fail_msg("the message '%s' does not name %s", err, field);
    }
    /* no message buffer: still -1, no crash */
    assert_int_equal(bl_policy_create(c, NULL, &p, NULL, 0), -1);
}

static void test_bad_config(void **state)
{
    (void)state;
    const bl_policy_config_t good = config_of(BL_POLICY_BANDIT, 4, 256, 1);
    bl_policy_config_t c = good;
    c.kind = BL_POLICY_COUNT;
    expect_config_error(&c, "kind");
    c.kind = (bl_policy_kind_t)-1;
    expect_config_error(&c, "kind");
    c = good;
    c.ranks = 0;
    expect_config_error(&c, "ranks");
    c = good;
    c.batch = -1;
    expect_config_error(&c, "batch");
    c = good;
    c.deadband = -0.01;
    expect_config_error(&c, "deadband");
    c.deadband = NAN;
    expect_config_error(&c, "deadband");
    c = good;
    c.estimator.alpha = 0.0;
    expect_config_error(&c, "estimator.alpha");
    c.estimator.alpha = 1.5;
    expect_config_error(&c, "estimator.alpha");
    c = good;
    c.estimator.change_sigma = 0.0;
    expect_config_error(&c, "estimator.change_sigma");
    c.estimator.change_sigma = INFINITY;
    expect_config_error(&c, "estimator.change_sigma");
    c = good;
    c.estimator.change_windows = 0;
    expect_config_error(&c, "estimator.change_windows");
    c = good;
    /* The caps go through the plan's one validator (partition/plan.h). */
    c.min_shard = (const long[]){0, -1, 0, 0};
    expect_config_error(&c, "shard caps of rank 1: min -1 and max 256 must satisfy");
    c.min_shard = (const long[]){100, 100, 57, 0};
    expect_config_error(&c, "the minimums sum to 257 and the maximums to 1024");
    c = good;
    c.max_shard = (const long[]){64, 64, 64, 63};
    expect_config_error(&c, "the minimums sum to 0 and the maximums to 255");
    c.min_shard = (const long[]){0, 0, 10, 0};
    c.max_shard = (const long[]){256, 256, 9, 256};
    expect_config_error(&c, "shard caps of rank 2: min 10 and max 9 must satisfy");
    c = good;
    c.kind = BL_POLICY_RL;
    double table[Q_COUNT] = {0};
    table[17] = NAN;
    c.q_init = table;
    expect_config_error(&c, "q_init[17]");
    char err[256] = "";
    bl_policy_t *p = NULL;
    assert_int_equal(bl_policy_create(NULL, NULL, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "config"));
    assert_int_equal(bl_policy_create(&good, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "out"));
    /* a good one is fine */
    assert_int_equal(bl_policy_create(&good, NULL, &p, err, sizeof err), 0);
    bl_policy_destroy(p);
    bl_policy_destroy(NULL);
}

/* Each bad observation: -1, next equals current, the decision's action
 * names the field, and the policy learnt nothing (it decides afterwards
 * exactly as a twin that never saw the bad window). */
static void test_bad_observations(void **state)
{
    (void)state;
    enum { P = 4 };
    const double v[P] = {1000.0, 1000.0, 2000.0, 4000.0};
    struct {
        int rank;
        int field; /* 0 samples, 1 compute_s, 2 comm_s, 3 wait_s, 4 step_s */
        double value;
        const char *name;
    } cases[] = {
        {0, 0, -1.0, "obs.samples"},   {3, 0, NAN, "obs.samples"},
        {1, 1, -0.5, "obs.compute_s"}, {2, 1, INFINITY, "obs.compute_s"},
        {0, 2, -1e-9, "obs.comm_s"},   {3, 2, NAN, "obs.comm_s"},
        {2, 3, -2.0, "obs.wait_s"},    {1, 3, -INFINITY, "obs.wait_s"},
        {0, 4, -1.0, "step_s"},        {0, 4, NAN, "step_s"},
    };
    for (int k = 1; k < BL_POLICY_COUNT; k++) {
        bl_policy_config_t c = config_of((bl_policy_kind_t)k, P, 256, 3);
        bl_policy_t *p = make_policy(&c);
        bl_policy_t *twin = make_policy(&c);
        long plan[P] = {64, 64, 64, 64}, next[P], twin_next[P];
        bl_rank_obs_t o[P];
        bl_decision_t d, td;
        uint64_t rng = 5;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            double step = run_window(P, v, plan, 0.02, &rng, o);
            bl_rank_obs_t bad[P];
            memcpy(bad, o, sizeof bad);
            double bad_step = step;
            double *f[4] = {&bad[cases[i].rank].samples, &bad[cases[i].rank].compute_s,
                            &bad[cases[i].rank].comm_s, &bad[cases[i].rank].wait_s};
            if (cases[i].field < 4) {
                *f[cases[i].field] = cases[i].value;
            } else {
                bad_step = cases[i].value;
            }
            memset(next, 0x5a, sizeof next);
            assert_int_equal(bl_policy_decide(p, bad, bad_step, plan, next, &d), -1);
            assert_plan(next, plan, P);
            if (d.action == NULL || strstr(d.action, cases[i].name) == NULL) {
                fail_msg("%s: case %zu: action '%s' does not name %s",
                         bl_policy_name((bl_policy_kind_t)k), i, d.action ? d.action : "(null)",
                         cases[i].name);
            }
            /* then the good window, to both */
            assert_int_equal(bl_policy_decide(p, o, step, plan, next, &d), 0);
            assert_int_equal(bl_policy_decide(twin, o, step, plan, twin_next, &td), 0);
            assert_plan(next, twin_next, P);
            assert_string_equal(d.action, td.action);
            memcpy(plan, next, sizeof plan);
        }
        /* bad plans */
        double step = run_window(P, v, plan, 0.0, &rng, o);
        long wrong_sum[P] = {64, 64, 64, 63};
        long negative[P] = {-1, 65, 128, 64};
        assert_int_equal(bl_policy_decide(p, o, step, wrong_sum, next, &d), -1);
        assert_plan(next, wrong_sum, P);
        assert_non_null(strstr(d.action, "current"));
        assert_int_equal(bl_policy_decide(p, o, step, negative, next, &d), -1);
        assert_non_null(strstr(d.action, "current"));
        assert_int_equal(bl_policy_decide(NULL, o, step, plan, next, &d), -1);
        assert_int_equal(bl_policy_decide(p, NULL, step, plan, next, &d), -1);
        bl_policy_destroy(p);
        bl_policy_destroy(twin);
    }
}

/* ---- Allocation ------------------------------------------------------------ */

typedef struct counter {
    long allocs;
    long releases;
    long fail_at; /* the fail_at-th allocation fails; 0 never */
} counter_t;

static void *count_alloc(size_t nbytes, void *ctx)
{
    counter_t *c = ctx;
    if (++c->allocs == c->fail_at) {
        c->releases++; /* a failed allocation holds nothing */
        return NULL;
    }
    return malloc(nbytes);
}

static void count_release(void *ptr, void *ctx)
{
    counter_t *c = ctx;
    c->releases++;
    free(ptr);
}

static void test_allocator(void **state)
{
    (void)state;
    const long cap[4] = {200, 200, 200, 200};
    for (int k = 0; k < BL_POLICY_COUNT; k++) {
        bl_policy_config_t c = config_of((bl_policy_kind_t)k, 4, 256, 1);
        c.max_shard = cap;
        counter_t full = {0};
        bl_part_allocator_t a = {count_alloc, count_release, &full};
        bl_policy_t *p = NULL;
        char err[256];
        assert_int_equal(bl_policy_create(&c, &a, &p, err, sizeof err), 0);
        long plan[4] = {64, 64, 64, 64};
        bl_rank_obs_t o[4];
        uint64_t rng = 1;
        const double v[4] = {1000.0, 1000.0, 2000.0, 4000.0};
        long before = full.allocs;
        for (int w = 0; w < 10; w++) {
            double step = run_window(4, v, plan, 0.05, &rng, o);
            assert_int_equal(bl_policy_decide(p, o, step, plan, plan, NULL), 0);
        }
        assert_int_equal(full.allocs, before); /* deciding allocates nothing */
        bl_policy_destroy(p);
        assert_true(full.allocs > 0);
        assert_int_equal(full.allocs, full.releases);
        /* every allocation failing in turn: -1, a message, nothing leaked */
        for (long n = 1; n <= full.allocs; n++) {
            counter_t failing = {.fail_at = n};
            bl_part_allocator_t fa = {count_alloc, count_release, &failing};
            p = NULL;
            err[0] = '\0';
            assert_int_equal(bl_policy_create(&c, &fa, &p, err, sizeof err), -1);
            assert_null(p);
            assert_non_null(strstr(err, "memory"));
            assert_int_equal(failing.allocs, failing.releases);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_state_resumes_exactly),
        cmocka_unit_test(test_state_refused),
        cmocka_unit_test(test_converge_proportional),
        cmocka_unit_test(test_converge_bandit),
        cmocka_unit_test(test_converge_rl),
        cmocka_unit_test(test_static_stays_even),
        cmocka_unit_test(test_noise_holds_still),
        cmocka_unit_test(test_policy_bounds),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_rl_tables),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_bad_observations),
        cmocka_unit_test(test_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
