/* The plan: how a job splits its work, as one value that the trainer, the
 * controller, telemetry and checkpoints all pass around. It says how many
 * samples of each global batch every data-parallel group (pipeline)
 * computes, within which caps, and which contiguous layers each pipeline
 * stage owns. Every pipeline has the same stage map. The version counts
 * the changes the controller has made, so every rank can tell that it
 * runs the same plan.
 *
 * Pure, like the rest of partition/: no MPI, no clocks, no I/O. */
#ifndef BL_PLAN_H
#define BL_PLAN_H

#include <stddef.h>

#include "policy.h" /* bl_part_allocator_t */

typedef struct bl_plan {
    long version; /* changes made so far (0: the first plan) */
    int groups;   /* D: data-parallel groups (pipelines) */
    int stages;   /* S: pipeline stages */
    int layers;   /* L: the model's layers */
    long batch;   /* B: samples per step, Σ shards */
    long *shards; /* (D) samples of each group's contiguous slice of the batch */
    /* (D each) the fewest and most samples a group may be given, or NULL
     * for 0 and B. A plan the trainer makes has both or neither; the
     * validator takes either alone. */
    long *shard_min;
    long *shard_max;
    int *first; /* (S + 1) stage s owns layers [first[s], first[s + 1]) */
} bl_plan_t;

/* Allocates a plan of D groups, S stages and L layers for batch B through
 * a (NULL: malloc), with caps when `capped`: the even split (the first
 * B % D groups one sample more), caps 0 and B, version 0, and every stage
 * but the last one layer (stage s starts at layer s). Returns 0, or -1
 * when the sizes are not positive (L < S) or memory is short; *p is then
 * zeroed. */
int bl_plan_init(bl_plan_t *p, int groups, int stages, int layers, long batch, int capped,
                 const bl_part_allocator_t *a);
void bl_plan_free(bl_plan_t *p, const bl_part_allocator_t *a);

/* The one validator. Returns 0, or -1 with a message in err that names
 * the group as `owner` ("rank" or "pipeline") and says what is wrong:
 * caps that are negative or crossed, caps whose sums leave no room for
 * B, a negative shard, shards that do not sum to B, a shard outside its
 * caps, or a stage map that does not start at layer 0, is not ascending,
 * leaves a stage without layers or does not end at L. */
int bl_plan_check(const bl_plan_t *p, const char *owner, char *err, size_t errlen);

/* Only the caps (0 <= min <= max, Σ min <= B <= Σ max): the first checks
 * of bl_plan_check, for a plan whose shards are still to be chosen. */
int bl_plan_check_caps(const bl_plan_t *p, const char *owner, char *err, size_t errlen);

/* The caps' check itself, on arrays: groups caps each (either array may
 * be NULL: 0, or B), named by `owner`. The shard policies check theirs
 * with it (policy.h). */
int bl_caps_check(int groups, long batch, const long *shard_min, const long *shard_max,
                  const char *owner, char *err, size_t errlen);

/* Only the stage map: bl_plan_check's map checks. */
int bl_plan_check_map(const bl_plan_t *p, char *err, size_t errlen);

/* The split closest to even within the caps (without caps, the even
 * split) into p->shards. The caps must pass bl_plan_check_caps. Returns
 * 0, or -1 when memory for the solver's scratch is short. */
int bl_plan_even_shards(bl_plan_t *p, const bl_part_allocator_t *a);

/* The first sample of group g's slice of the batch (Σ of the shards
 * before it). */
long bl_plan_offset(const bl_plan_t *p, int group);

/* "40,24": the shards as --shards takes them; "0-2,3-4": the stage map as
 * --stages takes it (layers inclusive). Truncated to n bytes. */
void bl_plan_format_shards(const bl_plan_t *p, char *out, size_t n);
void bl_plan_format_map(const int *first, int stages, char *out, size_t n);

#endif /* BL_PLAN_H */
