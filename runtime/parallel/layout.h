/* The job's grid: P ranks = D data-parallel groups × S pipeline stages.
 * Rank r is stage r % S of pipeline (replica) r / S, so one pipeline's
 * stages are neighbouring ranks (on the same node when ranks fill nodes in
 * order). Which layers each stage owns is the plan's (partition/plan.h);
 * this file also makes the default stage map and checks a given one. */
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

/* Checks the grid against the job and the model: S divides P, and every
 * stage can have a layer. Local (the communicators come with
 * bl_layout_connect). Errors name the problem. */
bl_status_t bl_layout_init(bl_layout_t *l, bl_runtime_t *rt, const bl_model_t *m, int stages);

/* A stage map as a user gives it: `count` first layers, which must be
 * `stages` of them, ascending from 0, each stage at least one of the
 * model's `layers` (bl_plan_check_map's messages). Copied into first
 * (stages + 1 entries, first[stages] = layers) when it passes. Local. */
bl_status_t bl_layout_check_map(bl_runtime_t *rt, int layers, int stages, const int *given,
                                int count, int *first);
/* The default map: the contiguous split that balances the layers' cost
 * hints (bl_layer_cost), into first (stages + 1 entries). Local. */
bl_status_t bl_layout_balanced_map(bl_runtime_t *rt, const bl_model_t *m, int stages, int *first);
/* The stage owning `layer` under map first (stages + 1 entries). */
int bl_layout_stage_of(const int *first, int stages, int layer);

/* Splits the pipeline and data-parallel communicators. Collective over rt:
 * call it once every rank is known to hold the same layout. */
bl_status_t bl_layout_connect(bl_layout_t *l);
void bl_layout_free(bl_layout_t *l);

/* The cost of layer i per sample and step, for planning stages: its
 * forward cost — multiply-adds (in·out) for dense layers, the user's hint
 * (or in·out) for user layers — times the passes a step runs (forward,
 * weight gradient, input gradient: 3, or 2 for layer 0, whose input
 * gradient nobody needs); a ReLU costs two element-wise passes. */
double bl_layer_cost(const bl_model_t *m, int i);

#endif /* BL_LAYOUT_H */
