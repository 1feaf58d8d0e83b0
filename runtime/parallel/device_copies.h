/* A trainer's copies of the model's state on a device with memory of its own (a
 * GPU, or the mirror test device): the parameters, the gradients and the
 * momentum, in one device allocation each and in the model's parameter layout
 * (so that gradient buckets are slices of one array, as on the CPU). The host
 * arrays (the model's params and grads, and the trainer's momentum) remain the
 * view of the API and of the checkpoints. They are brought up to date (a
 * download) whenever the library hands them out, after a run and before a
 * checkpoint, and the device copies are refreshed from them (an upload) after a
 * resume. While the copies exist, the model's passes run on the device. */
#ifndef BL_DEVICE_COPIES_H
#define BL_DEVICE_COPIES_H

#include "grad_sync.h"

typedef struct bl_device_copies {
    const bl_device_t *device; /* NULL: none (the rank computes on the host arrays) */
    bl_runtime_t *rt;          /* where failures are recorded */
    bl_model_t *model;
    size_t count;  /* the floats in each array: the model's parameter count */
    float *params; /* (count) on the device */
    float *grads;
    float *velocity;
    float *pinned_grads; /* the model's host gradients, when page-locked (pin_grads) */
} bl_device_copies_t;

/* Allocates the copies on dev, uploads the model's parameters and the host
 * momentum `velocity` (one float per parameter), zeroes the gradients and
 * points the model's passes at the copies. Returns BL_ERR_NO_MEM when dev has
 * no memory for them, or the upload's failure; on failure nothing stays
 * allocated. */
bl_status_t bl_device_copies_init(bl_device_copies_t *c, bl_runtime_t *rt, const bl_device_t *dev,
                                  bl_model_t *m, const float *velocity);
/* Downloads the parameters into the model's host array and the momentum into
 * velocity, and returns the device's check of the copies. A no-op (BL_OK)
 * without copies. */
bl_status_t bl_device_copies_download(bl_device_copies_t *c, bl_runtime_t *rt, float *velocity);
/* Uploads the model's host parameters and velocity into the copies after the
 * host arrays changed (a resume), and returns the device's check. A no-op
 * (BL_OK) without copies. */
bl_status_t bl_device_copies_upload(bl_device_copies_t *c, bl_runtime_t *rt, const float *velocity);
/* Page-locks the model's host gradient array, through which a staged reduction
 * (device_group.h) moves every bucket, so that the downloads overlap backward
 * and the uploads of the sums are queued instead of holding up the host. A
 * refusal is not an error: the array stays pageable and works as before, and a
 * debug line says so. */
void bl_device_copies_pin_grads(bl_device_copies_t *c, bl_runtime_t *rt);
/* Returns the gradient sync's hooks for a staged reduction (grad_sync.h): fetch
 * starts a bucket's download from the device gradients into the model's host
 * gradients, which overlaps the rest of backward, and fetched says whether that
 * download has arrived. */
bl_grad_device_t bl_device_copies_staged_hooks(bl_device_copies_t *c);
/* Waits for the device's queued work (including the copies from and into the
 * host arrays), then undoes pin_grads. It is a no-op without copies. */
void bl_device_copies_settle(bl_device_copies_t *c);
/* Frees the copies once the device's queued work is done (unlocking a pinned
 * array) and gives the model's passes back to the host. It is a no-op when
 * there are no copies. */
void bl_device_copies_free(bl_device_copies_t *c);

#endif /* BL_DEVICE_COPIES_H */
