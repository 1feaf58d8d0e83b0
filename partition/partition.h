/* Plans for splitting work. Pure: numbers in, numbers out — no MPI, no
 * CUDA, no clocks, no globals. */
#ifndef BL_PARTITION_H
#define BL_PARTITION_H

#include <stdint.h>

/* Splits total into parts integer shares as even as possible: the first
 * total % parts shares get one more. Returns 0, or -1 when parts <= 0 or
 * total < 0. */
int bl_split_even(long total, int parts, long *shares);

/* Splits total into parts integer shares proportional to weights
 * (non-negative, not all zero) by largest-remainder rounding: each share is
 * floor(total·w_i/Σw) and the remaining units go to the largest fractional
 * parts, ties to the lower index. The shares sum to total exactly. Returns
 * 0, or -1 on invalid input. */
int bl_split_proportional(long total, int parts, const double *weights, long *shares);

#endif /* BL_PARTITION_H */
