/* ZeRO-1's moments for the language-model trainer (lm_zero.h): the group's
 * slices gathered into arrays of the model's layout (for a stage file, a
 * move of units, or the model made whole), and a checkpoint's moments put
 * back as this rank's slices. */
#include <string.h>

#include "lm_zero_impl.h"
#include "wait.h"

/* Gathers run r's slices of mine (this rank's moments of the run) into
 * whole: on root, or on every rank when root is -1. */
static bl_status_t gather_run(bl_lm_zero_t *z, bl_lm_zero_run_t *run, int root, const float *mine,
                              float *whole)
{
    const char *op = "the gather of the AdamW moments (ZeRO-1)";
    if (root >= 0) {
        return bl_zero_gather_to(&run->x, root, mine, whole, op);
    }
    /* In place: this rank's slice first, then every other's from its rank. */
    memcpy(whole + run->x.lo[z->rank], mine, run->x.count[z->rank] * sizeof(float));
    return bl_zero_all_gather(&run->x, whole, op);
}

bl_status_t bl_lm_zero_gather_moments(bl_lm_zero_t *z, int root, float **adam_m, float **adam_v)
{
    bl_runtime_t *rt = z->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const size_t N = z->model->param_count;
    *adam_m = *adam_v = NULL;
    bl_status_t st = BL_OK;
    if (root < 0 || z->rank == root) {
        *adam_m = bl_mem_array(a, N, sizeof(float));
        *adam_v = bl_mem_array(a, N, sizeof(float));
        if (*adam_m == NULL || *adam_v == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM,
                         "rank %d: no memory to gather the AdamW moments (2 x %zu floats)",
                         rt->rank, N);
        }
    }
    st = bl_agree_in(rt, z->comm, st, BL_ERR_NO_MEM, "gathering the AdamW moments");
    bl_lm_zero_runs_t *r = &z->runs;
    for (int i = 0; i < r->count && st == BL_OK; i++) {
        bl_lm_zero_run_t *run = &r->run[i];
        st = gather_run(z, run, root, r->adam_m + run->at, *adam_m);
        if (st == BL_OK) {
            st = gather_run(z, run, root, r->adam_v + run->at, *adam_v);
        }
    }
    if (st != BL_OK) {
        bl_mem_free(a, *adam_m);
        bl_mem_free(a, *adam_v);
        *adam_m = *adam_v = NULL;
    }
    return st;
}

void bl_lm_zero_put_moments(bl_lm_zero_t *z, const void *adam_m, const void *adam_v)
{
    const bl_lm_zero_runs_t *r = &z->runs;
    for (int i = 0; i < r->count; i++) {
        const bl_lm_zero_run_t *run = &r->run[i];
        const size_t at = run->x.lo[z->rank] * sizeof(float);
        const size_t nbytes = run->x.count[z->rank] * sizeof(float);
        memcpy(r->adam_m + run->at, (const unsigned char *)adam_m + at, nbytes);
        memcpy(r->adam_v + run->at, (const unsigned char *)adam_v + at, nbytes);
    }
}
