/* The global-batch sampler. Batch t of epoch e is a pure function of
 * (seed, e, t): the samples at positions [tB, (t+1)B) of epoch e's order,
 * where the order is a seeded permutation of the dataset (shuffle on) or the
 * file order (shuffle off). Global step s maps to e = s / steps_per_epoch
 * and t = s % steps_per_epoch; the last partial batch of an epoch is
 * dropped, so that every step has exactly B samples. The plans later only
 * cut this batch into slices: they never change which samples a step trains
 * on. */
#ifndef BL_SAMPLER_H
#define BL_SAMPLER_H

#include "internal.h"

typedef struct bl_sampler {
    long count; /* the samples in the dataset */
    int batch;  /* B, the global batch size */
    uint64_t seed;
    int shuffle;
    long steps_per_epoch; /* floor(count / B) */
    long order_epoch;     /* the epoch that `order` holds; -1 before the first */
    long *order;          /* count sample indices: this epoch's order */
    const bl_allocator_t *allocator;
} bl_sampler_t;

/* Sets up s for a dataset of count samples and a global batch of `batch`
 * samples. Returns BL_OK; BL_ERR_INVALID_ARG, with the reason in err,
 * unless count >= batch >= 1; or BL_ERR_NO_MEM. The caller frees s with
 * bl_sampler_free, which uses the allocator a that s keeps. */
bl_status_t bl_sampler_init(bl_sampler_t *s, long count, int batch, uint64_t seed, int shuffle,
                            const bl_allocator_t *a, bl_error_t *err);
void bl_sampler_free(bl_sampler_t *s);

/* Writes the B sample indices of global step `step` (>= 0) into indices. */
void bl_sampler_batch(bl_sampler_t *s, long step, long *indices);

#endif /* BL_SAMPLER_H */
