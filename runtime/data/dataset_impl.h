/* The inside of a dataset: samples held in memory (read from IDX files, or
 * copied from the caller's arrays) or served by the caller's callbacks. */
#ifndef BL_DATASET_IMPL_H
#define BL_DATASET_IMPL_H

#include "runtime_impl.h"

struct bl_dataset {
    bl_runtime_t *rt;
    long count;
    int features;
    int classes;
    /* for messages: the image file's path, "in-memory dataset" or "callback dataset" */
    char name[512];
    float *x;             /* in memory: (count, features) */
    int *y;               /* in memory: count labels */
    bl_dataset_ops_t ops; /* callbacks: used when x is NULL */
    void *state;
};

/* Copies the samples indices[0..n) into x, (n, features), and y, (n).
 * Returns BL_OK, or a callback's failure recorded on d's runtime: a failed
 * get(), or BL_ERR_FORMAT for a label outside [0, classes) (labels from
 * callbacks are checked against classes). y may be NULL (for the inputs
 * only), and x may be NULL for an in-memory dataset (for the labels only). */
bl_status_t bl_dataset_gather(bl_dataset_t *d, const long *indices, int n, float *x, int *y);

/* Copies the contiguous samples [first, first + n) in the same way; here
 * neither x nor y may be NULL. */
bl_status_t bl_dataset_gather_range(bl_dataset_t *d, long first, int n, float *x, int *y);

#endif /* BL_DATASET_IMPL_H */
