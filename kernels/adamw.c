/* AdamW, torch.optim.AdamW's semantics (kernels.h's adamw_update), in one
 * fused pass: w, m, v and grad are each read once, w, m and v written once.
 * The scalars are formed in double once per call; the per-element
 * arithmetic is float, in exactly the order written in adamw_span (this
 * file is built with -ffp-contract=off, so a GPU twin that keeps the same
 * order can be bit-equal). */
#include <math.h>

#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* The per-call scalars, rounded to float once. */
typedef struct {
    float scale, decay, b1, c1, b2, c2, sqrt_bc2, step, eps;
} adamw_consts_t;

/* n parameters:
 *   g = scale · grad;  w = w · decay
 *   m = b1 · m + c1 · g;  v = b2 · v + c2 · (g · g)
 *   w = w − step · (m / (sqrt(v) / sqrt_bc2 + eps))
 * w, m, v and grad are distinct buffers, so restrict holds. */
static inline void adamw_span(size_t n, float *restrict w, float *restrict m, float *restrict v,
                              const float *restrict grad, const adamw_consts_t *k)
{
    /* Locals, so the stores cannot be thought to change the scalars. */
    const float scale = k->scale, decay = k->decay, b1 = k->b1, c1 = k->c1, b2 = k->b2;
    const float c2 = k->c2, sqrt_bc2 = k->sqrt_bc2, step = k->step, eps = k->eps;
    for (size_t i = 0; i < n; i++) {
        const float g = scale * grad[i];
        const float wi = w[i] * decay;
        const float mi = b1 * m[i] + c1 * g;
        const float vi = b2 * v[i] + c2 * (g * g);
        const float denom = sqrtf(vi) / sqrt_bc2 + eps;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step * (mi / denom);
    }
}

void bl_cpu_adamw_update(size_t count, float *w, float *m, float *v, const float *grad,
                         float grad_scale, float lr, float beta1, float beta2, float eps,
                         float weight_decay, long t)
{
    /* Bias corrections in double: bc1 = 1 − beta1^t, bc2 = 1 − beta2^t. */
    const double bc1 = 1.0 - pow((double)beta1, (double)t);
    const double bc2 = 1.0 - pow((double)beta2, (double)t);
    const adamw_consts_t k = {
        .scale = grad_scale,
        .decay = (float)(1.0 - (double)lr * (double)weight_decay),
        .b1 = beta1,
        .c1 = (float)(1.0 - (double)beta1),
        .b2 = beta2,
        .c2 = (float)(1.0 - (double)beta2),
        .sqrt_bc2 = (float)sqrt(bc2),
        .step = (float)((double)lr / bc1),
        .eps = eps,
    };
    size_t i = 0;
    for (; i + L <= count; i += L) {
        adamw_span(L, w + i, m + i, v + i, grad + i, &k);
    }
    adamw_span(count - i, w + i, m + i, v + i, grad + i, &k);
}
