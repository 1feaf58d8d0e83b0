/* A trainer's copies of the model's state on a device with memory of its
 * own (a GPU, or the mirror test device): the parameters, the gradients
 * and the momentum, one device allocation each in the model's parameter
 * layout (so gradient buckets are slices of one array, as on the CPU).
 * The host arrays (the model's params and grads, the trainer's momentum)
 * stay the API's and the checkpoints' view: they are brought up to date
 * (download) whenever the library hands them out — after a run, before a
 * checkpoint — and the device copies from them (upload) after a resume.
 * While the copies exist the model's passes run on the device. */
#ifndef BL_DEVICE_COPIES_H
#define BL_DEVICE_COPIES_H

#include "grad_sync.h"

typedef struct bl_device_copies {
    const bl_device_t *device; /* NULL: none (the rank computes on the host arrays) */
    bl_runtime_t *rt;          /* failures go there */
    bl_model_t *model;
    size_t count;  /* floats in each array: the model's parameter count */
    float *params; /* device (count) */
    float *grads;
    float *velocity;
    float *pinned_grads; /* the model's host gradients, when page-locked (pin_grads) */
} bl_device_copies_t;

/* Allocates the copies on dev, uploads the model's parameters and the
 * host momentum (count floats), zeroes the gradients and points the
 * model's passes at them. */
bl_status_t bl_device_copies_init(bl_device_copies_t *c, bl_runtime_t *rt, const bl_device_t *dev,
                                  bl_model_t *m, const float *velocity);
/* Parameters into the model's host array and momentum into velocity. */
bl_status_t bl_device_copies_download(bl_device_copies_t *c, bl_runtime_t *rt, float *velocity);
/* The other way, after the host arrays changed (a resume). */
bl_status_t bl_device_copies_upload(bl_device_copies_t *c, bl_runtime_t *rt, const float *velocity);
/* Page-locks the model's host gradient array, through which a staged
 * reduction (device_group.h) moves every bucket: the downloads then
 * overlap backward, and the uploads of the sums are queued instead of
 * holding the host. A refusal is not an error: the array stays pageable
 * and works as before (a debug line says so). */
void bl_device_copies_pin_grads(bl_device_copies_t *c, bl_runtime_t *rt);
/* The gradient sync's hooks for a staged reduction (grad_sync.h): fetch
 * starts a bucket's download from the device gradients into the model's
 * host gradients, overlapping the rest of backward; fetched says whether
 * it has arrived. */
bl_grad_device_t bl_device_copies_staged_hooks(bl_device_copies_t *c);
/* Waits for the device's queued work (copies from and into the host
 * arrays included), then undoes pin_grads. No-op without copies. */
void bl_device_copies_settle(bl_device_copies_t *c);
/* Frees the copies (after the device's queued work: a pinned array is
 * unlocked) and gives the model's passes back to the host. No-op when
 * there are none. */
void bl_device_copies_free(bl_device_copies_t *c);

#endif /* BL_DEVICE_COPIES_H */
