/* Pipeline plans: per-stage schedules of a step's forward and backward
 * passes (GPipe and 1F1B), and the exact contiguous min-max partition of
 * layers over stages. Units: costs in seconds of work at speed 1, speeds
 * relative, times in seconds. */
#include <limits.h>
#include <math.h>
#include <stddef.h>

#include "alloc.h"
#include "pipeline.h"

/* ---- Schedules --------------------------------------------------------- */

static bl_pipe_op_t op(bl_pipe_pass_t pass, int micro)
{
    return (bl_pipe_op_t){.pass = pass, .micro = micro};
}

/* Fill–drain: F0 … F(M−1), then B(M−1) … B0 (the last forward's backward
 * is the first one the last stage can start). */
static void schedule_gpipe(int m, bl_pipe_op_t *ops)
{
    for (int j = 0; j < m; j++) {
        ops[j] = op(BL_PIPE_FORWARD, j);
    }
    for (int j = 0; j < m; j++) {
        ops[m + j] = op(BL_PIPE_BACKWARD, m - 1 - j);
    }
}

/* w = min(S − s − 1, M) warm-up forwards, then the steady state of one
 * forward and one backward (F(j), B(j − w)), then the w backwards left.
 * Stage s thus starts its first backward once the w micro-batches the
 * stages after it hold are on their way back. */
static void schedule_1f1b(int stages, int stage, int m, bl_pipe_op_t *ops)
{
    int w = stages - stage - 1 < m ? stages - stage - 1 : m;
    int n = 0;
    for (int j = 0; j < w; j++) {
        ops[n++] = op(BL_PIPE_FORWARD, j);
    }
    for (int j = w; j < m; j++) {
        ops[n++] = op(BL_PIPE_FORWARD, j);
        ops[n++] = op(BL_PIPE_BACKWARD, j - w);
    }
    for (int j = m - w; j < m; j++) {
        ops[n++] = op(BL_PIPE_BACKWARD, j);
    }
}

/* Also −1 for a NULL ops, or an M whose 2·M overflows an int. */
int bl_pipe_schedule(int schedule, int stages, int stage, int micro_batches, bl_pipe_op_t *ops)
{
    if (stages < 1 || stage < 0 || stage >= stages || micro_batches < 1 ||
        micro_batches > INT_MAX / 2 || ops == NULL) {
        return -1;
    }
    switch (schedule) {
    case BL_PIPE_GPIPE:
        schedule_gpipe(micro_batches, ops);
        break;
    case BL_PIPE_1F1B:
        schedule_1f1b(stages, stage, micro_batches, ops);
        break;
    default:
        return -1;
    }
    return 2 * micro_batches;
}

/* A forward takes a micro-batch in, a backward lets it go: the peak of the
 * running count. 0 for no ops. */
int bl_pipe_peak_in_flight(const bl_pipe_op_t *ops, int count)
{
    int held = 0, peak = 0;
    for (int i = 0; ops != NULL && i < count; i++) {
        held += ops[i].pass == BL_PIPE_FORWARD ? 1 : -1;
        peak = held > peak ? held : peak;
    }
    return peak;
}

/* ---- Layer partitions -------------------------------------------------- */

/* Every stage time here and in bl_pipe_partition_cost is the same float
 * expression: the costs summed left to right from 0, then divided by the
 * stage's speed, so the solver's optimum is the cost the caller measures. */
static double speed_of(const double *speed, int s)
{
    return speed != NULL ? speed[s] : 1.0;
}

static int valid_inputs(int layers, const double *cost, int stages, const double *speed)
{
    if (stages < 1 || layers < stages || cost == NULL) {
        return 0;
    }
    for (int i = 0; i < layers; i++) {
        if (!(cost[i] >= 0.0) || !isfinite(cost[i])) {
            return 0;
        }
    }
    for (int s = 0; speed != NULL && s < stages; s++) {
        if (!(speed[s] > 0.0) || !isfinite(speed[s])) {
            return 0;
        }
    }
    return 1;
}

/* best (stages × (layers + 1), row-major): best[s][i] is the least slowest
 * stage over partitions of layers i..L−1 into stages s..S−1, each stage
 * non-empty; only i in [s, L − (S − s)] is written (the others have no
 * such partition). Filled from the last stage back, O(S · L²). */
static void fill_suffix_table(int layers, const double *cost, int stages, const double *speed,
                              double *best)
{
    const int row = layers + 1;
    int last = stages - 1;
    for (int i = last; i < layers; i++) {
        double sum = 0.0;
        for (int k = i; k < layers; k++) {
            sum += cost[k];
        }
        best[last * row + i] = sum / speed_of(speed, last);
    }
    for (int s = last - 1; s >= 0; s--) {
        int rest = stages - s - 1; /* stages after s, one layer each at least */
        for (int i = s; i <= layers - rest - 1; i++) {
            /* Stage s owns i..j−1; the rest start at j. */
            double sum = 0.0, least = INFINITY;
            for (int j = i + 1; j <= layers - rest; j++) {
                sum += cost[j - 1];
                double here = sum / speed_of(speed, s);
                double after = best[(s + 1) * row + j];
                double worst = here > after ? here : after;
                least = worst < least ? worst : least;
            }
            best[s * row + i] = least;
        }
    }
}

/* With the optimum v = best[0][0]: each stage in turn ends at the first
 * layer that keeps it within v and leaves a suffix that can still make v,
 * which gives the lexicographically smallest first[]. "Within v" allows
 * 1e-12·v, so sums that round differently in another order still tie. */
static void pick_first(int layers, const double *cost, int stages, const double *speed,
                       const double *best, int *first)
{
    const int row = layers + 1;
    double v = best[0];
    double limit = v + 1e-12 * v;
    first[0] = 0;
    for (int s = 0; s < stages - 1; s++) {
        int rest = stages - s - 1;
        int i = first[s];
        /* The table promises a qualifying end in (i, end]: when none
         * before end qualifies, end does. */
        int end = layers - rest;
        double sum = 0.0;
        int j = i + 1;
        for (; j < end; j++) {
            sum += cost[j - 1];
            if (sum / speed_of(speed, s) <= limit && best[(s + 1) * row + j] <= limit) {
                break;
            }
        }
        first[s + 1] = j;
    }
    first[stages] = layers;
}

int bl_pipe_partition_layers(int layers, const double *cost, int stages, const double *speed,
                             int *first, const bl_part_allocator_t *a)
{
    if (first == NULL || !valid_inputs(layers, cost, stages, speed)) {
        return -1;
    }
    double *best = bl_part_alloc(a, (size_t)stages * (size_t)(layers + 1), sizeof *best);
    if (best == NULL) {
        return -1;
    }
    fill_suffix_table(layers, cost, stages, speed, best);
    pick_first(layers, cost, stages, speed, best, first);
    bl_part_free(a, best);
    return 0;
}

/* NaN on invalid input (stages < 1, layers < 0, NULL cost or first, first
 * not a non-decreasing 0 … layers); a non-empty stage with a speed <= 0
 * never finishes (+inf), an empty one takes 0. */
double bl_pipe_partition_cost(int layers, const double *cost, int stages, const double *speed,
                              const int *first)
{
    if (stages < 1 || layers < 0 || cost == NULL || first == NULL || first[0] != 0 ||
        first[stages] != layers) {
        return NAN;
    }
    for (int s = 0; s < stages; s++) {
        if (first[s + 1] < first[s]) {
            return NAN;
        }
    }
    double worst = 0.0;
    for (int s = 0; s < stages; s++) {
        if (first[s + 1] == first[s]) {
            continue;
        }
        double sum = 0.0;
        for (int k = first[s]; k < first[s + 1]; k++) {
            sum += cost[k];
        }
        double sp = speed_of(speed, s);
        double t = sp > 0.0 ? sum / sp : INFINITY;
        worst = t > worst ? t : worst;
    }
    return worst;
}
