/* Tests of the integer splits (partition/shards.c): even splits, and
 * largest-remainder proportional splits that sum to the total exactly,
 * stay within one unit of the exact share and break ties to the lower
 * index; invalid input gives -1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "partition_test.h"

#define MAX_PARTS 64

static void assert_shares(const long *got, const long *want, int parts)
{
    for (int i = 0; i < parts; i++) {
        if (got[i] != want[i]) {
            fail_msg("share %d is %ld, expected %ld", i, got[i], want[i]);
        }
    }
}

/* ---- bl_split_even -------------------------------------------------------- */

static void test_even_examples(void **state)
{
    (void)state;
    long s[8];
    assert_int_equal(bl_split_even(10, 3, s), 0);
    assert_shares(s, (const long[]){4, 3, 3}, 3);
    assert_int_equal(bl_split_even(12, 4, s), 0);
    assert_shares(s, (const long[]){3, 3, 3, 3}, 4);
    assert_int_equal(bl_split_even(7, 1, s), 0);
    assert_shares(s, (const long[]){7}, 1);
    assert_int_equal(bl_split_even(11, 4, s), 0);
    assert_shares(s, (const long[]){3, 3, 3, 2}, 4);
}

static void test_even_zero_total(void **state)
{
    (void)state;
    long s[5] = {9, 9, 9, 9, 9};
    assert_int_equal(bl_split_even(0, 5, s), 0);
    assert_shares(s, (const long[]){0, 0, 0, 0, 0}, 5);
}

static void test_even_more_parts_than_total(void **state)
{
    (void)state;
    long s[7];
    assert_int_equal(bl_split_even(3, 7, s), 0);
    assert_shares(s, (const long[]){1, 1, 1, 0, 0, 0, 0}, 7);
}

static void test_even_properties(void **state)
{
    (void)state;
    long s[MAX_PARTS];
    uint64_t rs = 0x1234567;
    for (int round = 0; round < 20000; round++) {
        int parts = 1 + (int)(next_random(&rs) % MAX_PARTS);
        long total = (long)(next_random(&rs) % (round % 2 == 0 ? 200 : 1000000000));
        assert_int_equal(bl_split_even(total, parts, s), 0);
        long sum = 0;
        long lo = LONG_MAX;
        long hi = LONG_MIN;
        for (int i = 0; i < parts; i++) {
            sum += s[i];
            lo = s[i] < lo ? s[i] : lo;
            hi = s[i] > hi ? s[i] : hi;
            /* the larger shares come first */
            if (i > 0 && s[i] > s[i - 1]) {
                fail_msg("split %ld/%d: share %d (%ld) exceeds share %d (%ld)", total, parts, i,
                         s[i], i - 1, s[i - 1]);
            }
        }
        if (sum != total || hi - lo > 1 || lo < 0) {
            fail_msg("split %ld/%d: sum %ld, shares in [%ld, %ld]", total, parts, sum, lo, hi);
        }
        /* exactly total % parts shares are the larger ones */
        int larger = 0;
        for (int i = 0; i < parts; i++) {
            larger += s[i] == total / parts + 1;
        }
        assert_int_equal(larger, total % parts);
    }
}

static void test_even_huge_total(void **state)
{
    (void)state;
    long s[3];
    assert_int_equal(bl_split_even(LONG_MAX, 3, s), 0);
    /* summed from the top: no overflow, the sum is LONG_MAX */
    assert_true(s[0] - s[2] <= 1 && s[2] >= 0);
    assert_true(LONG_MAX - s[0] - s[1] == s[2]);
}

static void test_even_invalid(void **state)
{
    (void)state;
    long s[4];
    assert_int_equal(bl_split_even(10, 0, s), -1);
    assert_int_equal(bl_split_even(10, -1, s), -1);
    assert_int_equal(bl_split_even(-1, 4, s), -1);
    assert_int_equal(bl_split_even(LONG_MIN, 4, s), -1);
    assert_int_equal(bl_split_even(10, 4, NULL), -1);
}

/* ---- bl_split_proportional -------------------------------------------------- */

static void check_proportional(long total, int parts, const double *w, const long *want)
{
    long s[MAX_PARTS];
    assert_true(parts <= MAX_PARTS);
    assert_int_equal(bl_split_proportional(total, parts, w, s), 0);
    assert_shares(s, want, parts);
}

static void test_proportional_examples(void **state)
{
    (void)state;
    /* exact quotas */
    check_proportional(60, 3, (const double[]){1, 2, 3}, (const long[]){10, 20, 30});
    check_proportional(7, 1, (const double[]){0.25}, (const long[]){7});
    /* zero weights get nothing */
    check_proportional(10, 4, (const double[]){0, 1, 0, 4}, (const long[]){0, 2, 0, 8});
    /* largest remainder, not the lowest index: quotas 1/3 and 2/3 */
    check_proportional(1, 2, (const double[]){1, 2}, (const long[]){0, 1});
    /* quotas 3.5, 2.1, 1.4: floors 6 units, the seventh to the 0.5 */
    check_proportional(7, 3, (const double[]){5, 3, 2}, (const long[]){4, 2, 1});
    /* quotas 0.2 · 9 = 1.8, 0.3 · 9 = 2.7, 0.5 · 9 = 4.5: 1 + 2 + 4 = 7,
     * the two units to 0.8 and 0.7 */
    check_proportional(9, 3, (const double[]){2, 3, 5}, (const long[]){2, 3, 4});
    /* total 0 */
    check_proportional(0, 3, (const double[]){1, 2, 3}, (const long[]){0, 0, 0});
    /* weights need not be normalised, nor integers */
    check_proportional(100, 2, (const double[]){0.001, 0.003}, (const long[]){25, 75});
    check_proportional(100, 2, (const double[]){1e12, 3e12}, (const long[]){25, 75});
}

static void test_proportional_ties_to_lower_index(void **state)
{
    (void)state;
    /* equal weights: the units left after the floors go to the first ones */
    check_proportional(1, 3, (const double[]){1, 1, 1}, (const long[]){1, 0, 0});
    check_proportional(2, 3, (const double[]){1, 1, 1}, (const long[]){1, 1, 0});
    check_proportional(5, 4, (const double[]){2, 2, 2, 2}, (const long[]){2, 1, 1, 1});
    check_proportional(2, 5, (const double[]){1, 1, 1, 1, 1}, (const long[]){1, 1, 0, 0, 0});
    /* quotas 0.5, 1.5, 1.0: the tie of 0.5 remainders goes to index 0 */
    check_proportional(3, 3, (const double[]){1, 3, 2}, (const long[]){1, 1, 1});
    /* quotas 1.0, 1.5, 0.5: the tie goes to index 1, not 2 */
    check_proportional(3, 3, (const double[]){2, 3, 1}, (const long[]){1, 2, 0});
    /* quotas 0, 1.5, 0, 1.5 */
    check_proportional(3, 4, (const double[]){0, 1, 0, 1}, (const long[]){0, 2, 0, 1});
    /* a tie after a larger remainder: quotas 2.25, 0.75, 2.25, 0.75 → 2 + 0 + 2 + 0;
     * the two units to the 0.75s */
    check_proportional(6, 4, (const double[]){3, 1, 3, 1}, (const long[]){2, 1, 2, 1});
}

/* Checks the largest-remainder properties of one split against quotas
 * computed in long double. */
static void check_properties(long total, int parts, const double *w, const long *s)
{
    long double sum_w = 0.0L;
    for (int i = 0; i < parts; i++) {
        sum_w += w[i];
    }
    /* the library computes in double: its quotas may be off by a few ulps
     * of the total (1e-4 of a unit at 10^12) */
    long double tol = 1e-9L + 8e-16L * (long double)total;
    long sum = 0;
    int up[MAX_PARTS];
    long double rem[MAX_PARTS];
    for (int i = 0; i < parts; i++) {
        long double q = (long double)total * w[i] / sum_w;
        sum += s[i];
        if (w[i] == 0.0 && s[i] != 0) {
            fail_msg("total %ld: part %d of weight 0 got %ld", total, i, s[i]);
        }
        /* within one unit of the exact share */
        if (fabsl((long double)s[i] - q) >= 1.0L + tol) {
            fail_msg("total %ld: part %d got %ld for a quota of %.6Lf", total, i, s[i], q);
        }
        long double fl = floorl(q);
        rem[i] = q - fl;
        up[i] = (long double)s[i] > fl + 0.5L;
    }
    if (sum != total) {
        fail_msg("shares sum to %ld, expected %ld", sum, total);
    }
    /* no part that was rounded down has a clearly larger remainder than a
     * part that was rounded up */
    for (int i = 0; i < parts; i++) {
        for (int j = 0; j < parts; j++) {
            if (up[i] && !up[j] && rem[j] > rem[i] + tol) {
                fail_msg("total %ld: part %d rounded up (remainder %.9Lf) before part %d "
                         "(remainder %.9Lf)",
                         total, i, rem[i], j, rem[j]);
            }
        }
    }
}

static void test_proportional_random(void **state)
{
    (void)state;
    uint64_t rs = 0xfeedface;
    double w[MAX_PARTS];
    long s[MAX_PARTS];
    for (int round = 0; round < 20000; round++) {
        int parts = 1 + (int)(next_random(&rs) % MAX_PARTS);
        long total;
        switch (round % 3) {
        case 0:
            total = (long)(next_random(&rs) % 10); /* often fewer units than parts */
            break;
        case 1:
            total = (long)(next_random(&rs) % 100000);
            break;
        default:
            total = (long)(next_random(&rs) % 1000000000000L);
            break;
        }
        int nonzero = 0;
        for (int i = 0; i < parts; i++) {
            uint64_t r = next_random(&rs);
            if (r % 4 == 0) {
                w[i] = 0.0; /* a quarter of the weights are zero */
            } else if (round % 2 == 0) {
                w[i] = (double)(r % 16); /* small integers: many exact ties */
            } else {
                w[i] = (double)(r >> 11) * 0x1.0p-53 * 1000.0;
            }
            nonzero += w[i] > 0.0;
        }
        if (nonzero == 0) {
            w[parts - 1] = 1.0;
        }
        if (bl_split_proportional(total, parts, w, s) != 0) {
            fail_msg("round %d: valid input refused", round);
        }
        check_properties(total, parts, w, s);
    }
}

static void test_proportional_matches_exact_reference(void **state)
{
    (void)state;
    /* Integer weights whose sum is a power of two: every quota
     * total · w / 2^k is exact in double, so the split has one right
     * answer, computed here in integers (ties to the lower index). */
    uint64_t rs = 42;
    long s[16];
    long ref[16];
    double w[16];
    for (int round = 0; round < 5000; round++) {
        int parts = 2 + (int)(next_random(&rs) % 15);
        long iw[16];
        long left = 64;
        for (int i = 0; i < parts - 1; i++) {
            iw[i] = (long)(next_random(&rs) % (uint64_t)(left + 1));
            left -= iw[i];
        }
        iw[parts - 1] = left; /* the weights sum to 64 */
        long total = (long)(next_random(&rs) % 1000);
        long given = 0;
        long rem[16];
        for (int i = 0; i < parts; i++) {
            w[i] = (double)iw[i];
            ref[i] = total * iw[i] / 64;
            rem[i] = total * iw[i] % 64;
            given += ref[i];
        }
        while (given < total) {
            int best = 0;
            for (int i = 1; i < parts; i++) {
                if (rem[i] > rem[best]) {
                    best = i;
                }
            }
            ref[best]++;
            rem[best] = -1;
            given++;
        }
        assert_int_equal(bl_split_proportional(total, parts, w, s), 0);
        for (int i = 0; i < parts; i++) {
            if (s[i] != ref[i]) {
                fail_msg("round %d (total %ld, %d parts): share %d is %ld, expected %ld", round,
                         total, parts, i, s[i], ref[i]);
            }
        }
    }
}

static void test_proportional_invalid(void **state)
{
    (void)state;
    long s[4];
    const double ok[3] = {1, 2, 3};
    assert_int_equal(bl_split_proportional(10, 0, ok, s), -1);
    assert_int_equal(bl_split_proportional(10, -2, ok, s), -1);
    assert_int_equal(bl_split_proportional(-1, 3, ok, s), -1);
    assert_int_equal(bl_split_proportional(10, 3, NULL, s), -1);
    assert_int_equal(bl_split_proportional(10, 3, ok, NULL), -1);
    /* all zero */
    assert_int_equal(bl_split_proportional(10, 3, (const double[]){0, 0, 0}, s), -1);
    assert_int_equal(bl_split_proportional(0, 1, (const double[]){0}, s), -1);
    /* negative, even when the sum is positive */
    assert_int_equal(bl_split_proportional(10, 3, (const double[]){1, -1, 3}, s), -1);
    assert_int_equal(bl_split_proportional(10, 2, (const double[]){-1e-300, 1}, s), -1);
    /* not finite */
    assert_int_equal(bl_split_proportional(10, 3, (const double[]){1, NAN, 3}, s), -1);
    assert_int_equal(bl_split_proportional(10, 2, (const double[]){NAN, NAN}, s), -1);
    assert_int_equal(bl_split_proportional(10, 2, (const double[]){INFINITY, 1}, s), -1);
    assert_int_equal(bl_split_proportional(10, 2, (const double[]){1, -INFINITY}, s), -1);
}

/* Finite weights whose sum or total·w would overflow a double still split. */
static void test_proportional_huge_weights(void **state)
{
    const double both_max[2] = {DBL_MAX, DBL_MAX};
    const long half[2] = {5, 5};
    check_proportional(10, 2, both_max, half);
    const double lopsided[2] = {1e308, 1.0};
    const long all_first[2] = {10, 0};
    check_proportional(10, 2, lopsided, all_first);
    const double tiny[3] = {1e-300, 2e-300, 1e-300};
    const long quarters[3] = {1, 2, 1};
    check_proportional(4, 3, tiny, quarters);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_even_examples),
        cmocka_unit_test(test_even_zero_total),
        cmocka_unit_test(test_even_more_parts_than_total),
        cmocka_unit_test(test_even_properties),
        cmocka_unit_test(test_even_huge_total),
        cmocka_unit_test(test_even_invalid),
        cmocka_unit_test(test_proportional_examples),
        cmocka_unit_test(test_proportional_ties_to_lower_index),
        cmocka_unit_test(test_proportional_random),
        cmocka_unit_test(test_proportional_matches_exact_reference),
        cmocka_unit_test(test_proportional_invalid),
        cmocka_unit_test(test_proportional_huge_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
