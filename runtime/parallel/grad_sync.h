/* Gradient synchronisation across the data-parallel ranks: per-sample
 * gradient sums are all-reduced with SUM in buckets, each posted as a
 * non-blocking MPI_Iallreduce as soon as backward has finished the layers it
 * covers, so communication overlaps the rest of backward. Parameters are
 * contiguous in layer order and backward runs from the last layer, so every
 * bucket is one contiguous slice of the gradient array. */
#ifndef BL_GRAD_SYNC_H
#define BL_GRAD_SYNC_H

#include "model_impl.h"

typedef struct bl_bucket {
    size_t first;    /* first gradient element */
    size_t count;    /* elements (fits an int: checked at init) */
    int close_layer; /* post the bucket once backward has finished this layer */
} bl_bucket_t;

/* How a rank whose gradients live on a device takes part (grad_sync's
 * `device`; all NULL: the gradients are host memory, reduced by MPI).
 * Staged: fetch starts copying a bucket's slice of the device gradients
 * into the host array (it names the copy in *ticket), and fetched says
 * whether that copy has arrived (*done 1 or 0, without waiting); MPI reduces a bucket there only
 * once it has arrived, so the copy overlaps the rest of backward (the ready callback then takes the
 * sums back). Device collectives (NCCL, for a group of GPUs only): post reduces the bucket on the
 * device instead of MPI, wait completes every bucket posted; the loss and accuracy still go through
 * MPI. */
typedef struct bl_grad_device {
    bl_status_t (*fetch)(size_t first, size_t count, long *ticket, void *arg);
    bl_status_t (*fetched)(long ticket, int *done, void *arg);
    bl_status_t (*post)(size_t first, size_t count, void *arg);
    bl_status_t (*wait)(void *arg);
    void *arg;
} bl_grad_device_t;

typedef struct bl_grad_sync {
    bl_runtime_t *rt;
    bl_grad_device_t device; /* set after init by a device rank */
    MPI_Comm comm;           /* the data-parallel group */
    float *grads;
    bl_bucket_t *buckets; /* in posting order: the last layers' bucket first */
    int bucket_count;
    MPI_Request *requests; /* one per bucket, MPI_REQUEST_NULL when idle */
    int closed;            /* buckets whose layers backward has finished this step */
    int posted;            /* of them, buckets whose reduction is posted (in order) */
    long *tickets;         /* (per bucket) staged: its copy to the host, from fetch */
    /* Per bucket: 1 when its reduction completed before bl_grad_sync_finish
     * (MPI_Testsome in the backward hook frees its request), so finish
     * hands it on without waiting; indices is Testsome's scratch. */
    unsigned char *reduced;
    int *indices;
    double totals[2]; /* this step's loss sum and correct count, reduced */
    MPI_Request totals_request;
} bl_grad_sync_t;

/* Plans buckets over the gradients of layers [first_layer, last_layer) —
 * the whole model, or a pipeline stage's layers — reduced over comm, of
 * about bucket_bytes (at least one layer's parameters each; a layer larger
 * than that is a bucket alone; under 4 bytes, one bucket per layer with
 * parameters). A range without parameters has no buckets. */
bl_status_t bl_grad_sync_init(bl_grad_sync_t *s, bl_runtime_t *rt, MPI_Comm comm, bl_model_t *m,
                              int first_layer, int last_layer, size_t bucket_bytes);
void bl_grad_sync_free(bl_grad_sync_t *s);

/* The backward hook: posts every bucket that closes at `layer` (staged:
 * starts its copy to the host, and posts the buckets whose copies have
 * arrived, in bucket order, so every rank posts its reductions in the
 * same order), and tests the ones in flight so MPI makes progress while
 * backward goes on. Staged, once the last bucket has closed, it stays
 * until every copy has landed and been posted: a device runs behind the
 * host, so the first buckets' reductions then overlap the device's last
 * layers. */
bl_status_t bl_grad_sync_layer_done(int layer, void *sync);

/* Called for each bucket as soon as its reduction has completed, with the
 * slice [first, first + count) of the gradients now summed over all ranks:
 * the optimizer updates that slice while other buckets are still in flight. */
typedef void (*bl_bucket_ready_fn)(size_t first, size_t count, void *arg);

/* Posts the step's (loss sum, correct) reduction (unless loss_sum is
 * NULL) and waits for everything, calling ready (may be NULL) for each
 * bucket in completion order: afterwards the gradients hold the sums over
 * the group's samples, and the totals are the group's. */
bl_status_t bl_grad_sync_finish(bl_grad_sync_t *s, double *loss_sum, long *correct,
                                bl_bucket_ready_fn ready, void *ready_arg);

#endif /* BL_GRAD_SYNC_H */
