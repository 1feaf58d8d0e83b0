/* The comparison of a stage's replicas (replica_check.h). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "replica_check.h"
#include "wait.h"

/* The floats per broadcast while the differences are counted. */
enum { CHUNK = 1 << 18 };

typedef struct {
    uint64_t params, velocity; /* how many values differ from the first member's */
    double largest;            /* the largest |difference| (infinity when one is not finite) */
} differences_t;

/* Counts the values of mine that differ from first into *differ and raises
 * *largest to the largest difference. Values compare by their bits (what the
 * digests saw): NaNs with the same bits are equal, and 0 and -0 are not. A
 * difference with a NaN on one side counts as infinite. */
static void count_differences(const float *mine, const float *first, size_t n, uint64_t *differ,
                              double *largest)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&mine[i], &first[i], sizeof(float)) == 0) {
            continue;
        }
        (*differ)++;
        double d = fabs((double)mine[i] - (double)first[i]);
        d = isnan(d) ? INFINITY : d;
        *largest = d > *largest ? d : *largest;
    }
}

/* Compares the group's first member's arrays, chunk by chunk, with this
 * member's, and fills *out with the counts summed over the group and the
 * group's largest difference. Collective over group. */
static bl_status_t measure(bl_runtime_t *rt, MPI_Comm group, const float *params,
                           const float *velocity, size_t count, differences_t *out)
{
    float *chunk = bl_mem_array(bl_rt_allocator(rt), CHUNK, sizeof(float));
    /* Every member learns whether any member lacks the memory before the
     * broadcasts, which all must join. */
    int ok = chunk != NULL, all_ok = 0;
    bl_status_t st = bl_allreduce_bounded(rt, &ok, &all_ok, 1, MPI_INT, MPI_MIN, group,
                                          "the replica comparison");
    if (st == BL_OK && !all_ok) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "no memory to compare the replicas");
    }
    differences_t mine = {0, 0, 0.0};
    const float *arrays[2] = {params, velocity};
    uint64_t *counts[2] = {&mine.params, &mine.velocity};
    for (int a = 0; st == BL_OK && a < (velocity != NULL ? 2 : 1); a++) {
        for (size_t done = 0; st == BL_OK && done < count; done += CHUNK) {
            int n = count - done < CHUNK ? (int)(count - done) : CHUNK;
            memcpy(chunk, arrays[a] + done, (size_t)n * sizeof(float));
            st = bl_bcast_bounded(rt, chunk, n, MPI_FLOAT, 0, group, "the replica comparison");
            if (st == BL_OK) {
                count_differences(arrays[a] + done, chunk, (size_t)n, counts[a], &mine.largest);
            }
        }
    }
    bl_mem_free(bl_rt_allocator(rt), chunk);
    uint64_t sums[2] = {0, 0};
    if (st == BL_OK) {
        uint64_t local[2] = {mine.params, mine.velocity};
        st = bl_allreduce_bounded(rt, local, sums, 2, MPI_UINT64_T, MPI_SUM, group,
                                  "the replica comparison");
    }
    if (st == BL_OK) {
        st = bl_allreduce_bounded(rt, &mine.largest, &out->largest, 1, MPI_DOUBLE, MPI_MAX, group,
                                  "the replica comparison");
    }
    out->params = sums[0];
    out->velocity = sums[1];
    return st;
}

bl_status_t bl_replicas_check(bl_runtime_t *rt, MPI_Comm group, long step, const float *params,
                              const float *velocity, size_t first, size_t count)
{
    int size = 1;
    if (group == MPI_COMM_NULL || MPI_Comm_size(group, &size) != MPI_SUCCESS || size < 2) {
        return BL_OK;
    }
    params += first;
    velocity = velocity != NULL ? velocity + first : NULL;
    /* The first member's job rank and digests are broadcast and compared with
     * every member's. */
    uint64_t root[3] = {(uint64_t)rt->rank, bl_digest(params, count * sizeof(float)),
                        velocity != NULL ? bl_digest(velocity, count * sizeof(float)) : 0};
    uint64_t mine[3] = {root[0], root[1], root[2]};
    bl_status_t st =
        bl_bcast_bounded(rt, root, 3, MPI_UINT64_T, 0, group, "the replica comparison");
    /* Next, one all-reduce finds the lowest job rank whose arrays differ from
     * the first member's. */
    int differs = mine[1] != root[1] || mine[2] != root[2] ? rt->rank : INT_MAX, lowest = INT_MAX;
    if (st == BL_OK) {
        st = bl_allreduce_bounded(rt, &differs, &lowest, 1, MPI_INT, MPI_MIN, group,
                                  "the replica comparison");
    }
    if (st != BL_OK || lowest == INT_MAX) {
        return st;
    }
    differences_t d = {0, 0, 0.0};
    st = measure(rt, group, params, velocity, count, &d);
    if (st != BL_OK && st != BL_ERR_NO_MEM) {
        return st;
    }
    char counts[192];
    if (st == BL_OK) {
        snprintf(counts, sizeof counts,
                 "%llu of %zu parameter values and %llu momentum values differ in the group, by "
                 "up to %.3g",
                 (unsigned long long)d.params, count, (unsigned long long)d.velocity, d.largest);
    } else {
        snprintf(counts, sizeof counts, "no memory to count the values that differ");
    }
    return bl_fail(rt, BL_ERR_MISMATCH,
                   "replicas diverged by step %ld: rank %d holds parameters or momentum that "
                   "differ from rank %d's, the first of its data-parallel group (%s); replicas "
                   "must update identically: a device that rounds the update differently, or a "
                   "fault",
                   step, lowest, (int)root[0], counts);
}
