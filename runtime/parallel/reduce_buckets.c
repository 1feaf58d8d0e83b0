/* The reducer of MPI gradient buckets (grad_sync.h) behind the reducer's
 * interface (reducer.h), in its three forms: on host gradients; on host copies
 * of device gradients, staged through the model's pinned host array; and on
 * device gradients reduced by a device communicator (NCCL, or the mirror in its
 * place), where the loss and accuracy still go through MPI. */
#include <string.h>

#include "device_sync.h"
#include "grad_sync.h"
#include "reducer.h"

typedef struct buckets {
    bl_reducer_t base;
    bl_reducer_setup_t setup;
    bl_grad_sync_t sync;
    bl_device_sync_t device; /* the device communicator, on the device path */
} buckets_t;

/* Sets the gradient sync's device hooks for this rank's path; this is needed
 * after each bl_grad_sync_init. */
static void wire_hooks(buckets_t *b)
{
    if (b->setup.group->path == BL_REDUCE_STAGED) {
        b->sync.device = bl_device_copies_staged_hooks(b->setup.dev);
    } else if (b->setup.group->path == BL_REDUCE_DEVICE) {
        b->sync.device = bl_device_sync_hooks(&b->device);
    }
}

static bl_status_t plan_buckets(buckets_t *b, int first, int last)
{
    const bl_reducer_setup_t *s = &b->setup;
    bl_status_t st =
        bl_grad_sync_init(&b->sync, s->rt, s->dp, s->model, first, last, s->bucket_bytes);
    if (st == BL_OK) {
        wire_hooks(b);
    }
    return st;
}

static bl_status_t buckets_layer_done(bl_reducer_t *r, int layer)
{
    return bl_grad_sync_layer_done(layer, &((buckets_t *)r)->sync);
}

/* Updates a bucket whose sums have landed. On the staged path the sums arrived
 * in the host array, so they go back to the device first (queued before the
 * update, on the same stream). */
static void update_bucket(size_t first, size_t count, void *arg)
{
    buckets_t *b = arg;
    if (b->setup.group->path == BL_REDUCE_STAGED) {
        bl_model_t *m = b->setup.model;
        bl_model_device(m)->memory->to_device(bl_model_exec_grads(m) + first, m->grads + first,
                                              count * sizeof(float));
    }
    bl_reducer_update(&b->setup, first, count);
}

static bl_status_t buckets_finish(bl_reducer_t *r, double *loss_sum, long *correct)
{
    buckets_t *b = (buckets_t *)r;
    /* Each bucket is updated as soon as its reduction lands. */
    return bl_grad_sync_finish(&b->sync, loss_sum, correct, update_bucket, b);
}

static bl_status_t buckets_restage(bl_reducer_t *r, int first, int last)
{
    buckets_t *b = (buckets_t *)r;
    bl_grad_sync_free(&b->sync);
    return plan_buckets(b, first, last);
}

static void buckets_destroy(bl_reducer_t *r, int healthy)
{
    buckets_t *b = (buckets_t *)r;
    bl_grad_sync_free(&b->sync);
    bl_device_sync_free(&b->device, healthy);
    bl_mem_free(bl_rt_allocator(b->setup.rt), b);
}

static const bl_reducer_ops_t buckets_ops = {.layer_done = buckets_layer_done,
                                             .finish = buckets_finish,
                                             .restage = buckets_restage,
                                             .destroy = buckets_destroy};

bl_status_t bl_reducer_create_buckets(const bl_reducer_setup_t *setup, bl_reducer_t **out)
{
    bl_runtime_t *rt = setup->rt;
    buckets_t *b = bl_mem_alloc(bl_rt_allocator(rt), sizeof *b);
    bl_status_t st = b != NULL ? BL_OK : bl_fail(rt, BL_ERR_NO_MEM, "no memory for a reducer");
    if (b != NULL) {
        memset(b, 0, sizeof *b);
        b->setup = *setup;
        b->base = (bl_reducer_t){.ops = &buckets_ops,
                                 .path = bl_device_group_path_name(setup->group),
                                 .after_transfers = setup->group->path == BL_REDUCE_DEVICE};
        st = bl_grad_sync_init(&b->sync, rt, setup->dp, setup->model, setup->first_layer,
                               setup->last_layer, setup->bucket_bytes);
    }
    /* The device communicator's set-up is collective over the group: every
     * member takes part even after a local failure above, and every member
     * learns of a failure anywhere. */
    if (setup->group->path == BL_REDUCE_DEVICE) {
        bl_device_sync_t spare;
        bl_device_sync_t *device = b != NULL ? &b->device : &spare;
        bl_status_t opened =
            bl_device_sync_init(device, rt, setup->dp, setup->dev->grads, setup->timeout_s);
        st = st != BL_OK ? st : opened;
        if (b == NULL) {
            bl_device_sync_free(&spare, !rt->gave_up);
        }
    } else if (st == BL_OK && setup->group->path == BL_REDUCE_STAGED) {
        bl_device_copies_pin_grads(setup->dev, rt);
    }
    if (st == BL_OK) {
        wire_hooks(b);
        *out = &b->base;
        return BL_OK;
    }
    if (b != NULL) {
        buckets_destroy(&b->base, !rt->gave_up);
    }
    return st;
}
