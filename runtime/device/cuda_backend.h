/* Opens the CUDA backend module (cuda/backend.h) for the process, once. */
#ifndef BL_RUNTIME_CUDA_BACKEND_H
#define BL_RUNTIME_CUDA_BACKEND_H

#include <stddef.h>

#include "backend.h"

/* The backend's table, or NULL with the reason in why (n bytes) and
 * *broken (when not NULL) set when a module was found but cannot be used
 * (a missing CUDA library, another build's module): a machine set up
 * wrongly, not one without a GPU. The
 * module is looked for, in order:
 *   - at $BALLAST_CUDA_BACKEND, a file's path, when set (then only there);
 *   - beside the libballast shared library that holds this code;
 *   - in the directory the build installs libraries to;
 *   - in the build tree's library directory (a static libballast in the
 *     build tree's programs).
 * The first that loads and whose ABI, table size and build id equal
 * libballast's is kept (a refused one is passed over) for the process's
 * lifetime (never unloaded: the CUDA runtime does
 * not survive it). A failure names the file and the loader's reason (a
 * missing CUDA library, a stale module); it is remembered, so later calls
 * answer it without looking again. Not thread-safe on the first call:
 * ranks set up their devices from one thread. */
const bl_cuda_backend_t *bl_cuda_backend(char *why, size_t n, int *broken);

/* The path the backend was loaded from ("" before, or when it was not). */
const char *bl_cuda_backend_file(void);

#endif /* BL_RUNTIME_CUDA_BACKEND_H */
