/* SGD with momentum and weight decay, PyTorch's convention, in one fused
 * pass: w, v and grad are each read once, w and v written once. */
#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* n parameters, float arithmetic in exactly this order:
 *   g = grad_scale · grad + weight_decay · w;  v = momentum · v + g;  w = w − lr · v
 * w, v and grad are distinct buffers, so restrict holds. */
static void sgd_span(size_t n, float *restrict w, float *restrict v, const float *restrict grad,
                     float grad_scale, float lr, float momentum, float weight_decay)
{
    for (size_t i = 0; i < n; i++) {
        const float g = grad_scale * grad[i] + weight_decay * w[i];
        const float vi = momentum * v[i] + g;
        v[i] = vi;
        w[i] = w[i] - lr * vi;
    }
}

void bl_cpu_sgd_update(size_t count, float *w, float *v, const float *grad, float grad_scale,
                       float lr, float momentum, float weight_decay)
{
    /* Spans of BL_CPU_LANES vectorise at -O2; the tail runs scalar. */
    size_t i = 0;
    for (; i + L <= count; i += L) {
        sgd_span(L, w + i, v + i, grad + i, grad_scale, lr, momentum, weight_decay);
    }
    sgd_span(count - i, w + i, v + i, grad + i, grad_scale, lr, momentum, weight_decay);
}

void bl_cpu_sgd_update_summed(size_t count, float *w, float *v, const float *const *grads,
                              int ngrads, float grad_scale, float lr, float momentum,
                              float weight_decay)
{
    /* Blocks of 512 keep the running sums in a buffer that stays in L1 and
     * that the loops vectorise over; gradients are added in array order. */
    enum { BLOCK = 512 };
    float sum[BLOCK];
    for (size_t i = 0; i < count; i += BLOCK) {
        size_t n = count - i < BLOCK ? count - i : BLOCK;
        for (size_t j = 0; j < n; j++) {
            sum[j] = grads[0][i + j];
        }
        for (int q = 1; q < ngrads; q++) {
            const float *restrict g = grads[q] + i;
            for (size_t j = 0; j < n; j++) {
                sum[j] += g[j];
            }
        }
        sgd_span(n, w + i, v + i, sum, grad_scale, lr, momentum, weight_decay);
    }
}
