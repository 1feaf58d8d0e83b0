/* The inside of a device communicator (device_comm.h), which its two kinds
 * share: the mirror's MPI in device_comm.c, and NCCL in nccl_comm.c. */
#ifndef BL_DEVICE_COMM_IMPL_H
#define BL_DEVICE_COMM_IMPL_H

#include "device_comm.h"
#include "wait.h"

typedef struct bl_device_comm_ops {
    const char *name;
    bl_status_t (*allreduce)(bl_device_comm_t *c, float *buf, size_t count);
    bl_status_t (*exchange)(bl_device_comm_t *c, const float *send, size_t send_count, int to,
                            float *recv, size_t recv_count, int from);
    bl_status_t (*wait)(bl_device_comm_t *c, const char *op);
    void (*release)(bl_device_comm_t *c, int healthy);
} bl_device_comm_ops_t;

struct bl_nccl_comm;

struct bl_device_comm {
    const bl_device_comm_ops_t *ops;
    bl_runtime_t *rt;
    char role[32];    /* "gradient" or "pipeline" */
    int rank, size;   /* this member's rank in the group, and the group's size */
    int *job_ranks;   /* (size) each member's rank in rt->comm, for messages */
    double timeout_s; /* the bound on waits; 0: unbounded */
    /* The mirror's state: a duplicate of the group, and the group of
     * transfers in flight (at most one per rank; rt->device_in_flight says
     * whose it is). */
    MPI_Comm mpi;
    MPI_Request requests[2];
    int peers[2];     /* the member each request is with; −1 for the all-reduce */
    char posted[192]; /* what is in flight, for a timeout's message */
    /* NCCL's state */
    struct bl_nccl_comm *nccl;
};

/* NCCL's part of bl_device_comm_open (nccl_comm.c). It joins the group's
 * NCCL communicator and sets c->ops; c's other fields are set already.
 * Collective over group: all members agree on the outcome. Returns
 * BL_ERR_UNSUPPORTED in a build without CUDA. */
bl_status_t bl_nccl_comm_open(bl_device_comm_t *c, MPI_Comm group);

#endif /* BL_DEVICE_COMM_IMPL_H */
