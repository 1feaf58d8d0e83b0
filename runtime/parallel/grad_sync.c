/* The bucketed, overlapped all-reduce of gradient sums over a data-parallel
 * group (grad_sync.h). */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "grad_sync.h"
#include "wait.h"

bl_status_t bl_grad_sync_init(bl_grad_sync_t *s, bl_runtime_t *rt, MPI_Comm comm, bl_model_t *m,
                              int first_layer, int last_layer, size_t bucket_bytes)
{
    const bl_allocator_t *a = bl_rt_allocator(rt);
    memset(s, 0, sizeof *s);
    s->rt = rt;
    s->comm = comm;
    s->grads = m->grads;
    s->totals_request = MPI_REQUEST_NULL;
    /* A bucket size below one float gives one bucket per layer with parameters. */
    size_t bucket_floats = bucket_bytes < sizeof(float) ? 1 : bucket_bytes / sizeof(float);
    /* There is at most one bucket per layer. */
    int layers = last_layer - first_layer;
    s->buckets = bl_mem_array(a, (size_t)layers, sizeof *s->buckets);
    s->requests = bl_mem_array(a, (size_t)layers, sizeof *s->requests);
    s->reduced = bl_mem_array_zeroed(a, (size_t)layers, sizeof *s->reduced);
    s->indices = bl_mem_array(a, (size_t)layers, sizeof *s->indices);
    s->tickets = bl_mem_array_zeroed(a, (size_t)layers, sizeof *s->tickets);
    if (s->buckets == NULL || s->requests == NULL || s->reduced == NULL || s->indices == NULL ||
        s->tickets == NULL) {
        bl_grad_sync_free(s);
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d gradient buckets", layers);
    }
    /* The range's layers are walked in backward order. A bucket closes when it
     * holds at least bucket_floats, or at the range's first layer, and its
     * slice ends where the previous bucket began. */
    const bl_layer_t *top = &m->layers[last_layer - 1];
    size_t end = top->param_offset + top->param_count;
    for (int i = last_layer - 1; i >= first_layer; i--) {
        size_t first = m->layers[i].param_offset;
        int closing = i == first_layer;
        if ((end - first >= bucket_floats || closing) && end > first) {
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
    for (int k = 0; k < layers; k++) {
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
    bl_mem_free(a, s->reduced);
    bl_mem_free(a, s->indices);
    bl_mem_free(a, s->tickets);
    memset(s, 0, sizeof *s);
}

/* Waits for whatever is in flight (after a failure), so that no request is left
 * behind on the communicator. A staged copy still in flight lands in the host
 * array later, but nothing reads it before the next step's copy. */
static void drain(bl_grad_sync_t *s)
{
    MPI_Waitall(s->posted, s->requests, MPI_STATUSES_IGNORE);
    MPI_Wait(&s->totals_request, MPI_STATUS_IGNORE);
    memset(s->reduced, 0, (size_t)s->bucket_count * sizeof *s->reduced);
    s->closed = s->posted = 0;
}

/* Posts the MPI reductions of the closed buckets in bucket order, up to the
 * first bucket whose staged copy has not arrived. */
static bl_status_t post_arrived(bl_grad_sync_t *s)
{
    const bl_grad_device_t *dev = &s->device;
    while (s->posted < s->closed) {
        const bl_bucket_t *b = &s->buckets[s->posted];
        if (dev->fetched != NULL) {
            int done = 0;
            bl_status_t st = dev->fetched(s->tickets[s->posted], &done, dev->arg);
            if (st != BL_OK) {
                drain(s);
                return st;
            }
            if (!done) {
                return BL_OK;
            }
        }
        int rc = MPI_Iallreduce(MPI_IN_PLACE, s->grads + b->first, (int)b->count, MPI_FLOAT,
                                MPI_SUM, s->comm, &s->requests[s->posted]);
        if (rc != MPI_SUCCESS) {
            drain(s);
            return bl_fail_mpi(s->rt, rc, "MPI_Iallreduce of a gradient bucket");
        }
        s->posted++;
    }
    return BL_OK;
}

/* Posts the reductions whose copies have landed and tests the ones in flight,
 * since Open MPI advances non-blocking collectives only inside MPI calls. The
 * reductions that complete here are remembered for finish. */
static bl_status_t progress(bl_grad_sync_t *s)
{
    bl_status_t st = post_arrived(s);
    if (st != BL_OK || s->posted == 0) {
        return st;
    }
    int n = 0;
    int rc = MPI_Testsome(s->posted, s->requests, &n, s->indices, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
        drain(s);
        return bl_fail_mpi(s->rt, rc, "MPI_Testsome of gradient buckets");
    }
    for (int k = 0; k < n && n != MPI_UNDEFINED; k++) {
        s->reduced[s->indices[k]] = 1;
    }
    return BL_OK;
}

/* Posts every closed bucket, each as soon as its staged copy lands, while MPI
 * progresses the reductions in flight. */
static bl_status_t post_all(bl_grad_sync_t *s)
{
    bl_status_t st = progress(s);
    while (st == BL_OK && s->posted < s->closed) {
        struct timespec nap = {0, 20000};
        nanosleep(&nap, NULL);
        st = progress(s);
    }
    return st;
}

bl_status_t bl_grad_sync_layer_done(int layer, void *sync)
{
    bl_grad_sync_t *s = sync;
    const bl_grad_device_t *dev = &s->device;
    while (s->closed < s->bucket_count && s->buckets[s->closed].close_layer == layer) {
        const bl_bucket_t *b = &s->buckets[s->closed];
        bl_status_t st = BL_OK;
        if (dev->post != NULL) {
            st = dev->post(b->first, b->count, dev->arg);
            if (st != BL_OK) {
                s->closed = s->posted = 0; /* the step is over; the device's queue dies with it */
                return st;
            }
            s->closed++;
            s->posted++;
            continue;
        }
        if (dev->fetch != NULL) {
            st = dev->fetch(b->first, b->count, &s->tickets[s->closed], dev->arg);
        }
        if (st != BL_OK) {
            drain(s);
            return st;
        }
        s->closed++;
    }
    if (dev->post != NULL) {
        return BL_OK;
    }
    /* On the staged path, once backward has closed the last bucket the rest of
     * the step waits for the copies anyway. Posting each reduction as its copy
     * lands lets MPI reduce the first buckets while the device still computes
     * the last layers (its kernels run behind the host). */
    return s->closed == s->bucket_count ? post_all(s) : progress(s);
}

bl_status_t bl_grad_sync_finish(bl_grad_sync_t *s, double *loss_sum, long *correct,
                                bl_bucket_ready_fn ready, void *ready_arg)
{
    bl_status_t st = BL_OK;
    if (s->closed != s->bucket_count) {
        st = bl_fail(s->rt, BL_ERR_INVALID_ARG, "internal: %d of %d gradient buckets closed",
                     s->closed, s->bucket_count);
        drain(s);
        return st;
    }
    if (s->device.post == NULL) {
        st = post_all(s); /* nothing is left after the last hook, unless it was skipped */
        if (st != BL_OK) {
            return st;
        }
    }
    int rc = MPI_SUCCESS;
    if (loss_sum != NULL) {
        s->totals[0] = *loss_sum;
        s->totals[1] = (double)*correct;
        rc = MPI_Iallreduce(MPI_IN_PLACE, s->totals, 2, MPI_DOUBLE, MPI_SUM, s->comm,
                            &s->totals_request);
        if (rc != MPI_SUCCESS) {
            drain(s);
            return bl_fail_mpi(s->rt, rc, "MPI_Iallreduce of the step's loss and accuracy");
        }
    }
    if (s->device.wait != NULL) {
        /* On the device, every bucket completes at once; they are handed on in
         * posting order. */
        st = s->device.wait(s->device.arg);
        for (int k = 0; k < s->posted && st == BL_OK && ready != NULL; k++) {
            ready(s->buckets[k].first, s->buckets[k].count, ready_arg);
        }
        memset(s->reduced, 0, (size_t)s->bucket_count * sizeof *s->reduced);
        s->closed = s->posted = 0;
        if (st != BL_OK) {
            /* After a timeout the totals are left pending: the job is ending. */
            if (st != BL_ERR_TIMEOUT) {
                MPI_Wait(&s->totals_request, MPI_STATUS_IGNORE);
            }
            return st;
        }
    }
    /* The buckets already reduced are handed on first, and then the rest in the
     * order they complete, each at once. */
    int left = s->posted;
    for (int k = 0; k < s->posted; k++) {
        if (s->reduced[k]) {
            s->reduced[k] = 0;
            left--;
            if (ready != NULL) {
                ready(s->buckets[k].first, s->buckets[k].count, ready_arg);
            }
        }
    }
    for (; left > 0; left--) {
        int k = MPI_UNDEFINED;
        st = bl_waitany_collective(s->rt, s->posted, s->requests, &k, "the gradient all-reduce",
                                   s->comm);
        if (st != BL_OK) {
            if (st != BL_ERR_TIMEOUT) {
                drain(s); /* a timed-out reduction would never drain */
            }
            return st;
        }
        if (ready != NULL) {
            ready(s->buckets[k].first, s->buckets[k].count, ready_arg);
        }
    }
    st = bl_wait_collective(s->rt, &s->totals_request, "the loss and accuracy all-reduce", s->comm);
    s->closed = s->posted = 0;
    if (st != BL_OK) {
        return st;
    }
    if (loss_sum != NULL) {
        *loss_sum = s->totals[0];
        *correct = (long)s->totals[1];
    }
    return BL_OK;
}
