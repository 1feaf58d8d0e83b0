/* This header opens the CUDA backend module (whose table cuda/backend.h
 * defines) for the process, once. */
#ifndef BL_RUNTIME_CUDA_BACKEND_H
#define BL_RUNTIME_CUDA_BACKEND_H

#include <stddef.h>

#include "backend.h"

/* Returns the backend's table, which belongs to the process (do not free
 * it), or NULL with the reason in why (n bytes). *broken (when broken is not NULL) says whether a
 * module was found but cannot be used (a missing CUDA library, another
 * build's module), which means a machine set up wrongly, not one without a
 * GPU. The module is looked for, in order:
 *   - at $BALLAST_CUDA_BACKEND, a file's path, when it is set (and then
 *     only there);
 *   - beside the libballast shared library that holds this code;
 *   - in the directory that the build installs libraries to;
 *   - in the build tree's library directory (for a static libballast in the
 *     build tree's programs).
 * The first module that loads and whose ABI, table size and build id equal
 * libballast's is kept for the process's lifetime; a refused one is passed
 * over. It is never unloaded, because the CUDA runtime does not survive
 * that. A failure names the file and the loader's reason (a missing CUDA
 * library, a stale module), and it is remembered, so later calls return it
 * without looking again. The first call is not thread-safe: ranks set up
 * their devices from one thread. */
const bl_cuda_backend_t *bl_cuda_backend(char *why, size_t n, int *broken);

/* Returns the path that the backend was loaded from, or "" before it is
 * loaded or when it was not. The string is static; do not free it. */
const char *bl_cuda_backend_file(void);

#endif /* BL_RUNTIME_CUDA_BACKEND_H */
