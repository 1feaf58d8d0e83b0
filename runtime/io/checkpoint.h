/* Checkpoints. Each checkpoint is a directory, DIR/ckpt-<step>/. A layer
 * trainer's holds a manifest (the run's state, the model's shape and the layout it was
 * saved with) and one file per pipeline stage (that stage's layers'
 * parameters and momentum, written by the stage's rank of pipeline 0, so
 * that no rank holds more than its own layers' state for the save). The
 * files are written into DIR/.tmp-ckpt-<step>-<pid>/, flushed and fsynced;
 * then the directory is fsynced and renamed into place, and DIR is fsynced,
 * so a ckpt-* directory is always complete. Every file has a versioned
 * header (magic, version, byte order, kind) with its own CRC32, and a CRC32
 * per section; a loader checks every length against the model before it
 * allocates or reads. checkpoint_file.h holds the pieces that every kind of
 * checkpoint shares.
 *
 * The file layout (little-endian):
 *   header (32 bytes): "BALLASTK", u32 version (3 for the layer trainer's files, 4 for the
 *     language model's; older ones are read too), u32 0x01020304, u32 kind (1 manifest,
 *     2 stage, 3 language-model manifest, 4 language-model stage file), u32 sections,
 *     u32 CRC32 of the first 24 bytes, u32 0
 *   each section: u32 id, u32 CRC32 of the payload, u64 payload bytes,
 *     payload
 *   manifest sections: MODEL (u32 layers, u32 input width, per layer u32
 *     kind, u32 in, u32 out, u64 parameters), STATE (u64 next step, u64
 *     seed, u32 batch, u32 shuffle, u64 plan version), LAYOUT (u32 ranks,
 *     u32 pipelines D, u32 stages S, S + 1 × i32 first layers, D × i32
 *     shards), CONTROL (from version 2: the controllers' state, policy_state.h, opaque
 *     here, bl_ckpt_state_t.control; may be empty)
 *   stage sections: RANGE (u32 first layer, u32 last layer, u64 first
 *     parameter, u64 parameter count), PARAMS (floats), MOMENTUM (floats)
 *
 * A language-model trainer's checkpoint (runtime/lm/lm_checkpoint.c) is a
 * manifest, DIR/ckpt-<step>/lm.bin, of kind 3, which rank 0 writes, and
 * one stage file per pipeline stage, DIR/ckpt-<step>/stage-K-of-S.bin, of
 * kind 4, which the first replica of stage K writes (every replica holds
 * the same state), so that no rank gathers the model for a save and a resume
 * reads only the units that each rank holds. Both are written in version 4
 * (BL_CKPT_VERSION); the layer trainer's files are still version 3. The
 * manifest's sections:
 *   GPT2 (u32 max_seq_len, vocab_size, num_layers, num_heads, channels,
 *     padded_vocab_size, as bl_gpt2_config_t; u64 parameter count N),
 *   LM_STATE (u64 next step, u64 seed, u32 batch, u32 sequence length,
 *     u32 shuffle, u32 0, u64 AdamW steps taken, u64 plan version),
 *   SHARDS (u32 ranks P, u32 pipelines D, D × u32 shards in sequences,
 *     summing to the batch),
 *   STAGES (from version 3: u32 stages S, with S × D = P, then S + 1 × u32
 *     the stage map in force over the pipeline units, 0 the embedding, 1 .. L
 *     the blocks, L + 1 the head: stage s computes the units [first[s],
 *     first[s + 1]); the map starts at 0, rises strictly and ends at L + 2,
 *     so the embedding is on the first stage and the head on the last; a
 *     version 2 file has no map, and its run keeps its own),
 *   LAYERS (from version 3: u32 user layers U, then per layer u32 its unit,
 *     u32 flags (bit 0: decay; bit 1: inside the block, else after the
 *     unit), u64 its parameter count, in the
 *     config's order: their parameters are the last of the N, in that
 *     order; a resume refuses another list),
 *   CONTROL (the shard policy's and the stage policy's learned state and the
 *     shard controller's window, policy_state.h; may be empty),
 *   FILES (from version 4: u32 S, u32 0, then per stage K u32 its first
 *     unit, u32 its last unit (exclusive), as the map says, u64 the length
 *     of stage-K-of-S.bin, u32 the CRC32 of its UNITS section's payload,
 *     u32 0);
 *   in versions 2 and 3, PARAMS, ADAM_M, ADAM_V in place of FILES (N floats
 *     each: the parameters in llm.c's order, AdamW's first and second
 *     moments), with no stage files; they still resume.
 * A stage file's sections (runtime/lm/lm_checkpoint_stage.c): GPT2 (as the
 * manifest's), UNITS (u64 step, u32 K, u32 S, u32 first unit, u32 last
 * unit, u32 pieces n, u32 0, then per piece u64 its first parameter, u64
 * its parameter count, u32 its unit, u32 CRC32 of its parameters, of its
 * first moments and of its second moments: a piece is one unit's part of
 * one of the stage's parameter ranges, in increasing order), PARAMS, ADAM_M,
 * ADAM_V (the pieces' floats, in their order; one stage's file holds the
 * whole arrays). A loader checks a stage file's length and UNITS against
 * the manifest, and each piece it reads against its CRC32; the manifest is
 * checked in full before the model changes. A reader of either trainer
 * refuses the other's checkpoints with BL_ERR_MISMATCH naming what it found
 * (checkpoint_file.h). */
#ifndef BL_CHECKPOINT_H
#define BL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "plan.h"

/* What a checkpoint records besides the parameters and momentum. */
typedef struct bl_ckpt_state {
    long step; /* the next step to run */
    uint64_t seed;
    int batch;
    int shuffle;
    int ranks;
    /* The plan: its version, pipelines D, stages S, shards and stage map
     * (but no caps). In a loaded state its arrays are allocated with the
     * runtime's allocator. */
    bl_plan_t plan;
    /* The policies' learned state (rank 0's, runtime/control/policy_state.h),
     * or NULL with 0 bytes. In a loaded state it is allocated like the
     * plan's arrays. */
    unsigned char *control;
    size_t control_bytes;
} bl_ckpt_state_t;

/* Where a save stops, for tests of crashes during a save: after part of a
 * stage's data, before the rename, or before the final directory sync; or
 * else a write that fails (as on a full disk). */
typedef enum {
    BL_CKPT_NO_FAULT,
    BL_CKPT_CRASH_PARTIAL_DATA,
    BL_CKPT_CRASH_BEFORE_RENAME,
    BL_CKPT_CRASH_BEFORE_DIR_SYNC,
    BL_CKPT_WRITE_FAILS
} bl_ckpt_fault_t;

/* Saves a checkpoint of step s->step into dir, which is created if it is
 * missing, and keeps the newest `keep` complete checkpoints (0 keeps all).
 * Collective over rt: every rank must call it, and every rank fails when
 * one does. The model and momentum hold every layer of this rank's stage,
 * in the layout l. path (n bytes) receives the checkpoint's directory.
 * Returns BL_OK, BL_ERR_IO, BL_ERR_NO_MEM, BL_ERR_INVALID_ARG (a path that
 * is too long) or BL_ERR_UNSUPPORTED (a big-endian host). A failure removes
 * the temporary directory, but a crash fault returns BL_ERR_IO as if the
 * process had died there (the partial files stay). */
bl_status_t bl_ckpt_save(bl_runtime_t *rt, const char *dir, const bl_model_t *m,
                         const float *momentum, const bl_layout_t *l, const bl_ckpt_state_t *s,
                         int keep, bl_ckpt_fault_t fault, char *path, size_t n);

/* Finds the newest checkpoint in dir that is complete and valid for model m:
 * its manifest and every stage file that its map names pass the loader's
 * checks, so that every rank may then load any window of it. Collective over
 * rt: every rank must call it, and every rank gets the checkpoint's path in
 * path (n bytes) and *found = 1, or *found = 0 when there is none. Rank 0
 * first removes leftover temporary directories, and it warns about each
 * checkpoint that it skips, with the reason. Returns BL_OK, the status of a
 * failed broadcast, or BL_ERR_INVALID_ARG when the path does not fit in
 * path. */
bl_status_t bl_ckpt_find(bl_runtime_t *rt, const char *dir, const bl_model_t *m, char *path,
                         size_t n, int *found);

/* Reads the state of the checkpoint at path (its manifest: the run's
 * state, the plan it was saved with and the policies' state) into *s,
 * after checking the manifest against m, but no parameters: a resume adopts
 * the saved stage map before it loads the layers that it then holds. It is
 * local, not collective. *s's arrays (the plan's, and the policies' state)
 * are allocated with the runtime's allocator; free them with
 * bl_ckpt_state_free. A malformed manifest gives BL_ERR_FORMAT naming the
 * file and the field, and a model of another shape or the language-model
 * trainer's checkpoint BL_ERR_MISMATCH; a manifest that cannot be read
 * gives BL_ERR_IO, and a lack of memory BL_ERR_NO_MEM. On failure *s is
 * left as it was. */
bl_status_t bl_ckpt_read_state(bl_runtime_t *rt, const char *path, const bl_model_t *m,
                               bl_ckpt_state_t *s);

/* Loads the layers [lo, hi) of the checkpoint at path (0 <= lo < hi <= m's
 * layers; BL_ERR_INVALID_ARG otherwise) into their places in m's parameters
 * and in momentum (both of the model's full length, with memory for the
 * window's layers at least), and the state into *s when s is not NULL (as
 * bl_ckpt_read_state). It is local, not collective. It reads the manifest,
 * and then only the stage files whose layers, under the manifest's stage
 * map, overlap the window: each is checked in full (its CRCs, its lengths,
 * and its range against the map), and only its overlap with the window is
 * kept, in scratch arrays of the window's size, so that memory outside the
 * window is never touched (a rank may hold memory for its own stage's layers
 * only). Every malformed file gives BL_ERR_FORMAT naming the file and the
 * field, and a model of another shape gives BL_ERR_MISMATCH; a file that
 * cannot be read (or is missing) gives BL_ERR_IO naming it, and a lack of
 * memory BL_ERR_NO_MEM. A stage file outside the window is not read, so a
 * checkpoint that lacks one still loads that window; bl_ckpt_find checks
 * every file. On failure the model, momentum and *s are left as they were. */
bl_status_t bl_ckpt_load(bl_runtime_t *rt, const char *path, bl_model_t *m, int lo, int hi,
                         float *momentum, bl_ckpt_state_t *s);
void bl_ckpt_state_free(bl_runtime_t *rt, bl_ckpt_state_t *s);

/* Checks one checkpoint file held in memory against m (the fuzzers' entry
 * point): a manifest (kind 1) or a stage file (kind 2). Returns BL_OK, or
 * BL_ERR_FORMAT or BL_ERR_MISMATCH with a message naming `name`. It never
 * reads outside bytes[0, len). */
bl_status_t bl_ckpt_check_file(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                               size_t len, const bl_model_t *m);

#endif /* BL_CHECKPOINT_H */
