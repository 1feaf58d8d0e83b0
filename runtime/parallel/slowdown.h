/* Emulated slowdowns, a test and demo hook: a rank's compute made FACTOR
 * times slower over a range of steps, by sleeping (factor − 1) times what
 * each pass took. Timings only, never the math. Heterogeneous hardware
 * on one machine, for tests, demos and benchmarks. */
#ifndef BL_SLOWDOWN_H
#define BL_SLOWDOWN_H

#include "runtime_impl.h"

typedef struct bl_slowdowns {
    bl_runtime_t *rt;
    bl_slowdown_t *list; /* copied */
    int count;
} bl_slowdowns_t;

/* Checks and copies count slowdowns (count 0: none): each names a rank of
 * the job, a finite factor >= 1 and a step range from >= 0 (to -1: the
 * end). Errors name the slowdown and what is wrong. Local. */
bl_status_t bl_slowdowns_init(bl_slowdowns_t *s, bl_runtime_t *rt, const bl_slowdown_t *list,
                              int count);
void bl_slowdowns_free(bl_slowdowns_t *s);

/* The factor this rank's compute is slowed by at `step` (1: none). */
double bl_slowdowns_factor(const bl_slowdowns_t *s, long step);

/* Emulates this rank's slowdown at `step`: sleeps (factor − 1) · compute_s
 * when one applies, or until a signal arrives; returns the compute time
 * including the sleep (as if it had run its course). */
double bl_slowdowns_apply(const bl_slowdowns_t *s, long step, double compute_s);

#endif /* BL_SLOWDOWN_H */
