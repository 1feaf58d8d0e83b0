/* The language-model trainer's memory account (lm_impl.h): the GPT-2
 * model's one allocation of parameters, gradients and AdamW's two moments
 * (a stage-local stage's units only; under ZeRO-1 the moments of this
 * rank's slices of its stage's only, and the reduce-scatter's bucket with
 * the gradients), the activations for
 * `capacity` sequences, the host token buffers and, for a model in a
 * device's memory, its host twin. */
#include <limits.h>
#include <stdio.h>

#include "lm_impl.h"
#include "wait.h"

/* The floats of range r that the sub-ranges mine[0 .. count) cover. */
static double overlap(const bl_gpt2_range_t *r, const bl_gpt2_range_t *mine, int count)
{
    double n = 0.0;
    for (int k = 0; k < count; k++) {
        const size_t a = r->offset > mine[k].offset ? r->offset : mine[k].offset;
        const size_t b = r->offset + r->count < mine[k].offset + mine[k].count
                             ? r->offset + r->count
                             : mine[k].offset + mine[k].count;
        n += b > a ? (double)(b - a) : 0.0;
    }
    return n;
}

void bl_lm_account_memory(const bl_lm_trainer_t *t, const int *map, bl_mem_account_t *out)
{
    const bl_gpt2_t *g = t->model;
    const double floats = (double)g->param_count * sizeof(float);
    const size_t rows = (size_t)t->capacity * (size_t)t->cfg.seq_len;
    /* Rank r is stage r % S of pipeline r / S (layout.h). */
    const int S = t->cfg.pipeline.stages, D = t->rt->size / S;
    const int stage = t->rt->rank % S, replica = t->rt->rank / S;
    const int first = map[stage], last = map[stage + 1];
    *out = (bl_mem_account_t){0};
    /* Every rank holds the whole model, unless it is a stage-local stage:
     * then its units' pages under the map (before it holds them). */
    out->params = floats;
    out->grads = floats;
    out->optimizer = 2.0 * floats; /* adam_m and adam_v */
    if (t->stage_local) {
        out->params = (double)bl_gpt2_units_bytes(g, first, last, 0);
        out->grads = (double)bl_gpt2_units_bytes(g, first, last, 1);
        out->optimizer = g->adam_m != NULL ? (double)bl_gpt2_units_bytes(g, first, last, 2) +
                                                 (double)bl_gpt2_units_bytes(g, first, last, 3)
                                           : 0.0;
    }
    if (t->zero_on) {
        /* ZeRO-1: the moments of this rank's slices of its stage's runs,
         * and the bucket that the other replicas' pieces (and, on the
         * first and last of several stages, wte's gradient) arrive in. */
        const int tied = S > 1 && (stage == 0 || stage == S - 1);
        out->optimizer =
            2.0 * (double)bl_lm_zero_slice_floats(g, first, last, replica, D) * sizeof(float);
        out->grads +=
            (double)bl_lm_zero_bucket_floats(g, first, last, D, tied, BL_LM_ZERO_BUCKET_FLOATS) *
            sizeof(float);
    }
    out->activations = bl_gpt2_acts_nbytes(g, t->capacity, t->cfg.seq_len);
    if (t->stage_local) {
        out->activations = bl_gpt2_acts_units_nbytes(g, t->capacity, t->cfg.seq_len, first, last);
    }
    out->other = (double)rows * (sizeof *t->tokens + sizeof *t->targets) +
                 (double)t->cfg.batch * sizeof *t->indices;
    if (t->host != NULL) {
        out->other += 4.0 * floats; /* a device model's host twin (lm_device.c) */
    }
    /* The largest unit: its parameters, gradients and the moments of them
     * that this rank holds (all of them, or under ZeRO-1 those in its
     * slice). */
    const int L = g->config.num_layers;
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES], mine[BL_GPT2_MAX_RANGES];
    const int mine_count =
        t->zero_on ? bl_lm_zero_slice_ranges(g, first, last, replica, D, mine) : 0;
    int best = 0;
    double best_bytes = -1.0;
    for (int u = 0; u < L + 2; u++) {
        int n = bl_gpt2_unit_ranges(g, u, u + 1, ranges);
        double count = 0.0, moments = 0.0;
        for (int k = 0; k < n; k++) {
            count += (double)ranges[k].count;
            moments += t->zero_on ? overlap(&ranges[k], mine, mine_count) : (double)ranges[k].count;
        }
        const double bytes = (2.0 * count + 2.0 * moments) * sizeof(float);
        if (bytes > best_bytes) {
            best_bytes = bytes;
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
    out->largest_bytes = best_bytes;
}

bl_status_t bl_lm_map_fits(bl_lm_trainer_t *t, const int *map, int *over_rank)
{
    bl_runtime_t *rt = t->rt;
    *over_rank = -1;
    if (!t->stage_local) {
        return BL_OK; /* every rank holds every unit under any map */
    }
    bl_mem_account_t mine;
    bl_lm_account_memory(t, map, &mine);
    const char *source = NULL;
    const double limit = bl_mem_process_limit(rt, t->cfg.mem_limit_bytes, &source);
    int over = limit > 0.0 && bl_mem_account_total(&mine) > limit ? rt->rank : INT_MAX, lowest;
    bl_status_t st = bl_allreduce_bounded(rt, &over, &lowest, 1, MPI_INT, MPI_MIN, rt->comm,
                                          "the memory check of a stage map");
    if (st == BL_OK && lowest != INT_MAX) {
        *over_rank = lowest;
    }
    return st;
}
