/* The learning-rate schedules (ballast.h: bl_lr_at), and their checks
 * (lm_impl.h). */
#include <math.h>

#include "lm_impl.h"

double bl_lr_at(const bl_lr_schedule_t *s, float lr, long step)
{
    const double base = (double)lr;
    if (s == NULL || step < 0) {
        return base;
    }
    if (step < s->warmup_steps) {
        return base * (double)(step + 1) / (double)s->warmup_steps;
    }
    if (s->kind != BL_LR_COSINE) {
        return base;
    }
    const double floor = (double)s->lr_min;
    if (step >= s->decay_steps) {
        return floor;
    }
    /* The share of the decay done, 0 at the warm-up's end, 1 at decay_steps. */
    const double done =
        (double)(step - s->warmup_steps) / (double)(s->decay_steps - s->warmup_steps);
    return floor + 0.5 * (1.0 + cos(3.14159265358979323846 * done)) * (base - floor);
}

bl_status_t bl_lm_check_schedule(bl_runtime_t *rt, const bl_lr_schedule_t *s, float lr)
{
    if (s->kind != BL_LR_CONSTANT && s->kind != BL_LR_COSINE) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "lr schedule %d is neither constant (%d) nor cosine (%d)", (int)s->kind,
                       BL_LR_CONSTANT, BL_LR_COSINE);
    }
    if (s->warmup_steps < 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "warm-up steps %ld must be >= 0", s->warmup_steps);
    }
    if (s->kind == BL_LR_COSINE && s->decay_steps <= s->warmup_steps) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "cosine schedule: decay steps %ld must exceed the warm-up steps %ld",
                       s->decay_steps, s->warmup_steps);
    }
    if (s->kind == BL_LR_COSINE && !(s->lr_min >= 0.0f && s->lr_min <= lr)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "cosine schedule: lr_min %g must be in [0, lr %g]",
                       (double)s->lr_min, (double)lr);
    }
    return BL_OK;
}
