/* The device a rank computes on (device.c): its choice and opening at
 * start-up, the buffers the library makes on it, and the check of its
 * queued work. The device's type is part of the runtime handle
 * (core/runtime_impl.h). */
#ifndef BL_DEVICE_H
#define BL_DEVICE_H

#include "runtime_impl.h"

/* The CPU: OpenBLAS on host memory. Passes run on it when no trainer has
 * put the model on another device. */
extern const bl_device_t bl_host_device;

/* Picks and opens this rank's device for cfg->device (device.c): the
 * GPU by the rank's place among the node's GPU ranks, its NUMA locality
 * and, for an unbound rank, the binding near it; one log line per GPU
 * rank on rank 0. Collective over rt->comm; every rank fails when one
 * does. */
bl_status_t bl_device_setup(bl_runtime_t *rt, int requested);
/* Closes the device (a GPU's context); the runtime's last call. */
void bl_device_close(bl_runtime_t *rt);

/* count elements of elem_nbytes on dev: its own memory when it has some,
 * else host memory from the runtime's allocator. NULL on failure (also
 * when the size overflows). Free with bl_buffer_free on the same dev. */
void *bl_buffer_alloc(bl_runtime_t *rt, const bl_device_t *dev, size_t count, size_t elem_nbytes);
void bl_buffer_free(const bl_allocator_t *a, const bl_device_t *dev, void *ptr);

/* dev's first failure since the last check, as BL_ERR_CUDA naming `what`
 * (BL_OK when none, and always on the CPU). Waits for the device. */
bl_status_t bl_device_check(bl_runtime_t *rt, const bl_device_t *dev, const char *what);
/* The same, but waits only for dev's kernels and copies, not for the
 * downloads started with to_host_start (kernels.h's finish_compute): a
 * layer's time then leaves out an earlier bucket's download. */
bl_status_t bl_device_check_compute(bl_runtime_t *rt, const bl_device_t *dev, const char *what);

#endif /* BL_DEVICE_H */
