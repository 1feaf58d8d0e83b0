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
#include "partition_test.h"

#define MAX_STAGES 5
#define MAX_MICRO  9
#define MAX_OPS    (2 * MAX_MICRO)

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

/* Runs every stage's exchanges together as rendezvous groups (NCCL's
 * transfers): a stage is in one exchange at a time and leaves it once its
 * send and its receive are done; a send from a to b completes together
 * with b's receive from a, when both are in their current exchange, the
 * n-th send on the link meeting the n-th receive (no tags: NCCL matches
 * in order). A meeting of two different micro-batches is a failure too.
 * Returns 1 when every stage gets through all its exchanges, 0 on a
 * deadlock or a mismatch. */
static int rendezvous_completes(int stages, int n, bl_pipe_exchange_t x[][MAX_OPS + 1])
{
    int at[MAX_STAGES] = {0};
    int sent[MAX_STAGES] = {0}, received[MAX_STAGES] = {0}; /* done in the current exchange */
    for (;;) {
        int progress = 0, finished = 1;
        for (int a = 0; a < stages; a++) {
            if (at[a] == n) {
                continue;
            }
            finished = 0;
            const bl_pipe_exchange_t *mine = &x[a][at[a]];
            int b = mine->send_to;
            if (b >= 0 && !sent[a] && at[b] < n && x[b][at[b]].recv_from == a && !received[b]) {
                if (x[b][at[b]].recv_micro != mine->send_micro) {
                    return 0;
                }
                sent[a] = received[b] = 1;
                progress = 1;
            }
            if ((mine->send_to < 0 || sent[a]) && (mine->recv_from < 0 || received[a])) {
                at[a]++;
                sent[a] = received[a] = 0;
                progress = 1;
            }
        }
        if (finished) {
            return 1;
        }
        if (!progress) {
            return 0;
        }
    }
}

static void test_exchanges_rendezvous(void **state)
{
    (void)state;
    const int schedules[2] = {BL_PIPE_GPIPE, BL_PIPE_1F1B};
    bl_pipe_op_t ops[MAX_STAGES][MAX_OPS];
    bl_pipe_exchange_t x[MAX_STAGES][MAX_OPS + 1];
    for (int k = 0; k < 2; k++) {
        for (int stages = 1; stages <= MAX_STAGES; stages++) {
            for (int m = 1; m <= MAX_MICRO; m++) {
                for (int s = 0; s < stages; s++) {
                    assert_int_equal(bl_pipe_schedule(schedules[k], stages, s, m, ops[s]), 2 * m);
                    assert_int_equal(bl_pipe_exchanges(stages, s, ops[s], 2 * m, x[s]), 2 * m + 1);
                    /* Every op's input arrives in the exchange before it
                     * and its output leaves in the one after. */
                    for (int i = 0; i < 2 * m; i++) {
                        int fwd = ops[s][i].pass == BL_PIPE_FORWARD;
                        int from = fwd ? s - 1 : s + 1, to = fwd ? s + 1 : s - 1;
                        int has_in = from >= 0 && from < stages, has_out = to >= 0 && to < stages;
                        assert_int_equal(x[s][i].recv_from, has_in ? from : -1);
                        assert_int_equal(x[s][i + 1].send_to, has_out ? to : -1);
                        if (has_in) {
                            assert_int_equal(x[s][i].recv_micro, ops[s][i].micro);
                        }
                        if (has_out) {
                            assert_int_equal(x[s][i + 1].send_micro, ops[s][i].micro);
                        }
                    }
                    assert_int_equal(x[s][0].send_to, -1);
                    assert_int_equal(x[s][2 * m].recv_from, -1);
                }
                if (!rendezvous_completes(stages, 2 * m + 1, x)) {
                    fail_msg("%s S=%d M=%d: rendezvous exchanges deadlock",
                             schedule_name(schedules[k]), stages, m);
                }
            }
        }
    }
    bl_pipe_op_t one = {BL_PIPE_FORWARD, 0};
    assert_int_equal(bl_pipe_exchanges(2, 0, NULL, 1, x[0]), -1);
    assert_int_equal(bl_pipe_exchanges(2, 0, &one, 1, NULL), -1);
    assert_int_equal(bl_pipe_exchanges(2, 2, &one, 1, x[0]), -1);
    assert_int_equal(bl_pipe_exchanges(0, 0, &one, 1, x[0]), -1);
    assert_int_equal(bl_pipe_exchanges(2, 0, &one, -1, x[0]), -1);
}

/* The rendezvous simulator can fail: two stages that each send before
 * they receive, in separate exchanges, wait for each other for ever; and
 * a receive that meets another micro-batch than the one it wants is
 * caught. */
static void test_rendezvous_detector_detects(void **state)
{
    (void)state;
    bl_pipe_exchange_t x[MAX_STAGES][MAX_OPS + 1] = {
        {{1, 1, -1, -1}, {-1, -1, 1, 0}}, /* stage 0 sends F(1) on, then wants B(0) */
        {{0, 0, -1, -1}, {-1, -1, 0, 1}}, /* stage 1 sends B(0) back, then wants F(1) */
    };
    assert_int_equal(rendezvous_completes(2, 2, x), 0);
    bl_pipe_exchange_t together[MAX_STAGES][MAX_OPS + 1] = {
        {{1, 1, 1, 0}}, /* both in one exchange: they meet */
        {{0, 0, 0, 1}},
    };
    assert_int_equal(rendezvous_completes(2, 1, together), 1);
    bl_pipe_exchange_t crossed[MAX_STAGES][MAX_OPS + 1] = {
        {{1, 2, -1, -1}}, /* F(2) sent where F(1) is awaited */
        {{-1, -1, 0, 1}},
    };
    assert_int_equal(rendezvous_completes(2, 1, crossed), 0);
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

/* A stage's time as the header defines it, written out again here: the
 * costs summed in order, divided by the stage's speed, plus the cut before
 * it (not for the first stage) and the cut after it (not for the last). */
static double stage_time(const bl_pipe_problem_t *p, int s, int from, int to)
{
    double sum = 0.0;
    for (int k = from; k < to; k++) {
        sum += p->cost[k];
    }
    double t = sum / (p->speed != NULL ? p->speed[s] : 1.0);
    if (p->boundary != NULL && s > 0) {
        t += p->boundary[from];
    }
    if (p->boundary != NULL && s < p->stages - 1) {
        t += p->boundary[to];
    }
    return t;
}

static double slowest(const bl_pipe_problem_t *p, const int *first)
{
    double worst = 0.0;
    for (int s = 0; s < p->stages; s++) {
        double t = stage_time(p, s, first[s], first[s + 1]);
        worst = t > worst ? t : worst;
    }
    return worst;
}

/* Brute force: every partition into non-empty contiguous stages, visited
 * in lexicographic order of first[]. */
typedef struct brute {
    const bl_pipe_problem_t *p;
    int first[MAX_LAYERS + 1];
    double limit; /* pass 2: the first partition within it is the answer */
    double best;  /* pass 1: the optimum */
    int found;    /* pass 2 */
    int answer[MAX_LAYERS + 1];
} brute_t;

static void brute_visit(brute_t *b, int s, int pass)
{
    const int layers = b->p->layers, stages = b->p->stages;
    if (pass == 2 && b->found) {
        return;
    }
    if (s == stages - 1) {
        b->first[stages] = layers;
        double t = slowest(b->p, b->first);
        if (pass == 1) {
            b->best = t < b->best ? t : b->best;
        } else if (t <= b->limit) {
            b->found = 1;
            memcpy(b->answer, b->first, sizeof b->answer);
        }
        return;
    }
    /* Stage s owns [first[s], j); the stages after it need a layer each. */
    for (int j = b->first[s] + 1; j <= layers - (stages - s - 1); j++) {
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

static void check_first(const int *got, const int *want, int stages, const char *what)
{
    for (int s = 0; s <= stages; s++) {
        if (got[s] != want[s]) {
            fail_msg("%s: first[%d] = %d, expected %d", what, s, got[s], want[s]);
        }
    }
}

/* Costs of one of several shapes: uniform, heavy-tailed, small integers
 * (many ties), or with a third of the layers free. */
static void random_costs(uint64_t *rs, int shape, int layers, double *cost)
{
    for (int i = 0; i < layers; i++) {
        double u = uniform(rs);
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

/* Speeds: none (NULL), continuous, or a few ratios (ties). */
static const double *random_speeds(uint64_t *rs, int mode, int stages, double *speed)
{
    if (mode == 0) {
        return NULL;
    }
    for (int s = 0; s < stages; s++) {
        speed[s] = mode == 1 ? 0.25 + 2.0 * uniform(rs) : (double)(1 + next_random(rs) % 3);
    }
    return speed;
}

/* Boundary costs: none (NULL), uniform, small integers (ties with integer
 * costs), or a few heavy cuts among free ones. boundary[0] is NaN: the
 * header says it is never read, and a read would show in every time. */
static const double *random_boundary(uint64_t *rs, int mode, int layers, double *boundary)
{
    if (mode == 0) {
        return NULL;
    }
    boundary[0] = NAN;
    for (int i = 1; i < layers; i++) {
        double u = uniform(rs);
        switch (mode) {
        case 1:
            boundary[i] = u;
            break;
        case 2:
            boundary[i] = (double)(next_random(rs) % 3);
            break;
        default:
            boundary[i] = next_random(rs) % 4 == 0 ? 5.0 + 20.0 * u : 0.0;
            break;
        }
    }
    return boundary;
}

/* The solver against brute force: the optimum (relative 1e-12), the
 * lexicographically smallest optimal first[], nothing written past
 * first[S]; without boundary costs the old entry points agree. */
static void check_against_brute(const bl_pipe_problem_t *p, const char *what)
{
    const int layers = p->layers, stages = p->stages;
    int first[MAX_LAYERS + 2];
    first[stages + 1] = -7; /* a guard: written past first[stages]? */
    if (bl_pipe_partition_solve(p, first, NULL) != 0) {
        fail_msg("%s: L=%d S=%d refused", what, layers, stages);
    }
    assert_int_equal(first[stages + 1], -7);
    check_partition(layers, stages, first);
    brute_t b = {.p = p};
    brute_force(&b);
    double got = bl_pipe_partition_time(p, first);
    if (!(fabs(got - b.best) <= 1e-12 * b.best)) {
        fail_msg("%s: L=%d S=%d: time %.17g, brute-force optimum %.17g", what, layers, stages, got,
                 b.best);
    }
    /* The time is the max of the documented per-stage times. */
    if (got != slowest(p, first)) {
        fail_msg("%s: L=%d S=%d: time %.17g, stage by stage %.17g", what, layers, stages, got,
                 slowest(p, first));
    }
    for (int s = 0; s <= stages; s++) {
        if (first[s] != b.answer[s]) {
            fail_msg("%s: L=%d S=%d: first[%d] = %d, the smallest optimal first[] has %d", what,
                     layers, stages, s, first[s], b.answer[s]);
        }
    }
    if (p->boundary == NULL) {
        int old[MAX_LAYERS + 1];
        assert_int_equal(bl_pipe_partition_layers(layers, p->cost, stages, p->speed, old, NULL), 0);
        check_first(old, first, stages, what);
        assert_true(bl_pipe_partition_cost(layers, p->cost, stages, p->speed, old) == got);
    }
}

/* Every L in 1..10 and S in 1..min(4, L), over all 4 × 3 × 4 mixes of cost
 * shape, speed mode and boundary mode, twice each with fresh draws. */
static void test_partition_matches_brute_force(void **state)
{
    (void)state;
    uint64_t rs = 0x5eed1234abcdULL;
    double cost[MAX_LAYERS], speed[4], boundary[MAX_LAYERS];
    char what[64];
    int cases = 0;
    for (int layers = 1; layers <= MAX_LAYERS; layers++) {
        for (int stages = 1; stages <= 4 && stages <= layers; stages++) {
            for (int round = 0; round < 96; round++) {
                int shape = round % 4, speeds = (round / 4) % 3, cuts = (round / 12) % 4;
                random_costs(&rs, shape, layers, cost);
                bl_pipe_problem_t p = {
                    .layers = layers,
                    .cost = cost,
                    .stages = stages,
                    .speed = random_speeds(&rs, speeds, stages, speed),
                    .boundary = random_boundary(&rs, cuts, layers, boundary),
                };
                snprintf(what, sizeof what, "round %d (cost %d, speed %d, boundary %d)", round,
                         shape, speeds, cuts);
                check_against_brute(&p, what);
                cases++;
            }
        }
    }
    assert_true(cases == 96 * (1 + 2 + 3 + 4 * 7));
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

/* The tie slack: 0.1 0.6 0.1 0.3 0.4 over 2 splits as {0.1 0.6} {0.1 0.3
 * 0.4} or {0.1 0.6 0.1} {0.3 0.4}, both 0.8 in exact arithmetic; summed in
 * doubles the first makes 0.8 and the second 0.7999999999999999. Within
 * the 1e-12 slack they tie, and the smaller first[] wins. */
static void test_partition_rounding_ties(void **state)
{
    (void)state;
    const double cost[5] = {0.1, 0.6, 0.1, 0.3, 0.4};
    const bl_pipe_problem_t p = {.layers = 5, .cost = cost, .stages = 2};
    int first[3];
    assert_true(bl_pipe_partition_time(&p, (const int[]){0, 3, 5}) <
                bl_pipe_partition_time(&p, (const int[]){0, 2, 5}));
    assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
    check_first(first, (const int[]){0, 2, 5}, 2, "rounding tie");
}

/* The stage-time formula on numbers exact in binary: costs 1 2 3 4,
 * speeds 1 and 2, cuts before layers 1, 2, 3 cost 0.5, 0.25, 0.125. */
static void test_stage_time_formula(void **state)
{
    (void)state;
    const double cost[4] = {1, 2, 3, 4};
    const bl_pipe_problem_t p = {.layers = 4,
                                 .cost = cost,
                                 .stages = 2,
                                 .speed = (const double[]){1, 2},
                                 .boundary = (const double[]){NAN, 0.5, 0.25, 0.125}};
    /* Stage 0 owns {1 2}: 3 / 1, plus the cut after it. */
    assert_true(bl_pipe_stage_time(&p, 0, 0, 2) == 3.25);
    /* Stage 1 owns {3 4}: 7 / 2, plus the cut before it. */
    assert_true(bl_pipe_stage_time(&p, 1, 2, 4) == 3.75);
    assert_true(bl_pipe_partition_time(&p, (const int[]){0, 2, 4}) == 3.75);
    /* Cuts at 0 and L have nothing on the other side: no cost. */
    assert_true(bl_pipe_stage_time(&p, 0, 0, 4) == 10.0);
    assert_true(bl_pipe_stage_time(&p, 1, 0, 4) == 5.0);
    /* Empty stages take 0 and are allowed when measuring. */
    assert_true(bl_pipe_stage_time(&p, 1, 3, 3) == 0.0);
    assert_true(bl_pipe_partition_time(&p, (const int[]){0, 0, 4}) == 5.0);
    /* Without boundary costs the old measure, unchanged. */
    const bl_pipe_problem_t q = {.layers = 4, .cost = cost, .stages = 2, .speed = p.speed};
    assert_true(bl_pipe_partition_time(&q, (const int[]){0, 2, 4}) == 3.5);
    assert_true(bl_pipe_partition_cost(4, cost, 2, p.speed, (const int[]){0, 2, 4}) == 3.5);
    /* Invalid: NaN. */
    assert_true(isnan(bl_pipe_stage_time(NULL, 0, 0, 1)));
    assert_true(isnan(bl_pipe_stage_time(&p, 2, 0, 1)));
    assert_true(isnan(bl_pipe_stage_time(&p, -1, 0, 1)));
    assert_true(isnan(bl_pipe_stage_time(&p, 0, 2, 1)));
    assert_true(isnan(bl_pipe_stage_time(&p, 0, -1, 1)));
    assert_true(isnan(bl_pipe_stage_time(&p, 0, 0, 5)));
    assert_true(isnan(bl_pipe_partition_time(NULL, (const int[]){0, 2, 4})));
    assert_true(isnan(bl_pipe_partition_time(&p, NULL)));
    assert_true(isnan(bl_pipe_partition_time(&p, (const int[]){1, 2, 4})));
    assert_true(isnan(bl_pipe_partition_time(&p, (const int[]){0, 2, 3})));
    assert_true(isnan(bl_pipe_partition_time(&p, (const int[]){0, 5, 4})));
}

/* 1 2 3 4 5 6 over 3 makes 9 as {1 2 3} {4 5} {6} without boundary costs
 * (test_partition_examples). With the cut before layer 3 costing 2 and the
 * others 0.5, that map makes 3 + 4 + 2 + 0.5 = 11.5 in its middle stage;
 * {1 2 3 4} {5} {6} avoids the costly cut and makes 10 + 0.5 = 10.5 (its
 * other stages: 5 + 0.5 + 0.5 = 6 and 6 + 0.5 = 6.5), the optimum. */
static void test_boundary_changes_optimum(void **state)
{
    (void)state;
    const double cost[6] = {1, 2, 3, 4, 5, 6};
    const double boundary[6] = {0, 0.5, 0.5, 2, 0.5, 0.5};
    int first[4];
    bl_pipe_problem_t p = {.layers = 6, .cost = cost, .stages = 3, .boundary = NULL};
    assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
    check_first(first, (const int[]){0, 3, 5, 6}, 3, "no boundary");
    assert_true(bl_pipe_partition_time(&p, first) == 9.0);
    p.boundary = boundary;
    assert_true(bl_pipe_partition_time(&p, first) == 11.5);
    assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
    check_first(first, (const int[]){0, 4, 5, 6}, 3, "boundary");
    assert_true(bl_pipe_partition_time(&p, first) == 10.5);
}

/* Eight unit layers over 3 stages balance as 2 3 3 (time 3; the smallest
 * first[] of the three orders). When every
 * cut costs 1e6 except those before layers 1 and 7, both cuts go to the
 * free places however lopsided the stages (1 6 1, time 6). With only the
 * cut before layer 4 free, one costly cut is unavoidable: it goes where it
 * balances the two stages that pay it, {1 1} {1 1} | {1 1 1 1}, time
 * 1e6 + 2 (the smallest of the two mirror-image optima). */
static void test_boundary_huge_avoids_costly_cuts(void **state)
{
    (void)state;
    const double cost[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    double boundary[8];
    int first[4];
    bl_pipe_problem_t p = {.layers = 8, .cost = cost, .stages = 3, .boundary = NULL};
    assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
    check_first(first, (const int[]){0, 2, 5, 8}, 3, "no boundary");
    assert_true(bl_pipe_partition_time(&p, first) == 3.0);

    for (int i = 0; i < 8; i++) {
        boundary[i] = i == 1 || i == 7 ? 0.0 : 1e6;
    }
    p.boundary = boundary;
    assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
    check_first(first, (const int[]){0, 1, 7, 8}, 3, "free cuts at 1 and 7");
    assert_true(bl_pipe_partition_time(&p, first) == 6.0);

    for (int i = 0; i < 8; i++) {
        boundary[i] = i == 4 ? 0.0 : 1e6;
    }
    assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
    check_first(first, (const int[]){0, 2, 4, 8}, 3, "free cut at 4");
    assert_true(bl_pipe_partition_time(&p, first) == 1e6 + 2.0);
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

/* A fixed valid problem with one field replaced. */
typedef struct solve_case {
    bl_pipe_problem_t p;
    int null_problem, null_first;
} solve_case_t;

static int solve_case(solve_case_t c)
{
    int first[8];
    memset(first, 0x5a, sizeof first);
    int rc =
        bl_pipe_partition_solve(c.null_problem ? NULL : &c.p, c.null_first ? NULL : first, NULL);
    if (rc != 0) {
        /* -1 leaves first untouched. */
        for (int s = 0; s < 8; s++) {
            assert_int_equal(first[s], 0x5a5a5a5a);
        }
    }
    return rc;
}

static void *failing_alloc(size_t nbytes, void *ctx)
{
    (void)nbytes;
    ++*(int *)ctx;
    return NULL;
}

static void failing_release(void *ptr, void *ctx)
{
    (void)ptr;
    (void)ctx;
    fail_msg("release called for a block never given");
}

typedef struct counting {
    int allocs, releases;
    size_t nbytes;
} counting_t;

static void *counting_alloc(size_t nbytes, void *ctx)
{
    counting_t *c = ctx;
    c->allocs++;
    c->nbytes += nbytes;
    return malloc(nbytes);
}

static void counting_release(void *ptr, void *ctx)
{
    ((counting_t *)ctx)->releases++;
    free(ptr);
}

/* Each invalid input of bl_pipe_partition_solve alone gives -1. */
static void test_solve_invalid(void **state)
{
    (void)state;
    const double cost[4] = {1, 2, 3, 4};
    const double speed[2] = {1, 2};
    const double boundary[4] = {NAN, 0.5, 0.25, 0.125}; /* boundary[0]: never read */
    const solve_case_t ok = {
        .p = {.layers = 4, .cost = cost, .stages = 2, .speed = speed, .boundary = boundary}};
    solve_case_t c;
    assert_int_equal(solve_case(ok), 0);
    c = ok, c.null_problem = 1;
    assert_int_equal(solve_case(c), -1);
    c = ok, c.null_first = 1;
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.cost = NULL;
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.stages = 0;
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.stages = -1;
    assert_int_equal(solve_case(c), -1);
    /* More stages than layers: every stage needs a layer. */
    c = ok, c.p.layers = 1;
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.layers = 0, c.p.stages = 1;
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.cost = (const double[]){1, -0.5, 3, 4};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.cost = (const double[]){1, 2, NAN, 4};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.cost = (const double[]){1, 2, 3, INFINITY};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.speed = (const double[]){1, 0};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.speed = (const double[]){-2, 1};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.speed = (const double[]){NAN, 1};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.speed = (const double[]){1, INFINITY};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.boundary = (const double[]){0, 0.5, -0.25, 0.125};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.boundary = (const double[]){0, 0.5, 0.25, NAN};
    assert_int_equal(solve_case(c), -1);
    c = ok, c.p.boundary = (const double[]){0, INFINITY, 0.25, 0.125};
    assert_int_equal(solve_case(c), -1);
    /* boundary[0] is not read, whatever it holds. */
    c = ok, c.p.boundary = (const double[]){-INFINITY, 0.5, 0.25, 0.125};
    assert_int_equal(solve_case(c), 0);
    /* Out of memory: -1, first untouched, nothing released. */
    int tries = 0;
    const bl_part_allocator_t none = {failing_alloc, failing_release, &tries};
    int first[3] = {-3, -3, -3};
    assert_int_equal(bl_pipe_partition_solve(&ok.p, first, &none), -1);
    assert_int_equal(tries, 1);
    assert_int_equal(first[0], -3);
    assert_int_equal(first[1], -3);
    assert_int_equal(first[2], -3);
}

/* One (S × (L + 1)) table through the hooks, released before return. */
static void test_solve_memory(void **state)
{
    (void)state;
    static double cost[BIG_LAYERS], boundary[BIG_LAYERS];
    uint64_t rs = 0xa110cULL;
    random_costs(&rs, 0, BIG_LAYERS, cost);
    random_boundary(&rs, 1, BIG_LAYERS, boundary);
    const bl_pipe_problem_t p = {
        .layers = BIG_LAYERS, .cost = cost, .stages = 16, .boundary = boundary};
    counting_t c = {0};
    const bl_part_allocator_t a = {counting_alloc, counting_release, &c};
    int first[17];
    assert_int_equal(bl_pipe_partition_solve(&p, first, &a), 0);
    assert_int_equal(c.allocs, 1);
    assert_int_equal(c.releases, 1);
    assert_true(c.nbytes == 16 * (BIG_LAYERS + 1) * sizeof(double));
    check_partition(BIG_LAYERS, 16, first);
}

/* A plain reference for sizes brute force cannot reach: the forward
 * recurrence over prefixes, f[s][j] = min over i of max(f[s−1][i], time of
 * stage s−1 on [i, j)), with each stage's sum taken right to left (other
 * rounding than the library's: compare within 1e-12). No early exit. */
static double reference_optimum(const bl_pipe_problem_t *p)
{
    const int L = p->layers, S = p->stages;
    double *f = malloc((size_t)(S + 1) * (size_t)(L + 1) * sizeof *f);
    assert_non_null(f);
    for (int k = 0; k < (S + 1) * (L + 1); k++) {
        f[k] = INFINITY;
    }
    f[0] = 0.0; /* no stages over no layers */
    for (int s = 1; s <= S; s++) {
        const int stage = s - 1;
        const double speed = p->speed != NULL ? p->speed[stage] : 1.0;
        for (int j = s; j <= L - (S - s); j++) {
            double sum = 0.0, least = INFINITY;
            for (int i = j - 1; i >= stage; i--) {
                sum += p->cost[i];
                double t = sum / speed;
                if (p->boundary != NULL && stage > 0) {
                    t += p->boundary[i];
                }
                if (p->boundary != NULL && stage < S - 1) {
                    t += p->boundary[j];
                }
                double prev = f[(s - 1) * (L + 1) + i];
                double worst = t > prev ? t : prev;
                least = worst < least ? worst : least;
            }
            f[s * (L + 1) + j] = least;
        }
    }
    double v = f[S * (L + 1) + L];
    free(f);
    return v;
}

static void test_partition_large(void **state)
{
    (void)state;
    static double cost[BIG_LAYERS], boundary[BIG_LAYERS];
    double speed[BIG_STAGES];
    int first[BIG_STAGES + 1], moved[BIG_STAGES + 1];
    uint64_t rs = 0xb16b00b5ULL;
    const int stage_counts[4] = {2, 8, 31, BIG_STAGES};
    for (int round = 0; round < 8; round++) {
        const int S = stage_counts[round % 4];
        random_costs(&rs, round % 2 == 0 ? 1 : 3, BIG_LAYERS, cost);
        for (int s = 0; s < S; s++) {
            speed[s] = 0.5 + uniform(&rs);
        }
        bl_pipe_problem_t p = {
            .layers = BIG_LAYERS,
            .cost = cost,
            .stages = S,
            .speed = speed,
            .boundary = random_boundary(&rs, round < 4 ? 0 : 1 + round % 3, BIG_LAYERS, boundary)};
        assert_int_equal(bl_pipe_partition_solve(&p, first, NULL), 0);
        check_partition(BIG_LAYERS, S, first);
        double got = bl_pipe_partition_time(&p, first);
        assert_true(isfinite(got) && got > 0.0);
        assert_true(got == slowest(&p, first));
        double want = reference_optimum(&p);
        if (!(fabs(got - want) <= 1e-12 * want)) {
            fail_msg("L=%d S=%d round %d: time %.17g, reference optimum %.17g", BIG_LAYERS, S,
                     round, got, want);
        }
        /* No single cut moved by one layer does better. */
        for (int s = 1; s < S; s++) {
            for (int d = -1; d <= 1; d += 2) {
                memcpy(moved, first, sizeof moved);
                moved[s] += d;
                if (moved[s] <= moved[s - 1] || moved[s] >= moved[s + 1]) {
                    continue;
                }
                assert_true(slowest(&p, moved) >= got);
            }
        }
        /* And no better than the costliest layer alone on the fastest
         * stage; no worse than the even split by count. */
        double fastest = 0.0, costliest = 0.0;
        for (int s = 0; s < S; s++) {
            fastest = speed[s] > fastest ? speed[s] : fastest;
        }
        for (int i = 0; i < BIG_LAYERS; i++) {
            costliest = cost[i] > costliest ? cost[i] : costliest;
        }
        assert_true(got >= costliest / fastest);
        int even[BIG_STAGES + 1];
        for (int s = 0; s <= S; s++) {
            even[s] = (int)((long)s * BIG_LAYERS / S);
        }
        assert_true(got <= slowest(&p, even));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_examples),
        cmocka_unit_test(test_schedule_properties),
        cmocka_unit_test(test_schedule_no_deadlock),
        cmocka_unit_test(test_deadlock_detector_detects),
        cmocka_unit_test(test_exchanges_rendezvous),
        cmocka_unit_test(test_rendezvous_detector_detects),
        cmocka_unit_test(test_peak_in_flight_examples),
        cmocka_unit_test(test_schedule_invalid),
        cmocka_unit_test(test_partition_matches_brute_force),
        cmocka_unit_test(test_partition_examples),
        cmocka_unit_test(test_partition_rounding_ties),
        cmocka_unit_test(test_stage_time_formula),
        cmocka_unit_test(test_boundary_changes_optimum),
        cmocka_unit_test(test_boundary_huge_avoids_costly_cuts),
        cmocka_unit_test(test_partition_one_layer_each),
        cmocka_unit_test(test_partition_all_zero),
        cmocka_unit_test(test_partition_invalid),
        cmocka_unit_test(test_solve_invalid),
        cmocka_unit_test(test_solve_memory),
        cmocka_unit_test(test_partition_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
