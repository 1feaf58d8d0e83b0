/* Evaluation (trainer_impl.h): the mean loss and accuracy of the whole model
 * over a dataset. Each rank evaluates its share, and the sums are reduced. */
#include <string.h>

#include "consistency.h"
#include "trainer_impl.h"
#include "wait.h"
#include "device.h"

/* Adds to *loss_sum and *correct the loss sum and correct count of samples
 * [first, first + count) of d, run in chunks of up to B rows through the whole
 * model (every rank holds every layer's current parameters between runs).
 * Without pipelining or micro-batches the training workspace serves; otherwise
 * one is made for the evaluation. */
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
    if (st == BL_OK) {
        st =
            bl_trainer_make_params_whole(t); /* also from a step callback, in the middle of a run */
    }
    if (st != BL_OK) {
        return st;
    }
    /* Each rank evaluates its contiguous share of the set, and the sums are
     * reduced, so the figures are exact global ones. */
    long share = d->count / rt->size, extra = d->count % rt->size;
    long first = rt->rank * share + (rt->rank < extra ? rt->rank : extra);
    long count = share + (rt->rank < extra ? 1 : 0);
    double totals[2] = {0.0, 0.0};
    long correct = 0;
    st = evaluate_range(t, d, first, count, &totals[0], &correct);
    /* Every rank takes part in the reduction even after a local failure, so
     * that none is left waiting; a failure anywhere fails everywhere. */
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
