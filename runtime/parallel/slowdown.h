/* Emulated slowdowns, a test and demo hook: a rank's compute is made `factor`
 * times slower over a range of steps by sleeping (factor − 1) times what each
 * pass took. They change timings only, never the math, and emulate
 * heterogeneous hardware on one machine for tests, demos and benchmarks. */
#ifndef BL_SLOWDOWN_H
#define BL_SLOWDOWN_H

#include "runtime_impl.h"

typedef struct bl_slowdowns {
    bl_runtime_t *rt;
    bl_slowdown_t *list; /* a copy of the caller's list */
    int count;
} bl_slowdowns_t;

/* Checks and copies `count` slowdowns (count 0: none). Each must name a rank of
 * the job, a finite factor >= 1 and a step range from >= 0 (to -1: the end);
 * BL_ERR_INVALID_ARG names the slowdown and what is wrong, and BL_ERR_NO_MEM is
 * possible. Local. */
bl_status_t bl_slowdowns_init(bl_slowdowns_t *s, bl_runtime_t *rt, const bl_slowdown_t *list,
                              int count);
void bl_slowdowns_free(bl_slowdowns_t *s);
/* Replaces *s with `count` new slowdowns (bl_slowdowns_init's checks), which
 * every rank must hold alike (BL_ERR_MISMATCH naming the rank otherwise); on
 * failure *s is left as it was. Collective. */
bl_status_t bl_slowdowns_replace(bl_slowdowns_t *s, bl_runtime_t *rt, const bl_slowdown_t *list,
                                 int count);

/* Returns the factor by which this rank's compute is slowed at `step`
 * (1: none); slowdowns that overlap multiply. */
double bl_slowdowns_factor(const bl_slowdowns_t *s, long step);

/* Emulates this rank's slowdown at `step`: when one applies, it sleeps
 * (factor − 1) · compute_s, or until a signal arrives. Returns the compute
 * time including the sleep, as if the sleep had run its course. */
double bl_slowdowns_apply(const bl_slowdowns_t *s, long step, double compute_s);

#endif /* BL_SLOWDOWN_H */
