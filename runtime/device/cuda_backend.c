/* This file finds and opens the CUDA backend module (cuda_backend.h). */
#define _GNU_SOURCE /* for dladdr */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_backend.h"

static const bl_cuda_backend_t *loaded;
static int looked;
static char loaded_from[4096 + 64];
static int refused; /* 1 when a module was found but could not be used */
static char failure[768];

#ifdef BALLAST_HAVE_CUDA
enum { PATH_BYTES = 4096 };

/* Opens the module at path. Returns 1 when the module is kept, 0 when there
 * is no file there, and -1 when the file did not load or is from another
 * build. On -1 the reason goes into failure, unless an earlier file already
 * failed: the first reason is the one that explains. */
static int try_module(const char *path)
{
    if (access(path, F_OK) != 0) {
        return 0;
    }
    char reason[512];
    void *module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (module == NULL) {
        const char *e = dlerror();
        snprintf(reason, sizeof reason, "did not load: %s", e != NULL ? e : "unknown reason");
    } else {
        void *symbol = dlsym(module, BL_CUDA_BACKEND_ENTRY);
        const bl_cuda_backend_t *(*entry)(void) = NULL;
        memcpy(&entry, &symbol, sizeof entry); /* POSIX makes dlsym's pointer callable */
        const bl_cuda_backend_t *b = entry != NULL ? entry() : NULL;
        /* The build id is read only from a table of this layout. */
        int same_layout = b != NULL && b->abi == BL_CUDA_BACKEND_ABI && b->table_bytes == sizeof *b;
        if (same_layout && strcmp(b->build, BALLAST_BACKEND_BUILD) == 0) {
            loaded = b; /* kept open for the process's lifetime */
            snprintf(loaded_from, sizeof loaded_from, "%s", path);
            return 1;
        }
        if (b == NULL) {
            snprintf(reason, sizeof reason, "is not a ballast CUDA backend (no %s)",
                     BL_CUDA_BACKEND_ENTRY);
        } else {
            snprintf(reason, sizeof reason,
                     "is from another build (build %.40s, backend ABI %d, table of %zu bytes; "
                     "this libballast is build %s, ABI %d, %zu bytes)",
                     same_layout ? b->build : "unknown", b->abi, b->table_bytes,
                     BALLAST_BACKEND_BUILD, BL_CUDA_BACKEND_ABI, sizeof *b);
        }
        dlclose(module);
    }
    if (!refused) {
        refused = 1;
        snprintf(failure, sizeof failure, "the CUDA backend %.200s %s", path, reason);
    }
    return -1;
}

/* Writes into dir the directory of the object (the shared library or the
 * program) that holds this code and returns 1, or returns 0 when the loader
 * cannot tell. */
static int own_directory(char *dir, size_t n)
{
    Dl_info info;
    if (dladdr(&looked, &info) == 0 || info.dli_fname == NULL ||
        strchr(info.dli_fname, '/') == NULL) {
        return 0;
    }
    snprintf(dir, n, "%s", info.dli_fname);
    *strrchr(dir, '/') = '\0';
    return 1;
}

static void look(void)
{
    const char *file = BALLAST_CUDA_BACKEND_FILE;
    const char *asked = getenv("BALLAST_CUDA_BACKEND");
    if (asked != NULL && asked[0] != '\0') {
        /* A file name without a directory is taken from the working
         * directory, as access() sees it (dlopen would search the library
         * path instead). */
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s%.4000s", strchr(asked, '/') != NULL ? "" : "./", asked);
        if (try_module(path) == 0) {
            snprintf(failure, sizeof failure, "BALLAST_CUDA_BACKEND=%.300s: no such file", asked);
        }
        return;
    }
    char beside[PATH_BYTES] = "";
    own_directory(beside, sizeof beside);
    const char *dirs[] = {beside, BALLAST_CUDA_BACKEND_INSTALL_DIR, BALLAST_CUDA_BACKEND_BUILD_DIR};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[PATH_BYTES + 64];
        int seen = dirs[i][0] == '\0';
        for (size_t j = 0; j < i && !seen; j++) {
            seen = strcmp(dirs[i], dirs[j]) == 0;
        }
        snprintf(path, sizeof path, "%s/%s", dirs[i], file);
        if (!seen && try_module(path) == 1) {
            return;
        }
    }
    if (!refused) {
        snprintf(failure, sizeof failure,
                 "no CUDA backend module %s beside libballast (%.200s), in %.200s or in %.200s "
                 "(set BALLAST_CUDA_BACKEND to its path)",
                 file, beside[0] != '\0' ? beside : "unknown", BALLAST_CUDA_BACKEND_INSTALL_DIR,
                 BALLAST_CUDA_BACKEND_BUILD_DIR);
    }
}
#else
static void look(void)
{
    snprintf(failure, sizeof failure,
             "this ballast was built without the CUDA backend (BALLAST_CUDA=OFF or no CUDA "
             "toolkit at configure time)");
}
#endif

const bl_cuda_backend_t *bl_cuda_backend(char *why, size_t n, int *broken)
{
    if (!looked) {
        looked = 1;
        look();
    }
    if (loaded == NULL && why != NULL && n > 0) {
        snprintf(why, n, "%s", failure);
    }
    if (broken != NULL) {
        *broken = loaded == NULL && refused;
    }
    return loaded;
}

const char *bl_cuda_backend_file(void)
{
    return loaded_from;
}
