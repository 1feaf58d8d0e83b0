/* Rows of a sample table by index (kernels.h's gather_rows) on the CPU. */
#include <string.h>

#include "cpu_kernels.h"

void bl_cpu_gather_rows(int rows, int cols, const float *src, const int64_t *idx, float *dst,
                        const int *labels_src, int *labels_dst)
{
    size_t row = (size_t)(cols > 0 ? cols : 0);
    for (int r = 0; r < rows; r++) {
        if (src != NULL && dst != NULL && row > 0) {
            memcpy(dst + (size_t)r * row, src + (size_t)idx[r] * row, row * sizeof(float));
        }
        if (labels_src != NULL && labels_dst != NULL) {
            labels_dst[r] = labels_src[idx[r]];
        }
    }
}
