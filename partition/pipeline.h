/* Pipeline plans: which layers each stage owns, and the order in which a
 * stage runs the forward and backward passes of a step's micro-batches.
 * Pure: numbers in, numbers out — no MPI, no clocks, no globals. */
#ifndef BL_PIPELINE_PLAN_H
#define BL_PIPELINE_PLAN_H

#include "policy.h" /* bl_part_allocator_t */

/* Schedules (the values of bl_schedule_t in ballast.h). */
#define BL_PIPE_GPIPE 0 /* all forwards, then all backwards (fill–drain) */
#define BL_PIPE_1F1B  1 /* warm-up forwards, then one forward / one backward */

typedef enum { BL_PIPE_FORWARD = 0, BL_PIPE_BACKWARD = 1 } bl_pipe_pass_t;

/* One operation of a stage's step: a pass over one micro-batch. */
typedef struct bl_pipe_op {
    bl_pipe_pass_t pass;
    int micro; /* 0-based micro-batch */
} bl_pipe_op_t;

/* The 2·micro_batches operations stage `stage` (0-based of `stages`) runs
 * in one step, in order, written to ops:
 *   GPIPE: F0 F1 … F(M−1), then B(M−1) … B0.
 *   1F1B:  w = min(stages − stage − 1, M) warm-up forwards F0…F(w−1); then
 *          for j = w … M−1: F(j) then B(j − w); then the remaining
 *          backwards in order. Forwards and backwards each run in
 *          micro-batch order, so stage s holds at most min(S − s, M)
 *          micro-batches between their forward and their backward.
 * Every stage's list, run with blocking sends and receives between
 * neighbours, completes without deadlock. Returns the count (2·M), or −1
 * for an unknown schedule, stages < 1, stage outside [0, stages) or
 * micro_batches < 1. */
int bl_pipe_schedule(int schedule, int stages, int stage, int micro_batches, bl_pipe_op_t *ops);

/* The most micro-batches a stage holds between a forward and its backward
 * when it runs ops (count of them) in order. */
int bl_pipe_peak_in_flight(const bl_pipe_op_t *ops, int count);

/* Contiguous min-max partition of layers 0..layers−1 over `stages`
 * stages: stage s owns layers [first[s], first[s+1]) (first[0] = 0,
 * first[stages] = layers; first has stages + 1 entries). Stage s takes
 * Σ cost / speed[s] time; the partition minimises the slowest stage (ties:
 * the lexicographically smallest first[]). Every stage gets at least one
 * layer. cost[i] >= 0 (zero-cost layers allowed); speed NULL means all 1,
 * else every speed > 0. Exact (dynamic programming, O(stages · layers²)),
 * with a (stages × (layers + 1)) table from a (NULL: malloc). Returns 0,
 * or −1 when stages < 1, layers < stages, an input is negative,
 * non-finite, or a speed is not positive, or memory is short. */
int bl_pipe_partition_layers(int layers, const double *cost, int stages, const double *speed,
                             int *first, const bl_part_allocator_t *a);

/* The slowest stage's time of a partition: max over s of Σ cost / speed[s]
 * (speed NULL: all 1). */
double bl_pipe_partition_cost(int layers, const double *cost, int stages, const double *speed,
                              const int *first);

#endif /* BL_PIPELINE_PLAN_H */
