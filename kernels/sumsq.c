/* The sum of squares in double (kernels.h's sum_squares), for global
 * gradient-norm clipping. BL_CPU_LANES partial sums, one per lane of a
 * span, so the loop vectorises without reassociating any sum (each lane
 * adds in order); the lanes are added once at the end. The result does not
 * depend on the thread count or the machine's vector width. */
#include "cpu_kernels.h"

enum { L = BL_CPU_LANES };

/* acc[j] += x[j]² for j < n. */
static void sumsq_span(size_t n, const float *restrict x, double *restrict acc)
{
    for (size_t j = 0; j < n; j++) {
        const double v = (double)x[j];
        acc[j] += v * v;
    }
}

double bl_cpu_sum_squares(size_t count, const float *x)
{
    double acc[L] = {0.0};
    size_t i = 0;
    for (; i + L <= count; i += L) {
        sumsq_span(L, x + i, acc);
    }
    sumsq_span(count - i, x + i, acc);
    double sum = 0.0;
    for (int j = 0; j < L; j++) {
        sum += acc[j];
    }
    return sum;
}
