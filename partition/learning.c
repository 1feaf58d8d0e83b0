/* The discounted-UCB arm choice that the learning policies share (their
 * random stream is splitmix.h's). */
#include <math.h>

#include "alloc.h"

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
