/* Datasets: IDX files or arrays held in memory as float32, or samples that
 * the caller's callbacks serve. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dataset_impl.h"
#include "idx.h"

/* Makes *out, a dataset record with no samples yet; the caller fills in x
 * and y, or ops. Returns BL_OK, BL_ERR_INVALID_ARG for a shape that is not
 * positive, or BL_ERR_NO_MEM. */
static bl_status_t dataset_new(bl_runtime_t *rt, const char *name, long count, int features,
                               int classes, bl_dataset_t **out)
{
    if (count <= 0 || features <= 0 || classes <= 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "%s: shape count=%ld features=%d classes=%d: each must be positive", name,
                       count, features, classes);
    }
    bl_dataset_t *d = bl_mem_alloc(bl_rt_allocator(rt), sizeof *d);
    if (d == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a dataset");
    }
    memset(d, 0, sizeof *d);
    d->rt = rt;
    d->count = count;
    d->features = features;
    d->classes = classes;
    snprintf(d->name, sizeof d->name, "%s", name);
    *out = d;
    return BL_OK;
}

/* Allocates d->x and d->y for d->count samples. Returns BL_OK or
 * BL_ERR_NO_MEM (also when the size overflows); what was allocated stays in
 * d for bl_dataset_destroy. */
static bl_status_t dataset_alloc_arrays(bl_dataset_t *d)
{
    const bl_allocator_t *a = bl_rt_allocator(d->rt);
    size_t samples = (size_t)d->count, features = (size_t)d->features;
    if (samples > SIZE_MAX / sizeof(float) / features) {
        return bl_fail(d->rt, BL_ERR_NO_MEM, "%s: %ld samples of %d features overflow memory",
                       d->name, d->count, d->features);
    }
    d->x = bl_mem_array(a, samples * features, sizeof(float));
    d->y = bl_mem_array(a, (size_t)d->count, sizeof(int));
    if (d->x == NULL || d->y == NULL) {
        return bl_fail(d->rt, BL_ERR_NO_MEM, "no memory for %ld samples of %d features", d->count,
                       d->features);
    }
    return BL_OK;
}

/* For classes inferred from the largest label, warns when a class below it
 * has no sample, naming the file and the empty classes. Without the
 * warning, a stray label (say 200 in a 10-class file) would widen the model
 * silently. */
static void warn_empty_classes(bl_runtime_t *rt, const char *labels_path, const bl_idx_pair_t *p)
{
    int seen[256] = {0};
    for (long i = 0; i < p->count; i++) {
        seen[p->labels[i]] = 1;
    }
    char list[160] = "";
    size_t used = 0;
    int empty = 0;
    for (int c = 0; c < p->classes; c++) {
        if (seen[c] || (c > 0 && !seen[c - 1])) {
            continue;
        }
        int end = c;
        while (end + 1 < p->classes && !seen[end + 1]) {
            end++;
        }
        empty += end - c + 1;
        if (used < sizeof list) {
            int k = end == c
                        ? snprintf(list + used, sizeof list - used, "%s%d", used ? ", " : "", c)
                        : snprintf(list + used, sizeof list - used, "%s%d-%d", used ? ", " : "", c,
                                   end);
            used += k > 0 ? (size_t)k : 0;
        }
    }
    if (empty > 0) {
        bl_log(rt, BL_LOG_WARN,
               "%s: the largest label is %d, so there are %d classes, but %d of them %s no "
               "sample (%s%s); set the number of classes (ballast-train --classes) to catch a "
               "wrong label",
               labels_path, p->classes - 1, p->classes, empty, empty == 1 ? "has" : "have", list,
               used >= sizeof list ? ", ..." : "");
    }
}

bl_status_t bl_dataset_open_idx(bl_runtime_t *rt, const char *images_path, const char *labels_path,
                                int classes, bl_dataset_t **out)
{
    if (out == NULL || rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_error_t err = {0};
    bl_idx_pair_t pair;
    bl_dataset_t *d = NULL;
    bl_status_t st = bl_idx_load_pair(images_path, labels_path, classes, a, &err, &pair);
    if (st != BL_OK) {
        return bl_fail_from(rt, &err);
    }
    if (classes == 0) {
        warn_empty_classes(rt, labels_path, &pair);
    }
    st = dataset_new(rt, images_path, pair.count, pair.features, pair.classes, &d);
    if (st == BL_OK) {
        st = dataset_alloc_arrays(d);
    }
    if (st != BL_OK) {
        goto fail;
    }
    /* The pixels, 0..255, are scaled to [0, 1]. */
    size_t n = (size_t)pair.count * (size_t)pair.features;
    for (size_t i = 0; i < n; i++) {
        d->x[i] = (float)pair.pixels[i] * (1.0f / 255.0f);
    }
    for (long i = 0; i < pair.count; i++) {
        d->y[i] = pair.labels[i];
    }
    bl_idx_pair_free(&pair, a);
    bl_log(rt, BL_LOG_DEBUG, "%s: %ld samples of %d features, %d classes", images_path, d->count,
           d->features, d->classes);
    *out = d;
    return BL_OK;
fail:
    bl_idx_pair_free(&pair, a);
    bl_dataset_destroy(d);
    return st;
}

bl_status_t bl_dataset_from_memory(bl_runtime_t *rt, long count, int features, int classes,
                                   const float *x, const int *y, bl_dataset_t **out)
{
    if (out == NULL || rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (x == NULL || y == NULL) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "dataset from memory: x and y must not be NULL");
    }
    bl_dataset_t *d = NULL;
    bl_status_t st = dataset_new(rt, "in-memory dataset", count, features, classes, &d);
    if (st != BL_OK) {
        return st;
    }
    for (long i = 0; i < count; i++) {
        if (y[i] < 0 || y[i] >= classes) {
            bl_dataset_destroy(d);
            return bl_fail(rt, BL_ERR_INVALID_ARG,
                           "dataset from memory: label %d of sample %ld is outside [0, %d)", y[i],
                           i, classes);
        }
    }
    st = dataset_alloc_arrays(d);
    if (st != BL_OK) {
        bl_dataset_destroy(d);
        return st;
    }
    memcpy(d->x, x, (size_t)count * (size_t)features * sizeof(float));
    memcpy(d->y, y, (size_t)count * sizeof(int));
    *out = d;
    return BL_OK;
}

bl_status_t bl_dataset_from_callbacks(bl_runtime_t *rt, long count, int features, int classes,
                                      const bl_dataset_ops_t *ops, void *state, bl_dataset_t **out)
{
    if (out == NULL || rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (ops == NULL || ops->get == NULL) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "dataset from callbacks: ops->get is required");
    }
    bl_dataset_t *d = NULL;
    bl_status_t st = dataset_new(rt, "callback dataset", count, features, classes, &d);
    if (st != BL_OK) {
        return st;
    }
    d->ops = *ops;
    d->state = state;
    *out = d;
    return BL_OK;
}

void bl_dataset_destroy(bl_dataset_t *d)
{
    if (d == NULL) {
        return;
    }
    const bl_allocator_t *a = bl_rt_allocator(d->rt);
    if (d->ops.destroy != NULL) {
        d->ops.destroy(d->state);
    }
    bl_mem_free(a, d->x);
    bl_mem_free(a, d->y);
    bl_mem_free(a, d);
}

long bl_dataset_count(const bl_dataset_t *d)
{
    return d == NULL ? 0 : d->count;
}

int bl_dataset_features(const bl_dataset_t *d)
{
    return d == NULL ? 0 : d->features;
}

int bl_dataset_classes(const bl_dataset_t *d)
{
    return d == NULL ? 0 : d->classes;
}

/* Gets one sample from the callbacks and checks its label. Returns BL_OK,
 * the status of a failed get(), or BL_ERR_FORMAT for a label outside
 * [0, classes), recorded on d's runtime. */
static bl_status_t get_from_callbacks(bl_dataset_t *d, long index, float *x, int *y)
{
    *y = -1; /* a get() that forgets the label is caught below, never read uninitialised */
    bl_status_t st = d->ops.get(d->state, index, x, y);
    if (st != BL_OK) {
        return bl_fail(d->rt, st, "dataset callback get(%ld) failed: %s", index,
                       bl_status_string(st));
    }
    if (*y < 0 || *y >= d->classes) {
        return bl_fail(d->rt, BL_ERR_FORMAT,
                       "dataset callback gave label %d for sample %ld, outside [0, %d)", *y, index,
                       d->classes);
    }
    return BL_OK;
}

bl_status_t bl_dataset_gather(bl_dataset_t *d, const long *indices, int n, float *x, int *y)
{
    size_t row = (size_t)d->features;
    for (int i = 0; i < n; i++) {
        long s = indices[i];
        if (d->x != NULL) {
            if (x != NULL) {
                memcpy(x + (size_t)i * row, d->x + (size_t)s * row, row * sizeof(float));
            }
            if (y != NULL) {
                y[i] = d->y[s];
            }
        } else {
            int label;
            bl_status_t st = get_from_callbacks(d, s, x + (size_t)i * row, &label);
            if (st != BL_OK) {
                return st;
            }
            if (y != NULL) {
                y[i] = label;
            }
        }
    }
    return BL_OK;
}

bl_status_t bl_dataset_gather_range(bl_dataset_t *d, long first, int n, float *x, int *y)
{
    size_t row = (size_t)d->features;
    if (d->x != NULL) {
        memcpy(x, d->x + (size_t)first * row, (size_t)n * row * sizeof(float));
        memcpy(y, d->y + first, (size_t)n * sizeof(int));
        return BL_OK;
    }
    for (int i = 0; i < n; i++) {
        bl_status_t st = get_from_callbacks(d, first + i, x + (size_t)i * row, &y[i]);
        if (st != BL_OK) {
            return st;
        }
    }
    return BL_OK;
}
