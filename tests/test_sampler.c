/* Tests of the global-batch sampler (runtime/data/sampler.c): a step's batch is a
 * pure function of (seed, epoch, step), whatever was asked before; an epoch
 * visits each sample at most once; shuffle off is file order; bad shapes
 * are refused with a message naming the batch size. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

/* ---- Helpers ------------------------------------------------------------ */

static void init_ok(bl_sampler_t *s, long count, int batch, uint64_t seed, int shuffle)
{
    bl_error_t err = {0};
    bl_status_t st = bl_sampler_init(s, count, batch, seed, shuffle, NULL, &err);
    if (st != BL_OK) {
        fail_msg("bl_sampler_init(%ld, %d): %s: %s", count, batch, bl_status_string(st), err.msg);
    }
}

/* The whole order of epoch `epoch` (steps_per_epoch · B indices) into out. */
static void epoch_order(bl_sampler_t *s, long epoch, long *out)
{
    for (long t = 0; t < s->steps_per_epoch; t++) {
        bl_sampler_batch(s, epoch * s->steps_per_epoch + t, out + t * s->batch);
    }
}

/* The batch of step alone, from a fresh sampler. */
static void fresh_batch(long count, int batch, uint64_t seed, int shuffle, long step, long *out)
{
    bl_sampler_t s;
    init_ok(&s, count, batch, seed, shuffle);
    bl_sampler_batch(&s, step, out);
    bl_sampler_free(&s);
}

static long *alloc_longs(long n)
{
    long *p = calloc((size_t)n, sizeof *p);
    assert_non_null(p);
    return p;
}

/* ---- Determinism -------------------------------------------------------- */

static void test_two_samplers_agree(void **state)
{
    (void)state;
    const long count = 1000;
    const int batch = 32; /* 31 steps per epoch, 8 samples dropped */
    bl_sampler_t a;
    bl_sampler_t b;
    init_ok(&a, count, batch, 7, 1);
    init_ok(&b, count, batch, 7, 1);
    assert_int_equal(a.steps_per_epoch, 31);
    long ia[32];
    long ib[32];
    for (long step = 0; step < 31 * 5 + 3; step++) {
        bl_sampler_batch(&a, step, ia);
        bl_sampler_batch(&b, step, ib);
        if (memcmp(ia, ib, sizeof ia) != 0) {
            fail_msg("step %ld differs between two samplers of the same arguments", step);
        }
    }
    bl_sampler_free(&a);
    bl_sampler_free(&b);
}

static void test_step_alone_equals_step_in_sequence(void **state)
{
    (void)state;
    const long count = 257;
    const int batch = 16; /* 16 steps per epoch */
    bl_sampler_t seq;
    init_ok(&seq, count, batch, 99, 1);
    long in_seq[16];
    long alone[16];
    for (long step = 0; step < 16 * 4; step++) {
        bl_sampler_batch(&seq, step, in_seq);
        fresh_batch(count, batch, 99, 1, step, alone);
        if (memcmp(in_seq, alone, sizeof alone) != 0) {
            fail_msg("step %ld computed alone differs from the same step in sequence", step);
        }
    }
    bl_sampler_free(&seq);
}

static void test_earlier_epoch_rebuilt_after_later(void **state)
{
    (void)state;
    const long count = 100;
    const int batch = 10;
    bl_sampler_t s;
    init_ok(&s, count, batch, 3, 1);
    long *first = alloc_longs(count);
    long *later = alloc_longs(count);
    long *again = alloc_longs(count);
    epoch_order(&s, 0, first);
    epoch_order(&s, 5, later);
    /* back to epoch 0, step by step in reverse, then epoch 5 again */
    for (long t = s.steps_per_epoch - 1; t >= 0; t--) {
        bl_sampler_batch(&s, t, again + t * batch);
    }
    assert_memory_equal(first, again, sizeof *first * count);
    epoch_order(&s, 5, again);
    assert_memory_equal(later, again, sizeof *later * count);
    /* and alternating between epochs, one batch at a time */
    long batch_buf[10];
    for (long t = 0; t < s.steps_per_epoch; t++) {
        bl_sampler_batch(&s, t, batch_buf);
        assert_memory_equal(batch_buf, first + t * batch, sizeof batch_buf);
        bl_sampler_batch(&s, 5 * s.steps_per_epoch + t, batch_buf);
        assert_memory_equal(batch_buf, later + t * batch, sizeof batch_buf);
    }
    free(first);
    free(later);
    free(again);
    bl_sampler_free(&s);
}

static void test_large_step_number(void **state)
{
    (void)state;
    /* epoch 10^6: only (seed, epoch) matters, not how many epochs came
     * before, so it is as cheap and as reproducible as epoch 0 */
    const long step = 1000000L * 12 + 5;
    long a[8];
    long b[8];
    fresh_batch(100, 8, 11, 1, step, a);
    bl_sampler_t s;
    init_ok(&s, 100, 8, 11, 1);
    bl_sampler_batch(&s, 0, b);
    bl_sampler_batch(&s, step, b);
    assert_memory_equal(a, b, sizeof a);
    bl_sampler_free(&s);
}

/* ---- Coverage ----------------------------------------------------------- */

/* Checks that epoch `epoch` of s holds steps_per_epoch · B distinct indices
 * in [0, count). */
static void check_epoch_coverage(bl_sampler_t *s, long epoch)
{
    long n = s->steps_per_epoch * s->batch;
    long *order = alloc_longs(n);
    unsigned char *seen = calloc((size_t)s->count, 1);
    assert_non_null(seen);
    epoch_order(s, epoch, order);
    long distinct = 0;
    for (long i = 0; i < n; i++) {
        if (order[i] < 0 || order[i] >= s->count) {
            fail_msg("epoch %ld position %ld: index %ld outside [0, %ld)", epoch, i, order[i],
                     s->count);
        }
        if (seen[order[i]]) {
            fail_msg("epoch %ld: sample %ld appears twice", epoch, order[i]);
        }
        seen[order[i]] = 1;
        distinct++;
    }
    assert_int_equal(distinct, n);
    free(seen);
    free(order);
}

static void test_epoch_covers_each_sample_at_most_once(void **state)
{
    (void)state;
    const long counts[] = {1, 10, 97, 1000, 1001};
    const int batches[] = {1, 3, 10, 64, 97};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        for (size_t j = 0; j < sizeof batches / sizeof batches[0]; j++) {
            if (batches[j] > counts[i]) {
                continue;
            }
            for (int shuffle = 0; shuffle <= 1; shuffle++) {
                bl_sampler_t s;
                init_ok(&s, counts[i], batches[j], 2024, shuffle);
                assert_int_equal(s.steps_per_epoch, counts[i] / batches[j]);
                check_epoch_coverage(&s, 0);
                check_epoch_coverage(&s, 1);
                check_epoch_coverage(&s, 17);
                bl_sampler_free(&s);
            }
        }
    }
}

static void test_batch_equal_to_count(void **state)
{
    (void)state;
    /* one step per epoch, which holds every sample */
    bl_sampler_t s;
    init_ok(&s, 50, 50, 1, 1);
    assert_int_equal(s.steps_per_epoch, 1);
    long idx[50];
    for (long step = 0; step < 4; step++) {
        bl_sampler_batch(&s, step, idx);
        long sum = 0;
        for (int i = 0; i < 50; i++) {
            sum += idx[i];
        }
        assert_int_equal(sum, 49 * 50 / 2);
    }
    check_epoch_coverage(&s, 3);
    bl_sampler_free(&s);
}

/* ---- Shuffle ------------------------------------------------------------ */

static void test_epochs_differ_with_shuffle(void **state)
{
    (void)state;
    const long count = 200;
    bl_sampler_t s;
    init_ok(&s, count, 20, 5, 1);
    long *orders[6];
    for (int e = 0; e < 6; e++) {
        orders[e] = alloc_longs(count);
        epoch_order(&s, e, orders[e]);
    }
    long identity_positions = 0;
    for (int e = 0; e < 6; e++) {
        for (long i = 0; i < count; i++) {
            identity_positions += orders[e][i] == i;
        }
        for (int f = 0; f < e; f++) {
            /* two independent permutations of 200 agree in about one
             * position; 20 would be absurd */
            long same = 0;
            for (long i = 0; i < count; i++) {
                same += orders[e][i] == orders[f][i];
            }
            if (same > 20) {
                fail_msg("epochs %d and %d agree in %ld of %ld positions", f, e, same, count);
            }
        }
    }
    /* shuffled, not file order: about one fixed point per epoch */
    assert_true(identity_positions < 30);
    for (int e = 0; e < 6; e++) {
        free(orders[e]);
    }
    bl_sampler_free(&s);
}

static void test_shuffle_off_is_file_order(void **state)
{
    (void)state;
    const long count = 103;
    const int batch = 10; /* 10 steps, samples 100..102 never used */
    bl_sampler_t s;
    init_ok(&s, count, batch, 12345, 0);
    long idx[10];
    for (long step = 0; step < 10 * 4; step++) {
        bl_sampler_batch(&s, step, idx);
        long t = step % 10;
        for (int i = 0; i < batch; i++) {
            if (idx[i] != t * batch + i) {
                fail_msg("shuffle off, step %ld position %d: %ld, expected %ld", step, i, idx[i],
                         t * batch + i);
            }
        }
    }
    bl_sampler_free(&s);
    /* the seed plays no part */
    long other[10];
    fresh_batch(count, batch, 1, 0, 23, idx);
    fresh_batch(count, batch, 999, 0, 23, other);
    assert_memory_equal(idx, other, sizeof idx);
    assert_int_equal(idx[0], 30);
}

static void test_different_seeds_differ(void **state)
{
    (void)state;
    const long count = 500;
    long *a = alloc_longs(count);
    long *b = alloc_longs(count);
    for (uint64_t seed = 0; seed < 8; seed++) {
        bl_sampler_t sa;
        bl_sampler_t sb;
        init_ok(&sa, count, 50, seed, 1);
        init_ok(&sb, count, 50, seed + 1, 1);
        for (long e = 0; e < 3; e++) {
            epoch_order(&sa, e, a);
            epoch_order(&sb, e, b);
            long same = 0;
            for (long i = 0; i < count; i++) {
                same += a[i] == b[i];
            }
            if (same > 20) {
                fail_msg("seeds %lu and %lu, epoch %ld: %ld of %ld positions agree",
                         (unsigned long)seed, (unsigned long)seed + 1, e, same, count);
            }
        }
        bl_sampler_free(&sa);
        bl_sampler_free(&sb);
    }
    free(a);
    free(b);
}

static void test_shuffle_is_unbiased(void **state)
{
    (void)state;
    /* Over 4000 epochs of 6 samples, each sample lands in each position
     * about 4000/6 times. A Fisher–Yates off by one (j < i instead of
     * j <= i: Sattolo's cycle) never leaves a sample in place; a j drawn
     * from the whole range skews the table. */
    enum { COUNT = 6, EPOCHS = 4000 };
    long table[COUNT][COUNT] = {{0}};
    bl_sampler_t s;
    init_ok(&s, COUNT, COUNT, 31, 1);
    long idx[COUNT];
    for (long e = 0; e < EPOCHS; e++) {
        bl_sampler_batch(&s, e, idx);
        for (int p = 0; p < COUNT; p++) {
            table[idx[p]][p]++;
        }
    }
    bl_sampler_free(&s);
    double expected = (double)EPOCHS / COUNT;
    double chi2 = 0.0;
    for (int i = 0; i < COUNT; i++) {
        for (int p = 0; p < COUNT; p++) {
            if (table[i][p] == 0) {
                fail_msg("sample %d never at position %d", i, p);
            }
            double d = (double)table[i][p] - expected;
            chi2 += d * d / expected;
        }
    }
    /* (COUNT-1)^2 = 25 degrees of freedom: mean 25, sd ≈ 7; 70 is beyond
     * six sd, while the naive shuffle's skew gives hundreds */
    if (chi2 > 70.0) {
        fail_msg("sample × position table: chi-square %.1f > 70", chi2);
    }
}

/* ---- Invalid input ------------------------------------------------------ */

static void check_refused(long count, int batch, const char *phrase)
{
    bl_sampler_t s;
    memset(&s, 0x5a, sizeof s);
    bl_error_t err = {0};
    bl_status_t st = bl_sampler_init(&s, count, batch, 1, 1, NULL, &err);
    if (st != BL_ERR_INVALID_ARG) {
        fail_msg("bl_sampler_init(%ld, %d): %s, expected invalid argument", count, batch,
                 bl_status_string(st));
    }
    assert_int_equal(err.status, BL_ERR_INVALID_ARG);
    if (strstr(err.msg, phrase) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, phrase);
    }
    /* nothing allocated: freeing the failed sampler is harmless */
    assert_null(s.order);
    bl_sampler_free(&s);
    /* err may be NULL */
    assert_int_equal(bl_sampler_init(&s, count, batch, 1, 1, NULL, NULL), BL_ERR_INVALID_ARG);
    assert_null(s.order);
}

static void test_invalid_shapes(void **state)
{
    (void)state;
    check_refused(10, 0, "batch size 0");
    check_refused(10, -3, "batch size -3");
    check_refused(10, 11, "batch size 11");
    check_refused(10, 11, "10 samples");
    check_refused(0, 1, "batch size 1");
    check_refused(0, 0, "batch size 0");
}

/* ---- Allocator hooks ------------------------------------------------------ */

typedef struct counting {
    long allocs;
    long releases;
    int fail;
} counting_t;

static void *counting_alloc(size_t nbytes, void *ctx)
{
    counting_t *c = ctx;
    if (c->fail) {
        return NULL;
    }
    c->allocs++;
    return malloc(nbytes);
}

static void counting_release(void *ptr, void *ctx)
{
    counting_t *c = ctx;
    if (ptr != NULL) {
        c->releases++;
    }
    free(ptr);
}

static void test_allocator_hooks(void **state)
{
    (void)state;
    counting_t c = {0};
    bl_allocator_t a = {counting_alloc, counting_release, &c};
    bl_sampler_t s;
    bl_error_t err = {0};
    assert_int_equal(bl_sampler_init(&s, 64, 8, 1, 1, &a, &err), BL_OK);
    assert_int_equal(c.allocs, 1);
    long idx[8];
    bl_sampler_batch(&s, 9, idx);
    bl_sampler_free(&s);
    assert_int_equal(c.releases, 1);

    c.fail = 1;
    assert_int_equal(bl_sampler_init(&s, 64, 8, 1, 1, &a, &err), BL_ERR_NO_MEM);
    assert_int_equal(err.status, BL_ERR_NO_MEM);
    assert_non_null(strstr(err.msg, "64"));
    bl_sampler_free(&s);
    assert_int_equal(c.releases, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_samplers_agree),
        cmocka_unit_test(test_step_alone_equals_step_in_sequence),
        cmocka_unit_test(test_earlier_epoch_rebuilt_after_later),
        cmocka_unit_test(test_large_step_number),
        cmocka_unit_test(test_epoch_covers_each_sample_at_most_once),
        cmocka_unit_test(test_batch_equal_to_count),
        cmocka_unit_test(test_epochs_differ_with_shuffle),
        cmocka_unit_test(test_shuffle_off_is_file_order),
        cmocka_unit_test(test_different_seeds_differ),
        cmocka_unit_test(test_shuffle_is_unbiased),
        cmocka_unit_test(test_invalid_shapes),
        cmocka_unit_test(test_allocator_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
