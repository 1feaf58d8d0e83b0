/* Shared pieces of the library-level tests: MPI set-up, a runtime on
 * MPI_COMM_SELF, a counting allocator that can fail on demand, a
 * synthetic linearly separable dataset, small MLPs (test_mlp.h), and the
 * kernel tests' seeded inputs and tolerance checks. Header-only (static
 * functions); include cmocka.h first. */
#ifndef BL_TEST_SUPPORT_H
#define BL_TEST_SUPPORT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ballast.h"
#include "test_mlp.h"

/* Counts allocations and releases; fail_at = n makes the n-th allocation
 * (1-based) fail, 0 never. */
typedef struct counting_allocator {
    long allocs;
    long releases;
    long fail_at;
} counting_allocator_t;

static inline void *counting_alloc(size_t nbytes, void *ctx)
{
    counting_allocator_t *c = ctx;
    c->allocs++;
    if (c->fail_at > 0 && c->allocs == c->fail_at) {
        c->releases++; /* a failed allocation holds nothing */
        return NULL;
    }
    return malloc(nbytes);
}

static inline void counting_release(void *ptr, void *ctx)
{
    counting_allocator_t *c = ctx;
    if (ptr != NULL) {
        c->releases++;
        free(ptr);
    }
}

/* A runtime on MPI_COMM_SELF, quiet unless a test asks, using `counter`
 * for allocations when it is not NULL. */
static inline bl_runtime_t *test_runtime(counting_allocator_t *counter)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.blas_threads = 1;
    if (counter != NULL) {
        cfg.allocator.alloc = counting_alloc;
        cfg.allocator.release = counting_release;
        cfg.allocator.ctx = counter;
    }
    bl_runtime_t *rt = NULL;
    if (bl_runtime_create(MPI_COMM_SELF, &cfg, &rt) != BL_OK) {
        return NULL;
    }
    return rt;
}

/* count samples of `features` values in [0, 1]: class c (of `classes`)
 * lights the c-th block of features brighter, plus deterministic noise.
 * Linearly separable. x (count, features), y (count). */
static inline void make_separable(long count, int features, int classes, unsigned seed, float *x,
                                  int *y)
{
    unsigned s = seed * 2654435761u + 1u;
    int block = features / classes;
    for (long i = 0; i < count; i++) {
        int c = (int)(i % classes);
        y[i] = c;
        for (int j = 0; j < features; j++) {
            s = s * 1664525u + 1013904223u;
            float noise = (float)(s >> 8) / 16777216.0f; /* [0, 1) */
            int lit = j / block == c;
            x[i * features + j] = lit ? 0.6f + 0.4f * noise : 0.3f * noise;
        }
    }
}

/* A separable in-memory dataset. */
static inline bl_dataset_t *make_separable_dataset(bl_runtime_t *rt, long count, int features,
                                                   int classes, unsigned seed)
{
    float *x = malloc((size_t)count * (size_t)features * sizeof *x);
    int *y = malloc((size_t)count * sizeof *y);
    bl_dataset_t *d = NULL;
    if (x != NULL && y != NULL) {
        make_separable(count, features, classes, seed, x, y);
        if (bl_dataset_from_memory(rt, count, features, classes, x, y, &d) != BL_OK) {
            d = NULL;
        }
    }
    free(x);
    free(y);
    return d;
}

/* |got - ref| <= atol + rtol·|ref| */
static inline int close_enough(double got, double ref, double atol, double rtol)
{
    return fabs(got - ref) <= atol + rtol * fabs(ref);
}

/* main() of the library-level tests: MPI up, the shared runtime `*rt` on
 * MPI_COMM_SELF, the group run, everything down. Returns failures. */
static inline int run_tests_with_runtime(const char *name, const struct CMUnitTest *tests,
                                         size_t count, bl_runtime_t **rt)
{
    MPI_Init(NULL, NULL);
    *rt = test_runtime(NULL);
    int failed = *rt == NULL ? 1 : _cmocka_run_group_tests(name, tests, count, NULL, NULL);
    bl_runtime_destroy(*rt);
    MPI_Finalize();
    return failed;
}

/* ---- Seeded inputs and tolerance checks (the kernel tests) ---------------- */

/* A 64-bit LCG (Knuth's MMIX constants): the same seed gives the same
 * inputs on every machine. The state lives in the caller's lcg_t. */
typedef struct lcg {
    uint64_t state;
} lcg_t;

static inline void lcg_seed(lcg_t *g, uint64_t seed)
{
    g->state = seed * 2862933555777941757ULL + 3037000493ULL;
}

/* The next 32 bits: the top half of the advanced state. */
static inline uint32_t lcg_next(lcg_t *g)
{
    g->state = g->state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(g->state >> 32);
}

/* Uniform in [lo, hi), from the top 24 bits (exact in float). */
static inline float lcg_uniform(lcg_t *g, float lo, float hi)
{
    return lo + (hi - lo) * (float)(lcg_next(g) >> 8) * (1.0f / 16777216.0f);
}

/* a[0 .. count) uniform in [lo, hi), drawn in order from g. */
static inline void fill_uniform(lcg_t *g, float *a, size_t count, float lo, float hi)
{
    for (size_t i = 0; i < count; i++) {
        a[i] = lcg_uniform(g, lo, hi);
    }
}

/* a[0 .. count) = value. */
static inline void fill_value(float *a, size_t count, float value)
{
    for (size_t i = 0; i < count; i++) {
        a[i] = value;
    }
}

/* Fails the test (cmocka) on the first element with |got - ref| beyond
 * atol + rtol·|ref| (NaN fails too), naming it what[i]. */
static inline void check_close_tol(const float *got, const double *ref, size_t count, double atol,
                                   double rtol, const char *what)
{
    for (size_t i = 0; i < count; i++) {
        double diff = fabs((double)got[i] - ref[i]);
        if (!(diff <= atol + rtol * fabs(ref[i]))) {
            fail_msg("%s[%zu]: got %.9g, want %.9g (diff %.3g)", what, i, (double)got[i], ref[i],
                     diff);
        }
    }
}

/* Fails the test (cmocka) unless |got - ref| <= atol + rtol·|ref| (NaN
 * fails too). */
static inline void check_scalar(double got, double ref, double atol, double rtol, const char *what)
{
    if (!(fabs(got - ref) <= atol + rtol * fabs(ref))) {
        fail_msg("%s: got %.12g, want %.12g", what, got, ref);
    }
}

#endif /* BL_TEST_SUPPORT_H */
