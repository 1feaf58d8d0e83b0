/* Softmax over the rows of a matrix and its backward (kernels.h's
 * softmax_rows and softmax_rows_backward), for user layers through
 * bl_math_softmax. Each row is xent_row.h's bl_softmax_row. */
#include "cpu_kernels.h"
#include "xent_row.h"

void bl_cpu_softmax_rows(int rows, int cols, const float *x, float *y)
{
    for (int r = 0; r < rows; r++) {
        bl_softmax_row(cols, x + (size_t)r * (size_t)cols, y + (size_t)r * (size_t)cols);
    }
}

void bl_cpu_softmax_rows_backward(int rows, int cols, const float *y, const float *dy, float *dx)
{
    for (int r = 0; r < rows; r++) {
        const float *yr = y + (size_t)r * (size_t)cols;
        const float *dyr = dy + (size_t)r * (size_t)cols;
        float *dxr = dx + (size_t)r * (size_t)cols;
        /* dx = y · (dy − Σ y · dy) */
        double dot = 0.0;
        for (int j = 0; j < cols; j++) {
            dot += (double)yr[j] * (double)dyr[j];
        }
        for (int j = 0; j < cols; j++) {
            dxr[j] = yr[j] * (dyr[j] - (float)dot);
        }
    }
}
