/* Waits and collectives under the job's bound (wait.c): every wait of the
 * library after set-up gives up after the trainer's timeout, naming the
 * step, the operation and the ranks that had not arrived. */
#ifndef BL_WAIT_H
#define BL_WAIT_H

#include "runtime_impl.h"

/* Collective: did any rank fail? Every rank learns. A rank that failed
 * keeps its own status and message; the others fail with `elsewhere` and
 * "<what> failed on another rank". */
bl_status_t bl_agree(bl_runtime_t *rt, bl_status_t mine, bl_status_t elsewhere, const char *what);
/* The same over a group's members only (a device communicator's set-up:
 * the trainer agrees over the job afterwards). */
bl_status_t bl_agree_in(bl_runtime_t *rt, MPI_Comm group, bl_status_t mine, bl_status_t elsewhere,
                        const char *what);

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

#endif /* BL_WAIT_H */
