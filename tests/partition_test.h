/* Helpers of the partition/ tests (test_policy.c, test_estimator.c,
 * test_shards.c, test_pipeline_plan.c): a seeded generator of their own,
 * a tolerance assertion, and a synthetic cluster whose windows the
 * estimator and the policies are fed. Include after cmocka.h. */
#ifndef BL_PARTITION_TEST_H
#define BL_PARTITION_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "policy.h"

/* |got − want| <= tol (this cmocka has no assert_double_equal). */
#define assert_near(got, want, tol) assert_near_at((got), (want), (tol), __FILE__, __LINE__)

static inline void assert_near_at(double got, double want, double tol, const char *file, int line)
{
    if (!(fabs(got - want) <= tol)) {
        fail_msg("%s:%d: %.17g is not within %g of %.17g", file, line, got, tol, want);
    }
}

/* xorshift64*: the tests' own generator, independent of the library's. */
static inline uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, 1). */
static inline double uniform(uint64_t *s)
{
    return (double)(next_random(s) >> 11) * 0x1.0p-53;
}

/* One window of one step on a synthetic cluster: rank r computes plan[r]
 * samples in plan[r] / speeds[r] seconds, times 1 + noise·u with u uniform
 * in [-1, 1) (noise 0: exact). Returns the measured step time, the slowest
 * rank's compute. */
static inline double run_window(int ranks, const double *speeds, const long *plan, double noise,
                                uint64_t *rng, bl_rank_obs_t *obs)
{
    double slowest = 0.0;
    for (int r = 0; r < ranks; r++) {
        double factor = noise > 0.0 ? 1.0 + noise * (2.0 * uniform(rng) - 1.0) : 1.0;
        obs[r].samples = (double)plan[r];
        obs[r].compute_s = (double)plan[r] / speeds[r] * factor;
        obs[r].comm_s = 0.001;
        obs[r].wait_s = 0.0;
        obs[r].cpu_s = 0.0; /* unknown: no CPU budgets */
        slowest = obs[r].compute_s > slowest ? obs[r].compute_s : slowest;
    }
    for (int r = 0; r < ranks; r++) {
        obs[r].wait_s = slowest - obs[r].compute_s;
    }
    return slowest;
}

/* Every shard of got equals want's. */
static inline void assert_plan(const long *got, const long *want, int ranks)
{
    for (int r = 0; r < ranks; r++) {
        if (got[r] != want[r]) {
            fail_msg("shard %d is %ld, expected %ld", r, got[r], want[r]);
        }
    }
}

static inline long plan_sum(int ranks, const long *plan)
{
    long s = 0;
    for (int r = 0; r < ranks; r++) {
        s += plan[r];
    }
    return s;
}

/* Σ |next − current| / 2: the samples that changed rank. */
static inline long moved(int ranks, const long *current, const long *next)
{
    long m = 0;
    for (int r = 0; r < ranks; r++) {
        m += labs(next[r] - current[r]);
    }
    return m / 2;
}

#endif /* BL_PARTITION_TEST_H */
