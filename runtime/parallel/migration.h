/* Live layer migration between the stages of a pipeline. When the stage map
 * changes, every layer whose stage changes sends its parameters and its
 * optimizer state (momentum) from its old stage to its new one, by MPI
 * point-to-point messages on the pipeline's communicator, in every pipeline at
 * once. Gradients need no move: the next step's first backward writes them. */
#ifndef BL_MIGRATION_H
#define BL_MIGRATION_H

#include "layout.h"

/* What one rank's part of a migration did. */
typedef struct bl_migration {
    double bytes_sent;     /* by this rank */
    double bytes_received; /* by this rank */
    double pipeline_bytes; /* sent within one pipeline (the same on every rank) */
    int layers_moved;      /* the layers whose stage changed (the same in every pipeline) */
} bl_migration_t;

/* Moves the state of the layers whose stage differs between the maps from and
 * to (S + 1 entries each, for l->stages stages) within this rank's pipeline:
 * the parameters (in the model) and the velocity (the optimizer state, in the
 * parameters' layout), and fills *out. Collective over the pipeline, with waits
 * bounded by the runtime's timeout. A local failure names the layer, the stages
 * and MPI's message; a model of more than 16383 layers, or a layer larger than
 * one MPI message, is BL_ERR_UNSUPPORTED. It changes neither map. */
bl_status_t bl_migrate_layers(const bl_layout_t *l, bl_model_t *m, float *velocity, const int *from,
                              const int *to, bl_migration_t *out);

#endif /* BL_MIGRATION_H */
