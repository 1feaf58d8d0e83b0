/* The layer trainer's memory account (trainer_impl.h): what this rank has
 * allocated, read from the shapes of its real buffers once they exist. */
#include <limits.h>
#include <stdio.h>

#include "trainer_impl.h"
#include "zero_exchange.h"

/* Bytes of count elements of elem_nbytes each. */
static double nbytes(size_t count, size_t elem_nbytes)
{
    return (double)count * (double)elem_nbytes;
}

/* The bytes of one slot: its workspace, the stage's input and output
 * gradient buffers, and the host twins of a device stage (stage.c's
 * alloc_slot makes the same ones). */
static double slot_nbytes(const bl_stage_t *s, const bl_stage_slot_t *slot)
{
    size_t rows = (size_t)(s->max_micro > 0 ? s->max_micro : 1);
    size_t in = rows * (size_t)s->in_width, out = rows * (size_t)s->out_width;
    int last = s->stage == s->stages - 1;
    double b = (double)bl_workspace_nbytes(s->model, &slot->ws);
    b += nbytes(in, sizeof(float)) + nbytes(out, sizeof(float));
    b += s->stage > 0 ? nbytes(in, sizeof(float)) : 0.0;
    b += last ? nbytes(rows, sizeof(int)) : 0.0;
    if (slot->host_in != NULL) {
        b += nbytes(in, sizeof(float)) + nbytes(rows, sizeof(int64_t));
    }
    b += slot->host_labels != NULL ? nbytes(rows, sizeof(int)) : 0.0;
    b += slot->host_dy != NULL ? nbytes(out, sizeof(float)) : 0.0;
    b += slot->host_out != NULL ? nbytes(out, sizeof(float)) : 0.0;
    b += slot->host_dx != NULL ? nbytes(in, sizeof(float)) : 0.0;
    return b;
}

/* Layer kinds as the message names them. */
static const char *kind_name(bl_layer_kind_t kind)
{
    return kind == BL_LAYER_DENSE ? "dense" : kind == BL_LAYER_RELU ? "relu" : "user";
}

void bl_trainer_account_memory(const bl_trainer_t *t, bl_mem_account_t *out)
{
    const bl_model_t *m = t->model;
    const bl_stage_t *s = &t->stage;
    /* The parameters, gradients and momentum of the layers this rank holds:
     * every layer, or its stage's under stage-local memory (model_hold.c). */
    size_t first, held;
    bl_model_held_params(m, &first, &held);
    *out = (bl_mem_account_t){0};
    out->params = nbytes(held, sizeof(float));
    out->grads = nbytes(held, sizeof(float));
    /* The optimizer state: the momentum of the held layers, counted as the
     * parameters are; under ZeRO-1 the memory that the momentum holds for
     * this rank's slice of its stage's parameters (bl_trainer_narrow_momentum),
     * page-rounded, since a slice's edges share pages with its neighbours'. */
    out->optimizer = t->velocity == NULL ? 0.0
                     : t->zero           ? (double)bl_span_held_bytes(&t->velocity_span)
                                         : nbytes(held, sizeof(float));
    for (int k = 0; k < s->slot_count && s->slots != NULL; k++) {
        out->activations += slot_nbytes(s, &s->slots[k]);
    }
    if (s->x_scratch != NULL) {
        out->activations += nbytes(
            (size_t)(s->max_micro > 0 ? s->max_micro : 1) * (size_t)m->in_features, sizeof(float));
    }
    out->other = nbytes((size_t)t->cfg.batch, sizeof *t->indices);
    if (t->zero) {
        /* ZeRO-1's reduce-scatter bucket (reduce_zero.c): the other replicas'
         * pieces of this rank's slice in a round. */
        size_t stage_first, stage_count, lo, count, largest = 0;
        bl_trainer_stage_params(t, t->layout.stage, &stage_first, &stage_count);
        const int D = t->layout.replicas;
        for (int k = 0; k < D; k++) {
            bl_zero_even_slice(stage_first, stage_count, k, D, &lo, &count);
            largest = count > largest ? count : largest;
        }
        const size_t bucket = (size_t)(t->cfg.transport.bucket_mb * 1024.0 * 1024.0);
        out->other +=
            nbytes((size_t)(D - 1) *
                       bl_zero_chunk_floats(largest, D, bucket / sizeof(float), (size_t)INT_MAX),
                   sizeof(float));
    }
    /* The largest held layer: its parameters, gradients and momentum. */
    int copies = 2 + (t->velocity != NULL);
    int best = m->held_first;
    for (int i = m->held_first + 1; i < m->held_last; i++) {
        if (m->layers[i].param_count > m->layers[best].param_count) {
            best = i;
        }
    }
    if (m->held_first < m->held_last) {
        const bl_layer_t *l = &m->layers[best];
        snprintf(out->largest, sizeof out->largest, "layer %d (%s %d\u2192%d)", best,
                 kind_name(l->kind), l->in_features, l->out_features);
        out->largest_bytes = nbytes(l->param_count, sizeof(float)) * copies;
    }
}
