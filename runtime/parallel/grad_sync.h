/* Gradient synchronisation across the data-parallel ranks: the per-sample
 * gradient sums are all-reduced with SUM in buckets, each posted as a
 * non-blocking MPI_Iallreduce as soon as backward has finished the layers it
 * covers, so that communication overlaps the rest of backward. The parameters
 * are contiguous in layer order and backward runs from the last layer, so every
 * bucket is one contiguous slice of the gradient array. */
#ifndef BL_GRAD_SYNC_H
#define BL_GRAD_SYNC_H

#include "model_impl.h"

typedef struct bl_bucket {
    size_t first;    /* the bucket's first gradient element */
    size_t count;    /* its elements (checked at init to fit an int) */
    int close_layer; /* the bucket is posted once backward has finished this layer */
} bl_bucket_t;

/* How a rank whose gradients live on a device takes part (bl_grad_sync_t's
 * `device`). With every hook NULL, the gradients are host memory, reduced by
 * MPI.
 *   - Staged: fetch starts copying a bucket's slice of the device gradients
 *     into the host array and names the copy in *ticket; fetched says, without
 *     waiting, whether that copy has arrived (*done 1 or 0). MPI reduces a
 *     bucket there only once its copy has arrived, so the copy overlaps the
 *     rest of backward, and the ready callback then takes the sums back.
 *   - Device collectives (NCCL for a group of GPUs, or MPI in NCCL's place for
 *     the mirror): post reduces the bucket on the device instead of through
 *     MPI, and wait completes every bucket posted. The loss and accuracy still
 *     go through MPI. */
typedef struct bl_grad_device {
    bl_status_t (*fetch)(size_t first, size_t count, long *ticket, void *arg);
    bl_status_t (*fetched)(long ticket, int *done, void *arg);
    bl_status_t (*post)(size_t first, size_t count, void *arg);
    bl_status_t (*wait)(void *arg);
    void *arg;
} bl_grad_device_t;

typedef struct bl_grad_sync {
    bl_runtime_t *rt;
    bl_grad_device_t device; /* the device hooks, set after init on a device rank */
    MPI_Comm comm;           /* the data-parallel group */
    float *grads;
    bl_bucket_t *buckets; /* in posting order: the last layers' bucket comes first */
    int bucket_count;
    MPI_Request *requests; /* one per bucket, MPI_REQUEST_NULL when idle */
    int closed;            /* the buckets whose layers backward has finished this step */
    int posted;            /* of them, the buckets whose reductions are posted (in order) */
    long *tickets;         /* (per bucket) staged: the ticket of its copy to the host, from fetch */
    /* Per bucket: 1 when its reduction completed before bl_grad_sync_finish
     * (MPI_Testsome in the backward hook frees its request), so that finish
     * hands it on without waiting. indices is Testsome's scratch. */
    unsigned char *reduced;
    int *indices;
    double totals[2]; /* this step's loss sum and correct count, being reduced */
    MPI_Request totals_request;
} bl_grad_sync_t;

/* Plans the buckets over the gradients of layers [first_layer, last_layer) (the
 * whole model, or a pipeline stage's layers), to be reduced over comm. Each
 * bucket holds about bucket_bytes and at least one layer's parameters: a larger
 * layer is a bucket alone, and below 4 bytes every layer with parameters is a
 * bucket. A range without parameters has no buckets. Returns BL_ERR_NO_MEM, or
 * BL_ERR_UNSUPPORTED when a bucket would hold more than one MPI call can
 * reduce; on failure nothing stays allocated. */
bl_status_t bl_grad_sync_init(bl_grad_sync_t *s, bl_runtime_t *rt, MPI_Comm comm, bl_model_t *m,
                              int first_layer, int last_layer, size_t bucket_bytes);
void bl_grad_sync_free(bl_grad_sync_t *s);

/* The backward hook, called once backward has finished `layer` (`sync` is the
 * bl_grad_sync_t). It posts every bucket that closes at `layer` and tests the
 * reductions in flight, so that MPI makes progress while backward goes on. On
 * the staged path it starts each closing bucket's copy to the host instead, and
 * posts the buckets whose copies have arrived in bucket order, so that every
 * rank posts its reductions in the same order; once the last bucket has closed,
 * it stays until every copy has landed and been posted. A device runs behind
 * the host, so the first buckets' reductions then overlap the device's last
 * layers. With device collectives it posts each closing bucket on the device.
 * On failure it drains the MPI reductions already posted and returns the
 * status. */
bl_status_t bl_grad_sync_layer_done(int layer, void *sync);

/* Called for each bucket as soon as its reduction has completed, with the slice
 * [first, first + count) of the gradients now summed over all ranks, so that
 * the optimizer updates that slice while other buckets are still in flight. */
typedef void (*bl_bucket_ready_fn)(size_t first, size_t count, void *arg);

/* Posts the reduction of the step's loss sum and correct count (unless loss_sum
 * is NULL) and waits for everything, calling ready (which may be NULL) for each
 * bucket in completion order. Afterwards the gradients hold the sums over the
 * group's samples, and *loss_sum and *correct hold the group's totals.
 * Collective over the group, with waits bounded by the runtime's timeout; on
 * failure the reductions in flight are drained, except after a timeout (the job
 * is then ending). */
bl_status_t bl_grad_sync_finish(bl_grad_sync_t *s, double *loss_sum, long *correct,
                                bl_bucket_ready_fn ready, void *ready_arg);

#endif /* BL_GRAD_SYNC_H */
