/* Device memory for the CUDA kernel table (kernels.h's bl_device_memory_t)
 * and what the runtime reports about a GPU. Every copy runs on the
 * context's compute stream, so it is ordered with the kernels: an upload
 * waits for the kernels queued before it (which may still read the
 * buffer), a download sees their results. Host buffers are pageable, so
 * an upload returns once the source has been staged (reusable at once)
 * and a download waits for the stream. */
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

extern "C" const bl_device_memory_t bl_cuda_memory = {
    "cuda",    cuda_alloc, cuda_release, cuda_to_device, cuda_to_host,
    cuda_copy, cuda_zero,  bl_cuda_sync, cuda_room,
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
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->memory_bytes = prop.totalGlobalMem;
    out->major = prop.major;
    out->minor = prop.minor;
    return 0;
}
