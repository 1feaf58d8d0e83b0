/* The plan (plan.h): its storage, its one validator and its arithmetic. */
#include "plan.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "partition.h"

int bl_plan_init(bl_plan_t *p, int groups, int stages, int layers, long batch, int capped,
                 const bl_part_allocator_t *a)
{
    memset(p, 0, sizeof *p);
    if (groups < 1 || stages < 1 || layers < stages || batch < 0) {
        return -1;
    }
    p->groups = groups;
    p->stages = stages;
    p->layers = layers;
    p->batch = batch;
    p->shards = bl_part_alloc(a, (size_t)groups, sizeof *p->shards);
    p->first = bl_part_alloc(a, (size_t)stages + 1, sizeof *p->first);
    if (capped) {
        p->shard_min = bl_part_alloc(a, (size_t)groups, sizeof *p->shard_min);
        p->shard_max = bl_part_alloc(a, (size_t)groups, sizeof *p->shard_max);
    }
    if (p->shards == NULL || p->first == NULL ||
        (capped && (p->shard_min == NULL || p->shard_max == NULL))) {
        bl_plan_free(p, a);
        return -1;
    }
    bl_split_even(batch, groups, p->shards);
    for (int d = 0; capped && d < groups; d++) {
        p->shard_min[d] = 0;
        p->shard_max[d] = batch;
    }
    for (int s = 0; s < stages; s++) {
        p->first[s] = s;
    }
    p->first[stages] = layers;
    return 0;
}

void bl_plan_free(bl_plan_t *p, const bl_part_allocator_t *a)
{
    bl_part_free(a, p->shards);
    bl_part_free(a, p->shard_min);
    bl_part_free(a, p->shard_max);
    bl_part_free(a, p->first);
    memset(p, 0, sizeof *p);
}

int bl_caps_check(int groups, long batch, const long *shard_min, const long *shard_max,
                  const char *owner, char *err, size_t errlen)
{
    if (shard_min == NULL && shard_max == NULL) {
        return 0;
    }
    long lo_sum = 0, hi_sum = 0;
    for (int d = 0; d < groups; d++) {
        long lo = shard_min != NULL ? shard_min[d] : 0;
        long hi = shard_max != NULL ? shard_max[d] : batch;
        if (lo < 0 || hi < lo) {
            return bl_part_fail(err, errlen,
                                "shard caps of %s %d: min %ld and max %ld must satisfy 0 <= min "
                                "<= max",
                                owner, d, lo, hi);
        }
        lo_sum += lo <= batch ? lo : batch + 1; /* clamped: no overflow */
        hi_sum += hi < batch ? hi : batch;
    }
    if (lo_sum > batch || hi_sum < batch) {
        return bl_part_fail(err, errlen,
                            "shard caps: the minimums sum to %ld and the maximums to %ld; the "
                            "global batch %ld must lie between",
                            lo_sum, hi_sum, batch);
    }
    return 0;
}

int bl_plan_check_caps(const bl_plan_t *p, const char *owner, char *err, size_t errlen)
{
    return bl_caps_check(p->groups, p->batch, p->shard_min, p->shard_max, owner, err, errlen);
}

int bl_plan_check_map(const bl_plan_t *p, char *err, size_t errlen)
{
    const int *first = p->first;
    if (first[0] != 0) {
        return bl_part_fail(err, errlen,
                            "the stage map must start at layer 0; stage 0 starts at layer %d",
                            first[0]);
    }
    for (int s = 1; s <= p->stages; s++) {
        int bad = s < p->stages ? first[s] <= first[s - 1] || first[s] >= p->layers
                                : first[s] != p->layers || first[s] <= first[s - 1];
        if (bad) {
            return bl_part_fail(err, errlen,
                                "stage %d starts at layer %d: stages must be contiguous, in "
                                "order, each with at least one of the model's layers 0..%d",
                                s, first[s], p->layers - 1);
        }
    }
    return 0;
}

int bl_plan_check(const bl_plan_t *p, const char *owner, char *err, size_t errlen)
{
    if (bl_plan_check_caps(p, owner, err, errlen) != 0) {
        return -1;
    }
    long sum = 0;
    for (int d = 0; d < p->groups; d++) {
        if (p->shards[d] < 0) {
            return bl_part_fail(err, errlen, "shard of %s %d is %ld; it must be >= 0", owner, d,
                                p->shards[d]);
        }
        sum += p->shards[d];
    }
    if (sum != p->batch) {
        return bl_part_fail(err, errlen, "the shard sizes sum to %ld but the global batch is %ld",
                            sum, p->batch);
    }
    for (int d = 0; p->shard_min != NULL && d < p->groups; d++) {
        if (p->shards[d] < p->shard_min[d] || p->shards[d] > p->shard_max[d]) {
            return bl_part_fail(err, errlen, "shard of %s %d is %ld, outside its caps [%ld, %ld]",
                                owner, d, p->shards[d], p->shard_min[d], p->shard_max[d]);
        }
    }
    return bl_plan_check_map(p, err, errlen);
}

int bl_plan_even_shards(bl_plan_t *p, const bl_part_allocator_t *a)
{
    if (p->shard_min == NULL) {
        bl_split_even(p->batch, p->groups, p->shards);
        return 0;
    }
    double *ones = bl_part_alloc(a, (size_t)p->groups, sizeof *ones);
    if (ones == NULL) {
        return -1;
    }
    for (int d = 0; d < p->groups; d++) {
        ones[d] = 1.0;
    }
    /* The caps were checked: the bounded plan exists. */
    int rc = bl_plan_proportional(p->batch, p->groups, ones, p->shard_min, p->shard_max, p->shards);
    bl_part_free(a, ones);
    return rc == 0 ? 0 : -1;
}

long bl_plan_offset(const bl_plan_t *p, int group)
{
    long offset = 0;
    for (int d = 0; d < group; d++) {
        offset += p->shards[d];
    }
    return offset;
}

void bl_plan_format_shards(const bl_plan_t *p, char *out, size_t n)
{
    size_t used = 0;
    if (n > 0) {
        out[0] = '\0';
    }
    for (int d = 0; d < p->groups && used < n; d++) {
        int k = snprintf(out + used, n - used, "%s%ld", d == 0 ? "" : ",", p->shards[d]);
        used += k > 0 ? (size_t)k : 0;
    }
}

void bl_plan_format_map(const int *first, int stages, char *out, size_t n)
{
    size_t used = 0;
    if (n > 0) {
        out[0] = '\0';
    }
    for (int s = 0; s < stages && used < n; s++) {
        int k = snprintf(out + used, n - used, "%s%d-%d", s == 0 ? "" : ",", first[s],
                         first[s + 1] - 1);
        used += k > 0 ? (size_t)k : 0;
    }
}
