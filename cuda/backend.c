/* libballast_cuda.so's entry (backend.h): the backend's functions in one
 * table. The module exports only this function (the static library's
 * symbols stay inside it: cuda/CMakeLists.txt links it with
 * --exclude-libs). */
#include "backend.h"

static const bl_cuda_backend_t backend = {
    .abi = BL_CUDA_BACKEND_ABI,
    .table_bytes = sizeof(bl_cuda_backend_t),
    .build = BALLAST_BACKEND_BUILD,
    .kernels = &bl_cuda_kernels,
    .kernels_bf16 = &bl_cuda_bf16_kernels,
    .memory = &bl_cuda_memory,
    .device_count = bl_cuda_device_count,
    .describe = bl_cuda_describe,
    .init = bl_cuda_init,
    .shutdown = bl_cuda_shutdown,
    .active = bl_cuda_active,
    .nccl_unique_id = bl_nccl_unique_id,
    .nccl_comm_create = bl_nccl_comm_create,
    .nccl_comm_destroy = bl_nccl_comm_destroy,
    .nccl_comm_abort = bl_nccl_comm_abort,
    .nccl_allreduce_sum = bl_nccl_allreduce_sum,
    .nccl_group_start = bl_nccl_group_start,
    .nccl_group_end = bl_nccl_group_end,
    .nccl_send = bl_nccl_send,
    .nccl_recv = bl_nccl_recv,
    .nccl_settle = bl_nccl_settle,
    .nccl_wait = bl_nccl_wait,
    .nccl_version = bl_nccl_version,
};

__attribute__((visibility("default"))) const bl_cuda_backend_t *bl_cuda_backend_entry(void)
{
    return &backend;
}
