/* The job's grid: P ranks = D data-parallel groups × S pipeline stages.
 * Rank r is stage r % S of pipeline (replica) r / S, so one pipeline's
 * stages are neighbouring ranks (on the same node when ranks fill nodes in
 * order). Every pipeline has the same layer→stage map. */
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
    int *first; /* (S + 1) stage s owns layers [first[s], first[s+1]) */
} bl_layout_t;

/* Checks the grid against the job and the model and plans the stages;
 * local (the communicators come with bl_layout_connect). stage_first: S first layers given by
 * the user (stage_count of them), or NULL: the contiguous split that
 * balances the layers' cost hints. Errors name the problem (S does not
 * divide P, more stages than layers, a map that is not contiguous, ...). */
bl_status_t bl_layout_init(bl_layout_t *l, bl_runtime_t *rt, const bl_model_t *m, int stages,
                           const int *stage_first, int stage_count);
/* Checks a user's stage map: count = stages first layers, ascending from
 * 0, each stage at least one of the model's layers. */
bl_status_t bl_layout_check_map(bl_runtime_t *rt, int layers, int stages, const int *first,
                                int count);
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
