/* The first shards of a plan from a config's plan section, which both
 * trainers (the layer trainer's and the language model's) share. */
#ifndef BL_FIRST_SHARDS_H
#define BL_FIRST_SHARDS_H

#include "plan.h"
#include "runtime_impl.h"

/* Fills the shards and caps of p (made by bl_plan_init for p->groups groups
 * and a batch of `batch`, with caps when the config has any) from pc: the
 * caps (0 and the batch for a side that pc leaves out), then pc's shards or
 * the even split within the caps, and checks the result with the plan's
 * validator. `owner` is what a shard belongs to ("rank" or "pipeline"), and
 * `grid` (which may be "") explains the number of groups in a message, as
 * " (4 ranks / 2 stages)". Returns BL_OK, or BL_ERR_INVALID_ARG naming the
 * problem (counts that do not match the groups, caps or shards the
 * validator refuses) or BL_ERR_NO_MEM. Local. */
bl_status_t bl_first_shards(bl_runtime_t *rt, const bl_plan_config_t *pc, long batch,
                            const char *owner, const char *grid, bl_plan_t *p);

#endif /* BL_FIRST_SHARDS_H */
