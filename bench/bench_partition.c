/* bench_partition: time of one bl_pipe_partition_solve (the exact min-max
 * layer partition with boundary costs, partition/pipeline.c) on one core.
 *
 * Cases (L layers over S stages): L = 50, S = 8 and L = 200, S = 4, 16, 64.
 * Every repetition draws a fresh seeded problem (outside the timed region):
 *   cost[i]     uniform in [0.5, 1.5): layers of a similar size;
 *   speed[s]    uniform in [0.5, 1.5): stages of mixed hardware;
 *   boundary[i] uniform in [0, 0.2): a cut costs up to a fifth of a layer.
 * One line per case: the median and the max milliseconds per solve over the
 * repetitions; then whether every case with L <= 200, S <= 16 stays under
 * 10 ms at its max. Figures only: the exit status is 0 unless a solve
 * failed. Usage: bench_partition [REPS] (default 300). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_stats.h" /* now_seconds: CLOCK_MONOTONIC */
#include "pipeline.h"

enum { MAX_LAYERS = 200, MAX_STAGES = 64, DEFAULT_REPS = 300, MAX_REPS = 100000 };

/* xorshift64*, uniform in [0, 1). */
static double next_unit(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 0x2545f4914f6cdd1dULL) >> 11) * 0x1.0p-53;
}

typedef struct bench_case {
    int layers, stages;
} bench_case_t;

/* Times reps solves of case c into ms (reps doubles, milliseconds). -1
 * when a solve fails. */
static int time_case(bench_case_t c, int reps, uint64_t *rs, double *ms, long *checksum)
{
    static double cost[MAX_LAYERS], boundary[MAX_LAYERS], speed[MAX_STAGES];
    int first[MAX_STAGES + 1];
    const bl_pipe_problem_t p = {
        .layers = c.layers, .cost = cost, .stages = c.stages, .speed = speed, .boundary = boundary};
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < c.layers; i++) {
            cost[i] = 0.5 + next_unit(rs);
            boundary[i] = 0.2 * next_unit(rs);
        }
        for (int s = 0; s < c.stages; s++) {
            speed[s] = 0.5 + next_unit(rs);
        }
        double t0 = now_seconds();
        int rc = bl_pipe_partition_solve(&p, first, NULL);
        double t1 = now_seconds();
        if (rc != 0) {
            fprintf(stderr, "bench_partition: L=%d S=%d: solve failed\n", c.layers, c.stages);
            return -1;
        }
        ms[r] = 1e3 * (t1 - t0);
        *checksum += first[c.stages / 2]; /* the answer is used */
    }
    return 0;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : DEFAULT_REPS;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_partition [REPS in 1..%d]\n", MAX_REPS);
        return 1;
    }
    const bench_case_t cases[] = {{50, 8}, {200, 4}, {200, 16}, {200, 64}};
    double *ms = malloc((size_t)reps * sizeof *ms);
    if (ms == NULL) {
        fprintf(stderr, "bench_partition: out of memory\n");
        return 1;
    }
    uint64_t rs = 0x9a27b1e5ULL;
    long checksum = 0;
    double worst_small = 0.0; /* the max over cases with L <= 200, S <= 16 */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (time_case(cases[k], reps, &rs, ms, &checksum) != 0) {
            free(ms);
            return 1;
        }
        summary_t t = summarize(ms, reps);
        printf("L=%d S=%d reps=%d: median %.4f ms, max %.4f ms per solve\n", cases[k].layers,
               cases[k].stages, reps, t.median, t.max);
        if (cases[k].layers <= 200 && cases[k].stages <= 16) {
            worst_small = t.max > worst_small ? t.max : worst_small;
        }
    }
    printf("L<=200, S<=16: max %.4f ms per solve: %s 10 ms (checksum %ld)\n", worst_small,
           worst_small < 10.0 ? "under" : "NOT under", checksum);
    free(ms);
    return 0;
}
