/* A pipeline stage's GPT-2 model holds memory for its own units only
 * (gpt2.h: BL_GPT2_SPANS, bl_gpt2_hold_units): its four arrays are one span
 * (span.h), and a unit's ranges in each array are held or given back. */
#include <errno.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_impl.h"

/* The arrays a model has: params and grads, and the moments unless it was
 * made without them. */
static int array_count(const bl_gpt2_t *g)
{
    return g->adam_m != NULL ? 4 : 2;
}

/* Writes the byte ranges (from the span's start) of units [first, last) in
 * arrays [array0, array1) to out, and returns their number. */
static int unit_bytes(const bl_gpt2_t *g, int first, int last, int array0, int array1,
                      bl_span_range_t *out)
{
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    const int n = first < last ? bl_gpt2_unit_ranges(g, first, last, ranges) : 0;
    int m = 0;
    for (int k = array0; k < array1; k++) {
        for (int r = 0; r < n; r++) {
            const size_t at = (size_t)k * g->param_count + ranges[r].offset;
            out[m++] =
                (bl_span_range_t){at * sizeof(float), (at + ranges[r].count) * sizeof(float)};
        }
    }
    return m;
}

bl_status_t bl_gpt2_hold_units(bl_gpt2_t *g, int first, int last, bl_error_t *err)
{
    const int units = g->config.num_layers + 2;
    if (first < 0 || first > last || last > units) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 model: units %d..%d are not a range of its %d units", first,
                            last - 1, units);
    }
    if (!g->spanned) {
        return BL_OK;
    }
    bl_span_range_t bytes[4 * BL_GPT2_MAX_RANGES];
    const int m = unit_bytes(g, first, last, 0, array_count(g), bytes);
    if (bl_span_hold_ranges(&g->span, bytes, m) != 0) {
        /* The span then holds nothing. */
        g->held_first = g->held_last = 0;
        return bl_error_set(err, BL_ERR_NO_MEM,
                            "GPT-2 model: holding the memory of units %d..%d failed: %s", first,
                            last - 1, strerror(errno));
    }
    g->held_first = first;
    g->held_last = last;
    return BL_OK;
}

size_t bl_gpt2_units_bytes(const bl_gpt2_t *g, int first, int last, int array)
{
    bl_span_range_t bytes[BL_GPT2_MAX_RANGES];
    const int m = unit_bytes(g, first, last, array, array + 1, bytes);
    return bl_span_ranges_bytes(bytes, m);
}

size_t bl_gpt2_held_bytes(const bl_gpt2_t *g)
{
    if (g->spanned) {
        return bl_span_held_bytes(&g->span);
    }
    return (size_t)array_count(g) * g->param_count * sizeof(float);
}

int bl_gpt2_held_part(const bl_gpt2_t *g, int tensor, size_t *lo, size_t *hi)
{
    *lo = *hi = 0;
    if (g->held_first >= g->held_last) {
        return 0;
    }
    bl_gpt2_range_t ranges[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(g, g->held_first, g->held_last, ranges);
    for (int r = 0; r < n; r++) {
        if (ranges[r].tensor == tensor) {
            const size_t start = tensor < BL_GPT2_TENSOR_COUNT
                                     ? g->tensors[tensor].offset
                                     : g->users[tensor - BL_GPT2_TENSOR_COUNT].offset;
            *lo = ranges[r].offset - start;
            *hi = *lo + ranges[r].count;
            return 1;
        }
    }
    return 0;
}

bl_status_t bl_gpt2_reserve(bl_gpt2_t *g, int arrays, bl_error_t *err)
{
    bl_span_release(&g->span);
    if (bl_span_reserve(&g->span, (size_t)arrays * g->param_count * sizeof(float)) != 0) {
        g->params = g->grads = g->adam_m = g->adam_v = NULL;
        return bl_error_set(err, BL_ERR_NO_MEM,
                            "GPT-2 model: reserving address space for %d × %zu floats failed: %s",
                            arrays, g->param_count, strerror(errno));
    }
    const size_t P = g->param_count;
    g->params = (float *)g->span.base;
    g->grads = g->params + P;
    g->adam_m = arrays == 4 ? g->grads + P : NULL;
    g->adam_v = arrays == 4 ? g->adam_m + P : NULL;
    g->held_first = g->held_last = 0;
    return BL_OK;
}
