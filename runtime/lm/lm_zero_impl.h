/* ZeRO-1's state for the language-model trainer (lm_zero.h), shared by
 * lm_zero.c (the check, the sizes, the runs, create, restage and destroy),
 * lm_zero_step.c (the reduction and the update) and lm_zero_moments.c (the
 * moments gathered and put back). It is private to them. */
#ifndef BL_LM_ZERO_IMPL_H
#define BL_LM_ZERO_IMPL_H

#include "lm_zero.h"
#include "zero_exchange.h"

enum {
    BL_LM_ZERO_BLOCK = 512, /* the floats summed at a time: the node-local reduction's block */
};

/* One run: a stretch of the arrays made of whole ranges of the stage that
 * lie end to end, cut into one slice per rank of the group, and its
 * exchange. */
typedef struct bl_lm_zero_run {
    size_t offset, count; /* the run in the arrays */
    bl_zero_exchange_t x; /* its slices; its bucket is the state's shared one */
    bl_gpt2_range_t slice[BL_GPT2_MAX_RANGES]; /* this rank's sub-ranges, each with its tensor */
    int slice_count;
    size_t at; /* where this rank's slice's moments start in its moment arrays */
} bl_lm_zero_run_t;

/* The runs of one set of units and this rank's moments of their slices. */
typedef struct bl_lm_zero_runs {
    int first, last;       /* the stage's units */
    bl_lm_zero_run_t *run; /* (count) in the order of their offsets */
    int count;
    float *adam_m, *adam_v; /* this rank's slices' moments, run after run: `mine` floats each */
    size_t mine;
    float *bucket; /* shared by the runs' exchanges and the wte swap */
    size_t bucket_floats;
    size_t tied_chunk; /* the floats of wte swapped a round (0: the stage does not swap) */
} bl_lm_zero_runs_t;

struct bl_lm_zero {
    bl_runtime_t *rt;
    bl_gpt2_t *model;
    MPI_Comm comm;     /* the data-parallel group's duplicate, in rank order */
    MPI_Comm pipe;     /* the pipeline's duplicate, in stage order; MPI_COMM_NULL: one stage */
    int rank, size;    /* this rank in comm, and D */
    int stage, stages; /* this rank in pipe, and S */
    size_t bucket;     /* the most floats a round moves */
    size_t piece;      /* the most floats one message carries */
    bl_lm_zero_runs_t runs;
    double mine[2];   /* this rank's loss sum and its summed slices' sum of squares */
    double *gathered; /* (2 · max(D, S)) every rank's pair, in rank order */
};

/* Builds into *out the runs of units [first, last) for z's group, with this
 * rank's moments taken from adam_m and adam_v (param_count floats each)
 * or zeroed when they are NULL. Local; on failure nothing stays allocated. */
bl_status_t bl_lm_zero_runs_make(const bl_lm_zero_t *z, int first, int last, const float *adam_m,
                                 const float *adam_v, bl_lm_zero_runs_t *out);
/* Frees what bl_lm_zero_runs_make took; a zeroed r is fine. */
void bl_lm_zero_runs_free(const bl_lm_zero_t *z, bl_lm_zero_runs_t *r);

#endif /* BL_LM_ZERO_IMPL_H */
