/* The mirror device's memory (kernels.h): host memory of its own, so that
 * the runtime's device path (uploads, staging, downloads) runs and is
 * tested on machines without a GPU. Copies are synchronous memcpy. */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static void *mirror_alloc(size_t nbytes)
{
    return malloc(nbytes > 0 ? nbytes : 1);
}

static void mirror_release(void *ptr)
{
    free(ptr);
}

static int mirror_copy(void *dst, const void *src, size_t nbytes)
{
    if (nbytes > 0) {
        memmove(dst, src, nbytes);
    }
    return 0;
}

static int mirror_zero(void *dst, size_t nbytes)
{
    if (nbytes > 0) {
        memset(dst, 0, nbytes);
    }
    return 0;
}

static int mirror_finish(char *err, size_t errlen)
{
    if (errlen > 0) {
        err[0] = '\0';
    }
    return 0;
}

/* Host memory: the mirror cannot say what is left. */
static int mirror_room(size_t *free_bytes, size_t *total_bytes)
{
    (void)free_bytes;
    (void)total_bytes;
    return -1;
}

const bl_device_memory_t bl_mirror_memory = {
    .name = "mirror",
    .alloc = mirror_alloc,
    .release = mirror_release,
    .to_device = mirror_copy,
    .to_host = mirror_copy,
    .copy = mirror_copy,
    .zero = mirror_zero,
    .finish = mirror_finish,
    .room = mirror_room,
};
