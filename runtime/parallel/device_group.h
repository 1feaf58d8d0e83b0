/* What a trainer needs to know about the devices of its ranks: whether this
 * rank may train on its device at all (a check that every rank agrees on before
 * the communicators are split), and what a group of its ranks (a data-parallel
 * group, or a pipeline) is made of, which decides how the group moves device
 * memory:
 *   - directly (device_comm.h), when every member is a CUDA GPU of its own
 *     (NCCL refuses two ranks on one GPU) or every member is the mirror, and
 *     NCCL is not turned off;
 *   - otherwise through host memory and MPI.
 * A data-parallel group thus reduces its gradients in one of three ways: with
 * MPI on host arrays (when it has no device ranks; or through the node-local
 * shared-memory reduction), on the device (direct), or with MPI on host copies
 * of the device gradients (staged: a mixed CPU and GPU group, ranks that share
 * a GPU, or NCCL turned off). */
#ifndef BL_DEVICE_GROUP_H
#define BL_DEVICE_GROUP_H

#include "model_impl.h"

typedef enum {
    BL_REDUCE_NONE = 0, /* one replica: there is nothing to reduce */
    BL_REDUCE_HOST,     /* MPI (or shared memory) on the host gradients */
    BL_REDUCE_STAGED,   /* MPI on host copies of the device gradients */
    BL_REDUCE_DEVICE    /* a device communicator on the device gradients */
} bl_reduce_path_t;

typedef struct bl_device_group {
    int members;           /* the ranks in the group */
    int device_members;    /* of them, the ranks computing on memory of their own */
    int cuda_members;      /* of them, the CUDA GPUs */
    int mirror_members;    /* of them, the mirror devices */
    int shared_gpus;       /* of them, the ranks sharing a GPU with another (NCCL refuses) */
    int direct;            /* 1 when members > 1 and they move device memory directly */
    bl_reduce_path_t path; /* this rank's way of reducing, as a data-parallel group */
} bl_device_group_t;

/* Returns BL_ERR_UNSUPPORTED, naming the rank and the layer, when this rank
 * computes on a GPU and the model has a user layer without device passes.
 * Collective over rt->comm: every rank fails when one does. */
bl_status_t bl_device_train_check(bl_runtime_t *rt, const bl_model_t *m);

/* Counts the devices of `group` into *out, and decides whether its members move
 * device memory directly and what this rank's reduction path is; nccl_allowed 0
 * keeps every group on host memory. Collective over group when members > 1 (a
 * failed count returns its status). */
bl_status_t bl_device_group_learn(bl_runtime_t *rt, MPI_Comm group, int members, int nccl_allowed,
                                  bl_device_group_t *out);

/* Returns how g's members move device memory, for logs: "NCCL", "MPI in NCCL's
 * place (mirror)", "MPI through host memory", "MPI" or "none (one replica)".
 * The string is static. */
const char *bl_device_group_path_name(const bl_device_group_t *g);

#endif /* BL_DEVICE_GROUP_H */
