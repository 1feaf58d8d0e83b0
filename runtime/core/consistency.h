/* The start-up consistency check. Every rank describes what must be
 * identical across the job (the configuration, the model's shape, the
 * dataset's header, the initial parameters) as named 64-bit values. One
 * all-gather compares them, and a difference stops the job before step 0
 * with a message that names the rank and the field, instead of a silent
 * divergence or a hang later. */
#ifndef BL_CONSISTENCY_H
#define BL_CONSISTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "runtime_impl.h"

typedef enum { BL_CHECK_INT, BL_CHECK_FLOAT, BL_CHECK_DIGEST } bl_check_kind_t;

typedef struct bl_check_field {
    const char *name;     /* the field's name, e.g. "batch" or "model layers" */
    bl_check_kind_t kind; /* how the value is printed in a message */
    uint64_t value;       /* the integer itself, bl_float_bits(x) or bl_digest(...) */
} bl_check_field_t;

/* Checks that every rank holds the same values as rank 0. Collective over
 * rt->comm: every rank must call it with the same count (the field list
 * comes from code, not from input). At most 64 fields are allowed; a count
 * below 0 or above 64 returns BL_ERR_INVALID_ARG. Returns BL_OK when every
 * rank has the same values as rank 0; otherwise every rank returns
 * BL_ERR_MISMATCH with a message that names the first differing rank and
 * field and gives both values. A single rank returns BL_OK at once. Other
 * failures return BL_ERR_NO_MEM or the status of the bounded all-gather. */
bl_status_t bl_check_same_on_all_ranks(bl_runtime_t *rt, const char *what,
                                       const bl_check_field_t *fields, int count);

/* Returns a 64-bit digest of nbytes bytes (zlib's CRC-32 of the bytes,
 * mixed with the length), for fields that stand for arrays or strings. */
uint64_t bl_digest(const void *bytes, size_t nbytes);

/* Returns the bits of f as a field value, so that the comparison is exact,
 * NaN included. */
uint64_t bl_float_bits(float f);

#endif /* BL_CONSISTENCY_H */
