/* Tests of the deterministic generator (runtime/core/rng.c): SplitMix64's
 * reference stream, reproducibility, seed mixing, and the ranges and
 * uniformity of bl_rng_float, bl_rng_below and bl_fill_uniform.
 *
 * Every draw is seeded, so each statistical check sees the same numbers on
 * every run: a bound that passes once passes always, and one that a biased
 * generator would exceed fails every time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DRAWS 100000

/* Pearson's chi-square statistic of counts against a uniform expectation. */
static double chi_square(const long *counts, int buckets, long draws)
{
    double expected = (double)draws / buckets;
    double chi2 = 0.0;
    for (int b = 0; b < buckets; b++) {
        double d = (double)counts[b] - expected;
        chi2 += d * d / expected;
    }
    return chi2;
}

static void test_splitmix64_reference(void **state)
{
    (void)state;
    /* SplitMix64 from state 0 (Vigna's splitmix64.c): the first outputs */
    bl_rng_t r;
    bl_rng_init(&r, 0);
    assert_true(bl_rng_next(&r) == 0xe220a8397b1dcdafULL);
    assert_true(bl_rng_next(&r) == 0x6e789e6aa1b965f4ULL);
    assert_true(bl_rng_next(&r) == 0x06c45d188009454fULL);
}

static void test_same_seed_same_stream(void **state)
{
    (void)state;
    const uint64_t seeds[] = {0, 1, 42, 0xdeadbeefcafef00dULL, UINT64_MAX};
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
        bl_rng_t a;
        bl_rng_t b;
        bl_rng_init(&a, seeds[k]);
        bl_rng_init(&b, seeds[k]);
        for (int i = 0; i < 1000; i++) {
            uint64_t x = bl_rng_next(&a);
            uint64_t y = bl_rng_next(&b);
            if (x != y) {
                fail_msg("seed %zu: draw %d differs", k, i);
            }
        }
        /* the derived draws follow the same stream */
        for (int i = 0; i < 100; i++) {
            assert_true(bl_rng_float(&a) == bl_rng_float(&b));
            assert_true(bl_rng_below(&a, 1000) == bl_rng_below(&b, 1000));
        }
    }
}

static void test_different_seeds_differ(void **state)
{
    (void)state;
    /* neighbouring seeds: no draw of the first 64 matches in position */
    for (uint64_t seed = 0; seed < 16; seed++) {
        bl_rng_t a;
        bl_rng_t b;
        bl_rng_init(&a, seed);
        bl_rng_init(&b, seed + 1);
        int same = 0;
        for (int i = 0; i < 64; i++) {
            same += bl_rng_next(&a) == bl_rng_next(&b);
        }
        if (same != 0) {
            fail_msg("seeds %lu and %lu agree in %d of 64 draws", (unsigned long)seed,
                     (unsigned long)seed + 1, same);
        }
    }
}

static void test_seed_mix_order_sensitive(void **state)
{
    (void)state;
    const uint64_t words[] = {0, 1, 2, 7, 12345, 0x9e3779b97f4a7c15ULL, UINT64_MAX};
    const size_t n = sizeof words / sizeof words[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            uint64_t ab = bl_seed_mix(words[i], words[j]);
            /* deterministic */
            assert_true(ab == bl_seed_mix(words[i], words[j]));
            if (i != j && ab == bl_seed_mix(words[j], words[i])) {
                fail_msg("bl_seed_mix(%zu, %zu) == bl_seed_mix(%zu, %zu)", i, j, j, i);
            }
        }
    }
    /* (seed, epoch) pairs that a plain sum or xor would merge stay apart */
    assert_true(bl_seed_mix(1, 2) != bl_seed_mix(2, 1));
    assert_true(bl_seed_mix(1, 2) != bl_seed_mix(3, 0));
    assert_true(bl_seed_mix(1, 2) != bl_seed_mix(0, 3));
    /* the mixed seed is not the input itself */
    assert_true(bl_seed_mix(0, 0) != 0);
    assert_true(bl_seed_mix(5, 0) != 5);
}

static void test_seed_mix_distinct_over_grid(void **state)
{
    (void)state;
    /* 64 seeds × 64 epochs: 4096 distinct mixed seeds */
    enum { N = 64 };
    uint64_t *mixed = malloc(sizeof *mixed * N * N);
    assert_non_null(mixed);
    for (int a = 0; a < N; a++) {
        for (int b = 0; b < N; b++) {
            mixed[a * N + b] = bl_seed_mix((uint64_t)a, (uint64_t)b);
        }
    }
    for (int i = 0; i < N * N; i++) {
        for (int j = 0; j < i; j++) {
            if (mixed[i] == mixed[j]) {
                free(mixed);
                fail_msg("(%d, %d) and (%d, %d) mix to the same seed", i / N, i % N, j / N, j % N);
            }
        }
    }
    free(mixed);
}

static void test_float_range_and_grid(void **state)
{
    (void)state;
    bl_rng_t r;
    bl_rng_init(&r, 2024);
    double sum = 0.0;
    float lo = 1.0f;
    float hi = 0.0f;
    long counts[10] = {0};
    for (long i = 0; i < DRAWS; i++) {
        float u = bl_rng_float(&r);
        if (!(u >= 0.0f && u < 1.0f)) {
            fail_msg("draw %ld is %.9g, outside [0, 1)", i, (double)u);
        }
        /* 24 random bits: an exact multiple of 2^-24 */
        float scaled = u * 16777216.0f;
        assert_true(scaled == floorf(scaled));
        sum += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        counts[(int)(u * 10.0f)]++;
    }
    /* mean 0.5 with standard error 1/sqrt(12 · DRAWS) ≈ 0.0009 */
    assert_true(fabs(sum / DRAWS - 0.5) < 0.005);
    assert_true(lo < 0.001f);
    assert_true(hi > 0.999f);
    /* 9 degrees of freedom: P(χ² > 40) ≈ 7e-6 */
    double chi2 = chi_square(counts, 10, DRAWS);
    if (chi2 > 40.0) {
        fail_msg("bl_rng_float deciles: chi-square %.1f > 40", chi2);
    }
}

/* Draws bl_rng_below(n) into `buckets` equal buckets (n a multiple of
 * buckets) and checks every draw is below n and the chi-square bound. */
static void check_below_uniform(uint64_t seed, uint64_t n, int buckets)
{
    long counts[64] = {0};
    assert_true(buckets <= 64 && n % (uint64_t)buckets == 0);
    bl_rng_t r;
    bl_rng_init(&r, seed);
    for (long i = 0; i < DRAWS; i++) {
        uint64_t x = bl_rng_below(&r, n);
        if (x >= n) {
            fail_msg("bl_rng_below(%lu) gave %lu", (unsigned long)n, (unsigned long)x);
        }
        counts[x / (n / (uint64_t)buckets)]++;
    }
    /* df + 6·sqrt(2·df): six standard deviations of χ²(df), far in the
     * tail (P < 1e-4 for these df), yet a skew of a few percent in one
     * bucket over 100k draws exceeds it */
    double df = buckets - 1;
    double limit = df + 6.0 * sqrt(2.0 * df);
    double chi2 = chi_square(counts, buckets, DRAWS);
    if (chi2 > limit) {
        fail_msg("bl_rng_below(%lu) over %d buckets: chi-square %.1f > %.1f", (unsigned long)n,
                 buckets, chi2, limit);
    }
}

static void test_below_range_and_uniformity(void **state)
{
    (void)state;
    check_below_uniform(1, 10, 10);
    check_below_uniform(99, 7, 7);
    check_below_uniform(3, 1000, 10);
    check_below_uniform(5, 60, 60);
}

static void test_below_one_is_zero(void **state)
{
    (void)state;
    bl_rng_t r;
    bl_rng_init(&r, 17);
    for (int i = 0; i < 100; i++) {
        assert_true(bl_rng_below(&r, 1) == 0);
    }
}

static void test_below_no_modulo_bias(void **state)
{
    (void)state;
    /* n ≈ 2/3 · 2^64: plain x % n would put values below 2^64 - n (about
     * n/2) twice as often as the rest, so 2/3 of the draws would land in
     * the lower half instead of 1/2. */
    const uint64_t n = 0xaaaaaaaaaaaaaaabULL;
    bl_rng_t r;
    bl_rng_init(&r, 8);
    long lower = 0;
    for (long i = 0; i < DRAWS; i++) {
        uint64_t x = bl_rng_below(&r, n);
        assert_true(x < n);
        lower += x < n / 2;
    }
    double frac = (double)lower / DRAWS;
    if (fabs(frac - 0.5) > 0.01) {
        fail_msg("fraction below n/2 is %.4f, expected 0.5", frac);
    }
}

static void test_below_full_range(void **state)
{
    (void)state;
    /* the largest n: both ends of the range are reachable */
    bl_rng_t r;
    bl_rng_init(&r, 77);
    const uint64_t n = UINT64_MAX;
    int high = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = bl_rng_below(&r, n);
        assert_true(x < n);
        high += x >= n / 2;
    }
    assert_true(high > 400 && high < 600);
}

static void test_fill_uniform_range_and_determinism(void **state)
{
    (void)state;
    enum { N = 50000 };
    float *a = malloc(sizeof *a * N);
    float *b = malloc(sizeof *b * N);
    float *c = malloc(sizeof *c * N);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    const float ranges[][2] = {{0.0f, 1.0f}, {-0.5f, 0.5f}, {-0.0357f, 0.0357f}, {2.0f, 10.0f}};
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        float lo = ranges[k][0];
        float hi = ranges[k][1];
        bl_fill_uniform(a, N, lo, hi, 123);
        bl_fill_uniform(b, N, lo, hi, 123);
        bl_fill_uniform(c, N, lo, hi, 124);
        assert_memory_equal(a, b, sizeof *a * N);
        long same = 0;
        double sum = 0.0;
        for (long i = 0; i < N; i++) {
            if (!(a[i] >= lo && a[i] < hi)) {
                fail_msg("range %zu: value %ld is %.9g, outside [%g, %g)", k, i, (double)a[i],
                         (double)lo, (double)hi);
            }
            same += a[i] == c[i];
            sum += a[i];
        }
        /* another seed, another fill */
        assert_true(same < N / 100);
        /* centred: mean within 1% of the width of the midpoint */
        double mid = 0.5 * ((double)lo + (double)hi);
        assert_true(fabs(sum / N - mid) < 0.01 * ((double)hi - (double)lo));
    }
    /* the fill is bl_rng_float of the same seed, scaled */
    bl_fill_uniform(a, 16, 0.0f, 1.0f, 5);
    bl_rng_t r;
    bl_rng_init(&r, 5);
    for (int i = 0; i < 16; i++) {
        assert_true(a[i] == bl_rng_float(&r));
    }
    /* count 0 writes nothing */
    a[0] = -7.0f;
    bl_fill_uniform(a, 0, 0.0f, 1.0f, 5);
    assert_true(a[0] == -7.0f);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splitmix64_reference),
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_different_seeds_differ),
        cmocka_unit_test(test_seed_mix_order_sensitive),
        cmocka_unit_test(test_seed_mix_distinct_over_grid),
        cmocka_unit_test(test_float_range_and_grid),
        cmocka_unit_test(test_below_range_and_uniformity),
        cmocka_unit_test(test_below_one_is_zero),
        cmocka_unit_test(test_below_no_modulo_bias),
        cmocka_unit_test(test_below_full_range),
        cmocka_unit_test(test_fill_uniform_range_and_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
