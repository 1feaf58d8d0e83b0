/* The runtime's one clock, bl_now_seconds (declared in internal.h). */
#include <time.h>

#include "internal.h"

double bl_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
