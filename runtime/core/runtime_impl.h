/* The runtime handle's contents and the failure records every module of
 * the runtime uses. The device a rank computes on is part of the handle
 * (its type here; its functions in device/device.h). Bounded waits and
 * collectives are core/wait.h's, the roll call core/rollcall.h's. */
#ifndef BL_RUNTIME_IMPL_H
#define BL_RUNTIME_IMPL_H

#include "internal.h"
#include "kernels.h"
#include "policy.h" /* bl_part_allocator_t */

/* Where a rank computes: its kernel table, and the memory those kernels
 * work on (NULL: host memory, the CPU's). A device with memory of its own
 * gets the model's parameters, gradients, momentum and activations there
 * (the trainer's device copies), its batches staged from host memory. */
struct bl_cuda_backend;

struct bl_device {
    const bl_kernels_t *kernels;
    const bl_device_memory_t *memory;   /* NULL for the CPU */
    const struct bl_cuda_backend *cuda; /* a GPU's backend (cuda/backend.h), else NULL */
    bl_device_kind_t kind;
    int shared;          /* another rank of the node computes on the same GPU */
    char pci_bus_id[32]; /* the GPU's PCI address, "" for others */
    bl_runtime_t *rt;    /* the runtime whose device this is (failures go there); NULL: none */
    char name[96];       /* "cpu", "cuda:0 NVIDIA H200", "mirror" */
};

struct bl_runtime {
    MPI_Comm comm; /* our duplicate of the caller's communicator, MPI_ERRORS_RETURN */
    int rank;
    int size;
    bl_config_t cfg; /* log_level resolved; allocator hooks copied */
    bl_device_t device;
    int blas_threads; /* BLAS threads of this rank, as bl_topology_setup chose */
    bl_error_t err;   /* the last failure, for bl_last_error */
    /* Hang detection: a step's waits give up after wait_timeout_s seconds
     * (0: they wait forever), naming wait_step (set by the trainer). */
    double wait_timeout_s;
    long wait_step;
    /* Set once a wait has timed out: requests may stay pending for good
     * and still write into buffers, so teardown neither waits for them nor
     * frees anything (the trainer and the runtime are leaked whole). */
    int gave_up;
    /* Roll call (rollcall.c): duplicates of comm for "where are you?"
     * queries after a timeout and for their answers, and the queries this
     * rank has sent. */
    MPI_Comm rollcall, rollcall_answers;
    long rollcall_queries;
    /* The device communicator (device_comm.c) the rank posted on last, or
     * NULL once settled: the mirror's group of transfers in flight (like a
     * GPU's comm stream, a rank runs one group at a time), or NCCL's last
     * call, settled onto the stream before another communicator posts. */
    struct bl_device_comm *device_in_flight;
};

/* Records a failure on rt (message and status), logs it at debug level and
 * returns status. */
bl_status_t bl_fail(bl_runtime_t *rt, bl_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adopts a module's error record into rt and returns its status. */
bl_status_t bl_fail_from(bl_runtime_t *rt, const bl_error_t *err);

/* Turns an MPI error code from `what` into BL_ERR_MPI with MPI's string. */
bl_status_t bl_fail_mpi(bl_runtime_t *rt, int mpi_err, const char *what);

/* Parses a level name as $BALLAST_LOG spells it ("error" .. "debug"); -1
 * when unknown. */
int bl_log_level_parse(const char *text);

static inline const bl_allocator_t *bl_rt_allocator(const bl_runtime_t *rt)
{
    return &rt->cfg.allocator;
}

/* The same hooks in partition/'s shape. */
static inline bl_part_allocator_t bl_rt_part_allocator(const bl_runtime_t *rt)
{
    bl_part_allocator_t a = {rt->cfg.allocator.alloc, rt->cfg.allocator.release,
                             rt->cfg.allocator.ctx};
    return a;
}

#endif /* BL_RUNTIME_IMPL_H */
