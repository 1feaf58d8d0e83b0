/* The global-batch sampler (sampler.h): each batch is a pure function of
 * (seed, epoch, step). */
#include <string.h>

#include "sampler.h"

bl_status_t bl_sampler_init(bl_sampler_t *s, long count, int batch, uint64_t seed, int shuffle,
                            const bl_allocator_t *a, bl_error_t *err)
{
    memset(s, 0, sizeof *s);
    if (batch <= 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "batch size %d must be positive", batch);
    }
    if (count < batch) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "batch size %d is larger than the dataset's %ld samples", batch, count);
    }
    s->order = bl_mem_array(a, (size_t)count, sizeof *s->order);
    if (s->order == NULL) {
        return bl_error_set(err, BL_ERR_NO_MEM, "no memory for a %ld-sample order", count);
    }
    s->count = count;
    s->batch = batch;
    s->seed = seed;
    s->shuffle = shuffle;
    s->steps_per_epoch = count / batch;
    s->order_epoch = -1;
    s->allocator = a;
    return BL_OK;
}

void bl_sampler_free(bl_sampler_t *s)
{
    bl_mem_free(s->allocator, s->order);
    memset(s, 0, sizeof *s);
}

/* Builds epoch e's order: the identity, then (when shuffle is on) a
 * Fisher–Yates shuffle drawn from a generator seeded by (seed, e) alone, so
 * that any epoch can be rebuilt on its own. */
static void build_order(bl_sampler_t *s, long epoch)
{
    for (long i = 0; i < s->count; i++) {
        s->order[i] = i;
    }
    if (s->shuffle) {
        bl_rng_t r;
        /* A domain tag keeps the shuffle streams apart from the per-layer
         * init streams that are derived from the same seed. */
        bl_rng_init(&r, bl_seed_mix(bl_seed_mix(s->seed, BL_SEED_DOMAIN_SHUFFLE), (uint64_t)epoch));
        for (long i = s->count - 1; i > 0; i--) {
            long j = (long)bl_rng_below(&r, (uint64_t)i + 1);
            long t = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = t;
        }
    }
    s->order_epoch = epoch;
}

void bl_sampler_batch(bl_sampler_t *s, long step, long *indices)
{
    long epoch = step / s->steps_per_epoch;
    long t = step % s->steps_per_epoch;
    if (epoch != s->order_epoch) {
        build_order(s, epoch);
    }
    memcpy(indices, s->order + t * (long)s->batch, (size_t)s->batch * sizeof *indices);
}
