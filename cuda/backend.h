/* The CUDA backend as one table of functions: what libballast calls on a
 * GPU rank. The backend is a loadable module of its own,
 * libballast_cuda.so (backend.c, over the static library of cuda/), that
 * libballast opens with dlopen when a rank asks for a GPU
 * (runtime/device/cuda_backend.c). So libballast itself needs no CUDA, cuBLAS or
 * NCCL library to load: a CPU node without them runs the same program and
 * library as a GPU node, and a mixed job can span both.
 *
 * C, and no CUDA or NCCL header: runtime/ (C11) includes it in every
 * build. The module and the library that opens it must agree on this
 * table: it carries the ABI number, its own size and the build id
 * (ballast's version and a digest of the headers that shape the table,
 * made by CMakeLists.txt), and the loader refuses a module whose differ. */
#ifndef BL_CUDA_BACKEND_H
#define BL_CUDA_BACKEND_H

#include <stddef.h>

#include "comm.h"
#include "cuda_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Raised whenever this table, kernels.h's tables or the signatures below
 * change. */
enum { BL_CUDA_BACKEND_ABI = 2 };

/* The module's one exported symbol, looked up by this name. */
#define BL_CUDA_BACKEND_ENTRY "bl_cuda_backend_entry"

typedef struct bl_cuda_backend {
    int abi;            /* BL_CUDA_BACKEND_ABI of the module's build */
    size_t table_bytes; /* sizeof(bl_cuda_backend_t) there */
    const char *build;  /* the build id there: "0.2.0+<16 hex digits>" */

    /* cuda_kernels.h */
    const bl_kernels_t *kernels;
    const bl_kernels_t *kernels_bf16; /* bf16 autocast (cuda_kernels.h) */
    const bl_device_memory_t *memory;
    int (*device_count)(char *err, size_t errlen);
    int (*describe)(int device, bl_cuda_info_t *out, char *err, size_t errlen);
    int (*init)(int device, char *err, size_t errlen);
    void (*shutdown)(void);
    int (*active)(void);

    /* comm.h */
    int (*nccl_unique_id)(unsigned char id[BL_NCCL_ID_BYTES], char *err, size_t errlen);
    int (*nccl_comm_create)(const unsigned char id[BL_NCCL_ID_BYTES], int nranks, int rank,
                            double timeout_s, bl_nccl_comm_t **out, char *err, size_t errlen);
    void (*nccl_comm_destroy)(bl_nccl_comm_t *c);
    void (*nccl_comm_abort)(bl_nccl_comm_t *c);
    int (*nccl_allreduce_sum)(bl_nccl_comm_t *c, float *buf, size_t count, char *err,
                              size_t errlen);
    int (*nccl_group_start)(char *err, size_t errlen);
    int (*nccl_group_end)(bl_nccl_comm_t *c, char *err, size_t errlen);
    int (*nccl_send)(bl_nccl_comm_t *c, const float *buf, size_t count, int peer, char *err,
                     size_t errlen);
    int (*nccl_recv)(bl_nccl_comm_t *c, float *buf, size_t count, int peer, char *err,
                     size_t errlen);
    int (*nccl_settle)(bl_nccl_comm_t *c, char *err, size_t errlen);
    int (*nccl_wait)(bl_nccl_comm_t *c, double timeout_s, const char *op, char *err, size_t errlen);
    void (*nccl_version)(char *out, size_t n);
} bl_cuda_backend_t;

/* The module's entry: its table (static, never NULL). */
const bl_cuda_backend_t *bl_cuda_backend_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* BL_CUDA_BACKEND_H */
