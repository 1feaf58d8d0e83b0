/* Device communicators move device memory straight between the device
 * ranks of a group (a data-parallel group's gradient all-reduce, a
 * pipeline's activations and input gradients), without staging it through
 * host memory. Posting returns at once; bl_device_comm_wait completes
 * everything that the rank posted on any device communicator so far, and
 * past the timeout the job gives up (BL_ERR_TIMEOUT naming the operation;
 * NCCL's communicator is aborted). CUDA GPUs use NCCL (cuda/comm.h), one
 * communicator per group, whose unique id the group's first rank makes and
 * broadcasts over MPI. The mirror device uses MPI on its memory (host
 * memory) in NCCL's order: a rank runs one group of transfers at a time, in
 * the order posted, across all its device communicators (NCCL's comm stream
 * is the process's), and a send completes only once its receiver takes it
 * (MPI_Issend), as NCCL's does. So the code that drives NCCL is tested
 * without a GPU, and a schedule that would deadlock under NCCL deadlocks (or
 * times out) on the mirror too (README.md, section "GPUs"). */
#ifndef BL_DEVICE_COMM_H
#define BL_DEVICE_COMM_H

#include "runtime_impl.h"

typedef struct bl_device_comm bl_device_comm_t;

/* Opens the device communicator of `group` for `role` ("gradient" or
 * "pipeline", which messages name). Collective over group: every member
 * learns whether all succeeded. On success *out belongs to the caller, who
 * frees it with bl_device_comm_free; on failure *out is NULL. Returns
 * BL_ERR_UNSUPPORTED for a CPU rank, or for a GPU rank in a build without
 * CUDA. Every member must be a device rank of the same kind, one per GPU
 * (device_group.h decides that). timeout_s bounds the waits (0 means no
 * bound; NCCL's set-up is always bounded, by 120 s or more). */
bl_status_t bl_device_comm_open(bl_runtime_t *rt, MPI_Comm group, const char *role,
                                double timeout_s, bl_device_comm_t **out);
/* Frees c; freeing NULL is a no-op. When healthy is nonzero, every member
 * frees c together after its last wait (NCCL finalizes). Otherwise c is
 * abandoned without waiting for anyone: NCCL aborts, and the mirror cancels
 * its pending receive and leaves its sends in flight. */
void bl_device_comm_free(bl_device_comm_t *c, int healthy);

/* Returns the kind of c for logs: "NCCL" or "MPI in NCCL's place (mirror)"
 * ("none" for NULL). The string is static. */
const char *bl_device_comm_name(const bl_device_comm_t *c);

/* Posts an in-place SUM all-reduce of count floats at buf (device memory),
 * after the compute work queued so far. Collective: every member posts the
 * same all-reduces in the same order. */
bl_status_t bl_device_comm_allreduce(bl_device_comm_t *c, float *buf, size_t count);

/* Posts one group of transfers that run together: send_count floats at
 * send to member `to`, and recv_count floats into recv from member `from`
 * (a member of −1, or a count of 0, means no transfer). The peers post the
 * matching groups: a member's sends to a peer meet that peer's receives
 * from it in the order posted. A member outside the group, or a NULL buffer
 * for a transfer, gives BL_ERR_INVALID_ARG. */
bl_status_t bl_device_comm_exchange(bl_device_comm_t *c, const float *send, size_t send_count,
                                    int to, float *recv, size_t recv_count, int from);

/* Waits until everything posted so far is done. Afterwards the received
 * data may be read and the sent buffers written, by the host or by compute
 * queued after the call. `op` names the wait in NCCL's messages (the
 * mirror's transfers name themselves). */
bl_status_t bl_device_comm_wait(bl_device_comm_t *c, const char *op);

#endif /* BL_DEVICE_COMM_H */
