/* y = tanh(x · W^T): shapes x (batch, in), W (out, in), y (batch, out). */
#include <math.h>

#include "tanh_dense_layer.h"

static bl_status_t tanh_dense_shape(void *state, int in_features, int *out_features,
                                    size_t *param_count)
{
    if (state == NULL) {
        return BL_ERR_INVALID_ARG; /* the state is the output width */
    }
    int out = *(const int *)state;
    if (out <= 0) {
        return BL_ERR_INVALID_ARG;
    }
    *out_features = out;
    *param_count = (size_t)out * (size_t)in_features;
    return BL_OK;
}

static bl_status_t tanh_dense_init(void *state, int in_features, int out_features, float *params,
                                   uint64_t rng_seed)
{
    float bound = 1.0f / sqrtf((float)in_features);
    bl_fill_uniform(params, (size_t)out_features * (size_t)in_features, -bound, bound, rng_seed);
    return BL_OK;
}

static bl_status_t tanh_dense_forward(const bl_layer_call_t *c)
{
    size_t n = (size_t)c->batch * (size_t)c->out_features;
    if (c->batch == 0) {
        return BL_OK;
    }
    /* (batch, out) = (batch, in) · W^T */
    bl_status_t st =
        bl_math_gemm(c->device, 0, 1, c->batch, c->out_features, c->in_features, 1.0f, c->x,
                     c->in_features, c->params, c->in_features, 0.0f, c->y, c->out_features);
    if (st != BL_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        c->y[i] = tanhf(c->y[i]);
    }
    return BL_OK;
}

static bl_status_t tanh_dense_backward(const bl_layer_call_t *c)
{
    size_t n = (size_t)c->batch * (size_t)c->out_features;
    size_t w_count = (size_t)c->out_features * (size_t)c->in_features;
    if (c->batch == 0) {
        if (!c->accumulate) {
            for (size_t i = 0; i < w_count; i++) {
                c->grads[i] = 0.0f;
            }
        }
        return BL_OK;
    }
    /* dz = dy · (1 − y²), in place: dy is scratch after the call. */
    float *dz = c->dy;
    for (size_t i = 0; i < n; i++) {
        dz[i] *= 1.0f - c->y[i] * c->y[i];
    }
    /* dW (out, in) (+)= dz^T (out, batch) · x (batch, in) */
    bl_status_t st = bl_math_gemm(c->device, 1, 0, c->out_features, c->in_features, c->batch, 1.0f,
                                  dz, c->out_features, c->x, c->in_features,
                                  c->accumulate ? 1.0f : 0.0f, c->grads, c->in_features);
    /* dx (batch, in) = dz (batch, out) · W (out, in) */
    if (st == BL_OK && c->dx != NULL) {
        st = bl_math_gemm(c->device, 0, 0, c->batch, c->in_features, c->out_features, 1.0f, dz,
                          c->out_features, c->params, c->in_features, 0.0f, c->dx, c->in_features);
    }
    return st;
}

static double tanh_dense_cost(void *state, int in_features, int out_features)
{
    return (double)in_features * (double)out_features;
}

const bl_layer_ops_t tanh_dense_ops = {
    .name = "tanh_dense",
    .shape = tanh_dense_shape,
    .init = tanh_dense_init,
    .forward = tanh_dense_forward,
    .backward = tanh_dense_backward,
    .cost_hint = tanh_dense_cost,
    .destroy = NULL,
};
