/* The device that a rank computes on (device.c): how it is chosen and
 * opened at start-up, the buffers that the library makes on it, and the
 * check of its queued work. The device's type is part of the runtime handle
 * (core/runtime_impl.h). */
#ifndef BL_DEVICE_H
#define BL_DEVICE_H

#include "runtime_impl.h"

/* The CPU device: OpenBLAS on host memory. Passes run on it when no
 * trainer has put the model on another device. */
extern const bl_device_t bl_host_device;

/* Picks and opens this rank's device for `requested`, the config's device
 * kind. Collective over rt->comm: every rank must call it, and every
 * rank fails when one does. A GPU is picked by the rank's place among the
 * node's GPU ranks; the rank learns the GPU's NUMA locality and, when it is
 * unbound, binds itself near the GPU. Rank 0 logs one line per GPU rank. */
bl_status_t bl_device_setup(bl_runtime_t *rt, int requested);
/* Closes the device (a GPU's context) and puts the CPU device in its place.
 * The runtime calls it when it is destroyed, and when the set-up fails. */
void bl_device_close(bl_runtime_t *rt);

/* Allocates count elements of elem_nbytes bytes each on dev: in the
 * device's own memory when it has some, else in host memory from the
 * runtime's allocator. Returns NULL on failure (also when the size
 * overflows). The caller owns the buffer and frees it with bl_buffer_free on
 * the same dev. */
void *bl_buffer_alloc(bl_runtime_t *rt, const bl_device_t *dev, size_t count, size_t elem_nbytes);
void bl_buffer_free(const bl_allocator_t *a, const bl_device_t *dev, void *ptr);

/* Waits for the device and returns its first failure since the last check
 * as BL_ERR_CUDA, with a message that names `what`. Returns BL_OK when there
 * was none, and always on the CPU. */
bl_status_t bl_device_check(bl_runtime_t *rt, const bl_device_t *dev, const char *what);
/* The same as bl_device_check, but it waits only for dev's kernels and
 * copies, not for the downloads started with to_host_start (kernels.h's
 * finish_compute), so that a layer's time leaves out an earlier bucket's
 * download. */
bl_status_t bl_device_check_compute(bl_runtime_t *rt, const bl_device_t *dev, const char *what);

#endif /* BL_DEVICE_H */
