/* Two user layers for a GPT-2's residual stream (bl_lm_layer_t), written
 * against the public API only, so they also show how to write one. Used by
 * ballast-train's --adapter and --token-shift, and by the language model's
 * user-layer tests.
 *
 *   lm_adapter_ops: a bottleneck adapter, y = x + gelu(x · A^T) · Bm^T, with
 *     A (r × C) and Bm (C × r): r · C + C · r parameters, A first. Its state
 *     is a lm_adapter_t. The products run through bl_math_gemm, the GELU
 *     (GPT-2's tanh form) through bl_math_gelu and the residual's copies
 *     through bl_math_copy, on the call's device; its scratch lives there
 *     too (bl_device_alloc), so it runs on the CPU and on a device with
 *     memory of its own whose kernels have those helpers (the mirror).
 *     The GELU is smooth: with a ReLU's kink, two summation orders' rounding
 *     can switch a unit on in one run and off in the other, and AdamW then
 *     grows that into differences far above float rounding.
 *   lm_token_shift_ops: a causal token mix, y[t] = x[t] + a ⊙ x[t − 1] within
 *     each sequence (y[0] = x[0]), with a (C): C parameters. It reads the
 *     call's seq_len to find the sequences' edges. Its state is unused. It
 *     computes on host memory: on a device with memory of its own it returns
 *     BL_ERR_UNSUPPORTED. */
#ifndef LM_LAYERS_H
#define LM_LAYERS_H

#include <stddef.h>

#include "ballast.h"

/* An adapter's width and its scratch, which grows to the largest call. */
typedef struct lm_adapter {
    int rank;      /* r, the bottleneck width */
    float *pre;    /* (rows, r) x · A^T, recomputed in backward */
    float *hidden; /* (rows, r) gelu(pre) */
    float *dhidden;
    size_t capacity;           /* floats each scratch holds */
    const bl_device_t *device; /* where the scratch lives (the calls' device), or NULL */
} lm_adapter_t;

extern const bl_layer_ops_t lm_adapter_ops;
extern const bl_layer_ops_t lm_token_shift_ops;

/* Frees an adapter's scratch (the layer's ops have no destroy, since a
 * language model's caller owns the state), on the device it lives on, which
 * must still be open. */
void lm_adapter_free(lm_adapter_t *a);

#endif
