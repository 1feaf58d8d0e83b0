/* Modules that libballast must refuse as its CUDA backend
 * (tests/cuda_backend_tests.cmake): built with FAKE_STALE, one whose table
 * is from another ballast (a stale install); without, one that has no
 * backend entry at all. Neither touches CUDA. */
#include "backend.h"

#ifdef FAKE_STALE
static const bl_cuda_backend_t stale = {
    .abi = BL_CUDA_BACKEND_ABI,
    .table_bytes = sizeof(bl_cuda_backend_t),
    .build = "0.0.1+stale",
};

const bl_cuda_backend_t *bl_cuda_backend_entry(void)
{
    return &stale;
}
#else
int fake_cuda_backend_unrelated(void);
int fake_cuda_backend_unrelated(void)
{
    return 1;
}
#endif
