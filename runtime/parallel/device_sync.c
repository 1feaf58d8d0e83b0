/* The gradient buckets reduced on the device (device_sync.h). */
#include <string.h>

#include "device_sync.h"

bl_status_t bl_device_sync_init(bl_device_sync_t *d, bl_runtime_t *rt, MPI_Comm dp, float *grads,
                                double timeout_s)
{
    memset(d, 0, sizeof *d);
    d->rt = rt;
    d->grads = grads;
    return bl_device_comm_open(rt, dp, "gradient", timeout_s, &d->comm);
}

/* Posts a bucket's all-reduce: the gradients [first, first + count), summed in
 * place. */
static bl_status_t post_bucket(size_t first, size_t count, void *arg)
{
    bl_device_sync_t *d = arg;
    return bl_device_comm_allreduce(d->comm, d->grads + first, count);
}

static bl_status_t wait_buckets(void *arg)
{
    bl_device_sync_t *d = arg;
    return bl_device_comm_wait(d->comm, "all-reduce of the gradients");
}

bl_grad_device_t bl_device_sync_hooks(bl_device_sync_t *d)
{
    return (bl_grad_device_t){.post = post_bucket, .wait = wait_buckets, .arg = d};
}

void bl_device_sync_free(bl_device_sync_t *d, int healthy)
{
    bl_device_comm_free(d->comm, healthy);
    memset(d, 0, sizeof *d);
}
