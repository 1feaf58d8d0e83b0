/* Transfers of device memory straight between the device ranks of a group
 * (a data-parallel group's gradient all-reduce, a pipeline's activations
 * and input gradients), without staging through host memory:
 *   - CUDA GPUs: NCCL (cuda/comm.h), a communicator per group, its unique
 *     id made by the group's first rank and broadcast over MPI;
 *   - the mirror device: MPI on its memory (host memory), keeping NCCL's
 *     ordering, so the runtime code that drives NCCL runs and is tested
 *     without a GPU: a rank's transfers run one group at a time in the
 *     order they were posted, on all its device communicators together
 *     (NCCL's comm stream is the process's), and a send completes only
 *     once its receiver takes it (MPI_Issend), as NCCL's does. A schedule
 *     that would deadlock under NCCL deadlocks (or times out) on the
 *     mirror too.
 * Posting returns at once; bl_device_comm_wait completes everything the
 * rank posted on any device communicator so far, bounded by the timeout:
 * past it the job gives up (BL_ERR_TIMEOUT naming the operation; NCCL's
 * communicator is aborted). */
#ifndef BL_DEVICE_COMM_H
#define BL_DEVICE_COMM_H

#include "runtime_impl.h"

typedef struct bl_device_comm bl_device_comm_t;

/* Opens the device communicator of `group` (every member a device rank of
 * the same kind, one per GPU: device_group.h decides), for `role`
 * ("gradient", "pipeline": named in messages). Collective over group:
 * every member learns whether all succeeded. timeout_s bounds the waits
 * (0: none; NCCL's set-up is always bounded, by 120 s or more). On
 * success *out belongs to the caller (bl_device_comm_free); on failure it
 * is NULL. BL_ERR_UNSUPPORTED for a CPU rank, or a GPU rank in a build
 * without CUDA. */
bl_status_t bl_device_comm_open(bl_runtime_t *rt, MPI_Comm group, const char *role,
                                double timeout_s, bl_device_comm_t **out);
/* Frees c. healthy: every member frees it together after its last wait
 * (NCCL finalizes); else it is abandoned without waiting for anyone
 * (NCCL aborts; the mirror leaves its transfers in flight). NULL: no-op. */
void bl_device_comm_free(bl_device_comm_t *c, int healthy);

/* "NCCL", or "MPI in NCCL's place (mirror)": for logs. */
const char *bl_device_comm_name(const bl_device_comm_t *c);

/* Posts an in-place SUM all-reduce of count floats at buf (device
 * memory), after the compute work queued so far. Collective: every member
 * posts the same all-reduces in the same order. */
bl_status_t bl_device_comm_allreduce(bl_device_comm_t *c, float *buf, size_t count);

/* Posts one group: send_count floats at send to member `to`, and
 * recv_count floats into recv from member `from`, run together (to or
 * from −1: none). The peers post the matching groups; a member's sends
 * to a peer meet that peer's receives from it in the order posted. */
bl_status_t bl_device_comm_exchange(bl_device_comm_t *c, const float *send, size_t send_count,
                                    int to, float *recv, size_t recv_count, int from);

/* Waits until everything posted so far is done: the received data may be
 * read and the sent buffers written afterwards, by the host or by compute
 * queued after the call. `op` names the wait in messages. */
bl_status_t bl_device_comm_wait(bl_device_comm_t *c, const char *op);

#endif /* BL_DEVICE_COMM_H */
