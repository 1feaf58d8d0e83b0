/* A training set kept in device memory (a GPU rank's, or the mirror's).
 * The samples and labels are uploaded once, so that each micro-batch is cut
 * out on the device (kernels.h's gather_rows) from its sample numbers,
 * instead of being gathered on the host and uploaded every step. Only an
 * in-memory dataset (from IDX files or arrays) can be kept; one served by
 * callbacks, or one that the device has no room for, stays on the host. */
#ifndef BL_DEVICE_DATA_H
#define BL_DEVICE_DATA_H

#include "dataset_impl.h"

typedef struct bl_device_data {
    const bl_device_t *device; /* NULL: not resident (the host path) */
    float *x;                  /* on the device, (count, features); NULL: not needed */
    int *y;                    /* on the device, (count); NULL: not needed */
    long count;
    int features;
} bl_device_data_t;

/* Keeps on dev what a stage reads of d (the inputs when need_x, the labels
 * when need_y), when it can. Returns BL_OK with r->device set when the set
 * is kept. Returns BL_OK with r->device NULL when it is not: for a dataset
 * of callbacks or for lack of room, with an info line that says so, and
 * without one for a device without memory of its own or when nothing is
 * needed. An upload that fails returns BL_ERR_CUDA. A kept set must leave a
 * tenth of the device's memory, and at least 1 GiB, free for what is
 * allocated later (NCCL, cuBLAS, scratch, a layer move's buffers).
 * bl_device_data_free releases what r holds and zeroes it. */
bl_status_t bl_device_data_init(bl_device_data_t *r, bl_runtime_t *rt, const bl_device_t *dev,
                                const bl_dataset_t *d, int need_x, int need_y);
void bl_device_data_free(bl_device_data_t *r);

#endif /* BL_DEVICE_DATA_H */
