/* ZeRO-1's exchanges (runtime/parallel/zero_exchange.h) under mpirun (label
 * mpi), BIT FOR BIT. The even slices cover a range at an offset end to end
 * with node_reduce.c's cuts; every rank fills its array with floats whose
 * sums round, so a sum out of rank order shows on 3 ranks or more, and its
 * slice after the reduce-scatter must be the rank-order sum of every rank's
 * values in blocks (the node-local reduction's bl_cpu_sgd_update_summed
 * order), while the floats outside the range stay untouched; the all-gather
 * must give every rank every rank's slice, and the gather every slice on the
 * root. It runs with a bucket of the whole range (one round, one all-gather)
 * and with tiny buckets and messages (many rounds, slices broadcast in
 * pieces). Every rank counts its failures (mpi_check.h). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_check.h"
#include "runtime_impl.h"
#include "zero_exchange.h"

enum {
    FIRST = 37,   /* the range's first float in the array */
    TOTAL = 1999, /* the range's floats: more than one block of 512 per slice */
    LENGTH = FIRST + TOTAL + 11,
};

/* Rank r's value i: many magnitudes, so the order of a sum shows. */
static float value_of(int r, size_t i)
{
    return (float)(sin(0.37 * (double)i + 1.3 * r) * (1.0 + (double)((i * 7 + r) % 13)) *
                   (r % 2 ? 1e-3 : 1e3));
}

/* The rank-order sum of every rank's value i. */
static float summed(int ranks, size_t i)
{
    float sum = value_of(0, i);
    for (int q = 1; q < ranks; q++) {
        sum += value_of(q, i);
    }
    return sum;
}

static void check_slices(int P)
{
    size_t lo[8], count[8];
    bl_zero_even_slices(FIRST, TOTAL, P, lo, count);
    size_t at = FIRST;
    for (int k = 0; k < P; k++) {
        check(lo[k] == at, "slice %d starts at %zu, not %zu", k, lo[k], at);
        check(lo[k] == FIRST + (size_t)TOTAL * (size_t)k / (size_t)P,
              "slice %d is not node_reduce.c's cut", k);
        size_t one_lo, one_count;
        bl_zero_even_slice(FIRST, TOTAL, k, P, &one_lo, &one_count);
        check(one_lo == lo[k] && one_count == count[k], "slice %d alone differs", k);
        at += count[k];
    }
    check(at == FIRST + TOTAL, "the slices end at %zu, not %d", at, FIRST + TOTAL);
    check(bl_zero_chunk_floats(100, 4, 8, INT_MAX) == 16, "a chunk is 16 floats at least");
    check(bl_zero_chunk_floats(10, 4, 400, INT_MAX) == 10, "a chunk is the largest slice at most");
    check(bl_zero_chunk_floats(1000, 4, 400, 50) == 50, "a chunk is a message at most");
}

static void check_exchanges(bl_runtime_t *rt, size_t bucket, size_t piece)
{
    const int P = rt->size, me = rt->rank;
    size_t lo[8], count[8];
    bl_zero_even_slices(FIRST, TOTAL, P, lo, count);
    bl_zero_exchange_t x;
    check(bl_zero_exchange_init(&x, rt, rt->comm, lo, count, bucket, piece) == BL_OK, "init");
    float *array = malloc(LENGTH * sizeof(float));
    float *whole = malloc(LENGTH * sizeof(float));
    for (size_t i = 0; i < LENGTH; i++) {
        array[i] = value_of(me, i);
        whole[i] = -1.0f;
    }
    check(bl_zero_reduce_scatter(&x, array) == BL_OK, "reduce-scatter");
    int wrong = 0, outside = 0;
    for (size_t i = 0; i < LENGTH; i++) {
        const int mine = i >= lo[me] && i < lo[me] + count[me];
        const float want = mine ? summed(P, i) : value_of(me, i);
        if (memcmp(&array[i], &want, sizeof want) != 0) {
            wrong += mine;
            outside += !mine;
        }
    }
    check(wrong == 0, "bucket %zu: %d sums of the slice differ from the rank-order sums", bucket,
          wrong);
    check(outside == 0, "bucket %zu: %d floats outside the slice changed", bucket, outside);
    /* The all-gather: every rank's slice, which holds its sums. */
    check(bl_zero_all_gather(&x, array, "the test's all-gather") == BL_OK, "all-gather");
    wrong = 0;
    for (size_t i = FIRST; i < FIRST + TOTAL; i++) {
        const float want = summed(P, i);
        wrong += memcmp(&array[i], &want, sizeof want) != 0;
    }
    check(wrong == 0, "piece %zu: %d gathered floats differ", piece, wrong);
    /* The gather to the last rank, from each rank's own slice. */
    const int root = P - 1;
    check(bl_zero_gather_to(&x, root, array + lo[me], me == root ? whole : NULL,
                            "the test's gather") == BL_OK,
          "gather");
    if (me == root) {
        wrong = 0;
        for (size_t i = FIRST; i < FIRST + TOTAL; i++) {
            wrong += memcmp(&whole[i], &array[i], sizeof(float)) != 0;
        }
        check(wrong == 0 && whole[FIRST - 1] == -1.0f && whole[FIRST + TOTAL] == -1.0f,
              "the root gathered %d floats wrong, or wrote outside the range", wrong);
    }
    free(array);
    free(whole);
    bl_zero_exchange_free(&x);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    bl_runtime_t *rt = NULL;
    check(bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) == BL_OK, "runtime");
    if (rt != NULL && rt->size <= 8) {
        check_slices(rt->size);
        check_exchanges(rt, TOTAL, INT_MAX); /* one round, one all-gather */
        check_exchanges(rt, 40, 100);        /* many rounds, slices in pieces */
        check_exchanges(rt, 1, 16);
    }
    bl_runtime_destroy(rt);
    return check_finish("test_zero_exchange");
}
