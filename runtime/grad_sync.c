/* Bucketed, overlapped all-reduce of gradient sums over the runtime's
 * communicator. */
#include <limits.h>
#include <string.h>

#include "grad_sync.h"

bl_status_t bl_grad_sync_init(bl_grad_sync_t *s, bl_runtime_t *rt, bl_model_t *m,
                              size_t bucket_bytes)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    memset(s, 0, sizeof *s);
    s->rt = rt;
    s->grads = m->grads;
    s->totals_request = MPI_REQUEST_NULL;
    /* Below one float: one bucket per layer with parameters. */
    size_t bucket_floats = bucket_bytes < sizeof(float) ? 1 : bucket_bytes / sizeof(float);
    /* At most one bucket per layer. */
    s->buckets = bl_mem_array(a, (size_t)m->layer_count, sizeof *s->buckets);
    s->requests = bl_mem_array(a, (size_t)m->layer_count, sizeof *s->requests);
    if (s->buckets == NULL || s->requests == NULL) {
        bl_grad_sync_free(s);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d gradient buckets", m->layer_count);
    }
    /* Walk layers in backward order; a bucket closes when it holds at least
     * bucket_floats, or at the first layer. Its slice ends where the
     * previous bucket began. */
    size_t end = m->param_count;
    for (int i = m->layer_count - 1; i >= 0; i--) {
        size_t first = m->layers[i].param_offset;
        int last_layer = i == 0;
        if ((end - first >= bucket_floats || last_layer) && end > first) {
            if (end - first > (size_t)INT_MAX) {
                bl_grad_sync_free(s);
                return bl_fail(rt, BL_ERR_UNSUPPORTED,
                               "layers %d.. hold %zu parameters, more than one MPI call can "
                               "reduce (%d); use a smaller --bucket-mb",
                               i, end - first, INT_MAX);
            }
            s->buckets[s->bucket_count++] = (bl_bucket_t){first, end - first, i};
            end = first;
        }
    }
    for (int k = 0; k < m->layer_count; k++) {
        s->requests[k] = MPI_REQUEST_NULL;
    }
    return BL_OK;
}

void bl_grad_sync_free(bl_grad_sync_t *s)
{
    if (s->rt == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(s->rt);
    bl_mem_free(a, s->buckets);
    bl_mem_free(a, s->requests);
    memset(s, 0, sizeof *s);
}

/* Waits for whatever is in flight (after a failure), so no request is left
 * behind on the communicator. */
static void drain(bl_grad_sync_t *s)
{
    MPI_Waitall(s->posted, s->requests, MPI_STATUSES_IGNORE);
    MPI_Wait(&s->totals_request, MPI_STATUS_IGNORE);
    s->posted = 0;
}

bl_status_t bl_grad_sync_layer_done(int layer, void *sync)
{
    bl_grad_sync_t *s = sync;
    while (s->posted < s->bucket_count && s->buckets[s->posted].close_layer == layer) {
        const bl_bucket_t *b = &s->buckets[s->posted];
        int rc = MPI_Iallreduce(MPI_IN_PLACE, s->grads + b->first, (int)b->count, MPI_FLOAT,
                                MPI_SUM, s->rt->comm, &s->requests[s->posted]);
        if (rc != MPI_SUCCESS) {
            drain(s);
            return bl_fail_mpi(s->rt, rc, "MPI_Iallreduce of a gradient bucket");
        }
        s->posted++;
    }
    if (s->posted > 0) {
        /* Drives progress of the reductions in flight (Open MPI advances
         * non-blocking collectives inside MPI calls). */
        int done = 0;
        int rc = MPI_Testall(s->posted, s->requests, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            drain(s);
            return bl_fail_mpi(s->rt, rc, "MPI_Testall of gradient buckets");
        }
    }
    return BL_OK;
}

bl_status_t bl_grad_sync_finish(bl_grad_sync_t *s, double *loss_sum, long *correct,
                                bl_bucket_ready_fn ready, void *ready_arg)
{
    bl_status_t st = BL_OK;
    if (s->posted != s->bucket_count) {
        st = bl_fail(s->rt, BL_ERR_INVALID_ARG, "internal: %d of %d gradient buckets posted",
                     s->posted, s->bucket_count);
        drain(s);
        return st;
    }
    s->totals[0] = *loss_sum;
    s->totals[1] = (double)*correct;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, s->totals, 2, MPI_DOUBLE, MPI_SUM, s->rt->comm,
                            &s->totals_request);
    if (rc != MPI_SUCCESS) {
        drain(s);
        return bl_fail_mpi(s->rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
    }
    /* Buckets in the order they complete: each is handed on at once. */
    for (int left = s->posted; left > 0; left--) {
        int k = MPI_UNDEFINED;
        rc = MPI_Waitany(s->posted, s->requests, &k, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || k == MPI_UNDEFINED) {
            drain(s);
            return bl_fail_mpi(s->rt, rc != MPI_SUCCESS ? rc : MPI_ERR_REQUEST,
                               "waiting for the gradient all-reduce");
        }
        if (ready != NULL) {
            ready(s->buckets[k].first, s->buckets[k].count, ready_arg);
        }
    }
    rc = MPI_Wait(&s->totals_request, MPI_STATUS_IGNORE);
    s->posted = 0;
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(s->rt, rc, "waiting for the loss and accuracy all-reduce");
    }
    *loss_sum = s->totals[0];
    *correct = (long)s->totals[1];
    return BL_OK;
}
