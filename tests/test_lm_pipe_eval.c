/* The language-model trainer's evaluation through the pipeline
 * (runtime/lm/lm_eval_pipe.c) under mpirun (label mpi). On P ranks it runs
 * every grid of S > 1 stages that divides P (P = 2: pp 2; P = 3: pp 3;
 * P = 4: the 2 × 2 hybrid and pp 4), each with stage-local memory off and
 * on, and checks that bl_lm_trainer_evaluate equals one process's
 * evaluation of the same parameters within 1e-5 relative:
 *   - in a step callback in the middle of a run, where a rank's copies of
 *     other stages' units are stale (or, stage-local, absent);
 *   - after the run, with every other stage's units overwritten with NaN on
 *     each rank that holds them (a rank that used them would give NaN: the
 *     whole model's forward on the poisoned copy does);
 *   - after a user layer's forward failed in the third chunk of a
 *     pipeline's share, which failed every rank (the failing stage naming
 *     the layer, the others the count of failed ranks) and left the
 *     pipeline clean for the next evaluation.
 * The evaluation takes all 125 held-out sequences (several chunks of the
 * batch of 6 per pipeline), 7 (uneven shares) and 1 (a pipeline without
 * sequences when there are two). The one-process reference is a one-stage
 * trainer on MPI_COMM_SELF given the job's current parameters, gathered
 * from each stage's own units. Every rank counts its failures
 * (mpi_check.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lm_impl.h"
#include "mpi_check.h"

enum { TRAIN = 4096, VAL = 1001, T = 8, BATCH = 6, STEPS = 4, MID_STEP = 1, FAIL_CHUNK = 2 };
static const long maxes[] = {0, 7, 1}; /* max_sequences: all 125, 7, 1 */
#define MAXES ((int)(sizeof maxes / sizeof maxes[0]))

static uint16_t train[TRAIN], val[VAL];

/* Deterministic tokens below vocab: a repeating pattern with noise. */
static void make_tokens(uint16_t *out, int count, int vocab, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1u;
    for (int i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        out[i] = (uint16_t)((i % 13 + (s >> 28 == 0 ? (s >> 20) % 7 : 0)) % (uint32_t)vocab);
    }
}

/* ---- A user layer after block 1 that passes the stream through, and fails
 * its forward when told: fail_after >= 0 counts the forwards that still
 * pass; -1 never fails. */

static int fail_after = -1;

static bl_status_t tap_shape(void *state, int in, int *out, size_t *count)
{
    (void)state;
    *out = in;
    *count = 0;
    return BL_OK;
}

static bl_status_t tap_forward(const bl_layer_call_t *c)
{
    if (fail_after == 0) {
        return BL_ERR_IO;
    }
    if (fail_after > 0) {
        fail_after--;
    }
    memcpy(c->y, c->x, (size_t)c->batch * (size_t)c->in_features * sizeof(float));
    return BL_OK;
}

static bl_status_t tap_backward(const bl_layer_call_t *c)
{
    if (c->dx != NULL) {
        memcpy(c->dx, c->dy, (size_t)c->batch * (size_t)c->in_features * sizeof(float));
    }
    return BL_OK;
}

static const bl_lm_layer_t tap = {
    .after = 1,
    .ops = {.name = "tap", .shape = tap_shape, .forward = tap_forward, .backward = tap_backward}};

/* L 2 (4 units), NH 2, C 16, V 64, T 8, batch 6 in 2 micro-batches. */
static bl_lm_config_t config(int stages, int stage_local, const int *map)
{
    bl_lm_config_t c = BL_LM_CONFIG_INIT;
    c.model = (bl_gpt2_config_t){.max_seq_len = T,
                                 .vocab_size = 64,
                                 .num_layers = 2,
                                 .num_heads = 2,
                                 .channels = 16,
                                 .padded_vocab_size = 64};
    c.seq_len = T;
    c.batch = BATCH;
    c.seed = 3;
    c.adamw.lr = 1e-2f;
    c.pipeline.stages = stages;
    c.pipeline.micro_batches = 2;
    c.pipeline.stage_local = stage_local;
    if (map != NULL) {
        c.plan.stage_first = map;
        c.plan.stage_count = stages;
    }
    c.layers = &tap;
    c.layer_count = 1;
    c.diagnostics.timeout_s = 60.0; /* a hang fails the test instead of stalling it */
    return c;
}

/* Writes the job's current parameters, whole, into out on every rank: the
 * ranks of pipeline 0 give their own units' ranges (wte from stage 0 only,
 * since the head's copy is the same), the rest zeros, summed over the job.
 * No rank reads another stage's units. */
static void gather_params(bl_lm_trainer_t *t, float *out)
{
    const bl_gpt2_t *g = t->model;
    memset(out, 0, g->param_count * sizeof *out);
    if (t->grid.layout.replica == 0) {
        bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
        const int n = bl_gpt2_unit_ranges(g, t->grid.first, t->grid.last, r);
        for (int i = 0; i < n; i++) {
            if (r[i].tensor != BL_GPT2_WTE || t->grid.first == 0) {
                memcpy(out + r[i].offset, g->params + r[i].offset, r[i].count * sizeof *out);
            }
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, out, (int)g->param_count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

/* One case's state: the job's trainer and the one-process reference. */
typedef struct job {
    bl_runtime_t *rt, *self;
    bl_lm_trainer_t *t, *ref;
    float *params; /* (param_count) scratch for the gathered parameters */
    const char *name;
    int mid_done;
} job_t;

/* Evaluates the job for every entry of maxes and checks each against the
 * reference given the job's current parameters. */
static void compare_all(job_t *j, const char *when)
{
    double got[MAXES], want[MAXES];
    for (int i = 0; i < MAXES; i++) {
        bl_status_t st = bl_lm_trainer_evaluate(j->t, val, VAL, maxes[i], &got[i]);
        check(st == BL_OK, "%s, %s, max %ld: %s", j->name, when, maxes[i], bl_last_error(j->rt));
    }
    gather_params(j->t, j->params);
    memcpy(j->ref->model->params, j->params, j->ref->model->param_count * sizeof(float));
    for (int i = 0; i < MAXES; i++) {
        bl_status_t st = bl_lm_trainer_evaluate(j->ref, val, VAL, maxes[i], &want[i]);
        check(st == BL_OK, "%s, %s, the reference, max %ld: %s", j->name, when, maxes[i],
              bl_last_error(j->self));
        check(isfinite(got[i]) && fabs(got[i] - want[i]) <= 1e-5 * fabs(want[i]),
              "%s, %s, max %ld: val loss %.9g, one process's %.9g", j->name, when, maxes[i], got[i],
              want[i]);
    }
}

static int on_step(const bl_step_info_t *info, void *arg)
{
    job_t *j = arg;
    if (info->step == MID_STEP) {
        compare_all(j, "in the middle of the run");
        j->mid_done = 1;
    }
    return 0;
}

/* Overwrites with NaN every parameter of units outside this stage (wte
 * stays when the stage computes with it), and returns how many. */
static size_t poison_other_stages(bl_lm_trainer_t *t)
{
    bl_gpt2_t *g = t->model;
    const int units = g->config.num_layers + 2;
    const int uses_wte = t->grid.first == 0 || t->grid.last == units;
    size_t poisoned = 0;
    for (int u = 0; u < units; u++) {
        if (u >= t->grid.first && u < t->grid.last) {
            continue;
        }
        bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
        const int n = bl_gpt2_unit_ranges(g, u, u + 1, r);
        for (int i = 0; i < n; i++) {
            if (r[i].tensor == BL_GPT2_WTE && uses_wte) {
                continue;
            }
            for (size_t k = 0; k < r[i].count; k++) {
                g->params[r[i].offset + k] = NAN;
            }
            poisoned += r[i].count;
        }
    }
    return poisoned;
}

/* The whole model's forward on this rank's copy over the first sequences of
 * the held-out tokens: its loss sum. */
static double whole_forward(bl_lm_trainer_t *t)
{
    long seq[BATCH];
    for (int i = 0; i < BATCH; i++) {
        seq[i] = i;
    }
    bl_lm_cut(val, T, seq, BATCH, t->tokens, t->targets);
    bl_error_t err = {0};
    double loss = 0.0;
    if (bl_gpt2_acts_set_batch(&t->acts, BATCH, &err) != BL_OK ||
        bl_gpt2_forward(t->model, &t->acts, t->tokens, t->targets, &loss, &err) != BL_OK) {
        check(0, "the whole forward: %s", err.msg);
    }
    return loss;
}

/* A user layer's forward fails in the third chunk of every pipeline's
 * share: every rank fails, and the next evaluation is right again. */
static void check_failure(job_t *j)
{
    const int owner = j->t->grid.first <= tap.after && tap.after < j->t->grid.last;
    const int D = j->t->grid.layout.replicas;
    fail_after = FAIL_CHUNK;
    double loss = 0.0;
    bl_status_t st = bl_lm_trainer_evaluate(j->t, val, VAL, 0, &loss);
    fail_after = -1;
    const char *said = bl_last_error(j->rt);
    char others[96];
    snprintf(others, sizeof others, "the evaluation's passes failed on %d other rank(s)", D);
    if (owner) {
        check(st == BL_ERR_IO &&
                  strstr(said, "user layer 0 (tap, after unit 1): forward()") != NULL,
              "%s: the failing stage names the layer (status %d): %s", j->name, (int)st, said);
    } else {
        check(st == BL_ERR_MISMATCH && strstr(said, others) != NULL,
              "%s: the others say '%s' (status %d): %s", j->name, others, (int)st, said);
    }
    compare_all(j, "after a failed evaluation");
}

static void run_case(bl_runtime_t *rt, bl_runtime_t *self, int stages, int stage_local)
{
    char name[64];
    snprintf(name, sizeof name, "%d stages of %d ranks%s", stages, rt->size,
             stage_local ? ", stage-local" : "");
    /* 3 stages: the tap's unit 1 alone in the middle; 4: a unit each. */
    static const int map3[] = {0, 1, 2}, map4[] = {0, 1, 2, 3};
    const int *map = stages == 3 ? map3 : stages == 4 ? map4 : NULL;
    bl_lm_config_t c = config(stages, stage_local, map);
    bl_lm_config_t one = config(1, 0, NULL);
    job_t j = {.rt = rt, .self = self, .name = name};
    bl_status_t st = bl_lm_trainer_create(rt, &c, train, TRAIN, &j.t);
    check(st == BL_OK, "%s: the job's trainer: %s", name, bl_last_error(rt));
    if (st == BL_OK) {
        st = bl_lm_trainer_create(self, &one, train, TRAIN, &j.ref);
        check(st == BL_OK, "%s: the reference trainer: %s", name, bl_last_error(self));
    }
    if (st == BL_OK) {
        j.params = malloc(j.t->model->param_count * sizeof *j.params);
        check(j.params != NULL && j.t->stage_local == stage_local, "%s: set-up", name);
    }
    if (st == BL_OK && j.params != NULL) {
        st = bl_lm_trainer_run(j.t, STEPS, on_step, &j);
        check(st == BL_OK && j.mid_done, "%s: the run: %s", name, bl_last_error(rt));
        if (!stage_local) {
            /* Every rank holds the whole model after the run: make every
             * other stage's units unusable, and show that they would be. */
            check(poison_other_stages(j.t) > 0, "%s: other stages' units to poison", name);
        }
        compare_all(&j, stage_local ? "after the run" : "after the run, other stages' units NaN");
        if (!stage_local) {
            check(isnan(whole_forward(j.t)), "%s: the whole forward on the poisoned copy is NaN",
                  name);
        }
        check_failure(&j);
    }
    free(j.params);
    bl_lm_trainer_destroy(j.ref);
    bl_lm_trainer_destroy(j.t);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.blas_threads = 1;
    bl_runtime_t *rt = NULL, *self = NULL;
    if (bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) != BL_OK ||
        bl_runtime_create(MPI_COMM_SELF, &cfg, &self) != BL_OK) {
        check(0, "runtimes");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    make_tokens(train, TRAIN, 64, 1);
    make_tokens(val, VAL, 64, 2);
    int cases = 0;
    for (int stages = 2; stages <= 4; stages++) {
        if (rt->size % stages != 0) {
            continue;
        }
        for (int stage_local = 0; stage_local <= 1; stage_local++) {
            run_case(rt, self, stages, stage_local);
            cases++;
        }
    }
    check(cases > 0, "%d ranks: no grid of 2 to 4 stages divides them", rt->size);
    bl_runtime_destroy(self);
    bl_runtime_destroy(rt);
    return check_finish("test_lm_pipe_eval");
}
