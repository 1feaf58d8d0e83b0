/* The language-model trainer's checkpoints (ballast.h:
 * bl_lm_trainer_save_checkpoint, bl_lm_trainer_resume), of the checkpoint
 * format of runtime/io (checkpoint.h describes its sections;
 * checkpoint_file.h gives the reader, the directory's begin and commit, the
 * pruning and the finder). A checkpoint is a directory DIR/ckpt-<step>/ of
 * a manifest, lm.bin, and one stage file per pipeline stage,
 * stage-K-of-S.bin (lm_checkpoint_stage.c), so that a save gathers nothing
 * into one rank's memory and a resume reads only what each rank holds:
 *   - lm.bin, which rank 0 writes, holds the run's state: the model's shape,
 *     the step, seed, batch and AdamW steps, the shard plan, the stage map
 *     in force, the user layers, the policies' learned state, and the stage
 *     files' units, lengths and CRC32s (FILES);
 *   - the first replica of each stage writes its stage's units' parameters
 *     and AdamW moments into its stage file, without making any rank's
 *     model whole. With one stage the one file holds the whole model; under
 *     ZeRO-1 (lm_zero.h), where each replica of a stage holds slices of the
 *     stage's moments, the stage's first replica gathers them for it.
 * The replicas are checked before the save (bl_lm_check_replicas, or each
 * stage's on its own units while the stages' models are not whole). A
 * resume takes the newest checkpoint whose manifest and stage files are all
 * complete and intact (rank 0 checks every file in full), skipping damaged
 * ones with a warning naming the file, and refuses one of another run
 * (another model shape, sequence length, seed, batch or shuffle, or a layer
 * trainer's) with BL_ERR_MISMATCH naming the field. Every rank then reads
 * the manifest, the ranks agree, and each continues the saved plan and, on
 * as many stages, the saved map and the stage policy's state (an info line
 * says which), makes its model hold its stage's units under that map
 * (bl_lm_hold_stage) and reads their parameters and moments, piece by
 * piece, from whichever stage files hold them (the saved map may differ,
 * or the number of stages): its own stage's units under stage-local memory
 * (t->stage_local), else every unit; under ZeRO-1 each rank keeps its
 * slices of its stage's moments. A manifest of format version 3 or 2, which holds the
 * floats itself (version 2 without a stage map, whose run keeps its own),
 * still resumes, each rank taking its part of it. This file saves;
 * lm_checkpoint_manifest.c reads and checks lm.bin, lm_checkpoint_stage.c
 * writes, checks and reads the stage files, and lm_checkpoint_resume.c
 * resumes. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint_file.h"
#include "consistency.h"
#include "lm_impl.h"
#include "policy_state.h"
#include "wait.h"

/* ---- Saving ------------------------------------------------------------ */

/* Packs the learned state of the shard policy and of the stage policy
 * (when each runs) and the shard controller's window in progress into *out
 * (rank 0; NULL with 0 bytes elsewhere), as the layer trainer's control.c
 * does. The stage controller's window is not saved: a resumed run observes
 * its units afresh after the warm-up (lm_restage.c). Collective. */
static bl_status_t collect_control(bl_lm_trainer_t *t, unsigned char **out, size_t *n)
{
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const int P = rt->size;
    *out = NULL;
    *n = 0;
    bl_status_t st = bl_balancer_settle(&t->balancer); /* the records in flight join the window */
    if (st != BL_OK || rt->rank != 0) {
        return st;
    }
    bl_control_windows_t w = {.ranks = P, .layers = 0};
    double *shard = NULL;
    if (t->balancer.controller_on) {
        w.shard_count = BL_CONTROLLER_WINDOW_DOUBLES(P);
        shard = bl_mem_array(a, w.shard_count, sizeof *shard);
        if (shard == NULL) {
            return bl_fail(rt, BL_ERR_NO_MEM, "no memory for the control window of %d ranks", P);
        }
        bl_controller_window_save(&t->balancer.ctl, shard);
        w.shard = shard;
    }
    st = bl_policy_state_collect(rt, t->balancer.controller_on ? t->balancer.ctl.policy : NULL,
                                 t->restager.on ? t->restager.policy : NULL, &w, out, n);
    bl_mem_free(a, shard);
    return st;
}

/* Gives rank 0 every stage file's record (mine on the stage's first
 * replica), encoded as the FILES section's payload into files (rank 0's,
 * 8 + BL_LM_FILE_BYTES · S bytes). Collective. */
static bl_status_t gather_files(bl_lm_trainer_t *t, const bl_lm_stage_file_t *mine,
                                unsigned char *files)
{
    const int S = t->plan.stages;
    uint64_t sent[4 * S], got[4 * S];
    memset(sent, 0, sizeof sent);
    memset(got, 0, sizeof got);
    if (t->grid.layout.replica == 0) {
        uint64_t *e = sent + 4 * t->grid.layout.stage;
        e[0] = (uint64_t)mine->first;
        e[1] = (uint64_t)mine->last;
        e[2] = mine->bytes;
        e[3] = mine->units_crc;
    }
    bl_status_t st = bl_reduce_bounded(t->rt, sent, got, 4 * S, MPI_UINT64_T, MPI_SUM, 0,
                                       t->rt->comm, "the gather of the checkpoint's stage files");
    if (st == BL_OK && files != NULL) {
        bl_le_put32(files, (uint32_t)S);
        bl_le_put32(files + 4, 0);
        for (int k = 0; k < S; k++) {
            unsigned char *e = files + 8 + BL_LM_FILE_BYTES * (size_t)k;
            bl_le_put32(e, (uint32_t)got[4 * k]);
            bl_le_put32(e + 4, (uint32_t)got[4 * k + 1]);
            bl_le_put64(e + 8, got[4 * k + 2]);
            bl_le_put32(e + 16, (uint32_t)got[4 * k + 3]);
            bl_le_put32(e + 20, 0);
        }
    }
    return st;
}

/* Fills the manifest's small sections (rank 0): shape, state, layers,
 * shards and the stage map in force. */
static void put_manifest(const bl_lm_trainer_t *t, unsigned char shape[BL_LM_SHAPE_BYTES],
                         unsigned char state[BL_LM_STATE_BYTES], unsigned char *layers,
                         unsigned char *shards, unsigned char *stages)
{
    const bl_gpt2_t *g = t->model;
    const int D = t->plan.groups, S = t->plan.stages;
    bl_lm_put_shape(shape, g);
    bl_le_put32(layers, (uint32_t)g->user_count);
    for (int k = 0; k < g->user_count; k++) {
        unsigned char *e = layers + 4 + BL_LM_LAYER_BYTES * (size_t)k;
        bl_le_put32(e, (uint32_t)g->users[k].layer.after);
        bl_le_put32(e + 4, bl_lm_layer_flags(&g->users[k].layer));
        bl_le_put64(e + 8, (uint64_t)g->users[k].count);
    }
    memset(state, 0, BL_LM_STATE_BYTES);
    bl_le_put64(state, (uint64_t)t->step);
    bl_le_put64(state + 8, t->cfg.seed);
    bl_le_put32(state + 16, (uint32_t)t->cfg.batch);
    bl_le_put32(state + 20, (uint32_t)t->cfg.seq_len);
    bl_le_put32(state + 24, (uint32_t)t->cfg.shuffle);
    bl_le_put64(state + 32, (uint64_t)g->adam_steps);
    bl_le_put64(state + 40, (uint64_t)t->plan.version);
    bl_le_put32(shards, (uint32_t)t->rt->size);
    bl_le_put32(shards + 4, (uint32_t)D);
    for (int d = 0; d < D; d++) {
        bl_le_put32(shards + 8 + 4 * (size_t)d, (uint32_t)t->plan.shards[d]);
    }
    /* The map in force: every rank switched to it together. */
    bl_le_put32(stages, (uint32_t)S);
    for (int i = 0; i <= S; i++) {
        bl_le_put32(stages + 4 + 4 * (size_t)i, (uint32_t)t->plan.first[i]);
    }
}

bl_status_t bl_lm_trainer_save_checkpoint(bl_lm_trainer_t *t, const char *dir, int keep, char *path,
                                          size_t n)
{
    if (t == NULL || dir == NULL || keep < 0 || (path == NULL && n > 0)) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG,
                                   "save checkpoint: NULL directory or path, or keep %d < 0", keep);
    }
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const bl_gpt2_t *g = t->model;
    const int D = t->plan.groups; /* the pipelines, each with its shard */
    const int S = t->plan.stages; /* the stages of the map, each with its stage file */
    char scratch[4096], tmpdir[PATH_MAX];
    char *where = path != NULL ? path : scratch;
    const size_t where_n = path != NULL ? n : sizeof scratch;
    double t0 = bl_now_seconds();
    unsigned char *control = NULL, *shards = NULL, *stages = NULL, *files = NULL;
    const size_t shards_bytes = 8 + 4 * (size_t)D, stages_bytes = 4 + 4 * ((size_t)S + 1);
    const size_t files_bytes = 8 + BL_LM_FILE_BYTES * (size_t)S;
    size_t control_bytes = 0;
    bl_status_t st = collect_control(t, &control, &control_bytes);
    if (st == BL_OK && rt->rank == 0) {
        shards = bl_mem_array(a, shards_bytes, 1);
        stages = bl_mem_array(a, stages_bytes, 1);
        files = bl_mem_array(a, files_bytes, 1);
        if (shards == NULL || stages == NULL || files == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a checkpoint's manifest");
        }
    }
    st = bl_agree(rt, st, BL_ERR_NO_MEM, "gathering the controllers' state");
    /* No rank's model is made whole: each stage writes its own units. */
    if (st == BL_OK) {
        st = bl_lm_check_replicas(t, "replicas at a checkpoint");
    }
    bl_lm_state_t host = {0}; /* downloaded by the check from a device */
    if (st == BL_OK) {
        st = bl_agree(rt, bl_lm_host_state(t, &host), BL_ERR_CUDA, "reading the state to save");
    }
    /* Under ZeRO-1 each replica of a stage holds slices of the stage's
     * moments: the stage's first replica (rank 0 of its group), which
     * writes the stage file, gathers them into two temporary arrays of
     * param_count floats (of which only the stage's ranges take memory, 8
     * bytes a parameter, freed after the write). */
    float *gathered_m = NULL, *gathered_v = NULL;
    if (st == BL_OK && t->zero != NULL) {
        st = bl_agree(rt, bl_lm_zero_gather_moments(t->zero, 0, &gathered_m, &gathered_v),
                      BL_ERR_MPI, "gathering the AdamW moments");
        host.adam_m = gathered_m;
        host.adam_v = gathered_v;
    }
    int began = 0; /* the temporary directory exists: the commit must follow */
    if (st == BL_OK) {
        st = bl_ckpt_begin(rt, dir, t->step, tmpdir, where, where_n);
        began = st == BL_OK;
    }
    bl_lm_stage_file_t mine = {0};
    if (st == BL_OK && t->grid.layout.replica == 0) {
        st = bl_lm_stage_file_write(t, tmpdir, t->grid.layout.stage, S, t->grid.first, t->grid.last,
                                    t->step, &host, &mine);
    }
    if (began) {
        st = bl_agree(rt, st, BL_ERR_IO, "writing the checkpoint's stage files");
    }
    if (st == BL_OK) {
        st = gather_files(t, &mine, files);
    }
    if (began) {
        unsigned char shape[BL_LM_SHAPE_BYTES], state[BL_LM_STATE_BYTES];
        unsigned char layers[4 + BL_LM_LAYER_BYTES * BL_LM_MAX_LAYERS];
        if (rt->rank == 0) {
            put_manifest(t, shape, state, layers, shards, stages);
        }
        if (control_bytes > BL_CKPT_CONTROL_MAX) {
            bl_log(rt, BL_LOG_WARN,
                   "checkpoint: the policy's state (%zu bytes) is over %u bytes; saved without "
                   "it, so a resume starts the policy afresh",
                   control_bytes, BL_CKPT_CONTROL_MAX);
            control_bytes = 0;
        }
        const bl_ckpt_section_t sections[BL_LM_MANIFEST_SECTIONS] = {
            {BL_CKPT_SEC_GPT2, shape, sizeof shape},
            {BL_CKPT_SEC_LM_STATE, state, sizeof state},
            {BL_CKPT_SEC_SHARDS, shards, shards_bytes},
            {BL_CKPT_SEC_STAGES, stages, stages_bytes},
            {BL_CKPT_SEC_LAYERS, layers,
             sizeof layers - BL_LM_LAYER_BYTES * (size_t)(BL_LM_MAX_LAYERS - g->user_count)},
            {BL_CKPT_SEC_CONTROL, control, control_bytes},
            {BL_CKPT_SEC_FILES, files, files_bytes},
        };
        st = bl_ckpt_commit(rt, dir, tmpdir, st, BL_CKPT_LM_FILE, BL_CKPT_KIND_LM, sections,
                            BL_LM_MANIFEST_SECTIONS, keep, where);
    }
    double bytes = 0.0;
    for (int k = 0; files != NULL && st == BL_OK && k < S; k++) {
        bytes += (double)bl_le_get64(files + 8 + BL_LM_FILE_BYTES * (size_t)k + 8);
    }
    bl_mem_free(a, control);
    bl_mem_free(a, shards);
    bl_mem_free(a, stages);
    bl_mem_free(a, files);
    bl_mem_free(a, gathered_m);
    bl_mem_free(a, gathered_v);
    if (st == BL_OK && rt->rank == 0) {
        bl_log(rt, BL_LOG_INFO, "checkpoint %s: step %ld, %d stage file(s), %.1f MB in %.1f ms",
               where, t->step, S, bytes / 1e6, 1e3 * (bl_now_seconds() - t0));
    }
    return st;
}
