/* AdamW for the GPT-2 model (gpt2.h): one call of the kernel table's
 * adamw_update per tensor, with the weight decay on the weights of two or
 * more dimensions only (the parameter groups of GPT-2's training scripts),
 * and global gradient-norm clipping folded into the gradient's scale. */
#include <math.h>

#include "gpt2.h"

int bl_gpt2_decays(int id)
{
    switch (id) {
    case BL_GPT2_WTE:
    case BL_GPT2_WPE:
    case BL_GPT2_QKVW:
    case BL_GPT2_ATTPROJW:
    case BL_GPT2_FCW:
    case BL_GPT2_FCPROJW:
        return 1;
    default:
        return 0;
    }
}

bl_status_t bl_gpt2_adamw_step(bl_gpt2_t *g, const bl_gpt2_adamw_t *opt, long tokens,
                               double *grad_norm, bl_error_t *err)
{
    if (grad_norm != NULL) {
        *grad_norm = 0.0;
    }
    if (g == NULL || opt == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_adamw_step: %s is NULL",
                            g == NULL ? "g" : "opt");
    }
    if (tokens <= 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 AdamW: tokens = %ld must be positive (the targets that the "
                            "gradient sums over)",
                            tokens);
    }
    const bl_kernels_t *k = g->kernels;
    /* The gradient is a sum over tokens targets; the optimizer sees the
     * mean. Its norm is the mean's: the sum's norm / tokens. */
    const double mean_scale = 1.0 / (double)tokens;
    const double norm = sqrt(k->sum_squares(g->param_count, g->grads)) * mean_scale;
    double scale = mean_scale;
    if (opt->max_grad_norm > 0.0f) {
        /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6)
         * when that is below 1. */
        const double clip = (double)opt->max_grad_norm / (norm + 1e-6);
        if (clip < 1.0) {
            scale *= clip;
        }
    }
    if (grad_norm != NULL) {
        *grad_norm = norm;
    }
    const long t = ++g->adam_steps;
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        const size_t at = g->tensors[id].offset;
        const float wd = bl_gpt2_decays(id) ? opt->weight_decay : 0.0f;
        k->adamw_update(g->tensors[id].count, g->params + at, g->adam_m + at, g->adam_v + at,
                        g->grads + at, (float)scale, opt->lr, opt->beta1, opt->beta2, opt->eps, wd,
                        t);
    }
    return BL_OK;
}
