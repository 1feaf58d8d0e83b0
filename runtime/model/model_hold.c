/* Which layers of a model have memory (model_impl.h). The parameters and the
 * gradients are spans of the whole model's length (span.h); a layer's memory
 * is held from its first use on, and a pipeline stage gives back the memory
 * of the layers it does not own. A layer is initialised from the model's
 * seed the first time it is held, so every rank makes the same values for
 * it, whichever layers it holds and in whatever order. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "model_impl.h"

void bl_model_layer_params(const bl_model_t *m, int lo, int hi, size_t *first, size_t *count)
{
    if (lo >= hi) {
        *first = lo < m->layer_count ? m->layers[lo].param_offset : m->param_count;
        *count = 0;
        return;
    }
    const bl_layer_t *a = &m->layers[lo], *b = &m->layers[hi - 1];
    *first = a->param_offset;
    *count = b->param_offset + b->param_count - a->param_offset;
}

void bl_model_held_params(const bl_model_t *m, size_t *first, size_t *count)
{
    bl_model_layer_params(m, m->held_first, m->held_last, first, count);
}

/* Fills a dense layer's parameters as torch.nn.Linear does by default: W
 * and b are uniform in ±1/√in. */
static void init_dense(const bl_layer_t *l, float *params, uint64_t seed)
{
    float bound = 1.0f / sqrtf((float)l->in_features);
    size_t w_count = (size_t)l->in_features * (size_t)l->out_features;
    bl_fill_uniform(params, w_count, -bound, bound, bl_seed_mix(seed, 0));
    bl_fill_uniform(params + w_count, (size_t)l->out_features, -bound, bound, bl_seed_mix(seed, 1));
}

/* Initialises the held layers that were never held before. */
static bl_status_t init_fresh(bl_model_t *m)
{
    for (int i = m->held_first; i < m->held_last; i++) {
        bl_layer_t *l = &m->layers[i];
        if (!l->fresh) {
            continue;
        }
        uint64_t layer_seed = bl_seed_mix(bl_seed_mix(m->seed, BL_SEED_DOMAIN_INIT), (uint64_t)i);
        float *p = m->params + l->param_offset;
        if (l->kind == BL_LAYER_DENSE) {
            init_dense(l, p, layer_seed);
        } else if (l->kind == BL_LAYER_USER && l->param_count > 0) {
            bl_status_t st = l->ops.init(l->state, l->in_features, l->out_features, p, layer_seed);
            if (st != BL_OK) {
                return bl_fail(m->rt, st, "layer %d (%s): init() failed", i,
                               l->ops.name ? l->ops.name : "user layer");
            }
        }
        l->fresh = 0;
    }
    return BL_OK;
}

/* Applies `change` (bl_span_widen or bl_span_hold) to both spans for the
 * parameters of layers [first, last). */
static bl_status_t change_spans(bl_model_t *m, int first, int last,
                                int (*change)(bl_span_t *, size_t, size_t))
{
    if (m->param_count == 0) {
        return BL_OK; /* no parameters: nothing was reserved */
    }
    size_t lo, count;
    bl_model_layer_params(m, first, last, &lo, &count);
    size_t a = lo * sizeof(float), b = (lo + count) * sizeof(float);
    if (change(&m->param_span, a, b) != 0 || change(&m->grad_span, a, b) != 0) {
        return bl_fail(m->rt, BL_ERR_NO_MEM,
                       "rank %d: no memory for the %zu parameters of layers %d to %d: %s",
                       m->rt->rank, count, first, last - 1, strerror(errno));
    }
    return BL_OK;
}

bl_status_t bl_model_widen(bl_model_t *m, int first, int last)
{
    if (first >= last) {
        return BL_OK;
    }
    if (m->held_first < m->held_last) {
        first = first < m->held_first ? first : m->held_first;
        last = last > m->held_last ? last : m->held_last;
    }
    bl_status_t st = change_spans(m, first, last, bl_span_widen);
    if (st != BL_OK) {
        return st;
    }
    m->held_first = first;
    m->held_last = last;
    return init_fresh(m);
}

bl_status_t bl_model_hold(bl_model_t *m, int first, int last)
{
    /* A model that leaves any layer with parameters without memory is cut
     * down for good: its other layers' values live on other ranks, so it is
     * never made whole again here (bl_model_hold_all). */
    for (int i = 0; i < m->layer_count; i++) {
        if ((i < first || i >= last) && m->layers[i].param_count > 0) {
            m->dropped = 1;
        }
    }
    bl_status_t st = change_spans(m, first, last, bl_span_hold);
    if (st != BL_OK) {
        return st;
    }
    m->held_first = first < last ? first : 0;
    m->held_last = first < last ? last : 0;
    return init_fresh(m);
}

bl_status_t bl_model_hold_all(bl_model_t *m, const char *what)
{
    if (m->dropped) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "%s: rank %d holds only layers %d to %d of %d (stage-local memory); the "
                       "trainer saves the whole model (bl_trainer_save_params)",
                       what, m->rt->rank, m->held_first, m->held_last - 1, m->layer_count);
    }
    return bl_model_widen(m, 0, m->layer_count);
}
