/* IDX files (the MNIST family's format). This module reads and validates
 * an (images, labels) pair, gzip-compressed or raw. It only parses files
 * and makes no MPI call.
 *
 * The IDX layout is a magic number, 0x00 0x00 <dtype> <ndims>, then ndims
 * big-endian uint32 dimensions, then the data, row-major. Only dtype 0x08
 * (unsigned byte) is accepted: images with ndims >= 2 (n × d1 × ...), and
 * labels with ndims == 1 (n). */
#ifndef BL_IDX_H
#define BL_IDX_H

#include <stdint.h>

#include "internal.h"

typedef struct bl_idx_pair {
    long count;      /* the samples, n */
    int features;    /* d1 · d2 · ... of the image file */
    int classes;     /* the classes argument, or max label + 1 when it was 0 */
    uint8_t *pixels; /* (count, features), raw bytes 0..255 */
    uint8_t *labels; /* count labels, each < classes */
} bl_idx_pair_t;

/* Reads both files into *out and checks everything. Returns BL_OK; on
 * failure it returns BL_ERR_IO (cannot open or read), BL_ERR_FORMAT
 * (malformed), BL_ERR_NO_MEM or BL_ERR_INVALID_ARG (a NULL path, classes
 * < 0), with err->msg naming the file and the field, and leaves *out zeroed.
 * On success the caller frees *out with bl_idx_pair_free and the same a.
 * The checks cover the magic, the dtype, ndims, every dimension being
 * non-zero, the product of the dimensions (without overflow, and below
 * INT_MAX features), a file length equal to what the header declares (no
 * short data, no trailing bytes; for .gz, of the uncompressed stream, and
 * zlib ignores bytes after the end of a gzip stream), a label count equal
 * to the image count, and each label being below classes when classes > 0.
 * The data buffer grows as data is actually read (from 64 KiB, doubling,
 * capped at the declared size), so a short file that declares gigabytes
 * never gets them allocated. zlib allocates its own stream state, outside
 * the allocator hooks. */
bl_status_t bl_idx_load_pair(const char *images_path, const char *labels_path, int classes,
                             const bl_allocator_t *a, bl_error_t *err, bl_idx_pair_t *out);

void bl_idx_pair_free(bl_idx_pair_t *p, const bl_allocator_t *a);

#endif /* BL_IDX_H */
