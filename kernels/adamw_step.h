/* AdamW's per-call scalars and per-element step, shared by the CPU kernel
 * (adamw.c) and the CUDA one (cuda/adamw.cu) so both compute the same thing
 * the same way. The scalars are formed in double once per call, on the
 * host; the step is float arithmetic in exactly the order written, each
 * product, quotient and sum rounded on its own (adamw.c is built with
 * -ffp-contract=off and adamw.cu with -fmad=false), so a GPU replica and a
 * CPU replica given the same gradients keep the same bits. */
#ifndef BL_ADAMW_STEP_H
#define BL_ADAMW_STEP_H

#include <math.h>

#include "host_device.h"

/* The per-call scalars, rounded to float once. */
typedef struct bl_adamw_consts {
    float scale, decay, b1, c1, b2, c2, sqrt_bc2, step, eps;
} bl_adamw_consts_t;

/* kernels.h's adamw_update arguments as the step's scalars, with the bias
 * corrections in double: bc1 = 1 − beta1^t, bc2 = 1 − beta2^t. */
static inline bl_adamw_consts_t bl_adamw_consts(float grad_scale, float lr, float beta1,
                                                float beta2, float eps, float weight_decay, long t)
{
    const double bc1 = 1.0 - pow((double)beta1, (double)t);
    const double bc2 = 1.0 - pow((double)beta2, (double)t);
    bl_adamw_consts_t k;
    k.scale = grad_scale;
    k.decay = (float)(1.0 - (double)lr * (double)weight_decay);
    k.b1 = beta1;
    k.c1 = (float)(1.0 - (double)beta1);
    k.b2 = beta2;
    k.c2 = (float)(1.0 - (double)beta2);
    k.sqrt_bc2 = (float)sqrt(bc2);
    k.step = (float)((double)lr / bc1);
    k.eps = eps;
    return k;
}

/* One parameter:
 *   g = scale · grad;  w = w · decay
 *   m = b1 · m + c1 · g;  v = b2 · v + c2 · (g · g)
 *   w = w − step · (m / (sqrt(v) / sqrt_bc2 + eps))
 * k is passed by value, so the caller's stores cannot be thought to change
 * the scalars. */
static inline BL_HOST_DEVICE void bl_adamw_step(const bl_adamw_consts_t k, float grad, float *w,
                                                float *m, float *v)
{
    const float g = k.scale * grad;
    const float wi = *w * k.decay;
    const float mi = k.b1 * *m + k.c1 * g;
    const float vi = k.b2 * *v + k.c2 * (g * g);
    const float denom = sqrtf(vi) / k.sqrt_bc2 + k.eps;
    *m = mi;
    *v = vi;
    *w = wi - k.step * (mi / denom);
}

#endif /* BL_ADAMW_STEP_H */
