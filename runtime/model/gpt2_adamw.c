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
    if (g->adam_m == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 AdamW: the model was made without its moments "
                            "(BL_GPT2_NO_MOMENTS)");
    }
    const double norm = sqrt(g->kernels->sum_squares(g->param_count, g->grads)) / (double)tokens;
    const double scale = bl_gpt2_grad_scale(norm, tokens, opt->max_grad_norm);
    if (grad_norm != NULL) {
        *grad_norm = norm;
    }
    bl_gpt2_range_t all[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(g, 0, g->config.num_layers + 2, all);
    bl_gpt2_adamw_ranges(g, opt, (float)scale, ++g->adam_steps, all, n);
    return BL_OK;
}

double bl_gpt2_grad_scale(double norm, long tokens, float max_grad_norm)
{
    /* The gradient is a sum over tokens targets; the optimizer sees the
     * mean. torch.nn.utils.clip_grad_norm_ then scales by
     * max_norm / (norm + 1e-6) when that is below 1. */
    double scale = 1.0 / (double)tokens;
    if (max_grad_norm > 0.0f) {
        const double clip = (double)max_grad_norm / (norm + 1e-6);
        if (clip < 1.0) {
            scale *= clip;
        }
    }
    return scale;
}

int bl_gpt2_unit_ranges(const bl_gpt2_t *g, int first, int last, bl_gpt2_range_t *out)
{
    const int L = g->config.num_layers;
    int n = 0;
    /* The tensors without layers: the embedding's, the head's (wte once). */
    const int embedding = first == 0, head = last == L + 2;
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        const bl_gpt2_tensor_t *t = &g->tensors[id];
        if (id > BL_GPT2_WPE && id < BL_GPT2_LNFW) {
            /* A per-layer tensor: the slices of blocks [first − 1, last − 1) ∩ [0, L). */
            const int lo = first > 1 ? first - 1 : 0, hi = last - 1 < L ? last - 1 : L;
            if (lo < hi) {
                const size_t slice = t->count / (size_t)t->layers;
                out[n++] = (bl_gpt2_range_t){t->offset + (size_t)lo * slice,
                                             (size_t)(hi - lo) * slice, id};
            }
        } else if ((id == BL_GPT2_WTE && (embedding || head)) || (id == BL_GPT2_WPE && embedding) ||
                   ((id == BL_GPT2_LNFW || id == BL_GPT2_LNFB) && head)) {
            out[n++] = (bl_gpt2_range_t){t->offset, t->count, id};
        }
    }
    /* A user layer belongs to the unit it follows. */
    for (int k = 0; k < g->user_count; k++) {
        const bl_gpt2_user_t *u = &g->users[k];
        if (u->layer.after >= first && u->layer.after < last && u->count > 0) {
            out[n++] = (bl_gpt2_range_t){u->offset, u->count, BL_GPT2_TENSOR_COUNT + k};
        }
    }
    return n;
}

double bl_gpt2_grad_sum_squares(const bl_gpt2_t *g, const bl_gpt2_range_t *ranges, int count,
                                int skip_tensor)
{
    double sum = 0.0;
    for (int i = 0; i < count; i++) {
        if (ranges[i].tensor != skip_tensor) {
            sum += g->kernels->sum_squares(ranges[i].count, g->grads + ranges[i].offset);
        }
    }
    return sum;
}

void bl_gpt2_adamw_ranges(bl_gpt2_t *g, const bl_gpt2_adamw_t *opt, float grad_scale, long t,
                          const bl_gpt2_range_t *ranges, int count)
{
    bl_gpt2_adamw_ranges_at(g, opt, grad_scale, t, ranges, count, g->adam_m, g->adam_v, 0);
}

void bl_gpt2_adamw_ranges_at(bl_gpt2_t *g, const bl_gpt2_adamw_t *opt, float grad_scale, long t,
                             const bl_gpt2_range_t *ranges, int count, float *m, float *v,
                             size_t base)
{
    for (int i = 0; i < count; i++) {
        const size_t at = ranges[i].offset;
        const float wd = bl_gpt2_range_decays(g, ranges[i].tensor) ? opt->weight_decay : 0.0f;
        g->kernels->adamw_update(ranges[i].count, g->params + at, m + (at - base), v + (at - base),
                                 g->grads + at, grad_scale, opt->lr, opt->beta1, opt->beta2,
                                 opt->eps, wd, t);
    }
}
