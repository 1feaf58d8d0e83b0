/* Internal to partition/ (not installed, not for callers): allocation
 * through the caller's hooks, and the few helpers the estimator, plan and
 * policy files share. Pure like the rest of partition/. */
#ifndef BL_PARTITION_ALLOC_H
#define BL_PARTITION_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "policy.h"
#include "splitmix.h" /* bl_part_mix64, bl_part_next_random */

/* count elements of each bytes through a's hooks (a NULL or a->alloc NULL:
 * malloc). NULL when count·each overflows or memory is short. A count of 0
 * still gets a (1-element) block, so NULL always means failure. */
static inline void *bl_part_alloc(const bl_part_allocator_t *a, size_t count, size_t each)
{
    if (count == 0) {
        count = 1;
    }
    if (each == 0 || count > SIZE_MAX / each) {
        return NULL;
    }
    if (a != NULL && a->alloc != NULL) {
        return a->alloc(count * each, a->ctx);
    }
    return malloc(count * each);
}

/* Releases what bl_part_alloc gave (a NULL or a->release NULL: free). NULL
 * is a no-op. */
static inline void bl_part_free(const bl_part_allocator_t *a, void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    if (a != NULL && a->release != NULL) {
        a->release(ptr, a->ctx);
        return;
    }
    free(ptr);
}

/* The real-valued share of part i (samples, >= 0) for bl_part_round. */
typedef double (*bl_part_quota_fn)(const void *ctx, int i);

/* Largest-remainder rounding of real quotas that sum to total (up to
 * floating-point rounding): shares[i] = floor(quota(i)), then the units
 * left go one each to the largest fractional parts, ties to the lower
 * index; an overshoot (rounding) is taken back from the largest share.
 * The one rounding rule of partition/ (bl_split_proportional and the
 * plans use it), in O(parts): the threshold remainder is found by radix
 * selection on its bits, so 65,536 ranks take milliseconds. rem (parts doubles) is optional
 * scratch; NULL recomputes the quotas (callers without an allocator).
 * Σ shares == total on return. */
void bl_part_round(long total, int parts, bl_part_quota_fn quota, const void *ctx, double *rem,
                   long *shares);

/* bl_plan_proportional with optional scratch (ranks doubles, or NULL) for
 * the rounding. */
int bl_part_plan(long batch, int ranks, const double *speeds, const long *min_shard,
                 const long *max_shard, long *shards, double *rem);

/* The estimator's noise level: the mean over observed ranks of the
 * relative sigma of a window's speed (e.g. 0.03 = 3%); 0 before any
 * observation. */
double bl_part_estimator_noise(const bl_estimator_t *e);

/* The typical relative error of the estimates themselves: the mean over
 * observed ranks of σ·sqrt(f), the window noise scaled by how many windows
 * the estimate averages (see estimator.c); 0 before any observation. */
double bl_part_estimator_error(const bl_estimator_t *e);
/* Each rank's relative sigma of a window's speed (ranks values into out),
 * 0 for a rank not yet observed. */
void bl_part_estimator_rank_noise(const bl_estimator_t *e, double *out);

/* Discounted UCB1's choice (Garivier & Moulines): the arm maximising
 * sums[i] / pulls[i] + c · sqrt(ln Σ pulls / pulls[i]), an arm whose pulls
 * have decayed to nothing first; arms are searched in `order` (arms
 * indices), so ties go to the earlier one there. */
int bl_part_ucb_pick(const double *pulls, const double *sums, const int *order, int arms, double c);

/* Formats a message into err (NULL or errlen 0: none) and returns -1, so a
 * failure reads `return bl_part_fail(err, errlen, "...", ...)`. */
int bl_part_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* BL_PARTITION_ALLOC_H */
