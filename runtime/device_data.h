/* A training set kept in device memory (a GPU rank's, or the mirror's):
 * the samples and labels uploaded once, so that each micro-batch is cut
 * out on the device (kernels.h's gather_rows) from its sample numbers,
 * instead of being gathered on the host and uploaded every step. Only an
 * in-memory dataset (IDX files, arrays) can be kept; one served by
 * callbacks, or one the device has no room for, stays on the host. */
#ifndef BL_DEVICE_DATA_H
#define BL_DEVICE_DATA_H

#include "dataset_impl.h"

typedef struct bl_device_data {
    const bl_device_t *device; /* NULL: not resident (the host path) */
    float *x;                  /* device (count, features) */
    int *y;                    /* device (count) */
    long count;
    int features;
} bl_device_data_t;

/* Keeps d on dev when it can: BL_OK with r->device set, or BL_OK with
 * r->device NULL and an info line saying why not (callbacks, no room);
 * an upload that fails is BL_ERR_CUDA. */
bl_status_t bl_device_data_init(bl_device_data_t *r, bl_runtime_t *rt, const bl_device_t *dev,
                                const bl_dataset_t *d);
void bl_device_data_free(bl_device_data_t *r);

#endif /* BL_DEVICE_DATA_H */
