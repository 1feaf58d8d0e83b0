/* The trainer's state, shared by the files that make up the trainer: trainer.c
 * (create, destroy, run and the step), trainer_setup.c (the config's checks,
 * the first plan and the start-up agreement), stage_moves.c (layer moves and
 * making every rank's model whole), trainer_eval.c (evaluation) and
 * trainer_checkpoint.c (save and resume). It is private to them. */
#ifndef BL_TRAINER_IMPL_H
#define BL_TRAINER_IMPL_H

#include "checkpoint.h"
#include "control.h"
#include "dataset_impl.h"
#include "device_comm.h"
#include "device_copies.h"
#include "device_data.h"
#include "device_group.h"
#include "layout.h"
#include "memory_account.h"
#include "reducer.h"
#include "sampler.h"
#include "stage.h"

struct bl_trainer {
    bl_runtime_t *rt;
    bl_model_t *model;
    bl_dataset_t *data;
    /* The caller's config, copied. Its arrays are still the caller's, and they
     * are read only while the trainer is created. */
    bl_train_config_t cfg;
    bl_layout_t layout; /* D pipelines × S stages, and their communicators */
    bl_plan_t plan;     /* the shards, their caps and the stage map in force */
    bl_plan_t next;     /* scratch: the plan the controllers emit after a step */
    long offset;        /* this pipeline's slice of the batch: [offset, offset + local) */
    int local;
    bl_sampler_t sampler;
    bl_control_t control;     /* telemetry and the controllers */
    bl_slowdowns_t slowdowns; /* the emulated slowdowns of this rank's compute */
    bl_stage_t stage;         /* this rank's stage: its layers, micro-batches and transfers */
    bl_reducer_t *reducer;    /* the stage's gradient reduction and update */
    int failed;               /* 1 when a step failed, so teardown must not wait for the others */
    float *velocity;          /* the momentum, in the parameters' layout */
    bl_span_t velocity_span;  /* velocity's memory: the held layers' part (span.h) */
    /* A rank computing on a device of its own keeps the parameters, gradients
     * and momentum there (dev; the host arrays are synced at the API's edges).
     * group says what the rank's data-parallel group is made of. */
    bl_device_copies_t dev;
    bl_device_data_t resident; /* the training set on the device, when kept there */
    bl_device_group_t group;
    /* The rank's pipeline: whether its stages move activations and gradients
     * straight between devices (device_comm.h), and the communicator they then
     * use. */
    bl_device_group_t pipe_group;
    bl_device_comm_t *pipe_comm;
    long *indices;        /* (B) the sample indices of this step's whole global batch */
    long step;            /* the next global step */
    int user_map;         /* 1 when the stage map came from the config */
    int cfg_shards_given; /* 1 when the shard plan came from the config */
    int stage_local;      /* 1: this rank holds its stage's layers only (pipelines) */
    /* 1 under ZeRO-1 (transport.zero, several replicas, a host rank): the rank
     * holds memory for its slice of its stage's momentum only
     * (bl_trainer_momentum_slice) while it trains; momentum_whole is 1 while
     * the stage's whole momentum is held and current (gathered). */
    int zero;
    int momentum_whole;
    long whole_at;            /* the step at which every rank last held every layer's
                                 current parameters (pipelines; 0: the initial ones) */
    double modelled_s_per_op; /* > 0: modelled step times (bl_trainer_emulate_timing) */
    char *memory_json; /* rank 0: the start-up "memory" telemetry member, until it is handed on */
};

/* ---- trainer_setup.c ---------------------------------------------------- */

/* Checks the caller's config (its version and values) and copies it into out,
 * and checks the training set against the model; BL_ERR_INVALID_ARG or
 * BL_ERR_MISMATCH names the problem. Local. */
bl_status_t bl_trainer_check_inputs(bl_runtime_t *rt, const bl_model_t *m,
                                    const bl_dataset_t *train, const bl_train_config_t *cfg,
                                    bl_train_config_t *out);
/* Checks that a dataset (`role`: "training" or "evaluation") fits the model: it
 * must come from the same runtime (BL_ERR_INVALID_ARG), have the model's input
 * width and have no more classes than the last layer has outputs
 * (BL_ERR_MISMATCH). Local. */
bl_status_t bl_trainer_check_dataset(bl_runtime_t *rt, const bl_model_t *m, const bl_dataset_t *d,
                                     const char *role);
/* Makes the first plan (t->plan, and the scratch t->next of its sizes) from the
 * config's caps, shards and stage map, or from the defaults (the split closest
 * to even within the caps; the map that balances the layers' costs), checks it
 * with the plan's one validator, and locates this pipeline's slice. Local;
 * BL_ERR_INVALID_ARG names a bad plan. */
bl_status_t bl_trainer_first_plan(bl_trainer_t *t);
/* Sets this pipeline's slice of the batch (t->offset, t->local) under the plan
 * in force. */
void bl_trainer_locate_slice(bl_trainer_t *t);
/* Returns "rank" or "pipeline": what a shard belongs to in this layout. */
const char *bl_trainer_shard_owner(const bl_trainer_t *t);
/* Checks that every rank holds the same values of what all must agree on before
 * step 0: the config, the model, the training set's header and the plan
 * (BL_ERR_MISMATCH naming the rank and the field if not). Collective. */
bl_status_t bl_trainer_check_ranks_agree(bl_trainer_t *t);
/* Logs one info line with the grid, the stage map and the micro-batches (none
 * for one stage and one micro-batch). */
void bl_trainer_log_layout(const bl_trainer_t *t);

/* ---- trainer_memory.c --------------------------------------------------- */

/* Fills *out with this rank's bytes (bl_mem_account_t) from the buffers that
 * it has allocated: the model's parameters and gradients, the momentum, the
 * stage's slots and the batch's sample numbers, and names the layer with the
 * most parameter bytes. Call it once the stage exists. Local. */
void bl_trainer_account_memory(const bl_trainer_t *t, bl_mem_account_t *out);

/* ---- stage_moves.c ------------------------------------------------------ */

/* Sets [*first, *last) to the layers whose parameters, gradients and momentum
 * this rank holds: its stage's under stage-local memory (t->stage_local), else
 * every layer. */
void bl_trainer_held_layers(const bl_trainer_t *t, int *first, int *last);
/* Sets [*first, *first + *count) to the parameters of stage `stage`'s layers
 * under the stage map in force. */
void bl_trainer_stage_params(const bl_trainer_t *t, int stage, size_t *first, size_t *count);
/* Holds memory for the parameters, gradients and momentum of the layers that
 * this rank holds under the stage map in force (bl_trainer_held_layers), and
 * gives back every other layer's. With keep 1 the layers held already stay
 * too (the receiving side of a migration, before its transfers). Local;
 * BL_ERR_NO_MEM or a user layer's init failure. */
bl_status_t bl_trainer_hold_layers(bl_trainer_t *t, const int *map, int keep);
/* Sets up this rank's stage for the layers that the stage map in force gives
 * it: its buffers and its transfers (the pipeline's device communicator, when
 * direct). Local. */
bl_status_t bl_trainer_init_stage(bl_trainer_t *t);
/* Makes the stage and the reducer's buckets anew for the layers that the stage
 * map gives this rank's stage now (after a layer migration, or a resume that
 * adopts a saved map), and under stage-local memory gives back the memory of
 * the layers that the stage no longer owns. Local. */
bl_status_t bl_trainer_rebuild_stage(bl_trainer_t *t);
/* Moves to stage map `next` at the boundary after step `step`, in every
 * pipeline at once: the plan's map becomes `next`, and *moved receives the
 * number of layers moved. Collective: a failure anywhere fails every rank. */
bl_status_t bl_trainer_restage(bl_trainer_t *t, long step, const int *next, int *moved);
/* Makes every rank's model whole and current in a pipelined job; under
 * stage-local memory it only brings this rank's host arrays up to date.
 * Collective. */
bl_status_t bl_trainer_make_params_whole(bl_trainer_t *t);
/* Checks that every replica of a stage holds the same parameters and momentum
 * (BL_ERR_MISMATCH if not), agreed over the job. Under ZeRO-1 the momentum
 * must be gathered first (bl_trainer_gather_momentum). Collective. */
bl_status_t bl_trainer_check_replicas(const bl_trainer_t *t);

/* Sets [*first, *first + *count) to the parameters whose momentum this rank
 * keeps current: under ZeRO-1 (t->zero) its slice of its stage's parameters,
 * cut by the reducer's rule (bl_zero_even_slice over the stage's replicas),
 * else its stage's. Pure. */
void bl_trainer_momentum_slice(const bl_trainer_t *t, size_t *first, size_t *count);
/* Under ZeRO-1, gives back the momentum's memory outside this rank's slice
 * (the pages that cover it stay); otherwise nothing. Local; BL_ERR_NO_MEM. */
bl_status_t bl_trainer_narrow_momentum(bl_trainer_t *t);
/* Under ZeRO-1, holds memory for the stage's whole momentum again and
 * gathers every replica's slice into it, so that every replica holds the
 * stage's current momentum (for a checkpoint, a layer migration); nothing
 * when it is whole already or without ZeRO-1. Collective
 * over the stage's data-parallel group. */
bl_status_t bl_trainer_gather_momentum(bl_trainer_t *t);

#endif /* BL_TRAINER_IMPL_H */
