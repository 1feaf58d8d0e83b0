/* Tests of the pipeline plans (partition/pipeline.c): GPipe and 1F1B
 * schedules (every micro-batch once each way, the documented orders, the
 * peak of micro-batches in flight, no deadlock across the stages), and the
 * min-max layer partition against brute force (the optimum, and the
 * lexicographically smallest first[] among optima); invalid input gives
 * -1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

#define MAX_STAGES 5
#define MAX_MICRO  9
#define MAX_OPS    (2 * MAX_MICRO)

/* xorshift64*: the test's own generator, independent of the library's. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, 1). */
static double next_unit(uint64_t *s)
{
    return (double)(next_random(s) >> 11) * 0x1.0p-53;
}

static const char *schedule_name(int schedule)
{
    return schedule == BL_PIPE_GPIPE ? "gpipe" : "1f1b";
}

/* ---- Schedules --------------------------------------------------------- */

/* Every micro-batch forward once and backward once, the forward first. */
static void check_each_once(int schedule, int stages, int stage, int m, const bl_pipe_op_t *ops)
{
    int fwd_at[MAX_MICRO], bwd_at[MAX_MICRO];
    for (int j = 0; j < m; j++) {
        fwd_at[j] = bwd_at[j] = -1;
    }
    for (int i = 0; i < 2 * m; i++) {
        int j = ops[i].micro;
        if (j < 0 || j >= m) {
            fail_msg("%s S=%d s=%d M=%d: op %d names micro-batch %d", schedule_name(schedule),
                     stages, stage, m, i, j);
        }
        if (ops[i].pass != BL_PIPE_FORWARD && ops[i].pass != BL_PIPE_BACKWARD) {
            fail_msg("%s S=%d s=%d M=%d: op %d has pass %d", schedule_name(schedule), stages, stage,
                     m, i, (int)ops[i].pass);
        }
        int *at = ops[i].pass == BL_PIPE_FORWARD ? fwd_at : bwd_at;
        if (at[j] >= 0) {
            fail_msg("%s S=%d s=%d M=%d: micro-batch %d's %s pass twice (ops %d and %d)",
                     schedule_name(schedule), stages, stage, m, j,
                     ops[i].pass == BL_PIPE_FORWARD ? "forward" : "backward", at[j], i);
        }
        at[j] = i;
    }
    for (int j = 0; j < m; j++) {
        if (fwd_at[j] < 0 || bwd_at[j] < 0 || fwd_at[j] > bwd_at[j]) {
            fail_msg("%s S=%d s=%d M=%d: micro-batch %d forward at %d, backward at %d",
                     schedule_name(schedule), stages, stage, m, j, fwd_at[j], bwd_at[j]);
        }
    }
}

static void check_ops(const bl_pipe_op_t *got, const bl_pipe_op_t *want, int count,
                      const char *what)
{
    for (int i = 0; i < count; i++) {
        if (got[i].pass != want[i].pass || got[i].micro != want[i].micro) {
            fail_msg("%s: op %d is %c%d, expected %c%d", what, i,
                     got[i].pass == BL_PIPE_FORWARD ? 'F' : 'B', got[i].micro,
                     want[i].pass == BL_PIPE_FORWARD ? 'F' : 'B', want[i].micro);
        }
    }
}

#define F(j)                                                                                       \
    {                                                                                              \
        BL_PIPE_FORWARD, (j)                                                                       \
    }
#define B(j)                                                                                       \
    {                                                                                              \
        BL_PIPE_BACKWARD, (j)                                                                      \
    }

static void test_schedule_examples(void **state)
{
    (void)state;
    bl_pipe_op_t ops[MAX_OPS];
    /* GPipe: all forwards, then the backwards in reverse. */
    assert_int_equal(bl_pipe_schedule(BL_PIPE_GPIPE, 3, 1, 3, ops), 6);
    check_ops(ops, (const bl_pipe_op_t[]){F(0), F(1), F(2), B(2), B(1), B(0)}, 6, "gpipe 3/1/3");
    /* 1F1B, 4 stages, 5 micro-batches. Stage 0: w = 3. */
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 4, 0, 5, ops), 10);
    check_ops(ops,
              (const bl_pipe_op_t[]){F(0), F(1), F(2), F(3), B(0), F(4), B(1), B(2), B(3), B(4)},
              10, "1f1b 4/0/5");
    /* Stage 2: w = 1. */
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 4, 2, 5, ops), 10);
    check_ops(ops,
              (const bl_pipe_op_t[]){F(0), F(1), B(0), F(2), B(1), F(3), B(2), F(4), B(3), B(4)},
              10, "1f1b 4/2/5");
    /* The last stage: w = 0, strictly alternating. */
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 4, 3, 3, ops), 6);
    check_ops(ops, (const bl_pipe_op_t[]){F(0), B(0), F(1), B(1), F(2), B(2)}, 6, "1f1b 4/3/3");
    /* Fewer micro-batches than warm-up: w = M, the fill–drain in order. */
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 5, 0, 2, ops), 4);
    check_ops(ops, (const bl_pipe_op_t[]){F(0), F(1), B(0), B(1)}, 4, "1f1b 5/0/2");
}

/* The documented orders, rebuilt here from the header's words. */
static void expected_schedule(int schedule, int stages, int stage, int m, bl_pipe_op_t *want)
{
    int n = 0;
    if (schedule == BL_PIPE_GPIPE) {
        for (int j = 0; j < m; j++) {
            want[n++] = (bl_pipe_op_t){BL_PIPE_FORWARD, j};
        }
        for (int j = m - 1; j >= 0; j--) {
            want[n++] = (bl_pipe_op_t){BL_PIPE_BACKWARD, j};
        }
        return;
    }
    int w = stages - stage - 1 < m ? stages - stage - 1 : m;
    int next_b = 0;
    for (int j = 0; j < w; j++) {
        want[n++] = (bl_pipe_op_t){BL_PIPE_FORWARD, j};
    }
    for (int j = w; j < m; j++) {
        want[n++] = (bl_pipe_op_t){BL_PIPE_FORWARD, j};
        want[n++] = (bl_pipe_op_t){BL_PIPE_BACKWARD, next_b++};
    }
    while (next_b < m) {
        want[n++] = (bl_pipe_op_t){BL_PIPE_BACKWARD, next_b++};
    }
}

/* In 1F1B the forwards and the backwards each run in micro-batch order. */
static void check_in_order(int stages, int stage, int m, const bl_pipe_op_t *ops)
{
    int next[2] = {0, 0};
    for (int i = 0; i < 2 * m; i++) {
        int p = ops[i].pass == BL_PIPE_FORWARD ? 0 : 1;
        if (ops[i].micro != next[p]) {
            fail_msg("1f1b S=%d s=%d M=%d: op %d is micro-batch %d, expected %d", stages, stage, m,
                     i, ops[i].micro, next[p]);
        }
        next[p]++;
    }
}

static void test_schedule_properties(void **state)
{
    (void)state;
    const int schedules[2] = {BL_PIPE_GPIPE, BL_PIPE_1F1B};
    bl_pipe_op_t ops[MAX_OPS], want[MAX_OPS];
    char what[64];
    for (int k = 0; k < 2; k++) {
        int sched = schedules[k];
        for (int stages = 1; stages <= MAX_STAGES; stages++) {
            for (int m = 1; m <= MAX_MICRO; m++) {
                for (int s = 0; s < stages; s++) {
                    memset(ops, 0xff, sizeof ops);
                    assert_int_equal(bl_pipe_schedule(sched, stages, s, m, ops), 2 * m);
                    check_each_once(sched, stages, s, m, ops);
                    expected_schedule(sched, stages, s, m, want);
                    snprintf(what, sizeof what, "%s S=%d s=%d M=%d", schedule_name(sched), stages,
                             s, m);
                    check_ops(ops, want, 2 * m, what);
                    int peak = bl_pipe_peak_in_flight(ops, 2 * m);
                    int expect = sched == BL_PIPE_GPIPE ? m : (stages - s < m ? stages - s : m);
                    if (peak != expect) {
                        fail_msg("%s: peak in flight %d, expected %d", what, peak, expect);
                    }
                    if (sched == BL_PIPE_1F1B) {
                        check_in_order(stages, s, m, ops);
                    }
                }
            }
        }
    }
}

/* Runs every stage's list together, each strictly in order and blocking
 * on its next op: F(j) on stage s > 0 waits for F(j) on s − 1 (its input),
 * B(j) on stage s < S − 1 for B(j) on s + 1 (its gradient). Returns 1 when
 * every list finishes, 0 on a deadlock. */
static int runs_to_completion(int stages, int m, bl_pipe_op_t ops[][MAX_OPS])
{
    int pc[MAX_STAGES] = {0};
    int fwd_done[MAX_STAGES][MAX_MICRO] = {{0}};
    int bwd_done[MAX_STAGES][MAX_MICRO] = {{0}};
    for (;;) {
        int progress = 0, finished = 1;
        for (int s = 0; s < stages; s++) {
            if (pc[s] == 2 * m) {
                continue;
            }
            finished = 0;
            bl_pipe_op_t o = ops[s][pc[s]];
            int ready = o.pass == BL_PIPE_FORWARD ? (s == 0 || fwd_done[s - 1][o.micro])
                                                  : (s == stages - 1 || bwd_done[s + 1][o.micro]);
            if (!ready) {
                continue;
            }
            if (o.pass == BL_PIPE_FORWARD) {
                fwd_done[s][o.micro] = 1;
            } else {
                bwd_done[s][o.micro] = 1;
            }
            pc[s]++;
            progress = 1;
        }
        if (finished) {
            return 1;
        }
        if (!progress) {
            return 0;
        }
    }
}

static void test_schedule_no_deadlock(void **state)
{
    (void)state;
    const int schedules[2] = {BL_PIPE_GPIPE, BL_PIPE_1F1B};
    bl_pipe_op_t ops[MAX_STAGES][MAX_OPS];
    for (int k = 0; k < 2; k++) {
        for (int stages = 1; stages <= MAX_STAGES; stages++) {
            for (int m = 1; m <= MAX_MICRO; m++) {
                for (int s = 0; s < stages; s++) {
                    assert_int_equal(bl_pipe_schedule(schedules[k], stages, s, m, ops[s]), 2 * m);
                }
                if (!runs_to_completion(stages, m, ops)) {
                    fail_msg("%s S=%d M=%d deadlocks", schedule_name(schedules[k]), stages, m);
                }
            }
        }
    }
}

/* The simulator itself can fail: stage 0 starting B(0) before it has sent
 * F(1) on, while stage 1 wants F(1) before it runs B(0), blocks forever. */
static void test_deadlock_detector_detects(void **state)
{
    (void)state;
    bl_pipe_op_t ops[MAX_STAGES][MAX_OPS] = {
        {F(0), F(1), B(0), B(1)}, {F(1), F(0), B(0), B(1)}, /* waits for F(1) from stage 0: fine */
    };
    assert_int_equal(runs_to_completion(2, 2, ops), 1);
    bl_pipe_op_t bad[MAX_STAGES][MAX_OPS] = {
        {F(0), B(0), F(1), B(1)}, /* B(0) waits for stage 1's B(0) … */
        {F(0), F(1), B(0), B(1)}, /* … which waits for stage 0's F(1) */
    };
    assert_int_equal(runs_to_completion(2, 2, bad), 0);
}

static void test_peak_in_flight_examples(void **state)
{
    (void)state;
    assert_int_equal(bl_pipe_peak_in_flight(NULL, 0), 0);
    assert_int_equal(bl_pipe_peak_in_flight((const bl_pipe_op_t[]){F(0), B(0)}, 2), 1);
    assert_int_equal(
        bl_pipe_peak_in_flight((const bl_pipe_op_t[]){F(0), F(1), B(0), F(2), B(1), B(2)}, 6), 2);
    assert_int_equal(
        bl_pipe_peak_in_flight((const bl_pipe_op_t[]){F(0), F(1), F(2), B(2), B(1), B(0)}, 6), 3);
}

static void test_schedule_invalid(void **state)
{
    (void)state;
    bl_pipe_op_t ops[MAX_OPS];
    assert_int_equal(bl_pipe_schedule(2, 4, 0, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(-1, 4, 0, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_GPIPE, 0, 0, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 0, 0, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, -3, 0, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 4, 4, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_GPIPE, 4, -1, 4, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_1F1B, 4, 0, 0, ops), -1);
    assert_int_equal(bl_pipe_schedule(BL_PIPE_GPIPE, 4, 0, -2, ops), -1);
}

/* ---- Layer partitions -------------------------------------------------- */

#define MAX_LAYERS 10
#define BIG_LAYERS 200
#define BIG_STAGES 64

/* A stage's time as the header defines it: the costs summed in order,
 * divided by the stage's speed. */
static double stage_time(const double *cost, const double *speed, int s, int from, int to)
{
    double sum = 0.0;
    for (int k = from; k < to; k++) {
        sum += cost[k];
    }
    return sum / (speed != NULL ? speed[s] : 1.0);
}

static double slowest(int stages, const double *cost, const double *speed, const int *first)
{
    double worst = 0.0;
    for (int s = 0; s < stages; s++) {
        double t = stage_time(cost, speed, s, first[s], first[s + 1]);
        worst = t > worst ? t : worst;
    }
    return worst;
}

/* Brute force: every partition into non-empty contiguous stages, visited
 * in lexicographic order of first[]. */
typedef struct brute {
    int layers, stages;
    const double *cost, *speed;
    int first[MAX_LAYERS + 1];
    double limit; /* pass 2: the first partition within it is the answer */
    double best;  /* pass 1: the optimum */
    int found;    /* pass 2 */
    int answer[MAX_LAYERS + 1];
} brute_t;

static void brute_visit(brute_t *b, int s, int pass)
{
    if (pass == 2 && b->found) {
        return;
    }
    if (s == b->stages - 1) {
        b->first[b->stages] = b->layers;
        double t = slowest(b->stages, b->cost, b->speed, b->first);
        if (pass == 1) {
            b->best = t < b->best ? t : b->best;
        } else if (t <= b->limit) {
            b->found = 1;
            memcpy(b->answer, b->first, sizeof b->answer);
        }
        return;
    }
    /* Stage s owns [first[s], j); the stages after it need a layer each. */
    for (int j = b->first[s] + 1; j <= b->layers - (b->stages - s - 1); j++) {
        b->first[s + 1] = j;
        brute_visit(b, s + 1, pass);
    }
}

/* The optimum, and the lexicographically smallest first[] within
 * 1e-12 · optimum of it (the library's tie rule). */
static void brute_force(brute_t *b)
{
    b->first[0] = 0;
    b->best = INFINITY;
    brute_visit(b, 0, 1);
    b->limit = b->best + 1e-12 * b->best;
    b->found = 0;
    brute_visit(b, 0, 2);
    assert_true(b->found);
}

/* A valid partition: first[0] = 0, first[S] = L, every stage non-empty. */
static void check_partition(int layers, int stages, const int *first)
{
    if (first[0] != 0 || first[stages] != layers) {
        fail_msg("L=%d S=%d: first[0] = %d, first[S] = %d", layers, stages, first[0],
                 first[stages]);
    }
    for (int s = 0; s < stages; s++) {
        if (first[s + 1] <= first[s]) {
            fail_msg("L=%d S=%d: stage %d owns [%d, %d)", layers, stages, s, first[s],
                     first[s + 1]);
        }
    }
}

/* Costs of one of several shapes: uniform, heavy-tailed, small integers
 * (many ties), or with a third of the layers free. */
static void random_costs(uint64_t *rs, int shape, int layers, double *cost)
{
    for (int i = 0; i < layers; i++) {
        double u = next_unit(rs);
        switch (shape) {
        case 0:
            cost[i] = u;
            break;
        case 1:
            cost[i] = exp(6.0 * u) - 1.0;
            break;
        case 2:
            cost[i] = (double)(next_random(rs) % 4);
            break;
        default:
            cost[i] = next_random(rs) % 3 == 0 ? 0.0 : 0.1 + u;
            break;
        }
    }
}

static void check_against_brute(int layers, int stages, const double *cost, const double *speed,
                                const char *what)
{
    int first[MAX_LAYERS + 2];
    first[stages + 1] = -7; /* a guard: written past first[stages]? */
    if (bl_pipe_partition_layers(layers, cost, stages, speed, first, NULL) != 0) {
        fail_msg("%s: L=%d S=%d refused", what, layers, stages);
    }
    assert_int_equal(first[stages + 1], -7);
    check_partition(layers, stages, first);
    brute_t b = {.layers = layers, .stages = stages, .cost = cost, .speed = speed};
    brute_force(&b);
    double got = bl_pipe_partition_cost(layers, cost, stages, speed, first);
    if (!(fabs(got - b.best) <= 1e-9 * b.best)) {
        fail_msg("%s: L=%d S=%d: cost %.17g, brute-force optimum %.17g", what, layers, stages, got,
                 b.best);
    }
    for (int s = 0; s <= stages; s++) {
        if (first[s] != b.answer[s]) {
            fail_msg("%s: L=%d S=%d: first[%d] = %d, the smallest optimal first[] has %d", what,
                     layers, stages, s, first[s], b.answer[s]);
        }
    }
}

static void test_partition_matches_brute_force(void **state)
{
    (void)state;
    uint64_t rs = 0x5eed1234abcdULL;
    double cost[MAX_LAYERS], speed[4];
    int cases = 0;
    for (int layers = 1; layers <= MAX_LAYERS; layers++) {
        for (int stages = 1; stages <= 4 && stages <= layers; stages++) {
            for (int round = 0; round < 24; round++) {
                random_costs(&rs, round % 4, layers, cost);
                const double *sp = NULL;
                if (round % 3 != 0) {
                    for (int s = 0; s < stages; s++) {
                        /* half the rounds: speeds of a few ratios, so ties */
                        speed[s] = round % 2 == 0 ? 0.25 + 2.0 * next_unit(&rs)
                                                  : (double)(1 + next_random(&rs) % 3);
                    }
                    sp = speed;
                }
                check_against_brute(layers, stages, cost, sp, "random");
                cases++;
            }
        }
    }
    assert_true(cases == 24 * (1 + 2 + 3 + 4 * 7));
}

static void test_partition_examples(void **state)
{
    (void)state;
    int first[8];
    /* 1 2 3 4 5 6 over 3: {1 2 3} {4 5} {6} makes 9, the optimum (a first
     * stage of 4 layers alone makes 10; of 1 or 2, the rest make 11). */
    const double c6[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(bl_pipe_partition_layers(6, c6, 3, NULL, first, NULL), 0);
    assert_int_equal(first[0], 0);
    assert_int_equal(first[1], 3);
    assert_int_equal(first[2], 5);
    assert_int_equal(first[3], 6);
    assert_true(bl_pipe_partition_cost(6, c6, 3, NULL, first) == 9.0);
    /* A stage twice as fast takes twice the work. */
    const double c4[4] = {1, 1, 1, 1};
    assert_int_equal(bl_pipe_partition_layers(4, c4, 2, (const double[]){1, 3}, first, NULL), 0);
    assert_int_equal(first[1], 1);
    assert_int_equal(bl_pipe_partition_layers(4, c4, 2, (const double[]){3, 1}, first, NULL), 0);
    assert_int_equal(first[1], 3);
    /* Ties: 1 1 1 1 over 2 with speeds 1: only {2}{2} makes 2. With costs
     * 2 0 0 2 every split with 2 on each side is optimal: the smallest is
     * first[1] = 1. */
    assert_int_equal(bl_pipe_partition_layers(4, c4, 2, NULL, first, NULL), 0);
    assert_int_equal(first[1], 2);
    assert_int_equal(
        bl_pipe_partition_layers(4, (const double[]){2, 0, 0, 2}, 2, NULL, first, NULL), 0);
    assert_int_equal(first[1], 1);
}

static void test_partition_one_layer_each(void **state)
{
    (void)state;
    const double cost[5] = {3, 0, 7, 1, 2};
    int first[6];
    assert_int_equal(
        bl_pipe_partition_layers(5, cost, 5, (const double[]){1, 2, 3, 4, 5}, first, NULL), 0);
    for (int s = 0; s <= 5; s++) {
        assert_int_equal(first[s], s);
    }
    assert_true(bl_pipe_partition_cost(5, cost, 5, NULL, first) == 7.0);
}

static void test_partition_all_zero(void **state)
{
    (void)state;
    const double cost[7] = {0, 0, 0, 0, 0, 0, 0};
    int first[4];
    assert_int_equal(bl_pipe_partition_layers(7, cost, 3, NULL, first, NULL), 0);
    /* Every partition costs 0: the smallest first[] gives the first stages
     * a layer each. */
    assert_int_equal(first[0], 0);
    assert_int_equal(first[1], 1);
    assert_int_equal(first[2], 2);
    assert_int_equal(first[3], 7);
    assert_true(bl_pipe_partition_cost(7, cost, 3, NULL, first) == 0.0);
    assert_int_equal(bl_pipe_partition_layers(7, cost, 3, (const double[]){1, 5, 2}, first, NULL),
                     0);
    assert_int_equal(first[1], 1);
    assert_int_equal(first[2], 2);
}

static void test_partition_invalid(void **state)
{
    (void)state;
    const double ok[4] = {1, 2, 3, 4};
    const double speed[2] = {1, 2};
    int first[8];
    /* more stages than layers, no stages */
    assert_int_equal(bl_pipe_partition_layers(4, ok, 5, NULL, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(0, ok, 1, NULL, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(4, ok, 0, NULL, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(4, ok, -1, NULL, first, NULL), -1);
    /* missing arrays */
    assert_int_equal(bl_pipe_partition_layers(4, NULL, 2, NULL, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(4, ok, 2, NULL, NULL, NULL), -1);
    /* bad costs */
    assert_int_equal(
        bl_pipe_partition_layers(4, (const double[]){1, -1, 3, 4}, 2, NULL, first, NULL), -1);
    assert_int_equal(
        bl_pipe_partition_layers(2, (const double[]){-1e-300, 1}, 2, speed, first, NULL), -1);
    assert_int_equal(
        bl_pipe_partition_layers(4, (const double[]){1, NAN, 3, 4}, 2, NULL, first, NULL), -1);
    assert_int_equal(
        bl_pipe_partition_layers(4, (const double[]){1, 2, INFINITY, 4}, 2, NULL, first, NULL), -1);
    /* bad speeds */
    assert_int_equal(bl_pipe_partition_layers(4, ok, 2, (const double[]){1, 0}, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(4, ok, 2, (const double[]){-1, 1}, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(4, ok, 2, (const double[]){1, NAN}, first, NULL), -1);
    assert_int_equal(bl_pipe_partition_layers(4, ok, 2, (const double[]){INFINITY, 1}, first, NULL),
                     -1);
    /* the same inputs, fixed, are accepted */
    assert_int_equal(bl_pipe_partition_layers(4, ok, 2, speed, first, NULL), 0);
    check_partition(4, 2, first);
}

static void test_partition_large(void **state)
{
    (void)state;
    static double cost[BIG_LAYERS];
    double speed[BIG_STAGES];
    int first[BIG_STAGES + 1];
    uint64_t rs = 0xb16b00b5ULL;
    random_costs(&rs, 1, BIG_LAYERS, cost);
    for (int s = 0; s < BIG_STAGES; s++) {
        speed[s] = 0.5 + next_unit(&rs);
    }
    assert_int_equal(bl_pipe_partition_layers(BIG_LAYERS, cost, BIG_STAGES, speed, first, NULL), 0);
    check_partition(BIG_LAYERS, BIG_STAGES, first);
    double got = bl_pipe_partition_cost(BIG_LAYERS, cost, BIG_STAGES, speed, first);
    assert_true(isfinite(got) && got > 0.0);
    /* A lower bound no partition beats: the costliest layer on the fastest
     * stage. And an upper bound the optimum beats: the even split by count. */
    double fastest = 0.0, costliest = 0.0;
    for (int s = 0; s < BIG_STAGES; s++) {
        fastest = speed[s] > fastest ? speed[s] : fastest;
    }
    for (int i = 0; i < BIG_LAYERS; i++) {
        costliest = cost[i] > costliest ? cost[i] : costliest;
    }
    assert_true(got >= costliest / fastest);
    int even[BIG_STAGES + 1];
    for (int s = 0; s <= BIG_STAGES; s++) {
        even[s] = (int)((long)s * BIG_LAYERS / BIG_STAGES);
    }
    assert_true(got <= slowest(BIG_STAGES, cost, speed, even));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_examples),
        cmocka_unit_test(test_schedule_properties),
        cmocka_unit_test(test_schedule_no_deadlock),
        cmocka_unit_test(test_deadlock_detector_detects),
        cmocka_unit_test(test_peak_in_flight_examples),
        cmocka_unit_test(test_schedule_invalid),
        cmocka_unit_test(test_partition_matches_brute_force),
        cmocka_unit_test(test_partition_examples),
        cmocka_unit_test(test_partition_one_layer_each),
        cmocka_unit_test(test_partition_all_zero),
        cmocka_unit_test(test_partition_invalid),
        cmocka_unit_test(test_partition_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
