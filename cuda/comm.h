/* NCCL for the CUDA backend (nccl.cu): communicators and the all-reduce and
 * point-to-point transfers the runtime needs, on the context's comm stream.
 * C linkage and no CUDA or NCCL header, so runtime/ (C11) can call it; the
 * runtime bootstraps a communicator over MPI (the unique id travels in an
 * MPI_Bcast) and decides what a failure means for the job.
 *
 * Streams. bl_cuda_init creates two streams: the compute stream (kernels,
 * cuBLAS) and the comm stream. Every transfer here is enqueued on the comm
 * stream after an event recorded on the compute stream at the call, so it
 * sees everything enqueued on the compute stream before it (a backward
 * pass's gradients) while later compute work overlaps it. bl_nccl_wait
 * makes the compute stream wait for the comm stream, so kernels enqueued
 * after it see the results.
 *
 * Communicators are non-blocking (NCCL's config.blocking = 0): NCCL never
 * blocks the calling thread, so the calls that wait here poll, and with a
 * timeout they give up: past it the communicator is aborted (ncclCommAbort)
 * and the call fails, naming the timeout. A communicator that failed remembers why: later calls
 * on it fail with the first reason, and destroy aborts it.
 *
 * Every fallible call returns 0, or -1 with a message in err (errlen bytes,
 * always terminated) that names the operation and NCCL's or CUDA's error
 * string. Nothing here prints or exits. One thread drives a communicator;
 * the group calls apply to the calling thread (NCCL's group state is per
 * thread). */
#ifndef BL_CUDA_COMM_H
#define BL_CUDA_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bl_nccl_comm bl_nccl_comm_t;

/* The bytes of an NCCL unique id (nccl.cu checks it equals NCCL's). */
enum { BL_NCCL_ID_BYTES = 128 };

/* A fresh unique id for one communicator, made by one member (the runtime:
 * rank 0 of the group) and given to every member before they call
 * bl_nccl_comm_create. It also starts, in this process, the listener that
 * the members meet at (an NCCL thread); it lives until every member has
 * joined, so after a set-up that timed out it stays until the process
 * exits. */
int bl_nccl_unique_id(unsigned char id[BL_NCCL_ID_BYTES], char *err, size_t errlen);

/* Joins the communicator of `nranks` members named by `id` as member
 * `rank` (0 <= rank < nranks), on the current device: bl_cuda_init has run
 * in this process. Collective: every member must call it with the same id
 * and nranks. Polls NCCL's non-blocking set-up; with timeout_s > 0 it gives
 * up after that many seconds (ncclCommAbort, -1, "NCCL communicator set-up
 * (rank r of n) timed out after X s ..."); timeout_s <= 0 waits as long as
 * set-up takes. timeout_s also bounds the later waits that have no timeout
 * of their own (an enqueue behind a previous NCCL call still in progress:
 * "NCCL <op> timed out after X s behind the previous NCCL call ...", and
 * the finalize in bl_nccl_comm_destroy). Every timeout message contains
 * "timed out". On success *out is a communicator the caller owns
 * (bl_nccl_comm_destroy); on failure *out is NULL and nothing is left to
 * free. */
int bl_nccl_comm_create(const unsigned char id[BL_NCCL_ID_BYTES], int nranks, int rank,
                        double timeout_s, bl_nccl_comm_t **out, char *err, size_t errlen);

/* Frees the communicator. A healthy one is finalized first (collective in
 * NCCL's sense: it completes the outstanding transfers, meeting the other
 * members, within the create timeout); one that failed, timed out or does
 * not finalize in time is aborted instead. NULL is a no-op. Call it before
 * bl_cuda_shutdown. */
void bl_nccl_comm_destroy(bl_nccl_comm_t *c);
/* Frees the communicator without finalizing: ncclCommAbort, which never
 * waits for the other members (after a failed step, when they may never
 * come). NULL is a no-op. */
void bl_nccl_comm_abort(bl_nccl_comm_t *c);

/* Enqueues an in-place SUM all-reduce of `count` float32 values at `buf`
 * (device memory) on the comm stream, after everything enqueued so far on
 * the compute stream. Collective: every member enqueues the same
 * all-reduces in the same order. count may exceed INT_MAX. Returns once
 * enqueued (or being enqueued by NCCL in the background); bl_nccl_wait
 * waits for it. buf must not be written until then. */
int bl_nccl_allreduce_sum(bl_nccl_comm_t *c, float *buf, size_t count, char *err, size_t errlen);

/* A group of transfers NCCL runs together: between bl_nccl_group_start and
 * bl_nccl_group_end, sends and receives are only recorded; group_end
 * enqueues them all (on the comm stream, after everything enqueued on the
 * compute stream before group_end). A send and a receive that must overlap
 * (an exchange, or a member sending to itself) go in one group. Call
 * group_end even after a send or receive in the group failed: it closes
 * the group. Groups nest; only the outermost end enqueues. */
int bl_nccl_group_start(char *err, size_t errlen);
int bl_nccl_group_end(bl_nccl_comm_t *c, char *err, size_t errlen);

/* Sends `count` float32 values at `buf` (device memory) to member `peer`
 * of c, or receives `count` into `buf` from `peer`; the peer posts the
 * matching receive or send (same count). Enqueued like the all-reduce; a
 * receive's buffer is read only after bl_nccl_wait, a send's is not
 * written before it. */
int bl_nccl_send(bl_nccl_comm_t *c, const float *buf, size_t count, int peer, char *err,
                 size_t errlen);
int bl_nccl_recv(bl_nccl_comm_t *c, float *buf, size_t count, int peer, char *err, size_t errlen);

/* Waits until c's last call is really on the comm stream: a call that
 * returned while NCCL still enqueues it in the background (ncclInProgress)
 * may not be there yet, and NCCL orders calls on one communicator only;
 * the runtime settles a communicator before it posts on another, so the
 * stream holds them in the order they were posted. Bounded by the create
 * timeout. 0, or -1 naming the failure or the timeout ("timed out"). */
int bl_nccl_settle(bl_nccl_comm_t *c, char *err, size_t errlen);

/* Waits until everything enqueued on the comm stream is done, polling the
 * stream and NCCL's asynchronous error (sleeping ~50 us between polls), so
 * a failed peer shows as an error, not a hang. `op` names what is waited
 * for in messages ("gradient all-reduce"). An NCCL error: -1 "NCCL <op>:
 * <error> (<NCCL's last error>)", the communicator aborted. With
 * timeout_s > 0 and not done in time: the communicator aborted, -1 "NCCL
 * <op> timed out after X s (a member of the communicator did not take
 * part; the communicator was aborted)". On success the compute stream is
 * made to wait for the comm stream, so kernels enqueued afterwards see the
 * results. The comm stream is the process's, shared by its communicators:
 * the wait covers every communicator's transfers enqueued so far (and one
 * of another communicator that never completes times this wait out),
 * while only c's asynchronous errors are polled. */
int bl_nccl_wait(bl_nccl_comm_t *c, double timeout_s, const char *op, char *err, size_t errlen);

/* The linked NCCL's version as "2.x.y" (ncclGetVersion), or "unknown", in
 * out (n bytes), for logs. */
void bl_nccl_version(char *out, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* BL_CUDA_COMM_H */
