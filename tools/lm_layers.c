/* Two user layers for a GPT-2's residual stream (lm_layers.h). Every pass
 * adds its parameter gradients (call->accumulate is 1 in a language model:
 * the micro-batches of a step add up) as per-row SUMS, never means. */
#include <math.h>
#include <string.h>

#include "lm_layers.h"

/* ---- The bottleneck adapter ---------------------------------------------- */

static bl_status_t adapter_shape(void *state, int in, int *out, size_t *count)
{
    const lm_adapter_t *a = state;
    if (a == NULL || a->rank < 1) {
        return BL_ERR_INVALID_ARG;
    }
    *out = in;
    *count = 2 * (size_t)a->rank * (size_t)in;
    return BL_OK;
}

static bl_status_t adapter_init(void *state, int in, int out, float *params, uint64_t seed)
{
    (void)out;
    const lm_adapter_t *a = state;
    const size_t half = (size_t)a->rank * (size_t)in;
    /* A as torch.nn.Linear(C, r); Bm small, so the adapter starts near the
     * identity but every parameter has a gradient from the first step. */
    const float bound = 1.0f / sqrtf((float)in);
    bl_fill_uniform(params, half, -bound, bound, seed);
    bl_fill_uniform(params + half, half, -0.02f, 0.02f, seed + 1);
    return BL_OK;
}

/* Makes the three scratch arrays hold `need` floats each on dev, where the
 * call's pointers live: made again when they are too small, or on another
 * device. Their contents need not survive (every pass writes them first). */
static bl_status_t reserve(lm_adapter_t *a, const bl_device_t *dev, size_t need)
{
    if (need <= a->capacity && a->device == dev) {
        return BL_OK;
    }
    lm_adapter_free(a);
    const size_t nbytes = need * sizeof(float);
    a->device = dev;
    a->pre = bl_device_alloc(dev, nbytes);
    a->hidden = bl_device_alloc(dev, nbytes);
    a->dhidden = bl_device_alloc(dev, nbytes);
    if (a->pre == NULL || a->hidden == NULL || a->dhidden == NULL) {
        lm_adapter_free(a);
        return BL_ERR_NO_MEM;
    }
    a->capacity = need;
    return BL_OK;
}

/* pre (rows, r) = x · A^T and hidden = gelu(pre), the scratch first made to
 * hold rows × r floats each. */
static bl_status_t adapter_hidden(const bl_layer_call_t *c, lm_adapter_t *a)
{
    const int n = c->batch, C = c->in_features, r = a->rank;
    const size_t need = (size_t)n * (size_t)r;
    bl_status_t st = reserve(a, c->device, need);
    if (st == BL_OK) {
        st = bl_math_gemm(c->device, 0, 1, n, r, C, 1.0f, c->x, C, c->params, C, 0.0f, a->pre, r);
    }
    return st == BL_OK ? bl_math_gelu(c->device, need, a->pre, a->hidden) : st;
}

static bl_status_t adapter_forward(const bl_layer_call_t *c)
{
    lm_adapter_t *a = c->state;
    const int n = c->batch, C = c->in_features, r = a->rank;
    if (n == 0) {
        return BL_OK;
    }
    bl_status_t st = adapter_hidden(c, a);
    /* y = x + hidden · Bm^T, Bm (C, r). */
    if (st == BL_OK) {
        st = bl_math_copy(c->device, (size_t)n * (size_t)C, c->x, c->y);
    }
    return st == BL_OK ? bl_math_gemm(c->device, 0, 1, n, C, r, 1.0f, a->hidden, r,
                                      c->params + (size_t)r * (size_t)C, r, 1.0f, c->y, C)
                       : st;
}

static bl_status_t adapter_backward(const bl_layer_call_t *c)
{
    lm_adapter_t *a = c->state;
    const int n = c->batch, C = c->in_features, r = a->rank;
    const float *A = c->params, *Bm = c->params + (size_t)r * (size_t)C;
    float *dA = c->grads, *dB = c->grads + (size_t)r * (size_t)C;
    const float keep = c->accumulate ? 1.0f : 0.0f;
    if (n == 0) {
        return BL_OK;
    }
    bl_status_t st = adapter_hidden(c, a);
    /* dBm (C, r) += dy^T (C, n) · hidden (n, r). */
    if (st == BL_OK) {
        st = bl_math_gemm(c->device, 1, 0, C, r, n, 1.0f, c->dy, C, a->hidden, r, keep, dB, r);
    }
    /* dhidden (n, r) = dy · Bm, then through the GELU: d pre. */
    if (st == BL_OK) {
        st = bl_math_gemm(c->device, 0, 0, n, r, C, 1.0f, c->dy, C, Bm, r, 0.0f, a->dhidden, r);
    }
    if (st == BL_OK) {
        st =
            bl_math_gelu_backward(c->device, (size_t)n * (size_t)r, a->pre, a->dhidden, a->dhidden);
    }
    /* dA (r, C) += dhidden^T (r, n) · x (n, C). */
    if (st == BL_OK) {
        st = bl_math_gemm(c->device, 1, 0, r, C, n, 1.0f, a->dhidden, r, c->x, C, keep, dA, C);
    }
    /* dx = dy + dhidden · A. */
    if (st == BL_OK && c->dx != NULL) {
        st = bl_math_copy(c->device, (size_t)n * (size_t)C, c->dy, c->dx);
    }
    if (st == BL_OK && c->dx != NULL) {
        st = bl_math_gemm(c->device, 0, 0, n, C, r, 1.0f, a->dhidden, r, A, C, 1.0f, c->dx, C);
    }
    return st;
}

static double adapter_cost(void *state, int in, int out)
{
    (void)out;
    const lm_adapter_t *a = state;
    return 2.0 * (double)a->rank * (double)in;
}

const bl_layer_ops_t lm_adapter_ops = {.name = "adapter",
                                       .shape = adapter_shape,
                                       .init = adapter_init,
                                       .forward = adapter_forward,
                                       .backward = adapter_backward,
                                       .cost_hint = adapter_cost};

void lm_adapter_free(lm_adapter_t *a)
{
    bl_device_free(a->device, a->pre);
    bl_device_free(a->device, a->hidden);
    bl_device_free(a->device, a->dhidden);
    a->pre = a->hidden = a->dhidden = NULL;
    a->capacity = 0;
    a->device = NULL;
}

/* ---- The causal token shift ------------------------------------------------ */

static bl_status_t shift_shape(void *state, int in, int *out, size_t *count)
{
    (void)state;
    *out = in;
    *count = (size_t)in;
    return BL_OK;
}

static bl_status_t shift_init(void *state, int in, int out, float *params, uint64_t seed)
{
    (void)state;
    (void)out;
    bl_fill_uniform(params, (size_t)in, 0.0f, 0.2f, seed);
    return BL_OK;
}

static bl_status_t shift_forward(const bl_layer_call_t *c)
{
    const int C = c->in_features, T = c->seq_len;
    if (bl_device_has_memory(c->device)) {
        return BL_ERR_UNSUPPORTED;
    }
    if (T < 1 || c->batch % T != 0) {
        return BL_ERR_INVALID_ARG;
    }
    for (int i = 0; i < c->batch; i++) {
        const float *x = c->x + (size_t)i * C;
        float *y = c->y + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            /* The first token of a sequence has no predecessor. */
            y[j] = i % T == 0 ? x[j] : x[j] + c->params[j] * x[j - C];
        }
    }
    return BL_OK;
}

static bl_status_t shift_backward(const bl_layer_call_t *c)
{
    const int C = c->in_features, T = c->seq_len;
    if (bl_device_has_memory(c->device)) {
        return BL_ERR_UNSUPPORTED;
    }
    if (T < 1 || c->batch % T != 0) {
        return BL_ERR_INVALID_ARG;
    }
    if (!c->accumulate) {
        memset(c->grads, 0, (size_t)C * sizeof(float));
    }
    for (int i = 0; i < c->batch; i++) {
        const float *dy = c->dy + (size_t)i * C;
        const int has_next = (i + 1) % T != 0; /* token i + 1 is in the same sequence */
        for (int j = 0; j < C; j++) {
            if (i % T != 0) {
                c->grads[j] += dy[j] * c->x[(size_t)(i - 1) * C + j];
            }
            if (c->dx != NULL) {
                c->dx[(size_t)i * C + j] = dy[j] + (has_next ? c->params[j] * dy[j + C] : 0.0f);
            }
        }
    }
    return BL_OK;
}

static double shift_cost(void *state, int in, int out)
{
    (void)state;
    (void)out;
    return (double)in;
}

const bl_layer_ops_t lm_token_shift_ops = {.name = "token_shift",
                                           .shape = shift_shape,
                                           .init = shift_init,
                                           .forward = shift_forward,
                                           .backward = shift_backward,
                                           .cost_hint = shift_cost};
