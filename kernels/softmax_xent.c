/* Softmax cross-entropy, row by row over logits (batch, classes).
 * Stable: the row max m is subtracted before exp, so every exp is in (0, 1]
 * and nothing overflows whatever the logits. Sums run in double. */
#include <math.h>

#include "cpu_kernels.h"

double bl_cpu_softmax_xent(int batch, int classes, const float *logits, const int *labels,
                           float *dlogits, long *correct)
{
    double loss = 0.0;
    long hits = 0;
    for (int i = 0; i < batch; i++) {
        const float *restrict row = logits + (size_t)i * (size_t)classes;
        /* Max and argmax together; strict > keeps the lowest index on ties. */
        int arg = 0;
        float m = row[0];
        for (int j = 1; j < classes; j++) {
            if (row[j] > m) {
                m = row[j];
                arg = j;
            }
        }
        const int label = labels[i];
        hits += arg == label;

        double sum = 0.0;
        if (dlogits != NULL) {
            /* Keep exp(l - m) in dlogits, then scale to softmax − onehot. */
            float *restrict g = dlogits + (size_t)i * (size_t)classes;
            for (int j = 0; j < classes; j++) {
                g[j] = expf(row[j] - m);
                sum += g[j];
            }
            const float inv = (float)(1.0 / sum);
            for (int j = 0; j < classes; j++) {
                g[j] *= inv;
            }
            g[label] -= 1.0f;
        } else {
            for (int j = 0; j < classes; j++) {
                sum += expf(row[j] - m);
            }
        }
        /* −log softmax[label] = log Σ exp(l − m) − (l[label] − m); sum >= 1. */
        loss += log(sum) - ((double)row[label] - (double)m);
    }
    if (correct != NULL) {
        *correct += hits;
    }
    return loss;
}
