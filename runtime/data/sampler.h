/* The global-batch sampler. Batch t of epoch e is a pure function of
 * (seed, e, t): the samples at positions [tB, (t+1)B) of epoch e's order,
 * where the order is a seeded permutation of the dataset (shuffle on) or the
 * file order (shuffle off). Global step s maps to e = s / steps_per_epoch,
 * t = s % steps_per_epoch; the last partial batch of an epoch is dropped so
 * every step has exactly B samples. Plans later only cut this batch into
 * slices: they never change which samples a step trains on. */
#ifndef BL_SAMPLER_H
#define BL_SAMPLER_H

#include "internal.h"

typedef struct bl_sampler {
    long count; /* samples in the dataset */
    int batch;  /* B */
    uint64_t seed;
    int shuffle;
    long steps_per_epoch; /* floor(count / B) */
    long order_epoch;     /* the epoch `order` holds, -1 before the first */
    long *order;          /* count sample indices: this epoch's order */
    const bl_allocator_t *allocator;
} bl_sampler_t;

/* count >= batch >= 1, else BL_ERR_INVALID_ARG with the reason in err. */
bl_status_t bl_sampler_init(bl_sampler_t *s, long count, int batch, uint64_t seed, int shuffle,
                            const bl_allocator_t *a, bl_error_t *err);
void bl_sampler_free(bl_sampler_t *s);

/* The B sample indices of global step `step` (>= 0) into indices. */
void bl_sampler_batch(bl_sampler_t *s, long step, long *indices);

#endif /* BL_SAMPLER_H */
