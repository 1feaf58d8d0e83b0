/* Stage-local memory for the language-model trainer (lm_impl.h): a
 * pipeline stage's model holds its own units only (gpt2.h: BL_GPT2_SPANS),
 * their parameters come from the seed or from the stage's part of an llm.c
 * file, and the replicas of a stage are compared on its units alone. */
#include "lm_impl.h"
#include "replica_check.h"

bl_status_t bl_lm_hold_units(bl_lm_trainer_t *t, int first, int last)
{
    if (!t->stage_local) {
        return BL_OK;
    }
    bl_error_t err = {0};
    if (bl_gpt2_hold_units(t->model, first, last, &err) != BL_OK) {
        return bl_fail(t->rt, err.status, "rank %d: %s", t->rt->rank, err.msg);
    }
    return BL_OK;
}

bl_status_t bl_lm_hold_stage(bl_lm_trainer_t *t)
{
    return bl_lm_hold_units(t, t->grid.first, t->grid.last);
}

bl_status_t bl_lm_init_units(bl_lm_trainer_t *t, int first, int last)
{
    bl_gpt2_t *g = t->model;
    if (!g->spanned) {
        return BL_OK; /* a device's model, initialised when it was made */
    }
    bl_error_t err = {0};
    bl_status_t st = bl_gpt2_hold_units(g, first, last, &err);
    if (st == BL_OK) {
        st = bl_gpt2_init_params(g, t->cfg.seed, &err);
    }
    if (st == BL_OK && t->cfg.init_from != NULL) {
        /* The file's GPT-2 tensors over the stage's ranges; the user
         * layers keep their seeded values, as on one process. */
        bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
        const int n = bl_gpt2_unit_ranges(g, first, last, ranges);
        for (int r = 0; r < n && st == BL_OK; r++) {
            if (ranges[r].tensor < BL_GPT2_TENSOR_COUNT) {
                st = bl_gpt2_read_part(t->cfg.init_from, ranges[r].offset, ranges[r].count,
                                       g->params + ranges[r].offset, &err);
            }
        }
    }
    return st == BL_OK ? BL_OK : bl_fail(t->rt, err.status, "rank %d: %s", t->rt->rank, err.msg);
}

bl_status_t bl_lm_check_stage_replicas(bl_lm_trainer_t *t)
{
    const bl_gpt2_t *g = t->model;
    bl_status_t st = BL_OK;
    /* Each owned range of the parameters with the first moments, then of
     * the second moments, over the stage's replicas. */
    for (int r = 0; r < t->grid.owned_count && st == BL_OK; r++) {
        const bl_gpt2_range_t *range = &t->grid.owned[r];
        st = bl_replicas_check(t->rt, t->grid.layout.dp, t->step, g->params, g->adam_m,
                               range->offset, range->count);
        if (st == BL_OK) {
            st = bl_replicas_check(t->rt, t->grid.layout.dp, t->step, g->adam_v, NULL,
                                   range->offset, range->count);
        }
    }
    return st;
}
