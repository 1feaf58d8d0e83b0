/* The controllers' state in a checkpoint: the learned state of rank 0's shard
 * policy (controller.h) and stage policy (restager.h), so that a resumed run
 * goes on deciding from what it had learnt instead of learning again, and the
 * control windows in progress, so that its next decision sees the same
 * observations as the run that was stopped. The bytes in the manifest's
 * CONTROL section are:
 *   - u64 n1, then n1 bytes of the shard policy's state (0: none);
 *   - u64 n2, then n2 bytes of the stage policy's state (0: none);
 *   - and, in checkpoints written since the windows are saved, u64 n3, then
 *     n3 bytes of windows: u64 ranks P, u64 layers L, u64 shard doubles
 *     (0 or BL_CONTROLLER_WINDOW_DOUBLES(P)), u64 stage doubles
 *     (0 or P × BL_RESTAGER_WINDOW_DOUBLES(L)), then those doubles.
 * Each policy part is as partition/ saves it (it carries its own kind and
 * counts). The doubles are in the host's format, as the policy parts are. */
#ifndef BL_POLICY_STATE_H
#define BL_POLICY_STATE_H

#include <stddef.h>

#include "policy.h"
#include "restage.h"
#include "runtime_impl.h"

/* The control windows in progress (see above): shard_count doubles of rank 0's
 * shard-controller window and stage_count doubles of every rank's
 * stage-controller window. Restored windows point into the section's bytes, at
 * any alignment, so copy them out (memcpy) before reading them. */
typedef struct bl_control_windows {
    int ranks, layers;
    const void *shard; /* or NULL */
    size_t shard_count;
    const void *stage; /* or NULL */
    size_t stage_count;
} bl_control_windows_t;

/* Rank 0: packs the state of both policies (either may be NULL) and the windows
 * into *out, allocated with rt's allocator (free it with bl_mem_free), and its
 * length into *n. Returns BL_ERR_NO_MEM on failure, with *out NULL. */
bl_status_t bl_policy_state_collect(bl_runtime_t *rt, const bl_policy_t *shards,
                                    const bl_restage_t *stages, const bl_control_windows_t *w,
                                    unsigned char **out, size_t *n);

/* Rank 0, on resume: loads each policy part into its policy. A part that does
 * not fit (another policy kind, another rank or stage count after resharding,
 * or a policy that is off now) is skipped with an info line naming why, and
 * that policy starts afresh; a malformed state is skipped whole, with a
 * warning. *w receives the windows part (pointing into bytes), or zeros when
 * there is none or it is malformed. It never fails, since the state only steers
 * decisions, never the math. `path` names the checkpoint in the log. */
void bl_policy_state_restore(bl_runtime_t *rt, bl_policy_t *shards, bl_restage_t *stages,
                             const unsigned char *bytes, size_t n, const char *path,
                             bl_control_windows_t *w);

#endif /* BL_POLICY_STATE_H */
