/* Tests of the slices that the language-model trainer's node-local reduction
 * cuts (runtime/lm/lm_node.h: bl_lm_node_slice): for every number of ranks,
 * the slices cover every parameter range exactly once, in order, each
 * sub-range inside its range and with its tensor (so that AdamW's decay, a
 * per-range choice, stays right), the inner cuts on 16-float boundaries and
 * the sizes within 16 floats of an even share. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lm_node.h"

#define MAX_PARTS 40

/* Checks the slices of ranges[0 .. count) for 1 .. MAX_PARTS parts. */
static void check_slices(const bl_gpt2_range_t *ranges, int count)
{
    size_t total = 0, end = 0;
    for (int i = 0; i < count; i++) {
        total += ranges[i].count;
        if (ranges[i].offset + ranges[i].count > end) {
            end = ranges[i].offset + ranges[i].count;
        }
    }
    unsigned char *seen = calloc(end > 0 ? end : 1, 1);
    assert_non_null(seen);
    bl_gpt2_range_t *out = calloc((size_t)(count > 0 ? count : 1), sizeof *out);
    assert_non_null(out);
    for (int parts = 1; parts <= MAX_PARTS; parts++) {
        memset(seen, 0, end > 0 ? end : 1);
        size_t covered = 0; /* the elements of the end-to-end sequence so far */
        for (int part = 0; part < parts; part++) {
            const int n = bl_lm_node_slice(ranges, count, part, parts, out);
            assert_in_range(n, 0, count);
            size_t size = 0;
            int last_range = -1;
            for (int k = 0; k < n; k++) {
                assert_true(out[k].count > 0);
                /* The sub-range lies in one range, of the same tensor, and
                 * the sub-ranges follow the ranges' order. */
                int in = -1;
                for (int i = 0; i < count; i++) {
                    if (out[k].offset >= ranges[i].offset &&
                        out[k].offset + out[k].count <= ranges[i].offset + ranges[i].count) {
                        in = i;
                    }
                }
                assert_true(in > last_range);
                assert_int_equal(out[k].tensor, ranges[in].tensor);
                last_range = in;
                for (size_t j = 0; j < out[k].count; j++) {
                    assert_int_equal(seen[out[k].offset + j], 0);
                    seen[out[k].offset + j] = 1;
                }
                size += out[k].count;
            }
            covered += size;
            /* Inner cuts fall on 16 floats, and every slice is within 16 of
             * an even share. */
            if (part < parts - 1) {
                assert_int_equal(covered % 16, 0);
            }
            const double share = (double)total / parts;
            assert_true(fabs((double)size - share) < 16.0);
        }
        assert_int_equal(covered, total);
        for (int i = 0; i < count; i++) {
            for (size_t j = 0; j < ranges[i].count; j++) {
                assert_int_equal(seen[ranges[i].offset + j], 1);
            }
        }
    }
    free(out);
    free(seen);
}

/* GPT-2's tensors end to end, with lengths of mixed sizes and decays. */
static void test_contiguous_tensors(void **state)
{
    (void)state;
    const size_t lengths[] = {8192, 2048, 64,    64,  12288, 192, 4096, 64,
                              64,   64,   16384, 256, 16384, 64,  32,   32};
    bl_gpt2_range_t r[16];
    size_t at = 0;
    for (int i = 0; i < 16; i++) {
        r[i] = (bl_gpt2_range_t){at, lengths[i], i};
        at += lengths[i];
    }
    check_slices(r, 16);
}

/* Ranges apart in memory, out of offset order, with user layers' tensor
 * numbers (>= BL_GPT2_TENSOR_COUNT) and lengths that are not multiples of
 * 16. */
static void test_scattered_ranges(void **state)
{
    (void)state;
    const bl_gpt2_range_t r[] = {{1000, 37, 0},
                                 {5, 3, 2},
                                 {200, 401, 5},
                                 {3000, 1, BL_GPT2_TENSOR_COUNT},
                                 {2000, 97, BL_GPT2_TENSOR_COUNT + 3}};
    check_slices(r, 5);
}

/* Fewer floats than ranks: the first slices are empty, the last holds all
 * (every cut rounds down to 0); and no ranges at all. */
static void test_tiny_and_empty(void **state)
{
    (void)state;
    const bl_gpt2_range_t r[] = {{0, 7, 1}, {7, 5, 2}};
    check_slices(r, 2);
    bl_gpt2_range_t out[2];
    assert_int_equal(bl_lm_node_slice(r, 2, 0, 4, out), 0);
    assert_int_equal(bl_lm_node_slice(r, 2, 3, 4, out), 2);
    assert_int_equal(out[0].count + out[1].count, 12);
    assert_int_equal(bl_lm_node_slice(r, 0, 0, 3, out), 0);
}

/* A worked example: 100 floats in ranges of 40 and 60 over 3 ranks cut at
 * floor(100/3) = 33 -> 32 and floor(200/3) = 66 -> 64. */
static void test_example(void **state)
{
    (void)state;
    const bl_gpt2_range_t r[] = {{0, 40, 0}, {40, 60, 2}};
    bl_gpt2_range_t out[2];
    assert_int_equal(bl_lm_node_slice(r, 2, 0, 3, out), 1);
    assert_int_equal(out[0].offset, 0);
    assert_int_equal(out[0].count, 32);
    assert_int_equal(bl_lm_node_slice(r, 2, 1, 3, out), 2);
    assert_int_equal(out[0].offset, 32);
    assert_int_equal(out[0].count, 8);
    assert_int_equal(out[0].tensor, 0);
    assert_int_equal(out[1].offset, 40);
    assert_int_equal(out[1].count, 24);
    assert_int_equal(out[1].tensor, 2);
    assert_int_equal(bl_lm_node_slice(r, 2, 2, 3, out), 1);
    assert_int_equal(out[0].offset, 64);
    assert_int_equal(out[0].count, 36);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_contiguous_tensors),
        cmocka_unit_test(test_scattered_ranges),
        cmocka_unit_test(test_tiny_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
