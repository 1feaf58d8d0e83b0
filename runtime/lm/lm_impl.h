/* The language-model trainer's state (ballast.h: bl_lm_trainer_*), shared by
 * lm_trainer.c (create, destroy, the start-up checks), lm_step.c (the step
 * and the run), lm_eval.c (evaluation, the model file), lm_checkpoint.c
 * (checkpoints and resume) and lm_schedule.c. It is private to them.
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
     * slice of them and reduces in place of node and the all-reduces. */
    int zero_on;
    bl_lm_zero_t *zero;
    bl_lm_restager_t restager;
    long whole_at; /* the step at which every rank last held the whole model, or -1 */
};

/* ---- lm_restage.c ------------------------------------------------------- */

/* Sets up the stage controller (on with pipelines and a policy): rank 0's
 * policy, the units' clocks. Collective. */
bl_status_t bl_lm_restager_init(bl_lm_trainer_t *t);
void bl_lm_restager_free(bl_lm_trainer_t *t);
/* After every step (step_s its seconds): the window's telemetry, and at its
 * end the decision and the move, which sets info->stages_moved. Collective. */
bl_status_t bl_lm_restager_after_step(bl_lm_trainer_t *t, double step_s, bl_step_info_t *info);

/* ---- lm_step.c ---------------------------------------------------------- */

/* Makes every rank hold the whole current model (with pipelines, each stage
 * sends its units' parameters and moments to the rest of its pipeline);
 * nothing to do when that already holds at this step. Collective. */
bl_status_t bl_lm_make_whole(bl_lm_trainer_t *t);

/* Checks that every rank holds the same parameters, AdamW moments and
 * step count (after bl_lm_make_whole), so that rank 0's are everyone's;
 * BL_ERR_MISMATCH names `when`, the rank and the field. Under ZeRO-1 each
 * rank holds another slice of the moments, so only the parameters and the
 * step count are compared. Collective. */
bl_status_t bl_lm_check_replicas(bl_lm_trainer_t *t, const char *when);

/* ---- lm_device.c -------------------------------------------------------- */

/* The model's parameters and AdamW moments as host arrays (param_count
 * floats each), for the host to read. Under ZeRO-1 the moments are NULL:
 * each rank holds its slice (bl_lm_zero_gather_moments collects them). */
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

/* Fills *out with this rank's bytes (memory_account.h) from the model's
 * shape, the activations' capacity and the host token buffers, and names
 * the unit (the embedding, a block or the head) with the most bytes of
 * parameters, gradients and AdamW moments. Call it after the plan is made.
 * Local. */
void bl_lm_account_memory(const bl_lm_trainer_t *t, bl_mem_account_t *out);

/* ---- lm_eval.c ---------------------------------------------------------- */

/* Checks that every token of stream[0 .. count) lies below vocab, naming
 * `what` and the first one that does not (BL_ERR_INVALID_ARG). Local. */
bl_status_t bl_lm_check_tokens(bl_runtime_t *rt, const char *what, const uint16_t *stream,
                               long count, int vocab);

#endif /* BL_LM_IMPL_H */
