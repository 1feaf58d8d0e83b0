/* The job's grid: P ranks = D data-parallel groups × S pipeline stages. Rank r
 * is stage r % S of pipeline (replica) r / S, so one pipeline's stages are
 * neighbouring ranks (on the same node when ranks fill the nodes in order). The
 * plan says which layers each stage owns (partition/plan.h); this file also
 * makes the default stage map and checks a given one. */
#ifndef BL_LAYOUT_H
#define BL_LAYOUT_H

#include "model_impl.h"

typedef struct bl_layout {
    bl_runtime_t *rt;
    int stages;   /* S */
    int replicas; /* D = P / S */
    int stage;    /* this rank's stage, 0..S−1 */
    int replica;  /* this rank's pipeline, 0..D−1 */
    /* This pipeline's ranks ordered by stage; MPI_COMM_NULL when S = 1. */
    MPI_Comm pipe;
    /* This stage's ranks across pipelines ordered by replica (the
     * gradient all-reduce group); MPI_COMM_NULL when D = 1. */
    MPI_Comm dp;
} bl_layout_t;

/* Fills l for this rank after checking the grid against the job and the model:
 * S must divide P, and every stage must be able to have a layer
 * (BL_ERR_INVALID_ARG naming the problem if not). Local: the communicators come
 * with bl_layout_connect. */
bl_status_t bl_layout_init(bl_layout_t *l, bl_runtime_t *rt, const bl_model_t *m, int stages);
/* The same for a model of `units` pipeline units, which messages call
 * `noun` ("layers", or the language model's "units"). */
bl_status_t bl_layout_init_units(bl_layout_t *l, bl_runtime_t *rt, int units, const char *noun,
                                 int stages);
/* MPI_Comm_split of the runtime's communicator with MPI_ERRORS_RETURN on
 * the result (MPI_COMM_NULL for color MPI_UNDEFINED); a failure is
 * BL_ERR_MPI naming `what`. Collective. */
bl_status_t bl_layout_split(bl_runtime_t *rt, int color, int key, MPI_Comm *out, const char *what);

/* Checks a stage map as a user gives it: `count` first layers, which must be
 * `stages` of them, ascending from 0, with at least one of the model's `layers`
 * per stage (BL_ERR_INVALID_ARG with bl_plan_check_map's messages if not). It
 * copies the map into first (stages + 1 entries, first[stages] = layers), which
 * holds a valid map only when the check passes. Local. */
bl_status_t bl_layout_check_map(bl_runtime_t *rt, int layers, int stages, const int *given,
                                int count, int *first);
/* Writes the default map into first (stages + 1 entries): the contiguous split
 * that balances the layers' cost hints (bl_layer_cost). Local; BL_ERR_NO_MEM on
 * failure. */
bl_status_t bl_layout_balanced_map(bl_runtime_t *rt, const bl_model_t *m, int stages, int *first);
/* Returns the stage that owns `layer` under the map first (stages + 1 entries). */
int bl_layout_stage_of(const int *first, int stages, int layer);

/* Splits the pipeline and data-parallel communicators, each with
 * MPI_ERRORS_RETURN. Collective over the runtime's communicator: call it once
 * every rank is known to hold the same layout. bl_layout_free frees them; it is
 * safe on a zeroed layout. */
bl_status_t bl_layout_connect(bl_layout_t *l);
void bl_layout_free(bl_layout_t *l);

/* Returns the cost of layer i per sample and step, for planning stages: its
 * forward cost (the multiply-adds in·out for a dense layer; the user's hint, or
 * in·out, for a user layer) times the passes a step runs (forward, weight
 * gradient and input gradient: 3, or 2 for layer 0, whose input gradient nobody
 * needs). A ReLU costs two element-wise passes. */
double bl_layer_cost(const bl_model_t *m, int i);

#endif /* BL_LAYOUT_H */
