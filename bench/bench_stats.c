/* The benchmarks' clock and summaries. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_stats.h"

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

summary_t summarize(const double *v, int n)
{
    double *sorted = malloc((size_t)n * sizeof *sorted);
    summary_t s = {0.0, 0.0, 0.0};
    if (sorted == NULL || n <= 0) {
        free(sorted);
        return s;
    }
    memcpy(sorted, v, (size_t)n * sizeof *v);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_doubles);
    s.median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    s.min = sorted[0];
    s.max = sorted[n - 1];
    free(sorted);
    return s;
}
