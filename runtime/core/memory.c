/* The allocation funnel. Every allocation of the library comes here, so the
 * allocator hooks see all of them (and tests can make any one of them fail). */
/* madvise and MADV_DONTNEED (glibc's posix_madvise ignores
 * POSIX_MADV_DONTNEED). */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

void *bl_mem_alloc(const bl_allocator_t *a, size_t nbytes)
{
    if (nbytes == 0) {
        nbytes = 1; /* a unique pointer, so that NULL always means failure */
    }
    if (a != NULL && a->alloc != NULL) {
        return a->alloc(nbytes, a->ctx);
    }
    return malloc(nbytes);
}

void *bl_mem_array(const bl_allocator_t *a, size_t count, size_t elem_nbytes)
{
    if (elem_nbytes != 0 && count > SIZE_MAX / elem_nbytes) {
        return NULL;
    }
    return bl_mem_alloc(a, count * elem_nbytes);
}

void *bl_mem_array_zeroed(const bl_allocator_t *a, size_t count, size_t elem_nbytes)
{
    void *p = bl_mem_array(a, count, elem_nbytes);
    if (p != NULL) {
        memset(p, 0, count * elem_nbytes);
    }
    return p;
}

void bl_mem_free(const bl_allocator_t *a, void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    if (a != NULL && a->release != NULL) {
        a->release(ptr, a->ctx);
        return;
    }
    free(ptr);
}

size_t bl_mem_release_pages(void *ptr, size_t nbytes)
{
    const long page = sysconf(_SC_PAGESIZE);
    if (ptr == NULL || page <= 0) {
        return 0;
    }
    const uintptr_t p = (uintptr_t)page;
    const uintptr_t lo = ((uintptr_t)ptr + p - 1) / p * p;
    const uintptr_t hi = ((uintptr_t)ptr + nbytes) / p * p;
    if (hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
        return 0;
    }
    return hi - lo;
}
