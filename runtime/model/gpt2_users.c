/* User layers in a GPT-2 model's residual stream (gpt2.h: bl_gpt2_add_layers
 * and the unit passes that run them). A user layer after unit u maps the
 * stream that unit u left, (B · T, C), to a new stream of the same width,
 * which the next user layer after u, or unit u + 1, reads. Its parameters
 * follow the GPT-2 tensors in the model's one allocation, so the pipeline's
 * ranges, the reductions, AdamW, the moves between stages and the
 * checkpoints treat them as one more tensor of the unit they follow.
 *
 * A layer with `inside` sits in block `after` instead, between its attention
 * half and its MLP half (gpt2_passes.c), on the stream after attention's
 * residual add; the MLP half then reads its output (bl_gpt2_mid_stream).
 *
 * The backward pass of a user layer reads d loss / d its output from
 * acts->dres and writes d loss / d its input into acts->dln, which is then
 * copied back into dres: the call's dy and dx must not alias, and dres is
 * what the unit before reads. */
#include <string.h>

#include "gpt2.h"
#include "gpt2_impl.h"

static const char *layer_name(const bl_gpt2_user_t *u)
{
    return u->layer.ops.name != NULL ? u->layer.ops.name : "user layer";
}

/* Checks layer k of the list and sets its parameter count. */
static bl_status_t check_layer(const bl_gpt2_t *g, const bl_lm_layer_t *l, int k, size_t *count,
                               bl_error_t *err)
{
    const char *name = l->ops.name != NULL ? l->ops.name : "user layer";
    const int L = g->config.num_layers, C = g->config.channels;
    if (l->after < 0 || l->after > L) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "user layer %d (%s): after = %d must name a unit 0 .. L = %d (0 the "
                            "embedding, l block l)",
                            k, name, l->after, L);
    }
    if (l->inside != 0 && (l->inside != 1 || l->after < 1)) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "user layer %d (%s): inside = %d with after = %d: a layer inside a "
                            "block needs inside 1 and a block 1 .. L = %d",
                            k, name, l->inside, l->after, L);
    }
    if (l->ops.shape == NULL || l->ops.forward == NULL || l->ops.backward == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "user layer %d (%s): ops must provide shape, forward and backward", k,
                            name);
    }
    int out = 0;
    *count = 0;
    bl_status_t st = l->ops.shape(l->state, C, &out, count);
    if (st != BL_OK) {
        return bl_error_set(err, st, "user layer %d (%s): shape() failed for width C = %d", k, name,
                            C);
    }
    if (out != C) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "user layer %d (%s): shape() gave output width %d; a layer in the "
                            "residual stream must keep its width C = %d",
                            k, name, out, C);
    }
    if (*count > 0 && l->ops.init == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "user layer %d (%s): it has %zu parameters but no init()", k, name,
                            *count);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_add_layers(bl_gpt2_t *g, const bl_lm_layer_t *layers, int count,
                               const bl_device_t *device, bl_error_t *err)
{
    if (g == NULL || (count > 0 && (layers == NULL || device == NULL))) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_add_layers: %s is NULL",
                            g == NULL        ? "g"
                            : layers == NULL ? "layers"
                                             : "device");
    }
    if (count < 0 || count > BL_LM_MAX_LAYERS) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "%d user layers: a language model takes 0 .. %d", count,
                            BL_LM_MAX_LAYERS);
    }
    if (g->user_count > 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "GPT-2 model: user layers were already added");
    }
    if (count == 0) {
        return BL_OK;
    }
    bl_gpt2_user_t users[BL_LM_MAX_LAYERS];
    size_t total = g->gpt_param_count;
    for (int k = 0; k < count; k++) {
        users[k] = (bl_gpt2_user_t){.layer = layers[k], .offset = total};
        bl_status_t st = check_layer(g, &layers[k], k, &users[k].count, err);
        if (st != BL_OK) {
            return st;
        }
        if (users[k].count > SIZE_MAX / (4 * sizeof(float)) - total) {
            return bl_error_set(err, BL_ERR_NO_MEM, "user layer %d: %zu parameters overflow", k,
                                users[k].count);
        }
        total += users[k].count;
    }
    /* The four arrays again (two for a model without moments), larger,
     * zeroed; the GPT-2 tensors' values are still zero (nothing was
     * initialised yet), so nothing is copied. */
    const size_t arrays = g->adam_m != NULL ? 4 : 2;
    if (g->spanned && g->held_first < g->held_last) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 model: user layers must be added before any unit is held");
    }
    if (g->spanned) {
        /* A span: nothing is held yet, so a larger reservation replaces it. */
        const size_t gpt = g->param_count;
        g->param_count = total;
        bl_status_t st = bl_gpt2_reserve(g, (int)arrays, err);
        if (st != BL_OK) {
            /* The old reservation is gone; a model without one may only be
             * destroyed (its arrays are NULL, so any use fails at once). */
            g->param_count = gpt;
            bl_gpt2_reserve(g, (int)arrays, NULL);
            return st;
        }
        memcpy(g->users, users, (size_t)count * sizeof *users);
        g->user_count = count;
        g->device = device;
        return BL_OK;
    }
    float *grown = bl_gpt2_dev_alloc(g, arrays * total * sizeof(float));
    if (grown == NULL) {
        return bl_error_set(err, BL_ERR_NO_MEM,
                            "GPT-2 model: out of memory for %zu × %zu floats with the user layers",
                            arrays, total);
    }
    if (g->memory == NULL) {
        memset(grown, 0, arrays * total * sizeof(float));
    } else if (g->memory->zero(grown, arrays * total * sizeof(float)) != 0) {
        bl_gpt2_dev_free(g, grown);
        return bl_error_set(err, BL_ERR_CUDA, "GPT-2 model: zeroing on device '%s' failed",
                            g->memory->name);
    }
    bl_gpt2_dev_free(g, g->params);
    g->params = grown;
    g->grads = grown + total;
    g->adam_m = arrays == 4 ? g->grads + total : NULL;
    g->adam_v = arrays == 4 ? g->adam_m + total : NULL;
    g->param_count = total;
    memcpy(g->users, users, (size_t)count * sizeof *users);
    g->user_count = count;
    g->device = device;
    return BL_OK;
}

bl_status_t bl_gpt2_init_layers(bl_gpt2_t *g, uint64_t seed, bl_error_t *err)
{
    const size_t n = g->param_count - g->gpt_param_count;
    if (n == 0) {
        return BL_OK;
    }
    float *host = g->params + g->gpt_param_count;
    if (g->memory != NULL) {
        host = bl_mem_array_zeroed(&g->alloc, n, sizeof(float));
        if (host == NULL) {
            return bl_error_set(err, BL_ERR_NO_MEM,
                                "GPT-2 model: out of memory for %zu staged parameters", n);
        }
    }
    const uint64_t base = bl_seed_mix(seed, BL_SEED_DOMAIN_INIT);
    bl_status_t st = BL_OK;
    for (int k = 0; k < g->user_count && st == BL_OK; k++) {
        const bl_gpt2_user_t *u = &g->users[k];
        size_t lo, hi;
        if (u->count == 0 ||
            (g->spanned && !bl_gpt2_held_part(g, BL_GPT2_TENSOR_COUNT + k, &lo, &hi))) {
            continue; /* no parameters, or another stage's layer */
        }
        const int C = g->config.channels;
        /* Layer k draws from its own stream, past the tensors' numbers. */
        const uint64_t layer_seed = bl_seed_mix(base, (uint64_t)(BL_GPT2_TENSOR_COUNT + k));
        st = u->layer.ops.init(u->layer.state, C, C, host + (u->offset - g->gpt_param_count),
                               layer_seed);
        if (st != BL_OK) {
            bl_error_set(err, st, "user layer %d (%s): init() failed", k, layer_name(u));
        }
    }
    if (g->memory != NULL) {
        if (st == BL_OK &&
            bl_gpt2_dev_put(g, g->params + g->gpt_param_count, host, n * sizeof(float)) != 0) {
            st = bl_error_set(err, BL_ERR_CUDA, "GPT-2 model: uploading to device '%s' failed",
                              g->memory->name);
        }
        bl_mem_free(&g->alloc, host);
    }
    return st;
}

bl_status_t bl_gpt2_upload_gpt(bl_gpt2_t *g, const float *params, bl_error_t *err)
{
    if (g == NULL || params == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_upload_gpt: %s is NULL",
                            g == NULL ? "g" : "params");
    }
    if (bl_gpt2_dev_put(g, g->params, params, g->gpt_param_count * sizeof(float)) != 0) {
        return bl_error_set(err, BL_ERR_CUDA, "GPT-2 model: uploading to device '%s' failed",
                            g->memory->name);
    }
    return BL_OK;
}

double bl_gpt2_layers_cost(const bl_gpt2_t *g, int u)
{
    const int C = g->config.channels;
    double cost = 0.0;
    for (int k = 0; k < g->user_count; k++) {
        const bl_lm_layer_t *l = &g->users[k].layer;
        if (l->after == u && l->ops.cost_hint != NULL) {
            cost += l->ops.cost_hint(l->state, C, C);
        }
    }
    return cost;
}

int bl_gpt2_range_decays(const bl_gpt2_t *g, int tensor)
{
    const int k = tensor - BL_GPT2_TENSOR_COUNT;
    return k < 0 ? bl_gpt2_decays(tensor) : k < g->user_count && g->users[k].layer.decay != 0;
}

/* The stream that unit u itself leaves (before its user layers), or with
 * inside, that block u's attention half leaves (its res2). */
static float *own_output(const bl_gpt2_acts_t *acts, int u, int inside)
{
    return inside ? acts->layers[u - 1].res2 : u == 0 ? acts->encoded : acts->layers[u - 1].res3;
}

/* Whether user layer k sits at (unit u, inside). */
static int sits_at(const bl_gpt2_t *g, int k, int u, int inside)
{
    return g->users[k].layer.after == u && (g->users[k].layer.inside != 0) == inside;
}

/* The output of the last user layer at (u, inside), or the unit's own. */
static float *stream_at(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int u, int inside)
{
    for (int k = g->user_count - 1; k >= 0; k--) {
        if (sits_at(g, k, u, inside)) {
            return acts->user_out[k];
        }
    }
    return own_output(acts, u, inside);
}

/* The input of user layer k: the output of the user layer before it at the
 * same place, or the unit's own. */
static float *layer_input(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int k)
{
    const int u = g->users[k].layer.after, inside = g->users[k].layer.inside != 0;
    for (int j = k - 1; j >= 0; j--) {
        if (sits_at(g, j, u, inside)) {
            return acts->user_out[j];
        }
    }
    return own_output(acts, u, inside);
}

float *bl_gpt2_stream(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int u)
{
    return stream_at(g, acts, u, 0);
}

float *bl_gpt2_mid_stream(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int layer)
{
    return stream_at(g, acts, layer + 1, 1);
}

/* Layer k's call over acts (no dy, dx or grads: forward's). */
static bl_layer_call_t layer_call(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int k)
{
    const bl_gpt2_user_t *u = &g->users[k];
    return (bl_layer_call_t){.device = g->device,
                             .batch = acts->B * acts->T,
                             .in_features = g->config.channels,
                             .out_features = g->config.channels,
                             .params = g->params + u->offset,
                             .x = layer_input(g, acts, k),
                             .y = acts->user_out[k],
                             .state = u->layer.state,
                             .seq_len = acts->T};
}

static bl_status_t pass_failed(const bl_gpt2_t *g, int k, bl_status_t st, const char *pass,
                               bl_error_t *err)
{
    return bl_error_set(err, st, "user layer %d (%s, %s unit %d): %s() failed on %s: %s", k,
                        layer_name(&g->users[k]), g->users[k].layer.inside ? "inside" : "after",
                        g->users[k].layer.after, pass,
                        g->memory != NULL ? g->memory->name : "the CPU", bl_status_string(st));
}

/* Runs the forward passes of the user layers at (u, inside), in order. */
static bl_status_t layers_forward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int u, int inside,
                                  bl_error_t *err)
{
    for (int k = 0; k < g->user_count; k++) {
        if (!sits_at(g, k, u, inside)) {
            continue;
        }
        const bl_layer_call_t call = layer_call(g, acts, k);
        const bl_status_t st = g->users[k].layer.ops.forward(&call);
        if (st != BL_OK) {
            return pass_failed(g, k, st, "forward", err);
        }
    }
    return BL_OK;
}

/* Runs the backward passes of the user layers at (u, inside), in reverse
 * order, from d loss / d their stream in acts->dres to d loss / d the
 * stream before them, there again. */
static bl_status_t layers_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int u, int inside,
                                   bl_error_t *err)
{
    const size_t nbytes =
        (size_t)acts->B * (size_t)acts->T * (size_t)g->config.channels * sizeof(float);
    for (int k = g->user_count - 1; k >= 0; k--) {
        if (!sits_at(g, k, u, inside)) {
            continue;
        }
        bl_layer_call_t call = layer_call(g, acts, k);
        call.dy = acts->dres;
        call.dx = acts->dln;
        call.grads = g->grads + g->users[k].offset;
        call.accumulate = 1;
        bl_status_t st = g->users[k].layer.ops.backward(&call);
        if (st != BL_OK) {
            return pass_failed(g, k, st, "backward", err);
        }
        if (g->memory == NULL) {
            memcpy(acts->dres, acts->dln, nbytes);
        } else if (g->memory->copy(acts->dres, acts->dln, nbytes) != 0) {
            return bl_error_set(err, BL_ERR_CUDA, "GPT-2 model: a copy on device '%s' failed",
                                g->memory->name);
        }
    }
    return BL_OK;
}

bl_status_t bl_gpt2_unit_forward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int u, double *loss,
                                 bl_error_t *err)
{
    const int L = g->config.num_layers;
    bl_status_t st = BL_OK;
    if (u == 0) {
        bl_gpt2_embedding_forward(g, acts);
    } else if (u <= L) {
        bl_gpt2_block_forward_attention(g, acts, u - 1);
        st = layers_forward(g, acts, u, 1, err);
        if (st == BL_OK) {
            bl_gpt2_block_forward_mlp(g, acts, u - 1);
        }
    } else {
        *loss += bl_gpt2_head_forward(g, acts);
        return BL_OK;
    }
    return st == BL_OK ? layers_forward(g, acts, u, 0, err) : st;
}

bl_status_t bl_gpt2_unit_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int u, bl_error_t *err)
{
    const int L = g->config.num_layers;
    if (u > L) {
        bl_gpt2_head_backward(g, acts);
        return BL_OK;
    }
    bl_status_t st = layers_backward(g, acts, u, 0, err);
    if (st != BL_OK) {
        return st;
    }
    if (u == 0) {
        bl_gpt2_embedding_backward(g, acts);
        return BL_OK;
    }
    bl_gpt2_block_backward_mlp(g, acts, u - 1);
    st = layers_backward(g, acts, u, 1, err);
    if (st == BL_OK) {
        bl_gpt2_block_backward_attention(g, acts, u - 1);
    }
    return st;
}
