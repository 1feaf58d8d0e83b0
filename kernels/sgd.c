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
