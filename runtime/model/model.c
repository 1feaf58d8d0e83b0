/* Models: an ordered list of layers, the parameters and the gradients in
 * one allocation each, and the forward and backward passes. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model_impl.h"
#include "device.h"

bl_status_t bl_model_create(bl_runtime_t *rt, int in_features, bl_model_t **out)
{
    if (out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (in_features <= 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "model input width is %d; it must be positive",
                       in_features);
    }
    bl_model_t *m = bl_mem_alloc(bl_rt_allocator(rt), sizeof *m);
    if (m == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a model");
    }
    memset(m, 0, sizeof *m);
    m->rt = rt;
    m->in_features = in_features;
    *out = m;
    return BL_OK;
}

void bl_model_destroy(bl_model_t *m)
{
    if (m == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(m->rt);
    for (int i = 0; i < m->layer_count; i++) {
        bl_layer_t *l = &m->layers[i];
        if (l->kind == BL_LAYER_USER && l->ops.destroy != NULL) {
            l->ops.destroy(l->state);
        }
    }
    bl_mem_free(a, m->layers);
    bl_span_release(&m->param_span);
    bl_span_release(&m->grad_span);
    bl_mem_free(a, m);
}

static int last_width(const bl_model_t *m)
{
    return m->layer_count == 0 ? m->in_features : m->layers[m->layer_count - 1].out_features;
}

/* Appends a layer record, whose shape is already known, after the checks
 * that every kind of layer shares. Returns BL_OK, BL_ERR_INVALID_ARG once
 * the model is built, or BL_ERR_NO_MEM. */
static bl_status_t append_layer(bl_model_t *m, const bl_layer_t *layer)
{
    bl_runtime_t *rt = m->rt;
    if (m->built) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "cannot add layer %d: the model is already built",
                       m->layer_count);
    }
    if (m->layer_count == m->layer_capacity) {
        int capacity = m->layer_capacity == 0 ? 8 : 2 * m->layer_capacity;
        bl_layer_t *grown = bl_mem_array(bl_rt_allocator(rt), (size_t)capacity, sizeof *grown);
        if (grown == NULL) {
            return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d layers", capacity);
        }
        if (m->layer_count > 0) {
            memcpy(grown, m->layers, (size_t)m->layer_count * sizeof *grown);
        }
        bl_mem_free(bl_rt_allocator(rt), m->layers);
        m->layers = grown;
        m->layer_capacity = capacity;
    }
    m->layers[m->layer_count++] = *layer;
    return BL_OK;
}

bl_status_t bl_model_add_dense(bl_model_t *m, int out_features)
{
    if (m == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (out_features <= 0) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "dense layer %d: output width is %d; it must be positive", m->layer_count,
                       out_features);
    }
    bl_layer_t l = {.kind = BL_LAYER_DENSE, .in_features = last_width(m)};
    l.out_features = out_features;
    l.param_count = (size_t)l.in_features * (size_t)out_features + (size_t)out_features;
    return append_layer(m, &l);
}

bl_status_t bl_model_add_relu(bl_model_t *m)
{
    if (m == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_layer_t l = {.kind = BL_LAYER_RELU, .in_features = last_width(m)};
    l.out_features = l.in_features;
    return append_layer(m, &l);
}

bl_status_t bl_model_add_layer(bl_model_t *m, const bl_layer_ops_t *ops, void *user_state)
{
    if (m == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    const char *name = ops != NULL && ops->name != NULL ? ops->name : "user layer";
    if (ops == NULL || ops->shape == NULL || ops->forward == NULL || ops->backward == NULL) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "layer %d (%s): ops must provide shape, forward and backward",
                       m->layer_count, name);
    }
    bl_layer_t l = {.kind = BL_LAYER_USER, .ops = *ops, .state = user_state};
    l.in_features = last_width(m);
    bl_status_t st = ops->shape(user_state, l.in_features, &l.out_features, &l.param_count);
    if (st != BL_OK) {
        return bl_fail(m->rt, st, "layer %d (%s): shape() failed for input width %d",
                       m->layer_count, name, l.in_features);
    }
    if (l.out_features <= 0) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "layer %d (%s): shape() gave output width %d; it must be positive",
                       m->layer_count, name, l.out_features);
    }
    if (l.param_count > 0 && ops->init == NULL) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "layer %d (%s): it has %zu parameters but no init()", m->layer_count, name,
                       l.param_count);
    }
    return append_layer(m, &l);
}

bl_status_t bl_model_set_device_ops(bl_model_t *m, int layer, bl_layer_fn forward,
                                    bl_layer_fn backward)
{
    if (m == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (layer < 0 || layer >= m->layer_count || m->layers[layer].kind != BL_LAYER_USER) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "device passes for layer %d: the model has no user layer there (%d layers)",
                       layer, m->layer_count);
    }
    if (forward == NULL || backward == NULL) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "device passes for layer %d: both forward and backward are needed", layer);
    }
    m->layers[layer].device_forward = forward;
    m->layers[layer].device_backward = backward;
    return BL_OK;
}

bl_status_t bl_model_build(bl_model_t *m, uint64_t seed)
{
    if (m == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_runtime_t *rt = m->rt;
    if (m->built) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "the model is already built");
    }
    if (m->layer_count == 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "the model has no layers");
    }
    size_t total = 0;
    for (int i = 0; i < m->layer_count; i++) {
        bl_layer_t *l = &m->layers[i];
        if (l->param_count > SIZE_MAX / sizeof(float) - total) {
            return bl_fail(rt, BL_ERR_INVALID_ARG,
                           "layer %d (%s): %zu parameters overflow the model's parameter count", i,
                           l->kind == BL_LAYER_USER && l->ops.name ? l->ops.name : "layer",
                           l->param_count);
        }
        l->param_offset = total;
        total += l->param_count;
    }
    /* Address space for every layer now, memory for a layer from its first
     * use on (model_hold.c): a pipeline stage never pays for the others. */
    if (total > 0 && (bl_span_reserve(&m->param_span, total * sizeof(float)) != 0 ||
                      bl_span_reserve(&m->grad_span, total * sizeof(float)) != 0)) {
        bl_span_release(&m->param_span);
        return bl_fail(rt, BL_ERR_NO_MEM,
                       "no address space for %zu parameters and their gradients: %s", total,
                       strerror(errno));
    }
    for (int i = 0; i < m->layer_count; i++) {
        m->layers[i].fresh = 1;
    }
    m->params = (float *)m->param_span.base;
    m->grads = (float *)m->grad_span.base;
    m->param_count = total;
    m->seed = seed;
    m->built = 1;
    return BL_OK;
}

int bl_model_layer_count(const bl_model_t *m)
{
    return m == NULL ? 0 : m->layer_count;
}

int bl_model_out_features(const bl_model_t *m)
{
    return m == NULL ? 0 : last_width(m);
}

size_t bl_model_param_count(const bl_model_t *m)
{
    return m == NULL ? 0 : m->param_count;
}

float *bl_model_params(bl_model_t *m)
{
    /* A model that no stage-local trainer has cut down is made whole here;
     * otherwise only its held layers may be read. */
    if (m == NULL || (m->built && !m->dropped && bl_model_widen(m, 0, m->layer_count) != BL_OK)) {
        return NULL;
    }
    return m->params;
}

bl_status_t bl_workspace_init(bl_model_t *m, int max_batch, bl_workspace_t *ws)
{
    return bl_workspace_init_range(m, 0, m->layer_count, max_batch, ws);
}

bl_status_t bl_workspace_init_range(bl_model_t *m, int first, int last, int max_batch,
                                    bl_workspace_t *ws)
{
    const bl_allocator_t *a = bl_rt_allocator(m->rt);
    memset(ws, 0, sizeof *ws);
    ws->device = bl_model_device(m);
    if (first < 0 || last > m->layer_count || first >= last || max_batch < 0) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG,
                       "internal: workspace for layers [%d, %d) of %d, batch %d", first, last,
                       m->layer_count, max_batch);
    }
    ws->first = first;
    ws->last = last;
    ws->max_batch = max_batch;
    size_t act_floats = 0;
    int widest = 1; /* the widest output; the first layer's input gradient goes to the caller */
    for (int i = first; i < last; i++) {
        if (!bl_relu_is_fused(m, ws, i)) {
            act_floats += (size_t)max_batch * (size_t)m->layers[i].out_features;
        }
        if (m->layers[i].out_features > widest) {
            widest = m->layers[i].out_features;
        }
    }
    /* Indexed by layer; entries outside the range stay NULL. */
    ws->acts = bl_mem_array_zeroed(a, (size_t)m->layer_count, sizeof *ws->acts);
    ws->act_mem =
        bl_buffer_alloc(m->rt, ws->device, act_floats > 0 ? act_floats : 1, sizeof(float));
    for (int k = 0; k < 2; k++) {
        ws->dgrad[k] = bl_buffer_alloc(m->rt, ws->device,
                                       (size_t)(max_batch > 0 ? max_batch : 1) * (size_t)widest,
                                       sizeof(float));
    }
    if (ws->acts == NULL || ws->act_mem == NULL || ws->dgrad[0] == NULL || ws->dgrad[1] == NULL) {
        bl_workspace_free(a, ws);
        return bl_fail(m->rt, BL_ERR_NO_MEM, "no memory for activations of %d samples", max_batch);
    }
    float *next = ws->act_mem;
    for (int i = first; i < last; i++) {
        if (bl_relu_is_fused(m, ws, i)) {
            ws->acts[i] = ws->acts[i - 1]; /* the dense layer before it wrote the ReLU's output */
        } else {
            ws->acts[i] = next;
            next += (size_t)max_batch * (size_t)m->layers[i].out_features;
        }
    }
    return BL_OK;
}

size_t bl_workspace_nbytes(const bl_model_t *m, const bl_workspace_t *ws)
{
    /* The same sizes as bl_workspace_init_range allocates. */
    size_t act_floats = 0;
    size_t widest = 1;
    size_t rows = (size_t)ws->max_batch;
    for (int i = ws->first; i < ws->last; i++) {
        if (!bl_relu_is_fused(m, ws, i)) {
            act_floats += rows * (size_t)m->layers[i].out_features;
        }
        if ((size_t)m->layers[i].out_features > widest) {
            widest = (size_t)m->layers[i].out_features;
        }
    }
    size_t dgrad = (rows > 0 ? rows : 1) * widest;
    return (size_t)m->layer_count * sizeof *ws->acts +
           ((act_floats > 0 ? act_floats : 1) + 2 * dgrad) * sizeof(float);
}

void bl_workspace_free(const bl_allocator_t *a, bl_workspace_t *ws)
{
    bl_mem_free(a, ws->acts);
    bl_buffer_free(a, ws->device, ws->act_mem);
    bl_buffer_free(a, ws->device, ws->dgrad[0]);
    bl_buffer_free(a, ws->device, ws->dgrad[1]);
    memset(ws, 0, sizeof *ws);
}

/* Returns the forward part of a user layer's call, with input x and output
 * y. */
static bl_layer_call_t user_call(const bl_model_t *m, const bl_layer_t *l, int batch,
                                 const float *x, float *y)
{
    bl_layer_call_t call = {.device = bl_model_device(m),
                            .batch = batch,
                            .in_features = l->in_features,
                            .out_features = l->out_features,
                            .params = bl_model_exec_params(m) + l->param_offset,
                            .x = x,
                            .y = y,
                            .seq_len = 1,
                            .state = l->state};
    return call;
}

/* Returns a user layer's pass for the model's device: its device pass on a
 * device with memory of its own, when the layer has one (the trainer
 * refuses a GPU without them), else its host pass. */
static bl_layer_fn user_pass(const bl_model_t *m, const bl_layer_t *l, int backward)
{
    bl_layer_fn device_pass = backward ? l->device_backward : l->device_forward;
    if (bl_model_device(m)->memory != NULL && device_pass != NULL) {
        return device_pass;
    }
    return backward ? l->ops.backward : l->ops.forward;
}

static bl_status_t user_call_failed(bl_model_t *m, int i, const char *pass, bl_status_t st)
{
    const char *name = m->layers[i].ops.name ? m->layers[i].ops.name : "user layer";
    return bl_fail(m->rt, st, "layer %d (%s): %s failed: %s", i, name, pass, bl_status_string(st));
}

/* Waits for a timed layer's kernels when ws asks for it (sync_layers), and
 * returns BL_OK or the device's failure. It waits for those kernels alone,
 * not for the downloads of the buckets before the layer, which overlap
 * them. */
static bl_status_t layer_finished(bl_model_t *m, const bl_workspace_t *ws, const char *pass)
{
    if (!ws->sync_layers) {
        return BL_OK;
    }
    return bl_device_check_compute(m->rt, ws->device, pass);
}

bl_status_t bl_model_forward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                             const float **out)
{
    const bl_kernels_t *k = bl_model_device(m)->kernels;
    const float *params = bl_model_exec_params(m);
    const float *in = x;
    for (int i = ws->first; i < ws->last; i++) {
        const bl_layer_t *l = &m->layers[i];
        double t0 = ws->forward_s != NULL ? bl_now_seconds() : 0.0;
        float *y = ws->acts[i];
        const float *p = params + l->param_offset;
        if (l->kind == BL_LAYER_DENSE) {
            /* (batch, out) = (batch, in) · W^T + b, with the ReLU fused in when the
             * next layer is one */
            k->dense_forward(batch, l->in_features, l->out_features, in, p,
                             p + (size_t)l->in_features * (size_t)l->out_features, y,
                             bl_dense_fuses_relu(m, ws, i));
        } else if (l->kind == BL_LAYER_RELU) {
            if (!bl_relu_is_fused(m, ws, i)) {
                k->relu_forward((size_t)batch * (size_t)l->out_features, in, y);
            }
        } else {
            bl_layer_call_t call = user_call(m, l, batch, in, y);
            bl_status_t st = user_pass(m, l, 0)(&call);
            if (st != BL_OK) {
                return user_call_failed(m, i, "forward", st);
            }
        }
        if (ws->forward_s != NULL) {
            bl_status_t st = layer_finished(m, ws, "forward");
            if (st != BL_OK) {
                return st;
            }
            ws->forward_s[i] += bl_now_seconds() - t0;
        }
        in = y;
    }
    *out = in;
    return BL_OK;
}

bl_status_t bl_model_backward(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                              int accumulate, bl_layer_done_fn done, void *done_arg)
{
    return bl_model_backward_range(m, ws, batch, x, bl_model_dlogits(ws), NULL, accumulate, done,
                                   done_arg);
}

bl_status_t bl_model_backward_range(bl_model_t *m, bl_workspace_t *ws, int batch, const float *x,
                                    float *dy, float *dx_out, int accumulate, bl_layer_done_fn done,
                                    void *done_arg)
{
    const bl_kernels_t *k = bl_model_device(m)->kernels;
    const float *params = bl_model_exec_params(m);
    float *grads = bl_model_exec_grads(m);
    /* dy holds d loss / d (output of layer i). A layer writes its input
     * gradient into whichever ping-pong buffer dy is not, or, for the
     * range's first layer, into dx_out. */
    for (int i = ws->last - 1; i >= ws->first; i--) {
        const bl_layer_t *l = &m->layers[i];
        double t0 = ws->backward_s != NULL ? bl_now_seconds() : 0.0;
        int first = i == ws->first;
        const float *in = first ? x : ws->acts[i - 1];
        float *dx = first ? dx_out : (dy == ws->dgrad[0] ? ws->dgrad[1] : ws->dgrad[0]);
        const float *p = params + l->param_offset;
        float *g = grads + l->param_offset;
        if (l->kind == BL_LAYER_DENSE) {
            size_t w_count = (size_t)l->in_features * (size_t)l->out_features;
            k->dense_backward(batch, l->in_features, l->out_features, in, p, ws->acts[i], dy, dx, g,
                              g + w_count, bl_dense_fuses_relu(m, ws, i), accumulate);
            dy = dx;
        } else if (l->kind == BL_LAYER_RELU) {
            /* The ReLU works in place (or is fused into the dense layer
             * before it), so dy stays where it is. Only a ReLU that is the
             * range's first layer writes into dx_out, and only when dx_out
             * is not NULL. */
            if (!bl_relu_is_fused(m, ws, i) && dx != NULL) {
                k->relu_backward((size_t)batch * (size_t)l->out_features, ws->acts[i], dy,
                                 first ? dx : dy);
            }
        } else {
            bl_layer_call_t call = user_call(m, l, batch, in, ws->acts[i]);
            call.dy = dy;
            call.dx = dx;
            call.grads = g;
            call.accumulate = accumulate;
            bl_status_t st = user_pass(m, l, 1)(&call);
            if (st != BL_OK) {
                return user_call_failed(m, i, "backward", st);
            }
            dy = dx;
        }
        if (ws->backward_s != NULL) {
            bl_status_t st = layer_finished(m, ws, "backward");
            if (st != BL_OK) {
                return st;
            }
            ws->backward_s[i] += bl_now_seconds() - t0;
        }
        if (done != NULL) {
            bl_status_t st = done(i, done_arg);
            if (st != BL_OK) {
                return st;
            }
        }
    }
    return BL_OK;
}
