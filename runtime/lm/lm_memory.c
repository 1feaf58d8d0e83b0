/* The language-model trainer's memory account (lm_impl.h): the GPT-2
 * model's one allocation of parameters, gradients and AdamW's two moments,
 * the activations for `capacity` sequences, the host token buffers and, for
 * a model in a device's memory, its host twin. */
#include <stdio.h>

#include "lm_impl.h"

void bl_lm_account_memory(const bl_lm_trainer_t *t, bl_mem_account_t *out)
{
    const bl_gpt2_t *g = t->model;
    const double floats = (double)g->param_count * sizeof(float);
    const size_t rows = (size_t)t->capacity * (size_t)t->cfg.seq_len;
    /* Every rank holds the whole model, pipeline stages too. */
    *out = (bl_mem_account_t){0};
    out->params = floats;
    out->grads = floats;
    out->optimizer = 2.0 * floats; /* adam_m and adam_v */
    out->activations = bl_gpt2_acts_nbytes(g, t->capacity, t->cfg.seq_len);
    out->other = (double)rows * (sizeof *t->tokens + sizeof *t->targets) +
                 (double)t->cfg.batch * sizeof *t->indices;
    if (t->host != NULL) {
        out->other += 4.0 * floats; /* a device model's host twin (lm_device.c) */
    }
    /* The largest unit: its parameters, gradients and two moments. */
    const int L = g->config.num_layers;
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    int best = 0;
    double best_floats = -1.0;
    for (int u = 0; u < L + 2; u++) {
        int n = bl_gpt2_unit_ranges(g, u, u + 1, ranges);
        double count = 0.0;
        for (int k = 0; k < n; k++) {
            count += (double)ranges[k].count;
        }
        if (count > best_floats) {
            best_floats = count;
            best = u;
        }
    }
    if (best == 0) {
        snprintf(out->largest, sizeof out->largest, "unit 0 (the embedding)");
    } else if (best == L + 1) {
        snprintf(out->largest, sizeof out->largest,
                 "unit %d (the head, with the tied token embedding)", best);
    } else {
        snprintf(out->largest, sizeof out->largest, "unit %d (block %d)", best, best - 1);
    }
    out->largest_bytes = best_floats * 4.0 * sizeof(float);
}
