/* This file keeps the training set in device memory (device_data.h). */
#include <string.h>

#include "device_data.h"
#include "device.h"

/* A kept set must leave a tenth of the device's memory free, and at least
 * this much (1 GiB). */
#define BL_DEVICE_DATA_SPARE_MIN ((size_t)1 << 30)

/* Returns whether `nbytes` more fit on dev and still leave the spare free.
 * A device that cannot tell (the mirror) has room. */
static int has_room(const bl_device_t *dev, size_t nbytes)
{
    size_t free_bytes = 0, total = 0;
    if (dev->memory->room == NULL || dev->memory->room(&free_bytes, &total) != 0) {
        return 1;
    }
    size_t spare = total / 10 > BL_DEVICE_DATA_SPARE_MIN ? total / 10 : BL_DEVICE_DATA_SPARE_MIN;
    return free_bytes > spare && free_bytes - spare >= nbytes;
}

bl_status_t bl_device_data_init(bl_device_data_t *r, bl_runtime_t *rt, const bl_device_t *dev,
                                const bl_dataset_t *d, int need_x, int need_y)
{
    memset(r, 0, sizeof *r);
    if (dev->memory == NULL || (!need_x && !need_y)) {
        return BL_OK;
    }
    if (d->x == NULL) {
        bl_log(rt, BL_LOG_INFO,
               "rank %d: %s serves samples by callbacks: batches are read on the host and "
               "uploaded",
               rt->rank, d->name);
        return BL_OK;
    }
    size_t values = need_x ? (size_t)d->count * (size_t)d->features : 0;
    size_t labels = need_y ? (size_t)d->count : 0;
    double mb = 4.0 * (double)(values + labels) / 1e6;
    if (has_room(dev, (values + labels) * 4)) {
        r->x = need_x ? bl_buffer_alloc(rt, dev, values, sizeof(float)) : NULL;
        r->y = need_y ? bl_buffer_alloc(rt, dev, labels, sizeof(int)) : NULL;
    }
    if ((need_x && r->x == NULL) || (need_y && r->y == NULL)) {
        bl_log(rt, BL_LOG_INFO,
               "rank %d: no room on %s for the training set (%.1f MB, leaving a tenth of the "
               "device free): batches are read on the host and uploaded",
               rt->rank, dev->name, mb);
        r->device = dev;
        bl_device_data_free(r);
        return BL_OK;
    }
    if (need_x) {
        dev->memory->to_device(r->x, d->x, values * sizeof(float));
    }
    if (need_y) {
        dev->memory->to_device(r->y, d->y, labels * sizeof(int));
    }
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
           rt->rank, mb, dev->name);
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
