/* What the GPT-2 model's files (gpt2.c, gpt2_acts.c, gpt2_passes.c,
 * gpt2_adamw.c) share and callers do not need: the model's device memory.
 * Each helper works on host memory (through the model's allocator, or
 * memcpy) when g->memory is NULL, else on the device's memory. */
#ifndef BL_GPT2_IMPL_H
#define BL_GPT2_IMPL_H

#include <stddef.h>

#include "gpt2.h"

/* Returns nbytes of memory where g's kernels run, or NULL on failure. */
void *bl_gpt2_dev_alloc(const bl_gpt2_t *g, size_t nbytes);
/* Frees what bl_gpt2_dev_alloc returned; NULL is a no-op. */
void bl_gpt2_dev_free(const bl_gpt2_t *g, void *ptr);
/* Copies nbytes of host memory src to dst (g's memory): 0, or -1 when the
 * device's copy fails. */
int bl_gpt2_dev_put(const bl_gpt2_t *g, void *dst, const void *src, size_t nbytes);

/* For a BL_GPT2_SPANS model: (re)reserves its span for `arrays` (2 or 4)
 * arrays of param_count floats, with nothing held, and points params,
 * grads, adam_m and adam_v into it (the moments NULL with 2). Returns BL_OK
 * or BL_ERR_NO_MEM. */
bl_status_t bl_gpt2_reserve(bl_gpt2_t *g, int arrays, bl_error_t *err);

/* Sets [*lo, *hi) to the elements of range `tensor` (a GPT-2 tensor's id, or
 * BL_GPT2_TENSOR_COUNT + k for user layer k), counted from its start, that
 * the held units own, and returns 1; 0 (with an empty range) when none is
 * held. */
int bl_gpt2_held_part(const bl_gpt2_t *g, int tensor, size_t *lo, size_t *hi);

#endif /* BL_GPT2_IMPL_H */
