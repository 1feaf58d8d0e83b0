/* The mirror device's memory (kernels.h): host memory of its own, so that
 * the runtime's device path (uploads, staging, downloads) runs and is
 * tested on machines without a GPU. Copies are memcpy, at once, but for
 * the downloads started with to_host_start, which wait in a queue until
 * they are asked about (arrived) or finished (finish; finish_compute
 * leaves them). One queue per process, like a GPU's stream; one thread
 * drives it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "kernels.h"

/* Downloads started and not yet copied: at most this many; starting one
 * more copies the oldest first. */
enum { MIRROR_PENDING = 64 };

typedef struct pending_download {
    void *dst;
    const void *src;
    size_t nbytes;
    int asked; /* arrived has answered "not yet" for it */
} pending_download_t;

static struct {
    pending_download_t queue[MIRROR_PENDING]; /* download n at n % MIRROR_PENDING */
    long started;                             /* the last download's number */
    long copied;                              /* downloads 1..copied have arrived */
    char failure[128];                        /* the first failure not yet reported, or "" */
} mirror;

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

/* Copies the downloads up to number `last`, oldest first. */
static void copy_downloads(long last)
{
    for (; mirror.copied < last; mirror.copied++) {
        const pending_download_t *d = &mirror.queue[(mirror.copied + 1) % MIRROR_PENDING];
        if (d->nbytes > 0) {
            memmove(d->dst, d->src, d->nbytes);
        }
    }
}

static long mirror_to_host_start(void *dst, const void *src, size_t nbytes)
{
    if (mirror.started - mirror.copied >= MIRROR_PENDING) {
        copy_downloads(mirror.copied + 1);
    }
    long n = mirror.started + 1;
    mirror.queue[n % MIRROR_PENDING] = (pending_download_t){dst, src, nbytes, 0};
    mirror.started = n;
    return n;
}

static int mirror_arrived(long number, int wait)
{
    if (number < 1 || number > mirror.started) {
        if (mirror.failure[0] == '\0') {
            snprintf(mirror.failure, sizeof mirror.failure,
                     "download %ld asked about, but %ld were started", number, mirror.started);
        }
        return -1;
    }
    if (number <= mirror.copied) {
        return 1;
    }
    pending_download_t *d = &mirror.queue[number % MIRROR_PENDING];
    if (!wait && !d->asked) {
        d->asked = 1;
        return 0;
    }
    copy_downloads(number);
    return 1;
}

void bl_mirror_record_failure(const char *what)
{
    if (mirror.failure[0] == '\0') {
        snprintf(mirror.failure, sizeof mirror.failure, "%s", what);
    }
}

/* The first failure since the last report, into err (then cleared). */
static int report_failure(char *err, size_t errlen)
{
    int failed = mirror.failure[0] != '\0';
    if (errlen > 0) {
        snprintf(err, errlen, "%s", mirror.failure);
    }
    mirror.failure[0] = '\0';
    return failed ? -1 : 0;
}

static int mirror_finish(char *err, size_t errlen)
{
    copy_downloads(mirror.started);
    return report_failure(err, errlen);
}

/* Kernels and copies ran at once: nothing to wait for. The downloads stay
 * held back, as a GPU's may still be in flight. */
static int mirror_finish_compute(char *err, size_t errlen)
{
    return report_failure(err, errlen);
}

/* Host memory: the mirror cannot say what is left, unless told how large
 * a device to pose as (BALLAST_MIRROR_MEMORY_MB, all of it free), so that
 * tests can put the runtime's no-room paths on it. */
static int mirror_room(size_t *free_bytes, size_t *total_bytes)
{
    const char *mb = getenv("BALLAST_MIRROR_MEMORY_MB");
    char *end = NULL;
    unsigned long long n = mb != NULL ? strtoull(mb, &end, 10) : 0;
    if (mb == NULL || end == mb || *end != '\0' || n > SIZE_MAX / (1024 * 1024)) {
        return -1;
    }
    *free_bytes = *total_bytes = (size_t)n * 1024 * 1024;
    return 0;
}

/* Host memory already: nothing to lock. */
static int mirror_pin(void *ptr, size_t nbytes)
{
    (void)ptr;
    (void)nbytes;
    return 0;
}

static void mirror_unpin(void *ptr)
{
    (void)ptr;
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
    .finish_compute = mirror_finish_compute,
    .room = mirror_room,
    .pin = mirror_pin,
    .unpin = mirror_unpin,
    .to_host_start = mirror_to_host_start,
    .arrived = mirror_arrived,
};
