/* The training set in device memory (device_data.h). */
#include <string.h>

#include "device_data.h"

bl_status_t bl_device_data_init(bl_device_data_t *r, bl_runtime_t *rt, const bl_device_t *dev,
                                const bl_dataset_t *d)
{
    memset(r, 0, sizeof *r);
    if (dev->memory == NULL) {
        return BL_OK;
    }
    if (d->x == NULL) {
        bl_log(rt, BL_LOG_INFO,
               "rank %d: %s serves samples by callbacks: batches are read on the "
               "host and uploaded",
               rt->rank, d->name);
        return BL_OK;
    }
    size_t values = (size_t)d->count * (size_t)d->features;
    r->x = bl_buffer_alloc(rt, dev, values, sizeof(float));
    r->y = bl_buffer_alloc(rt, dev, (size_t)d->count, sizeof(int));
    if (r->x == NULL || r->y == NULL) {
        bl_log(rt, BL_LOG_INFO,
               "rank %d: no room on %s for the training set (%.1f MB): batches are read on the "
               "host and uploaded",
               rt->rank, dev->name, 4.0 * (double)(values + (size_t)d->count) / 1e6);
        r->device = dev;
        bl_device_data_free(r);
        return BL_OK;
    }
    dev->memory->to_device(r->x, d->x, values * sizeof(float));
    dev->memory->to_device(r->y, d->y, (size_t)d->count * sizeof(int));
    r->device = dev;
    r->count = d->count;
    r->features = d->features;
    bl_status_t st = bl_device_check(rt, dev, "uploading the training set");
    if (st != BL_OK) {
        bl_device_data_free(r);
        return st;
    }
    bl_log(rt, BL_LOG_INFO,
           "rank %d: the training set (%.1f MB) is kept on %s: batches are cut "
           "out there",
           rt->rank, 4.0 * (double)(values + (size_t)d->count) / 1e6, dev->name);
    return BL_OK;
}

void bl_device_data_free(bl_device_data_t *r)
{
    if (r->device != NULL) {
        r->device->memory->release(r->x);
        r->device->memory->release(r->y);
    }
    memset(r, 0, sizeof *r);
}
