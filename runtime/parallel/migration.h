/* Live layer migration between the stages of a pipeline: when the stage
 * map changes, every layer whose stage changes sends its parameters and
 * its optimizer state (momentum) from its old stage to its new one, by MPI
 * point-to-point on the pipeline's communicator, in every pipeline at
 * once. Gradients need no move: the next step's first backward writes
 * them. */
#ifndef BL_MIGRATION_H
#define BL_MIGRATION_H

#include "layout.h"

/* What one rank's part of a migration did. */
typedef struct bl_migration {
    double bytes_sent;     /* by this rank */
    double bytes_received; /* by this rank */
    double pipeline_bytes; /* sent within one pipeline (the same on every rank) */
    int layers_moved;      /* layers whose stage changed (any pipeline: the same) */
} bl_migration_t;

/* Moves the state of the layers whose stage differs between maps from and
 * to (S + 1 entries each, l->stages stages) within this rank's pipeline:
 * parameters (model) and velocity (the optimizer state, the parameters'
 * layout). Collective over the pipeline; local failures name the layer,
 * the stages and MPI's message. Does not change l->first. */
bl_status_t bl_migrate_layers(const bl_layout_t *l, bl_model_t *m, float *velocity, const int *from,
                              const int *to, bl_migration_t *out);

#endif /* BL_MIGRATION_H */
