/* The language-model trainer's state (ballast.h: bl_lm_trainer_*), shared by
 * lm_trainer.c (create, destroy, the start-up checks), lm_step.c (the step
 * and the run), lm_eval.c (evaluation), lm_model_file.c (the model file),
 * lm_checkpoint.c (checkpoints and resume) and lm_schedule.c. It is private
 * to them.
 *
 * The trainer runs D pipelines of S stages (lm_pipe.h; S = 1: plain data
 * parallelism): each pipeline computes the per-token gradient sums of its
 * shard of the global batch, the all-reduces sum them over the job, and
 * every rank takes the same AdamW step on its stage's units, so every
 * replica holds the same parameters and the math is one process's whatever
 * the shards, stages and micro-batches. The balancer (telemetry and the shard
 * controller) is the layer trainer's. The model lives on the rank's device;
 * on one with memory of its own, lm_device.c says what crosses to the host
 * and when. */
#ifndef BL_LM_IMPL_H
#define BL_LM_IMPL_H

#include "balancer.h"
#include "memory_account.h"
#include "gpt2.h"
#include "lm_node.h"
#include "lm_pipe.h"
#include "lm_zero.h"
#include "restage.h"
#include "sampler.h"
#include "slowdown.h"

/* The stage controller's state (lm_restage.c). */
typedef struct bl_lm_restager {
    int on;               /* pipelines and a policy */
    int units;            /* L + 2 */
    double *unit_s;       /* (units) this rank's units' seconds over the window */
    double step_s;        /* the window's summed step seconds */
    int steps;            /* the steps observed in the window */
    int skip;             /* warm-up steps still not observed */
    int decided;          /* 1 after the first decision since the start or the resume */
    int *message;         /* (S + 2) the changed flag and the next map, broadcast */
    bl_restage_t *policy; /* rank 0 */
    const char *last_action;
} bl_lm_restager_t;

struct bl_lm_trainer {
    bl_runtime_t *rt;
    bl_lm_config_t cfg;    /* the caller's, copied; its pointers are read at creation only */
    bl_train_config_t tc;  /* the balancer's view of it: batch, seed, balance, diagnostics */
    const uint16_t *train; /* the caller's training tokens */
    long train_count;
    long sequences; /* the sequences of T + 1 tokens the training tokens hold */
    bl_gpt2_t *model;
    /* The rank's device (rt->device), which the model computes on and in
     * whose memory it lives: the user layers' device too (lm_device.c). */
    const bl_device_t *device;
    /* NULL on the CPU. On a device with memory of its own, the model's
     * host twin: 4 · param_count floats, cut as the model's arrays are
     * (params, grads, adam_m, adam_v). The gradient sums are staged through
     * its grads for MPI every step; its state is downloaded only when the
     * host reads it (digests, checkpoints, the model file). */
    float *host;
    long host_at;        /* the step at which host's state was downloaded, or -1 */
    bl_gpt2_acts_t acts; /* for up to `capacity` sequences */
    int capacity;        /* the largest shard the plan may give this rank */
    bl_plan_t plan;      /* the shards in force (one stage); a resume continues the saved one */
    bl_plan_t next;      /* scratch: the controller's next shards */
    long offset;         /* this rank's slice of the batch: [offset, offset + local) */
    int local;
    bl_sampler_t sampler;
    long *indices;    /* (B) the sequence numbers of the step's global batch */
    int32_t *tokens;  /* (capacity, T) the inputs of this rank's slice */
    int32_t *targets; /* (capacity, T) its targets */
    bl_balancer_t balancer;
    bl_slowdowns_t slowdowns;
    long step;          /* the next global step (a resume sets it) */
    bl_lm_grid_t grid;  /* the pipelines and stages, and this rank's units */
    bl_lm_node_t *node; /* the node-local reduction (lm_node.h), or NULL: the all-reduces */
    /* 1 when ZeRO-1 runs (bl_lm_zero_check): the model is made without its
     * moments, and zero (made with the grid, lm_zero.h) holds this rank's
     * slices of its stage's and reduces in place of node and the
     * all-reduces. */
    int zero_on;
    bl_lm_zero_t *zero;
    bl_lm_restager_t restager;
    long whole_at; /* the step at which every rank last held the whole model, or -1 */
    /* 1 with pipelines (S > 1) and cfg.pipeline.stage_local: the model was
     * made with BL_GPT2_SPANS and holds memory for this stage's units
     * [grid.first, grid.last) only (lm_hold.c). Nothing may then read or
     * write another unit's parameters, gradients or moments (it faults), so
     * the run's end, evaluation, the model file and checkpoints work stage
     * by stage, and bl_lm_make_whole refuses. */
    int stage_local;
    /* Under stage-local memory, the CRC-32 of cfg.init_from (0 without),
     * which the start-up agreement compares: the stages read its parts. */
    uint32_t init_crc;
};

/* ---- lm_hold.c ---------------------------------------------------------- */

/* Makes the model hold exactly units [first, last) (bl_gpt2_hold_units);
 * nothing to do unless t->stage_local. Local; BL_ERR_NO_MEM names the rank
 * and the units. */
bl_status_t bl_lm_hold_units(bl_lm_trainer_t *t, int first, int last);
/* The same for this stage's units under the stage map in force
 * (t->grid.first, t->grid.last): after the map changed (a resume adopting a
 * saved map), so that the stage holds its new units. */
bl_status_t bl_lm_hold_stage(bl_lm_trainer_t *t);
/* Makes a model in host memory (made with BL_GPT2_SPANS: reserved address
 * space until the memory check has passed) hold units [first, last) (a
 * stage-local stage's, else all of them) and gives them their initial
 * values: GPT-2's initialisation from the seed, then their part of the
 * llm.c file cfg.init_from (read range by range, never whole). Nothing to
 * do for a device's model, initialised when it was made. Local; a failure
 * names the rank. */
bl_status_t bl_lm_init_units(bl_lm_trainer_t *t, int first, int last);
/* Compares the stage's replicas (its data-parallel group) on its units:
 * parameters and both moments (replica_check.h). Collective over the
 * data-parallel group only: the caller agrees the result over the job. */
bl_status_t bl_lm_check_stage_replicas(bl_lm_trainer_t *t);

/* ---- lm_restage.c ------------------------------------------------------- */

/* Sets up the stage controller (on with pipelines and a policy): rank 0's
 * policy, the units' clocks. Collective. */
bl_status_t bl_lm_restager_init(bl_lm_trainer_t *t);
void bl_lm_restager_free(bl_lm_trainer_t *t);
/* After every step (step_s its seconds): the window's telemetry, and at its
 * end the decision and the move, which sets info->stages_moved. Collective. */
bl_status_t bl_lm_restager_after_step(bl_lm_trainer_t *t, double step_s, bl_step_info_t *info);
/* Under ZeRO-1 with pipelines, where the model has no moments of its own:
 * gathers each stage's moments onto every one of its replicas
 * (bl_lm_zero_gather_moments) and points the model's adam_m and adam_v at
 * them, so that a move of units or the model made whole (lm_pipe.h), which
 * send units' moments with their parameters, find them; nothing to do
 * otherwise. bl_lm_return_moments frees them and leaves the model without
 * moments again. Collective (a failure anywhere fails every rank). */
bl_status_t bl_lm_lend_moments(bl_lm_trainer_t *t);
void bl_lm_return_moments(bl_lm_trainer_t *t);

/* ---- lm_step.c ---------------------------------------------------------- */

/* Makes every rank hold the whole current model (with pipelines, each stage
 * sends its units' parameters and moments to the rest of its pipeline);
 * nothing to do when that already holds at this step. Under stage-local
 * memory (t->stage_local) no rank may hold the whole model: it returns
 * BL_ERR_UNSUPPORTED on every rank. Collective. */
bl_status_t bl_lm_make_whole(bl_lm_trainer_t *t);

/* Checks that every rank holds the same parameters, AdamW moments and
 * step count (after bl_lm_make_whole), so that rank 0's are everyone's;
 * with pipelines whose ranks do not hold the whole current model (stage-
 * local memory, or inside a run) each stage's replicas are compared on its
 * units instead (bl_lm_check_stage_replicas);
 * BL_ERR_MISMATCH names `when`, the rank and the field. Under ZeRO-1 each
 * rank holds another slice of the moments, so only the parameters and the
 * step count are compared. Collective. */
bl_status_t bl_lm_check_replicas(bl_lm_trainer_t *t, const char *when);

/* ---- lm_device.c -------------------------------------------------------- */

/* The model's parameters and AdamW moments as host arrays (param_count
 * floats each), for the host to read. Under ZeRO-1 the moments are NULL:
 * each rank holds its slices (bl_lm_zero_gather_moments collects them). */
typedef struct bl_lm_state {
    const float *params, *adam_m, *adam_v;
} bl_lm_state_t;

/* Refuses what the trainer does not run on a device with memory of its own
 * yet (pipelines: BL_ERR_UNSUPPORTED naming the rank and its device).
 * Local; every rank calls it before the model is made. */
bl_status_t bl_lm_device_check(bl_lm_trainer_t *t);
/* The kernel table the rank's model computes with: the device's bf16 table
 * when the config asks for bf16 and the device has one (a GPU, the
 * mirror), else the device's own (fp32; the CPU always). */
const bl_kernels_t *bl_lm_device_kernels(const bl_lm_trainer_t *t);
/* Makes the host twin (t->host) when the model lives in a device's memory;
 * nothing on the CPU. Local; BL_ERR_NO_MEM names the rank. */
bl_status_t bl_lm_device_init(bl_lm_trainer_t *t);
void bl_lm_device_free(bl_lm_trainer_t *t);
/* Has rank 0 log where the ranks' models live, when any rank's is in a
 * device's memory, and with bf16 asked for, which ranks use it. Collective. */
bl_status_t bl_lm_device_report(bl_lm_trainer_t *t);
/* Sets *out to the current state as host arrays: the model's own on the
 * CPU, else the host twin, downloaded first unless it was at this step
 * already. Local; BL_ERR_CUDA names the rank and its device. */
bl_status_t bl_lm_host_state(bl_lm_trainer_t *t, bl_lm_state_t *out);
/* Replaces the model's parameters and moments with count floats each, read
 * from bytes at any alignment (a checkpoint file's), uploading them on a
 * device. Local; BL_ERR_CUDA names the rank and its device. */
bl_status_t bl_lm_put_state(bl_lm_trainer_t *t, const void *params, const void *adam_m,
                            const void *adam_v);

/* ---- lm_schedule.c ------------------------------------------------------ */

/* Checks a schedule for the base rate lr; BL_ERR_INVALID_ARG names the
 * field. Local. */
bl_status_t bl_lm_check_schedule(bl_runtime_t *rt, const bl_lr_schedule_t *s, float lr);

/* ---- lm_memory.c -------------------------------------------------------- */

/* Fills *out with this rank's bytes (memory_account.h) under the stage map
 * `map` (S + 1 entries; the plan's, or one a resume or a move would adopt)
 * from the model's shape (a stage-local stage's units' pages, as it would
 * hold them), the activations' capacity and the host token buffers, and
 * names the unit (the embedding, a block or the head) with the most bytes
 * of parameters, gradients and AdamW moments. Local. */
void bl_lm_account_memory(const bl_lm_trainer_t *t, const int *map, bl_mem_account_t *out);
/* Sets *over_rank to the lowest rank whose account under `map` would exceed
 * its memory limit (--mem-limit, or its cgroup's), or to -1 when every rank
 * fits (always, without stage-local memory, where a map changes nothing
 * that a rank holds). Collective; a resume and a unit move call it before
 * they hold a new map's units. */
bl_status_t bl_lm_map_fits(bl_lm_trainer_t *t, const int *map, int *over_rank);

/* ---- lm_eval.c ---------------------------------------------------------- */

/* Checks that every token of stream[0 .. count) lies below vocab, naming
 * `what` and the first one that does not (BL_ERR_INVALID_ARG). Local. */
bl_status_t bl_lm_check_tokens(bl_runtime_t *rt, const char *what, const uint16_t *stream,
                               long count, int vocab);

/* lm_eval_pipe.c: the evaluation with pipelines (S > 1), forward only
 * through the stages, each running its own units (no rank reads another
 * stage's, so it works under stage-local memory and in a step callback).
 * Pipeline p of D takes the sequences [n·p/D, n·(p+1)/D) of stream (checked
 * tokens, at least n sequences of T + 1) in chunks of up to t->capacity,
 * and *loss_sum receives the loss sum of all n sequences over the job, the
 * same on every rank. A stage that fails keeps its status and message, and
 * the others return BL_ERR_MISMATCH saying so; no rank is left waiting.
 * Collective. */
bl_status_t bl_lm_evaluate_pipelined(bl_lm_trainer_t *t, const uint16_t *stream, long n,
                                     double *loss_sum);

/* ---- lm_checkpoint_manifest.c ------------------------------------------- */

/* The manifest of a checkpoint, lm.bin (lm_checkpoint.c describes the
 * checkpoint, runtime/io/checkpoint.h its sections): 7 sections since
 * format version 4, which put the floats into the stage files (FILES in
 * place of PARAMS, ADAM_M and ADAM_V), 9 in version 3 (STAGES and LAYERS
 * added), 7 in version 2. */
#define BL_LM_MANIFEST_SECTIONS 7
#define BL_LM_STATE_BYTES       48u /* LM_STATE */
#define BL_LM_LAYER_BYTES       16u /* a LAYERS entry: u32 unit, u32 flags, u64 parameters */
#define BL_LM_FILE_BYTES        24u /* a FILES entry: u32 first unit, last, u64 bytes, u32 CRC32, 0 */

/* A manifest mapped and decoded in place: its pointers point into the
 * file's bytes, at any alignment, so the floats of a version 2 or 3 file
 * are copied out with memcpy. */
typedef struct bl_lm_manifest {
    unsigned char *bytes; /* the mapping (bl_lm_manifest_close gives it back) */
    size_t len;
    bl_gpt2_config_t shape;
    uint64_t param_count;
    long step;
    uint64_t seed;
    int batch, seq_len, shuffle;
    long adam_steps;
    long plan_version;
    int ranks, pipelines;
    const unsigned char *shards; /* pipelines × u32 */
    int stages;                  /* S, or 0 in a file without a stage map (version 2) */
    const unsigned char *map;    /* (S + 1) × u32, checked, or NULL */
    int layers;                  /* U user layers (0 in a version 2 file) */
    const unsigned char *layer;  /* U × BL_LM_LAYER_BYTES, or NULL */
    const unsigned char *control;
    size_t control_bytes;
    const unsigned char *files; /* S × BL_LM_FILE_BYTES, checked (version 4), or NULL */
    const unsigned char *params, *adam_m, *adam_v; /* param_count floats each (version 2, 3) */
} bl_lm_manifest_t;

/* A user layer's LAYERS flags: bit 0 its decay, bit 1 inside its block. */
uint32_t bl_lm_layer_flags(const bl_lm_layer_t *l);
/* Maps and checks the manifest of the checkpoint in the directory dir
 * into *m: first its head, which must be this run's (else BL_ERR_MISMATCH
 * naming the field, before the rest is read), then every section of it.
 * A directory of the layer trainer's is BL_ERR_MISMATCH; a damaged file
 * BL_ERR_FORMAT or BL_ERR_IO naming it. Local. */
bl_status_t bl_lm_manifest_read(bl_lm_trainer_t *t, const char *dir, bl_lm_manifest_t *m);
void bl_lm_manifest_close(bl_lm_manifest_t *m);

/* ---- lm_checkpoint_stage.c ---------------------------------------------- */

/* A checkpoint's stage files (lm_checkpoint.c has the manifest, lm.bin):
 * DIR/ckpt-<step>/stage-K-of-S.bin holds the parameters and both AdamW
 * moments of the units of stage K of the S in the saved stage map, written
 * by the stage's first replica, with their CRC32s piece by piece (a piece:
 * one unit's part of one tensor), so that a resume reads, and checks, only
 * the pieces of the units that it needs (runtime/io/checkpoint.h describes
 * the file). */

/* What the manifest records of one stage file (its FILES entry): the units
 * [first, last) it holds, its length, and the CRC32 of its UNITS section,
 * which holds every piece's CRC32s, so that a stage file of another
 * checkpoint or a damaged one is not taken for it. */
typedef struct bl_lm_stage_file {
    int first, last;
    uint64_t bytes;
    uint32_t units_crc;
} bl_lm_stage_file_t;

/* The GPT2 section's 32 bytes for g (the shape, then the parameter count),
 * which the manifest and every stage file hold. */
#define BL_LM_SHAPE_BYTES 32u
void bl_lm_put_shape(unsigned char p[BL_LM_SHAPE_BYTES], const bl_gpt2_t *g);

/* Writes stage file `stage` of `stages` into the directory dir: the units
 * [first, last) of state (host arrays whose those units' ranges are
 * readable) at `step`, and fills *out. Local; BL_ERR_IO (naming the file)
 * or BL_ERR_NO_MEM. */
bl_status_t bl_lm_stage_file_write(bl_lm_trainer_t *t, const char *dir, int stage, int stages,
                                   int first, int last, long step, const bl_lm_state_t *state,
                                   bl_lm_stage_file_t *out);

/* Checks stage file `stage` of the `stages` that the manifest (its path)
 * of the checkpoint dir records as *file, of `step`, in full: its length,
 * header, shape, units and pieces against the model and the manifest, and
 * every section's CRC32. Local (rank 0, finding the checkpoint to resume
 * from); BL_ERR_IO or BL_ERR_FORMAT naming the file. */
bl_status_t bl_lm_stage_file_check(bl_lm_trainer_t *t, const char *dir, const char *manifest,
                                   int stage, int stages, long step,
                                   const bl_lm_stage_file_t *file);

/* What a load reads from the stage files: the parameters of the ranges
 * params_need and the moments of the ranges moments_need, each into its
 * array at the parameter's offset (every piece of the stage files that
 * overlaps a needed range is read whole, so the arrays must be writable over
 * those pieces: the model's own when the ranges are whole units). The
 * stage files that hold units [first, last) are read first, the others only
 * for what those lacked (wte, which the first and last stages both hold). */
typedef struct bl_lm_window {
    float *params, *adam_m, *adam_v;
    const bl_gpt2_range_t *params_need, *moments_need;
    int params_count, moments_count;
    int first, last;
} bl_lm_window_t;

/* Decodes the FILES entries of a version 4 manifest into files (m->stages
 * of them). */
void bl_lm_manifest_files(const bl_lm_manifest_t *m, bl_lm_stage_file_t *files);

/* Loads the window *w from the `stages` stage files of the checkpoint dir
 * (files, as its manifest, whose path names it in messages, records them,
 * of `step`): each file it needs is mapped, its head checked as
 * bl_lm_stage_file_check does, and only the pieces that overlap the window
 * are read, each checked against its CRC32. Local; BL_ERR_IO, BL_ERR_FORMAT
 * (naming the file) or BL_ERR_NO_MEM. A failure may leave part of the
 * window written. */
bl_status_t bl_lm_stage_files_load(bl_lm_trainer_t *t, const char *dir, const char *manifest,
                                   const bl_lm_stage_file_t *files, int stages, long step,
                                   const bl_lm_window_t *w);

#endif /* BL_LM_IMPL_H */
