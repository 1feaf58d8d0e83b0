/* The gradient reduction of a data-parallel group of device ranks over a device
 * communicator (device_comm.h; device_group.h's BL_REDUCE_DEVICE): NCCL for
 * GPUs, and MPI in NCCL's place for the mirror. Each bucket is an in-place SUM
 * all-reduce of a slice of the device gradients, queued after the compute work
 * so far, so that a bucket is reduced while backward computes the layers before
 * it. The wait is bounded by the trainer's timeout. */
#ifndef BL_DEVICE_SYNC_H
#define BL_DEVICE_SYNC_H

#include "device_comm.h"
#include "grad_sync.h"

typedef struct bl_device_sync {
    bl_runtime_t *rt;
    bl_device_comm_t *comm; /* NULL when not in use */
    float *grads;           /* the device gradients, in the model's layout */
} bl_device_sync_t;

/* Opens the group's device communicator over dp for the device gradients
 * `grads`, with its waits bounded by timeout_s. Collective over dp: a failure
 * on one member fails them all. */
bl_status_t bl_device_sync_init(bl_device_sync_t *d, bl_runtime_t *rt, MPI_Comm dp, float *grads,
                                double timeout_s);
/* Returns the gradient sync's device hooks (post and wait) for d. */
bl_grad_device_t bl_device_sync_hooks(bl_device_sync_t *d);
/* Frees the communicator, passing `healthy` on to bl_device_comm_free. It is a
 * no-op when d is not in use. */
void bl_device_sync_free(bl_device_sync_t *d, int healthy);

#endif /* BL_DEVICE_SYNC_H */
