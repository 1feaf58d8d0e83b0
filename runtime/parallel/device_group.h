/* What a trainer needs to know about the devices of its ranks: whether
 * this rank may train on its device at all (the checks every rank agrees
 * on before the communicators are split), and what a group of its ranks
 * (a data-parallel group, a pipeline) is made of, which decides how they
 * move device memory:
 *   - directly (device_comm.h), when every member is a CUDA GPU of its
 *     own (NCCL refuses two ranks on one GPU) or every member is the
 *     mirror, and NCCL is not turned off;
 *   - otherwise through host memory and MPI.
 * A data-parallel group thus reduces gradients with MPI on host arrays
 * (no device ranks; or the node-local shared-memory reduction), on the
 * device (direct), or with MPI on host copies of the device gradients
 * (staged: a mixed CPU and GPU group, ranks sharing a GPU, NCCL off). */
#ifndef BL_DEVICE_GROUP_H
#define BL_DEVICE_GROUP_H

#include "model_impl.h"

typedef enum {
    BL_REDUCE_NONE = 0, /* one replica: nothing to reduce */
    BL_REDUCE_HOST,     /* MPI (or shared memory) on host gradients */
    BL_REDUCE_STAGED,   /* MPI on host copies of device gradients */
    BL_REDUCE_DEVICE    /* a device communicator on the device gradients */
} bl_reduce_path_t;

typedef struct bl_device_group {
    int members;           /* ranks in the group */
    int device_members;    /* of them, ranks computing on memory of their own */
    int cuda_members;      /* of them, CUDA GPUs */
    int mirror_members;    /* of them, mirror devices */
    int shared_gpus;       /* of them, ranks sharing their GPU with another (NCCL refuses) */
    int direct;            /* members > 1 and they move device memory directly */
    bl_reduce_path_t path; /* as a data-parallel group: this rank's way of reducing */
} bl_device_group_t;

/* Refuses (BL_ERR_UNSUPPORTED naming the rank and the layer) a model with
 * a user layer that has no device passes on a GPU rank. Collective over
 * rt->comm: every rank fails when one does. */
bl_status_t bl_device_train_check(bl_runtime_t *rt, const bl_model_t *m);

/* Counts the devices of `group` (collective over it when members > 1)
 * and decides whether they move device memory directly and this rank's
 * reduction path; nccl_allowed 0 keeps every group on host memory. */
bl_status_t bl_device_group_learn(bl_runtime_t *rt, MPI_Comm group, int members, int nccl_allowed,
                                  bl_device_group_t *out);

/* How g's members move device memory: "NCCL", "MPI in NCCL's place
 * (mirror)", "MPI through host memory", "MPI", "none (one replica)": for
 * logs. */
const char *bl_device_group_path_name(const bl_device_group_t *g);

#endif /* BL_DEVICE_GROUP_H */
