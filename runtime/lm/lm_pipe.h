/* The language-model trainer's grid and the passes of one step over it
 * (lm_pipe.c). P ranks = D pipelines × S stages (layout.h's grid); the
 * model's pipeline units are the embedding (0), the L blocks (1 .. L) and
 * the head (L + 1), and stage s computes the units [first[s], first[s + 1])
 * of the stage map. It computes, reduces and updates only its own units'
 * parameters. Its model holds either the whole model's arrays (and at the
 * API's edges, the end of a run and saving, the stages send theirs to the
 * rest of the pipeline) or, with stage-local memory, its own units only
 * (lm_impl.h: stage_local).
 *
 * The embedding's token table wte is tied to the head: stage 0 adds the
 * embedding's gradient into it and the last stage the head's, and one
 * all-reduce over the first and last stages of every pipeline sums both
 * over the job, so that both stages take the same update (as Megatron-LM
 * does). With S = 1 this is the data-parallel all-reduce itself. */
#ifndef BL_LM_PIPE_H
#define BL_LM_PIPE_H

#include "gpt2.h"
#include "layout.h"
#include "pipeline.h"
#include "slowdown.h"

typedef struct bl_lm_grid {
    bl_layout_t layout; /* S, D, this rank's stage and pipeline, and their communicators */
    MPI_Comm tied;      /* the first and last stages of every pipeline; MPI_COMM_NULL alone */
    int first, last;    /* this stage's units [first, last) */
    bl_gpt2_range_t owned[BL_GPT2_MAX_RANGES]; /* their parameter ranges */
    int owned_count;
    int micro;                         /* M micro-batches per step */
    bl_pipe_op_t *ops;                 /* (2M) this stage's passes in the schedule's order */
    bl_gpt2_acts_t *views;             /* (M) each micro-batch's activations */
    bl_gpt2_layer_acts_t *view_layers; /* (M · L) their per-layer pointers */
    MPI_Request *sends;                /* (2M) the step's sends in flight */
    double *unit_s; /* (L + 2) or NULL: each unit's seconds (slowdown included) add up here */
} bl_lm_grid_t;

/* What one step's passes report. */
typedef struct bl_lm_passes {
    double loss_sum;  /* the last stage's per-token loss sum (0 elsewhere) */
    double compute_s; /* the passes' seconds, with any emulated slowdown */
    double pipe_s;    /* the seconds blocked on the neighbouring stages */
} bl_lm_passes_t;

/* Copies the n sequences seq[0 .. n) of T + 1 tokens of stream (sequence i
 * is stream[i·T .. i·T + T]) into tokens (n, T), its first T tokens, and
 * targets (n, T), its last T. */
void bl_lm_cut(const uint16_t *stream, int T, const long *seq, int n, int32_t *tokens,
               int32_t *targets);

/* Sets up the grid for S stages (which must divide the ranks and not exceed
 * the units) of M micro-batches under `schedule`, with its communicators,
 * for slices of up to `capacity` sequences of T tokens. Collective; on
 * failure nothing stays allocated. */
bl_status_t bl_lm_grid_init(bl_lm_grid_t *g, bl_runtime_t *rt, const bl_gpt2_t *model, int stages,
                            int micro, int schedule, int capacity, int T);
void bl_lm_grid_free(bl_lm_grid_t *g);

/* Makes this stage own the units [map[stage], map[stage + 1]) of the stage
 * map (S + 1 entries). Local. */
void bl_lm_grid_set_map(bl_lm_grid_t *g, const bl_gpt2_t *model, const int *map);

/* Unit u's multiply-adds per token for sequences of T tokens: attention's
 * and the user layers' (their cost hints) included. */
double bl_lm_unit_cost(const bl_gpt2_t *model, int T, int u);

/* Writes into first (S + 1 entries) the stage map that balances the
 * units' multiply-adds per token (attention's included). Local;
 * BL_ERR_NO_MEM on failure. */
bl_status_t bl_lm_grid_balanced_map(bl_runtime_t *rt, const bl_gpt2_t *model, int T, int stages,
                                    int *first);

/* Runs this stage's passes of one step over the pipeline's n sequences seq
 * of the token stream (n may be 0), cut into M micro-batches (the first
 * n % M one sequence more), in the schedule's order, passing activations
 * and gradients to the neighbouring stages: the per-token gradient sums of
 * this stage's units are added into model->grads. whole is the activations
 * for at least n sequences. The sequences are cut into the host buffers
 * tokens and targets (n · T each at least), then copied into whole, on
 * the model's device when it has memory of its own. Collective over the
 * pipeline. */
bl_status_t bl_lm_grid_passes(bl_lm_grid_t *g, bl_gpt2_t *model, bl_gpt2_acts_t *whole,
                              const uint16_t *stream, const long *seq, int n, int32_t *tokens,
                              int32_t *targets, long step, const bl_slowdowns_t *slowdowns,
                              bl_lm_passes_t *out);

/* Sums the step's gradients over the job (this stage's units over its
 * data-parallel group, wte over the tied stages) and the loss over every
 * rank, and sets *norm to the global gradient norm of the mean (the sums'
 * norm / tokens), the same on every rank. host is NULL when model->grads is
 * host memory; for a model in a device's memory it is param_count host
 * floats, through which each range is staged: downloaded, all-reduced with
 * MPI there, and the sums uploaded (so the math is the CPU's: the same MPI
 * sums of the same floats). Collective. */
bl_status_t bl_lm_grid_reduce(bl_lm_grid_t *g, bl_gpt2_t *model, float *host, long tokens,
                              double *loss_sum, double *norm);

/* Sends every stage's units' parameters and AdamW moments to the rest of
 * its pipeline, so that every rank holds the whole current model. Collective
 * over the pipeline; nothing to do with one stage. */
bl_status_t bl_lm_grid_make_whole(bl_lm_grid_t *g, bl_gpt2_t *model, const int *map);

/* Moves the units whose stage differs between the maps from and to: in
 * every pipeline, the old stage sends their parameters and AdamW moments
 * to the rest of the pipeline, or with stage_local to the new stage only
 * (which must hold their memory: bl_gpt2_hold_units). The embedding and the
 * head never move (the first and last stages keep them). Sets *bytes to the
 * bytes one pipeline sent. Collective over the pipeline. */
bl_status_t bl_lm_grid_move(bl_lm_grid_t *g, bl_gpt2_t *model, const int *from, const int *to,
                            int stage_local, double *bytes);

#endif /* BL_LM_PIPE_H */
