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

/* One exchange of a stage with its neighbours, run between two of its
 * ops when transfers are rendezvous (NCCL's: a send completes only once
 * the receiver takes it, and a stream runs one group of transfers at a
 * time): the output of the op before it goes out and the input of the op
 * after it comes in, both in one group, waited for before the next op.
 * A field of −1 means no such transfer. */
typedef struct bl_pipe_exchange {
    int send_to;    /* stage + 1 (a forward's activations), stage − 1 (a backward's
                       input gradient), or −1 */
    int send_micro; /* the micro-batch sent */
    int recv_from;  /* stage − 1 (a forward's input), stage + 1 (a backward's output
                       gradient), or −1 */
    int recv_micro; /* the micro-batch received */
} bl_pipe_exchange_t;

/* The count + 1 exchanges of stage `stage` (of `stages`) around its ops
 * (count of them, from bl_pipe_schedule), written to out: exchange k runs
 * before op k (k = count: after the last op) and carries op k − 1's
 * output and op k's input. Returns count + 1, or −1 for a NULL ops or out,
 * count < 0, stages < 1 or stage outside [0, stages). With either
 * schedule every stage's exchanges, run as rendezvous groups, complete
 * without deadlock (tests/test_pipeline_plan.c checks S <= 5, M <= 9). */
int bl_pipe_exchanges(int stages, int stage, const bl_pipe_op_t *ops, int count,
                      bl_pipe_exchange_t *out);

/* ---- Layer partitions ---------------------------------------------------
 *
 * Contiguous min-max partition of layers 0..L−1 over S stages: stage s
 * owns layers [first[s], first[s+1]) (first[0] = 0, first[S] = L; first
 * has S + 1 entries). Every stage owns at least one layer, so L >= S: a
 * stage without layers would have nothing to run and no neighbour to pass
 * activations through. */

/* One partition problem. The arrays belong to the caller and are only
 * read. */
typedef struct bl_pipe_problem {
    int layers;             /* L */
    const double *cost;     /* (L) work of each layer per step at speed 1, >= 0 (zero allowed) */
    int stages;             /* S */
    const double *speed;    /* (S) relative speeds > 0, or NULL: all 1 */
    const double *boundary; /* (L) or NULL: boundary[i] (i >= 1) is the time a cut between
                               layers i-1 and i adds to EACH of the two stages it separates
                               (activations sent forward, gradients back); boundary[0] unused
                               (never read); >= 0 */
} bl_pipe_problem_t;

/* The time of stage `stage` owning layers [begin, end):
 *   Σ cost[begin..end−1] / speed[stage]
 *     + (stage > 0 && begin > 0 ? boundary[begin] : 0)
 *     + (stage < S−1 && end < L ? boundary[end] : 0),
 * the costs summed left to right from 0, the terms added in that order (a
 * cut at 0 or L separates this stage from empty ones only, and costs
 * nothing). The solver and bl_pipe_partition_time compute every stage time
 * with this one expression, so the optimum the solver finds is bit for bit
 * the time the caller measures. An empty stage (begin == end) takes 0; a
 * non-empty one with a speed <= 0 never finishes (+inf). NaN for a NULL p
 * or cost, stage outside [0, S), or not 0 <= begin <= end <= L. Inputs are
 * not otherwise checked. */
double bl_pipe_stage_time(const bl_pipe_problem_t *p, int stage, int begin, int end);

/* Writes into first (S + 1 entries) the partition that minimises the
 * slowest stage's bl_pipe_stage_time; ties (within 1e−12 of the optimum,
 * relative) go to the lexicographically smallest first[]. Exact (dynamic
 * programming, O(S · L²) time), with a (S × (L + 1)) table of doubles
 * from a (NULL: malloc), freed before return. Returns 0, or −1 (first
 * untouched) when p, p->cost or first is NULL, S < 1, L < S, a cost is
 * negative or non-finite, a speed is not positive or non-finite, a
 * boundary[i >= 1] is negative or non-finite, or memory is short. */
int bl_pipe_partition_solve(const bl_pipe_problem_t *p, int *first, const bl_part_allocator_t *a);

/* The slowest stage's time of partition first: the max over s of
 * bl_pipe_stage_time(p, s, first[s], first[s+1]); 0 when every stage is
 * empty. NaN on invalid input: p, p->cost or first NULL, S < 1, L < 0, or
 * first not a non-decreasing 0 … L (empty stages are allowed here). */
double bl_pipe_partition_time(const bl_pipe_problem_t *p, const int *first);

/* bl_pipe_partition_solve without boundary costs: stage s takes
 * Σ cost / speed[s]. Same results, same −1 cases. */
int bl_pipe_partition_layers(int layers, const double *cost, int stages, const double *speed,
                             int *first, const bl_part_allocator_t *a);

/* bl_pipe_partition_time without boundary costs: max over s of
 * Σ cost / speed[s] (speed NULL: all 1). */
double bl_pipe_partition_cost(int layers, const double *cost, int stages, const double *speed,
                              const int *first);

#endif /* BL_PIPELINE_PLAN_H */
