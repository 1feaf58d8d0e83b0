/* The contents of the runtime handle, and the failure records that every
 * module of the runtime uses. The device that a rank computes on is part of
 * the handle: its type is defined here, and its functions are in
 * device/device.h. The bounded waits and collectives are in core/wait.h, and
 * the roll call is in core/rollcall.h. */
#ifndef BL_RUNTIME_IMPL_H
#define BL_RUNTIME_IMPL_H

#include "internal.h"
#include "kernels.h"
#include "policy.h" /* for bl_part_allocator_t */

/* Where a rank computes: its kernel table, and the memory that those
 * kernels work on (NULL means host memory, the CPU's). A device with memory
 * of its own holds the model's parameters, gradients, momentum and
 * activations there (the trainer's device copies), and its batches are
 * staged from host memory. */
struct bl_cuda_backend;

struct bl_device {
    const bl_kernels_t *kernels;
    const bl_kernels_t *kernels_bf16;   /* bf16 autocast (kernels.h); NULL for the CPU */
    const bl_device_memory_t *memory;   /* NULL for the CPU */
    const struct bl_cuda_backend *cuda; /* a GPU's backend (cuda/backend.h), else NULL */
    bl_device_kind_t kind;
    int shared;          /* 1 when another rank of the node computes on the same GPU */
    char pci_bus_id[32]; /* the GPU's PCI address, or "" for other devices */
    bl_runtime_t *rt;    /* the runtime whose device this is (failures go there); NULL: none */
    char name[96];       /* e.g. "cpu", "cuda:0 NVIDIA H200" or "mirror" */
};

struct bl_runtime {
    MPI_Comm comm; /* the duplicate of the caller's communicator, with MPI_ERRORS_RETURN */
    int rank;
    int size;
    bl_config_t cfg; /* the config, with log_level resolved and the allocator hooks copied */
    bl_device_t device;
    int blas_threads; /* the BLAS threads of this rank, as bl_topology_setup chose them */
    double cpu_quota; /* the cores of CPU time its cgroup allows (core/cpu_quota.h); 0: none */
    bl_error_t err;   /* the last failure, for bl_last_error */
    /* Hang detection: a step's waits give up after wait_timeout_s seconds
     * (0 means that they wait forever), and the error names wait_step. The
     * trainer sets both. */
    double wait_timeout_s;
    long wait_step;
    /* Set once a wait has timed out. Requests may then stay pending for
     * good and still write into buffers, so the teardown neither waits for
     * them nor frees anything (the trainer and the runtime are leaked
     * whole). */
    int gave_up;
    /* The roll call (rollcall.c): two duplicates of comm, one for the
     * "where are you?" queries after a timeout and one for their answers,
     * and the number of queries that this rank has sent. */
    MPI_Comm rollcall, rollcall_answers;
    long rollcall_queries;
    /* The device communicator (device_comm.c) that the rank posted on last,
     * or NULL once that work is settled. On the mirror it holds the group of
     * transfers in flight (like a GPU's comm stream, a rank runs one group at
     * a time); with NCCL it made the last call, which is settled onto the
     * stream before another communicator posts. */
    struct bl_device_comm *device_in_flight;
};

/* Records a failure on rt (message and status), logs it at debug level and
 * returns status. */
bl_status_t bl_fail(bl_runtime_t *rt, bl_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adopts a module's error record into rt and returns its status. */
bl_status_t bl_fail_from(bl_runtime_t *rt, const bl_error_t *err);

/* Records on rt a BL_ERR_MPI failure for the MPI error code mpi_err, which
 * the call that `what` names returned, with MPI's string for the code, and
 * returns BL_ERR_MPI. */
bl_status_t bl_fail_mpi(bl_runtime_t *rt, int mpi_err, const char *what);

/* Returns the level that text names, spelt as in $BALLAST_LOG ("error" ..
 * "debug", in any case), or -1 when the name is unknown. */
int bl_log_level_parse(const char *text);

static inline const bl_allocator_t *bl_rt_allocator(const bl_runtime_t *rt)
{
    return &rt->cfg.allocator;
}

/* Returns the runtime's allocator hooks in the shape that partition/
 * takes. */
static inline bl_part_allocator_t bl_rt_part_allocator(const bl_runtime_t *rt)
{
    bl_part_allocator_t a = {rt->cfg.allocator.alloc, rt->cfg.allocator.release,
                             rt->cfg.allocator.ctx};
    return a;
}

#endif /* BL_RUNTIME_IMPL_H */
