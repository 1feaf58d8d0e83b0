/* Start-up consistency: every rank describes what must be identical across
 * the job (configuration, model shape, dataset header, initial parameters)
 * as named 64-bit values; one all-gather compares them, and a difference
 * stops the job before step 0 with a message naming the rank and the field
 * instead of a silent divergence or a hang later. */
#ifndef BL_CONSISTENCY_H
#define BL_CONSISTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "runtime_impl.h"

typedef enum { BL_CHECK_INT, BL_CHECK_FLOAT, BL_CHECK_DIGEST } bl_check_kind_t;

typedef struct bl_check_field {
    const char *name;     /* "batch", "model layers", ... */
    bl_check_kind_t kind; /* how the value prints in a message */
    uint64_t value;       /* the integer, bl_float_bits(x), or bl_digest(...) */
} bl_check_field_t;

/* Collective over rt->comm. BL_OK when every rank has the same values as
 * rank 0, else BL_ERR_MISMATCH on every rank, naming the first differing
 * rank and field with both values. count must be the same on every rank
 * (the field list comes from code, not input). At most 64 fields. */
bl_status_t bl_check_same_on_all_ranks(bl_runtime_t *rt, const char *what,
                                       const bl_check_field_t *fields, int count);

/* A 64-bit digest of bytes (zlib's CRC-32 of the bytes, mixed with the
 * length), for fields that stand for arrays or strings. */
uint64_t bl_digest(const void *bytes, size_t nbytes);

/* The bits of a float as a field value (compares exactly, NaN included). */
uint64_t bl_float_bits(float f);

#endif /* BL_CONSISTENCY_H */
