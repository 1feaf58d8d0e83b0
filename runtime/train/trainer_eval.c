/* Evaluation (trainer_impl.h): the mean loss and accuracy of the whole model
 * over a dataset, forward only. The set is cut into contiguous shares, and the
 * loss and correct sums of the shares are reduced over the job.
 *   - One stage: each rank holds every layer and runs the whole model over its
 *     share of the set.
 *   - Pipelines (S > 1): each pipeline evaluates its share through its stages,
 *     in chunks of up to B rows. Stage 0 reads a chunk's inputs, every stage
 *     runs its own layers and sends the activations on, and the last stage
 *     reads the chunk's labels and computes the loss. No rank touches another
 *     stage's layers, so this works under stage-local memory as well. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "consistency.h"
#include "trainer_impl.h"
#include "wait.h"
#include "device.h"

/* Adds to *loss_sum and *correct the loss sum and correct count of samples
 * [first, first + count) of d, run in chunks of up to B rows through the whole
 * model (with one stage every rank holds every layer). Without micro-batches
 * the training workspace serves; otherwise one is made for the evaluation. */
static bl_status_t evaluate_range(bl_trainer_t *t, bl_dataset_t *d, long first, long count,
                                  double *loss_sum, long *correct)
{
    const bl_device_t *dev = bl_model_device(t->model);
    const bl_kernels_t *k = dev->kernels;
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    int chunk = t->cfg.batch;
    bl_workspace_t own = {0};
    bl_workspace_t *ws = &own;
    bl_status_t st = BL_OK;
    if (t->layout.stages == 1 && t->stage.max_micro == chunk) {
        ws = &t->stage.slots[0].ws;
    } else {
        st = bl_workspace_init(t->model, chunk, &own);
        if (st != BL_OK) {
            return st;
        }
    }
    /* The data is read on the host and, on a device of its own, uploaded into
     * twins. */
    size_t x_count = (size_t)chunk * (size_t)d->features;
    float *x = bl_mem_array(a, x_count, sizeof(float));
    int *labels = bl_mem_array(a, (size_t)chunk, sizeof(int));
    float *x_dev = dev->memory != NULL ? bl_buffer_alloc(t->rt, dev, x_count, sizeof(float)) : x;
    int *labels_dev =
        dev->memory != NULL ? bl_buffer_alloc(t->rt, dev, (size_t)chunk, sizeof(int)) : labels;
    if (x == NULL || labels == NULL || x_dev == NULL || labels_dev == NULL) {
        st = bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to evaluate in chunks of %d", chunk);
        goto done;
    }
    for (long done = 0; done < count; done += chunk) {
        int n = count - done < chunk ? (int)(count - done) : chunk;
        const float *logits = NULL;
        st = bl_dataset_gather_range(d, first + done, n, x, labels);
        if (st == BL_OK && dev->memory != NULL) {
            dev->memory->to_device(x_dev, x, (size_t)n * (size_t)d->features * sizeof(float));
            dev->memory->to_device(labels_dev, labels, (size_t)n * sizeof(int));
        }
        if (st == BL_OK) {
            st = bl_model_forward(t->model, ws, n, x_dev, &logits);
        }
        if (st != BL_OK) {
            goto done;
        }
        *loss_sum +=
            k->softmax_xent(n, bl_model_out_features(t->model), logits, labels_dev, NULL, correct);
    }
    st = bl_device_check(t->rt, dev, "the evaluation");
done:
    if (x_dev != x) {
        bl_buffer_free(a, dev, x_dev);
    }
    if (labels_dev != labels) {
        bl_buffer_free(a, dev, labels_dev);
    }
    bl_mem_free(a, x);
    bl_mem_free(a, labels);
    bl_workspace_free(a, &own);
    return st;
}

/* ---- Evaluation through a pipeline -------------------------------------- */

/* The tag of the evaluation's messages on the pipeline's communicator. A step's
 * messages carry their micro-batch's index, below 32767, as their tag
 * (stage.c), so the two never match; and MPI delivers the messages between two
 * ranks with one tag in the order they were sent. */
#define EVAL_TAG 32767

/* One stage's part of a pipelined evaluation: the workspace of the stage's own
 * layers and the buffers of one chunk of up to `rows` rows. The host buffers
 * are what the dataset is read into and what MPI moves; on a device with
 * memory of its own, in_dev and labels_dev are their device twins (else the
 * host buffers themselves), and out receives the stage's output, downloaded to
 * be sent. */
typedef struct eval_stage {
    bl_trainer_t *t;
    const bl_device_t *dev;
    int stage, stages;
    int pipe_base; /* the job rank of this pipeline's stage 0, for messages */
    int rows;
    int in_width, out_width; /* columns of the stage's input and output */
    bl_workspace_t ws;
    float *in; /* (rows, in_width): the inputs read (stage 0) or the activations received */
    float *in_dev;
    float *out;       /* (rows, out_width) on a device, all but the last stage */
    float *x_scratch; /* (rows, features) last stage: the inputs read with the labels */
    int *labels;      /* (rows) stage 0 (read with the inputs) and the last stage */
    int *labels_dev;  /* last stage */
} eval_stage_t;

/* Returns the rows of a chunk: B, or fewer when B rows of the model's widest
 * layer input or output are more floats than one MPI message carries. It
 * depends on the model's shape alone, so every stage cuts the same chunks. */
static int chunk_rows(const bl_trainer_t *t)
{
    int widest = 1;
    for (int i = 0; i < t->model->layer_count; i++) {
        const bl_layer_t *l = &t->model->layers[i];
        widest = l->in_features > widest ? l->in_features : widest;
        widest = l->out_features > widest ? l->out_features : widest;
    }
    return t->cfg.batch < INT_MAX / widest ? t->cfg.batch : INT_MAX / widest;
}

static void eval_stage_free(eval_stage_t *e)
{
    /* After a timeout a receive may still write into the buffers, so they are
     * leaked rather than freed (the job is ending). */
    if (e->t->rt->gave_up) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(e->t->rt);
    if (e->in_dev != e->in) {
        bl_buffer_free(a, e->dev, e->in_dev);
    }
    if (e->labels_dev != e->labels) {
        bl_buffer_free(a, e->dev, e->labels_dev);
    }
    bl_mem_free(a, e->in);
    bl_mem_free(a, e->out);
    bl_mem_free(a, e->x_scratch);
    bl_mem_free(a, e->labels);
    bl_workspace_free(a, &e->ws);
}

/* Sets up this rank's stage of the evaluation of d for the layers that the
 * stage map in force gives it. Local; on failure (BL_ERR_NO_MEM, or
 * BL_ERR_INVALID_ARG from the workspace) e is still freed with
 * eval_stage_free. */
static bl_status_t eval_stage_init(bl_trainer_t *t, const bl_dataset_t *d, eval_stage_t *e)
{
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    const bl_model_t *m = t->model;
    memset(e, 0, sizeof *e);
    e->t = t;
    e->dev = bl_model_device(m);
    e->stage = t->layout.stage;
    e->stages = t->layout.stages;
    e->pipe_base = t->layout.replica * t->layout.stages;
    int first = t->plan.first[e->stage], last = t->plan.first[e->stage + 1];
    e->in_width = m->layers[first].in_features;
    e->out_width = m->layers[last - 1].out_features;
    e->rows = chunk_rows(t);
    bl_status_t st = bl_workspace_init_range(t->model, first, last, e->rows, &e->ws);
    if (st != BL_OK) {
        return st;
    }
    size_t rows = (size_t)e->rows;
    int on_device = e->dev->memory != NULL, is_last = e->stage == e->stages - 1;
    e->in = bl_mem_array(a, rows * (size_t)e->in_width, sizeof(float));
    e->in_dev = on_device
                    ? bl_buffer_alloc(t->rt, e->dev, rows * (size_t)e->in_width, sizeof(float))
                    : e->in;
    int ok = e->in != NULL && e->in_dev != NULL;
    if (on_device && !is_last) {
        e->out = bl_mem_array(a, rows * (size_t)e->out_width, sizeof(float));
        ok = ok && e->out != NULL;
    }
    if (e->stage == 0 || is_last) {
        e->labels = bl_mem_array(a, rows, sizeof(int));
        ok = ok && e->labels != NULL;
    }
    if (is_last) {
        e->x_scratch = bl_mem_array(a, rows * (size_t)d->features, sizeof(float));
        e->labels_dev = on_device ? bl_buffer_alloc(t->rt, e->dev, rows, sizeof(int)) : e->labels;
        ok = ok && e->x_scratch != NULL && e->labels_dev != NULL;
    }
    return ok ? BL_OK
              : bl_fail(t->rt, BL_ERR_NO_MEM,
                        "no memory to evaluate stage %d's layers in chunks of %d rows", e->stage,
                        e->rows);
}

/* Sends `count` elements of `type` from `send` to pipeline stage `peer`, or,
 * with send NULL, receives them into `recv` from it, under the runtime's bound
 * (BL_ERR_TIMEOUT naming the peer's rank). `what` names the message in errors,
 * with the chunk's number. */
static bl_status_t transfer(const eval_stage_t *e, const void *send, void *recv, int count,
                            MPI_Datatype type, int peer, long chunk, const char *what)
{
    char op[160];
    snprintf(op, sizeof op, "stage %d %s %s of evaluation chunk %ld %s stage %d", e->stage,
             send != NULL ? "sending" : "receiving", what, chunk, send != NULL ? "to" : "from",
             peer);
    MPI_Request req = MPI_REQUEST_NULL;
    MPI_Comm pipe = e->t->layout.pipe;
    int rc = send != NULL ? MPI_Isend(send, count, type, peer, EVAL_TAG, pipe, &req)
                          : MPI_Irecv(recv, count, type, peer, EVAL_TAG, pipe, &req);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(e->t->rt, rc, op);
    }
    return bl_wait_bounded(e->t->rt, &req, op, e->pipe_base + peer);
}

/* Runs samples [first, first + n) of d through the stage's layers. Stage 0
 * reads their inputs; a later stage has received its input into e->in. The
 * last stage reads the labels and adds the chunk's loss sum and correct count
 * to *loss_sum and *correct; the others set *y to their output in host memory,
 * to be sent on. */
static bl_status_t run_chunk(eval_stage_t *e, bl_dataset_t *d, long first, int n, const float **y,
                             double *loss_sum, long *correct)
{
    bl_runtime_t *rt = e->t->rt;
    const bl_device_memory_t *mem = e->dev->memory;
    int is_last = e->stage == e->stages - 1;
    bl_status_t st = BL_OK;
    if (e->stage == 0) {
        st = bl_dataset_gather_range(d, first, n, e->in, e->labels);
    } else if (is_last) {
        /* The dataset reads inputs with their labels; the inputs are dropped. */
        st = bl_dataset_gather_range(d, first, n, e->x_scratch, e->labels);
    }
    if (st != BL_OK) {
        return st;
    }
    if (mem != NULL) {
        int failed =
            mem->to_device(e->in_dev, e->in, (size_t)n * (size_t)e->in_width * sizeof(float)) != 0;
        if (is_last) {
            failed |= mem->to_device(e->labels_dev, e->labels, (size_t)n * sizeof(int)) != 0;
        }
        if (failed) {
            return bl_device_check(rt, e->dev, "uploading an evaluation chunk");
        }
    }
    const float *out = NULL;
    st = bl_model_forward(e->t->model, &e->ws, n, e->in_dev, &out);
    if (st != BL_OK) {
        return st;
    }
    if (is_last) {
        *loss_sum +=
            e->dev->kernels->softmax_xent(n, e->out_width, out, e->labels_dev, NULL, correct);
    } else if (mem != NULL) {
        mem->to_host(e->out, out, (size_t)n * (size_t)e->out_width * sizeof(float));
        out = e->out;
    }
    *y = out;
    return bl_device_check(rt, e->dev, "the evaluation's forward pass");
}

/* Adds to *loss_sum and *correct (on the last stage; the others add nothing)
 * the sums of samples [first, first + count) of d, this pipeline's share, run
 * through the pipeline in chunks of e.rows rows. Collective over the job (the
 * set-up's agreement), then over the pipeline.
 *
 * A chunk crosses each stage boundary as a verdict (1: its activations follow;
 * 0: this stage or one before it failed) and then, after a 1, the activations.
 * So after a failure the stages still exchange every chunk's verdict, and none
 * waits for activations that will never come: the stage that failed returns its
 * status, and the stages after it skip their work and return BL_OK (the final
 * reduction tells them). A failed transfer ends the loop at once; the
 * neighbours then fail by the runtime's bound. */
static bl_status_t evaluate_pipelined(bl_trainer_t *t, bl_dataset_t *d, long first, long count,
                                      double *loss_sum, long *correct)
{
    eval_stage_t e;
    bl_status_t st = eval_stage_init(t, d, &e);
    /* A stage without its buffers could not take its messages, so every rank
     * learns of a failed set-up before the first transfer. */
    st = bl_agree(t->rt, st, BL_ERR_MISMATCH, "the set-up of the evaluation's stages");
    long total = st == BL_OK ? count : 0;
    int has_next = e.stage < e.stages - 1;
    for (long done = 0; done < total; done += e.rows) {
        long chunk = done / e.rows;
        int n = count - done < e.rows ? (int)(count - done) : e.rows;
        int verdict = st == BL_OK;
        bl_status_t moved = BL_OK;
        if (e.stage > 0) {
            int arriving = 0;
            moved = transfer(&e, NULL, &arriving, 1, MPI_INT, e.stage - 1, chunk, "the verdict");
            if (moved == BL_OK && arriving) {
                moved = transfer(&e, NULL, e.in, n * e.in_width, MPI_FLOAT, e.stage - 1, chunk,
                                 "activations");
            }
            verdict = verdict && arriving;
        }
        const float *y = NULL;
        if (moved == BL_OK && verdict) {
            bl_status_t ran = run_chunk(&e, d, first + done, n, &y, loss_sum, correct);
            if (ran != BL_OK) {
                st = ran;
                verdict = 0;
            }
        }
        if (moved == BL_OK && has_next) {
            moved = transfer(&e, &verdict, NULL, 1, MPI_INT, e.stage + 1, chunk, "the verdict");
            if (moved == BL_OK && verdict) {
                moved = transfer(&e, y, NULL, n * e.out_width, MPI_FLOAT, e.stage + 1, chunk,
                                 "activations");
            }
        }
        if (moved != BL_OK) {
            st = moved;
            break;
        }
    }
    eval_stage_free(&e);
    return st;
}

bl_status_t bl_trainer_evaluate(bl_trainer_t *t, bl_dataset_t *d, double *loss, double *accuracy)
{
    if (t == NULL || d == NULL || loss == NULL || accuracy == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "evaluate: NULL argument");
    }
    bl_runtime_t *rt = t->rt;
    bl_status_t st = bl_trainer_check_dataset(rt, t->model, d, "evaluation");
    if (st != BL_OK) {
        return st;
    }
    const bl_check_field_t fields[] = {
        {"evaluation set samples", BL_CHECK_INT, (uint64_t)d->count},
        {"evaluation set features", BL_CHECK_INT, (uint64_t)d->features},
    };
    st = bl_check_same_on_all_ranks(rt, "evaluation", fields, 2);
    if (st != BL_OK) {
        return st;
    }
    /* Each pipeline (each rank, with one stage) evaluates its contiguous share
     * of the set, and the sums are reduced, so the figures are exact global
     * ones. A pipeline's stages hold only their own layers' current parameters
     * in the middle of a run (this may be called from a step callback), and
     * that is all they use. */
    long pipelines = t->layout.replicas, mine = t->layout.replica;
    long share = d->count / pipelines, extra = d->count % pipelines;
    long first = mine * share + (mine < extra ? mine : extra);
    long count = share + (mine < extra ? 1 : 0);
    double totals[2] = {0.0, 0.0};
    long correct = 0;
    st = t->layout.stages > 1 ? evaluate_pipelined(t, d, first, count, &totals[0], &correct)
                              : evaluate_range(t, d, first, count, &totals[0], &correct);
    /* Every rank takes part in the reduction even after a local failure, so
     * that none is left waiting; a failure anywhere fails everywhere. Only the
     * last stages have sums to add. */
    totals[1] = (double)correct;
    double failed = st != BL_OK ? 1.0 : 0.0;
    double sums[3] = {totals[0], totals[1], failed};
    if (rt->size > 1) {
        bl_status_t reduced = bl_allreduce_bounded(rt, MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM,
                                                   rt->comm, "the reduction of the evaluation");
        if (reduced != BL_OK) {
            return reduced;
        }
    }
    if (st != BL_OK) {
        return st;
    }
    if (sums[2] > 0.0) {
        return bl_fail(rt, BL_ERR_MISMATCH, "evaluation failed on %.0f other rank(s)", sums[2]);
    }
    *loss = sums[0] / (double)d->count;
    *accuracy = sums[1] / (double)d->count;
    return BL_OK;
}
