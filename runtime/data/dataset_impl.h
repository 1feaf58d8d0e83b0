/* Datasets inside the runtime: in-memory (IDX files, copies) or callbacks. */
#ifndef BL_DATASET_IMPL_H
#define BL_DATASET_IMPL_H

#include "runtime_impl.h"

struct bl_dataset {
    bl_runtime_t *rt;
    long count;
    int features;
    int classes;
    char name[512]; /* for messages: the image file's path, or "in-memory"/"callback" dataset */
    float *x;       /* in memory: (count, features) */
    int *y;         /* in memory: count labels */
    bl_dataset_ops_t ops; /* callbacks: used when x is NULL */
    void *state;
};

/* Copies samples indices[0..n) into x (n, features) and y (n). Labels from
 * callbacks are checked against classes. y may be NULL (inputs only); x
 * may be NULL for an in-memory dataset (labels only). */
bl_status_t bl_dataset_gather(bl_dataset_t *d, const long *indices, int n, float *x, int *y);

/* Copies the contiguous samples [first, first + n). */
bl_status_t bl_dataset_gather_range(bl_dataset_t *d, long first, int n, float *x, int *y);

#endif /* BL_DATASET_IMPL_H */
