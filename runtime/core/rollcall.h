/* The roll call (rollcall.c). After a wait times out, the rank sends
 * "where are you?" queries to a communicator's members, so that the error
 * names the ranks that had not arrived and what each of them was waiting
 * in. */
#ifndef BL_ROLLCALL_H
#define BL_ROLLCALL_H

#include "runtime_impl.h"

/* Makes the two roll-call communicators, rt->rollcall for the queries and
 * rt->rollcall_answers for the answers, as duplicates of rt->comm.
 * Collective over rt->comm. Returns BL_OK, or BL_ERR_MPI (recorded on rt)
 * when a duplication fails. */
bl_status_t bl_rollcall_setup(bl_runtime_t *rt);

/* Replies to every pending query with this rank's step and `op`. It returns
 * at once when no query is pending, and it stops quietly when an MPI call
 * fails. */
void bl_rollcall_answer(bl_runtime_t *rt, const char *op);

/* Asks comm's other members where they are, waits half a second for their
 * answers and writes the result into out (a buffer of cap bytes), e.g.
 * ": ranks that had not arrived: 1 (no answer: ...), 3 (waiting in OP at
 * step N)". It has no status: when no roll call is possible, out says so. */
void bl_rollcall_take(bl_runtime_t *rt, MPI_Comm comm, const char *op, char *out, size_t cap);

#endif /* BL_ROLLCALL_H */
