/* The policies' learned state in a checkpoint: rank 0's shard policy
 * (controller.h) and stage policy (restager.h), so a resumed run goes on
 * deciding from what it had learnt instead of learning again. The bytes,
 * in the manifest's CONTROL section:
 *   u64 n1, n1 bytes of the shard policy's state (0: none),
 *   u64 n2, n2 bytes of the stage policy's state (0: none);
 * each part as partition/ saves it (it carries its own kind and counts). */
#ifndef BL_POLICY_STATE_H
#define BL_POLICY_STATE_H

#include <stddef.h>

#include "policy.h"
#include "restage.h"
#include "runtime_impl.h"

/* Rank 0: the bytes of both policies (either may be NULL) into *out
 * (allocated with rt's allocator; free with bl_mem_free) and *n. */
bl_status_t bl_policy_state_collect(bl_runtime_t *rt, const bl_policy_t *shards,
                                    const bl_restage_t *stages, unsigned char **out, size_t *n);

/* Rank 0, on resume: loads each part into its policy. A part that does
 * not fit (another policy kind, rank or stage count after resharding, a
 * policy that is off now) is skipped with an info line naming why; that
 * policy starts afresh. Never fails: the state only steers decisions,
 * never the math. `path` names the checkpoint in the log. */
void bl_policy_state_restore(bl_runtime_t *rt, bl_policy_t *shards, bl_restage_t *stages,
                             const unsigned char *bytes, size_t n, const char *path);

#endif /* BL_POLICY_STATE_H */
