/* The plan type (partition/plan.h): a new plan is the even split with
 * one layer per stage but the last; the validator accepts good plans and
 * names what is wrong with each kind of bad one; the even split honours
 * caps; offsets and the formats. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "plan.h"

static void test_init_is_even(void **state)
{
    (void)state;
    bl_plan_t p;
    assert_int_equal(bl_plan_init(&p, 3, 2, 5, 10, 0, NULL), 0);
    assert_int_equal(p.shards[0], 4);
    assert_int_equal(p.shards[1], 3);
    assert_int_equal(p.shards[2], 3);
    assert_null(p.shard_min);
    assert_int_equal(p.first[0], 0);
    assert_int_equal(p.first[1], 1);
    assert_int_equal(p.first[2], 5);
    assert_int_equal(p.version, 0);
    char err[256] = "";
    assert_int_equal(bl_plan_check(&p, "rank", err, sizeof err), 0);
    bl_plan_free(&p, NULL);
    assert_null(p.shards);
    /* Sizes that make no plan. */
    assert_int_equal(bl_plan_init(&p, 0, 1, 1, 4, 0, NULL), -1);
    assert_int_equal(bl_plan_init(&p, 1, 3, 2, 4, 0, NULL), -1);
    assert_int_equal(bl_plan_init(&p, 1, 1, 1, -1, 0, NULL), -1);
}

/* One bad plan: how to break a good one, and the message it must give. */
typedef struct bad_case {
    const char *name;
    void (*breaks)(bl_plan_t *p);
    const char *message;
} bad_case_t;

static void negative_min(bl_plan_t *p)
{
    p->shard_min[1] = -1;
}
static void crossed_caps(bl_plan_t *p)
{
    p->shard_min[0] = 6;
    p->shard_max[0] = 5;
}
static void caps_too_tight(bl_plan_t *p)
{
    p->shard_max[0] = p->shard_max[1] = p->shard_max[2] = 3;
}
static void mins_too_large(bl_plan_t *p)
{
    p->shard_min[0] = p->shard_min[1] = p->shard_min[2] = 4;
}
static void negative_shard(bl_plan_t *p)
{
    p->shards[1] = -2;
    p->shards[0] = 9;
}
static void wrong_sum(bl_plan_t *p)
{
    p->shards[2] = 4;
}
static void outside_caps(bl_plan_t *p)
{
    p->shard_max[0] = 3;
    p->shard_min[2] = 0;
}
static void map_not_at_zero(bl_plan_t *p)
{
    p->first[0] = 1;
}
static void map_not_ascending(bl_plan_t *p)
{
    p->first[2] = p->first[1];
}
static void map_last_stage_empty(bl_plan_t *p)
{
    p->first[2] = 5;
}
static void map_wrong_end(bl_plan_t *p)
{
    p->first[3] = 4;
}

static const bad_case_t bad_cases[] = {
    {"negative min", negative_min,
     "shard caps of pipeline 1: min -1 and max 10 must satisfy 0 <= min <= max"},
    {"crossed caps", crossed_caps,
     "shard caps of pipeline 0: min 6 and max 5 must satisfy 0 <= min <= max"},
    {"caps too tight", caps_too_tight,
     "shard caps: the minimums sum to 0 and the maximums to 9; the global batch 10 must lie "
     "between"},
    {"mins too large", mins_too_large,
     "shard caps: the minimums sum to 12 and the maximums to 30; the global batch 10 must lie "
     "between"},
    {"negative shard", negative_shard, "shard of pipeline 1 is -2; it must be >= 0"},
    {"wrong sum", wrong_sum, "the shard sizes sum to 11 but the global batch is 10"},
    {"outside caps", outside_caps, "shard of pipeline 0 is 4, outside its caps [0, 3]"},
    {"map not at zero", map_not_at_zero,
     "the stage map must start at layer 0; stage 0 starts at layer 1"},
    {"map not ascending", map_not_ascending,
     "stage 2 starts at layer 1: stages must be contiguous, in order, each with at least one of "
     "the model's layers 0..4"},
    {"last stage empty", map_last_stage_empty,
     "stage 2 starts at layer 5: stages must be contiguous, in order, each with at least one of "
     "the model's layers 0..4"},
    {"map wrong end", map_wrong_end,
     "stage 3 starts at layer 4: stages must be contiguous, in order, each with at least one of "
     "the model's layers 0..4"},
};

static void test_validator_names_the_fault(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        bl_plan_t p;
        assert_int_equal(bl_plan_init(&p, 3, 3, 5, 10, 1, NULL), 0);
        char err[256] = "";
        assert_int_equal(bl_plan_check(&p, "pipeline", err, sizeof err), 0);
        bad_cases[i].breaks(&p);
        assert_int_equal(bl_plan_check(&p, "pipeline", err, sizeof err), -1);
        if (strcmp(err, bad_cases[i].message) != 0) {
            fail_msg("%s: got \"%s\"", bad_cases[i].name, err);
        }
        bl_plan_free(&p, NULL);
    }
}

static void test_even_within_caps(void **state)
{
    (void)state;
    bl_plan_t p;
    assert_int_equal(bl_plan_init(&p, 3, 1, 1, 12, 1, NULL), 0);
    p.shard_max[0] = 2;
    p.shard_min[2] = 6;
    char err[256] = "";
    assert_int_equal(bl_plan_check_caps(&p, "rank", err, sizeof err), 0);
    assert_int_equal(bl_plan_even_shards(&p, NULL), 0);
    assert_int_equal(p.shards[0], 2);
    assert_int_equal(p.shards[1] + p.shards[2], 10);
    assert_true(p.shards[2] >= 6);
    assert_int_equal(bl_plan_check(&p, "rank", err, sizeof err), 0);
    bl_plan_free(&p, NULL);
}

static void test_offsets_formats(void **state)
{
    (void)state;
    bl_plan_t p;
    assert_int_equal(bl_plan_init(&p, 2, 2, 5, 64, 0, NULL), 0);
    p.shards[0] = 40;
    p.shards[1] = 24;
    p.first[1] = 3;
    assert_int_equal(bl_plan_offset(&p, 0), 0);
    assert_int_equal(bl_plan_offset(&p, 1), 40);
    char text[64];
    bl_plan_format_shards(&p, text, sizeof text);
    assert_string_equal(text, "40,24");
    bl_plan_format_map(p.first, p.stages, text, sizeof text);
    assert_string_equal(text, "0-2,3-4");
    bl_plan_format_map(p.first, p.stages, text, 4); /* truncated, terminated */
    assert_string_equal(text, "0-2");
    bl_plan_free(&p, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_even),
        cmocka_unit_test(test_validator_names_the_fault),
        cmocka_unit_test(test_even_within_caps),
        cmocka_unit_test(test_offsets_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
