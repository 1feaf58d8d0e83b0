/* The controllers' state in a checkpoint's CONTROL section
 * (runtime/control/policy_state.c) and the shard controller's window in progress
 * (runtime/control/controller.c): the windows travel with the policies and come
 * back value for value; a section from before windows were saved still
 * loads its policies; malformed windows give none (and the policies start
 * afresh); a window that is not one (negative, not finite, too many steps)
 * is refused and the window in progress stays. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "policy_state.h"
#include "restager.h"
#include "test_support.h"

static bl_runtime_t *rt;

enum { P = 3, L = 4 };

static bl_policy_t *bandit(void)
{
    bl_policy_config_t c = {.kind = BL_POLICY_BANDIT,
                            .ranks = P,
                            .batch = 30,
                            .deadband = 0.02,
                            .seed = 5,
                            .estimator = BL_ESTIMATOR_PARAMS_DEFAULT};
    bl_policy_t *p = NULL;
    char err[256];
    assert_int_equal(bl_policy_create(&c, NULL, &p, err, sizeof err), 0);
    return p;
}

/* One decision on fixed observations, so the policy holds learned state. */
static void learn(bl_policy_t *p)
{
    bl_rank_obs_t obs[P];
    long plan[P] = {10, 10, 10};
    for (int r = 0; r < P; r++) {
        obs[r] = (bl_rank_obs_t){.samples = 10.0, .compute_s = 0.01 * (r + 1)};
    }
    bl_decision_t d;
    assert_int_equal(bl_policy_decide(p, obs, 0.03, plan, plan, &d), 0);
}

typedef struct windows {
    double shard[BL_CONTROLLER_WINDOW_DOUBLES(P)];
    double stage[P * BL_RESTAGER_WINDOW_DOUBLES(L)];
} windows_t;

static void fill(windows_t *w)
{
    for (size_t i = 0; i < sizeof w->shard / sizeof w->shard[0]; i++) {
        w->shard[i] = 0.5 + (double)i;
    }
    for (size_t i = 0; i < sizeof w->stage / sizeof w->stage[0]; i++) {
        w->stage[i] = 1e-3 * (double)i;
    }
}

/* The two policies' learned states save to the same bytes. */
static void assert_same_state(const bl_policy_t *a, const bl_policy_t *b)
{
    size_t k = bl_policy_state_bytes(a);
    assert_int_equal(bl_policy_state_bytes(b), k);
    unsigned char *x = malloc(k), *y = malloc(k);
    bl_policy_state_save(a, x);
    bl_policy_state_save(b, y);
    assert_memory_equal(x, y, k);
    free(x);
    free(y);
}

static void collect(const bl_policy_t *p, const windows_t *w, unsigned char **bytes, size_t *n)
{
    bl_control_windows_t cw = {.ranks = P,
                               .layers = L,
                               .shard = w->shard,
                               .shard_count = sizeof w->shard / sizeof w->shard[0],
                               .stage = w->stage,
                               .stage_count = sizeof w->stage / sizeof w->stage[0]};
    assert_int_equal(bl_policy_state_collect(rt, p, NULL, &cw, bytes, n), BL_OK);
}

static void test_windows_round_trip(void **state)
{
    (void)state;
    bl_policy_t *saved = bandit(), *loaded = bandit();
    learn(saved);
    windows_t w;
    fill(&w);
    unsigned char *bytes = NULL;
    size_t n = 0;
    collect(saved, &w, &bytes, &n);
    bl_control_windows_t got;
    bl_policy_state_restore(rt, loaded, NULL, bytes, n, "ckpt", &got);
    assert_int_equal(got.ranks, P);
    assert_int_equal(got.layers, L);
    assert_int_equal(got.shard_count, sizeof w.shard / sizeof w.shard[0]);
    assert_int_equal(got.stage_count, sizeof w.stage / sizeof w.stage[0]);
    assert_memory_equal(got.shard, w.shard, sizeof w.shard);
    assert_memory_equal(got.stage, w.stage, sizeof w.stage);
    /* The policy came back too. */
    assert_same_state(saved, loaded);
    bl_mem_free(bl_rt_allocator(rt), bytes);
    bl_policy_destroy(saved);
    bl_policy_destroy(loaded);
}

/* A section of two parts (checkpoints from before the windows): the
 * policies load, and there are no windows. */
static void test_section_without_windows(void **state)
{
    (void)state;
    bl_policy_t *saved = bandit(), *loaded = bandit();
    learn(saved);
    windows_t w;
    fill(&w);
    unsigned char *bytes = NULL;
    size_t n = 0;
    collect(saved, &w, &bytes, &n);
    size_t n1 = (size_t)bl_le_get64(bytes);
    size_t two_parts = 8 + n1 + 8 + (size_t)bl_le_get64(bytes + 8 + n1);
    bl_control_windows_t got;
    bl_policy_state_restore(rt, loaded, NULL, bytes, two_parts, "old", &got);
    assert_int_equal(got.shard_count, 0);
    assert_int_equal(got.stage_count, 0);
    assert_null(got.shard);
    assert_null(got.stage);
    assert_same_state(saved, loaded);
    bl_mem_free(bl_rt_allocator(rt), bytes);
    bl_policy_destroy(saved);
    bl_policy_destroy(loaded);
}

/* Windows whose counts do not match their bytes, or whose bytes are cut:
 * no windows, and the policy is left as it was (the section is refused). */
static void test_malformed_windows(void **state)
{
    (void)state;
    bl_policy_t *saved = bandit();
    learn(saved);
    windows_t w;
    fill(&w);
    unsigned char *bytes = NULL;
    size_t n = 0;
    collect(saved, &w, &bytes, &n);
    size_t n1 = (size_t)bl_le_get64(bytes);
    size_t third = 8 + n1 + 8 + (size_t)bl_le_get64(bytes + 8 + n1); /* part 3's length */
    unsigned char *bad = malloc(n);
    /* 1: more shard doubles than the part holds; 2: the part cut short
     * (its length still says the whole); 3: a rank count beyond int. */
    for (int fault = 1; fault <= 3; fault++) {
        memcpy(bad, bytes, n);
        size_t len = n;
        if (fault == 1) {
            bl_le_put64(bad + third + 8 + 16, 1000);
        } else if (fault == 2) {
            len = n - 8;
        } else {
            bl_le_put64(bad + third + 8, (uint64_t)1 << 40);
        }
        bl_policy_t *fresh = bandit(), *loaded = bandit();
        bl_control_windows_t got;
        bl_policy_state_restore(rt, loaded, NULL, bad, len, "bad", &got);
        assert_int_equal(got.shard_count, 0);
        assert_int_equal(got.stage_count, 0);
        assert_same_state(fresh, loaded);
        bl_policy_destroy(fresh);
        bl_policy_destroy(loaded);
    }
    free(bad);
    bl_mem_free(bl_rt_allocator(rt), bytes);
    bl_policy_destroy(saved);
}

/* The shard controller's window: saved and loaded value for value; a
 * window that is not one is refused and the window in progress stays. */
static void test_controller_window(void **state)
{
    (void)state;
    bl_controller_t c;
    assert_int_equal(bl_controller_init(&c, rt, "proportional", 4, 32, 1, NULL, NULL, NULL), BL_OK);
    enum { N = BL_CONTROLLER_WINDOW_DOUBLES(1) };
    /* samples, compute, comm, wait and CPU seconds; the step time; the steps */
    double in[N] = {12.0, 0.25, 0.125, 0.0625, 0.1875, 0.75, 3.0}, out[N];
    assert_int_equal(bl_controller_window_load(&c, in), 1);
    bl_controller_window_save(&c, out);
    assert_memory_equal(in, out, sizeof in);
    assert_int_equal(c.window_steps, 3);
    assert_true(c.window[0].cpu_s == 0.1875); /* the quota budgets' CPU seconds resume too */
    const double bad[][N] = {{-1.0, 0.25, 0.125, 0.0625, 0.1875, 0.75, 3.0},
                             {12.0, NAN, 0.125, 0.0625, 0.1875, 0.75, 3.0},
                             {12.0, 0.25, 0.125, INFINITY, 0.1875, 0.75, 3.0},
                             {12.0, 0.25, 0.125, 0.0625, -0.5, 0.75, 3.0},
                             {12.0, 0.25, 0.125, 0.0625, 0.1875, 0.75, 1e12}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(bl_controller_window_load(&c, bad[i]), 0);
        bl_controller_window_save(&c, out);
        assert_memory_equal(in, out, sizeof in);
    }
    bl_controller_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_round_trip),
        cmocka_unit_test(test_section_without_windows),
        cmocka_unit_test(test_malformed_windows),
        cmocka_unit_test(test_controller_window),
    };
    return run_tests_with_runtime("control_state", tests, sizeof tests / sizeof tests[0], &rt);
}
