/* The roll call (rollcall.c): after a wait times out, "where are you?"
 * queries to a communicator's members, so the error names the ranks that
 * had not arrived and what each was waiting in. */
#ifndef BL_ROLLCALL_H
#define BL_ROLLCALL_H

#include "runtime_impl.h"

/* Setup is collective over rt->comm. Answer
 * replies to pending queries with this rank's step and `op`. Take asks
 * comm's other members where they are, waits half a second for answers and
 * writes ": ranks that had not arrived: 1 (no answer: ...), 3 (waiting in
 * OP at step N)" into out (cap bytes). */
bl_status_t bl_rollcall_setup(bl_runtime_t *rt);
void bl_rollcall_answer(bl_runtime_t *rt, const char *op);
void bl_rollcall_take(bl_runtime_t *rt, MPI_Comm comm, const char *op, char *out, size_t cap);

#endif /* BL_ROLLCALL_H */
