/* Device memory for the CUDA kernel table (kernels.h's bl_device_memory_t)
 * and what the runtime reports about a GPU. Every copy but the overlapped
 * downloads runs on the context's compute stream, so it is ordered with
 * the kernels: an upload waits for the kernels queued before it (which
 * may still read the buffer), a download sees their results. From a
 * pageable host buffer an upload returns once the source has been staged
 * (reusable at once); from a pinned one (pin: cudaHostRegister) it is
 * only queued. A plain download waits for the stream; an overlapped one
 * (to_host_start) runs on the copy stream after an event recorded on the
 * compute stream, and its own event says when it has arrived. finish
 * waits for both streams, finish_compute for the compute stream alone. */
#include <stdio.h>

#include "context.h"
#include "cuda_kernels.h"

static void *cuda_alloc(size_t nbytes)
{
    void *p = NULL;
    if (!bl_cuda_ok(cudaMalloc(&p, nbytes > 0 ? nbytes : 1), "cudaMalloc")) {
        return NULL;
    }
    return p;
}

static void cuda_release(void *ptr)
{
    if (ptr != NULL) {
        bl_cuda_ok(cudaFree(ptr), "cudaFree");
    }
}

static int cuda_to_device(void *dst, const void *src, size_t nbytes)
{
    if (nbytes == 0) {
        return 0;
    }
    return bl_cuda_ok(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, bl_cuda_ctx.stream),
                      "an upload to the GPU")
               ? 0
               : -1;
}

static int cuda_to_host(void *dst, const void *src, size_t nbytes)
{
    if (nbytes == 0) {
        return 0;
    }
    if (!bl_cuda_ok(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, bl_cuda_ctx.stream),
                    "a download from the GPU")) {
        return -1;
    }
    return bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.stream), "waiting for a download") ? 0 : -1;
}

static int cuda_copy(void *dst, const void *src, size_t nbytes)
{
    if (nbytes == 0) {
        return 0;
    }
    return bl_cuda_ok(
               cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, bl_cuda_ctx.stream),
               "a copy on the GPU")
               ? 0
               : -1;
}

static int cuda_zero(void *dst, size_t nbytes)
{
    if (nbytes == 0) {
        return 0;
    }
    return bl_cuda_ok(cudaMemsetAsync(dst, 0, nbytes, bl_cuda_ctx.stream), "cudaMemsetAsync") ? 0
                                                                                              : -1;
}

static int cuda_room(size_t *free_bytes, size_t *total_bytes)
{
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
        cudaGetLastError(); /* not a failure of the kernels: not recorded */
        return -1;
    }
    *free_bytes = f;
    *total_bytes = t;
    return 0;
}

/* Page-locking is an optimisation: a refusal (the locked-memory limit,
 * memory registered already) leaves the buffer pageable and is not
 * recorded as a failure. CUDA's last error is cleared after a refusal, so
 * a launch failure still pending there is recorded first. */
static void keep_launch_failure(void)
{
    bl_cuda_ok(cudaGetLastError(), "a kernel launch");
}

static int cuda_pin(void *ptr, size_t nbytes)
{
    if (ptr == NULL || nbytes == 0) {
        return -1;
    }
    keep_launch_failure();
    if (cudaHostRegister(ptr, nbytes, cudaHostRegisterDefault) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}

static void cuda_unpin(void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    keep_launch_failure();
    if (cudaHostUnregister(ptr) != cudaSuccess) {
        cudaGetLastError(); /* it was never pinned: nothing to undo */
    }
}

/* 1 when download `number` and those before it have arrived, 0 when not
 * yet (wait 0), -1 on failure (recorded). Downloads run in order on the
 * copy stream, so arrivals are learnt oldest first. */
static int cuda_arrived(long number, int wait)
{
    bl_cuda_context_t *c = &bl_cuda_ctx;
    if (number < 1 || number > c->downloads_started) {
        char what[96];
        snprintf(what, sizeof what, "asking about download %ld of %ld started", number,
                 c->downloads_started);
        bl_cuda_ok(cudaErrorInvalidValue, what);
        return -1;
    }
    while (c->downloads_arrived < number) {
        cudaEvent_t e = c->downloaded[(c->downloads_arrived + 1) % BL_CUDA_DOWNLOADS];
        cudaError_t r = wait ? cudaEventSynchronize(e) : cudaEventQuery(e);
        if (r == cudaErrorNotReady) {
            bl_cuda_forget_not_ready();
            return 0;
        }
        if (!bl_cuda_ok(r, "a download from the GPU")) {
            return -1;
        }
        c->downloads_arrived++;
    }
    return 1;
}

static long cuda_to_host_start(void *dst, const void *src, size_t nbytes)
{
    bl_cuda_context_t *c = &bl_cuda_ctx;
    long n = c->downloads_started + 1;
    /* The ring's slot for n still belongs to download n − ring: it must
     * have arrived before its event is recorded again. */
    if (n - c->downloads_arrived > BL_CUDA_DOWNLOADS &&
        cuda_arrived(n - BL_CUDA_DOWNLOADS, 1) < 0) {
        return -1;
    }
    if (!bl_cuda_ok(cudaEventRecord(c->copy_after, c->stream), "ordering a download") ||
        !bl_cuda_ok(cudaStreamWaitEvent(c->copy_stream, c->copy_after, 0), "ordering a download") ||
        (nbytes > 0 &&
         !bl_cuda_ok(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, c->copy_stream),
                     "a download from the GPU")) ||
        !bl_cuda_ok(cudaEventRecord(c->downloaded[n % BL_CUDA_DOWNLOADS], c->copy_stream),
                    "marking a download")) {
        return -1;
    }
    c->downloads_started = n;
    return n;
}

/* In kernels.h's order (C++17 has no designated initializers). */
extern "C" const bl_device_memory_t bl_cuda_memory = {
    "cuda",    cuda_alloc, cuda_release,       cuda_to_device,       cuda_to_host,
    cuda_copy, cuda_zero,  bl_cuda_sync,       bl_cuda_sync_compute, cuda_room,
    cuda_pin,  cuda_unpin, cuda_to_host_start, cuda_arrived,
};

extern "C" int bl_cuda_describe(int device, bl_cuda_info_t *out, char *err, size_t errlen)
{
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e == cudaSuccess) {
        e = cudaDeviceGetPCIBusId(out->pci_bus_id, (int)sizeof out->pci_bus_id, device);
    }
    if (e != cudaSuccess) {
        snprintf(err, errlen, "CUDA device %d: %s", device, cudaGetErrorString(e));
        cudaGetLastError(); /* answered here: not a later launch's failure */
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->memory_bytes = prop.totalGlobalMem;
    out->major = prop.major;
    out->minor = prop.minor;
    return 0;
}
