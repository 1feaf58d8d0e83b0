/* What the benchmarks share: a monotonic clock and the median and range
 * of repeated measurements (these machines are noisy: report medians). */
#ifndef BL_BENCH_STATS_H
#define BL_BENCH_STATS_H

typedef struct summary {
    double median, min, max;
} summary_t;

/* Seconds on CLOCK_MONOTONIC. */
double now_seconds(void);

/* Median and range of n > 0 values (v is left unchanged). */
summary_t summarize(const double *v, int n);

#endif /* BL_BENCH_STATS_H */
