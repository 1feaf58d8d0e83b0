/* The trainer's state, shared by the files that make up the trainer:
 * trainer.c (create, destroy, run and the step), trainer_setup.c (the
 * config's checks, the first plan and the start-up agreement),
 * stage_moves.c (layer moves and making every rank's model whole),
 * trainer_eval.c (evaluation) and trainer_checkpoint.c (save and
 * resume). Private to them. */
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
#include "reducer.h"
#include "sampler.h"
#include "stage.h"

struct bl_trainer {
    bl_runtime_t *rt;
    bl_model_t *model;
    bl_dataset_t *data;
    /* The caller's config, copied; its arrays are the caller's, read only
     * while the trainer is created. */
    bl_train_config_t cfg;
    bl_layout_t layout; /* D pipelines × S stages and their communicators */
    bl_plan_t plan;     /* the shards, their caps and the stage map in force */
    bl_plan_t next;     /* scratch: the plan the controllers emit after a step */
    long offset;        /* this pipeline's slice: [offset, offset + local) of the batch */
    int local;
    bl_sampler_t sampler;
    bl_control_t control;  /* telemetry and the controllers */
    bl_slowdowns_t slowdowns; /* emulated slowdowns of this rank's compute */
    bl_stage_t stage;      /* this rank's stage: its layers, micro-batches, transfers */
    bl_reducer_t *reducer; /* the stage's gradient reduction and update */
    int failed;            /* a step failed: teardown must not wait for the others */
    float *velocity;       /* momentum, in the parameters' layout */
    /* A rank computing on a device of its own: the parameters, gradients
     * and momentum there (the host arrays are synced at the API's edges),
     * and what its data-parallel group is made of. */
    bl_device_copies_t dev;
    bl_device_data_t resident; /* the training set on the device, when kept there */
    bl_device_group_t group;
    /* Its pipeline: whether the stages move activations and gradients
     * straight between devices (device_comm.h), and the communicator. */
    bl_device_group_t pipe_group;
    bl_device_comm_t *pipe_comm;
    long *indices;            /* (B) this step's sample indices (the whole global batch) */
    long step;                /* the next global step */
    int user_map;             /* the stage map came from the config */
    int cfg_shards_given;     /* the shard plan came from the config */
    long whole_at;            /* the step at which every rank last held every layer's
                                 current parameters (pipelines; 0: the initial ones) */
    double modelled_s_per_op; /* > 0: modelled step times (bl_trainer_emulate_timing) */
};

/* ---- trainer_setup.c ---------------------------------------------------- */

/* The caller's config, checked (its version and values) and copied into
 * out, and the training set checked against the model. */
bl_status_t bl_trainer_check_inputs(bl_runtime_t *rt, const bl_model_t *m,
                                    const bl_dataset_t *train, const bl_train_config_t *cfg,
                                    bl_train_config_t *out);
/* The checks that tie a dataset (`role`: "training", "evaluation") to the
 * model. */
bl_status_t bl_trainer_check_dataset(bl_runtime_t *rt, const bl_model_t *m, const bl_dataset_t *d,
                                     const char *role);
/* The first plan (t->plan, and t->next of the same sizes): the config's
 * caps, shards and stage map, or the defaults (the split closest to even
 * within the caps; the map that balances the layers' costs), checked by
 * the plan's one validator. Local. */
bl_status_t bl_trainer_first_plan(bl_trainer_t *t);
/* This pipeline's slice of the batch under the plan in force. */
void bl_trainer_locate_slice(bl_trainer_t *t);
/* "rank" or "pipeline": what a shard belongs to in this layout. */
const char *bl_trainer_shard_owner(const bl_trainer_t *t);
/* What every rank must agree on before step 0. Collective. */
bl_status_t bl_trainer_check_ranks_agree(bl_trainer_t *t);
/* One info line: the grid, the stage map, the micro-batches. */
void bl_trainer_log_layout(const bl_trainer_t *t);

/* ---- stage_moves.c ------------------------------------------------------ */

/* The parameters of stage `stage`'s layers: [*first, *first + *count). */
void bl_trainer_stage_params(const bl_trainer_t *t, int stage, size_t *first, size_t *count);
/* This rank's stage for the layers the layout gives it: its buffers and
 * its transfers (the pipeline's device communicator, when direct). */
bl_status_t bl_trainer_init_stage(bl_trainer_t *t);
/* The stage and the reducer's buckets, made anew for the layers the
 * layout gives this rank's stage now (after a layer migration). */
bl_status_t bl_trainer_rebuild_stage(bl_trainer_t *t);
/* Moves to stage map `next` at the boundary after step `step`, in every
 * pipeline at once (the plan's map becomes `next`). Collective. */
bl_status_t bl_trainer_restage(bl_trainer_t *t, long step, const int *next, int *moved);
/* Every rank's model whole and current (pipelines). Collective. */
bl_status_t bl_trainer_make_params_whole(bl_trainer_t *t);
/* Every replica of a stage holds the same arrays; agreed over the job. */
bl_status_t bl_trainer_check_replicas(const bl_trainer_t *t);

#endif /* BL_TRAINER_IMPL_H */
