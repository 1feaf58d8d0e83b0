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
    float *x;                  /* device (count, features), or NULL: not needed */
    int *y;                    /* device (count), or NULL: not needed */
    long count;
    int features;
} bl_device_data_t;

/* Keeps what a stage reads of d on dev (the inputs when need_x, the
 * labels when need_y) when it can: it must leave a tenth of the device's
 * memory, and at least 1 GiB, free for what is allocated later (NCCL,
 * cuBLAS, scratch, a layer move's buffers). BL_OK with r->device set, or
 * BL_OK with r->device NULL and an info line saying why not (callbacks,
 * no room, nothing needed); an upload that fails is BL_ERR_CUDA. */
bl_status_t bl_device_data_init(bl_device_data_t *r, bl_runtime_t *rt, const bl_device_t *dev,
                                const bl_dataset_t *d, int need_x, int need_y);
void bl_device_data_free(bl_device_data_t *r);

#endif /* BL_DEVICE_DATA_H */
