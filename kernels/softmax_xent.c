/* Softmax cross-entropy, row by row over logits (batch, classes)
 * (xent_row.h has the row, shared with the CUDA kernel). */
#include "cpu_kernels.h"
#include "xent_row.h"

double bl_cpu_softmax_xent(int batch, int classes, const float *logits, const int *labels,
                           float *dlogits, long *correct)
{
    double loss = 0.0;
    long hits = 0;
    for (int i = 0; i < batch; i++) {
        const size_t at = (size_t)i * (size_t)classes;
        int hit = 0;
        loss += bl_xent_row(classes, logits + at, labels[i], dlogits != NULL ? dlogits + at : NULL,
                            &hit);
        hits += hit;
    }
    if (correct != NULL) {
        *correct += hits;
    }
    return loss;
}
