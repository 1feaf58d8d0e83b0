/* What a trainer needs to know about the devices of its ranks: whether
 * this rank may train on its device at all (the checks every rank agrees
 * on before the communicators are split), and what its data-parallel
 * group is made of, which decides how gradients are reduced:
 *   - no rank with device memory: MPI on host arrays (or the node-local
 *     shared-memory reduction);
 *   - only CUDA GPUs, one rank per GPU, NCCL not turned off: NCCL on
 *     the device gradients (nccl_sync.h);
 *   - otherwise (a mixed CPU and GPU group, ranks sharing a GPU, which
 *     NCCL refuses, the mirror device, or NCCL off): MPI, device ranks
 *     staging their gradients through host memory. */
#ifndef BL_DEVICE_GROUP_H
#define BL_DEVICE_GROUP_H

#include "model_impl.h"

typedef enum {
    BL_REDUCE_NONE = 0, /* one replica: nothing to reduce */
    BL_REDUCE_HOST,     /* MPI (or shared memory) on host gradients */
    BL_REDUCE_STAGED,   /* MPI on host copies of device gradients */
    BL_REDUCE_NCCL      /* NCCL on the device gradients */
} bl_reduce_path_t;

typedef struct bl_device_group {
    int members;           /* ranks in the data-parallel group */
    int device_members;    /* of them, ranks computing on memory of their own */
    int cuda_members;      /* of them, CUDA GPUs */
    int shared_gpus;       /* of them, ranks sharing their GPU with another (NCCL refuses) */
    bl_reduce_path_t path; /* this rank's way of reducing gradients */
} bl_device_group_t;

/* Refuses (BL_ERR_UNSUPPORTED naming the rank and the layer) a model with
 * a user layer that has no device passes on a GPU rank. Collective over
 * rt->comm: every rank fails when one does. */
bl_status_t bl_device_train_check(bl_runtime_t *rt, const bl_model_t *m);

/* Counts the group's devices (collective over dp when members > 1) and
 * picks this rank's path; nccl_allowed 0 keeps GPU groups on MPI. */
bl_status_t bl_device_group_learn(bl_runtime_t *rt, MPI_Comm dp, int members, int nccl_allowed,
                                  bl_device_group_t *out);

/* "NCCL", "MPI through host memory", "MPI": for logs. */
const char *bl_reduce_path_name(bl_reduce_path_t path);

#endif /* BL_DEVICE_GROUP_H */
