/* IDX files (the MNIST family's format): reading and validating an
 * (images, labels) pair, gzip-compressed or raw. Pure file parsing: no MPI.
 *
 * IDX layout: magic = 0x00 0x00 <dtype> <ndims>, then ndims big-endian
 * uint32 dimensions, then the data, row-major. Only dtype 0x08 (unsigned
 * byte) is accepted: images with ndims >= 2 (n × d1 × ...), labels with
 * ndims == 1 (n). */
#ifndef BL_IDX_H
#define BL_IDX_H

#include <stdint.h>

#include "internal.h"

typedef struct bl_idx_pair {
    long count;      /* samples n */
    int features;    /* d1 · d2 · ... of the image file */
    int classes;     /* the classes argument, or max label + 1 when it was 0 */
    uint8_t *pixels; /* (count, features), raw bytes 0..255 */
    uint8_t *labels; /* count labels, each < classes */
} bl_idx_pair_t;

/* Reads both files and checks everything: magic, dtype, ndims, every
 * dimension non-zero, the product of dimensions without overflow and below
 * INT_MAX features, file length equal to what the header declares (no short
 * data, no trailing bytes, for .gz the uncompressed stream; bytes after the
 * end of a gzip stream are ignored by zlib), label count == image count, and
 * each label < classes when classes > 0. The data buffer grows as data is
 * actually read (from 64 KiB, doubling, capped at the declared size), so a
 * short file that declares gigabytes never gets them allocated. zlib's own
 * stream state is allocated by zlib, outside the allocator hooks. On failure
 * returns BL_ERR_IO (cannot open or read), BL_ERR_FORMAT (malformed),
 * BL_ERR_NO_MEM or BL_ERR_INVALID_ARG (NULL path, classes < 0), with
 * err->msg naming the file and the field, and leaves *out zeroed. */
bl_status_t bl_idx_load_pair(const char *images_path, const char *labels_path, int classes,
                             const bl_allocator_t *a, bl_error_t *err, bl_idx_pair_t *out);

void bl_idx_pair_free(bl_idx_pair_t *p, const bl_allocator_t *a);

#endif /* BL_IDX_H */
