/* The runtime handle's contents, shared by the runtime's modules. */
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

/* The CPU: OpenBLAS on host memory. Passes run on it when no trainer has
 * put the model on another device. */
extern const bl_device_t bl_host_device;

/* Picks and opens this rank's device for cfg->device (device.c): the
 * GPU by the rank's place among the node's GPU ranks, its NUMA locality
 * and, for an unbound rank, the binding near it; one log line per GPU
 * rank on rank 0. Collective over rt->comm; every rank fails when one
 * does. */
bl_status_t bl_device_setup(bl_runtime_t *rt, int requested);
/* Closes the device (a GPU's context); the runtime's last call. */
void bl_device_close(bl_runtime_t *rt);

/* count elements of elem_nbytes on dev: its own memory when it has some,
 * else host memory from the runtime's allocator. NULL on failure (also
 * when the size overflows). Free with bl_buffer_free on the same dev. */
void *bl_buffer_alloc(bl_runtime_t *rt, const bl_device_t *dev, size_t count, size_t elem_nbytes);
void bl_buffer_free(const bl_allocator_t *a, const bl_device_t *dev, void *ptr);

/* dev's first failure since the last check, as BL_ERR_CUDA naming `what`
 * (BL_OK when none, and always on the CPU). Waits for the device. */
bl_status_t bl_device_check(bl_runtime_t *rt, const bl_device_t *dev, const char *what);
/* The same, but waits only for dev's kernels and copies, not for the
 * downloads started with to_host_start (kernels.h's finish_compute): a
 * layer's time then leaves out an earlier bucket's download. */
bl_status_t bl_device_check_compute(bl_runtime_t *rt, const bl_device_t *dev, const char *what);

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

/* Collective: did any rank fail? Every rank learns. A rank that failed
 * keeps its own status and message; the others fail with `elsewhere` and
 * "<what> failed on another rank". */
bl_status_t bl_agree(bl_runtime_t *rt, bl_status_t mine, bl_status_t elsewhere, const char *what);

/* Completes *req like MPI_Wait; with rt->wait_timeout_s > 0 it gives up
 * after that many seconds with BL_ERR_TIMEOUT and a message naming the
 * step, `op` and the rank it waits for, `peer` (of rt->comm). While it
 * polls it answers other ranks' roll calls. A request that timed out is
 * left pending: the job is ending. */
bl_status_t bl_wait_bounded(bl_runtime_t *rt, MPI_Request *req, const char *op, int peer);
/* The same for a collective on comm: on timeout a roll call of comm's
 * members names those that had not arrived. */
bl_status_t bl_wait_collective(bl_runtime_t *rt, MPI_Request *req, const char *op, MPI_Comm comm);
/* MPI_Waitany under the same bound, for collectives on comm: *index of the
 * request completed. */
bl_status_t bl_waitany_collective(bl_runtime_t *rt, int n, MPI_Request *reqs, int *index,
                                  const char *op, MPI_Comm comm);

/* A collective just posted, whose posting returned rc: the MPI error named
 * `op`, or its completion under the bound (bl_wait_collective). */
bl_status_t bl_collective_posted(bl_runtime_t *rt, int rc, MPI_Request *req, const char *op,
                                 MPI_Comm comm);
/* Blocking collectives under the bound: posted non-blocking, completed
 * by bl_wait_collective; `op` names them in errors. */
bl_status_t bl_bcast_bounded(bl_runtime_t *rt, void *buf, int count, MPI_Datatype type, int root,
                             MPI_Comm comm, const char *op);
bl_status_t bl_allreduce_bounded(bl_runtime_t *rt, const void *send, void *recv, int count,
                                 MPI_Datatype type, MPI_Op mpi_op, MPI_Comm comm, const char *op);
bl_status_t bl_reduce_bounded(bl_runtime_t *rt, const void *send, void *recv, int count,
                              MPI_Datatype type, MPI_Op mpi_op, int root, MPI_Comm comm,
                              const char *op);

/* Roll call (rollcall.c). Setup is collective over rt->comm. Answer
 * replies to pending queries with this rank's step and `op`. Take asks
 * comm's other members where they are, waits half a second for answers and
 * writes ": ranks that had not arrived: 1 (no answer: ...), 3 (waiting in
 * OP at step N)" into out (cap bytes). */
bl_status_t bl_rollcall_setup(bl_runtime_t *rt);
void bl_rollcall_answer(bl_runtime_t *rt, const char *op);
void bl_rollcall_take(bl_runtime_t *rt, MPI_Comm comm, const char *op, char *out, size_t cap);

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
