/* Cross-entropy over a padded vocabulary (kernels.h's vocab_xent): rows of
 * Vp logits whose first V columns are real. Each row is xent_row.h's
 * softmax cross-entropy over its first V columns (shared with
 * softmax_xent), and the gradient's padding [V, Vp) is set to 0. */
#include <string.h>

#include "cpu_kernels.h"
#include "xent_row.h"

double bl_cpu_vocab_xent(int rows, int V, int Vp, const float *logits, const int32_t *targets,
                         float *dlogits)
{
    double loss = 0.0;
    for (int i = 0; i < rows; i++) {
        const size_t at = (size_t)i * (size_t)Vp;
        float *g = dlogits != NULL ? dlogits + at : NULL;
        int hit = 0; /* the argmax is not reported here */
        loss += bl_xent_row(V, logits + at, (int)targets[i], g, &hit);
        if (g != NULL && Vp > V) {
            memset(g + V, 0, (size_t)(Vp - V) * sizeof(float));
        }
    }
    return loss;
}
