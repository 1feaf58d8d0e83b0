/* Waits and collectives under the job's bound (wait.c). Every wait of the
 * library after the set-up gives up after the trainer's timeout, with a
 * message that names the step, the operation and the ranks that had not
 * arrived. */
#ifndef BL_WAIT_H
#define BL_WAIT_H

#include "runtime_impl.h"

/* Tells every rank whether any rank failed. Collective over rt->comm.
 * Returns BL_OK when no rank failed. A rank that failed returns its own
 * status and keeps its message; the others fail with `elsewhere` and
 * "<what> failed on another rank". A failure of the agreement itself
 * returns its own status. */
bl_status_t bl_agree(bl_runtime_t *rt, bl_status_t mine, bl_status_t elsewhere, const char *what);
/* Tells every rank the outcome of one step of a file's writing: BL_OK when
 * no rank failed, else the largest status of any rank. The lowest rank with
 * that status keeps its message and broadcasts it; every other rank fails
 * with "<path>: <step> failed on rank R: <R's message>" (after its own
 * message, when it failed too). A failure of the agreement itself returns
 * its own status. Collective over rt->comm. */
bl_status_t bl_agree_step(bl_runtime_t *rt, bl_status_t mine, const char *path, const char *step);
/* The same as bl_agree, over the members of group only (for a device
 * communicator's set-up; the trainer agrees over the whole job afterwards).
 * Collective over group. */
bl_status_t bl_agree_in(bl_runtime_t *rt, MPI_Comm group, bl_status_t mine, bl_status_t elsewhere,
                        const char *what);

/* Completes *req like MPI_Wait and returns BL_OK, or BL_ERR_MPI when MPI
 * fails. With rt->wait_timeout_s > 0 it gives up after that many seconds
 * with BL_ERR_TIMEOUT and a message that names the step, `op` and the rank
 * that it waits for, `peer` (a rank of rt->comm). While it polls, it answers
 * other ranks' roll calls. A request that timed out is left pending, because
 * the job is ending. */
bl_status_t bl_wait_bounded(bl_runtime_t *rt, MPI_Request *req, const char *op, int peer);
/* The same for a collective on comm: on a timeout, a roll call of comm's
 * members names those that had not arrived. */
bl_status_t bl_wait_collective(bl_runtime_t *rt, MPI_Request *req, const char *op, MPI_Comm comm);
/* MPI_Waitany under the same bound, for collectives on comm. On success
 * *index is the index of the completed request; no active request at all is
 * a failure (BL_ERR_MPI). */
bl_status_t bl_waitany_collective(bl_runtime_t *rt, int n, MPI_Request *reqs, int *index,
                                  const char *op, MPI_Comm comm);

/* Completes a collective that was just posted and whose posting returned
 * rc. Returns the MPI error (named `op`) when the posting failed, else the
 * status of the wait under the bound (bl_wait_collective). */
bl_status_t bl_collective_posted(bl_runtime_t *rt, int rc, MPI_Request *req, const char *op,
                                 MPI_Comm comm);
/* Blocking collectives under the bound. Each is posted non-blocking and
 * completed by bl_wait_collective; `op` names it in errors. */
bl_status_t bl_bcast_bounded(bl_runtime_t *rt, void *buf, int count, MPI_Datatype type, int root,
                             MPI_Comm comm, const char *op);
bl_status_t bl_allreduce_bounded(bl_runtime_t *rt, const void *send, void *recv, int count,
                                 MPI_Datatype type, MPI_Op mpi_op, MPI_Comm comm, const char *op);
bl_status_t bl_reduce_bounded(bl_runtime_t *rt, const void *send, void *recv, int count,
                              MPI_Datatype type, MPI_Op mpi_op, int root, MPI_Comm comm,
                              const char *op);

#endif /* BL_WAIT_H */
