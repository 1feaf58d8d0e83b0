/* The device checks of a trainer, and the make-up of its groups of ranks
 * (device_group.h). */
#include "device_group.h"
#include "wait.h"

bl_status_t bl_device_train_check(bl_runtime_t *rt, const bl_model_t *m)
{
    const bl_device_t *dev = &rt->device;
    bl_status_t st = BL_OK;
    for (int i = 0; st == BL_OK && dev->kind == BL_DEVICE_CUDA && i < m->layer_count; i++) {
        const bl_layer_t *l = &m->layers[i];
        if (l->kind == BL_LAYER_USER && l->device_forward == NULL) {
            st = bl_fail(rt, BL_ERR_UNSUPPORTED,
                         "rank %d computes on %s, but layer %d (%s) has no device passes "
                         "(bl_model_set_device_ops); run this rank with --device cpu",
                         rt->rank, dev->name, i, l->ops.name != NULL ? l->ops.name : "user layer");
        }
    }
    return bl_agree(rt, st, BL_ERR_UNSUPPORTED, "the device check");
}

bl_status_t bl_device_group_learn(bl_runtime_t *rt, MPI_Comm group, int members, int nccl_allowed,
                                  bl_device_group_t *out)
{
    const bl_device_t *dev = &rt->device;
    int counts[4] = {dev->memory != NULL, dev->kind == BL_DEVICE_CUDA,
                     dev->kind == BL_DEVICE_MIRROR, dev->shared};
    if (members > 1) {
        bl_status_t st = bl_allreduce_bounded(rt, MPI_IN_PLACE, counts, 4, MPI_INT, MPI_SUM, group,
                                              "the count of the group's devices");
        if (st != BL_OK) {
            return st;
        }
    }
    out->members = members;
    out->device_members = counts[0];
    out->cuda_members = counts[1];
    out->mirror_members = counts[2];
    out->shared_gpus = counts[3];
    out->direct = members > 1 && nccl_allowed &&
                  ((counts[1] == members && counts[3] == 0) || counts[2] == members);
    if (members == 1) {
        out->path = BL_REDUCE_NONE;
    } else if (dev->memory == NULL) {
        out->path = BL_REDUCE_HOST;
    } else if (out->direct) {
        out->path = BL_REDUCE_DEVICE;
    } else {
        out->path = BL_REDUCE_STAGED;
    }
    return BL_OK;
}

const char *bl_device_group_path_name(const bl_device_group_t *g)
{
    switch (g->path) {
    case BL_REDUCE_DEVICE:
        return g->cuda_members == g->members ? "NCCL" : "MPI in NCCL's place (mirror)";
    case BL_REDUCE_STAGED:
        return "MPI through host memory";
    case BL_REDUCE_NONE:
        return "none (one replica)";
    default:
        return "MPI";
    }
}
