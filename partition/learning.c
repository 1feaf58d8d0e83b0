/* The pieces the learning policies share: a seeded random stream and the
 * discounted-UCB arm choice. */
#include <math.h>

#include "alloc.h"

uint64_t bl_part_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t bl_part_next_random(uint64_t *state)
{
    return bl_part_mix64(*state += 0x9e3779b97f4a7c15ULL);
}

int bl_part_ucb_pick(const double *pulls, const double *sums, const int *order, int arms, double c)
{
    double total = 0.0;
    for (int i = 0; i < arms; i++) {
        total += pulls[i];
    }
    double log_total = total > 1.0 ? log(total) : 0.0;
    int best = order[0];
    double best_index = -INFINITY;
    for (int k = 0; k < arms; k++) {
        int i = order[k];
        double index = pulls[i] > 1e-12 ? sums[i] / pulls[i] + c * sqrt(log_total / pulls[i])
                                        : INFINITY; /* forgotten: try again */
        if (index > best_index) {
            best_index = index;
            best = i;
        }
    }
    return best;
}
