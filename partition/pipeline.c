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

int bl_pipe_exchanges(int stages, int stage, const bl_pipe_op_t *ops, int count,
                      bl_pipe_exchange_t *out)
{
    if (ops == NULL || out == NULL || count < 0 || stages < 1 || stage < 0 || stage >= stages) {
        return -1;
    }
    for (int k = 0; k <= count; k++) {
        bl_pipe_exchange_t x = {-1, -1, -1, -1};
        if (k > 0) {
            /* A forward's activations go on, a backward's input gradient
             * goes back; the first stage sends nothing back and the last
             * nothing on. */
            const bl_pipe_op_t *done = &ops[k - 1];
            int to = done->pass == BL_PIPE_FORWARD ? stage + 1 : stage - 1;
            if (to >= 0 && to < stages) {
                x.send_to = to;
                x.send_micro = done->micro;
            }
        }
        if (k < count) {
            /* A forward's input comes from the stage before, a backward's
             * gradient from the stage after; the data and the loss need
             * nothing. */
            const bl_pipe_op_t *next = &ops[k];
            int from = next->pass == BL_PIPE_FORWARD ? stage - 1 : stage + 1;
            if (from >= 0 && from < stages) {
                x.recv_from = from;
                x.recv_micro = next->micro;
            }
        }
        out[k] = x;
    }
    return count + 1;
}

/* ---- Layer partitions -------------------------------------------------- */

/* Every stage time here, in the solver and in bl_pipe_partition_time, is
 * the same float expression, built by these two helpers: the stage's costs
 * summed left to right from 0, divided by its speed, plus the cut before
 * it, plus the cut after it. So the solver's optimum is the time the
 * caller measures, bit for bit, and the tie slack only has to absorb
 * partitions that are equal in exact arithmetic. (Prefix sums would make a
 * stage's sum P[end] − P[begin], which loses a small stage after heavy ones
 * to cancellation and turns an overflowed total into inf − inf; the
 * running sum costs the same O(1) per step of the solver's inner loop.)
 *
 * head: the work term plus the cut before the stage. It never decreases as
 * the stage grows (costs >= 0, and rounding is monotone), and the cut
 * after only adds, which is what lets the solver stop a scan early. */
static inline double head_seconds(double sum, double speed, double before)
{
    return (speed > 0.0 ? sum / speed : INFINITY) + before;
}

static inline double stage_seconds(double head, double after)
{
    return head + after;
}

static double speed_of(const bl_pipe_problem_t *p, int s)
{
    return p->speed != NULL ? p->speed[s] : 1.0;
}

/* What a cut before layer `at` adds to each stage it touches: 0 without
 * boundary costs, and 0 at 0 or L, where no layer lies on the other side.
 * (Adding +0.0 to a time >= 0 changes nothing, so the expression above
 * needs no branch for stages at the ends.) */
static double cut_seconds(const bl_pipe_problem_t *p, int at)
{
    return p->boundary != NULL && at > 0 && at < p->layers ? p->boundary[at] : 0.0;
}

static double before_seconds(const bl_pipe_problem_t *p, int s, int begin)
{
    return s > 0 ? cut_seconds(p, begin) : 0.0;
}

static double after_seconds(const bl_pipe_problem_t *p, int s, int end)
{
    return s < p->stages - 1 ? cut_seconds(p, end) : 0.0;
}

double bl_pipe_stage_time(const bl_pipe_problem_t *p, int stage, int begin, int end)
{
    if (p == NULL || p->cost == NULL || stage < 0 || stage >= p->stages || begin < 0 ||
        begin > end || end > p->layers) {
        return NAN;
    }
    if (begin == end) {
        return 0.0;
    }
    double sum = 0.0;
    for (int k = begin; k < end; k++) {
        sum += p->cost[k];
    }
    double head = head_seconds(sum, speed_of(p, stage), before_seconds(p, stage, begin));
    return stage_seconds(head, after_seconds(p, stage, end));
}

static int finite_at_least(double x, double least)
{
    return x >= least && isfinite(x);
}

static int valid_problem(const bl_pipe_problem_t *p)
{
    if (p == NULL || p->cost == NULL || p->stages < 1 || p->layers < p->stages) {
        return 0;
    }
    for (int i = 0; i < p->layers; i++) {
        if (!finite_at_least(p->cost[i], 0.0)) {
            return 0;
        }
    }
    for (int s = 0; p->speed != NULL && s < p->stages; s++) {
        if (!(p->speed[s] > 0.0) || !isfinite(p->speed[s])) {
            return 0;
        }
    }
    for (int i = 1; p->boundary != NULL && i < p->layers; i++) {
        if (!finite_at_least(p->boundary[i], 0.0)) {
            return 0;
        }
    }
    return 1;
}

/* best (S × (L + 1), row-major): best[s][i] is the least slowest stage over
 * partitions of layers i..L−1 into stages s..S−1, each stage non-empty;
 * only i in [s, L − (S − s)] is written (the others have no such
 * partition). Filled from the last stage back, O(S · L²): for each (s, i)
 * the scan over stage s's end j keeps the running sum, so each step is
 * O(1). The scan stops once the head alone reaches the least found: every
 * later j is at least as slow (see head_seconds), so best is unchanged. */
static void fill_suffix_table(const bl_pipe_problem_t *p, double *best)
{
    const int layers = p->layers, stages = p->stages;
    const size_t row = (size_t)layers + 1;
    const int last = stages - 1;
    for (int i = last; i < layers; i++) {
        double sum = 0.0;
        for (int k = i; k < layers; k++) {
            sum += p->cost[k];
        }
        double head = head_seconds(sum, speed_of(p, last), before_seconds(p, last, i));
        best[last * row + i] = stage_seconds(head, after_seconds(p, last, layers));
    }
    for (int s = last - 1; s >= 0; s--) {
        const int rest = stages - s - 1; /* stages after s, one layer each at least */
        const double speed = speed_of(p, s);
        const double *next = best + (size_t)(s + 1) * row;
        for (int i = s; i <= layers - rest - 1; i++) {
            /* Stage s owns i..j−1; the rest start at j. */
            const double before = before_seconds(p, s, i);
            double sum = 0.0, least = INFINITY;
            for (int j = i + 1; j <= layers - rest; j++) {
                sum += p->cost[j - 1];
                double head = head_seconds(sum, speed, before);
                if (head >= least) {
                    break;
                }
                double here = stage_seconds(head, after_seconds(p, s, j));
                double worst = here > next[j] ? here : next[j];
                least = worst < least ? worst : least;
            }
            best[s * row + i] = least;
        }
    }
}

/* With the optimum v = best[0][0]: each stage in turn ends at the first
 * layer that keeps it within v and leaves a suffix that can still make v,
 * which gives the lexicographically smallest first[] among partitions
 * within v (the table holds the exact least of the same expressions, so
 * "can still make it" is exact). "Within v" allows 1e-12·v, so partitions
 * equal in exact arithmetic whose sums round differently still tie. */
static void pick_first(const bl_pipe_problem_t *p, const double *best, int *first)
{
    const int layers = p->layers, stages = p->stages;
    const size_t row = (size_t)layers + 1;
    const double v = best[0];
    const double limit = v + 1e-12 * v;
    first[0] = 0;
    for (int s = 0; s < stages - 1; s++) {
        const int rest = stages - s - 1;
        const int i = first[s];
        const double speed = speed_of(p, s);
        const double before = before_seconds(p, s, i);
        const double *next = best + (size_t)(s + 1) * row;
        /* best[s][i] <= limit promises a qualifying end in (i, end]: when
         * none before end qualifies, end does. */
        const int end = layers - rest;
        double sum = 0.0;
        int j = i + 1;
        for (; j < end; j++) {
            sum += p->cost[j - 1];
            double here = stage_seconds(head_seconds(sum, speed, before), after_seconds(p, s, j));
            if (here <= limit && next[j] <= limit) {
                break;
            }
        }
        first[s + 1] = j;
    }
    first[stages] = layers;
}

int bl_pipe_partition_solve(const bl_pipe_problem_t *p, int *first, const bl_part_allocator_t *a)
{
    if (first == NULL || !valid_problem(p)) {
        return -1;
    }
    double *best = bl_part_alloc(a, (size_t)p->stages * ((size_t)p->layers + 1), sizeof *best);
    if (best == NULL) {
        return -1;
    }
    fill_suffix_table(p, best);
    pick_first(p, best, first);
    bl_part_free(a, best);
    return 0;
}

double bl_pipe_partition_time(const bl_pipe_problem_t *p, const int *first)
{
    if (p == NULL || p->stages < 1 || p->layers < 0 || p->cost == NULL || first == NULL ||
        first[0] != 0 || first[p->stages] != p->layers) {
        return NAN;
    }
    for (int s = 0; s < p->stages; s++) {
        if (first[s + 1] < first[s]) {
            return NAN;
        }
    }
    double worst = 0.0;
    for (int s = 0; s < p->stages; s++) {
        double t = bl_pipe_stage_time(p, s, first[s], first[s + 1]);
        worst = t > worst ? t : worst;
    }
    return worst;
}

int bl_pipe_partition_layers(int layers, const double *cost, int stages, const double *speed,
                             int *first, const bl_part_allocator_t *a)
{
    const bl_pipe_problem_t p = {
        .layers = layers, .cost = cost, .stages = stages, .speed = speed, .boundary = NULL};
    return bl_pipe_partition_solve(&p, first, a);
}

double bl_pipe_partition_cost(int layers, const double *cost, int stages, const double *speed,
                              const int *first)
{
    const bl_pipe_problem_t p = {
        .layers = layers, .cost = cost, .stages = stages, .speed = speed, .boundary = NULL};
    return bl_pipe_partition_time(&p, first);
}
