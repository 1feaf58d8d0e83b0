/* Tests of a pipeline stage's GPT-2 model (runtime/model/gpt2_hold.c and
 * span.h's bl_span_hold_ranges): a span holds exactly the pages of several
 * ranges and faults elsewhere; a stage-local model (BL_GPT2_SPANS) holding
 * any run of units gets GPT-2's initialisation bit for bit as the whole
 * model's on those units, keeps its values across a widening and a
 * narrowing, zeroes only its gradients, counts its own activations, reads
 * its part of an llm.c file alone, and refuses bad input by name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpt2.h"

#define PAGE 4096

/* Returns 1 when a child that reads byte `at` from base faults. */
static int faults(const unsigned char *base, size_t at)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would carry on */
        volatile unsigned char v = base[at];
        (void)v;
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The models a test made, destroyed when it ends, pass or fail. */
static bl_gpt2_t *made[4];
static int made_count;

static bl_gpt2_t *gpt2_hold(bl_gpt2_t *g)
{
    assert_true(made_count < 4);
    made[made_count++] = g;
    return g;
}

static int release_all(void **state)
{
    (void)state;
    while (made_count > 0) {
        bl_gpt2_destroy(made[--made_count]);
    }
    return 0;
}

/* Several ranges, out of order and overlapping, hold exactly their pages;
 * values survive a change that keeps them; given-back pages fault, and read
 * zeros when held again. */
static void test_span_holds_ranges(void **state)
{
    (void)state;
    bl_span_t s;
    assert_int_equal(bl_span_reserve(&s, 16 * PAGE), 0);
    const bl_span_range_t first[] = {
        {9 * PAGE + 10, 10 * PAGE}, {PAGE + 1, 2 * PAGE + 5}, {2 * PAGE, 2 * PAGE + 1}, {5, 5}};
    assert_int_equal(bl_span_hold_ranges(&s, first, 4), 0);
    assert_int_equal(bl_span_held_bytes(&s), 3 * PAGE); /* pages 1, 2 and 9 */
    assert_true(faults(s.base, 0));
    assert_false(faults(s.base, PAGE));
    assert_false(faults(s.base, 3 * PAGE - 1));
    assert_true(faults(s.base, 3 * PAGE));
    assert_false(faults(s.base, 9 * PAGE));
    assert_true(faults(s.base, 10 * PAGE));
    s.base[PAGE + 7] = 7;
    s.base[9 * PAGE + 3] = 9;
    /* Page 1 stays, page 2 and 9 go, page 12 comes. */
    const bl_span_range_t second[] = {{12 * PAGE, 12 * PAGE + 8}, {PAGE, PAGE + 8}};
    assert_int_equal(bl_span_hold_ranges(&s, second, 2), 0);
    assert_int_equal(bl_span_held_bytes(&s), 2 * PAGE);
    assert_int_equal(s.base[PAGE + 7], 7);
    assert_true(faults(s.base, 2 * PAGE));
    assert_true(faults(s.base, 9 * PAGE));
    assert_int_equal(s.base[12 * PAGE], 0);
    const bl_span_range_t again[] = {{9 * PAGE, 9 * PAGE + 4}};
    assert_int_equal(bl_span_hold_ranges(&s, again, 1), 0);
    assert_int_equal(s.base[9 * PAGE + 3], 0); /* given back: zeros */
    assert_true(faults(s.base, PAGE));
    /* Bad ranges are refused. */
    const bl_span_range_t beyond[] = {{0, 16 * PAGE + 1}}, reversed[] = {{8, 4}};
    assert_int_equal(bl_span_hold_ranges(&s, beyond, 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(bl_span_hold_ranges(&s, reversed, 1), -1);
    assert_int_equal(bl_span_hold_ranges(&s, NULL, 0), 0); /* none: everything goes */
    assert_int_equal(bl_span_held_bytes(&s), 0);
    assert_true(faults(s.base, 9 * PAGE));
    bl_span_release(&s);
}

/* A larger shape than the fixture's, so that units span several pages:
 * maxT 64, V 200, L 4, NH 2, C 64, Vp 256. */
static const bl_gpt2_config_t STAGE_CFG = {64, 200, 4, 2, 64, 256};

static bl_gpt2_t *make(unsigned flags)
{
    bl_gpt2_t *g = NULL;
    bl_error_t err = {0};
    if (bl_gpt2_create_with(&STAGE_CFG, &bl_cpu_kernels, NULL, NULL, flags, &err, &g) != BL_OK) {
        fail_msg("bl_gpt2_create_with: %s", err.msg);
    }
    return gpt2_hold(g);
}

/* Checks that stage s holds exactly whole's values on units [first, last). */
static void expect_units_equal(const bl_gpt2_t *s, const bl_gpt2_t *whole, int first, int last)
{
    bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(whole, first, last, r);
    for (int k = 0; k < n; k++) {
        if (memcmp(s->params + r[k].offset, whole->params + r[k].offset,
                   r[k].count * sizeof(float)) != 0) {
            fail_msg("units %d..%d: tensor %d differs from the whole model's", first, last - 1,
                     r[k].tensor);
        }
    }
}

/* Every run of units, held alone, initialises as the whole model does; the
 * memory held is about the units' share; other units fault. */
static void test_stage_init_equals_whole(void **state)
{
    (void)state;
    bl_error_t err = {0};
    bl_gpt2_t *whole = make(0);
    assert_int_equal(bl_gpt2_init_params(whole, 7, &err), BL_OK);
    const int units = STAGE_CFG.num_layers + 2;
    for (int first = 0; first < units; first++) {
        for (int last = first + 1; last <= units; last++) {
            bl_gpt2_t *s = NULL;
            assert_int_equal(bl_gpt2_create_with(&STAGE_CFG, &bl_cpu_kernels, NULL, NULL,
                                                 BL_GPT2_SPANS, &err, &s),
                             BL_OK);
            assert_int_equal(bl_gpt2_held_bytes(s), 0);
            assert_int_equal(bl_gpt2_hold_units(s, first, last, &err), BL_OK);
            assert_int_equal(bl_gpt2_init_params(s, 7, &err), BL_OK);
            expect_units_equal(s, whole, first, last);
            /* Held: the units' four arrays, plus at most two pages a range. */
            bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
            const int n = bl_gpt2_unit_ranges(s, first, last, r);
            size_t floats = 0;
            for (int k = 0; k < n; k++) {
                floats += r[k].count;
            }
            const size_t held_bytes = bl_gpt2_held_bytes(s), want = 4 * floats * sizeof(float);
            assert_true(held_bytes >= want && held_bytes <= want + 4 * (size_t)n * 2 * PAGE);
            bl_gpt2_destroy(s);
        }
    }
}

/* A stage's model: the units not held fault; a widening keeps the held
 * values and a narrowing the kept ones; zeroing the gradients touches only
 * the held units. */
static void test_stage_hold_and_give_back(void **state)
{
    (void)state;
    bl_error_t err = {0};
    bl_gpt2_t *whole = make(0), *s = make(BL_GPT2_SPANS);
    assert_int_equal(bl_gpt2_init_params(whole, 3, &err), BL_OK);
    assert_int_equal(bl_gpt2_hold_units(s, 1, 3, &err), BL_OK); /* blocks 0 and 1 */
    assert_int_equal(bl_gpt2_init_params(s, 3, &err), BL_OK);
    const bl_gpt2_tensor_t *wpe = &s->tensors[BL_GPT2_WPE], *fcw = &s->tensors[BL_GPT2_FCW];
    const size_t slice = fcw->count / (size_t)fcw->layers;
    assert_true(faults((const unsigned char *)(s->params + wpe->offset), 0));
    assert_true(
        faults((const unsigned char *)(s->params + fcw->offset + 3 * slice + slice / 2), 0));
    assert_false(faults((const unsigned char *)(s->grads + fcw->offset + slice), 0));
    /* Block 2 joins (a migration), its parameters sent by hand, then
     * block 0 goes. */
    assert_int_equal(bl_gpt2_hold_units(s, 1, 4, &err), BL_OK);
    bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
    int n = bl_gpt2_unit_ranges(s, 3, 4, r);
    for (int k = 0; k < n; k++) {
        memcpy(s->params + r[k].offset, whole->params + r[k].offset, r[k].count * sizeof(float));
    }
    expect_units_equal(s, whole, 1, 4);
    assert_int_equal(bl_gpt2_hold_units(s, 2, 4, &err), BL_OK);
    expect_units_equal(s, whole, 2, 4);
    assert_true(faults((const unsigned char *)(s->adam_v + fcw->offset + slice / 2), 0));
    /* The gradients of the held units only. */
    n = bl_gpt2_unit_ranges(s, 2, 4, r);
    for (int k = 0; k < n; k++) {
        for (size_t i = 0; i < r[k].count; i++) {
            s->grads[r[k].offset + i] = 1.0f;
        }
    }
    assert_int_equal(bl_gpt2_zero_grads(s, &err), BL_OK);
    for (int k = 0; k < n; k++) {
        for (size_t i = 0; i < r[k].count; i++) {
            assert_true(s->grads[r[k].offset + i] == 0.0f);
        }
    }
    /* Units out of order, and a span on a device, are refused by name. */
    assert_int_equal(bl_gpt2_hold_units(s, 3, 2, &err), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "units 3..1 are not a range of its 6 units"));
    bl_gpt2_t *dev = NULL;
    assert_int_equal(bl_gpt2_create_with(&STAGE_CFG, &bl_cpu_kernels, &bl_mirror_memory, NULL,
                                         BL_GPT2_SPANS, &err, &dev),
                     BL_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "host memory only"));
    /* A model without spans holds everything: nothing to do. */
    assert_int_equal(bl_gpt2_hold_units(whole, 0, 1, &err), BL_OK);
    assert_int_equal(whole->held_last, STAGE_CFG.num_layers + 2);
}

/* A stage's activations: all units count exactly what the activations
 * allocate, and a split's stages each count less. */
static void test_stage_activation_bytes(void **state)
{
    (void)state;
    bl_gpt2_t *g = make(BL_GPT2_SPANS);
    const int units = STAGE_CFG.num_layers + 2;
    const double whole = bl_gpt2_acts_nbytes(g, 4, 32);
    assert_true(bl_gpt2_acts_units_nbytes(g, 4, 32, 0, units) == whole);
    const double front = bl_gpt2_acts_units_nbytes(g, 4, 32, 0, 3);
    const double back = bl_gpt2_acts_units_nbytes(g, 4, 32, 3, units);
    assert_true(front < 0.7 * whole && back < 0.7 * whole);
    assert_true(front + back > whole); /* the shared buffers, twice */
}

/* A stage reads its part of an llm.c file range by range: the same floats
 * as the whole file's; a truncated file is refused naming it. */
static void test_stage_reads_its_part_of_a_file(void **state)
{
    (void)state;
    bl_error_t err = {0};
    bl_gpt2_t *whole = make(0);
    assert_int_equal(bl_gpt2_init_params(whole, 11, &err), BL_OK);
    char path[] = "/tmp/test_gpt2_stage_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    bl_gpt2_file_t file = {
        .config = STAGE_CFG, .param_count = whole->gpt_param_count, .params = whole->params};
    assert_int_equal(bl_gpt2_write(path, &file, &err), BL_OK);
    bl_gpt2_file_t shape;
    assert_int_equal(bl_gpt2_load_shape(path, &err, &shape), BL_OK);
    assert_memory_equal(&shape.config, &STAGE_CFG, sizeof STAGE_CFG);
    assert_null(shape.params);
    bl_gpt2_t *s = make(BL_GPT2_SPANS);
    assert_int_equal(bl_gpt2_hold_units(s, 4, 6, &err), BL_OK);
    bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(s, 4, 6, r);
    for (int k = 0; k < n; k++) {
        assert_int_equal(
            bl_gpt2_read_part(path, r[k].offset, r[k].count, s->params + r[k].offset, &err), BL_OK);
    }
    expect_units_equal(s, whole, 4, 6);
    assert_int_equal(truncate(path, 2000), 0);
    assert_int_equal(bl_gpt2_load_shape(path, &err, &shape), BL_ERR_FORMAT);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "the file is 2000 bytes"));
    unlink(path);
    assert_int_equal(bl_gpt2_load_shape(path, &err, &shape), BL_ERR_IO);
    assert_non_null(strstr(err.msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_holds_ranges),
        cmocka_unit_test_teardown(test_stage_init_equals_whole, release_all),
        cmocka_unit_test_teardown(test_stage_hold_and_give_back, release_all),
        cmocka_unit_test_teardown(test_stage_activation_bytes, release_all),
        cmocka_unit_test_teardown(test_stage_reads_its_part_of_a_file, release_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
