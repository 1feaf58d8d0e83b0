/* Tests of the cluster simulator (partition/sim/sim.c, scenario.c):
 * scenarios are deterministic per seed and have the stated shapes; the
 * ring all-reduce follows its formula; the metrics equal hand-computed
 * values on hand-made traces; the oracle scores exactly 1 against itself
 * and the lag-1 oracle loses exactly the steps after a change; static
 * falls short on fixed heterogeneity and proportional does better; runs
 * are deterministic and release all they allocate. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "policy.h"
#include "sim.h"

#define BASE BL_SIM_BASE_SPEED

/* |got − want| ≤ tol, in double (cmocka's float assertion rounds to float). */
#define assert_near(got, want, tol)                                                                \
    do {                                                                                           \
        double got_ = (got), want_ = (want);                                                       \
        if (!(fabs(got_ - want_) <= (tol))) {                                                      \
            fail_msg("%s is %.17g, expected %.17g within %g", #got, got_, want_, (double)(tol));   \
        }                                                                                          \
    } while (0)

/* ---- Names -------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        const char *name = bl_scenario_name((bl_scenario_kind_t)k);
        assert_non_null(name);
        assert_non_null(bl_scenario_summary((bl_scenario_kind_t)k));
        assert_int_equal(bl_scenario_parse(name), k);
    }
    assert_string_equal(bl_scenario_name(BL_SCENARIO_FIXED_1_5X), "fixed-1.5x");
    assert_string_equal(bl_scenario_name(BL_SCENARIO_STEP_CHANGE), "step-change");
    /* The new scenarios come after the old ones, whose numbers stay. */
    assert_int_equal(BL_SCENARIO_NOISE, 6);
    assert_string_equal(bl_scenario_name(BL_SCENARIO_HEAVY_NOISE), "heavy-noise");
    assert_string_equal(bl_scenario_name(BL_SCENARIO_PERIODIC), "periodic");
    assert_string_equal(bl_scenario_name(BL_SCENARIO_NODE_SLOW), "node-slow");
    assert_string_equal(bl_scenario_name(BL_SCENARIO_FAIL_SLOW), "fail-slow");
    assert_string_equal(bl_scenario_name(BL_SCENARIO_RECOVERY), "recovery");
    assert_int_equal(BL_SCENARIO_COUNT, 12);
    assert_null(bl_scenario_name(BL_SCENARIO_COUNT));
    assert_int_equal(bl_scenario_parse("fixed-3x"), -1);
    assert_int_equal(bl_scenario_parse(NULL), -1);
    assert_int_equal(bl_sim_policy_parse("oracle"), BL_SIM_ORACLE);
    assert_string_equal(bl_sim_policy_name(BL_SIM_ORACLE), "oracle");
    assert_int_equal(bl_sim_policy_parse("proportional"), BL_POLICY_PROPORTIONAL);
    assert_int_equal(bl_sim_policy_parse("greedy"), -1);
}

/* ---- Scenarios ------------------------------------------------------------------ */

/* Steps of kind (speeds and noise) for ranks ranks into arrays of
 * steps·ranks values. */
static void trace(bl_scenario_kind_t kind, int ranks, long steps, uint64_t seed, double *speeds,
                  double *noise)
{
    bl_scenario_t *s = NULL;
    assert_int_equal(bl_scenario_create(kind, ranks, steps, seed, NULL, &s), 0);
    for (long t = 0; t < steps; t++) {
        assert_int_equal(bl_scenario_next(s, speeds + t * ranks, noise + t * ranks), t);
    }
    bl_scenario_destroy(s);
}

static void test_scenarios_deterministic_per_seed(void **state)
{
    (void)state;
    const int ranks = 37; /* odd: the Gaussian pairs have a lone last rank */
    const long steps = 200;
    const size_t n = (size_t)ranks * (size_t)steps;
    double *a = malloc(n * sizeof *a), *an = malloc(n * sizeof *an);
    double *b = malloc(n * sizeof *b), *bn = malloc(n * sizeof *bn);
    assert_non_null(a);
    assert_non_null(an);
    assert_non_null(b);
    assert_non_null(bn);
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        trace((bl_scenario_kind_t)k, ranks, steps, 42, a, an);
        trace((bl_scenario_kind_t)k, ranks, steps, 42, b, bn);
        assert_memory_equal(a, b, n * sizeof *a);
        assert_memory_equal(an, bn, n * sizeof *an);
        for (size_t i = 0; i < n; i++) {
            assert_true(a[i] > 0.0 && isfinite(a[i]));
            assert_true(an[i] > 0.0 && isfinite(an[i]));
        }
        /* Another seed gives another trace where the scenario is random
         * in more than one choice (step-change picks one rank of 37, so a
         * repeat is possible there). */
        trace((bl_scenario_kind_t)k, ranks, steps, 43, b, bn);
        if (k == BL_SCENARIO_DRIFT || k == BL_SCENARIO_SPIKES || k == BL_SCENARIO_FIXED_2X ||
            k == BL_SCENARIO_PERIODIC) {
            assert_true(memcmp(a, b, n * sizeof *a) != 0);
        }
        if (k == BL_SCENARIO_NOISE || k == BL_SCENARIO_HEAVY_NOISE) {
            assert_true(memcmp(an, bn, n * sizeof *an) != 0);
        }
    }
    free(a);
    free(an);
    free(b);
    free(bn);
}

static void test_fixed_ratios(void **state)
{
    (void)state;
    const bl_scenario_kind_t kinds[3] = {BL_SCENARIO_FIXED_1_5X, BL_SCENARIO_FIXED_2X,
                                         BL_SCENARIO_FIXED_4X};
    const double ratios[3] = {1.5, 2.0, 4.0};
    const int sizes[3] = {64, 7, 2};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            int ranks = sizes[j];
            bl_scenario_t *s = NULL;
            double speeds[64], noise[64], first[64];
            assert_int_equal(bl_scenario_create(kinds[i], ranks, 100, 5, NULL, &s), 0);
            assert_int_equal(bl_scenario_change_step(s), -1);
            bl_scenario_next(s, first, noise);
            int slow = 0;
            double lo = INFINITY, hi = 0.0;
            for (int r = 0; r < ranks; r++) {
                assert_true(first[r] == BASE || first[r] == BASE / ratios[i]);
                slow += first[r] < BASE;
                lo = fmin(lo, first[r]);
                hi = fmax(hi, first[r]);
                assert_true(noise[r] == 1.0);
            }
            assert_int_equal(slow, ranks / 2);
            assert_true(hi / lo == ratios[i]);
            for (int t = 1; t < 50; t++) {
                bl_scenario_next(s, speeds, noise);
                assert_memory_equal(speeds, first, (size_t)ranks * sizeof *speeds);
            }
            bl_scenario_destroy(s);
        }
    }
}

static void test_step_change(void **state)
{
    (void)state;
    const int ranks = 16;
    const long steps = 101;
    bl_scenario_t *s = NULL;
    double speeds[16];
    assert_int_equal(bl_scenario_create(BL_SCENARIO_STEP_CHANGE, ranks, steps, 9, NULL, &s), 0);
    assert_int_equal(bl_scenario_change_step(s), 50);
    int slow_rank = -1;
    for (long t = 0; t < steps; t++) {
        bl_scenario_next(s, speeds, NULL);
        int slow = 0;
        for (int r = 0; r < ranks; r++) {
            if (speeds[r] == BASE / 2.0) {
                slow++;
                if (slow_rank < 0) {
                    slow_rank = r;
                }
                assert_int_equal(r, slow_rank);
            } else {
                assert_true(speeds[r] == BASE);
            }
        }
        assert_int_equal(slow, t >= 50 ? 1 : 0);
    }
    bl_scenario_destroy(s);
}

static void test_drift_bounded(void **state)
{
    (void)state;
    const int ranks = 9;
    bl_scenario_t *s = NULL;
    double speeds[9], prev[9];
    assert_int_equal(bl_scenario_create(BL_SCENARIO_DRIFT, ranks, 5000, 3, NULL, &s), 0);
    bl_scenario_next(s, prev, NULL);
    for (int r = 0; r < ranks; r++) {
        assert_true(prev[r] == BASE); /* the walk starts at the base */
    }
    double lo = INFINITY, hi = 0.0;
    for (long t = 1; t < 5000; t++) {
        bl_scenario_next(s, speeds, NULL);
        for (int r = 0; r < ranks; r++) {
            /* within [base/2, 2·base], up to rounding of exp(±ln 2) */
            assert_true(speeds[r] >= BASE / 2.0 * (1.0 - 1e-12));
            assert_true(speeds[r] <= BASE * 2.0 * (1.0 + 1e-12));
            /* a step moves by σ·z, |z| < 7 */
            assert_true(fabs(log(speeds[r] / prev[r])) < 7.0 * BL_SIM_DRIFT_SIGMA);
            lo = fmin(lo, speeds[r]);
            hi = fmax(hi, speeds[r]);
        }
        memcpy(prev, speeds, sizeof speeds);
    }
    /* 5000 steps of 1%: the walks spread well beyond ±20% */
    assert_true(lo < 0.8 * BASE);
    assert_true(hi > 1.2 * BASE);
    bl_scenario_destroy(s);
}

static void test_spikes(void **state)
{
    (void)state;
    const int ranks = 8;
    const long steps = 4000;
    bl_scenario_t *s = NULL;
    double speeds[8];
    long slow_steps = 0, starts = 0;
    int was_slow[8] = {0};
    assert_int_equal(bl_scenario_create(BL_SCENARIO_SPIKES, ranks, steps, 11, NULL, &s), 0);
    for (long t = 0; t < steps; t++) {
        bl_scenario_next(s, speeds, NULL);
        for (int r = 0; r < ranks; r++) {
            int slow = speeds[r] != BASE;
            if (slow) {
                assert_true(speeds[r] == BASE / BL_SIM_SPIKE_FACTOR);
                slow_steps++;
                starts += !was_slow[r];
            }
            was_slow[r] = slow;
        }
    }
    /* about RATE·steps spikes of mean length 2 */
    double expected = BL_SIM_SPIKE_RATE * (double)steps;
    assert_true(starts > 0.7 * expected && starts < 1.3 * expected);
    double mean_length = (double)slow_steps / (double)starts;
    assert_true(mean_length >= 1.7 && mean_length <= 2.4);
    bl_scenario_destroy(s);
}

static void test_noise(void **state)
{
    (void)state;
    const int ranks = 64;
    const long steps = 400;
    bl_scenario_t *s = NULL;
    double speeds[64], noise[64];
    double sum = 0.0, sum_log = 0.0, sum_log2 = 0.0;
    assert_int_equal(bl_scenario_create(BL_SCENARIO_NOISE, ranks, steps, 1, NULL, &s), 0);
    for (long t = 0; t < steps; t++) {
        bl_scenario_next(s, speeds, noise);
        for (int r = 0; r < ranks; r++) {
            assert_true(speeds[r] == BASE);
            sum += noise[r];
            sum_log += log(noise[r]);
            sum_log2 += log(noise[r]) * log(noise[r]);
        }
    }
    double count = (double)ranks * (double)steps;
    double mean_log = sum_log / count;
    double sd_log = sqrt(sum_log2 / count - mean_log * mean_log);
    assert_true(fabs(sum / count - 1.0) < 0.005); /* mean 1: 25,600 draws, sd 0.0006 */
    assert_true(fabs(sd_log - BL_SIM_NOISE_SIGMA) < 0.005);
    bl_scenario_destroy(s);
}

/* heavy-noise is noise times a tail: with the same seed, the two share
 * their log-normal factors, so their ratio is the tail multiplier alone. */
static void test_heavy_noise(void **state)
{
    (void)state;
    const int ranks = 64;
    const long steps = 2000;
    bl_scenario_t *heavy = NULL, *plain = NULL;
    double speeds[64], noise[64], base_noise[64];
    double sum_body = 0.0, sum_tail = 0.0;
    long body = 0, tails = 0, above3 = 0;
    assert_int_equal(bl_scenario_create(BL_SCENARIO_HEAVY_NOISE, ranks, steps, 4, NULL, &heavy), 0);
    assert_int_equal(bl_scenario_create(BL_SCENARIO_NOISE, ranks, steps, 4, NULL, &plain), 0);
    assert_int_equal(bl_scenario_change_step(heavy), -1);
    for (long t = 0; t < steps; t++) {
        bl_scenario_next(heavy, speeds, noise);
        bl_scenario_next(plain, speeds, base_noise);
        for (int r = 0; r < ranks; r++) {
            assert_true(speeds[r] == BASE); /* the true speeds stay equal */
            double tail = noise[r] / base_noise[r];
            if (noise[r] == base_noise[r]) {
                body++;
                sum_body += noise[r];
                continue;
            }
            /* a Pareto draw of scale 1, capped */
            assert_true(tail >= 1.0 - 1e-12 && tail <= BL_SIM_TAIL_CAP * (1.0 + 1e-12));
            tails++;
            sum_tail += tail;
            above3 += noise[r] > 3.0;
        }
    }
    double count = (double)ranks * (double)steps;
    /* the body: the log-normal of mean 1 */
    assert_true(fabs(sum_body / (double)body - 1.0) < 0.005);
    /* 2% of 128,000 rank-steps: 2,560 tail draws, sd 50 */
    assert_true(fabs((double)tails / count - BL_SIM_TAIL_RATE) < 0.002);
    /* E[min(X, 10)] for Pareto(1.5) = 1 + 2(1 − 10^−1/2) ≈ 2.37 */
    assert_true(fabs(sum_tail / (double)tails - (3.0 - 2.0 / sqrt(10.0))) < 0.15);
    /* a tail above 3 sometimes: 3^−1.5 ≈ 19% of the draws, about 490 */
    assert_true(above3 > 300 && above3 < 700);
    bl_scenario_destroy(heavy);
    bl_scenario_destroy(plain);
}

/* periodic: the same seeded subset, exactly, in every window of 10 steps
 * every 50 from the seeded offset; everybody at base outside. */
static void test_periodic(void **state)
{
    (void)state;
    const int sizes[3] = {64, 20, 5};
    long offsets[8];
    for (int seed = 1; seed <= 8; seed++) {
        for (int j = 0; j < 3; j++) {
            const int ranks = sizes[j];
            const int subset = ranks / 8 > 0 ? ranks / 8 : 1;
            const long steps = 400;
            bl_scenario_t *s = NULL;
            double speeds[64], noise[64];
            int member[64] = {0};
            long offset = -1;
            assert_int_equal(
                bl_scenario_create(BL_SCENARIO_PERIODIC, ranks, steps, (uint64_t)seed, NULL, &s),
                0);
            assert_int_equal(bl_scenario_change_step(s), -1);
            for (long t = 0; t < steps; t++) {
                bl_scenario_next(s, speeds, noise);
                int slow = 0;
                for (int r = 0; r < ranks; r++) {
                    assert_true(noise[r] == 1.0);
                    assert_true(speeds[r] == BASE || speeds[r] == BASE / 2.0);
                    if (speeds[r] == BASE) {
                        continue;
                    }
                    slow++;
                    if (offset < 0) {
                        member[r] = 1; /* the first window names the subset */
                    }
                    assert_true(member[r]);
                }
                if (slow > 0 && offset < 0) {
                    offset = t;
                    assert_true(offset < BL_SIM_PERIOD_STEPS);
                }
                int in_window = offset >= 0 && (t - offset) % 50 < 10;
                assert_int_equal(slow, in_window ? subset : 0);
            }
            assert_true(offset >= 0);
            if (j == 0) {
                offsets[seed - 1] = offset;
            }
            bl_scenario_destroy(s);
        }
    }
    /* the offset is seeded: eight seeds do not all agree */
    int differ = 0;
    for (int i = 1; i < 8; i++) {
        differ |= offsets[i] != offsets[0];
    }
    assert_true(differ);
}

/* node-slow: between T/4 and 3T/4 exactly one whole node (8 consecutive
 * ranks from a multiple of 8; the last node holds the remainder) runs at
 * base/2; every rank at base outside that span. */
static void test_node_slow(void **state)
{
    (void)state;
    const int ranks = 20; /* nodes [0, 8), [8, 16) and the partial [16, 20) */
    const long steps = 101;
    int picked[3] = {0};
    for (int seed = 1; seed <= 30; seed++) {
        bl_scenario_t *s = NULL;
        double speeds[20];
        int first_seen = -1;
        assert_int_equal(
            bl_scenario_create(BL_SCENARIO_NODE_SLOW, ranks, steps, (uint64_t)seed, NULL, &s), 0);
        assert_int_equal(bl_scenario_change_step(s), 25);
        for (long t = 0; t < steps; t++) {
            bl_scenario_next(s, speeds, NULL);
            int first = -1, count = 0;
            for (int r = 0; r < ranks; r++) {
                if (speeds[r] == BASE) {
                    continue;
                }
                assert_true(speeds[r] == BASE / 2.0);
                if (first < 0) {
                    first = r;
                }
                assert_int_equal(r, first + count); /* consecutive */
                count++;
            }
            if (t < 25 || t >= 75) {
                assert_int_equal(count, 0);
                continue;
            }
            assert_int_equal(first % 8, 0);
            assert_int_equal(count, first == 16 ? 4 : 8);
            if (first_seen < 0) {
                first_seen = first;
            }
            assert_int_equal(first, first_seen); /* the same node throughout */
        }
        picked[first_seen / 8]++;
        bl_scenario_destroy(s);
    }
    /* thirty seeds pick every one of the three nodes */
    assert_true(picked[0] > 0 && picked[1] > 0 && picked[2] > 0);
    /* fewer than 8 ranks: one node, the whole cluster */
    bl_scenario_t *s = NULL;
    double speeds[5];
    assert_int_equal(bl_scenario_create(BL_SCENARIO_NODE_SLOW, 5, 8, 3, NULL, &s), 0);
    for (long t = 0; t < 8; t++) {
        bl_scenario_next(s, speeds, NULL);
        for (int r = 0; r < 5; r++) {
            assert_true(speeds[r] == (t >= 2 && t < 6 ? BASE / 2.0 : BASE));
        }
    }
    bl_scenario_destroy(s);
}

/* fail-slow: one rank, base until T/4, then a geometric fall (the same
 * factor every step) to exactly base/4 at 3T/4, where it stays. */
static void test_fail_slow(void **state)
{
    (void)state;
    const int ranks = 16;
    const long steps = 400; /* the fall is steps [100, 300] */
    const double factor = pow(0.25, 1.0 / 200.0);
    bl_scenario_t *s = NULL;
    double speeds[16];
    double prev = BASE;
    int rank = -1;
    assert_int_equal(bl_scenario_create(BL_SCENARIO_FAIL_SLOW, ranks, steps, 6, NULL, &s), 0);
    assert_int_equal(bl_scenario_change_step(s), -1);
    for (long t = 0; t < steps + 50; t++) { /* and past the end */
        bl_scenario_next(s, speeds, NULL);
        for (int r = 0; r < ranks; r++) {
            if (speeds[r] != BASE) {
                if (rank < 0) {
                    rank = r;
                }
                assert_int_equal(r, rank);
            }
        }
        double v = rank >= 0 ? speeds[rank] : BASE;
        assert_true(v <= prev); /* monotone */
        if (t <= 100) {
            assert_true(v == BASE);
        } else if (t < 300) {
            assert_near(v / prev, factor, 1e-12);
        } else {
            assert_true(v == BASE / 4.0);
        }
        prev = v;
    }
    assert_true(rank >= 0);
    bl_scenario_destroy(s);
}

/* recovery: one rank at base/3 until T/2, everybody at base from then. */
static void test_recovery(void **state)
{
    (void)state;
    const int ranks = 16;
    const long steps = 101;
    bl_scenario_t *s = NULL;
    double speeds[16];
    int rank = -1;
    assert_int_equal(bl_scenario_create(BL_SCENARIO_RECOVERY, ranks, steps, 2, NULL, &s), 0);
    assert_int_equal(bl_scenario_change_step(s), 50);
    for (long t = 0; t < steps; t++) {
        bl_scenario_next(s, speeds, NULL);
        int slow = 0;
        for (int r = 0; r < ranks; r++) {
            if (speeds[r] == BASE) {
                continue;
            }
            assert_true(speeds[r] == BASE / 3.0);
            if (rank < 0) {
                rank = r;
            }
            assert_int_equal(r, rank);
            slow++;
        }
        assert_int_equal(slow, t < 50 ? 1 : 0);
    }
    bl_scenario_destroy(s);
}

/* ---- Communication ------------------------------------------------------------------ */

static void test_ring_allreduce_formula(void **state)
{
    (void)state;
    double a = 5e-6, b = 1e-10, bytes = 11653160.0;
    assert_true(bl_sim_ring_allreduce_s(1, bytes, a, b) == 0.0);
    assert_near(bl_sim_ring_allreduce_s(2, bytes, a, b), 2.0 * (a + bytes / 2.0 * b), 1e-15);
    assert_near(bl_sim_ring_allreduce_s(64, bytes, a, b), 126.0 * (a + bytes / 64.0 * b), 1e-15);
    /* 65,536 ranks: latency-bound, 2·65535·(5 µs + 177.8 B · 0.1 ns) ≈ 0.6577 s */
    assert_near(bl_sim_ring_allreduce_s(65536, bytes, a, b), 131070.0 * (a + bytes / 65536.0 * b),
                1e-12);
    assert_near(bl_sim_ring_allreduce_s(65536, bytes, a, b), 0.65768, 1e-4);
    /* the bandwidth term alone tends to 2·bytes·β */
    assert_near(bl_sim_ring_allreduce_s(1000000, 1e9, 0.0, 1e-10), 0.2, 1e-6);
}

/* ---- Metrics on hand-made traces ------------------------------------------------------ */

static void test_settle_step_hand_trace(void **state)
{
    (void)state;
    /* oracle 1 s every step; close means ≤ 1.05 s */
    const double oracle[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const double steps_s[10] = {1.5, 1.2, 1.04, 1.0, 1.06, 1.0, 0.9, 1.049, 1.0, 1.0};
    /* runs of close steps: [2, 4) and [5, 10) */
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 0, 0.05, 3), 5);
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 0, 0.05, 2), 2);
    /* a run shorter than sustain counts when it reaches the end */
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 0, 0.05, 20), 5);
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 7, 0.05, 20), 7);
    /* a looser tolerance takes step 4 in: [2, 10) */
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 0, 0.10, 3), 2);
    /* never close */
    const double bad[4] = {2, 2, 2, 2};
    assert_int_equal(bl_sim_settle_step(bad, oracle, 4, 0, 0.05, 2), -1);
    /* close only at the last step: that last step settles ("to the end") */
    const double late[4] = {2, 2, 2, 1};
    assert_int_equal(bl_sim_settle_step(late, oracle, 4, 0, 0.05, 20), 3);
    /* invalid input */
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 10, 0.05, 3), -1);
    assert_int_equal(bl_sim_settle_step(NULL, oracle, 10, 0, 0.05, 3), -1);
    assert_int_equal(bl_sim_settle_step(steps_s, oracle, 10, 0, 0.05, 0), -1);
}

static void test_churn_hand_computed(void **state)
{
    (void)state;
    const long current[4] = {4, 4, 4, 4};
    const long next[4] = {6, 2, 5, 3};
    /* |2| + |−2| + |1| + |−1| = 6 samples moved out of 2·16 */
    assert_near(bl_sim_churn(4, 16, current, next), 6.0 / 32.0, 1e-15);
    assert_true(bl_sim_churn(4, 16, current, current) == 0.0);
    const long all_moved[4] = {16, 0, 0, 0};
    /* every sample of ranks 1..3 moves to rank 0: 12 of 16 */
    assert_near(bl_sim_churn(4, 16, current, all_moved), 0.75, 1e-15);
}

/* ---- Runs ------------------------------------------------------------------------------ */

static bl_sim_config_t config(bl_scenario_kind_t scenario, int policy, int ranks, long steps)
{
    bl_sim_config_t c = BL_SIM_CONFIG_DEFAULT;
    c.scenario = scenario;
    c.policy = policy;
    c.ranks = ranks;
    c.steps = steps;
    return c;
}

static bl_sim_result_t run(const bl_sim_config_t *c)
{
    bl_sim_result_t r;
    char err[256] = "";
    if (bl_sim_run(c, NULL, &r, NULL, NULL, err, sizeof err) != 0) {
        fail_msg("bl_sim_run: %s", err);
    }
    return r;
}

static void test_oracle_scores_one(void **state)
{
    (void)state;
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        bl_sim_config_t c = config((bl_scenario_kind_t)k, BL_SIM_ORACLE, 48, 120);
        bl_sim_result_t r = run(&c);
        assert_true(r.throughput_vs_oracle == 1.0);
        assert_true(r.steady_vs_oracle == 1.0);
        assert_true(r.compute_vs_oracle == 1.0);
        assert_true(r.steady_compute_vs_oracle == 1.0);
        assert_true(r.regret_s == 0.0);
        assert_int_equal(r.cold_start_steps, 0);
        /* 120 steps: T/2 = 60, T/4 = 30 */
        if (k == BL_SCENARIO_STEP_CHANGE || k == BL_SCENARIO_RECOVERY) {
            assert_int_equal(r.change_step, 60);
            assert_int_equal(r.recovery_steps, 0);
        } else if (k == BL_SCENARIO_NODE_SLOW) {
            assert_int_equal(r.change_step, 30);
            assert_int_equal(r.recovery_steps, 0);
        } else {
            assert_int_equal(r.change_step, -1);
            assert_int_equal(r.recovery_steps, -1);
        }
        assert_int_equal(r.batch, 48 * BL_SIM_SAMPLES_PER_RANK);
        assert_true(r.decision_us == 0.0); /* no clock given */
    }
}

static void test_static_below_proportional_above(void **state)
{
    (void)state;
    bl_sim_config_t c = config(BL_SCENARIO_FIXED_2X, BL_POLICY_STATIC, 64, 200);
    bl_sim_result_t st = run(&c);
    /* even split: the slow half takes 64 / 500 s; the oracle 86 / 1000 s
     * (4096 · 1000 / 48,000 = 85.3, rounded up on some ranks) */
    assert_near(st.compute_vs_oracle, 0.086 / 0.128, 1e-9);
    assert_true(st.throughput_vs_oracle < 0.75);
    assert_int_equal(st.cold_start_steps, -1);
    assert_true(st.churn == 0.0);
    assert_true(st.regret_s > 0.0);
    c.policy = BL_POLICY_PROPORTIONAL;
    bl_sim_result_t pr = run(&c);
    assert_true(pr.throughput_vs_oracle > st.throughput_vs_oracle + 0.2);
    assert_true(pr.regret_s < st.regret_s);
    assert_true(pr.churn > 0.0);
    assert_true(pr.cold_start_steps >= 0);
}

/* The lag-1 oracle runs the even split at step 0 and the oracle's plan of
 * step t − 1 at step t: on a scenario whose speeds change once, it loses
 * exactly step 0 (versus the oracle) and the step of the change, which is
 * what static loses at those two steps; elsewhere it equals the oracle. */
static void test_causal_oracle_loses_only_changes(void **state)
{
    (void)state;
    const bl_scenario_kind_t kinds[3] = {BL_SCENARIO_FIXED_2X, BL_SCENARIO_FIXED_4X,
                                         BL_SCENARIO_STEP_CHANGE};
    const long steps = 100;
    for (int i = 0; i < 3; i++) {
        bl_sim_config_t c = config(kinds[i], BL_POLICY_STATIC, 64, steps);
        double st[100], orc[100];
        bl_sim_result_t r;
        char err[256] = "";
        assert_int_equal(bl_sim_run(&c, NULL, &r, st, orc, err, sizeof err), 0);
        /* static runs the even split: at step 0 and at the change, its
         * step is the lag-1 oracle's */
        double want = st[0] - orc[0];
        if (r.change_step > 0) {
            want += st[r.change_step] - orc[r.change_step];
        }
        assert_true(want > 0.0);
        assert_near(r.causal_regret_s, want, 1e-12);
        double sum_oracle = 0.0;
        for (long t = 0; t < steps; t++) {
            sum_oracle += orc[t];
        }
        assert_near(r.causal_vs_oracle, sum_oracle / (sum_oracle + want), 1e-12);
        assert_true(r.causal_vs_oracle < 1.0 && r.causal_vs_oracle > 0.98);
        /* the reference does not depend on the policy run beside it */
        c.policy = BL_POLICY_PROPORTIONAL;
        bl_sim_result_t p = run(&c);
        assert_true(p.causal_vs_oracle == r.causal_vs_oracle);
        assert_true(p.causal_regret_s == r.causal_regret_s);
        c.policy = BL_SIM_ORACLE;
        bl_sim_result_t o = run(&c);
        assert_true(o.causal_regret_s == r.causal_regret_s);
    }
    /* equal true speeds: the even split is the oracle's plan every step,
     * and noise unseen by either changes nothing */
    const bl_scenario_kind_t even[2] = {BL_SCENARIO_NOISE, BL_SCENARIO_HEAVY_NOISE};
    for (int i = 0; i < 2; i++) {
        bl_sim_config_t c = config(even[i], BL_POLICY_STATIC, 64, steps);
        bl_sim_result_t r = run(&c);
        assert_true(r.causal_vs_oracle == 1.0);
        assert_true(r.causal_regret_s == 0.0);
    }
}

/* The lag-1 oracle against a plain reference: the even split at step 0,
 * then the proportional plan of the step before's true speeds, timed on
 * this step's speeds and noise; every scenario, 13 ranks (odd, and not a
 * whole node). */
static void test_causal_oracle_reference(void **state)
{
    (void)state;
    enum { RANKS = 13, STEPS = 120 };
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        bl_sim_config_t c = config((bl_scenario_kind_t)k, BL_POLICY_STATIC, RANKS, STEPS);
        c.seed = 5;
        double st[STEPS], orc[STEPS];
        bl_sim_result_t r;
        char err[256] = "";
        assert_int_equal(bl_sim_run(&c, NULL, &r, st, orc, err, sizeof err), 0);
        bl_scenario_t *s = NULL;
        double speeds[RANKS], noise[RANKS];
        long plan[RANKS];
        long batch = (long)RANKS * BL_SIM_SAMPLES_PER_RANK;
        double sum = 0.0, sum_oracle = 0.0;
        assert_int_equal(bl_scenario_create(c.scenario, RANKS, STEPS, c.seed, NULL, &s), 0);
        assert_int_equal(bl_split_even(batch, RANKS, plan), 0);
        for (long t = 0; t < STEPS; t++) {
            bl_scenario_next(s, speeds, noise);
            double cmax = 0.0;
            for (int q = 0; q < RANKS; q++) {
                cmax = fmax(cmax, (double)plan[q] / speeds[q] * noise[q]);
            }
            sum += cmax + r.comm_s;
            sum_oracle += orc[t];
            assert_int_equal(bl_plan_proportional(batch, RANKS, speeds, NULL, NULL, plan), 0);
        }
        bl_scenario_destroy(s);
        assert_near(r.causal_regret_s, sum - sum_oracle, 1e-12 * sum);
        assert_near(r.causal_vs_oracle, sum_oracle / sum, 1e-12);
    }
}

/* On spikes and periodic every change comes unannounced, so one step late
 * costs something at each; on drift every step moves a little. */
static void test_causal_oracle_below_on_changes(void **state)
{
    (void)state;
    const bl_scenario_kind_t kinds[4] = {BL_SCENARIO_SPIKES, BL_SCENARIO_PERIODIC,
                                         BL_SCENARIO_DRIFT, BL_SCENARIO_FAIL_SLOW};
    for (int i = 0; i < 4; i++) {
        bl_sim_config_t c = config(kinds[i], BL_POLICY_STATIC, 64, 400);
        bl_sim_result_t r = run(&c);
        assert_true(r.causal_regret_s > 0.0);
        assert_true(r.causal_vs_oracle < 1.0);
        /* ... and yet it beats the even split kept throughout */
        assert_true(r.causal_regret_s < r.regret_s);
        if (kinds[i] == BL_SCENARIO_SPIKES || kinds[i] == BL_SCENARIO_PERIODIC) {
            /* a spike or a window edge every few steps: a visible loss */
            assert_true(r.causal_vs_oracle < 0.99);
        }
    }
}

static void test_runs_deterministic_and_traces_consistent(void **state)
{
    (void)state;
    for (int p = 0; p < BL_POLICY_COUNT; p++) {
        bl_sim_config_t c = config(BL_SCENARIO_DRIFT, p, 32, 150);
        c.seed = 7;
        double step_a[150], oracle_a[150], step_b[150], oracle_b[150];
        bl_sim_result_t a, b;
        char err[256] = "";
        assert_int_equal(bl_sim_run(&c, NULL, &a, step_a, oracle_a, err, sizeof err), 0);
        assert_int_equal(bl_sim_run(&c, NULL, &b, step_b, oracle_b, err, sizeof err), 0);
        assert_memory_equal(&a, &b, sizeof a);
        assert_memory_equal(step_a, step_b, sizeof step_a);
        assert_memory_equal(oracle_a, oracle_b, sizeof oracle_a);
        /* the figures follow from the traces */
        double sum = 0.0, sum_oracle = 0.0;
        for (int t = 0; t < 150; t++) {
            assert_true(oracle_a[t] >= a.comm_s);
            sum += step_a[t];
            sum_oracle += oracle_a[t];
        }
        assert_near(a.regret_s, sum - sum_oracle, 1e-9);
        assert_near(a.throughput_vs_oracle, sum_oracle / sum, 1e-12);
        assert_int_equal(a.cold_start_steps,
                         bl_sim_settle_step(step_a, oracle_a, 150, 0, 0.05, BL_SIM_SUSTAIN));
        assert_int_equal(a.decisions, 150 / 5);
    }
}

static void test_bad_config(void **state)
{
    (void)state;
    bl_sim_result_t r;
    char err[256];
    bl_sim_config_t c = config(BL_SCENARIO_NOISE, BL_POLICY_STATIC, 0, 10);
    assert_int_equal(bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "ranks"));
    c = config(BL_SCENARIO_NOISE, BL_POLICY_STATIC, 4, 0);
    assert_int_equal(bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "steps"));
    c = config(BL_SCENARIO_NOISE, BL_SIM_ORACLE + 1, 4, 10);
    assert_int_equal(bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "policy"));
    c = config(BL_SCENARIO_COUNT, BL_POLICY_STATIC, 4, 10);
    assert_int_equal(bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "scenario"));
    c = config(BL_SCENARIO_NOISE, BL_POLICY_STATIC, 4, 10);
    c.rebalance_every = 0;
    assert_int_equal(bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "rebalance_every"));
    c.rebalance_every = 5;
    c.nbytes = NAN;
    assert_int_equal(bl_sim_run(&c, NULL, &r, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "nbytes"));
    bl_scenario_t *s = NULL;
    assert_int_equal(bl_scenario_create(BL_SCENARIO_DRIFT, 0, 10, 1, NULL, &s), -1);
    assert_null(s);
    bl_scenario_destroy(NULL);
}

/* ---- Allocation ---------------------------------------------------------------------- */

typedef struct counting {
    long allocs;   /* successful allocations */
    long releases; /* releases of non-NULL pointers */
    long budget;   /* allocations left before failing; < 0: unlimited */
} counting_t;

static void *counting_alloc(size_t nbytes, void *ctx)
{
    counting_t *c = ctx;
    if (c->budget == 0) {
        return NULL;
    }
    if (c->budget > 0) {
        c->budget--;
    }
    void *p = malloc(nbytes);
    c->allocs += p != NULL;
    return p;
}

static void counting_release(void *ptr, void *ctx)
{
    counting_t *c = ctx;
    c->releases++;
    free(ptr);
}

static void test_allocator_hooks_balance(void **state)
{
    (void)state;
    counting_t count = {0, 0, -1};
    bl_part_allocator_t a = {counting_alloc, counting_release, &count};
    bl_sim_config_t c = config(BL_SCENARIO_DRIFT, BL_POLICY_PROPORTIONAL, 16, 40);
    bl_sim_result_t r;
    char err[256];
    assert_int_equal(bl_sim_run(&c, &a, &r, NULL, NULL, err, sizeof err), 0);
    assert_true(count.allocs > 0);
    assert_int_equal(count.allocs, count.releases);
    long needed = count.allocs;
    /* every prefix of the allocations failing: -1, nothing leaked */
    for (long budget = 0; budget < needed; budget++) {
        count = (counting_t){0, 0, budget};
        assert_int_equal(bl_sim_run(&c, &a, &r, NULL, NULL, err, sizeof err), -1);
        assert_int_equal(count.allocs, count.releases);
    }
    /* every scenario alone, likewise */
    for (int k = 0; k < BL_SCENARIO_COUNT; k++) {
        bl_scenario_t *s = NULL;
        count = (counting_t){0, 0, -1};
        assert_int_equal(bl_scenario_create((bl_scenario_kind_t)k, 20, 40, 1, &a, &s), 0);
        bl_scenario_destroy(s);
        assert_int_equal(count.allocs, count.releases);
        needed = count.allocs;
        for (long budget = 0; budget < needed; budget++) {
            count = (counting_t){0, 0, budget};
            s = NULL;
            assert_int_equal(bl_scenario_create((bl_scenario_kind_t)k, 20, 40, 1, &a, &s), -1);
            assert_null(s);
            assert_int_equal(count.allocs, count.releases);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_scenarios_deterministic_per_seed),
        cmocka_unit_test(test_fixed_ratios),
        cmocka_unit_test(test_step_change),
        cmocka_unit_test(test_drift_bounded),
        cmocka_unit_test(test_spikes),
        cmocka_unit_test(test_noise),
        cmocka_unit_test(test_heavy_noise),
        cmocka_unit_test(test_periodic),
        cmocka_unit_test(test_node_slow),
        cmocka_unit_test(test_fail_slow),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_ring_allreduce_formula),
        cmocka_unit_test(test_settle_step_hand_trace),
        cmocka_unit_test(test_churn_hand_computed),
        cmocka_unit_test(test_oracle_scores_one),
        cmocka_unit_test(test_static_below_proportional_above),
        cmocka_unit_test(test_causal_oracle_loses_only_changes),
        cmocka_unit_test(test_causal_oracle_reference),
        cmocka_unit_test(test_causal_oracle_below_on_changes),
        cmocka_unit_test(test_runs_deterministic_and_traces_consistent),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_allocator_hooks_balance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
