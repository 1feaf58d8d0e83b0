/* The replicas of a stage (its data-parallel group) apply the same summed
 * gradients to the same parameters with the same update, so they hold the same
 * parameters and momentum bit for bit, whatever each rank computes on and
 * however the batch is split. The trainer checks this where the host arrays are
 * current (after a run, before a checkpoint). A difference means that a replica
 * updated differently (a device that rounds differently, or a fault), and the
 * job would go on training models that differ, with only the first replica's
 * saved. */
#ifndef BL_REPLICA_CHECK_H
#define BL_REPLICA_CHECK_H

#include <stddef.h>

#include "runtime_impl.h"

/* Compares params[first, first + count) and the same range of velocity across
 * group (velocity may be NULL: the parameters only, as under ZeRO-1, where
 * each replica holds its own slice of the momentum); with MPI_COMM_NULL or
 * one member there is nothing to compare. Returns
 * BL_OK, or BL_ERR_MISMATCH on every member with a message naming the lowest
 * rank that differs from the group's first member, the step, and the counts.
 * Collective over group; the waits are bounded like every collective's. The
 * first member's digests are broadcast, and one all-reduce finds a member that
 * differs; only then are the first member's arrays broadcast in chunks to count
 * the values that differ and by how much. */
bl_status_t bl_replicas_check(bl_runtime_t *rt, MPI_Comm group, long step, const float *params,
                              const float *velocity, size_t first, size_t count);

#endif /* BL_REPLICA_CHECK_H */
