/* The kernel table of kernels.h on one CUDA GPU (cuBLAS for the products,
 * .cu kernels for the element-wise passes). Every float and label pointer
 * given to bl_cuda_kernels is device memory; the kernels run in order on
 * the context's compute stream, and only softmax_xent waits for the GPU
 * (it returns the loss to the host). The stream is a blocking one: it
 * waits for work on the legacy default stream, so a plain cudaMemcpy
 * upload is ordered before the kernels that read it; a caller using
 * other streams orders them itself. Row-major, as on the CPU; results
 * differ from the CPU's by summation order, FMA contraction and the
 * device's expf/log (tests/test_cuda_kernels.c states the tolerance).
 *
 * One context per process (a rank drives one GPU): bl_cuda_init picks the
 * device and creates the stream and the cuBLAS handle. The table's
 * functions cannot return a status, so a failed CUDA or cuBLAS call is
 * recorded and bl_cuda_check reports the first one since the last check. */
#ifndef BL_CUDA_KERNELS_H
#define BL_CUDA_KERNELS_H

#include <stddef.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const bl_kernels_t bl_cuda_kernels;
/* bf16 autocast on the GPU: bl_cuda_kernels with its products taking
 * bfloat16 operands on the tensor cores and accumulating in fp32, the
 * products that kernels.h's bl_cpu_bf16_kernels names (its twin). */
extern const bl_kernels_t bl_cuda_bf16_kernels;
/* Its memory (cudaMalloc'd; copies on the compute stream; memory.cu). */
extern const bl_device_memory_t bl_cuda_memory;

/* What a GPU is, for logs and for placing the rank near it (hwloc finds
 * the GPU's NUMA node by its PCI address). */
typedef struct bl_cuda_info {
    char name[256];
    char pci_bus_id[32]; /* "0000:19:00.0" */
    size_t memory_bytes;
    int major, minor; /* compute capability */
} bl_cuda_info_t;

/* Fills *out for `device` (of those visible): 0, or -1 with the reason in
 * err. */
int bl_cuda_describe(int device, bl_cuda_info_t *out, char *err, size_t errlen);

/* GPUs this process can see (CUDA_VISIBLE_DEVICES applies); 0 when there
 * is none or no driver, with the reason in err. */
int bl_cuda_device_count(char *err, size_t errlen);

/* Makes `device` current and creates the compute stream and the cuBLAS
 * handle. 0, or -1 with the reason in err. Again after bl_cuda_shutdown. */
int bl_cuda_init(int device, char *err, size_t errlen);
void bl_cuda_shutdown(void);
/* Whether bl_cuda_init has run (and bl_cuda_shutdown not since). */
int bl_cuda_active(void);

/* The first failure of a kernel call since the last check: 0 when none,
 * else -1 with the call and CUDA's or cuBLAS's message in err. Clears it. */
int bl_cuda_check(char *err, size_t errlen);

/* Waits for the compute stream and the downloads started before the call
 * (the copy stream): 0, or -1 with the reason in err. */
int bl_cuda_sync(char *err, size_t errlen);
/* Waits for the compute stream only (the downloads on the copy stream may
 * still be in flight): 0, or -1 with the reason in err, as bl_cuda_sync. */
int bl_cuda_sync_compute(char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* BL_CUDA_KERNELS_H */
