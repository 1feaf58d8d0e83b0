/* The reducer's dispatch, the update it applies, and the path of one replica
 * (reducer.h). */
#include "reducer.h"

#include <string.h>

bl_status_t bl_reducer_create(const bl_reducer_setup_t *setup, bl_reducer_t **out)
{
    *out = NULL;
    if (setup->replicas <= 1) {
        return bl_reducer_create_single(setup, out);
    }
    /* ZeRO-1 takes precedence over the node-local reduction and the buckets. */
    if (setup->zero) {
        return bl_reducer_create_zero(setup, out);
    }
    /* Data parallelism on one node without pipelining, on host arrays, uses
     * shared memory when the whole group qualifies (a collective decision). */
    if (setup->stages == 1) {
        int active = 0;
        bl_status_t st = bl_reducer_create_node(setup, out, &active);
        if (st != BL_OK || active) {
            return st;
        }
    }
    return bl_reducer_create_buckets(setup, out);
}

bl_status_t bl_reducer_layer_done(int layer, void *reducer)
{
    bl_reducer_t *r = reducer;
    return r->ops->layer_done != NULL ? r->ops->layer_done(r, layer) : BL_OK;
}

bl_status_t bl_reducer_finish(bl_reducer_t *r, double *loss_sum, long *correct)
{
    return r->ops->finish(r, loss_sum, correct);
}

bl_status_t bl_reducer_restage(bl_reducer_t *r, int first, int last)
{
    return r->ops->restage != NULL ? r->ops->restage(r, first, last) : BL_OK;
}

bl_status_t bl_reducer_gather_momentum(bl_reducer_t *r)
{
    return r->ops->gather_momentum != NULL ? r->ops->gather_momentum(r) : BL_OK;
}

void bl_reducer_destroy(bl_reducer_t *r, int healthy)
{
    if (r != NULL) {
        r->ops->destroy(r, healthy);
    }
}

/* The gradients are per-sample sums over the global batch, and grad_scale (1/B)
 * makes them its mean. Every replica applies the same element-wise update to
 * the same values, so slices updated in any order give the parameters of one
 * pass. */
void bl_reducer_update(const bl_reducer_setup_t *setup, size_t first, size_t count)
{
    bl_model_t *m = setup->model;
    const bl_device_t *dev = bl_model_device(m);
    float *w = bl_model_exec_params(m), *g = bl_model_exec_grads(m);
    float *v = setup->dev->device != NULL ? setup->dev->velocity : *setup->velocity;
    const bl_sgd_t *o = &setup->sgd;
    dev->kernels->sgd_update(count, w + first, v + first, g + first, o->grad_scale, o->lr,
                             o->momentum, o->weight_decay);
}

/* ---- One replica: nothing to reduce ------------------------------------ */

typedef struct single {
    bl_reducer_t base;
    bl_reducer_setup_t setup;
    size_t first, count; /* the stage's parameters, [first, first + count) */
} single_t;

void bl_reducer_layer_params(const bl_model_t *m, int first, int last, size_t *lo, size_t *count)
{
    const bl_layer_t *a = &m->layers[first];
    const bl_layer_t *b = &m->layers[last - 1];
    *lo = a->param_offset;
    *count = b->param_offset + b->param_count - a->param_offset;
}

static bl_status_t single_finish(bl_reducer_t *r, double *loss_sum, long *correct)
{
    (void)loss_sum; /* with one replica, its totals are the group's */
    (void)correct;
    single_t *s = (single_t *)r;
    bl_reducer_update(&s->setup, s->first, s->count);
    return BL_OK;
}

static bl_status_t single_restage(bl_reducer_t *r, int first, int last)
{
    single_t *s = (single_t *)r;
    bl_reducer_layer_params(s->setup.model, first, last, &s->first, &s->count);
    return BL_OK;
}

static void single_destroy(bl_reducer_t *r, int healthy)
{
    (void)healthy;
    single_t *s = (single_t *)r;
    bl_mem_free(bl_rt_allocator(s->setup.rt), s);
}

static const bl_reducer_ops_t single_ops = {
    .finish = single_finish, .restage = single_restage, .destroy = single_destroy};

bl_status_t bl_reducer_create_single(const bl_reducer_setup_t *setup, bl_reducer_t **out)
{
    single_t *s = bl_mem_alloc(bl_rt_allocator(setup->rt), sizeof *s);
    if (s == NULL) {
        return bl_fail(setup->rt, BL_ERR_NO_MEM, "no memory for a reducer");
    }
    memset(s, 0, sizeof *s);
    s->base = (bl_reducer_t){.ops = &single_ops, .path = "none (one replica)"};
    s->setup = *setup;
    bl_reducer_layer_params(setup->model, setup->first_layer, setup->last_layer, &s->first,
                            &s->count);
    *out = &s->base;
    return BL_OK;
}
