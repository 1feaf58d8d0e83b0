/* One row of softmax cross-entropy, shared by the CPU kernel
 * (softmax_xent.c) and the CUDA one (cuda/softmax_xent.cu) so both compute
 * the same thing the same way: max and argmax with the lowest index on
 * ties, exp(l − m) in float (so nothing overflows), sums in double; and
 * one row of a plain softmax the same way (attention, bl_math_softmax). */
#ifndef BL_XENT_ROW_H
#define BL_XENT_ROW_H

#include <math.h>

#include "host_device.h"

/* Row (classes) of logits with its label: writes g (classes) = softmax −
 * onehot when g is not NULL, sets *hit to whether the argmax is the label,
 * and returns −log softmax[label] = log Σ exp(l − m) − (l[label] − m). */
static inline BL_HOST_DEVICE double bl_xent_row(int classes, const float *row, int label, float *g,
                                                int *hit)
{
    int arg = 0;
    float m = row[0];
    for (int j = 1; j < classes; j++) {
        if (row[j] > m) { /* strict: the lowest index wins a tie */
            m = row[j];
            arg = j;
        }
    }
    *hit = arg == label;
    double sum = 0.0;
    if (g != NULL) {
        /* Keep exp(l − m) in g, then scale to softmax − onehot. */
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
    return log(sum) - ((double)row[label] - (double)m); /* sum >= 1 */
}

/* y[0 .. n) = the softmax of x[0 .. n), n >= 1 (x == y allowed): the
 * maximum subtracted, exp in float, the sum in double. */
static inline BL_HOST_DEVICE void bl_softmax_row(int n, const float *x, float *y)
{
    float m = x[0];
    for (int j = 1; j < n; j++) {
        m = x[j] > m ? x[j] : m;
    }
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        y[j] = expf(x[j] - m);
        sum += y[j];
    }
    const float inv = (float)(1.0 / sum); /* sum >= 1: the max gives exp(0) */
    for (int j = 0; j < n; j++) {
        y[j] *= inv;
    }
}

#endif /* BL_XENT_ROW_H */
