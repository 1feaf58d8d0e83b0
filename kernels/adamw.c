/* AdamW, torch.optim.AdamW's semantics (kernels.h's adamw_update), in one
 * fused pass: w, m, v and grad are each read once, w, m and v written once.
 * The scalars are formed in double once per call; the per-element
 * arithmetic is float, in exactly the order written in adamw_step.h's
 * bl_adamw_step, which cuda/adamw.cu runs too (this file is built with
 * -ffp-contract=off, so the GPU's results are bit-equal). */
#include "adamw_step.h"
#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* adamw_step.h's step over n parameters. w, m, v and grad are distinct
 * buffers, so restrict holds. */
static inline void adamw_span(size_t n, float *restrict w, float *restrict m, float *restrict v,
                              const float *restrict grad, const bl_adamw_consts_t *k)
{
    const bl_adamw_consts_t kk = *k; /* a local, so the stores cannot change it */
    for (size_t i = 0; i < n; i++) {
        /* Through locals: GCC keeps restrict only for the arrays' own accesses. */
        float wi = w[i], mi = m[i], vi = v[i];
        bl_adamw_step(kk, grad[i], &wi, &mi, &vi);
        w[i] = wi;
        m[i] = mi;
        v[i] = vi;
    }
}

void bl_cpu_adamw_update(size_t count, float *w, float *m, float *v, const float *grad,
                         float grad_scale, float lr, float beta1, float beta2, float eps,
                         float weight_decay, long t)
{
    const bl_adamw_consts_t k = bl_adamw_consts(grad_scale, lr, beta1, beta2, eps, weight_decay, t);
    size_t i = 0;
    for (; i + L <= count; i += L) {
        adamw_span(L, w + i, m + i, v + i, grad + i, &k);
    }
    adamw_span(count - i, w + i, m + i, v + i, grad + i, &k);
}
