/* The trainer's device copies of the parameters, the gradients and the momentum
 * (device_copies.h). */
#include <string.h>

#include "device_copies.h"
#include "device.h"

bl_status_t bl_device_copies_init(bl_device_copies_t *c, bl_runtime_t *rt, const bl_device_t *dev,
                                  bl_model_t *m, const float *velocity)
{
    memset(c, 0, sizeof *c);
    c->device = dev;
    c->rt = rt;
    c->model = m;
    c->count = m->param_count;
    c->params = bl_buffer_alloc(rt, dev, c->count, sizeof(float));
    c->grads = bl_buffer_alloc(rt, dev, c->count, sizeof(float));
    c->velocity = bl_buffer_alloc(rt, dev, c->count, sizeof(float));
    if (c->params == NULL || c->grads == NULL || c->velocity == NULL) {
        bl_device_copies_free(c);
        return bl_fail(rt, BL_ERR_NO_MEM,
                       "rank %d (%s): no device memory for 3 x %zu floats (parameters, gradients, "
                       "momentum)",
                       rt->rank, dev->name, c->count);
    }
    dev->memory->zero(c->grads, c->count * sizeof(float));
    bl_status_t st = bl_device_copies_upload(c, rt, velocity);
    if (st != BL_OK) {
        bl_device_copies_free(c);
        return st;
    }
    m->exec_device = dev;
    m->exec_params = c->params;
    m->exec_grads = c->grads;
    return BL_OK;
}

bl_status_t bl_device_copies_download(bl_device_copies_t *c, bl_runtime_t *rt, float *velocity)
{
    if (c->device == NULL) {
        return BL_OK;
    }
    /* Only the layers that the host holds travel (a stage-local pipeline
     * stage's, else all). */
    size_t first, count;
    bl_model_held_params(c->model, &first, &count);
    size_t nbytes = count * sizeof(float);
    const bl_device_memory_t *mem = c->device->memory;
    mem->to_host(c->model->params + first, c->params + first, nbytes);
    mem->to_host(velocity + first, c->velocity + first, nbytes);
    return bl_device_check(rt, c->device, "downloading the parameters and momentum");
}

bl_status_t bl_device_copies_upload(bl_device_copies_t *c, bl_runtime_t *rt, const float *velocity)
{
    if (c->device == NULL) {
        return BL_OK;
    }
    size_t first, count;
    bl_model_held_params(c->model, &first, &count);
    size_t nbytes = count * sizeof(float);
    const bl_device_memory_t *mem = c->device->memory;
    mem->to_device(c->params + first, c->model->params + first, nbytes);
    mem->to_device(c->velocity + first, velocity + first, nbytes);
    return bl_device_check(rt, c->device, "uploading the parameters and momentum");
}

void bl_device_copies_pin_grads(bl_device_copies_t *c, bl_runtime_t *rt)
{
    /* The held layers' gradients: a stage-local stage pins its own layers'
     * (the ones it starts with; after a migration the rest go pageable). */
    size_t first, count;
    bl_model_held_params(c->model, &first, &count);
    size_t nbytes = count * sizeof(float);
    if (c->device == NULL || c->pinned_grads != NULL || nbytes == 0) {
        return;
    }
    if (c->device->memory->pin(c->model->grads + first, nbytes) == 0) {
        c->pinned_grads = c->model->grads + first;
    } else {
        bl_log(rt, BL_LOG_DEBUG,
               "rank %d: the host gradients (%zu bytes) could not be page-locked; staged copies "
               "go through pageable memory",
               rt->rank, nbytes);
    }
}

/* Returns the status of a bucket download that failed to start or to arrive:
 * the device's recorded failure, or a failure of its own when the device
 * recorded none. */
static bl_status_t download_failed(const bl_device_copies_t *c, const char *what)
{
    bl_status_t st = bl_device_check(c->rt, c->device, "downloading a gradient bucket");
    return st != BL_OK ? st
                       : bl_fail(c->rt, BL_ERR_CUDA, "rank %d: a gradient bucket's download %s",
                                 c->rt->rank, what);
}

static bl_status_t fetch_bucket(size_t first, size_t count, long *ticket, void *copies)
{
    bl_device_copies_t *c = copies;
    long n = c->device->memory->to_host_start(c->model->grads + first, c->grads + first,
                                              count * sizeof(float));
    if (n < 0) {
        return download_failed(c, "did not start");
    }
    *ticket = n;
    return BL_OK;
}

static bl_status_t bucket_fetched(long ticket, int *done, void *copies)
{
    bl_device_copies_t *c = copies;
    int arrived = c->device->memory->arrived(ticket, 0);
    if (arrived < 0) {
        return download_failed(c, "failed");
    }
    *done = arrived;
    return BL_OK;
}

bl_grad_device_t bl_device_copies_staged_hooks(bl_device_copies_t *c)
{
    return (bl_grad_device_t){.fetch = fetch_bucket, .fetched = bucket_fetched, .arg = c};
}

void bl_device_copies_settle(bl_device_copies_t *c)
{
    if (c->device == NULL) {
        return;
    }
    char err[256];
    c->device->memory->finish(err, sizeof err); /* queued copies may still use the pinned array */
    if (c->pinned_grads != NULL) {
        c->device->memory->unpin(c->pinned_grads);
        c->pinned_grads = NULL;
    }
}

void bl_device_copies_free(bl_device_copies_t *c)
{
    if (c->device == NULL) {
        return;
    }
    /* Queued copies may still read or write these arrays (a failed step leaves
     * downloads in flight), so they are settled first. */
    bl_device_copies_settle(c);
    if (c->model != NULL && c->model->exec_params == c->params) {
        c->model->exec_device = NULL;
        c->model->exec_params = NULL;
        c->model->exec_grads = NULL;
    }
    c->device->memory->release(c->params);
    c->device->memory->release(c->grads);
    c->device->memory->release(c->velocity);
    memset(c, 0, sizeof *c);
}
