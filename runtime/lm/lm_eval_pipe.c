/* Evaluation through the pipeline (lm_impl.h: bl_lm_evaluate_pipelined).
 * With pipelines a stage's rank holds current values of its own units only:
 * in the middle of a run another stage's units are stale on it, and under
 * stage-local memory they are not there at all. So the evaluation's forward
 * runs through the stages as a step's forward does: each pipeline takes its
 * contiguous share of the sequences in chunks of up to the activations'
 * capacity; stage 0 embeds a chunk's tokens, every stage runs its own units
 * and sends the residual stream on, and the last stage's head adds the
 * chunk's loss sum. No rank reads another stage's units. */
#include <stdio.h>

#include "device.h"
#include "lm_impl.h"
#include "wait.h"

/* The tag of the evaluation's messages on the pipeline's communicator. A
 * step's messages carry their micro-batch's index as their tag, at most
 * 32766 (bl_lm_grid_init allows 32767 micro-batches), so the two never
 * match; a unit move's (lm_pipe.c) is 32766 too, but every step's and
 * every move's messages are received before evaluation starts. MPI
 * delivers the messages between two ranks with one tag in the order they
 * were sent. */
#define EVAL_TAG 32767

/* The most sequence numbers one bl_lm_cut takes at a time. */
#define CUT_PIECE 64

/* This rank's place in its pipeline, for the messages. */
typedef struct eval_pipe {
    bl_lm_trainer_t *t;
    int stage, stages;
    int pipe_base; /* the job rank of this pipeline's stage 0 */
} eval_pipe_t;

/* Sends `count` elements of `type` from `send` to pipeline stage `peer`, or,
 * with send NULL, receives them into `recv` from it, under the runtime's
 * bound (BL_ERR_TIMEOUT naming the peer's rank). `what` names the message in
 * errors, with the chunk's number. */
static bl_status_t transfer(const eval_pipe_t *e, const void *send, void *recv, int count,
                            MPI_Datatype type, int peer, long chunk, const char *what)
{
    char op[160];
    snprintf(op, sizeof op, "stage %d %s %s of evaluation chunk %ld %s stage %d", e->stage,
             send != NULL ? "sending" : "receiving", what, chunk, send != NULL ? "to" : "from",
             peer);
    MPI_Request req = MPI_REQUEST_NULL;
    MPI_Comm pipe = e->t->grid.layout.pipe;
    int rc = send != NULL ? MPI_Isend(send, count, type, peer, EVAL_TAG, pipe, &req)
                          : MPI_Irecv(recv, count, type, peer, EVAL_TAG, pipe, &req);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(e->t->rt, rc, op);
    }
    return bl_wait_bounded(e->t->rt, &req, op, e->pipe_base + peer);
}

/* Cuts the k sequences [first, first + k) of stream (k <= t->capacity) into
 * the trainer's host buffers and puts them into its activations, which then
 * run on a batch of k. */
static bl_status_t put_chunk(bl_lm_trainer_t *t, const uint16_t *stream, long first, int k)
{
    const int T = t->cfg.seq_len;
    long seq[CUT_PIECE];
    for (int at = 0; at < k; at += CUT_PIECE) {
        const int m = k - at < CUT_PIECE ? k - at : CUT_PIECE;
        for (int i = 0; i < m; i++) {
            seq[i] = first + at + i;
        }
        bl_lm_cut(stream, T, seq, m, t->tokens + (size_t)at * (size_t)T,
                  t->targets + (size_t)at * (size_t)T);
    }
    bl_error_t err = {0};
    bl_status_t st = bl_gpt2_acts_set_batch(&t->acts, k, &err);
    if (st == BL_OK) {
        st = bl_gpt2_put_batch(t->model, &t->acts, t->tokens, t->targets, k, &err);
    }
    return st == BL_OK ? BL_OK : bl_fail_from(t->rt, &err);
}

/* Runs the forward of this stage's units over the chunk in the activations
 * (a later stage has received its input stream), and on the last stage adds
 * the head's loss sum to *loss_sum. */
static bl_status_t run_units(const eval_pipe_t *e, double *loss_sum)
{
    bl_lm_trainer_t *t = e->t;
    /* The head computes the loss (and dlogits, unused) only with targets. */
    t->acts.has_targets = e->stage == e->stages - 1;
    bl_error_t err = {0};
    double loss = 0.0;
    for (int u = t->grid.first; u < t->grid.last; u++) {
        if (bl_gpt2_unit_forward(t->model, &t->acts, u, &loss, &err) != BL_OK) {
            return bl_fail_from(t->rt, &err);
        }
    }
    if (t->model->memory != NULL) {
        /* A device runs behind the host: its failures show when waited for. */
        bl_status_t st = bl_device_check(t->rt, t->device, "the evaluation's forward pass");
        if (st != BL_OK) {
            return st;
        }
    }
    *loss_sum += loss;
    return BL_OK;
}

/* A chunk crosses each stage boundary as a verdict (1: its stream follows;
 * 0: this stage or one before it failed) and then, after a 1, the stream
 * (k, T, C). So after a failure the stages still exchange every chunk's
 * verdict and none waits for a stream that will never come: the stage that
 * failed keeps its status, the stages after it skip their work, and the
 * final all-reduce tells every rank. A failed transfer ends the loop at
 * once; the neighbours then fail by the runtime's bound. */
bl_status_t bl_lm_evaluate_pipelined(bl_lm_trainer_t *t, const uint16_t *stream, long n,
                                     double *loss_sum)
{
    bl_runtime_t *rt = t->rt;
    const bl_layout_t *l = &t->grid.layout;
    const eval_pipe_t e = {
        .t = t, .stage = l->stage, .stages = l->stages, .pipe_base = l->replica * l->stages};
    const int T = t->cfg.seq_len, C = t->model->config.channels;
    const int has_prev = e.stage > 0, has_next = e.stage < e.stages - 1;
    /* Pipeline p of D takes the contiguous sequences [n·p/D, n·(p+1)/D). Its
     * stages share its capacity (the plan's cap of the pipeline's shard), so
     * they cut the same chunks. */
    const long first = n * l->replica / l->replicas, last = n * (l->replica + 1) / l->replicas;
    double sum = 0.0;
    bl_status_t st = BL_OK;
    for (long at = first; at < last; at += t->capacity) {
        const long chunk = (at - first) / t->capacity;
        const int k = (int)(last - at < t->capacity ? last - at : t->capacity);
        const int count = k * T * C; /* within MPI's int: bl_lm_grid_init checked capacity */
        int verdict = st == BL_OK;
        bl_status_t moved = BL_OK;
        if (has_prev) {
            int arriving = 0;
            moved = transfer(&e, NULL, &arriving, 1, MPI_INT, e.stage - 1, chunk, "the verdict");
            if (moved == BL_OK && arriving) {
                moved = transfer(&e, NULL, bl_gpt2_stream(t->model, &t->acts, t->grid.first - 1),
                                 count, MPI_FLOAT, e.stage - 1, chunk, "the residual stream");
            }
            verdict = verdict && arriving;
        }
        if (moved == BL_OK && verdict) {
            bl_status_t ran = put_chunk(t, stream, at, k);
            if (ran == BL_OK) {
                ran = run_units(&e, &sum);
            }
            if (ran != BL_OK) {
                st = ran;
                verdict = 0;
            }
        }
        if (moved == BL_OK && has_next) {
            moved = transfer(&e, &verdict, NULL, 1, MPI_INT, e.stage + 1, chunk, "the verdict");
            if (moved == BL_OK && verdict) {
                moved = transfer(&e, bl_gpt2_stream(t->model, &t->acts, t->grid.last - 1), NULL,
                                 count, MPI_FLOAT, e.stage + 1, chunk, "the residual stream");
            }
        }
        if (moved != BL_OK) {
            st = moved;
            break;
        }
    }
    /* Every rank takes part even after a failure of its own, so that none is
     * left waiting: the loss sums (the last stages' only) and the failures,
     * in one all-reduce. */
    double sums[2] = {has_next ? 0.0 : sum, st != BL_OK ? 1.0 : 0.0};
    bl_status_t reduced =
        rt->size > 1 ? bl_allreduce_bounded(rt, MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM,
                                            rt->comm, "the all-reduce of the evaluation loss")
                     : BL_OK;
    if (reduced != BL_OK) {
        return reduced;
    }
    if (st != BL_OK) {
        return st;
    }
    if (sums[1] > 0.0) {
        return bl_fail(rt, BL_ERR_MISMATCH, "the evaluation's passes failed on %.0f other rank(s)",
                       sums[1]);
    }
    *loss_sum = sums[0];
    return BL_OK;
}
