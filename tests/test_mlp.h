/* The small MLPs of the tests, built in one call. Header-only (static
 * inline), free of cmocka, so the MPI test programs can use it too;
 * test_support.h includes it. */
#ifndef BL_TEST_MLP_H
#define BL_TEST_MLP_H

#include <stdint.h>

#include "ballast.h"

/* A built in → widths[0] → ReLU → … → widths[n - 1] → ReLU → out model
 * (n hidden dense layers, each followed by a ReLU; n = 0 is one dense
 * layer), its parameters initialised from seed. Returns the status of the
 * first call that failed, with *model NULL and nothing left behind (the
 * message in bl_last_error(rt)); BL_OK with the model in *model, which the
 * caller destroys. */
static inline bl_status_t test_mlp(bl_runtime_t *rt, int in, const int *widths, int n, int out,
                                   uint64_t seed, bl_model_t **model)
{
    bl_model_t *m = NULL;
    bl_status_t st = bl_model_create(rt, in, &m);
    for (int i = 0; i < n && st == BL_OK; i++) {
        st = bl_model_add_dense(m, widths[i]);
        if (st == BL_OK) {
            st = bl_model_add_relu(m);
        }
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(m, out);
    }
    if (st == BL_OK) {
        st = bl_model_build(m, seed);
    }
    if (st == BL_OK && bl_model_params(m) == NULL) {
        st = BL_ERR_NO_MEM; /* every layer is held, for tests that read them directly */
    }
    if (st != BL_OK) {
        bl_model_destroy(m);
        m = NULL;
    }
    *model = m;
    return st;
}

#endif /* BL_TEST_MLP_H */
