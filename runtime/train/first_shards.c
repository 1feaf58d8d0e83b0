/* The first shards of a plan (first_shards.h). */
#include "first_shards.h"

/* Checks the counts of the config's shard arrays against the groups. */
static bl_status_t check_counts(bl_runtime_t *rt, const bl_plan_config_t *pc, int D,
                                const char *owner, const char *grid)
{
    if ((pc->shard_min != NULL || pc->shard_max != NULL) && pc->shard_cap_count != D) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "shard caps: %d given but the job has %d %ss%s",
                       pc->shard_cap_count, D, owner, grid);
    }
    if (pc->shards != NULL && pc->shard_count != D) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "the shard plan has %d sizes but the job has %d %ss%s", pc->shard_count, D,
                       owner, grid);
    }
    return BL_OK;
}

bl_status_t bl_first_shards(bl_runtime_t *rt, const bl_plan_config_t *pc, long batch,
                            const char *owner, const char *grid, bl_plan_t *p)
{
    int D = p->groups;
    bl_status_t st = check_counts(rt, pc, D, owner, grid);
    if (st != BL_OK) {
        return st;
    }
    char err[256];
    if (p->shard_min != NULL) {
        for (int d = 0; d < D; d++) {
            p->shard_min[d] = pc->shard_min != NULL ? pc->shard_min[d] : 0;
            p->shard_max[d] = pc->shard_max != NULL ? pc->shard_max[d] : batch;
        }
        if (bl_plan_check_caps(p, owner, err, sizeof err) != 0) {
            return bl_fail(rt, BL_ERR_INVALID_ARG, "%s", err);
        }
    }
    bl_part_allocator_t pa = bl_rt_part_allocator(rt);
    if (pc->shards != NULL) {
        for (int d = 0; d < D; d++) {
            p->shards[d] = pc->shards[d];
        }
    } else if (bl_plan_even_shards(p, &pa) != 0) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a %d-%s shard plan", D, owner);
    }
    if (bl_plan_check(p, owner, err, sizeof err) != 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%s", err);
    }
    return BL_OK;
}
