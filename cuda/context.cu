/* The CUDA context: device choice, streams and their events, cuBLAS
 * handle, failure record. */
#include <stdio.h>
#include <string.h>

#include "context.h"
#include "cuda_kernels.h"

bl_cuda_context_t bl_cuda_ctx;

int bl_cuda_ok(cudaError_t e, const char *what)
{
    if (e == cudaSuccess) {
        return 1;
    }
    if (bl_cuda_ctx.failure[0] == '\0') {
        snprintf(bl_cuda_ctx.failure, sizeof bl_cuda_ctx.failure, "%s: %s", what,
                 cudaGetErrorString(e));
    }
    return 0;
}

int bl_cublas_ok(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) {
        return 1;
    }
    if (bl_cuda_ctx.failure[0] == '\0') {
        snprintf(bl_cuda_ctx.failure, sizeof bl_cuda_ctx.failure, "%s: cuBLAS status %d (%s)", what,
                 (int)s, cublasGetStatusString(s));
    }
    return 0;
}

extern "C" int bl_cuda_device_count(char *err, size_t errlen)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "no CUDA device: %s", cudaGetErrorString(e));
        cudaGetLastError(); /* answered here: not a later launch's failure */
        return 0;
    }
    if (n == 0) {
        snprintf(err, errlen, "no CUDA device visible (CUDA_VISIBLE_DEVICES?)");
    }
    return n;
}

extern "C" int bl_cuda_init(int device, char *err, size_t errlen)
{
    bl_cuda_shutdown();
    /* The device first, so nothing touches another GPU; then whether this
     * build has machine code or PTX it can run (sm_75 and up). */
    cudaDeviceProp prop;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) {
        e = cudaGetDeviceProperties(&prop, device);
    }
    if (e == cudaSuccess && prop.major * 10 + prop.minor < 75) {
        snprintf(err, errlen,
                 "CUDA device %d (%s) has compute capability %d.%d; ballast's "
                 "kernels need 7.5 or newer",
                 device, prop.name, prop.major, prop.minor);
        return -1;
    }
    /* A blocking stream: it waits for work on the legacy default stream
     * (a plain cudaMemcpy from the host), so uploads are ordered before
     * the kernels that read them. */
    if (e == cudaSuccess) {
        e = cudaStreamCreate(&bl_cuda_ctx.stream);
    }
    /* The comm stream and its events (nccl.cu): non-blocking, so NCCL's
     * work is ordered only by the events, never by the legacy stream; the
     * events order and time nothing else, so they skip timing. */
    if (e == cudaSuccess) {
        e = cudaStreamCreateWithFlags(&bl_cuda_ctx.comm_stream, cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) {
        e = cudaEventCreateWithFlags(&bl_cuda_ctx.compute_ready, cudaEventDisableTiming);
    }
    if (e == cudaSuccess) {
        e = cudaEventCreateWithFlags(&bl_cuda_ctx.comm_ready, cudaEventDisableTiming);
    }
    /* The copy stream and its events (memory.cu): non-blocking like the
     * comm stream, ordered by copy_after alone. */
    if (e == cudaSuccess) {
        e = cudaStreamCreateWithFlags(&bl_cuda_ctx.copy_stream, cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) {
        e = cudaEventCreateWithFlags(&bl_cuda_ctx.copy_after, cudaEventDisableTiming);
    }
    for (int i = 0; e == cudaSuccess && i < BL_CUDA_DOWNLOADS; i++) {
        e = cudaEventCreateWithFlags(&bl_cuda_ctx.downloaded[i], cudaEventDisableTiming);
    }
    if (e == cudaSuccess) {
        e = cudaMalloc((void **)&bl_cuda_ctx.totals, 2 * sizeof(double));
    }
    if (e != cudaSuccess) {
        snprintf(err, errlen, "CUDA device %d: %s", device, cudaGetErrorString(e));
        bl_cuda_shutdown();
        return -1;
    }
    cublasStatus_t s = cublasCreate(&bl_cuda_ctx.blas);
    if (s == CUBLAS_STATUS_SUCCESS) {
        s = cublasSetStream(bl_cuda_ctx.blas, bl_cuda_ctx.stream);
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuBLAS on device %d: %s", device, cublasGetStatusString(s));
        bl_cuda_shutdown();
        return -1;
    }
    /* Nothing is launched yet: a failure the caller already handled (a
     * device described earlier, say) must not be taken for a launch's. */
    cudaGetLastError();
    bl_cuda_ctx.failure[0] = '\0';
    if (!bl_cuda_row_scratch(BL_CUDA_ROWS_AT_START) || !bl_cuda_ones(BL_CUDA_ROWS_AT_START) ||
        !bl_cuda_ok(cudaGetLastError(), "filling the ones vector")) {
        snprintf(err, errlen, "CUDA device %d: %s", device, bl_cuda_ctx.failure);
        bl_cuda_shutdown();
        return -1;
    }
    bl_cuda_ctx.device = device;
    bl_cuda_ctx.ready = 1;
    return 0;
}

extern "C" void bl_cuda_shutdown(void)
{
    if (bl_cuda_ctx.blas != NULL) {
        cublasDestroy(bl_cuda_ctx.blas);
    }
    if (bl_cuda_ctx.stream != NULL) {
        cudaStreamDestroy(bl_cuda_ctx.stream);
    }
    /* Work still queued on the comm stream finishes first (the stream's
     * resources go once it is idle); communicators are destroyed before. */
    if (bl_cuda_ctx.comm_stream != NULL) {
        cudaStreamDestroy(bl_cuda_ctx.comm_stream);
    }
    if (bl_cuda_ctx.compute_ready != NULL) {
        cudaEventDestroy(bl_cuda_ctx.compute_ready);
    }
    if (bl_cuda_ctx.comm_ready != NULL) {
        cudaEventDestroy(bl_cuda_ctx.comm_ready);
    }
    if (bl_cuda_ctx.copy_stream != NULL) {
        cudaStreamDestroy(bl_cuda_ctx.copy_stream);
    }
    if (bl_cuda_ctx.copy_after != NULL) {
        cudaEventDestroy(bl_cuda_ctx.copy_after);
    }
    for (int i = 0; i < BL_CUDA_DOWNLOADS; i++) {
        if (bl_cuda_ctx.downloaded[i] != NULL) {
            cudaEventDestroy(bl_cuda_ctx.downloaded[i]);
        }
    }
    /* Only what was allocated: cudaFree(NULL) would create a context on
     * the current device (device 0 before init picked one). */
    void *buffers[] = {
        bl_cuda_ctx.totals,         bl_cuda_ctx.row_loss,      bl_cuda_ctx.row_hit,
        bl_cuda_ctx.ones,           bl_cuda_ctx.attn_scratch,  bl_cuda_ctx.sort_scratch,
        bl_cuda_ctx.colsum_scratch, bl_cuda_ctx.sumsq_scratch, bl_cuda_ctx.bf16_scratch};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
        if (buffers[i] != NULL) {
            cudaFree(buffers[i]);
        }
    }
    memset(&bl_cuda_ctx, 0, sizeof bl_cuda_ctx);
}

extern "C" int bl_cuda_active(void)
{
    return bl_cuda_ctx.ready;
}

extern "C" int bl_cuda_check(char *err, size_t errlen)
{
    /* A kernel launch's own error shows here, not at the launch. */
    bl_cuda_ok(cudaGetLastError(), "a kernel launch");
    if (bl_cuda_ctx.failure[0] == '\0') {
        return 0;
    }
    snprintf(err, errlen, "%s", bl_cuda_ctx.failure);
    bl_cuda_ctx.failure[0] = '\0';
    return -1;
}

extern "C" int bl_cuda_sync(char *err, size_t errlen)
{
    /* The compute stream, then the downloads queued after it. */
    if (bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.stream), "waiting for the GPU") &&
        bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.copy_stream), "waiting for the downloads")) {
        bl_cuda_ctx.downloads_arrived = bl_cuda_ctx.downloads_started;
    }
    return bl_cuda_check(err, errlen);
}

extern "C" int bl_cuda_sync_compute(char *err, size_t errlen)
{
    /* The compute stream alone: the copy stream's downloads overlap what
     * comes after and are learnt of by their events (memory.cu). */
    bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.stream), "waiting for the GPU");
    return bl_cuda_check(err, errlen);
}

void bl_cuda_forget_not_ready(void)
{
    if (cudaPeekAtLastError() == cudaErrorNotReady) {
        cudaGetLastError();
    }
}

int bl_cuda_row_scratch(size_t rows)
{
    if (rows <= bl_cuda_ctx.row_cap) {
        return 1;
    }
    /* At least doubled: growing is slow (see BL_CUDA_ROWS_AT_START). */
    rows = rows > 2 * bl_cuda_ctx.row_cap ? rows : 2 * bl_cuda_ctx.row_cap;
    /* The old buffers may still be read by queued kernels. */
    if (!bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.stream), "growing the loss scratch")) {
        return 0;
    }
    cudaFree(bl_cuda_ctx.row_loss);
    cudaFree(bl_cuda_ctx.row_hit);
    bl_cuda_ctx.row_loss = NULL;
    bl_cuda_ctx.row_hit = NULL;
    bl_cuda_ctx.row_cap = 0;
    if (!bl_cuda_ok(cudaMalloc((void **)&bl_cuda_ctx.row_loss, rows * sizeof(double)),
                    "allocating the loss scratch") ||
        !bl_cuda_ok(cudaMalloc((void **)&bl_cuda_ctx.row_hit, rows * sizeof(int)),
                    "allocating the loss scratch")) {
        return 0;
    }
    bl_cuda_ctx.row_cap = rows;
    return 1;
}

int bl_cuda_grow(void **buf, size_t *cap, size_t nbytes, const char *what)
{
    if (nbytes <= *cap && *buf != NULL) {
        return 1;
    }
    /* At least doubled: growing is slow (it waits for the GPU). */
    nbytes = nbytes > 2 * *cap ? nbytes : 2 * *cap;
    nbytes = nbytes > 0 ? nbytes : 1;
    /* The old buffer may still be read by queued kernels. */
    if (!bl_cuda_ok(cudaStreamSynchronize(bl_cuda_ctx.stream), what)) {
        return 0;
    }
    if (*buf != NULL) {
        cudaFree(*buf);
    }
    *buf = NULL;
    *cap = 0;
    if (!bl_cuda_ok(cudaMalloc(buf, nbytes), what)) {
        *buf = NULL;
        return 0;
    }
    *cap = nbytes;
    return 1;
}
