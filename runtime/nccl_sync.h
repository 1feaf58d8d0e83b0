/* NCCL's part of the gradient sync for a data-parallel group of CUDA GPUs
 * (device_group.h's BL_REDUCE_NCCL): one communicator per group, its
 * unique id made by the group's first rank and broadcast over MPI; each
 * bucket is an in-place ncclAllReduce (SUM) of a slice of the device
 * gradients, queued on the communication stream after the compute
 * stream's work so far (cuda/comm.h), so a bucket is reduced while
 * backward computes the layers before it. The wait is bounded by the
 * trainer's timeout: a member that never comes aborts the communicator
 * and fails the step with BL_ERR_TIMEOUT naming the operation. */
#ifndef BL_NCCL_SYNC_H
#define BL_NCCL_SYNC_H

#include "grad_sync.h"

struct bl_nccl_comm;

typedef struct bl_nccl_sync {
    bl_runtime_t *rt;
    struct bl_nccl_comm *comm; /* NULL: not in use */
    float *grads;              /* the device gradients (the model's layout) */
    double timeout_s;          /* the step's bound; 0: wait forever */
} bl_nccl_sync_t;

/* Joins the group's NCCL communicator. Collective over dp (a failure on
 * one member fails them all). BL_ERR_UNSUPPORTED in a build without
 * CUDA. */
bl_status_t bl_nccl_sync_init(bl_nccl_sync_t *n, bl_runtime_t *rt, MPI_Comm dp, float *grads,
                              double timeout_s);
/* The gradient sync's device hooks (post and wait) for n. */
bl_grad_device_t bl_nccl_sync_hooks(bl_nccl_sync_t *n);
/* Destroys the communicator: finalized when `healthy` (every member
 * frees it together), else aborted, which waits for nobody (after a failed
 * step the others may never come). No-op unused. */
void bl_nccl_sync_free(bl_nccl_sync_t *n, int healthy);

#endif /* BL_NCCL_SYNC_H */
